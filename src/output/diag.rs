//! One located problem: a file, a line and column when known, the message,
//! and what it came from. Rules files, lookup tables and `deliver check`
//! all report problems as a [`Diag`].

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem in a file, located as precisely as the source allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    /// The file the problem is in (or the table spec when there is no file).
    pub file: PathBuf,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub col: usize,
    pub msg: String,
    /// What the problem came from (a failed system call, or the file
    /// itself): whether a retry can help is decided from this
    /// ([`crate::output::exit::Cause::is_transient`]), never from `msg`.
    pub cause: crate::output::exit::Cause,
}

impl Diag {
    /// A problem with the input `file` as a whole (no line).
    pub fn file(file: &Path, msg: impl Into<String>) -> Diag {
        Diag::at(file, 0, 0, msg)
    }

    /// A problem with the input at `line`:`col` of `file`.
    pub fn at(file: &Path, line: usize, col: usize, msg: impl Into<String>) -> Diag {
        Diag {
            file: file.to_path_buf(),
            line,
            col,
            msg: msg.into(),
            cause: crate::output::exit::Cause::Input,
        }
    }

    /// A failed system call `op` on `path`, with its errno as the cause.
    pub fn io(path: &Path, op: &str, e: &std::io::Error) -> Diag {
        Diag {
            cause: crate::output::exit::Cause::of(e),
            ..Diag::file(path, format!("{op}: {e}"))
        }
    }
}

/// `file: msg`, `file:line: msg` or `file:line:col: msg`, as much as is
/// known.
impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.col) {
            (0, _) => write!(f, "{}: {}", self.file.display(), self.msg),
            (l, 0) => write!(f, "{}:{}: {}", self.file.display(), l, self.msg),
            (l, c) => write!(f, "{}:{}:{}: {}", self.file.display(), l, c, self.msg),
        }
    }
}

impl std::error::Error for Diag {}

impl From<crate::input::safe_open::Error> for Diag {
    fn from(e: crate::input::safe_open::Error) -> Diag {
        Diag {
            cause: e.cause(),
            ..Diag::file(e.path(), e.msg())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_what_is_known() {
        let p = Path::new("/x/f");
        assert_eq!(Diag::file(p, "m").to_string(), "/x/f: m");
        assert_eq!(Diag::at(p, 3, 0, "m").to_string(), "/x/f:3: m");
        assert_eq!(Diag::at(p, 3, 7, "m").to_string(), "/x/f:3:7: m");
    }
}
