//! The `texthash:` table parser and lookup on arbitrary file contents.
#![no_main]

#[path = "common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::exercise("texthash", data);
});
