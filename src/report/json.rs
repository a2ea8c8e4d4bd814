//! The report for tools: one JSON object whose keys are documented in
//! deliver(1), REPORT. Every list is complete (not cut to `--top`) and
//! sorted by count, highest first, then by key. Times are the log's local
//! time, `YYYY-MM-DDTHH:MM:SS`, or null.

use super::{time, Counter, Summary, ACTIONS, COLUMNS, SCORE_BOUNDS};
use serde_json::{json, Map, Value};

fn list(c: &Counter, key: &str) -> Value {
    c.top(usize::MAX)
        .into_iter()
        .map(|(k, n)| json!({ key: k, "count": n }))
        .collect()
}

/// The per-action counts of a fixed-column row: every known action, then
/// "other".
fn by_action(c: &[u64; COLUMNS]) -> Value {
    let mut m = Map::new();
    for (i, a) in ACTIONS.iter().enumerate() {
        m.insert(a.to_string(), c[i].into());
    }
    m.insert("other".into(), c[ACTIONS.len()].into());
    Value::Object(m)
}

pub fn value(s: &Summary) -> Value {
    let t = |t: Option<i64>| t.map(time::format_iso);
    // Every known action, with 0 when none; then any other seen.
    let mut actions = Map::new();
    for a in ACTIONS {
        actions.insert(a.into(), s.actions.get(a).into());
    }
    for (a, n) in s.actions.top(usize::MAX) {
        actions.insert(a.into(), n.into());
    }
    let buckets: Vec<Value> = s
        .scores
        .iter()
        .enumerate()
        .map(|(i, &n)| json!({ "le": SCORE_BOUNDS.get(i), "count": n }))
        .collect();
    let recipients: Vec<Value> = s
        .top_recipients(usize::MAX)
        .into_iter()
        .map(|(r, c)| {
            json!({ "recipient": r, "total": c.iter().sum::<u64>(), "by_action": by_action(c) })
        })
        .collect();
    let hours: Vec<Value> = s
        .hour_series()
        .into_iter()
        .map(|(h, c)| json!({ "hour": time::format_iso(h * 3600), "by_action": by_action(&c) }))
        .collect();
    let l = &s.lines;
    json!({
        "period": {
            "since": t(s.period.since),
            "until": t(s.period.until),
            "first": t(s.first),
            "last": t(s.last),
        },
        "lines": {
            "read": l.read,
            "delivery": l.delivery,
            "other": l.other,
            "unparsable": l.unparsable,
            "foreign": l.foreign,
            "outside_period": l.outside_period,
            "without_timestamp": l.without_timestamp,
        },
        "unparsable": s.examples.iter().map(|e| json!({
            "file": e.file, "line": e.line, "text": e.text,
        })).collect::<Vec<_>>(),
        "messages": {
            "total": s.messages(),
            "by_action": actions,
            "by_folder": s.folders.top(usize::MAX).into_iter()
                .map(|(k, n)| (k.to_string(), Value::from(n))).collect::<Map<_, _>>(),
        },
        "rules": list(&s.rules, "rule"),
        "rejected_senders": list(&s.rejected_senders, "sender"),
        "discarded_senders": list(&s.discarded_senders, "sender"),
        "deferrals": list(&s.deferrals, "status"),
        "failures": list(&s.failures, "status"),
        "scores": {
            "count": s.scored(),
            "sum": s.score_sum,
            "buckets": buckets,
        },
        "recipients": recipients,
        "hours": hours,
    })
}

pub fn render(s: &Summary) -> String {
    let mut out = serde_json::to_string_pretty(&value(s)).expect("a JSON value serializes");
    out.push('\n');
    out
}
