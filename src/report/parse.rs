//! Reading one line of a mail log: whose it is, when it was written, and,
//! for deliver's delivery line, its fields (deliver(1), LOGGING). Nothing
//! here allocates for a line unless a value holds an escape.
//!
//! Three shapes of line are read:
//! - syslog's traditional `Mmm dd HH:MM:SS host tag: text` (also what
//!   `journalctl -o short` writes), whose year is guessed (`YearGuess`);
//! - rsyslog's high-precision `YYYY-MM-DDTHH:MM:SS[.frac][offset] host tag:
//!   text` (and `journalctl -o short-iso`);
//! - a bare text without timestamp or tag, as `journalctl -t deliver -o cat`
//!   writes it: taken as deliver's, with no time.
//!
//! With a timestamp, the line is deliver's when its tag is `deliver` or
//! `deliver[pid]`; any other is another program's.

use super::time::{self, Stamp, YearGuess};

/// Whose a line is, and what deliver said.
#[derive(Debug, PartialEq)]
pub enum Source<'a> {
    /// Another program's line (or an empty one).
    Foreign,
    /// deliver's, or without a tag, but not UTF-8: not a line deliver wrote.
    NotUtf8,
    /// deliver's: the text after the tag, the time if the line has one,
    /// and the process ID if the tag has one.
    Deliver {
        stamp: Option<Stamp>,
        pid: Option<u32>,
        text: &'a str,
    },
}

fn split_word(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = memchr::memchr(b' ', b)?;
    Some((&b[..i], &b[i + 1..]))
}

/// Classifies one line (without its newline).
pub fn source<'a>(line: &'a [u8], years: &YearGuess) -> Source<'a> {
    let (stamp, rest) = if let Some(date) = time::parse_bsd(line) {
        (years.stamp(date), &line[15..])
    } else if line.first().is_some_and(u8::is_ascii_digit) && line.get(4) == Some(&b'-') {
        match time::parse_iso(line) {
            // The fraction and offset run up to the space before the host.
            Some((t, n)) => match memchr::memchr(b' ', &line[n..]) {
                Some(i) => (t, &line[n + i..]),
                None => return Source::Foreign,
            },
            None => return bare(line),
        }
    } else {
        return bare(line);
    };
    let Some(rest) = rest.strip_prefix(b" ") else {
        return Source::Foreign;
    };
    let Some((_host, rest)) = split_word(rest) else {
        return Source::Foreign;
    };
    let Some(rest) = rest.strip_prefix(b"deliver") else {
        return Source::Foreign;
    };
    let (pid, rest) = match rest {
        [b':', b' ', rest @ ..] => (None, rest),
        [b'[', rest @ ..] => {
            let Some(end) = memchr::memchr(b']', rest) else {
                return Source::Foreign;
            };
            let Some(text) = rest[end + 1..].strip_prefix(b": ") else {
                return Source::Foreign;
            };
            (parse_u32(&rest[..end]), text)
        }
        _ => return Source::Foreign,
    };
    match std::str::from_utf8(rest) {
        Ok(text) => Source::Deliver {
            stamp: Some(stamp),
            pid,
            text,
        },
        Err(_) => Source::NotUtf8,
    }
}

fn parse_u32(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, &d| n * 10 + u32::from(d - b'0')))
}

fn bare(line: &[u8]) -> Source<'_> {
    if line.is_empty() {
        return Source::Foreign;
    }
    match std::str::from_utf8(line) {
        Ok(text) => Source::Deliver {
            stamp: None,
            pid: None,
            text,
        },
        Err(_) => Source::NotUtf8,
    }
}

/// The fields of a delivery line that the report uses, as they are in the
/// line: escaped (`text::encode_log_value`), checked to decode. Keys it
/// does not know are skipped, so that lines with keys added later still
/// count. The report counts the escaped values and decodes each distinct
/// one once, at the end (`Summary::finish`).
#[derive(Debug, Default, PartialEq)]
pub struct Delivery<'a> {
    /// The sender without the brackets deliver adds.
    pub from: &'a str,
    /// The recipient without the brackets deliver adds.
    pub to: &'a str,
    pub action: &'a str,
    /// Every `folder=` field, in order (one today; more than one is taken
    /// as a message filed into several folders).
    pub folders: Vec<&'a str>,
    pub score: Option<f64>,
    pub rule: &'a str,
    pub status: Option<&'a str>,
    /// `session=` (the LMTP service's lines).
    pub session: Option<&'a str>,
}

/// `v` when it decodes.
fn value(v: &str) -> Option<&str> {
    let plain = memchr::memchr3(b'\\', b' ', b'"', v.as_bytes()).is_none();
    (plain || crate::output::text::log_value_decodes(v)).then_some(v)
}

/// `<address>` without its brackets (the brackets deliver adds; they are
/// never escaped).
fn unbracket(v: &str) -> &str {
    v.strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .unwrap_or(v)
}

/// The fields of a delivery line (`text` starts with `from=`): `None` when
/// it is not one deliver could have written: a field without `=`, an
/// empty key, a value that does not decode, a known key twice (but
/// `folder`), no `action`, or a `size` or `score` that is not a number.
pub fn delivery(text: &str) -> Option<Delivery<'_>> {
    let mut d = Delivery::default();
    let mut seen = 0u32;
    let mut start = 0;
    let ends = memchr::memchr_iter(b' ', text.as_bytes()).chain(std::iter::once(text.len()));
    for end in ends {
        // Spaces are ASCII: both ends are character boundaries.
        let token = &text[start..end];
        start = end + 1;
        // Keys are short: a plain loop beats memchr's set-up.
        let eq = token.bytes().position(|b| b == b'=')?;
        let (key, v) = (&token[..eq], &token[eq + 1..]);
        let bit = match key {
            "from" => 1,
            "to" => 2,
            "action" => 4,
            "score" => 8,
            "rule" => 16,
            "status" => 32,
            "size" => 64,
            "session" => 128,
            "folder" => 0,
            "" => return None,
            _ => continue,
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        match key {
            "from" => d.from = unbracket(value(v)?),
            "to" => d.to = unbracket(value(v)?),
            "action" => d.action = value(v)?,
            "score" => d.score = Some(v.parse().ok().filter(|s: &f64| s.is_finite())?),
            "rule" => d.rule = value(v)?,
            "status" => d.status = Some(value(v)?),
            "session" => d.session = Some(value(v)?),
            "size" => {
                v.parse::<u64>().ok()?;
            }
            _ => d.folders.push(value(v)?),
        }
    }
    (seen & 4 != 0 && !d.action.is_empty()).then_some(d)
}

/// The key a `rule=` value is counted under: the value itself, except a
/// score threshold's, `score 14.8 >= junk_threshold 5`, which is counted
/// without the message's score (`score >= junk_threshold 5`), so that the
/// threshold is one entry and not one per score. Works on the escaped
/// value (`\\s` for a space).
pub fn rule_key(rule: &str) -> std::borrow::Cow<'_, str> {
    let threshold = rule.strip_prefix("score\\s").and_then(|rest| {
        let (score, tail) = rest.split_once("\\s>=\\s")?;
        score.parse::<f64>().ok()?;
        Some(tail)
    });
    match threshold {
        Some(tail) => format!("score\\s>=\\s{tail}").into(),
        None => rule.into(),
    }
}

/// A failure that deliver logged as a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure<'a> {
    /// `4.2.2 text`.
    pub status: &'a str,
    /// The LMTP session (`deliver lmtp` adds `(to=<RCPT> session=ID)`).
    pub session: Option<&'a str>,
}

/// The failure of a warning line: `warning: 4.2.2 text` (exec mode) or
/// `warning: 4.2.2 text (to=<rcpt> session=ID)` (the LMTP service). `None`
/// for other warnings.
pub fn failure(text: &str) -> Option<Failure<'_>> {
    let s = text.strip_prefix("warning: ")?;
    let b = s.as_bytes();
    let code_end = memchr::memchr(b' ', b).unwrap_or(b.len());
    let mut parts = s[..code_end].split('.');
    let class = parts.next()?;
    let ok = matches!(class, "2" | "4" | "5")
        && parts.clone().count() == 2
        && parts.all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|c| c.is_ascii_digit()));
    if !ok {
        return None;
    }
    let lmtp = s.strip_suffix(')').and_then(|r| {
        let (status, tail) = r.rsplit_once(" (to=<")?;
        let (_, session) = tail.rsplit_once("> session=")?;
        (!session.is_empty() && !session.contains(' ')).then_some((status, session))
    });
    Some(match lmtp {
        Some((status, session)) => Failure {
            status,
            session: Some(session),
        },
        None => Failure {
            status: s,
            session: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g() -> YearGuess {
        YearGuess::new(time::stamp(2026, 12, 10, 0, 0, 0))
    }

    #[test]
    fn syslog_shapes() {
        let t = time::stamp(2026, 12, 3, 10, 0, 0);
        assert_eq!(
            source(
                b"Dec  3 10:00:00 mx deliver[123]: from=<a> action=inbox",
                &g()
            ),
            Source::Deliver {
                stamp: Some(t),
                pid: Some(123),
                text: "from=<a> action=inbox"
            }
        );
        assert_eq!(
            source(
                b"2026-12-03T10:00:00.123456+01:00 mx deliver: warning: x",
                &g()
            ),
            Source::Deliver {
                stamp: Some(t),
                pid: None,
                text: "warning: x"
            }
        );
        assert_eq!(
            source(b"2026-12-03T10:00:00+0100 mx deliver[7]: x", &g()),
            Source::Deliver {
                stamp: Some(t),
                pid: Some(7),
                text: "x"
            }
        );
        for other in [
            &b"Dec  3 10:00:00 mx postfix/local[9]: to=<a>, status=sent"[..],
            b"Dec  3 10:00:00 mx deliverx[1]: from=<a>",
            b"Dec  3 10:00:00 mx deliver[1] from=<a>",
            b"2026-12-03T10:00:00Z mx postfix/smtpd[1]: connect",
            b"",
        ] {
            assert_eq!(source(other, &g()), Source::Foreign, "{other:?}");
        }
        assert_eq!(
            source(b"from=<a> action=junk", &g()),
            Source::Deliver {
                stamp: None,
                pid: None,
                text: "from=<a> action=junk"
            }
        );
        assert_eq!(
            source(b"Dec  3 10:00:00 mx deliver[1]: \xff", &g()),
            Source::NotUtf8
        );
    }

    #[test]
    fn delivery_fields() {
        let d = delivery(
            "from=<a\\sb@x> to=<u@y> msgid=<m@x> size=12 action=folder folder=Lists/rust \
             filter=spamc score=-1.50 rule=rule\\slists new_key=1 delay=0.010",
        )
        .unwrap();
        assert_eq!(d.from, "a\\sb@x");
        assert_eq!(d.to, "u@y");
        assert_eq!(d.action, "folder");
        assert_eq!(d.folders, ["Lists/rust"]);
        assert_eq!(d.score, Some(-1.5));
        assert_eq!(d.rule, "rule\\slists");
        assert_eq!(d.status, None);
        let d = delivery("from=<> to=<u> action=reject status=5.7.1\\sgo\\saway").unwrap();
        assert_eq!(d.from, "");
        assert_eq!(d.status, Some("5.7.1\\sgo\\saway"));
        for bad in [
            "from=<a> to=<b>",
            "from=<a> action=inbox action=junk",
            "from=<a> action=inbox junk",
            "from=<a> action=inbox =x",
            "from=<a> action=inbox size=x",
            "from=<a> action=inbox score=nan",
            "from=<a\\q> action=inbox",
            "from=<a>  action=inbox",
            "from=<a> action=",
        ] {
            assert_eq!(delivery(bad), None, "{bad}");
        }
    }

    #[test]
    fn rule_keys() {
        assert_eq!(
            rule_key("score\\s14.8\\s>=\\sjunk_threshold\\s5"),
            "score\\s>=\\sjunk_threshold\\s5"
        );
        assert_eq!(
            rule_key("score\\s-0.5\\s>=\\sjunk_threshold\\s-1"),
            "score\\s>=\\sjunk_threshold\\s-1"
        );
        for same in [
            "rule\\spills",
            "default",
            "score\\shigh",
            "score\\sx\\s>=\\sy",
        ] {
            assert_eq!(rule_key(same), same);
        }
    }

    #[test]
    fn failures() {
        let exec = |status| {
            Some(Failure {
                status,
                session: None,
            })
        };
        assert_eq!(
            failure("warning: 4.2.2 mailbox full"),
            exec("4.2.2 mailbox full")
        );
        assert_eq!(failure("warning: 5.7.1"), exec("5.7.1"));
        assert_eq!(
            failure("warning: 4.3.0 out of (descriptors) (to=<a b@x> session=6B1.2)"),
            Some(Failure {
                status: "4.3.0 out of (descriptors)",
                session: Some("6B1.2"),
            })
        );
        // Not the service's suffix: all of it is the status line.
        assert_eq!(
            failure("warning: 4.3.0 x (to=<a> session=)"),
            exec("4.3.0 x (to=<a> session=)")
        );
        for no in [
            "warning: ignoring user rules",
            "4.2.2 x",
            "warning: 4.2 x",
            "warning: 7.1.1 x",
        ] {
            assert_eq!(failure(no), None, "{no}");
        }
    }
}
