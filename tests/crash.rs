//! Crash injection: SIGKILL the real binary at chosen and at random points of
//! a delivery, many times, into one Maildir, and check after each kill and
//! at the end that every message is either complete and byte-exact in
//! exactly one folder's new/, or nowhere outside tmp/.
//!
//! Two ways to pick the point:
//! - a named step (`DELIVER_TEST_PAUSE_AT`, debug builds only, see
//!   src/testhook.rs): the process stops itself there with SIGSTOP and is
//!   then killed, so the state is known exactly;
//! - a random delay after the start, up to a little more than a whole
//!   delivery takes, so that the kill lands anywhere, between the steps too.
//!
//! `DELIVER_CRASH_RUNS` (default 100) sets the number of runs of
//! `random_kills_lose_and_duplicate_nothing`; `DELIVER_CRASH_SEED` replays
//! a run. tests/crash/crash.sh runs it 1,000 times.

mod util;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};
use util::*;

/// Steps after which the message must be visible in new/.
const VISIBLE_AFTER: &[&str] = &["linked", "new-synced", "delivered"];

/// Every step of src/testhook.rs.
const STEPS: &[&str] = &[
    "maildir-open",
    "tmp-created",
    "tmp-partial",
    "tmp-written",
    "tmp-synced",
    "prepended",
    "folder-mkdir",
    "folder-ready",
    "linked",
    "new-synced",
    "delivered",
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Inbox,
    Junk,
    Prepend,
    NewFolder,
    Big,
}

const KINDS: [Kind; 5] = [
    Kind::Inbox,
    Kind::Junk,
    Kind::Prepend,
    Kind::NewFolder,
    Kind::Big,
];

/// A small xorshift generator: no dependency, and a seed replays a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The Maildir every run of one test delivers into, and its rules: a
/// sender map that prepends a header or files into one of 50 folders.
fn setup() -> Home {
    let mut h = Home::new();
    let mut map = String::from("tag.example PREPEND X-Crash-Tag: yes\n");
    for f in 0..50 {
        map.push_str(&format!("f{f}.example FOLDER F{f}\n"));
    }
    let m = h.file("sender_access", &map);
    h.system(&format!(
        "[spam]\njunk_threshold = 5.0\n[access]\nsender = [\"texthash:{}\"]\n",
        m.display()
    ));
    h
}

/// One run's input, sender and the bytes that must be delivered.
struct Case {
    input: Vec<u8>,
    sender: String,
    expect: Vec<u8>,
}

fn case(id: usize, kind: Kind, folder: usize) -> Case {
    let (sender, extra, body) = match kind {
        Kind::Inbox => ("a@plain.example".to_string(), "", format!("body {id}\n")),
        Kind::Junk => (
            "a@plain.example".to_string(),
            "X-Spam-Flag: YES\n",
            format!("spam {id}\n"),
        ),
        Kind::Prepend => ("a@tag.example".to_string(), "", format!("tagged {id}\n")),
        Kind::NewFolder => (format!("a@f{folder}.example"), "", format!("folder {id}\n")),
        Kind::Big => (
            "a@plain.example".to_string(),
            "",
            format!(
                "big {id}\n{}",
                "0123456789abcdef0123456789abcdef\n".repeat(8192)
            ),
        ),
    };
    let input = msg(
        &format!("Subject: run-{id}\nMessage-ID: <{id}@crash.test>\n{extra}"),
        &body,
    );
    let mut expect = Vec::new();
    if kind == Kind::Prepend {
        expect.extend_from_slice(b"X-Crash-Tag: yes\n");
    }
    expect.extend_from_slice(without_from(&input));
    Case {
        input,
        sender,
        expect,
    }
}

enum Outcome {
    /// Stopped at the step, then killed.
    KilledAt(&'static str),
    /// Killed by the random delay before it finished.
    KilledRandom,
    /// Finished on its own.
    Exited(i32, String),
}

/// Starts one delivery; `pause` names a step to stop at, else `delay` is
/// the time after which it is killed (None: let it finish).
fn deliver_and_kill(
    h: &Home,
    c: &Case,
    pause: Option<&'static str>,
    delay: Option<Duration>,
) -> Outcome {
    let mut cmd = h.command(&["-f", &c.sender, "-a", "user@example.com"]);
    if let Some(step) = pause {
        cmd.env("DELIVER_TEST_PAUSE_AT", step);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // Reaped below with waitpid(2), which also sees it stop.
    #[allow(clippy::zombie_processes)]
    let mut child = cmd.spawn().expect("spawn deliver");
    let pid = Pid::from_raw(child.id() as i32);
    let mut stdin = child.stdin.take().unwrap();
    let data = c.input.clone();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let mut stderr = child.stderr.take().unwrap();
    let status = if let Some(step) = pause {
        match waitpid(pid, Some(WaitPidFlag::WUNTRACED)).unwrap() {
            WaitStatus::Stopped(_, Signal::SIGSTOP) => {
                kill(pid, Signal::SIGKILL).unwrap();
                let st = waitpid(pid, None).unwrap();
                assert!(
                    matches!(st, WaitStatus::Signaled(_, Signal::SIGKILL, _)),
                    "{st:?}"
                );
                writer.join().unwrap();
                return Outcome::KilledAt(step);
            }
            st => st,
        }
    } else {
        if let Some(d) = delay {
            std::thread::sleep(d);
            let _ = kill(pid, Signal::SIGKILL);
        }
        waitpid(pid, None).unwrap()
    };
    writer.join().unwrap();
    let mut err = String::new();
    let _ = stderr.read_to_string(&mut err);
    match status {
        WaitStatus::Exited(_, code) => Outcome::Exited(code, err),
        WaitStatus::Signaled(_, Signal::SIGKILL, _) => Outcome::KilledRandom,
        st => panic!("unexpected wait status {st:?}: {err}"),
    }
}

/// Every file in every new/ of the Maildir, with its folder.
fn visible(h: &Home) -> Vec<(String, Vec<u8>)> {
    h.delivered()
        .into_iter()
        .flat_map(|(f, v)| v.into_iter().map(move |c| (f.clone(), c)))
        .collect()
}

/// Checks the Maildir against what each run must have left: `expected[i]`
/// is Some(n) when run i must be visible exactly n times, None when 0 or 1
/// copies are both correct (a random kill). Returns how many are visible.
fn check_all(h: &Home, cases: &[Case], expected: &[Option<usize>], why: &str) -> usize {
    let mut count: BTreeMap<usize, usize> = BTreeMap::new();
    let files = visible(h);
    for (folder, content) in &files {
        let Some(i) = cases.iter().position(|c| &c.expect == content) else {
            panic!(
                "{why}: a file in {folder:?}/new is not a complete message: {:?}",
                String::from_utf8_lossy(&content[..content.len().min(200)])
            );
        };
        *count.entry(i).or_default() += 1;
    }
    for (i, e) in expected.iter().enumerate() {
        let n = count.get(&i).copied().unwrap_or(0);
        match e {
            Some(want) => assert_eq!(n, *want, "{why}: run {i} visible {n} times, want {want}"),
            None => assert!(n <= 1, "{why}: run {i} visible {n} times"),
        }
    }
    files.len()
}

/// After the crashes: every folder directory is complete (tmp, new, cur,
/// maildirfolder) and listed exactly once in `subscriptions`.
fn check_folders(h: &Home) {
    let subs = fs::read_to_string(h.maildir.join("subscriptions")).unwrap_or_default();
    for e in fs::read_dir(&h.maildir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') || !e.file_type().unwrap().is_dir() {
            continue;
        }
        for sub in ["tmp", "new", "cur", "maildirfolder"] {
            assert!(e.path().join(sub).exists(), "{name}/{sub} missing");
        }
        let n = subs.lines().filter(|l| *l == &name[1..]).count();
        assert_eq!(n, 1, "{name} listed {n} times in subscriptions: {subs:?}");
    }
}

/// Makes every file in tmp/ 37 hours old and tmp/ itself unread for 9
/// (so the next delivery scans it), delivers once more and checks that
/// tmp/ is then empty: nothing the crashes left behind survives.
fn check_stale_tmp_cleaned(h: &Home, cases: &mut Vec<Case>, expected: &mut Vec<Option<usize>>) {
    let old = SystemTime::now() - Duration::from_secs(37 * 3600);
    for p in h.files_in("tmp") {
        fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    set_atime(
        &h.maildir.join("tmp"),
        SystemTime::now() - Duration::from_secs(9 * 3600),
    );
    let c = case(cases.len(), Kind::Inbox, 0);
    match deliver_and_kill(h, &c, None, None) {
        Outcome::Exited(0, _) => {}
        Outcome::Exited(code, err) => panic!("cleaning delivery: exit {code}: {err}"),
        _ => unreachable!(),
    }
    cases.push(c);
    expected.push(Some(1));
    let left = h.files_in("tmp");
    assert!(left.is_empty(), "tmp/ not cleaned: {left:?}");
}

/// Delivers one message of each kind (and one into each folder that
/// exists), as the next deliveries after a crash would be.
fn later_runs(h: &Home, cases: &mut Vec<Case>, expected: &mut Vec<Option<usize>>) {
    let folders: Vec<usize> = fs::read_dir(&h.maildir)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.strip_prefix(".F").and_then(|s| s.parse().ok())
        })
        .collect();
    let mut todo: Vec<(Kind, usize)> = KINDS.iter().map(|k| (*k, 0)).collect();
    todo.extend(folders.into_iter().map(|f| (Kind::NewFolder, f)));
    for (k, f) in todo {
        let c = case(cases.len(), k, f);
        match deliver_and_kill(h, &c, None, None) {
            Outcome::Exited(0, _) => {}
            Outcome::Exited(code, err) => panic!("later run: exit {code}: {err}"),
            _ => unreachable!(),
        }
        cases.push(c);
        expected.push(Some(1));
    }
}

fn finish(h: &Home, mut cases: Vec<Case>, mut expected: Vec<Option<usize>>, why: &str) {
    later_runs(h, &mut cases, &mut expected);
    check_all(h, &cases, &expected, why);
    check_folders(h);
    check_stale_tmp_cleaned(h, &mut cases, &mut expected);
    check_all(h, &cases, &expected, why);
}

/// Which steps a kind of message goes through.
fn reaches(kind: Kind, step: &str, new_folder: bool) -> bool {
    match step {
        "prepended" => kind == Kind::Prepend,
        // Only what is linked as spooled is fsynced in tmp/; PREPEND
        // writes (and fsyncs) a new file.
        "tmp-synced" => kind != Kind::Prepend,
        "folder-mkdir" => new_folder,
        "folder-ready" => kind == Kind::Junk || kind == Kind::NewFolder,
        _ => true,
    }
}

#[test]
fn kill_at_each_step_leaves_all_or_nothing() {
    let h = setup();
    let mut cases = Vec::new();
    let mut expected = Vec::new();
    let mut folder = 0;
    for step in STEPS {
        for kind in KINDS {
            // Kill twice at folder-mkdir of fresh folders: the next
            // delivery into the same folder must repair it.
            let new_folder = kind == Kind::NewFolder;
            if !reaches(kind, step, new_folder) {
                continue;
            }
            let id = cases.len();
            let c = case(id, kind, folder);
            if new_folder {
                folder += 1;
            }
            let before = visible(&h).len();
            match deliver_and_kill(&h, &c, Some(step), None) {
                Outcome::KilledAt(_) => {}
                Outcome::Exited(code, err) => {
                    panic!("{step} {kind:?}: never reached the step: exit {code} {err}")
                }
                Outcome::KilledRandom => unreachable!(),
            }
            let shows = VISIBLE_AFTER.contains(step);
            cases.push(c);
            expected.push(Some(usize::from(shows)));
            let why = format!("killed at {step} ({kind:?})");
            let n = check_all(&h, &cases, &expected, &why);
            assert_eq!(n, before + usize::from(shows), "{why}");
        }
    }
    finish(&h, cases, expected, "after the step kills");
}

/// How long a whole delivery of the big message takes here, to spread the
/// random kills over it (a parameter, not an assertion).
fn calibrate(h: &Home) -> Duration {
    let mut longest = Duration::from_millis(1);
    for i in 0..3 {
        let c = case(1_000_000 + i, Kind::Big, 0);
        let t = Instant::now();
        let r = h.run(&["-f", &c.sender], &c.input);
        assert_eq!(r.code, 0, "{}", r.stderr);
        longest = longest.max(t.elapsed());
    }
    longest
}

#[test]
fn random_kills_lose_and_duplicate_nothing() {
    let runs: usize = std::env::var("DELIVER_CRASH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let seed: u64 = std::env::var("DELIVER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("DELIVER_CRASH_SEED={seed} DELIVER_CRASH_RUNS={runs}");
    let mut rng = Rng(seed);
    let scratch = Home::new();
    let span = calibrate(&scratch);
    let h = setup();
    let mut cases = Vec::new();
    let mut expected = Vec::new();
    let (mut at_step, mut random, mut finished) = (0, 0, 0);
    for id in 0..runs {
        let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
        let c = case(id, kind, rng.below(50) as usize);
        // Half the runs stop at a named step, half are killed after a
        // random delay of up to 1.5 times a whole delivery.
        let outcome = if rng.below(2) == 0 {
            let step = STEPS[rng.below(STEPS.len() as u64) as usize];
            deliver_and_kill(&h, &c, Some(step), None)
        } else {
            let us = rng.below(span.as_micros() as u64 * 3 / 2 + 1);
            deliver_and_kill(&h, &c, None, Some(Duration::from_micros(us)))
        };
        let e = match outcome {
            Outcome::KilledAt(step) => {
                at_step += 1;
                Some(usize::from(VISIBLE_AFTER.contains(&step)))
            }
            Outcome::KilledRandom => {
                random += 1;
                None
            }
            Outcome::Exited(0, _) => {
                finished += 1;
                Some(1)
            }
            Outcome::Exited(code, err) => panic!("seed {seed} run {id}: exit {code}: {err}"),
        };
        cases.push(c);
        expected.push(e);
        check_all(&h, &cases, &expected, &format!("seed {seed} run {id}"));
    }
    eprintln!(
        "{runs} runs: {at_step} killed at a step, {random} killed at random, {finished} finished"
    );
    let visible_now = visible(&h).len();
    let must = expected.iter().filter(|e| **e == Some(1)).count();
    assert!(visible_now >= must && visible_now <= must + random);
    eprintln!(
        "visible: {visible_now} ({must} required, {} of {random} random kills had linked)",
        visible_now - must
    );
    assert!(
        at_step > 0 && random + finished > 0,
        "the runs did not mix both ways of killing"
    );
    finish(
        &h,
        cases,
        expected,
        &format!("seed {seed}, after the kills"),
    );
}
