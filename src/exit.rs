//! The exit-status table: the one place where outcomes and errors become
//! the exit status and status line that Postfix's local(8) reads.
//!
//! | outcome                                   | exit | first line of output          |
//! |-------------------------------------------|------|-------------------------------|
//! | delivered or discarded                    | 0    | nothing                       |
//! | anything a retry could fix (I/O, config,  | 75   | `4.x.x text`                  |
//! | a panic, DEFER or a 4NN result)           |      |                               |
//! | REJECT or a 5NN result                    | 77   | `5.7.1 text` or the rule's own|
//!
//! Postfix bounces on most other codes (EX_CONFIG 78 included), so nothing an
//! administrator could fix ever maps to anything but 75.

use std::fmt;

/// EX_OK.
pub const OK: i32 = 0;
/// EX_TEMPFAIL: Postfix keeps the message and retries.
pub const TEMPFAIL: i32 = 75;
/// EX_NOPERM: Postfix bounces with our status line.
pub const NOPERM: i32 = 77;

/// A failure that ends a delivery. Every error path in the program ends in
/// one of these two variants; `main` turns them into the exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Retry later (75). `status` is an RFC 3463 code such as `4.2.0`.
    Temp { status: String, text: String },
    /// Bounce (77). `status` is a `5.x.x` code.
    Perm { status: String, text: String },
}

/// The exit status of a plan's disposition, once its actions succeeded.
pub fn code_of(d: &crate::plan::Disposition) -> i32 {
    use crate::plan::Disposition;
    match d {
        Disposition::Delivered | Disposition::Discarded => OK,
        Disposition::Rejected { .. } => NOPERM,
        Disposition::Deferred { .. } => TEMPFAIL,
    }
}

/// The failure a rejection or deferral ends in (`None` for the others).
pub fn failure_of(d: &crate::plan::Disposition) -> Option<Failure> {
    use crate::plan::Disposition;
    match d {
        Disposition::Delivered | Disposition::Discarded => None,
        Disposition::Rejected { status, text } => Some(Failure::perm(status, text.clone())),
        Disposition::Deferred { status, text } => Some(Failure::temp(status, text.clone())),
    }
}

impl Failure {
    pub fn temp(status: &str, text: impl Into<String>) -> Self {
        Failure::Temp {
            status: status.to_string(),
            text: text.into(),
        }
    }

    pub fn perm(status: &str, text: impl Into<String>) -> Self {
        Failure::Perm {
            status: status.to_string(),
            text: text.into(),
        }
    }

    /// An I/O error: `4.3.1` when the disk is full, `4.2.2` over quota,
    /// `4.3.0` otherwise (see `io_status`).
    pub fn from_io(what: impl fmt::Display, err: &std::io::Error) -> Self {
        let status = io_status(err.raw_os_error(), "4.3.0");
        Failure::temp(status, format!("{what}: {err}"))
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Temp { .. } => TEMPFAIL,
            Failure::Perm { .. } => NOPERM,
        }
    }

    /// The line printed for Postfix. Control, format and line-separator
    /// characters are replaced (`text::for_status`) so that nothing from the
    /// message or envelope can forge an extra line or hide in this one.
    pub fn status_line(&self) -> String {
        let (status, text) = match self {
            Failure::Temp { status, text } | Failure::Perm { status, text } => (status, text),
        };
        format!("{} {}", status, crate::text::for_status(text))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.status_line())
    }
}

impl std::error::Error for Failure {}

/// The RFC 3463 status of an I/O error: `4.3.1` (mail system full) for
/// ENOSPC, `4.2.2` (mailbox full) for EDQUOT, `4.3.4` (message too big for
/// system) for EFBIG, else `default`: `4.2.0` when
/// the mailbox is the problem, `4.3.0` for the rest of the system.
pub fn io_status(errno: Option<i32>, default: &'static str) -> &'static str {
    match errno {
        Some(nix::libc::ENOSPC) => "4.3.1",
        Some(nix::libc::EDQUOT) => "4.2.2",
        // Over the file size limit of the process (RLIMIT_FSIZE).
        Some(nix::libc::EFBIG) => "4.3.4",
        _ => default,
    }
}

/// Whether an errno is a resource or I/O problem of the system that a retry
/// could fix (out of descriptors or memory, an I/O error, a full disk), as
/// opposed to a problem with the file itself (permissions, a symlink, ...).
pub fn is_transient(errno: i32) -> bool {
    use nix::libc::*;
    matches!(
        errno,
        EMFILE | ENFILE | ENOMEM | ENOBUFS | EIO | EAGAIN | EINTR | ENOSPC | EDQUOT | ESTALE
    )
}

/// What an error came from: whether a retry could help is decided from
/// this, never from the error's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cause {
    /// The input itself (content, kind, owner, mode, size): the same at
    /// the next try.
    #[default]
    Input,
    /// A system call failed with this errno.
    Io(i32),
}

impl Cause {
    /// The cause of an I/O error: its errno, else the input (e.g. invalid
    /// UTF-8).
    pub fn of(e: &std::io::Error) -> Cause {
        e.raw_os_error().map_or(Cause::Input, Cause::Io)
    }

    /// Whether a retry could fix it (see `is_transient`).
    pub fn is_transient(self) -> bool {
        matches!(self, Cause::Io(e) if is_transient(e))
    }
}

/// Checks that a status code has the shape `C.S.D` with the class digit the
/// exit status needs (4 for 75, 5 for 77).
pub fn valid_status(status: &str, class: char) -> bool {
    let mut parts = status.split('.');
    let (Some(c), Some(s), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    c.len() == 1
        && c.starts_with(class)
        && (1..=3).contains(&s.len())
        && (1..=3).contains(&d.len())
        && s.bytes().chain(d.bytes()).all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(Failure::temp("4.2.0", "x").exit_code(), 75);
        assert_eq!(Failure::perm("5.7.1", "x").exit_code(), 77);
    }

    #[test]
    fn status_line_has_no_newline() {
        let f = Failure::perm("5.7.1", "evil\r\nX-Injected: yes");
        assert_eq!(f.status_line().lines().count(), 1);
        assert!(f.status_line().starts_with("5.7.1 evil"));
        let f = Failure::perm("5.7.1", "a\u{2028}b\u{2029}c\u{202e}d");
        assert_eq!(f.status_line(), "5.7.1 a?b?c?d");
    }

    #[test]
    fn transient_causes() {
        let e = std::io::Error::from_raw_os_error(nix::libc::EMFILE);
        assert!(Cause::of(&e).is_transient());
        let e = std::io::Error::from_raw_os_error(nix::libc::EACCES);
        assert!(!Cause::of(&e).is_transient());
        let e = std::io::Error::new(std::io::ErrorKind::InvalidData, "(os error 5)");
        assert_eq!(Cause::of(&e), Cause::Input);
        assert!(!Cause::Input.is_transient());
    }

    #[test]
    fn status_shapes() {
        assert!(valid_status("4.7.1", '4'));
        assert!(valid_status("5.100.999", '5'));
        assert!(!valid_status("5.7.1", '4'));
        assert!(!valid_status("4.7", '4'));
        assert!(!valid_status("4.x.1", '4'));
        assert!(!valid_status("45.7.1", '4'));
    }
}
