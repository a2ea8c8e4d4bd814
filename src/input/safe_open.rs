//! Opening and reading the files deliver reads: rules files, tables, map
//! indexes and rules caches.
//!
//! Every such file is opened with `O_RDONLY | O_NONBLOCK | O_CLOEXEC`, so
//! that opening a FIFO (which would wait for a writer) returns at once, and
//! then checked with fstat(2) on the opened descriptor: anything but a
//! regular file (a FIFO, a device such as `/dev/zero`, a socket, a
//! directory) is refused with an error naming the path. Symbolic links are
//! followed; the check applies to the file they lead to. On a
//! regular file `O_NONBLOCK` changes nothing.
//!
//! A file is read whole only within a size bound: [`MAX_FILE`] for every
//! file, [`MAX_USER_RULES`] for a user's rules file, and, while the user's memory budget is armed (`crate::policy::budget`),
//! what is left of it. The size fstat(2) reports is checked before
//! anything is read, and the read itself stops one byte past the bound, so
//! a file that grows while it is read is refused too.
//!
//! Callers apply their own trust policy (owner, mode) to the metadata
//! returned with the descriptor.

use crate::output::exit::Cause;
use std::fmt;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The largest file deliver reads whole (a system table of a million lines
/// is about 40 MiB). Files of the user's layer are bounded further by the
/// user's memory budget (`crate::policy::budget::USER_LIMIT`).
pub const MAX_FILE: u64 = 1 << 30;

/// The largest user's rules file. Parsed TOML can take up to about 40
/// times the size of its text (an array of one-letter strings) before the
/// budget can be checked; 2 MiB is twice a file of 10,000 header rules.
pub const MAX_USER_RULES: u64 = 2 << 20;

/// Why a file could not be opened or read.
#[derive(Debug)]
pub enum Error {
    /// A system call failed: `op` is `open`, `fstat` or `read`.
    Io {
        path: PathBuf,
        op: &'static str,
        err: io::Error,
    },
    /// Not a regular file: `what` says what it is.
    NotRegular { path: PathBuf, what: &'static str },
    /// Larger than `bound` bytes (`size` is what fstat said, or the bound
    /// plus one when the file grew while it was read). `budget`: the bound
    /// is what was left of the user's memory budget.
    TooBig {
        path: PathBuf,
        size: u64,
        bound: u64,
        budget: bool,
    },
}

impl Error {
    /// The cause, for whether a retry could help: the errno of a failed
    /// system call; a file of the wrong kind or size is [`Cause::Input`].
    pub fn cause(&self) -> Cause {
        match self {
            Error::Io { err, .. } => Cause::of(err),
            _ => Cause::Input,
        }
    }

    /// Whether the file does not exist (ENOENT at open).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { err, .. } if err.kind() == io::ErrorKind::NotFound)
    }

    pub fn path(&self) -> &Path {
        match self {
            Error::Io { path, .. }
            | Error::NotRegular { path, .. }
            | Error::TooBig { path, .. } => path,
        }
    }

    /// The message without the path.
    pub fn msg(&self) -> String {
        match self {
            Error::Io { op, err, .. } => format!("{op}: {err}"),
            Error::NotRegular { what, .. } => format!("not a regular file ({what}); refused"),
            Error::TooBig {
                size,
                bound,
                budget: false,
                ..
            } => format!(
                "{size} bytes, more than the {bound} bytes ({} MiB) such a file may have; refused",
                bound >> 20
            ),
            Error::TooBig {
                size,
                bound,
                budget: true,
                ..
            } => format!(
                "{size} bytes, more than the {bound} bytes left of the user's memory budget ({} MiB for the user's rules and the tables they name, in total); refused",
                crate::policy::budget::USER_LIMIT >> 20
            ),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path().display(), self.msg())
    }
}

impl std::error::Error for Error {}

fn kind_of(m: &Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a plain file"
    }
}

/// Opens `path` for reading without blocking and checks with fstat(2) that
/// it is a regular file. Returns the descriptor and its metadata.
pub fn open(path: &Path) -> Result<(File, Metadata), Error> {
    // std adds O_CLOEXEC.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path);
    checked(file, path)
}

/// `open` of `name` in the directory `dir` (opened by the caller); `path`
/// is the file's path, for messages.
pub fn open_at(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &Path,
    path: &Path,
) -> Result<(File, Metadata), Error> {
    use nix::fcntl::OFlag;
    let file = nix::fcntl::openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map(File::from)
    .map_err(std::io::Error::from);
    checked(file, path)
}

/// The fstat(2) check of `open` and `open_at`.
fn checked(file: std::io::Result<File>, path: &Path) -> Result<(File, Metadata), Error> {
    let io = |op, err| Error::Io {
        path: path.to_path_buf(),
        op,
        err,
    };
    let file = file.map_err(|e| io("open", e))?;
    let meta = file.metadata().map_err(|e| io("fstat", e))?;
    if !meta.is_file() {
        return Err(Error::NotRegular {
            path: path.to_path_buf(),
            what: kind_of(&meta),
        });
    }
    Ok((file, meta))
}

/// Reads the whole of `file` (opened by [`open`], with metadata `meta`)
/// within `max` bytes and the user's memory budget when it is armed.
pub fn read(file: &mut File, meta: &Metadata, path: &Path, max: u64) -> Result<Vec<u8>, Error> {
    let room = crate::policy::budget::room();
    let (bound, budget) = match room {
        Some(r) if r < max => (r, true),
        _ => (max, false),
    };
    let too_big = |size| Error::TooBig {
        path: path.to_path_buf(),
        size,
        bound,
        budget,
    };
    if meta.len() > bound {
        return Err(too_big(meta.len()));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(bound + 1)
        .read_to_end(&mut data)
        .map_err(|err| Error::Io {
            path: path.to_path_buf(),
            op: "read",
            err,
        })?;
    if data.len() as u64 > bound {
        return Err(too_big(bound + 1));
    }
    Ok(data)
}

/// [`open`] and [`read`] within [`MAX_FILE`]: the content of `path` and its
/// metadata (from before the read).
pub fn read_file(path: &Path) -> Result<(Vec<u8>, Metadata), Error> {
    let (mut file, meta) = open(path)?;
    let data = read(&mut file, &meta, path, MAX_FILE)?;
    Ok((data, meta))
}

/// [`read`], as UTF-8 text (invalid UTF-8 is an `Io` error of kind
/// `InvalidData`, whose cause is [`Cause::Input`]).
pub fn read_text(file: &mut File, meta: &Metadata, path: &Path, max: u64) -> Result<String, Error> {
    let data = read(file, meta, path, max)?;
    String::from_utf8(data).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        op: "read",
        err: io::Error::new(io::ErrorKind::InvalidData, e.utf8_error()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_regular_file_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = open(&fifo).unwrap_err();
        assert!(matches!(e, Error::NotRegular { what: "a FIFO", .. }), "{e}");
        assert!(
            e.to_string().starts_with(&fifo.display().to_string()),
            "{e}"
        );
        let e = open(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(matches!(open(&link), Err(Error::NotRegular { .. })));
        assert!(matches!(open(dir.path()), Err(Error::NotRegular { .. })));
        let e = open(&dir.path().join("none")).unwrap_err();
        assert!(e.is_not_found());
        assert_eq!(e.cause(), Cause::Io(nix::libc::ENOENT));
    }

    #[test]
    fn reads_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "abc").unwrap();
        assert_eq!(read_file(&p).unwrap().0, b"abc");
        let f = File::create(&p).unwrap();
        f.set_len(MAX_FILE + 1).unwrap();
        let e = read_file(&p).unwrap_err();
        assert!(matches!(e, Error::TooBig { budget: false, .. }), "{e}");
        assert_eq!(e.cause(), Cause::Input);
    }
}
