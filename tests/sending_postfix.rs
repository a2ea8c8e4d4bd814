//! Forward, vacation and duplicates with real parts: a throw-away Postfix
//! (its own configuration, queue and log in a temporary directory, smtpd
//! on 127.0.0.1 only, no outbound transport), local(8) running the binary
//! under test as `mailbox_command` for four throw-away local users, and
//! Postfix's own `sendmail` for forwards and replies. Everything is torn
//! down when the test ends, failed or not (guards with Drop).
//!
//! Postfix's `sendmail`, run by a user with a configuration directory of
//! its own, is accepted by `postdrop` only when that directory is listed in
//! `alternate_config_directories` of the default `/etc/postfix/main.cf`.
//! On a machine where Postfix is installed without a configuration (as
//! scripts/test installs it) the test writes that one line there and
//! removes the file at the end; where an `/etc/postfix/main.cf` exists (a
//! configured mail server) the test does not touch it and is skipped.
//!
//! Needs root, postfix and swaks (scripts/test installs them).

mod util;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use util::*;

const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
const DOMAIN: &str = "e2e.deliver.test";
const PATIENCE: Duration = Duration::from_secs(60);

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .env("PATH", PATH)
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

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < PATIENCE, "waited too long for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Throw-away local users, removed when dropped.
struct Users(Vec<String>);

impl Drop for Users {
    fn drop(&mut self) {
        for u in &self.0 {
            let _ = Command::new("userdel").arg(u).env("PATH", PATH).output();
        }
    }
}

/// `/etc/postfix/main.cf`, written by this test, removed when dropped.
struct DefaultMainCf(PathBuf);

impl Drop for DefaultMainCf {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The Postfix instance, aborted when dropped.
struct Postfix {
    conf: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = self.cmd("postfix").arg("abort").output();
    }
}

impl Postfix {
    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        c.arg("-c").arg(&self.conf).env("PATH", PATH);
        c
    }

    fn flush(&self) {
        let _ = self.cmd("postqueue").arg("-f").output();
    }

    fn queue_is_empty(&self) -> bool {
        self.cmd("postqueue")
            .arg("-j")
            .output()
            .is_ok_and(|o| o.stdout.is_empty())
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    /// Sends a message over SMTP; `from` "" is the null sender.
    fn send(&self, from: &str, to: &str, data: &str) {
        let wire = self.dir.join(format!("msg.{}", rand_tag()));
        fs::write(&wire, data.replace('\n', "\r\n") + ".").unwrap();
        let out = Command::new("swaks")
            .args(["--server", &format!("127.0.0.1:{}", self.port)])
            .args(["--from", from, "--to", to, "--no-data-fixup"])
            .arg("--data")
            .arg(format!("@{}", wire.display()))
            .env("PATH", PATH)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("250 2.0.0 Ok: queued"), "swaks: {text}");
    }
}

fn rand_tag() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

struct Site {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    users: Users,
    pf: Option<Postfix>,
    _main_cf: Option<DefaultMainCf>,
}

impl Site {
    fn user(&self, i: usize) -> &str {
        &self.users.0[i]
    }

    fn addr(&self, i: usize) -> String {
        format!("{}@{DOMAIN}", self.user(i))
    }

    fn maildir(&self, i: usize) -> PathBuf {
        self.root.join("home").join(self.user(i)).join("Maildir")
    }

    fn pf(&self) -> &Postfix {
        self.pf.as_ref().unwrap()
    }

    /// The files of user `i`'s Inbox (new/ and cur/) holding `marker`.
    fn with(&self, i: usize, marker: &str) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = fs::read_dir(self.maildir(i).join(sub)) {
                for e in rd {
                    let t = fs::read_to_string(e.unwrap().path()).unwrap_or_default();
                    if t.contains(marker) {
                        out.push(t);
                    }
                }
            }
        }
        out
    }

    /// Writes user `i`'s rules.
    fn rules(&self, i: usize, text: &str) {
        let p = self
            .root
            .join("rules")
            .join(format!("{}.toml", self.user(i)));
        fs::write(&p, text).unwrap();
        let uid = nix::unistd::User::from_name(self.user(i)).unwrap().unwrap();
        std::os::unix::fs::chown(&p, Some(uid.uid.as_raw()), Some(uid.gid.as_raw())).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// The system rules: `sendmail` as given.
    fn system(&self, sendmail: &str) {
        fs::write(
            self.root.join("system.toml"),
            format!("[settings]\nsendmail = {sendmail}\n"),
        )
        .unwrap();
    }

    fn real_sendmail(&self) -> String {
        format!(
            "[\"/usr/sbin/sendmail\", \"-C\", \"{}\"]",
            self.pf().conf.display()
        )
    }

    /// Waits until the queue is empty (every message delivered or bounced).
    fn settle(&self) {
        wait_for("an empty queue", || self.pf().queue_is_empty());
    }
}

/// Sets up the users, the instance and the default main.cf; `None` (the
/// test skipped) where that cannot be done here.
fn site() -> Option<Site> {
    if !is_root() || !have("postfix") || !have("swaks") || !have("useradd") {
        eprintln!("skipped: needs root, postfix, swaks and useradd");
        return None;
    }
    let default_cf = Path::new("/etc/postfix/main.cf");
    if default_cf.exists() {
        eprintln!("skipped: /etc/postfix/main.cf exists (a configured Postfix); not touched");
        return None;
    }
    let tmp = tempfile::Builder::new()
        .prefix("deliver-e2e-send")
        .tempdir()
        .unwrap();
    let root = tmp.path().to_path_buf();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    for d in ["home", "rules", "bin", "conf", "queue"] {
        fs::create_dir(root.join(d)).unwrap();
        fs::set_permissions(root.join(d), fs::Permissions::from_mode(0o755)).unwrap();
    }
    let bin = root.join("bin/deliver");
    fs::copy(BIN, &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();

    let tag = std::process::id() % 100_000;
    let mut users = Users(Vec::new());
    for name in ["a", "b", "c", "d"] {
        let u = format!("dlv{name}{tag}");
        let home = root.join("home").join(&u);
        let out = Command::new("useradd")
            .args([
                "--comment",
                "deliver e2e throw-away test user",
                "--no-create-home",
            ])
            .arg("--home-dir")
            .arg(&home)
            .args(["--shell", "/usr/sbin/nologin", "--user-group", &u])
            .env("PATH", PATH)
            .output()
            .unwrap();
        assert!(out.status.success(), "useradd {u}: {out:?}");
        users.0.push(u.clone());
        let pw = nix::unistd::User::from_name(&u).unwrap().unwrap();
        fs::create_dir_all(home.join("Maildir")).unwrap();
        chown_tree(&home, pw.uid.as_raw(), pw.gid.as_raw());
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
    }
    let conf = root.join("conf");
    let main_cf = DefaultMainCf(default_cf.to_path_buf());
    fs::write(
        default_cf,
        format!(
            "# Written by deliver's tests/sending_postfix.rs for one test run, then removed.\n\
             alternate_config_directories = {}\n",
            conf.display()
        ),
    )
    .unwrap();

    let port = free_port();
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
local unix - n n - - local
anvil unix - - n - 1 anvil
postlog unix-dgram n - n - 1 postlogd
"
        ),
    )
    .unwrap();
    let aliases = conf.join("aliases");
    fs::write(
        &aliases,
        format!("alias1-{tag} {a}\nalias2-{tag} {a}\n", a = users.0[0]),
    )
    .unwrap();
    let r = root.display();
    fs::write(
        conf.join("main.cf"),
        format!(
            "compatibility_level = 3.6
queue_directory = {r}/queue
data_directory = {r}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = {r}/maillog
maillog_file_prefixes = {r}
myhostname = {DOMAIN}
mydomain = deliver.test
myorigin = $myhostname
mydestination = $myhostname, localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_tls_security_level = none
relayhost =
default_transport = error:no outbound mail
relay_transport = error:no outbound mail
alias_maps = texthash:{aliases}
alias_database =
local_recipient_maps = proxy:unix:passwd.byname $alias_maps
mailbox_command = {r}/bin/deliver --rules {r}/system.toml --user-rules {r}/rules/$USER.toml --maildir $HOME/Maildir -f \"$SENDER\" -a \"$RECIPIENT\"
mailbox_size_limit = 0
command_time_limit = 30s
biff = no
delay_warning_time = 0h
notify_classes =
minimal_backoff_time = 300s
maximal_backoff_time = 600s
queue_run_delay = 300s
",
            aliases = aliases.display()
        ),
    )
    .unwrap();
    let site = Site {
        _tmp: tmp,
        root,
        users,
        pf: None,
        _main_cf: Some(main_cf),
    };
    for i in 0..4 {
        site.rules(i, "");
    }
    let mut site = site;
    let pf = Postfix {
        conf,
        dir: site.root.clone(),
        port,
    };
    let out = pf.cmd("postfix").arg("start").output().unwrap();
    let log = pf.log();
    site.pf = Some(pf);
    assert!(out.status.success(), "postfix start: {out:?} {log}");
    site.system(&site.real_sendmail());
    Some(site)
}

fn message(from: &str, to: &str, subject: &str, marker: &str, extra: &str) -> String {
    format!(
        "From: <{from}>\nTo: <{to}>\nSubject: {subject}\nMessage-ID: <{marker}@{DOMAIN}>\n{extra}\nmarker {marker}\n"
    )
}

#[test]
fn forward_vacation_and_duplicates_through_postfix() {
    let Some(site) = site() else { return };
    let pf = site.pf();
    let (a, b, c, d) = (site.addr(0), site.addr(1), site.addr(2), site.addr(3));

    // 1. A forwarded copy arrives in another local user's Maildir.
    site.rules(
        0,
        &format!("[[rule]]\nname = \"copy\"\nforward = [\"{b}\"]\ncopy = true\n"),
    );
    pf.send(&c, &a, &message(&c, &a, "fwd", "m-fwd", ""));
    site.settle();
    assert_eq!(
        site.with(0, "marker m-fwd").len(),
        1,
        "kept by A\n{}",
        pf.log()
    );
    let at_b = site.with(1, "marker m-fwd");
    assert_eq!(at_b.len(), 1, "forwarded to B\n{}", pf.log());
    assert!(
        at_b[0].contains(&format!("X-Deliver-Forwarded: {a}")),
        "{}",
        at_b[0]
    );
    assert!(
        at_b[0].contains(&format!("Return-Path: <{c}>")),
        "the sender kept: {}",
        at_b[0]
    );

    // 2. A forward loop between two users ends without a storm.
    site.rules(
        0,
        &format!("[[rule]]\nname = \"to-b\"\nforward = [\"{b}\"]\n"),
    );
    site.rules(
        1,
        &format!("[[rule]]\nname = \"to-a\"\nforward = [\"{a}\"]\n"),
    );
    pf.send(&c, &a, &message(&c, &a, "loop", "m-loop", ""));
    site.settle();
    let deliveries = pf
        .log()
        .lines()
        .filter(|l| l.contains("status=sent") && l.contains("deliver"))
        .count();
    assert!(
        deliveries <= 8,
        "a bounded number of deliveries: {deliveries}\n{}",
        pf.log()
    );
    let copies: usize = (0..4).map(|i| site.with(i, "marker m-loop").len()).sum();
    assert!(copies <= 1, "no copies multiplied: {copies}");
    site.rules(1, "");

    // 3. Vacation: one reply for three messages; none to a list message,
    //    a bounce, or an auto-generated message.
    site.rules(
        0,
        "[[rule]]\nname = \"away\"\nvacation = { days = 7, subject = \"Away\", body = \"Back soon.\" }\n",
    );
    for i in 0..3 {
        pf.send(
            &c,
            &a,
            &message(&c, &a, &format!("q{i}"), &format!("m-vac{i}"), ""),
        );
    }
    pf.send(
        &d,
        &a,
        &message(&d, &a, "list", "m-list", "List-Id: <l.example.org>\n"),
    );
    pf.send(
        &d,
        &a,
        &message(
            &d,
            &a,
            "robot",
            "m-robot",
            "Auto-Submitted: auto-generated\n",
        ),
    );
    pf.send("", &a, &message(&d, &a, "bounce", "m-bounce", ""));
    site.settle();
    let replies = site.with(2, "Subject: Away");
    assert_eq!(replies.len(), 1, "one reply to C\n{}", pf.log());
    assert!(replies[0].contains("Auto-Submitted: auto-replied"));
    assert!(
        replies[0].contains("Return-Path: <>"),
        "null sender: {}",
        replies[0]
    );
    assert_eq!(
        site.with(3, "Subject: Away").len(),
        0,
        "none to D\n{}",
        pf.log()
    );
    assert_eq!(
        site.with(0, "marker m-").len(),
        1 + 6,
        "every message filed at A"
    );

    // 4. sendmail missing: the delivery defers; after a flush each side
    //    effect happens exactly once.
    site.system("\"/nonexistent/sendmail\"");
    site.rules(
        0,
        &format!(
            "[[rule]]\nname = \"gone\"\nvacation = {{ subject = \"Gone\", body = \"Gone.\" }}\n\
             [[rule]]\nname = \"to-b\"\nforward = [\"{b}\"]\n"
        ),
    );
    pf.send(&c, &a, &message(&c, &a, "defer", "m-defer", ""));
    wait_for("the deferral", || pf.log().contains("status=deferred"));
    assert!(
        !pf.queue_is_empty(),
        "deferred, kept in the queue\n{}",
        pf.log()
    );
    site.system(&site.real_sendmail());
    pf.flush();
    site.settle();
    assert_eq!(
        site.with(1, "marker m-defer").len(),
        1,
        "forwarded once\n{}",
        pf.log()
    );
    assert_eq!(
        site.with(2, "Subject: Gone").len(),
        1,
        "replied once\n{}",
        pf.log()
    );
    assert_eq!(site.with(0, "marker m-defer").len(), 0, "not kept");

    // 5. Duplicates: the same message to two aliases of one user, filed once.
    site.rules(
        0,
        "[[rule]]\nname = \"dups\"\nduplicate = { window_days = 7, action = \"discard\" }\n",
    );
    let tag = std::process::id() % 100_000;
    let m = message(&c, &a, "dup", "m-dup", "");
    pf.send(&c, &format!("alias1-{tag}@{DOMAIN}"), &m);
    pf.send(&c, &format!("alias2-{tag}@{DOMAIN}"), &m);
    site.settle();
    assert_eq!(
        site.with(0, "marker m-dup").len(),
        1,
        "filed once\n{}",
        pf.log()
    );
}
