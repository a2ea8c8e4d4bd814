//! Forwarding (procmail `! address`, Sieve `redirect`): the loop marker
//! and the limits.
//!
//! A forwarded message is the message as delivered, byte for byte (with
//! the `Return-Path:`, `Delivered-To:` and `X-Original-To:` lines local(8)
//! put in front of it), with one line added at the top:
//! `X-Deliver-Forwarded: RECIPIENT`, the envelope recipient that forwarded
//! it. A message that already carries that line for this recipient has
//! been forwarded by this user before and came back: it is filed into the
//! Inbox instead of being forwarded again, which ends any loop through
//! deliver after one round.
//!
//! Why not a second `Delivered-To:`: local(8) has already added one for the
//! recipient, and Postfix's own loop check (local(8) bounces a message
//! that carries `Delivered-To:` for the recipient it is delivering to) is
//! kept intact because that line travels with the forwarded copy. A loop
//! between two users of one Postfix therefore ends at local(8) with one
//! bounce to the original sender, before deliver runs again; the
//! `X-Deliver-Forwarded` line is what stops loops that do not pass through
//! local(8) (LMTP, virtual mailboxes, another host), and it says which
//! recipient's rules forwarded the message, which `Delivered-To:` does not.

use crate::input::message::Headers;

/// The name of the loop marker.
pub const MARKER: &str = "X-Deliver-Forwarded";
/// Recipients one rule may forward to (a load error beyond).
pub const MAX_PER_RULE: usize = 16;
/// Recipients one message may be forwarded to, over all rules (the rest
/// are dropped, with a log line).
pub const MAX_PER_MESSAGE: usize = 32;

/// Whether the message carries the marker for `recipient`
/// (case-insensitively).
pub fn already_forwarded(headers: &Headers, recipient: &str) -> bool {
    headers
        .all(MARKER)
        .any(|v| v.trim().eq_ignore_ascii_case(recipient.trim()))
}

/// The marker line for `recipient`, without its line end.
pub fn marker_line(recipient: &str) -> String {
    format!("{MARKER}: {recipient}")
}

/// Checks a forwarding address from a rules file: `local@domain`, no
/// white space, no control character, no leading `-` (it would be taken
/// for an option by a sendmail that ignores `--`), no `<>`.
pub fn check_address(a: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("forward address {a:?}: {why}"));
    if a.starts_with('-') {
        return bad("starts with '-'");
    }
    if a.chars().any(|c| {
        c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | '"' | '(' | ')')
    }) {
        return bad("not a plain address (local@domain)");
    }
    match a.rsplit_once('@') {
        Some((l, d)) if !l.is_empty() && !d.is_empty() && d.contains('.') || d == "localhost" => {
            Ok(())
        }
        _ => bad("not of the form local@domain"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_for_this_recipient_only() {
        let h = Headers::parse(b"X-Deliver-Forwarded: Alice@Example.org\nSubject: x\n\n");
        assert!(already_forwarded(&h, "alice@example.org"));
        assert!(!already_forwarded(&h, "bob@example.org"));
        assert_eq!(
            marker_line("a@b.example"),
            "X-Deliver-Forwarded: a@b.example"
        );
    }

    #[test]
    fn addresses_are_checked() {
        assert!(check_address("phone@mobile.example").is_ok());
        assert!(check_address("user@localhost").is_ok());
        for a in [
            "-oi@x.example",
            "a b@x.example",
            "a@",
            "@x.example",
            "nodomain",
            "a@b.example, c@d.example",
            "<a@b.example>",
        ] {
            assert!(check_address(a).is_err(), "{a}");
        }
    }
}
