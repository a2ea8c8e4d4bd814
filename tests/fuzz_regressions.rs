//! Inputs the fuzzers (fuzz/, see FUZZING.md) found crashing, each kept as
//! a regression test against the real binary or the library function the
//! target drives. Each input is minimised by hand to what triggers it.

mod util;

use util::*;

/// A delivery of `input` exits 0 and delivers it byte-exact to `folder`.
fn delivers(h: &Home, input: &[u8], folder: &str) {
    let r = h.deliver(input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d = h.delivered();
    assert_eq!(d.get(folder).map(Vec::len), Some(1), "{:?}", d.keys());
    assert_eq!(d[folder][0], without_from(input));
}

/// fuzz/message: a non-ASCII character across byte 3 or 4 of a spam
/// header value panicked in the yes/true test (a sender could make every
/// delivery of the message defer until it bounced).
#[test]
fn spam_flag_value_with_multibyte_character() {
    for v in [
        "Ye\u{fffd}s, score=24.3",
        "tr\u{e9}e",
        "\u{e9}es",
        "Y\u{1F600}",
    ] {
        for header in ["X-Spam-Status", "X-Spam-Flag", "X-Spam"] {
            let h = Home::new();
            delivers(&h, &msg(&format!("{header}: {v}\n"), "x\n"), "");
        }
    }
}

/// A FOLDER name with a multibyte character across byte 6 ("INBOXé")
/// panicked where the INBOX. prefix is removed. A regexp table can build
/// the name from the sender's address, so a sender could trigger it.
#[test]
fn folder_name_with_multibyte_character_after_inbox() {
    let mut h = Home::new();
    let m = h.file(
        "sender_access.regexp",
        "/^([^@]+)@folder\\.example$/ FOLDER $1\n",
    );
    h.system(&format!(
        "[access]\nsender = [\"regexp:{}\"]\n",
        m.display()
    ));
    let input = msg("Subject: x\n", "x\n");
    let r = h.run(&["-f", "INBOX\u{e9}@folder.example"], &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(h.delivered()["INBOX&AOk-"][0], without_from(&input));
}

/// A client address with a multibyte character across byte 5 panicked
/// where an "IPv6:" prefix is removed.
#[test]
fn client_address_with_multibyte_character() {
    let mut h = Home::new();
    let m = h.file("client_access.cidr", "192.0.2.0/24 REJECT\n");
    h.system(&format!("[access]\nclient = [\"cidr:{}\"]\n", m.display()));
    let input = msg("Subject: x\n", "x\n");
    for addr in ["1234\u{e9}5", "IPv6\u{e9}::1", "[abcd\u{1F600}]"] {
        let r = h.run(&["-f", "a@b", "--client-address", addr], &input);
        assert_eq!(r.code, 0, "{addr}: {}", r.stderr);
    }
    assert_eq!(h.count(), 3);
}

/// fuzz/map_regexp, map_pcre, access: a regexp: or pcre: line that starts
/// with a null byte panicked while the table loaded. A user's table could
/// then defer all of the user's mail; now it is a load error, with the
/// policy of every other one (system file: defer; user file: ignored).
#[test]
fn table_line_starting_with_a_null_byte() {
    for kind in ["regexp", "pcre"] {
        let mut h = Home::new();
        let m = h.file("t", "/x/ OK\n\0/y/ REJECT\n");
        h.system(&format!(
            "[access]\nsender = [\"{kind}:{}\"]\n",
            m.display()
        ));
        let r = h.deliver(&msg("Subject: x\n", "x\n"));
        assert_eq!(r.code, 75, "{kind}: {}", r.stderr);
        assert!(
            r.first_line().starts_with("4.3.5 system rules: ")
                && r.first_line()
                    .contains(":2:1: no pattern before a null byte"),
            "{kind}: {}",
            r.stderr
        );

        let h = Home::new();
        let m = h.file("t", "\0/y/ REJECT\n");
        h.user(&format!(
            "[access]\nsender = [\"{kind}:{}\"]\n",
            m.display()
        ));
        let input = msg("Subject: x\n", "x\n");
        let r = h.run(&["-f", "a@b", "--log-stderr"], &input);
        assert_eq!(r.code, 0, "{kind}: {}", r.stderr);
        assert!(r.stderr.contains("ignoring user rules"), "{}", r.stderr);
        assert_eq!(h.delivered()[""][0], without_from(&input));
    }
}

/// fuzz/access: a domain whose first character is more than one byte
/// ("é.example", as SMTPUTF8 allows) panicked while the parent-domain keys
/// were built: any sender, HELO or client name could trigger it against a
/// fixed table.
#[test]
fn domain_starting_with_a_multibyte_character() {
    let mut h = Home::new();
    let m = h.file(
        "access",
        "\u{e9}.example REJECT utf8 domain\nexample DISCARD\n",
    );
    h.system(&format!(
        "[access]\nclient = [\"texthash:{0}\"]\nhelo = [\"texthash:{0}\"]\nsender = [\"texthash:{0}\"]\n",
        m.display()
    ));
    let input = msg("Subject: x\n", "x\n");
    let r = h.run(&["-f", "a@\u{e9}.example"], &input);
    assert_eq!(r.code, 77, "{}", r.stderr);
    assert!(r.first_line().contains("utf8 domain"), "{}", r.stderr);
    let r = h.run(&["-f", "a@b", "--helo", "\u{e9}x.example"], &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = h.run(
        &[
            "-f",
            "a@b",
            "--client-hostname",
            "\u{1F600}.example",
            "--client-address",
            "192.0.2.1",
        ],
        &input,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(h.count(), 0, "both discarded by the parent domain");
}
