//! access(5) key order and result meanings, table-driven, on real tables.

use deliver::policy::access::{
    check_address, check_client, check_helo, parse_action, AccessAction as Action, AccessOptions,
    Hit, Probe,
};
use deliver::policy::maps::{open, OpenOptions, Table};
use std::path::Path;

fn table(dir: &Path, name: &str, kind: &str, text: &str) -> Box<dyn Table> {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    open(&format!("{kind}:{}", p.display()), &OpenOptions::default()).unwrap()
}

fn keys(probes: &[Probe], spec_part: &str) -> Vec<String> {
    probes
        .iter()
        .filter(|p| p.table.contains(spec_part))
        .map(|p| p.key.clone())
        .collect()
}

fn opts(delim: &str, pdms: bool) -> AccessOptions {
    AccessOptions {
        recipient_delimiter: delim.to_string(),
        parent_domain_matches_subdomains: pdms,
    }
}

/// An empty fixed table and a pattern table that never matches, so every
/// key of the order is probed in both.
fn probe_tables(dir: &Path) -> Vec<Box<dyn Table>> {
    vec![
        table(dir, "fixed", "texthash", ""),
        table(dir, "pattern", "regexp", "/^never matches$/ x\n"),
    ]
}

#[test]
fn address_key_order() {
    let d = tempfile::tempdir().unwrap();
    let t = probe_tables(d.path());
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let cases: &[(&str, AccessOptions, &[&str], &[&str])] = &[
        (
            "user+ext@a.b.c",
            AccessOptions::default(),
            &[
                "user+ext@a.b.c",
                "user@a.b.c",
                "a.b.c",
                "b.c",
                "c",
                "user+ext@",
                "user@",
            ],
            &["user+ext@a.b.c"],
        ),
        (
            "user+ext@a.b.c",
            opts("+", false),
            &[
                "user+ext@a.b.c",
                "user@a.b.c",
                "a.b.c",
                ".b.c",
                ".c",
                "user+ext@",
                "user@",
            ],
            &["user+ext@a.b.c"],
        ),
        (
            "user@a.b",
            AccessOptions::default(),
            &["user@a.b", "a.b", "b", "user@"],
            &["user@a.b"],
        ),
        (
            "User-Ext@Example.COM",
            opts("+-", true),
            &[
                "User-Ext@Example.COM",
                "User@Example.COM",
                "Example.COM",
                "COM",
                "User-Ext@",
                "User@",
            ],
            &["User-Ext@Example.COM"],
        ),
        (
            "a+b-c@x",
            opts("-+", true),
            &["a+b-c@x", "a@x", "x", "a+b-c@", "a@"],
            &["a+b-c@x"],
        ),
        (
            "user+ext@x",
            opts("", true),
            &["user+ext@x", "x", "user+ext@"],
            &["user+ext@x"],
        ),
        (
            "user+ext@x",
            opts("-", true),
            &["user+ext@x", "x", "user+ext@"],
            &["user+ext@x"],
        ),
        (
            "owner-list@x",
            opts("-", true),
            &["owner-list@x", "x", "owner-list@"],
            &["owner-list@x"],
        ),
        (
            "list-request@x",
            opts("-", true),
            &["list-request@x", "x", "list-request@"],
            &["list-request@x"],
        ),
        (
            "MAILER-DAEMON@y",
            opts("-", true),
            &["MAILER-DAEMON@y", "y", "MAILER-DAEMON@"],
            &["MAILER-DAEMON@y"],
        ),
        (
            "double-bounce@y",
            opts("-", true),
            &["double-bounce@y", "y", "double-bounce@"],
            &["double-bounce@y"],
        ),
        (
            "Postmaster+x@y",
            opts("+", true),
            &[
                "Postmaster+x@y",
                "Postmaster@y",
                "y",
                "Postmaster+x@",
                "Postmaster@",
            ],
            &["Postmaster+x@y"],
        ),
        (
            "+ext@x",
            opts("+", true),
            &["+ext@x", "x", "+ext@"],
            &["+ext@x"],
        ),
        ("", AccessOptions::default(), &["<>"], &["<>"]),
        ("<>", AccessOptions::default(), &["<>"], &["<>"]),
        (
            "<user@x>",
            AccessOptions::default(),
            &["user@x", "x", "user@"],
            &["user@x"],
        ),
        (
            "john doe@x",
            AccessOptions::default(),
            &[
                "\"john doe\"@x",
                "john doe@x",
                "x",
                "\"john doe\"@",
                "john doe@",
            ],
            &["\"john doe\"@x", "john doe@x"],
        ),
        (
            "user@",
            AccessOptions::default(),
            &["user@", "user@"],
            &["user@"],
        ),
        ("no-at-sign", AccessOptions::default(), &[], &[]),
    ];
    for (addr, o, want_fixed, want_pattern) in cases {
        let mut probes = Vec::new();
        let hits = check_address(&t, addr, o, &mut probes).unwrap();
        assert!(hits.is_empty(), "{addr}");
        assert_eq!(
            keys(&probes, "fixed"),
            s(want_fixed),
            "fixed keys for {addr:?} {o:?}"
        );
        assert_eq!(
            keys(&probes, "pattern"),
            s(want_pattern),
            "pattern keys for {addr:?}"
        );
    }
}

#[test]
fn client_and_helo_key_order() {
    let d = tempfile::tempdir().unwrap();
    let mut t = probe_tables(d.path());
    t.push(table(d.path(), "net", "cidr", "192.0.2.0/24 never\n"));
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let o = AccessOptions::default();
    type Case<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        bool,
        &'a [&'a str],
        &'a [&'a str],
    );
    let cases: &[Case] = &[
        (
            Some("mail.example.com"),
            Some("10.1.2.3"),
            true,
            &[
                "mail.example.com",
                "example.com",
                "com",
                "10.1.2.3",
                "10.1.2",
                "10.1",
                "10",
            ],
            &["mail.example.com", "10.1.2.3"],
        ),
        (
            Some("mail.example.com"),
            None,
            false,
            &["mail.example.com", ".example.com", ".com"],
            &["mail.example.com"],
        ),
        (
            Some("unknown"),
            Some("10.0.0.1"),
            true,
            &["unknown", "10.0.0.1", "10.0.0", "10.0", "10"],
            &["unknown", "10.0.0.1"],
        ),
        (
            None,
            Some("2001:DB8:0:0:0:0:0:1"),
            true,
            &["2001:db8::1", "2001:db8:", "2001:db8", "2001"],
            &["2001:db8::1"],
        ),
        (
            Some(""),
            Some("[::ffff:192.0.2.7]"),
            true,
            &["192.0.2.7", "192.0.2", "192.0", "192"],
            &["192.0.2.7"],
        ),
        (Some("1.2.3.4"), None, true, &["1.2.3.4"], &["1.2.3.4"]),
        (None, Some("::1"), true, &["::1", ":"], &["::1"]),
        (
            None,
            Some("fe80::1:2"),
            true,
            &["fe80::1:2", "fe80::1", "fe80:", "fe80"],
            &["fe80::1:2"],
        ),
    ];
    for (host, addr, pdms, want_fixed, want_pattern) in cases {
        let o = AccessOptions {
            parent_domain_matches_subdomains: *pdms,
            ..o.clone()
        };
        let mut probes = Vec::new();
        check_client(&t, *host, *addr, &o, &mut probes).unwrap();
        assert_eq!(keys(&probes, "fixed"), s(want_fixed), "{host:?} {addr:?}");
        assert_eq!(
            keys(&probes, "pattern"),
            s(want_pattern),
            "{host:?} {addr:?}"
        );
        assert_eq!(
            keys(&probes, "net"),
            s(want_pattern),
            "cidr like regexp: {host:?} {addr:?}"
        );
    }
    let mut probes = Vec::new();
    check_helo(&t, "Mail.Example.COM", &o, &mut probes).unwrap();
    assert_eq!(
        keys(&probes, "fixed"),
        s(&["Mail.Example.COM", "Example.COM", "COM"])
    );
    assert_eq!(keys(&probes, "pattern"), s(&["Mail.Example.COM"]));
    let mut probes = Vec::new();
    check_helo(&t, "[192.0.2.1]", &o, &mut probes).unwrap();
    assert_eq!(
        keys(&probes, "fixed"),
        s(&["[192.0.2.1]", "0.2.1]", "2.1]", "1]"]),
        "an address literal is not numeric for Postfix: parent search runs"
    );
}

fn hit_actions(h: &[Hit]) -> Vec<(String, Action)> {
    h.iter()
        .map(|h| (h.key.clone(), h.action.clone()))
        .collect()
}

#[test]
fn search_semantics_across_tables() {
    let d = tempfile::tempdir().unwrap();
    let o = AccessOptions::default();
    let t1 = table(
        d.path(),
        "t1",
        "texthash",
        "user@example.com DUNNO\nexample.com REJECT\nwarn@example.com WARN watch it\n",
    );
    let t2 = table(
        d.path(),
        "t2",
        "texthash",
        "Example.COM 550 5.1.1 go away\nuser@ OK\n",
    );
    let t3 = table(d.path(), "t3", "regexp", "/^user@/ FOLDER Never\n");
    let tables = vec![t1, t2, t3];

    // DUNNO ends table 1's search (the domain's REJECT is not tried), the
    // domain entry of table 2 wins, table 3 is not consulted.
    let mut probes = Vec::new();
    let hits = check_address(&tables, "USER@example.com", &o, &mut probes).unwrap();
    assert_eq!(
        hit_actions(&hits),
        vec![
            ("USER@example.com".to_string(), Action::Dunno),
            (
                "example.com".to_string(),
                Action::Reject {
                    status: "5.1.1".into(),
                    code: 550,
                    text: "go away".into()
                }
            ),
        ]
    );
    assert!(keys(&probes, "t3").is_empty());
    assert_eq!(keys(&probes, "t1"), vec!["USER@example.com"]);

    // A non-terminal WARN, then the next table decides.
    let mut probes = Vec::new();
    let hits = check_address(&tables, "warn@example.com", &o, &mut probes).unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].action, Action::Warn("watch it".into()));
    assert_eq!(hits[0].raw, "WARN watch it");
    assert!(hits[0].table.ends_with("/t1"));
    assert!(matches!(hits[1].action, Action::Reject { code: 550, .. }));

    // Nothing found anywhere but the user@ key of table 2.
    let mut probes = Vec::new();
    let hits = check_address(&tables, "user+x@other.org", &o, &mut probes).unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].key, "user@");
    assert_eq!(hits[0].action, Action::Ok);
    assert_eq!(
        keys(&probes, "t2"),
        vec![
            "user+x@other.org",
            "user@other.org",
            "other.org",
            "org",
            "user+x@",
            "user@"
        ]
    );
    let found: Vec<_> = probes.iter().filter(|p| p.result.is_some()).collect();
    assert_eq!(found.len(), 1);

    // Null sender: only "<>", also in pattern tables.
    let t = vec![table(
        d.path(),
        "null",
        "regexp",
        "/^<>$/ REJECT no bounces\n",
    )];
    let hits = check_address(&t, "", &o, &mut Vec::new()).unwrap();
    assert_eq!(hits[0].key, "<>");
    assert!(matches!(&hits[0].action, Action::Reject { text, .. } if text == "no bounces"));
}

#[test]
fn client_search_with_cidr_and_hostnames() {
    let d = tempfile::tempdir().unwrap();
    let o = AccessOptions::default();
    let tables = vec![
        table(
            d.path(),
            "names",
            "texthash",
            "unknown REJECT no reverse DNS\nexample.net OK\n10.1 DEFER try later\n",
        ),
        table(
            d.path(),
            "nets",
            "cidr",
            "192.0.2.0/24 HOLD suspicious\n2001:db8::/32 DISCARD\n",
        ),
    ];
    let client = |h: Option<&str>, a: Option<&str>| {
        let hits = check_client(&tables, h, a, &o, &mut Vec::new()).unwrap();
        hits.last().map(|h| h.action.clone())
    };
    assert!(matches!(
        client(Some("unknown"), Some("192.0.2.1")),
        Some(Action::Reject { .. })
    ));
    assert_eq!(
        client(Some("mx.example.net"), Some("192.0.2.1")),
        Some(Action::Ok)
    );
    assert!(matches!(
        client(None, Some("10.1.9.9")),
        Some(Action::Defer { code: 450, ref status, ref text }) if status == "4.7.1" && text == "try later"
    ));
    assert_eq!(
        client(None, Some("192.0.2.200")),
        Some(Action::Hold("suspicious".into()))
    );
    assert_eq!(
        client(Some("h.example"), Some("2001:db8::5")),
        Some(Action::Discard(String::new()))
    );
    assert_eq!(client(None, None), None);
}

#[test]
fn every_result_keyword() {
    let rej = |status: &str, code: u16, text: &str| Action::Reject {
        status: status.into(),
        code,
        text: text.into(),
    };
    let def = |status: &str, code: u16, text: &str| Action::Defer {
        status: status.into(),
        code,
        text: text.into(),
    };
    let cases: Vec<(&str, Action)> = vec![
        ("OK", Action::Ok),
        ("ok trailing text ignored", Action::Ok),
        ("RELAY", Action::Ok),
        ("12345", Action::Ok),
        ("554", Action::Ok),
        ("permit", Action::Ok),
        ("DUNNO", Action::Dunno),
        ("dunno with text", Action::Dunno),
        ("REJECT", rej("5.7.1", 554, "Access denied")),
        ("reject Go away", rej("5.7.1", 554, "Go away")),
        (
            "REJECT 5.7.26 Unauthenticated mail",
            rej("5.7.26", 554, "Unauthenticated mail"),
        ),
        (
            "REJECT 4.1.1 class follows the code",
            rej("5.1.1", 554, "class follows the code"),
        ),
        ("REJECT 5.7.1", rej("5.7.1", 554, "Access denied")),
        ("DEFER", def("4.7.1", 450, "Access denied")),
        (
            "DEFER Come back later",
            def("4.7.1", 450, "Come back later"),
        ),
        ("DEFER_IF_PERMIT", def("4.7.1", 450, "Service unavailable")),
        ("defer_if_reject maybe", def("4.7.1", 450, "maybe")),
        ("550 Mailbox unknown", rej("5.7.1", 550, "Mailbox unknown")),
        (
            "550 5.1.1 Mailbox unknown",
            rej("5.1.1", 550, "Mailbox unknown"),
        ),
        ("521 5.7.1 Go away", rej("5.7.1", 521, "Go away")),
        ("451 Try later", def("4.7.1", 451, "Try later")),
        (
            "421 5.3.0 Class follows code",
            def("4.3.0", 421, "Class follows code"),
        ),
        ("450 bad\u{1}text", def("4.7.1", 450, "bad text")),
        ("DISCARD", Action::Discard(String::new())),
        ("DISCARD spam source", Action::Discard("spam source".into())),
        ("HOLD", Action::Hold(String::new())),
        ("hold for review", Action::Hold("for review".into())),
        (
            "PREPEND X-Checked: yes",
            Action::Prepend("X-Checked: yes".into()),
        ),
        (
            "PREPEND not a header",
            Action::Ignored("PREPEND not a header".into()),
        ),
        ("PREPEND", Action::Ignored("PREPEND".into())),
        ("WARN", Action::Warn(String::new())),
        ("WARN look at this", Action::Warn("look at this".into())),
        ("INFO noted", Action::Info("noted".into())),
        ("JUNK", Action::Junk(String::new())),
        (
            "JUNK looks like spam",
            Action::Junk("looks like spam".into()),
        ),
        (
            "FOLDER Lists.postfix",
            Action::Folder("Lists.postfix".into()),
        ),
        ("folder", Action::Ignored("folder".into())),
        (
            "BCC archive@example.com",
            Action::Ignored("BCC archive@example.com".into()),
        ),
        (
            "FILTER smtp:[127.0.0.1]:10025",
            Action::Ignored("FILTER smtp:[127.0.0.1]:10025".into()),
        ),
        (
            "REDIRECT abuse@example.com",
            Action::Ignored("REDIRECT abuse@example.com".into()),
        ),
        ("HANGUP", Action::Ignored("HANGUP".into())),
        (
            "permit_mynetworks",
            Action::Ignored("permit_mynetworks".into()),
        ),
        (
            "permit_mynetworks, reject",
            Action::Ignored("permit_mynetworks, reject".into()),
        ),
        (
            "my_restriction_class",
            Action::Ignored("my_restriction_class".into()),
        ),
        ("4xx text", Action::Ignored("4xx text".into())),
        (
            "hash:/etc/postfix/other",
            def("4.3.5", 451, "Server configuration error"),
        ),
    ];
    for (raw, want) in cases {
        let got = parse_action(raw);
        assert_eq!(got, want, "{raw:?}");
    }
    assert!(Action::Ok.is_terminal());
    assert!(Action::Junk(String::new()).is_terminal());
    assert!(Action::Folder("x".into()).is_terminal());
    assert!(Action::Hold(String::new()).is_terminal());
    assert!(!Action::Dunno.is_terminal());
    assert!(!Action::Warn(String::new()).is_terminal());
    assert!(!Action::Prepend("X: y".into()).is_terminal());
    assert!(!Action::Ignored("BCC x@y".into()).is_terminal());
}

#[test]
fn lookup_errors_are_returned() {
    let d = tempfile::tempdir().unwrap();
    let t = vec![table(
        d.path(),
        "empty-result",
        "regexp",
        "/^(x)?y@/ ${1}\n",
    )];
    let mut probes = Vec::new();
    let e = check_address(&t, "y@example.com", &AccessOptions::default(), &mut probes).unwrap_err();
    assert!(e.msg.contains("empty string result"), "{e}");
    assert!(e.msg.contains("looking up \"y@example.com\""), "{e}");
}
