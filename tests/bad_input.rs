//! The bad-input catalogue: malformed and hostile messages, each with its
//! expected outcome, through the real binary with header and body rules in
//! force (so every parser runs). tests/delivery.rs
//! (`delivered_bytes_equal_input_minus_from_line`) already covers: plain,
//! CRLF, no trailing newline, folded, 8-bit, invalid UTF-8, MIME, NUL bytes
//! in the body, bare CR, no separator, no From_ line, empty input, only a
//! From_ line, a continuation before any header, a larger body.
//!
//! | case                           | expected outcome                                 |
//! |--------------------------------|--------------------------------------------------|
//! | NUL bytes in headers           | delivered byte-exact; rules see the fields       |
//! | mixed CRLF, LF and bare CR     | delivered byte-exact                             |
//! | malformed RFC 2047 words       | delivered byte-exact; words kept as written      |
//! | a 1 MiB header line            | over max_header_bytes: body rule runs, logged    |
//! | 100,000 header fields          | over max_headers: body rule runs, logged         |
//! | a 1 MiB line without newline   | over max_header_bytes: no body, Inbox, logged    |
//! | a From_ line over 4096 bytes   | the envelope line: removed, headers parsed       |
//! | 2,000-level multipart nesting  | body rule runs, no stack overflow; byte-exact    |
//! | 2,000-level message/rfc822     | the same                                         |
//! | 100,000 MIME parts in a window | the same                                         |
//! | base64/QP garbage in parts     | the same                                         |
//!
//! Outcomes are also checked against `--test` (the same decision).

mod util;

use util::*;

const RULES: &str = r#"
[spam]
junk_threshold = 5.0

[[rule]]
name = "subject"
header = "Subject"
match = '(?i)never-matches-xyzzy'
score = 1.0

[[rule]]
name = "body"
body = '(?i)needle-in-the-body'
folder = "Found"
"#;

/// Delivers `input` and checks: exit 0, byte-exact, in `folder`, with the
/// dry run agreeing. Returns the stderr (with --log-stderr).
fn check(name: &str, rules: &str, input: &[u8], folder: &str) -> String {
    let mut h = Home::new();
    h.system(rules);
    let r = h.run(&["-f", "a@b", "--log-stderr"], input);
    assert_eq!(r.code, 0, "{name}: {}", r.stderr);
    let d = h.delivered();
    assert_eq!(
        d.keys().collect::<Vec<_>>(),
        vec![folder],
        "{name}: delivered to {:?}",
        d.keys()
    );
    assert_eq!(d[folder].len(), 1, "{name}");
    assert!(d[folder][0] == without_from(input), "{name}: bytes differ");
    assert!(h.files_in("tmp").is_empty(), "{name}");
    let t = h.run(&["-f", "a@b", "--test", "--format", "json"], input);
    assert_eq!(t.code, 0, "{name}: {}", t.stderr);
    let j: serde_json::Value = serde_json::from_str(&t.stdout).unwrap();
    let want = if folder.is_empty() { "inbox" } else { "folder" };
    assert_eq!(j["action"], want, "{name}: --test disagrees");
    r.stderr
}

#[test]
fn malformed_headers_are_delivered_byte_exact() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "NUL bytes in headers",
            b"From a@b  Sat Nov 21 10:00:00 2026\nSubject: a\0b\nX-\0: v\n\nneedle-in-the-body\n".to_vec(),
        ),
        (
            "mixed line endings",
            b"From a@b  Sat Nov 21 10:00:00 2026\r\nSubject: mixed\r\nX-A: 1\nX-B: 2\r\r\n\nbody\r\nmore\rend\n".to_vec(),
        ),
        (
            "malformed RFC 2047",
            msg(
                "Subject: =?UTF-8?B?####?= =?UTF-8?Q?a=ZZ?= =?x?= =?UTF-8?X?abc?= =?=?=\nFrom: =?unknown-charset?B?w6k=?= <a@b>\nTo: =?UTF-8?B?",
                "body\n",
            ),
        ),
        (
            "8-bit everywhere",
            [b"From a@b  Sat Nov 21 10:00:00 2026\nSubject: \xff\xfe\xc3\x28\n\xe9t\xe9: v\n\nbody \x80\n".as_slice()].concat(),
        ),
    ];
    for (name, input) in cases {
        let folder = if name.starts_with("NUL") { "Found" } else { "" };
        check(name, RULES, &input, folder);
    }
}

#[test]
fn header_limits_hold_for_huge_headers() {
    // Each goes over a header limit of the defaults: delivered unchanged,
    // logged, and the rules still run: the body rule finds the body after
    // the rest of the header block (the last case has no body).
    let line = format!("Subject: {}\n", "x".repeat(1024 * 1024));
    let many: String = (0..100_000).map(|i| format!("X-H{i}: v\n")).collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "1 MiB header line",
            msg(&line, "needle-in-the-body\n"),
            "Found",
        ),
        (
            "100,000 headers",
            msg(&many, "needle-in-the-body\n"),
            "Found",
        ),
        (
            "1 MiB without newline",
            format!(
                "From a@b  Sat Nov 21 10:00:00 2026\nSubject: {}",
                "y".repeat(1024 * 1024 + 10)
            )
            .into_bytes(),
            "",
        ),
    ];
    for (name, input, folder) in cases {
        let err = check(name, RULES, &input, folder);
        assert!(err.contains("limit reached"), "{name}: {err}");
    }
}

#[test]
fn a_long_from_line_is_the_envelope_line() {
    let input = format!(
        "From {}@b  Sat Nov 21 10:00:00 2026\nSubject: x\n\nneedle-in-the-body\n",
        "a".repeat(5000)
    )
    .into_bytes();
    // Removed, and the rules run on the message after it.
    check("From_ line over 4096 bytes", RULES, &input, "Found");
}

fn nested_multipart(levels: usize) -> Vec<u8> {
    let mut s = String::from("From a@b  Sat Nov 21 10:00:00 2026\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b0\n\n");
    for i in 0..levels {
        s.push_str(&format!(
            "--b{i}\nContent-Type: multipart/mixed; boundary=b{}\n\n",
            i + 1
        ));
    }
    s.push_str(&format!(
        "--b{levels}\nContent-Type: text/plain\n\nneedle-in-the-body\n"
    ));
    for i in (0..=levels).rev() {
        s.push_str(&format!("--b{i}--\n"));
    }
    s.into_bytes()
}

fn nested_rfc822(levels: usize) -> Vec<u8> {
    let mut s = String::from("From a@b  Sat Nov 21 10:00:00 2026\nMIME-Version: 1.0\n");
    for _ in 0..levels {
        s.push_str("Content-Type: message/rfc822\n\n");
    }
    s.push_str("Content-Type: text/plain\n\nneedle-in-the-body\n");
    s.into_bytes()
}

#[test]
fn deep_mime_nesting_cannot_overflow_the_stack() {
    // A window large enough to hold all of it, and the default window that
    // cuts it: body rules parse either without crashing.
    let big = format!("[settings]\nbody_window = 4194304\n{RULES}");
    let many_parts = {
        let mut s = String::from("From a@b  Sat Nov 21 10:00:00 2026\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=p\n\n");
        for _ in 0..100_000 {
            s.push_str("--p\n\n");
        }
        s.push_str("--p\nContent-Type: text/plain\n\nneedle-in-the-body\n--p--\n");
        s.into_bytes()
    };
    let garbage = msg(
        "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=g\n",
        "--g\nContent-Transfer-Encoding: base64\nContent-Type: text/plain\n\n!!!!****\n--g\nContent-Transfer-Encoding: quoted-printable\nContent-Type: text/html\n\n=ZZ=\n<p>needle-in-the-body</p>=\n--g\n",
    );
    for (name, input) in [
        ("2,000-level multipart", nested_multipart(2000)),
        ("20,000-level multipart", nested_multipart(20_000)),
        ("2,000-level message/rfc822", nested_rfc822(2000)),
        ("100,000 parts", many_parts),
        ("encoding garbage", garbage),
    ] {
        for rules in [RULES, big.as_str()] {
            // Whether the needle is found depends on the window; that the
            // delivery completes byte-exact does not.
            let mut h = Home::new();
            h.system(rules);
            let r = h.deliver(&input);
            assert_eq!(r.code, 0, "{name}: {}", r.stderr);
            assert_eq!(h.count(), 1, "{name}");
            assert_eq!(
                h.delivered().values().next().unwrap()[0],
                without_from(&input),
                "{name}"
            );
        }
    }
    // With the whole nesting in the window the text part is found.
    check(
        "2,000-level multipart",
        &big,
        &nested_multipart(2000),
        "Found",
    );
}
