//! Vacation: the auto-reply of RFC 5230 (Sieve `vacation`), following the
//! rules of RFC 3834 for automatic responses. Pure: the "should we reply?"
//! function and the composition of the reply take everything as arguments
//! (the time too); the engine asks the state whether this sender was
//! already replied to (`crate::store::state`, kind `Replied`) and sends
//! through sendmail.
//!
//! `should_reply` says no (with the reason, for the trace and the log) when:
//! 1. today is before the vacation's `start` or after its `end` date;
//! 2. the envelope sender is null (a bounce);
//! 3. the sender's local part is `MAILER-DAEMON`, `LISTSERV`, `majordomo`,
//!    `owner-*`, `*-request`, or noreply-style (`noreply`, `no-reply`,
//!    `no_reply`, `donotreply`, `do-not-reply`, ..., and those followed
//!    by `-`, `+`, `_` or `.` and more);
//! 4. the sender is one of the user's own addresses;
//! 5. the message has an `Auto-Submitted` field other than `no` (RFC 3834);
//! 6. a `Precedence` of `bulk`, `list` or `junk`;
//! 7. any `List-*` field (RFC 2369, RFC 2919): a list message;
//! 8. `X-Auto-Response-Suppress` with `All` or `OOF` (Microsoft's marker of
//!    mail that wants no auto-reply);
//! 9. the local filter's verdict is spam, or a virus;
//! 10. none of the user's addresses is in `To`, `Cc`, `Bcc`, `Resent-To`,
//!     `Resent-Cc` or `Resent-Bcc` (RFC 5230 section 4.5: a Bcc or a list
//!     the user is on gets no reply).
//!
//! The user's addresses are the envelope recipient, the vacation's
//! `addresses` and its `from`, compared case-insensitively, with the
//! recipient delimiter's detail removed from the recipient (`user+ext@`
//! is `user@` too).
//!
//! The reply (`compose`, RFC 5230 section 5, RFC 3834 section 3):
//! envelope sender null; `To:` the envelope sender of the original (where
//! RFC 5230 sends it); `From:` the vacation's `from`, else the user's
//! address found in the message's recipients, else the envelope recipient;
//! `Subject:` the vacation's `subject`, else `Auto: ` and the original
//! subject (Pigeonhole's default, RFC 5230 section 4.7); `In-Reply-To:` and
//! `References:` from the original's Message-ID and References;
//! `Auto-Submitted: auto-replied`; `Date:` and a new `Message-ID:`. The body
//! is UTF-8 text/plain, sent as 7bit when it is plain ASCII in short lines,
//! otherwise quoted-printable or base64, whichever is shorter; a non-ASCII
//! subject is an RFC 2047 encoded word (mail-builder chooses).

use crate::input::message::Headers;
use mail_parser::{HeaderName, HeaderValue, MessageParser};

/// The default and the bounds of `days` (RFC 5230 section 4.1: at least
/// one day; Pigeonhole's default maximum is 60, a year is allowed here).
pub const DEFAULT_DAYS: u32 = 7;
pub const MIN_DAYS: u32 = 1;
pub const MAX_DAYS: u32 = 365;

/// A date as `YYYYMMDD` (compared as a number).
pub type Ymd = u32;

/// One vacation, as the rules file gives it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Vacation {
    pub days: u32,
    pub subject: Option<String>,
    pub body: String,
    pub addresses: Vec<String>,
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<Ymd>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<Ymd>,
}

impl Vacation {
    /// The handle of RFC 5230 section 4.2: replies of a changed vacation
    /// (another subject, body or from) are counted apart.
    pub fn handle(&self) -> String {
        crate::store::state::key(&[
            b"vacation",
            self.subject.as_deref().unwrap_or("").as_bytes(),
            self.body.as_bytes(),
            self.from.as_deref().unwrap_or("").as_bytes(),
        ])
    }
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<Ymd, String> {
    let bad = || format!("{s:?} is not a date (YYYY-MM-DD)");
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r.clone()].iter().all(u8::is_ascii_digit);
    if b.len() != 10
        || b[4] != b'-'
        || b[7] != b'-'
        || !digits(0..4)
        || !digits(5..7)
        || !digits(8..10)
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().map_err(|_| bad());
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    Ok(y * 10000 + m * 100 + d)
}

/// What the decision knows about the message.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The envelope sender; empty for the null sender.
    pub sender: &'a str,
    /// The envelope recipient.
    pub recipient: &'a str,
    /// The recipient delimiter of `[settings]` (e.g. `+`), if any.
    pub delimiter: Option<char>,
    pub headers: &'a Headers,
    /// The raw header block, for the address fields.
    pub header_block: &'a [u8],
    /// The local filter's verdict.
    pub spam: bool,
    pub virus: bool,
    /// Today, in the time zone of the delivery host.
    pub today: Ymd,
}

/// Whom to reply to, and as whom.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reply {
    pub to: String,
    pub from: String,
}

fn strip_detail(addr: &str, delim: Option<char>) -> String {
    let addr = addr.to_ascii_lowercase();
    let Some(d) = delim else { return addr };
    match addr.rsplit_once('@') {
        Some((local, domain)) => match local.split_once(d) {
            Some((user, _)) if !user.is_empty() => format!("{user}@{domain}"),
            _ => addr,
        },
        None => addr,
    }
}

fn local_part(addr: &str) -> &str {
    addr.rsplit_once('@').map_or(addr, |(l, _)| l)
}

/// Whether a local part names a sender that must get no automatic reply.
pub fn special_sender(local: &str) -> bool {
    let l = local.to_ascii_lowercase();
    if matches!(l.as_str(), "mailer-daemon" | "listserv" | "majordomo") {
        return true;
    }
    if l.starts_with("owner-") || l.ends_with("-request") {
        return true;
    }
    let squashed: String = l
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .collect();
    ["noreply", "donotreply"].iter().any(|p| {
        squashed == *p
            || (l.len() > p.len() && squashed.starts_with(p) && {
                // the marker followed by a separator: `noreply-123`,
                // `no-reply+x`, not `noreplyish`.
                let after = l
                    .char_indices()
                    .filter(|(_, c)| !matches!(c, '-' | '_' | '.'))
                    .nth(p.len() - 1)
                    .map(|(i, c)| i + c.len_utf8());
                after
                    .is_some_and(|i| matches!(l.as_bytes().get(i), Some(b'-' | b'+' | b'_' | b'.')))
            })
    })
}

/// The addresses of the recipient fields of a header block (To, Cc, Bcc,
/// Resent-To, Resent-Cc, Resent-Bcc), lowercased.
pub fn recipients_in(header_block: &[u8]) -> Vec<String> {
    let Some(m) = MessageParser::new().parse_headers(header_block) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in [
        HeaderName::To,
        HeaderName::Cc,
        HeaderName::Bcc,
        HeaderName::ResentTo,
        HeaderName::ResentCc,
        HeaderName::ResentBcc,
    ] {
        for v in m.header_values(name) {
            if let HeaderValue::Address(a) = v {
                out.extend(
                    a.iter()
                        .filter_map(|a| a.address())
                        .map(str::to_ascii_lowercase),
                );
            }
        }
    }
    out
}

/// Whether to reply, and how: `Err` with the reason when not.
pub fn should_reply(v: &Vacation, m: &Message) -> Result<Reply, String> {
    if v.start.is_some_and(|s| m.today < s) {
        return Err("before the vacation's start date".into());
    }
    if v.end.is_some_and(|e| m.today > e) {
        return Err("after the vacation's end date".into());
    }
    let sender = m.sender.trim();
    if sender.is_empty() || sender == "<>" {
        return Err("null sender (a bounce)".into());
    }
    if special_sender(local_part(sender)) {
        return Err(format!("sender {sender} is a mailer, a list or noreply"));
    }
    let mut own: Vec<String> = vec![strip_detail(m.recipient, m.delimiter)];
    own.extend(v.addresses.iter().map(|a| a.to_ascii_lowercase()));
    own.extend(v.from.iter().map(|a| a.to_ascii_lowercase()));
    if own.contains(&strip_detail(sender, m.delimiter))
        || own.contains(&sender.to_ascii_lowercase())
    {
        return Err(format!("sender {sender} is the user's own address"));
    }
    if let Some(a) = m.headers.all("Auto-Submitted").find(|a| {
        let token = a.split(';').next().unwrap_or("").trim();
        !token.eq_ignore_ascii_case("no")
    }) {
        return Err(format!("Auto-Submitted: {a}"));
    }
    if let Some(p) = m.headers.all("Precedence").find(|p| {
        let p = p.trim();
        ["bulk", "list", "junk"]
            .iter()
            .any(|b| p.eq_ignore_ascii_case(b))
    }) {
        return Err(format!("Precedence: {p}"));
    }
    if let Some(f) = m
        .headers
        .fields()
        .iter()
        .find(|f| f.name.len() > 5 && f.name[..5].eq_ignore_ascii_case("list-"))
    {
        return Err(format!("a list message ({})", f.name));
    }
    if let Some(x) = m.headers.all("X-Auto-Response-Suppress").find(|x| {
        x.split(',').any(|t| {
            ["all", "oof"]
                .iter()
                .any(|w| t.trim().eq_ignore_ascii_case(w))
        })
    }) {
        return Err(format!("X-Auto-Response-Suppress: {x}"));
    }
    if m.virus {
        return Err("a virus".into());
    }
    if m.spam {
        return Err("spam".into());
    }
    let rcpts = recipients_in(m.header_block);
    let found = rcpts
        .iter()
        .find(|r| own.contains(r) || own.contains(&strip_detail(r, m.delimiter)));
    let Some(found) = found else {
        return Err("none of the user's addresses is in To or Cc".into());
    };
    let from = v.from.clone().unwrap_or_else(|| found.clone());
    Ok(Reply {
        to: sender.to_string(),
        from,
    })
}

/// The subject of the reply.
pub fn subject(v: &Vacation, headers: &Headers) -> String {
    if let Some(s) = &v.subject {
        return s.clone();
    }
    match headers.first("Subject").map(|s| s.trim().to_string()) {
        Some(s) if !s.is_empty() => {
            if s.len() >= 5 && s[..5].eq_ignore_ascii_case("auto:") {
                s
            } else {
                format!("Auto: {s}")
            }
        }
        _ => "Automated reply".to_string(),
    }
}

/// The message ids (without angle brackets) of a field value.
fn ids(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        let id = &rest[open + 1..open + close];
        if !id.is_empty() && !id.contains(char::is_whitespace) {
            out.push(id.to_string());
        }
        rest = &rest[open + close + 1..];
    }
    out
}

/// The reply to send, as bytes with CRLF line ends (what sendmail -i
/// takes as well as LF): `now` is the Unix time of the Date field,
/// `message_id` the new Message-ID without angle brackets.
pub fn compose(
    v: &Vacation,
    reply: &Reply,
    headers: &Headers,
    now: i64,
    message_id: &str,
) -> Vec<u8> {
    use mail_builder::headers::message_id::MessageId;
    use mail_builder::headers::raw::Raw;
    let orig_id = headers
        .first("Message-ID")
        .map(|s| ids(&s))
        .unwrap_or_default();
    let mut refs: Vec<String> = headers
        .first("References")
        .map(|s| ids(&s))
        .unwrap_or_default();
    if refs.is_empty() {
        if let Some(irt) = headers.first("In-Reply-To") {
            refs = ids(&irt).into_iter().take(1).collect();
        }
    }
    refs.extend(orig_id.iter().cloned());
    let mut b = mail_builder::MessageBuilder::new()
        .from(reply.from.as_str())
        .to(reply.to.as_str())
        .subject(subject(v, headers))
        .date(now)
        .message_id(message_id)
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .text_body(v.body.as_str());
    if let Some(id) = orig_id.first() {
        b = b.in_reply_to(id.as_str());
    }
    if !refs.is_empty() {
        b = b.references(MessageId::new_list(refs.into_iter()));
    }
    b.write_to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vac() -> Vacation {
        Vacation {
            days: 7,
            subject: None,
            body: "I am away.".into(),
            addresses: vec!["alias@example.org".into()],
            from: None,
            start: None,
            end: None,
        }
    }

    const BASE: &str = "From: Ann <ann@example.com>\nTo: Bob <bob@example.org>\nSubject: Lunch?\nMessage-ID: <m1@example.com>\n";

    fn check(extra: &str, sender: &str) -> Result<Reply, String> {
        check_with(
            &vac(),
            &format!("{BASE}{extra}\n"),
            sender,
            false,
            false,
            20270101,
        )
    }

    fn check_with(
        v: &Vacation,
        block: &str,
        sender: &str,
        spam: bool,
        virus: bool,
        today: Ymd,
    ) -> Result<Reply, String> {
        let headers = Headers::parse(block.as_bytes());
        should_reply(
            v,
            &Message {
                sender,
                recipient: "bob+lists@example.org",
                delimiter: Some('+'),
                headers: &headers,
                header_block: block.as_bytes(),
                spam,
                virus,
                today,
            },
        )
    }

    #[test]
    fn a_plain_message_gets_a_reply_to_the_envelope_sender() {
        let r = check("Reply-To: other@example.net\n", "ann@example.com").unwrap();
        assert_eq!(r.to, "ann@example.com");
        assert_eq!(r.from, "bob@example.org");
    }

    #[test]
    fn null_sender_gets_none() {
        assert!(check("", "").unwrap_err().contains("null sender"));
        assert!(check("", "<>").unwrap_err().contains("null sender"));
    }

    #[test]
    fn mailers_lists_and_noreply_senders_get_none() {
        for s in [
            "MAILER-DAEMON@example.com",
            "mailer-daemon@example.com",
            "owner-rust@lists.example.com",
            "rust-request@lists.example.com",
            "LISTSERV@example.com",
            "majordomo@example.com",
            "noreply@example.com",
            "no-reply@example.com",
            "No_Reply@example.com",
            "donotreply@example.com",
            "do-not-reply@example.com",
            "noreply-12345@example.com",
            "no-reply+abc@example.com",
        ] {
            let e = check("", s).unwrap_err();
            assert!(e.contains("mailer, a list or noreply"), "{s}: {e}");
        }
        for s in [
            "noreplyish@example.com",
            "requester@example.com",
            "owner@example.com",
        ] {
            assert!(check("", s).is_ok(), "{s}");
        }
    }

    #[test]
    fn own_addresses_get_none() {
        for s in ["bob@example.org", "BOB+x@example.org", "alias@example.org"] {
            assert!(check("", s).unwrap_err().contains("own address"), "{s}");
        }
    }

    #[test]
    fn auto_submitted_other_than_no_gets_none() {
        for a in [
            "auto-generated",
            "auto-replied",
            "auto-notified; owner-email=x@y",
            "AUTO-GENERATED",
        ] {
            let e = check(&format!("Auto-Submitted: {a}\n"), "ann@example.com").unwrap_err();
            assert!(e.contains("Auto-Submitted"), "{a}: {e}");
        }
        assert!(check("Auto-Submitted: no\n", "ann@example.com").is_ok());
        assert!(check("Auto-Submitted: No ; comment\n", "ann@example.com").is_ok());
    }

    #[test]
    fn bulk_list_junk_precedence_gets_none() {
        for p in ["bulk", "list", "junk", "Bulk"] {
            let e = check(&format!("Precedence: {p}\n"), "ann@example.com").unwrap_err();
            assert!(e.contains("Precedence"), "{p}");
        }
        assert!(check("Precedence: first-class\n", "ann@example.com").is_ok());
    }

    #[test]
    fn list_fields_get_none() {
        for h in [
            "List-Id: <rust.lists.example.com>",
            "List-Unsubscribe: <mailto:x@y>",
            "list-post: <mailto:x@y>",
        ] {
            let e = check(&format!("{h}\n"), "ann@example.com").unwrap_err();
            assert!(e.contains("list message"), "{h}: {e}");
        }
    }

    #[test]
    fn auto_response_suppress_gets_none() {
        assert!(check("X-Auto-Response-Suppress: DR, OOF\n", "ann@example.com").is_err());
        assert!(check("X-Auto-Response-Suppress: All\n", "ann@example.com").is_err());
        assert!(check("X-Auto-Response-Suppress: DR\n", "ann@example.com").is_ok());
    }

    #[test]
    fn spam_and_virus_get_none() {
        let block = format!("{BASE}\n");
        assert_eq!(
            check_with(&vac(), &block, "ann@example.com", true, false, 20270101).unwrap_err(),
            "spam"
        );
        assert_eq!(
            check_with(&vac(), &block, "ann@example.com", false, true, 20270101).unwrap_err(),
            "a virus"
        );
    }

    #[test]
    fn not_addressed_to_the_user_gets_none() {
        let block = "From: ann@example.com\nTo: someone@example.net\nSubject: x\n\n";
        let e = check_with(&vac(), block, "ann@example.com", false, false, 20270101).unwrap_err();
        assert!(e.contains("none of the user's addresses"), "{e}");
        // In Cc, as an alias, as a detail address, in a group: replied.
        for to in [
            "To: x@example.net\nCc: \"Bob\" <BOB@example.org>",
            "To: alias@example.org",
            "To: bob+lists@example.org",
            "To: friends: a@x.example, bob@example.org;",
        ] {
            let block = format!("From: ann@example.com\n{to}\n\n");
            assert!(
                check_with(&vac(), &block, "ann@example.com", false, false, 20270101).is_ok(),
                "{to}"
            );
        }
        // A display name that looks like the address is not the address.
        let block = "From: ann@example.com\nTo: \"bob@example.org\" <x@example.net>\n\n";
        assert!(check_with(&vac(), block, "ann@example.com", false, false, 20270101).is_err());
    }

    #[test]
    fn dates_bound_the_vacation() {
        let mut v = vac();
        v.start = Some(parse_date("2026-12-20").unwrap());
        v.end = Some(parse_date("2027-01-03").unwrap());
        let block = format!("{BASE}\n");
        let at = |d| check_with(&v, &block, "ann@example.com", false, false, d);
        assert!(at(20261219).unwrap_err().contains("start"));
        assert!(at(20261220).is_ok());
        assert!(at(20270103).is_ok());
        assert!(at(20270104).unwrap_err().contains("end"));
        assert!(parse_date("2027-13-01").is_err());
        assert!(parse_date("27-01-01").is_err());
        assert!(parse_date("2027-1-011").is_err());
    }

    #[test]
    fn subject_defaults_to_auto_and_the_original() {
        let h = Headers::parse(b"Subject: Lunch?\n\n");
        assert_eq!(subject(&vac(), &h), "Auto: Lunch?");
        let h = Headers::parse(b"Subject: Auto: Lunch?\n\n");
        assert_eq!(subject(&vac(), &h), "Auto: Lunch?");
        let h = Headers::parse(b"From: a@b\n\n");
        assert_eq!(subject(&vac(), &h), "Automated reply");
        let mut v = vac();
        v.subject = Some("Away".into());
        assert_eq!(subject(&v, &h), "Away");
    }

    #[test]
    fn the_reply_has_the_fields_of_rfc_3834_and_a_utf8_body() {
        let mut v = vac();
        v.subject = Some("Abwesend – zurück am 3.".into());
        v.body = "Ich bin bis zum 3. Januar nicht im Büro.\nGrüße, Bob\n".into();
        let h = Headers::parse(
            b"Subject: x\nMessage-ID: <m2@example.com>\nReferences: <m0@example.com> <m1@example.com>\n\n",
        );
        let reply = Reply {
            to: "ann@example.com".into(),
            from: "bob@example.org".into(),
        };
        let out = compose(&v, &reply, &h, 1_800_000_000, "r1@host.example");
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.is_ascii(), "{text}");
        for want in [
            "Auto-Submitted: auto-replied\r\n",
            "In-Reply-To: <m2@example.com>\r\n",
            "References: <m0@example.com> <m1@example.com> <m2@example.com>\r\n",
            "Message-ID: <r1@host.example>\r\n",
            "To: <ann@example.com>\r\n",
            "From: <bob@example.org>\r\n",
            "Date: ",
            "Subject: =?utf-8?",
            "charset=\"utf-8\"",
        ] {
            assert!(text.contains(want), "{want:?} missing in:\n{text}");
        }
        // What a reader gets back is the text as written.
        let parsed = MessageParser::new().parse(&out).unwrap();
        assert_eq!(parsed.subject(), Some("Abwesend – zurück am 3."));
        assert_eq!(parsed.body_text(0).unwrap().replace("\r\n", "\n"), v.body);
    }
}
