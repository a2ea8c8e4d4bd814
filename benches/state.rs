//! The per-user state's cost per delivery (src/store/state.rs), with
//! 10,000 entries in each of its directories (criterion, no plots):
//!
//!     cargo bench --bench state
//!
//! - `open`: opening `deliver-state/` and its four directories, and the
//!   sweep check (one claim of the `sweep` marker, not due);
//! - `replied_held`: a vacation claim for a sender already replied to
//!   (the common case: no reply);
//! - `seen_new`: a duplicate claim for a new message (an entry written);
//! - `journal_record`: one side effect recorded;
//! - `delivery`: what one delivery with vacation, duplicates and one
//!   forward does: open, sweep check, seen claim (new), journal check and
//!   record, replied claim (held).
//!
//! The directory is under `target/` (the disk the build uses), not tmpfs.

use criterion::{criterion_group, criterion_main, Criterion};
use deliver::store::maildir::Maildir;
use deliver::store::state::{key, Claim, Kind, State};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

const ENTRIES: u64 = 10_000;

fn setup() -> (tempfile::TempDir, Maildir) {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let d = tempfile::tempdir_in(base).unwrap();
    let md = Maildir::open(&d.path().join("Maildir")).unwrap();
    let st = State::open(&md).unwrap();
    let now = SystemTime::now();
    let later = now + Duration::from_secs(7 * 86400);
    for i in 0..ENTRIES {
        for kind in Kind::ALL {
            let k = key(&[b"fill", &i.to_be_bytes()]);
            assert_eq!(st.claim(kind, &k, later, b"x", now).unwrap(), Claim::Won);
        }
    }
    assert!(st.maybe_sweep(now).is_some());
    (d, md)
}

fn bench(c: &mut Criterion) {
    let (_d, md) = setup();
    let now = SystemTime::now();
    let later = now + Duration::from_secs(7 * 86400);
    let held = key(&[b"fill", &17u64.to_be_bytes()]);
    let n = AtomicU64::new(0);
    let fresh = || key(&[b"new", &n.fetch_add(1, Ordering::Relaxed).to_be_bytes()]);
    let mut g = c.benchmark_group("state");
    g.bench_function("open", |b| {
        b.iter(|| {
            let st = State::open(&md).unwrap();
            black_box(st.maybe_sweep(now));
        })
    });
    let st = State::open(&md).unwrap();
    g.bench_function("replied_held", |b| {
        b.iter(|| {
            let c = st.claim(Kind::Replied, &held, later, b"", now).unwrap();
            assert!(matches!(c, Claim::Held(_)));
        })
    });
    g.bench_function("seen_new", |b| {
        b.iter(|| {
            let c = st
                .claim(Kind::Seen, &fresh(), later, b"owner", now)
                .unwrap();
            assert_eq!(c, Claim::Won);
        })
    });
    g.bench_function("journal_record", |b| {
        b.iter(|| {
            let c = st
                .claim(Kind::Journal, &fresh(), later, b"forward a@b", now)
                .unwrap();
            assert_eq!(c, Claim::Won);
        })
    });
    g.bench_function("delivery", |b| {
        b.iter(|| {
            let st = State::open(&md).unwrap();
            black_box(st.maybe_sweep(now));
            let c = st
                .claim(Kind::Seen, &fresh(), later, b"owner", now)
                .unwrap();
            assert_eq!(c, Claim::Won);
            let j = fresh();
            assert!(!st.exists(Kind::Journal, &j, now).unwrap());
            st.claim(Kind::Journal, &j, later, b"forward a@b", now)
                .unwrap();
            let c = st.claim(Kind::Replied, &held, later, b"", now).unwrap();
            assert!(matches!(c, Claim::Held(_)));
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
