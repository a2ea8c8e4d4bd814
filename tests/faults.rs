//! Faults of the system around a delivery: the disk fills up, a write, an
//! fsync or a link fails, the Maildir is read-only, the home is missing, a
//! table cannot be read, file descriptors run out. Each must end in exit 75
//! with a `4.x.x` line and nothing visible in new/, or in a complete
//! delivery (exit 0). See also tests/delivery.rs (disk full while spooling,
//! unwritable tmp/, missing Maildir parent, unreadable system rules).
//!
//! Single system calls are failed with `strace -e inject=` (installed by
//! scripts/test), which is the real binary seeing the real errno.

mod util;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use util::*;

fn have_strace() -> bool {
    Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `h.command(args)` under strace, failing the system call as
/// `inject` says (strace's `-e inject=` syntax, e.g. `fsync:error=ENOSPC:when=2`).
fn traced(h: &Home, inject: &str, args: &[&str], input: &[u8]) -> Run {
    strace(
        h,
        &["-o", "/dev/null", "-e", &format!("inject={inject}")],
        inject,
        args,
        input,
    )
}

/// How many times a delivery makes the system call `call`.
fn count_calls(h: &Home, call: &str, args: &[&str], input: &[u8]) -> usize {
    let out = h.home.join(format!("strace-{call}"));
    let r = strace(h, &["-o", out.to_str().unwrap()], call, args, input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let n = fs::read_to_string(&out)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with(call) || l.contains(&format!(" {call}(")))
        .count();
    fs::remove_file(&out).unwrap();
    n
}

fn strace(h: &Home, opts: &[&str], what: &str, args: &[&str], input: &[u8]) -> Run {
    let inner = h.command(args);
    let call = what.split(':').next().unwrap();
    let mut c = Command::new("strace");
    c.args(["-f", "-qq"])
        .args(opts)
        .arg("-e")
        .arg(format!("trace={call}"))
        .arg("--")
        .arg(inner.get_program())
        .args(inner.get_args());
    c.env_clear();
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.current_dir("/");
    if is_root() {
        c.uid(h.uid).gid(h.gid);
    }
    run_cmd(c, input)
}

/// A Maildir that has had one delivery (so it and .Junk exist), and the
/// files it holds now.
fn warm() -> Home {
    let h = Home::new();
    assert_eq!(h.deliver(&msg("Subject: first\n", "x\n")).code, 0);
    assert_eq!(
        h.deliver(&msg("Subject: first junk\nX-Spam-Flag: YES\n", "x\n"))
            .code,
        0
    );
    h
}

#[test]
fn failed_system_calls_defer_and_leave_nothing() {
    if !have_strace() {
        eprintln!("skipped: strace not installed (scripts/test installs it)");
        return;
    }
    // (injection, status prefix); nothing may be visible afterwards.
    let cases = [
        // The first write of the message into tmp/.
        ("write:error=ENOSPC:when=1", "4.3.1 "),
        ("write:error=EIO:when=1", "4.3.0 "),
        ("write:error=EDQUOT:when=1", "4.2.2 "),
        // fsync of the tmp/ file, then of new/ after the link.
        ("fsync:error=ENOSPC:when=1", "4.3.1 "),
        ("fsync:error=EIO:when=1", "4.3.0 "),
        ("fsync:error=ENOSPC:when=2", "4.3.1 "),
        ("fsync:error=EIO:when=2", "4.2.0 "),
        // The link into new/.
        ("linkat:error=ENOSPC", "4.3.1 "),
        ("linkat:error=EIO", "4.2.0 "),
        // Every name taken, 16 times in a row.
        ("linkat:error=EEXIST", "4.2.0 no unique name free"),
    ];
    for (inject, status) in cases {
        for spam in [false, true] {
            let h = warm();
            let before = h.delivered();
            let extra = if spam { "X-Spam-Flag: YES\n" } else { "" };
            let input = msg(&format!("Subject: injected\n{extra}"), "body\n");
            let r = traced(&h, inject, &["-f", "a@b"], &input);
            let what = format!("{inject} (spam {spam})");
            assert_eq!(r.code, 75, "{what}: {}", r.stderr);
            assert!(
                r.first_line().starts_with(status),
                "{what}: want {status}: {}",
                r.stderr
            );
            assert_eq!(h.delivered(), before, "{what}: something became visible");
            assert!(h.files_in("tmp").is_empty(), "{what}: tmp/ not cleaned");
        }
    }
}

#[test]
fn failures_that_cannot_lose_mail_still_deliver() {
    if !have_strace() {
        eprintln!("skipped: strace not installed (scripts/test installs it)");
        return;
    }
    // No hard links (EPERM, as on some network and FUSE file systems):
    // rename without replacing instead. Removing the tmp/ name fails: the
    // message is delivered, the tmp/ file is swept later.
    for inject in [
        "linkat:error=EPERM",
        "linkat:error=EOPNOTSUPP",
        "unlinkat:error=EIO:when=1",
    ] {
        let h = warm();
        let input = msg("Subject: injected\n", "body\n");
        let r = traced(&h, inject, &["-f", "a@b"], &input);
        assert_eq!(r.code, 0, "{inject}: {}", r.stderr);
        let d = h.delivered();
        assert_eq!(d[""].len(), 2, "{inject}");
        assert!(d[""].contains(&without_from(&input).to_vec()), "{inject}");
    }
}

#[test]
fn read_only_maildir_defers() {
    if !is_root() {
        eprintln!("skipped: a read-only bind mount needs root");
        return;
    }
    let h = warm();
    let before = h.delivered();
    let ok = Command::new("mount")
        .args(["--bind"])
        .arg(&h.maildir)
        .arg(&h.maildir)
        .status()
        .unwrap()
        .success()
        && Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(&h.maildir)
            .status()
            .unwrap()
            .success();
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _g = Unmount(h.maildir.clone());
    assert!(ok, "read-only bind mount failed");
    for input in [
        msg("Subject: x\n", "x\n"),
        msg("Subject: x\nX-Spam-Flag: YES\n", "x\n"),
    ] {
        let r = h.deliver(&input);
        assert_eq!(r.code, 75, "{}", r.stderr);
        assert!(r.first_line().starts_with("4.2.0 "), "{}", r.stderr);
        assert!(
            r.first_line().contains("Read-only file system"),
            "{}",
            r.stderr
        );
        assert_eq!(h.delivered(), before);
    }
}

#[test]
fn home_from_the_password_entry_missing_defers() {
    if !is_root() {
        eprintln!("skipped: needs root to run as -d nobody");
        return;
    }
    let home = nix::unistd::User::from_name("nobody").unwrap().unwrap().dir;
    if home.exists() {
        eprintln!("skipped: nobody's home {} exists", home.display());
        return;
    }
    let mut c = Command::new(BIN);
    c.args(["-d", "nobody", "-f", "a@b"]).env_clear();
    let r = run_cmd(c, &msg("Subject: x\n", "x\n"));
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(
        r.first_line().starts_with("4.2.0 cannot open "),
        "{}",
        r.stderr
    );
    assert!(r.first_line().contains(&*home.to_string_lossy()));
}

#[test]
fn unreadable_tables_and_rules_files() {
    if !is_root() {
        eprintln!("skipped: deliveries must run as a user the file is hidden from");
        return;
    }
    // A system table deliver cannot read: defer, naming it.
    let mut h = Home::new();
    let m = h.file("sender_access", "x.example REJECT\n");
    fs::set_permissions(&m, fs::Permissions::from_mode(0o000)).unwrap();
    h.system(&format!(
        "[access]\nsender = [\"texthash:{}\"]\n",
        m.display()
    ));
    let r = h.deliver(&msg("Subject: x\n", "x\n"));
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(
        r.first_line().starts_with("4.3.5 system rules: "),
        "{}",
        r.stderr
    );
    assert!(r.first_line().contains("Permission denied"), "{}", r.stderr);
    assert_eq!(h.count(), 0);

    // The same table named by the user: the user's file is ignored, mail
    // is delivered by the system rules.
    let h = Home::new();
    let m = h.file("sender_access", "a@b REJECT\n");
    fs::set_permissions(&m, fs::Permissions::from_mode(0o000)).unwrap();
    h.user(&format!(
        "[access]\nsender = [\"texthash:{}\"]\n[[rule]]\nheader = \"Subject\"\nmatch = \"x\"\nfolder = \"Mine\"\n",
        m.display()
    ));
    let r = h.run(&["-f", "a@b", "--log-stderr"], &msg("Subject: x\n", "x\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("ignoring user rules"), "{}", r.stderr);
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
    assert_eq!(h.delivered().keys().collect::<Vec<_>>(), vec![""]);

    // A user rules file the user cannot read (mode 0000): ignored.
    let h = Home::new();
    h.user("[[rule]]\nheader = \"Subject\"\nmatch = \"x\"\nreject = \"no\"\n");
    fs::set_permissions(&h.user_rules, fs::Permissions::from_mode(0o000)).unwrap();
    let r = h.run(&["--log-stderr"], &msg("Subject: x\n", "x\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
    assert_eq!(h.count(), 1);
}

#[test]
fn too_few_file_descriptors_defer_or_deliver_completely() {
    // With 3 descriptors the dynamic loader itself fails (exit 127) before
    // deliver runs; from 4 on every outcome must be a complete delivery to
    // the folder the rules name, or a deferral with nothing visible.
    let mut h = Home::new();
    let m = h.file("sender_access", "a@b FOLDER Mapped\n");
    h.system(&format!(
        "[spam]\njunk_threshold = 5.0\n[access]\nsender = [\"texthash:{}\"]\n",
        m.display()
    ));
    h.user("[[rule]]\nheader = \"Subject\"\nmatch = \"^fd\"\nfolder = \"Mine\"\n");
    let mut outcomes = Vec::new();
    for limit in 4..=24u64 {
        let before = h.count();
        let input = msg(&format!("Subject: fd {limit}\n"), "body\n");
        let mut c = h.command(&["-f", "a@b"]);
        unsafe {
            c.pre_exec(move || {
                let rl = nix::libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &rl) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let r = run_cmd(c, &input);
        match r.code {
            0 => {
                let d = h.delivered();
                assert!(
                    d.get("Mine")
                        .is_some_and(|v| v.contains(&without_from(&input).to_vec())),
                    "limit {limit}: exit 0 but not in the user's folder: {:?} {}",
                    d.keys().collect::<Vec<_>>(),
                    r.stderr
                );
                assert_eq!(h.count(), before + 1, "limit {limit}");
            }
            75 => {
                assert!(
                    r.first_line().starts_with("4."),
                    "limit {limit}: {}",
                    r.stderr
                );
                assert_eq!(h.count(), before, "limit {limit}: {}", r.stderr);
            }
            code => panic!("limit {limit}: exit {code}: {}", r.stderr),
        }
        outcomes.push((limit, r.code));
    }
    // The sweep went from failing to delivering.
    assert_eq!(outcomes.first().unwrap().1, 75, "{outcomes:?}");
    assert_eq!(outcomes.last().unwrap().1, 0, "{outcomes:?}");
}

/// A Home whose system maps prepend a header and file the sender into a
/// folder, and whose user rules file it into another; the user's decision
/// is final.
fn layered() -> Home {
    let mut h = Home::new();
    let p = h.file("prepend_access", "a@b PREPEND X-Tag: swept\n");
    let m = h.file("sender_access", "a@b FOLDER Mapped\n");
    h.system(&format!(
        "[spam]\njunk_threshold = 5.0\n[access]\nsender = [\"texthash:{}\", \"texthash:{}\"]\n",
        p.display(),
        m.display()
    ));
    h.user("[[rule]]\nheader = \"Subject\"\nmatch = \"^sweep\"\nfolder = \"Mine\"\n");
    h
}

#[test]
fn every_failing_call_defers_or_delivers_where_the_rules_say() {
    if !have_strace() {
        eprintln!("skipped: strace not installed (scripts/test installs it)");
        return;
    }
    // Fail the n-th call of each kind, for every n a delivery reaches, with
    // an error a retry could fix. Whatever fails, the outcome is a
    // deferral with nothing visible, or the message in the user's folder.
    let input = msg("Subject: sweep\n", "body\n");
    let args = ["-f", "a@b"];
    let (mut tried, mut loader) = (0, 0);
    for (call, errno) in [
        ("openat", "ENFILE"),
        ("openat", "EMFILE"),
        ("mkdirat", "ENOSPC"),
        ("fsync", "EIO"),
        ("statx", "EIO"),
        ("newfstatat", "EIO"),
        ("read", "EIO"),
        ("write", "ENOSPC"),
        ("flock", "ENOLCK"),
    ] {
        let n = count_calls(&layered(), call, &args, &input);
        assert!(n > 0, "{call} never made");
        for when in 1..=n {
            let h = layered();
            let inject = format!("{call}:error={errno}:when={when}");
            let r = traced(&h, &inject, &args, &input);
            tried += 1;
            match r.code {
                0 => {
                    let d = h.delivered();
                    assert_eq!(
                        d.get("Mine").map(Vec::len),
                        Some(1),
                        "{inject}: exit 0, not in the user's folder: {:?} {}",
                        d.keys().collect::<Vec<_>>(),
                        r.stderr
                    );
                    let want = [b"X-Tag: swept\n".as_slice(), without_from(&input)].concat();
                    assert_eq!(d["Mine"][0], want, "{inject}");
                    assert_eq!(h.count(), 1, "{inject}");
                }
                75 => {
                    assert!(r.first_line().starts_with("4."), "{inject}: {}", r.stderr);
                    assert_eq!(h.count(), 0, "{inject}: {}", r.stderr);
                    assert!(
                        h.files_in("tmp").is_empty(),
                        "{inject}: tmp/ not cleaned: {}",
                        r.stderr
                    );
                }
                // The dynamic loader's own calls, before deliver runs: out
                // of deliver's hands (see SECURITY.md).
                127 if r.stderr.contains("error while loading shared libraries") => {
                    assert_eq!(h.count(), 0);
                    loader += 1;
                }
                code => panic!("{inject}: exit {code}: {}", r.stderr),
            }
        }
    }
    eprintln!("{tried} injections, {loader} of them in the dynamic loader");
    assert!(tried - loader > 20, "only {tried} injections");
}
