//! The message reader, header parser, envelope and decision on arbitrary
//! input. Invariants: never panics, and the spooled bytes are the input minus
//! a recognised From_ line (at most 4096 bytes, ending in a newline).
#![no_main]

use deliver::input::envelope::{Envelope, Flags};
use deliver::policy::maps::OpenOptions;
use deliver::input::message::Limits;
use deliver::policy::rules::{self, Layer, Origin};
use deliver::engine::decide_for;
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

const RULES: &str = r#"
[spam]
junk_threshold = 5.0
discard_threshold = 20.0

[[spam.custom]]
header = "X-Fuzz-Score"
match = '^score=(-?[0-9.]+)'
flag = '(?i)\bspam\b'

[[rule]]
name = "subject"
header = "Subject"
match = '(?i)winner|=\?'
score = 2.5

[[rule]]
name = "body"
body = '(?i)payment (is )?overdue|click'
score = 3.0

[[rule]]
name = "nested"
all = [ { any = [ { header = "From" }, { sender = '@' } ] }, { not = { size_over = 100 } } ]
folder = "Lists/fuzz"
"#;

fn system() -> &'static Layer {
    static L: OnceLock<Layer> = OnceLock::new();
    L.get_or_init(|| {
        rules::load_str(
            RULES,
            Path::new("fuzz.toml"),
            Origin::System,
            &OpenOptions::default(),
        )
        .expect("fuzz rules load")
    })
}

/// The input without its From_ line: a first line that begins with "From "
/// and ends in a newline, or, without one, is longer than 4096 bytes.
fn expected(data: &[u8]) -> &[u8] {
    if data.starts_with(b"From ") {
        match data.iter().position(|&b| b == b'\n') {
            Some(i) => return &data[i + 1..],
            None if data.len() > 4096 => return &[],
            None => {}
        }
    }
    data
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the limits: tiny ones reach the limit paths.
    let (limits, data) = match data.split_first() {
        Some((b, rest)) if b & 1 == 1 => (
            Limits {
                max_header_bytes: 1024,
                max_headers: (*b as usize >> 1) % 8 + 1,
                body_window: (*b as usize >> 4) * 16,
            },
            rest,
        ),
        Some((_, rest)) => (Limits::default(), rest),
        None => (Limits::default(), data),
    };
    let mut out = Vec::new();
    let sp = deliver::input::message::read(data, &limits, &mut out).expect("reading from memory cannot fail");
    assert_eq!(out, expected(data), "spooled bytes differ from the input");
    assert_eq!(sp.size, out.len() as u64);
    assert!(sp.window.len() <= limits.body_window.max(sp.head.bytes.len()));
    let env = Envelope::resolve(
        &Flags::default(),
        &|_| None,
        sp.head.envelope_from_line(),
        &sp.head.headers,
    );
    let d = decide_for(&sp, &env, system(), None);
    let _ = d.status_line();
    let _ = deliver::output::exit::code_of(&d.plan.disposition);
});
