//! Failures, and the one mapping from a failure to the exit status and the
//! RFC 3463 status that Postfix's local(8) reads; also the one home of
//! RFC 3463 status parsing.
//!
//! Every error path that ends a delivery ends in a [`Failure`]: a [`Kind`]
//! that says what failed, with its context (the errno, the policy's own
//! status), and the text for the status line. Which exit status and which
//! status code a failure gets is decided here, from the kind alone
//! ([`Failure::exit_code`], [`Kind::status`]), never from the text:
//!
//! | kind                                   | exit | status line                 |
//! |----------------------------------------|------|-----------------------------|
//! | (delivered or discarded: no failure)   | 0    | nothing                     |
//! | `Usage`: a bad command line            | 75   | `4.3.5 text`                |
//! | `Config`: rules, recipient, paths      | 75   | `4.3.5 text`                |
//! | `Mailbox`: the Maildir failed          | 75   | `4.2.0 text`, or by errno   |
//! | `System`: I/O, identity, time, memory  | 75   | `4.3.0 text`, or by errno   |
//! | `Internal`: a panic                    | 75   | `4.3.0 text`                |
//! | `Deferred`: DEFER, `4NN`, a rule       | 75   | its own `4.x.x text`        |
//! | `Rejected`: REJECT, `5NN`, a rule      | 77   | its own `5.x.x text`        |
//!
//! "By errno": ENOSPC is `4.3.1` (mail system full), EDQUOT `4.2.2`
//! (mailbox full), EFBIG `4.3.4` (message too big for the system: over
//! RLIMIT_FSIZE), EMFILE, ENFILE and ENOMEM `4.3.0` (the system is short
//! of descriptors or memory); any other errno, or none, keeps the kind's
//! code.
//!
//! Postfix bounces on most other exit codes (EX_CONFIG 78 included), so
//! nothing an administrator could fix ever maps to anything but 75. A
//! front end that answers in SMTP replies (LMTP) adds one more function
//! over the same kinds here (the reply code), beside `exit_code`.

use std::fmt;

/// EX_OK.
pub const OK: i32 = 0;
/// EX_TEMPFAIL: Postfix keeps the message and retries.
pub const TEMPFAIL: i32 = 75;
/// EX_NOPERM: Postfix bounces with our status line.
pub const NOPERM: i32 = 77;

/// X.3.5: system incorrectly configured.
const CONFIGURATION: &str = "4.3.5";
/// X.2.0: other or undefined mailbox status.
const MAILBOX: &str = "4.2.0";
/// X.3.0: other or undefined mail system status.
const SYSTEM: &str = "4.3.0";
/// X.3.1: mail system full.
const SYSTEM_FULL: &str = "4.3.1";
/// X.2.2: mailbox full.
const MAILBOX_FULL: &str = "4.2.2";
/// X.3.4: message too big for system.
const TOO_BIG: &str = "4.3.4";

/// The status of REJECT and of a rule's `reject` without a code of its own
/// (X.7.1: delivery not authorized, message refused).
pub const REJECT_STATUS: &str = "5.7.1";
/// The status of DEFER, DEFER_IF_* and of a rule's `defer` without a code
/// of its own.
pub const DEFER_STATUS: &str = "4.7.1";

/// What failed, with what decides its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The command line is wrong.
    Usage,
    /// Something an administrator sets up is wrong or missing: the system
    /// rules, the recipient, the Maildir's path, an access table's result.
    Config,
    /// A system call on the Maildir failed; its errno when there is one.
    Mailbox { errno: Option<i32> },
    /// The system failed outside the Maildir's directories: reading or
    /// spooling the message, a lookup, changing identity, out of time or
    /// memory; the errno when there is one.
    System { errno: Option<i32> },
    /// A bug: a panic.
    Internal,
    /// A policy (access table or rule) deferred the message with `status`
    /// (`4.x.x`).
    Deferred { status: String },
    /// A policy rejected the message with `status` (`5.x.x`).
    Rejected { status: String },
}

impl Kind {
    /// The RFC 3463 status of this kind (the table in the module
    /// documentation). Allocates nothing (`crate::engine::inflight` calls it in its
    /// emergency path).
    pub fn status(&self) -> &str {
        match self {
            Kind::Usage | Kind::Config => CONFIGURATION,
            Kind::Mailbox { errno } => by_errno(*errno, MAILBOX),
            Kind::System { errno } => by_errno(*errno, SYSTEM),
            Kind::Internal => SYSTEM,
            Kind::Deferred { status } | Kind::Rejected { status } => status,
        }
    }

    /// The exit status for local(8): 77 for a rejection, 75 for the rest.
    pub fn exit_code(&self) -> i32 {
        match self {
            Kind::Rejected { .. } => NOPERM,
            _ => TEMPFAIL,
        }
    }
}

/// The status of an I/O error: the errno's own when it has one (a full
/// disk or mailbox, a file too big), else `default`.
fn by_errno(errno: Option<i32>, default: &'static str) -> &'static str {
    match errno {
        Some(nix::libc::ENOSPC) => SYSTEM_FULL,
        Some(nix::libc::EDQUOT) => MAILBOX_FULL,
        // Over the file size limit of the process (RLIMIT_FSIZE).
        Some(nix::libc::EFBIG) => TOO_BIG,
        // The system is short of descriptors or memory, whatever it was
        // opening: not the mailbox's fault.
        Some(nix::libc::EMFILE | nix::libc::ENFILE | nix::libc::ENOMEM) => SYSTEM,
        _ => default,
    }
}

/// A failure that ends a delivery: what failed, and the text of its status
/// line. `main` turns it into the exit status and status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: Kind,
    pub text: String,
}

/// The exit status of a plan's disposition, once its actions succeeded:
/// that of its failure (`failure_of`), or 0.
pub fn code_of(d: &crate::policy::plan::Disposition) -> i32 {
    failure_of(d).map_or(OK, |f| f.exit_code())
}

/// The failure a rejection or deferral ends in (`None` for the others).
pub fn failure_of(d: &crate::policy::plan::Disposition) -> Option<Failure> {
    use crate::policy::plan::Disposition;
    match d {
        Disposition::Delivered | Disposition::Discarded => None,
        Disposition::Rejected { status, text } => Some(Failure::new(
            Kind::Rejected {
                status: status.clone(),
            },
            text.clone(),
        )),
        Disposition::Deferred { status, text } => Some(Failure::new(
            Kind::Deferred {
                status: status.clone(),
            },
            text.clone(),
        )),
    }
}

impl Failure {
    pub fn new(kind: Kind, text: impl Into<String>) -> Self {
        Failure {
            kind,
            text: text.into(),
        }
    }

    /// A bad command line.
    pub fn usage(text: impl Into<String>) -> Self {
        Failure::new(Kind::Usage, text)
    }

    /// A configuration problem.
    pub fn config(text: impl Into<String>) -> Self {
        Failure::new(Kind::Config, text)
    }

    /// A failure on the Maildir, with the errno of the failed call if any.
    pub fn mailbox(errno: Option<nix::errno::Errno>, text: impl Into<String>) -> Self {
        Failure::new(
            Kind::Mailbox {
                errno: errno.map(|e| e as i32),
            },
            text,
        )
    }

    /// A failure of the system, with the errno of the failed call if any.
    pub fn system(errno: Option<nix::errno::Errno>, text: impl Into<String>) -> Self {
        Failure::new(
            Kind::System {
                errno: errno.map(|e| e as i32),
            },
            text,
        )
    }

    /// A failed I/O call on the message's data (reading, spooling,
    /// syncing or copying it): a [`Kind::System`] failure with its errno,
    /// `what: error`.
    pub fn from_io(what: impl fmt::Display, err: &std::io::Error) -> Self {
        Failure::new(
            Kind::System {
                errno: err.raw_os_error(),
            },
            format!("{what}: {err}"),
        )
    }

    /// A bug.
    pub fn internal(text: impl Into<String>) -> Self {
        Failure::new(Kind::Internal, text)
    }

    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }

    /// The RFC 3463 status.
    pub fn status(&self) -> &str {
        self.kind.status()
    }

    /// The line printed for Postfix. Control, format and line-separator
    /// characters are replaced (`text::for_status`) so that nothing from the
    /// message or envelope can forge an extra line or hide in this one.
    pub fn status_line(&self) -> String {
        format!(
            "{} {}",
            self.status(),
            crate::output::text::for_status(&self.text)
        )
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.status_line())
    }
}

impl std::error::Error for Failure {}

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

/// C `isspace()` in the C locale, as Postfix's status parser uses it.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{b}' | '\u{c}' | '\r')
}

/// The length of the RFC 3463 status at the start of `t` (class 2, 4 or 5,
/// then 1-3 and 1-3 digits, then the end or a space), or 0: Postfix's
/// dsn_valid().
pub fn status_len(t: &str) -> usize {
    let b = t.as_bytes();
    if b.len() < 2 || !matches!(b[0], b'2' | b'4' | b'5') || b[1] != b'.' {
        return 0;
    }
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let n2 = digits(2);
    if !(1..=3).contains(&n2) || b.get(2 + n2) != Some(&b'.') {
        return 0;
    }
    let s3 = 3 + n2;
    let n3 = digits(s3);
    if !(1..=3).contains(&n3) {
        return 0;
    }
    match b.get(s3 + n3) {
        None => s3 + n3,
        Some(&c) if is_space(c as char) => s3 + n3,
        _ => 0,
    }
}

/// Checks that a status code is exactly `C.S.D` with the class digit the
/// exit status needs (4 for 75, 5 for 77).
pub fn valid_status(status: &str, class: char) -> bool {
    status.starts_with(class) && status_len(status) == status.len()
}

/// Postfix's dsn_split(): the status at the start of `text` (after
/// spaces), or `def`, and the free text after it.
pub fn dsn_split<'a>(def: &str, text: &'a str) -> (String, &'a str) {
    let t = text.trim_start_matches(is_space);
    let len = status_len(t);
    if len > 0 {
        let rest = t.get(len + 1..).unwrap_or("");
        (t[..len].to_string(), rest.trim_start_matches(is_space))
    } else {
        (def.to_string(), t)
    }
}

/// Splits an optional leading status of class `class` off a rule's reply
/// text (the first word, up to any whitespace): the status, or `default`,
/// and the rest of the text.
pub fn split_status(text: &str, class: char, default: &str) -> (String, String) {
    let t = text.trim();
    let (first, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
    if valid_status(first, class) {
        (first.to_string(), rest.trim().to_string())
    } else {
        (default.to_string(), t.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;

    #[test]
    fn codes() {
        assert_eq!(Failure::mailbox(None, "x").exit_code(), 75);
        let f = Failure::new(
            Kind::Rejected {
                status: "5.7.1".into(),
            },
            "x",
        );
        assert_eq!(f.exit_code(), 77);
    }

    #[test]
    fn statuses_of_kinds() {
        assert_eq!(Failure::usage("x").status_line(), "4.3.5 x");
        assert_eq!(Failure::config("x").status(), "4.3.5");
        assert_eq!(Failure::mailbox(None, "x").status(), "4.2.0");
        assert_eq!(Failure::mailbox(Some(Errno::EIO), "x").status(), "4.2.0");
        assert_eq!(Failure::mailbox(Some(Errno::ENOSPC), "x").status(), "4.3.1");
        for e in [Errno::EMFILE, Errno::ENFILE, Errno::ENOMEM] {
            assert_eq!(Failure::mailbox(Some(e), "x").status(), "4.3.0", "{e}");
        }
        assert_eq!(Failure::mailbox(Some(Errno::EDQUOT), "x").status(), "4.2.2");
        assert_eq!(Failure::system(Some(Errno::EFBIG), "x").status(), "4.3.4");
        assert_eq!(Failure::system(None, "x").status(), "4.3.0");
        assert_eq!(Failure::internal("x").status(), "4.3.0");
        let e = std::io::Error::from_raw_os_error(nix::libc::EDQUOT);
        assert_eq!(Failure::from_io("w", &e).status(), "4.2.2");
        let f = Failure::new(
            Kind::Deferred {
                status: "4.7.26".into(),
            },
            "x",
        );
        assert_eq!((f.exit_code(), f.status()), (75, "4.7.26"));
    }

    #[test]
    fn status_line_has_no_newline() {
        let reject = |t: &str| {
            Failure::new(
                Kind::Rejected {
                    status: "5.7.1".into(),
                },
                t,
            )
        };
        let f = reject("evil\r\nX-Injected: yes");
        assert_eq!(f.status_line().lines().count(), 1);
        assert!(f.status_line().starts_with("5.7.1 evil"));
        let f = reject("a\u{2028}b\u{2029}c\u{202e}d");
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
        assert!(!valid_status("4.7.1 ", '4'));
        assert!(!valid_status("4.7.1234", '4'));
    }

    #[test]
    fn dsn_split_like_postfix() {
        assert_eq!(status_len("5.7.1"), 5);
        assert_eq!(status_len("4.123.456 x"), 9);
        assert_eq!(status_len("5.7.1x"), 0);
        assert_eq!(status_len("3.7.1"), 0);
        assert_eq!(status_len("5.1234.1"), 0);
        assert_eq!(
            dsn_split("5.7.1", "  4.1.1   go away"),
            ("4.1.1".into(), "go away")
        );
        assert_eq!(dsn_split("5.7.1", "go away"), ("5.7.1".into(), "go away"));
        assert_eq!(dsn_split("5.7.1", "5.1.1"), ("5.1.1".into(), ""));
    }

    #[test]
    fn rule_statuses() {
        assert_eq!(
            split_status(" 5.7.26  go away ", '5', "5.7.1"),
            ("5.7.26".into(), "go away".into())
        );
        assert_eq!(
            split_status("4.7.1 later", '5', "5.7.1"),
            ("5.7.1".into(), "4.7.1 later".into())
        );
    }
}
