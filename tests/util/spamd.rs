//! A real SpamAssassin daemon (Debian's `spamd`) for one test: on
//! 127.0.0.1 and a free port, with its own site configuration in a
//! temporary directory (the Debian `.pre` files, which load the Check
//! plugin, and a `local.cf` that turns off Bayes, auto-learning and
//! network tests), local tests only (`-L`: no DNS), no user
//! configuration (`-x`). Stopped when dropped, even when the test fails.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Spamd {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A TCP port on 127.0.0.1 that nothing listens on now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Spamd {
    /// Starts spamd and waits (up to 2 minutes) until it answers a PING.
    pub fn start() -> Spamd {
        let dir = tempfile::Builder::new()
            .prefix("deliver-spamd")
            .tempdir()
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let site = dir.path().join("site");
        fs::create_dir(&site).unwrap();
        for e in fs::read_dir("/etc/spamassassin").expect("spamd installed (scripts/test)") {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "pre") {
                fs::copy(&p, site.join(p.file_name().unwrap())).unwrap();
            }
        }
        fs::write(
            site.join("local.cf"),
            "use_bayes 0\nbayes_auto_learn 0\nskip_rbl_checks 1\n",
        )
        .unwrap();
        let port = free_port();
        let log = dir.path().join("spamd.log");
        let mut c = Command::new("spamd");
        c.arg("--local")
            .arg("--nouser-config")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--allowed-ips", "127.0.0.1"])
            .args(["--max-children", "1", "--min-children", "1"])
            .arg(format!("--siteconfigpath={}", site.display()))
            .arg(format!("--helper-home-dir={}", dir.path().display()))
            .args(["--pidfile", &dir.path().join("pid").to_string_lossy()])
            .args(["--syslog", "stderr"])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(&log).unwrap());
        if super::is_root() {
            c.args(["--username", "nobody"]);
        }
        let child = c.spawn().expect("spamd installed (scripts/test)");
        let mut s = Spamd {
            child: Some(child),
            port,
            log,
            _dir: dir,
        };
        let start = Instant::now();
        loop {
            if let Some(st) = s.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("spamd exited ({st}) while starting:\n{}", s.log());
            }
            let ping = Command::new("spamc")
                .args(["-K", "-d", "127.0.0.1", "-p", &port.to_string()])
                .args(["--connect-retries", "1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("spamc installed (scripts/test)");
            if ping.success() {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "spamd did not answer within 2 minutes:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What spamd logged.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops spamd (TERM, which ends its children too) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = c.wait();
        }
    }
}

impl Drop for Spamd {
    fn drop(&mut self) {
        self.stop();
    }
}
