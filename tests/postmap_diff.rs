//! Differential tests: our `Table::lookup` against the real `postmap -q`.
//!
//! Tables are generated deterministically (a linear congruential generator,
//! fixed seeds), written to a temporary directory, and queried in batches
//! with `postmap -q - type:file < keys`. Every answer must be identical.
//!
//! These tests need Postfix's postmap with pcre and cdb support (Debian:
//! `apt-get install postfix postfix-pcre postfix-cdb`). Without it they FAIL
//! with a message saying so; they never skip.
//!
//! postmap runs with its own configuration directory (`-c`), so the host's
//! main.cf cannot change the answers: `smtputf8_enable = yes` (Unicode case
//! folding of keys) and compatibility_level 3.6.

use deliver::policy::maps::{open, OpenOptions, Table};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Knuth's MMIX LCG: deterministic, no rand crate.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

fn postmap_bin() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain([
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
    ]) {
        let p = Path::new(dir).join("postmap");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "postmap(1) not found: these differential tests need Postfix. Install it with \
         `DEBIAN_FRONTEND=noninteractive apt-get install -y postfix postfix-pcre postfix-cdb`"
    );
}

/// A scratch directory with a main.cf that pins the settings we depend on.
struct Env {
    dir: tempfile::TempDir,
    cfg: PathBuf,
    postmap: PathBuf,
}

impl Env {
    fn new() -> Env {
        let postmap = postmap_bin();
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("cfg");
        std::fs::create_dir(&cfg).unwrap();
        let meta = Command::new(postmap.with_file_name("postconf"))
            .args(["-h", "meta_directory"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "/etc/postfix".to_string());
        std::fs::write(
            cfg.join("main.cf"),
            format!("compatibility_level = 3.6\nsmtputf8_enable = yes\nmeta_directory = {meta}\n"),
        )
        .unwrap();
        let env = Env { dir, cfg, postmap };
        // With the test's own main.cf: a Postfix installed with "No
        // configuration" has no /etc/postfix/main.cf, and postconf needs one.
        let out = Command::new(env.postmap.with_file_name("postconf"))
            .arg("-c")
            .arg(&env.cfg)
            .arg("-m")
            .output()
            .expect("postconf -m");
        let types = String::from_utf8_lossy(&out.stdout).to_string();
        for t in ["pcre", "cdb", "cidr", "regexp", "texthash", "hash"] {
            assert!(
                types.lines().any(|l| l.trim() == t),
                "Postfix lacks the {t} table type: install it with \
                 `DEBIAN_FRONTEND=noninteractive apt-get install -y postfix postfix-pcre postfix-cdb`"
            );
        }
        env
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> (String, String, bool) {
        let mut cmd = Command::new(&self.postmap);
        cmd.arg("-c").arg(&self.cfg).args(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run postmap");
        let mut sin = child.stdin.take().unwrap();
        let input = stdin.unwrap_or("").to_string();
        let writer = std::thread::spawn(move || {
            let _ = sin.write_all(input.as_bytes());
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.success(),
        )
    }

    /// `postmap -q - spec < keys`: the answer for each key.
    fn query(&self, spec: &str, keys: &[String]) -> HashMap<String, String> {
        for k in keys {
            assert!(
                !k.contains('\n') && !k.contains('\t') && !k.is_empty(),
                "bad test key {k:?}"
            );
        }
        let input: String = keys.iter().map(|k| format!("{k}\n")).collect();
        let (out, err, _) = self.run(&["-q", "-", spec], Some(&input));
        assert!(!err.contains("fatal"), "postmap failed on {spec}: {err}");
        let mut m = HashMap::new();
        for line in out.split('\n').filter(|l| !l.is_empty()) {
            let (k, v) = line
                .split_once('\t')
                .unwrap_or_else(|| panic!("unexpected postmap output line {line:?}"));
            m.insert(k.to_string(), v.to_string());
        }
        m
    }

    fn build(&self, spec: &str, extra: &[&str]) {
        let mut args: Vec<&str> = extra.to_vec();
        args.push(spec);
        let (_, err, ok) = self.run(&args, None);
        assert!(ok, "postmap {spec} failed: {err}");
    }
}

/// Compare every key; fail with the first differences.
fn compare(env: &Env, postmap_spec: &str, ours: &dyn Table, keys: &[String]) -> usize {
    let theirs = env.query(postmap_spec, keys);
    let mut bad = Vec::new();
    let mut found = 0;
    for k in keys {
        let mine = ours
            .lookup(k)
            .unwrap_or_else(|e| panic!("{postmap_spec}: lookup {k:?} failed: {e}"));
        let want = theirs.get(k).cloned();
        if want.is_some() {
            found += 1;
        }
        if mine != want {
            bad.push(format!("key {k:?}: postmap {want:?}, ours {mine:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} keys differ for {postmap_spec}:\n{}",
        bad.len(),
        keys.len(),
        bad.iter().take(25).cloned().collect::<Vec<_>>().join("\n")
    );
    found
}

/// The first `n` characters of `s`.
fn head(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn mixed_case(r: &mut Lcg, s: &str) -> String {
    s.chars()
        .map(|c| {
            if r.chance(30) {
                c.to_uppercase().collect::<String>()
            } else {
                c.to_string()
            }
        })
        .collect()
}

const USERS: &[&str] = &[
    "alice",
    "bob",
    "carol",
    "dave",
    "postmaster",
    "abuse",
    "info",
    "sales",
    "owner-list",
    "list-request",
    "mailer-daemon",
    "noreply",
    "straße",
    "jürgen",
    "ÄBC",
    "o'brien",
    "first.last",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "mail.example.com",
    "sub.mail.example.com",
    "example.net",
    "test",
    "xn--bcher-kva.example",
    "bücher.example",
    "localhost",
    "a.b.c.d.e",
];

fn address(r: &mut Lcg) -> String {
    let u = *r.pick(USERS);
    let ext = if r.chance(25) {
        format!("+{}", r.pick(&["ext", "lists", "x-y", "Tag"]))
    } else {
        String::new()
    };
    format!("{u}{ext}@{}", r.pick(DOMAINS))
}

#[test]
fn texthash_matches_postmap() {
    let env = Env::new();
    let mut r = Lcg(0x5eed_0001);
    let mut text = String::new();
    let mut keys: Vec<String> = Vec::new();
    for i in 0..400 {
        let key = match r.below(9) {
            0 => r.pick(DOMAINS).to_string(),
            1 => format!(".{}", r.pick(DOMAINS)),
            2 => format!("{}@", r.pick(USERS)),
            3 => format!(
                "\"{} {}\"@{}",
                r.pick(USERS),
                r.pick(USERS),
                r.pick(DOMAINS)
            ),
            4 => format!("{}\\ {}", r.pick(USERS), r.pick(USERS)),
            5 => format!("10.{}.{}", r.below(4), r.below(4)),
            _ => address(&mut r),
        };
        let shown = mixed_case(&mut r, &key);
        keys.push(key.clone());
        let value = match r.below(6) {
            0 => "OK".to_string(),
            1 => format!("REJECT no mail from {key} please"),
            2 => format!("554 5.7.1 rule {i}"),
            3 => format!("FOLDER Lists.{i}"),
            4 => "DUNNO".to_string(),
            _ => format!("value {i}  with  spaces"),
        };
        if r.chance(8) {
            text.push_str("# a comment line\n");
        }
        if r.chance(5) {
            text.push_str("   # an indented comment\n\n");
        }
        let sep = if r.chance(50) { "\t" } else { "   " };
        if r.chance(12) {
            // A continuation line, sometimes after a blank line or comment.
            let mut m = value.len() / 2;
            while !value.is_char_boundary(m) {
                m += 1;
            }
            let (a, b) = value.split_at(m);
            let mid = if r.chance(30) {
                "\n# inner comment\n"
            } else {
                "\n"
            };
            text.push_str(&format!("{shown}{sep}{a}{mid}  {b}\n"));
        } else if r.chance(5) {
            text.push_str(&format!("{shown}{sep}{value}  \r\n"));
        } else {
            text.push_str(&format!("{shown}{sep}{value}\n"));
        }
        if r.chance(10) {
            // A duplicate, in other case, with another value: the first wins.
            text.push_str(&format!("{} second value {i}\n", mixed_case(&mut r, &key)));
        }
    }
    let path = env.path("access");
    std::fs::write(&path, &text).unwrap();
    let ours = open(
        &format!("texthash:{}", path.display()),
        &OpenOptions::default(),
    )
    .unwrap();
    assert!(ours.note().unwrap_or_default().contains("duplicate entry"));

    let mut queries: Vec<String> = Vec::new();
    for k in &keys {
        queries.push(k.clone());
        queries.push(mixed_case(&mut r, k));
        queries.push(k.to_uppercase());
    }
    for _ in 0..200 {
        queries.push(address(&mut r));
    }
    queries.extend(["STRASSE@example.com", "σας", "K", "nothere"].map(String::from));
    let spec = format!("texthash:{}", path.display());
    let found = compare(&env, &spec, ours.as_ref(), &queries);
    assert!(
        found > 600,
        "too few keys found ({found}); the test would prove little"
    );

    // hash: reads the same source; compare with the .db postmap builds.
    env.build(&format!("hash:{}", path.display()), &[]);
    let hashed = open(&format!("hash:{}", path.display()), &OpenOptions::default()).unwrap();
    compare(
        &env,
        &format!("hash:{}", path.display()),
        hashed.as_ref(),
        &queries,
    );

    // cdb: files written by postmap, without and with trailing NULs.
    env.build(&format!("cdb:{}", path.display()), &[]);
    let cdb = open(&format!("cdb:{}", path.display()), &OpenOptions::default()).unwrap();
    compare(
        &env,
        &format!("cdb:{}", path.display()),
        cdb.as_ref(),
        &queries,
    );
    let npath = env.path("access-nul");
    std::fs::write(&npath, &text).unwrap();
    env.build(&format!("cdb:{}", npath.display()), &["-N"]);
    let cdbn = open(&format!("cdb:{}", npath.display()), &OpenOptions::default()).unwrap();
    compare(
        &env,
        &format!("cdb:{}", npath.display()),
        cdbn.as_ref(),
        &queries,
    );
}

#[test]
fn cdb_keys_have_no_trailing_nul_by_default() {
    let env = Env::new();
    let p = env.path("nul");
    std::fs::write(&p, "Key1 Value1\n").unwrap();
    env.build(&format!("cdb:{}", p.display()), &[]);
    let raw = std::fs::read(format!("{}.cdb", p.display())).unwrap();
    let rec = &raw[2048..2048 + 8 + 4 + 6];
    assert_eq!(
        &rec[..8],
        &[4, 0, 0, 0, 6, 0, 0, 0],
        "key and value lengths without NUL"
    );
    assert_eq!(&rec[8..], b"key1Value1", "key folded, no NUL");
    env.build(&format!("cdb:{}", p.display()), &["-N"]);
    let raw = std::fs::read(format!("{}.cdb", p.display())).unwrap();
    assert_eq!(
        &raw[2048..2048 + 8],
        &[5, 0, 0, 0, 7, 0, 0, 0],
        "postmap -N adds a NUL to both"
    );
}

fn v4(r: &mut Lcg) -> [u8; 4] {
    let firsts = [10u8, 10, 172, 192, 1, 203];
    [
        *r.pick(&firsts),
        r.below(4) as u8 * 16,
        r.below(256) as u8,
        r.below(256) as u8,
    ]
}

fn v4net(r: &mut Lcg) -> (String, bool) {
    let a = v4(r);
    let len = *r.pick(&[8u32, 12, 16, 20, 24, 28, 30, 32]);
    let ip = u32::from_be_bytes(a);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let host_bits = r.chance(4) && len < 32;
    let net = if host_bits { ip | 1 } else { ip & mask };
    let addr = std::net::Ipv4Addr::from(net);
    let s = match r.below(5) {
        0 => format!("[{addr}]/{len}"),
        1 => format!("[{addr}/{len}]"),
        2 if len == 32 => format!("{addr}"),
        _ => format!("{addr}/{len}"),
    };
    (s, host_bits)
}

fn v6addr(r: &mut Lcg) -> std::net::Ipv6Addr {
    let mut seg = [0u16; 8];
    seg[0] = *r.pick(&[0x2001u16, 0xfe80, 0xfd00]);
    seg[1] = *r.pick(&[0x0db8u16, 0, 0x1234]);
    for s in seg.iter_mut().skip(2) {
        if r.chance(40) {
            *s = r.below(0x10000) as u16;
        }
    }
    std::net::Ipv6Addr::from(seg)
}

#[test]
fn cidr_matches_postmap() {
    let env = Env::new();
    let mut r = Lcg(0x5eed_0002);
    let mut text = String::new();
    let mut depth = 0;
    for i in 0..300 {
        match r.below(20) {
            0 if depth < 3 => {
                let (n, hb) = v4net(&mut r);
                if !hb {
                    let bang = if r.chance(30) { "!" } else { "" };
                    text.push_str(&format!("if {bang}{n}\n"));
                    depth += 1;
                }
            }
            1 if depth > 0 => {
                text.push_str("endif\n");
                depth -= 1;
            }
            2..=4 => {
                let a = v6addr(&mut r);
                let len = *r.pick(&[16u32, 32, 48, 64, 128]);
                let bits = u128::from(a);
                let masked = if len == 128 {
                    bits
                } else {
                    bits & !(u128::MAX >> len)
                };
                let net = std::net::Ipv6Addr::from(masked);
                let bang = if r.chance(15) { "! " } else { "" };
                text.push_str(&format!("{bang}{net}/{len}\tv6 rule {i}\n"));
            }
            _ => {
                let (n, _) = v4net(&mut r);
                let bang = if r.chance(15) { "!" } else { "" };
                text.push_str(&format!("{bang}{n}   REJECT v4 rule {i}  \n"));
            }
        }
        if r.chance(5) {
            text.push_str("# comment\n");
        }
    }
    while depth > 0 {
        text.push_str("endif\n");
        depth -= 1;
    }
    text.push_str("0.0.0.0/0 catch-all-v4\n");
    let path = env.path("client.cidr");
    std::fs::write(&path, &text).unwrap();
    let spec = format!("cidr:{}", path.display());
    let ours = open(&spec, &OpenOptions::default()).unwrap();
    let mut keys = Vec::new();
    for _ in 0..500 {
        match r.below(10) {
            0..=5 => keys.push(std::net::Ipv4Addr::from(v4(&mut r)).to_string()),
            6..=8 => {
                let a = v6addr(&mut r);
                keys.push(if r.chance(30) {
                    a.to_string().to_uppercase()
                } else {
                    a.to_string()
                });
            }
            _ => keys.push(
                r.pick(&[
                    "01.2.3.4",
                    "[10.0.0.1]",
                    "1.2.3",
                    "host.example",
                    "::ffff:10.0.0.1",
                    "2001:db8::1%eth0",
                ])
                .to_string(),
            ),
        }
    }
    let found = compare(&env, &spec, ours.as_ref(), &keys);
    assert!(found > 250, "too few keys found ({found})");
}

#[test]
fn regexp_matches_postmap() {
    let env = Env::new();
    let mut r = Lcg(0x5eed_0003);
    let mut text = String::new();
    let mut depth = 0;
    let esc = |d: &str| d.replace('.', "\\.");
    for i in 0..250 {
        let d = *r.pick(DOMAINS);
        let u = *r.pick(USERS);
        let rule = match r.below(16) {
            0 if depth < 3 => {
                depth += 1;
                format!("if {}/@{}$/", if r.chance(30) { "!" } else { "" }, esc(d))
            }
            1 if depth > 0 => {
                depth -= 1;
                "endif".to_string()
            }
            2 => format!("/^{}@{}$/ OK rule {i}", esc(u), esc(d)),
            3 => format!("/^{u}/i REJECT case-sensitive {i}"),
            4 => format!("!/{}/ DUNNO not {i}", esc(d)),
            5 => format!("/^([^+@]+)\\+([^@]+)@(.*)$/ FOLDER ${{2}}.$1 on $3 ({i})"),
            6 => format!(
                "/^([[:alpha:]]+)@([^.]+)\\.{}$/ 550 $1 at $2 {i}",
                r.pick(&["com", "org"])
            ),
            7 => format!("/^{}\\{{1,2\\}}/x bre {i}", head(u, 1)),
            8 => format!("/{}/!/^{}/ secondary {i}", esc(d), head(u, 1)),
            9 => format!("|[0-9]{{2,}}| digits {i}"),
            10 => format!("/^{}[.+-]/ punct {i}", head(u, 2)),
            11 => format!("/(^|\\.)example\\.(com|org)$/ $$ cost {i}"),
            12 => format!("/^[^@]*[aeiou]{{2}}[^@]*@/ vowels {i}"),
            _ => format!("/^{}@/ user {i}", esc(u)),
        };
        text.push_str(&rule);
        text.push('\n');
        if r.chance(6) {
            text.push_str("# comment\n");
        }
    }
    while depth > 0 {
        text.push_str("endif\n");
        depth -= 1;
    }
    let path = env.path("sender.regexp");
    std::fs::write(&path, &text).unwrap();
    let spec = format!("regexp:{}", path.display());
    let ours = open(&spec, &OpenOptions::default()).unwrap();
    let mut keys: Vec<String> = (0..500)
        .map(|_| {
            let a = address(&mut r);
            if r.chance(30) {
                mixed_case(&mut r, &a)
            } else {
                a
            }
        })
        .collect();
    keys.extend(["12345", "nothing", "o'brien@example.com"].map(String::from));
    let found = compare(&env, &spec, ours.as_ref(), &keys);
    assert!(found > 250, "too few keys found ({found})");
}

#[test]
fn pcre_matches_postmap() {
    let env = Env::new();
    let mut r = Lcg(0x5eed_0004);
    let mut text = String::new();
    let mut depth = 0;
    let esc = |d: &str| d.replace('.', "\\.");
    for i in 0..250 {
        let d = *r.pick(DOMAINS);
        let u = *r.pick(USERS);
        let rule = match r.below(18) {
            0 if depth < 3 => {
                depth += 1;
                format!("if {}/@{}$/", if r.chance(30) { "! " } else { "" }, esc(d))
            }
            1 if depth > 0 => {
                depth -= 1;
                "endif".to_string()
            }
            2 => format!("/^{}@{}$/ OK rule {i}", esc(u), esc(d)),
            3 => format!("/^{u}/i REJECT case-sensitive {i}"),
            4 => format!("!/{}/ DUNNO not {i}", esc(d)),
            5 => format!("/^([^+@]+)\\+([^@]+)@(.*)$/ FOLDER ${{2}}.$1 on $3 ({i})"),
            6 => format!("/^(\\w+)@(?:[^.]+\\.)*?(\\w+)\\.com$/ 550 5.7.1 $1 at $2 {i}"),
            7 => format!("/ ^ {} \\+? /x spaced {i}", head(u, 1)),
            8 => {
                if r.chance(50) {
                    format!("/{}/A anchored {i}", head(u, 1))
                } else {
                    format!("/@{}$/A never-at-start {i}", esc(d))
                }
            }
            9 => format!("/\\d{{2,}}/ digits {i}"),
            10 => format!("/\\Q{d}\\E$/ quoted {i}"),
            11 => format!("/^(?<user>[a-z]+)(?:\\+[a-z-]+)?@/U ungreedy $1 {i}"),
            12 => format!("/^[^@]*?[aeiou]{{2}}/ vowels {i}"),
            13 => format!("/\\bmail\\b/ word {i}"),
            14 => format!("~^{}~ tilde {i}", head(u, 2)),
            _ => format!("/^{}@/ user {i}", esc(u)),
        };
        text.push_str(&rule);
        text.push('\n');
        if r.chance(6) {
            text.push_str("# comment\n");
        }
    }
    while depth > 0 {
        text.push_str("endif\n");
        depth -= 1;
    }
    let path = env.path("sender.pcre");
    std::fs::write(&path, &text).unwrap();
    let spec = format!("pcre:{}", path.display());
    let ours = open(&spec, &OpenOptions::default()).unwrap();
    let mut keys: Vec<String> = (0..500)
        .map(|_| {
            let a = address(&mut r);
            if r.chance(30) {
                mixed_case(&mut r, &a)
            } else {
                a
            }
        })
        .collect();
    keys.extend(["12345", "nothing", "mail server"].map(String::from));
    let found = compare(&env, &spec, ours.as_ref(), &keys);
    assert!(found > 250, "too few keys found ({found})");
}

/// What postmap drops with a warning we refuse with a Diag; check both
/// halves of that claim: postmap does drop it, and we do refuse it.
#[test]
fn input_postmap_drops_is_refused_here() {
    let env = Env::new();
    let cases: &[(&str, &str, &str)] = &[
        ("texthash", "novalue\nk v\n", "expected format"),
        ("texthash", "\"open quote v\nk v\n", "unbalanced"),
        ("cidr", "1.2.3.4/33 x\nk v\n", "bad mask length"),
        ("cidr", "garbage x\n", "bad address pattern"),
        ("regexp", "/x/q r\n", "unknown regexp option"),
        ("regexp", "/(x)/ $2\n", "out of range replacement index"),
        ("regexp", "/x r\n", "no closing regexp delimiter"),
        ("pcre", "/x/q r\n", "unknown regexp option"),
        ("pcre", "/(x/ r\n", "error in regex"),
        ("pcre", "/x/ $1\n", "out of range replacement index"),
    ];
    for (i, (kind, text, postmap_says)) in cases.iter().enumerate() {
        let p = env.path(&format!("drop{i}"));
        std::fs::write(&p, text).unwrap();
        let spec = format!("{kind}:{}", p.display());
        let (_, err, _) = env.run(&["-q", "x", &spec], None);
        assert!(err.contains(postmap_says), "{spec}: postmap said {err:?}");
        assert!(
            err.contains("skipping") || err.contains("ignoring") || err.contains("error in regex"),
            "{spec}: postmap did not drop the rule: {err:?}"
        );
        let e = open(&spec, &OpenOptions::default()).unwrap_err();
        assert_eq!(e.line, 1, "{spec}: {e}");
        assert!(e.col >= 1, "{spec}: {e}");
    }
}

impl Env {
    /// `postmap -q key spec` for one key (which may contain a newline).
    fn query_one(&self, spec: &str, key: &str) -> Option<String> {
        let (out, err, ok) = self.run(&["-q", key, spec], None);
        assert!(!err.contains("fatal"), "postmap failed on {spec}: {err}");
        if ok {
            Some(out.strip_suffix('\n').unwrap_or(&out).to_string())
        } else {
            None
        }
    }
}

/// Hand-picked patterns where POSIX/PCRE syntax and the regex crate's differ,
/// each checked against postmap on keys chosen to tell the readings apart.
fn corpus(kind: &str, cases: &[(&str, &[&str])]) {
    let env = Env::new();
    let mut bad = Vec::new();
    for (n, (rule, keys)) in cases.iter().enumerate() {
        let p = env.path(&format!("corpus{n}.{kind}"));
        std::fs::write(&p, format!("{rule}\n")).unwrap();
        let spec = format!("{kind}:{}", p.display());
        let ours = open(&spec, &OpenOptions::default())
            .unwrap_or_else(|e| panic!("{kind} rule {rule:?} refused: {e}"));
        for k in keys.iter() {
            let theirs = if k.contains('\n') || k.contains('\t') {
                env.query_one(&spec, k)
            } else {
                env.query(&spec, &[k.to_string()]).remove(*k)
            };
            let mine = ours.lookup(k).unwrap();
            if mine != theirs {
                bad.push(format!(
                    "{rule:?} key {k:?}: postmap {theirs:?}, ours {mine:?}"
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} differences:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn regexp_corpus_matches_postmap() {
    corpus(
        "regexp",
        &[
            ("/[\\d]/ bs", &["d", "\\", "5"]),
            ("/^a+b$/x bre", &["aab", "a+b"]),
            ("/^a\\{2\\}$/x bre2", &["aa", "a{2}"]),
            ("/^\\(ab\\)*c$/x bre3 $1", &["ababc", "c", "(ab)c"]),
            ("/^*a/x bre4", &["*a", "a"]),
            ("/^a\\|b$/x bre5", &["a", "b", "a|b"]),
            ("/^a\\+$/x bre6", &["aaa", "a+"]),
            ("/a^b$c/x bre7", &["a^b$c", "abc"]),
            ("/^a{,2}b$/ brace", &["b", "aab", "aaab"]),
            ("/^a**b$/ starstar", &["b", "aaaab", "c"]),
            ("/^(ab)+?c$/ plusq $1", &["abc", "ababc", "c"]),
            ("/^x*{2}$/ xx", &["xx", "xxxx", "y"]),
            ("/X/ ci", &["x", "X"]),
            ("/X/i cs", &["x", "X"]),
            ("/^a.b$/ dot", &["a\nb", "axb"]),
            ("/^a.b$/m mdot", &["a\nb", "axb"]),
            ("/^a[^x]b$/m mneg", &["a\nb", "ayb"]),
            ("/^b$/m mline", &["a\nb\nc", "b", "ab"]),
            ("/^é$/ utf", &["é", "É"]),
            ("/^.$/ onebyte", &["é", "e"]),
            ("/a\\|b/ altesc", &["b", "a|b"]),
            ("/\\<x\\>/ word", &["a x b", "axb", "x"]),
            ("/\\bx\\B/ bb", &["xy", "x y", "yx"]),
            ("/\\w+\\s\\W/ gnu", &["ab !", "ab c"]),
            ("/\\`ab\\'/ bufanchors", &["ab", "xab", "abx"]),
            ("/[]a]/ rb", &["]", "a", "b"]),
            ("/[^]a]/ nrb", &["]", "b"]),
            ("/^x[a-]$/ dash", &["x-", "xa", "xb"]),
            ("/^[]-a]$/i rng", &["^", "]", "a", "b", "A"]),
            ("/^[x-~]$/ icase-range", &["[", "X", "a", "~", "{"]),
            ("/^[A-z]+$/ icase-range2", &["_", "q", "Q", "`"]),
            ("/^[[:lower:]]$/ lower", &["A", "a", "1"]),
            ("/^[^[:upper:]]$/ notupper", &["a", "A", "1"]),
            ("/^[^a][^a]$/ highbytes", &["é", "ab", "bb"]),
            ("/^[[:digit:][:upper:]]+$/ cls", &["12AB", "12ab", "x"]),
            ("/^[[=a=]b]$/ eq", &["a", "b", "c"]),
            ("/^[[.-.]x]$/ coll", &["-", "x", "y"]),
            ("/^a\\{2\\}$/ escbrace", &["a{2}", "aa"]),
            ("/^()x$/ empty", &["x", "y"]),
            ("/^(|a)x$/ emptyalt", &["x", "ax"]),
            ("/^a)$/ paren", &["a)", "a"]),
            ("/(^a)/ caret", &["a", "ba"]),
            ("/b(^a)/ caret2", &["ba", "a"]),
            ("/a$|^b/ alts", &["xa", "bx", "ax"]),
            ("/^\\.$/ dot2", &[".", "x"]),
            ("/^[a-c-]$/ range2", &["-", "d", "b"]),
            ("/^(a|ab)(c|bcd)(d*)$/ [$1][$2][$3]", &["abcd", "acd"]),
            ("/^(x)(y)?$/ [$1][$2]", &["x", "xy"]),
            ("/(.+)@(.+)/ ${2} $(1) $$", &["u@d", "x"]),
            ("!/^(ab)*$/ neg", &["abab", "aba"]),
            ("/x/!/^xy/ sec", &["x", "xy", "axy"]),
            ("~^a~ tilde", &["ab", "ba"]),
        ],
    );
}

#[test]
fn pcre_corpus_matches_postmap() {
    corpus(
        "pcre",
        &[
            ("/^\\101$/ oct", &["A", "a", "101"]),
            ("/^[a b]$/x sp", &[" ", "a", "ab"]),
            ("/^a b$/x ext", &["ab", "a b"]),
            ("/\\<x\\>/ lt", &["<x>", "x"]),
            ("/^a{,2}$/ lb", &["a{,2}", "aa"]),
            ("/^a{$/ lb2", &["a{", "a"]),
            ("/^a{2,3}?$/ cnt", &["aa", "aaa", "a"]),
            ("/^(a+?)(a*)$/ [$1][$2]", &["aaa"]),
            ("/^(a+)(a*)$/U [$1][$2]", &["aaa"]),
            ("/^(?'n'x)(?<m>y)(?P<o>z)$/ [$1$2$3]", &["xyz", "xy"]),
            ("/\\Gx/ g", &["x", "ax"]),
            ("/^[&&]$/ amp", &["&", "a"]),
            ("/^a(?#comment)b$/ c", &["ab", "a(?#comment)b"]),
            ("/^\\Qa.b\\E$/ q", &["a.b", "axb"]),
            ("/^\\cA$/ ctl", &["\u{1}", "A"]),
            ("/^[a-c-e]$/ r", &["-", "d", "e", "b"]),
            ("/^[\\w-]+$/ w", &["a-b", "a b"]),
            ("/^a\\h+b$/ h", &["a \tb", "ab", "a\nb"]),
            ("/^a\\Hb$/ hh", &["axb", "a b"]),
            ("/^a\\vb$/ v", &["a\nb", "a b"]),
            ("/^a\\Rb$/ rr", &["a\nb", "ab"]),
            ("/^a\\Nb$/ nn", &["axb", "a\nb"]),
            ("/^\\x{41}\\o{102}\\x43$/ hex", &["ABC", "abc"]),
            ("/^(?-i)A(?i)b$/ inl", &["AB", "ab", "Ab"]),
            ("/^(?-i:A)b$/ inl2", &["AB", "aB", "Ab"]),
            ("/^(?x: a b )c$/ inl3", &["abc", "a bc"]),
            ("/b/A anch", &["ab", "bc"]),
            ("/^a.b$/s nodot", &["a\nb", "axb"]),
            ("/^a.b$/ dot", &["a\nb"]),
            ("/^b$/m ml", &["a\nb\nc", "b"]),
            ("/a$/E dollar", &["a", "ba"]),
            ("/^[[:^alpha:]]+$/ na", &["12", "a1"]),
            ("/^[\\d]+$/ dd", &["12", "d"]),
            ("/^[\\x41-\\x43]+$/ hr", &["abc", "ABC", "d"]),
            ("/\\bmail\\B/ wb", &["mailer", "mail x", "email"]),
            ("/^\\Aab\\z/ az", &["ab", "abc"]),
            ("/^ab\\Z/ zz", &["ab", "abc"]),
            ("/^é$/ u", &["é", "É"]),
            ("/^.$/ onebyte", &["é", "e"]),
            ("/(?i)^É$/ ci8", &["é", "É"]),
            ("/x(a|ab)/ [$1]", &["xab"]),
            ("/^(x)|(y)$/ [$1][$2]", &["x", "y"]),
            ("! ! /x/ dneg", &["x", "y"]),
            ("/^(\\d+)\\.(\\d+)$/ ${2}.$1", &["12.34", "1.x"]),
            (
                "/^[^@]+@(?:[^.]+\\.)*?([^.]+)\\.com$/ $1",
                &["u@a.b.example.com", "u@x.org"],
            ),
            ("/^\\d{3}\\s?\\w+$/ mix", &["123 abc", "12 abc", "123abc"]),
            ("/^a\\.b$/ esc", &["a.b", "axb"]),
            ("/^\\/\\$\\^$/ punct", &["/$^", "x"]),
            ("/^[x-~]$/ crange", &["[", "X", "a", "~"]),
            ("/^[A-z]$/ crange2", &["_", "q", "Q"]),
            ("/^[^a]$/ neg", &["A", "b", "\n"]),
            ("/^[^a]$/m negm", &["\n", "b"]),
        ],
    );
}
