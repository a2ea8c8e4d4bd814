//! Reading the message: the From_ line, a bounded header block, and a
//! bounded window of the body. The rest of the body is never held in memory:
//! the caller streams it (see `spool`).
//!
//! Limits (header bytes, header count, body window) are configurable. Going
//! over a header limit never loses mail: the message is still delivered
//! byte-exact, and the decision records the limit (see `Head::limit_hit`).

use mail_parser::{parsers::MessageStream, HeaderValue, MessageParser};
use std::io::{self, BufRead, Write};

/// Bounds on what is read into memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum size of the header block, in bytes.
    pub max_header_bytes: usize,
    /// Maximum number of header fields.
    pub max_headers: usize,
    /// How much of the body (raw, before MIME decoding) body rules may see.
    pub body_window: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 1024 * 1024,
            max_headers: 10_000,
            body_window: 64 * 1024,
        }
    }
}

/// The longest From_ line that is recognised and removed. local(8) writes a
/// short one; a longer "From " line is message content and is kept.
const MAX_FROM_LINE: usize = 4096;

/// One header field: the name as written and the value unfolded and
/// RFC 2047-decoded (invalid UTF-8 is replaced, never rejected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub value: String,
}

/// The parsed header fields, in message order (topmost first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<Field>,
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The length of the field name if `line` starts a header field
/// (`name:`, RFC 5322 ftext, optional white space before the colon).
fn field_name_len(line: &[u8]) -> Option<usize> {
    let n = line
        .iter()
        .position(|&b| !(33..=126).contains(&b) || b == b':')?;
    if n == 0 {
        return None;
    }
    let rest = &line[n..];
    let colon = rest.iter().position(|&b| !is_wsp(b))?;
    (rest[colon] == b':').then_some(n)
}

fn is_blank(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

/// Decodes one field value (the bytes after the colon, continuation lines
/// included) with mail-parser: unfolds and decodes RFC 2047 words.
fn decode_value(raw: &[u8]) -> String {
    // Most fields are one line with no encoded word: mail-parser would
    // return the text between the first and last byte that is not a
    // space, tab or CR (lossy UTF-8), which the trim below gives too,
    // without its tokenizer (most of the message-reading cost of a
    // delivery). `tests::one_line_fast_path_is_mail_parser` checks this.
    let line = raw.strip_suffix(b"\n").unwrap_or(raw);
    if !line.contains(&b'\n') && !line.windows(2).any(|w| w == b"=?") {
        return String::from_utf8_lossy(line).trim().to_string();
    }
    decode_value_slow(raw)
}

/// `decode_value` through mail-parser, for every value.
fn decode_value_slow(raw: &[u8]) -> String {
    let mut owned;
    let bytes = if raw.ends_with(b"\n") {
        raw
    } else {
        owned = raw.to_vec();
        owned.push(b'\n');
        &owned[..]
    };
    match MessageStream::new(bytes).parse_unstructured() {
        HeaderValue::Text(t) => t.trim().to_string(),
        _ => String::new(),
    }
}

impl Headers {
    /// Parses a header block. Stops at the first blank line or at the first
    /// line that is neither a field nor a continuation. A continuation line
    /// before any field is ignored (it is still delivered as written).
    pub fn parse(block: &[u8]) -> Headers {
        let mut fields = Vec::new();
        let mut current: Option<(usize, usize)> = None; // (name end, value start) in block
        let mut start_of_field = 0usize;
        let mut pos = 0usize;
        let flush =
            |fields: &mut Vec<Field>, cur: Option<(usize, usize)>, sof: usize, end: usize| {
                if let Some((name_end, value_start)) = cur {
                    fields.push(Field {
                        name: String::from_utf8_lossy(&block[sof..name_end]).into_owned(),
                        value: decode_value(&block[value_start..end]),
                    });
                }
            };
        while pos < block.len() {
            let end = block[pos..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(block.len(), |i| pos + i + 1);
            let line = &block[pos..end];
            if is_blank(line) {
                break;
            }
            if is_wsp(line[0]) {
                pos = end;
                continue;
            }
            match field_name_len(line) {
                Some(n) => {
                    flush(&mut fields, current, start_of_field, pos);
                    let colon = pos + line.iter().position(|&b| b == b':').unwrap_or(n);
                    current = Some((pos + n, colon + 1));
                    start_of_field = pos;
                }
                None => break,
            }
            pos = end;
        }
        flush(&mut fields, current, start_of_field, pos);
        Headers { fields }
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// All values of the fields called `name` (case-insensitive), topmost first.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value.as_str())
    }

    /// The topmost value of `name`.
    pub fn first(&self, name: &str) -> Option<String> {
        self.all(name).next().map(str::to_string)
    }
}

/// What was read before the body streams: the From_ line (removed from the
/// delivered copy), the bytes read so far (the header block, and possibly the
/// first line of the body), and the parsed fields.
#[derive(Debug, Default)]
pub struct Head {
    pub from_line: Option<String>,
    /// Every byte read after the From_ line, delivered as is.
    pub bytes: Vec<u8>,
    /// How much of `bytes` is the header block (including the blank line).
    pub header_len: usize,
    pub headers: Headers,
    /// Set when a header limit was reached; the message is then delivered
    /// unchanged to the Inbox.
    pub limit_hit: Option<String>,
}

/// Appends bytes up to and including `\n`, reading at most `max` bytes.
/// Returns the number of bytes appended (0 at end of input).
fn read_line_bounded<R: BufRead>(r: &mut R, out: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    let mut total = 0;
    while total < max {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            break;
        }
        let room = max - total;
        let avail = &buf[..buf.len().min(room)];
        let (n, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        out.extend_from_slice(&avail[..n]);
        r.consume(n);
        total += n;
        if done {
            break;
        }
    }
    Ok(total)
}

/// Reads the From_ line (if any) and the header block.
pub fn read_head<R: BufRead>(r: &mut R, limits: &Limits) -> io::Result<Head> {
    let mut head = Head::default();
    let mut bytes = Vec::with_capacity(8192);

    // The From_ line: only when it is complete and short.
    let peek = loop {
        match r.fill_buf() {
            Ok(b) => break b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    if peek.starts_with(b"From ") {
        read_line_bounded(r, &mut bytes, MAX_FROM_LINE)?;
        if bytes.ends_with(b"\n") {
            let line = String::from_utf8_lossy(&bytes);
            head.from_line = Some(line.trim_end_matches(['\r', '\n']).to_string());
            bytes.clear();
        }
    }

    let mut count = 0usize;
    let mut header_len = None;
    // A long "From " line that was kept is the first header line.
    let mut pending = !bytes.is_empty();
    loop {
        let start = if pending { 0 } else { bytes.len() };
        if !pending {
            if bytes.len() >= limits.max_header_bytes {
                head.limit_hit = Some(format!(
                    "header block exceeds {} bytes",
                    limits.max_header_bytes
                ));
                break;
            }
            let room = limits.max_header_bytes - bytes.len();
            if read_line_bounded(r, &mut bytes, room)? == 0 {
                header_len = Some(bytes.len());
                break;
            }
        }
        pending = false;
        let line = &bytes[start..];
        if is_blank(line) {
            header_len = Some(bytes.len());
            break;
        }
        if !line.ends_with(b"\n") {
            if bytes.len() >= limits.max_header_bytes {
                head.limit_hit = Some(format!(
                    "header block exceeds {} bytes",
                    limits.max_header_bytes
                ));
            } else {
                header_len = Some(bytes.len()); // last line, no newline, at EOF
            }
            break;
        }
        if is_wsp(line[0]) {
            continue;
        }
        if field_name_len(line).is_none() {
            header_len = Some(start); // no separator: the body starts here
            break;
        }
        count += 1;
        if count > limits.max_headers {
            head.limit_hit = Some(format!("more than {} header fields", limits.max_headers));
            break;
        }
    }
    head.header_len = header_len.unwrap_or(bytes.len());
    if head.limit_hit.is_none() {
        head.headers = Headers::parse(&bytes[..head.header_len]);
    }
    head.bytes = bytes;
    Ok(head)
}

/// Writes the head bytes and then the rest of the input to `w`, keeping the
/// first `window_cap` bytes of the body in `window`. Returns the number of
/// bytes written. Memory use is bounded by the reader's buffer and the window.
pub fn spool<R: BufRead, W: Write>(
    r: &mut R,
    head: &Head,
    w: &mut W,
    window: &mut Vec<u8>,
    window_cap: usize,
) -> io::Result<u64> {
    w.write_all(&head.bytes)?;
    let mut total = head.bytes.len() as u64;
    let body_start = &head.bytes[head.header_len..];
    window.extend_from_slice(&body_start[..body_start.len().min(window_cap)]);
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            break;
        }
        if window.len() < window_cap {
            let take = (window_cap - window.len()).min(buf.len());
            window.extend_from_slice(&buf[..take]);
        }
        w.write_all(buf)?;
        let n = buf.len();
        total += n as u64;
        r.consume(n);
    }
    Ok(total)
}

/// A message read and spooled, ready for the decision.
#[derive(Debug)]
pub struct Spooled {
    pub head: Head,
    /// The first bytes of the body (`Limits::body_window`).
    pub window: Vec<u8>,
    /// The size of the message as spooled (without the From_ line).
    pub size: u64,
}

/// Reads a message from `input`, writing it to `sink` (a tmp/ file, or
/// nothing for `--test`) while the header block and body window are kept.
pub fn read<W: Write>(
    input: impl io::Read,
    limits: &Limits,
    sink: &mut W,
) -> Result<Spooled, crate::exit::Failure> {
    use crate::exit::Failure;
    let mut r = io::BufReader::with_capacity(64 * 1024, input);
    let head =
        read_head(&mut r, limits).map_err(|e| Failure::from_io("reading the message", &e))?;
    let mut window = Vec::new();
    let size = spool(&mut r, &head, sink, &mut window, limits.body_window)
        .map_err(|e| Failure::from_io("spooling the message", &e))?;
    Ok(Spooled { head, window, size })
}

/// The decoded text of the body window: the text parts (HTML converted to
/// text) that fall within the window, MIME-decoded by mail-parser.
pub fn body_text(header_block: &[u8], window: &[u8]) -> String {
    let mut msg = Vec::with_capacity(header_block.len() + window.len() + 2);
    msg.extend_from_slice(header_block);
    // The block ends with the blank line, unless the message had no
    // separator (the body began at a non-header line): then add one, so that
    // the body is never parsed as headers.
    if !header_block.ends_with(b"\n\n") && !header_block.ends_with(b"\n\r\n") {
        if !header_block.is_empty() && !header_block.ends_with(b"\n") {
            msg.extend_from_slice(b"\n");
        }
        msg.extend_from_slice(b"\n");
    }
    msg.extend_from_slice(window);
    let Some(parsed) = MessageParser::new().parse(&msg) else {
        return String::from_utf8_lossy(window).into_owned();
    };
    let mut out = String::new();
    for i in 0..parsed.text_body_count() {
        if let Some(t) = parsed.body_text(i) {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_line_fast_path_is_mail_parser() {
        use proptest::prelude::*;
        let bytes: &[u8] = &[
            b' ', b'\t', b'\r', b'\n', b'=', b'?', b'a', b'Q', b'B', b'_', 0x0b, 0x0c, 0x00, 0xc3,
            0xa9, 0xc2, 0xa0, 0xe2, 0x80, 0x83, 0xff, 0x85,
        ];
        let byte = proptest::sample::select(bytes.to_vec());
        let mut runner = proptest::test_runner::TestRunner::new(
            proptest::test_runner::Config::with_cases(20_000),
        );
        runner
            .run(&proptest::collection::vec(byte, 0..24), |raw| {
                prop_assert_eq!(super::decode_value(&raw), super::decode_value_slow(&raw));
                Ok(())
            })
            .unwrap();
        for raw in [
            &b""[..],
            b"\n",
            b" \t\r\n",
            b" plain value \r\n",
            b" =?utf-8?q?caf=C3=A9?=\n",
            b" caf\xc3\xa9 \xff\n",
            b" \xc2\xa0nbsp\xc2\xa0\n",
        ] {
            assert_eq!(
                super::decode_value(raw),
                super::decode_value_slow(raw),
                "{raw:?}"
            );
        }
    }

    use super::*;

    fn head_of(input: &[u8], limits: Limits) -> Head {
        read_head(&mut io::Cursor::new(input), &limits).unwrap()
    }

    fn roundtrip(input: &[u8]) -> (Head, Vec<u8>) {
        let mut c = io::Cursor::new(input);
        let head = read_head(&mut c, &Limits::default()).unwrap();
        let mut out = Vec::new();
        let mut win = Vec::new();
        spool(&mut c, &head, &mut out, &mut win, 16).unwrap();
        (head, out)
    }

    #[test]
    fn from_line_removed_rest_exact() {
        let input = b"From a@b  Sat Nov 21 10:00:00 2026\nSubject: hi\r\nX: y\n\nbody\r\nmore";
        let (head, out) = roundtrip(input);
        assert_eq!(
            head.from_line.as_deref(),
            Some("From a@b  Sat Nov 21 10:00:00 2026")
        );
        assert_eq!(out, &input[35..]);
        assert_eq!(head.headers.first("subject").as_deref(), Some("hi"));
    }

    #[test]
    fn folded_and_encoded() {
        let h =
            Headers::parse(b"Subject: =?UTF-8?B?w6lsw6h2ZQ==?=\n  and more\nX-A: 1\nX-a: 2\n\n");
        assert_eq!(h.first("SUBJECT").as_deref(), Some("élève and more"));
        assert_eq!(h.all("x-a").collect::<Vec<_>>(), vec!["1", "2"]);
    }

    #[test]
    fn no_separator_body_starts_at_non_header_line() {
        let (head, out) = roundtrip(b"Subject: x\nthis is body\nmore\n");
        assert_eq!(head.headers.len(), 1);
        assert_eq!(out, b"Subject: x\nthis is body\nmore\n");
        assert_eq!(head.header_len, 11);
    }

    #[test]
    fn continuation_before_any_header_is_kept() {
        let (head, out) = roundtrip(b" bogus\nSubject: s\n\nb");
        assert_eq!(head.headers.first("Subject").as_deref(), Some("s"));
        assert_eq!(out, b" bogus\nSubject: s\n\nb");
    }

    #[test]
    fn header_limits() {
        let mut big = b"Subject: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 5000));
        big.extend_from_slice(b"\n\nbody");
        let l = Limits {
            max_header_bytes: 1000,
            ..Limits::default()
        };
        let h = head_of(&big, l);
        assert!(h.limit_hit.is_some());
        let l = Limits {
            max_headers: 2,
            ..Limits::default()
        };
        let h = head_of(b"A: 1\nB: 2\nC: 3\n\n", l);
        assert!(h.limit_hit.as_deref().unwrap().contains("header fields"));
    }

    #[test]
    fn empty_and_only_from_line() {
        let (head, out) = roundtrip(b"");
        assert!(out.is_empty() && head.from_line.is_none());
        let (head, out) = roundtrip(b"From x  Sat\n");
        assert!(out.is_empty() && head.from_line.is_some());
    }

    #[test]
    fn window_is_bounded() {
        let mut c = io::Cursor::new(b"A: b\n\n0123456789abcdefghij".to_vec());
        let head = read_head(&mut c, &Limits::default()).unwrap();
        let mut win = Vec::new();
        spool(&mut c, &head, &mut io::sink(), &mut win, 8).unwrap();
        assert_eq!(win, b"01234567");
    }

    #[test]
    fn body_text_without_separator_is_not_read_as_headers() {
        let t = body_text(b"Subject: x\n", b"a discount for you\n");
        assert!(t.contains("a discount"), "{t:?}");
    }

    #[test]
    fn body_text_decodes_parts() {
        let hdr = b"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n";
        let t = body_text(hdr, b"aGVsbG8gd29ybGQ=\n");
        assert!(t.contains("hello world"), "{t:?}");
    }
}
