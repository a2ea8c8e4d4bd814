//! The report for people, in pflogsumm's manner: sections with a title
//! and an underline, counts right-aligned before what they count.

use super::{bucket_label, time, Summary, ACTIONS, COLUMNS};
use std::fmt::Write;

fn section(out: &mut String, title: &str) {
    let _ = write!(out, "\n{title}\n{}\n", "-".repeat(title.chars().count()));
}

fn counts(out: &mut String, rows: &[(&str, u64)], none: &str) {
    if rows.is_empty() {
        let _ = writeln!(out, "  {none}");
        return;
    }
    let w = rows
        .iter()
        .map(|r| r.1.to_string().len())
        .max()
        .unwrap_or(1);
    for (k, c) in rows {
        let _ = writeln!(out, "  {c:>w$}   {k}");
    }
}

fn shown(s: &str) -> &str {
    if s.is_empty() {
        "<>"
    } else {
        s
    }
}

pub fn render(s: &Summary, top: usize) -> String {
    let mut out = String::new();
    let when = |t: Option<i64>| t.map_or("-".to_string(), |t| time::format(t, false));
    let _ = writeln!(out, "deliver report");
    let _ = writeln!(out, "==============");
    let _ = writeln!(
        out,
        "Period: {} to {} (first line {}, last line {})",
        s.period
            .since
            .map_or("start".to_string(), |t| time::format(t, false)),
        s.period
            .until
            .map_or("end".to_string(), |t| time::format(t, false)),
        when(s.first),
        when(s.last),
    );
    if s.lines.without_timestamp > 0 && (s.period.since.is_some() || s.period.until.is_some()) {
        let _ = writeln!(
            out,
            "Note: {} lines have no timestamp: --since and --until do not apply to them.",
            s.lines.without_timestamp
        );
    }

    section(&mut out, "Messages by action");
    let mut rows: Vec<(&str, u64)> = vec![("total", s.messages())];
    rows.extend(ACTIONS.iter().map(|a| (*a, s.actions.get(a))));
    let mut others: Vec<(&str, u64)> = s
        .actions
        .top(usize::MAX)
        .into_iter()
        .filter(|(a, _)| !ACTIONS.contains(a))
        .collect();
    others.sort();
    rows.extend(others);
    counts(&mut out, &rows, "none");

    section(&mut out, "Messages by folder");
    counts(&mut out, &s.folders.top(top), "none");

    section(
        &mut out,
        &format!("Top {top} deciding rules and table entries"),
    );
    counts(&mut out, &s.rules.top(top), "none");

    section(&mut out, &format!("Top {top} rejected senders"));
    let rows: Vec<_> = s
        .rejected_senders
        .top(top)
        .into_iter()
        .map(|(k, c)| (shown(k), c))
        .collect();
    counts(&mut out, &rows, "none");

    section(&mut out, &format!("Top {top} discarded senders"));
    let rows: Vec<_> = s
        .discarded_senders
        .top(top)
        .into_iter()
        .map(|(k, c)| (shown(k), c))
        .collect();
    counts(&mut out, &rows, "none");

    section(&mut out, "Deferred by the rules (status and reason)");
    counts(&mut out, &s.deferrals.top(top), "none");

    section(
        &mut out,
        "Failures: deferred or bounced by an error (status and reason)",
    );
    counts(&mut out, &s.failures.top(top), "none");

    section(&mut out, "Spam score distribution");
    let scored = s.scored();
    if scored == 0 {
        let _ = writeln!(out, "  none");
    } else {
        let max = s.scores.iter().copied().max().unwrap_or(1).max(1);
        let w = max.to_string().len();
        for (i, &c) in s.scores.iter().enumerate() {
            let bar = "#".repeat(((c * 40).div_ceil(max)) as usize);
            let line = format!("  {:>10}  {c:>w$}  {bar}", bucket_label(i));
            let _ = writeln!(out, "{}", line.trim_end());
        }
        let _ = writeln!(
            out,
            "  mean {:.2} over {scored} messages",
            s.score_sum / scored as f64
        );
    }

    section(&mut out, &format!("Top {top} recipients"));
    let rcpts = s.top_recipients(top);
    if rcpts.is_empty() {
        let _ = writeln!(out, "  none");
    } else {
        let mut head: Vec<&str> = vec!["total"];
        head.extend(ACTIONS);
        head.push("other");
        let cells = |c: &[u64; COLUMNS]| -> Vec<String> {
            std::iter::once(c.iter().sum::<u64>())
                .chain(c.iter().copied())
                .map(|n| n.to_string())
                .collect()
        };
        let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
        for (_, c) in &rcpts {
            for (i, cell) in cells(c).iter().enumerate() {
                w[i] = w[i].max(cell.len());
            }
        }
        let line = |out: &mut String, cols: &[String], who: &str| {
            out.push(' ');
            for (i, c) in cols.iter().enumerate() {
                let _ = write!(out, " {c:>0$}", w[i]);
            }
            let _ = writeln!(out, "   {who}");
        };
        let head: Vec<String> = head.iter().map(|h| h.to_string()).collect();
        line(&mut out, &head, "recipient");
        for (who, c) in &rcpts {
            line(&mut out, &cells(c), shown(who));
        }
    }

    section(&mut out, "Lines read");
    counts(&mut out, &s.lines.described(), "");
    if !s.examples.is_empty() {
        section(&mut out, "Unparsable lines (the first ones)");
        for e in &s.examples {
            let _ = writeln!(out, "  {}:{}: {}", e.file, e.line, e.text);
        }
    }
    out
}
