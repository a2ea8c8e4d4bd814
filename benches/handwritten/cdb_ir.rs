//! One cdb operation repeated, for callgrind: `setup` writes a 100,000-key
//! file with deliver's writer; `ours` / `cdb2` look up 100,000 keys (half
//! present) in it; `ours-open` / `cdb2-open` open and map it 1,000 times;
//! `none` only builds the keys. Per operation: (Ir of a mode - Ir of
//! `none`) / count.
use std::hint::black_box;

const N: usize = 100_000;
const OPENS: usize = 1000;

fn main() {
    let mode = std::env::args().nth(1).expect("mode");
    let dir = std::env::temp_dir().join("deliver-cdb-ir");
    let p = dir.join("t.cdb");
    if mode == "setup" {
        std::fs::create_dir_all(&dir).unwrap();
        let f = std::fs::File::create(&p).unwrap();
        let mut w = deliver::policy::maps::cdb::CdbWriter::new(f).unwrap();
        for i in 0..N {
            w.add(
                format!("user{i}@example.com").as_bytes(),
                format!("REJECT {i}").as_bytes(),
            )
            .unwrap();
        }
        w.finish().unwrap();
        return;
    }
    let keys: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let tld = if i % 2 == 0 { "com" } else { "org" };
            format!("user{}@example.{tld}", (i * 7919) % N).into_bytes()
        })
        .collect();
    match mode.as_str() {
        "ours" => {
            let c = deliver::policy::maps::cdb::Cdb::open(&p).unwrap();
            for k in &keys {
                black_box(c.get(black_box(k)).unwrap());
            }
        }
        "cdb2" => {
            let c = cdb2::CDB::open(&p).unwrap();
            for k in &keys {
                black_box(c.get(black_box(k)).map(|r| r.unwrap()));
            }
        }
        "ours-open" => {
            for _ in 0..OPENS {
                black_box(deliver::policy::maps::cdb::Cdb::open(&p).unwrap());
            }
        }
        "cdb2-open" => {
            for _ in 0..OPENS {
                black_box(cdb2::CDB::open(&p).unwrap());
            }
        }
        _ => {}
    }
    black_box(&keys);
}
