//! `deliver report` through the real binary: the log lines of real
//! deliveries round-trip into counts that match the Maildirs; the
//! Prometheus output is valid exposition format; the HTML page renders its
//! charts in a real browser (headless Chromium) without a console message.

mod util;

use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use util::*;

/// `deliver report ARGS` with `stdin`: (exit code, stdout, stderr).
fn report(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut c = Command::new(BIN);
    c.arg("report")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut i = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let w = std::thread::spawn(move || {
        let _ = i.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    w.join().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn report_json(args: &[&str], stdin: &[u8]) -> Value {
    let mut a = vec!["--format", "json"];
    a.extend(args);
    let (code, out, err) = report(&a, stdin);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

const SYSTEM: &str = r#"
[settings]
quarantine_folder = "Held"
[spam]
junk_threshold = 5.0
[access]
sender = ["texthash:MAP"]
[[rule]]
name = "rust list"
header = "List-Id"
match = "rust"
folder = "Lists/rust"
[[rule]]
name = "drop"
header = "Subject"
match = "^drop"
discard = true
[[rule]]
name = "bounce"
header = "Subject"
match = "^reject"
reject = "go away"
[[rule]]
name = "later"
header = "Subject"
match = "^defer"
defer = "try later"
"#;

/// One kind of message of the corpus: its sender, headers, the exit code
/// and the action it must log.
struct Kind {
    sender: &'static str,
    headers: &'static str,
    code: i32,
    action: &'static str,
}

const KINDS: [Kind; 8] = [
    Kind {
        sender: "friend@example.org",
        headers: "Subject: hello\n",
        code: 0,
        action: "inbox",
    },
    Kind {
        sender: "list@lists.example",
        headers: "List-Id: <rust-users.lists.example>\nSubject: x\n",
        code: 0,
        action: "folder",
    },
    Kind {
        sender: "spam@example.net",
        headers: "X-Spam-Flag: YES\nSubject: win\n",
        code: 0,
        action: "junk",
    },
    Kind {
        sender: "noise@example.net",
        headers: "Subject: drop this\n",
        code: 0,
        action: "discard",
    },
    Kind {
        sender: "pest@example.net",
        headers: "Subject: reject this\n",
        code: 77,
        action: "reject",
    },
    Kind {
        sender: "slow@example.net",
        headers: "Subject: defer this\n",
        code: 75,
        action: "defer",
    },
    Kind {
        sender: "a@blocked.example",
        headers: "Subject: hi\n",
        code: 77,
        action: "reject",
    },
    Kind {
        sender: "b@muted.example",
        headers: "Subject: hi\n",
        code: 0,
        action: "discard",
    },
];

/// The corpus delivered: the log lines of each delivery (what
/// `--log-stderr` wrote after `deliver: `), and per user its home, its address and how many
/// messages of each kind it was sent.
/// A user of the corpus: home, address, messages sent of each kind.
type User = (Home, String, [usize; KINDS.len()]);

fn deliver_corpus() -> (Vec<Vec<String>>, Vec<User>) {
    let mut lines = Vec::new();
    let mut users = Vec::new();
    for (u, name) in ["alice", "bob", "carol"].iter().enumerate() {
        let mut h = Home::new();
        let map = h.file(
            "sender_access",
            "blocked.example REJECT\nmuted.example DISCARD\n",
        );
        h.system(&SYSTEM.replace("MAP", map.to_str().unwrap()));
        let to = format!("{name}@example.com");
        let mut sent = [0; KINDS.len()];
        for (k, kind) in KINDS.iter().enumerate() {
            // Different counts per user and kind, so that a swap shows.
            let n = 1 + (u * 3 + k * 2) % 5;
            sent[k] = n;
            for i in 0..n {
                let m = msg(kind.headers, &format!("message {i}\n"));
                let r = h.run(&["-f", kind.sender, "-a", &to, "--log-stderr"], &m);
                assert_eq!(r.code, kind.code, "{name} {}: {}", kind.action, r.stderr);
                lines.push(
                    r.stderr
                        .lines()
                        .filter_map(|l| l.strip_prefix("deliver: "))
                        .map(str::to_string)
                        .collect(),
                );
            }
        }
        users.push((h, to, sent));
    }
    (lines, users)
}

/// The lines as rsyslog writes them to mail.log, one process ID per
/// delivery, every other delivery in the traditional format and the others
/// in RFC 3339, with a line of Postfix's before each.
fn as_syslog(deliveries: &[Vec<String>]) -> String {
    let mut out = String::new();
    for (i, lines) in deliveries.iter().enumerate() {
        let (m, s) = (i / 60, i % 60);
        out.push_str(&format!(
            "Dec  3 10:{m:02}:{s:02} mx postfix/local[99]: ABC{i}: to=<x@example.com>, status=sent\n"
        ));
        for l in lines {
            if i % 2 == 0 {
                out.push_str(&format!(
                    "Dec  3 10:{m:02}:{s:02} mx deliver[{}]: {l}\n",
                    1000 + i
                ));
            } else {
                out.push_str(&format!(
                    "2025-12-03T10:{m:02}:{s:02}.123456+01:00 mx deliver[{}]: {l}\n",
                    1000 + i
                ));
            }
        }
    }
    out
}

fn count(v: &Value, path: &[&str]) -> u64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_u64().unwrap_or(0)
}

/// Delivers a corpus to three users through the real binary, and reports
/// on its log lines, bare (as `journalctl -o cat` gives them) and as a
/// mail.log and its gzipped rotation: the counts per folder are the files
/// in the Maildirs, the counts per action and recipient are what was sent.
#[test]
fn counts_round_trip_to_the_maildirs() {
    let (deliveries, users) = deliver_corpus();
    let lines: Vec<String> = deliveries.concat();
    let bare = lines.join("\n") + "\n";
    let from_stdin = report_json(&[], bare.as_bytes());

    let d = tempfile::tempdir().unwrap();
    let syslog = as_syslog(&deliveries);
    let half = syslog.len() / 2;
    let cut = syslog[..half].rfind('\n').unwrap() + 1;
    let rotated = d.path().join("mail.log.1.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&syslog.as_bytes()[..cut]).unwrap();
    fs::write(&rotated, gz.finish().unwrap()).unwrap();
    let current = d.path().join("mail.log");
    fs::write(&current, &syslog[cut..]).unwrap();
    let from_files = report_json(&[rotated.to_str().unwrap(), current.to_str().unwrap()], b"");

    for v in [&from_stdin, &from_files] {
        assert_eq!(count(v, &["lines", "unparsable"]), 0, "{v}");
        // Files per folder, over every user's Maildir.
        let mut files: BTreeMap<String, u64> = BTreeMap::new();
        for (h, _, _) in &users {
            for (folder, msgs) in h.delivered() {
                let f = if folder.is_empty() {
                    "INBOX".to_string()
                } else {
                    folder
                };
                *files.entry(f).or_default() += msgs.len() as u64;
            }
        }
        let by_folder: BTreeMap<String, u64> = v["messages"]["by_folder"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
            .collect();
        assert_eq!(by_folder, files);
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            ["INBOX", "Junk", "Lists.rust"]
        );
        // Per action and per recipient: what was sent.
        let mut by_action: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, to, sent) in &users {
            let r = v["recipients"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["recipient"] == to.as_str())
                .unwrap_or_else(|| panic!("{to} not in {v}"));
            let mut mine: BTreeMap<&str, u64> = BTreeMap::new();
            for (k, kind) in KINDS.iter().enumerate() {
                *mine.entry(kind.action).or_default() += sent[k] as u64;
                *by_action.entry(kind.action).or_default() += sent[k] as u64;
            }
            for (a, n) in &mine {
                assert_eq!(count(r, &["by_action", a]), *n, "{to} {a}");
            }
            assert_eq!(count(r, &["total"]), mine.values().sum::<u64>());
        }
        for (a, n) in &by_action {
            assert_eq!(count(v, &["messages", "by_action", a]), *n, "{a}");
        }
        assert_eq!(
            count(v, &["messages", "total"]),
            by_action.values().sum::<u64>()
        );
        // Senders and rules: the rejected and discarded ones, by what decided.
        let sent_of = |k: usize| users.iter().map(|u| u.2[k] as u64).sum::<u64>();
        let senders = |key: &str| -> BTreeMap<String, u64> {
            v[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["sender"].as_str().unwrap().to_string(),
                        e["count"].as_u64().unwrap(),
                    )
                })
                .collect()
        };
        assert_eq!(
            senders("rejected_senders"),
            BTreeMap::from([
                ("pest@example.net".into(), sent_of(4)),
                ("a@blocked.example".into(), sent_of(6))
            ])
        );
        assert_eq!(
            senders("discarded_senders"),
            BTreeMap::from([
                ("noise@example.net".into(), sent_of(3)),
                ("b@muted.example".into(), sent_of(7))
            ])
        );
        let rules: BTreeMap<String, u64> = v["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["rule"].as_str().unwrap().to_string(),
                    e["count"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(rules.get("rule drop"), Some(&sent_of(3)));
        assert_eq!(rules.get("rule rust list"), Some(&sent_of(1)));
        // Each user's rules name their own copy of the map.
        let table = |result: &str| -> u64 {
            rules
                .iter()
                .filter(|(r, _)| {
                    r.starts_with("access sender texthash:")
                        && [" key blocked.example: ", " key muted.example: "]
                            .iter()
                            .any(|k| r.ends_with(&format!("{k}{result}")))
                })
                .map(|(_, n)| n)
                .sum()
        };
        assert_eq!(table("REJECT"), sent_of(6), "{rules:?}");
        assert_eq!(table("DISCARD"), sent_of(7), "{rules:?}");
        // Deferrals: the decision's, each once (not again for the warning
        // line that repeats the status), and no failure.
        assert_eq!(
            v["deferrals"],
            serde_json::json!([{"status": "4.7.1 try later", "count": sent_of(5)}])
        );
        assert_eq!(v["failures"], serde_json::json!([]));
        let buckets: u64 = v["scores"]["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].as_u64().unwrap())
            .sum();
        assert_eq!(buckets, count(v, &["messages", "total"]));
    }
    assert_eq!(
        count(&from_stdin, &["lines", "without_timestamp"]),
        lines.len() as u64
    );
    assert_eq!(
        count(&from_files, &["lines", "foreign"]),
        deliveries.len() as u64
    );
    assert_eq!(count(&from_files, &["lines", "without_timestamp"]), 0);
    assert!(from_files["hours"]
        .as_array()
        .is_some_and(|h| !h.is_empty()));
}

/// Lines of other programs are skipped, lines of deliver that are not
/// what it writes are counted and shown with file and line, lines with
/// keys added later still count; only an unreadable file is an error.
#[test]
fn bad_lines_are_counted_never_fatal() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("mail.log");
    fs::write(
        &log,
        b"Dec  3 10:00:00 mx postfix/smtpd[1]: connect from x\n\
         Dec  3 10:00:01 mx deliver[2]: from=<a@x> to=<u@y> size=1 action=folder folder=A folder=B pipe=archive score=1.00 rule=r delay=0.001\n\
         Dec  3 10:00:02 mx deliver[3]: from=<a@x> to=<u@y> size=1 action=inbox\\q score=1.00\n\
         Dec  3 10:00:03 mx deliver[4]: from=<a@x> to=<u@y> size=1\n\
         Dec  3 10:00:04 mx deliver[5]: warning: 4.2.2 disk full\n\
         Dec  3 10:00:05 mx deliver[6]: \xff\xfe\n\
         garbage that is not syslog\n",
    )
    .unwrap();
    let v = report_json(&[log.to_str().unwrap()], b"");
    assert_eq!(count(&v, &["lines", "read"]), 7);
    assert_eq!(count(&v, &["lines", "foreign"]), 1);
    assert_eq!(count(&v, &["lines", "delivery"]), 1);
    assert_eq!(count(&v, &["lines", "unparsable"]), 3);
    assert_eq!(count(&v, &["messages", "by_folder", "A"]), 1);
    assert_eq!(count(&v, &["messages", "by_folder", "B"]), 1);
    assert_eq!(
        v["failures"],
        serde_json::json!([{"status": "4.2.2 disk full", "count": 1}])
    );
    let where_: Vec<String> = v["unparsable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}:{}", e["file"].as_str().unwrap(), e["line"]))
        .collect();
    let f = log.to_str().unwrap();
    assert_eq!(
        where_,
        [format!("{f}:3"), format!("{f}:4"), format!("{f}:6")]
    );
    // The text report says so too.
    let (code, out, _) = report(&[f], b"");
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("{f}:3: Dec  3 10:00:02 mx deliver[3]: from=<a@x>")),
        "{out}"
    );
    // A file that is not there: an error naming it, exit 1.
    let missing = d.path().join("missing.log");
    let (code, _, err) = report(&[f, missing.to_str().unwrap()], b"");
    assert_eq!(code, 1);
    assert!(err.contains("missing.log: No such file"), "{err}");
}

/// --since and --until keep the lines of the period; bare lines, which
/// have no time, are all counted, and the report says they could not be
/// filtered.
#[test]
fn since_and_until() {
    let line = |when: &str, action: &str| {
        format!("{when} mx deliver[1]: from=<a@x> to=<u@y> size=1 action={action} score=0.00 rule=r delay=0.001\n")
    };
    let log = [
        line("2025-11-30T23:59:59+01:00", "junk"),
        line("2025-12-01T00:00:00+01:00", "inbox"),
        line("2025-12-01T23:59:59.5+01:00", "inbox"),
        line("2025-12-02T00:00:00+01:00", "reject"),
    ]
    .concat();
    let v = report_json(
        &["--since", "2025-12-01", "--until", "2025-12-02"],
        log.as_bytes(),
    );
    assert_eq!(count(&v, &["messages", "total"]), 2);
    assert_eq!(count(&v, &["messages", "by_action", "inbox"]), 2);
    assert_eq!(count(&v, &["lines", "outside_period"]), 2);
    assert_eq!(v["period"]["first"], "2025-12-01T00:00:00");
    assert_eq!(v["period"]["last"], "2025-12-01T23:59:59");
    let v = report_json(&["--since", "2025-12-01T12:00"], log.as_bytes());
    assert_eq!(count(&v, &["messages", "total"]), 2);

    let bare = "from=<a@x> to=<u@y> size=1 action=inbox score=0.00 rule=r delay=0.001\n";
    let (code, out, err) = report(&["--since", "-7d"], bare.as_bytes());
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("1 lines have no timestamp"), "{err}");
    assert!(out.contains("--since and --until do not apply"), "{out}");
    assert!(out.contains("  1   inbox"), "{out}");

    let (code, _, err) = report(&["--since", "last tuesday"], b"");
    assert_eq!(code, 1);
    assert!(err.contains("\"last tuesday\" is not a time"), "{err}");
}

/// A strict reader of the Prometheus text exposition format (0.0.4), as
/// node_exporter's textfile collector takes it: every sample belongs to
/// the family declared by the `# TYPE` line before it (histograms: its
/// `_bucket`, `_sum`, `_count`), each family is declared once, with HELP
/// first, names and labels are well formed, label values properly
/// escaped, values are numbers; a histogram's buckets are cumulative, end
/// at +Inf, and that bucket equals `_count`. Returns the samples.
fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    fn name_ok(n: &str) -> bool {
        let mut c = n.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    fn value(v: &str) -> f64 {
        match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("bad value {v:?}")),
        }
    }
    assert!(text.ends_with('\n'), "no final newline");
    let mut samples = BTreeMap::new();
    let mut declared: BTreeMap<String, String> = BTreeMap::new();
    let mut help: Option<String> = None;
    let mut current: Option<(String, String)> = None;
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = format!("line {}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest.split_once(' ').expect(&at);
            assert!(name_ok(name) && !doc.is_empty(), "{at}");
            help = Some(name.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(&at);
            assert!(name_ok(name), "{at}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{at}"
            );
            assert_eq!(
                help.as_deref(),
                Some(name),
                "{at}: TYPE without HELP before it"
            );
            assert!(
                declared.insert(name.into(), kind.into()).is_none(),
                "{at}: declared twice"
            );
            current = Some((name.into(), kind.into()));
            buckets.clear();
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{at}");
        let (series, v) = line.rsplit_once(' ').expect(&at);
        let v = value(v);
        let (name, labels) = match series.split_once('{') {
            Some((name, l)) => (name, l.strip_suffix('}').expect(&at)),
            None => (series, ""),
        };
        assert!(name_ok(name), "{at}");
        // Labels: name="value" pairs, comma-separated, with \\ \" \n escapes only.
        let mut rest = labels;
        let mut le = None;
        while !rest.is_empty() {
            let (lname, r) = rest.split_once("=\"").expect(&at);
            assert!(name_ok(lname) && !lname.starts_with("__"), "{at}");
            let mut val = String::new();
            let mut chars = r.char_indices();
            let end = loop {
                match chars.next().expect(&at) {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().expect(&at).1 {
                        '\\' => val.push('\\'),
                        '"' => val.push('"'),
                        'n' => val.push('\n'),
                        c => panic!("{at}: bad escape \\{c}"),
                    },
                    (_, '\n') => panic!("{at}"),
                    (_, c) => val.push(c),
                }
            };
            if lname == "le" {
                le = Some(value(&val));
            }
            rest = &r[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
        let (family, kind) = current.clone().expect("a sample before any TYPE");
        if kind == "histogram" {
            if name == format!("{family}_bucket") {
                let le = le.expect(&at);
                if let Some(&(last_le, last)) = buckets.last() {
                    assert!(le > last_le && v >= last, "{at}: buckets not cumulative");
                }
                buckets.push((le, v));
            } else if name == format!("{family}_count") {
                assert_eq!(buckets.last(), Some(&(f64::INFINITY, v)), "{at}");
            } else {
                assert_eq!(name, format!("{family}_sum"), "{at}");
            }
        } else {
            assert_eq!(name, family, "{at}: not of the family declared before it");
            if kind == "counter" {
                assert!(v >= 0.0 && name.ends_with("_total"), "{at}");
            }
        }
        assert!(
            samples.insert(series.to_string(), v).is_none(),
            "{at}: repeated"
        );
    }
    samples
}

#[test]
fn prometheus_output_is_valid_exposition_format() {
    let log = "Dec  3 10:00:01 mx deliver[2]: from=<a@x> to=<u\\x22q\\\\@y> size=1 action=junk folder=Junk score=7.50 rule=rule\\s\\x22quoted\\x22\\s\\\\x delay=0.001\n\
               Dec  3 10:00:02 mx deliver[3]: from=<a@x> to=<u@y> size=1 action=defer score=0.00 rule=r status=4.7.1\\slater delay=0.001\n\
               Dec  3 10:00:02 mx deliver[3]: warning: 4.7.1 later\n\
               Dec  3 10:00:03 mx deliver[4]: from=<a@x> to=<u@y> size=1 action=newthing score=25.00 rule=r delay=0.001\n";
    let (code, out, err) = report(&["--format", "prometheus"], log.as_bytes());
    assert_eq!(code, 0, "{err}");
    let s = parse_exposition(&out);
    assert_eq!(s["deliver_messages_total{action=\"junk\"}"], 1.0);
    assert_eq!(s["deliver_messages_total{action=\"inbox\"}"], 0.0);
    assert_eq!(s["deliver_messages_total{action=\"newthing\"}"], 1.0);
    assert_eq!(
        s["deliver_rule_decisions_total{rule=\"rule \\\"quoted\\\" \\\\x\"}"],
        1.0
    );
    assert_eq!(
        s["deliver_recipient_messages_total{recipient=\"u\\\"q\\\\@y\"}"],
        1.0
    );
    assert_eq!(s["deliver_deferrals_total{status=\"4.7.1\"}"], 1.0);
    assert_eq!(s["deliver_score_bucket{le=\"0.0\"}"], 1.0);
    assert_eq!(s["deliver_score_bucket{le=\"10.0\"}"], 2.0);
    assert_eq!(s["deliver_score_bucket{le=\"+Inf\"}"], 3.0);
    assert_eq!(s["deliver_score_sum"], 32.5);
    assert_eq!(s["deliver_report_lines_total{kind=\"delivery\"}"], 3.0);
    assert!(
        !s.keys().any(|k| k.starts_with("deliver_failures_total{")),
        "{out}"
    );
}

/// The strict reader itself refuses what the format forbids.
#[test]
fn the_exposition_reader_is_strict() {
    let good = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\"} 1\n";
    parse_exposition(good);
    for bad in [
        "a_total 1\n",
        "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\"} 1",
        "# HELP a_total x\n# TYPE a_total counter\nb_total 1\n",
        "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\\q\"} 1\n",
        "# HELP a_total x\n# TYPE a_total counter\na_total{k=v} 1\n",
        "# HELP a_total x\n# TYPE a_total counter\na_total one\n",
        "# HELP a_total x\n# TYPE a_total counter\n# HELP a_total x\n# TYPE a_total counter\n",
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n",
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 0\nh_count 1\n",
    ] {
        let r = std::panic::catch_unwind(|| parse_exposition(bad));
        assert!(r.is_err(), "accepted: {bad:?}");
    }
}

/// Chromium, headless, as a guard that kills it if it hangs and removes
/// its profile.
struct Browser {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Browser {
    /// The browser, or None when it is not installed and this is not CI
    /// (CI must run the test: scripts/test installs it).
    fn find() -> Option<Browser> {
        let bin = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists());
        match bin {
            Some(bin) => Some(Browser {
                bin,
                dir: tempfile::tempdir().unwrap(),
            }),
            None if std::env::var_os("CI").is_some() => {
                panic!("chromium is not installed, and CI must run this test (scripts/test installs it)")
            }
            None => {
                eprintln!("skipped: chromium is not installed");
                None
            }
        }
    }

    /// Runs chromium on `page` with `args`: (stdout, the console messages
    /// it logged).
    fn run(&self, page: &Path, args: &[&str]) -> (String, Vec<String>) {
        let mut c = Command::new(&self.bin);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!(
            "--user-data-dir={}",
            self.dir.path().join("profile").display()
        ))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .env("HOME", self.dir.path());
        let r = run_cmd_within(c, b"", false, std::time::Duration::from_secs(120))
            .expect("chromium did not finish in 120 s");
        assert_eq!(r.code, 0, "chromium failed: {}", r.stderr);
        let console = r
            .stderr
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .map(str::to_string)
            .collect();
        (r.stdout, console)
    }

    /// A screenshot of `page` at 1000 × `height`: its RGB pixels, and the
    /// console messages.
    fn screenshot(&self, page: &Path, height: u32) -> (Vec<[u8; 3]>, u32, Vec<String>) {
        let png_path = self.dir.path().join("shot.png");
        let _ = fs::remove_file(&png_path);
        let (_, console) = self.run(
            page,
            &[
                &format!("--screenshot={}", png_path.display()),
                &format!("--window-size=1000,{height}"),
            ],
        );
        let dec = png::Decoder::new(std::io::BufReader::new(fs::File::open(&png_path).unwrap()));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let px = info.color_type.samples();
        assert!(px >= 3, "{:?}", info.color_type);
        let pixels = buf[..info.buffer_size()]
            .chunks(px)
            .map(|p| [p[0], p[1], p[2]])
            .collect();
        (pixels, info.width, console)
    }
}

fn rgb(hex: &str) -> [u8; 3] {
    let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap();
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

/// The rows (y) of the screenshot where `colour` shows, within 2 per
/// channel: (how many pixels, first row, last row).
fn find_colour(pixels: &[[u8; 3]], width: u32, colour: &str) -> (usize, u32, u32) {
    let c = rgb(colour);
    let (mut n, mut lo, mut hi) = (0, u32::MAX, 0);
    for (i, p) in pixels.iter().enumerate() {
        if p.iter().zip(c).all(|(a, b)| a.abs_diff(b) <= 2) {
            n += 1;
            let y = i as u32 / width;
            lo = lo.min(y);
            hi = hi.max(y);
        }
    }
    (n, lo, hi)
}

/// The HTML page in a real browser: it renders with both charts visible
/// (their colours are in the screenshot, the timeline above the
/// histogram), the SVGs are in the rendered DOM, and the browser logs no
/// console message (no blocked load, no SVG error). A control page with
/// an external image first shows that a console message would be seen.
#[test]
fn html_report_renders_in_headless_chromium() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();

    let control = d.path().join("control.html");
    fs::write(
        &control,
        "<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\"></head>\
         <body><img src=\"http://192.0.2.1/x.png\" alt=\"\"></body></html>",
    )
    .unwrap();
    let (_, console) = browser.run(&control, &["--dump-dom"]);
    assert!(
        !console.is_empty(),
        "a blocked load was not seen in the console"
    );

    // A day of mail, every outcome, scores across the range.
    let actions = ["inbox", "folder", "junk", "discard", "reject", "defer"];
    let mut log = String::new();
    for i in 0..600 {
        let (h, m) = (i / 25, i % 25 * 2);
        let a = actions[i % actions.len()];
        log.push_str(&format!(
            "Dec  3 {h:02}:{m:02}:00 mx deliver[{i}]: from=<s{}@x.example> to=<u{}@example.com> size=10 action={a} score={}.50 rule=r{} delay=0.001\n",
            i % 7,
            i % 5,
            (i % 23) as i64 - 2,
            i % 4
        ));
    }
    let logf = d.path().join("mail.log");
    fs::write(&logf, &log).unwrap();
    let page = d.path().join("report.html");
    let (code, out, err) = report(
        &["--html", page.to_str().unwrap(), logf.to_str().unwrap()],
        b"",
    );
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    let html = fs::read_to_string(&page).unwrap();
    for external in [
        "<script", "<link", "@import", "url(", "src=", "http://", "https://",
    ] {
        assert!(!html.contains(external), "{external} in the page");
    }

    let (dom, console) = browser.run(&page, &["--dump-dom"]);
    assert_eq!(console, Vec::<String>::new());
    for id in ["timeline", "scores"] {
        let at = dom
            .find(&format!("<svg id=\"{id}\""))
            .unwrap_or_else(|| panic!("no {id} chart in the DOM"));
        let chart = &dom[at..at + dom[at..].find("</svg>").unwrap()];
        assert!(
            chart.contains(&format!("<title id=\"{id}-title\">")),
            "{id}: no title"
        );
        assert!(chart.matches("<rect").count() >= 10, "{id}: no bars");
    }

    let (pixels, width, console) = browser.screenshot(&page, 1000);
    if let Some(keep) = std::env::var_os("DELIVER_TEST_KEEP_SCREENSHOT") {
        fs::copy(browser.dir.path().join("shot.png"), keep).unwrap();
    }
    assert_eq!(console, Vec::<String>::new());
    let background = pixels.iter().filter(|p| **p == [255, 255, 255]).count();
    assert!(background < pixels.len(), "a blank page");
    let mut timeline_bottom = 0;
    for colour in &[
        "#0072B2", "#56B4E9", "#E69F00", "#999999", "#D55E00", "#CC79A7",
    ] {
        let (n, _, hi) = find_colour(&pixels, width, colour);
        assert!(n > 300, "{colour}: {n} pixels");
        // Grey is also in the anti-aliased edges of text.
        if *colour != "#999999" {
            timeline_bottom = timeline_bottom.max(hi);
        }
    }
    let (n, lo, _) = find_colour(&pixels, width, "#6A3D9A");
    assert!(n > 1000, "histogram: {n} pixels");
    assert!(
        lo > timeline_bottom,
        "the histogram is not below the timeline"
    );
}

/// The node_exporter example writes deliver.prom by a rename: a valid
/// file, no temporary left; when the report fails, the old file stays.
#[test]
fn prometheus_example_writes_the_textfile_atomically() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("mail.log");
    fs::write(
        &log,
        "Dec  3 10:00:01 mx deliver[2]: from=<a@x> to=<u@y> size=1 action=junk folder=Junk score=7.50 rule=r delay=0.001\n",
    )
    .unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prometheus/deliver-prometheus");
    let run = |mail_log: &Path| {
        Command::new("sh")
            .arg(&script)
            .env("TEXTFILE_DIR", d.path())
            .env("MAIL_LOG", mail_log)
            .env("DELIVER", BIN)
            .output()
            .unwrap()
    };
    let out = run(&log);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prom = d.path().join("deliver.prom");
    let s = parse_exposition(&fs::read_to_string(&prom).unwrap());
    assert_eq!(s["deliver_messages_total{action=\"junk\"}"], 1.0);
    let names = || -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(), ["deliver.prom", "mail.log"]);
    let before = fs::read(&prom).unwrap();
    let out = run(&d.path().join("missing.log"));
    assert!(!out.status.success());
    assert_eq!(fs::read(&prom).unwrap(), before);
    assert_eq!(names(), ["deliver.prom", "mail.log"]);
}

/// Postfix never runs `report`: a usage error is clap's, exit 2, not the
/// delivery's 75 and status line.
#[test]
fn usage_errors_exit_2() {
    let (code, out, err) = report(&["--format", "xml"], b"");
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(
        err.contains("invalid value 'xml' for '--format <FORMAT>'"),
        "{err}"
    );
    assert!(!err.contains("4.3.5"), "{err}");
}
