//! Maildir delivery, as the qmail maildir protocol page describes it, with
//! the Maildir++ folder layout that Dovecot and Courier read.
//!
//! A message is written to a uniquely named file in `tmp/`, fsynced, then
//! hard-linked into the target folder's `new/` (never replacing anything),
//! the tmp name is removed and `new/` is fsynced. A crash at any point leaves
//! either a complete message in exactly one `new/` or nothing outside `tmp/`.
//! A message filed with flags (seen, flagged, ...) goes into `cur/` instead,
//! named `NAME:2,FLAGS` with the flag letters in ASCII order (the Maildir
//! specification's info), which Dovecot and Courier read as IMAP flags.
//! Copies into several folders are links of the one tmp/ inode.
//! Stale `tmp/` files (older than 36 hours) are removed by later deliveries,
//! which scan `tmp/` when it has not been read for 8 hours.
//!
//! Every directory this module writes into is opened relative to the
//! Maildir's directory descriptor with `O_NOFOLLOW`: a symlink planted in
//! place of the Maildir, `tmp`, `new` or a folder is never followed. `cur`
//! (and a folder's `tmp` and `cur`), when not written into, are checked
//! with `AT_SYMLINK_NOFOLLOW` and refused as symlinks the same way; a `cur`
//! written into is opened like `new`.
//! Each of these directories must also be private (`crate::store::safedir`): owned
//! by the recipient and not writable by group or others, so that no other
//! user can add, swap or remove entries in it. The Inbox's failing that is a
//! temporary failure naming the directory, its owner and mode; a folder's
//! failing it sends the message to the Inbox.
//!
//! The file linked into `new/` is the very inode that was written and
//! fsynced: it is linked through its open descriptor (`/proc/self/fd/N`),
//! not through its name in `tmp/`. Where that is not possible (no `/proc`,
//! no hard links), the name is linked or renamed and the result is checked
//! to be that inode, and taken back if it is not.
//!
//! Folders are created on demand (mode 0700, with `maildirfolder`) and added
//! to the `subscriptions` file. Both files are opened without blocking
//! (`O_NONBLOCK`) and used only when they are regular files;
//! `subscriptions` is read only up to [`MAX_SUBSCRIPTIONS`] bytes.

use crate::output::exit::Failure;
use crate::store::safedir::NotPrivate;
use nix::errno::Errno;
use nix::fcntl::{openat, renameat2, AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{fsync, linkat, unlinkat, UnlinkatFlags};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How old a `tmp/` file must be before a delivery removes it.
pub const STALE_TMP: Duration = Duration::from_secs(36 * 3600);

/// How long after `tmp/` was last read (its atime) a delivery scans it
/// for stale files again (Dovecot's MAILDIR_TMP_SCAN_SECS).
pub const TMP_SCAN_INTERVAL: Duration = Duration::from_secs(8 * 3600);

/// The most of `subscriptions` a delivery reads: a file larger than this
/// is left alone (the folder is used, not subscribed), with a log line.
pub const MAX_SUBSCRIPTIONS: u64 = 1024 * 1024;

const DIR_FLAGS: OFlag = OFlag::O_DIRECTORY
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_RDONLY)
    .union(OFlag::O_CLOEXEC);

/// A validated folder name. `None` in an `Option<FolderName>` means the Inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderName {
    /// The IMAP name with `.` as the hierarchy separator, e.g. `Lists.rust`.
    pub name: String,
    /// The directory inside the Maildir, e.g. `.Lists.rust` (modified UTF-7
    /// for non-ASCII names, as Dovecot and Courier store them).
    pub dir: String,
}

impl FolderName {
    /// Validates a folder name from a rule or a map. `INBOX` (any case, or an
    /// empty name after an `INBOX.` prefix is removed) is the Inbox: `Ok(None)`.
    /// `Lists/rust` and `Lists.rust` both name `.Lists.rust`. Refused: a
    /// leading `.` or `/`, empty components, `..`, and characters of the
    /// general categories Cc, Cf, Zl and Zp (controls, format characters
    /// such as the zero-width space or U+202E, line and paragraph
    /// separators), which would hide in or reorder the name as a mail
    /// client shows it. Other characters (a space, any letter) are kept.
    pub fn parse(raw: &str) -> Result<Option<FolderName>, String> {
        if raw.eq_ignore_ascii_case("INBOX") {
            return Ok(None);
        }
        let mut s = raw;
        if s.len() > 6
            && s.get(..6).is_some_and(|p| {
                p.eq_ignore_ascii_case("INBOX.") || p.eq_ignore_ascii_case("INBOX/")
            })
        {
            s = &s[6..];
        }
        if s.is_empty() {
            return Err("empty folder name".into());
        }
        if let Some((c, cat)) = s
            .chars()
            .find_map(|c| crate::output::text::hidden_category(c).map(|cat| (c, cat)))
        {
            return Err(format!(
                "folder name {raw:?} contains U+{:04X} (general category {cat})",
                u32::from(c)
            ));
        }
        if s.starts_with('.') || s.starts_with('/') {
            return Err(format!("folder name {raw:?} starts with {:?}", &s[..1]));
        }
        let parts: Vec<&str> = s.split(['.', '/']).collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "folder name {raw:?} has an empty or '..' component"
            ));
        }
        let name = parts.join(".");
        let dir = format!(".{}", imap_utf7(&name));
        if dir.len() > 255 {
            return Err(format!("folder name {raw:?} is too long"));
        }
        Ok(Some(FolderName { name, dir }))
    }
}

/// Modified UTF-7 (RFC 3501 5.1.3), as IMAP servers store Maildir++ names.
pub fn imap_utf7(s: &str) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
    let mut out = String::with_capacity(s.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |out: &mut String, pending: &mut Vec<u16>| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out.push('-');
        pending.clear();
    };
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut out, &mut pending);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut out, &mut pending);
    out
}

/// The directory a folder's messages go to: `MAILDIR/new` or `MAILDIR/.F/new`.
pub fn new_dir_path(maildir: &Path, folder: Option<&FolderName>) -> PathBuf {
    match folder {
        None => maildir.join("new"),
        Some(f) => maildir.join(&f.dir).join("new"),
    }
}

/// Maps an I/O error on the mailbox to a temporary failure with a fitting
/// RFC 3463 code: mailbox full, mail system full, or mailbox unavailable.
fn fail(what: impl std::fmt::Display, e: Errno) -> Failure {
    Failure::mailbox(Some(e), format!("{what}: {}", e.desc()))
}

fn hostname() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let h = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into());
        h.replace('/', "\\057").replace(':', "\\072")
    })
}

/// `seconds.MmicrosPpidQn.host`, unique per the maildir protocol.
pub(crate) fn unique_name() -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        crate::output::log::pid(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        hostname()
    )
}

/// Why a directory of the Maildir cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DirError {
    /// A system call failed (`ELOOP`/`ENOTDIR`: a symlink or not a directory).
    Sys(Errno),
    /// Someone else owns it, or others may write it.
    NotPrivate(NotPrivate),
}

impl From<Errno> for DirError {
    fn from(e: Errno) -> Self {
        DirError::Sys(e)
    }
}

impl DirError {
    /// Whether a retry may succeed (out of descriptors, an I/O error...).
    fn transient(self) -> bool {
        matches!(self, DirError::Sys(e) if crate::output::exit::is_transient(e as i32))
    }
}

/// Checks that a directory of the Maildir is the recipient's own and that
/// nobody else may write it.
fn private(st: &FileStat) -> Result<(), DirError> {
    crate::store::safedir::check(st, false).map_err(DirError::NotPrivate)
}

/// Opens `name` under `dir` as a directory without following a symlink,
/// creating it (mode 0700) when `create` is set, and checks it is private.
pub(crate) fn open_dir(
    dir: BorrowedFd<'_>,
    name: &str,
    create: bool,
) -> Result<(OwnedFd, bool), DirError> {
    let (fd, created) = match openat(dir, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => (fd, false),
        Err(Errno::ENOENT) if create => {
            match mkdirat(dir, name, Mode::from_bits_truncate(0o700)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
            (openat(dir, name, DIR_FLAGS, Mode::empty())?, true)
        }
        Err(e) => return Err(e.into()),
    };
    private(&fstat(&fd)?)?;
    Ok((fd, created))
}

/// Makes sure `name` under `dir` is a private directory (not a symlink),
/// creating it (mode 0700) when missing, without opening it: one
/// fstatat(2) when it is there, where an open and a close took two.
/// Returns whether it was created (or found created by a concurrent
/// delivery). A symlink is `ELOOP` and anything else that is not a
/// directory `ENOTDIR`, as from an `O_NOFOLLOW|O_DIRECTORY` open. `dir`
/// is private itself, so the name cannot be swapped after the check.
fn ensure_dir(dir: BorrowedFd<'_>, name: &str) -> Result<bool, DirError> {
    let is_dir = |dir: BorrowedFd<'_>| -> Result<(), DirError> {
        let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFDIR => private(&st),
            SFlag::S_IFLNK => Err(Errno::ELOOP.into()),
            _ => Err(Errno::ENOTDIR.into()),
        }
    };
    match is_dir(dir) {
        Ok(()) => Ok(false),
        Err(DirError::Sys(Errno::ENOENT)) => {
            match mkdirat(dir, name, Mode::from_bits_truncate(0o700)) {
                Ok(()) => {}
                Err(Errno::EEXIST) => is_dir(dir)?,
                Err(e) => return Err(e.into()),
            }
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// Describes why a directory could not be used, naming a symlink as such,
/// and a directory of someone else's (or one others may write) with its
/// owner and mode.
pub(crate) fn dir_error(path: &Path, e: DirError) -> String {
    match e {
        DirError::Sys(Errno::ELOOP | Errno::ENOTDIR) => {
            format!(
                "{} is a symlink or not a directory; refusing to follow it",
                path.display()
            )
        }
        DirError::Sys(e) => format!("{}: {}", path.display(), e.desc()),
        DirError::NotPrivate(n) => n.describe(path),
    }
}

/// The failure of a Maildir directory that cannot be opened or created:
/// `4.2.0` whatever the errno, except when the system is short of
/// descriptors or memory (`4.3.0`, by the errno).
fn dir_failure(path: &Path, e: DirError) -> Failure {
    let short = match e {
        DirError::Sys(e @ (Errno::EMFILE | Errno::ENFILE | Errno::ENOMEM)) => Some(e),
        _ => None,
    };
    Failure::mailbox(short, dir_error(path, e))
}

/// An open Maildir.
#[derive(Debug)]
pub struct Maildir {
    path: PathBuf,
    root: OwnedFd,
    tmp: OwnedFd,
    /// The Inbox's `new/`, opened (and checked) once for the link.
    new: OwnedFd,
}

/// A message being written into `tmp/`. Dropping it removes its name from
/// `tmp/`: before a commit that throws the message away, after one (the
/// link into `new/` is made) it is the protocol's last step. No early
/// return can leave a file behind.
#[derive(Debug)]
pub struct TmpFile<'m> {
    pub name: String,
    pub file: File,
    tmp_dir: BorrowedFd<'m>,
}

impl Drop for TmpFile<'_> {
    fn drop(&mut self) {
        let _ = unlinkat(self.tmp_dir, self.name.as_str(), UnlinkatFlags::NoRemoveDir);
    }
}

impl Maildir {
    /// Opens the Maildir at `path`, creating it and its `tmp`, `new` and `cur`
    /// when missing. The parent directory (the home) must exist.
    pub fn open(path: &Path) -> Result<Maildir, Failure> {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .ok_or_else(|| Failure::config(format!("bad Maildir path {}", path.display())))?;
        let parent_fd = nix::fcntl::open(
            parent,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail(format!("cannot open {}", parent.display()), e))?;
        let (root, created) = open_dir(parent_fd.as_fd(), &name.to_string_lossy(), true)
            .map_err(|e| dir_failure(path, e))?;
        let sub_error = |sub: &str, e: DirError| dir_failure(&path.join(sub), e);
        let (tmp, made_tmp) =
            open_dir(root.as_fd(), "tmp", true).map_err(|e| sub_error("tmp", e))?;
        let (new, made_new) =
            open_dir(root.as_fd(), "new", true).map_err(|e| sub_error("new", e))?;
        // cur/ is written into only for a message filed with flags (`link`):
        // checked (no symlink) and created when missing, opened when used.
        let made_cur = ensure_dir(root.as_fd(), "cur").map_err(|e| sub_error("cur", e))?;
        if created || made_tmp || made_new || made_cur {
            fsync(&root).map_err(|e| fail(format!("fsync {}", path.display()), e))?;
            if created {
                let _ = fsync(&parent_fd);
            }
        }
        Ok(Maildir {
            path: path.to_path_buf(),
            root,
            tmp,
            new,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor of the Maildir itself, for the per-user state that
    /// lives beside its folders (`crate::store::state`).
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// The descriptor of `tmp/`, for `crate::engine::inflight` to remove a tmp/
    /// file by name when a delivery ends without returning.
    pub fn tmp_dir(&self) -> BorrowedFd<'_> {
        self.tmp.as_fd()
    }

    /// Creates a new, uniquely named file in `tmp/` (mode 0600), open for
    /// writing and (for `reopen_tmp`) reading.
    pub fn create_tmp(&self) -> Result<TmpFile<'_>, Failure> {
        let flags =
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut last = Errno::EEXIST;
        for _ in 0..16 {
            let name = unique_name();
            match openat(
                &self.tmp,
                name.as_str(),
                flags,
                Mode::from_bits_truncate(0o600),
            ) {
                Ok(fd) => {
                    return Ok(TmpFile {
                        name,
                        file: File::from(fd),
                        tmp_dir: self.tmp.as_fd(),
                    })
                }
                Err(Errno::EEXIST) => continue,
                Err(e) => {
                    last = e;
                    break;
                }
            }
        }
        Err(fail(
            format!(
                "cannot create a file in {}",
                self.path.join("tmp").display()
            ),
            last,
        ))
    }

    /// The tmp file again, for reading from its start: the inode that was
    /// written (a second descriptor of it), not whatever its name in `tmp/`
    /// names now.
    pub fn reopen_tmp(&self, tmp: &TmpFile) -> Result<File, Failure> {
        let what = || {
            format!(
                "cannot reopen {}",
                self.path.join("tmp").join(&tmp.name).display()
            )
        };
        let mut f = tmp
            .file
            .try_clone()
            .map_err(|e| Failure::from_io(what(), &e))?;
        f.seek(SeekFrom::Start(0))
            .map_err(|e| Failure::from_io(what(), &e))?;
        Ok(f)
    }

    /// Opens (creating on demand) a folder's `new/` directory. Returns the
    /// descriptor of `new/` and of the folder itself, and what went wrong
    /// with its `subscriptions` entry or `maildirfolder` marker (the folder
    /// is used all the same), or why the folder cannot be used.
    #[allow(clippy::type_complexity)]
    fn folder_new_dir(
        &self,
        folder: &FolderName,
        into: &str,
    ) -> Result<(OwnedFd, OwnedFd, Option<String>), (String, DirError)> {
        let fpath = self.path.join(&folder.dir);
        let (fd, created) = open_dir(self.root.as_fd(), &folder.dir, true)
            .map_err(|e| (dir_error(&fpath, e), e))?;
        if created {
            crate::testhook::pause("folder-mkdir");
        }
        let mut made = false;
        let mut new = None;
        for sub in ["tmp", "new", "cur"] {
            let sub_error = |e| (dir_error(&fpath.join(sub), e), e);
            if sub != into {
                // Not written into (messages are spooled in the Maildir's
                // own tmp/): checked and created, not opened.
                made |= ensure_dir(fd.as_fd(), sub).map_err(sub_error)?;
                continue;
            }
            let (sfd, c) = open_dir(fd.as_fd(), sub, true).map_err(sub_error)?;
            made |= c;
            // A new/ (or cur/) we may not write into (mode 0500, say) is a problem
            // with the folder: the Inbox, not a link that fails on every
            // retry.
            nix::unistd::faccessat(
                &sfd,
                ".",
                nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
                AtFlags::empty(),
            )
            .map_err(|e| {
                (
                    format!("{}: {}", fpath.join(sub).display(), e.desc()),
                    e.into(),
                )
            })?;
            new = Some(sfd);
        }
        // The `maildirfolder` marker is written last: a folder without it
        // was not finished (a crash between mkdir and subscribing), and
        // whoever delivers into it next finishes it. Its presence also says
        // that the folder's entries were fsynced.
        let finished = !matches!(
            fstatat(&fd, "maildirfolder", AtFlags::AT_SYMLINK_NOFOLLOW),
            Err(Errno::ENOENT)
        );
        let mut note = None;
        if created || made || !finished {
            fsync(&fd)
                .map_err(|e| (format!("fsync {}: {}", fpath.display(), e.desc()), e.into()))?;
            fsync(&self.root).map_err(|e| {
                (
                    format!("fsync {}: {}", self.path.display(), e.desc()),
                    e.into(),
                )
            })?;
            crate::testhook::pause("folder-ready");
            match self.subscribe(&folder.name) {
                Ok(()) => {
                    if let Err(why) = mark_folder(&fd) {
                        note = Some(format!(
                            "folder {}: {}: {why}",
                            folder.name,
                            fpath.join("maildirfolder").display()
                        ));
                    }
                }
                Err(why) => {
                    note = Some(format!(
                        "folder {} not subscribed: {}: {why}",
                        folder.name,
                        self.path.join("subscriptions").display()
                    ))
                }
            }
        }
        Ok((new.expect("new opened above"), fd, note))
    }

    /// Adds a folder to `subscriptions`, under an exclusive lock, once.
    /// Dovecot's version-2 file (first line `V\t2`) gets a v2 entry.
    /// `Ok` when the folder is listed (and the file fsynced) now; else why
    /// not. The file is opened without blocking and used only when it is a
    /// regular file of the recipient's of at most [`MAX_SUBSCRIPTIONS`]
    /// bytes: a FIFO there must not hang the delivery.
    fn subscribe(&self, name: &str) -> Result<(), String> {
        let fd = openat(
            &self.root,
            "subscriptions",
            OFlag::O_RDWR
                | OFlag::O_CREAT
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| e.desc().to_string())?;
        let mut f = File::from(fd);
        let meta = f.metadata().map_err(|e| e.to_string())?;
        regular_own(&meta)?;
        f.lock().map_err(|e| e.to_string())?;
        let path = self.path.join("subscriptions");
        let text = crate::input::safe_open::read_text(&mut f, &meta, &path, MAX_SUBSCRIPTIONS)
            .map_err(|e| e.msg())?;
        let entry = if text.starts_with("V\t2\n") {
            name.replace('.', "\t")
        } else {
            name.to_string()
        };
        if text.lines().any(|l| l == entry) {
            return Ok(());
        }
        let mut add = String::new();
        if !text.is_empty() && !text.ends_with('\n') {
            add.push('\n');
        }
        add.push_str(&entry);
        add.push('\n');
        f.seek(SeekFrom::End(0))
            .and_then(|_| f.write_all(add.as_bytes()))
            .and_then(|_| f.sync_all())
            .map_err(|e| e.to_string())
    }

    /// Moves a complete, fsynced tmp file into `new/` of the folder (the
    /// Inbox for `None`): `link`, then the tmp name is removed.
    pub fn commit(
        &self,
        tmp: TmpFile,
        folder: Option<&FolderName>,
        size: u64,
    ) -> Result<Delivered, Failure> {
        let r = self.link(&tmp, folder, "", size);
        drop(tmp);
        r
    }

    /// Links a complete, fsynced tmp file into the folder (the Inbox for
    /// `None`): into `new/` without flags, into `cur/` as `NAME:2,FLAGS`
    /// with them (`flags`: Maildir flag letters in ASCII order, as the
    /// Maildir specification wants them). The tmp file keeps its name, so
    /// that it can be linked into more folders (one inode for every copy).
    /// Returns the path of the delivered file, and the folder it actually
    /// went to: a folder that cannot be used (a symlink, a bad owner or
    /// mode) falls back to the Inbox, with the reason. A failure a retry
    /// could fix (out of descriptors or memory, an I/O error, a full disk)
    /// is a temporary failure instead, so that the retry files the message
    /// where the rules say.
    pub fn link(
        &self,
        tmp: &TmpFile,
        folder: Option<&FolderName>,
        flags: &str,
        size: u64,
    ) -> Result<Delivered, Failure> {
        let into = if flags.is_empty() { "new" } else { "cur" };
        let mut fallback = None;
        let mut note = None;
        let target = match folder {
            None => None,
            Some(f) => match self.folder_new_dir(f, into) {
                Ok((new, _folder_fd, n)) => {
                    note = n;
                    Some((new, f))
                }
                Err((why, e)) if e.transient() => {
                    let DirError::Sys(errno) = e else {
                        unreachable!("only system call errors are transient")
                    };
                    return Err(Failure::mailbox(Some(errno), why));
                }
                Err((why, _)) => {
                    fallback = Some(why);
                    None
                }
            },
        };
        let folder_new;
        let (new_fd, dir_path, used) = match target {
            Some((fd, f)) => {
                folder_new = fd;
                (
                    &folder_new,
                    self.path.join(&f.dir).join(into),
                    Some(f.clone()),
                )
            }
            None if into == "new" => (&self.new, self.path.join("new"), None),
            None => {
                // The Inbox's cur/ (checked when the Maildir was opened).
                let (fd, _) = open_dir(self.root.as_fd(), "cur", false).map_err(|e| {
                    let errno = match e {
                        DirError::Sys(errno) => Some(errno),
                        _ => None,
                    };
                    Failure::mailbox(errno, dir_error(&self.path.join("cur"), e))
                })?;
                folder_new = fd;
                (&folder_new, self.path.join("cur"), None)
            }
        };
        let info = if flags.is_empty() {
            String::new()
        } else {
            format!(":2,{flags}")
        };
        let result = match self.link_into(tmp, new_fd, &dir_path, size, &info) {
            // The written file lost its name in tmp/ (removed, or another
            // file renamed over it): it cannot be linked any more. Its
            // content is still this descriptor's: copied into a new tmp
            // file, fsynced, and that is linked, once.
            Ok(None) => match self.copy_tmp(tmp) {
                Ok(copy) => {
                    let r = self.link_into(&copy, new_fd, &dir_path, size, &info);
                    drop(copy);
                    r
                }
                Err(f) => Err(f),
            },
            r => r,
        };
        let path = result?.ok_or_else(|| {
            Failure::mailbox(
                None,
                format!(
                    "the message's file in {} was removed or replaced twice while it was delivered; not delivered",
                    self.path.join("tmp").display()
                ),
            )
        })?;
        Ok(Delivered {
            path,
            folder: used,
            fallback,
            note,
        })
    }

    /// A new tmp file with the content of `tmp`'s inode, fsynced.
    fn copy_tmp(&self, tmp: &TmpFile) -> Result<TmpFile<'_>, Failure> {
        let mut src = self.reopen_tmp(tmp)?;
        let mut copy = self.create_tmp()?;
        std::io::copy(&mut src, &mut copy.file)
            .and_then(|_| copy.file.sync_all())
            .map_err(|e| {
                Failure::from_io(
                    format!("copying into {}", self.path.join("tmp").display()),
                    &e,
                )
            })?;
        Ok(copy)
    }

    /// Links the tmp file's inode into `new_fd` under a new name, and
    /// fsyncs `new_fd`; `Ok(None)` when that inode has no name left to
    /// link (see `commit`). The link goes through the open descriptor
    /// (`/proc/self/fd/N`, `AT_SYMLINK_FOLLOW`), so that what lands in
    /// `new/` is exactly the file written and fsynced, whatever its name
    /// in `tmp/` names by now. Without `/proc` (or when that link is
    /// refused as `ENOENT`) the name is linked; on file systems without
    /// hard links it is renamed (never replacing anything); either way the
    /// result is then checked to be that inode, and removed if it is not.
    fn link_into(
        &self,
        tmp: &TmpFile,
        new_fd: &OwnedFd,
        dir_path: &Path,
        size: u64,
        info: &str,
    ) -> Result<Option<PathBuf>, Failure> {
        let by_fd = format!("/proc/self/fd/{}", tmp.file.as_raw_fd());
        let mut by_name = false;
        let mut name = format!("{},S={}{info}", tmp.name, size);
        let mut attempt = 0;
        while attempt < 16 {
            let r = if by_name {
                linkat(
                    &self.tmp,
                    tmp.name.as_str(),
                    new_fd,
                    name.as_str(),
                    AtFlags::empty(),
                )
            } else {
                linkat(
                    nix::fcntl::AT_FDCWD,
                    by_fd.as_str(),
                    new_fd,
                    name.as_str(),
                    AtFlags::AT_SYMLINK_FOLLOW,
                )
            };
            let (r, check) = match r {
                // The inode was unlinked (its link count is 0), or there
                // is no /proc.
                Err(Errno::ENOENT) if !by_name => {
                    match fstat(&tmp.file) {
                        Ok(st) if st.st_nlink == 0 => return Ok(None),
                        Ok(_) => {}
                        Err(e) => {
                            return Err(fail(format!("cannot link into {}", dir_path.display()), e))
                        }
                    }
                    by_name = true;
                    continue;
                }
                // File systems without hard links: rename, never replacing.
                Err(Errno::EPERM | Errno::EOPNOTSUPP | Errno::ENOSYS) => (
                    renameat2(
                        &self.tmp,
                        tmp.name.as_str(),
                        new_fd,
                        name.as_str(),
                        RenameFlags::RENAME_NOREPLACE,
                    ),
                    true,
                ),
                r => (r, by_name),
            };
            match r {
                Ok(()) => {
                    if check {
                        self.check_linked(tmp, new_fd, &name, dir_path)?;
                    }
                    crate::testhook::pause("linked");
                    if let Err(e) = fsync(new_fd) {
                        // Not durable: take it back, so the retry does not duplicate it.
                        let _ = unlinkat(new_fd, name.as_str(), UnlinkatFlags::NoRemoveDir);
                        return Err(fail(format!("fsync {}", dir_path.display()), e));
                    }
                    crate::testhook::pause("new-synced");
                    return Ok(Some(dir_path.join(name)));
                }
                Err(Errno::EEXIST) => {
                    name = format!("{}.{}", unique_name(), attempt) + &format!(",S={size}{info}");
                    attempt += 1;
                }
                Err(e) => return Err(fail(format!("cannot link into {}", dir_path.display()), e)),
            }
        }
        Err(Failure::mailbox(
            None,
            format!("no unique name free in {}", dir_path.display()),
        ))
    }

    /// Checks that `name` in `new_fd`, linked or renamed from the tmp
    /// file's name, is the tmp file's inode; removes it if not (it is then
    /// some other file that took the tmp name: not the message).
    fn check_linked(
        &self,
        tmp: &TmpFile,
        new_fd: &OwnedFd,
        name: &str,
        dir_path: &Path,
    ) -> Result<(), Failure> {
        let same = fstat(&tmp.file).and_then(|want| {
            let got = fstatat(new_fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
            Ok(got.st_dev == want.st_dev && got.st_ino == want.st_ino)
        });
        match same {
            Ok(true) => Ok(()),
            Ok(false) => {
                let _ = unlinkat(new_fd, name, UnlinkatFlags::NoRemoveDir);
                let _ = fsync(new_fd);
                Err(Failure::mailbox(
                    None,
                    format!(
                        "{} was replaced while the message was written; not delivered",
                        self.path.join("tmp").join(&tmp.name).display()
                    ),
                ))
            }
            Err(e) => {
                let _ = unlinkat(new_fd, name, UnlinkatFlags::NoRemoveDir);
                Err(fail(
                    format!("cannot check {}", dir_path.join(name).display()),
                    e,
                ))
            }
        }
    }

    /// Removes regular files in `tmp/` older than `STALE_TMP`, when `tmp/`
    /// was last read more than `TMP_SCAN_INTERVAL` ago (its atime), as
    /// Dovecot does: reading the directory sets its atime (under relatime
    /// too, as every delivery changes tmp/ first), so the scan runs about
    /// once per interval, not at every delivery. Where reading does not set
    /// it (noatime, nodiratime) the scan sets it. Best effort; returns how
    /// many were removed.
    pub fn clean_tmp(&self, now: SystemTime) -> usize {
        let Some(now_secs) = now.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs()) else {
            return 0;
        };
        let atime = |fd: &OwnedFd| nix::sys::stat::fstat(fd).map(|st| st.st_atime);
        match atime(&self.tmp) {
            Ok(a) if a >= now_secs.saturating_sub(TMP_SCAN_INTERVAL.as_secs()) as i64 => return 0,
            _ => {}
        }
        let removed = self.sweep_tmp(now);
        if atime(&self.tmp).is_ok_and(|a| a < now_secs as i64) {
            // Not set by the read: noatime. Set it, so the next delivery
            // does not scan again. (UTIME_OMIT: the mtime stays.)
            let times = [
                nix::sys::time::TimeSpec::UTIME_NOW,
                nix::sys::time::TimeSpec::UTIME_OMIT,
            ];
            let _ = nix::sys::stat::futimens(&self.tmp, &times[0], &times[1]);
        }
        removed
    }

    /// The scan of `clean_tmp`.
    fn sweep_tmp(&self, now: SystemTime) -> usize {
        let Ok(dup) = self.tmp.try_clone() else {
            return 0;
        };
        let Ok(mut dir) = nix::dir::Dir::from_fd(dup) else {
            return 0;
        };
        let cutoff = now
            .checked_sub(STALE_TMP)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok());
        let Some(cutoff) = cutoff else { return 0 };
        let names: Vec<std::ffi::CString> = dir
            .iter()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_owned())
            .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
            .collect();
        let mut removed = 0;
        for n in names {
            let Ok(st) = fstatat(
                &self.tmp,
                n.as_c_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            ) else {
                continue;
            };
            let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            if kind != SFlag::S_IFREG && kind != SFlag::S_IFLNK {
                continue;
            }
            if (st.st_mtime as u64) < cutoff.as_secs()
                && unlinkat(&self.tmp, n.as_c_str(), UnlinkatFlags::NoRemoveDir).is_ok()
            {
                removed += 1;
            }
        }
        removed
    }
}

/// Where a message went.
#[derive(Debug)]
pub struct Delivered {
    pub path: PathBuf,
    /// The folder used; `None` is the Inbox.
    pub folder: Option<FolderName>,
    /// Why the requested folder was not used, when it fell back to the Inbox.
    pub fallback: Option<String>,
    /// What went wrong with the folder's `subscriptions` entry or marker,
    /// when it was used all the same.
    pub note: Option<String>,
}

/// Checks that a file deliver reads or writes in the Maildir is a regular
/// file of the recipient's.
fn regular_own(meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if !meta.is_file() {
        return Err("not a regular file; left alone".into());
    }
    if meta.uid() != crate::store::safedir::euid() {
        return Err(format!(
            "owned by uid {}, not by the recipient; left alone",
            meta.uid()
        ));
    }
    Ok(())
}

/// Writes a folder's `maildirfolder` marker (an empty file), without
/// blocking: a FIFO in its place fails (`ENXIO`) instead of waiting for a
/// reader. Only a regular file of the recipient's counts.
fn mark_folder(folder: &OwnedFd) -> Result<(), String> {
    let fd = openat(
        folder,
        "maildirfolder",
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| e.desc().to_string())?;
    regular_own(&File::from(fd).metadata().map_err(|e| e.to_string())?)?;
    fsync(folder).map_err(|e| e.desc().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names() {
        let f = |s: &str| FolderName::parse(s);
        assert_eq!(f("INBOX").unwrap(), None);
        assert_eq!(f("inbox").unwrap(), None);
        assert_eq!(f("Junk").unwrap().unwrap().dir, ".Junk");
        assert_eq!(f("Lists/rust").unwrap().unwrap().dir, ".Lists.rust");
        assert_eq!(f("Lists.rust").unwrap().unwrap().name, "Lists.rust");
        assert_eq!(f("INBOX.Junk").unwrap().unwrap().dir, ".Junk");
        assert_eq!(f("INBOX\u{e9}").unwrap().unwrap().dir, ".INBOX&AOk-");
        for bad in [
            "", "..", "../x", "a/../b", ".hidden", "/abs", "a//b", "a.", "x\0y", "x\ny", "a\u{7f}",
        ] {
            assert!(f(bad).is_err(), "{bad:?} accepted");
        }
        assert!(f(&"x".repeat(300)).is_err());
        for (bad, cp) in [
            ("\u{200b}INBOX", "U+200B (general category Cf)"),
            ("Junk\u{202e}", "U+202E (general category Cf)"),
            ("a\u{ad}b", "U+00AD (general category Cf)"),
            ("a\u{2028}b", "U+2028 (general category Zl)"),
            ("a\u{2029}b", "U+2029 (general category Zp)"),
            ("a\u{85}b", "U+0085 (general category Cc)"),
            ("a\u{e0001}", "U+E0001 (general category Cf)"),
        ] {
            let e = f(bad).unwrap_err();
            assert!(e.contains(cp), "{bad:?}: {e}");
        }
        // Kept: a Cyrillic letter that looks like a Latin one, a space.
        assert_eq!(f("\u{406}NBOX").unwrap().unwrap().name, "\u{406}NBOX");
        assert_eq!(f("My Folder").unwrap().unwrap().dir, ".My Folder");
    }

    #[test]
    fn utf7() {
        assert_eq!(imap_utf7("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(imap_utf7("a&b"), "a&-b");
        assert_eq!(imap_utf7("台北"), "&U,BTFw-");
        assert_eq!(imap_utf7("plain"), "plain");
    }

    #[test]
    fn name_has_no_separator_chars() {
        let n = unique_name();
        assert!(!n.contains('/'));
        assert!(!n.contains(':'));
    }
}
