//! Exit-status audit: every place in src/ that ends a delivery with a
//! failure, driven through the real binary, against the table in
//! src/output/exit.rs: 0 delivered or discarded, 75 and a `4.x.x` line for
//! anything a retry could fix, 77 and a `5.x.x` line for a reject.
//!
//! Sites driven elsewhere are listed here with the test that drives them,
//! so that this file is the index of the audit:
//!
//! | site                                  | test                                           |
//! |---------------------------------------|------------------------------------------------|
//! | maildir.rs: cannot open the parent    | delivery.rs missing_home_defers                |
//! | maildir.rs: create in tmp/ fails      | delivery.rs unwritable_maildir_defers          |
//! | maildir.rs: new/ a symlink            | delivery.rs symlinked_maildir_parts_...        |
//! | maildir.rs: fsync root/new, link      | faults.rs failed_system_calls_..., every_...   |
//! | maildir.rs: reopen tmp (PREPEND)      | faults.rs every_failing_call_... (openat)      |
//! | maildir.rs: folder, transient errno   | faults.rs every_failing_call_...               |
//! | privs.rs: password lookup fails       | faults.rs every_failing_call_... (openat)      |
//! | privs.rs: root without -d             | delivery.rs root_needs_dash_d_...              |
//! | run.rs: system rules unreadable/bad   | delivery.rs unreadable_or_missing_..., broken_ |
//! | run.rs: user rules, transient errno   | faults.rs too_few_file_descriptors_...         |
//! | run.rs: spooling, fsync tmp, headers  | faults.rs, delivery.rs disk_full_...           |
//! | run.rs: reject and defer decisions    | delivery.rs rule_actions_..., access_delivery  |
//! | main.rs: usage error, panic           | delivery.rs usage_errors_and_panics_defer      |
//! | main.rs: arguments not UTF-8          | limits.rs arguments_that_are_not_utf8_defer    |
//! | main.rs: allocation fails (RLIMIT_AS) | limits.rs running_out_of_address_space_...     |
//! | run.rs: write past RLIMIT_FSIZE       | limits.rs a_file_size_limit_below_the_...      |
//! | inflight.rs: time limit passed        | limits.rs a_delivery_past_its_time_limit_...,  |
//! |                                       | the_time_limit_never_undoes_a_commit           |
//! | privs.rs: CString::new fails          | unreachable: argv cannot hold a NUL byte       |

mod util;

use std::os::unix::process::CommandExt;
use std::process::Command;
use util::*;

/// One row: what was run, the exit status and the start of the first line.
fn expect(what: &str, r: &Run, code: i32, status: &str) {
    assert_eq!(r.code, code, "{what}: {}", r.stderr);
    if code == 0 {
        assert!(r.stderr.is_empty(), "{what}: {}", r.stderr);
    } else {
        let first = r.first_line();
        assert!(
            first.starts_with(status),
            "{what}: want {status:?}: {}",
            r.stderr
        );
        let class = if code == 75 { '4' } else { '5' };
        let word = first.split(' ').next().unwrap();
        assert!(
            deliver::output::exit::valid_status(word, class),
            "{what}: {word:?} is not a {class}.x.x status"
        );
    }
}

#[test]
fn maildir_paths_that_cannot_be_used() {
    let mut h = Home::new();
    let input = msg("Subject: x\n", "x\n");
    // A Maildir path without a last component.
    h.maildir = "/".into();
    expect(
        "--maildir /",
        &h.deliver(&input),
        75,
        "4.3.5 bad Maildir path",
    );
    // A regular file where the Maildir should be.
    h.maildir = h.home.join("file");
    std::fs::write(&h.maildir, "").unwrap();
    chown_tree(&h.maildir, h.uid, h.gid);
    expect("Maildir is a file", &h.deliver(&input), 75, "4.2.0 ");
    // A regular file where tmp/ should be.
    let h = Home::new();
    assert_eq!(h.deliver(&input).code, 0);
    std::fs::remove_dir(h.maildir.join("tmp")).unwrap();
    std::fs::write(h.maildir.join("tmp"), "").unwrap();
    expect("tmp is a file", &h.deliver(&input), 75, "4.2.0 ");
}

#[test]
fn message_that_cannot_be_read() {
    // Standard input is a directory: read(2) fails with EISDIR.
    let h = Home::new();
    let mut c = h.command(&["-f", "a@b"]);
    c.stdin(std::fs::File::open("/").unwrap());
    let out = c.output().unwrap();
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    expect("stdin is a directory", &r, 75, "4.3.0 reading the message");
    assert_eq!(h.count(), 0);
    assert!(h.files_in("tmp").is_empty());
}

#[test]
fn users_that_cannot_be_delivered_to() {
    let input = msg("Subject: x\n", "x\n");
    let h = Home::new();
    if is_root() {
        for (d, status) in [
            (
                "no-such-user-deliver",
                "4.3.5 -d no-such-user-deliver: no such user",
            ),
            ("root", "4.3.5 -d root: refusing"),
        ] {
            let mut c = Command::new(BIN);
            c.args(["-d", d, "--maildir"]).arg(&h.maildir).env_clear();
            expect(d, &run_cmd(c, &input), 75, status);
        }
        // The user switch itself fails.
        for call in ["setgroups", "setgid", "setuid"] {
            let mut c = Command::new("strace");
            c.args(["-f", "-qq", "-o", "/dev/null", "-e"])
                .arg(format!("trace={call}"))
                .arg("-e")
                .arg(format!("inject={call}:error=EPERM"))
                .args(["--", BIN, "-d", "nobody", "--maildir"])
                .arg(&h.maildir)
                .env_clear();
            if Command::new("strace").arg("-V").output().is_ok() {
                let r = run_cmd(c, &input);
                let want = if call == "setgroups" {
                    "4.3.0 initgroups"
                } else {
                    "4.3.0 "
                };
                expect(call, &r, 75, want);
            }
        }
        // A uid without a password entry and no HOME: no Maildir known.
        let mut c = Command::new(BIN);
        c.args(["-f", "a@b"])
            .env_clear()
            .current_dir("/")
            .uid(54321)
            .gid(54321);
        expect(
            "no home",
            &run_cmd(c, &input),
            75,
            "4.3.5 no home directory known",
        );
    }
    // -d naming another user without root.
    let mut c = h.command(&["-d", "root"]);
    if !is_root() {
        c = h.command(&["-d", "no-such-user-deliver"]);
    }
    expect("-d other user", &run_cmd(c, &input), 75, "4.3.5 -d ");
    assert_eq!(h.count(), 0);
}

#[test]
fn table_lookups_that_fail_at_delivery() {
    // A regexp result that substitutes an empty group is an empty result:
    // a lookup error. System table: defer (4.3.0). User table: skipped.
    let input = msg("Subject: x\n", "x\n");
    let mut h = Home::new();
    let m = h.file("empty.regexp", "/^(x*)a@b$/ $1\n");
    h.system(&format!(
        "[access]\nsender = [\"regexp:{}\"]\n",
        m.display()
    ));
    expect(
        "empty result",
        &h.run(&["-f", "a@b"], &input),
        75,
        "4.3.0 map lookup failed",
    );
    assert_eq!(h.count(), 0);

    let h = Home::new();
    let m = h.file("empty.regexp", "/^(x*)a@b$/ $1\n");
    h.user(&format!(
        "[access]\nsender = [\"regexp:{}\"]\n",
        m.display()
    ));
    expect("user empty result", &h.run(&["-f", "a@b"], &input), 0, "");
    assert_eq!(h.count(), 1);

    // A result naming a table: smtpd's server configuration error.
    let mut h = Home::new();
    let m = h.file("t", "a@b hash:/etc/postfix/other\n");
    h.system(&format!(
        "[access]\nsender = [\"texthash:{}\"]\n",
        m.display()
    ));
    expect("table result", &h.run(&["-f", "a@b"], &input), 75, "4.3.5 ");

    // Reject and defer results keep their class whatever the text says.
    let mut h = Home::new();
    let m = h.file(
        "t",
        "r@b REJECT 4.7.1 looks temporary\nd@b DEFER 5.7.1 looks permanent\n",
    );
    h.system(&format!(
        "[access]\nsender = [\"texthash:{}\"]\n",
        m.display()
    ));
    expect(
        "reject 4xx text",
        &h.run(&["-f", "r@b"], &input),
        77,
        "5.7.1 ",
    );
    expect(
        "defer 5xx text",
        &h.run(&["-f", "d@b"], &input),
        75,
        "4.7.1 ",
    );
    assert_eq!(h.count(), 0);
}

#[test]
fn only_three_exit_statuses_whatever_the_arguments() {
    // Odd command lines never exit with anything but 0, 75 or 77 (clap's
    // own 2 would make Postfix bounce).
    let h = Home::new();
    let input = msg("Subject: x\n", "x\n");
    for args in [
        vec!["-f"],
        vec!["-a"],
        vec!["--format", "xml"],
        vec!["-d"],
        vec!["check", "-f", "x"],
        vec!["extra", "positional"],
        vec!["--maildir"],
        vec!["-f", "a", "-f", "b"],
    ] {
        let r = h.run(&args, &input);
        assert!(
            matches!(r.code, 0 | 75 | 77),
            "{args:?}: exit {}: {}",
            r.code,
            r.stderr
        );
        if r.code == 75 {
            expect(&format!("{args:?}"), &r, 75, "4.3.5 ");
        }
    }
}

#[test]
fn a_mistyped_option_defers_and_names_the_nearest() {
    // A typo in main.cf's mailbox_command: Postfix defers (75), and the
    // status line it logs says what was meant. Nothing is delivered.
    let h = Home::new();
    let input = msg("Subject: x\n", "x\n");
    for (args, want) in [
        (
            &["--tset", "-f", "a@b", "-a", "c@d"][..],
            "did you mean '--test'?",
        ),
        (&["-f", "a@b", "--rulse", "/r"], "did you mean '--rules'?"),
        (&["--test", "--format", "jsno"], "did you mean 'json'?"),
        (&["chek"], "did you mean 'check'?"),
    ] {
        let r = h.run(args, &input);
        expect(&format!("{args:?}"), &r, 75, "4.3.5 ");
        assert!(r.first_line().contains(want), "{args:?}: {}", r.stderr);
        assert_eq!(h.count(), 0);
    }
}
