//! The rules cache (src/policy/rules/cache.rs): a delivery that compiles only the
//! rules a message's headers can trigger decides exactly as the whole file
//! does; a stale, corrupt or foreign cache is never used against the file.

mod util;

use deliver::input::envelope::{Envelope, Flags};
use deliver::input::message::Headers;
use deliver::policy::decide::{decide, Decision, Input};
use deliver::policy::maps::OpenOptions;
use deliver::policy::rules::cache::{self, LoadError};
use deliver::policy::rules::{Layer, Origin};
use proptest::prelude::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use util::*;

/// Sets a file's mtime an hour back: the cache is not written for a file
/// modified in the last seconds (its mtime could hide a change).
fn age(p: &Path) {
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

/// Loads `path` with `cache` as the cache directory (the user's and the
/// system's: the test runs as the file's owner, or as root).
fn load(path: &Path, cache: &Path, defer: bool) -> Layer {
    let file = fs::File::open(path).unwrap();
    let meta = file.metadata().unwrap();
    let opts = OpenOptions {
        cache_dir: Some(cache.to_path_buf()),
        system_cache_dir: Some(cache.to_path_buf()),
        home: None,
    };
    match cache::load(file, &meta, path, Origin::User, &opts, defer) {
        Ok(l) => l,
        Err(LoadError::Diags(d)) => panic!("{d:?}"),
        Err(LoadError::Read(e)) => panic!("{e}"),
    }
}

fn decide_with(headers: &Headers, block: &str, layer: &Layer) -> Decision {
    let env = Envelope::resolve(
        &Flags {
            sender: Some("someone@example.org".into()),
            recipient: Some("user@example.com".into()),
            ..Default::default()
        },
        &|_| None,
        None,
        headers,
    );
    let input = Input {
        envelope: &env,
        headers,
        header_block: block.as_bytes(),
        body_window: b"",
        size: block.len() as u64,
        limit_hit: None,
        filters_done: &[],
        duplicate: None,
        today: 20270101,
    };
    let system = deliver::policy::rules::load_str(
        "[spam]\ndialects = []\n",
        Path::new("sys.toml"),
        Origin::System,
        &OpenOptions::default(),
    )
    .unwrap();
    decide(&input, &system, Some(layer))
}

fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("rules.") && n.ends_with(".cdb")
        })
        .collect();
    v.sort();
    v
}

const ATOMS: &[&str] = &[
    "a", "b", "s", "S", "ſ", "k", "K", "\u{212A}", "σ", "ς", "Σ", "ß", "i", "İ", "free", "FREE",
    "offer", "Viagra", "zq", "-", " ", "1", "42", "@", ".", "é", "É",
];

fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(ATOMS), 0..10).prop_map(|v| v.concat())
}

fn pattern() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        4 => proptest::sample::select(ATOMS).prop_map(regex::escape),
        1 => proptest::sample::select(vec![
            ".", r"\d", r"\w", "[ab]", "[sſ]", "[^a]", "^", "$", r"\b", "(?:free|offer)",
            "[a-z]+", "x?",
        ])
        .prop_map(str::to_string),
    ];
    (
        any::<bool>(),
        proptest::collection::vec(atom, 1..5),
        proptest::sample::select(vec!["", "+", "?", "*", "{2}"]),
    )
        .prop_map(|(ci, parts, q)| {
            let body = if q.is_empty() {
                parts.concat()
            } else {
                format!("(?:{}){q}", parts.concat())
            };
            if ci {
                format!("(?i){body}")
            } else {
                body
            }
        })
}

#[derive(Debug, Clone)]
enum Kind {
    Header,
    Sender,
    Compound,
}

fn rule() -> impl Strategy<Value = (Kind, String, String, String, u8, bool)> {
    (
        prop_oneof![8 => Just(Kind::Header), 1 => Just(Kind::Sender), 1 => Just(Kind::Compound)],
        proptest::sample::select(vec!["Subject", "From", "X-Tag"]),
        pattern(),
        pattern(),
        1u8..4,
        proptest::bool::weighted(0.15),
    )
        .prop_map(|(k, h, p, q, s, term)| (k, h.to_string(), p, q, s, term))
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn rules_file(rules: &[(Kind, String, String, String, u8, bool)]) -> String {
    let mut t = String::from("[spam]\njunk_threshold = 4.0\njunk_folder = \"Junk\"\n");
    // Enough indexed rules for the file to be cached (cache::MIN_INDEXED).
    for w in ["free", "offer", "zq-", "viagra"] {
        t.push_str(&format!(
            "\n[[rule]]\nheader = \"Subject\"\nmatch = \"(?i){w}\"\nscore = 0.25\n"
        ));
    }
    for (i, (k, h, p, p2, score, term)) in rules.iter().enumerate() {
        t.push_str("\n[[rule]]\n");
        if i % 3 != 0 {
            t.push_str(&format!("name = \"r{i}\"\n"));
        }
        match k {
            Kind::Header => t.push_str(&format!("header = {}\nmatch = {}\n", q(h), q(p))),
            Kind::Sender => t.push_str(&format!("sender = {}\n", q(p))),
            Kind::Compound => t.push_str(&format!(
                "all = [{{ header = {}, match = {} }}, {{ not = {{ header = \"From\", match = {} }} }}]\n",
                q(h),
                q(p),
                q(p2)
            )),
        }
        if *term {
            t.push_str(&format!("folder = \"F{i}\"\n"));
        } else {
            t.push_str(&format!("score = {score}.5\n"));
        }
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(250))]
    #[test]
    fn cached_decisions_equal_full_decisions(
        rules in proptest::collection::vec(rule(), 4..40),
        subjects in proptest::collection::vec(text(), 0..3),
        froms in proptest::collection::vec(text(), 0..2),
        tags in proptest::collection::vec(text(), 0..2),
    ) {
        // Patterns the regex crate refuses are not what this test is about.
        for r in &rules {
            prop_assume!(regex::Regex::new(&r.2).is_ok() && regex::Regex::new(&r.3).is_ok());
        }
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("rules.toml");
        let cache_dir = d.path().join("cache");
        fs::write(&path, rules_file(&rules)).unwrap();
        age(&path);
        let full = load(&path, &cache_dir, false);
        prop_assert_eq!(cache_files(&cache_dir).len(), 1, "cache written");
        let mut cached = load(&path, &cache_dir, true);
        let deferred = cached.deferred.take();
        prop_assert!(deferred.is_some(), "the cache is used");

        let mut block = String::new();
        for (name, values) in [("Subject", &subjects), ("From", &froms), ("X-Tag", &tags)] {
            for v in values {
                block.push_str(&format!("{name}: {v}\n"));
            }
        }
        block.push('\n');
        let headers = Headers::parse(block.as_bytes());
        let n = deferred.unwrap().complete(&mut cached, &headers).unwrap();
        prop_assert!(n <= full.rules.len());
        let a = decide_with(&headers, &block, &full);
        let b = decide_with(&headers, &block, &cached);
        prop_assert_eq!(a.action, b.action);
        prop_assert_eq!(&a.folder, &b.folder);
        prop_assert_eq!(a.score, b.score);
        prop_assert_eq!(&a.reason, &b.reason);
    }
}

/// A rule is compiled only when one value of its header holds a string of
/// every requirement of its pattern, not merely the piece it is indexed by.
#[test]
fn a_rule_is_selected_only_when_every_requirement_is_met() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("rules.toml");
    let cache_dir = d.path().join("cache");
    let mut t = String::new();
    for (h, m) in [
        ("Subject", "(?i)viagra"),
        ("Subject", "(?i)casino"),
        ("Subject", "(?i)(cheap|free) pills"),
        ("Content-Type", "(?i)charset=.?gb2312"),
        ("Received", "(?i)from .*rdns_none"),
    ] {
        t.push_str(&format!(
            "[[rule]]\nheader = {}\nmatch = {}\nscore = 1.0\n\n",
            q(h),
            q(m)
        ));
    }
    fs::write(&path, t).unwrap();
    age(&path);
    load(&path, &cache_dir, false);
    let mut layer = load(&path, &cache_dir, true);
    let deferred = layer.deferred.take().expect("the cache is used");
    let selected = |block: &str| deferred.select(&Headers::parse(block.as_bytes())).unwrap();
    assert_eq!(selected("Subject: hello\n\n"), Vec::<u32>::new());
    assert_eq!(selected("Subject: VIAGRA and Casino\n\n"), vec![0, 1]);
    // "pills" alone, or "cheap" alone, is not enough.
    assert_eq!(selected("Subject: pills, cheap\n\n"), Vec::<u32>::new());
    assert_eq!(selected("Subject: free pills\n\n"), vec![2]);
    assert_eq!(
        selected("Content-Type: text/plain; charset=utf-8\n\n"),
        Vec::<u32>::new()
    );
    assert_eq!(
        selected("Content-Type: text/plain; charset=\"GB2312\"\n\n"),
        vec![3]
    );
    // Both requirements must be met in the same value.
    assert_eq!(
        selected("Received: from a\nReceived: by b (RDNS_NONE)\n\n"),
        Vec::<u32>::new()
    );
    assert_eq!(
        selected("Received: from a\nReceived: from b (RDNS_NONE)\n\n"),
        vec![4]
    );
}

/// Rules for the binary tests: 4 routing rules, then many scored ones.
fn many_rules(n: usize) -> String {
    let mut t = String::from(
        r#"[spam]
junk_threshold = 5.0
junk_folder = "Junk"

[[rule]]
name = "list"
header = "List-Id"
match = '(?i)rust-users\.lists\.example\.org'
folder = "Lists.rust"

[[rule]]
name = "from-sender-map"
sender = '^boss@'
folder = "Boss"

[[rule]]
name = "pills"
header = "Subject"
match = '(?i)v[i1]agra'
score = 3.0

[[rule]]
name = "loan"
header = "Subject"
match = '(?i)\bloans?\b'
score = 3.0
"#,
    );
    for i in 0..n {
        t.push_str(&format!(
            "\n[[rule]]\nname = \"g{i}\"\nheader = \"{}\"\nmatch = '(?i)zqword{i}\\b'\nscore = 1.0\n",
            ["Subject", "From", "X-Mailer"][i % 3]
        ));
    }
    t
}

fn messages() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("", msg("Subject: hello\nFrom: a@example.org\n", "hi\n")),
        (
            "Junk",
            msg("Subject: VIAGRA loans\nFrom: a@example.org\n", "x\n"),
        ),
        (
            "Lists.rust",
            msg(
                "Subject: [rust] question\nList-Id: Rust users <rust-users.lists.example.org>\n",
                "x\n",
            ),
        ),
        (
            "Junk",
            msg(
                "Subject: zqword3 zqword6 zqword9 zqword12\nX-Mailer: zqword2 zqword5\n",
                "x\n",
            ),
        ),
        ("", msg("Subject: zqword7x zqword1\n", "x\n")),
    ]
}

/// The folder each message went to, delivering one at a time.
fn deliver_all(h: &Home, msgs: &[(&str, Vec<u8>)]) -> Vec<String> {
    let mut out = Vec::new();
    for (_, m) in msgs {
        let before = h.delivered();
        let r = h.run(
            &[
                "--log-stderr",
                "-f",
                "sender@example.org",
                "-a",
                "user@example.com",
            ],
            m,
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        let after = h.delivered();
        let folder = after
            .iter()
            .find(|(k, v)| before.get(*k).map_or(0, Vec::len) < v.len())
            .map(|(k, _)| k.clone())
            .expect("one message delivered");
        out.push(folder);
    }
    out
}

/// The user's cache directory. Deliveries run as `nobody` when the tests
/// run as root, whose password-file home does not exist: a system file
/// names a cache directory in the test's home instead.
fn user_cache(h: &Home) -> PathBuf {
    h.home.join(".cache").join("deliver")
}

fn home() -> Home {
    let mut h = Home::new();
    h.system(&system_rules(&h, ""));
    h
}

fn system_rules(h: &Home, more: &str) -> String {
    format!(
        "[settings]\nmap_cache_dir = {}\n\n{more}",
        q(&user_cache(h).display().to_string())
    )
}

#[test]
fn deliveries_with_the_cache_file_as_the_whole_file_does() {
    let h = home();
    h.user(&many_rules(3000));
    age(&h.user_rules);
    let msgs = messages();
    let want: Vec<String> = msgs.iter().map(|(f, _)| f.to_string()).collect();
    // The first delivery loads the whole file and writes the cache.
    let first = deliver_all(&h, &msgs[..1]);
    assert_eq!(first, want[..1]);
    let files = cache_files(&user_cache(&h));
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(h.owner_of(&files[0]), h.uid);
    // The others are decided from the cache, and file the same way.
    assert_eq!(deliver_all(&h, &msgs), want);
    assert_eq!(cache_files(&user_cache(&h)), files);
}

/// Rewrites `old` as `new` (same length) in the cache file.
fn patch(cache: &Path, old: &[u8], new: &[u8]) {
    assert_eq!(old.len(), new.len());
    let mut data = fs::read(cache).unwrap();
    let at = data
        .windows(old.len())
        .position(|w| w == old)
        .expect("text in the cache");
    data[at..at + old.len()].copy_from_slice(new);
    fs::write(cache, data).unwrap();
}

#[test]
fn the_cache_is_what_delivery_uses_and_an_edit_of_the_file_replaces_it() {
    let h = home();
    h.user(&many_rules(100));
    age(&h.user_rules);
    let list = messages()[2].clone();
    assert_eq!(deliver_all(&h, std::slice::from_ref(&list)), ["Lists.rust"]);
    let cache = cache_files(&user_cache(&h)).remove(0);
    // Proof that the cache, not the file, decides: a folder changed in the
    // cache (which only the user can write, like the file itself).
    patch(&cache, b"Lists.rust", b"Lists.rusX");
    assert_eq!(deliver_all(&h, std::slice::from_ref(&list)), ["Lists.rusX"]);
    // Editing the file (here: the same text again) makes the cache stale:
    // it is not used, and a new one replaces it.
    h.user(&many_rules(100));
    age(&h.user_rules);
    assert_eq!(deliver_all(&h, std::slice::from_ref(&list)), ["Lists.rust"]);
    let now = cache_files(&user_cache(&h));
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], cache);
    assert_eq!(deliver_all(&h, &[list]), ["Lists.rust"]);
}

#[test]
fn a_corrupt_cache_falls_back_to_the_whole_file() {
    let h = home();
    h.user(&many_rules(100));
    age(&h.user_rules);
    let msgs = messages();
    deliver_all(&h, &msgs[..1]);
    let cache = cache_files(&user_cache(&h)).remove(0);
    // A rule that no longer parses: completing the layer fails, so the
    // delivery loads the file instead, says so, and files as the file says.
    patch(&cache, b"name = \"pills\"", b"name = \"pills\x01");
    let r = h.run(
        &[
            "--log-stderr",
            "-f",
            "sender@example.org",
            "-a",
            "user@example.com",
        ],
        &msgs[1].1,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("rules cache of"), "{}", r.stderr);
    assert_eq!(h.delivered().get("Junk").map(Vec::len), Some(1));
    // A cache cut short is not even opened.
    fs::write(&cache, b"short").unwrap();
    let want: Vec<String> = msgs.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(deliver_all(&h, &msgs), want);
}

#[test]
fn a_cache_is_trusted_only_from_root_or_the_files_owner() {
    // As map indexes (tests/security.rs): a user who could plant the cache
    // of the system file could rewrite the system's rules for their mail.
    if !is_root() {
        eprintln!("skipped: needs root to give the cache away");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("rules.toml");
    let cache_dir = d.path().join("cache");
    fs::write(&path, many_rules(100)).unwrap();
    age(&path);
    load(&path, &cache_dir, false);
    let cache = cache_files(&cache_dir).remove(0);
    patch(&cache, b"Lists.rust", b"Lists.rusX");
    let folder = |l: &Layer| {
        format!(
            "{:?}",
            l.rules.iter().find(|r| r.name == "list").map(|r| &r.action)
        )
    };
    let list_headers = Headers::parse(b"List-Id: <rust-users.lists.example.org>\n\n");
    // Owned by root (the file's owner): used.
    let mut l = load(&path, &cache_dir, true);
    l.deferred
        .take()
        .unwrap()
        .complete(&mut l, &list_headers)
        .unwrap();
    assert!(folder(&l).contains("Lists.rusX"), "{}", folder(&l));
    // Owned by another user: not used; the file is loaded in full.
    let (uid, gid) = runner();
    chown_tree(&cache, uid, gid);
    let l = load(&path, &cache_dir, true);
    assert!(l.deferred.is_none());
    assert!(folder(&l).contains("Lists.rust\""), "{}", folder(&l));
}

#[test]
fn check_as_root_writes_the_system_files_cache_and_deliveries_use_it() {
    if !is_root() {
        eprintln!("skipped: needs root to run check as root and deliver as a user");
        return;
    }
    let mut h = Home::new();
    h.system(&many_rules(100));
    let sys = h.system_rules.clone().unwrap();
    // Edited just now: check waits out the two seconds and writes it.
    let r = run_cmd(
        {
            let mut c = std::process::Command::new(BIN);
            c.arg("check").arg("--rules").arg(&sys).env_clear();
            c
        },
        b"",
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains("rules cache written: "))
        .unwrap_or_else(|| panic!("{}", r.stdout))
        .to_string();
    let cache = PathBuf::from(line.split("rules cache written: ").nth(1).unwrap());
    assert!(cache.starts_with("/var/cache/deliver"), "{line}");
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }
    let _cleanup = Remove(cache.clone());
    // Checked again, the cache of this version is kept as it is.
    let mut c = std::process::Command::new(BIN);
    c.arg("check").arg("--rules").arg(&sys).env_clear();
    let again = run_cmd(c, b"");
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    let want = format!("rules cache up to date: {}", cache.display());
    assert!(again.stdout.contains(&want), "{}", again.stdout);
    // The user's deliveries read it (a folder changed in it shows).
    patch(&cache, b"Lists.rust", b"Lists.rusX");
    let list = messages()[2].clone();
    assert_eq!(deliver_all(&h, std::slice::from_ref(&list)), ["Lists.rusX"]);
    // Not owned by root any more: not used.
    let (uid, gid) = runner();
    chown_tree(&cache, uid, gid);
    assert_eq!(deliver_all(&h, std::slice::from_ref(&list)), ["Lists.rust"]);
}

#[test]
fn a_header_limit_rule_is_never_left_in_the_cache() {
    let h = home();
    // Indexed header rules, and rules that test the limit: alone, and with
    // a header pattern the index could otherwise key.
    let mut rules = many_rules(100);
    rules.push_str(
        "\n[[rule]]\nname = \"padded-pill\"\nheader = \"Subject\"\nmatch = 'zqpill'\nheader_limit = true\nfolder = \"PaddedPill\"\n\
         \n[[rule]]\nname = \"padded\"\nheader_limit = true\nfolder = \"Padded\"\n",
    );
    h.user(&rules);
    age(&h.user_rules);
    let pad: String = (0..10_001).map(|i| format!("X-Pad-{i}: p\n")).collect();
    let msgs = [
        ("", msg("Subject: hello\n", "x\n")),
        ("Padded", msg(&format!("Subject: hello\n{pad}"), "x\n")),
        ("PaddedPill", msg(&format!("Subject: zqpill\n{pad}"), "x\n")),
        ("Junk", msg("Subject: VIAGRA loans\n", "x\n")),
    ];
    // The first delivery writes the cache; all are then decided from it.
    assert_eq!(deliver_all(&h, &msgs[..1]), [""]);
    let files = cache_files(&user_cache(&h));
    assert_eq!(files.len(), 1, "{files:?}");
    let want: Vec<&str> = msgs.iter().map(|m| m.0).collect();
    assert_eq!(deliver_all(&h, &msgs), want);
    assert_eq!(cache_files(&user_cache(&h)), files);
}
