//! Filters and pipes through the binary, against real parts: a real
//! SpamAssassin `spamd` through `spamc`, filters that misbehave (hang,
//! crash, write nothing, write a gigabyte), pipes by exit status, and a
//! real Dovecot IMAP server reading the flags of a filed message.
//! deliver.rules(5), PROGRAMS, is the specification.

mod util;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use util::*;

/// GTUBE, the test string every SpamAssassin scores as spam.
const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// Spam flagged by the filter goes to Junk.
const SPAM_ROUTING: &str = "[spam]\njunk_folder = \"Junk\"\n";

fn gtube() -> Vec<u8> {
    msg(
        "From: someone@example.net\nTo: user@example.com\nSubject: buy now\nMessage-ID: <gtube@example.net>\n",
        &format!("{GTUBE}\n"),
    )
}

fn ham() -> Vec<u8> {
    msg(
        "From: friend@example.net\nTo: user@example.com\nSubject: lunch\nMessage-ID: <ham@example.net>\n",
        "See you at noon.\n",
    )
}

/// A home whose system rules route spam and set the program limits, and
/// whose user rules are `user`.
fn home(settings: &str, user: &str) -> Home {
    let mut h = Home::new();
    h.system(&format!("[settings]\n{settings}\n{SPAM_ROUTING}"));
    h.user(user);
    h
}

/// A user rule that passes every message (all have a From) through `argv`.
fn filter_rule(argv: &[&str]) -> String {
    let argv: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[[rule]]\nname = \"through\"\nheader = \"From\"\nfilter = [{}]\n",
        argv.join(", ")
    )
}

/// The arguments of a delivery, with the log on stderr.
const ARGS: [&str; 5] = [
    "--log-stderr",
    "-f",
    "sender@example.org",
    "-a",
    "user@example.com",
];

/// The binary with `args`, run as local(8) runs it: `USER` and `HOME`
/// name the recipient (the programs' home is the test home).
fn command(h: &Home, args: &[&str]) -> std::process::Command {
    let mut c = h.command(args);
    c.env("USER", nobody());
    c
}

/// The name of the user deliveries run as.
fn nobody() -> String {
    let (uid, _) = runner();
    nix::unistd::User::from_uid(uid.into())
        .unwrap()
        .expect("the runner has a name")
        .name
}

/// One delivery of `input`, with the log on stderr.
fn deliver(h: &Home, input: &[u8]) -> Run {
    run_cmd(command(h, &ARGS), input)
}

/// The log lines of a run (deliver writes them to stderr in tests).
fn log(r: &Run) -> String {
    r.stderr
        .lines()
        .filter(|l| l.starts_with("deliver: "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Exactly `input` (without its From_ line) in the Inbox, nothing
/// elsewhere, nothing left in tmp/, exit 0.
fn delivered_unchanged(h: &Home, r: &Run, input: &[u8]) {
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d = h.delivered();
    assert_eq!(d.keys().collect::<Vec<_>>(), [""], "{d:?}\n{}", r.stderr);
    assert_eq!(d[""].len(), 1);
    assert!(
        d[""][0] == without_from(input),
        "the Inbox copy differs from the original"
    );
    assert!(h.files_in("tmp").is_empty(), "tmp/ not empty");
}

#[test]
fn spamc_files_gtube_into_junk_and_a_stopped_spamd_fails_open() {
    let mut spamd = spamd::Spamd::start();
    let port = spamd.port.to_string();
    // -x: spamc exits non-zero when spamd cannot be reached (its default
    // is to copy the message through and exit 0, which deliver could not
    // tell from a verdict); -l: its errors on stderr, not syslog; one
    // connection attempt, not three.
    let rule = filter_rule(&[
        "spamc",
        "-x",
        "-l",
        "--connect-retries",
        "1",
        "-d",
        "127.0.0.1",
        "-p",
        &port,
    ]);
    let h = home("program_time_limit = 60", &rule);

    let r = deliver(&h, &gtube());
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, spamd.log());
    let d = h.delivered();
    assert_eq!(
        d.keys().collect::<Vec<_>>(),
        ["Junk"],
        "{d:?}\n{}",
        r.stderr
    );
    let junk = String::from_utf8_lossy(&d["Junk"][0]).into_owned();
    assert!(junk.contains("X-Spam-Flag: YES"), "{junk}");

    let h = home("program_time_limit = 60", &rule);
    let r = deliver(&h, &ham());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d = h.delivered();
    assert_eq!(d.keys().collect::<Vec<_>>(), [""], "{d:?}\n{}", r.stderr);
    let inbox = String::from_utf8_lossy(&d[""][0]).into_owned();
    assert!(inbox.contains("X-Spam-Status: No"), "{inbox}");

    spamd.stop();
    let h = home("program_time_limit = 60", &rule);
    let r = deliver(&h, &gtube());
    delivered_unchanged(&h, &r, &gtube());
    let l = log(&r);
    assert!(l.contains("through"), "the log names the rule: {l}");
    assert!(
        l.to_lowercase().contains("connection refused"),
        "the log says why (spamc's stderr): {l}"
    );
}

/// A filter that misbehaves: the original is delivered unchanged, exit 0,
/// the log says why, and deliver's memory stays bounded.
fn misbehaving(settings: &str, argv: &[&str], why: &str) {
    let h = home(settings, &filter_rule(argv));
    let input = gtube();
    let (r, rss_kib) = run_measured(command(&h, &ARGS), &input);
    delivered_unchanged(&h, &r, &input);
    let l = log(&r);
    assert!(l.contains(why), "want {why:?} in the log: {l}");
    eprintln!("max RSS of deliver and the programs it waited for: {rss_kib} KiB");
    assert!(rss_kib < 100 * 1024, "max RSS {rss_kib} KiB");
}

#[test]
fn a_filter_that_hangs_is_killed_at_the_time_limit() {
    misbehaving(
        "program_time_limit = 2",
        &["sh", "-c", "cat >/dev/null; sleep 100"],
        "time limit of 2 s",
    );
}

#[test]
fn a_filter_that_crashes_fails_open() {
    misbehaving(
        "",
        // `$$$$`: program arguments are templates (deliver.rules(5)), where
        // `$$` is a `$`; the shell gets `$$`, its own process id.
        &["sh", "-c", "head -c 20; kill -SEGV $$$$"],
        "killed by signal SIGSEGV",
    );
}

#[test]
fn a_filter_that_writes_nothing_fails_open() {
    misbehaving("", &["sh", "-c", "cat >/dev/null"], "wrote nothing");
}

#[test]
fn a_filter_that_writes_a_gigabyte_is_cut_at_the_output_limit() {
    // A message's start, then 1 GB: spooled to disk up to the limit (the
    // default, 64 MiB), never into memory.
    misbehaving(
        "",
        &["sh", "-c", "cat; yes | head -c 1G"],
        "output limit of 67108864 bytes",
    );
}

#[test]
fn a_filter_that_writes_a_gigabyte_of_zeros_is_not_a_message() {
    misbehaving("", &["head", "-c", "1G", "/dev/zero"], "not a message");
}

#[test]
fn a_filter_that_cannot_start_fails_open() {
    misbehaving("", &["/nonexistent/filter"], "/nonexistent/filter");
}

/// A home with a pipe rule to `~/bin/prog`, a shell script that saves its
/// input, environment and working directory, then exits with `code`.
fn pipe_home(code: i32) -> Home {
    let h = home(
        "",
        "[[rule]]\nname = \"to-prog\"\nheader = \"From\"\npipe = [\"~/bin/prog\", \"arg one\"]\n",
    );
    let bin = h.home.join("bin");
    fs::create_dir(&bin).unwrap();
    let prog = bin.join("prog");
    fs::write(
        &prog,
        format!(
            "#!/bin/sh\ncat > \"$HOME/piped\"\nenv > \"$HOME/env\"\npwd > \"$HOME/cwd\"\necho \"$1\" > \"$HOME/arg\"\nexit {code}\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&prog, fs::Permissions::from_mode(0o755)).unwrap();
    chown_tree(&bin, h.uid, h.gid);
    h
}

#[test]
fn a_pipe_that_exits_0_takes_the_message() {
    let h = pipe_home(0);
    let input = ham();
    let mut c = command(
        &h,
        &[
            "--log-stderr",
            "-f",
            "sender@example.org",
            "-a",
            "user+tag@example.com",
        ],
    );
    c.env("DELIVER_TEST_SECRET", "leaked");
    let r = run_cmd(c, &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(h.count(), 0, "a delivered pipe files nothing");
    assert!(h.files_in("cur").is_empty());
    assert!(h.files_in("tmp").is_empty(), "tmp/ not empty");
    let piped = fs::read(h.home.join("piped")).unwrap();
    assert!(
        piped == without_from(&input),
        "the program got another message"
    );
    let read = |n: &str| fs::read_to_string(h.home.join(n)).unwrap();
    assert_eq!(read("arg"), "arg one\n");
    assert_eq!(read("cwd").trim_end(), h.home.to_str().unwrap());
    let env = read("env");
    let home = format!("HOME={}", h.home.display());
    let user = format!("USER={}", nobody());
    let logname = format!("LOGNAME={}", nobody());
    for want in [
        "SENDER=sender@example.org",
        "RECIPIENT=user+tag@example.com",
        "LOCAL=user+tag",
        "DOMAIN=example.com",
        "PATH=/usr/local/bin:/usr/bin:/bin",
        home.as_str(),
        user.as_str(),
        logname.as_str(),
    ] {
        assert!(env.lines().any(|l| l == want), "want {want}: {env}");
    }
    assert!(!env.contains("DELIVER_TEST_SECRET"), "{env}");
}

#[test]
fn a_pipe_that_exits_75_defers_with_nothing_filed() {
    let h = pipe_home(75);
    let r = deliver(&h, &ham());
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.first_line().starts_with("4."), "{}", r.stderr);
    assert_eq!(h.count(), 0);
    assert!(h.files_in("cur").is_empty());
    assert!(h.files_in("tmp").is_empty(), "tmp/ not empty");
}

#[test]
fn a_pipe_that_fails_files_into_the_inbox() {
    let h = pipe_home(1);
    let input = ham();
    let r = deliver(&h, &input);
    delivered_unchanged(&h, &r, &input);
    let l = log(&r);
    assert!(l.contains("to-prog") && l.contains("status 1"), "{l}");
}

#[test]
fn dovecot_shows_a_message_filed_as_seen_with_the_seen_flag() {
    if !is_root() {
        eprintln!("skipped: Dovecot's master needs root");
        return;
    }
    let h = home(
        "",
        "[[rule]]\nname = \"notifications\"\nheader = \"From\"\nmatch = \"notifications@service\\\\.example\"\nfolder = \"Notifications\"\nflags = [\"seen\", \"flagged\"]\n",
    );
    let note = msg(
        "From: notifications@service.example\nTo: user@example.com\nSubject: your build passed\n",
        "ok\n",
    );
    let r = deliver(&h, &note);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = deliver(&h, &ham());
    assert_eq!(r.code, 0, "{}", r.stderr);

    let dovecot = dovecot::Dovecot::start(&h.maildir, h.uid, h.gid);
    let mut imap = dovecot.login();
    let flags = imap.flags("Notifications", 1);
    assert!(flags.contains("\\Seen"), "{flags}\n{}", dovecot.log());
    assert!(flags.contains("\\Flagged"), "{flags}");
    let flags = imap.flags("INBOX", 1);
    assert!(!flags.contains("\\Seen"), "{flags}");
    imap.command("LOGOUT");
}
