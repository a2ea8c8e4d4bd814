//! Index cache: large text tables are parsed once and stored as cdb files.
//!
//! A delivery agent runs once per message. Parsing a 1,000,000-line
//! texthash file at every delivery would cost about a second; mapping a cdb
//! index costs microseconds. So, when a cache directory is set and a source
//! is larger than [`THRESHOLD`] bytes, the first open parses it and writes
//! `DIR/NAME`, and later opens map that file instead of parsing.
//!
//! Whose index is believed (the trust decision, shared by every [`Kind`]):
//! - An index stands in for its source, so it is trusted only as far as the
//!   source is: it must be a regular file owned by root or by the owner of
//!   the source, not writable by group or others ([`trusted`]), in a
//!   directory owned by root or by the running user and not writable by group
//!   or others. An index the recipient wrote of a table root owns is never
//!   believed, wherever it lies.
//! - An index is written only by root or by the owner of the source
//!   ([`may_write`]).
//! - Where ([`dir_for`]): the running user's own sources (not root's) are
//!   indexed in their own cache directory (`~/.cache/deliver`, or the system
//!   setting `map_cache_dir`); every other source (root's, or another
//!   user's) only in the system cache directory ([`SYSTEM_CACHE_DIR`] or the
//!   system setting `system_cache_dir`), which only root writes: `deliver
//!   check` run as root builds the indexes of the system file's tables
//!   there, and a delivery only reads them. Root creates that directory with
//!   mode 0755 and gives an index the read permissions (and group) of its
//!   source, so whoever may read the source may read its index.
//!
//! Promises:
//! - NAME is derived from the source's path, device, inode, size and mtime in
//!   nanoseconds (`access-<path hash>-<dev>-<ino>-<size>-<mtime ns>.v1.cdb`),
//!   so any change to the source (rewrite, rename over it, touch) selects a
//!   new NAME: a stale index is never used. The index also records that
//!   identity, and it is checked again when the index is opened.
//! - A user's cache directory is created with mode 0700; their index files
//!   get mode 0600.
//!   An index is written to a temporary name in the same directory, synced,
//!   and renamed into place, so readers see a complete file or none, and any
//!   number of concurrent builders may race (each renames an identical file).
//! - After writing a new index, the other index files of the same source path
//!   are removed (and temporary files of that path older than an hour).
//! - The cache is an optimisation only: if the directory cannot be created
//!   or written (read-only, no space, a file in the way) or is not safe (not
//!   owned by us or by root, or writable by group or others: someone else
//!   could plant a forged index; or reached through a symlink in a
//!   directory others can write: `crate::store::safedir`), or an index is
//!   unreadable or not trusted,
//!   or nobody has written the index of a source we may not index, lookups
//!   are answered by parsing the source, and the table's note says why. The
//!   lookup never fails because of the cache.
//! - A source modified less than [`HOT_SECONDS`] ago, or while it was being
//!   read, is parsed but not indexed (its mtime may not yet tell the change
//!   apart), like Postfix's dict_thash "cool down" rule.
//!
//! Threshold ([`THRESHOLD`], 16 KiB): opening an index and doing one lookup
//! costs the same whatever the table's size, while parsing grows linearly
//! with it. Below the threshold a table that is not indexed is parsed well
//! within 1 ms even when all eight access tables of a delivery (client,
//! helo, sender, recipient; system and user) are, and an index would save
//! little and cost one more file per table in the cache; larger files are
//! indexed. The figures, and the ignored test that prints them
//! (`measure_open_and_lookup` in `tests/index_cache.rs`), are in
//! BENCHMARKS.md, "Measurements behind design choices".

use super::cdb::{Cdb, CdbWriter};
use nix::dir::Dir;
use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::fs::{self, File, Metadata};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Sources larger than this many bytes are indexed.
pub const THRESHOLD: u64 = 16 * 1024;

/// Sources modified less than this many seconds ago are not indexed.
pub const HOT_SECONDS: u64 = 2;

/// Why [`write_index`] wrote no index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotWritten {
    /// The source was modified less than [`HOT_SECONDS`] ago: after that
    /// long, the same call may write the index.
    pub hot: bool,
    pub why: String,
}

impl std::fmt::Display for NotWritten {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

/// A reason that waiting does not change.
impl From<String> for NotWritten {
    fn from(why: String) -> NotWritten {
        NotWritten { hot: false, why }
    }
}

/// The default system cache directory: indexes of sources the running user
/// does not own (or of every source, when root runs), written only by root.
pub const SYSTEM_CACHE_DIR: &str = "/var/cache/deliver";

const META_KEY: &[u8] = b"\0deliver-index-v1";
const NOTES_KEY: &[u8] = b"\0notes";

/// What is cached: its file-name prefix and format version. A new version
/// selects new file names, so an old index is never read by a newer format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub prefix: &'static str,
    pub version: &'static str,
}

/// Indexes of large text access tables.
pub const MAP: Kind = Kind {
    prefix: "",
    version: "v1",
};

/// What identifies one version of a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SourceId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl SourceId {
    pub(crate) fn of(m: &Metadata) -> SourceId {
        SourceId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        }
    }
}

/// FNV-1a, 64 bits: a stable hash of the source path for file names.
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

/// The file name prefix shared by all indexes of `path`.
fn prefix(kind: Kind, path: &Path) -> String {
    prefix_abs(kind, &absolute(path))
}

/// `prefix` of a path made absolute already.
fn prefix_abs(kind: Kind, abs: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let stem: String = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let stem = stem.trim_start_matches('.');
    format!(
        "{}{}-{:016x}-",
        kind.prefix,
        stem,
        fnv1a(abs.as_os_str().as_bytes())
    )
}

/// The index file name of one version of `path`.
pub(crate) fn index_name(kind: Kind, path: &Path, id: &SourceId) -> String {
    index_name_abs(kind, &absolute(path), id)
}

/// `index_name` of a path made absolute already.
fn index_name_abs(kind: Kind, abs: &Path, id: &SourceId) -> String {
    format!(
        "{}{:x}-{:x}-{:x}-{:x}.{}.cdb",
        prefix_abs(kind, abs),
        id.dev,
        id.ino,
        id.size,
        id.mtime_ns,
        kind.version
    )
}

/// What an index records about its source: the absolute path (`abs`) and
/// the identity.
fn meta_value(abs: &Path, id: &SourceId) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut v = abs.as_os_str().as_bytes().to_vec();
    v.extend_from_slice(format!("\n{} {} {} {}", id.dev, id.ino, id.size, id.mtime_ns).as_bytes());
    v
}

fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The cache directory for the indexes of a source with metadata `source`:
/// `own` (the running user's cache directory) when the running user owns the
/// source and is not root; `system` for every other source, and for every
/// source when root runs. `None` when that directory is not set: no index.
pub fn dir_for<'a>(
    own: Option<&'a Path>,
    system: Option<&'a Path>,
    source: &Metadata,
) -> Option<&'a Path> {
    let euid = effective_uid();
    if euid != 0 && source.uid() == euid {
        own
    } else {
        system
    }
}

/// May the running process write the index of a source with metadata
/// `source`? Only root and the source's owner may.
pub fn may_write(source: &Metadata) -> bool {
    let euid = effective_uid();
    euid == 0 || euid == source.uid()
}

/// Is the file with metadata `index` trusted as the index of a source with
/// metadata `source`? It must be a regular file owned by root or by the
/// source's owner, and not writable by group or others. (That it is the
/// index of this very source is checked from its content, in [`open_index`].)
pub fn trusted(index: &Metadata, source: &Metadata) -> bool {
    index.is_file()
        && (index.uid() == 0 || index.uid() == source.uid())
        && index.mode() & 0o022 == 0
}

/// The path the index of the current version of `path` has in `dir`.
pub fn index_path(kind: Kind, dir: &Path, path: &Path, meta: &Metadata) -> PathBuf {
    dir.join(index_name(kind, path, &SourceId::of(meta)))
}

/// Opens the cache directory `dir` (creating it when `create` gives its
/// mode): a directory owned by root or by us, not writable by group or
/// others, reached without following a symlink that someone else could have
/// planted (`crate::store::safedir`). Indexes are written relative to it.
fn open_dir(dir: &Path, create: Option<u32>) -> Result<Option<OwnedFd>, String> {
    crate::store::safedir::open_private(dir, create)
}

/// The mode of a cache directory we create: root's is read by every user.
fn dir_mode() -> u32 {
    if effective_uid() == 0 {
        0o755
    } else {
        0o700
    }
}

/// Open the index of the current version of `path` (whose metadata is
/// `meta`), if there is a trusted one in `dir`.
/// `Ok(None)`: no usable index yet (build one when [`may_write`] allows; else
/// [`write_index`] says why not). `Err`: the cache directory is not usable at
/// all, or, for a source we may not index, the index cannot be read.
/// The directory is created (see [`dir_for`] for its mode) only when we may
/// write the index.
pub(crate) fn open_index(
    kind: Kind,
    dir: &Path,
    path: &Path,
    meta: &Metadata,
) -> Result<Option<(Cdb, Vec<String>)>, String> {
    let writer = may_write(meta);
    // The directory is made (`open_private`) only when an index is written.
    let Some(dfd) = crate::store::safedir::open_to_read(dir)? else {
        return Ok(None);
    };
    let id = SourceId::of(meta);
    // Once: for a relative path this is a getcwd(2).
    let abs = absolute(path);
    let name = index_name_abs(kind, &abs, &id);
    let ipath = dir.join(&name);
    // Without blocking, and a regular file only (crate::input::safe_open).
    let (file, fm) = match crate::input::safe_open::open_at(dfd.as_fd(), name.as_ref(), &ipath) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => return Ok(None),
        // We would rebuild it; a reader says why it cannot use it.
        Err(_) if writer => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if !trusted(&fm, meta) {
        if writer {
            return Ok(None);
        }
        return Err(format!(
            "{} is not trusted (owner uid {}, mode {:o}; an index of {} must belong to root or uid {} and not be writable by group or others)",
            ipath.display(),
            fm.uid(),
            fm.mode() & 0o7777,
            path.display(),
            meta.uid()
        ));
    }
    // The metadata of the trust check gives the length: no second fstat.
    let Ok(cdb) = Cdb::from_file_len(&ipath, &file, fm.len()) else {
        return Ok(None);
    };
    match cdb.get(META_KEY) {
        Ok(Some(v)) if v == meta_value(&abs, &id).as_slice() => {}
        _ => return Ok(None),
    }
    let notes = match cdb.get(NOTES_KEY) {
        Ok(Some(v)) if !v.is_empty() => String::from_utf8_lossy(v)
            .split('\n')
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    Ok(Some((cdb, notes)))
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}.{}.{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Write the index of `path` (whose parsed content is `entries`) into `dir`.
/// Returns the index path.
pub(crate) fn write_index<'a>(
    kind: Kind,
    dir: &Path,
    path: &Path,
    meta: &Metadata,
    entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    notes: &[String],
) -> Result<PathBuf, NotWritten> {
    let euid = effective_uid();
    if !may_write(meta) {
        return Err(NotWritten::from(format!(
            "no index of {} in {}: the table belongs to uid {}, and only root or its owner may index it (uid {euid} only reads it), so it is parsed at each open; `deliver check`, run as root, builds the index",
            path.display(),
            dir.display(),
            meta.uid()
        )));
    }
    let id = SourceId::of(meta);
    if let Ok(age) = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH + Duration::from_nanos(id.mtime_ns.max(0) as u64))
    {
        if age < Duration::from_secs(HOT_SECONDS) {
            return Err(NotWritten {
                hot: true,
                why: format!(
                    "{} was modified less than {HOT_SECONDS} s ago; not indexed yet",
                    path.display()
                ),
            });
        }
    } else {
        return Err(NotWritten::from(format!(
            "{} has an mtime in the future; not indexed",
            path.display()
        )));
    }
    let dfd = open_dir(dir, Some(dir_mode()))?
        .ok_or_else(|| format!("cannot create {}", dir.display()))?;
    // Root's indexes are read by the users who may read the source: the
    // source's read permissions and group. A user's own: 0600.
    let (mode, gid) = if euid == 0 {
        (0o600 | (meta.mode() & 0o044), Some(meta.gid()))
    } else {
        (0o600, None)
    };
    let name = index_name(kind, path, &id);
    let final_path = dir.join(&name);
    let tmp_name = format!(".{name}.{}.tmp", unique_suffix());
    let result = (|| -> io::Result<()> {
        // A new name (O_EXCL), never a symlink: written, synced, renamed,
        // all relative to the directory checked above.
        let file = File::from(openat(
            &dfd,
            tmp_name.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )?);
        let mut w = CdbWriter::new(file)?;
        w.add(META_KEY, &meta_value(&absolute(path), &id))?;
        w.add(NOTES_KEY, notes.join("\n").as_bytes())?;
        for (k, v) in entries {
            w.add(k, v)?;
        }
        let file = w.finish()?;
        let mut mode = mode;
        if let Some(gid) = gid {
            if mode & 0o040 != 0 && std::os::unix::fs::fchown(&file, None, Some(gid)).is_err() {
                mode &= !0o040;
            }
        }
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        renameat(&dfd, tmp_name.as_str(), &dfd, name.as_str())?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = unlinkat(&dfd, tmp_name.as_str(), UnlinkatFlags::NoRemoveDir);
        return Err(NotWritten::from(format!(
            "cannot write {}: {e}",
            final_path.display()
        )));
    }
    remove_stale(kind, &dfd, path, &name);
    Ok(final_path)
}

/// Remove the other indexes of `path`, and its abandoned temporary files,
/// from the cache directory open as `dir`.
fn remove_stale(kind: Kind, dir: &OwnedFd, path: &Path, keep: &str) {
    let prefix = prefix(kind, path);
    let tmp_prefix = format!(".{prefix}");
    let Ok(mut entries) = dir
        .try_clone()
        .map_err(drop)
        .and_then(|d| Dir::from_fd(d).map_err(drop))
    else {
        return;
    };
    let names: Vec<std::ffi::CString> = entries
        .iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_owned())
        .collect();
    for n in names {
        let name = n.to_string_lossy();
        if name == keep {
            continue;
        }
        if name.starts_with(&prefix) && name.ends_with(".cdb") {
            let _ = unlinkat(dir, n.as_c_str(), UnlinkatFlags::NoRemoveDir);
        } else if name.starts_with(&tmp_prefix) && name.ends_with(".tmp") {
            let old = fstatat(dir, n.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .ok()
                .and_then(|st| {
                    SystemTime::UNIX_EPOCH
                        .checked_add(Duration::from_secs(st.st_mtime.max(0) as u64))
                })
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
            if old {
                let _ = unlinkat(dir, n.as_c_str(), UnlinkatFlags::NoRemoveDir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_depend_on_identity_and_share_a_prefix() {
        let a = SourceId {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: 4,
        };
        let b = SourceId { mtime_ns: 5, ..a };
        let p = Path::new("/etc/postfix/sender access");
        let na = index_name(MAP, p, &a);
        let nb = index_name(MAP, p, &b);
        assert_ne!(na, nb);
        assert!(na.starts_with(&prefix(MAP, p)) && nb.starts_with(&prefix(MAP, p)));
        assert!(na.starts_with("sender_access-"), "{na}");
        assert_ne!(
            prefix(MAP, p),
            prefix(MAP, Path::new("/etc/postfix2/sender access"))
        );
    }

    #[test]
    fn unsafe_dirs_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("cache");
        let to_read = crate::store::safedir::open_to_read;
        assert!(to_read(&dir).unwrap().is_none(), "not created for a reader");
        assert!(!dir.exists());
        assert!(open_dir(&dir, Some(0o700)).unwrap().is_some());
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(to_read(&dir)
            .unwrap_err()
            .contains("writable by group or others"));
        assert!(open_dir(&dir, None)
            .unwrap_err()
            .contains("writable by group or others"));
        let file = d.path().join("plain");
        fs::write(&file, "x").unwrap();
        assert!(open_dir(&file, Some(0o700))
            .unwrap_err()
            .contains("not a directory"));
        assert!(open_dir(&file.join("sub"), Some(0o700)).is_err());
        assert!(to_read(&file).is_err());
    }

    #[test]
    fn trust_follows_the_owner_of_the_source() {
        let d = tempfile::tempdir().unwrap();
        let file = |name: &str, mode: u32| {
            let p = d.path().join(name);
            fs::write(&p, "x").unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        let me = effective_uid();
        let src = file("src", 0o644);
        let idx = file("idx", 0o600);
        let md = |p: &Path| fs::metadata(p).unwrap();
        assert!(trusted(&md(&idx), &md(&src)), "same owner");
        assert!(may_write(&md(&src)));
        let loose = file("loose", 0o620);
        assert!(!trusted(&md(&loose), &md(&src)), "group-writable");
        assert!(!trusted(&md(d.path()), &md(&src)), "not a regular file");
        // Root's sources (and, when root runs, all) are indexed in the system
        // directory; a user's own in their own.
        let (own, sys) = (Path::new("/own"), Path::new("/sys"));
        assert_eq!(
            dir_for(Some(own), Some(sys), &md(Path::new("/"))),
            Some(sys)
        );
        let want = if me == 0 { sys } else { own };
        assert_eq!(dir_for(Some(own), Some(sys), &md(&src)), Some(want));
        if me == 0 {
            // Another user's index of root's source: not trusted; root's index
            // of that user's source: trusted; the user's own: trusted.
            let other = 65534;
            let uidx = file("uidx", 0o600);
            std::os::unix::fs::chown(&uidx, Some(other), None).unwrap();
            assert!(!trusted(&md(&uidx), &md(&src)));
            let usrc = file("usrc", 0o644);
            std::os::unix::fs::chown(&usrc, Some(other), None).unwrap();
            assert!(trusted(&md(&uidx), &md(&usrc)));
            assert!(trusted(&md(&idx), &md(&usrc)));
            let third = file("third", 0o600);
            std::os::unix::fs::chown(&third, Some(other - 1), None).unwrap();
            assert!(!trusted(&md(&third), &md(&usrc)), "a third user's");
        } else {
            assert!(!may_write(&md(Path::new("/"))));
        }
    }
}
