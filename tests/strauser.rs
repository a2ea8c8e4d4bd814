//! The seed setup in examples/strauser, with real messages through the binary.

mod util;

use util::*;

fn setup() -> Home {
    let mut h = Home::new();
    h.system_rules = Some(std::fs::canonicalize("examples/strauser/rules.toml").unwrap());
    h
}

fn deliver(h: &Home, sender: &str, rcpt: &str, headers: &str) -> Run {
    h.run(&["-f", sender, "-a", rcpt], &msg(headers, "body\n"))
}

#[test]
fn tagged_spam_goes_to_junk_and_clean_mail_to_inbox() {
    let h = setup();
    let r = deliver(
        &h,
        "a@spam.example",
        "alice@example.com",
        "X-Spam-Flag: YES\nX-Spam-Score: 7.2\nX-Spam-Level: *******\nSubject: x\n",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = deliver(
        &h,
        "bob@example.org",
        "alice@example.com",
        "X-Spam-Flag: NO\nX-Spam-Score: 1.1\nSubject: hi\n",
    );
    assert_eq!(r.code, 0);
    // Above amavis's kill level (if any slipped through): kept, in Junk.
    let r = deliver(
        &h,
        "a@spam.example",
        "alice@example.com",
        "X-Spam-Flag: YES\nX-Spam-Score: 14\nSubject: y\n",
    );
    assert_eq!(r.code, 0);
    let d = h.delivered();
    assert_eq!(d["Junk"].len(), 2);
    assert_eq!(d[""].len(), 1);
}

#[test]
fn clamav_verdicts_are_discarded() {
    let h = setup();
    let r = deliver(&h, "x@example.net", "alice@example.com", "X-Virus-Scanned: amavisd-new at example.com\nX-Amavis-Alert: INFECTED, message contains virus: Eicar-Signature\n");
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(h.count(), 0);
}

#[test]
fn joe_job_bounces_are_discarded_real_mailboxes_are_not() {
    let h = setup();
    let bounce = "From: MAILER-DAEMON@far.example\nSubject: Undelivered Mail Returned to Sender\nX-Spam-Score: 0.5\n";
    assert_eq!(deliver(&h, "", "sales@example.com", bounce).code, 0);
    assert_eq!(deliver(&h, "<>", "info+x@example.com", bounce).code, 0);
    assert_eq!(h.count(), 0, "joe-job bounces delivered");
    assert_eq!(deliver(&h, "", "alice@example.com", bounce).code, 0);
    assert_eq!(
        h.delivered()[""].len(),
        1,
        "a real bounce to a real mailbox was lost"
    );
}

#[test]
fn client_servers_skip_spam_routing() {
    let h = setup();
    let tagged = "X-Spam-Flag: YES\nX-Spam-Score: 6.0\nSubject: invoice\n";
    assert_eq!(
        deliver(&h, "billing@clientco.example", "alice@example.com", tagged).code,
        0
    );
    assert_eq!(
        deliver(
            &h,
            "ops@mx1.mail.partner.example",
            "alice@example.com",
            tagged
        )
        .code,
        0
    );
    assert_eq!(h.delivered().keys().collect::<Vec<_>>(), vec![""]);
    assert_eq!(h.delivered()[""].len(), 2);
}

#[test]
fn users_move_their_threshold_within_bounds() {
    let h = setup();
    h.user("[spam]\njunk_threshold = 8.0\n");
    let r = deliver(
        &h,
        "a@spam.example",
        "alice@example.com",
        "X-Spam-Flag: YES\nX-Spam-Score: 6.5\nSubject: x\n",
    );
    assert_eq!(r.code, 0);
    assert_eq!(h.delivered().keys().collect::<Vec<_>>(), vec![""]);
    h.user("[spam]\njunk_threshold = 1.0\n"); // below the minimum of 3.0
    let r = deliver(
        &h,
        "a@spam.example",
        "alice@example.com",
        "X-Spam-Score: 2.5\nSubject: x\n",
    );
    assert_eq!(r.code, 0);
    assert_eq!(
        h.delivered()[""].len(),
        2,
        "clamped to 3.0: 2.5 stays in the Inbox"
    );
}

#[test]
fn the_example_checks_clean() {
    let out = std::process::Command::new(BIN)
        .args(["check", "--rules", "examples/strauser/rules.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
