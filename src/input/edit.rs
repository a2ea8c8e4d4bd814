//! Editing a raw header block: header lines added at the top, named fields
//! removed, and a prefix put before the Subject. A pure function of bytes;
//! the executor writes its result, then the body as it was.
//!
//! - The fields are those `crate::input::message::Headers::parse` reads
//!   (its `raw_fields` here): a field is its first line and its
//!   continuation lines; everything after the last field (the blank line,
//!   and whatever else the caller passes) is copied unchanged, as are
//!   continuation lines before the first field.
//! - Lines deliver writes end as the message's lines do (the first line's
//!   ending: CRLF or LF). Fields kept are copied byte for byte, folding
//!   included.
//! - Order: fields are removed, then the first Subject is tagged, then the
//!   added lines are put at the top, in the order given.
//! - Trace fields are never removed: [`PROTECTED`].
//! - The subject prefix stays valid RFC 2047: it goes at the start of the
//!   first Subject's value, before its first word. Plain ASCII text goes in
//!   as written; when the value then starts with an encoded word, a space
//!   separates them (an encoded word must stand apart from other words,
//!   RFC 2047 section 5). A prefix with non-ASCII or control characters, or
//!   one that holds `=?`, goes in as encoded words of its own (UTF-8, Q
//!   encoding, at most 75 characters each); before an encoded word, the
//!   prefix's trailing white space is inside its encoded word, since white
//!   space between two encoded words is not displayed. Nothing is ever put
//!   inside an encoded word. A message without Subject gets one: the
//!   prefix without its trailing white space.

use crate::input::message::{field_name_len, is_wsp, valid_header_line};

/// Fields that are never removed: the trace of where the message went.
pub const PROTECTED: [&str; 3] = ["Received", "Return-Path", "Delivered-To"];

/// Whether `name` is one of [`PROTECTED`] (ASCII case-insensitive).
pub fn is_protected(name: &str) -> bool {
    PROTECTED
        .iter()
        .any(|p| p.eq_ignore_ascii_case(name.trim()))
}

/// One field of a raw header block, as byte offsets into the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawField {
    /// Where the field's first line starts.
    pub start: usize,
    /// Where its name ends (white space before the colon excluded).
    pub name_end: usize,
    /// Just after the colon.
    pub value_start: usize,
    /// After the last line ending of its last continuation line.
    pub end: usize,
}

impl RawField {
    pub fn name<'a>(&self, block: &'a [u8]) -> &'a [u8] {
        &block[self.start..self.name_end]
    }

    /// The value as written: after the colon, folding and line endings kept.
    pub fn value<'a>(&self, block: &'a [u8]) -> &'a [u8] {
        &block[self.value_start..self.end]
    }
}

fn is_blank(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

/// The fields of a header block, in order, as `Headers::parse` reads them:
/// up to the first blank line or the first line that is neither a field
/// nor a continuation line.
pub fn raw_fields(block: &[u8]) -> RawFields<'_> {
    RawFields { block, pos: 0 }
}

pub struct RawFields<'a> {
    block: &'a [u8],
    pos: usize,
}

impl RawFields<'_> {
    /// The end of the line starting at `pos`.
    fn line_end(&self, pos: usize) -> usize {
        memchr::memchr(b'\n', &self.block[pos..]).map_or(self.block.len(), |i| pos + i + 1)
    }
}

impl Iterator for RawFields<'_> {
    type Item = RawField;

    fn next(&mut self) -> Option<RawField> {
        let block = self.block;
        // Continuation lines before the first field belong to no field.
        while self.pos < block.len() && is_wsp(block[self.pos]) {
            self.pos = self.line_end(self.pos);
        }
        if self.pos >= block.len() {
            return None;
        }
        let start = self.pos;
        let end = self.line_end(start);
        let line = &block[start..end];
        if is_blank(line) {
            return None;
        }
        let n = field_name_len(line)?;
        let colon = start + line.iter().position(|&b| b == b':')?;
        let mut end = end;
        while end < block.len() && is_wsp(block[end]) {
            end = self.line_end(end);
        }
        self.pos = end;
        Some(RawField {
            start,
            name_end: start + n,
            value_start: colon + 1,
            end,
        })
    }
}

/// The line ending of the block's first line (`\r\n` or `\n`).
fn line_ending(block: &[u8]) -> &'static [u8] {
    match memchr::memchr(b'\n', block) {
        Some(i) if i > 0 && block[i - 1] == b'\r' => b"\r\n",
        _ => b"\n",
    }
}

/// Whether `s` at its start is an RFC 2047 encoded word that ends at
/// white space or at the end: `=?charset?B|Q?text?=`.
fn starts_with_encoded_word(s: &[u8]) -> bool {
    let Some(rest) = s.strip_prefix(b"=?") else {
        return false;
    };
    let token = |r: &[u8]| r.iter().position(|&b| b == b'?' || b <= b' ' || b >= 127);
    let Some(c) = token(rest) else { return false };
    if c == 0 || rest[c] != b'?' {
        return false;
    }
    let rest = &rest[c + 1..];
    if !(rest.len() > 2 && matches!(rest[0], b'B' | b'b' | b'Q' | b'q') && rest[1] == b'?') {
        return false;
    }
    let rest = &rest[2..];
    let Some(t) = token(rest) else { return false };
    rest[t] == b'?'
        && rest.get(t + 1) == Some(&b'=')
        && rest
            .get(t + 2)
            .is_none_or(|&b| is_wsp(b) || b == b'\r' || b == b'\n')
}

/// Whether the prefix can go into the Subject as plain text.
fn is_plain(prefix: &str) -> bool {
    prefix.bytes().all(|b| (b' '..=b'~').contains(&b)) && !prefix.contains("=?")
}

/// `text` as UTF-8 Q-encoded words of at most 75 characters, separated by
/// spaces (which decoders drop between encoded words).
fn encoded_words(text: &str) -> String {
    const HEAD: &str = "=?UTF-8?Q?";
    const MAX_PAYLOAD: usize = 75 - HEAD.len() - 2;
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        let mut enc = String::new();
        if c == ' ' {
            enc.push('_');
        } else if c.is_ascii_alphanumeric() || matches!(c, '!' | '*' | '+' | '-' | '/') {
            enc.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                enc.push_str(&format!("={b:02X}"));
            }
        }
        if cur.len() + enc.len() > MAX_PAYLOAD {
            words.push(std::mem::take(&mut cur));
        }
        cur.push_str(&enc);
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
        .iter()
        .map(|w| format!("{HEAD}{w}?="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What goes before a Subject value (`rest`: the value after its leading
/// white space) to put `prefix` in front of it.
fn tagged(prefix: &str, rest: &[u8]) -> Vec<u8> {
    let before_ew = starts_with_encoded_word(rest);
    let rest_empty = rest.iter().all(|&b| b.is_ascii_whitespace());
    let core = prefix.trim_end_matches([' ', '\t']);
    let trail = &prefix[core.len()..];
    let mut out = String::new();
    if core.is_empty() {
        // Only white space: nothing to show.
        out.push_str(if rest_empty { "" } else { trail });
    } else if is_plain(prefix) {
        out.push_str(if rest_empty { core } else { prefix });
        if before_ew && trail.is_empty() {
            out.push(' ');
        }
    } else if before_ew {
        out.push_str(&encoded_words(prefix));
        out.push(' ');
    } else {
        out.push_str(&encoded_words(core));
        if !rest_empty {
            out.push_str(if trail.is_empty() { " " } else { trail });
        }
    }
    out.into_bytes()
}

/// The header block `block` (and whatever follows it, copied unchanged)
/// with the edits applied: `remove` (names, ASCII case-insensitive; never
/// the [`PROTECTED`] ones), then `subject_prefix` on the first Subject,
/// then `add` at the top. An `add` line that is not a header line deliver
/// may write (`valid_header_line`) is left out.
pub fn edit(
    block: &[u8],
    add: &[String],
    subject_prefix: Option<&str>,
    remove: &[String],
) -> Vec<u8> {
    let eol = line_ending(block);
    let removed = |name: &[u8]| {
        let name = String::from_utf8_lossy(name);
        !is_protected(&name) && remove.iter().any(|r| r.trim().eq_ignore_ascii_case(&name))
    };
    let mut prefix = subject_prefix.filter(|p| !p.is_empty());
    let mut fields = Vec::with_capacity(block.len() + 64);
    let mut copied = 0;
    for f in raw_fields(block) {
        fields.extend_from_slice(&block[copied..f.start]);
        copied = f.end;
        let name = f.name(block);
        if removed(name) {
            continue;
        }
        let Some(p) = prefix.filter(|_| name.eq_ignore_ascii_case(b"Subject")) else {
            fields.extend_from_slice(&block[f.start..f.end]);
            continue;
        };
        // Before the first word, or, in an empty value, before its line end.
        let value = f.value(block);
        let lead = value
            .iter()
            .position(|&b| !b.is_ascii_whitespace())
            .or_else(|| value.iter().position(|&b| b == b'\r' || b == b'\n'))
            .unwrap_or(value.len());
        let at = f.value_start + lead;
        fields.extend_from_slice(&block[f.start..at]);
        if !is_wsp(block[at - 1]) {
            fields.push(b' ');
        }
        fields.extend_from_slice(&tagged(p, &block[at..f.end]));
        fields.extend_from_slice(&block[at..f.end]);
        prefix = None;
    }
    let mut out = Vec::with_capacity(fields.len() + block.len() - copied + 256);
    for line in add.iter().filter(|l| valid_header_line(l)) {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(eol);
    }
    if let Some(p) = prefix {
        out.extend_from_slice(b"Subject: ");
        out.extend_from_slice(&tagged(p, b""));
        out.extend_from_slice(eol);
    }
    out.extend_from_slice(&fields);
    out.extend_from_slice(&block[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::message::Headers;
    use proptest::prelude::*;

    fn ed(block: &str, add: &[&str], prefix: Option<&str>, remove: &[&str]) -> String {
        let add: Vec<String> = add.iter().map(|s| s.to_string()).collect();
        let remove: Vec<String> = remove.iter().map(|s| s.to_string()).collect();
        String::from_utf8(edit(block.as_bytes(), &add, prefix, &remove)).unwrap()
    }

    fn subject(block: &str) -> String {
        Headers::parse(block.as_bytes()).first("Subject").unwrap()
    }

    #[test]
    fn adds_removes_and_keeps_the_rest() {
        let m = "Received: a\nX-Foo: 1\n  folded\nSubject: hi\nx-foo: 2\nReturn-Path: <r@x>\n\nbody\nX-Foo: in body\n";
        let out = ed(
            m,
            &["X-Tag: t", "bad line", "X-Two: 2"],
            None,
            &["x-FOO", "Received", "return-path", "Delivered-To"],
        );
        assert_eq!(
            out,
            "X-Tag: t\nX-Two: 2\nReceived: a\nSubject: hi\nReturn-Path: <r@x>\n\nbody\nX-Foo: in body\n"
        );
        // CRLF messages get CRLF lines; folding is kept.
        let m = "Subject: a\r\n b\r\nTo: x@y\r\n\r\nbody\r\n";
        assert_eq!(
            ed(m, &["X-A: 1"], Some("[SPAM] "), &["To"]),
            "X-A: 1\r\nSubject: [SPAM] a\r\n b\r\n\r\nbody\r\n"
        );
        // Nothing to do: the same bytes.
        assert_eq!(ed(m, &[], None, &[]), m);
        // A continuation line before the first field is kept.
        assert_eq!(ed(" lead\nA: 1\n\n", &[], None, &["B"]), " lead\nA: 1\n\n");
    }

    #[test]
    fn subject_prefix_plain() {
        assert_eq!(
            ed("Subject: hi\n\n", &[], Some("[SPAM] "), &[]),
            "Subject: [SPAM] hi\n\n"
        );
        assert_eq!(
            ed("Subject:hi\n\n", &[], Some("[SPAM] "), &[]),
            "Subject: [SPAM] hi\n\n"
        );
        assert_eq!(
            ed("Subject:\n\n", &[], Some("[SPAM] "), &[]),
            "Subject: [SPAM]\n\n"
        );
        assert_eq!(
            ed("Subject: \r\n\r\n", &[], Some("[SPAM] "), &[]),
            "Subject: [SPAM]\r\n\r\n"
        );
        assert_eq!(
            ed("Subject:\n\tfolded\n\n", &[], Some("[SPAM] "), &[]),
            "Subject:\n\t[SPAM] folded\n\n"
        );
        // Only the first Subject is tagged.
        assert_eq!(
            ed("Subject: a\nSubject: b\n\n", &[], Some("T "), &[]),
            "Subject: T a\nSubject: b\n\n"
        );
        // No Subject: one is added after the added lines.
        assert_eq!(
            ed("To: x\n\nb", &["X-A: 1"], Some("[SPAM] "), &[]),
            "X-A: 1\nSubject: [SPAM]\nTo: x\n\nb"
        );
        // A removed Subject is replaced by the tag alone.
        assert_eq!(
            ed("Subject: a\n\n", &[], Some("[S] "), &["subject"]),
            "Subject: [S]\n\n"
        );
    }

    #[test]
    fn subject_prefix_before_encoded_words() {
        let m = "Subject: =?UTF-8?B?w7xiZXI=?= und so\n\n";
        let out = ed(m, &[], Some("[SPAM] "), &[]);
        assert_eq!(out, "Subject: [SPAM] =?UTF-8?B?w7xiZXI=?= und so\n\n");
        assert_eq!(subject(&out), "[SPAM] über und so");
        // Without a trailing space, one separates the prefix from the word.
        let out = ed(m, &[], Some("[SPAM]"), &[]);
        assert_eq!(out, "Subject: [SPAM] =?UTF-8?B?w7xiZXI=?= und so\n\n");
        // A non-ASCII prefix is an encoded word; its space is inside it.
        let out = ed(m, &[], Some("[ВАЖНО] "), &[]);
        assert!(out.starts_with("Subject: =?UTF-8?Q?"), "{out}");
        assert_eq!(subject(&out), "[ВАЖНО] über und so");
        // ... and outside it before plain text.
        let out = ed("Subject: hello\n\n", &[], Some("[ВАЖНО] "), &[]);
        assert!(out.contains("?= hello\n"), "{out}");
        assert_eq!(subject(&out), "[ВАЖНО] hello");
        // A prefix that looks like an encoded word, or holds a line break,
        // is encoded: it can neither be decoded as one nor end the field.
        let out = ed("Subject: x\n\n", &[], Some("=?utf-8?q?a?= "), &[]);
        assert_eq!(subject(&out), "=?utf-8?q?a?= x");
        let out = ed("Subject: x\n\n", &[], Some("a\r\nBcc: evil@x "), &[]);
        assert_eq!(Headers::parse(out.as_bytes()).len(), 1, "{out}");
        // A long prefix becomes several words of at most 75 characters.
        let long = "é".repeat(60) + " ";
        let out = ed("Subject: x\n\n", &[], Some(&long), &[]);
        assert!(out.split(' ').all(|w| w.trim().len() <= 75), "{out}");
        assert_eq!(subject(&out), format!("{long}x"));
    }

    #[test]
    fn encoded_word_detection() {
        assert!(starts_with_encoded_word(b"=?utf-8?q?a?="));
        assert!(starts_with_encoded_word(b"=?utf-8?B?YQ==?= x"));
        assert!(!starts_with_encoded_word(b"=?utf-8?q?a?=x"));
        assert!(!starts_with_encoded_word(b"=?utf-8?x?a?="));
        assert!(!starts_with_encoded_word(b"=??q?a?="));
        assert!(!starts_with_encoded_word(b"plain"));
    }

    fn field_value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ -~]{0,30}",
            "[a-z ]{0,10}=\\?UTF-8\\?B\\?w7xiZXI=\\?=[a-z ]{0,10}",
            "[ -~]{1,20}\n[ \t][ -~]{1,20}",
            "=\\?utf-8\\?q\\?caf=C3=A9\\?= [a-z]{0,8}",
        ]
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("Subject".to_string()),
            Just("Received".to_string()),
            Just("To".to_string()),
            Just("x-foo".to_string()),
            "[A-Za-z][A-Za-z-]{0,8}",
        ]
    }

    proptest! {
        #[test]
        fn edited_block_parses_field_for_field(
            fields in prop::collection::vec((name(), field_value()), 0..8),
            crlf in any::<bool>(),
            add in prop::collection::vec("X-[A-Z][a-z]{0,5}: [ -~]{0,20}", 0..3),
            remove in prop::collection::vec(name(), 0..3),
            prefix in prop::option::of(prop_oneof!["[ -~]{1,10}", "[é中 a]{1,6}"]),
            body in "[ -~\n]{0,40}",
        ) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut block = String::new();
            for (n, v) in &fields {
                block.push_str(&format!("{n}: {}{eol}", v.replace('\n', eol)));
            }
            block.push_str(eol);
            let tail = format!("{block}{body}");
            let out = edit(tail.as_bytes(), &add, prefix.as_deref(), &remove);
            // What follows the fields is untouched.
            let before = Headers::parse(block.as_bytes());
            let consumed = raw_fields(block.as_bytes()).last().map_or(0, |f| f.end);
            prop_assert!(out.ends_with(&tail.as_bytes()[consumed..]));
            // The fields: the added lines, then the original ones without
            // the removed names (protected names kept), in order.
            let after = Headers::parse(&out);
            let gone = |n: &str| !is_protected(n) && remove.iter().any(|r| r.eq_ignore_ascii_case(n));
            let kept: Vec<_> = before.fields().iter().filter(|f| !gone(&f.name)).collect();
            let mut got = after.fields().iter();
            for a in &add {
                let f = got.next().unwrap();
                prop_assert_eq!(format!("{}:", f.name), a.split_once(':').unwrap().0.to_string() + ":");
            }
            let prefix = prefix.as_deref().filter(|p| !p.is_empty());
            let tag_added = prefix.is_some() && !kept.iter().any(|f| f.name.eq_ignore_ascii_case("Subject"));
            if tag_added {
                let f = got.next().unwrap();
                prop_assert_eq!(f.name.as_str(), "Subject");
                prop_assert_eq!(f.value.as_str(), prefix.unwrap().trim());
            }
            let mut tagged = false;
            for k in kept {
                let f = got.next().unwrap();
                prop_assert_eq!(&f.name, &k.name);
                match prefix {
                    Some(p) if !tagged && k.name.eq_ignore_ascii_case("Subject") => {
                        tagged = true;
                        let p = p.trim();
                        prop_assert!(f.value.starts_with(p), "{:?} {:?}", f.value, p);
                        prop_assert!(f.value.ends_with(k.value.as_str()), "{:?} {:?}", f.value, k.value);
                    }
                    _ => prop_assert_eq!(&f.value, &k.value),
                }
            }
            prop_assert!(got.next().is_none());
        }
    }
}
