//! The log line: one per delivery, key=value in Postfix's style, sent to
//! syslog (facility mail, ident `deliver`) over the local datagram socket.
//!
//! Logging never fails or delays a delivery: a missing or full syslog socket
//! is ignored (the socket is non-blocking). The socket is made when the
//! first line is logged, not at start. `--log-stderr` also writes each
//! line to stderr, for tests and debugging.
//!
//! The delivery line is `key=value` tokens separated by single spaces, each
//! key at most once; a value is escaped (`text::encode_log_value`) so that
//! it holds no space and nothing hidden, and `parse_line` gives the original
//! values back (the format is documented in deliver(1), LOGGING). Every
//! other line is free text that starts with fixed words (never `from=`),
//! with control, format and line-separator characters replaced by `?`
//! (`text::for_log_line`), so that no envelope or header content can start
//! a new line or hide in one.

use std::cell::OnceCell;
use std::io::Write;
use std::os::unix::net::UnixDatagram;

/// This process's ID, asked of the kernel once: glibc does not cache
/// getpid(2) (since 2.25), and the log lines and the Maildir's unique names both need
/// it. deliver never forks.
pub fn pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// The keys that may appear more than once in a line, once per item (a
/// folder, a pipe, a filter): a name may hold any separator a joined list
/// would use. Every other key appears at most once.
pub const LIST_KEYS: [&str; 4] = ["folder", "pipe", "forward", "filter"];

/// The keys and decoded values of a line that `Line` built, in order:
/// tokens split at single spaces, each split at its first `=`. `None` when
/// a token has no `=`, a key is empty or repeated (but for `LIST_KEYS`), or
/// a value does not decode.
pub fn parse_line(line: &str) -> Option<Vec<(&str, String)>> {
    let mut fields: Vec<(&str, String)> = Vec::new();
    for token in line.split(' ') {
        let (key, value) = token.split_once('=')?;
        if key.is_empty() || (!LIST_KEYS.contains(&key) && fields.iter().any(|(k, _)| *k == key)) {
            return None;
        }
        fields.push((key, crate::output::text::decode_log_value(value)?));
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
    /// first would cost a call more); later lines go there.
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
        let line = crate::output::text::for_log_line(line);
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

/// Builds a `key=value key=value` line: single spaces between the fields,
/// each value escaped by `text::encode_log_value`, so that it holds no space and no
/// value can start a field; `parse_line` reads it back.
#[derive(Debug, Default)]
pub struct Line(String);

impl Line {
    pub fn new() -> Self {
        Line(String::new())
    }

    /// Appends a field. `key` is lower-case ASCII letters and `_`, and not
    /// yet in the line unless it is one of `LIST_KEYS` (the caller's fixed
    /// order guarantees it).
    pub fn kv(mut self, key: &'static str, value: impl std::fmt::Display) -> Self {
        debug_assert!(!key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        debug_assert!(
            LIST_KEYS.contains(&key)
                || (!self.0.starts_with(&format!("{key}="))
                    && !self.0.contains(&format!(" {key}="))),
            "{key} twice in {}",
            self.0
        );
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        self.0.push_str(key);
        self.0.push('=');
        crate::output::text::encode_log_value(&value.to_string(), &mut self.0);
        self
    }

    pub fn finish(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
