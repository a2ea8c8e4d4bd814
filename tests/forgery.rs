//! Log-line and folder-name forgery (SECURITY.md, "No header or log line
//! injection"): text from the message or envelope cannot forge a field of
//! the delivery line or a second line, and cannot hide in a folder name.
//!
//! The delivery line is read back with the rules that deliver(1) documents
//! (LOGGING), written out again here rather than taken from the crate, so
//! that the test holds the documentation to the binary.

mod util;

use util::*;

/// The keys of the delivery line, in their fixed order.
const KEYS: [&str; 10] = [
    "from", "to", "msgid", "size", "action", "folder", "score", "rule", "status", "delay",
];

/// A value decoded as deliver(1) says: `\s` a space, `\\` a backslash,
/// `\xHH`, `\uHHHH`, `\UHHHHHHHH` the code point in hex; no space, `"` or
/// other backslash.
fn decode(v: &str) -> String {
    let mut out = String::new();
    let mut it = v.chars();
    while let Some(c) = it.next() {
        assert!(c != ' ' && c != '"', "{c:?} in the value {v:?}");
        if c != '\\' {
            out.push(c);
            continue;
        }
        let digits = match it.next() {
            Some('s') => {
                out.push(' ');
                continue;
            }
            Some('\\') => {
                out.push('\\');
                continue;
            }
            Some('x') => 2,
            Some('u') => 4,
            Some('U') => 8,
            e => panic!("bad escape {e:?} in {v:?}"),
        };
        let hex: String = it.by_ref().take(digits).collect();
        let n = u32::from_str_radix(&hex, 16).unwrap_or_else(|_| panic!("{hex:?} in {v:?}"));
        out.push(char::from_u32(n).unwrap());
    }
    out
}

/// The one delivery line in `--log-stderr` output, split into its keys and
/// decoded values. Every other line must not look like one.
fn delivery_line(stderr: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("deliver: "))
        .filter(|l| l.starts_with("from="))
        .collect();
    assert_eq!(lines.len(), 1, "not one delivery line:\n{stderr}");
    let line = lines[0];
    let tokens: Vec<(&str, &str)> = line
        .split(' ')
        .map(|t| {
            t.split_once('=')
                .unwrap_or_else(|| panic!("{t:?} is not key=value: {line}"))
        })
        .collect();
    // Each key at most once, in the documented order.
    let positions: Vec<usize> = tokens
        .iter()
        .map(|(k, _)| {
            KEYS.iter()
                .position(|x| x == k)
                .unwrap_or_else(|| panic!("{k:?} is not a documented key: {line}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "keys repeated or out of order: {line}"
    );
    tokens
        .into_iter()
        .map(|(k, v)| (k.to_string(), decode(v)))
        .collect()
}

fn get<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[test]
fn forged_fields_in_the_message_id_and_sender_stay_one_value() {
    let mut h = Home::new();
    let t = h.file(
        "t.regexp",
        "/rej([^@\"]*)/ REJECT 5.7.1 no $1\n/^(.*)$/ INFO seen $1\n",
    );
    h.system(&format!(
        "[access]\nsender = [\"regexp:{}\"]\n[[rule]]\nname = \"my list\"\nheader = \"Subject\"\nmatch = \"^x\"\nfolder = \"Lists\"\n",
        t.display()
    ));
    let msgid = "<x@y> size=1 action=discard folder=Junk rule=forged \\s \"q\"";
    let input = msg(&format!("Message-ID: {msgid}\nSubject: x\n"), "x\n");
    let senders = [
        "\"x> to=<postmaster@example.org> msgid=<\"@evil.example",
        "\"a\\\\s\u{202e}b\u{2028}c\u{2029}d\u{200b}e\u{ad}f\u{3164}g\u{a0}h\"@evil.example",
        "from=<a@b> to=<c@d> msgid=<> size=1 action=discard score=0.00 rule=x delay=0.001",
    ];
    for sender in senders {
        let r = h.run(
            &["--log-stderr", "-f", sender, "-a", "user@example.com"],
            &input,
        );
        assert_eq!(r.code, 0, "{sender:?}: {}", r.stderr);
        let f = delivery_line(&r.stderr);
        let keys: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["from", "to", "msgid", "size", "action", "folder", "score", "rule", "delay"],
            "{}",
            r.stderr
        );
        assert_eq!(get(&f, "from"), Some(format!("<{sender}>").as_str()));
        assert_eq!(get(&f, "to"), Some("<user@example.com>"));
        assert_eq!(get(&f, "msgid"), Some(msgid));
        assert_eq!(get(&f, "action"), Some("folder"));
        assert_eq!(get(&f, "folder"), Some("Lists"));
        // A space in a value is no longer lost (it was `_`).
        assert_eq!(get(&f, "rule"), Some("rule my list"));
        for line in r.stderr.lines() {
            assert!(line.starts_with("deliver: "), "split line: {line:?}");
            assert!(
                !line.contains(['\u{202e}', '\u{2028}', '\u{2029}', '\u{200b}', '\u{ad}']),
                "a hidden character in a log line: {line:?}"
            );
        }
        assert!(r.stderr.contains("deliver: INFO sender"), "{}", r.stderr);
    }
    assert_eq!(h.delivered()["Lists"].len(), senders.len());

    // A reject: the status field is the status line given to Postfix.
    let sender = "rej action=discard status=sent\u{2028}x@evil.example";
    let r = h.run(
        &["--log-stderr", "-f", sender, "-a", "user@example.com"],
        &input,
    );
    assert_eq!(r.code, 77, "{}", r.stderr);
    let status = r.first_line();
    assert_eq!(
        status,
        format!(
            "5.7.1 <{}>: Sender address rejected: no  action=discard status=sent?x",
            sender.replace('\u{2028}', "?")
        ),
        "{}",
        r.stderr
    );
    let f = delivery_line(&r.stderr);
    assert_eq!(get(&f, "action"), Some("reject"));
    assert_eq!(get(&f, "status"), Some(status));
    assert_eq!(get(&f, "folder"), None);
}

#[test]
fn folder_names_with_hidden_characters_go_to_the_inbox() {
    // A FOLDER result built from the sender's address by a regexp table.
    let mut h = Home::new();
    let t = h.file("folders.regexp", "/^\"?folder=([^\"]*)\"?@x$/ FOLDER $1\n");
    h.system(&format!(
        "[access]\nsender = [\"regexp:{}\"]\n",
        t.display()
    ));
    let input = msg("Subject: x\n", "x\n");
    let deliver = |name: &str| {
        let sender = format!("folder={name}@x");
        h.run(&["--log-stderr", "-f", &sender], &input)
    };
    let refused = [
        ("\u{200b}INBOX", "U+200B"),     // zero-width space (Cf)
        ("Junk\u{202e}kcaP", "U+202E"),  // right-to-left override (Cf)
        ("Lists\u{2028}rust", "U+2028"), // line separator (Zl)
        ("Lists\u{2029}rust", "U+2029"), // paragraph separator (Zp)
        ("In\u{ad}voices", "U+00AD"),    // soft hyphen (Cf)
        ("Tag\u{e0041}", "U+E0041"),     // tag letter (Cf)
    ];
    for (i, (name, cp)) in refused.iter().enumerate() {
        let r = deliver(name);
        assert_eq!(r.code, 0, "{name:?}: {}", r.stderr);
        assert_eq!(
            h.delivered().keys().collect::<Vec<_>>(),
            [""],
            "{name:?}: {}",
            r.stderr
        );
        assert_eq!(h.delivered()[""].len(), i + 1);
        assert!(
            r.stderr.contains("refused folder") && r.stderr.contains(cp),
            "{name:?}: {}",
            r.stderr
        );
        let f = delivery_line(&r.stderr);
        assert_eq!(get(&f, "folder"), Some("INBOX"));
    }
    // Kept: a Cyrillic letter that looks like a Latin one, and a space.
    for (name, dir) in [("\u{406}NBOX", "&BAY-NBOX"), ("My Folder", "My Folder")] {
        let r = deliver(name);
        assert_eq!(r.code, 0, "{name:?}: {}", r.stderr);
        assert_eq!(h.delivered()[dir].len(), 1, "{name:?}: {}", r.stderr);
        assert_eq!(get(&delivery_line(&r.stderr), "folder"), Some(name));
    }

    // The same names in a rules file: the user's file is refused with the
    // character's code point, and the message goes to the Inbox.
    for (name, cp) in refused {
        let h = Home::new();
        h.user(&format!(
            "[[rule]]\nheader = \"Subject\"\nmatch = \"x\"\nfolder = \"{}\"\n",
            toml_escape(name)
        ));
        let r = h.run(&["--log-stderr"], &input);
        assert_eq!(r.code, 0, "{name:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("ignoring user rules") && r.stderr.contains(cp),
            "{name:?}: {}",
            r.stderr
        );
        assert_eq!(h.delivered().keys().collect::<Vec<_>>(), [""], "{name:?}");
    }
}

/// `s` for a TOML basic string, every non-ASCII character as `\UHHHHHHHH`.
fn toml_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else {
                format!("\\U{:08X}", u32::from(c))
            }
        })
        .collect()
}
