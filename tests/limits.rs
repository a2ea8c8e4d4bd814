//! The limits of the process: its own time limit (`time_limit` in
//! `[settings]`), the address-space and file-size limits it is started
//! with, and arguments that are not UTF-8. Each must end in exit 75 with a
//! `4.x.x` status line and nothing left in tmp/ or new/, or in a complete
//! delivery (exit 0): never a signal, an abort (134) or a panic outside
//! the catch (101).

mod util;

use nix::libc::{self, __rlimit_resource_t as Resource};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;
use util::*;

/// Checks a run that must have deferred: exit 75, a status line starting
/// with `status`, nothing in tmp/ or new/.
fn deferred(what: &str, h: &Home, r: &Run, status: &str) {
    assert_eq!(r.code, 75, "{what}: {}", r.stderr);
    let first = r.first_line();
    assert!(
        first.starts_with(status),
        "{what}: want {status:?}: {}",
        r.stderr
    );
    let word = first.split(' ').next().unwrap();
    assert!(
        deliver::output::exit::valid_status(word, '4'),
        "{what}: {word:?} is not a 4.x.x status"
    );
    assert_eq!(h.count(), 0, "{what}: something was delivered");
    assert!(h.files_in("tmp").is_empty(), "{what}: tmp/ not cleaned");
}

/// `c` with a resource limit set (soft and hard) before exec.
fn with_limit(mut c: Command, resource: Resource, bytes: u64) -> Command {
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setrlimit is async-signal-safe and allocates nothing.
    unsafe {
        c.pre_exec(move || {
            if libc::setrlimit(resource, &lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    c
}

#[test]
fn a_delivery_past_its_time_limit_defers_and_leaves_nothing() {
    let mut h = Home::new();
    h.system("[settings]\ntime_limit = 1\n");
    // The sender stops half-way through the body and never closes.
    let mut input = msg("Subject: slow\n", "first line\n");
    input.extend_from_slice(&[b'x'; 100_000]);
    let c = h.command(&["-f", "a@b", "-a", "user@example.com"]);
    let r = run_cmd_within(c, &input, true, Duration::from_secs(60))
        .expect("still running after 60 s: no time limit");
    deferred(
        "stdin held open",
        &h,
        &r,
        "4.3.0 deliver: time limit of 1 s",
    );
    // The same message, sent whole, is delivered within the same limit.
    let c = h.command(&["-f", "a@b", "-a", "user@example.com"]);
    let r = run_cmd_within(c, &input, false, Duration::from_secs(60)).unwrap();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(h.count(), 1);
}

#[test]
fn time_limit_is_validated_where_it_is_written() {
    let input = msg("Subject: x\n", "x\n");
    for value in ["0", "-5", "86401", "\"5m\""] {
        let mut h = Home::new();
        h.system(&format!("[settings]\ntime_limit = {value}\n"));
        let r = h.deliver(&input);
        let path = h.system_rules.clone().unwrap();
        let at = format!("{}:2:14", path.display());
        deferred(
            &format!("time_limit = {value}"),
            &h,
            &r,
            "4.3.5 system rules: ",
        );
        assert!(r.stderr.contains(&at), "{value}: want {at}: {}", r.stderr);
        if !value.starts_with('"') {
            assert!(
                r.stderr.contains("time_limit must be"),
                "{value}: {}",
                r.stderr
            );
        }
    }
}

/// Starts a delivery that stops itself at `step` (a debug build's test
/// hook), waits until its time limit (`limit`, as the rules set it) has
/// passed, lets it go on, and returns its exit status and stderr. The limit
/// is a few seconds, not one: a loaded machine must reach the step before
/// it expires.
fn stopped_past_the_limit(h: &Home, step: &str, limit: Duration) -> (i32, String) {
    let mut c = h.command(&["-f", "a@b", "-a", "user@example.com"]);
    c.env("DELIVER_TEST_PAUSE_AT", step)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // Reaped below with waitpid(2), which also sees it stop.
    #[allow(clippy::zombie_processes)]
    let mut child = c.spawn().unwrap();
    let pid = Pid::from_raw(child.id() as i32);
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(&msg("Subject: x\n", "x\n"));
    drop(stdin);
    let st = waitpid(pid, Some(WaitPidFlag::WUNTRACED)).unwrap();
    assert!(
        matches!(st, WaitStatus::Stopped(_, Signal::SIGSTOP)),
        "{step}: {st:?}"
    );
    // The limit passes while it is stopped: the timer's signal is pending
    // when it goes on.
    std::thread::sleep(limit + Duration::from_millis(500));
    kill(pid, Signal::SIGCONT).unwrap();
    let st = waitpid(pid, None).unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    match st {
        WaitStatus::Exited(_, code) => (code, err),
        st => panic!("{step}: {st:?}: {err}"),
    }
}

#[test]
fn the_time_limit_never_undoes_a_commit() {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: the test hooks are in debug builds only");
        return;
    }
    // Before the link into new/: the message is not delivered, so the
    // expiry defers and removes the tmp/ file.
    for step in ["tmp-created", "tmp-written", "tmp-synced"] {
        let mut h = Home::new();
        h.system("[settings]\ntime_limit = 3\n");
        let (code, err) = stopped_past_the_limit(&h, step, Duration::from_secs(3));
        let r = Run {
            code,
            stdout: String::new(),
            stderr: err,
        };
        deferred(step, &h, &r, "4.3.0 deliver: time limit");
    }
    // Linked into new/: the commit finishes and the delivery stands
    // (a 75 now would deliver it twice).
    for step in ["linked", "new-synced", "delivered"] {
        let mut h = Home::new();
        h.system("[settings]\ntime_limit = 3\n");
        let (code, err) = stopped_past_the_limit(&h, step, Duration::from_secs(3));
        assert_eq!(code, 0, "{step}: {err}");
        assert_eq!(h.count(), 1, "{step}");
        assert!(h.files_in("tmp").is_empty(), "{step}");
    }
}

#[test]
fn a_file_size_limit_below_the_message_defers_and_leaves_nothing() {
    const RLIMIT_FSIZE: Resource = libc::RLIMIT_FSIZE;
    let h = Home::new();
    // Spooling: the message is larger than the limit.
    let big = msg("Subject: big\n", &"0123456789abcdef\n".repeat(4096));
    let c = with_limit(h.command(&["-f", "a@b"]), RLIMIT_FSIZE, 16384);
    deferred("spooling", &h, &run_cmd(c, &big), "4.3.4 ");

    // PREPEND: the message fits, the copy with the added header does not.
    let mut h = Home::new();
    let m = h.file("sender_access", "tag.example PREPEND X-Tagged: yes\n");
    h.system(&format!(
        "[access]\nsender = [\"texthash:{}\"]\n",
        m.display()
    ));
    let body = "x".repeat(16384 - 200) + "\n";
    let input = msg("Subject: fits\n", &body);
    assert!(without_from(&input).len() <= 16384);
    let c = with_limit(
        h.command(&["-f", "a@tag.example"]),
        RLIMIT_FSIZE,
        without_from(&input).len() as u64,
    );
    deferred("PREPEND copy", &h, &run_cmd(c, &input), "4.3.4 ");
    // Without the limit the same message is delivered, with its header.
    let r = h.run(&["-f", "a@tag.example"], &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(h.count(), 1);
}

#[test]
fn running_out_of_address_space_defers_and_leaves_nothing() {
    const RLIMIT_AS: Resource = libc::RLIMIT_AS;
    // Forty rules that the message's Subject all triggers, and a header
    // block of 16 MiB: memory runs out at one step or another (loading
    // the rules, before the tmp/ file exists; reading the header block,
    // after) depending on the limit. Every limit in the sweep must give 0
    // or 75, never an abort. The sweep starts at the smallest limit at
    // which the binary starts at all: below it the dynamic loader fails
    // before deliver runs (SECURITY.md), and where that is depends on the
    // build, not on deliver's code.
    let mut h = Home::new();
    let mut rules = String::from("[settings]\nmax_header_bytes = 67108864\n");
    let mut subject = String::new();
    for i in 0..40 {
        rules.push_str(&format!(
            "[[rule]]\nname = \"r{i}\"\nheader = \"Subject\"\n\
             match = '(?i)\\b(foo{i}|bar{i}|baz{i}\\w+|qu+x{i}\\d{{3,}})\\b'\n\
             folder = \"F{i}\"\n"
        ));
        subject.push_str(&format!(" foo{i} baz{i}x quux{i}1234"));
    }
    h.system(&rules);
    let filler = format!("X-Filler: {}\n", "y".repeat(990)).repeat(16384);
    let input = msg(&format!("Subject:{subject}\n{filler}"), "body\n");
    let mut oom = 0;
    let mut delivered = 0;
    let floor = (4..=64)
        .find(|&mb| {
            let c = with_limit(h.bare_command(&["--version"]), RLIMIT_AS, (mb as u64) << 20);
            run_cmd(c, b"").code == 0
        })
        .expect("the binary starts with 64 MiB of address space");
    for mb in (floor..=floor + 36).step_by(4) {
        let c = with_limit(h.command(&["-f", "a@b"]), RLIMIT_AS, (mb as u64) << 20);
        let r = run_cmd(c, &input);
        let what = format!("RLIMIT_AS {mb} MiB");
        match r.code {
            0 => delivered += 1,
            75 => {
                assert!(
                    r.first_line().starts_with("4.3.0 deliver: out of memory"),
                    "{what}: {}",
                    r.stderr
                );
                oom += 1;
            }
            code => panic!("{what}: exit {code}: {}", r.stderr),
        }
        assert_eq!(h.count(), delivered, "{what}");
        assert!(h.files_in("tmp").is_empty(), "{what}: tmp/ not cleaned");
    }
    assert!(oom > 0, "no limit in the sweep ran out of memory");
    assert!(delivered > 0, "no limit in the sweep was enough");
}

#[test]
fn arguments_that_are_not_utf8_defer() {
    let h = Home::new();
    let input = msg("Subject: x\n", "x\n");
    let bad = OsStr::from_bytes(b"\xffbad\xfe");
    for opt in [
        "-f",
        "-a",
        "-d",
        "--client-address",
        "--client-hostname",
        "--helo",
        "--format",
    ] {
        for log_stderr in [false, true] {
            let mut c = h.command(&[]);
            if log_stderr {
                c.arg("--log-stderr");
            }
            c.arg(opt).arg(bad);
            let r = run_cmd(c, &input);
            deferred(
                &format!("{opt} (--log-stderr {log_stderr})"),
                &h,
                &r,
                "4.3.5 ",
            );
        }
    }
    // A bare argument that is not UTF-8 (no option takes it).
    let mut c = h.command(&["--log-stderr"]);
    c.arg(bad);
    deferred("bare", &h, &run_cmd(c, &input), "4.3.5 ");
}
