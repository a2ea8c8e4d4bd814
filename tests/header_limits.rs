//! A header block over a limit (`max_headers`, `max_header_bytes`) bounds
//! what is held in memory and nothing else: the envelope checks, the local
//! filter's verdict at the top, the header rules (on the fields within the
//! limits) and the body rules all still apply, the message is delivered
//! byte for byte, and the limit shows in the log line and the trace and can
//! be tested by a rule (`header_limit`). Through the binary.

mod util;

use util::*;

/// 10,001 padding fields: one over the default `max_headers`.
fn padding() -> String {
    (0..10_001)
        .map(|i| format!("X-Pad-{i}: padding\n"))
        .collect()
}

/// One field over the default `max_header_bytes` (1 MiB).
fn big_field() -> String {
    format!("X-Big: {}\n", "b".repeat(1024 * 1024 + 10))
}

fn run(h: &Home, sender: &str, input: &[u8]) -> Run {
    h.run(
        &["--log-stderr", "-f", sender, "-a", "user@example.com"],
        input,
    )
}

#[test]
fn a_rejected_sender_is_rejected_whatever_the_header_block() {
    let mut h = Home::new();
    let map = h.file("senders", "spammer@example.net REJECT 5.7.1 go away\n");
    h.system(&format!(
        "[access]\nsender = [\"texthash:{}\"]\n",
        map.display()
    ));
    for (name, top) in [
        ("plain", String::new()),
        ("10,001 fields", padding()),
        ("a 1 MiB field", big_field()),
    ] {
        let input = msg(&format!("{top}Subject: hi\n"), "body\n");
        let before = h.count();
        let r = run(&h, "spammer@example.net", &input);
        assert_eq!(r.code, 77, "{name}: {}", r.stderr);
        assert!(r.stderr.contains("5.7.1"), "{name}: {}", r.stderr);
        assert_eq!(h.count(), before, "{name}");
        // Another sender with the same message is delivered.
        let r = run(&h, "friend@example.org", &input);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
    }
    assert_eq!(h.delivered()[""].len(), 3);
}

#[test]
fn the_local_filters_verdict_at_the_top_holds_over_a_limit() {
    // The embedded default rules: spam to Junk, a virus discarded.
    let h = Home::new();
    let virus = msg(
        &format!(
            "X-Spam-Flag: YES\nX-Amavis-Alert: INFECTED, message contains virus: Eicar\n{}Subject: hi\n",
            padding()
        ),
        "body\n",
    );
    let r = run(&h, "a@example.org", &virus);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(h.delivered().is_empty(), "{:?}", h.delivered().keys());
    assert!(r.stderr.contains("action=discard"), "{}", r.stderr);

    let spam = msg(
        &format!("X-Spam-Flag: YES\n{}Subject: hi\n", big_field()),
        "body\n",
    );
    let r = run(&h, "a@example.org", &spam);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d = h.delivered();
    assert_eq!(d.keys().collect::<Vec<_>>(), ["Junk"]);
    assert!(d["Junk"][0] == without_from(&spam), "bytes differ");
}

const RULES: &str = r#"
[[rule]]
name = "late"
header = "X-Late"
match = "."
folder = "Late"

[[rule]]
name = "routed"
header = "Subject"
match = "route-me"
folder = "Routed"

[[rule]]
name = "body"
body = "needle-in-the-body"
folder = "Found"
"#;

#[test]
fn over_a_limit_header_rules_see_the_fields_within_it_and_body_rules_the_body() {
    let mut h = Home::new();
    h.system(RULES);
    // A field within the limits decides; one after them is not seen.
    let input = msg(
        &format!("Subject: route-me\n{}X-Late: yes\n", padding()),
        "hello\n",
    );
    assert_eq!(run(&h, "a@example.org", &input).code, 0);
    let d = h.delivered();
    assert_eq!(d.keys().collect::<Vec<_>>(), ["Routed"]);
    assert!(d["Routed"][0] == without_from(&input), "bytes differ");

    // The body after an unread rest of the header block (no blank line:
    // the body starts at the first line that is not a field).
    for (name, top) in [("fields", padding()), ("bytes", big_field())] {
        let mut h = Home::new();
        h.system(RULES);
        let input = format!(
            "From a@example.org  Sat Nov 21 10:00:00 2026\nSubject: hi\n{top}X-Late-Too: 1\nthis is the body: needle-in-the-body\n"
        )
        .into_bytes();
        let r = run(&h, "a@example.org", &input);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        let d = h.delivered();
        assert_eq!(d.keys().collect::<Vec<_>>(), ["Found"], "{name}");
        assert!(
            d["Found"][0] == without_from(&input),
            "{name}: bytes differ"
        );
    }
}

#[test]
fn a_rule_can_test_the_limit_which_shows_in_the_log_and_the_trace() {
    let mut h = Home::new();
    h.system(
        "[[rule]]\nname = \"padded\"\nheader_limit = true\njunk = true\n\n\
         [[rule]]\nname = \"fits\"\nnot = { header_limit = true }\nheader_limit = false\nscore = 0.5\n",
    );
    let padded = msg(&format!("Subject: hi\n{}", padding()), "body\n");
    let r = run(&h, "a@example.org", &padded);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("header limit reached: more than 10000 header fields"),
        "{}",
        r.stderr
    );
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("action="))
        .unwrap_or_default();
    assert!(line.contains(" header_limit=max_headers"), "{line}");
    assert!(line.contains(r"rule=rule\spadded"), "{line}");
    assert_eq!(h.delivered()["Junk"][0], without_from(&padded));

    let plain = msg("Subject: hi\n", "body\n");
    let r = run(&h, "a@example.org", &plain);
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("action="))
        .unwrap_or_default();
    assert!(!line.contains("header_limit"), "{line}");
    assert!(
        line.contains("action=inbox") && line.contains("score=0.50"),
        "{line}"
    );
    assert_eq!(h.delivered()[""].len(), 1);

    // --test: the trace has the limit step, in both formats.
    let r = h.run(&["--test"], &padded);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.lines().any(|l| l
            .split_whitespace()
            .take(3)
            .eq(["-", "limit", "max_headers"])),
        "{}",
        r.stdout
    );
    let r = h.run(&["--test", "--format", "json"], &padded);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let steps = v["trace"].as_array().unwrap();
    let limit = steps
        .iter()
        .find(|s| s["kind"] == "limit")
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert_eq!(limit["name"], "max_headers");
    assert!(limit["result"]
        .as_str()
        .unwrap()
        .contains("the first 10000 fields"));
    assert_eq!(v["action"], "junk");
}
