//! Every recipe in examples/recipes/ runs through the binary, installed as
//! a user's `~/.config/deliver/rules.toml` with its tables beside it, and
//! files real messages into a real Maildir.
//!
//! docs/MIGRATING.md shows the recipes' rules files; `migrating_examples_are_recipes`
//! checks that every deliver example in it is one of these files, byte for
//! byte, so that every example in the guide is run here.

mod util;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use util::*;

const RECIPES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/recipes");

/// The system rules of these tests: the embedded default, written out, so
/// that an /etc/deliver/rules.toml on the test machine changes nothing.
const SYSTEM: &str = include_str!("../rules/default.toml");

/// A home with the recipe `name` installed as the user's rules.
struct Recipe {
    home: Home,
    rules: PathBuf,
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).unwrap();
            fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

fn install(name: &str) -> Recipe {
    let mut home = Home::new();
    home.system(SYSTEM);
    let config = home.home.join(".config").join("deliver");
    copy_dir(&Path::new(RECIPES).join(name), &config);
    chown_tree(&home.home.join(".config"), home.uid, home.gid);
    Recipe {
        rules: config.join("rules.toml"),
        home,
    }
}

impl Recipe {
    fn command(&self, sender: &str, recipient: &str) -> Command {
        let mut c = self
            .home
            .bare_command(&["-f", sender, "-a", recipient, "--log-stderr"]);
        // As local(8) runs it: USER names the recipient, whose home is HOME.
        c.env("USER", user_name(self.home.uid));
        c.arg("--maildir").arg(&self.home.maildir);
        c.arg("--user-rules").arg(&self.rules);
        c.arg("--rules")
            .arg(self.home.system_rules.as_ref().unwrap());
        c
    }

    /// Delivers `input` and checks the exit status.
    fn deliver_as(&self, sender: &str, recipient: &str, input: &[u8]) -> Run {
        let r = run_cmd(self.command(sender, recipient), input);
        assert_eq!(r.code, 0, "exit status; stderr:\n{}", r.stderr);
        r
    }

    fn deliver(&self, input: &[u8]) -> Run {
        self.deliver_as("sender@example.org", "user@example.com", input)
    }

    /// The folders holding a message in `new/` or `cur/` ("" is the Inbox),
    /// each with its files' contents.
    fn folders(&self) -> Vec<(String, Vec<Vec<u8>>)> {
        let mut out = Vec::new();
        let md = &self.home.maildir;
        let mut dirs = vec![(String::new(), md.clone())];
        if let Ok(rd) = fs::read_dir(md) {
            for e in rd {
                let e = e.unwrap();
                let n = e.file_name().to_string_lossy().into_owned();
                if let Some(f) = n.strip_prefix('.') {
                    if e.file_type().unwrap().is_dir() {
                        dirs.push((f.to_string(), e.path()));
                    }
                }
            }
        }
        for (name, d) in dirs {
            let mut files = Vec::new();
            for sub in ["new", "cur"] {
                if let Ok(rd) = fs::read_dir(d.join(sub)) {
                    for e in rd {
                        files.push(fs::read(e.unwrap().path()).unwrap());
                    }
                }
            }
            if !files.is_empty() {
                out.push((name, files));
            }
        }
        out.sort();
        out
    }

    /// The folder names that hold mail.
    fn folder_names(&self) -> Vec<String> {
        self.folders().into_iter().map(|(n, _)| n).collect()
    }

    /// Removes every delivered message, for the next case.
    fn empty(&self) {
        let _ = fs::remove_dir_all(&self.home.maildir);
    }
}

/// Installs the recipe `name` with a sendmail of the test's own: a script
/// that keeps each message it is given (its arguments first) in `outbox`.
fn install_sending(name: &str) -> (Recipe, PathBuf) {
    let mut r = install(name);
    let outbox = r.home.home.join("outbox");
    fs::create_dir(&outbox).unwrap();
    chown_tree(&outbox, r.home.uid, r.home.gid);
    let script = r.home.file(
        "sendmail",
        &format!(
            "#!/bin/sh\nn={}/$(date +%s%N).$$\n{{ echo \"$*\"; cat; }} > $n\n",
            outbox.display()
        ),
    );
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    r.home.system(&format!(
        "{SYSTEM}\n[settings]\nsendmail = \"{}\"\n",
        script.display()
    ));
    (r, outbox)
}

/// What the recipe's sendmail was given, oldest first.
fn outbox(dir: &Path) -> Vec<String> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v.iter().map(|p| fs::read_to_string(p).unwrap()).collect()
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_recipe_is_checked_clean() {
    for e in fs::read_dir(RECIPES).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let r = install(&name);
        let mut c = r.home.bare_command(&["check"]);
        c.arg("--user-rules").arg(&r.rules);
        c.arg("--rules").arg(r.home.system_rules.as_ref().unwrap());
        let out = run_cmd(c, b"");
        assert_eq!(
            out.code, 0,
            "deliver check of recipe {name}:\n{}{}",
            out.stdout, out.stderr
        );
        assert!(
            !out.stdout.contains("warning:") && !out.stderr.contains("warning:"),
            "recipe {name} has warnings:\n{}{}",
            out.stdout,
            out.stderr
        );
        if name == "address-book-whitelist" {
            assert!(
                out.stderr.contains(", 1 table,"),
                "the address book counts: {}",
                out.stderr
            );
        }
    }
}

#[test]
fn list_folder_by_id() {
    let r = install("list-folder-by-id");
    r.deliver(&msg(
        "From: someone@example.net\nList-Id: Rust users <rust-users.lists.example.org>\nSubject: hi\n",
        "b\n",
    ));
    assert_eq!(r.folder_names(), names(&["Lists.rust-users"]));
    r.empty();
    r.deliver(&msg(
        "From: someone@example.net\nSubject: not a list\n",
        "b\n",
    ));
    assert_eq!(r.folder_names(), names(&[""]));
}

#[test]
fn from_address_to_folder() {
    let r = install("from-address-to-folder");
    r.deliver(&msg(
        "From: The Boss <boss@corp.example>\nSubject: s\n",
        "b\n",
    ));
    assert_eq!(r.folder_names(), names(&["Boss"]));
    r.empty();
    r.deliver(&msg(
        "From: \"boss@corp.example\" <attacker@evil.test>\nSubject: s\n",
        "b\n",
    ));
    assert_eq!(
        r.folder_names(),
        names(&[""]),
        "a display name is not the address"
    );
}

#[test]
fn address_book_whitelist() {
    let r = install("address-book-whitelist");
    let spam = |from: &str| {
        msg(
            &format!("From: {from}\nX-Spam-Flag: YES\nSubject: s\n"),
            "b\n",
        )
    };
    r.deliver(&spam("Alice <alice@friends.example>"));
    assert_eq!(
        r.folder_names(),
        names(&[""]),
        "a friend's flagged mail stays in the Inbox"
    );
    r.empty();
    r.deliver(&spam("mum@family.example"));
    assert_eq!(
        r.folder_names(),
        names(&[""]),
        "a domain in the book counts"
    );
    r.empty();
    r.deliver(&spam("stranger@elsewhere.example"));
    assert_eq!(
        r.folder_names(),
        names(&["Junk"]),
        "a stranger's flagged mail is junk"
    );
}

#[test]
fn mark_read() {
    let r = install("mark-read");
    r.deliver(&msg(
        "From: notifications@service.example\nSubject: s\n",
        "b\n",
    ));
    assert_eq!(r.folder_names(), names(&["Notifications"]));
    let folder = r.home.maildir.join(".Notifications");
    assert!(r.home.files_in(".Notifications/new").is_empty());
    let cur: Vec<PathBuf> = fs::read_dir(folder.join("cur"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cur.len(), 1);
    let name = cur[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(":2,S"), "seen flag in the name: {name}");
}

#[test]
fn subject_tag() {
    let r = install("subject-tag");
    let input = msg(
        "From: x@example.net\nX-Spam-Flag: YES\nSubject: cheap pills\n",
        "body\n",
    );
    r.deliver(&input);
    let f = r.folders();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].0, "", "tagged spam stays in the Inbox");
    let text = String::from_utf8(f[0].1[0].clone()).unwrap();
    assert!(text.contains("\nSubject: [SPAM] cheap pills\n"), "{text}");
    assert!(text.ends_with("\n\nbody\n"), "body untouched: {text}");
    r.empty();
    // An encoded subject stays valid: the tag is not put inside the encoded word.
    let input = msg(
        "From: x@example.net\nX-Spam-Flag: YES\nSubject: =?UTF-8?B?w6lsw6h2ZQ==?=\n",
        "body\n",
    );
    r.deliver(&input);
    let f = r.folders();
    let text = String::from_utf8(f[0].1[0].clone()).unwrap();
    assert!(
        text.contains("\nSubject: [SPAM] =?UTF-8?B?w6lsw6h2ZQ==?=\n"),
        "{text}"
    );
    r.empty();
    // Ham is not touched at all.
    let input = msg("From: x@example.net\nSubject: lunch\n", "body\n");
    r.deliver(&input);
    assert_eq!(
        r.folders(),
        vec![(String::new(), vec![without_from(&input).to_vec()])]
    );
}

#[test]
fn backup_copy() {
    let r = install("backup-copy");
    let input = msg("From: x@example.net\nSubject: lunch\n", "body\n");
    r.deliver(&input);
    let want = without_from(&input).to_vec();
    assert_eq!(
        r.folders(),
        vec![
            (String::new(), vec![want.clone()]),
            ("Backup".to_string(), vec![want]),
        ]
    );
    r.empty();
    r.deliver(&msg(
        "From: x@example.net\nX-Spam-Flag: YES\nSubject: s\n",
        "b\n",
    ));
    assert_eq!(
        r.folder_names(),
        names(&["Backup", "Junk"]),
        "the spam routing goes on"
    );
}

#[test]
fn pipe_copy() {
    let r = install("pipe-copy");
    let bin = r.home.home.join("bin");
    fs::create_dir(&bin).unwrap();
    let script = bin.join("on-alert");
    fs::write(
        &script,
        "#!/bin/sh\ncat > \"$HOME/alert.eml\"\nprintf '%s %s\\n' \"$SENDER\" \"$RECIPIENT\" > \"$HOME/alert.env\"\n",
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    chown_tree(&bin, r.home.uid, r.home.gid);
    let input = msg(
        "From: alerts@monitor.example\nSubject: disk full\n",
        "sda1\n",
    );
    r.deliver_as("monitor@example.net", "user@example.com", &input);
    let want = without_from(&input).to_vec();
    assert_eq!(r.folders(), vec![(String::new(), vec![want.clone()])]);
    assert_eq!(fs::read(r.home.home.join("alert.eml")).unwrap(), want);
    assert_eq!(
        fs::read_to_string(r.home.home.join("alert.env")).unwrap(),
        "monitor@example.net user@example.com\n"
    );
    r.empty();
    fs::remove_file(r.home.home.join("alert.eml")).unwrap();
    r.deliver(&msg("From: someone@example.net\nSubject: s\n", "b\n"));
    assert_eq!(r.folder_names(), names(&[""]));
    assert!(
        !r.home.home.join("alert.eml").exists(),
        "only alerts are piped"
    );
}

#[test]
fn forward_copy() {
    let (r, out) = install_sending("forward-copy");
    let input = msg(
        "From: Boss <boss@corp.example>\nSubject: now\n",
        "call me\n",
    );
    r.deliver_as("boss@corp.example", "user@example.com", &input);
    let want = without_from(&input).to_vec();
    assert_eq!(r.folders(), vec![(String::new(), vec![want.clone()])]);
    let sent = outbox(&out);
    assert_eq!(sent.len(), 1);
    let mut expect =
        b"-i -f boss@corp.example -- phone@mobile.example\nX-Deliver-Forwarded: user@example.com\n"
            .to_vec();
    expect.extend_from_slice(&want);
    assert_eq!(sent[0].as_bytes(), &expect[..]);
    r.deliver(&msg("From: other@corp.example\nSubject: s\n", "b\n"));
    assert_eq!(outbox(&out).len(), 1, "only the boss's mail");
}

#[test]
fn forward() {
    let (r, out) = install_sending("forward");
    r.deliver(&msg("From: x@example.net\nSubject: s\n", "b\n"));
    assert!(r.folders().is_empty(), "nothing kept");
    let sent = outbox(&out);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].starts_with("-i -f sender@example.org -- new-address@elsewhere.example\n"));
}

#[test]
fn vacation() {
    let (r, out) = install_sending("vacation");
    for i in 0..2 {
        r.deliver(&msg(
            &format!("From: sender@example.org\nTo: user@example.com\nSubject: q{i}\n"),
            "b\n",
        ));
    }
    r.deliver(&msg(
        "From: list@example.org\nTo: user@example.com\nList-Id: <l.example.org>\nSubject: l\n",
        "b\n",
    ));
    assert_eq!(r.folders()[0].1.len(), 3, "every message filed");
    let sent = outbox(&out);
    assert_eq!(sent.len(), 1, "one reply: {sent:?}");
    assert!(
        sent[0].starts_with("-i -f  -- sender@example.org\n"),
        "{}",
        sent[0]
    );
    assert!(sent[0].contains("Subject: Away\r\n"));
    assert!(sent[0].contains("Auto-Submitted: auto-replied\r\n"));
    assert!(sent[0].contains("I am away until 4 January"));
}

#[test]
fn duplicates() {
    let r = install("duplicates");
    for n in 1..=2 {
        r.deliver(&msg(
            &format!("Received: by mx id {n}\nFrom: x@example.net\nMessage-ID: <one@example.net>\nSubject: s\n"),
            "b\n",
        ));
    }
    assert_eq!(r.folders()[0].1.len(), 1, "filed once");
    let run = r.deliver(&msg(
        "From: x@example.net\nMessage-ID: <two@example.net>\nSubject: s\n",
        "b\n",
    ));
    assert!(run.stderr.contains("action=inbox"), "{}", run.stderr);
    assert_eq!(r.folders()[0].1.len(), 2);
}

#[test]
fn plus_detail() {
    let r = install("plus-detail");
    let m = msg("From: x@example.net\nSubject: s\n", "b\n");
    r.deliver_as("a@example.net", "user+lists@example.com", &m);
    assert_eq!(r.folder_names(), names(&["lists"]));
    r.empty();
    r.deliver_as("a@example.net", "user@example.com", &m);
    assert_eq!(r.folder_names(), names(&[""]), "no detail, the Inbox");
    r.empty();
    let out = r.deliver_as("a@example.net", "user+..@example.com", &m);
    assert_eq!(
        r.folder_names(),
        names(&[""]),
        "a bad folder name files into the Inbox"
    );
    assert!(
        out.stderr.contains(".."),
        "the log says why:\n{}",
        out.stderr
    );
}

/// The spamc recipe against a real spamd on the default host and port
/// (127.0.0.1:783). Both run in a network namespace of their own, so the
/// throw-away spamd needs no free port on the host and is gone with it.
#[test]
fn spamc() {
    if !is_root() || which("spamd").is_none() || which("unshare").is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the spamc recipe"
        );
        eprintln!("skipped: needs root, spamd and unshare");
        return;
    }
    let r = install("spamc");
    let gtube = msg(
        "From: x@example.net\nTo: user@example.com\nSubject: test\nMessage-ID: <gtube@example.net>\nDate: Thu, 3 Dec 2026 10:00:00 +0000\n",
        "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\n",
    );
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let input = dir.path().join("gtube.eml");
    fs::write(&input, &gtube).unwrap();
    // The same delivery, with spamd up and then with spamd down.
    let deliver = r.command("x@example.net", "user@example.com");
    let mut cmdline = format!("{:?}", deliver.get_program());
    for a in deliver.get_args() {
        cmdline.push(' ');
        cmdline.push_str(&shell_quote(&a.to_string_lossy()));
    }
    let as_user = format!(
        "setpriv --reuid={} --regid={} --clear-groups env -i PATH=/usr/bin:/bin USER={} HOME={} {cmdline} < {}",
        r.home.uid,
        r.home.gid,
        user_name(r.home.uid),
        shell_quote(&r.home.home.to_string_lossy()),
        shell_quote(&input.to_string_lossy())
    );
    let script = format!(
        r#"set -u
ip link set lo up
spamd -L -x -u debian-spamd --listen=127.0.0.1:783 --pidfile={d}/pid -s stderr --max-children=1 2>{d}/spamd.log &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
ok=
for i in $(seq 1 300); do
  if spamc -K >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.1
done
[ -n "$ok" ] || {{ echo "spamd did not start"; cat {d}/spamd.log; exit 90; }}
{as_user} 2>{d}/up.err; echo "up $?"
kill $pid; wait $pid 2>/dev/null
{as_user} 2>{d}/down.err; echo "down $?"
"#,
        d = dir.path().display()
    );
    let out = Command::new("unshare")
        .arg("-n")
        .arg("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let up_err = fs::read_to_string(dir.path().join("up.err")).unwrap_or_default();
    let down_err = fs::read_to_string(dir.path().join("down.err")).unwrap_or_default();
    assert!(
        stdout.contains("up 0") && stdout.contains("down 0"),
        "{stdout}\n{up_err}\n{down_err}"
    );
    let f = r.folders();
    assert_eq!(
        f.iter().map(|(n, v)| (n.as_str(), v.len())).collect::<Vec<_>>(),
        vec![("", 1), ("Junk", 1)],
        "GTUBE to Junk through spamd, then to the Inbox unfiltered with spamd down\n{up_err}\n{down_err}"
    );
    let junk = String::from_utf8_lossy(&f[1].1[0]).into_owned();
    assert!(junk.contains("X-Spam-Flag: YES"), "{junk}");
    assert_eq!(
        f[0].1[0],
        without_from(&gtube),
        "delivered unchanged without spamd"
    );
    assert!(down_err.contains("filter"), "the log says why:\n{down_err}");
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .unwrap()
        .expect("the test user exists")
        .name
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Every ```toml block of docs/MIGRATING.md is a recipe's rules file.
#[test]
fn migrating_examples_are_recipes() {
    let doc =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/MIGRATING.md")).unwrap();
    let mut recipes = Vec::new();
    for e in fs::read_dir(RECIPES).unwrap() {
        let p = e.unwrap().path().join("rules.toml");
        recipes.push(fs::read_to_string(p).unwrap());
    }
    let mut blocks = 0;
    let mut rest = doc.as_str();
    while let Some(i) = rest.find("```toml\n") {
        let after = &rest[i + 8..];
        let end = after.find("```").expect("closed block");
        let block = &after[..end];
        assert!(
            recipes.iter().any(|r| r == block),
            "docs/MIGRATING.md has a deliver example that is not a recipe file:\n{block}"
        );
        blocks += 1;
        rest = &after[end + 3..];
    }
    assert!(
        blocks >= 9,
        "every recipe is in the guide ({blocks} blocks)"
    );
}
