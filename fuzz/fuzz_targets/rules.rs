//! The rules parser (`deliver::policy::rules::load_str`), as system and user file.
//! Invariants: never panics; every error has a message and, when it has a
//! position, one inside the text.
#![no_main]

use deliver::policy::maps::OpenOptions;
use deliver::policy::rules::{self, Origin};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Tables named in the text are opened read-only, relative to a directory
    // that does not exist; no index cache is written.
    let opts = OpenOptions::default();
    for origin in [Origin::System, Origin::User] {
        match rules::load_str(text, Path::new("/nonexistent/fuzz.toml"), origin, &opts) {
            Ok(layer) => {
                let _ = layer.uses_body();
            }
            Err(diags) => {
                assert!(!diags.is_empty());
                let lines = text.lines().count().max(1) + 1;
                for d in &diags {
                    let s = d.to_string();
                    assert!(!s.is_empty());
                    if d.file == Path::new("/nonexistent/fuzz.toml") {
                        assert!(d.line <= lines, "{s}: line past the end of the text");
                    }
                }
            }
        }
    }
});
