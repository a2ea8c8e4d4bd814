//! Shared by the table targets: the tables read files, so the input is
//! written to a file on tmpfs (one per process and kind) and opened through
//! the real `deliver::policy::maps::open`.
#![allow(dead_code)]

use deliver::policy::maps::{self, OpenOptions, Table};
use std::path::PathBuf;

pub fn scratch(name: &str) -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("deliver-fuzz-{}-{name}", std::process::id()))
}

/// Writes `data` as the table source and opens `kind:path`.
pub fn open(kind: &str, data: &[u8]) -> Option<Box<dyn Table>> {
    let path = scratch(kind);
    let file = if kind == "cdb" {
        // cdb:NAME reads NAME.cdb.
        path.with_extension("cdb")
    } else {
        path.clone()
    };
    std::fs::write(&file, data).expect("write scratch table");
    let spec = format!("{kind}:{}", path.display());
    match maps::open(&spec, &OpenOptions::default()) {
        Ok(t) => Some(t),
        Err(e) => {
            // Errors name the file and stay on one line.
            let s = e.to_string();
            assert!(!s.contains('\n'), "multi-line error: {s:?}");
            None
        }
    }
}

/// Keys to look up: a few fixed ones, and every line and word of the input
/// (so that entries the fuzzer writes are found).
pub fn keys(data: &[u8]) -> Vec<String> {
    let mut k: Vec<String> = [
        "user@example.com",
        "user+ext@example.com",
        "example.com",
        "192.0.2.7",
        "2001:db8::1",
        "<>",
        "",
        "UPPER@EXAMPLE.COM",
        "straße@example.de",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let text = String::from_utf8_lossy(data);
    for line in text.lines().take(16) {
        k.push(line.to_string());
        if let Some(w) = line.split_whitespace().next() {
            k.push(w.to_string());
        }
    }
    k
}

/// Opens and looks up every key; results are checked for what a table
/// promises: `results()` lines are in range.
pub fn exercise(kind: &str, data: &[u8]) {
    let Some(t) = open(kind, data) else { return };
    let _ = t.note();
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    for (line, _r) in t.results() {
        assert!(line >= 1 && line <= lines, "result line {line} of {lines}");
    }
    for key in keys(data) {
        let _ = t.lookup(&key);
    }
}
