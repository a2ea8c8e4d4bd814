//! Delivery against the real binary and real Maildirs.

mod util;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, SystemTime};
use util::*;

fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let mut big_body = String::new();
    for i in 0..5000 {
        big_body.push_str(&format!(
            "line {i} of a longer body, with some text to fill it\n"
        ));
    }
    vec![
        ("plain", msg("Subject: hello\nFrom: a@example.org\n", "body\n")),
        ("crlf", b"From x@y  Sat Nov 21 10:00:00 2026\r\nSubject: crlf\r\nTo: b@c\r\n\r\nline one\r\nline two\r\n".to_vec()),
        ("no trailing newline", msg("Subject: x\n", "last line without newline")),
        ("folded", msg("Subject: a folded\n\tsubject line\nReceived: from a\n  by b\n  for c\n", "b\n")),
        ("8-bit", msg("Subject: caf\u{e9} cr\u{e8}me\nX-Latin1: \u{ff}\n", "\u{e9}t\u{e9} \u{20ac}\n")),
        (
            "invalid utf-8",
            [b"From a@b  Sat Nov 21 10:00:00 2026\nSubject: bad \xff\xfe bytes\n\n\x80\x81 body\n".as_slice()].concat(),
        ),
        (
            "mime",
            msg(
                "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"XX\"\nSubject: =?UTF-8?B?w6lsw6h2ZQ==?=\n",
                "--XX\nContent-Type: text/plain\n\nhi\n--XX\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nAAECAwQF\n--XX--\n",
            ),
        ),
        ("nul bytes", msg("Subject: nul\n", "a\0b\0c\n")),
        ("bare cr", b"From a@b  Sat Nov 21 10:00:00 2026\nSubject: cr\r\rbody\rmore\n".to_vec()),
        ("no separator", msg("Subject: x", "not a header line\nmore\n")),
        ("no from line", b"Subject: none\n\nbody\n".to_vec()),
        ("empty", Vec::new()),
        ("only from line", b"From a@b  Sat Nov 21 10:00:00 2026\n".to_vec()),
        ("continuation first", msg(" leading continuation\nSubject: x\n", "b\n")),
        ("larger", msg("Subject: big\n", &big_body)),
    ]
}

#[test]
fn delivered_bytes_equal_input_minus_from_line() {
    for (name, input) in corpus() {
        let h = Home::new();
        let r = h.deliver(&input);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        assert!(
            r.stderr.is_empty(),
            "{name}: stderr must stay empty on success: {}",
            r.stderr
        );
        let d = h.delivered();
        let inbox = d
            .get("")
            .unwrap_or_else(|| panic!("{name}: nothing in the Inbox: {d:?}"));
        assert_eq!(inbox.len(), 1, "{name}");
        assert_eq!(inbox[0], without_from(&input), "{name}: bytes differ");
        assert!(h.files_in("tmp").is_empty(), "{name}: tmp/ not empty");
    }
}

#[test]
fn file_name_follows_the_maildir_protocol() {
    let h = Home::new();
    let input = msg("Subject: x\n", "body\n");
    assert_eq!(h.deliver(&input).code, 0);
    let files = h.files_in("new");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    let size = without_from(&input).len();
    assert!(name.ends_with(&format!(",S={size}")), "{name}");
    let parts: Vec<&str> = name.splitn(3, '.').collect();
    assert!(parts[0].parse::<u64>().is_ok(), "{name}");
    assert!(
        parts[1].starts_with('M') && parts[1].contains('P'),
        "{name}"
    );
    assert!(!name.contains('/') && !name.contains(':'));
    let md = fs::metadata(&files[0]).unwrap();
    assert_eq!(md.mode() & 0o777, 0o600);
    assert_eq!(md.uid(), h.uid);
    for sub in ["tmp", "new", "cur"] {
        let m = fs::metadata(h.maildir.join(sub)).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.mode() & 0o777, 0o700, "{sub}");
    }
}

#[test]
fn spam_flag_goes_to_junk_and_creates_the_folder() {
    let h = Home::new();
    let input = msg("Subject: buy\nX-Spam-Flag: YES\n", "spam\n");
    assert_eq!(h.deliver(&input).code, 0);
    let d = h.delivered();
    assert_eq!(d.keys().collect::<Vec<_>>(), vec!["Junk"]);
    assert_eq!(d["Junk"][0], without_from(&input));
    let junk = h.maildir.join(".Junk");
    assert_eq!(fs::metadata(&junk).unwrap().mode() & 0o777, 0o700);
    assert!(junk.join("maildirfolder").exists());
    for sub in ["tmp", "new", "cur"] {
        assert!(junk.join(sub).is_dir());
    }
    let subs = fs::read_to_string(h.maildir.join("subscriptions")).unwrap();
    assert_eq!(subs, "Junk\n");
    // A second delivery does not subscribe twice.
    assert_eq!(h.deliver(&input).code, 0);
    assert_eq!(
        fs::read_to_string(h.maildir.join("subscriptions")).unwrap(),
        "Junk\n"
    );
    assert_eq!(h.delivered()["Junk"].len(), 2);
}

#[test]
fn virus_is_discarded_by_default() {
    let h = Home::new();
    let r = h.deliver(&msg(
        "Subject: x\nX-Amavis-Alert: INFECTED, message contains virus: Eicar\n",
        "x\n",
    ));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(h.count(), 0);
    assert!(h.files_in("tmp").is_empty());
}

#[test]
fn rule_actions_and_exit_codes() {
    let mut h = Home::new();
    h.system(
        r#"
[[rule]]
name = "bounce"
header = "Subject"
match = "^reject me$"
reject = "go away"

[[rule]]
name = "bounce-code"
header = "Subject"
match = "^reject code$"
reject = "5.7.26 unauthenticated"

[[rule]]
name = "later"
header = "Subject"
match = "^defer me$"
defer = "try later"

[[rule]]
name = "drop"
header = "Subject"
match = "^drop me$"
discard = true

[[rule]]
name = "list"
header = "List-Id"
match = "rust-users\\.lists\\.example\\.org"
folder = "Lists/rust"
"#,
    );
    let r = h.deliver(&msg("Subject: reject me\n", "x\n"));
    assert_eq!(r.code, 77);
    assert_eq!(r.first_line(), "5.7.1 go away");
    let r = h.deliver(&msg("Subject: reject code\n", "x\n"));
    assert_eq!((r.code, r.first_line()), (77, "5.7.26 unauthenticated"));
    let r = h.deliver(&msg("Subject: defer me\n", "x\n"));
    assert_eq!((r.code, r.first_line()), (75, "4.7.1 try later"));
    let r = h.deliver(&msg("Subject: drop me\n", "x\n"));
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(h.count(), 0);
    assert!(h.files_in("tmp").is_empty());
    let r = h.deliver(&msg(
        "List-Id: Rust <rust-users.lists.example.org>\n",
        "x\n",
    ));
    assert_eq!(r.code, 0);
    assert_eq!(h.delivered().keys().collect::<Vec<_>>(), vec!["Lists.rust"]);
}

#[test]
fn unwritable_maildir_defers() {
    if !is_root() {
        // Permission checks do not bind root; as non-root the test works directly.
    }
    let h = Home::new();
    fs::create_dir_all(h.maildir.join("new")).unwrap();
    fs::create_dir_all(h.maildir.join("tmp")).unwrap();
    fs::create_dir_all(h.maildir.join("cur")).unwrap();
    chown_tree(&h.maildir, 0, 0);
    fs::set_permissions(h.maildir.join("tmp"), fs::Permissions::from_mode(0o755)).unwrap();
    if !is_root() {
        fs::set_permissions(h.maildir.join("tmp"), fs::Permissions::from_mode(0o555)).unwrap();
    }
    let r = h.deliver(&msg("Subject: x\n", "x\n"));
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.first_line().starts_with("4.2.0 "), "{}", r.stderr);
    assert!(r.first_line().contains("tmp"), "{}", r.stderr);
    assert_eq!(h.count(), 0);
}

#[test]
fn missing_home_defers() {
    let mut h = Home::new();
    h.maildir = h.home.join("gone/Maildir");
    let r = h.deliver(&msg("Subject: x\n", "x\n"));
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(
        r.first_line().starts_with("4.2.0 cannot open "),
        "{}",
        r.stderr
    );
    assert!(r.first_line().contains("gone"), "{}", r.stderr);
}

#[test]
fn broken_system_rules_defer_with_position() {
    let mut h = Home::new();
    h.system(
        "[spam]\njunk_threshold = 5.0\n[[rule]]\nheader = \"Subject\"\nmatch = \"(\"\nscore = 1\n",
    );
    let r = h.deliver(&msg("Subject: x\n", "x\n"));
    assert_eq!(r.code, 75);
    assert!(
        r.first_line().starts_with("4.3.5 system rules: "),
        "{}",
        r.stderr
    );
    assert!(
        r.first_line().contains("system.toml:5:9: match: bad regex"),
        "{}",
        r.stderr
    );
    assert_eq!(h.count(), 0);
    assert!(h.files_in("tmp").is_empty());
}

#[test]
fn unreadable_or_missing_explicit_system_rules_defer() {
    let mut h = Home::new();
    h.system("");
    let p = h.system_rules.clone().unwrap();
    fs::remove_file(&p).unwrap();
    let r = h.deliver(&msg("Subject: x\n", "x\n"));
    assert_eq!(r.code, 75);
    assert!(r.first_line().contains("system rules"), "{}", r.stderr);
    fs::write(&p, "").unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o000)).unwrap();
    if is_root() {
        // deliver runs as nobody: the root-owned 0000 file is unreadable.
        let r = h.deliver(&msg("Subject: x\n", "x\n"));
        assert_eq!(r.code, 75);
        assert!(r.first_line().contains("Permission denied"), "{}", r.stderr);
    }
}

#[test]
fn user_rules_with_errors_or_bad_mode_are_ignored() {
    let h = Home::new();
    h.user("[[rule]]\nheader = \"Subject\"\nmatch = \"x\"\nfolder = \"Mine\"\n");
    assert_eq!(h.deliver(&msg("Subject: x\n", "x\n")).code, 0);
    assert_eq!(h.delivered().keys().collect::<Vec<_>>(), vec!["Mine"]);

    // A typo: ignored, mail delivered by the system rules (Inbox).
    let h = Home::new();
    h.user("[[rule]\nheader = \"Subject\"\n");
    let r = h.run(&["-f", "a@b", "--log-stderr"], &msg("Subject: x\n", "x\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("ignoring user rules"), "{}", r.stderr);
    assert!(r.stderr.contains("rules.toml:1:"), "{}", r.stderr);
    assert_eq!(h.delivered().keys().collect::<Vec<_>>(), vec![""]);

    // Group-writable: ignored.
    let h = Home::new();
    h.user("[[rule]]\nheader = \"Subject\"\nmatch = \"x\"\nfolder = \"Mine\"\n");
    fs::set_permissions(&h.user_rules, fs::Permissions::from_mode(0o664)).unwrap();
    let r = h.run(&["--log-stderr"], &msg("Subject: x\n", "x\n"));
    assert_eq!(r.code, 0);
    assert!(
        r.stderr.contains("writable by group or others"),
        "{}",
        r.stderr
    );
    assert_eq!(h.delivered().keys().collect::<Vec<_>>(), vec![""]);

    // Owned by someone else: ignored.
    if is_root() {
        let h = Home::new();
        h.user("[[rule]]\nheader = \"Subject\"\nmatch = \"x\"\nfolder = \"Mine\"\n");
        chown_tree(&h.user_rules, 0, 0);
        fs::set_permissions(&h.user_rules, fs::Permissions::from_mode(0o644)).unwrap();
        let r = h.run(&["--log-stderr"], &msg("Subject: x\n", "x\n"));
        assert_eq!(r.code, 0);
        assert!(r.stderr.contains("owned by uid 0"), "{}", r.stderr);
        assert_eq!(h.delivered().keys().collect::<Vec<_>>(), vec![""]);
    }
}

#[test]
fn symlinked_maildir_parts_are_not_followed() {
    let outside = tempfile::tempdir().unwrap();
    fs::set_permissions(outside.path(), fs::Permissions::from_mode(0o777)).unwrap();
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir(outside.path().join(sub)).unwrap();
        fs::set_permissions(outside.path().join(sub), fs::Permissions::from_mode(0o777)).unwrap();
    }
    let count_outside = || {
        ["tmp", "new", "cur"]
            .iter()
            .map(|s| fs::read_dir(outside.path().join(s)).unwrap().count())
            .sum::<usize>()
    };

    // The Maildir itself.
    let h = Home::new();
    std::os::unix::fs::symlink(outside.path(), &h.maildir).unwrap();
    let r = h.deliver(&msg("Subject: x\n", "x\n"));
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.first_line().contains("symlink"), "{}", r.stderr);

    // new/ and tmp/.
    for part in ["new", "tmp"] {
        let h = Home::new();
        assert_eq!(h.deliver(&msg("Subject: x\n", "x\n")).code, 0);
        let p = h.maildir.join(part);
        fs::remove_dir_all(&p).unwrap();
        std::os::unix::fs::symlink(outside.path().join(part), &p).unwrap();
        let r = h.deliver(&msg("Subject: x\n", "x\n"));
        assert_eq!(r.code, 75, "{part}: {}", r.stderr);
    }

    // A folder: falls back to the Inbox, nothing written outside.
    let h = Home::new();
    assert_eq!(h.deliver(&msg("Subject: x\n", "x\n")).code, 0);
    std::os::unix::fs::symlink(outside.path(), h.maildir.join(".Junk")).unwrap();
    let r = h.run(&["--log-stderr"], &msg("X-Spam-Flag: YES\n", "x\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("unusable"), "{}", r.stderr);
    assert_eq!(h.files_in("new").len(), 2);
    assert_eq!(
        count_outside(),
        0,
        "something was written outside the Maildir"
    );
}

#[test]
fn refused_folder_names_fall_back_or_fail_check() {
    // A rules file naming a bad folder does not load (system: defer).
    let mut h = Home::new();
    h.system("[[rule]]\nheader = \"Subject\"\nmatch = \"x\"\nfolder = \"../../etc\"\n");
    let r = h.deliver(&msg("Subject: x\n", "x\n"));
    assert_eq!(r.code, 75);
    assert!(
        r.first_line().contains("refused folder name"),
        "{}",
        r.stderr
    );
}

#[test]
fn concurrent_deliveries_lose_nothing() {
    // 64 deliveries at once into one fresh Maildir: the Inbox, Junk and
    // four folders that do not exist yet, so that up to a dozen processes
    // race to create each folder (and the Maildir itself).
    let mut h = Home::new();
    let mut map = String::new();
    for f in 0..4 {
        map.push_str(&format!("a@f{f}.example FOLDER Race/F{f}\n"));
    }
    let m = h.file("sender_access", &map);
    h.system(&format!(
        "[spam]\njunk_threshold = 5.0\n[access]\nsender = [\"texthash:{}\"]\n",
        m.display()
    ));
    let h = std::sync::Arc::new(h);
    let n = 64;
    let start = std::sync::Arc::new(std::sync::Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let h = h.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                let (sender, extra, folder) = match i % 6 {
                    0 => ("a@b.example".to_string(), "", String::new()),
                    1 => (
                        "a@b.example".to_string(),
                        "X-Spam-Flag: YES\n",
                        "Junk".to_string(),
                    ),
                    k => (
                        format!("a@f{}.example", k - 2),
                        "",
                        format!("Race.F{}", k - 2),
                    ),
                };
                let input = msg(
                    &format!("Subject: message {i}\n{extra}"),
                    &format!("body {i}\n"),
                );
                start.wait();
                let r = h.run(&["-f", &sender], &input);
                (r.code, r.stderr, input, folder)
            })
        })
        .collect();
    let mut expected: std::collections::BTreeMap<String, Vec<Vec<u8>>> = Default::default();
    for t in threads {
        let (code, err, input, folder) = t.join().unwrap();
        assert_eq!(code, 0, "{err}");
        assert!(err.is_empty(), "{err}");
        expected
            .entry(folder)
            .or_default()
            .push(without_from(&input).to_vec());
    }
    let mut got = h.delivered();
    for v in got.values_mut().chain(expected.values_mut()) {
        v.sort();
    }
    assert_eq!(got, expected, "lost, duplicated or misfiled messages");
    // Unique names across all folders.
    let mut names = Vec::new();
    for rel in [
        "new",
        ".Junk/new",
        ".Race.F0/new",
        ".Race.F1/new",
        ".Race.F2/new",
        ".Race.F3/new",
    ] {
        for p in h.files_in(rel) {
            names.push(p.file_name().unwrap().to_owned());
        }
    }
    let total = names.len();
    names.sort();
    names.dedup();
    assert_eq!((names.len(), total), (n, n));
    // Every folder listed once, every folder finished.
    let subs = fs::read_to_string(h.maildir.join("subscriptions")).unwrap();
    let mut lines: Vec<&str> = subs.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        vec!["Junk", "Race.F0", "Race.F1", "Race.F2", "Race.F3"],
        "{subs:?}"
    );
    for f in ["Junk", "Race.F0", "Race.F1", "Race.F2", "Race.F3"] {
        assert!(
            h.maildir.join(format!(".{f}/maildirfolder")).exists(),
            "{f}"
        );
    }
    assert!(h.files_in("tmp").is_empty());
}

#[test]
fn header_limits_deliver_unchanged_and_rules_see_the_fields_within_them() {
    let mut h = Home::new();
    h.system("[settings]\nmax_headers = 5\n[[rule]]\nheader = \"Subject\"\nmatch = \"x\"\ndiscard = true\n");
    // The Subject is the seventh field: past the limit, not seen.
    let input = msg("A: 1\nB: 2\nC: 3\nD: 4\nE: 5\nF: 6\nSubject: x\n", "body\n");
    let r = h.run(&["--log-stderr"], &input);
    assert_eq!(r.code, 0);
    assert!(r.stderr.contains("limit reached"), "{}", r.stderr);
    assert_eq!(h.delivered()[""][0], without_from(&input));
    // The first field: within the limit, the rule applies.
    let input = msg("Subject: x\nA: 1\nB: 2\nC: 3\nD: 4\nE: 5\nF: 6\n", "body\n");
    let r = h.run(&["--log-stderr"], &input);
    assert_eq!(r.code, 0);
    assert!(r.stderr.contains("action=discard"), "{}", r.stderr);
    assert_eq!(h.count(), 1);

    let mut h = Home::new();
    h.system("[settings]\nmax_header_bytes = 2048\n");
    let long = format!("Subject: {}\n", "y".repeat(100_000));
    let input = msg(&long, "body\n");
    assert_eq!(h.deliver(&input).code, 0);
    assert_eq!(h.delivered()[""][0], without_from(&input));
}

/// Writes a stale (37 hours old) and a fresh file into the Maildir's tmp/.
fn stale_and_fresh(h: &Home, n: u32) -> (std::path::PathBuf, std::path::PathBuf) {
    let old = h.maildir.join(format!("tmp/{n}.stale.host"));
    let fresh = h.maildir.join(format!("tmp/{n}.fresh.host"));
    fs::write(&old, "partial").unwrap();
    fs::write(&fresh, "in progress").unwrap();
    let t = SystemTime::now() - Duration::from_secs(37 * 3600);
    fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(t)
        .unwrap();
    (old, fresh)
}

#[test]
fn stale_tmp_files_are_cleaned() {
    // tmp/ is scanned when it was last read (its atime) over 8 hours ago.
    let h = Home::new();
    assert_eq!(h.deliver(&msg("Subject: x\n", "x\n")).code, 0);
    let (old, fresh) = stale_and_fresh(&h, 1);
    let tmp = h.maildir.join("tmp");
    set_atime(&tmp, SystemTime::now() - Duration::from_secs(9 * 3600));
    assert_eq!(h.deliver(&msg("Subject: y\n", "y\n")).code, 0);
    assert!(!old.exists(), "stale tmp file kept");
    assert!(fresh.exists(), "fresh tmp file removed");
    // The scan read tmp/: its atime is recent again, whatever the mount
    // options (where reading does not set it, deliver does).
    let since = SystemTime::now()
        .duration_since(atime(&tmp))
        .unwrap_or_default();
    assert!(since < Duration::from_secs(3600), "atime {since:?} ago");
}

#[test]
fn recently_scanned_tmp_is_not_scanned_again() {
    let h = Home::new();
    assert_eq!(h.deliver(&msg("Subject: x\n", "x\n")).code, 0);
    let (old, fresh) = stale_and_fresh(&h, 1);
    let tmp = h.maildir.join("tmp");
    // Read 7 hours ago: not yet.
    set_atime(&tmp, SystemTime::now() - Duration::from_secs(7 * 3600));
    // Filed, and discarded: neither scans.
    for extra in [
        "",
        "X-Amavis-Alert: INFECTED, message contains virus: Eicar\n",
    ] {
        let r = h.deliver(&msg(&format!("Subject: y\n{extra}"), "y\n"));
        assert_eq!(r.code, 0, "{extra}: {}", r.stderr);
    }
    assert_eq!(h.count(), 2);
    assert!(old.exists(), "tmp/ was scanned though read 7 hours ago");
    assert!(fresh.exists());
    set_atime(&tmp, SystemTime::now() - Duration::from_secs(9 * 3600));
    assert_eq!(h.deliver(&msg("Subject: z\n", "z\n")).code, 0);
    assert!(!old.exists(), "stale tmp file kept");
    assert!(fresh.exists(), "fresh tmp file removed");
}

/// A tmpfs mounted at HOME/`name` with `opts`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Mounts a tmpfs (root only) and points the home's Maildir into it.
fn maildir_on_tmpfs(h: &mut Home, name: &str, opts: &str) -> Tmpfs {
    let mnt = h.home.join(name);
    fs::create_dir(&mnt).unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs failed");
    h.maildir = mnt.join("Maildir");
    Tmpfs(mnt)
}

#[test]
fn tmp_is_scanned_once_per_interval_on_noatime_mounts() {
    if !is_root() {
        eprintln!("skipped: mounting a noatime tmpfs needs root");
        return;
    }
    let mut h = Home::new();
    let _mount = maildir_on_tmpfs(&mut h, "noatime", "size=1m,mode=0777,noatime");
    assert_eq!(h.deliver(&msg("Subject: x\n", "x\n")).code, 0);
    let tmp = h.maildir.join("tmp");
    let (old, _) = stale_and_fresh(&h, 1);
    let before = SystemTime::now() - Duration::from_secs(9 * 3600);
    set_atime(&tmp, before);
    // Reading does not set the atime here.
    assert_eq!(h.files_in("tmp").len(), 2);
    assert_eq!(atime(&tmp), before, "noatime not in effect");
    assert_eq!(h.deliver(&msg("Subject: y\n", "y\n")).code, 0);
    assert!(!old.exists(), "stale tmp file kept");
    // deliver set the atime after its scan, so the next one does not scan.
    let (old, _) = stale_and_fresh(&h, 2);
    assert_eq!(h.deliver(&msg("Subject: z\n", "z\n")).code, 0);
    assert!(old.exists(), "tmp/ scanned again at once");
}

#[test]
fn a_missing_cur_is_created_and_a_file_in_its_place_defers() {
    let h = Home::new();
    assert_eq!(h.deliver(&msg("Subject: x\n", "x\n")).code, 0);
    let cur = h.maildir.join("cur");
    fs::remove_dir(&cur).unwrap();
    assert_eq!(h.deliver(&msg("Subject: y\n", "y\n")).code, 0);
    let m = fs::symlink_metadata(&cur).unwrap();
    assert!(m.is_dir());
    assert_eq!(m.mode() & 0o777, 0o700);
    assert_eq!(m.uid(), h.uid);
    fs::remove_dir(&cur).unwrap();
    fs::write(&cur, "").unwrap();
    let r = h.deliver(&msg("Subject: z\n", "z\n"));
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.first_line().starts_with("4.2.0 "), "{}", r.stderr);
    assert!(r.first_line().contains("not a directory"), "{}", r.stderr);
    assert_eq!(h.count(), 2);
}

#[test]
fn home_and_user_from_the_environment_replace_the_password_entry() {
    // local(8) exports USER, LOGNAME and HOME for the recipient. With an
    // absolute HOME and USER (or LOGNAME), the home is HOME; without
    // either, the password entry's home, as before.
    let h = Home::new();
    let pw = nix::unistd::User::from_uid(h.uid.into())
        .unwrap()
        .expect("the test user has a password entry");
    assert_ne!(pw.dir, h.home);
    // The user's rules file in HOME is read too.
    let conf = h.home.join(".config/deliver");
    fs::create_dir_all(&conf).unwrap();
    fs::write(
        conf.join("rules.toml"),
        "[[rule]]\nheader = \"Subject\"\nmatch = \"^home\"\nfolder = \"Home\"\n",
    )
    .unwrap();
    fs::set_permissions(conf.join("rules.toml"), fs::Permissions::from_mode(0o600)).unwrap();
    chown_tree(&h.home.join(".config"), h.uid, h.gid);
    let input = msg("Subject: home\n", "x\n");
    for var in ["USER", "LOGNAME"] {
        let mut c = h.bare_command(&["-f", "a@b"]);
        c.env(var, &pw.name);
        let r = run_cmd(c, &input);
        assert_eq!(r.code, 0, "{var}: {}", r.stderr);
    }
    assert_eq!(h.delivered()["Home"].len(), 2, "{:?}", h.delivered().keys());
    assert_eq!(h.count(), 2);

    // --test names the same place, and the password entry's without HOME,
    // or without USER and LOGNAME.
    let would_write = |env: &[(&str, &str)], remove: &[&str]| {
        let mut c = h.bare_command(&["--test", "-f", "a@b"]);
        for (k, v) in env {
            c.env(k, v);
        }
        for k in remove {
            c.env_remove(k);
        }
        let r = run_cmd(c, &input);
        assert_eq!(r.code, 0, "{env:?}: {}", r.stderr);
        r.stdout
            .lines()
            .find_map(|l| l.split("would write into ").nth(1).map(str::to_string))
            .unwrap_or_else(|| panic!("{env:?}: {}", r.stdout))
    };
    let in_home = h.maildir.join(".Home/new");
    let user = pw.name.as_str();
    assert_eq!(
        would_write(&[("USER", user)], &[]),
        in_home.display().to_string()
    );
    // (Which folder there depends on the rules file in that home.)
    let in_pw = |p: String| p.starts_with(&*pw.dir.join("Maildir/").to_string_lossy());
    assert!(in_pw(would_write(&[("USER", user)], &["HOME"])));
    assert!(in_pw(would_write(&[], &[])));
    assert!(in_pw(would_write(
        &[("USER", user), ("HOME", "relative/home")],
        &[]
    )));

    // A real delivery without USER, where the password entry's home is
    // missing (nobody's, when the tests run as root): deferred, naming it.
    if !pw.dir.exists() {
        let r = run_cmd(h.bare_command(&["-f", "a@b"]), &input);
        assert_eq!(r.code, 75, "{}", r.stderr);
        assert!(
            r.first_line().contains(&*pw.dir.to_string_lossy()),
            "{}",
            r.stderr
        );
        assert_eq!(h.count(), 2);
    }

    // `deliver check` finds the user's file as a delivery does.
    fs::write(conf.join("rules.toml"), "[[rule]]\nheader = \n").unwrap();
    let mut h2 = Home::new();
    h2.system("");
    let mut c = h.bare_command(&["check", "--rules"]);
    c.arg(h2.system_rules.as_ref().unwrap()).env("USER", user);
    let r = run_cmd(c, b"");
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains(&*conf.join("rules.toml").to_string_lossy()),
        "{}",
        r.stdout
    );
}

#[test]
fn root_needs_dash_d_and_files_belong_to_the_user() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let h = Home::new();
    let mut c = std::process::Command::new(BIN);
    c.arg("--maildir").arg(&h.maildir).env_clear();
    let r = run_cmd(c, &msg("Subject: x\n", "x\n"));
    assert_eq!(r.code, 75);
    assert!(r.first_line().contains("-d USER"), "{}", r.stderr);
    assert_eq!(h.count(), 0);

    let mut c = std::process::Command::new(BIN);
    c.args(["-d", "nobody", "--maildir"])
        .arg(&h.maildir)
        .env_clear();
    let r = run_cmd(c, &msg("Subject: x\nX-Spam-Flag: YES\n", "x\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    for p in [
        h.maildir.clone(),
        h.maildir.join(".Junk"),
        h.maildir.join("subscriptions"),
        h.delivered_path("Junk"),
    ] {
        assert_eq!(h.owner_of(&p), nobody, "{}", p.display());
    }
}

#[test]
fn usage_errors_and_panics_defer() {
    let h = Home::new();
    let r = h.run(&["--no-such-flag"], b"Subject: x\n\n");
    assert_eq!(r.code, 75);
    assert!(r.first_line().starts_with("4.3.5 "), "{}", r.stderr);

    let mut c = h.command(&[]);
    c.env("DELIVER_TEST_PANIC", "1");
    let r = run_cmd(c, &msg("Subject: x\n", "x\n"));
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(
        r.stderr
            .lines()
            .next()
            .unwrap()
            .starts_with("4.3.0 deliver: internal error"),
        "{}",
        r.stderr
    );
}

trait DeliveredPath {
    fn delivered_path(&self, folder: &str) -> std::path::PathBuf;
}

impl DeliveredPath for Home {
    fn delivered_path(&self, folder: &str) -> std::path::PathBuf {
        let rel = if folder.is_empty() {
            "new".to_string()
        } else {
            format!(".{folder}/new")
        };
        self.files_in(&rel)
            .into_iter()
            .next()
            .expect("a delivered file")
    }
}

#[test]
fn disk_full_defers_and_leaves_nothing() {
    if !is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let mut h = Home::new();
    let _mount = maildir_on_tmpfs(&mut h, "small", "size=256k,mode=0777");
    // Fits: delivered.
    assert_eq!(h.deliver(&msg("Subject: small\n", "x\n")).code, 0);
    // Does not fit: ENOSPC while spooling.
    let big = msg("Subject: big\n", &"0123456789abcdef\n".repeat(40_000));
    let r = h.deliver(&big);
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.first_line().starts_with("4.3.1 "), "{}", r.stderr);
    assert!(
        r.first_line().contains("No space left on device"),
        "{}",
        r.stderr
    );
    assert_eq!(h.count(), 1, "only the small message is visible");
    assert!(
        h.files_in("tmp").is_empty(),
        "the partial file was not removed"
    );
}
