//! Running a program for a rule: a `filter` (its output replaces the
//! message) or a `pipe` (the program takes the message), safely, within
//! limits, with an outcome that says what the engine does next.
//! deliver.rules(5), PROGRAMS, documents this for users.
//!
//! API:
//! - [`ProgramEnv::new`]`(envelope, recipient)`: the environment a program
//!   gets;
//! - [`filter`]`(argv, env, input, limits, out) -> FilterOutcome<T>`: runs
//!   a filter; `out` consumes its standard output as a reader (say, spools
//!   it into a new tmp/ file with `message::read`) and returns the `T` that
//!   [`FilterOutcome::Replaced`] carries;
//! - [`pipe`]`(argv, env, input, limits) -> PipeOutcome`: runs a pipe;
//! - [`kill_running`]: for the delivery's watchdog, which ends the process.
//!
//! How a program runs:
//! - **argv, no shell.** `argv[0]` is the program: a name without `/` is
//!   looked up in the program's `PATH`; a relative path is relative to its
//!   working directory; a leading `~/` is the recipient's home.
//! - **As the process runs**: exec mode runs as the recipient already.
//! - **Environment**: cleared, then set as local(8) sets it for a
//!   `mailbox_command`: `SHELL`, `HOME`, `USER`, `LOGNAME`,
//!   `PATH=/usr/local/bin:/usr/bin:/bin`, `SENDER` (empty for the null
//!   sender), `RECIPIENT`, `LOCAL`, `DOMAIN`, `EXTENSION`,
//!   `ORIGINAL_RECIPIENT`, `CLIENT_ADDRESS`, `CLIENT_HOSTNAME`,
//!   `CLIENT_HELO`, `CLIENT_PROTOCOL`, `SASL_METHOD`, `SASL_USERNAME`,
//!   `SASL_SENDER`. A value deliver does not know is left out, as local(8)
//!   leaves it out. Values carry no control characters (the envelope
//!   replaced them); no shell reads them, so nothing else is replaced.
//! - **Working directory**: `HOME`, or `/` when the recipient has none or
//!   it is not a directory (`nobody`'s `/nonexistent`): the program runs
//!   all the same.
//! - **Its own process group.** At the time limit the whole group is
//!   killed (SIGKILL) and the program reaped; so is a filter whose output
//!   is over the limit or is not a message. A program that exits is reaped;
//!   anything it left running in the background is left alone.
//! - **stdin** is a pipe that this module feeds from the message file with
//!   positional reads (`pread`): the program can neither write nor truncate
//!   the message the engine falls back to, and the file's offset is left
//!   alone. A program that stops reading early ends the feeding; the write
//!   gets EPIPE, not a signal, because deliver ignores SIGPIPE (src/main.rs,
//!   as std's runtime does), and the program gets SIGPIPE back at its
//!   default (std's `Command` restores it).
//! - **stdout**: a filter's is handed to `out` as a reader, cut at
//!   [`Limits::output`] bytes; it is never held whole in memory. A pipe's
//!   goes to `/dev/null`: deliver's own stdout is the status line local(8)
//!   reads.
//! - **stderr**: the first 4 KiB are kept for the trace and the log; the
//!   rest is read and dropped, so that the program never blocks on it.
//! - One thread: a poll(2) loop feeds stdin, reads stderr and waits for
//!   stdout together, so that no pipe fills up while another is waited on.
//!   Every descriptor is close-on-exec; none is left open after a run.
//!
//! Outcomes:
//! - filter: [`FilterOutcome::Replaced`] only when the program exits 0
//!   and wrote a message (output that begins with a header field, after an
//!   optional mbox `From ` line), within both limits, and `out` succeeded.
//!   Anything else is [`FilterOutcome::Unchanged`] with the reason: the
//!   program could not start, exited non-zero, was killed by a signal, timed
//!   out, wrote more than the limit, wrote nothing, or wrote something
//!   that is not a message. Filters fail open: the original goes on.
//! - pipe: [`PipeOutcome::Delivered`] for exit 0; [`PipeOutcome::Defer`]
//!   for exit 75 (EX_TEMPFAIL, the program asks for a retry) and for a
//!   program that could not be started for a reason a retry can cure (the
//!   errno says so: EAGAIN, ENOMEM, EMFILE, ... per
//!   `crate::output::exit::is_transient`; it never ran, so a retry repeats
//!   nothing); [`PipeOutcome::Failed`] for everything else: another exit
//!   status, a signal, a program that cannot be started, the message file
//!   that could not be read, and the time limit. A timeout is a failure,
//!   not a deferral: the program did not ask for a retry, it may have done
//!   part of its work (a retry would repeat that), and a program that hangs
//!   once will likely hang again, so deferring would end, days later, in a
//!   bounce; a failure files the message into the Inbox instead (the
//!   executor's rule), so it is never lost. procmail too treats a pipe that
//!   fails or times out as not delivered and goes on to its default.

use crate::engine::privs::Recipient;
use crate::input::envelope::{Envelope, Field};
use crate::output::exit::Failure;
use nix::libc;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// The `PATH` a program gets.
pub const PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// How much of a program's stderr is kept for the log.
pub const STDERR_KEPT: usize = 4096;
/// EX_TEMPFAIL: a pipe that exits with it defers the delivery.
pub const EX_TEMPFAIL: i32 = 75;
/// How much of a filter's output is looked at to tell whether it is a
/// message: the `From ` line and the first field name must end within it.
const HEAD_CHECKED: usize = 4096;
/// How often a program that closed its pipes is checked for its exit.
const EXIT_TICK: Duration = Duration::from_millis(10);

/// The limits of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From the start to the program's exit, for filters and pipes.
    pub time: Duration,
    /// The most a filter may write to stdout, in bytes.
    pub output: u64,
}

/// The environment a program gets, and its working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramEnv {
    vars: Vec<(&'static str, String)>,
    home: Option<PathBuf>,
}

impl ProgramEnv {
    /// The environment local(8) gives a `mailbox_command`, from the
    /// resolved envelope and the recipient (module doc). `LOCAL` and
    /// `DOMAIN`, when Postfix did not give them, are the recipient
    /// address's parts; `SHELL` is the recipient's login shell, else
    /// `/bin/sh`.
    pub fn new(envelope: &Envelope, who: &Recipient) -> ProgramEnv {
        let shell = nix::unistd::User::from_uid(who.uid.into())
            .ok()
            .flatten()
            .map(|u| u.shell.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/bin/sh".to_string());
        let mut vars = vec![("SHELL", shell)];
        if let Some(h) = &who.home {
            vars.push(("HOME", h.to_string_lossy().into_owned()));
        }
        vars.push(("USER", who.name.clone()));
        vars.push(("LOGNAME", who.name.clone()));
        vars.push(("PATH", PATH.to_string()));
        vars.push(("SENDER", envelope.sender.value.clone()));
        let rcpt = envelope.recipient.as_opt();
        let split = rcpt.map(|r| match r.rfind('@') {
            Some(i) => (&r[..i], &r[i + 1..]),
            None => (r, ""),
        });
        let mut set = |name: &'static str, f: &Field, derived: Option<&str>| {
            if let Some(v) = f.as_opt().or(derived.filter(|d| !d.is_empty())) {
                vars.push((name, v.to_string()));
            }
        };
        set("RECIPIENT", &envelope.recipient, None);
        set("LOCAL", &envelope.local, split.map(|s| s.0));
        set("DOMAIN", &envelope.domain, split.map(|s| s.1));
        set("EXTENSION", &envelope.extension, None);
        set("ORIGINAL_RECIPIENT", &envelope.original_recipient, None);
        set("CLIENT_ADDRESS", &envelope.client_address, None);
        set("CLIENT_HOSTNAME", &envelope.client_hostname, None);
        set("CLIENT_HELO", &envelope.client_helo, None);
        set("CLIENT_PROTOCOL", &envelope.client_protocol, None);
        set("SASL_METHOD", &envelope.sasl_method, None);
        set("SASL_USERNAME", &envelope.sasl_username, None);
        set("SASL_SENDER", &envelope.sasl_sender, None);
        ProgramEnv {
            vars,
            home: who.home.clone(),
        }
    }

    /// An environment of exactly `vars`, with `home` as the working
    /// directory and the `~/` of argv[0] (tests, and front ends that build
    /// their own).
    pub fn from_vars(vars: Vec<(&'static str, String)>, home: Option<PathBuf>) -> ProgramEnv {
        ProgramEnv { vars, home }
    }

    /// The variables, in the order they are set.
    pub fn vars(&self) -> &[(&'static str, String)] {
        &self.vars
    }

    /// The recipient's home: the working directory, and what `~/` means.
    pub fn home(&self) -> Option<&Path> {
        self.home.as_deref()
    }
}

/// What a filter did.
#[derive(Debug)]
pub enum FilterOutcome<T> {
    /// The program exited 0 and wrote a message, which `out` spooled into
    /// this.
    Replaced(T),
    /// The message goes on unchanged (fail open); why, for the trace and
    /// the log.
    Unchanged(String),
}

/// What a pipe did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipeOutcome {
    /// Exit 0: the program took the message.
    Delivered,
    /// Exit 75, or a program that could not start for a transient reason:
    /// the delivery defers. Why, for the log.
    Defer(String),
    /// Anything else (module doc): the executor files the message into the
    /// Inbox instead. Why, for the log.
    Failed(String),
}

/// The process group of the program running now, or 0.
static RUNNING: AtomicI32 = AtomicI32::new(0);

/// Marks the process group `pgid` (a child started with
/// `process_group(0)`) as the program running now, for [`kill_running`],
/// until the guard is dropped; drop it once the child is reaped.
pub(crate) fn mark_running(pgid: i32) -> RunningMark {
    RUNNING.store(pgid, SeqCst);
    RunningMark(pgid)
}

pub(crate) struct RunningMark(i32);

impl Drop for RunningMark {
    fn drop(&mut self) {
        let _ = RUNNING.compare_exchange(self.0, 0, SeqCst, SeqCst);
    }
}

/// Kills the process group of the program running now, if any. For the
/// delivery's watchdog (`crate::engine::inflight`), which ends the process
/// without returning here: async-signal-safe, allocates nothing.
pub fn kill_running() {
    let pgid = RUNNING.load(SeqCst);
    if pgid > 0 {
        // SAFETY: kill(2) is async-signal-safe; a negative pid is a group.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

/// Runs the filter `argv` with the message `input` on its stdin; `out`
/// reads its stdout (to its end) and spools it. Never fails: a filter that
/// does not give a message back leaves the message unchanged (module doc).
/// A failure of `out` itself (the disk is full, say) also leaves it
/// unchanged; the filing that follows meets the same disk.
pub fn filter<T>(
    argv: &[String],
    env: &ProgramEnv,
    input: &File,
    limits: &Limits,
    out: impl FnOnce(&mut dyn Read) -> Result<T, Failure>,
) -> FilterOutcome<T> {
    let mut run = match Run::start(argv, env, input, limits, true) {
        Ok(r) => r,
        Err(e) => return FilterOutcome::Unchanged(cannot_start(argv, &e)),
    };
    let mut output = Output {
        stdout: run.stdout.take(),
        run: &mut run,
        limit: limits.output,
        total: 0,
        head: Vec::new(),
        verdict: None,
        problem: None,
    };
    let spooled = out(&mut output);
    let (total, verdict, problem) = (output.total, output.verdict, output.problem.take());
    drop(output);
    if let Some(why) = problem {
        run.kill();
        return FilterOutcome::Unchanged(run.why(&why));
    }
    let t = match spooled {
        Ok(t) => t,
        Err(f) => {
            run.kill();
            return FilterOutcome::Unchanged(format!("spooling its output: {}", f.text));
        }
    };
    let status = match run.finish() {
        Ok(s) => s,
        Err(why) => return FilterOutcome::Unchanged(run.why(&why)),
    };
    if !status.success() {
        return FilterOutcome::Unchanged(run.why(&describe(status)));
    }
    if let Some(e) = &run.feed_error {
        return FilterOutcome::Unchanged(format!("reading the message for it: {e}"));
    }
    if total == 0 {
        return FilterOutcome::Unchanged(run.why("exited 0 but wrote nothing"));
    }
    if verdict != Some(true) {
        return FilterOutcome::Unchanged(run.why(NOT_A_MESSAGE));
    }
    FilterOutcome::Replaced(t)
}

/// Runs the pipe `argv` with the message `input` on its stdin, and waits
/// for it (module doc).
pub fn pipe(argv: &[String], env: &ProgramEnv, input: &File, limits: &Limits) -> PipeOutcome {
    let mut run = match Run::start(argv, env, input, limits, false) {
        Ok(r) => r,
        Err(e) => {
            let why = cannot_start(argv, &e);
            return match e.raw_os_error() {
                Some(errno) if crate::output::exit::is_transient(errno) => PipeOutcome::Defer(why),
                _ => PipeOutcome::Failed(why),
            };
        }
    };
    let status = match run.finish() {
        Ok(s) => s,
        Err(why) => return PipeOutcome::Failed(run.why(&why)),
    };
    if let Some(e) = &run.feed_error {
        return PipeOutcome::Failed(format!("reading the message for it: {e}"));
    }
    match status.code() {
        Some(0) => PipeOutcome::Delivered,
        Some(EX_TEMPFAIL) => PipeOutcome::Defer(run.why(&describe(status))),
        _ => PipeOutcome::Failed(run.why(&describe(status))),
    }
}

const NOT_A_MESSAGE: &str = "wrote something that is not a message (no header field first)";

fn cannot_start(argv: &[String], e: &io::Error) -> String {
    let name = argv.first().map_or("", String::as_str);
    format!(
        "cannot run {}: {e}",
        crate::output::text::for_log_line(name)
    )
}

/// How a program ended.
fn describe(status: ExitStatus) -> String {
    if let Some(c) = status.code() {
        return format!("exited with status {c}");
    }
    match status.signal() {
        Some(s) => match nix::sys::signal::Signal::try_from(s) {
            Ok(sig) => format!("killed by signal {}", sig.as_str()),
            Err(_) => format!("killed by signal {s}"),
        },
        None => format!("ended with {status}"),
    }
}

/// Whether `head`, the start of a filter's output, is the start of a
/// message: an optional mbox `From ` line, then a header field name
/// (printable ASCII but `:`, then optional blanks, as RFC 5322's obsolete
/// syntax allows) and a colon. `None`: not known yet, more is needed.
fn looks_like_message(head: &[u8], eof: bool) -> Option<bool> {
    let need_more = || {
        if eof || head.len() >= HEAD_CHECKED {
            Some(false)
        } else {
            None
        }
    };
    let mut rest = head;
    if rest.len() < 5 && b"From ".starts_with(rest) {
        return need_more();
    }
    if rest.starts_with(b"From ") {
        match memchr::memchr(b'\n', rest) {
            Some(i) => rest = &rest[i + 1..],
            None => return need_more(),
        }
    }
    let name = rest
        .iter()
        .position(|&b| !(33..=126).contains(&b) || b == b':')
        .unwrap_or(rest.len());
    if name == 0 && !rest.is_empty() {
        return Some(false);
    }
    let after = &rest[name..];
    match after.iter().position(|&b| b != b' ' && b != b'\t') {
        Some(i) => Some(name > 0 && after[i] == b':'),
        None => need_more(),
    }
}

/// A program started, until it is reaped (dropping it kills and reaps it).
struct Run<'a> {
    child: Child,
    reaped: bool,
    deadline: Instant,
    limit: Duration,
    feed: Option<Feed<'a>>,
    feed_error: Option<io::Error>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    err_kept: Vec<u8>,
}

/// The message, fed to the program's stdin.
struct Feed<'a> {
    pipe: ChildStdin,
    file: &'a File,
    offset: u64,
    buf: Vec<u8>,
    start: usize,
}

/// What the feeding did.
enum Fed {
    /// The pipe is full; more later.
    More,
    /// All written, or the program closed its stdin.
    Done,
    /// The message file could not be read.
    Error(io::Error),
}

impl Feed<'_> {
    /// Writes what the pipe takes without blocking.
    fn pump(&mut self) -> Fed {
        loop {
            if self.start == self.buf.len() {
                self.buf.resize(64 * 1024, 0);
                let n = loop {
                    match self.file.read_at(&mut self.buf, self.offset) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Fed::Error(e),
                    }
                };
                self.buf.truncate(n);
                self.start = 0;
                self.offset += n as u64;
                if n == 0 {
                    return Fed::Done;
                }
            }
            match self.pipe.write(&self.buf[self.start..]) {
                Ok(n) => self.start += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Fed::More,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EPIPE: the program stopped reading; its exit says the rest.
                Err(_) => return Fed::Done,
            }
        }
    }
}

impl<'a> Run<'a> {
    fn start(
        argv: &[String],
        env: &ProgramEnv,
        input: &'a File,
        limits: &Limits,
        stdout: bool,
    ) -> io::Result<Run<'a>> {
        let Some(first) = argv.first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
        };
        let program = match first.strip_prefix("~/") {
            Some(rest) => match env.home() {
                Some(h) => h.join(rest),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        "~/: the recipient has no home directory",
                    ))
                }
            },
            None => PathBuf::from(first),
        };
        let mut cmd = Command::new(program);
        cmd.args(&argv[1..])
            .env_clear()
            .envs(env.vars().iter().map(|(k, v)| (k, v)))
            .current_dir(env.home().filter(|h| h.is_dir()).unwrap_or(Path::new("/")))
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(if stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd.spawn()?;
        RUNNING.store(child.id() as i32, SeqCst);
        let pipe = child.stdin.take().expect("stdin piped");
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let mut run = Run {
            child,
            reaped: false,
            deadline: start + limits.time,
            limit: limits.time,
            feed: None,
            feed_error: None,
            stdout,
            stderr,
            err_kept: Vec::new(),
        };
        // From here on, dropping `run` kills and reaps the program.
        set_nonblocking(pipe.as_raw_fd())?;
        if let Some(o) = &run.stdout {
            set_nonblocking(o.as_raw_fd())?;
        }
        if let Some(e) = &run.stderr {
            set_nonblocking(e.as_raw_fd())?;
        }
        run.feed = Some(Feed {
            pipe,
            file: input,
            offset: 0,
            buf: Vec::new(),
            start: 0,
        });
        Ok(run)
    }

    /// Waits, until the deadline (and at most `tick`), for `stdout` to be
    /// readable or for work on stdin and stderr, which it does. Err: the
    /// time limit passed.
    fn wait_io(&mut self, stdout: Option<RawFd>, tick: Option<Duration>) -> Result<(), String> {
        let Some(left) = self.deadline.checked_duration_since(Instant::now()) else {
            return Err(self.timed_out());
        };
        let wait = tick.map_or(left, |t| t.min(left));
        let mut fds = Vec::with_capacity(3);
        if let Some(f) = &self.feed {
            fds.push(pollfd(f.pipe.as_raw_fd(), libc::POLLOUT));
        }
        if let Some(e) = &self.stderr {
            fds.push(pollfd(e.as_raw_fd(), libc::POLLIN));
        }
        if let Some(o) = stdout {
            fds.push(pollfd(o, libc::POLLIN));
        }
        if fds.is_empty() {
            std::thread::sleep(wait);
            return Ok(());
        }
        // Rounded up, so that a wait never spins on a zero timeout.
        let ms = wait.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n <= 0 {
            // A timeout is seen on the next call; EINTR just returns.
            return Ok(());
        }
        for p in &fds {
            if p.revents == 0 {
                continue;
            }
            if self
                .feed
                .as_ref()
                .is_some_and(|f| f.pipe.as_raw_fd() == p.fd)
            {
                match self.feed.as_mut().map(Feed::pump) {
                    Some(Fed::More) | None => {}
                    Some(Fed::Done) => self.feed = None,
                    Some(Fed::Error(e)) => {
                        self.feed = None;
                        self.feed_error = Some(e);
                    }
                }
            } else if self.stderr.as_ref().is_some_and(|e| e.as_raw_fd() == p.fd) {
                self.read_stderr();
            }
        }
        Ok(())
    }

    /// Reads what stderr has: the first `STDERR_KEPT` bytes are kept.
    fn read_stderr(&mut self) {
        let Some(err) = self.stderr.as_mut() else {
            return;
        };
        let mut buf = [0u8; 4096];
        loop {
            match err.read(&mut buf) {
                Ok(0) => {
                    self.stderr = None;
                    return;
                }
                Ok(n) => {
                    let room = STDERR_KEPT - self.err_kept.len();
                    self.err_kept.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.stderr = None;
                    return;
                }
            }
        }
    }

    /// The program is past its time limit: kills it.
    fn timed_out(&mut self) -> String {
        self.kill();
        format!("killed at the time limit of {}", humanize(self.limit))
    }

    /// Waits for the program to exit, feeding stdin and reading stderr
    /// meanwhile; at the time limit, kills it. Its stdout is closed first.
    fn finish(&mut self) -> Result<ExitStatus, String> {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.reaped();
                    // What stderr still holds (the program is gone).
                    self.read_stderr();
                    return Ok(status);
                }
                Ok(None) => {}
                Err(e) => {
                    self.kill();
                    return Err(format!("waiting for it: {e}"));
                }
            }
            self.wait_io(None, Some(EXIT_TICK))?;
        }
    }

    /// Kills the program's process group and reaps the program.
    fn kill(&mut self) {
        if self.reaped {
            return;
        }
        // Its own group (`process_group(0)`): the group id is its pid,
        // which stays reserved until it is reaped below.
        let pgid = self.child.id() as i32;
        // SAFETY: kill(2) with a negative pid signals the group.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
        self.reaped();
    }

    fn reaped(&mut self) {
        self.reaped = true;
        self.feed = None;
        let _ = RUNNING.compare_exchange(self.child.id() as i32, 0, SeqCst, SeqCst);
    }

    /// `what` happened, with the program's stderr if it wrote any.
    fn why(&self, what: &str) -> String {
        let text = String::from_utf8_lossy(&self.err_kept);
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            what.to_string()
        } else {
            format!(
                "{what} (stderr: {})",
                crate::output::text::for_log_line(&text)
            )
        }
    }
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        self.kill();
    }
}

fn humanize(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.3} s", d.as_secs_f64())
    }
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this module owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A filter's stdout, as `out` reads it: within the time and output
/// limits, checked to begin like a message. Once it fails (`problem`),
/// it stays failed.
struct Output<'r, 'a> {
    run: &'r mut Run<'a>,
    stdout: Option<ChildStdout>,
    limit: u64,
    total: u64,
    head: Vec<u8>,
    verdict: Option<bool>,
    problem: Option<String>,
}

impl Output<'_, '_> {
    fn fail(&mut self, why: String) -> io::Error {
        self.stdout = None;
        let e = io::Error::other(why.clone());
        self.problem = Some(why);
        e
    }

    fn check(&mut self, data: &[u8], eof: bool) -> io::Result<()> {
        if self.verdict.is_none() {
            let room = HEAD_CHECKED - self.head.len();
            self.head.extend_from_slice(&data[..data.len().min(room)]);
            self.verdict = looks_like_message(&self.head, eof);
            if self.verdict == Some(false) {
                return Err(self.fail(NOT_A_MESSAGE.to_string()));
            }
        }
        Ok(())
    }
}

impl Read for Output<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(p) = &self.problem {
            return Err(io::Error::other(p.clone()));
        }
        loop {
            let Some(out) = self.stdout.as_mut() else {
                return Ok(0);
            };
            match out.read(buf) {
                Ok(0) => {
                    self.stdout = None;
                    if self.total > 0 {
                        self.check(&[], true)?;
                    }
                    return Ok(0);
                }
                Ok(n) => {
                    self.total += n as u64;
                    if self.total > self.limit {
                        let why =
                            format!("wrote more than the output limit of {} bytes", self.limit);
                        return Err(self.fail(why));
                    }
                    self.check(&buf[..n], false)?;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let fd = out.as_raw_fd();
                    if let Err(why) = self.run.wait_io(Some(fd), None) {
                        return Err(self.fail(why));
                    }
                }
                Err(e) => return Err(self.fail(format!("reading its output: {e}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Seek;

    const MSG: &[u8] = b"From: a@example.org\nSubject: hi\n\nbody\n";

    fn message(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        // Left at its end: the runner reads by position, not by offset.
        f
    }

    fn env() -> ProgramEnv {
        ProgramEnv::from_vars(
            vec![
                ("PATH", PATH.to_string()),
                ("SENDER", "s@example.org".to_string()),
            ],
            Some(std::env::temp_dir()),
        )
    }

    fn limits() -> Limits {
        Limits {
            time: Duration::from_secs(20),
            output: 1 << 20,
        }
    }

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    fn sh(script: &str) -> Vec<String> {
        argv(&["/bin/sh", "-c", script])
    }

    /// Runs a filter, collecting its output in memory.
    fn run_filter(cmd: &[String], input: &[u8], limits: &Limits) -> FilterOutcome<Vec<u8>> {
        let f = message(input);
        filter(cmd, &env(), &f, limits, |r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v)
                .map_err(|e| Failure::from_io("reading", &e))?;
            Ok(v)
        })
    }

    fn unchanged(o: FilterOutcome<Vec<u8>>) -> String {
        match o {
            FilterOutcome::Unchanged(why) => why,
            FilterOutcome::Replaced(v) => {
                panic!("replaced with {:?}", String::from_utf8_lossy(&v))
            }
        }
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[test]
    fn cat_replaces_the_message_with_the_same_bytes() {
        match run_filter(&argv(&["/bin/cat"]), MSG, &limits()) {
            FilterOutcome::Replaced(v) => assert_eq!(v, MSG),
            FilterOutcome::Unchanged(why) => panic!("{why}"),
        }
    }

    #[test]
    fn a_big_message_goes_through_both_pipes() {
        // Larger than any pipe buffer both ways: feeding and reading must
        // go on together.
        let mut big = b"Subject: big\n\n".to_vec();
        big.extend(std::iter::repeat_n(b'x', 3 << 20));
        let l = Limits {
            output: 4 << 20,
            ..limits()
        };
        match run_filter(&argv(&["cat"]), &big, &l) {
            FilterOutcome::Replaced(v) => assert!(v == big, "output differs"),
            FilterOutcome::Unchanged(why) => panic!("{why}"),
        }
    }

    #[test]
    fn from_line_then_header_is_a_message() {
        let m = b"From s@example.org  Sat Nov 21 10:00:00 2026\nSubject: x\n\nb\n";
        assert!(matches!(
            run_filter(&argv(&["cat"]), m, &limits()),
            FilterOutcome::Replaced(_)
        ));
    }

    #[test]
    fn the_file_offset_is_left_alone() {
        let mut f = message(MSG);
        f.seek(io::SeekFrom::Start(3)).unwrap();
        let o = filter(&argv(&["cat"]), &env(), &f, &limits(), |r| {
            io::copy(r, &mut io::sink()).map_err(|e| Failure::from_io("x", &e))
        });
        assert!(matches!(o, FilterOutcome::Replaced(n) if n == MSG.len() as u64));
        assert_eq!(f.stream_position().unwrap(), 3);
    }

    /// Waits (up to 10 s) until process `pid` is gone or a zombie
    /// that is not ours: killed.
    fn dies(pid: &str) -> bool {
        for _ in 0..1000 {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return true,
                Ok(stat) => {
                    // pid (comm) state ppid ...
                    let after = &stat[stat.rfind(')').unwrap() + 2..];
                    let mut f = after.split(' ');
                    let (state, ppid) = (f.next().unwrap(), f.next().unwrap());
                    if state == "Z" && ppid != std::process::id().to_string() {
                        return true;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn a_filter_that_hangs_is_killed_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let bg = dir.path().join("bg");
        let l = Limits {
            time: Duration::from_millis(500),
            ..limits()
        };
        // The background sleep is in the group too, and holds stdout open.
        let script = format!("sleep 100 & echo $! > {}; sleep 100", bg.display());
        let why = unchanged(run_filter(&sh(&script), MSG, &l));
        assert!(why.contains("killed at the time limit of 0.500 s"), "{why}");
        let pid = std::fs::read_to_string(&bg).unwrap();
        assert!(dies(pid.trim()), "the background process {pid} lives on");
    }

    #[test]
    fn a_filter_killed_by_a_signal_is_unchanged() {
        let why = unchanged(run_filter(&sh("cat; kill -SEGV $$"), MSG, &limits()));
        assert!(why.contains("killed by signal SIGSEGV"), "{why}");
    }

    #[test]
    fn a_filter_that_exits_non_zero_is_unchanged_with_its_stderr() {
        let why = unchanged(run_filter(
            &sh("cat; echo 'spamd: connection refused' >&2; exit 1"),
            MSG,
            &limits(),
        ));
        assert!(why.contains("exited with status 1"), "{why}");
        assert!(why.contains("stderr: spamd: connection refused"), "{why}");
    }

    #[test]
    fn stderr_is_kept_to_4_kib_and_drained() {
        let why = unchanged(run_filter(
            &sh("head -c 1000000 /dev/zero | tr '\\0' e >&2; exit 3"),
            MSG,
            &limits(),
        ));
        let kept = why
            .split_once("(stderr: ")
            .and_then(|(_, k)| k.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{why}"));
        assert!(why.starts_with("exited with status 3"), "{why}");
        assert_eq!(kept.len(), STDERR_KEPT);
        assert!(kept.bytes().all(|b| b == b'e'));
    }

    #[test]
    fn nothing_written_is_unchanged() {
        let why = unchanged(run_filter(&sh("cat >/dev/null"), MSG, &limits()));
        assert!(why.contains("wrote nothing"), "{why}");
    }

    #[test]
    fn output_that_is_not_a_message_is_unchanged() {
        for out in [
            "\nbody only",
            "no colon here\n",
            " X: leading blank\n",
            "From x\n\n",
        ] {
            let script = format!("cat >/dev/null; printf '{out}'");
            let why = unchanged(run_filter(&sh(&script), MSG, &limits()));
            assert!(why.contains("not a message"), "{out:?}: {why}");
        }
    }

    #[test]
    fn output_over_the_limit_is_cut_and_unchanged() {
        let l = Limits {
            output: 100_000,
            ..limits()
        };
        let why = unchanged(run_filter(&sh("cat; yes"), MSG, &l));
        assert!(why.contains("output limit of 100000 bytes"), "{why}");
    }

    #[test]
    fn output_at_the_limit_is_a_message() {
        let l = Limits {
            output: MSG.len() as u64,
            ..limits()
        };
        assert!(matches!(
            run_filter(&argv(&["cat"]), MSG, &l),
            FilterOutcome::Replaced(_)
        ));
    }

    #[test]
    fn a_program_that_does_not_exist_is_unchanged() {
        let why = unchanged(run_filter(&argv(&["/nonexistent/filter"]), MSG, &limits()));
        assert!(why.contains("cannot run /nonexistent/filter"), "{why}");
        let f = message(MSG);
        assert!(matches!(
            pipe(&argv(&["no-such-program-here"]), &env(), &f, &limits()),
            PipeOutcome::Failed(_)
        ));
        assert!(matches!(
            pipe(&[], &env(), &f, &limits()),
            PipeOutcome::Failed(_)
        ));
    }

    #[test]
    fn tilde_is_the_home_and_the_environment_is_only_ours() {
        let home = tempfile::tempdir().unwrap();
        let out = home.path().join("seen");
        let script = home.path().join("prog");
        std::fs::write(
            &script,
            format!("#!/bin/sh\n{{ pwd; env | sort; }} > {}\n", out.display()),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let e = ProgramEnv::from_vars(
            vec![
                ("PATH", PATH.to_string()),
                ("SENDER", "s@example.org".to_string()),
            ],
            Some(home.path().to_path_buf()),
        );
        let f = message(MSG);
        assert_eq!(
            pipe(&argv(&["~/prog"]), &e, &f, &limits()),
            PipeOutcome::Delivered
        );
        let seen = std::fs::read_to_string(&out).unwrap();
        let mut lines = seen.lines();
        assert_eq!(lines.next(), Some(home.path().to_str().unwrap()));
        let vars: Vec<&str> = lines.map(|l| l.split('=').next().unwrap()).collect();
        // sh adds PWD (and may add SHLVL, _); nothing of ours leaks.
        for v in &vars {
            assert!(
                ["PATH", "SENDER", "PWD", "SHLVL", "_", "OLDPWD"].contains(v),
                "{vars:?}"
            );
        }
        assert!(vars.contains(&"SENDER"));
    }

    #[test]
    fn pipe_exit_statuses() {
        let f = message(MSG);
        let run = |s: &str| pipe(&sh(s), &env(), &f, &limits());
        assert_eq!(run("cat >/dev/null"), PipeOutcome::Delivered);
        assert!(matches!(run("exit 75"), PipeOutcome::Defer(w) if w.contains("status 75")));
        assert!(matches!(run("exit 1"), PipeOutcome::Failed(w) if w.contains("status 1")));
        assert!(matches!(run("kill -SEGV $$"), PipeOutcome::Failed(w) if w.contains("SIGSEGV")));
        // A program that stops reading early: its exit status decides.
        let mut big = b"Subject: big\n\n".to_vec();
        big.extend(std::iter::repeat_n(b'x', 1 << 20));
        let g = message(&big);
        assert_eq!(
            pipe(&sh("head -c 10 >/dev/null"), &env(), &g, &limits()),
            PipeOutcome::Delivered
        );
    }

    #[test]
    fn a_pipe_gets_the_whole_message() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got");
        let f = message(MSG);
        let cmd = argv(&["/bin/sh", "-c", "cat > \"$1\"", "sh", out.to_str().unwrap()]);
        assert_eq!(pipe(&cmd, &env(), &f, &limits()), PipeOutcome::Delivered);
        assert_eq!(std::fs::read(&out).unwrap(), MSG);
    }

    #[test]
    fn a_pipe_that_hangs_fails() {
        let f = message(MSG);
        let l = Limits {
            time: Duration::from_millis(300),
            ..limits()
        };
        assert!(matches!(
            pipe(&sh("sleep 100"), &env(), &f, &l),
            PipeOutcome::Failed(w) if w.contains("time limit")
        ));
    }

    #[test]
    fn runs_leave_no_descriptor_and_no_child() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let before = open_fds();
        let l = Limits {
            time: Duration::from_millis(300),
            output: 1000,
        };
        let logged = |s: &str| sh(&format!("echo $$ >> {}; {s}", pids.display()));
        for _ in 0..5 {
            for cmd in [
                logged("exec cat"),
                logged("sleep 100"),
                logged("exec yes"),
                logged("kill -SEGV $$"),
                logged("exit 75"),
                argv(&["/nonexistent"]),
            ] {
                let _ = run_filter(&cmd, MSG, &l);
                let f = message(MSG);
                let _ = pipe(&cmd, &env(), &f, &l);
            }
        }
        // The tests of this module run side by side: their descriptors
        // come and go, so allow for some, not for a leak per run (50).
        assert!(open_fds() <= before + 12, "{} > {before}", open_fds());
        // No zombie: every program was reaped (a reaped pid is gone from
        // /proc; a zombie of ours is still there).
        let pids = std::fs::read_to_string(&pids).unwrap();
        assert_eq!(pids.lines().count(), 50);
        for pid in pids.lines() {
            assert!(
                std::fs::metadata(format!("/proc/{pid}")).is_err() || dies(pid),
                "{pid} not reaped"
            );
        }
    }

    #[test]
    fn message_check() {
        assert_eq!(looks_like_message(b"Subject: x\n", false), Some(true));
        assert_eq!(looks_like_message(b"Subject : x\n", false), Some(true));
        assert_eq!(looks_like_message(b"Subj", false), None);
        assert_eq!(looks_like_message(b"Subj", true), Some(false));
        assert_eq!(looks_like_message(b"Fro", false), None);
        assert_eq!(looks_like_message(b"From: x", false), Some(true));
        assert_eq!(looks_like_message(b"From x y\nTo: z", false), Some(true));
        assert_eq!(looks_like_message(b"From x y\n\n", false), Some(false));
        assert_eq!(looks_like_message(b"\n", false), Some(false));
        assert_eq!(looks_like_message(b"a b: c", false), Some(false));
        assert_eq!(looks_like_message(b":x", false), Some(false));
        assert_eq!(
            looks_like_message(&[b'a'; HEAD_CHECKED], false),
            Some(false)
        );
    }
}
