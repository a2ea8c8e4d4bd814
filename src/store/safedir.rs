//! Directories deliver writes into, opened so that nobody but the recipient
//! (or root) decides where the writes land.
//!
//! A directory is *private* when it is owned by the running user (or, where
//! the caller allows it, by root) and has no group or other write bit (mode
//! `& 0o022 == 0`; a sticky `1777` directory is not private either). Nobody
//! else can add, remove or rename entries in a private directory, so a name
//! checked in it stays what it was checked to be.
//!
//! [`open_private`] resolves a path one component at a time from `/`, each
//! with `O_NOFOLLOW|O_DIRECTORY`. A symlink on the way is followed (its
//! target resolved the same way) only when it lies in a private directory:
//! the user's own `~/.cache -> /scratch/me/cache`, or the admin's
//! `/home -> /srv/home`, are followed; a symlink that another user could have
//! planted (in a group-writable home, in `/tmp`) is refused. The directory
//! reached must itself be private, and is returned open, so that the caller
//! writes relative to that descriptor, not to a path someone may change.

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

/// How many symlinks one resolution follows at most (Linux's own limit).
const MAX_LINKS: usize = 40;

const DIR_FLAGS: OFlag = OFlag::O_DIRECTORY
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_RDONLY)
    .union(OFlag::O_CLOEXEC);

/// Why a directory is not private: its owner and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotPrivate {
    pub uid: u32,
    pub mode: u32,
}

impl NotPrivate {
    /// `PATH is owned by uid U, not by uid E` or `PATH is writable by group
    /// or others (mode M)`, with what is done about it.
    pub fn describe(&self, path: &Path) -> String {
        let euid = euid();
        if self.uid != euid {
            format!(
                "{} is owned by uid {} (mode {:o}), not by the recipient (uid {euid}); refusing to write into it",
                path.display(),
                self.uid,
                self.mode
            )
        } else {
            format!(
                "{} is writable by group or others (mode {:o}); refusing to write into it",
                path.display(),
                self.mode
            )
        }
    }
}

pub fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Checks that a directory with stat `st` is private: owned by the running
/// user (or by root when `root_ok`), no group or other write bit.
pub fn check(st: &FileStat, root_ok: bool) -> Result<(), NotPrivate> {
    let owner_ok = st.st_uid == euid() || (root_ok && st.st_uid == 0);
    if owner_ok && st.st_mode & 0o022 == 0 {
        Ok(())
    } else {
        Err(NotPrivate {
            uid: st.st_uid,
            mode: st.st_mode & 0o7777,
        })
    }
}

fn is_private(st: &FileStat) -> bool {
    check(st, true).is_ok()
}

fn components(p: &Path) -> impl Iterator<Item = OsString> + '_ {
    p.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

/// Opens `path` as a directory to read from, following symlinks: what is
/// read from it is trusted by its own owner, mode and content, never by
/// where it lies (see `crate::policy::maps::index::trusted`). The directory
/// reached must still be owned by the running user or by root and not
/// writable by group or others. `Ok(None)` when it does not exist. Two
/// system calls, where `open_private` takes three for each component.
pub fn open_to_read(path: &Path) -> Result<Option<OwnedFd>, String> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let fd = match nix::fcntl::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(format!("{}: {}", path.display(), e.desc())),
    };
    let st = fstat(&fd).map_err(|e| format!("{}: {}", path.display(), e.desc()))?;
    match check(&st, true) {
        Ok(()) => Ok(Some(fd)),
        Err(n) => Err(format!(
            "{} is not used: owned by uid {} (mode {:o}); a cache directory must belong to root or uid {} and not be writable by group or others",
            path.display(),
            n.uid,
            n.mode,
            euid()
        )),
    }
}

/// Opens `path` as a directory to write into, as the module comment says.
/// A missing component is created with `create`'s mode (exactly that mode,
/// whatever the umask) when it is given, and is otherwise `Ok(None)`. The
/// directory reached must be owned by the running user or by root, and not
/// writable by group or others. Errors name the path and say why.
pub fn open_private(path: &Path, create: Option<u32>) -> Result<Option<OwnedFd>, String> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("{}: {e}", path.display()))?
            .join(path)
    };
    let err = |p: &Path, e: Errno| format!("{}: {}", p.display(), e.desc());
    let open_root =
        || nix::fcntl::open("/", DIR_FLAGS, Mode::empty()).map_err(|e| err(Path::new("/"), e));
    let mut cur = open_root()?;
    let mut cur_st = fstat(&cur).map_err(|e| err(Path::new("/"), e))?;
    // Where `cur` is, for messages: the path as written, with symlinks
    // shown as the names they were reached by.
    let mut shown = PathBuf::from("/");
    let mut pending: Vec<OsString> = components(&abs).collect();
    pending.reverse();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        let here = shown.join(&c);
        let opened = match openat(&cur, c.as_os_str(), DIR_FLAGS, Mode::empty()) {
            Err(Errno::ENOENT) if c != ".." => match create {
                None => return Ok(None),
                Some(mode) => {
                    match mkdirat(&cur, c.as_os_str(), Mode::from_bits_truncate(mode)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => {
                            return Err(format!("cannot create {}: {}", here.display(), e.desc()))
                        }
                    }
                    let fd = openat(&cur, c.as_os_str(), DIR_FLAGS, Mode::empty())
                        .map_err(|e| open_error(&here, e))?;
                    // The umask may have taken bits a reader needs.
                    let st = fstat(&fd).map_err(|e| err(&here, e))?;
                    if st.st_uid == euid() && st.st_mode & 0o7777 != mode {
                        fchmod(&fd, Mode::from_bits_truncate(mode))
                            .map_err(|e| format!("chmod {}: {}", here.display(), e.desc()))?;
                    }
                    Ok(fd)
                }
            },
            r => r,
        };
        let fd = match opened {
            Ok(fd) => fd,
            // A symlink: ELOOP, or ENOTDIR (O_DIRECTORY is checked on the
            // link itself); ENOTDIR also for a file that is not a directory.
            Err(e @ (Errno::ELOOP | Errno::ENOTDIR)) => {
                let st = fstatat(
                    &cur,
                    c.as_os_str(),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| err(&here, e))?;
                if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFLNK {
                    return Err(open_error(&here, e));
                }
                if !is_private(&cur_st) {
                    return Err(format!(
                        "{} is a symlink in {}, which others can write (owner uid {}, mode {:o}); refusing to follow it",
                        here.display(),
                        shown.display(),
                        cur_st.st_uid,
                        cur_st.st_mode & 0o7777
                    ));
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(open_error(&here, e));
                }
                let target = readlinkat(&cur, c.as_os_str()).map_err(|e| err(&here, e))?;
                let target = PathBuf::from(target);
                if target.is_absolute() {
                    cur = open_root()?;
                    cur_st = fstat(&cur).map_err(|e| err(Path::new("/"), e))?;
                    shown = PathBuf::from("/");
                }
                let mut parts: Vec<OsString> = components(&target).collect();
                parts.reverse();
                pending.extend(parts);
                continue;
            }
            Err(e) => return Err(open_error(&here, e)),
        };
        cur_st = fstat(&fd).map_err(|e| err(&here, e))?;
        cur = fd;
        if c == ".." {
            shown.pop();
        } else {
            shown = here;
        }
    }
    check(&cur_st, true).map_err(|n| n.describe(path))?;
    Ok(Some(cur))
}

fn open_error(path: &Path, e: Errno) -> String {
    match e {
        Errno::ENOTDIR => format!("{} is not a directory", path.display()),
        _ => format!("{}: {}", path.display(), e.desc()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    #[test]
    fn creates_follows_private_symlinks_and_refuses_others() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().canonicalize().unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).unwrap();
        let made = base.join("a/b");
        assert!(open_private(&made, None).unwrap().is_none());
        assert!(open_private(&made, Some(0o700)).unwrap().is_some());
        assert_eq!(fs::metadata(&made).unwrap().mode() & 0o7777, 0o700);
        // A symlink in a private directory is followed, relative or not.
        symlink("a/b", base.join("rel")).unwrap();
        symlink(&made, base.join("abs")).unwrap();
        assert!(open_private(&base.join("rel"), None).unwrap().is_some());
        assert!(open_private(&base.join("abs"), None).unwrap().is_some());
        assert!(open_private(&base.join("a/../a/b"), None)
            .unwrap()
            .is_some());
        // In one others can write, it is not.
        let open = base.join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        symlink(&made, open.join("link")).unwrap();
        let e = open_private(&open.join("link"), None).unwrap_err();
        assert!(e.contains("refusing to follow"), "{e}");
        // Nor is a directory others can write used, though reached.
        let e = open_private(&open, None).unwrap_err();
        assert!(e.contains("writable by group or others (mode 777)"), "{e}");
        fs::write(base.join("file"), "x").unwrap();
        let e = open_private(&base.join("file"), Some(0o700)).unwrap_err();
        assert!(e.contains("not a directory"), "{e}");
        symlink("loop", base.join("loop")).unwrap();
        assert!(open_private(&base.join("loop"), None).is_err());
    }
}
