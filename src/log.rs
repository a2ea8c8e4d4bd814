//! The log line: one per delivery, key=value in Postfix's style, sent to
//! syslog (facility mail, ident `deliver`) over the local datagram socket.
//!
//! Logging never fails or delays a delivery: a missing or full syslog socket
//! is ignored (the socket is non-blocking). `--log-stderr` also writes each
//! line to stderr, for tests and debugging. Every value is sanitized, so no
//! envelope or header content can start a new log line.

use std::io::Write;
use std::os::unix::net::UnixDatagram;

/// Replace control characters (CR, LF, NUL, ...) with `?` and cap the length.
pub fn sanitize(s: &str) -> String {
    const MAX: usize = 512;
    let mut out = String::with_capacity(s.len().min(MAX));
    for (i, c) in s.chars().enumerate() {
        if i >= MAX {
            out.push_str("...");
            break;
        }
        out.push(if c.is_control() { '?' } else { c });
    }
    out
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

/// Where log lines go.
#[derive(Debug, Default)]
pub struct Logger {
    socket: Option<UnixDatagram>,
    stderr: bool,
    /// When set, nothing is sent anywhere (`--test` writes no syslog line).
    silent: bool,
}

impl Logger {
    pub fn new(stderr: bool) -> Self {
        let socket = ["/dev/log", "/var/run/syslog"].iter().find_map(|p| {
            let s = nonblocking_datagram_socket()?;
            s.connect(p).ok()?;
            Some(s)
        });
        Logger {
            socket,
            stderr,
            silent: false,
        }
    }

    /// A logger that writes nothing at all.
    pub fn silent() -> Self {
        Logger {
            socket: None,
            stderr: false,
            silent: true,
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
        if let Some(s) = &self.socket {
            // RFC 3164 without timestamp/hostname: syslogd fills them in.
            let msg = format!(
                "<{}>deliver[{}]: {}",
                2 * 8 + severity,
                std::process::id(),
                line
            );
            let _ = s.send(msg.as_bytes());
        }
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
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Builds a `key=value key=value` line; values with spaces are kept as they
/// are (Postfix does the same for `status=sent (delivered ...)`).
#[derive(Debug, Default)]
pub struct Line(String);

impl Line {
    pub fn new() -> Self {
        Line(String::new())
    }

    pub fn kv(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        self.0.push_str(key);
        self.0.push('=');
        self.0.push_str(&sanitize(&value.to_string()));
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

    #[test]
    fn line_format() {
        let l = Line::new().kv("from", "<a@b>").kv("size", 12).finish();
        assert_eq!(l, "from=<a@b> size=12");
        let l = Line::new().kv("to", "<x\ny>").finish();
        assert_eq!(l, "to=<x?y>");
    }
}
