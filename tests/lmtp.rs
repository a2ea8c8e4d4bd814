//! `deliver lmtp`: the service through the real binary, on a UNIX socket in
//! a temp dir, delivering into real Maildirs; a throw-away Postfix whose
//! virtual_transport is the service. Every process a test starts is
//! stopped by a guard's Drop, whatever the test's outcome.

mod util;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use util::{chown_tree, is_root, runner, BIN};

/// A bound on waits for something that must happen (never asserted on).
const PATIENCE: Duration = Duration::from_secs(60);

/// A temp dir owned by the user the service runs as, with the vmail tree.
struct Site {
    dir: tempfile::TempDir,
    uid: u32,
    gid: u32,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::Builder::new()
            .prefix("deliver-lmtp")
            .tempdir()
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(dir.path().join("vmail")).unwrap();
        let (uid, gid) = runner();
        chown_tree(dir.path(), uid, gid);
        Site { dir, uid, gid }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn socket(&self) -> PathBuf {
        self.path("lmtp.sock")
    }

    /// Writes the system rules file (root's, as an admin's would be).
    fn rules(&self, text: &str) -> PathBuf {
        let p = self.path("rules.toml");
        let tmp = self.path("rules.toml.new");
        fs::write(&tmp, text).unwrap();
        fs::rename(&tmp, &p).unwrap();
        p
    }

    fn template_rules(&self) -> PathBuf {
        self.rules(&format!(
            "[lmtp]\nmailbox = \"{}/vmail/%d/%n/Maildir\"\n",
            self.dir.path().display()
        ))
    }

    fn maildir(&self, domain: &str, user: &str) -> PathBuf {
        self.path(&format!("vmail/{domain}/{user}/Maildir"))
    }

    /// Messages in a Maildir's new/.
    fn new_files(&self, md: &Path) -> Vec<Vec<u8>> {
        let Ok(rd) = fs::read_dir(md.join("new")) else {
            return Vec::new();
        };
        rd.map(|e| fs::read(e.unwrap().path()).unwrap()).collect()
    }

    fn tmp_count(&self, md: &Path) -> usize {
        fs::read_dir(md.join("tmp")).map_or(0, |r| r.count())
    }
}

/// The running service; killed (SIGKILL) and reaped on drop.
struct Service {
    child: Option<Child>,
    log: PathBuf,
}

impl Service {
    fn start(site: &Site, env: &[(&str, &str)]) -> Service {
        Service::start_with(site, env, |_| {})
    }

    fn start_with(site: &Site, env: &[(&str, &str)], setup: impl FnOnce(&mut Command)) -> Service {
        Service::start_on(site, site.socket(), env, setup)
    }

    /// As root (system users), without switching to the site's user.
    fn start_as_root(site: &Site) -> Service {
        Service::start_on(site, site.socket(), &[("AS_ROOT", "1")], |_| {})
    }

    fn start_on(
        site: &Site,
        sock: PathBuf,
        env: &[(&str, &str)],
        setup: impl FnOnce(&mut Command),
    ) -> Service {
        let _ = fs::remove_file(&sock);
        let log = site.path(&format!("service-{}.log", rand_suffix()));
        let mut c = Command::new(BIN);
        c.args(["lmtp", "--log-stderr", "--listen"])
            .arg(format!("unix:{}", sock.display()))
            .arg("--rules")
            .arg(site.path("rules.toml"))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", site.path("home"))
            .env("USER", "lmtp-test")
            .envs(env.iter().copied())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        if is_root() && !env.iter().any(|(k, _)| *k == "AS_ROOT") {
            c.uid(site.uid).gid(site.gid);
        }
        setup(&mut c);
        let child = c.spawn().unwrap();
        let s = Service {
            child: Some(child),
            log,
        };
        let start = Instant::now();
        while UnixStream::connect(&sock).is_err() {
            assert!(
                start.elapsed() < PATIENCE,
                "service did not start: {}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A plain LMTP client.
struct Client {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Client {
    fn connect(site: &Site) -> Client {
        Client::connect_to(&site.socket())
    }

    fn connect_to(sock: &Path) -> Client {
        Client::greeted(UnixStream::connect(sock).unwrap())
    }

    /// A client on a connected socket, once the service greeted it.
    fn greeted(s: UnixStream) -> Client {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut c = Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        let greeting = c.reply();
        assert!(greeting.starts_with("220 "), "{greeting}");
        c
    }

    /// One reply, all its lines joined by newlines.
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l).unwrap() == 0 {
                return all + "<closed>";
            }
            let done = l.as_bytes().get(3) != Some(&b'-');
            all.push_str(l.trim_end());
            if done {
                return all;
            }
            all.push('\n');
        }
    }

    fn send(&mut self, raw: &[u8]) {
        self.w.write_all(raw).unwrap();
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// LHLO, MAIL, the RCPTs, DATA with `message` (CRLF, dot-stuffed by
    /// the caller); the RCPT replies and the replies after DATA.
    fn transaction(&mut self, rcpts: &[&str], message: &str) -> (Vec<String>, Vec<String>) {
        assert!(self.cmd("LHLO client.test").starts_with("250"));
        assert!(self
            .cmd("MAIL FROM:<sender@example.org>")
            .starts_with("250"));
        let rr: Vec<String> = rcpts
            .iter()
            .map(|r| self.cmd(&format!("RCPT TO:<{r}>")))
            .collect();
        let accepted = rr.iter().filter(|r| r.starts_with("250")).count();
        let d = self.cmd("DATA");
        if !d.starts_with("354") {
            return (rr, vec![d]);
        }
        self.send(message.as_bytes());
        self.send(b".\r\n");
        let after = (0..accepted).map(|_| self.reply()).collect();
        (rr, after)
    }
}

fn message(subject: &str) -> String {
    format!("From: a@example.org\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n")
}

#[test]
fn delivers_one_copy_per_recipient_and_one_reply_each() {
    let site = Site::new();
    site.template_rules();
    let svc = Service::start(&site, &[]);
    let mut c = Client::connect(&site);
    let (rr, after) = c.transaction(
        &[
            "Alice+lists@Example.COM",
            "bob@example.com",
            "../evil@example.com",
            "carol@other.test",
        ],
        &message("m1"),
    );
    assert!(rr[0].starts_with("250 2.1.5"), "{rr:?}");
    assert!(rr[2].starts_with("550 5.1.3"), "{rr:?}");
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(
        after.iter().all(|r| r.starts_with("250 2.0.0")),
        "{after:?}"
    );
    for (d, u) in [
        ("example.com", "alice"),
        ("example.com", "bob"),
        ("other.test", "carol"),
    ] {
        let got = site.new_files(&site.maildir(d, u));
        assert_eq!(got.len(), 1, "{d}/{u}");
        let text = String::from_utf8(got[0].clone()).unwrap();
        assert!(
            text.starts_with("Return-Path: <sender@example.org>\nDelivered-To: "),
            "{text}"
        );
        assert!(text.ends_with("Subject: m1\n\nbody of m1\n"), "{text}");
    }
    assert_eq!(c.cmd("QUIT").split(' ').next(), Some("221"));
    // One log line per recipient, with the session.
    let log = svc.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" action=inbox "))
        .collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(lines.iter().all(|l| l.contains(" session=")), "{log}");
}

#[test]
fn unknown_recipients_of_the_maps_are_refused_at_rcpt() {
    let site = Site::new();
    let table = site.path("vmailbox");
    fs::write(
        &table,
        "alice@example.com example.com/alice/\n@catch.test catch/all/\n",
    )
    .unwrap();
    site.rules(&format!(
        "[lmtp]\nmailbox_maps = [\"texthash:{}\"]\nmailbox_base = \"{}/vmail\"\n",
        table.display(),
        site.dir.path().display()
    ));
    let _svc = Service::start(&site, &[]);
    let mut c = Client::connect(&site);
    let (rr, after) = c.transaction(
        &[
            "alice+x@example.com",
            "nobody@example.com",
            "who@catch.test",
        ],
        &message("maps"),
    );
    assert!(rr[0].starts_with("250 "), "{rr:?}");
    assert!(rr[1].starts_with("550 5.1.1"), "{rr:?}");
    assert!(rr[2].starts_with("250 "), "{rr:?}");
    assert_eq!(after.len(), 2);
    assert_eq!(
        site.new_files(&site.path("vmail/example.com/alice")).len(),
        1
    );
    assert_eq!(site.new_files(&site.path("vmail/catch/all")).len(), 1);
}

#[test]
fn protocol_order_limits_and_bad_input() {
    let site = Site::new();
    site.rules(&format!(
        "[lmtp]\nmailbox = \"{}/vmail/%d/%n/Maildir\"\nmax_message_size = 2048\nmax_recipients = 2\nmax_line_length = 600\n",
        site.dir.path().display()
    ));
    let _svc = Service::start(&site, &[]);
    let mut c = Client::connect(&site);
    assert!(c.cmd("MAIL FROM:<a@b>").starts_with("503 5.5.1"));
    assert!(c.cmd("HELO x").starts_with("500 5.5.1"));
    assert!(c.cmd("BOGUS").starts_with("500 5.5.2"));
    let lhlo = c.cmd("LHLO x");
    for ext in ["PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SIZE 2048"] {
        assert!(
            lhlo.contains(&format!("250-{ext}")) || lhlo.contains(&format!("250 {ext}")),
            "{lhlo}"
        );
    }
    assert!(c.cmd("RCPT TO:<a@example.com>").starts_with("503 5.5.1"));
    assert!(c.cmd("DATA").starts_with("503 5.5.1"));
    assert!(c.cmd("MAIL FROM:<a@b> SIZE=4096").starts_with("552 5.3.4"));
    assert!(c.cmd("MAIL FROM:<a@b> FOO=1").starts_with("555 5.5.4"));
    // An overlong line, a NUL: refused, and the session goes on.
    let long = format!("NOOP {}", "x".repeat(1000));
    assert!(c.cmd(&long).starts_with("500 5.5.2"));
    assert!(c.cmd("NOOP\0").starts_with("500 5.5.2"));
    assert!(c.cmd("MAIL FROM:<a@b>").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@b>").starts_with("503 5.5.1"));
    assert!(c.cmd("DATA").starts_with("503 5.5.1"), "no recipients yet");
    assert!(c.cmd("RCPT TO:<u1@example.com>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<u2@example.com>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<u3@example.com>").starts_with("452 4.5.3"));
    assert!(c.cmd("RSET").starts_with("250"));
    // Too big in DATA: 552 for each recipient, after the whole message.
    assert!(c.cmd("MAIL FROM:<a@b>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<u1@example.com>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("Subject: big\r\n\r\n{}\r\n.\r\n", "y".repeat(5000)).as_bytes());
    assert!(c.reply().starts_with("552 5.3.4"));
    assert!(site
        .new_files(&site.maildir("example.com", "u1"))
        .is_empty());
    // Pipelining: every command in one write; the replies in order. Bare
    // LF and NUL in the data are kept; a `.` after a bare LF is text.
    c.send(
        b"RSET\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u1@example.com>\r\nRCPT TO:<u2@example.com>\r\nDATA\r\n",
    );
    let replies: Vec<String> = (0..5).map(|_| c.reply()).collect();
    assert!(
        replies[..4].iter().all(|r| r.starts_with("250")),
        "{replies:?}"
    );
    assert!(replies[4].starts_with("354"), "{replies:?}");
    c.send(b"Subject: p\r\n\r\nbare\nlf\n.\r\nnul\0here\r\n..stuffed\r\n.\r\nNOOP\r\n");
    for _ in 0..2 {
        let r = c.reply();
        assert!(r.starts_with("250 2.0.0"), "{r}");
    }
    assert!(c.reply().starts_with("250"), "NOOP after DATA");
    let got = site.new_files(&site.maildir("example.com", "u2"));
    assert_eq!(got.len(), 1);
    assert!(
        got[0].ends_with(b"Subject: p\n\nbare\nlf\n\nnul\0here\n.stuffed\n"),
        "{:?}",
        String::from_utf8_lossy(&got[0])
    );
}

#[test]
fn a_client_that_vanishes_mid_data_leaves_nothing_and_the_service_serves_on() {
    let site = Site::new();
    site.template_rules();
    let _svc = Service::start(&site, &[]);
    let mut c = Client::connect(&site);
    assert!(c.cmd("LHLO x").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@b>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<gone@example.com>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: half\r\n\r\nhalf a body");
    drop(c);
    // The next session is served, and the first left no file.
    let mut c = Client::connect(&site);
    let (_, after) = c.transaction(&["next@example.com"], &message("next"));
    assert!(after[0].starts_with("250"), "{after:?}");
    let md = site.maildir("example.com", "gone");
    assert!(site.new_files(&md).is_empty());
    assert_eq!(site.tmp_count(&md), 0);
}

#[test]
fn thirty_two_concurrent_sessions_with_several_recipients() {
    let site = Site::new();
    site.template_rules();
    let _svc = Service::start(&site, &[]);
    let sessions = 32;
    let per_session = 3;
    std::thread::scope(|s| {
        for i in 0..sessions {
            let site = &site;
            s.spawn(move || {
                let mut c = Client::connect(site);
                for t in 0..per_session {
                    let rcpts: Vec<String> = (0..4)
                        .map(|k| format!("u{}@d{}.test", (i + k) % 8, t))
                        .collect();
                    let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
                    let (rr, after) = c.transaction(&refs, &message(&format!("s{i}t{t}")));
                    assert!(rr.iter().all(|r| r.starts_with("250")), "{rr:?}");
                    assert!(
                        after.iter().all(|r| r.starts_with("250 2.0.0")),
                        "{after:?}"
                    );
                    assert!(c.cmd("RSET").starts_with("250"));
                }
            });
        }
    });
    // Each (user, domain) pair got one copy of every message sent to it.
    let mut total = 0;
    for t in 0..per_session {
        for u in 0..8 {
            let md = site.maildir(&format!("d{t}.test"), &format!("u{u}"));
            let got = site.new_files(&md);
            let mut subjects: Vec<String> = got
                .iter()
                .map(|m| {
                    let t = String::from_utf8_lossy(m);
                    t.lines()
                        .find(|l| l.starts_with("Subject: "))
                        .unwrap()
                        .to_string()
                })
                .collect();
            subjects.sort();
            let mut want: Vec<String> = (0..sessions)
                .filter(|i| (0..4).any(|k| (i + k) % 8 == u))
                .map(|i| format!("Subject: s{i}t{t}"))
                .collect();
            want.sort();
            assert_eq!(subjects, want, "{}", md.display());
            total += got.len();
        }
    }
    assert_eq!(total, sessions * per_session * 4);
}

/// docs/SCALING.md: two instances (two sockets, as two hosts would be)
/// deliver concurrently into one Maildir tree; nothing is lost or
/// duplicated, and no name is taken twice.
#[test]
fn two_instances_share_one_maildir_tree() {
    let site = Site::new();
    site.template_rules();
    let socks = [site.path("a.sock"), site.path("b.sock")];
    let _a = Service::start_on(&site, socks[0].clone(), &[], |_| {});
    let _b = Service::start_on(&site, socks[1].clone(), &[], |_| {});
    let (clients, per) = (8, 10);
    std::thread::scope(|s| {
        for i in 0..clients {
            let sock = &socks[i % 2];
            s.spawn(move || {
                let mut c = Client::connect_to(sock);
                for t in 0..per {
                    let (_, after) = c.transaction(
                        &["shared@scale.test", "other@scale.test"],
                        &message(&format!("c{i}m{t}")),
                    );
                    assert!(
                        after.iter().all(|r| r.starts_with("250 2.0.0")),
                        "{after:?}"
                    );
                    assert!(c.cmd("RSET").starts_with("250"));
                }
            });
        }
    });
    for u in ["shared", "other"] {
        let mut subjects: Vec<String> = site
            .new_files(&site.maildir("scale.test", u))
            .iter()
            .map(|m| {
                let t = String::from_utf8_lossy(m);
                t.lines()
                    .find(|l| l.starts_with("Subject: "))
                    .unwrap()
                    .to_string()
            })
            .collect();
        subjects.sort();
        let mut want: Vec<String> = (0..clients)
            .flat_map(|i| (0..per).map(move |t| format!("Subject: c{i}m{t}")))
            .collect();
        want.sort();
        assert_eq!(subjects, want, "{u}");
    }
}

#[test]
fn a_read_only_mailbox_defers_that_recipient_alone() {
    if !is_root() {
        return; // chmod does not stop root; as root the service runs as nobody
    }
    let site = Site::new();
    site.template_rules();
    let _svc = Service::start(&site, &[]);
    // bob's Maildir exists, its tmp/ not writable.
    let mut c = Client::connect(&site);
    c.transaction(&["bob@example.com"], &message("first"));
    let tmp = site.maildir("example.com", "bob").join("tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o500)).unwrap();
    let (_, after) = c.transaction(
        &["bob@example.com", "alice@example.com"],
        &message("second"),
    );
    assert!(after[0].starts_with("45"), "{after:?}");
    assert!(after[1].starts_with("250 2.0.0"), "{after:?}");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o700)).unwrap();
    let (_, after) = c.transaction(&["bob@example.com"], &message("third"));
    assert!(after[0].starts_with("250"), "{after:?}");
    assert_eq!(site.new_files(&site.maildir("example.com", "bob")).len(), 2);
}

#[test]
fn deliver_report_counts_what_the_service_logged() {
    if !is_root() {
        return; // chmod does not stop root; as root the service runs as nobody
    }
    let site = Site::new();
    site.rules(&format!(
        "[[rule]]\nname = \"no\"\nheader = \"Subject\"\nmatch = \"^bad$\"\nreject = \"nope\"\n\n[lmtp]\nmailbox = \"{}/vmail/%d/%n/Maildir\"\n",
        site.dir.path().display()
    ));
    let svc = Service::start(&site, &[]);
    let mut c = Client::connect(&site);
    // Delivered, rejected by the rule, and failed (tmp/ not writable).
    let (_, after) = c.transaction(&["bob@example.com"], &message("first"));
    assert!(after[0].starts_with("250"), "{after:?}");
    let (_, after) = c.transaction(&["bob@example.com"], &message("bad"));
    assert!(after[0].starts_with("550 5.7.1"), "{after:?}");
    let tmp = site.maildir("example.com", "bob").join("tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o500)).unwrap();
    let (_, after) = c.transaction(&["bob@example.com"], &message("second"));
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o700)).unwrap();
    assert!(after[0].starts_with("45"), "{after:?}");
    // The log as `journalctl -o cat` gives it.
    let log: String = svc
        .log_text()
        .lines()
        .filter_map(|l| l.strip_prefix("deliver: "))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut r = Command::new(BIN)
        .args(["report", "--format", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    r.stdin.take().unwrap().write_all(log.as_bytes()).unwrap();
    let out = r.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["messages"]["by_action"]["inbox"], 1, "{v}\n{log}");
    assert_eq!(v["messages"]["by_action"]["reject"], 1, "{v}\n{log}");
    assert_eq!(
        v["rejected_senders"],
        serde_json::json!([{"sender": "sender@example.org", "count": 1}])
    );
    // One failure: the failed delivery; the reject's warning line is
    // the reject's echo, not a failure of its own.
    let failures = v["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{v}\n{log}");
    assert_eq!(failures[0]["count"], 1);
    assert!(
        failures[0]["status"].as_str().unwrap().starts_with("4."),
        "{v}"
    );
}

/// A small tmpfs mounted for a test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str, uid: u32, gid: u32) -> Option<Tmpfs> {
        fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0755,uid={uid},gid={gid}"))
            .arg("tmpfs")
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_defers_that_recipient_alone_and_the_service_serves_on() {
    if !is_root() {
        return;
    }
    let site = Site::new();
    site.template_rules();
    let small = site.path("vmail/full.test");
    let Some(_fs) = Tmpfs::mount(&small, "64k", site.uid, site.gid) else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    let _svc = Service::start(&site, &[]);
    let mut c = Client::connect(&site);
    let big = format!("Subject: big\r\n\r\n{}", "z".repeat(100 * 1024) + "\r\n");
    let (_, after) = c.transaction(&["u@full.test", "u@roomy.test"], &big);
    assert!(after[0].starts_with("452 4.3.1"), "{after:?}");
    assert!(after[1].starts_with("250 2.0.0"), "{after:?}");
    let md = site.maildir("full.test", "u");
    assert!(site.new_files(&md).is_empty());
    assert_eq!(
        site.tmp_count(&md),
        0,
        "the failed delivery's tmp/ file is removed"
    );
    // A small message still fits.
    let (_, after) = c.transaction(&["u@full.test"], &message("small"));
    assert!(after[0].starts_with("250"), "{after:?}");
}

#[test]
fn out_of_descriptors_defers_and_the_service_serves_on() {
    let site = Site::new();
    site.template_rules();
    let svc = Service::start(&site, &[]);
    let mut c = Client::connect(&site);
    assert!(c.cmd("LHLO x").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@b>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<fd@example.com>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(message("fd").as_bytes());
    // The service's descriptor limit becomes what it has open now: every
    // further open(2), accept(2) or socket(2) fails with EMFILE. Set on
    // the running process, so the test does not depend on how many
    // descriptors the service happened to start with.
    let open_now = || {
        fs::read_dir(format!("/proc/{}/fd", svc.pid()))
            .unwrap()
            .count()
    };
    // prlimit(1) runs as the service's user: root may not change the
    // limits of another user's process here.
    let set_limit = |n: u64| {
        let mut p = Command::new("prlimit");
        p.arg(format!("--pid={}", svc.pid()))
            .arg(format!("--nofile={n}:4096"));
        if is_root() {
            p.uid(site.uid).gid(site.gid);
        }
        let out = p.output().unwrap();
        assert!(out.status.success(), "prlimit: {out:?}");
    };
    // Let the service read what was sent, so its count is settled.
    std::thread::sleep(Duration::from_millis(200));
    let n = open_now() as u64;
    set_limit(n);
    // A session that arrives now waits in the backlog.
    let waiting = UnixStream::connect(site.socket()).unwrap();
    c.send(b".\r\n");
    let r = c.reply();
    // Out of descriptors is the system's trouble, not the mailbox's.
    assert!(r.starts_with("451 4.3.0 <fd@example.com> "), "{r}");
    assert!(site
        .new_files(&site.maildir("example.com", "fd"))
        .is_empty());
    // With descriptors back, the waiting session is served, and so is
    // the same recipient.
    set_limit(4096);
    let mut waiting = Client::greeted(waiting);
    let (_, after) = waiting.transaction(&["fd@example.com"], &message("fd"));
    assert!(after[0].starts_with("250"), "{after:?} {}", svc.log_text());
    let (_, after) = c.transaction(&["fd@example.com"], &message("fd2"));
    assert!(after[0].starts_with("250"), "{after:?} {}", svc.log_text());
    assert_eq!(site.new_files(&site.maildir("example.com", "fd")).len(), 2);
    // The failure's warning line names the recipient and the session.
    let log = svc.log_text();
    assert!(
        log.lines()
            .any(|l| l.starts_with("deliver: warning: 4.3.0 ")
                && l.contains("Too many open files")
                && l.contains("(to=<fd@example.com> session=")),
        "{log}"
    );
}

#[test]
fn rules_reload_on_change_and_a_broken_file_keeps_the_old_rules() {
    let site = Site::new();
    site.template_rules();
    let svc = Service::start(&site, &[]);
    let mut c = Client::connect(&site);
    let (_, after) = c.transaction(&["a@x.test"], &message("one"));
    assert!(after[0].starts_with("250"));
    assert_eq!(site.new_files(&site.maildir("x.test", "a")).len(), 1);
    // A new template: the next transaction uses it.
    site.rules(&format!(
        "[lmtp]\nmailbox = \"{}/vmail/new/%u/Maildir\"\n",
        site.dir.path().display()
    ));
    let (_, after) = c.transaction(&["a@x.test"], &message("two"));
    assert!(after[0].starts_with("250"));
    assert_eq!(
        site.new_files(&site.path("vmail/new/a@x.test/Maildir"))
            .len(),
        1
    );
    // A broken file: the rules loaded before stay, and the log says why.
    site.rules("[lmtp]\nmailbox = 3\n");
    let (_, after) = c.transaction(&["a@x.test"], &message("three"));
    assert!(after[0].starts_with("250"));
    assert_eq!(
        site.new_files(&site.path("vmail/new/a@x.test/Maildir"))
            .len(),
        2
    );
    let log = svc.log_text();
    assert!(
        log.contains("keeping the rules loaded before") && log.contains("rules.toml:2:"),
        "{log}"
    );
}

#[test]
fn a_changed_address_table_is_picked_up_by_the_next_transaction() {
    let site = Site::new();
    // The system file's friends table, looked up with From's address.
    let friends = site.path("friends");
    fs::write(&friends, "nobody@example.net OK\n").unwrap();
    site.rules(&format!(
        "[[rule]]\nname = \"friends\"\naddress = {{ header = \"From\", table = \"texthash:{}\" }}\nfolder = \"Friends\"\n\n[lmtp]\nmailbox = \"{}/vmail/%d/%n/Maildir\"\n",
        friends.display(),
        site.dir.path().display()
    ));
    let svc = Service::start(&site, &[]);
    let mut c = Client::connect(&site);
    let md = site.maildir("x.test", "f");
    let (_, after) = c.transaction(&["f@x.test"], &message("one"));
    assert!(after[0].starts_with("250"), "{after:?} {}", svc.log_text());
    assert_eq!(site.new_files(&md).len(), 1, "{}", svc.log_text());
    // The sender becomes a friend: the next transaction sees it.
    let tmp = site.path("friends.new");
    fs::write(&tmp, "nobody@example.net OK\na@example.org OK\n").unwrap();
    fs::rename(&tmp, &friends).unwrap();
    let (_, after) = c.transaction(&["f@x.test"], &message("two"));
    assert!(after[0].starts_with("250"), "{after:?}");
    assert_eq!(site.new_files(&md).len(), 1);
    assert_eq!(
        site.new_files(&md.join(".Friends")).len(),
        1,
        "{}",
        svc.log_text()
    );
}

#[test]
fn sigterm_finishes_the_open_transaction_and_closes_idle_sessions() {
    let site = Site::new();
    site.template_rules();
    let svc = Service::start(&site, &[]);
    let mut idle = Client::connect(&site);
    assert!(idle.cmd("LHLO x").starts_with("250"));
    let mut busy = Client::connect(&site);
    assert!(busy.cmd("LHLO x").starts_with("250"));
    assert!(busy.cmd("MAIL FROM:<a@b>").starts_with("250"));
    assert!(busy.cmd("RCPT TO:<t@example.com>").starts_with("250"));
    kill(svc.pid(), Signal::SIGTERM).unwrap();
    assert!(idle.reply().starts_with("421 4.3.2"));
    assert!(busy.cmd("DATA").starts_with("354"));
    busy.send(message("term").as_bytes());
    busy.send(b".\r\n");
    assert!(busy.reply().starts_with("250 2.0.0"));
    assert!(busy.reply().starts_with("421 4.3.2"));
    let st = svc.terminate_wait();
    assert!(st.success(), "{st:?}");
    assert_eq!(site.new_files(&site.maildir("example.com", "t")).len(), 1);
    assert!(!site.socket().exists());
}

impl Service {
    fn terminate_wait(mut self) -> std::process::ExitStatus {
        self.child.take().unwrap().wait().unwrap()
    }
}

/// A throw-away system user, removed on drop.
struct TempUser(String);

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).output();
    }
}

#[test]
fn system_users_are_delivered_in_a_child_as_themselves() {
    if !is_root() || !have("useradd") {
        return;
    }
    let site = Site::new();
    site.rules("# no [lmtp] mapping: system users\n");
    let name = format!("dlmtp{}", std::process::id() % 100_000);
    let home = site.path("home-sys");
    let ok = Command::new("useradd")
        .args(["-M", "-s", "/usr/sbin/nologin", "-d"])
        .arg(&home)
        .arg(&name)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .status()
        .unwrap();
    assert!(ok.success());
    let _user = TempUser(name.clone());
    let pw = nix::unistd::User::from_name(&name).unwrap().unwrap();
    fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(pw.uid.as_raw()), Some(pw.gid.as_raw())).unwrap();
    let svc = Service::start_as_root(&site);
    let mut c = Client::connect(&site);
    let (rr, after) = c.transaction(
        &[
            &format!("{name}+x@host.test"),
            "root@host.test",
            "no-such-user-here@host.test",
        ],
        &message("sys"),
    );
    assert!(rr[0].starts_with("250"), "{rr:?}");
    assert!(rr[1].starts_with("550 5.1.1"), "{rr:?}");
    assert!(rr[2].starts_with("550 5.1.1"), "{rr:?}");
    assert!(
        after[0].starts_with("250 2.0.0"),
        "{after:?} {}",
        svc.log_text()
    );
    let new = home.join("Maildir/new");
    let files: Vec<_> = fs::read_dir(&new)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(&files[0]).unwrap().uid(), pw.uid.as_raw());
    assert!(svc.log_text().contains(" session="), "{}", svc.log_text());
}

#[test]
fn refuses_to_run_as_root_with_virtual_mailboxes() {
    if !is_root() {
        return;
    }
    let site = Site::new();
    site.template_rules();
    let out = Command::new(BIN)
        .args(["lmtp", "--listen"])
        .arg(format!("unix:{}", site.socket().display()))
        .arg("--rules")
        .arg(site.path("rules.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not as root"), "{err}");
    assert!(!site.socket().exists());
}

// ---------------------------------------------------------------------
// A throw-away Postfix with virtual_transport = lmtp:unix:<the service>.
// ---------------------------------------------------------------------

struct Postfix {
    conf: PathBuf,
    port: u16,
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(&self.conf)
            .arg("abort")
            .output();
    }
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Postfix {
    fn start(site: &Site, table: &Path) -> Postfix {
        let t = site.path("postfix");
        let conf = t.join("conf");
        fs::create_dir_all(&conf).unwrap();
        let port = free_port();
        let q = t.join("queue");
        let d = t.join("data");
        fs::create_dir_all(&q).unwrap();
        fs::write(
            conf.join("master.cf"),
            format!(
                "127.0.0.1:{port} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
lmtp unix - - n - - lmtp
anvil unix - - n - 1 anvil
postlog unix-dgram n - n - 1 postlogd
"
            ),
        )
        .unwrap();
        fs::write(
            conf.join("main.cf"),
            format!(
                "compatibility_level = 3.6
queue_directory = {q}
data_directory = {d}
mail_owner = postfix
setgid_group = postdrop
maillog_file = {t}/maillog
maillog_file_prefixes = {t}
myhostname = mx.lmtp.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_tls_security_level = none
default_transport = error:no outbound mail
relay_transport = error:no outbound mail
alias_maps =
virtual_mailbox_domains = lmtp.test
virtual_mailbox_maps = texthash:{table}
virtual_transport = lmtp:unix:{sock}
lmtp_connection_cache_on_demand = no
delay_warning_time = 0h
notify_classes =
minimal_backoff_time = 300s
maximal_backoff_time = 600s
queue_run_delay = 300s
",
                q = q.display(),
                d = d.display(),
                t = t.display(),
                table = table.display(),
                sock = site.socket().display()
            ),
        )
        .unwrap();
        let out = Command::new("postfix")
            .arg("-c")
            .arg(&conf)
            .arg("start")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .unwrap();
        let pf = Postfix { conf, port };
        assert!(
            out.status.success(),
            "postfix start: {out:?} {}",
            fs::read_to_string(t.join("maillog")).unwrap_or_default()
        );
        pf
    }

    fn postqueue_flush(&self) {
        let _ = Command::new("postqueue")
            .arg("-c")
            .arg(&self.conf)
            .arg("-f")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output();
    }

    fn queue_is_empty(&self) -> bool {
        let out = Command::new("postqueue")
            .arg("-c")
            .arg(&self.conf)
            .arg("-j")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .unwrap();
        out.stdout.is_empty()
    }
}

fn swaks(args: &[&str]) -> String {
    let out = Command::new("swaks")
        .args(args)
        .args(["--from", "sender@example.org", "--h-Subject", "via postfix"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < PATIENCE, "waited too long for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn postfix_delivers_through_the_service_and_a_killed_service_loses_nothing() {
    if !is_root() || !have("postfix") || !have("swaks") {
        eprintln!("skipped: needs root, postfix and swaks");
        return;
    }
    let site = Site::new();
    // Postfix's lmtp client (user postfix) must reach the socket.
    let table = site.path("vmailbox");
    fs::write(
        &table,
        "alice@lmtp.test lmtp.test/alice/\nbob@lmtp.test lmtp.test/bob/\ncarol@lmtp.test lmtp.test/carol/\n",
    )
    .unwrap();
    site.rules(&format!(
        "[lmtp]\nmailbox_maps = [\"texthash:{}\"]\nmailbox_base = \"{}/vmail\"\n",
        table.display(),
        site.dir.path().display()
    ));
    let svc = Service::start(&site, &[]);
    let pf = Postfix::start(&site, &table);
    let server = format!("127.0.0.1:{}", pf.port);
    let md = |u: &str| site.path(&format!("vmail/lmtp.test/{u}"));
    for u in ["alice", "bob", "carol"] {
        let out = swaks(&["--server", &server, "--to", &format!("{u}@lmtp.test")]);
        assert!(out.contains("250 2.0.0 Ok: queued"), "{out}");
    }
    // The unknown user: refused at RCPT by Postfix (the same table) and
    // by the service itself, spoken to directly.
    let out = swaks(&[
        "--server",
        &server,
        "--to",
        "dave@lmtp.test",
        "--quit-after",
        "RCPT",
    ]);
    assert!(out.contains("<** 550 5.1.1"), "{out}");
    let sock = site.socket();
    let out = swaks(&[
        "--socket",
        sock.to_str().unwrap(),
        "--protocol",
        "LMTP",
        "--to",
        "dave@lmtp.test",
        "--quit-after",
        "RCPT",
    ]);
    assert!(out.contains("<** 550 5.1.1"), "{out}");
    wait_for("three deliveries", || {
        ["alice", "bob", "carol"]
            .iter()
            .all(|u| site.new_files(&md(u)).len() == 1)
    });
    assert!(svc.log_text().contains(" session="));

    // Killed during a delivery: stopped (SIGSTOP, src/testhook.rs) with
    // the message in tmp/, then SIGKILL. Postfix defers; restarted and
    // flushed, it delivers each message exactly once.
    svc.kill9();
    let svc = Service::start(&site, &[("DELIVER_TEST_PAUSE_AT", "tmp-written")]);
    let out = swaks(&[
        "--server",
        &server,
        "--to",
        "alice@lmtp.test",
        "--h-X-Kill",
        "yes",
    ]);
    assert!(out.contains("250 2.0.0 Ok: queued"), "{out}");
    let pid = svc.pid();
    match waitpid(pid, Some(WaitPidFlag::WUNTRACED)).unwrap() {
        WaitStatus::Stopped(_, Signal::SIGSTOP) => {}
        other => panic!("service did not stop at tmp-written: {other:?}"),
    }
    svc.kill9();
    assert_eq!(
        site.tmp_count(&md("alice")),
        1,
        "the killed delivery's tmp/ file"
    );
    assert_eq!(site.new_files(&md("alice")).len(), 1);
    wait_for("Postfix to defer", || {
        fs::read_to_string(site.path("postfix/maillog"))
            .is_ok_and(|l| l.contains("status=deferred"))
    });
    let _svc = Service::start(&site, &[]);
    pf.postqueue_flush();
    wait_for("the redelivery", || site.new_files(&md("alice")).len() == 2);
    wait_for("an empty queue", || pf.queue_is_empty());
    let killed: usize = site
        .new_files(&md("alice"))
        .iter()
        .filter(|m| String::from_utf8_lossy(m).contains("X-Kill: yes"))
        .count();
    assert_eq!(killed, 1, "delivered exactly once");
    // The stale sweep removes what the killed delivery left in tmp/.
    let tmp = md("alice").join("tmp");
    let old = std::time::SystemTime::now() - Duration::from_secs(40 * 3600);
    for e in fs::read_dir(&tmp).unwrap() {
        util::set_atime(&e.unwrap().path(), old);
    }
    let f = fs::read_dir(&tmp).unwrap().next().unwrap().unwrap().path();
    let ft = fs::File::options().write(true).open(&f).unwrap();
    ft.set_modified(old).unwrap();
    util::set_atime(&tmp, old);
    let mut c = Client::connect(&site);
    let (_, after) = c.transaction(&["alice@lmtp.test"], &message("sweep"));
    assert!(after[0].starts_with("250"), "{after:?}");
    assert_eq!(site.tmp_count(&md("alice")), 0);
}
