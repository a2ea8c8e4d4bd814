//! One `Engine`, many deliveries: three recipients with their own homes,
//! Maildirs and rules, served from one process, as the LMTP service will.
//! Nothing of one delivery may leak into the next: the user's rules, the
//! tables they name, the memory budget, open descriptors, tmp/ files.

use deliver::engine::inflight;
use deliver::engine::load::Options;
use deliver::engine::privs::Recipient;
use deliver::engine::{Engine, Outcome};
use deliver::input::envelope::Flags;
use deliver::output::log::Logger;
use std::fs;
use std::path::{Path, PathBuf};

struct User {
    who: Recipient,
    home: PathBuf,
}

/// A recipient whose files this process owns (the engine checks the user's
/// rules file against the recipient's uid).
fn user(root: &Path, name: &str, rules: Option<&str>) -> User {
    let home = root.join(name);
    fs::create_dir_all(home.join(".config/deliver")).unwrap();
    if let Some(r) = rules {
        let p = home.join(".config/deliver/rules.toml");
        fs::write(&p, r).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    }
    User {
        who: Recipient {
            name: name.into(),
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            home: Some(home.clone()),
        },
        home,
    }
}

fn flags(sender: &str, rcpt: &str) -> Flags {
    Flags {
        sender: Some(sender.into()),
        recipient: Some(rcpt.into()),
        ..Flags::default()
    }
}

/// Files in the Maildir's `new/` of `folder` ("" for the Inbox).
fn count(u: &User, folder: &str) -> usize {
    let dir = if folder.is_empty() {
        u.home.join("Maildir/new")
    } else {
        u.home.join(format!("Maildir/.{folder}/new"))
    };
    fs::read_dir(dir).map_or(0, |d| d.count())
}

fn tmp_empty(u: &User) -> bool {
    fs::read_dir(u.home.join("Maildir/tmp")).map_or(true, |mut d| d.next().is_none())
}

/// The tests of this file run one at a time: descriptors are counted
/// for the whole process.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd").unwrap().count()
}

const SYSTEM: &str = r#"
[spam]
junk_threshold = 5.0

[[rule]]
name = "casino"
header = "Subject"
match = '(?i)casino'
score = 6.0
"#;

fn engine(dir: &Path, defer: bool) -> Engine {
    let rules = dir.join("system.toml");
    fs::write(&rules, SYSTEM).unwrap();
    let opts = Options {
        rules: Some(rules),
        ..Options::default()
    };
    let nobody = Recipient {
        name: "engine-test".into(),
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        home: None,
    };
    match Engine::load(opts, &nobody, Logger::silent(), defer) {
        Ok(e) => e,
        Err((f, _)) => panic!("load: {f}"),
    }
}

/// One delivery, as its own flight (time limit and tmp/ tracking).
fn deliver(e: &mut Engine, input: &[u8], f: &Flags, who: &Recipient) -> Outcome {
    let flight = inflight::begin(deliver::policy::rules::DEFAULT_TIME_LIMIT);
    e.deliver(input, f, who, &flight)
}

fn message(subject: &str, n: usize) -> Vec<u8> {
    format!("Subject: {subject}\nMessage-ID: <{n}@engine.test>\n\nbody {n}\n").into_bytes()
}

#[test]
fn one_engine_serves_three_recipients_and_nothing_leaks() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for defer in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut e = engine(dir.path(), defer);
        // alice files list mail by rule and names a table of her own;
        // bob rejects one sender by table; carol has no rules at all.
        let alice_table = dir.path().join("alice/senders");
        let alice = user(
            dir.path(),
            "alice",
            Some(&format!(
                "[access]\nsender = [\"texthash:{}\"]\n\n[[rule]]\nname = \"lists\"\nheader = \"Subject\"\nmatch = '^\\[rust\\]'\nfolder = \"Lists\"\n",
                alice_table.display()
            )),
        );
        fs::write(&alice_table, "friend@example.org OK\n").unwrap();
        let bob_table = dir.path().join("bob/senders");
        let bob = user(
            dir.path(),
            "bob",
            Some(&format!(
                "[access]\nsender = [\"texthash:{}\"]\n",
                bob_table.display()
            )),
        );
        fs::write(&bob_table, "pest@example.org REJECT go away\n").unwrap();
        let carol = user(dir.path(), "carol", None);

        let before = open_fds();
        let rounds = 1000 / 5;
        for n in 0..rounds {
            // A [rust] subject: alice's Lists rule; the others' Inbox.
            for u in [&alice, &bob, &carol] {
                let r = deliver(
                    &mut e,
                    &message("[rust] release", n)[..],
                    &flags("list@example.org", "x@example.com"),
                    &u.who,
                );
                assert_eq!(r, Outcome::Done, "{}", u.who.name);
            }
            // pest@: rejected by bob's table only.
            let r = deliver(
                &mut e,
                &message("hello", n)[..],
                &flags("pest@example.org", "carol@example.com"),
                &carol.who,
            );
            assert_eq!(r, Outcome::Done);
            let r = deliver(
                &mut e,
                &message("hello", n)[..],
                &flags("pest@example.org", "bob@example.com"),
                &bob.who,
            );
            assert_eq!(r.exit_code(), 77, "{r:?}");
        }
        assert_eq!(count(&alice, "Lists"), rounds);
        assert_eq!(count(&alice, ""), 0);
        assert_eq!(count(&bob, ""), rounds);
        assert_eq!(count(&bob, "Lists"), 0);
        assert_eq!(count(&carol, ""), 2 * rounds);
        assert_eq!(count(&carol, "Lists"), 0);
        for u in [&alice, &bob, &carol] {
            assert!(tmp_empty(u), "{}: tmp/ not empty", u.who.name);
        }
        // The system layer still holds every rule after all those messages
        // (its rules cache is put back after each decision).
        let r = deliver(
            &mut e,
            &message("casino night", 0)[..],
            &flags("x@example.org", "carol@example.com"),
            &carol.who,
        );
        assert_eq!(r, Outcome::Done);
        assert_eq!(count(&carol, "Junk"), 1, "defer={defer}");
        assert_eq!(open_fds(), before, "descriptors leaked (defer={defer})");
    }
}

/// A user whose rules exceed the memory budget is ignored, and the next
/// user's rules (within it) still load: the budget is per delivery.
#[test]
fn the_budget_is_per_delivery() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path(), false);
    // Patterns each near the per-pattern bound add up past the user budget.
    let mut heavy = String::new();
    for i in 0..200 {
        heavy.push_str(&format!(
            "[[rule]]\nname = \"r{i}\"\nheader = \"Subject\"\nmatch = '(?i)\\w{{40}}x{i}[a-z]{{1,30}}\\w{{20}}'\nfolder = \"Heavy\"\n"
        ));
    }
    heavy.push_str(
        "[[rule]]\nname = \"h\"\nheader = \"Subject\"\nmatch = 'hello'\nfolder = \"Hog\"\n",
    );
    let hog = user(dir.path(), "hog", Some(&heavy));
    let light = user(
        dir.path(),
        "light",
        Some("[[rule]]\nname = \"l\"\nheader = \"Subject\"\nmatch = 'hello'\nfolder = \"Light\"\n"),
    );
    for n in 0..2 {
        let r = deliver(
            &mut e,
            &message("hello", n)[..],
            &flags("a@example.org", "hog@example.com"),
            &hog.who,
        );
        assert_eq!(r, Outcome::Done);
        let r = deliver(
            &mut e,
            &message("hello", n)[..],
            &flags("a@example.org", "light@example.com"),
            &light.who,
        );
        assert_eq!(r, Outcome::Done);
    }
    assert_eq!(count(&hog, "Hog"), 0, "hog's rules were within the budget");
    assert_eq!(count(&hog, ""), 2);
    assert_eq!(count(&light, "Light"), 2, "light's rules were not applied");
}
