//! The per-user state behind vacation, duplicates and retries: which
//! senders were replied to, which messages were seen, and which side
//! effects of a delivery are already done (the journal).
//!
//! It lives with the user's mail, in `deliver-state/` inside the Maildir
//! (a name without a leading dot, so that no IMAP server takes it for a
//! Maildir++ folder), so that every delivery host that sees the Maildir
//! sees the same state:
//!
//! ```text
//! Maildir/deliver-state/
//!     tmp/        expired entries taken out of the way
//!     replied/    one file per (vacation handle, sender)
//!     seen/       one file per message key (Message-ID or digest)
//!     journal/    one file per (delivery, side effect)
//!     sweep       its mtime: when the next sweep is due
//! ```
//!
//! One entry is one small file named by the SHA-256 of its key (32 hex
//! digits). Its content is a version line with the time it expires
//! (`deliver-state 1 EXPIRY`) and a short text (the owner of a `seen`
//! entry, what a journal entry did); its mtime is set to the expiry too,
//! for the sweep and for `exists`. Every change is one atomic system call
//! that NFS (version 3 and later) performs on the server:
//! - an entry is made with `O_CREAT|O_EXCL` under its own name, which
//!   fails with EEXIST when another delivery got there first, and its
//!   content is written in one write(2). An empty entry is one being
//!   written (or left so by a killed writer): it counts as live, so no
//!   one can take it for expired, whatever the clocks of the hosts;
//! - an expired entry is replaced only by the delivery that made its
//!   replacement lock, `NAME.lock`, itself an entry made with O_EXCL (its
//!   expiry in its content, two minutes on): no delivery ever moves or
//!   removes a live entry, and one that finds the lock taken counts the
//!   entry as held (no reply rather than two). A lock past its expiry was
//!   left by a killed delivery and is broken.
//!
//! No flock(2) or fcntl(2) lock (both unreliable over NFS),
//! no append (O_APPEND is not atomic over NFS): the same guarantees that
//! the Maildir protocol relies on.
//!
//! Consequences:
//! - the common case of each kind is cheap: a sender already replied to is
//!   one open and read; a journal check is one fstatat(2); a new entry is
//!   one create, write and futimens; the number of entries does not
//!   matter (one directory lookup);
//! - 64 concurrent claims of one key: exactly one wins;
//! - kill -9 at any point leaves the old entry, no entry, an empty entry
//!   (live, until the sweep removes it an hour later) or the new one, plus
//!   at most one file in `tmp/`, which the sweep removes;
//! - the size is bounded: the sweep (at most once per `SWEEP_INTERVAL`,
//!   by the one delivery that claims the `sweep` marker) removes expired
//!   entries and, past `MAX_ENTRIES` in one directory, the oldest;
//! - entries are not fsynced: a power failure (not a killed process) may
//!   forget the last entries, which costs at most one repeated reply or
//!   side effect, never a lost message.
//!
//! What is not usable (the directory is someone else's, a symlink, an I/O
//! error) is reported to the caller, who decides: no reply (never a reply
//! storm), not a duplicate (never a lost message). A `deliver-state` that
//! is a regular file is moved aside and rebuilt; a broken entry (not a
//! regular file, a bad version line) counts as present for a claim and is
//! removed by the sweep.

use crate::store::maildir::{self, DirError, Maildir};
use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, futimens, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{unlinkat, UnlinkatFlags};
use sha2::{Digest, Sha256};
use std::cell::OnceCell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The directory in the Maildir.
pub const DIR: &str = "deliver-state";
/// How often the sweep runs at most.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);
/// Entries one directory keeps at most; the sweep removes the oldest (for
/// `replied`, a sender may then get a second reply within the period).
pub const MAX_ENTRIES: usize = 50_000;
/// How long a journal entry is kept: longer than Postfix keeps a message
/// in its queue (`maximal_queue_lifetime`, 5 days by default).
pub const JOURNAL_KEEP: Duration = Duration::from_secs(10 * 86400);
/// An entry expiring further ahead than this is broken (a clock that was
/// wrong, or a file that is not ours): the sweep removes it.
const MAX_HORIZON: Duration = Duration::from_secs(400 * 86400);
/// A file in `tmp/` older than this is left over from a killed delivery.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// How long a replacement lock (`claim_in`) stands before it is taken for
/// one left by a killed delivery and broken.
const LOCK_TTL: Duration = Duration::from_secs(120);
/// The start of every entry: `deliver-state 1 EXPIRY\n`, EXPIRY in Unix
/// seconds.
const VERSION: &[u8] = b"deliver-state 1 ";

/// The three kinds of entry, one directory each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Vacation: a sender replied to, per vacation handle.
    Replied,
    /// Duplicates: a message key seen.
    Seen,
    /// The journal: a side effect done by one delivery.
    Journal,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Replied, Kind::Seen, Kind::Journal];

    pub fn dir(self) -> &'static str {
        match self {
            Kind::Replied => "replied",
            Kind::Seen => "seen",
            Kind::Journal => "journal",
        }
    }
}

/// An entry that is there and not expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub expires: SystemTime,
    /// The text after the version line (empty when unreadable).
    pub content: Vec<u8>,
}

/// The result of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This delivery made the entry.
    Won,
    /// A live entry is there (made by someone else, or earlier).
    Held(Entry),
}

/// What one sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub expired: usize,
    pub over_cap: usize,
    pub broken: usize,
    pub stale_tmp: usize,
}

/// The open state directory of one Maildir.
#[derive(Debug)]
pub struct State {
    path: std::path::PathBuf,
    root: OwnedFd,
    /// The directories below, opened (created) on first use.
    tmp: OnceCell<OwnedFd>,
    kinds: [OnceCell<OwnedFd>; 3],
    /// Things worth a log line found while opening (a rebuilt directory).
    pub notes: Vec<String>,
}

/// The name of the entry for `parts`: the SHA-256 of the parts, each
/// preceded by its length (so that no two lists of parts collide), as 32
/// hex digits (128 bits).
pub fn key(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex(&h.finalize()[..16])
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The identity of one delivery, the same when Postfix retries it: the
/// recipient and the header block as Postfix hands it over (its own
/// `Return-Path:`, `Delivered-To:` and `Received:` lines with the queue id
/// included; the `From_` line, whose date changes at each attempt, is not).
/// Two submissions of one message differ in their `Received:` lines, so
/// they are two deliveries.
pub fn delivery_id(recipient: &str, header_block: &[u8]) -> String {
    key(&[b"delivery", recipient.as_bytes(), header_block])
}

fn secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

fn from_secs(s: i64) -> SystemTime {
    if s >= 0 {
        UNIX_EPOCH + Duration::from_secs(s as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(s.unsigned_abs())
    }
}

fn io_err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn broken(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

const FILE_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_NONBLOCK)
    .union(OFlag::O_CLOEXEC);

impl State {
    /// Opens (creating when missing) the state directory of `md`. A
    /// `deliver-state` that is a regular file is renamed aside and a new
    /// directory made (noted in `notes`); anything else that cannot be used
    /// is an error saying why.
    pub fn open(md: &Maildir) -> Result<State, String> {
        let path = md.path().join(DIR);
        let mut notes = Vec::new();
        let root = match maildir::open_dir(md.root(), DIR, true) {
            Ok((fd, _)) => fd,
            Err(DirError::Sys(Errno::ENOTDIR)) if is_regular(md.root(), DIR) => {
                let aside = format!("{DIR}.broken.{}", maildir::unique_name());
                renameat(md.root(), DIR, md.root(), aside.as_str())
                    .map_err(|e| format!("{}: {}", path.display(), e.desc()))?;
                notes.push(format!(
                    "{} was a file, not a directory: moved to {aside}, state rebuilt",
                    path.display()
                ));
                maildir::open_dir(md.root(), DIR, true)
                    .map_err(|e| maildir::dir_error(&path, e))?
                    .0
            }
            Err(e) => return Err(maildir::dir_error(&path, e)),
        };
        Ok(State {
            path,
            root,
            tmp: OnceCell::new(),
            kinds: Default::default(),
            notes,
        })
    }

    /// A directory below the root, opened (and created) once.
    fn sub<'s>(&'s self, cell: &'s OnceCell<OwnedFd>, name: &str) -> io::Result<BorrowedFd<'s>> {
        if let Some(fd) = cell.get() {
            return Ok(fd.as_fd());
        }
        let fd = match maildir::open_dir(self.root.as_fd(), name, true) {
            Ok((fd, _)) => fd,
            Err(DirError::Sys(e)) => return Err(io_err(e)),
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    maildir::dir_error(&self.path.join(name), e),
                ))
            }
        };
        Ok(cell.get_or_init(|| fd).as_fd())
    }

    fn dir(&self, kind: Kind) -> io::Result<BorrowedFd<'_>> {
        self.sub(&self.kinds[kind as usize], kind.dir())
    }

    fn tmp(&self) -> io::Result<BorrowedFd<'_>> {
        self.sub(&self.tmp, "tmp")
    }

    /// The live entry `name` of `kind`, if any. A broken entry (not a
    /// regular file, a bad version line) is an `InvalidData` error.
    pub fn get(&self, kind: Kind, name: &str, now: SystemTime) -> io::Result<Option<Entry>> {
        get_in(self.dir(kind)?, name, now)
    }

    /// Whether a live entry is there, without reading it: one fstatat(2).
    /// A broken entry counts as there.
    pub fn exists(&self, kind: Kind, name: &str, now: SystemTime) -> io::Result<bool> {
        match fstatat(self.dir(kind)?, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if is_reg(st.st_mode) => Ok(live(st.st_mtime, now)),
            Ok(_) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Makes the entry `name` of `kind`, expiring at `expires`, unless a
    /// live one is there: exactly one of any number of concurrent claims
    /// wins. An expired entry is replaced. A broken entry is `Held` with an
    /// empty content (the caller does nothing rather than twice).
    pub fn claim(
        &self,
        kind: Kind,
        name: &str,
        expires: SystemTime,
        content: &[u8],
        now: SystemTime,
    ) -> io::Result<Claim> {
        claim_in(self.dir(kind)?, name, expires, content, now)
    }

    /// Removes the entry `name` of `kind` (none there is fine).
    pub fn remove(&self, kind: Kind, name: &str) -> io::Result<()> {
        match unlinkat(self.dir(kind)?, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Runs the sweep when it is due and this delivery is the one that
    /// claims it: one fstatat(2) when it is not due.
    pub fn maybe_sweep(&self, now: SystemTime) -> Option<Swept> {
        if fstatat(self.root.as_fd(), "sweep", AtFlags::AT_SYMLINK_NOFOLLOW)
            .is_ok_and(|st| is_reg(st.st_mode) && live(st.st_mtime, now))
        {
            return None;
        }
        let next = now + SWEEP_INTERVAL;
        match claim_in(self.root.as_fd(), "sweep", next, b"", now) {
            Ok(Claim::Won) => Some(self.sweep(now)),
            _ => None,
        }
    }

    /// Removes expired and broken entries, the oldest entries past
    /// `MAX_ENTRIES`, and files left in `tmp/` by killed deliveries.
    pub fn sweep(&self, now: SystemTime) -> Swept {
        let mut s = Swept::default();
        let horizon = secs(now + MAX_HORIZON);
        let stale = secs(now) - STALE_TMP.as_secs() as i64;
        for kind in Kind::ALL {
            let Ok(dir) = self.dir(kind) else { continue };
            let mut alive = Vec::new();
            for (name, st) in list(dir) {
                if !is_reg(st.st_mode) {
                    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR
                        && unlinkat(dir, name.as_str(), UnlinkatFlags::NoRemoveDir).is_ok()
                    {
                        s.broken += 1;
                    }
                    continue;
                }
                if st.st_size == 0 {
                    if st.st_ctime < stale
                        && unlinkat(dir, name.as_str(), UnlinkatFlags::NoRemoveDir).is_ok()
                    {
                        s.broken += 1;
                    }
                    continue;
                }
                // A minute of grace: the mtime of an entry is the time it
                // was written until its writer sets the expiry.
                if st.st_mtime < secs(now) - 60 || st.st_mtime > horizon {
                    if unlinkat(dir, name.as_str(), UnlinkatFlags::NoRemoveDir).is_ok() {
                        if st.st_mtime > horizon {
                            s.broken += 1;
                        } else {
                            s.expired += 1;
                        }
                    }
                    continue;
                }
                alive.push((st.st_mtime, name));
            }
            if alive.len() > MAX_ENTRIES {
                alive.sort();
                let excess = alive.len() - MAX_ENTRIES;
                for (_, name) in &alive[..excess] {
                    if unlinkat(dir, name.as_str(), UnlinkatFlags::NoRemoveDir).is_ok() {
                        s.over_cap += 1;
                    }
                }
            }
        }
        let Ok(tmp) = self.tmp() else { return s };
        for (name, st) in list(tmp) {
            // ctime: the mtime of a file in tmp/ is its future expiry.
            if st.st_ctime < stale
                && unlinkat(tmp, name.as_str(), UnlinkatFlags::NoRemoveDir).is_ok()
            {
                s.stale_tmp += 1;
            }
        }
        s
    }
}

/// Whether an entry whose mtime (its expiry) is `mtime` is live at `now`.
fn live(mtime: i64, now: SystemTime) -> bool {
    mtime > secs(now)
}

fn is_reg(mode: u32) -> bool {
    SFlag::from_bits_truncate(mode) & SFlag::S_IFMT == SFlag::S_IFREG
}

fn is_regular(dir: BorrowedFd<'_>, name: &str) -> bool {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| is_reg(st.st_mode))
}

/// The names in `dir` with their stat, `.` and `..` left out.
fn list(dir: BorrowedFd<'_>) -> Vec<(String, nix::sys::stat::FileStat)> {
    let Ok(dup) = dir.try_clone_to_owned() else {
        return Vec::new();
    };
    let Ok(mut d) = nix::dir::Dir::from_fd(dup) else {
        return Vec::new();
    };
    let names: Vec<String> = d
        .iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
        .filter(|n| n != "." && n != "..")
        .collect();
    names
        .into_iter()
        .filter_map(|n| {
            fstatat(dir, n.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .ok()
                .map(|st| (n, st))
        })
        .collect()
}

fn get_in(dir: BorrowedFd<'_>, name: &str, now: SystemTime) -> io::Result<Option<Entry>> {
    let fd = match openat(dir, name, FILE_FLAGS, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(Errno::ELOOP) => return Err(broken("a symlink")),
        Err(e) => return Err(io_err(e)),
    };
    let st = nix::sys::stat::fstat(&fd).map_err(io_err)?;
    if !is_reg(st.st_mode) {
        return Err(broken("not a regular file"));
    }
    // Empty: being written, or left so by a killed writer (the sweep
    // removes it after an hour). Never taken for expired.
    if st.st_size == 0 {
        return Err(broken("incomplete"));
    }
    let mut buf = Vec::new();
    File::from(fd).take(4096).read_to_end(&mut buf)?;
    let (expires, content) = parse(&buf).ok_or_else(|| broken("bad version line"))?;
    if expires <= secs(now) {
        return Ok(None);
    }
    Ok(Some(Entry {
        expires: from_secs(expires),
        content: content.to_vec(),
    }))
}

/// The expiry and the content of an entry's bytes.
fn parse(buf: &[u8]) -> Option<(i64, &[u8])> {
    let rest = buf.strip_prefix(VERSION)?;
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let expires = std::str::from_utf8(&rest[..nl]).ok()?.parse::<i64>().ok()?;
    Some((expires, &rest[nl + 1..]))
}

/// Creates the entry `name` in `dir` (O_EXCL: fails with EEXIST when it
/// is there; NFSv3 and later do this on the server), writes its content
/// with its expiry in one write(2), then sets the expiry as its mtime too
/// (for `exists` and the sweep). Until the write the entry is empty, which
/// every reader takes as live (`get_in`): no other delivery can take it
/// for expired while it is being made, whatever the clocks.
fn create(
    dir: BorrowedFd<'_>,
    name: &str,
    expires: SystemTime,
    content: &[u8],
) -> Result<(), Errno> {
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(dir, name, flags, Mode::from_bits_truncate(0o600))?;
    let mut buf = Vec::with_capacity(VERSION.len() + 24 + content.len());
    buf.extend_from_slice(VERSION);
    buf.extend_from_slice(format!("{}\n", secs(expires)).as_bytes());
    buf.extend_from_slice(content);
    let mut f = File::from(fd);
    f.write_all(&buf)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32)))?;
    futimens(&f, &TimeSpec::UTIME_NOW, &TimeSpec::new(secs(expires), 0))
}

fn claim_in(
    dir: BorrowedFd<'_>,
    name: &str,
    expires: SystemTime,
    content: &[u8],
    now: SystemTime,
) -> io::Result<Claim> {
    let held = |dir: BorrowedFd<'_>, name: &str| -> io::Result<Option<Claim>> {
        match get_in(dir, name, now) {
            Ok(Some(e)) => Ok(Some(Claim::Held(e))),
            Ok(None) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(Some(Claim::Held(Entry {
                expires: now + MAX_HORIZON,
                content: Vec::new(),
            }))),
            Err(e) => Err(e),
        }
    };
    // A few rounds: each lost round means another delivery changed the
    // entry at the same moment; the next round sees what it did.
    for _ in 0..8 {
        if let Some(h) = held(dir, name)? {
            return Ok(h);
        }
        match create(dir, name, expires, content) {
            Ok(()) => return Ok(Claim::Won),
            Err(Errno::EEXIST) => {}
            Err(e) => return Err(io_err(e)),
        }
        if let Some(h) = held(dir, name)? {
            return Ok(h);
        }
        // Expired: replace it under a lock (`NAME.lock`, made with
        // O_EXCL), so that no delivery ever moves or removes a live entry:
        // only the lock's holder removes the expired entry, and everyone
        // else creates an entry only where there is none. A delivery that
        // finds the lock taken treats the entry as held: at most one
        // winner, and at worst none (no reply rather than two).
        let lock = format!("{name}.lock");
        match create(dir, &lock, now + LOCK_TTL, b"") {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                // A lock is held for a few system calls; one past the
                // expiry written in it was left by a delivery killed while
                // it held it, and is broken. (Its content, not its mtime:
                // until its maker sets the mtime, that is the time it was
                // made.)
                let stale = matches!(get_in(dir, &lock, now), Ok(None));
                if stale {
                    let _ = unlinkat(dir, lock.as_str(), UnlinkatFlags::NoRemoveDir);
                    continue;
                }
                return Ok(Claim::Held(Entry {
                    expires: now + MAX_HORIZON,
                    content: Vec::new(),
                }));
            }
            Err(e) => return Err(io_err(e)),
        }
        let replaced = (|| -> io::Result<Option<Claim>> {
            if let Some(h) = held(dir, name)? {
                return Ok(Some(h));
            }
            match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(io_err(e)),
            }
            match create(dir, name, expires, content) {
                Ok(()) => Ok(Some(Claim::Won)),
                // Created by a delivery that found no entry: the next round
                // sees it.
                Err(Errno::EEXIST) => Ok(None),
                Err(e) => Err(io_err(e)),
            }
        })();
        let _ = unlinkat(dir, lock.as_str(), UnlinkatFlags::NoRemoveDir);
        if let Some(c) = replaced? {
            return Ok(c);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::WouldBlock,
        "the entry kept changing",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    fn maildir() -> (tempfile::TempDir, Maildir) {
        let d = tempfile::tempdir().unwrap();
        let md = Maildir::open(&d.path().join("Maildir")).unwrap();
        (d, md)
    }

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    #[test]
    fn claim_then_held_then_expired_is_won_again() {
        let (_d, md) = maildir();
        let st = State::open(&md).unwrap();
        let k = key(&[b"a"]);
        assert_eq!(
            st.claim(Kind::Replied, &k, t(100), b"x", t(0)).unwrap(),
            Claim::Won
        );
        match st.claim(Kind::Replied, &k, t(200), b"y", t(50)).unwrap() {
            Claim::Held(e) => {
                assert_eq!(e.content, b"x");
                assert_eq!(e.expires, t(100));
            }
            c => panic!("{c:?}"),
        }
        assert!(st.exists(Kind::Replied, &k, t(99)).unwrap());
        assert!(!st.exists(Kind::Replied, &k, t(100)).unwrap());
        assert_eq!(
            st.claim(Kind::Replied, &k, t(300), b"z", t(150)).unwrap(),
            Claim::Won
        );
        assert_eq!(
            st.get(Kind::Replied, &k, t(151)).unwrap().unwrap().content,
            b"z"
        );
        // Nothing left in tmp/.
        assert!(list(st.tmp().unwrap()).is_empty());
    }

    /// A replacement lock left by a killed delivery is broken once past
    /// its expiry; a fresh one makes the entry held, never replaced.
    #[test]
    fn a_stale_replacement_lock_is_broken_a_fresh_one_holds() {
        let (_d, md) = maildir();
        let st = State::open(&md).unwrap();
        let k = key(&[b"a"]);
        assert_eq!(
            st.claim(Kind::Replied, &k, t(100), b"x", t(0)).unwrap(),
            Claim::Won
        );
        let dir = st.dir(Kind::Replied).unwrap();
        let lock = format!("{k}.lock");
        create(dir, &lock, t(200) + LOCK_TTL, b"").unwrap();
        // Expired entry, live lock: held.
        assert!(matches!(
            st.claim(Kind::Replied, &k, t(900), b"y", t(150)).unwrap(),
            Claim::Held(_)
        ));
        // The lock past its expiry: broken, and the entry replaced.
        assert_eq!(
            st.claim(Kind::Replied, &k, t(900), b"y", t(400)).unwrap(),
            Claim::Won
        );
        assert_eq!(
            st.get(Kind::Replied, &k, t(401)).unwrap().unwrap().content,
            b"y"
        );
    }

    #[test]
    fn concurrent_claims_one_winner_also_when_replacing() {
        let (_d, md) = maildir();
        let path = md.path().to_path_buf();
        let k = key(&[b"sender@example.org"]);
        for (round, now) in [(0, t(0)), (1, t(1000))] {
            let barrier = Arc::new(Barrier::new(64));
            let handles: Vec<_> = (0..64)
                .map(|_| {
                    let (b, p, k) = (barrier.clone(), path.clone(), k.clone());
                    std::thread::spawn(move || {
                        let md = Maildir::open(&p).unwrap();
                        let st = State::open(&md).unwrap();
                        b.wait();
                        st.claim(Kind::Replied, &k, now + Duration::from_secs(500), b"", now)
                            .unwrap()
                    })
                })
                .collect();
            let won = handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|c| *c == Claim::Won)
                .count();
            assert_eq!(won, 1, "round {round}");
        }
    }

    #[test]
    fn broken_entries_are_held_and_swept() {
        let (_d, md) = maildir();
        let st = State::open(&md).unwrap();
        let k = key(&[b"b"]);
        st.dir(Kind::Replied).unwrap();
        let dir = md.path().join(DIR).join("replied");
        std::os::unix::fs::symlink("/etc/passwd", dir.join(&k)).unwrap();
        assert!(matches!(
            st.claim(Kind::Replied, &k, t(100), b"", t(0)).unwrap(),
            Claim::Held(_)
        ));
        let k2 = key(&[b"c"]);
        std::fs::write(dir.join(&k2), "garbage").unwrap();
        assert!(st.get(Kind::Replied, &k2, UNIX_EPOCH).is_err());
        let s = st.sweep(SystemTime::now() + Duration::from_secs(120));
        assert!(s.broken >= 1 && s.expired + s.broken == 2, "{s:?}");
        assert!(list(st.dir(Kind::Replied).unwrap()).is_empty());
    }

    #[test]
    fn sweep_is_claimed_once_per_interval_and_caps_nothing_small() {
        let (_d, md) = maildir();
        let st = State::open(&md).unwrap();
        let now = SystemTime::now();
        for i in 0..10u32 {
            let k = key(&[&i.to_be_bytes()]);
            let exp = if i < 4 {
                now - Duration::from_secs(120)
            } else {
                now + 3 * SWEEP_INTERVAL
            };
            create(st.dir(Kind::Seen).unwrap(), &k, exp, b"").unwrap();
        }
        let s = st.maybe_sweep(now).expect("first sweep runs");
        assert_eq!(s.expired, 4);
        assert!(st.maybe_sweep(now).is_none());
        assert!(st
            .maybe_sweep(now + SWEEP_INTERVAL + Duration::from_secs(1))
            .is_some());
        assert_eq!(list(st.dir(Kind::Seen).unwrap()).len(), 6);
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_moved_aside() {
        let (_d, md) = maildir();
        std::fs::write(md.path().join(DIR), "junk").unwrap();
        let st = State::open(&md).unwrap();
        assert_eq!(st.notes.len(), 1, "{:?}", st.notes);
        assert!(md.path().join(DIR).is_dir());
    }

    #[test]
    fn someone_elses_directory_is_an_error() {
        let (_d, md) = maildir();
        let p = md.path().join(DIR);
        std::fs::create_dir(&p).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = State::open(&md).unwrap_err();
        assert!(e.contains("writable by group or others"), "{e}");
    }

    #[test]
    fn keys_do_not_collide_across_part_boundaries() {
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
        assert_eq!(key(&[b"x"]).len(), 32);
    }
}
