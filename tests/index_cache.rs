//! The index cache of large text tables: build, reuse, invalidation,
//! fallback, concurrency. Plus an ignored measurement:
//! `cargo test --release --test index_cache -- --ignored --nocapture`.

mod util;

use deliver::policy::maps::index::THRESHOLD;
use deliver::policy::maps::texthash::TextHash;
use deliver::policy::maps::{open, OpenOptions, Table};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use util::{chown_tree, is_root, msg, Home, BIN};

/// A source file comfortably above the threshold, with a cool mtime.
fn write_source(path: &Path, tag: &str, lines: usize, mtime: SystemTime) {
    let mut s = String::with_capacity(lines * 40);
    for i in 0..lines {
        s.push_str(&format!("User{i}@Example.COM {tag} value {i}\n"));
    }
    s.push_str("dup@example.com first\nDUP@example.com second\n");
    fs::write(path, s).unwrap();
    set_mtime(path, mtime);
}

fn set_mtime(path: &Path, t: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn ago(secs: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(secs)
}

fn cdb_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "cdb"));
    v.sort();
    v
}

fn tmp_files(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
                .collect()
        })
        .unwrap_or_default()
}

/// The same directory for both kinds of source: as root the tables (root's)
/// are indexed in the system directory, as a user in the user's own.
fn opts(dir: &Path) -> OpenOptions {
    OpenOptions {
        cache_dir: Some(dir.to_path_buf()),
        system_cache_dir: Some(dir.to_path_buf()),
        home: None,
    }
}

#[test]
fn build_then_reuse_without_parsing() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("access");
    let cache = d.path().join("cache").join("maps");
    let t0 = ago(100);
    write_source(&src, "old", 5000, t0);
    fs::set_permissions(&src, fs::Permissions::from_mode(0o640)).unwrap();
    assert!(fs::metadata(&src).unwrap().len() > THRESHOLD);

    // First open: parses, answers from memory, writes the index.
    let t = TextHash::open("texthash:access", &src, &opts(&cache)).unwrap();
    assert!(!t.is_indexed());
    assert_eq!(
        t.lookup("user42@example.com").unwrap().as_deref(),
        Some("old value 42")
    );
    let files = cdb_files(&cache);
    assert_eq!(files.len(), 1, "{files:?}");
    let idx = files[0].clone();
    // A user's own cache: 0700 and 0600. Root's is the system cache, read by
    // every user: 0755, and the index is as readable as its source (0640).
    let (dir_mode, idx_mode) = if is_root() {
        (0o755, 0o640)
    } else {
        (0o700, 0o600)
    };
    assert_eq!(fs::metadata(&cache).unwrap().mode() & 0o777, dir_mode);
    assert_eq!(fs::metadata(&idx).unwrap().mode() & 0o777, idx_mode);
    let idx_mtime = fs::metadata(&idx).unwrap().modified().unwrap();
    let idx_ino = fs::metadata(&idx).unwrap().ino();

    // Second open: maps the index.
    let t = TextHash::open("texthash:access", &src, &opts(&cache)).unwrap();
    assert!(t.is_indexed());
    assert_eq!(
        t.lookup("USER42@example.com").unwrap().as_deref(),
        Some("old value 42")
    );
    assert_eq!(
        t.lookup("dup@EXAMPLE.com").unwrap().as_deref(),
        Some("first")
    );
    assert_eq!(t.lookup("nobody@example.com").unwrap(), None);
    assert!(
        t.note().unwrap().contains("duplicate entry"),
        "notes survive the index"
    );

    // Proof that the second open did not parse: rewrite the source in place
    // with other content of the same size and restore its mtime, so its
    // identity (dev, inode, size, mtime) is unchanged. An open that parsed
    // would see "new"; an open from the index still answers "old".
    write_source(&src, "new", 5000, t0);
    let t = TextHash::open("texthash:access", &src, &opts(&cache)).unwrap();
    assert!(t.is_indexed());
    assert_eq!(
        t.lookup("user42@example.com").unwrap().as_deref(),
        Some("old value 42")
    );
    let m = fs::metadata(&idx).unwrap();
    assert_eq!(
        m.modified().unwrap(),
        idx_mtime,
        "the index was not rewritten"
    );
    assert_eq!(m.ino(), idx_ino);
    assert_eq!(cdb_files(&cache), vec![idx.clone()]);

    // Through open() and a hash: spec the same cache is used.
    let spec = format!("hash:{}", src.display());
    let h = open(&spec, &opts(&cache)).unwrap();
    assert_eq!(
        h.lookup("user7@example.com").unwrap().as_deref(),
        Some("old value 7")
    );
    assert!(h.note().unwrap().contains("read from the source text"));
}

#[test]
fn a_changed_source_gets_a_new_index_and_the_old_one_goes() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("access");
    let cache = d.path().join("cache");
    write_source(&src, "old", 4000, ago(200));
    TextHash::open("texthash:access", &src, &opts(&cache)).unwrap();
    let first = cdb_files(&cache);
    assert_eq!(first.len(), 1);
    assert!(TextHash::open("texthash:access", &src, &opts(&cache))
        .unwrap()
        .is_indexed());

    // Same content, new mtime: the old index must not be used.
    set_mtime(&src, ago(100));
    let t = TextHash::open("texthash:access", &src, &opts(&cache)).unwrap();
    assert!(!t.is_indexed(), "a touched source is parsed again");
    let second = cdb_files(&cache);
    assert_eq!(second.len(), 1, "the stale index is removed: {second:?}");
    assert_ne!(first, second);

    // New content (and size): new answers, new index.
    write_source(&src, "new", 4100, ago(50));
    let t = TextHash::open("texthash:access", &src, &opts(&cache)).unwrap();
    assert_eq!(
        t.lookup("user4050@example.com").unwrap().as_deref(),
        Some("new value 4050")
    );
    let t = TextHash::open("texthash:access", &src, &opts(&cache)).unwrap();
    assert!(t.is_indexed());
    assert_eq!(
        t.lookup("user1@example.com").unwrap().as_deref(),
        Some("new value 1")
    );
    assert_eq!(cdb_files(&cache).len(), 1);

    // Replaced by rename (new inode, same size and mtime): new index too.
    let other = d.path().join("access.new");
    write_source(&other, "ren", 4100, ago(50));
    fs::rename(&other, &src).unwrap();
    let t = TextHash::open("texthash:access", &src, &opts(&cache)).unwrap();
    assert!(!t.is_indexed());
    assert_eq!(
        t.lookup("user1@example.com").unwrap().as_deref(),
        Some("ren value 1")
    );
}

#[test]
fn small_and_hot_sources_are_not_indexed() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let small = d.path().join("small");
    write_source(&small, "s", 10, ago(100));
    TextHash::open("texthash:small", &small, &opts(&cache)).unwrap();
    assert!(cdb_files(&cache).is_empty());

    let hot = d.path().join("hot");
    write_source(&hot, "h", 5000, SystemTime::now());
    let t = TextHash::open("texthash:hot", &hot, &opts(&cache)).unwrap();
    assert_eq!(
        t.lookup("user3@example.com").unwrap().as_deref(),
        Some("h value 3")
    );
    assert!(cdb_files(&cache).is_empty());
    assert!(
        t.note().unwrap().contains("modified less than"),
        "{:?}",
        t.note()
    );
}

#[test]
fn unusable_cache_falls_back_to_parsing() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("access");
    write_source(&src, "v", 5000, ago(100));
    let check = |o: &OpenOptions, why: &str| {
        let t = open(&format!("texthash:{}", src.display()), o).unwrap();
        assert_eq!(
            t.lookup("user9@example.com").unwrap().as_deref(),
            Some("v value 9"),
            "{why}"
        );
        let n = t.note().unwrap_or_default();
        assert!(n.contains("index cache not used"), "{why}: {n}");
    };

    // A regular file where the directory should be: cannot be created.
    let blocker = d.path().join("blocker");
    fs::write(&blocker, "x").unwrap();
    check(&opts(&blocker.join("cache")), "parent is a file");
    check(&opts(&blocker), "cache dir is a file");

    // A directory others can write to: refused (a forged index is possible).
    let open_dir = d.path().join("world");
    fs::create_dir(&open_dir).unwrap();
    fs::set_permissions(&open_dir, fs::Permissions::from_mode(0o777)).unwrap();
    check(&opts(&open_dir), "world-writable dir");
    assert!(cdb_files(&open_dir).is_empty());

    // A read-only directory. Root ignores mode bits, so this case only means
    // something for other users; /proc is read-only for everybody.
    check(
        &opts(Path::new("/proc/self/deliver-cache")),
        "read-only file system",
    );
    let uid = fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
    if uid != 0 {
        let ro = d.path().join("ro");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
        check(&opts(&ro), "mode 0500 dir");
    }

    // A corrupt index is ignored and rebuilt, never fatal.
    let cache = d.path().join("cache");
    TextHash::open("t", &src, &opts(&cache)).unwrap();
    let idx = cdb_files(&cache).pop().unwrap();
    fs::write(&idx, b"garbage").unwrap();
    let t = TextHash::open("t", &src, &opts(&cache)).unwrap();
    assert!(!t.is_indexed());
    assert_eq!(
        t.lookup("user9@example.com").unwrap().as_deref(),
        Some("v value 9")
    );
    let t = TextHash::open("t", &src, &opts(&cache)).unwrap();
    assert!(t.is_indexed(), "rebuilt");
    // An index writable by others is not trusted.
    fs::set_permissions(&idx, fs::Permissions::from_mode(0o666)).unwrap();
    assert!(!TextHash::open("t", &src, &opts(&cache))
        .unwrap()
        .is_indexed());
}

#[test]
fn concurrent_builders_agree() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("access");
    let cache = d.path().join("cache");
    write_source(&src, "c", 20000, ago(100));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let src = src.clone();
            let cache = cache.clone();
            std::thread::spawn(move || {
                let t = TextHash::open("t", &src, &opts(&cache)).unwrap();
                for i in (0..20000).step_by(997) {
                    assert_eq!(
                        t.lookup(&format!("user{i}@example.com")).unwrap(),
                        Some(format!("c value {i}"))
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(cdb_files(&cache).len(), 1);
    assert!(tmp_files(&cache).is_empty(), "no temporary files left");
    assert!(TextHash::open("t", &src, &opts(&cache))
        .unwrap()
        .is_indexed());
}

/// A table above the threshold whose entry for `sender@example.org` is
/// `result`, padded so that every version has the same size.
fn big_text(result: &str) -> String {
    let mut s = format!("sender@example.org {result:<30}\n");
    for i in 0..1000 {
        s.push_str(&format!("user{i}@example.net OK\n"));
    }
    assert!(s.len() as u64 > THRESHOLD);
    s
}

/// `deliver check` of the home's system file, as root or as the user.
fn check_as(h: &Home, root: bool) -> util::Run {
    let mut c = std::process::Command::new(BIN);
    c.arg("check")
        .arg("--rules")
        .arg(h.system_rules.as_ref().unwrap())
        .env_clear()
        .current_dir("/");
    if is_root() && !root {
        use std::os::unix::process::CommandExt;
        c.uid(h.uid).gid(h.gid);
    }
    util::run_cmd(c, b"")
}

const TEST_ARGS: [&str; 5] = [
    "--test",
    "-f",
    "sender@example.org",
    "-a",
    "user@example.com",
];

/// The SECURITY.md gap's fix, end to end: a root-owned table named by the
/// system file is indexed only by `deliver check` run as root, into the
/// system cache directory, and deliveries as the user read that index.
#[test]
fn check_as_root_writes_the_system_index_and_deliveries_read_it() {
    if !is_root() {
        eprintln!("skipped: needs root to run check as root and deliver as a user");
        return;
    }
    let mut h = Home::new();
    let syscache = h._dir.path().join("var-cache-deliver");
    let table = h.file("sender_access", &big_text("REJECT system says no"));
    fs::set_permissions(&table, fs::Permissions::from_mode(0o644)).unwrap();
    set_mtime(&table, ago(100));
    let own = h.home.join(".cache").join("deliver");
    h.system(&format!(
        "[settings]\nsystem_cache_dir = \"{}\"\nmap_cache_dir = \"{}\"\n[access]\nsender = [\"texthash:{}\"]\n",
        syscache.display(),
        own.display(),
        table.display()
    ));
    let mail = msg("Subject: x\n", "x\n");

    // No index yet: the delivery parses (same answer), writes nothing, and
    // the note says how to build it.
    let t = h.run(&TEST_ARGS, &mail);
    assert_eq!(t.code, 0, "{}", t.stderr);
    assert!(t.stdout.contains("system says no"), "{}", t.stdout);
    assert!(t.stdout.contains("no index of"), "{}", t.stdout);
    assert!(
        t.stdout.contains("`deliver check`, run as root"),
        "{}",
        t.stdout
    );
    assert!(
        !syscache.exists(),
        "a delivery never creates the system cache"
    );
    assert!(
        !own.exists(),
        "nor indexes root's table in the user's cache"
    );
    // The user's check says the same, and is clean.
    let r = check_as(&h, false);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("no index of"), "{}", r.stdout);
    assert!(!syscache.exists());

    // Root's check writes it, readable by all.
    let r = check_as(&h, true);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let want = format!(
        "texthash:{}: index written: {}/",
        table.display(),
        syscache.display()
    );
    assert!(r.stdout.contains(&want), "want {want}\n{}", r.stdout);
    let dm = fs::metadata(&syscache).unwrap();
    assert_eq!((dm.uid(), dm.mode() & 0o777), (0, 0o755));
    let files = cdb_files(&syscache);
    assert_eq!(files.len(), 1, "{files:?}");
    let im = fs::metadata(&files[0]).unwrap();
    assert_eq!((im.uid(), im.mode() & 0o777), (0, 0o644));

    // The user's deliveries read it.
    let t = h.run(&TEST_ARGS, &mail);
    let want = format!("indexed: answered from {}", files[0].display());
    assert!(t.stdout.contains(&want), "want {want}\n{}", t.stdout);
    let r = h.deliver(&mail);
    assert_eq!(r.code, 77, "{}", r.stderr);
    assert!(r.first_line().contains("system says no"), "{}", r.stderr);
    assert!(!own.exists());
    let r = check_as(&h, true);
    assert!(r.stdout.contains("indexed: answered from"), "{}", r.stdout);

    // Edited just now: root's check waits out the cool-down and writes the
    // new index; the old one goes.
    fs::write(&table, big_text("DISCARD edited")).unwrap();
    let r = check_as(&h, true);
    assert!(r.stdout.contains("index written:"), "{}", r.stdout);
    let now = cdb_files(&syscache);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now, files);
    let t = h.run(&TEST_ARGS, &mail);
    assert!(t.stdout.contains("indexed: answered from"), "{}", t.stdout);
    assert_eq!(h.deliver(&mail).code, 0);
    assert_eq!(h.count(), 0, "discarded");
}

/// The user's own table (here named by the system file, in the place
/// map_cache_dir names, as the harness's user has no home of its own): the
/// user indexes it there, as before; the system cache is not touched.
#[test]
fn a_users_own_table_is_indexed_in_their_own_cache() {
    let mut h = Home::new();
    let syscache = h._dir.path().join("var-cache-deliver");
    let own = h.home.join(".cache").join("deliver");
    let table = h.file("mine", &big_text("FOLDER Mine"));
    chown_tree(&table, h.uid, h.gid);
    set_mtime(&table, ago(100));
    h.system(&format!(
        "[settings]\nsystem_cache_dir = \"{}\"\nmap_cache_dir = \"{}\"\n[access]\nsender = [\"texthash:{}\"]\n",
        syscache.display(),
        own.display(),
        table.display()
    ));
    let mail = msg("Subject: x\n", "x\n");
    let t = h.run(&TEST_ARGS, &mail);
    assert!(
        t.stdout
            .contains(&format!("index written: {}/", own.display())),
        "{}",
        t.stdout
    );
    let files = cdb_files(&own);
    assert_eq!(files.len(), 1, "{files:?}");
    let im = fs::metadata(&files[0]).unwrap();
    assert_eq!((im.uid(), im.mode() & 0o777), (h.uid, 0o600));
    assert_eq!(fs::metadata(&own).unwrap().mode() & 0o777, 0o700);
    let t = h.run(&TEST_ARGS, &mail);
    assert!(
        t.stdout
            .contains(&format!("indexed: answered from {}", files[0].display())),
        "{}",
        t.stdout
    );
    assert_eq!(h.deliver(&mail).code, 0);
    assert_eq!(h.delivered()["Mine"].len(), 1);
    assert!(!syscache.exists(), "the system cache is not touched");
}

/// An index root wrote of the user's own table is trusted (root may index
/// anything). It holds another version of the table with the same identity,
/// so the answer shows which one was used: the index's.
#[test]
fn roots_index_of_a_users_own_table_is_trusted() {
    if !is_root() {
        eprintln!("skipped: needs root to write an index of another user's table");
        return;
    }
    use deliver::policy::maps::{index, texthash::TextHash};
    let mut h = Home::new();
    let own = h.home.join(".cache").join("deliver");
    let cool = ago(100);
    let table = h.file("mine", &big_text("FOLDER Root"));
    fs::set_permissions(&table, fs::Permissions::from_mode(0o644)).unwrap();
    chown_tree(&table, h.uid, h.gid);
    set_mtime(&table, cool);
    let scratch = h._dir.path().join("scratch");
    let o = OpenOptions {
        cache_dir: None,
        system_cache_dir: Some(scratch.clone()),
        home: None,
    };
    TextHash::open("t", &table, &o).unwrap();
    let meta = fs::metadata(&table).unwrap();
    let built = index::index_path(index::MAP, &scratch, &table, &meta);
    fs::write(&table, big_text("FOLDER User")).unwrap();
    set_mtime(&table, cool);
    fs::create_dir_all(&own).unwrap();
    chown_tree(&h.home, h.uid, h.gid);
    fs::set_permissions(&own, fs::Permissions::from_mode(0o700)).unwrap();
    let placed = own.join(built.file_name().unwrap());
    fs::copy(&built, &placed).unwrap();
    let im = fs::metadata(&placed).unwrap();
    assert_eq!((im.uid(), im.mode() & 0o777), (0, 0o644));
    h.system(&format!(
        "[settings]\nmap_cache_dir = \"{}\"\n[access]\nsender = [\"texthash:{}\"]\n",
        own.display(),
        table.display()
    ));
    let mail = msg("Subject: x\n", "x\n");
    let t = h.run(&TEST_ARGS, &mail);
    assert!(
        t.stdout
            .contains(&format!("indexed: answered from {}", placed.display())),
        "{}",
        t.stdout
    );
    assert_eq!(h.deliver(&mail).code, 0);
    assert_eq!(
        h.delivered().keys().collect::<Vec<_>>(),
        vec!["Root"],
        "answered from root's index"
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The measurement for the report. Not a test of speed: it asserts nothing
/// about time, only prints.
#[test]
#[ignore]
fn measure_open_and_lookup() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let big = d.path().join("big");
    let mut s = String::with_capacity(45_000_000);
    for i in 0..1_000_000u32 {
        s.push_str(&format!("user{i}@domain{}.example OK {i}\n", i % 1000));
    }
    fs::write(&big, &s).unwrap();
    set_mtime(&big, ago(100));
    let empty = d.path().join("empty");
    fs::write(&empty, "").unwrap();
    let spec_big = format!("texthash:{}", big.display());
    let spec_empty = format!("texthash:{}", empty.display());
    let o = opts(&cache);

    let t = Instant::now();
    let first = open(&spec_big, &o).unwrap();
    let build = t.elapsed();
    drop(first);
    let t = Instant::now();
    let parsed = open(&spec_big, &OpenOptions::default()).unwrap();
    assert_eq!(
        parsed
            .lookup("user999999@domain999.example")
            .unwrap()
            .as_deref(),
        Some("OK 999999")
    );
    let parse_only = t.elapsed();
    drop(parsed);

    let runs = 31;
    let mut warm = Vec::new();
    let mut bare = Vec::new();
    for i in 0..runs {
        let t = Instant::now();
        let tb = open(&spec_big, &o).unwrap();
        let r = tb
            .lookup(&format!(
                "user{}@domain{}.example",
                i * 31337,
                (i * 31337) % 1000
            ))
            .unwrap();
        warm.push(t.elapsed());
        assert!(r.is_some());
        let t = Instant::now();
        let te = open(&spec_empty, &o).unwrap();
        let r = te.lookup("user1@domain1.example").unwrap();
        bare.push(t.elapsed());
        assert!(r.is_none());
    }
    // Threshold justification: parse cost of sources around the threshold.
    let mut small_results = Vec::new();
    for kib in [4u64, 16, 64] {
        let small = d.path().join(format!("small{kib}"));
        let lines = (kib as usize * 1024) / 32;
        let mut s = String::new();
        for i in 0..lines {
            s.push_str(&format!("user{i}@domain.example OK {i:06}\n"));
        }
        fs::write(&small, &s).unwrap();
        let mut small_t = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let ts = open(
                &format!("texthash:{}", small.display()),
                &OpenOptions::default(),
            )
            .unwrap();
            ts.lookup("user5@domain.example").unwrap();
            small_t.push(t.elapsed());
        }
        small_results.push((fs::metadata(&small).unwrap().len(), lines, median(small_t)));
    }
    println!(
        "1,000,000-line texthash ({} bytes):",
        fs::metadata(&big).unwrap().len()
    );
    println!("  first open (parse + write index): {build:?}");
    println!("  open + lookup without cache (parse): {parse_only:?}");
    println!(
        "  open + lookup, warm index, median of {runs}: {:?}",
        median(warm)
    );
    println!(
        "  open + lookup, empty map, median of {runs}: {:?}",
        median(bare)
    );
    for (bytes, lines, t) in small_results {
        println!("{bytes}-byte texthash ({lines} lines), open + lookup without cache, median of {runs}: {t:?}");
    }
}

/// Pattern tables are compiled at every open (no cache can hold a compiled
/// regex). Prints what that costs; asserts nothing about time.
#[test]
#[ignore]
fn measure_pattern_table_open() {
    let d = tempfile::tempdir().unwrap();
    for n in [10usize, 100, 1000] {
        let mut re = String::new();
        let mut cidr = String::new();
        for i in 0..n {
            re.push_str(&format!(
                "/^([a-z0-9.]+)\\+spam{i}@(sub\\.)?example{i}\\.(com|org)$/ REJECT $1 rule {i}\n"
            ));
            cidr.push_str(&format!(
                "10.{}.{}.0/24 REJECT rule {i}\n",
                i / 256 % 256,
                i % 256
            ));
        }
        for (kind, text) in [("regexp", &re), ("pcre", &re), ("cidr", &cidr)] {
            let p = d.path().join(format!("{kind}{n}"));
            fs::write(&p, text).unwrap();
            let spec = format!("{kind}:{}", p.display());
            let mut times = Vec::new();
            for _ in 0..9 {
                let t = Instant::now();
                let table = open(&spec, &OpenOptions::default()).unwrap();
                assert_eq!(table.lookup("someone@example.net").unwrap(), None);
                times.push(t.elapsed());
            }
            println!(
                "{kind:6} {n:5} rules: open + 1 lookup, median of 9: {:?}",
                median(times)
            );
        }
    }
}
