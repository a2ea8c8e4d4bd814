//! The report as Prometheus counters, in the text exposition format
//! (version 0.0.4) that node_exporter's textfile collector reads. The
//! counts are those of the lines read: a report over the current mail log
//! starts again from zero when the log is rotated, which Prometheus'
//! `rate()` and `increase()` take as a counter reset.

use super::{Counter, Summary, ACTIONS, SCORE_BOUNDS};
use std::fmt::Write;

/// A label value escaped as the exposition format wants: `\`, `"` and
/// newline.
fn label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, key: &str, c: &Counter, help: &str) {
    family(out, name, "counter", help);
    for (k, n) in c.top(usize::MAX) {
        let _ = writeln!(out, "{name}{{{key}=\"{}\"}} {n}", label(k));
    }
}

/// The enhanced status code of a status line (`4.7.1 text` → `4.7.1`):
/// the text holds addresses, too many label values.
fn codes(c: &Counter) -> Counter {
    let mut out = Counter::default();
    for (k, &n) in &c.0 {
        out.add(k.split(' ').next().unwrap_or(""), n);
    }
    out
}

/// A sample value: Rust's shortest round-trip form, with the exposition
/// format's spelling of the infinities and NaN.
fn float(x: f64) -> String {
    match x {
        x if x.is_nan() => "NaN".into(),
        f64::INFINITY => "+Inf".into(),
        f64::NEG_INFINITY => "-Inf".into(),
        x => format!("{x:?}"),
    }
}

pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "deliver_messages_total",
        "counter",
        "Messages deliver decided on, by action.",
    );
    for a in ACTIONS {
        let _ = writeln!(
            out,
            "deliver_messages_total{{action=\"{a}\"}} {}",
            s.actions.get(a)
        );
    }
    for (a, n) in s.actions.top(usize::MAX) {
        if !ACTIONS.contains(&a) {
            let _ = writeln!(out, "deliver_messages_total{{action=\"{}\"}} {n}", label(a));
        }
    }
    counter(
        &mut out,
        "deliver_folder_messages_total",
        "folder",
        &s.folders,
        "Messages filed, by folder (INBOX for the Inbox).",
    );
    counter(
        &mut out,
        "deliver_rule_decisions_total",
        "rule",
        &s.rules,
        "Messages by what decided: a rule, a table entry, the spam threshold, the default.",
    );
    counter(
        &mut out,
        "deliver_deferrals_total",
        "status",
        &codes(&s.deferrals),
        "Messages deferred by the rules, by enhanced status code.",
    );
    counter(
        &mut out,
        "deliver_failures_total",
        "status",
        &codes(&s.failures),
        "Deliveries that failed (deferred or bounced by an error), by enhanced status code.",
    );
    let mut rcpt = Counter::default();
    for (r, c) in &s.recipients {
        rcpt.add(r, c.iter().sum());
    }
    counter(
        &mut out,
        "deliver_recipient_messages_total",
        "recipient",
        &rcpt,
        "Messages by envelope recipient.",
    );
    family(
        &mut out,
        "deliver_score",
        "histogram",
        "The total spam score of each message deliver decided on.",
    );
    let mut cumulative = 0;
    for (i, &n) in s.scores.iter().enumerate() {
        cumulative += n;
        let le = SCORE_BOUNDS
            .get(i)
            .map_or("+Inf".to_string(), |b| format!("{b:?}"));
        let _ = writeln!(out, "deliver_score_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "deliver_score_sum {}", float(s.score_sum));
    let _ = writeln!(out, "deliver_score_count {cumulative}");
    family(
        &mut out,
        "deliver_report_lines_total",
        "counter",
        "Log lines deliver report read, by what they were.",
    );
    let l = &s.lines;
    for (kind, n) in [
        ("delivery", l.delivery),
        ("other", l.other),
        ("unparsable", l.unparsable),
        ("foreign", l.foreign),
        ("outside_period", l.outside_period),
    ] {
        let _ = writeln!(out, "deliver_report_lines_total{{kind=\"{kind}\"}} {n}");
    }
    out
}
