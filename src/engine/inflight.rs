//! The delivery in flight, for the two ways a delivery can end without
//! returning through `Engine::deliver`: its time limit passes (the watchdog),
//! or an allocation fails (the global allocator in src/main.rs calls
//! `out_of_memory`). Either way the delivery's uncommitted tmp/ files are
//! removed, a `4.3.0` status line (`crate::output::exit::Kind::System`) is written to stderr and one line to
//! syslog, and the process exits 75. Neither may undo a commit: a message
//! linked into new/ and then deferred would be delivered twice by the
//! retry.
//!
//! A delivery is a `Flight` (`begin` .. drop). Its state:
//!
//! | state       | what the delivery is doing            | time limit passes  | allocation fails |
//! |-------------|---------------------------------------|--------------------|------------------|
//! | `IDLE`      | none (before `begin`)                 | nothing            | 75               |
//! | `RUNNING`   | reading, spooling, deciding           | 75                 | 75               |
//! | `BUSY`      | creating a tmp/ file, committing      | waits for the step | 75 (see below)   |
//! | `COMMITTED` | filed: the message is in new/, synced | nothing            | 0                |
//!
//! A step in `BUSY` that ends without a commit carries out an expiry that
//! came during it (`BUSY_EXPIRED`): so a tmp/ file is never created
//! without being tracked, and a commit is never interrupted. An
//! allocation failure cannot wait: during a commit it still exits 75, a
//! window of the one small allocation `Maildir::commit` makes after the
//! link (SECURITY.md).
//!
//! The watchdog is the process's `ITIMER_REAL` timer and a SIGALRM
//! handler, not a thread: arming it is one system call, nothing is
//! allocated and nothing can fail to start, and the handler interrupts a
//! read that never returns. Everything the handler and `out_of_memory`
//! touch is async-signal-safe and allocates nothing: atomics, and
//! unlinkat, write, socket, sendto and _exit.
//!
//! One timed delivery at a time per process: the state, the tracked names
//! and the timer are the process's. The LMTP service, which runs
//! deliveries side by side, uses untimed flights (`untimed`) instead.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use nix::libc;

const IDLE: u8 = 0;
const RUNNING: u8 = 1;
const BUSY: u8 = 2;
const BUSY_EXPIRED: u8 = 3;
const COMMITTED: u8 = 4;

static STATE: AtomicU8 = AtomicU8::new(IDLE);
/// The time limit in force, in seconds, for the status line.
static LIMIT_SECS: AtomicU64 = AtomicU64::new(0);

/// The longest file name (NAME_MAX); a longer one cannot exist.
const NAME_MAX: usize = 255;

/// A tmp/ file to remove: the directory's descriptor and the name.
/// `len` 0 is a free slot. A name is written while its slot is free and
/// published by storing its length, so a reader never sees half of one.
struct Slot {
    dir: AtomicI32,
    len: AtomicUsize,
    name: [AtomicU8; NAME_MAX + 1],
}

impl Slot {
    const fn new() -> Self {
        Slot {
            dir: AtomicI32::new(-1),
            len: AtomicUsize::new(0),
            name: [const { AtomicU8::new(0) }; NAME_MAX + 1],
        }
    }

    fn holds(&self, name: &[u8]) -> bool {
        self.len.load(SeqCst) == name.len()
            && name
                .iter()
                .zip(&self.name)
                .all(|(&b, s)| s.load(SeqCst) == b)
    }
}

/// A delivery has at most two tmp/ files at once: the spooled message and
/// its copy with PREPENDed headers.
static SLOTS: [Slot; 2] = [const { Slot::new() }; 2];

/// A delivery in flight. Dropping it ends the delivery: the timer is
/// disarmed and nothing is tracked any more.
#[derive(Debug)]
pub struct Flight {
    start: Instant,
    /// False for an untimed flight (`untimed`): no process-wide state.
    timed: bool,
}

/// A delivery without the process-wide watchdog, for the LMTP service,
/// where deliveries run side by side in one process: the message is read
/// (under the session's socket timeouts) before the delivery starts, the
/// tmp/ file of a delivery that fails or panics is removed by its own drop,
/// and one the process did not survive is left to the stale sweep
/// (`Maildir::clean_tmp`). Every method is a no-op but `creating` and
/// `committing`, which just run their step.
pub fn untimed() -> Flight {
    Flight {
        start: Instant::now(),
        timed: false,
    }
}

/// Starts a delivery with `limit` as its time limit, from now.
pub fn begin(limit: Duration) -> Flight {
    install_handler();
    for s in &SLOTS {
        s.len.store(0, SeqCst);
    }
    STATE.store(RUNNING, SeqCst);
    let f = Flight {
        start: Instant::now(),
        timed: true,
    };
    f.set_limit(limit);
    f
}

impl Flight {
    /// Sets the time limit, counted from `begin` (the system rules name it
    /// only once they are read). A limit already passed expires now.
    pub fn set_limit(&self, limit: Duration) {
        if !self.timed {
            return;
        }
        LIMIT_SECS.store(limit.as_secs(), SeqCst);
        match limit.checked_sub(self.start.elapsed()) {
            Some(left) if !left.is_zero() => set_timer(left),
            _ => expire_now(),
        }
    }

    /// Runs `f`, which creates a tmp/ file and tracks it, as one step that
    /// the time limit does not interrupt: a file created and not yet
    /// tracked would stay behind.
    pub fn creating<T>(&self, f: impl FnOnce() -> T) -> T {
        if !self.timed {
            return f();
        }
        let _ = STATE.compare_exchange(RUNNING, BUSY, SeqCst, SeqCst);
        let v = f();
        self.leave_busy(false);
        v
    }

    /// Runs `f`, the commit of the message into new/, as one step that the
    /// time limit does not interrupt. When it succeeds the delivery is
    /// committed: from then on neither the time limit nor an allocation
    /// failure makes it a 75.
    pub fn committing<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        if !self.timed {
            return f();
        }
        let _ = STATE.compare_exchange(RUNNING, BUSY, SeqCst, SeqCst);
        let v = f();
        self.leave_busy(v.is_ok());
        v
    }

    fn leave_busy(&self, committed: bool) {
        if committed {
            STATE.store(COMMITTED, SeqCst);
            set_timer(Duration::ZERO);
            for s in &SLOTS {
                s.len.store(0, SeqCst);
            }
            return;
        }
        if let Err(BUSY_EXPIRED) = STATE.compare_exchange(BUSY, RUNNING, SeqCst, SeqCst) {
            time_limit_passed();
        }
    }

    /// Tracks a tmp/ file of this delivery, to be removed if it ends in an
    /// expiry or an allocation failure. Call within `creating`.
    pub fn track(&self, dir: BorrowedFd<'_>, name: &str) {
        let name = name.as_bytes();
        if !self.timed || name.is_empty() || name.len() > NAME_MAX {
            return;
        }
        let Some(slot) = SLOTS.iter().find(|s| s.len.load(SeqCst) == 0) else {
            return;
        };
        slot.dir.store(dir.as_raw_fd(), SeqCst);
        for (s, &b) in slot.name.iter().zip(name) {
            s.store(b, SeqCst);
        }
        slot.name[name.len()].store(0, SeqCst);
        slot.len.store(name.len(), SeqCst);
    }

    /// Stops tracking a tmp/ file (once it is removed).
    pub fn untrack(&self, name: &str) {
        if !self.timed {
            return;
        }
        if let Some(s) = SLOTS.iter().find(|s| s.holds(name.as_bytes())) {
            s.len.store(0, SeqCst);
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        if !self.timed {
            return;
        }
        // A commit disarmed the timer already.
        if STATE.load(SeqCst) != COMMITTED {
            set_timer(Duration::ZERO);
        }
        for s in &SLOTS {
            s.len.store(0, SeqCst);
        }
        // A committed delivery stays committed until the next `begin`:
        // an allocation failure after it (in `main`, say) is still exit 0.
        let _ = STATE.compare_exchange(RUNNING, IDLE, SeqCst, SeqCst);
        let _ = STATE.compare_exchange(BUSY, IDLE, SeqCst, SeqCst);
        let _ = STATE.compare_exchange(BUSY_EXPIRED, IDLE, SeqCst, SeqCst);
    }
}

/// Installs the SIGALRM handler (SA_RESTART: a step that waits out an
/// expiry goes on with its interrupted system call).
fn install_handler() {
    static INSTALLED: AtomicU8 = AtomicU8::new(0);
    if INSTALLED.swap(1, SeqCst) == 1 {
        return;
    }
    // SAFETY: sigaction with a zeroed struct, an empty mask and a handler
    // that is async-signal-safe (it touches only atomics and makes
    // async-signal-safe system calls).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_alarm as *const () as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
    }
}

/// Arms the timer for `d` from now (zero disarms it).
fn set_timer(d: Duration) {
    let v = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: d.as_secs().min(i32::MAX as u64) as libc::time_t,
            // Never 0 s and 0 us for a nonzero `d`, which would disarm.
            tv_usec: if d.as_secs() == 0 && !d.is_zero() {
                d.subsec_micros().max(1)
            } else {
                d.subsec_micros()
            } as libc::suseconds_t,
        },
    };
    // SAFETY: setitimer reads `v`; the old value is not asked for.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &v, std::ptr::null_mut()) };
}

extern "C" fn on_alarm(_sig: libc::c_int) {
    expire_now();
}

/// The time limit has passed: ends the delivery when it is running, notes
/// it for the end of a busy step, ignores it otherwise.
fn expire_now() {
    match STATE.compare_exchange(RUNNING, BUSY_EXPIRED, SeqCst, SeqCst) {
        Ok(_) => time_limit_passed(),
        Err(BUSY) => {
            let _ = STATE.compare_exchange(BUSY, BUSY_EXPIRED, SeqCst, SeqCst);
        }
        Err(_) => {}
    }
}

fn time_limit_passed() -> ! {
    let mut line = Buf::new();
    // The status of a failure of the system (`crate::output::exit`); `status`
    // allocates nothing.
    line.push(
        crate::output::exit::Kind::System { errno: None }
            .status()
            .as_bytes(),
    );
    line.push(b" deliver: time limit of ");
    line.push_num(LIMIT_SECS.load(SeqCst));
    line.push(b" s exceeded");
    emergency_exit(&line, crate::output::exit::TEMPFAIL);
}

/// An allocation of `size` bytes failed: ends the process, 75 unless the
/// message is committed (then 0: it is in new/, and a retry would
/// deliver it twice). Called by the global allocator; allocates nothing.
#[cold]
pub fn out_of_memory(size: usize) -> ! {
    let mut line = Buf::new();
    if STATE.load(SeqCst) == COMMITTED {
        // No status line for 0; the log says why the process ended here.
        line.push(b"deliver: out of memory after filing the message (allocating ");
        line.push_num(size as u64);
        line.push(b" bytes)");
        syslog(&line);
        // SAFETY: _exit ends the process at once; nothing is left to run.
        unsafe { libc::_exit(0) }
    }
    let out_of_memory = crate::output::exit::Kind::System {
        errno: Some(libc::ENOMEM),
    };
    line.push(out_of_memory.status().as_bytes());
    line.push(b" deliver: out of memory (allocating ");
    line.push_num(size as u64);
    line.push(b" bytes)");
    emergency_exit(&line, crate::output::exit::TEMPFAIL);
}

/// Removes the tracked tmp/ files, writes `line` as the status line and
/// to syslog, and exits with `code`.
fn emergency_exit(line: &Buf, code: i32) -> ! {
    // A filter or pipe program running now dies with the delivery.
    crate::engine::program::kill_running();
    for s in &SLOTS {
        let len = s.len.load(SeqCst);
        if len == 0 {
            continue;
        }
        let mut name = [0u8; NAME_MAX + 1];
        for (b, a) in name.iter_mut().zip(&s.name[..len]) {
            *b = a.load(SeqCst);
        }
        // SAFETY: `name` is NUL-terminated (len <= NAME_MAX).
        unsafe { libc::unlinkat(s.dir.load(SeqCst), name.as_ptr().cast(), 0) };
    }
    let mut out = Buf::new();
    out.push(line.bytes());
    out.push(b"\n");
    write_all(2, out.bytes());
    syslog(line);
    // SAFETY: _exit ends the process at once, without running anything
    // (atexit handlers, destructors) that could allocate or block.
    unsafe { libc::_exit(code) }
}

fn write_all(fd: i32, mut b: &[u8]) {
    while !b.is_empty() {
        // SAFETY: writes from a valid buffer.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        if n > 0 {
            b = &b[n as usize..];
        } else if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        } else {
            return;
        }
    }
}

/// Sends `line` to syslog as a warning, as `Logger::warn` does, with a
/// socket of its own (the logger's may be in use where this runs).
fn syslog(line: &Buf) {
    let mut msg = Buf::new();
    msg.push(b"<20>deliver[");
    // SAFETY: getpid has no preconditions.
    msg.push_num(unsafe { libc::getpid() } as u64);
    msg.push(b"]: warning: ");
    msg.push(line.bytes());
    // SAFETY: socket, sendto and close with valid arguments; the address
    // is a zeroed sockaddr_un with a NUL-terminated path.
    unsafe {
        let fd = libc::socket(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        );
        if fd < 0 {
            return;
        }
        for path in crate::output::log::SYSLOG_PATHS {
            let mut addr: libc::sockaddr_un = std::mem::zeroed();
            addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
            for (d, &s) in addr.sun_path.iter_mut().zip(path.as_bytes()) {
                *d = s as libc::c_char;
            }
            let sent = libc::sendto(
                fd,
                msg.bytes().as_ptr().cast(),
                msg.bytes().len(),
                0,
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            );
            if sent >= 0 {
                break;
            }
        }
        libc::close(fd);
    }
}

/// A line built on the stack (longer text is cut).
struct Buf {
    b: [u8; 256],
    n: usize,
}

impl Buf {
    fn new() -> Self {
        Buf { b: [0; 256], n: 0 }
    }

    fn push(&mut self, s: &[u8]) {
        let k = s.len().min(self.b.len() - self.n);
        self.b[self.n..self.n + k].copy_from_slice(&s[..k]);
        self.n += k;
    }

    fn push_num(&mut self, mut v: u64) {
        let mut d = [0u8; 20];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&d[i..]);
    }

    fn bytes(&self) -> &[u8] {
        &self.b[..self.n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_built_without_allocating() {
        let mut b = Buf::new();
        b.push(b"limit ");
        b.push_num(0);
        b.push(b" ");
        b.push_num(u64::MAX);
        assert_eq!(b.bytes(), b"limit 0 18446744073709551615");
        b.push(&[b'x'; 400]);
        assert_eq!(b.bytes().len(), 256);
    }
}
