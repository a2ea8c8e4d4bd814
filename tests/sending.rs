//! Forward, vacation and duplicates through the real binary, with a
//! sendmail of the test's own (a shell script that keeps what it is given
//! in an outbox directory, or fails as told), real Maildirs, 64 concurrent
//! deliveries, and kill -9 at every step of a delivery with side effects.
//! tests/e2e/postfix.sh runs the same verbs through a real Postfix.

mod util;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use util::*;

/// What the fake sendmail was given: its arguments and the message.
#[derive(Debug)]
struct Sent {
    args: Vec<String>,
    message: String,
}

struct Setup {
    h: Home,
    dir: PathBuf,
}

impl Setup {
    /// A home whose system rules send through the test's sendmail, and
    /// `user` as the user's rules.
    fn new(user: &str) -> Setup {
        Setup::with_settings(user, "")
    }

    /// As `new`, with more `[settings]` lines.
    fn with_settings(user: &str, settings: &str) -> Setup {
        let mut h = Home::new();
        let dir = h._dir.path().join("mta");
        fs::create_dir(&dir).unwrap();
        fs::create_dir(dir.join("out")).unwrap();
        chown_tree(&dir, h.uid, h.gid);
        let script = dir.join("sendmail");
        fs::write(
            &script,
            format!(
                r#"#!/bin/sh
d={d}
for a in "$@"; do
    if [ -f "$d/fail-$a" ]; then cat >/dev/null; echo "refused $a" >&2; exit $(cat "$d/fail-$a"); fi
done
if [ -f "$d/fail" ]; then cat >/dev/null; echo "queue unavailable" >&2; exit $(cat "$d/fail"); fi
if [ -f "$d/hang" ]; then echo $$ > "$d/pid"; sleep 60; fi
n="$d/out/$(date +%s%N).$$"
{{ printf 'ARGS:'; for a in "$@"; do printf ' [%s]' "$a"; done; echo; cat; }} > "$n.tmp"
mv "$n.tmp" "$n"
"#,
                d = dir.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        h.system(&format!(
            "[settings]\nsendmail = \"{}\"\n{settings}",
            script.display()
        ));
        h.user(user);
        Setup { h, dir }
    }

    /// Makes sendmail exit with `code` (for every message, or for those
    /// to `to`); `None` takes it back.
    fn fail(&self, to: Option<&str>, code: Option<i32>) {
        let p = match to {
            Some(a) => self.dir.join(format!("fail-{a}")),
            None => self.dir.join("fail"),
        };
        match code {
            Some(c) => fs::write(p, c.to_string()).unwrap(),
            None => {
                let _ = fs::remove_file(p);
            }
        }
    }

    fn sent(&self) -> Vec<Sent> {
        let mut names: Vec<PathBuf> = fs::read_dir(self.dir.join("out"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_none_or(|e| e != "tmp"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| {
                let t = fs::read_to_string(p).unwrap();
                let (first, rest) = t.split_once('\n').unwrap();
                let args = first
                    .strip_prefix("ARGS: [")
                    .unwrap()
                    .strip_suffix(']')
                    .unwrap()
                    .split("] [")
                    .map(str::to_string)
                    .collect();
                Sent {
                    args,
                    message: rest.to_string(),
                }
            })
            .collect()
    }

    fn to(&self, addr: &str) -> Vec<Sent> {
        self.sent()
            .into_iter()
            .filter(|s| s.args.last().is_some_and(|a| a == addr))
            .collect()
    }

    fn run(&self, sender: &str, input: &[u8]) -> Run {
        self.h.run(
            &["-f", sender, "-a", "user@example.com", "--log-stderr"],
            input,
        )
    }
}

fn log_line(r: &Run) -> String {
    r.stderr
        .lines()
        .find(|l| l.contains(" action="))
        .unwrap_or_else(|| panic!("no log line in {}", r.stderr))
        .to_string()
}

const BOSS: &str = "From: Boss <boss@corp.example>\nTo: user@example.com\nSubject: budget\n";

#[test]
fn forward_keeps_the_sender_adds_the_marker_and_files_nothing() {
    let s = Setup::new("[[rule]]\nname = \"away\"\nforward = [\"new@elsewhere.example\"]\n");
    let input = msg(&format!("{BOSS}Message-ID: <f1@corp.example>\n"), "body\n");
    let r = s.run("boss@corp.example", &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(s.h.count(), 0, "nothing filed");
    let sent = s.to("new@elsewhere.example");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].args,
        [
            "-i",
            "-f",
            "boss@corp.example",
            "--",
            "new@elsewhere.example"
        ]
    );
    // The message byte for byte, one marker line in front.
    let mut want = b"X-Deliver-Forwarded: user@example.com\n".to_vec();
    want.extend_from_slice(without_from(&input));
    assert_eq!(sent[0].message.as_bytes(), &want[..]);
    assert!(log_line(&r).contains("action=forward forward=new@elsewhere.example:ok"));
}

#[test]
fn forward_copy_files_and_forwards() {
    let s = Setup::new(
        "[[rule]]\nname = \"boss\"\naddress = { header = \"From\", is = \"boss@corp.example\" }\n\
         forward = [\"phone@mobile.example\"]\ncopy = true\n",
    );
    let r = s.run("boss@corp.example", &msg(BOSS, "b\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(s.h.delivered()[""].len(), 1);
    assert_eq!(s.to("phone@mobile.example").len(), 1);
    // Not from the boss: filed, not forwarded.
    let r = s.run(
        "x@y.example",
        &msg("From: x@y.example\nSubject: s\n", "b\n"),
    );
    assert_eq!(r.code, 0);
    assert_eq!(s.h.delivered()[""].len(), 2);
    assert_eq!(s.sent().len(), 1);
}

#[test]
fn a_message_this_recipient_forwarded_is_filed_not_forwarded_again() {
    let s = Setup::new("[[rule]]\nname = \"all\"\nforward = [\"other@example.net\"]\n");
    let input = msg(
        &format!("X-Deliver-Forwarded: User@Example.com\n{BOSS}"),
        "looped\n",
    );
    let r = s.run("boss@corp.example", &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(s.sent().is_empty());
    assert_eq!(s.h.delivered()[""], vec![without_from(&input).to_vec()]);
    assert!(r.stderr.contains("forward loop"), "{}", r.stderr);
}

#[test]
fn a_refused_forward_defers_unless_a_copy_is_kept() {
    let s = Setup::new("[[rule]]\nname = \"all\"\nforward = [\"a@x.example\"]\n");
    s.fail(None, Some(75));
    let input = msg(BOSS, "b\n");
    let r = s.run("boss@corp.example", &input);
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(
        r.first_line().starts_with("4.3.0 forward to a@x.example"),
        "{}",
        r.stderr
    );
    assert_eq!(s.h.count(), 0);
    // sendmail missing altogether: a deferral too.
    s.fail(None, None);
    let script = s.dir.join("sendmail");
    fs::rename(&script, s.dir.join("sendmail.away")).unwrap();
    let r = s.run("boss@corp.example", &input);
    assert_eq!(r.code, 75, "{}", r.stderr);
    fs::rename(s.dir.join("sendmail.away"), &script).unwrap();
    // The retry: sent once.
    let r = s.run("boss@corp.example", &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(s.to("a@x.example").len(), 1);

    // With a copy kept, a refusal is a log line.
    let s = Setup::new("[[rule]]\nname = \"all\"\nforward = [\"a@x.example\"]\ncopy = true\n");
    s.fail(None, Some(69));
    let r = s.run("boss@corp.example", &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(s.h.count(), 1);
    assert!(r.stderr.contains("failed, a copy is kept"), "{}", r.stderr);
    assert!(log_line(&r).contains("forward=a@x.example:failed"));
}

#[test]
fn the_delivery_time_limit_kills_a_hanging_sendmail_too() {
    // sendmail's own limit is longer than the delivery's: the watchdog
    // that ends the delivery must end sendmail with it, or the forward
    // could still go out after the delivery deferred.
    let s = Setup::with_settings(
        "[[rule]]\nname = \"all\"\nforward = [\"a@x.example\"]\n",
        "time_limit = 2\nprogram_time_limit = 60\n",
    );
    fs::write(s.dir.join("hang"), "").unwrap();
    let r = s.run("boss@corp.example", &msg(BOSS, "b\n"));
    assert_eq!(r.code, 75, "{}", r.stderr);
    let pid: i32 = fs::read_to_string(s.dir.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Killed at the end whatever happens, so a failure leaves nothing.
    struct KillGroup(i32);
    impl Drop for KillGroup {
        fn drop(&mut self) {
            let _ = kill(Pid::from_raw(-self.0), Signal::SIGKILL);
        }
    }
    let _group = KillGroup(pid);
    // Its process group (sendmail runs in its own) is gone.
    let start = std::time::Instant::now();
    while kill(Pid::from_raw(-pid), None).is_ok() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "sendmail's group {pid} still runs after the delivery ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(s.sent().is_empty());
}

#[test]
fn a_retry_skips_the_forwards_already_sent() {
    let s = Setup::new(
        "[[rule]]\nname = \"one\"\nforward = [\"a@x.example\"]\ncopy = true\n\
         [[rule]]\nname = \"two\"\nforward = [\"b@x.example\"]\n",
    );
    s.fail(Some("b@x.example"), Some(75));
    let input = msg(&format!("{BOSS}Received: from a by b id 1\n"), "b\n");
    let r = s.run("boss@corp.example", &input);
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert_eq!(s.to("a@x.example").len(), 1);
    s.fail(Some("b@x.example"), None);
    let r = s.run("boss@corp.example", &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(s.to("a@x.example").len(), 1, "a not sent again");
    assert_eq!(s.to("b@x.example").len(), 1);
    assert!(
        log_line(&r).contains("forward=a@x.example:done forward=b@x.example:ok"),
        "{}",
        log_line(&r)
    );
    // Another delivery of the same message (another queue file): sent again.
    let other = msg(&format!("{BOSS}Received: from a by b id 2\n"), "b\n");
    assert_eq!(s.run("boss@corp.example", &other).code, 0);
    assert_eq!(s.to("a@x.example").len(), 2);
}

const VACATION: &str = "[[rule]]\nname = \"away\"\n\
    vacation = { days = 7, subject = \"Away\", body = \"Back on the 3rd.\\nGrüße, User\\n\", addresses = [\"alias@example.com\"] }\n";

#[test]
fn vacation_replies_once_per_sender_and_never_to_lists_bounces_or_robots() {
    let s = Setup::new(VACATION);
    for i in 0..3 {
        let m = msg(
            &format!("From: ann@example.org\nTo: User <user@example.com>\nSubject: q{i}\nMessage-ID: <q{i}@example.org>\n"),
            "?\n",
        );
        let r = s.run("ann@example.org", &m);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    assert_eq!(s.h.delivered()[""].len(), 3, "every message filed");
    let replies = s.to("ann@example.org");
    assert_eq!(replies.len(), 1, "{replies:?}");
    let reply = &replies[0];
    assert_eq!(reply.args, ["-i", "-f", "", "--", "ann@example.org"]);
    for want in [
        "Auto-Submitted: auto-replied\r\n",
        "In-Reply-To: <q0@example.org>\r\n",
        "Subject: Away\r\n",
        "To: <ann@example.org>\r\n",
        "From: <user@example.com>\r\n",
        "Content-Type: text/plain; charset=\"utf-8\"\r\n",
        "Content-Transfer-Encoding: quoted-printable\r\n",
        "Gr=C3=BC=C3=9Fe, User",
    ] {
        assert!(
            reply.message.contains(want),
            "{want:?} in {}",
            reply.message
        );
    }
    // None to a list, a bounce, an auto-generated message, one not to
    // the user, nor to the user's own alias.
    let cases: [(&str, &str); 5] = [
        (
            "list@example.org",
            "List-Id: <l.example.org>\nTo: user@example.com\n",
        ),
        (
            "",
            "From: MAILER-DAEMON@example.org\nTo: user@example.com\n",
        ),
        (
            "robot@example.org",
            "Auto-Submitted: auto-generated\nTo: user@example.com\n",
        ),
        ("bcc@example.org", "To: someone@example.net\n"),
        ("alias@example.com", "To: user@example.com\n"),
    ];
    for (sender, head) in cases {
        let r = s.run(sender, &msg(&format!("{head}Subject: x\n"), "x\n"));
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    assert_eq!(s.sent().len(), 1, "{:?}", s.sent());
    assert_eq!(s.h.delivered()[""].len(), 8);
}

/// Start and end dates are days of the local calendar: today's date is
/// read, and a vacation over replies no more.
#[test]
fn vacation_dates_bound_the_replies() {
    let m = msg(
        "From: ann@example.org\nTo: user@example.com\nSubject: q\nMessage-ID: <d@example.org>\n",
        "?\n",
    );
    // Now is within 2000-01-01 .. 2999-12-31: a reply.
    let s = Setup::new(
        "[[rule]]\nname = \"away\"\nvacation = { body = \"x\", start = \"2000-01-01\", end = \"2999-12-31\" }\n",
    );
    assert_eq!(s.run("ann@example.org", &m).code, 0);
    assert_eq!(s.to("ann@example.org").len(), 1, "within the dates");
    // A vacation that ended: no reply, the message filed all the same.
    let s = Setup::new(
        "[[rule]]\nname = \"away\"\nvacation = { body = \"x\", start = \"2000-01-01\", end = \"2000-01-02\" }\n",
    );
    assert_eq!(s.run("ann@example.org", &m).code, 0);
    assert!(s.to("ann@example.org").is_empty(), "after the end date");
    assert_eq!(s.h.delivered()[""].len(), 1);
}

#[test]
fn sixty_four_concurrent_deliveries_send_one_reply() {
    let s = Setup::new(VACATION);
    let children: Vec<_> = (0..64)
        .map(|i| {
            let mut c =
                s.h.command(&["-f", "ann@example.org", "-a", "user@example.com"]);
            c.stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = c.spawn().unwrap();
            let m = msg(
                &format!("From: ann@example.org\nTo: user@example.com\nSubject: c{i}\n"),
                "x\n",
            );
            child.stdin.take().unwrap().write_all(&m).unwrap();
            child
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(s.h.delivered()[""].len(), 64);
    assert_eq!(s.to("ann@example.org").len(), 1);
}

#[test]
fn an_unusable_state_sends_no_reply_and_delivers() {
    let s = Setup::new(VACATION);
    // The state directory writable by anyone: not used.
    fs::create_dir_all(s.h.maildir.join("deliver-state")).unwrap();
    chown_tree(&s.h.maildir, s.h.uid, s.h.gid);
    fs::set_permissions(
        s.h.maildir.join("deliver-state"),
        fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    for i in 0..3 {
        let m = msg(&format!("To: user@example.com\nSubject: u{i}\n"), "x\n");
        let r = s.run("ann@example.org", &m);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stderr.contains("state unusable"), "{}", r.stderr);
    }
    assert!(s.sent().is_empty());
    assert_eq!(s.h.count(), 3);
    // A broken entry file is left alone, and no reply goes either.
    fs::set_permissions(
        s.h.maildir.join("deliver-state"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let r = s.run(
        "bob@example.org",
        &msg("To: user@example.com\nSubject: b\n", "x\n"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(s.to("bob@example.org").len(), 1);
    let replied = s.h.maildir.join("deliver-state/replied");
    for e in fs::read_dir(&replied).unwrap() {
        fs::write(e.unwrap().path(), "garbage").unwrap();
    }
    let r = s.run(
        "bob@example.org",
        &msg("To: user@example.com\nSubject: c\n", "x\n"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(s.to("bob@example.org").len(), 1);
}

#[test]
fn test_mode_shows_the_reply_and_sends_nothing() {
    let s = Setup::new(VACATION);
    let m = msg(
        "From: ann@example.org\nTo: user@example.com\nSubject: hello\n",
        "x\n",
    );
    let r = s.h.run(
        &["-f", "ann@example.org", "-a", "user@example.com", "--test"],
        &m,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("send the vacation reply to ann@example.org"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("Reply (not sent)"));
    assert!(r.stdout.contains("| Subject: Away"));
    assert!(r.stdout.contains("| Grüße, User"), "{}", r.stdout);
    assert!(s.sent().is_empty());
    assert!(!s.h.maildir.join("deliver-state").exists());
}

#[test]
fn duplicates_are_discarded_or_filed_and_a_retry_is_not_one() {
    let s = Setup::new(
        "[[rule]]\nname = \"dups\"\nduplicate = { window_days = 7, action = \"discard\" }\n",
    );
    let copy = |n: u32| {
        msg(
            &format!("Received: by mx id {n}\nDelivered-To: alias{n}@example.com\nFrom: a@b.example\nMessage-ID: <d1@b.example>\nSubject: d\n"),
            "same\n",
        )
    };
    assert_eq!(s.run("a@b.example", &copy(1)).code, 0);
    // The same delivery again (a retry): not a duplicate of itself.
    assert_eq!(s.run("a@b.example", &copy(1)).code, 0);
    assert_eq!(s.h.count(), 2);
    let r = s.run("a@b.example", &copy(2));
    assert_eq!(r.code, 0);
    assert_eq!(s.h.count(), 2, "the second copy discarded");
    assert!(
        r.stderr
            .contains("duplicate of a message seen within 7 days: discarded"),
        "{}",
        r.stderr
    );

    // Into a folder; a message without a Message-ID by its digest.
    let s = Setup::new("[[rule]]\nname = \"dups\"\nduplicate = { folder = \"Dups\" }\n");
    let copy = |n: u32| {
        msg(
            &format!("Received: by mx id {n}\nFrom: a@b.example\nDate: Mon, 4 Jan 2027 10:00:00 +0000\nSubject: d\n"),
            "same\n",
        )
    };
    assert_eq!(s.run("a@b.example", &copy(1)).code, 0);
    assert_eq!(s.run("a@b.example", &copy(2)).code, 0);
    let d = s.h.delivered();
    assert_eq!(d[""].len(), 1);
    assert_eq!(d["Dups"].len(), 1);
}

#[test]
fn a_deferred_first_copy_does_not_make_the_second_a_duplicate() {
    let s = Setup::new(
        "[[rule]]\nname = \"dups\"\nduplicate = { action = \"discard\" }\n\
         [[rule]]\nname = \"all\"\nforward = [\"a@x.example\"]\n",
    );
    s.fail(None, Some(75));
    let copy = |n: u32| {
        msg(
            &format!("Received: id {n}\nMessage-ID: <z@b>\nSubject: z\n"),
            "z\n",
        )
    };
    assert_eq!(s.run("a@b.example", &copy(1)).code, 75);
    s.fail(None, None);
    assert_eq!(s.run("a@b.example", &copy(2)).code, 0);
    assert_eq!(s.to("a@x.example").len(), 1, "the second copy forwarded");
}

#[test]
fn bad_verbs_are_load_errors_with_their_place() {
    for (rules, want) in [
        (
            "[[rule]]\nname = \"f\"\nforward = [\"-oi@x.example\"]\n",
            "3:12",
        ),
        (
            "[[rule]]\nname = \"v\"\nvacation = { days = 0, body = \"x\" }\n",
            "3:21",
        ),
        (
            "[[rule]]\nname = \"d\"\nduplicate = { action = \"keep\" }\n",
            "3:24",
        ),
        (
            "[[rule]]\nname = \"v\"\nvacation = { body = \"x\", start = \"2027-02-30x\" }\n",
            "3:",
        ),
        (
            "[[rule]]\nname = \"f\"\nforward = [\"a@x.example\"]\nfolder = \"X\"\n",
            "terminal actions",
        ),
    ] {
        let s = Setup::new(rules);
        let mut c = s.h.bare_command(&["check", "--user-rules"]);
        c.arg(&s.h.user_rules);
        let r = run_cmd(c, b"");
        let out = format!("{}{}", r.stdout, r.stderr);
        assert_ne!(r.code, 0, "{rules}: {out}");
        assert!(out.contains(want), "{rules}: want {want} in {out}");
    }
}

/// Starts a delivery that stops itself at `step` and kills it there.
fn kill_at(s: &Setup, step: &str, input: &[u8]) {
    let mut c =
        s.h.command(&["-f", "ann@example.org", "-a", "user@example.com"]);
    c.env("DELIVER_TEST_PAUSE_AT", step)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    #[allow(clippy::zombie_processes)] // reaped with waitpid(2)
    let mut child = c.spawn().unwrap();
    let pid = Pid::from_raw(child.id() as i32);
    child.stdin.take().unwrap().write_all(input).unwrap();
    match waitpid(pid, Some(WaitPidFlag::WUNTRACED)).unwrap() {
        WaitStatus::Stopped(_, Signal::SIGSTOP) => {
            kill(pid, Signal::SIGKILL).unwrap();
            waitpid(pid, None).unwrap();
        }
        st => panic!("{step}: not stopped there: {st:?}"),
    }
}

#[test]
fn killed_at_every_step_a_retry_does_each_side_effect_once() {
    let rules = format!(
        "[[rule]]\nname = \"archive\"\nfolder = \"Archive\"\ncopy = true\n\
         [[rule]]\nname = \"phone\"\nforward = [\"phone@mobile.example\"]\ncopy = true\n{VACATION}"
    );
    let steps = [
        "maildir-open",
        "tmp-written",
        "tmp-synced",
        "delivered",
        "forwarded",
        "reply-claimed",
        "replied",
    ];
    for step in steps {
        let s = Setup::new(&rules);
        let input = msg(
            "From: ann@example.org\nTo: user@example.com\nSubject: k\nMessage-ID: <k@example.org>\nReceived: id 7\n",
            "k\n",
        );
        kill_at(&s, step, &input);
        // Postfix retries the same delivery.
        let r = s.run("ann@example.org", &input);
        assert_eq!(r.code, 0, "{step}: {}", r.stderr);
        let d = s.h.delivered();
        assert_eq!(d[""].len(), 1, "{step}: Inbox");
        assert_eq!(d["Archive"].len(), 1, "{step}: Archive");
        assert_eq!(s.to("phone@mobile.example").len(), 1, "{step}: forward");
        // A reply is claimed before it is sent: killed between the two, it
        // is not sent (never twice).
        let replies = if step == "reply-claimed" { 0 } else { 1 };
        assert_eq!(s.to("ann@example.org").len(), replies, "{step}: reply");
    }
}

#[test]
fn the_verbs_work_from_the_rules_cache_too() {
    // Enough header rules for the user's file to be cached (the first
    // delivery writes the cache, the second reads it): the rules without
    // a header condition are in every message's set.
    let mut rules = String::new();
    for i in 0..8 {
        rules.push_str(&format!(
            "[[rule]]\nname = \"h{i}\"\nheader = \"Subject\"\nmatch = \"^never{i}$\"\nfolder = \"F{i}\"\n"
        ));
    }
    rules.push_str("[[rule]]\nname = \"fwd\"\nforward = [\"a@x.example\"]\ncopy = true\n");
    rules.push_str(VACATION);
    let s = Setup::new(&rules);
    // A file changed in the last seconds is not cached (it may be being
    // edited): this one is older.
    fs::File::open(&s.h.user_rules)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(100))
        .unwrap();
    // As local(8) runs it: LOGNAME and HOME name the recipient, whose
    // cache is then ~/.cache/deliver.
    let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(s.h.uid))
        .unwrap()
        .unwrap()
        .name;
    for i in 0..2 {
        let m = msg(
            &format!("From: ann@example.org\nTo: user@example.com\nSubject: c{i}\n"),
            "x\n",
        );
        let mut c =
            s.h.command(&["-f", "ann@example.org", "-a", "user@example.com"]);
        c.env("LOGNAME", &name);
        let r = run_cmd(c, &m);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let cache = s.h.home.join(".cache/deliver");
    assert!(
        fs::read_dir(&cache).is_ok_and(|mut d| d.next().is_some()),
        "the rules cache was written"
    );
    assert_eq!(s.h.delivered()[""].len(), 2);
    assert_eq!(s.to("a@x.example").len(), 2);
    assert_eq!(s.to("ann@example.org").len(), 1);
}
