//! `deliver lmtp`: a resident LMTP service (RFC 2033) behind Postfix's
//! lmtp(8) client, with the same rules, maps, decisions and durability as
//! exec mode.
//!
//! - One thread per session, up to `max_sessions` (`[lmtp]`). A session
//!   reads DATA once into a spool (`data`), then delivers it to each
//!   recipient in turn and sends each recipient's reply: `250` only once
//!   the engine has fsynced the file and its directory; any failure of our
//!   own is a `4xx` for that recipient alone.
//! - Virtual mailboxes (`[lmtp] mailbox` or `mailbox_maps`): the service
//!   runs as the one unprivileged user that owns them, and delivers in the
//!   session's thread with an engine from a pool (`Gen::engines`); an
//!   engine is `Engine::deliver_to` with the recipient's Maildir and its
//!   rules file `<Maildir>/deliver.rules.toml`.
//! - System users (no mapping): the service runs as root, and each
//!   delivery is exec mode (`deliver -d USER ...`) in a child process, which
//!   becomes the user before it opens any of the user's files; the service
//!   itself opens none.
//! - The rules are loaded once; each transaction checks the identity of
//!   the rules file and its tables (device, inode, size, mtime, ctime) and
//!   loads them again when one changed; a file that does not load keeps
//!   the old rules, with a log line. SIGHUP reloads; SIGTERM stops
//!   accepting, lets every open transaction finish, and ends idle sessions
//!   with `421`.

pub mod config;
pub mod data;
mod session;

use crate::engine::load::{self, Options};
use crate::engine::privs::{self, EnvIdentity, Recipient};
use crate::engine::{inflight, Engine, Outcome, Target};
use crate::input::envelope::Flags;
use crate::output::exit::Failure;
use crate::output::log::Logger;
use crate::output::text::for_status;
use crate::policy::maps::OpenOptions;
use config::{Config, Identity, Limits, Mapping, Resolved};
use data::Spool;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the user's own rules file sits in a virtual mailbox.
pub const USER_RULES_NAME: &str = "deliver.rules.toml";

/// What `deliver lmtp` was given.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// `unix:PATH` or `inet:HOST:PORT`; `None`: the socket systemd passed.
    pub listen: Option<String>,
    pub rules: Option<PathBuf>,
    pub log_stderr: bool,
}

/// A session's connection. Its reader, its writer and the stop pass
/// share it, and with it one descriptor: a session takes one descriptor,
/// not one for each of them.
#[derive(Debug, Clone)]
pub struct Stream(Arc<Socket>);

#[derive(Debug)]
enum Socket {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match &*self.0 {
            Socket::Unix(s) => s.set_read_timeout(d),
            Socket::Tcp(s) => s.set_read_timeout(d),
        }
    }

    fn shutdown_read(&self) {
        let _ = match &*self.0 {
            Socket::Unix(s) => s.shutdown(std::net::Shutdown::Read),
            Socket::Tcp(s) => s.shutdown(std::net::Shutdown::Read),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &*self.0 {
            Socket::Unix(s) => (&mut &*s).read(buf),
            Socket::Tcp(s) => (&mut &*s).read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &*self.0 {
            Socket::Unix(s) => (&mut &*s).write(buf),
            Socket::Tcp(s) => (&mut &*s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Listener {
    Unix(UnixListener, Option<PathBuf>),
    Tcp(TcpListener),
}

impl Listener {
    fn accept(&self) -> io::Result<Stream> {
        Ok(Stream(Arc::new(match self {
            Listener::Unix(l, _) => Socket::Unix(l.accept()?.0),
            Listener::Tcp(l) => {
                let s = l.accept()?.0;
                let _ = s.set_nodelay(true);
                Socket::Tcp(s)
            }
        })))
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Listener::Unix(l, _) => l.set_nonblocking(true),
            Listener::Tcp(l) => l.set_nonblocking(true),
        }
    }

    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Listener::Unix(l, _) => l.as_fd(),
            Listener::Tcp(l) => l.as_fd(),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, Some(p)) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Opens `--listen`, or takes the socket systemd passed (LISTEN_FDS).
fn listen(spec: Option<&str>) -> Result<Listener, Failure> {
    let Some(spec) = spec else {
        let mut fds = listenfd::ListenFd::from_env();
        if fds.len() == 0 {
            return Err(Failure::usage(
                "deliver lmtp: no --listen and no socket from systemd (LISTEN_FDS)",
            ));
        }
        if let Ok(Some(l)) = fds.take_unix_listener(0) {
            return Ok(Listener::Unix(l, None));
        }
        if let Ok(Some(l)) = fds.take_tcp_listener(0) {
            return Ok(Listener::Tcp(l));
        }
        return Err(Failure::usage(
            "deliver lmtp: the socket from systemd is not a listening UNIX or TCP stream socket",
        ));
    };
    let bad = |e: io::Error| Failure::from_io(format!("deliver lmtp: listening on {spec}"), &e);
    if let Some(path) = spec.strip_prefix("unix:") {
        let p = PathBuf::from(path);
        // A socket left by a service that did not end cleanly is replaced;
        // anything else at the path is not touched.
        if let Ok(m) = std::fs::symlink_metadata(&p) {
            if !m.file_type().is_socket() {
                return Err(Failure::usage(format!(
                    "deliver lmtp: {path} exists and is not a socket"
                )));
            }
            std::fs::remove_file(&p).map_err(bad)?;
        }
        let l = UnixListener::bind(&p).map_err(bad)?;
        // As dovecot's lmtp listener: anyone who can reach the directory
        // may connect (Postfix's lmtp client runs as `postfix`).
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).map_err(bad)?;
        return Ok(Listener::Unix(l, Some(p)));
    }
    if let Some(addr) = spec.strip_prefix("inet:") {
        return Ok(Listener::Tcp(TcpListener::bind(addr).map_err(bad)?));
    }
    Err(Failure::usage(format!(
        "deliver lmtp: --listen {spec}: expected unix:PATH or inet:HOST:PORT"
    )))
}

/// One loaded version of the rules: the `[lmtp]` section, the recipient
/// delimiter, the identities of the files read, and (virtual mailboxes)
/// the engines ready to deliver.
pub struct Gen {
    config: Config,
    delimiter: String,
    files: Vec<(PathBuf, Identity)>,
    engines: Mutex<Vec<Engine>>,
}

impl Gen {
    fn resolve(&self, rcpt: &str) -> Resolved {
        self.config.resolve(rcpt, &self.delimiter)
    }
}

/// What every session shares.
pub struct Shared {
    opts: ServeOptions,
    /// Who the service runs as (virtual mailboxes), or root.
    who: Recipient,
    system_users: bool,
    hostname: String,
    current: Mutex<Arc<Gen>>,
    /// The identities of a version that failed to load, so that it is
    /// logged once, not at every transaction.
    failed: Mutex<Option<Vec<Identity>>>,
    reload: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    log: Mutex<Logger>,
    sessions: AtomicUsize,
    registry: Mutex<HashMap<u64, (Stream, Arc<AtomicBool>)>>,
}

fn engine_options(rules: Option<&Path>) -> Options {
    Options {
        rules: rules.map(Path::to_path_buf),
        ..Options::default()
    }
}

impl Shared {
    fn limits(&self) -> Limits {
        self.current.lock().unwrap().config.limits
    }

    fn stopping(&self) -> bool {
        self.stop.load(SeqCst)
    }

    fn warn(&self, line: &str) {
        self.log.lock().unwrap().warn(line);
    }

    fn info(&self, line: &str) {
        self.log.lock().unwrap().info(line);
    }

    /// Loads the rules: the system file (through an engine, which also
    /// checks it), and its `[lmtp]` section.
    fn load_gen(&self) -> Result<Gen, String> {
        let rules = self.opts.rules.as_deref();
        let path = rules.map_or_else(
            || PathBuf::from(crate::policy::rules::SYSTEM_RULES),
            Path::to_path_buf,
        );
        let before = config::identity(&path);
        // Not deferred: a resident engine compiles all the system rules
        // once, instead of the rules a message may need at every delivery
        // (the rules cache is for exec mode, which starts afresh each time).
        let engine = Engine::load(
            engine_options(rules),
            &self.who,
            Logger::new(self.opts.log_stderr),
            false,
        )
        .map_err(|(f, _)| f.to_string())?;
        let opts = OpenOptions {
            cache_dir: engine
                .system()
                .settings
                .map_cache_dir
                .clone()
                .or_else(|| load::cache_dir(self.who.home.as_deref())),
            system_cache_dir: engine.system().settings.system_cache_dir.clone(),
            // The system file: `~/` in a table path is an error there.
            home: None,
        };
        let config = config::load(rules, &opts).map_err(|d| load::format_diags(&d))?;
        let mut files: Vec<(PathBuf, Identity)> = vec![(path, before)];
        for f in config.files.iter().skip(1) {
            files.push((f.clone(), config::identity(f)));
        }
        // The tables of `[access]` and of `address` conditions.
        let system = engine.system();
        let mut tables: Vec<&dyn crate::policy::maps::Table> =
            system.access.tables().map(|t| &**t).collect();
        for r in &system.rules {
            r.cond.tables(&mut tables);
        }
        for t in tables {
            for f in config::table_files(t.spec()) {
                let id = config::identity(&f);
                files.push((f, id));
            }
        }
        match (&config.mapping, self.system_users) {
            (Mapping::SystemUsers, false) => {
                return Err("no [lmtp] mailbox or mailbox_maps: delivering to system users needs the service to start as root".into())
            }
            (Mapping::Template(_) | Mapping::Maps { .. }, true) => {
                return Err("[lmtp] maps recipients to virtual mailboxes: run the service as the user who owns them, not as root".into())
            }
            _ => {}
        }
        let delimiter = engine.system().settings.recipient_delimiter.clone();
        let engines = if self.system_users {
            Vec::new()
        } else {
            vec![engine]
        };
        Ok(Gen {
            config,
            delimiter,
            files,
            engines: Mutex::new(engines),
        })
    }

    /// The rules for a new transaction: loaded again when a file changed
    /// (or SIGHUP asked), the old ones kept when the new ones do not load.
    fn current(&self) -> Arc<Gen> {
        let mut cur = self.current.lock().unwrap();
        let hup = self.reload.swap(false, SeqCst);
        let now: Vec<Identity> = cur.files.iter().map(|(p, _)| config::identity(p)).collect();
        let changed = cur.files.iter().zip(&now).any(|((_, was), is)| was != is);
        if !hup && !changed {
            return cur.clone();
        }
        let mut failed = self.failed.lock().unwrap();
        if !hup && failed.as_ref() == Some(&now) {
            return cur.clone();
        }
        match self.load_gen() {
            Ok(g) => {
                self.info(&format!(
                    "lmtp: rules loaded again ({})",
                    if hup { "SIGHUP" } else { "a file changed" }
                ));
                *cur = Arc::new(g);
                *failed = None;
            }
            Err(why) => {
                self.warn(&format!("lmtp: keeping the rules loaded before: {why}"));
                *failed = Some(now);
            }
        }
        cur.clone()
    }

    /// Delivers the spooled message to one recipient.
    fn deliver(
        &self,
        gen: &Gen,
        spool: &Spool,
        sender: &str,
        rcpt: &str,
        to: &Resolved,
        session: &str,
    ) -> Result<(), Failure> {
        let prefix = format!("Return-Path: <{sender}>\nDelivered-To: {rcpt}\n");
        match to {
            Resolved::Maildir(md) => {
                let r = self.deliver_virtual(gen, spool, &prefix, sender, rcpt, md, session);
                // Exec mode's warning line of a failure, which names the
                // recipient and the session here: one process serves all.
                // (A system user's child logs its own, as exec mode.)
                if let Err(f) = &r {
                    self.warn(&failure_line(f, rcpt, session));
                }
                r
            }
            Resolved::User(user) => {
                self.deliver_system(spool, &prefix, sender, rcpt, user, session)
            }
            _ => Err(Failure::internal("recipient not resolved")),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn deliver_virtual(
        &self,
        gen: &Gen,
        spool: &Spool,
        prefix: &str,
        sender: &str,
        rcpt: &str,
        maildir: &Path,
        session: &str,
    ) -> Result<(), Failure> {
        // The directories above a new mailbox, as virtual(8) makes them.
        if let Some(parent) = maildir.parent() {
            let _ = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent);
        }
        let taken = gen.engines.lock().unwrap().pop();
        let mut engine = match taken {
            Some(e) => e,
            None => Engine::load(
                engine_options(self.opts.rules.as_deref()),
                &self.who,
                Logger::new(self.opts.log_stderr),
                false,
            )
            .map_err(|(f, _)| f)?,
        };
        let flags = Flags {
            sender: Some(sender.to_string()),
            recipient: Some(rcpt.to_string()),
            ..Flags::default()
        };
        let target = Target {
            maildir: maildir.to_path_buf(),
            user_rules: Some(maildir.join(USER_RULES_NAME)),
            session: Some(session),
            env: &|_| None,
        };
        let input = io::Cursor::new(prefix.as_bytes()).chain(spool.reader());
        let who = &self.who;
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            engine.deliver_to(input, &flags, who, &target, &inflight::untimed())
        }));
        match out {
            Ok(o) => {
                gen.engines.lock().unwrap().push(engine);
                match o {
                    Outcome::Done => Ok(()),
                    Outcome::Failed(f) => Err(f),
                }
            }
            // The engine is dropped: a panic may have left it half done.
            Err(_) => Err(Failure::internal("deliver: internal error (see the log)")),
        }
    }

    /// Exec mode in a child, as the user: `deliver -d USER -f SENDER -a
    /// RCPT`, the message on its stdin.
    fn deliver_system(
        &self,
        spool: &Spool,
        prefix: &str,
        sender: &str,
        rcpt: &str,
        user: &str,
        session: &str,
    ) -> Result<(), Failure> {
        let mut cmd = Command::new("/proc/self/exe");
        cmd.env_clear().env("PATH", "/usr/bin:/bin").args([
            "-d",
            user,
            "-f",
            sender,
            "-a",
            rcpt,
            "--session",
            session,
        ]);
        if let Some(r) = &self.opts.rules {
            cmd.arg("--rules").arg(r);
        }
        if self.opts.log_stderr {
            cmd.arg("--log-stderr");
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| Failure::from_io("starting the delivery process", &e))?;
        let mut stdin = child.stdin.take().expect("piped");
        let output = std::thread::scope(|s| {
            s.spawn(move || {
                // A child that ends early closes the pipe: EPIPE, not ours to report.
                let _ = stdin.write_all(prefix.as_bytes());
                let _ = io::copy(&mut spool.reader(), &mut stdin);
            });
            child.wait_with_output()
        })
        .map_err(|e| Failure::from_io("waiting for the delivery process", &e))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if self.opts.log_stderr {
            let _ = io::stderr().write_all(stderr.as_bytes());
        }
        let status_line = |class: char| {
            stderr.lines().rev().find_map(|l| {
                let (st, rest) = l.split_once(' ')?;
                crate::output::exit::valid_status(st, class)
                    .then(|| (st.to_string(), rest.to_string()))
            })
        };
        use crate::output::exit::Kind;
        match output.status.code() {
            Some(0) => Ok(()),
            Some(77) => {
                let (status, text) =
                    status_line('5').unwrap_or(("5.3.0".into(), "rejected".into()));
                Err(Failure::new(Kind::Rejected { status }, text))
            }
            _ => {
                let (status, text) = status_line('4').unwrap_or_else(|| {
                    (
                        "4.3.0".into(),
                        format!("delivery process ended: {}", output.status),
                    )
                });
                Err(Failure::new(Kind::Deferred { status }, text))
            }
        }
    }
}

/// The warning line of a recipient's failed delivery (after `warning: `):
/// `STATUS TEXT (to=<RCPT> session=ID)`; `deliver report` reads it back.
fn failure_line(f: &Failure, rcpt: &str, session: &str) -> String {
    format!("{f} (to=<{rcpt}> session={session})")
}

/// The reply for one recipient after DATA.
pub fn reply_for(rcpt: &str, out: &Result<(), Failure>) -> String {
    let rcpt = for_status(rcpt);
    match out {
        Ok(()) => format!("250 2.0.0 <{rcpt}> Delivered"),
        Err(f) => {
            let status = f.status();
            let code = match status {
                s if s.starts_with('5') && (s == "5.2.2" || s == "5.3.4") => 552,
                s if s.starts_with('5') => 550,
                "4.2.2" | "4.3.1" => 452,
                _ => 451,
            };
            format!("{code} {status} <{rcpt}> {}", for_status(&f.text))
        }
    }
}

/// Runs the service until SIGTERM (or SIGINT).
pub fn serve(opts: ServeOptions) -> Result<(), Failure> {
    let root = nix::unistd::geteuid().is_root();
    let who = if root {
        Recipient {
            name: "root".into(),
            uid: 0,
            gid: 0,
            home: None,
        }
    } else {
        privs::become_recipient(None, &EnvIdentity::current(), false)?
    };
    let reload = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    for (sig, flag) in [
        (signal_hook::consts::SIGTERM, &stop),
        (signal_hook::consts::SIGINT, &stop),
        (signal_hook::consts::SIGHUP, &reload),
    ] {
        signal_hook::flag::register(sig, Arc::clone(flag))
            .map_err(|e| Failure::from_io("deliver lmtp: signal handler", &e))?;
    }
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let log = Logger::new(opts.log_stderr);
    let mut shared = Shared {
        opts: opts.clone(),
        who,
        system_users: root,
        hostname,
        current: Mutex::new(Arc::new(Gen {
            config: Config {
                mapping: Mapping::SystemUsers,
                limits: Limits::default(),
                spool_dir: std::env::temp_dir(),
                files: Vec::new(),
            },
            delimiter: "+".into(),
            files: Vec::new(),
            engines: Mutex::new(Vec::new()),
        })),
        failed: Mutex::new(None),
        reload,
        stop,
        log: Mutex::new(log),
        sessions: AtomicUsize::new(0),
        registry: Mutex::new(HashMap::new()),
    };
    let first = shared
        .load_gen()
        .map_err(|why| Failure::config(format!("deliver lmtp: {why}")))?;
    shared.current = Mutex::new(Arc::new(first));
    let listener = listen(opts.listen.as_deref())?;
    listener
        .set_nonblocking()
        .map_err(|e| Failure::from_io("deliver lmtp: listener", &e))?;
    shared.info(&format!(
        "lmtp: listening ({})",
        if root {
            "system users, as root"
        } else {
            "virtual mailboxes"
        }
    ));
    let shared = Arc::new(shared);
    let counter = AtomicU64::new(0);
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut threads: Vec<std::thread::JoinHandle<()>> = Vec::new();
    while !shared.stopping() {
        threads.retain(|t| !t.is_finished());
        let mut fds = [nix::poll::PollFd::new(
            listener.fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, 500u16) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(Failure::system(Some(e), format!("deliver lmtp: poll: {e}"))),
        }
        let stream = match listener.accept() {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                // Out of descriptors, say: the connection waits in the backlog.
                shared.warn(&format!("lmtp: accept: {e}"));
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let n = counter.fetch_add(1, SeqCst);
        let id = format!("{base:X}.{n}");
        if shared.sessions.load(SeqCst) >= shared.limits().max_sessions {
            let mut s = stream;
            let _ = s.write_all(b"421 4.3.2 Too many sessions, try again later\r\n");
            continue;
        }
        shared.sessions.fetch_add(1, SeqCst);
        let sh = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name(format!("lmtp-{n}"))
            .spawn(move || {
                run_session(&sh, n, id, stream);
                sh.sessions.fetch_sub(1, SeqCst);
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                shared.sessions.fetch_sub(1, SeqCst);
                shared.warn(&format!("lmtp: cannot start a session thread: {e}"));
            }
        }
    }
    drop(listener);
    shared.info("lmtp: stopping: finishing the transactions in progress");
    for (stream, busy) in shared.registry.lock().unwrap().values() {
        if !busy.load(SeqCst) {
            stream.shutdown_read();
        }
    }
    for t in threads {
        let _ = t.join();
    }
    shared.info("lmtp: stopped");
    Ok(())
}

fn run_session(shared: &Shared, n: u64, id: String, stream: Stream) {
    let busy = Arc::new(AtomicBool::new(false));
    shared
        .registry
        .lock()
        .unwrap()
        .insert(n, (stream.clone(), Arc::clone(&busy)));
    // Written after the listener stopped: the stop pass may have missed it.
    if shared.stopping() {
        stream.shutdown_read();
    }
    let r = session::Session::new(shared, id.clone(), stream, busy).run();
    if let Err(e) = r {
        if !matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ) {
            shared.warn(&format!("session={id}: {e}"));
        }
    }
    shared.registry.lock().unwrap().remove(&n);
}
