//! Duplicate suppression (Sieve `duplicate`, RFC 7352; procmail's
//! `formail -D`): the key that identifies a message for this user.
//!
//! The key is the Message-ID (RFC 7352's default, `:header "message-id"`):
//! the first `<...>` of the topmost Message-ID field, leading and trailing
//! white space removed, compared as written (the id's left part is
//! case-sensitive). A message without a usable Message-ID gets a digest
//! instead: the SHA-256 of the values of its From, To, Cc, Date and
//! Subject fields (topmost of each, as decoded) and of the first 64 KiB of
//! its body (the body window, raw). None of these change between the
//! copies of one message that reach a user by two aliases or two
//! submissions; the fields a relay adds (Received, Delivered-To,
//! Return-Path, X-Original-To) are left out for that reason.
//!
//! Whether a message is a duplicate is the state's answer
//! (`crate::store::state`, kind `Seen`, one entry per key, expiring after
//! the window); the entry is made by the first delivery of the key and
//! names it (`crate::store::state::delivery_id`), so that a retry of that
//! same delivery is not its own duplicate, and it is removed again when
//! that delivery does not succeed, so that nothing is discarded as a
//! duplicate of a copy that was never filed (RFC 7352 section 3: the id
//! is recorded only when the message is delivered).

use crate::input::message::Headers;
use sha2::{Digest, Sha256};

/// The key of a message: `Ok(id)` from its Message-ID, `Err(digest)` when
/// it has none (both as text, for the state's key and the log).
pub fn key(headers: &Headers, body_window: &[u8]) -> Result<String, String> {
    if let Some(id) = headers.first("Message-ID").and_then(|v| message_id(&v)) {
        return Ok(id);
    }
    let mut h = Sha256::new();
    for name in ["From", "To", "Cc", "Date", "Subject"] {
        let v = headers.first(name).unwrap_or_default();
        h.update((v.len() as u64).to_be_bytes());
        h.update(v.as_bytes());
    }
    h.update(body_window);
    Err(format!(
        "sha256:{}",
        crate::store::state::hex(&h.finalize())
    ))
}

/// The id of a Message-ID value: what is between the first `<` and the
/// next `>`, or the whole trimmed value when it has no brackets; `None`
/// when empty.
fn message_id(v: &str) -> Option<String> {
    let v = v.trim();
    let id = match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v,
    };
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(block: &str, body: &str) -> Result<String, String> {
        key(&Headers::parse(block.as_bytes()), body.as_bytes())
    }

    #[test]
    fn message_id_is_the_key() {
        assert_eq!(k("Message-ID: <a.b@c>\n\n", ""), Ok("a.b@c".into()));
        assert_eq!(
            k("Message-Id:   <a.b@c> (comment)\n\n", ""),
            Ok("a.b@c".into())
        );
        assert_eq!(k("Message-ID: bare@id\n\n", ""), Ok("bare@id".into()));
        // Case matters in the left part.
        assert_ne!(
            k("Message-ID: <A@c>\n\n", ""),
            k("Message-ID: <a@c>\n\n", "")
        );
    }

    #[test]
    fn without_message_id_a_digest_that_relays_do_not_change() {
        let a = "Received: from a by b id 1\nDelivered-To: alias1@x\nFrom: a@x\nTo: b@y\nDate: Mon, 1 Jan 2027 10:00:00 +0000\nSubject: s\n\n";
        let b = "Received: from a by b id 2\nDelivered-To: alias2@x\nFrom: a@x\nTo: b@y\nDate: Mon, 1 Jan 2027 10:00:00 +0000\nSubject: s\n\n";
        let ka = k(a, "body\n").unwrap_err();
        assert!(ka.starts_with("sha256:") && ka.len() == 7 + 64, "{ka}");
        assert_eq!(Err(ka.clone()), k(b, "body\n"));
        assert_ne!(Err(ka.clone()), k(a, "other body\n"));
        assert_ne!(Err(ka), k(&a.replace("Subject: s", "Subject: t"), "body\n"));
        assert!(k("Message-ID: <>\n\n", "").is_err());
    }
}
