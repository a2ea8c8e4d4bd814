//! Security properties (see SECURITY.md for the threat model), each with a
//! test. Properties tested elsewhere:
//!
//! - root without -d defers; with -d USER the files belong to USER:
//!   delivery.rs `root_needs_dash_d_and_files_belong_to_the_user`;
//! - a symlink in place of the Maildir, new/, tmp/ or a folder is not
//!   followed: delivery.rs `symlinked_maildir_parts_are_not_followed`;
//! - a user rules file that is group/world-writable or someone else's is
//!   ignored: delivery.rs `user_rules_with_errors_or_bad_mode_are_ignored`;
//! - control characters in SENDER (environment) and -a never make a header
//!   or log line: access_delivery.rs `control_characters_in_the_envelope_...`;
//! - forged spam headers below the filter's change nothing:
//!   decide.rs `forged_spam_headers_below_the_filter_change_nothing`.

mod util;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use util::*;

/// A directory outside the Maildir that anybody could write into, and a
/// count of what is in it.
struct Outside(tempfile::TempDir);

impl Outside {
    fn new() -> Outside {
        let d = tempfile::tempdir().unwrap();
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o777)).unwrap();
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir(d.path().join(sub)).unwrap();
            fs::set_permissions(d.path().join(sub), fs::Permissions::from_mode(0o777)).unwrap();
        }
        Outside(d)
    }
    fn files(&self) -> usize {
        fn walk(p: &std::path::Path) -> usize {
            fs::read_dir(p)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    if e.file_type().unwrap().is_dir() {
                        walk(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        }
        walk(self.0.path())
    }
}

#[test]
fn symlinks_inside_folders_and_maildir_files_are_not_followed() {
    let out = Outside::new();
    let spam = msg("Subject: x\nX-Spam-Flag: YES\n", "x\n");
    // cur/ of the Maildir: defer.
    let h = Home::new();
    assert_eq!(h.deliver(&msg("Subject: x\n", "x\n")).code, 0);
    fs::remove_dir(h.maildir.join("cur")).unwrap();
    std::os::unix::fs::symlink(out.0.path().join("cur"), h.maildir.join("cur")).unwrap();
    let r = h.deliver(&msg("Subject: x\n", "x\n"));
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.first_line().contains("symlink"), "{}", r.stderr);

    // A folder's new/, tmp/ or cur/: the Inbox instead.
    for sub in ["new", "tmp", "cur"] {
        let h = Home::new();
        assert_eq!(h.deliver(&spam).code, 0);
        let p = h.maildir.join(".Junk").join(sub);
        fs::remove_dir_all(&p).unwrap();
        std::os::unix::fs::symlink(out.0.path().join(sub), &p).unwrap();
        let r = h.run(&["--log-stderr"], &spam);
        assert_eq!(r.code, 0, "{sub}: {}", r.stderr);
        assert!(r.stderr.contains("unusable"), "{sub}: {}", r.stderr);
        assert_eq!(h.delivered()[""].len(), 1, "{sub}");
    }

    // subscriptions and the maildirfolder marker planted as symlinks to a
    // file outside: never written through.
    let h = Home::new();
    assert_eq!(h.deliver(&msg("Subject: x\n", "x\n")).code, 0);
    let target = out.0.path().join("victim");
    fs::write(&target, "untouched\n").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o666)).unwrap();
    std::os::unix::fs::symlink(&target, h.maildir.join("subscriptions")).unwrap();
    fs::create_dir(h.maildir.join(".Junk")).unwrap();
    std::os::unix::fs::symlink(&target, h.maildir.join(".Junk/maildirfolder")).unwrap();
    chown_tree(&h.maildir, h.uid, h.gid);
    let r = h.deliver(&spam);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(h.delivered()["Junk"].len(), 1);
    assert_eq!(fs::read_to_string(&target).unwrap(), "untouched\n");

    // A folder directory owned by someone else (when root can plant one):
    // not writable, so the Inbox.
    if is_root() {
        let h = Home::new();
        assert_eq!(h.deliver(&msg("Subject: x\n", "x\n")).code, 0);
        let junk = h.maildir.join(".Junk");
        for sub in ["", "tmp", "new", "cur"] {
            fs::create_dir_all(junk.join(sub)).unwrap();
        }
        fs::set_permissions(junk.join("new"), fs::Permissions::from_mode(0o755)).unwrap();
        let r = h.run(&["--log-stderr"], &spam);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(h.delivered()[""].len(), 2, "{}", r.stderr);
    }
    assert_eq!(out.files(), 1, "something was written outside the Maildir");
}

#[test]
fn folder_names_from_rules_and_tables_cannot_leave_the_maildir() {
    let bad = [
        "..",
        "../outside",
        "a/../../outside",
        "/etc",
        ".hidden",
        "a//b",
        "a.",
        "x\u{1}y",
        "x\ny",
        "x\u{7f}",
        "x\u{85}y",
        "INBOX.",
        "INBOX/../x",
    ];
    for name in bad {
        // In a user rule: the file does not load, it is ignored, the
        // message goes to the Inbox.
        let h = Home::new();
        let toml_name = toml_string(name);
        h.user(&format!(
            "[[rule]]\nheader = \"Subject\"\nmatch = \"x\"\nfolder = {toml_name}\n"
        ));
        let r = h.run(&["--log-stderr"], &msg("Subject: x\n", "x\n"));
        assert_eq!(r.code, 0, "{name:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("ignoring user rules"),
            "{name:?}: {}",
            r.stderr
        );
        assert_eq!(
            h.delivered().keys().collect::<Vec<_>>(),
            vec![""],
            "{name:?}"
        );
        only_maildir_entries(&h, name);
    }
    // In a table result, built from the sender's address by a regexp
    // table: logged, the Inbox.
    let mut h = Home::new();
    let m = h.file("folders.regexp", "/^folder=(.*)@x$/ FOLDER $1\n");
    h.system(&format!(
        "[access]\nsender = [\"regexp:{}\"]\n",
        m.display()
    ));
    for name in bad
        .iter()
        .filter(|n| !n.contains(['\n', '\u{1}', '\u{7f}', '\u{85}']))
    {
        let before = h.delivered().get("").map_or(0, Vec::len);
        let sender = format!("folder={name}@x");
        let r = h.run(
            &["--log-stderr", "-f", &sender],
            &msg("Subject: x\n", "x\n"),
        );
        assert_eq!(r.code, 0, "{name:?}: {}", r.stderr);
        assert_eq!(
            h.delivered()[""].len(),
            before + 1,
            "{name:?}: {}",
            r.stderr
        );
        assert!(r.stderr.contains("refused"), "{name:?}: {}", r.stderr);
        only_maildir_entries(&h, name);
    }
}

/// A TOML basic string for `s`, with control characters escaped.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Nothing but the Maildir's own entries exists next to it or inside it.
fn only_maildir_entries(h: &Home, what: &str) {
    let home: Vec<String> = fs::read_dir(&h.home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "rules.toml")
        .collect();
    assert_eq!(home, vec!["Maildir"], "{what:?}: {home:?}");
    for e in fs::read_dir(&h.maildir).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            ["tmp", "new", "cur", "subscriptions"].contains(&n.as_str()),
            "{what:?}: unexpected {n:?} in the Maildir"
        );
    }
}

#[test]
fn control_characters_in_envelope_flags_and_table_results() {
    // -f with CR/LF, RECIPIENT from the environment, and a regexp table
    // that copies the sender into a PREPEND header and a REJECT text.
    let mut h = Home::new();
    let m = h.file(
        "t.regexp",
        "/rej(.*)$/ REJECT no $1\n/^(.*)$/ PREPEND X-Sender: $1\n",
    );
    h.system(&format!(
        "[access]\nsender = [\"regexp:{}\"]\n",
        m.display()
    ));
    let input = msg("Subject: x\n", "x\n");
    let mut c = h.command(&["--log-stderr", "-f", "a@b\r\nX-Evil: 1\rY\u{85}Z"]);
    c.env("RECIPIENT", "u@x\nX-Injected: 1");
    let r = run_cmd(c, &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = h.delivered()[""][0].clone();
    let head = String::from_utf8_lossy(&got);
    let first = head.lines().next().unwrap();
    assert!(first.starts_with("X-Sender: a@b"), "{head}");
    assert_eq!(
        &got[first.len() + 1..],
        without_from(&input),
        "one line added"
    );
    assert!(
        !head.contains("\nX-Evil") && !head.contains("\nX-Injected"),
        "{head}"
    );
    for line in r.stderr.lines() {
        assert!(
            line.starts_with("deliver: "),
            "a log line was split: {line:?}"
        );
    }

    let r = h.run(&["-f", "rej\r\n5.0.0 forged\nX-Evil: 1@b"], &input);
    assert_eq!(r.code, 77, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{:?}", r.stderr);
    assert!(r.stderr.starts_with("5.7.1 "), "{}", r.stderr);
}

/// One delivery with `args` under GNU time (as the test's user), and the
/// file time writes the peak RSS into.
fn timed(h: &Home, args: &[&str]) -> (Command, std::path::PathBuf) {
    let inner = h.command(args);
    let out = h.home.join("time.out");
    let mut c = Command::new("/usr/bin/time");
    c.arg("-o").arg(&out).args(["-f", "%M", "--"]);
    c.arg(inner.get_program()).args(inner.get_args());
    c.env_clear();
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    if is_root() {
        use std::os::unix::process::CommandExt;
        c.uid(h.uid).gid(h.gid);
    }
    (c, out)
}

/// The peak RSS in KiB that GNU time wrote (`u64::MAX` when it wrote none:
/// the process was killed).
fn peak_kib(out: &std::path::Path) -> u64 {
    fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .parse()
        .unwrap_or(u64::MAX)
}

/// Peak RSS of one delivery in KiB, measured by GNU time, and its Run.
fn measured(h: &Home, args: &[&str], input: &[u8]) -> (Run, u64) {
    let (c, out) = timed(h, args);
    let r = run_cmd(c, input);
    (r, peak_kib(&out))
}

#[test]
fn hostile_user_patterns_cannot_exhaust_memory() {
    if !std::path::Path::new("/usr/bin/time").exists() {
        eprintln!("skipped: /usr/bin/time not installed (scripts/test installs it)");
        return;
    }
    // 150 patterns on 150 headers (the patterns of one header are
    // compiled together and bounded as a group), each about 1.3 MB
    // compiled, would need about 200 MB together (100 table patterns within
    // their 2 MiB bound, about 150 MB): over the user's budget, the file is
    // ignored.
    let h = Home::new();
    let rules: String = (0..150)
        .map(|i| format!("[[rule]]\nheader = \"X-H{i}\"\nmatch = '\\w{{60}}x{i}'\nscore = 1\n"))
        .collect();
    h.user(&rules);
    let input = msg("Subject: x\n", "x\n");
    let (r, kib) = measured(&h, &["--log-stderr", "-f", "a@b"], &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("MiB compiled in total"), "{}", r.stderr);
    assert_eq!(h.count(), 1);
    assert!(kib < 150 * 1024, "peak RSS {kib} KiB");

    // The same through a user pcre: table.
    let h = Home::new();
    let table: String = (0..100)
        .map(|i| format!("/(?:[a-z]{{100}}){{200}}{i}/ REJECT\n"))
        .collect();
    let m = h.home.join("big.pcre");
    fs::write(&m, table).unwrap();
    chown_tree(&m, h.uid, h.gid);
    h.user(&format!("[access]\nsender = [\"pcre:{}\"]\n", m.display()));
    let (r, kib) = measured(&h, &["--log-stderr", "-f", "a@b"], &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("MiB compiled in total"), "{}", r.stderr);
    assert_eq!(h.count(), 1);
    assert!(kib < 150 * 1024, "peak RSS {kib} KiB: {}", r.stderr);

    // A single pattern over the bound, and patterns that backtracking
    // engines take exponential time on, against a header near the 1 MiB
    // header limit: refused, or matched in linear time and bounded memory.
    let h = Home::new();
    h.user(
        "[[rule]]\nheader = \"Subject\"\nmatch = '(a|aa)*c'\nscore = 1\n\
         [[rule]]\nheader = \"Subject\"\nmatch = '^(\\w+\\s?)*$'\nscore = 1\n\
         [[rule]]\nheader = \"Subject\"\nmatch = '(?i)(.*a){20}'\nscore = 1\n\
         [[rule]]\nbody = '(x+x+)+y'\nfolder = \"Matched\"\n",
    );
    let huge = msg(
        &format!("Subject: {}\n", "a".repeat(1000 * 1000)),
        &"x".repeat(60_000),
    );
    let (r, kib) = measured(&h, &["-f", "a@b"], &huge);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(h.delivered().keys().collect::<Vec<_>>(), vec![""]);
    assert!(kib < 150 * 1024, "peak RSS {kib} KiB");
    let h = Home::new();
    h.user("[[rule]]\nheader = \"Subject\"\nmatch = '\\w{1000}{1000}'\nreject = \"no\"\n");
    let r = h.run(&["--log-stderr"], &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("too big"), "{}", r.stderr);
}

/// A root-owned table above the index threshold, with the mtime `mtime`,
/// whose entry for `sender@example.org` is `result` (padded so that every
/// version has the same size). Returns its path.
fn big_table(
    h: &Home,
    name: &str,
    result: &str,
    mtime: std::time::SystemTime,
) -> std::path::PathBuf {
    let mut s = format!("sender@example.org {result:<30}\n");
    for i in 0..1000 {
        s.push_str(&format!("user{i}@example.net OK\n"));
    }
    let p = h.file(name, &s);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    p
}

/// The SECURITY.md gap, closed: the recipient cannot make a system table
/// answer differently for their mail by forging its cached index, neither in
/// their own cache (where deliver used to keep it) nor, owned by them, in the
/// system cache directory. The forged index is a genuine index of another
/// version of the table with the same identity (path, inode, size, mtime),
/// so only its owner gives it away; the control at the end shows that the
/// same file, owned by root, is used.
#[test]
fn a_forged_index_of_a_system_table_is_ignored() {
    if !is_root() {
        eprintln!("skipped: needs root to own the table and forge as another user");
        return;
    }
    use deliver::policy::maps::{index, texthash::TextHash, OpenOptions};
    use std::os::unix::fs::MetadataExt;
    let mut h = Home::new();
    let syscache = h._dir.path().join("syscache");
    fs::create_dir(&syscache).unwrap();
    fs::set_permissions(&syscache, fs::Permissions::from_mode(0o755)).unwrap();
    // The forgery: index the table while it says OK, then put the REJECT
    // back in place with the same inode, size and mtime.
    let cool = std::time::SystemTime::now() - std::time::Duration::from_secs(100);
    let table = big_table(&h, "sender_access", "OK", cool);
    let scratch = h._dir.path().join("scratch");
    let o = OpenOptions {
        cache_dir: Some(scratch.clone()),
        system_cache_dir: Some(scratch.clone()),
        home: None,
    };
    TextHash::open("t", &table, &o).unwrap();
    let before = fs::metadata(&table).unwrap();
    let name = index::index_path(index::MAP, &scratch, &table, &before)
        .file_name()
        .unwrap()
        .to_owned();
    let forged = scratch.join(&name);
    assert!(forged.exists(), "the forged index was built");
    big_table(&h, "sender_access", "REJECT system says no", cool);
    let after = fs::metadata(&table).unwrap();
    assert_eq!(
        (
            before.ino(),
            before.size(),
            before.mtime(),
            before.mtime_nsec()
        ),
        (after.ino(), after.size(), after.mtime(), after.mtime_nsec())
    );
    // The recipient's own cache: map_cache_dir, as the harness's user
    // (nobody) has no home of its own for ~/.cache/deliver.
    let own = h.home.join(".cache").join("deliver");
    h.system(&format!(
        "[settings]\nsystem_cache_dir = \"{}\"\nmap_cache_dir = \"{}\"\n[access]\nsender = [\"texthash:{}\"]\n",
        syscache.display(),
        own.display(),
        table.display()
    ));
    let plant = |dir: &std::path::Path, uid: u32| {
        fs::create_dir_all(dir).unwrap();
        let p = dir.join(&name);
        fs::copy(&forged, &p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::chown(&p, Some(uid), Some(h.gid)).unwrap();
    };
    let mail = msg("Subject: x\n", "x\n");
    let test_args = [
        "--test",
        "-f",
        "sender@example.org",
        "-a",
        "user@example.com",
    ];

    // 1. In the recipient's own cache, where the index used to be kept.
    plant(&own, h.uid);
    chown_tree(&h.home.join(".cache"), h.uid, h.gid);
    fs::set_permissions(&own, fs::Permissions::from_mode(0o700)).unwrap();
    let r = h.deliver(&mail);
    assert_eq!(r.code, 77, "the system REJECT applies: {}", r.stderr);
    assert!(r.first_line().contains("system says no"), "{}", r.stderr);
    let t = h.run(&test_args, &mail);
    assert!(t.stdout.contains("no index of"), "{}", t.stdout);
    assert!(t.stdout.contains("deliver check"), "{}", t.stdout);

    // 2. Owned by the recipient in the system cache directory.
    plant(&syscache, h.uid);
    let r = h.deliver(&mail);
    assert_eq!(r.code, 77, "the system REJECT applies: {}", r.stderr);
    let t = h.run(&test_args, &mail);
    assert!(t.stdout.contains("is not trusted"), "{}", t.stdout);
    assert_eq!(h.count(), 0);

    // Control: the same file owned by root is a trusted index, and answers
    // OK; so it is its owner alone that had it ignored above.
    plant(&syscache, 0);
    let t = h.run(&test_args, &mail);
    assert!(t.stdout.contains("indexed: answered from"), "{}", t.stdout);
    let r = h.deliver(&mail);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(h.count(), 1);
}

#[test]
fn the_attacker_is_another_unprivileged_user() {
    let Some((uid, _)) = util::attacker() else {
        return;
    };
    let out = util::attacker_command("id", &["-u"], &[12345])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), uid.to_string());
    let out = util::attacker_command("id", &["-G"], &[12345])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("12345"));
    assert_ne!(uid, util::runner().0);
}

/// The attacker of SECURITY.md's "Local users": another unprivileged user
/// who shares a group with the victim. Runs `sh -c script` as that user with
/// `args` as `$1`..., and checks that it succeeded.
fn as_attacker(group: u32, script: &str, args: &[&Path]) {
    let mut sh_args = vec!["-c", script, "sh"];
    let args: Vec<String> = args.iter().map(|p| p.display().to_string()).collect();
    sh_args.extend(args.iter().map(String::as_str));
    let out = util::attacker_command("/bin/sh", &sh_args, &[group])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "attacker's {script:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A home of mode 2775 whose group the attacker is in, as with a umask of
/// 002 and a group shared with someone: they may add, rename and remove
/// entries in it. `None` (the test skips) unless the tests run as root.
fn shared_home() -> Option<Home> {
    util::attacker()?;
    let h = Home::new();
    fs::set_permissions(&h.home, fs::Permissions::from_mode(0o2775)).unwrap();
    Some(h)
}

/// Every file (not directory) under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

const SPAM: &str = "Subject: win\nX-Spam-Flag: YES\n";

#[test]
fn a_maildir_another_user_made_in_a_shared_home_is_refused() {
    let Some(h) = shared_home() else {
        eprintln!("skipped: needs root (a second user)");
        return;
    };
    // Before the victim's first mail: the attacker makes ~/Maildir, its
    // tmp/new/cur and a Junk folder, all 0777.
    as_attacker(
        h.gid,
        "umask 0 && cd \"$1\" && mkdir Maildir Maildir/tmp Maildir/new Maildir/cur \
         Maildir/.Junk Maildir/.Junk/tmp Maildir/.Junk/new Maildir/.Junk/cur",
        &[&h.home],
    );
    for input in [msg("Subject: hi\n", "private\n"), msg(SPAM, "spam\n")] {
        let r = h.deliver(&input);
        assert_eq!(r.code, 75, "{}", r.stderr);
        let line = r.first_line();
        assert!(line.starts_with("4.2.0 "), "{}", r.stderr);
        assert!(
            line.contains(&h.maildir.display().to_string())
                && line.contains("owned by uid 5")
                && line.contains("mode 2777"),
            "{line}"
        );
        assert_eq!(files_under(&h.maildir), Vec::<PathBuf>::new());
    }
}

#[test]
fn a_folder_another_user_made_gets_no_mail() {
    let Some(h) = shared_home() else {
        eprintln!("skipped: needs root (a second user)");
        return;
    };
    assert_eq!(h.deliver(&msg("Subject: first\n", "x\n")).code, 0);
    // The Maildir was group-writable for a while (the user's umask): the
    // attacker planted a Junk folder, 0777 throughout. Then the user fixed
    // the Maildir's mode; the folder stayed.
    fs::set_permissions(&h.maildir, fs::Permissions::from_mode(0o2770)).unwrap();
    as_attacker(
        h.gid,
        "umask 0 && cd \"$1\" && mkdir .Junk .Junk/tmp .Junk/new .Junk/cur",
        &[&h.maildir],
    );
    fs::set_permissions(&h.maildir, fs::Permissions::from_mode(0o700)).unwrap();
    let spam = msg(SPAM, "spam\n");
    let r = h.run(&["--log-stderr", "-f", "a@b"], &spam);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("folder Junk unusable, delivered to the Inbox")
            && r.stderr.contains("owned by uid 5"),
        "{}",
        r.stderr
    );
    assert_eq!(files_under(&h.maildir.join(".Junk")), Vec::<PathBuf>::new());
    assert!(h.delivered()[""].contains(&without_from(&spam).to_vec()));
}

#[test]
fn a_maildir_others_can_write_is_refused() {
    if util::attacker().is_none() {
        eprintln!("skipped: needs root (a second user)");
        return;
    }
    for own_subdirs in [false, true] {
        let h = Home::new();
        fs::create_dir(&h.maildir).unwrap();
        chown_tree(&h.maildir, h.uid, h.gid);
        fs::set_permissions(&h.maildir, fs::Permissions::from_mode(0o1777)).unwrap();
        if own_subdirs {
            for sub in ["tmp", "new", "cur"] {
                fs::create_dir(h.maildir.join(sub)).unwrap();
            }
            chown_tree(&h.maildir, h.uid, h.gid);
            fs::set_permissions(&h.maildir, fs::Permissions::from_mode(0o1777)).unwrap();
        } else {
            as_attacker(
                0,
                "umask 0 && cd \"$1\" && mkdir tmp new cur",
                &[&h.maildir],
            );
        }
        let r = h.deliver(&msg("Subject: hi\n", "private\n"));
        assert_eq!(r.code, 75, "{}", r.stderr);
        assert!(
            r.first_line().starts_with("4.2.0 ")
                && r.first_line()
                    .contains("writable by group or others (mode 1777)"),
            "{}",
            r.stderr
        );
        assert_eq!(files_under(&h.maildir), Vec::<PathBuf>::new());
    }
}

/// `n` header rules, enough for the rules cache to be written.
fn cached_rules(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!("[[rule]]\nheader = \"Subject\"\nmatch = \"word{i}x\"\nfolder = \"F{i}\"\n\n")
        })
        .collect()
}

#[test]
fn a_cache_directory_another_user_can_swap_is_not_written() {
    let Some(h) = shared_home() else {
        eprintln!("skipped: needs root (a second user)");
        return;
    };
    h.user(&cached_rules(8));
    // Old enough to be cached.
    fs::File::open(&h.user_rules)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
    // As local(8) runs it: USER and HOME of the recipient, so that the
    // cache directory is ~/.cache/deliver.
    let deliver = |input: &[u8]| {
        let mut c = h.command(&["-f", "a@b"]);
        c.env("USER", "nobody");
        run_cmd(c, input)
    };
    assert_eq!(deliver(&msg("Subject: first\n", "x\n")).code, 0);
    let cache = h.home.join(".cache");
    assert!(
        !files_under(&cache.join("deliver")).is_empty(),
        "the rules cache is written where nobody else can swap it"
    );
    // The attacker moves ~/.cache away and puts their own in its place,
    // with `deliver` a symlink to the Maildir's new/.
    as_attacker(
        h.gid,
        "cd \"$1\" && mv .cache .cache.old && mkdir .cache && ln -s \"$2\" .cache/deliver",
        &[&h.home, &h.maildir.join("new")],
    );
    let input = msg("Subject: second\n", "x\n");
    let r = deliver(&input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d = h.delivered();
    assert_eq!(
        d[""].len(),
        2,
        "only the two messages in new/: {:?}",
        h.files_in("new")
    );
    assert!(d[""].contains(&without_from(&input).to_vec()));
}

/// Runs one delivery that stops itself at `step` (a debug build's test
/// hook, src/testhook.rs), runs `meanwhile` (the tmp file's name in tmp/),
/// lets it go on, and returns how it ended.
fn deliver_stopped_at(h: &Home, step: &str, input: &[u8], meanwhile: impl FnOnce(&Path)) -> Run {
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use std::io::{Read, Write};
    use std::process::Stdio;
    let mut cmd = h.command(&["-f", "a@b"]);
    cmd.env("DELIVER_TEST_PAUSE_AT", step)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // Reaped below with waitpid(2), which also sees it stop.
    #[allow(clippy::zombie_processes)]
    let mut child = cmd.spawn().unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    let st = waitpid(pid, Some(WaitPidFlag::WUNTRACED)).unwrap();
    assert!(
        matches!(st, WaitStatus::Stopped(_, Signal::SIGSTOP)),
        "{st:?}"
    );
    let tmp = h.files_in("tmp");
    assert_eq!(tmp.len(), 1, "{tmp:?}");
    meanwhile(&tmp[0]);
    kill(pid, Signal::SIGCONT).unwrap();
    let code = match waitpid(pid, None).unwrap() {
        WaitStatus::Exited(_, code) => code,
        st => panic!("{st:?}"),
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Run {
        code,
        stdout: String::new(),
        stderr,
    }
}

#[test]
fn the_file_linked_into_new_is_the_one_written() {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: the test hook is in debug builds only");
        return;
    }
    // The recipient's own process (or anyone who could write tmp/) puts
    // another file in place of the tmp file after it was written: what
    // is delivered is still the message, with and without PREPEND (which
    // copies the tmp file).
    for (step, prepend) in [("tmp-synced", false), ("tmp-written", true)] {
        let mut h = Home::new();
        if prepend {
            let p = h.file("prepend", "a@b PREPEND X-Tag: yes\n");
            h.system(&format!(
                "[access]\nsender = [\"texthash:{}\"]\n",
                p.display()
            ));
        }
        assert_eq!(h.deliver(&msg("Subject: first\n", "x\n")).code, 0);
        let before = h.files_in("new");
        let input = msg("Subject: real\n", &"the real message\n".repeat(1000));
        let r = deliver_stopped_at(&h, step, &input, |tmp| {
            let forged = h.home.join("forged");
            fs::write(&forged, "Subject: forged\n\nforged\n").unwrap();
            chown_tree(&forged, h.uid, h.gid);
            let mut mv = Command::new("mv");
            mv.arg(&forged).arg(tmp);
            if is_root() {
                use std::os::unix::process::CommandExt;
                mv.uid(h.uid).gid(h.gid);
            }
            assert!(mv.status().unwrap().success());
        });
        assert_eq!(r.code, 0, "{step}: {}", r.stderr);
        let new: Vec<_> = h
            .files_in("new")
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        assert_eq!(new.len(), 1, "{step}");
        let want = if prepend {
            [b"X-Tag: yes\n".as_slice(), without_from(&input)].concat()
        } else {
            without_from(&input).to_vec()
        };
        assert!(
            fs::read(&new[0]).unwrap() == want,
            "{step}: not the message written"
        );
    }
}

#[test]
fn fifos_as_subscriptions_or_maildirfolder_do_not_hang() {
    use std::time::Duration;
    let mkfifo = |h: &Home, p: &Path| {
        nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        chown_tree(p, h.uid, h.gid);
    };
    for which in ["subscriptions", ".Junk/maildirfolder"] {
        let h = Home::new();
        assert_eq!(h.deliver(&msg("Subject: first\n", "x\n")).code, 0);
        if which.starts_with(".Junk") {
            // A folder someone started (new/ only): deliver finishes it.
            fs::create_dir_all(h.maildir.join(".Junk/new")).unwrap();
            chown_tree(&h.maildir, h.uid, h.gid);
        }
        mkfifo(&h, &h.maildir.join(which));
        // Twice: a folder left without its marker is finished again by
        // the next delivery.
        for i in 0..2 {
            let spam = msg(SPAM, &format!("spam {i}\n"));
            let c = h.command(&["--log-stderr", "-f", "a@b"]);
            let r = run_cmd_within(c, &spam, false, Duration::from_secs(30))
                .unwrap_or_else(|| panic!("{which}: delivery {i} hung"));
            assert_eq!(r.code, 0, "{which}: {}", r.stderr);
            // Said each time the folder is finished (a marker there, even
            // a FIFO, says it was).
            if i == 0 || which == "subscriptions" {
                assert!(
                    r.stderr.contains("not a regular file; left alone")
                        || r.stderr.contains("No such device or address"),
                    "{which}: {}",
                    r.stderr
                );
            }
            assert!(h.delivered()["Junk"].contains(&without_from(&spam).to_vec()));
        }
    }
}

/// `c` (a delivery) with at most 2 GiB of address space: a delivery that
/// reads without bound then fails fast instead of taking the machine's
/// memory. Killed and `None` after 20 s (a delivery that hangs).
fn bounded(mut c: Command, input: &[u8]) -> Option<Run> {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; nothing is allocated.
    unsafe {
        c.pre_exec(|| {
            let lim = nix::libc::rlimit {
                rlim_cur: 2 << 30,
                rlim_max: 2 << 30,
            };
            if nix::libc::setrlimit(nix::libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    run_cmd_within(c, input, false, std::time::Duration::from_secs(20))
}

/// A FIFO at `p`, made by the attacker (who must be able to write its
/// directory through the group `gid`), or by the user when `attacker` is
/// false.
fn fifo(h: &Home, p: &std::path::Path, attacker: Option<u32>) {
    match attacker {
        Some(gid) => {
            let st = attacker_command("mkfifo", &[p.to_str().unwrap()], &[gid])
                .status()
                .unwrap();
            assert!(st.success(), "mkfifo {} as the attacker", p.display());
        }
        None => {
            nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            chown_tree(p, h.uid, h.gid);
        }
    }
}

#[test]
fn fifos_in_place_of_rules_files_and_tables_do_not_hang() {
    if attacker().is_none() {
        eprintln!("skipped: needs root (a second user)");
        return;
    }
    let input = msg("Subject: x\n", "x\n");
    let sys = "[[rule]]\nheader = \"Subject\"\nmatch = \"^x$\"\nfolder = \"System\"\n";
    // The user's rules file, in a directory the user's group may write
    // (the attacker shares the group), and the user's own FIFO.
    for by_attacker in [true, false] {
        let mut h = Home::new();
        h.system(sys);
        let dir = h.home.join(".config/deliver");
        fs::create_dir_all(&dir).unwrap();
        chown_tree(&h.home.join(".config"), h.uid, h.gid);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o775)).unwrap();
        h.user_rules = dir.join("rules.toml");
        fifo(&h, &h.user_rules, by_attacker.then_some(h.gid));
        let r = bounded(h.command(&["--log-stderr", "-f", "a@b"]), &input)
            .expect("a FIFO as the user's rules file hangs the delivery");
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stderr.contains("ignoring user rules")
                && r.stderr.contains("not a regular file (a FIFO)"),
            "{}",
            r.stderr
        );
        assert_eq!(h.delivered().keys().collect::<Vec<_>>(), vec!["System"]);
    }
    // A table the user's rules name: in a directory shared with the
    // attacker's group, replaced by the attacker; or the user's own.
    for kind in ["texthash", "cidr", "regexp", "pcre", "cdb", "hash"] {
        for by_attacker in [true, false] {
            let mut h = Home::new();
            h.system(sys);
            let shared = h.home.join("shared");
            fs::create_dir(&shared).unwrap();
            chown_tree(&shared, h.uid, h.gid);
            fs::set_permissions(&shared, fs::Permissions::from_mode(0o775)).unwrap();
            let name = shared.join("table");
            let file = if kind == "cdb" {
                shared.join("table.cdb")
            } else {
                name.clone()
            };
            fifo(&h, &file, by_attacker.then_some(h.gid));
            h.user(&format!(
                "[access]\nsender = [\"{kind}:{}\"]\n[[rule]]\nheader = \"Subject\"\nmatch = \"x\"\nfolder = \"User\"\n",
                name.display()
            ));
            let r = bounded(h.command(&["--log-stderr", "-f", "a@b"]), &input)
                .unwrap_or_else(|| panic!("a FIFO as a {kind}: table hangs the delivery"));
            assert_eq!(r.code, 0, "{kind}: {}", r.stderr);
            assert!(
                r.stderr.contains("ignoring user rules") && r.stderr.contains("not a regular file"),
                "{kind}: {}",
                r.stderr
            );
            assert_eq!(
                h.delivered().keys().collect::<Vec<_>>(),
                vec!["System"],
                "{kind}"
            );
        }
    }
}

#[test]
fn a_system_rules_file_that_is_a_fifo_defers() {
    let mut h = Home::new();
    let p = h._dir.path().join("system.toml");
    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    h.system_rules = Some(p);
    let r = bounded(h.command(&["-f", "a@b"]), &msg("Subject: x\n", "x\n"))
        .expect("a FIFO as the system rules file hangs the delivery");
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.first_line().starts_with("4.3.5 "), "{}", r.stderr);
    assert!(
        r.stderr.contains("not a regular file (a FIFO)"),
        "{}",
        r.stderr
    );
    assert_eq!(h.count(), 0);
}

/// Peak RSS in KiB of one delivery under /usr/bin/time (as the test's
/// user), within `bounded`'s limits.
fn measured_bounded(h: &Home, args: &[&str], input: &[u8]) -> (Run, u64) {
    let (c, out) = timed(h, args);
    let r = bounded(c, input).expect("the delivery hangs");
    (r, peak_kib(&out))
}

#[test]
fn user_tables_cannot_read_without_bound() {
    if !std::path::Path::new("/usr/bin/time").exists() {
        eprintln!("skipped: /usr/bin/time not installed (scripts/test installs it)");
        return;
    }
    let input = msg("Subject: x\n", "x\n");
    let sys = "[[rule]]\nheader = \"Subject\"\nmatch = \"^x$\"\nfolder = \"System\"\n";
    let check = |h: &Home, what: &str, why: &str| {
        let (r, kib) = measured_bounded(h, &["--log-stderr", "-f", "a@b"], &input);
        assert_eq!(r.code, 0, "{what}: {}", r.stderr);
        assert!(
            r.stderr.contains("ignoring user rules") && r.stderr.contains(why),
            "{what}: {}",
            r.stderr
        );
        assert_eq!(
            h.delivered().keys().collect::<Vec<_>>(),
            vec!["System"],
            "{what}"
        );
        assert!(kib < 150 * 1024, "{what}: peak RSS {kib} KiB");
    };
    // A device, named directly or through the user's own symlink.
    for kind in ["texthash", "cidr", "regexp", "pcre", "hash"] {
        let mut h = Home::new();
        h.system(sys);
        h.user(&format!("[access]\nsender = [\"{kind}:/dev/zero\"]\n"));
        check(&h, kind, "not a regular file");
        let link = h.home.join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        chown_tree(&link, h.uid, h.gid);
        h.user(&format!(
            "[access]\nsender = [\"{kind}:{}\"]\n",
            link.display()
        ));
        check(&h, kind, "not a regular file");
    }
    // A regular file larger than the user's budget (sparse: no disk used).
    for kind in ["texthash", "cidr", "regexp", "pcre"] {
        let mut h = Home::new();
        h.system(sys);
        let big = h.home.join("big");
        fs::File::create(&big).unwrap().set_len(300 << 20).unwrap();
        chown_tree(&big, h.uid, h.gid);
        h.user(&format!(
            "[access]\nsender = [\"{kind}:{}\"]\n",
            big.display()
        ));
        check(&h, kind, "bytes left of the user's memory budget (64 MiB");
    }
    // A user's rules file over its own bound (parsed TOML is larger than
    // its text).
    let mut h = Home::new();
    h.system(sys);
    h.user("");
    fs::OpenOptions::new()
        .write(true)
        .open(&h.user_rules)
        .unwrap()
        .set_len(48 << 20)
        .unwrap();
    check(&h, "rules", "(2 MiB) such a file may have");
}

#[test]
fn the_text_of_a_regex_error_does_not_make_it_retryable() {
    let input = msg("Subject: x\n", "x\n");
    // A user's regex whose error message quotes it.
    let h = Home::new();
    h.user("[[rule]]\nheader = \"Subject\"\nmatch = '(os error 5)('\nfolder = \"User\"\n");
    let r = h.run(&["--log-stderr", "-f", "a@b"], &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("ignoring user rules") && r.stderr.contains("(os error 5)"),
        "{}",
        r.stderr
    );
    assert_eq!(h.count(), 1);
}

#[test]
fn the_text_of_a_table_line_does_not_make_its_error_retryable() {
    let input = msg("Subject: x\n", "x\n");
    // A line of another user's (here root's) table, quoted in its error.
    let h = Home::new();
    let t = h.file("shared_access", "  (os error 11)\nexample.org REJECT\n");
    h.user(&format!(
        "[access]\nsender = [\"texthash:{}\"]\n",
        t.display()
    ));
    let r = h.run(&["--log-stderr", "-f", "a@b"], &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("ignoring user rules") && r.stderr.contains("(os error 11)"),
        "{}",
        r.stderr
    );
    assert_eq!(h.count(), 1);
}
