//! `deliver --test` and `deliver check` against the real binary.

mod util;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use util::*;

const RULES: &str = r#"
[spam]
junk_threshold = 5.0
discard_threshold = 20.0
junk_folder = "Junk"
virus = "discard"

[[rule]]
name = "pills"
header = "Subject"
match = "(?i)v[i1]agra"
score = 3.0

[[rule]]
name = "casino"
header = "Subject"
match = "(?i)casino"
score = 2.5

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
name = "later"
header = "Subject"
match = "^defer me"
defer = "4.2.1 try again later"

[[rule]]
name = "drop"
header = "Subject"
match = "^drop me"
discard = true
"#;

/// Snapshot of a tree: path -> (size, mtime in ns, mode).
fn snapshot(root: &Path) -> BTreeMap<String, (u64, i128, u32)> {
    let mut out = BTreeMap::new();
    fn walk(p: &Path, root: &Path, out: &mut BTreeMap<String, (u64, i128, u32)>) {
        let md = fs::symlink_metadata(p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        out.insert(
            rel,
            (
                md.size(),
                md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
                md.mode(),
            ),
        );
        if md.is_dir() {
            for e in fs::read_dir(p).unwrap() {
                walk(&e.unwrap().path(), root, out);
            }
        }
    }
    walk(root, root, &mut out);
    out
}

fn corpus() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    let subjects = [
        "hello",
        "viagra",
        "viagra casino",
        "cheap v1agra",
        "reject me",
        "defer me",
        "drop me",
        "casino night",
    ];
    let extra = [
        "",
        "X-Spam-Flag: YES\nX-Spam-Status: Yes, score=9.2 required=5.0\n",
        "X-Spam-Status: No, score=-1.0 required=5.0\n",
        "X-Spam: Yes\nX-Spamd-Result: default: True [25.0 / 15.00]\n",
        "X-Amavis-Alert: INFECTED, message contains virus: Eicar\n",
        "List-Id: Rust <rust-users.lists.example.org>\n",
        "X-Spam-Score: 2.6\n",
    ];
    for s in subjects {
        for e in extra {
            v.push(msg(&format!("Subject: {s}\n{e}"), "body\n"));
        }
    }
    v.push(b"From a@b  Sat Nov 21 10:00:00 2026\r\nSubject: crlf viagra\r\nX-Spam-Score: 3\r\n\r\nbody\r\n".to_vec());
    v.push(Vec::new());
    v
}

fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}\n{}", r.stdout, r.stderr))
}

#[test]
fn test_mode_writes_nothing() {
    let mut h = Home::new();
    h.system(RULES);
    // An existing Maildir with a folder, and a missing folder the rules name.
    assert_eq!(
        h.deliver(&msg("Subject: x\nX-Spam-Flag: YES\n", "x\n"))
            .code,
        0
    );
    let before = snapshot(&h.home);
    for m in corpus() {
        let r = h.run(&["--test", "-f", "a@b", "-a", "u@example.com"], &m);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let r = h.run(&["--test", "--format", "json", "--log-stderr"], &m);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stderr.is_empty(), "--test logged: {}", r.stderr);
    }
    assert_eq!(snapshot(&h.home), before, "--test changed the tree");
    // And on a home with no Maildir at all, none is created.
    let mut h = Home::new();
    h.system(RULES);
    let r = h.run(
        &["--test"],
        &msg(
            "Subject: x\nList-Id: <rust-users.lists.example.org>\n",
            "x\n",
        ),
    );
    assert_eq!(r.code, 0);
    assert!(!h.maildir.exists());
}

#[test]
fn test_mode_agrees_with_delivery() {
    let mut h = Home::new();
    h.system(RULES);
    for (i, m) in corpus().iter().enumerate() {
        let dry = json(&h.run(
            &[
                "--test",
                "--format",
                "json",
                "-f",
                "a@b",
                "-a",
                "u@example.com",
            ],
            m,
        ));
        let before = h.delivered();
        let real = h.run(&["-f", "a@b", "-a", "u@example.com"], m);
        let after = h.delivered();
        let changed: Vec<String> = after
            .iter()
            .filter(|(k, v)| before.get(*k).map_or(0, Vec::len) != v.len())
            .map(|(k, _)| k.clone())
            .collect();
        let action = dry["action"].as_str().unwrap();
        assert_eq!(
            dry["exit_code"].as_i64().unwrap() as i32,
            real.code,
            "message {i}: {action} {}",
            real.stderr
        );
        match action {
            "inbox" => assert_eq!(changed, vec![String::new()], "message {i}"),
            "junk" | "folder" => {
                assert_eq!(
                    changed,
                    vec![dry["folder"].as_str().unwrap().to_string()],
                    "message {i}"
                );
                let path = dry["path"].as_str().unwrap();
                let name = format!(".{}", dry["folder"].as_str().unwrap());
                assert!(path.ends_with(&format!("{name}/new")), "{path}");
            }
            "discard" | "reject" | "defer" => {
                assert!(
                    changed.is_empty(),
                    "message {i}: {action} but delivered to {changed:?}"
                );
                assert!(dry["path"].is_null());
            }
            other => panic!("unknown action {other}"),
        }
        if let Some(line) = dry["status_line"].as_str() {
            assert_eq!(real.first_line(), line, "message {i}");
        }
    }
}

#[test]
fn json_has_the_documented_keys() {
    let mut h = Home::new();
    h.system(RULES);
    let r = h.run(
        &[
            "--test",
            "--format",
            "json",
            "-f",
            "a@b",
            "-a",
            "u@example.com",
            "--client-address",
            "203.0.113.7",
            "--helo",
            "foo",
        ],
        &msg("Subject: viagra casino\nX-Spam-Score: 1.5\n", "x\n"),
    );
    let v = json(&r);
    assert_eq!(v["action"], "junk");
    assert_eq!(v["folder"], "Junk");
    assert_eq!(v["score"], 7.0);
    assert_eq!(v["exit_code"], 0);
    assert!(v["path"].as_str().unwrap().ends_with("/Maildir/.Junk/new"));
    assert_eq!(v["envelope"]["client_address"]["value"], "203.0.113.7");
    assert_eq!(v["envelope"]["client_address"]["source"]["kind"], "flag");
    assert_eq!(v["envelope"]["client_helo"]["value"], "foo");
    let trace = v["trace"].as_array().unwrap();
    assert!(!trace.is_empty());
    for step in trace {
        for k in ["layer", "kind", "name", "key", "result", "score"] {
            assert!(step.get(k).is_some(), "trace step lacks {k}: {step}");
        }
    }
    let rule_steps: Vec<&str> = trace
        .iter()
        .filter(|s| s["kind"] == "rule")
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        rule_steps,
        vec!["pills", "casino", "rust-list", "bounce", "later", "drop"]
    );
    let r = h.run(
        &["--test", "--format", "json"],
        &msg("Subject: reject me\n", "x\n"),
    );
    let v = json(&r);
    assert_eq!(
        (v["action"].as_str(), v["exit_code"].as_i64()),
        (Some("reject"), Some(77))
    );
    assert_eq!(v["status_line"], "5.7.1 not wanted here");
    assert!(v["folder"].is_null() && v["path"].is_null());
}

#[test]
fn text_report_explains_the_decision() {
    let mut h = Home::new();
    h.system(RULES);
    let r = h.run(
        &["--test", "-a", "u@example.com"],
        &msg(
            "Subject: viagra\nX-Spam-Status: No, score=2.5 required=5.0\n",
            "x\n",
        ),
    );
    assert_eq!(r.code, 0);
    let out = &r.stdout;
    for needle in [
        "sender           sender@example.org  (From_ line)",
        "recipient        u@example.com  (flag -a)",
        "system rule      pills -> match  (score +3)",
        "system rule      casino -> no match",
        "X-Spam-Status [No, score=2.5 required=5.0] -> flag=no score=2.5",
        "junk_threshold -> 5.5 >= 5: junk",
        "action     junk",
        "exit       0",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[test]
fn test_mode_fails_only_when_rules_cannot_load() {
    let mut h = Home::new();
    h.system("[spam\n");
    let r = h.run(&["--test"], &msg("Subject: x\n", "x\n"));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("system.toml:1:"), "{}", r.stderr);
    // Defer and reject decisions are still exit 0 for --test itself.
    let mut h = Home::new();
    h.system(RULES);
    assert_eq!(
        h.run(&["--test"], &msg("Subject: defer me\n", "x\n")).code,
        0
    );
}

#[test]
fn check_reports_each_kind_of_error_compiler_style() {
    let h = Home::new();
    let cases: Vec<(&str, &str)> = vec![
        (
            "[spam]\njunk_treshold = 5\n",
            "bad.toml:2:1: unknown field `junk_treshold`",
        ),
        (
            "[[rule]]\nheader = \"Subject\"\nmatch = \"(x\"\nscore = 1\n",
            "bad.toml:3:9: match: bad regex",
        ),
        (
            "[[rule]]\nheader = \"Subject\"\nmatch = \"x\"\nfolder = \"../x\"\n",
            "bad.toml:4:10: refused folder name",
        ),
        (
            "[[rule]]\nheader = \"Subject\"\nmatch = \"x\"\n",
            "bad.toml:2:10: rule \"rule#1\" has neither a score nor an action",
        ),
        (
            "[access]\nsender = [\"texthash:/nonexistent/map\"]\n",
            "bad.toml:2:11: texthash:/nonexistent/map",
        ),
        (
            "[spam]\nvirus = \"INBOX\"\n",
            "bad.toml:2:9: virus = \"INBOX\"",
        ),
        ("x = \n", "bad.toml:1:"),
    ];
    for (text, want) in cases {
        let p = h.file("bad.toml", text);
        let r = h.check(&["--rules", p.to_str().unwrap()]);
        assert_eq!(r.code, 1, "{text}");
        let first = r.stdout.lines().next().unwrap_or("");
        assert!(
            first.starts_with(&want.replace("bad.toml", p.to_str().unwrap())),
            "{text:?}\nwant {want}\ngot  {first}"
        );
    }
    let r = h.check(&[
        "--quiet",
        "--rules",
        h.file("bad.toml", "[x]\n").to_str().unwrap(),
    ]);
    assert_eq!((r.code, r.stdout.as_str()), (1, ""));
    let good = h.file("good.toml", RULES);
    let r = h.check(&["--rules", good.to_str().unwrap()]);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
}

#[test]
fn check_flags_a_user_file_with_bad_mode() {
    let h = Home::new();
    h.user("[spam]\njunk_threshold = 6.0\n");
    let sys = h.file("sys.toml", RULES);
    let r = h.check(&[
        "--rules",
        sys.to_str().unwrap(),
        "--user-rules",
        h.user_rules.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&h.user_rules, fs::Permissions::from_mode(0o666)).unwrap();
    let r = h.check(&[
        "--rules",
        sys.to_str().unwrap(),
        "--user-rules",
        h.user_rules.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout
            .contains("would be ignored: writable by group or others"),
        "{}",
        r.stdout
    );
    h.user("[spam]\nvirus = \"junk\"\n");
    let r = h.check(&[
        "--rules",
        sys.to_str().unwrap(),
        "--user-rules",
        h.user_rules.to_str().unwrap(),
    ]);
    assert!(
        r.stdout
            .contains("rules.toml:2:9: 'virus' may only be set in the system file"),
        "{}",
        r.stdout
    );
}

#[test]
fn check_reads_the_running_users_own_file_by_default() {
    if !is_root() {
        eprintln!("skipped: needs root to run as a user with a home of ours");
        return;
    }
    // `nobody` has no usable home, so check runs as root with HOME of root's
    // password entry: only exercise the default path when it is absent.
    let h = Home::new();
    let sys = h.file("sys.toml", "");
    let r = h.check(&["--rules", sys.to_str().unwrap()]);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
}

#[test]
fn check_flags_map_results_delivery_cannot_honour() {
    let h = Home::new();
    let sender = h.file("sender_access", "a.example OK\nb.example BCC archive@example.com\n# comment\nc.example FOLDER ../../etc\nd.example permit_mynetworks\ne.example PREPEND not a header\n");
    let cidr = h.file(
        "client.cidr",
        "192.0.2.0/24 OK\n198.51.100.0/24 REDIRECT x@example.com\n",
    );
    let re = h.file(
        "helo.re",
        "/^ok$/ OK\n/^f(.*)$/ FILTER smtp:[127.0.0.1]:$1\n",
    );
    let rules = h.file(
        "sys.toml",
        &format!(
            "[access]\nsender = [\"texthash:{}\"]\nclient = [\"cidr:{}\"]\nhelo = [\"regexp:{}\"]\n",
            sender.display(),
            cidr.display(),
            re.display()
        ),
    );
    let r = h.check(&["--rules", rules.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    let lines: Vec<&str> = r.stdout.lines().collect();
    let expect = [
        (format!("{}:2:1:", cidr.display()), "REDIRECT x@example.com"),
        (
            format!("{}:2:1:", re.display()),
            "FILTER smtp:[127.0.0.1]:$1",
        ),
        (
            format!("{}:2:1:", sender.display()),
            "BCC archive@example.com",
        ),
        (
            format!("{}:4:1:", sender.display()),
            "FOLDER \"../../etc\" would be refused",
        ),
        (format!("{}:5:1:", sender.display()), "permit_mynetworks"),
        (
            format!("{}:6:1:", sender.display()),
            "\"PREPEND not a header\" cannot be honoured",
        ),
    ];
    for (pos, what) in expect {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&pos) && l.contains(what)),
            "missing {pos} {what} in:\n{}",
            r.stdout
        );
    }
    assert_eq!(lines.len(), 6, "{}", r.stdout);
}

#[test]
fn check_warns_about_conditional_deferrals_in_maps() {
    // In smtpd DEFER_IF_PERMIT/DEFER_IF_REJECT depend on later restrictions;
    // at delivery they defer every match, until the message bounces.
    let h = Home::new();
    let sender = h.file(
        "sender_access",
        "a.example OK\nb.example DEFER_IF_PERMIT greylisted\n# comment\nc.example defer_if_reject\nd.example DEFER try later\n",
    );
    let re = h.file(
        "helo.pcre",
        "/^ok$/ OK\n/^x(.*)$/ DEFER_IF_REJECT helo $1\n",
    );
    let rules = h.file(
        "sys.toml",
        &format!(
            "[access]\nsender = [\"texthash:{}\"]\nhelo = [\"pcre:{}\"]\n",
            sender.display(),
            re.display()
        ),
    );
    let r = h.check(&["--rules", rules.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let lines: Vec<&str> = r.stdout.lines().collect();
    let expect = [
        (
            format!("{}:2:1:", re.display()),
            "DEFER_IF_REJECT defers every message it matches",
        ),
        (
            format!("{}:2:1:", sender.display()),
            "DEFER_IF_PERMIT defers every message it matches",
        ),
        (
            format!("{}:4:1:", sender.display()),
            "DEFER_IF_REJECT defers",
        ),
    ];
    for (pos, what) in &expect {
        assert!(
            lines.iter().any(|l| l.starts_with(pos) && l.contains(what)),
            "missing {pos} {what} in:\n{}",
            r.stdout
        );
    }
    assert!(r.stdout.contains("maximal_queue_lifetime"), "{}", r.stdout);
    // Plain DEFER is what it says: no warning.
    assert_eq!(lines.len(), expect.len(), "{}", r.stdout);
}

#[test]
fn the_plan_is_shown_in_json_and_text() {
    let mut h = Home::new();
    h.system(RULES);
    let args = [
        "--test",
        "--format",
        "json",
        "-f",
        "a@b",
        "-a",
        "u@example.com",
    ];
    let v = json(&h.run(&args, &msg("Subject: viagra casino\n", "x\n")));
    assert_eq!(
        v["plan"],
        serde_json::json!({
            "actions": [{"action": "deliver", "folder": "Junk", "add_headers": []}],
            "disposition": "delivered"
        })
    );
    let v = json(&h.run(&args, &msg("Subject: reject me\n", "x\n")));
    assert_eq!(
        v["plan"],
        serde_json::json!({
            "actions": [],
            "disposition": "rejected",
            "status": "5.7.1",
            "text": "not wanted here"
        })
    );
    let r = h.run(
        &["--test", "-f", "a@b", "-a", "u@example.com"],
        &msg("Subject: viagra casino\n", "x\n"),
    );
    assert!(
        r.stdout
            .contains("\nPlan\n  1. deliver into Junk\n  2. delivered (exit 0)\n"),
        "{}",
        r.stdout
    );
}
