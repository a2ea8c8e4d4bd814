//! A stand-in for `crate::engine::program` (the verbs-programs branch owns
//! the real runner): the agreed API, so that the executor and its tests
//! work before that module lands. Runs a program without a shell, the
//! environment cleared and then set, in HOME, in its own process group,
//! the group killed at the time limit; stdin is the message file.

use crate::output::exit::Failure;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The environment of a program, as local(8) exports it.
#[derive(Debug, Clone, Default)]
pub struct ProgramEnv {
    pub vars: Vec<(String, String)>,
    /// The working directory (the recipient's home).
    pub home: Option<std::path::PathBuf>,
}

/// The limits of one run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub time: Duration,
    pub output: u64,
}

/// What became of a filter.
pub enum FilterOutcome<T> {
    /// The program succeeded; `T` is what `out` made of its output.
    Replaced(T),
    /// The message goes on unchanged, for this reason.
    Unchanged(String),
}

/// What became of a pipe.
#[derive(Debug)]
pub enum PipeOutcome {
    Delivered,
    Defer(String),
    Failed(String),
}

fn spawn(argv: &[String], env: &ProgramEnv, input: &File, stdout: Stdio) -> Result<Child, String> {
    let mut input = input.try_clone().map_err(|e| e.to_string())?;
    io::Seek::seek(&mut input, io::SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..])
        .env_clear()
        .envs(env.vars.iter().map(|(k, v)| (k, v)))
        .stdin(input)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .process_group(0);
    match &env.home {
        Some(h) if h.is_dir() => c.current_dir(h),
        _ => c.current_dir("/"),
    };
    c.spawn()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))
}

/// Kills the child's process group when `time` passes before `done`.
fn watchdog(pid: u32, time: Duration) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(time) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    });
    tx
}

/// The first 4 KiB of stderr, read to the end on a thread.
fn stderr_of(child: &mut Child) -> std::thread::JoinHandle<String> {
    let err = child.stderr.take();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(mut e) = err {
            let mut buf = [0u8; 4096];
            while let Ok(n) = e.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = 4096 - kept.len().min(4096);
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
        String::from_utf8_lossy(&kept).trim().to_string()
    })
}

fn describe(status: std::process::ExitStatus, stderr: &str, time: Duration) -> String {
    let what = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(9)) => format!("killed (time limit of {} s, or signal 9)", time.as_secs()),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "ended".to_string(),
    };
    if stderr.is_empty() {
        what
    } else {
        format!("{what}: {stderr}")
    }
}

/// Counts what the program writes; an error past the limit.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            self.left = 0;
            return Err(io::Error::other("output limit exceeded"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Runs a filter: the message on stdin, its stdout given to `out`.
pub fn filter<T>(
    argv: &[String],
    env: &ProgramEnv,
    input: &File,
    limits: &Limits,
    out: &mut dyn FnMut(&mut dyn Read) -> Result<T, Failure>,
) -> FilterOutcome<T> {
    let mut child = match spawn(argv, env, input, Stdio::piped()) {
        Ok(c) => c,
        Err(why) => return FilterOutcome::Unchanged(why),
    };
    let dog = watchdog(child.id(), limits.time);
    let err = stderr_of(&mut child);
    let stdout = child.stdout.take().expect("stdout piped");
    let mut r = Capped {
        inner: stdout,
        left: limits.output,
    };
    let got = out(&mut r);
    let over = r.left == 0;
    drop(r);
    if got.is_err() || over {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let status = child.wait();
    drop(dog);
    let stderr = err.join().unwrap_or_default();
    match (got, status) {
        (_, _) if over => FilterOutcome::Unchanged(format!("output over {} bytes", limits.output)),
        (Err(f), _) => FilterOutcome::Unchanged(format!("reading its output: {f}")),
        (Ok(v), Ok(s)) if s.success() => FilterOutcome::Replaced(v),
        (Ok(_), Ok(s)) => FilterOutcome::Unchanged(describe(s, &stderr, limits.time)),
        (Ok(_), Err(e)) => FilterOutcome::Unchanged(format!("wait: {e}")),
    }
}

/// Runs a pipe: the message on stdin; exit 0 delivered, 75 defer.
pub fn pipe(argv: &[String], env: &ProgramEnv, input: &File, limits: &Limits) -> PipeOutcome {
    let mut child = match spawn(argv, env, input, Stdio::null()) {
        Ok(c) => c,
        Err(why) => return PipeOutcome::Failed(why),
    };
    let dog = watchdog(child.id(), limits.time);
    let err = stderr_of(&mut child);
    let status = child.wait();
    drop(dog);
    let stderr = err.join().unwrap_or_default();
    match status {
        Ok(s) if s.success() => PipeOutcome::Delivered,
        Ok(s) if s.code() == Some(crate::output::exit::TEMPFAIL) => {
            PipeOutcome::Defer(describe(s, &stderr, limits.time))
        }
        Ok(s) => PipeOutcome::Failed(describe(s, &stderr, limits.time)),
        Err(e) => PipeOutcome::Failed(format!("wait: {e}")),
    }
}
