//! Test harness: a temporary home with a Maildir, the real `deliver` binary,
//! and a few readable helpers. When the tests run as root, deliveries run as
//! `nobody` (deliver refuses to deliver as root), in a home owned by nobody.
#![allow(dead_code)]

pub mod dovecot;
pub mod spamd;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_deliver");

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The uid/gid deliveries run as.
pub fn runner() -> (u32, u32) {
    if is_root() {
        let u = nix::unistd::User::from_name("nobody")
            .unwrap()
            .expect("user nobody exists");
        (u.uid.as_raw(), u.gid.as_raw())
    } else {
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    }
}

pub fn chown_tree(p: &Path, uid: u32, gid: u32) {
    if !is_root() {
        return;
    }
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    if p.is_dir() && !p.is_symlink() {
        for e in fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

pub struct Home {
    pub _dir: tempfile::TempDir,
    pub home: PathBuf,
    pub maildir: PathBuf,
    pub system_rules: Option<PathBuf>,
    pub user_rules: PathBuf,
    pub uid: u32,
    pub gid: u32,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn first_line(&self) -> &str {
        self.stderr
            .lines()
            .find(|l| !l.starts_with("deliver: "))
            .unwrap_or("")
    }
}

impl Home {
    pub fn new() -> Home {
        let dir = tempfile::Builder::new()
            .prefix("deliver-test")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.path().join("home");
        fs::create_dir(&home).unwrap();
        let (uid, gid) = runner();
        chown_tree(&home, uid, gid);
        Home {
            maildir: home.join("Maildir"),
            user_rules: home.join("rules.toml"),
            home,
            _dir: dir,
            system_rules: None,
            uid,
            gid,
        }
    }

    /// Writes a system rules file (owned by root, as an admin's would be).
    pub fn system(&mut self, text: &str) -> &mut Self {
        let p = self._dir.path().join("system.toml");
        fs::write(&p, text).unwrap();
        self.system_rules = Some(p);
        self
    }

    /// Writes a file beside the system rules and returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self._dir.path().join(name);
        fs::write(&p, text).unwrap();
        p
    }

    /// Writes the user's rules file, owned by the user, mode 0600.
    pub fn user(&self, text: &str) -> &Self {
        fs::write(&self.user_rules, text).unwrap();
        fs::set_permissions(&self.user_rules, fs::Permissions::from_mode(0o600)).unwrap();
        chown_tree(&self.user_rules, self.uid, self.gid);
        self
    }

    /// `deliver check ARGS` in an empty environment, as the test's user
    /// when the tests run as root (as root, check writes the system caches).
    pub fn check(&self, args: &[&str]) -> Run {
        let mut c = Command::new(BIN);
        c.arg("check").args(args).env_clear();
        if is_root() {
            c.uid(self.uid).gid(self.gid);
        }
        run_cmd(c, b"")
    }

    /// Writes `text` as the user's rules, runs `deliver check` on it, which
    /// must find a problem (exit 1), and returns what it printed.
    pub fn check_fails(&self, text: &str) -> String {
        self.user(text);
        let mut c = self.bare_command(&["check", "--user-rules"]);
        c.arg(&self.user_rules);
        let r = run_cmd(c, b"");
        assert_eq!(r.code, 1, "{text}: {} {}", r.stdout, r.stderr);
        r.stdout
    }

    /// The binary with `args` only, as the test's user, in the environment
    /// every test uses (`PATH`, and `HOME` = the test home), from `/`.
    pub fn bare_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args);
        c.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &self.home);
        c.current_dir("/");
        if is_root() {
            c.uid(self.uid).gid(self.gid);
        }
        c
    }

    /// `bare_command` with this home's Maildir and rules files.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = self.bare_command(args);
        c.arg("--maildir").arg(&self.maildir);
        c.arg("--user-rules").arg(&self.user_rules);
        let rules = self
            .system_rules
            .clone()
            .unwrap_or_else(|| self._dir.path().join("no-system-rules.toml"));
        if self.system_rules.is_some() {
            c.arg("--rules").arg(rules);
        }
        c
    }

    /// Runs one delivery with `input` on stdin.
    pub fn run(&self, args: &[&str], input: &[u8]) -> Run {
        run_cmd(self.command(args), input)
    }

    pub fn deliver(&self, input: &[u8]) -> Run {
        self.run(
            &["-f", "sender@example.org", "-a", "user@example.com"],
            input,
        )
    }

    /// Every file under the Maildir's `new/` directories, keyed by folder
    /// ("" for the Inbox), with contents.
    pub fn delivered(&self) -> BTreeMap<String, Vec<Vec<u8>>> {
        let mut out = BTreeMap::new();
        if !self.maildir.exists() {
            return out;
        }
        let mut dirs = vec![(String::new(), self.maildir.join("new"))];
        for e in fs::read_dir(&self.maildir).unwrap() {
            let e = e.unwrap();
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with('.') && e.file_type().unwrap().is_dir() {
                dirs.push((n[1..].to_string(), e.path().join("new")));
            }
        }
        for (name, d) in dirs {
            let Ok(rd) = fs::read_dir(&d) else { continue };
            let mut files: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
            files.sort();
            let v: Vec<Vec<u8>> = files.iter().map(|p| fs::read(p).unwrap()).collect();
            if !v.is_empty() {
                out.insert(name, v);
            }
        }
        out
    }

    pub fn files_in(&self, rel: &str) -> Vec<PathBuf> {
        match fs::read_dir(self.maildir.join(rel)) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Total number of files in all new/ dirs.
    pub fn count(&self) -> usize {
        self.delivered().values().map(Vec::len).sum()
    }

    pub fn owner_of(&self, p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().uid()
    }
}

/// Sets the access time of `p` (a directory too), leaving its mtime.
pub fn set_atime(p: &Path, t: std::time::SystemTime) {
    fs::File::open(p)
        .unwrap()
        .set_times(fs::FileTimes::new().set_accessed(t))
        .unwrap();
}

/// The access time of `p`.
pub fn atime(p: &Path) -> std::time::SystemTime {
    fs::metadata(p).unwrap().accessed().unwrap()
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Starts `c` with piped stdio, and a thread that writes `input` to its
/// stdin and then, unless `hold` is given, closes it; with `hold`, stdin
/// stays open until the sender of `hold` is dropped.
fn start(
    mut c: Command,
    input: &[u8],
    hold: Option<std::sync::mpsc::Receiver<()>>,
) -> (std::process::Child, std::thread::JoinHandle<()>) {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn deliver");
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
        if let Some(h) = hold {
            let _ = h.recv();
        }
    });
    (child, writer)
}

pub fn run_cmd(c: Command, input: &[u8]) -> Run {
    let (child, writer) = start(c, input, None);
    let out: Output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out.into()
}

/// A message as local(8) hands it over: From_ line, then the message.
pub fn msg(headers: &str, body: &str) -> Vec<u8> {
    format!("From sender@example.org  Sat Nov 21 10:00:00 2026\n{headers}\n{body}").into_bytes()
}

/// The part of a local(8) input that must be delivered: all but the From_ line.
pub fn without_from(input: &[u8]) -> &[u8] {
    if input.starts_with(b"From ") {
        let i = input
            .iter()
            .position(|&b| b == b'\n')
            .map_or(input.len(), |i| i + 1);
        &input[i..]
    } else {
        input
    }
}

/// A second local user, for the attacks that need one: Debian's `games`
/// (uid 5), a real unprivileged account present on every Debian system,
/// and not the user deliveries run as (`nobody`). `None` unless the tests
/// run as root (a test that needs it then skips).
pub fn attacker() -> Option<(u32, u32)> {
    if !is_root() {
        return None;
    }
    let u = nix::unistd::User::from_name("games")
        .unwrap()
        .expect("user games exists (Debian's base-passwd)");
    Some((u.uid.as_raw(), u.gid.as_raw()))
}

/// `program args...` as the attacker, with `groups` as its supplementary
/// groups (say, a group it shares with the victim), from `/`, with an
/// empty environment but PATH. Panics unless root.
pub fn attacker_command(program: &str, args: &[&str], groups: &[u32]) -> Command {
    let (uid, gid) = attacker().expect("attacker_command needs root");
    let mut c = Command::new(program);
    c.args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/");
    let groups: Vec<nix::unistd::Gid> = groups
        .iter()
        .map(|&g| nix::unistd::Gid::from_raw(g))
        .collect();
    // std's Command runs pre_exec closures after its own uid/gid switch,
    // when setgroups(2) is no longer allowed: switch here, all three.
    // SAFETY: setgroups, setgid and setuid are async-signal-safe; nothing
    // is allocated after the fork (the group list is built before).
    unsafe {
        c.pre_exec(move || {
            nix::unistd::setgroups(&groups).map_err(std::io::Error::from)?;
            nix::unistd::setgid(nix::unistd::Gid::from_raw(gid)).map_err(std::io::Error::from)?;
            nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)).map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    c
}

/// `run_cmd` for a run that might hang: the process is killed (SIGKILL)
/// after `limit`, and `None` returned. stdin stays open (no EOF) after
/// `input` when `hold_stdin` is set, as from a sender that never finishes.
pub fn run_cmd_within(
    c: Command,
    input: &[u8],
    hold_stdin: bool,
    limit: std::time::Duration,
) -> Option<Run> {
    // With hold_stdin, the pipe stays open until the test is over with the child.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let (mut child, writer) = start(c, input, hold_stdin.then_some(done_rx));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let start = std::time::Instant::now();
    let mut killed = false;
    loop {
        match child.try_wait().unwrap() {
            Some(_) => break,
            None if start.elapsed() >= limit => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                killed = true;
                break;
            }
            None => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    let out: Output = child.wait_with_output().unwrap();
    drop(done_tx);
    writer.join().unwrap();
    (!killed).then(|| out.into())
}

/// Runs `c` as `run_cmd` does, and returns also the largest resident set
/// of the process, or of any process it waited for, in KiB (wait4(2)'s
/// `ru_maxrss`).
pub fn run_measured(c: Command, input: &[u8]) -> (Run, u64) {
    use std::io::Read;
    let (mut child, writer) = start(c, input, None);
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).unwrap();
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        err.read_to_end(&mut v).unwrap();
        v
    });
    let mut status = 0;
    // SAFETY: plain structs filled by the kernel; the pid is our child,
    // which std's `Child` will not wait for again (it is dropped unused).
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as i32;
    let r = unsafe { nix::libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    writer.join().unwrap();
    let run = Run {
        code: if nix::libc::WIFEXITED(status) {
            nix::libc::WEXITSTATUS(status)
        } else {
            -1
        },
        stdout: String::from_utf8_lossy(&out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
    };
    drop(child);
    (run, usage.ru_maxrss as u64)
}
