//! The header block of the edited copy (`crate::policy::plan::Edits`):
//! lines added in front, the Subject prefixed, fields removed. Pure; the
//! body is never looked at. A stand-in until `crate::input::edit`
//! (verbs-conditions branch) takes over the pure edit.

use crate::policy::plan::Edits;

/// The fields of a header block: (start, end) byte ranges, each with its
/// continuation lines; the blank line (or whatever ends the block) is not
/// in any field.
fn fields(block: &[u8]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut pos = 0;
    while pos < block.len() {
        let end = block[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(block.len(), |i| pos + i + 1);
        let line = &block[pos..end];
        if line == b"\n" || line == b"\r\n" {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(last) = out.last_mut() {
                last.1 = end;
            }
        } else {
            out.push((pos, end));
        }
        pos = end;
    }
    out
}

fn name_of(field: &[u8]) -> &[u8] {
    let n = field.iter().position(|&b| b == b':').unwrap_or(0);
    let mut name = &field[..n];
    while let [rest @ .., b' ' | b'\t'] = name {
        name = rest;
    }
    name
}

/// `prefix` as it goes in front of a Subject value: as it is when it is
/// ASCII, else as one RFC 2047 Q-encoded word followed by a space.
fn prefix_text(prefix: &str) -> String {
    if prefix.is_ascii() {
        return prefix.to_string();
    }
    let mut w = String::from("=?UTF-8?Q?");
    for b in prefix.bytes() {
        match b {
            b' ' => w.push('_'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'!' | b'*' | b'+' | b'-' | b'/' => {
                w.push(b as char)
            }
            _ => w.push_str(&format!("={b:02X}")),
        }
    }
    w.push_str("?= ");
    w
}

/// The Subject field with `prefix` put before its value: after the colon
/// and the white space that follows it, so that an encoded word keeps its
/// own white space and is never split.
fn prefixed(field: &[u8], prefix: &str) -> Vec<u8> {
    let colon = field.iter().position(|&b| b == b':').unwrap_or(0) + 1;
    let ws = field[colon..]
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    let at = colon + ws;
    let mut p = prefix_text(prefix);
    // An encoded word must be separated from text before it by white space.
    if field[at..].starts_with(b"=?") && !p.ends_with([' ', '\t']) {
        p.push(' ');
    }
    let mut out = Vec::with_capacity(field.len() + p.len() + 1);
    out.extend_from_slice(&field[..colon]);
    if ws == 0 {
        out.push(b' ');
    } else {
        out.extend_from_slice(&field[colon..at]);
    }
    out.extend_from_slice(p.as_bytes());
    out.extend_from_slice(&field[at..]);
    out
}

/// The edited header block: `block` is the message's header block (with
/// its blank line when it has one); `eol` the line ending of added lines.
pub fn edit_block(block: &[u8], edits: &Edits, eol: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.len() + 256);
    for l in &edits.add {
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(eol.as_bytes());
    }
    let fs = fields(block);
    let mut subject_done = false;
    let mut end = 0;
    for &(s, e) in &fs {
        let f = &block[s..e];
        let name = name_of(f);
        end = e;
        if edits
            .remove
            .iter()
            .any(|r| r.as_bytes().eq_ignore_ascii_case(name))
        {
            continue;
        }
        match &edits.subject_prefix {
            Some(p) if !subject_done && name.eq_ignore_ascii_case(b"Subject") => {
                out.extend_from_slice(&prefixed(f, p));
                subject_done = true;
            }
            _ => out.extend_from_slice(f),
        }
    }
    if let (Some(p), false) = (&edits.subject_prefix, subject_done) {
        out.extend_from_slice(format!("Subject: {}{eol}", prefix_text(p).trim_end()).as_bytes());
    }
    out.extend_from_slice(&block[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(add: &[&str], prefix: Option<&str>, remove: &[&str]) -> Edits {
        Edits {
            add: add.iter().map(|s| s.to_string()).collect(),
            subject_prefix: prefix.map(str::to_string),
            remove: remove.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn edits() {
        let b = b"Subject: hi\nX-Foo: a\n b\nTo: x\n\n";
        let got = edit_block(b, &e(&["X-T: 1"], Some("[S] "), &["x-foo"]), "\n");
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "X-T: 1\nSubject: [S] hi\nTo: x\n\n"
        );
        let b = b"Subject: =?UTF-8?B?w6k=?=\n\n";
        let got = edit_block(b, &e(&[], Some("[SPAM]"), &[]), "\n");
        assert_eq!(got, b"Subject: [SPAM] =?UTF-8?B?w6k=?=\n\n");
        let got = edit_block(b"To: x\n\n", &e(&[], Some("é "), &[]), "\n");
        assert_eq!(got, b"To: x\nSubject: =?UTF-8?Q?=C3=A9_?=\n\n");
    }
}
