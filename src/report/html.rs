//! The report as one self-contained HTML page: inline CSS, no script, no
//! font, image or other file, and charts drawn as inline SVG (messages per
//! hour by outcome, stacked; the spam-score histogram). Its content
//! security policy forbids every load, so that a page that needed one would
//! say so in the browser's console. Each chart has a title, a description
//! and axis labels, and each bar a tooltip with its numbers.

use super::{bucket_label, time, Counter, Summary, ACTIONS, COLUMNS, SCORE_BOUNDS};
use std::fmt::Write;

/// The colour of each `COLUMNS` entry (the Okabe–Ito palette, told apart
/// with the common colour blindnesses).
pub const COLOURS: [&str; COLUMNS] = [
    "#0072B2", "#56B4E9", "#E69F00", "#999999", "#D55E00", "#CC79A7", "#F0E442", "#000000",
    "#009E73",
];
/// The colour of the score histogram's bars.
pub const SCORE_COLOUR: &str = "#6A3D9A";

/// The chart's size, in CSS pixels, and its plot area.
const W: f64 = 900.0;
const H: f64 = 320.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 880.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 260.0;

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn column_name(i: usize) -> &'static str {
    ACTIONS.get(i).copied().unwrap_or("other")
}

/// A step of 1, 2 or 5 times a power of ten that divides `0..=max` into at
/// most five intervals, and the axis's top (a multiple of it).
fn axis(max: u64) -> (u64, u64) {
    let max = max.max(1);
    let mut p = 1u64;
    loop {
        for m in [1, 2, 5] {
            let step = m * p;
            if max.div_ceil(step) <= 5 {
                return (step, max.div_ceil(step) * step);
            }
        }
        p *= 10;
    }
}

/// The opening of a chart: the svg element with its title and
/// description, the y axis with its ticks and label, and the x axis line.
fn frame(out: &mut String, id: &str, title: &str, desc: &str, top: u64, step: u64, ylabel: &str) {
    let _ = write!(
        out,
        "<svg id=\"{id}\" role=\"img\" aria-labelledby=\"{id}-title {id}-desc\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\">\
         <title id=\"{id}-title\">{}</title><desc id=\"{id}-desc\">{}</desc>\
         <text x=\"{LEFT}\" y=\"22\" class=\"ctitle\">{}</text>",
        esc(title),
        esc(desc),
        esc(title)
    );
    let mut v = 0;
    while v <= top {
        let y = BOTTOM - (BOTTOM - TOP) * v as f64 / top as f64;
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"grid\"/>\
             <text x=\"{}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{v}</text>",
            LEFT - 6.0,
            y + 4.0
        );
        v += step;
    }
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{BOTTOM}\" class=\"axis\"/>\
         <line x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{BOTTOM}\" y2=\"{BOTTOM}\" class=\"axis\"/>\
         <text transform=\"translate(16 {:.1}) rotate(-90)\" class=\"alabel\" text-anchor=\"middle\">{}</text>",
        (TOP + BOTTOM) / 2.0,
        esc(ylabel)
    );
}

fn xlabel(out: &mut String, text: &str) {
    let _ = write!(
        out,
        "<text x=\"{:.1}\" y=\"{}\" class=\"alabel\" text-anchor=\"middle\">{}</text>",
        (LEFT + RIGHT) / 2.0,
        H - 8.0,
        esc(text)
    );
}

/// Messages per hour (per day past two weeks) by outcome, stacked.
fn timeline(out: &mut String, s: &Summary) {
    let hours = s.hour_series();
    let daily = hours.len() > 14 * 24;
    let mut buckets: Vec<(i64, [u64; COLUMNS])> = Vec::new();
    for (h, c) in hours {
        let key = if daily {
            (h * 3600).div_euclid(86400) * 86400
        } else {
            h * 3600
        };
        match buckets.last_mut() {
            Some((k, acc)) if *k == key => acc.iter_mut().zip(c).for_each(|(a, n)| *a += n),
            _ => buckets.push((key, c)),
        }
    }
    let unit = if daily { "day" } else { "hour" };
    let max = buckets
        .iter()
        .map(|(_, c)| c.iter().sum::<u64>())
        .max()
        .unwrap_or(0);
    let (step, top) = axis(max);
    let title = format!("Messages per {unit} by outcome");
    let desc = format!(
        "Stacked bars, one per {unit} from {} to {}: the messages of each outcome (inbox, folder, junk, discard, reject, defer) in that {unit}.",
        buckets.first().map_or("-".into(), |b| time::format(b.0, daily)),
        buckets.last().map_or("-".into(), |b| time::format(b.0, daily)),
    );
    frame(
        out,
        "timeline",
        &title,
        &desc,
        top,
        step,
        &format!("Messages per {unit}"),
    );
    // The legend, above the plot.
    let mut x = RIGHT - 7.0 * 78.0;
    for (i, colour) in COLOURS.iter().enumerate() {
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" y=\"12\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"22\" class=\"tick\">{}</text>",
            x + 16.0,
            column_name(i)
        );
        x += 78.0;
    }
    if buckets.is_empty() {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"alabel\" text-anchor=\"middle\">No timestamped messages</text>",
            (LEFT + RIGHT) / 2.0,
            (TOP + BOTTOM) / 2.0
        );
    }
    let n = buckets.len().max(1) as f64;
    let bw = (RIGHT - LEFT) / n;
    let gap = if bw > 4.0 { bw * 0.15 } else { 0.0 };
    let every = buckets.len().div_ceil(8).max(1);
    for (j, (key, c)) in buckets.iter().enumerate() {
        let x = LEFT + bw * j as f64;
        let when = time::format(*key, daily);
        let mut y = BOTTOM;
        for (i, &count) in c.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let h = (BOTTOM - TOP) * count as f64 / top as f64;
            y -= h;
            let _ = write!(
                out,
                "<rect x=\"{:.2}\" y=\"{y:.2}\" width=\"{:.2}\" height=\"{h:.2}\" fill=\"{}\"><title>{when}: {count} {}</title></rect>",
                x + gap / 2.0,
                bw - gap,
                COLOURS[i],
                column_name(i)
            );
        }
        if j % every == 0 {
            let _ = write!(
                out,
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{BOTTOM}\" y2=\"{1}\" class=\"axis\"/>\
                 <text x=\"{0:.1}\" y=\"{2}\" class=\"tick\" text-anchor=\"middle\">{when}</text>",
                x + bw / 2.0,
                BOTTOM + 5.0,
                BOTTOM + 18.0
            );
        }
    }
    xlabel(
        out,
        &format!(
            "{} (the server's local time)",
            if daily { "Day" } else { "Hour" }
        ),
    );
    out.push_str("</svg>");
}

/// The spam-score histogram.
fn histogram(out: &mut String, s: &Summary) {
    let max = s.scores.iter().copied().max().unwrap_or(0);
    let (step, top) = axis(max);
    let desc = format!(
        "Bars, one per score range from at most {} to over {}: the messages whose total spam score is in that range.",
        SCORE_BOUNDS[0],
        SCORE_BOUNDS[SCORE_BOUNDS.len() - 1]
    );
    frame(
        out,
        "scores",
        "Spam score distribution",
        &desc,
        top,
        step,
        "Messages",
    );
    let bw = (RIGHT - LEFT) / s.scores.len() as f64;
    for (i, &count) in s.scores.iter().enumerate() {
        let x = LEFT + bw * i as f64;
        let label = bucket_label(i);
        if count > 0 {
            let h = (BOTTOM - TOP) * count as f64 / top as f64;
            let _ = write!(
                out,
                "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{h:.2}\" fill=\"{SCORE_COLOUR}\"><title>score {}: {count} messages</title></rect>",
                x + bw * 0.1,
                BOTTOM - h,
                bw * 0.8,
                esc(&label)
            );
        }
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" class=\"tick\" text-anchor=\"middle\">{}</text>",
            x + bw / 2.0,
            BOTTOM + 18.0,
            esc(&label)
        );
    }
    xlabel(out, "Total spam score");
    out.push_str("</svg>");
}

fn table(out: &mut String, title: &str, head: &[&str], rows: &[Vec<String>]) {
    let _ = write!(out, "<section><h2>{}</h2>", esc(title));
    if rows.is_empty() {
        out.push_str("<p>None.</p></section>");
        return;
    }
    out.push_str("<table><thead><tr>");
    for h in head {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str("<tr>");
        for (i, c) in r.iter().enumerate() {
            let class = if i + 1 < r.len() || head.len() == 1 {
                " class=\"n\""
            } else {
                ""
            };
            let _ = write!(out, "<td{class}>{}</td>", esc(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></section>");
}

fn counted(c: &Counter, top: usize, empty: &str) -> Vec<Vec<String>> {
    c.top(top)
        .into_iter()
        .map(|(k, n)| {
            let k = if k.is_empty() { empty } else { k };
            vec![n.to_string(), k.to_string()]
        })
        .collect()
}

const STYLE: &str =
    "body{font:14px/1.4 sans-serif;margin:1em auto;max-width:920px;color:#222;background:#fff}\
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.5em}\
table{border-collapse:collapse}th,td{padding:2px 10px;border-bottom:1px solid #ddd;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}\
figure{margin:1em 0}svg{display:block;background:#fff}\
.grid{stroke:#e5e5e5}.axis{stroke:#444}.tick{font-size:11px;fill:#333}\
.alabel{font-size:12px;fill:#222}.ctitle{font-size:14px;font-weight:bold;fill:#222}";

pub fn render(s: &Summary, top: usize) -> String {
    let mut out = String::new();
    let when = |t: Option<i64>| t.map_or("-".to_string(), |t| time::format(t, false));
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>deliver report, {} to {}</title><style>{STYLE}</style></head><body>\
         <h1>deliver report</h1><p>Lines from {} to {}: {} messages, {} unparsable lines.</p>",
        when(s.first),
        when(s.last),
        when(s.first),
        when(s.last),
        s.messages(),
        s.lines.unparsable
    );
    out.push_str("<figure>");
    timeline(&mut out, s);
    out.push_str("</figure><figure>");
    histogram(&mut out, s);
    out.push_str("</figure>");

    let mut rows: Vec<Vec<String>> = ACTIONS
        .iter()
        .map(|a| vec![s.actions.get(a).to_string(), a.to_string()])
        .collect();
    for (a, n) in s.actions.top(usize::MAX) {
        if !ACTIONS.contains(&a) {
            rows.push(vec![n.to_string(), a.to_string()]);
        }
    }
    rows.push(vec![s.messages().to_string(), "total".into()]);
    table(
        &mut out,
        "Messages by action",
        &["Messages", "Action"],
        &rows,
    );
    table(
        &mut out,
        "Messages by folder",
        &["Messages", "Folder"],
        &counted(&s.folders, top, ""),
    );
    table(
        &mut out,
        &format!("Top {top} deciding rules and table entries"),
        &["Messages", "Rule"],
        &counted(&s.rules, top, ""),
    );
    table(
        &mut out,
        &format!("Top {top} rejected senders"),
        &["Messages", "Sender"],
        &counted(&s.rejected_senders, top, "<>"),
    );
    table(
        &mut out,
        &format!("Top {top} discarded senders"),
        &["Messages", "Sender"],
        &counted(&s.discarded_senders, top, "<>"),
    );
    table(
        &mut out,
        "Deferred by the rules",
        &["Messages", "Status and reason"],
        &counted(&s.deferrals, top, ""),
    );
    table(
        &mut out,
        "Failures: deferred or bounced by an error",
        &["Deliveries", "Status and reason"],
        &counted(&s.failures, top, ""),
    );
    let mut head = vec!["Total"];
    head.extend(ACTIONS);
    head.extend(["other", "Recipient"]);
    let rows: Vec<Vec<String>> = s
        .top_recipients(top)
        .into_iter()
        .map(|(r, c)| {
            let mut row = vec![c.iter().sum::<u64>().to_string()];
            row.extend(c.iter().map(u64::to_string));
            row.push(if r.is_empty() {
                "<>".into()
            } else {
                r.to_string()
            });
            row
        })
        .collect();
    table(&mut out, &format!("Top {top} recipients"), &head, &rows);
    let rows: Vec<Vec<String>> = s
        .lines
        .described()
        .iter()
        .map(|(k, n)| vec![n.to_string(), k.to_string()])
        .collect();
    table(&mut out, "Lines read", &["Lines", "What"], &rows);
    let rows: Vec<Vec<String>> = s
        .examples
        .iter()
        .map(|e| vec![format!("{}:{}", e.file, e.line), e.text.clone()])
        .collect();
    table(
        &mut out,
        "Unparsable lines (the first ones)",
        &["Where", "Line"],
        &rows,
    );
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_steps() {
        assert_eq!(axis(0), (1, 1));
        assert_eq!(axis(5), (1, 5));
        assert_eq!(axis(6), (2, 6));
        assert_eq!(axis(11), (5, 15));
        assert_eq!(axis(26), (10, 30));
        assert_eq!(axis(1234), (500, 1500));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
