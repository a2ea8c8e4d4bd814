//! `deliver replay` and `deliver check`'s summary, through the real binary,
//! over real Maildirs (filled by real deliveries), mboxes and files.

mod util;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use util::*;

const RULES: &str = r#"
[spam]
junk_threshold = 5.0
junk_folder = "Junk"

[[rule]]
name = "pills"
header = "Subject"
match = "(?i)v[i1]agra"
score = 6.0

[[rule]]
name = "rust-list"
header = "List-Id"
match = "rust-users\\.lists\\.example\\.org"
folder = "Lists.rust"

[[rule]]
name = "bounce"
header = "Subject"
match = "^reject me"
reject = "5.7.1 not wanted here"

[[rule]]
name = "drop"
header = "Subject"
match = "^drop me"
discard = true
"#;

/// Every file and directory under `root`: path -> (contents or "dir",
/// mtime in ns, mode). Identical snapshots mean nothing was written.
fn snapshot(root: &Path) -> BTreeMap<String, (Vec<u8>, i128, u32)> {
    fn walk(p: &Path, root: &Path, out: &mut BTreeMap<String, (Vec<u8>, i128, u32)>) {
        let md = fs::symlink_metadata(p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let data = if md.is_file() {
            fs::read(p).unwrap()
        } else {
            b"dir".to_vec()
        };
        let mtime = md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128;
        out.insert(rel, (data, mtime, md.mode()));
        if md.is_dir() {
            for e in fs::read_dir(p).unwrap() {
                walk(&e.unwrap().path(), root, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A home whose Maildir was filled by real deliveries: two messages in
/// the Inbox, one in Junk, one in Lists.rust.
fn filled_home() -> Home {
    let mut h = Home::new();
    h.system(RULES);
    for m in [
        msg("Subject: hello\n", "one\n"),
        msg("Subject: lunch\n", "two\n"),
        msg("Subject: cheap viagra\n", "three\n"),
        msg(
            "Subject: release\nList-Id: <rust-users.lists.example.org>\n",
            "four\n",
        ),
    ] {
        assert_eq!(h.deliver(&m).code, 0);
    }
    let d = h.delivered();
    assert_eq!(
        d.iter()
            .map(|(k, v)| (k.as_str(), v.len()))
            .collect::<Vec<_>>(),
        [("", 2), ("Junk", 1), ("Lists.rust", 1)]
    );
    h
}

fn replay(h: &Home, args: &[&str]) -> Run {
    let mut all = vec!["replay"];
    all.extend_from_slice(args);
    h.run(&all, b"")
}

/// The message lines of a text replay (before the summary's blank line).
fn lines(r: &Run) -> Vec<&str> {
    r.stdout.lines().take_while(|l| !l.is_empty()).collect()
}

#[test]
fn replay_of_a_maildir_shows_each_message_and_writes_nothing() {
    let h = filled_home();
    // Reading clears no "new mail" state either: atimes stay.
    let before = snapshot(&h.home);
    let md = h.maildir.to_str().unwrap();
    let r = replay(&h, &[md]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let l = lines(&r);
    // The Inbox alone, without -r: every message of new/ (and cur/).
    assert_eq!(l.len(), 2, "{}", r.stdout);
    for line in &l {
        assert!(line.starts_with(&format!("{md}/new/")), "{line}");
        assert!(line.ends_with(": INBOX: default"), "{line}");
    }
    assert!(
        r.stdout.contains("2 messages: 2 replayed, 0 unreadable"),
        "{}",
        r.stdout
    );
    // With -r, the subfolders too, each message with its reason.
    let r = replay(&h, &["-r", md]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let l = lines(&r);
    assert_eq!(l.len(), 4, "{}", r.stdout);
    assert!(
        l.iter().any(
            |l| l.contains("/.Junk/new/") && l.ends_with(": Junk: score 6 >= junk_threshold 5")
        ),
        "{}",
        r.stdout
    );
    assert!(
        l.iter()
            .any(|l| l.contains("/.Lists.rust/new/") && l.ends_with(": Lists.rust: rule rust-list")),
        "{}",
        r.stdout
    );
    let summary: Vec<&str> = r.stdout.lines().skip(l.len()).collect();
    for want in ["  INBOX               2", "  Junk                1"] {
        assert!(
            summary
                .iter()
                .any(|s| s.replace(' ', "") == want.replace(' ', "")),
            "{want:?} in\n{}",
            r.stdout
        );
    }
    // Without a PATH: the Maildir (--maildir), every folder.
    let r = replay(&h, &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(lines(&r).len(), 4, "{}", r.stdout);
    // Nothing written: the whole home (Maildir, tmp/, no ~/.cache) is as
    // it was, byte for byte.
    assert_eq!(snapshot(&h.home), before);
    assert!(!h.home.join(".cache").exists());
}

#[test]
fn compare_shows_what_an_edited_rules_file_would_move() {
    let h = filled_home();
    let md = h.maildir.to_str().unwrap();
    let r = replay(&h, &["--compare", "-r", md]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("(moves)"), "{}", r.stdout);
    assert!(r.stdout.contains("\n0 would move\n"), "{}", r.stdout);
    // The user's edit: lunch goes to a folder, list mail is rejected.
    h.user(
        r#"
[[rule]]
name = "food"
header = "Subject"
match = "lunch"
folder = "Food"

[[rule]]
name = "no-lists"
header = "List-Id"
match = "rust-users"
reject = "5.7.1 no lists"
"#,
    );
    let before = snapshot(&h.home);
    let r = replay(&h, &["--compare", "-r", md]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let l = lines(&r);
    let moved: Vec<&&str> = l.iter().filter(|l| l.contains("(moves)")).collect();
    assert_eq!(moved.len(), 2, "{}", r.stdout);
    assert!(
        moved
            .iter()
            .any(|l| l.ends_with(": INBOX -> Food (moves): rule food")),
        "{}",
        r.stdout
    );
    assert!(
        moved
            .iter()
            .any(|l| l.ends_with(": Lists.rust -> reject 5.7.1 (moves): rule no-lists")),
        "{}",
        r.stdout
    );
    assert!(
        l.iter().any(|l| l.ends_with(": INBOX -> INBOX: default")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("\n2 would move\n"), "{}", r.stdout);
    for want in ["INBOX -> Food 1", "Lists.rust -> reject 5.7.1 1"] {
        assert!(
            r.stdout
                .lines()
                .any(|s| s.split_whitespace().collect::<Vec<_>>().join(" ") == want),
            "{want:?} in\n{}",
            r.stdout
        );
    }
    assert_eq!(snapshot(&h.home), before);
    assert!(!h.maildir.join(".Food").exists());
}

#[test]
fn json_output_parses_with_one_object_per_message_and_the_summary() {
    let h = filled_home();
    h.user(
        "[[rule]]\nname = \"food\"\nheader = \"Subject\"\nmatch = \"lunch\"\nfolder = \"Food\"\n",
    );
    let stray = h.file("stray.eml", "Subject: reject me\n\nx\n");
    let md = h.maildir.to_str().unwrap();
    let r = replay(
        &h,
        &[
            "--compare",
            "-r",
            "--format",
            "json",
            md,
            stray.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("one JSON document");
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 5);
    let food = msgs
        .iter()
        .find(|m| m["destination"] == "Food")
        .expect("lunch goes to Food");
    assert_eq!(food["folder_now"], "INBOX");
    assert_eq!(food["moves"], true);
    assert_eq!(food["action"], "folder");
    assert_eq!(food["reason"], "rule food");
    let last = &msgs[4];
    assert_eq!(last["source"], stray.to_str().unwrap());
    assert_eq!(last["destination"], "reject 5.7.1");
    assert_eq!(last["status"], "5.7.1");
    assert_eq!(last["folder_now"], serde_json::Value::Null);
    assert_eq!(last["moves"], serde_json::Value::Null);
    let s = &v["summary"];
    assert_eq!(
        (s["messages"].as_u64(), s["unreadable"].as_u64()),
        (Some(5), Some(0))
    );
    assert_eq!(s["unknown_folder"], 1);
    assert_eq!(
        s["moves"],
        serde_json::json!([{"from": "INBOX", "to": "Food", "messages": 1}])
    );
    let dests: BTreeMap<String, u64> = s["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["destination"].as_str().unwrap().to_string(),
                d["messages"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        dests,
        BTreeMap::from(
            [
                ("INBOX", 1),
                ("Food", 1),
                ("Junk", 1),
                ("Lists.rust", 1),
                ("reject 5.7.1", 1)
            ]
            .map(|(k, n)| (k.to_string(), n))
        )
    );
}

#[test]
fn an_mbox_is_split_on_from_lines_and_unescaped() {
    let mut h = Home::new();
    let table = h.file("senders", "boss@corp.example FOLDER Boss\n");
    h.system(&format!(
        r#"
[access]
sender = ["texthash:{}"]

[[rule]]
name = "unescaped"
body = "(?m)^From the start"
folder = "Unescaped"

[[rule]]
name = "once-quoted"
body = "(?m)^>From the middle"
folder = "Quoted"
"#,
        table.display()
    ));
    // mboxrd: a body line `From ...` is stored as `>From ...`, and
    // `>From ...` as `>>From ...`; the From_ line is the envelope sender.
    let mbox = h.file(
        "box",
        "From boss@corp.example Sat Nov 21 10:00:00 2026\n\
         Subject: one\n\
         \n\
         hello\n\
         \n\
         From other@example.org Sat Nov 21 10:00:01 2026\n\
         Subject: two\n\
         \n\
         >From the start\n\
         \n\
         From other@example.org Sat Nov 21 10:00:02 2026\n\
         Subject: three\n\
         \n\
         >>From the middle\n\
         \n",
    );
    chown_tree(&mbox, h.uid, h.gid);
    // An access time before the mtime: a mail reader shows the box as
    // having new mail, and reading it must not change that.
    let past = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    let before = fs::read(&mbox).unwrap();
    set_atime(&mbox, past);
    let r = replay(&h, &[mbox.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let m = mbox.to_str().unwrap();
    assert_eq!(
        lines(&r),
        [
            format!(
                "{m}#1: Boss: access sender texthash:{} key boss@corp.example: FOLDER Boss",
                table.display()
            ),
            format!("{m}#2: Unescaped: rule unescaped"),
            format!("{m}#3: Quoted: rule once-quoted"),
        ],
        "{}",
        r.stdout
    );
    assert_eq!(atime(&mbox), past, "the mbox's access time changed");
    assert_eq!(fs::read(&mbox).unwrap(), before);
    assert!(!h.maildir.exists());
}

#[test]
fn unreadable_messages_are_reported_and_counted_never_fatal() {
    let mut h = Home::new();
    h.system(RULES);
    let good = h.file("good.eml", "Subject: drop me\n\nx\n");
    let locked = h.file("locked.eml", "Subject: hello\n\nx\n");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    let plain_dir = h.home.join("notmaildir");
    fs::create_dir(&plain_dir).unwrap();
    let missing = h.home.join("missing.eml");
    let r = replay(
        &h,
        &[
            locked.to_str().unwrap(),
            missing.to_str().unwrap(),
            plain_dir.to_str().unwrap(),
            good.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let l = lines(&r);
    assert_eq!(l.len(), 4, "{}", r.stdout);
    assert!(
        l[0].starts_with(&format!("{}: unreadable: open: ", locked.display())),
        "{}",
        l[0]
    );
    assert!(l[1].starts_with(&format!("{}: unreadable: ", missing.display())));
    assert!(l[2].contains("not a Maildir folder"), "{}", l[2]);
    assert_eq!(l[3], format!("{}: discard: rule drop", good.display()));
    assert!(
        r.stdout.contains("4 messages: 1 replayed, 3 unreadable"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .lines()
            .any(|s| s.split_whitespace().collect::<Vec<_>>() == ["(unreadable)", "3"]),
        "{}",
        r.stdout
    );
}

#[test]
fn replay_exit_status_for_usage_and_rules_that_do_not_load() {
    let mut h = Home::new();
    let m = h.file("m.eml", "Subject: x\n\nx\n");
    // An unknown option: usage, exit 2 (not Postfix's 75).
    let r = run_cmd(
        h.bare_command(&["replay", "--bogus", m.to_str().unwrap()]),
        b"",
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("Usage: deliver replay"), "{}", r.stderr);
    // System rules that do not load: nothing replayed, file:line:col.
    h.system("[spam]\njunk_treshold = 5\n");
    let r = replay(&h, &[m.to_str().unwrap()]);
    assert_eq!((r.code, r.stdout.as_str()), (2, ""), "{}", r.stderr);
    assert!(r.stderr.contains("system.toml:2:1:"), "{}", r.stderr);
    // A user file that does not load is ignored, as a delivery would,
    // and said so.
    h.system(RULES);
    h.user("[[rule]]\nheader = \n");
    let r = replay(&h, &[m.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("user rules IGNORED"), "{}", r.stderr);
    assert!(r.stdout.contains("user IGNORED: "), "{}", r.stdout);
}

#[test]
fn check_prints_a_one_line_summary_when_all_is_well() {
    let h = Home::new();
    let t1 = h.file("t1", "a@example.org OK\n");
    let t2 = h.file("t2", "192.0.2.1 REJECT\n");
    let sys = h.file(
        "sys.toml",
        &format!(
            "{RULES}\n[access]\nsender = [\"texthash:{}\"]\nclient = [\"texthash:{}\"]\n",
            t1.display(),
            t2.display()
        ),
    );
    h.user(&format!(
        "[access]\nsender = [\"texthash:{}\"]\n[[rule]]\nheader = \"Subject\"\nmatch = \"x\"\nscore = 1\n",
        t1.display()
    ));
    let args = [
        "--rules",
        sys.to_str().unwrap(),
        "--user-rules",
        h.user_rules.to_str().unwrap(),
    ];
    let r = h.check(&args);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stderr, "ok: 2 files, 5 rules, 2 tables, 0 warnings\n");
    assert_eq!(r.stdout, "");
    let r = h.check(&["--rules", sys.to_str().unwrap()]);
    assert_eq!(r.stderr, "ok: 1 file, 4 rules, 2 tables, 0 warnings\n");
    // Quiet: nothing at all.
    let mut quiet = vec!["--quiet"];
    quiet.extend_from_slice(&args);
    let r = h.check(&quiet);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    // A problem: its line as before, and no summary.
    h.user("[[rule]]\nheader = \n");
    let r = h.check(&args);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("rules.toml:2:"), "{}", r.stdout);
    assert!(!r.stderr.contains("ok:"), "{}", r.stderr);
}
