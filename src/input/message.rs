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

/// How much of the From_ line is held in memory. local(8) writes a short
/// one (`From sender  date`); a longer first line that begins with
/// `From ` is still the envelope line and is removed whole, but only its
/// first `MAX_FROM_LINE` bytes are kept, and the envelope sender is not
/// taken from it (`Head::envelope_from_line`).
pub const MAX_FROM_LINE: usize = 4096;

/// Which header limit was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderLimit {
    /// The header block is larger than `max_header_bytes` (the value).
    Bytes(usize),
    /// The header block has more than `max_headers` (the value) fields.
    Fields(usize),
}

impl HeaderLimit {
    /// The name of the setting that was reached.
    pub fn setting(self) -> &'static str {
        match self {
            HeaderLimit::Bytes(_) => "max_header_bytes",
            HeaderLimit::Fields(_) => "max_headers",
        }
    }
}

impl std::fmt::Display for HeaderLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderLimit::Bytes(n) => write!(f, "header block exceeds {n} bytes"),
            HeaderLimit::Fields(n) => write!(f, "more than {n} header fields"),
        }
    }
}

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

pub(crate) fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The length of the field name if `line` starts a header field
/// (`name:`, RFC 5322 ftext, optional white space before the colon).
pub(crate) fn field_name_len(line: &[u8]) -> Option<usize> {
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

/// Whether deliver may add `h` to a message as a header line of its own (a
/// PREPEND result): `name: value` on one line, the name RFC 5322 ftext
/// directly followed by the colon, and no control character but tab.
/// Stricter than the reader (`field_name_len` accepts the obsolete white
/// space before the colon, RFC 5322 section 4.5): what deliver writes
/// must be read as the same one field by every program after it, and
/// obsolete syntax is for readers to accept, not for writers to produce.
pub fn valid_header_line(h: &str) -> bool {
    let Some((name, _)) = h.split_once(':') else {
        return false;
    };
    !name.is_empty()
        && name.bytes().all(|b| (33..=126).contains(&b))
        && !h.chars().any(|c| c.is_control() && c != '\t')
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

    /// Moves the fields that are not in `before` (those a filter added;
    /// each field of `before` matches one field here, by name and value)
    /// to the top, in their order, so that readers of the topmost field
    /// (`crate::policy::spam`) read the local filter's own first.
    pub fn promote_added(&mut self, before: &Headers) {
        let mut old: Vec<Option<&Field>> = before.fields.iter().map(Some).collect();
        let (mut added, mut kept) = (Vec::new(), Vec::new());
        for f in std::mem::take(&mut self.fields) {
            let same = |o: &Option<&Field>| {
                o.is_some_and(|o| o.name.eq_ignore_ascii_case(&f.name) && o.value == f.value)
            };
            match old.iter_mut().find(|o| same(o)) {
                Some(o) => {
                    *o = None;
                    kept.push(f);
                }
                None => added.push(f),
            }
        }
        added.append(&mut kept);
        self.fields = added;
    }
}

/// What was read before the body streams: the From_ line (removed from the
/// delivered copy), the bytes read so far (the header block or its first
/// part, and possibly the first line of the body), and the parsed fields.
#[derive(Debug, Default)]
pub struct Head {
    /// The From_ line without its line end, at most [`MAX_FROM_LINE`] bytes.
    pub from_line: Option<String>,
    /// Set when the From_ line was longer than [`MAX_FROM_LINE`]: the rest
    /// of it was read and dropped.
    pub from_line_cut: bool,
    /// Every byte read after the From_ line, delivered as is.
    pub bytes: Vec<u8>,
    /// How much of `bytes` is parsed as the header block: the whole block
    /// (with the blank line), or, when a limit was reached, the complete
    /// fields within the limits.
    pub header_len: usize,
    pub headers: Headers,
    /// Set when a header limit was reached: `headers` then holds the
    /// complete fields within the limits, and `spool` finds the body after
    /// the rest of the header block.
    pub limit_hit: Option<HeaderLimit>,
}

impl Head {
    /// The From_ line to take the envelope sender from: not one that was
    /// cut, whose sender may be cut too.
    pub fn envelope_from_line(&self) -> Option<&str> {
        self.from_line.as_deref().filter(|_| !self.from_line_cut)
    }
}

/// `fill_buf`, retried when interrupted. (The second call returns what the
/// first buffered; at the end of input it asks once more, and gets the end
/// again.)
fn fill<R: BufRead>(r: &mut R) -> io::Result<&[u8]> {
    while let Err(e) = r.fill_buf() {
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    r.fill_buf()
}

/// Appends bytes up to and including `\n`, reading at most `max` bytes,
/// however many reads that takes. Returns the number of bytes appended (0
/// at end of input).
pub(crate) fn read_line_bounded<R: BufRead>(
    r: &mut R,
    out: &mut Vec<u8>,
    max: usize,
) -> io::Result<usize> {
    let mut total = 0;
    while total < max {
        let buf = fill(r)?;
        if buf.is_empty() {
            break;
        }
        let room = max - total;
        let avail = &buf[..buf.len().min(room)];
        let (n, done) = match memchr::memchr(b'\n', avail) {
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

/// Reads and drops the rest of a line, up to and including `\n`.
fn skip_line<R: BufRead>(r: &mut R) -> io::Result<()> {
    loop {
        let buf = fill(r)?;
        if buf.is_empty() {
            return Ok(());
        }
        match memchr::memchr(b'\n', buf) {
            Some(i) => {
                r.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                r.consume(n);
            }
        }
    }
}

/// Reads the From_ line (if any) and the header block, within the limits.
///
/// The From_ line is the first line when it begins with `From `: it is
/// recognised whatever pieces the input arrives in, and removed whole
/// whatever its length (see [`MAX_FROM_LINE`]). A first line that begins
/// with `From ` but ends the input without a newline is the envelope line
/// only if it is longer than `MAX_FROM_LINE`; a shorter one is kept as the
/// message.
///
/// When a limit is reached, `headers` holds the fields that are complete
/// within it: those before the field or line that crossed it (a field
/// whose continuation lines were not all read is not complete).
pub fn read_head<R: BufRead>(r: &mut R, limits: &Limits) -> io::Result<Head> {
    let mut head = Head::default();
    let mut bytes = Vec::with_capacity(8192);

    // Five bytes tell whether the first line is a From_ line, however the
    // input arrives (they may come in several reads).
    read_line_bounded(r, &mut bytes, 5)?;
    if bytes == b"From " {
        let room = MAX_FROM_LINE - bytes.len();
        read_line_bounded(r, &mut bytes, room)?;
        let whole = bytes.ends_with(b"\n");
        let cut = !whole && bytes.len() >= MAX_FROM_LINE && !fill(r)?.is_empty();
        if cut {
            skip_line(r)?;
        }
        if whole || cut {
            let line = String::from_utf8_lossy(&bytes);
            head.from_line = Some(line.trim_end_matches(['\r', '\n']).to_string());
            head.from_line_cut = cut;
            bytes.clear();
        }
    }

    let mut count = 0usize;
    // The line being read starts at `start`; the field it belongs to (the
    // last line that began a field) at `field_start`.
    let mut start = 0usize;
    let mut field_start = 0usize;
    let header_len;
    loop {
        // `bytes[start..]` may already hold the line or its beginning.
        if !bytes[start..].ends_with(b"\n") {
            let room = limits.max_header_bytes.saturating_sub(bytes.len());
            if room == 0 {
                let next = fill(r)?;
                if bytes.len() == start && next.is_empty() {
                    header_len = start; // the end of the input, at the limit
                    break;
                }
                head.limit_hit = Some(HeaderLimit::Bytes(limits.max_header_bytes));
                // The next line, when it is a continuation, may belong to
                // the last field: that field is then not complete.
                let first = bytes.get(start).or(next.first()).copied();
                header_len = if first.is_some_and(is_wsp) {
                    field_start
                } else {
                    start
                };
                break;
            }
            read_line_bounded(r, &mut bytes, room)?;
        }
        let line = &bytes[start..];
        if line.is_empty() {
            header_len = start; // the end of the input
            break;
        }
        if is_blank(line) {
            header_len = bytes.len();
            break;
        }
        if !line.ends_with(b"\n") {
            if bytes.len() < limits.max_header_bytes || fill(r)?.is_empty() {
                // The last line, with no newline: a field or continuation
                // ends the block; any other line is the body, as above.
                header_len = if is_wsp(line[0]) || field_name_len(line).is_some() {
                    bytes.len()
                } else {
                    start
                };
                break;
            }
            continue; // over the limit: decided above
        }
        if is_wsp(line[0]) {
            start = bytes.len();
            continue;
        }
        if field_name_len(line).is_none() {
            header_len = start; // no separator: the body starts here
            break;
        }
        count += 1;
        if count > limits.max_headers {
            head.limit_hit = Some(HeaderLimit::Fields(limits.max_headers));
            header_len = start;
            break;
        }
        field_start = start;
        start = bytes.len();
    }
    head.header_len = header_len;
    head.headers = Headers::parse(&bytes[..header_len]);
    head.bytes = bytes;
    Ok(head)
}

/// Where `BodyFinder` is in the line it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// At the start of a line.
    LineStart,
    /// After a CR at the start of a line.
    Cr,
    /// In what may be a field name.
    Name,
    /// In white space after a field name.
    NameWsp,
    /// In a field or continuation line, until its newline.
    Rest,
    /// In the body.
    Body,
}

/// Finds where the body begins in the part of a header block that
/// `read_head` did not read (a header limit was reached), by the same rules:
/// after the first blank line, or at the first line that is neither a field
/// nor a continuation line. Nothing of the header block is kept but the
/// start of the line being classified, up to the window's size.
struct BodyFinder {
    state: Scan,
    /// The current line so far, while it is not known to be a field.
    line: Vec<u8>,
}

impl BodyFinder {
    fn new(in_body: bool) -> BodyFinder {
        BodyFinder {
            state: if in_body { Scan::Body } else { Scan::LineStart },
            line: Vec::new(),
        }
    }

    /// Reads the next bytes of the message; appends the body's first bytes
    /// among them to `window`, up to `cap` in all.
    fn feed(&mut self, mut buf: &[u8], window: &mut Vec<u8>, cap: usize) {
        let take = |window: &mut Vec<u8>, b: &[u8]| {
            let n = cap.saturating_sub(window.len()).min(b.len());
            window.extend_from_slice(&b[..n]);
        };
        while self.state != Scan::Body {
            if self.state == Scan::Rest {
                match memchr::memchr(b'\n', buf) {
                    Some(i) => {
                        buf = &buf[i + 1..];
                        self.state = Scan::LineStart;
                    }
                    None => return,
                }
                continue;
            }
            let Some(&b) = buf.first() else { return };
            let ftext = (33..=126).contains(&b) && b != b':';
            let next = match (self.state, b) {
                (Scan::LineStart, b'\n') | (Scan::Cr, b'\n') => {
                    // A blank line: the body follows it.
                    self.line.clear();
                    self.state = Scan::Body;
                    buf = &buf[1..];
                    break;
                }
                (Scan::LineStart, b'\r') => Scan::Cr,
                (Scan::LineStart, _) if is_wsp(b) => Scan::Rest,
                (Scan::LineStart, _) | (Scan::Name, _) if ftext => Scan::Name,
                (Scan::Name, _) | (Scan::NameWsp, _) if b == b':' => Scan::Rest,
                (Scan::Name, _) | (Scan::NameWsp, _) if is_wsp(b) => Scan::NameWsp,
                _ => {
                    // Not a field: the body starts with this line.
                    take(window, &self.line);
                    self.line.clear();
                    self.state = Scan::Body;
                    break;
                }
            };
            if next == Scan::Rest {
                self.line.clear();
            } else if self.line.len() < cap {
                self.line.push(b);
            }
            self.state = next;
            buf = &buf[1..];
        }
        take(window, buf);
    }

    /// The end of the input: a line that was still unclassified has no
    /// colon, so it is not a field but the body.
    fn finish(&mut self, window: &mut Vec<u8>, cap: usize) {
        if matches!(self.state, Scan::Cr | Scan::Name | Scan::NameWsp) {
            let n = cap.saturating_sub(window.len()).min(self.line.len());
            window.extend_from_slice(&self.line[..n]);
        }
        self.state = Scan::Body;
    }
}

/// Writes the head bytes and then the rest of the input to `w`, keeping the
/// first `window_cap` bytes of the body in `window`. Returns the number of
/// bytes written. Memory use is bounded by the reader's buffer and the window.
///
/// When a header limit was reached, the body starts after the rest of the
/// header block, which is written but not kept (`BodyFinder`).
pub fn spool<R: BufRead, W: Write>(
    r: &mut R,
    head: &Head,
    w: &mut W,
    window: &mut Vec<u8>,
    window_cap: usize,
) -> io::Result<u64> {
    w.write_all(&head.bytes)?;
    let mut total = head.bytes.len() as u64;
    let mut finder = BodyFinder::new(head.limit_hit.is_none());
    finder.feed(&head.bytes[head.header_len..], window, window_cap);
    loop {
        let buf = fill(r)?;
        if buf.is_empty() {
            break;
        }
        if window.len() < window_cap {
            finder.feed(buf, window, window_cap);
        }
        w.write_all(buf)?;
        let n = buf.len();
        total += n as u64;
        r.consume(n);
    }
    finder.finish(window, window_cap);
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
) -> Result<Spooled, crate::output::exit::Failure> {
    use crate::output::exit::Failure;
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
    fn header_lines_deliver_writes() {
        assert!(valid_header_line("X-Foo: bar"));
        assert!(valid_header_line("X-Foo:"));
        assert!(valid_header_line("X-Foo:\tbar baz"));
        assert!(!valid_header_line("X-Foo : bar"));
        assert!(!valid_header_line("X-Foo\t: bar"));
        assert!(!valid_header_line(": bar"));
        assert!(!valid_header_line("X Foo: bar"));
        assert!(!valid_header_line("no colon"));
        assert!(!valid_header_line("X-Foo: a\r\nX-Evil: b"));
        assert!(!valid_header_line("X-Foo: a\u{85}b"));
        assert!(!valid_header_line("X-F\u{e9}: bar"));
        // The reader accepts what the writer does not produce.
        assert_eq!(field_name_len(b"X-Foo : bar"), Some(5));
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
        assert_eq!(h.limit_hit, Some(HeaderLimit::Fields(2)));
        assert_eq!(h.headers.len(), 2);
    }

    /// Reads `input` through a reader that returns `chunk` bytes at a time.
    fn chunked(input: &[u8], chunk: usize, limits: Limits) -> (Head, Vec<u8>, Vec<u8>) {
        let mut r = io::BufReader::with_capacity(chunk, input);
        let head = read_head(&mut r, &limits).unwrap();
        let (mut out, mut win) = (Vec::new(), Vec::new());
        spool(&mut r, &head, &mut out, &mut win, 64).unwrap();
        (head, out, win)
    }

    #[test]
    fn from_line_found_whatever_the_reads_return() {
        let input = b"From a@b  Sat Nov 21 10:00:00 2026\nSubject: hi\n\nbody\n";
        for chunk in 1..8 {
            let (head, out, win) = chunked(input, chunk, Limits::default());
            assert_eq!(
                head.envelope_from_line(),
                Some("From a@b  Sat Nov 21 10:00:00 2026")
            );
            assert_eq!(out, &input[35..], "{chunk}");
            assert_eq!(head.headers.first("subject").as_deref(), Some("hi"));
            assert_eq!(win, b"body\n");
        }
        // Fewer than five bytes, and a first line that only starts alike.
        for input in [
            &b"Fro"[..],
            b"From",
            b"Fro\n",
            b"Frob: x\n\nb",
            b"From no-newline",
        ] {
            let (head, out, _) = chunked(input, 1, Limits::default());
            assert!(head.from_line.is_none(), "{input:?}");
            assert_eq!(out, input);
        }
    }

    #[test]
    fn long_from_line_is_removed_and_cut() {
        let mut input = b"From ".to_vec();
        input.extend(std::iter::repeat_n(b'a', 10_000));
        input.extend_from_slice(b"@b  date\nSubject: hi\n\nbody\n");
        for chunk in [1, 7, 4096, 65536] {
            let (head, out, _) = chunked(&input, chunk, Limits::default());
            assert!(head.from_line_cut);
            assert_eq!(head.from_line.as_ref().unwrap().len(), MAX_FROM_LINE);
            assert_eq!(head.envelope_from_line(), None);
            assert_eq!(out, b"Subject: hi\n\nbody\n");
            assert_eq!(head.headers.first("subject").as_deref(), Some("hi"));
        }
        // At the bound exactly, with its newline: whole.
        let mut input = b"From ".to_vec();
        input.extend(std::iter::repeat_n(b'a', MAX_FROM_LINE - 6));
        input.extend_from_slice(b"\nS: x\n");
        let (head, out, _) = chunked(&input, 3, Limits::default());
        assert!(!head.from_line_cut && head.envelope_from_line().is_some());
        assert_eq!(out, b"S: x\n");
    }

    #[test]
    fn over_a_limit_the_complete_fields_are_parsed_and_the_body_found() {
        // Byte limit inside a folded field: that field is not complete.
        let mut input = b"X-Spam-Flag: YES\nA: 1\nB: 2\n".to_vec();
        input.extend_from_slice(b"Folded: start\n");
        input.extend(std::iter::repeat_n(b"  more\n"[..].to_vec(), 400).flatten());
        input.extend_from_slice(b"Late: x\n\nthe body\n");
        let l = Limits {
            max_header_bytes: 1024,
            ..Limits::default()
        };
        for chunk in [1, 5, 64, 8192] {
            let (head, out, win) = chunked(&input, chunk, l);
            assert_eq!(head.limit_hit, Some(HeaderLimit::Bytes(1024)));
            let names: Vec<_> = head.headers.fields().iter().map(|f| &f.name[..]).collect();
            assert_eq!(names, ["X-Spam-Flag", "A", "B"], "{chunk}");
            assert_eq!(out, input);
            assert_eq!(win, b"the body\n", "{chunk}");
        }
        // Field limit, a body without a separator, and CRLF.
        let l = Limits {
            max_headers: 2,
            ..Limits::default()
        };
        let input = b"A: 1\r\nB: 2\r\nC: 3\r\nD : 4\r\n\tcont\r\nnot a field\r\nmore\r\n";
        for chunk in [1, 3, 8192] {
            let (head, out, win) = chunked(input, chunk, l);
            assert_eq!(head.headers.len(), 2);
            assert_eq!(out, input);
            assert_eq!(win, b"not a field\r\nmore\r\n", "{chunk}");
        }
        // No body at all.
        let (head, _, win) = chunked(b"A: 1\nB: 2\nC: 3\n", 4, l);
        assert!(head.limit_hit.is_some() && win.is_empty());
        // A blank CRLF line right after the limit.
        let (_, _, win) = chunked(b"A: 1\nB: 2\nC: 3\n\r\nbody", 4, l);
        assert_eq!(win, b"body");
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
