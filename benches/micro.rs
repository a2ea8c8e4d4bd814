//! Micro-benchmarks of the hot paths of one delivery (criterion, no plots).
//!
//!     cargo bench --bench micro                 # all
//!     cargo bench --bench micro -- decide       # a filter
//!     python3 benches/criterion_medians.py      # the medians, as a table
//!
//! `decide/...` reuses the patterns' matching caches from one iteration to
//! the next; a delivery uses each pattern once, which `decide_first_use/...`
//! measures.
//!
//! The messages are built here, in the shape of ../shared/bench's corpus
//! (a From_ line, Received, spam headers, List-Id...), so the benchmark needs
//! nothing outside the repository. The 1,000,000-entry map is written to a
//! temporary directory once (about 40 MB) and indexed in its cache directory
//! before it is measured.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use deliver::input::envelope::{Envelope, Flags};
use deliver::input::message::{read_head, Head, Headers, Limits};
use deliver::policy::access::{self, AccessOptions};
use deliver::policy::decide::{decide, Input};
use deliver::policy::maps::{self, OpenOptions};
use deliver::policy::rules::{self, cache, Origin};
use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

const W1: &str = include_str!("w1.toml");

/// A message as local(8) hands it over; `kind` picks the verdict headers.
fn message(kind: &str, subject: &str) -> Vec<u8> {
    let mut m = String::from(
        "From user42@bulk-sender.example  Sat Nov 21 10:00:00 2026\n\
         Return-Path: <user42@bulk-sender.example>\n\
         X-Original-To: alice@mx.example.test\n\
         Delivered-To: alice@mx.example.test\n\
         Received: from relay.bulk-sender.example (relay.bulk-sender.example [198.51.100.7])\n\
         \tby mx.example.test (Postfix) with ESMTPS id 0000002A\n\
         \tfor <alice@mx.example.test>; Sat, 21 Nov 2026 10:00:00 +0000 (UTC)\n\
         Received: from [10.0.42.38] by relay.bulk-sender.example; Sat, 21 Nov 2026 10:00:00 +0000\n",
    );
    match kind {
        "spam" => m.push_str(
            "X-Spam-Flag: YES\nX-Spam-Score: 14.2\nX-Spam-Level: **************\n\
             X-Spam-Status: Yes, score=14.2 required=5.0 tests=BAYES_99,HTML_MESSAGE,\n\
             \tRDNS_NONE,URIBL_BLOCKED autolearn=no version=4.0.1\n",
        ),
        "list" => m.push_str(
            "X-Spam-Flag: NO\nX-Spam-Score: 0.4\n\
             X-Spam-Status: No, score=0.4 required=5.0 tests=DKIM_SIGNED,DKIM_VALID autolearn=ham version=4.0.1\n\
             List-Id: Discussion <rust-users.lists.example.org>\n\
             List-Unsubscribe: <mailto:leave@rust-users.lists.example.org>\nPrecedence: list\n",
        ),
        _ => m.push_str(
            "X-Spam-Flag: NO\nX-Spam-Score: 1.1\n\
             X-Spam-Status: No, score=1.1 required=5.0 tests=DKIM_SIGNED,DKIM_VALID autolearn=ham version=4.0.1\n",
        ),
    }
    m.push_str(&format!(
        "From: \"Quarterly Report\" <user42@bulk-sender.example>\nTo: <alice@mx.example.test>\n\
         Subject: {subject}\nDate: Sat, 21 Nov 2026 10:00:00 +0000\n\
         Message-ID: <42.5eed5eed5eed@bulk-sender.example>\nMIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n\n"
    ));
    for _ in 0..40 {
        m.push_str("mail delivery server filter rule junk inbox report meeting invoice project\n");
    }
    m.into_bytes()
}

fn head_of(msg: &[u8]) -> Head {
    read_head(&mut &msg[..], &Limits::default()).expect("read_head")
}

fn envelope(head: &Head) -> Envelope {
    Envelope::resolve(
        &Flags::default(),
        &|_| None,
        head.from_line.as_deref(),
        &head.headers,
    )
}

fn bench_headers(c: &mut Criterion) {
    let ham = message("ham", "quarterly budget meeting");
    let spam = message(
        "spam",
        "=?UTF-8?B?R3LDvMOfZSB2aWFncmEgY2FzaW5vIHdpbm5lcg==?=",
    );
    c.bench_function("read_head/ham", |b| {
        b.iter(|| read_head(&mut black_box(&ham[..]), &Limits::default()).unwrap())
    });
    c.bench_function("read_head/spam_rfc2047", |b| {
        b.iter(|| read_head(&mut black_box(&spam[..]), &Limits::default()).unwrap())
    });
    let h = head_of(&spam);
    let block = &h.bytes[..h.header_len];
    c.bench_function("Headers::parse/spam_rfc2047", |b| {
        b.iter(|| Headers::parse(black_box(block)))
    });
}

fn bench_rules(c: &mut Criterion) {
    let opts = OpenOptions::default();
    let path = Path::new("benches/w1.toml");
    c.bench_function("rules::load_str/w1", |b| {
        b.iter(|| rules::load_str(black_box(W1), path, Origin::System, &opts).unwrap())
    });
    let layer = rules::load_str(W1, path, Origin::System, &opts).unwrap();
    let default = rules::default_layer();
    let cached = CachedRules::new();
    for (name, msg) in [
        ("ham", message("ham", "quarterly budget meeting")),
        ("spam", message("spam", "viagra casino winner")),
        ("list", message("list", "patch review")),
        (
            "scored",
            message("ham", "free offer: verify your account, click"),
        ),
    ] {
        let head = head_of(&msg);
        let env = envelope(&head);
        let input = Input {
            envelope: &env,
            headers: &head.headers,
            header_block: &head.bytes[..head.header_len],
            body_window: &msg[head.bytes.len()..],
            size: msg.len() as u64,
            limit_hit: None,
            filters_done: &[],
            duplicate: None,
            today: 20270101,
        };
        c.bench_function(&format!("decide/w1/{name}"), |b| {
            b.iter(|| decide(black_box(&input), &layer, None))
        });
        // As in a delivery: every pattern matches for the first time, so
        // each one first builds its matching cache. The freshly loaded
        // layer is made outside the timing.
        c.bench_function(&format!("decide_first_use/w1/{name}"), |b| {
            b.iter_batched(
                || rules::load_str(W1, path, Origin::System, &opts).unwrap(),
                |fresh| decide(black_box(&input), &fresh, None),
                BatchSize::PerIteration,
            )
        });
        // What a delivery does with the rules: open the file, load it from
        // the rules cache (written before the timing), compile the rules
        // this message's headers can trigger, decide.
        c.bench_function(&format!("delivery_rules/w1/{name}"), |b| {
            b.iter(|| {
                let mut layer = cached.load();
                let deferred = layer.deferred.take().expect("loaded from the cache");
                deferred.complete(&mut layer, &head.headers).unwrap();
                decide(black_box(&input), &layer, None)
            })
        });
        if name == "spam" {
            c.bench_function("decide/default/spam", |b| {
                b.iter(|| decide(black_box(&input), &default, None))
            });
        }
    }
}

/// W1's rules in a file old enough to be cached, and its rules cache,
/// written by one full load (as the first delivery after a change does).
struct CachedRules {
    _dir: tempfile::TempDir,
    path: PathBuf,
    opts: OpenOptions,
}

impl CachedRules {
    fn new() -> CachedRules {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w1.toml");
        std::fs::write(&path, W1).unwrap();
        set_old(&path);
        let cache = dir.path().join("cache");
        let opts = OpenOptions {
            cache_dir: Some(cache.clone()),
            system_cache_dir: Some(cache.clone()),
            home: None,
        };
        let rules = CachedRules {
            _dir: dir,
            path,
            opts,
        };
        assert!(
            rules.load().deferred.is_none(),
            "the first load is a full one"
        );
        assert!(
            std::fs::read_dir(&cache).unwrap().count() > 0,
            "no rules cache written"
        );
        rules
    }

    /// Opens the file and loads it as a delivery does: from the cache
    /// when there is one, the rules left deferred.
    fn load(&self) -> rules::Layer {
        let file = File::open(&self.path).unwrap();
        let meta = file.metadata().unwrap();
        cache::load(file, &meta, &self.path, Origin::System, &self.opts, true)
            .unwrap_or_else(|_| panic!("load {}", self.path.display()))
    }
}

/// Sets the mtime of `path` a minute back: caches and indexes are only
/// written for sources older than two seconds.
fn set_old(path: &Path) {
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(old)
        .unwrap();
}

/// A texthash source of `n` entries, none of which is a corpus sender, plus
/// `hit@bench.example`.
fn write_map(path: &Path, n: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "hit@bench.example REJECT").unwrap();
    for i in 0..n {
        writeln!(f, "sender{i}@domain{}.example OK", i % 5000).unwrap();
    }
    f.flush().unwrap();
    set_old(path);
}

fn bench_maps(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    let big = dir.path().join("big");
    write_map(&small, 100);
    write_map(&big, 1_000_000);
    // Both directories: as root the map (root's) is indexed in the system one.
    let cached = OpenOptions {
        cache_dir: Some(dir.path().join("cache")),
        system_cache_dir: Some(dir.path().join("cache")),
        home: None,
    };
    let small_spec = format!("texthash:{}", small.display());
    let big_spec = format!("texthash:{}", big.display());
    // Build the index once (the cold case is measured by benches/maps.sh).
    maps::open(&big_spec, &cached).unwrap();

    c.bench_function("maps::open/texthash_100", |b| {
        b.iter(|| maps::open(black_box(&small_spec), &cached).unwrap())
    });
    c.bench_function("maps::open/texthash_1M_indexed", |b| {
        b.iter(|| maps::open(black_box(&big_spec), &cached).unwrap())
    });
    let aopts = AccessOptions::default();
    for (name, spec) in [
        ("texthash_100", &small_spec),
        ("texthash_1M_indexed", &big_spec),
    ] {
        let table = maps::open(spec, &cached).unwrap();
        c.bench_function(&format!("Table::lookup/{name}/hit"), |b| {
            b.iter(|| table.lookup(black_box("hit@bench.example")).unwrap())
        });
        c.bench_function(&format!("Table::lookup/{name}/miss"), |b| {
            b.iter(|| {
                table
                    .lookup(black_box("user42@bulk-sender.example"))
                    .unwrap()
            })
        });
        let tables = vec![table];
        // A miss tries every key: user@domain, the domain and its parents, user@.
        c.bench_function(&format!("access::check_address/{name}/miss"), |b| {
            b.iter_batched(
                Vec::new,
                |mut probes| {
                    access::check_address(
                        &tables,
                        black_box("user42+tag@mail.bulk-sender.example"),
                        &aopts,
                        &mut probes,
                    )
                    .unwrap()
                },
                BatchSize::SmallInput,
            )
        });
    }
}

criterion_group! {
    name = micro;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = bench_headers, bench_rules, bench_maps
}
criterion_main!(micro);
