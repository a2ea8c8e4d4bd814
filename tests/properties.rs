//! Property tests (proptest): invariants over generated messages, with
//! modest case counts so that the test command stays fast. Raise them with
//! PROPTEST_CASES=N for a longer run. tests/dryrun.rs checks the same
//! agreement of --test and delivery on a fixed corpus.

mod util;

use deliver::input::message::Limits;
use proptest::prelude::*;
use util::*;

/// The case count: `PROPTEST_CASES` when set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A header line: well-formed, folded, odd or hostile.
fn header_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[A-Za-z-]{1,12}: [ -~]{0,40}\n".prop_map(String::into_bytes),
        "[A-Za-z-]{1,12}: [ -~]{0,20}\n[ \t][ -~]{0,20}\n".prop_map(String::into_bytes),
        "[A-Za-z-]{1,12}: [ -~]{0,20}\r\n".prop_map(String::into_bytes),
        "Subject: =\\?(UTF-8|utf-8|x)\\?[BbQqX]\\?[A-Za-z0-9=+/_]{0,16}\\?=\n"
            .prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..40),
        Just(b" continuation first\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
    ]
}

/// A message as local(8) could hand it over: maybe a From_ line, header
/// lines, maybe a separator, a body of arbitrary bytes.
fn message() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            Just(Vec::new()),
            Just(b"From sender@example.org  Sat Nov 21 10:00:00 2026\n".to_vec()),
            Just(b"From x\r\n".to_vec()),
            Just(b"From no-newline".to_vec()),
        ],
        proptest::collection::vec(header_line(), 0..12),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(from, headers, sep, body)| {
            let mut m = from;
            for h in headers {
                m.extend(h);
            }
            if sep {
                m.push(b'\n');
            }
            m.extend(body);
            m
        })
}

/// What must be delivered: the input without its From_ line (a first line
/// that begins with "From " and ends in a newline, or, without a newline,
/// is longer than 4096 bytes).
fn expected(input: &[u8]) -> &[u8] {
    if input.starts_with(b"From ") {
        match input.iter().position(|&b| b == b'\n') {
            Some(i) => return &input[i + 1..],
            None if input.len() > 4096 => return &[],
            None => {}
        }
    }
    input
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    /// The reader writes every byte after the From_ line, whatever the
    /// limits, and keeps at most the window of the body.
    #[test]
    fn spooled_bytes_are_the_input_minus_the_from_line(
        input in message(),
        max_header_bytes in prop_oneof![Just(1024usize), Just(1 << 20)],
        max_headers in 1usize..20,
        body_window in 0usize..64,
    ) {
        let limits = Limits { max_header_bytes, max_headers, body_window };
        let mut out = Vec::new();
        let sp = deliver::input::message::read(&input[..], &limits, &mut out).unwrap();
        prop_assert_eq!(&out[..], expected(&input));
        prop_assert_eq!(sp.size, out.len() as u64);
    }

    /// Over a header limit, the fields parsed are the first of those read
    /// without limits, each complete, and the body window is the same: the
    /// body is found after the rest of the header block.
    #[test]
    fn over_a_limit_the_fields_are_a_prefix_and_the_body_is_the_same(
        input in message(),
        pad in 0usize..3000,
        max_headers in 1usize..20,
        body_window in 0usize..64,
    ) {
        // Padding after the first header line reaches the byte limit too.
        let mut input = input;
        let at = input.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
        let pad: Vec<u8> = format!("X-Pad: {}\n", "p".repeat(pad)).into_bytes();
        input.splice(at..at, pad);
        let free = Limits { max_header_bytes: 1 << 20, max_headers: 1000, body_window };
        let tight = Limits { max_header_bytes: 1024, max_headers, body_window };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let all = deliver::input::message::read(&input[..], &free, &mut a).unwrap();
        let some = deliver::input::message::read(&input[..], &tight, &mut b).unwrap();
        prop_assert!(all.head.limit_hit.is_none());
        prop_assert_eq!(&a, &b);
        let (fa, fs) = (all.head.headers.fields(), some.head.headers.fields());
        prop_assert!(fs.len() <= fa.len());
        prop_assert_eq!(fs, &fa[..fs.len()]);
        if some.head.limit_hit.is_none() {
            prop_assert_eq!(fs.len(), fa.len());
        }
        prop_assert_eq!(&some.window, &all.window);
    }
}

const RULES: &str = r#"
[spam]
junk_threshold = 5.0
discard_threshold = 20.0

[access]
sender = ["texthash:MAP"]

[[rule]]
name = "pills"
header = "Subject"
match = "(?i)v[i1]agra"
score = 3.0

[[rule]]
name = "list"
header = "List-Id"
match = "rust"
folder = "Lists.rust"

[[rule]]
name = "bounce"
header = "Subject"
match = "^reject me"
reject = "5.7.1 not wanted here"

[[rule]]
name = "later"
header = "Subject"
match = "^defer me"
defer = "4.2.1 try again later"

[[rule]]
name = "drop"
body = "(?i)drop me"
discard = true
"#;

const MAP: &str = "rej.example REJECT go away\nlater.example DEFER busy\ndrop.example DISCARD\n\
                   tag.example PREPEND X-Tag: yes\nfold.example FOLDER Sorted\nok.example OK\n";

fn home() -> Home {
    let mut h = Home::new();
    let m = h.file("sender_access", MAP);
    h.system(&RULES.replace("MAP", &m.display().to_string()));
    h
}

/// A message made of pieces the rules and tables react to.
fn decided_message() -> impl Strategy<Value = (String, Vec<u8>)> {
    (
        prop_oneof![
            Just("a@rej.example".to_string()),
            Just("a@later.example".to_string()),
            Just("a@drop.example".to_string()),
            Just("a@tag.example".to_string()),
            Just("a@fold.example".to_string()),
            Just("a@ok.example".to_string()),
            Just("a@plain.example".to_string()),
            Just("".to_string()),
        ],
        prop_oneof![
            Just("viagra".to_string()),
            Just("reject me".to_string()),
            Just("defer me".to_string()),
            Just("hello".to_string()),
            "[ -~]{0,30}",
        ],
        proptest::option::of(prop_oneof![Just("YES".to_string()), Just("NO".to_string())]),
        proptest::option::of(-5.0f64..30.0),
        proptest::option::of(Just("Rust <rust.lists.example>".to_string())),
        prop_oneof![
            Just("body\n".to_string()),
            Just("please drop me\n".to_string()),
            "[ -~\n]{0,60}"
        ],
    )
        .prop_map(|(sender, subject, flag, score, list, body)| {
            let mut h = format!("Subject: {subject}\n");
            if let Some(f) = flag {
                h.push_str(&format!("X-Spam-Flag: {f}\n"));
            }
            if let Some(s) = score {
                h.push_str(&format!("X-Spam-Score: {s:.1}\n"));
            }
            if let Some(l) = list {
                h.push_str(&format!("List-Id: {l}\n"));
            }
            (sender, msg(&h, &body))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(24)))]

    /// Through the binary: exit 0 and the bytes, exactly once.
    #[test]
    fn delivered_bytes_are_the_input_minus_the_from_line(input in message()) {
        let h = Home::new();
        let r = h.deliver(&input);
        prop_assert_eq!(r.code, 0, "{}", r.stderr);
        let d = h.delivered();
        let all: Vec<&Vec<u8>> = d.values().flatten().collect();
        prop_assert_eq!(all.len(), 1);
        prop_assert_eq!(&all[0][..], expected(&input));
    }

    /// `--test` predicts what delivery does: exit status, status line,
    /// the folder, and the headers added.
    #[test]
    fn test_decision_equals_delivery_decision((sender, input) in decided_message()) {
        let h = home();
        let dry = h.run(&["--test", "--format", "json", "-f", &sender], &input);
        prop_assert_eq!(dry.code, 0, "{}", dry.stderr);
        let v: serde_json::Value = serde_json::from_str(&dry.stdout).unwrap();
        let real = h.run(&["-f", &sender], &input);
        prop_assert_eq!(v["exit_code"].as_i64().unwrap() as i32, real.code, "{}", real.stderr);
        match v["status_line"].as_str() {
            Some(line) => prop_assert_eq!(real.first_line(), line),
            None => prop_assert!(real.stderr.is_empty(), "{}", real.stderr),
        }
        let d = h.delivered();
        match v["action"].as_str().unwrap() {
            "inbox" | "junk" | "folder" => {
                let folder = v["folder"].as_str().unwrap_or("").to_string();
                prop_assert_eq!(d.keys().cloned().collect::<Vec<_>>(), vec![folder]);
                let mut want = Vec::new();
                for line in v["add_headers"].as_array().unwrap() {
                    want.extend_from_slice(line.as_str().unwrap().as_bytes());
                    want.push(b'\n');
                }
                want.extend_from_slice(without_from(&input));
                prop_assert_eq!(&d.values().next().unwrap()[0], &want);
            }
            _ => prop_assert!(d.is_empty(), "{:?}", d.keys()),
        }
    }
}
