//! Reading the verdicts of upstream filters from the headers they added.
//!
//! Dialects: SpamAssassin (`X-Spam-Flag`, `X-Spam-Status`, `X-Spam-Score`,
//! `X-Spam-Level`), amavis (the same, plus `X-Amavis-Alert: INFECTED` and
//! clamav-milter's `X-Virus-Status: Infected`), rspamd (`X-Spam`,
//! `X-Spamd-Result`, `X-Rspamd-Score`), and custom header + regex pairs.
//!
//! Trust: a local filter prepends its headers above everything the sender
//! wrote, so only the topmost instance of each header is read. Where several
//! headers give a score, the highest counts, and an upstream score below zero
//! is read as zero unless the system trusts negative scores: a sender who
//! forges `X-Spam-Flag: NO` or a negative score below the real header (or in
//! a dialect the local filter does not write) can never lower the score.

use crate::input::message::Headers;
use crate::policy::rules::SpamConfig;
use serde::Serialize;

/// One header that was read, for the trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reading {
    pub header: String,
    pub value: String,
    /// What it says: a score, a spam flag, a virus.
    pub meaning: String,
}

/// What the upstream filters' headers say about a message, read by [`read`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Findings {
    /// The upstream score that counts (after the trust rules), and its header.
    pub score: Option<f64>,
    pub score_header: Option<String>,
    /// The header that flagged the message as spam, if any.
    pub flagged_by: Option<String>,
    /// The header that reported a virus, if any.
    pub virus: Option<String>,
    pub readings: Vec<Reading>,
}

fn parse_f64(s: &str) -> Option<f64> {
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && (c == '-' || c == '+'))))
        .map_or(s.len(), |(i, _)| i);
    s[..end].parse::<f64>().ok().filter(|f| f.is_finite())
}

fn yes(v: &str) -> bool {
    let w = v.trim_start();
    let b = w.as_bytes();
    b.get(..3).is_some_and(|p| p.eq_ignore_ascii_case(b"yes"))
        || b.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"true"))
}

/// `... score=12.3 ...` or `... hits=12.3 ...` (old SpamAssassin).
fn status_score(v: &str) -> Option<f64> {
    ["score=", "hits="].iter().find_map(|k| {
        let i = v.find(k)?;
        parse_f64(&v[i + k.len()..])
    })
}

/// `default: True [12.30 / 15.00]; ...`
fn rspamd_result(v: &str) -> (bool, Option<f64>) {
    let flagged = v
        .split_once(':')
        .map(|(_, r)| r.trim_start().to_ascii_lowercase().starts_with("true"))
        .unwrap_or(false);
    let score = v.find('[').and_then(|i| parse_f64(v[i + 1..].trim_start()));
    (flagged, score)
}

/// What one header says about the message: a spam flag, a score, or both.
enum Says {
    Flag(bool),
    Score(Option<f64>),
    FlagAndScore(bool, Option<f64>),
}

impl Findings {
    fn note(&mut self, h: &str, val: &str, meaning: String) {
        self.readings.push(Reading {
            header: h.to_string(),
            value: val.to_string(),
            meaning,
        });
    }

    /// Records what header `h` (value `val`) says: the reading for the
    /// trace, the first header that flags, and any score among `scores`.
    fn says(&mut self, scores: &mut Vec<(f64, String)>, h: &str, val: &str, says: Says) {
        let (flag, score) = match says {
            Says::Flag(f) => (Some(f), None),
            Says::Score(s) => (None, s),
            Says::FlagAndScore(f, s) => (Some(f), s),
        };
        let meaning = match says {
            Says::Flag(true) => "spam flag".into(),
            Says::Flag(false) => "not flagged".into(),
            Says::Score(s) => format!("score={}", fmt_opt(s)),
            Says::FlagAndScore(f, s) => {
                format!("flag={} score={}", if f { "yes" } else { "no" }, fmt_opt(s))
            }
        };
        self.note(h, val, meaning);
        if flag == Some(true) && self.flagged_by.is_none() {
            self.flagged_by = Some(h.to_string());
        }
        if let Some(s) = score {
            scores.push((s, h.to_string()));
        }
    }
}

/// Reads the findings of the enabled dialects.
pub fn read(headers: &Headers, cfg: &SpamConfig) -> Findings {
    let mut v = Findings::default();
    let mut scores: Vec<(f64, String)> = Vec::new();
    let mut level: Option<(f64, String)> = None;

    if cfg.spamassassin || cfg.amavis {
        if let Some(val) = headers.first("X-Spam-Flag") {
            v.says(&mut scores, "X-Spam-Flag", &val, Says::Flag(yes(&val)));
        }
        if let Some(val) = headers.first("X-Spam-Status") {
            let says = Says::FlagAndScore(yes(&val), status_score(&val));
            v.says(&mut scores, "X-Spam-Status", &val, says);
        }
        if let Some(val) = headers.first("X-Spam-Score") {
            let says = Says::Score(parse_f64(val.trim()));
            v.says(&mut scores, "X-Spam-Score", &val, says);
        }
        if let Some(val) = headers.first("X-Spam-Level") {
            let stars = val.trim().chars().take_while(|&c| c == '*').count() as f64;
            v.note("X-Spam-Level", &val, format!("score>={stars}"));
            level = Some((stars, "X-Spam-Level".into()));
        }
    }
    if cfg.amavis {
        if let Some(val) = headers.first("X-Amavis-Alert") {
            let infected = val
                .trim_start()
                .to_ascii_uppercase()
                .starts_with("INFECTED");
            v.note(
                "X-Amavis-Alert",
                &val,
                if infected {
                    "virus".into()
                } else {
                    "alert, not a virus".into()
                },
            );
            if infected {
                v.virus = Some("X-Amavis-Alert".into());
            }
        }
        if let Some(val) = headers.first("X-Virus-Status") {
            let infected = val
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("infected");
            v.note(
                "X-Virus-Status",
                &val,
                if infected {
                    "virus".into()
                } else {
                    "clean".into()
                },
            );
            if infected && v.virus.is_none() {
                v.virus = Some("X-Virus-Status".into());
            }
        }
    }
    if cfg.rspamd {
        if let Some(val) = headers.first("X-Spam") {
            v.says(&mut scores, "X-Spam", &val, Says::Flag(yes(&val)));
        }
        if let Some(val) = headers.first("X-Spamd-Result") {
            let (f, s) = rspamd_result(&val);
            v.says(
                &mut scores,
                "X-Spamd-Result",
                &val,
                Says::FlagAndScore(f, s),
            );
        }
        if let Some(val) = headers.first("X-Rspamd-Score") {
            let says = Says::Score(parse_f64(val.trim()));
            v.says(&mut scores, "X-Rspamd-Score", &val, says);
        }
    }
    for c in &cfg.custom {
        if let Some(val) = headers.first(&c.header) {
            let s = c
                .score
                .captures(&val)
                .and_then(|m| m.get(1))
                .and_then(|m| parse_f64(m.as_str().trim()));
            let f = c.flag.as_ref().is_some_and(|r| r.is_match(&val));
            v.says(&mut scores, &c.header, &val, Says::FlagAndScore(f, s));
        }
    }

    // The level is a floor of the score: it takes part in the maximum, so a
    // forged numeric header cannot replace it with something lower.
    if let Some(l) = level {
        scores.push(l);
    }
    if let Some((s, h)) = scores.into_iter().max_by(|a, b| a.0.total_cmp(&b.0)) {
        let s = if s < 0.0 && !cfg.trust_negative_scores {
            0.0
        } else {
            s
        };
        v.score = Some(s);
        v.score_header = Some(h);
    }
    v
}

fn fmt_opt(s: Option<f64>) -> String {
    s.map_or_else(|| "none".into(), |s| format!("{s}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(h: &str) -> Findings {
        read(&Headers::parse(h.as_bytes()), &SpamConfig::default())
    }

    #[test]
    fn spamassassin() {
        let v = verdict("X-Spam-Flag: YES\nX-Spam-Status: Yes, score=12.3 required=5.0 tests=A,\n\tB autolearn=no\n\n");
        assert_eq!(v.score, Some(12.3));
        assert_eq!(v.flagged_by.as_deref(), Some("X-Spam-Flag"));
        let v = verdict("X-Spam-Status: No, hits=2.5 required=5.0\n\n");
        assert_eq!(v.score, Some(2.5));
        assert!(v.flagged_by.is_none());
        let v = verdict("X-Spam-Level: *******\n\n");
        assert_eq!(v.score, Some(7.0));
    }

    #[test]
    fn rspamd() {
        let v = verdict(
            "X-Spam: Yes\nX-Spamd-Result: default: True [12.30 / 15.00];\n\tBAYES_SPAM(5.10)\n\n",
        );
        assert_eq!(v.score, Some(12.3));
        assert_eq!(v.flagged_by.as_deref(), Some("X-Spam"));
        let v = verdict("X-Spamd-Result: default: False [1.5 / 15.00]\n\n");
        assert_eq!(v.score, Some(1.5));
        assert!(v.flagged_by.is_none());
    }

    #[test]
    fn amavis_virus() {
        let v = verdict("X-Virus-Scanned: amavisd-new\nX-Amavis-Alert: INFECTED, message contains virus: Eicar\n\n");
        assert_eq!(v.virus.as_deref(), Some("X-Amavis-Alert"));
        let v = verdict("X-Amavis-Alert: BAD HEADER SECTION\n\n");
        assert!(v.virus.is_none());
    }

    #[test]
    fn forged_headers_below_cannot_lower() {
        // The filter's header is on top; the sender's forgeries are below.
        let v = verdict("X-Spam-Flag: YES\nX-Spam-Status: Yes, score=9.0\nSubject: x\nX-Spam-Flag: NO\nX-Spam-Status: No, score=-50\n\n");
        assert_eq!(v.score, Some(9.0));
        assert!(v.flagged_by.is_some());
        // A forged negative score in a dialect the filter does not write.
        let v = verdict("X-Spamd-Result: default: True [7.0 / 15.0]\nX-Spam-Score: -100\n\n");
        assert_eq!(v.score, Some(7.0));
        // A lone forged negative score counts as zero.
        let v = verdict("X-Spam-Score: -100\n\n");
        assert_eq!(v.score, Some(0.0));
        // A filter that writes only X-Spam-Level; a forged score below it.
        let v = verdict("X-Spam-Level: ********\nX-Spam-Score: 0\n\n");
        assert_eq!(v.score, Some(8.0));
    }

    #[test]
    fn dialects_switch_off() {
        let cfg = SpamConfig {
            rspamd: false,
            ..SpamConfig::default()
        };
        let v = read(&Headers::parse(b"X-Spam: Yes\n\n"), &cfg);
        assert!(v.flagged_by.is_none());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_f64("12.5 required"), Some(12.5));
        assert_eq!(parse_f64("-3"), Some(-3.0));
        assert_eq!(parse_f64("abc"), None);
    }
}
