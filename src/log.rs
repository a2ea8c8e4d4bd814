//! The log line: one per delivery, key=value in Postfix's style, sent to
//! syslog (facility mail, ident `deliver`) over the local datagram socket.
//!
//! Logging never fails or delays a delivery: a missing or full syslog socket
//! is ignored (the socket is non-blocking). The socket is made when the
//! first line is logged, not at start. `--log-stderr` also writes each
//! line to stderr, for tests and debugging.
//!
//! The delivery line is `key=value` tokens separated by single spaces, each
//! key at most once; a value is escaped (`encode_value`) so that it holds no
//! space and nothing hidden, and `parse_line` gives the original values back
//! (the format is documented in deliver(1), LOGGING). Every other line is
//! free text that starts with fixed words (never `from=`), with control,
//! format and line-separator characters replaced by `?`, so that no
//! envelope or header content can start a new line or hide in one.

use std::cell::OnceCell;
use std::io::Write;
use std::os::unix::net::UnixDatagram;

/// This process's ID, asked of the kernel once: glibc no longer caches
/// getpid(2), and the log lines and the Maildir's unique names both need
/// it. deliver never forks.
pub fn pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// The longest value, in characters, that `sanitize` and a log value keep;
/// a longer one is cut there and `...` is appended.
pub const MAX_VALUE: usize = 512;

/// The Unicode general category of `c` when it is one that text shown to
/// people must not carry as it is: `Cc` (controls: CR, LF, NUL, ...), `Cf`
/// (format characters: the zero-width space, the soft hyphen, bidirectional
/// overrides such as U+202E, ...), `Zl` and `Zp` (U+2028 and U+2029, which
/// some programs show as line breaks). `None` for every other character.
pub fn hidden_category(c: char) -> Option<&'static str> {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    if c.is_ascii() {
        return c.is_ascii_control().then_some("Cc");
    }
    match c.general_category() {
        G::Control => Some("Cc"),
        G::Format => Some("Cf"),
        G::LineSeparator => Some("Zl"),
        G::ParagraphSeparator => Some("Zp"),
        _ => None,
    }
}

/// Replace control, format and line-separator characters (see
/// `hidden_category`) with `?` and cap the length at `MAX_VALUE`.
pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_VALUE));
    for (i, c) in s.chars().enumerate() {
        if i >= MAX_VALUE {
            out.push_str("...");
            break;
        }
        out.push(if hidden_category(c).is_some() { '?' } else { c });
    }
    out
}

/// Characters that show nothing although their general category is a
/// letter or a mark: the rest of Unicode's Default_Ignorable_Code_Point
/// property once `Cf` and unassigned code points are taken out (the
/// combining grapheme joiner, Hangul fillers, Khmer inherent vowels,
/// Mongolian and other variation selectors).
const INVISIBLE: &[(char, char)] = &[
    ('\u{034F}', '\u{034F}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{17B4}', '\u{17B5}'),
    ('\u{180B}', '\u{180F}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FE00}', '\u{FE0F}'),
    ('\u{FFA0}', '\u{FFA0}'),
    ('\u{E0100}', '\u{E01EF}'),
];

/// Whether a log value shows `c` as it is: a visible character that cannot
/// end the value or hide. Escaped are whitespace, `"`, `\\`, and the
/// general categories Cc, Cf, Zl, Zp, Zs, Co (private use) and Cn
/// (unassigned), and the invisible letters and marks in `INVISIBLE`.
fn verbatim(c: char) -> bool {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    if c.is_ascii() {
        return c.is_ascii_graphic() && c != '"' && c != '\\';
    }
    !c.is_whitespace()
        && !matches!(
            c.general_category(),
            G::Control
                | G::Format
                | G::LineSeparator
                | G::ParagraphSeparator
                | G::SpaceSeparator
                | G::PrivateUse
                | G::Unassigned
                | G::Surrogate
        )
        && !INVISIBLE.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// Appends `value` to `out` as a log value: every character that `verbatim`
/// allows as it is, a space as `\s`, a backslash as `\\`, and any other
/// character as `\xHH`, `\uHHHH` or `\UHHHHHHHH`: its code point in 2, 4 or
/// 8 upper-case hex digits, the fewest that hold it. A value longer than
/// `MAX_VALUE` characters is cut there and `...` is appended, so a decoded
/// value longer than `MAX_VALUE` characters is one that was cut.
pub fn encode_value(value: &str, out: &mut String) {
    use std::fmt::Write as _;
    for (i, c) in value.chars().enumerate() {
        if i >= MAX_VALUE {
            out.push_str("...");
            break;
        }
        let _ = match c {
            c if verbatim(c) => {
                out.push(c);
                Ok(())
            }
            ' ' => out.write_str("\\s"),
            '\\' => out.write_str("\\\\"),
            c if (c as u32) <= 0xFF => write!(out, "\\x{:02X}", c as u32),
            c if (c as u32) <= 0xFFFF => write!(out, "\\u{:04X}", c as u32),
            c => write!(out, "\\U{:08X}", c as u32),
        };
    }
}

/// The value that `encode_value` wrote: `None` when `v` holds a space, a
/// `"`, or a backslash that does not start one of its escapes.
pub fn decode_value(v: &str) -> Option<String> {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(i) = rest.find(['\\', ' ', '"']) {
        out.push_str(&rest[..i]);
        let esc = rest[i..].strip_prefix('\\')?;
        let (c, len) = match esc.as_bytes().first()? {
            b's' => (' ', 1),
            b'\\' => ('\\', 1),
            &k @ (b'x' | b'u' | b'U') => {
                let n = match k {
                    b'x' => 2,
                    b'u' => 4,
                    _ => 8,
                };
                let hex = esc.get(1..1 + n)?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                (char::from_u32(u32::from_str_radix(hex, 16).ok()?)?, 1 + n)
            }
            _ => return None,
        };
        out.push(c);
        rest = &esc[len..];
    }
    out.push_str(rest);
    Some(out)
}

/// The keys and decoded values of a line that `Line` built, in order:
/// tokens split at single spaces, each split at its first `=`. `None` when
/// a token has no `=`, a key is empty or repeated, or a value does not
/// decode.
pub fn parse_line(line: &str) -> Option<Vec<(&str, String)>> {
    let mut fields: Vec<(&str, String)> = Vec::new();
    for token in line.split(' ') {
        let (key, value) = token.split_once('=')?;
        if key.is_empty() || fields.iter().any(|(k, _)| *k == key) {
            return None;
        }
        fields.push((key, decode_value(value)?));
    }
    Some(fields)
}

/// An unbound, non-blocking, close-on-exec Unix datagram socket, made so
/// by socket(2) itself: `UnixDatagram::unbound` and `set_nonblocking` take
/// a second system call at every delivery.
fn nonblocking_datagram_socket() -> Option<UnixDatagram> {
    use nix::libc;
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: socket(2) has no memory-safety preconditions; a descriptor
    // it returns is new and owned by nothing else.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    // SAFETY: fd is a valid descriptor that nothing else owns.
    (fd >= 0).then(|| UnixDatagram::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Where syslogd listens, in the order they are tried.
pub(crate) const SYSLOG_PATHS: &[&str] = &["/dev/log", "/var/run/syslog"];

/// Does this error of sendto(2) say that nobody listens at the address
/// (as connect(2) would have said), rather than that this one datagram
/// could not be sent (a full socket buffer, a line too long)?
fn nobody_listens(e: &std::io::Error) -> bool {
    use nix::libc;
    matches!(
        e.raw_os_error(),
        Some(
            libc::ENOENT
                | libc::ECONNREFUSED
                | libc::ENOTDIR
                | libc::EACCES
                | libc::ENOTSOCK
                | libc::EPROTOTYPE
                | libc::ELOOP
                | libc::ENAMETOOLONG
        )
    )
}

/// The syslog socket: unconnected, each line sent with sendto(2) to the
/// path that took the first one. Made at the first line logged, so that
/// a process that logs nothing makes no socket.
#[derive(Debug)]
struct Syslog {
    socket: UnixDatagram,
    path: &'static str,
}

/// Where log lines go.
#[derive(Debug, Default)]
pub struct Logger {
    /// Set at the first line sent: `None` when no syslog socket answered
    /// (or no socket could be made), and nothing is tried again.
    syslog: OnceCell<Option<Syslog>>,
    paths: &'static [&'static str],
    stderr: bool,
    /// When set, nothing is sent anywhere (`--test` writes no syslog line).
    silent: bool,
}

impl Logger {
    pub fn new(stderr: bool) -> Self {
        Logger {
            syslog: OnceCell::new(),
            paths: SYSLOG_PATHS,
            stderr,
            silent: false,
        }
    }

    /// A logger that sends to the syslog sockets at `paths` (tests).
    #[cfg(test)]
    fn with_paths(paths: &'static [&'static str]) -> Self {
        Logger {
            paths,
            ..Logger::new(false)
        }
    }

    /// A logger that writes nothing at all.
    pub fn silent() -> Self {
        Logger {
            syslog: OnceCell::new(),
            paths: &[],
            stderr: false,
            silent: true,
        }
    }

    /// Sends one datagram to syslogd. The first line finds the socket
    /// path (one socket(2), and one sendto(2) per path tried; a connect(2)
    /// first, as before, would cost a call more); later lines go there.
    fn send(&self, msg: &[u8]) {
        let mut sent = false;
        let syslog = self.syslog.get_or_init(|| {
            let socket = nonblocking_datagram_socket()?;
            let path = *self.paths.iter().find(|p| match socket.send_to(msg, p) {
                Ok(_) => true,
                // Someone listens there; this line is dropped (the socket
                // is full, say), as a connected send would drop it.
                Err(e) => !nobody_listens(&e),
            })?;
            sent = true;
            Some(Syslog { socket, path })
        });
        if let (false, Some(s)) = (sent, syslog) {
            let _ = s.socket.send_to(msg, s.path);
        }
    }

    /// Log one line at the given syslog severity (6 = info, 4 = warning, 3 = err).
    pub fn log(&self, severity: u8, line: &str) {
        if self.silent {
            return;
        }
        let line = sanitize_line(line);
        if self.stderr {
            let _ = writeln!(std::io::stderr(), "deliver: {line}");
        }
        if let Some(None) = self.syslog.get() {
            return;
        }
        // RFC 3164 without timestamp/hostname: syslogd fills them in.
        let msg = format!("<{}>deliver[{}]: {}", 2 * 8 + severity, pid(), line);
        self.send(msg.as_bytes());
    }

    pub fn info(&self, line: &str) {
        self.log(6, line)
    }

    pub fn warn(&self, line: &str) {
        self.log(4, &format!("warning: {line}"))
    }
}

/// Like `sanitize` but without the length cap (a log line may be long).
fn sanitize_line(s: &str) -> String {
    s.chars()
        .map(|c| if hidden_category(c).is_some() { '?' } else { c })
        .collect()
}

/// Builds a `key=value key=value` line: single spaces between the fields,
/// each value escaped by `encode_value`, so that it holds no space and no
/// value can start a field; `parse_line` reads it back.
#[derive(Debug, Default)]
pub struct Line(String);

impl Line {
    pub fn new() -> Self {
        Line(String::new())
    }

    /// Appends a field. `key` is lower-case ASCII letters and `_`, and not
    /// yet in the line (the caller's fixed order guarantees it).
    pub fn kv(mut self, key: &'static str, value: impl std::fmt::Display) -> Self {
        debug_assert!(!key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        debug_assert!(
            !self.0.starts_with(&format!("{key}=")) && !self.0.contains(&format!(" {key}=")),
            "{key} twice in {}",
            self.0
        );
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        self.0.push_str(key);
        self.0.push('=');
        encode_value(&value.to_string(), &mut self.0);
        self
    }

    pub fn finish(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_controls() {
        assert_eq!(sanitize("a\r\nb\0c\td"), "a??b?c?d");
        assert_eq!(sanitize("plain é"), "plain é");
    }

    fn leak(p: std::path::PathBuf) -> &'static str {
        Box::leak(p.to_str().unwrap().to_string().into_boxed_str())
    }

    #[test]
    fn lines_go_to_the_first_socket_that_listens() {
        let d = tempfile::tempdir().unwrap();
        let live = d.path().join("log");
        let rx = UnixDatagram::bind(&live).unwrap();
        rx.set_nonblocking(true).unwrap();
        // A socket file nobody listens on any more, as a stopped syslogd leaves.
        let stale = d.path().join("stale");
        drop(UnixDatagram::bind(&stale).unwrap());
        let missing = d.path().join("missing");
        let paths = Box::leak(Box::new([leak(missing), leak(stale), leak(live)]));
        let log = Logger::with_paths(paths);
        log.info("first");
        log.warn("second\nline");
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        while let Ok(n) = rx.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let pid = std::process::id();
        assert_eq!(
            got,
            [
                format!("<22>deliver[{pid}]: first"),
                format!("<20>deliver[{pid}]: warning: second?line"),
            ]
        );
        assert!(log.syslog.get().is_some_and(Option::is_some));
    }

    #[test]
    fn no_socket_until_a_line_and_none_without_syslogd() {
        let d = tempfile::tempdir().unwrap();
        let paths = Box::leak(Box::new([leak(d.path().join("missing"))]));
        let log = Logger::with_paths(paths);
        assert!(log.syslog.get().is_none(), "made before any line");
        log.info("dropped");
        assert!(matches!(log.syslog.get(), Some(None)));
        log.info("dropped too");
        let silent = Logger::silent();
        silent.info("nowhere");
        assert!(
            silent.syslog.get().is_none(),
            "a silent logger made a socket"
        );
    }

    #[test]
    fn line_format() {
        let l = Line::new().kv("from", "<a@b>").kv("size", 12).finish();
        assert_eq!(l, "from=<a@b> size=12");
        let l = Line::new().kv("to", "<x\ny>").finish();
        assert_eq!(l, "to=<x\\x0Ay>");
        let l = Line::new().kv("rule", "rule my pills").finish();
        assert_eq!(l, "rule=rule\\smy\\spills");
        let l = Line::new()
            .kv("msgid", "<x@y> size=1 action=discard")
            .kv("action", "inbox")
            .finish();
        assert_eq!(l, "msgid=<x@y>\\ssize=1\\saction=discard action=inbox");
        assert_eq!(
            parse_line(&l).unwrap(),
            [
                ("msgid", "<x@y> size=1 action=discard".to_string()),
                ("action", "inbox".to_string())
            ]
        );
    }

    #[test]
    fn values_escape_what_is_hidden_and_decode_back() {
        for (raw, enc) in [
            ("Entw\u{fc}rfe", "Entw\u{fc}rfe"),
            ("\u{418}\u{41d}", "\u{418}\u{41d}"),
            ("a\\b", "a\\\\b"),
            ("\"q\"", "\\x22q\\x22"),
            ("a\tb\r\0", "a\\x09b\\x0D\\x00"),
            ("\u{a0}\u{ad}\u{85}", "\\xA0\\xAD\\x85"),
            (
                "\u{200b}\u{202e}\u{2028}\u{2029}\u{3000}",
                "\\u200B\\u202E\\u2028\\u2029\\u3000",
            ),
            ("\u{3164}\u{fe0f}\u{e000}", "\\u3164\\uFE0F\\uE000"),
            ("\u{e0041}\u{10ffff}", "\\U000E0041\\U0010FFFF"),
            ("=x", "=x"),
            ("", ""),
        ] {
            let mut got = String::new();
            encode_value(raw, &mut got);
            assert_eq!(got, enc, "{raw:?}");
            assert_eq!(decode_value(&got).as_deref(), Some(raw), "{raw:?}");
        }
        for bad in [
            "a b",
            "a\"",
            "\\",
            "\\q",
            "\\x4",
            "\\xZZ",
            "\\uD800",
            "\\U00110000",
        ] {
            assert_eq!(decode_value(bad), None, "{bad:?}");
        }
        assert_eq!(parse_line("a=1 a=2"), None);
        assert_eq!(parse_line("a=1 b"), None);
        assert_eq!(parse_line("a=1  b=2"), None);
        let mut long = String::new();
        encode_value(&"x".repeat(MAX_VALUE + 1), &mut long);
        assert_eq!(long, format!("{}...", "x".repeat(MAX_VALUE)));
    }

    proptest::proptest! {
        #[test]
        fn any_value_round_trips(v in "\\PC{0,40}|[ -~\\t\\n\\u{200b}-\\u{202e}]{0,40}|.{0,40}") {
            let mut enc = String::new();
            encode_value(&v, &mut enc);
            proptest::prop_assert!(!enc.chars().any(|c| c.is_whitespace() || c == '"'));
            proptest::prop_assert!(enc.chars().all(|c| c == '\\' || verbatim(c)));
            proptest::prop_assert_eq!(decode_value(&enc), Some(v));
        }
    }

    #[test]
    fn hidden_characters_are_replaced_in_free_text() {
        assert_eq!(
            sanitize("a\u{202e}b\u{2028}c\u{200b}d \u{418}"),
            "a?b?c?d \u{418}"
        );
        assert_eq!(hidden_category('\u{2029}'), Some("Zp"));
        assert_eq!(hidden_category('\u{ad}'), Some("Cf"));
        assert_eq!(hidden_category('\u{85}'), Some("Cc"));
        assert_eq!(hidden_category(' '), None);
        assert_eq!(hidden_category('\u{406}'), None);
    }
}
