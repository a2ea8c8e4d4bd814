//! Access maps through the real binary: what each result does to the
//! delivered copy and to the exit status.

mod util;

use std::fs;
use util::*;

fn with_sender_map(map: &str, extra: &str) -> Home {
    let mut h = Home::new();
    let m = h.file("sender_access", map);
    h.system(&format!("[settings]\nquarantine_folder = \"Held\"\n[spam]\njunk_threshold = 5.0\n[access]\nsender = [\"texthash:{}\"]\n{extra}", m.display()));
    h
}

fn from(h: &Home, sender: &str, input: &[u8]) -> Run {
    h.run(
        &["-f", sender, "-a", "user@example.com", "--log-stderr"],
        input,
    )
}

#[test]
fn result_keywords() {
    let h = with_sender_map(
        "ok.example OK\nrej.example REJECT no thanks\ncode.example 550 5.7.26 spf fail\nlater.example DEFER busy\nfour.example 451 4.7.1 greylisted\n\
         drop.example DISCARD\nhold.example HOLD review\njunk.example JUNK\nfold.example FOLDER Invoices/2026\nbad.example FOLDER ../../x\n\
         bcc.example BCC archive@example.com\nwarn.example WARN watch this\nnum.example 250\n",
        "",
    );
    let m = msg("Subject: x\n", "x\n");
    let r = from(&h, "a@rej.example", &m);
    assert_eq!(
        (r.code, r.first_line()),
        (
            77,
            "5.7.1 <a@rej.example>: Sender address rejected: no thanks"
        )
    );
    let r = from(&h, "a@code.example", &m);
    assert_eq!(
        (r.code, r.first_line()),
        (
            77,
            "5.7.26 <a@code.example>: Sender address rejected: spf fail"
        )
    );
    let r = from(&h, "a@later.example", &m);
    assert_eq!(
        (r.code, r.first_line()),
        (75, "4.7.1 <a@later.example>: Sender address rejected: busy")
    );
    let r = from(&h, "a@four.example", &m);
    assert_eq!(
        (r.code, r.first_line()),
        (
            75,
            "4.7.1 <a@four.example>: Sender address rejected: greylisted"
        )
    );
    assert_eq!(h.count(), 0);
    assert_eq!(from(&h, "a@drop.example", &m).code, 0);
    assert_eq!(h.count(), 0, "DISCARD delivered something");
    for (s, folder) in [
        ("a@hold.example", "Held"),
        ("a@junk.example", "Junk"),
        ("a@fold.example", "Invoices.2026"),
    ] {
        let r = from(&h, s, &m);
        assert_eq!(r.code, 0, "{s}: {}", r.stderr);
        assert!(
            h.delivered().contains_key(folder),
            "{s}: {:?}",
            h.delivered().keys()
        );
    }
    let r = from(&h, "a@bad.example", &m);
    assert_eq!(r.code, 0);
    assert!(r.stderr.contains("refused folder"), "{}", r.stderr);
    let r = from(&h, "a@bcc.example", &m);
    assert_eq!(r.code, 0);
    assert!(
        r.stderr
            .contains("cannot be honoured at delivery; treated as DUNNO"),
        "{}",
        r.stderr
    );
    let r = from(&h, "a@warn.example", &m);
    assert!(r.stderr.contains("WARN sender"), "{}", r.stderr);
    assert_eq!(
        h.delivered()[""].len(),
        3,
        "bad folder, BCC and WARN mail in the Inbox: {:?}",
        h.delivered().keys()
    );
    // OK and a numeric result skip spam routing.
    let spam = msg("Subject: x\nX-Spam-Flag: YES\nX-Spam-Score: 9\n", "x\n");
    assert_eq!(from(&h, "a@ok.example", &spam).code, 0);
    assert_eq!(from(&h, "a@num.example", &spam).code, 0);
    assert_eq!(h.delivered()[""].len(), 5);
    assert_eq!(
        h.delivered()["Junk"].len(),
        1,
        "OK or numeric mail was routed as spam"
    );
}

/// What deliver writes is strict (`message::valid_header_line`): a PREPEND
/// with white space before the colon (RFC 5322 obsolete syntax, which
/// smtpd's is_header() accepts) is not a header deliver adds. It is a
/// result that cannot be honoured, like any other malformed PREPEND, in the
/// delivery log and in `deliver check` alike.
#[test]
fn prepend_with_space_before_the_colon_is_not_written() {
    let h = with_sender_map(
        "sp.example PREPEND X-Foo : bar\ntab.example PREPEND X-Foo\t: bar\n",
        "",
    );
    let m = msg("Subject: x\n", "x\n");
    for sender in ["a@sp.example", "a@tab.example"] {
        let r = from(&h, sender, &m);
        assert_eq!(r.code, 0, "{sender}: {}", r.stderr);
        assert!(
            r.stderr
                .contains("cannot be honoured at delivery; treated as DUNNO"),
            "{sender}: {}",
            r.stderr
        );
    }
    let got = &h.delivered()[""];
    assert_eq!(got.len(), 2);
    for copy in got {
        assert_eq!(copy.as_slice(), without_from(&m), "a header was added");
    }
    let mut c = std::process::Command::new(BIN);
    c.arg("check")
        .arg("--rules")
        .arg(h.system_rules.as_ref().unwrap())
        .env_clear();
    if is_root() {
        // As root, check would write the system cache directory.
        use std::os::unix::process::CommandExt;
        c.uid(h.uid).gid(h.gid);
    }
    let r = run_cmd(c, b"");
    assert_eq!(r.code, 1, "{}", r.stdout);
    for line in 1..=2 {
        assert!(
            r.stdout
                .lines()
                .any(|l| l.contains(&format!("sender_access:{line}:1: "))
                    && l.contains("not a valid header line")),
            "line {line}: {}",
            r.stdout
        );
    }
}

#[test]
fn prepend_adds_a_header_and_keeps_the_rest_byte_exact() {
    let h = with_sender_map("tag.example PREPEND X-Tagged: by sender_access\n", "");
    for input in [
        msg("Subject: x\n", "body\n"),
        b"From a@tag.example  Sat Nov 21 10:00:00 2026\r\nSubject: crlf\r\n\r\nbody\r\n".to_vec(),
    ] {
        let r = from(&h, "a@tag.example", &input);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let files = h.files_in("new");
        let newest = files
            .iter()
            .max_by_key(|p| fs::metadata(p).unwrap().modified().unwrap())
            .unwrap();
        let got = fs::read(newest).unwrap();
        let eol = if input.contains(&b'\r') { "\r\n" } else { "\n" };
        let mut want = format!("X-Tagged: by sender_access{eol}").into_bytes();
        want.extend_from_slice(without_from(&input));
        assert_eq!(got, want);
        let name = newest.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with(&format!(",S={}", want.len())), "{name}");
        assert!(
            r.stderr.contains(&format!(" size={} ", want.len())),
            "log size is not the delivered size: {}",
            r.stderr
        );
        fs::remove_file(newest).unwrap();
    }
    assert!(h.files_in("tmp").is_empty());
}

#[test]
fn user_ok_overrides_system_spam_routing_not_system_reject() {
    let mut h = with_sender_map("spammer.example REJECT\n", "");
    let umap = h.file("user_sender", "friend.example OK\nspammer.example OK\n");
    // The user's map must be readable by the user.
    h.user(&format!(
        "[access]\nsender = [\"texthash:{}\"]\n",
        umap.display()
    ));
    let _ = &mut h;
    let spam = msg("Subject: x\nX-Spam-Flag: YES\nX-Spam-Score: 9\n", "x\n");
    assert_eq!(from(&h, "a@friend.example", &spam).code, 0);
    assert_eq!(h.delivered().keys().collect::<Vec<_>>(), vec![""]);
    assert_eq!(from(&h, "a@stranger.example", &spam).code, 0);
    assert!(h.delivered().contains_key("Junk"));
    let r = from(&h, "a@spammer.example", &spam);
    assert_eq!(r.code, 77, "a user OK overrode a system REJECT");
}

#[test]
fn client_and_helo_come_from_postfix_environment() {
    let mut h = Home::new();
    let c = h.file("client.cidr", "203.0.113.0/24 REJECT listed\n");
    let hl = h.file("helo.re", "/^bad\\.helo$/ JUNK\n");
    h.system(&format!(
        "[access]\nclient = [\"cidr:{}\"]\nhelo = [\"regexp:{}\"]\n",
        c.display(),
        hl.display()
    ));
    let mut cmd = h.command(&["-f", "a@b.example"]);
    cmd.env("CLIENT_ADDRESS", "203.0.113.9")
        .env("CLIENT_HOSTNAME", "unknown")
        .env("CLIENT_HELO", "x");
    let r = run_cmd(cmd, &msg("Subject: x\n", "x\n"));
    assert_eq!(
        (r.code, r.first_line()),
        (
            77,
            "5.7.1 unknown[203.0.113.9]: Client host rejected: listed"
        )
    );
    let mut cmd = h.command(&["-f", "a@b.example"]);
    cmd.env("CLIENT_ADDRESS", "192.0.2.1")
        .env("CLIENT_HELO", "bad.helo");
    let r = run_cmd(cmd, &msg("Subject: x\n", "x\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(h.delivered().keys().collect::<Vec<_>>(), vec!["Junk"]);
}

#[test]
fn control_characters_in_the_envelope_never_make_header_or_log_lines() {
    let h = with_sender_map("x.example PREPEND X-Seen: yes\n", "");
    let mut cmd = h.command(&["--log-stderr", "-a", "user@example.com\r\nX-Injected: 1"]);
    cmd.env("SENDER", "a@x.example\nX-Evil: yes");
    let input = msg("Subject: x\n", "x\n");
    let r = run_cmd(cmd, &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = &h.delivered()[""][0];
    let text = String::from_utf8_lossy(got);
    assert!(
        !text.contains("X-Evil") && !text.contains("X-Injected"),
        "{text}"
    );
    for line in r.stderr.lines() {
        assert!(
            line.starts_with("deliver: "),
            "a log line was split: {line:?}"
        );
    }
}
