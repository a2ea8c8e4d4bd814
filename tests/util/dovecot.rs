//! A real Dovecot IMAP server (Debian's `dovecot-imapd`) for one test, on
//! 127.0.0.1 and a free port, with a throw-away configuration in a
//! temporary directory: one user (any name, password `secret`) whose mail
//! is the given Maildir, read as the given uid and gid. Stopped when
//! dropped, even when the test fails. Needs root (Dovecot's master does).
//! `Imap` is the smallest client the tests need: one command at a time.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Dovecot {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Dovecot {
    /// Starts Dovecot for `maildir` (read as `uid`:`gid`) and waits (up to
    /// a minute) until it accepts connections.
    pub fn start(maildir: &Path, uid: u32, gid: u32) -> Dovecot {
        let dir = tempfile::Builder::new()
            .prefix("deliver-dovecot")
            .tempdir()
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let port = super::spamd::free_port();
        let d = dir.path().display();
        let conf = format!(
            "base_dir = {d}/run\n\
             state_dir = {d}/state\n\
             log_path = {d}/dovecot.log\n\
             protocols = imap\n\
             listen = 127.0.0.1\n\
             ssl = no\n\
             disable_plaintext_auth = no\n\
             auth_mechanisms = plain\n\
             mail_location = maildir:{maildir}\n\
             passdb {{\n  driver = static\n  args = password=secret\n}}\n\
             userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={d}/home\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service pop3-login {{\n  inet_listener pop3 {{\n    port = 0\n  }}\n}}\n\
             service submission-login {{\n  inet_listener submission {{\n    port = 0\n  }}\n}}\n",
            maildir = maildir.display(),
        );
        let path = dir.path().join("dovecot.conf");
        fs::write(&path, conf).unwrap();
        let child = Command::new("dovecot")
            .arg("-c")
            .arg(&path)
            .arg("-F")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .expect("dovecot installed (scripts/test)");
        let mut dv = Dovecot {
            child: Some(child),
            port,
            dir,
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(st) = dv.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("dovecot exited ({st}) while starting:\n{}", dv.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "dovecot did not listen within a minute:\n{}",
                dv.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        dv
    }

    /// What Dovecot logged.
    pub fn log(&self) -> String {
        let read = |n: &str| fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        read("stderr") + &read("dovecot.log")
    }

    /// A logged-in IMAP session.
    pub fn login(&self) -> Imap {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut imap = Imap {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
            tag: 0,
        };
        imap.command("LOGIN user secret");
        imap
    }

    /// Stops Dovecot (TERM to the master, which stops its processes).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = c.wait();
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct Imap {
    r: BufReader<TcpStream>,
    w: TcpStream,
    tag: u32,
}

impl Imap {
    /// Sends one command and returns the untagged lines of its response;
    /// panics unless it ends in OK.
    pub fn command(&mut self, cmd: &str) -> Vec<String> {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        write!(self.w, "{tag} {cmd}\r\n").unwrap();
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            assert!(self.r.read_line(&mut l).unwrap() > 0, "connection closed");
            let l = l.trim_end().to_string();
            if let Some(rest) = l.strip_prefix(&format!("{tag} ")) {
                assert!(rest.starts_with("OK"), "{cmd}: {l}\n{lines:?}");
                return lines;
            }
            lines.push(l);
        }
    }

    /// The flags of message `n` of `mailbox`, as FETCH FLAGS gives them.
    pub fn flags(&mut self, mailbox: &str, n: u32) -> String {
        self.command(&format!("SELECT \"{mailbox}\""));
        let lines = self.command(&format!("FETCH {n} FLAGS"));
        lines
            .iter()
            .find(|l| l.starts_with(&format!("* {n} FETCH")))
            .unwrap_or_else(|| panic!("no FETCH response: {lines:?}"))
            .clone()
    }
}
