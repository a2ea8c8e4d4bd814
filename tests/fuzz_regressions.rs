//! Inputs the fuzzers (fuzz/, see FUZZING.md) found crashing, each kept as
//! a regression test against the real binary or the library function the
//! target drives. Each input is minimised by hand to what triggers it.

mod util;

use util::*;

/// A delivery of `input` exits 0 and delivers it byte-exact to `folder`.
fn delivers(h: &Home, input: &[u8], folder: &str) {
    let r = h.deliver(input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d = h.delivered();
    assert_eq!(d.get(folder).map(Vec::len), Some(1), "{:?}", d.keys());
    assert_eq!(d[folder][0], without_from(input));
}

/// fuzz/message: a non-ASCII character across byte 3 or 4 of a spam
/// header value panicked in the yes/true test (a sender could make every
/// delivery of the message defer until it bounced).
#[test]
fn spam_flag_value_with_multibyte_character() {
    for v in ["Ye\u{fffd}s, score=24.3", "tr\u{e9}e", "\u{e9}es", "Y\u{1F600}"] {
        for header in ["X-Spam-Status", "X-Spam-Flag", "X-Spam"] {
            let h = Home::new();
            delivers(&h, &msg(&format!("{header}: {v}\n"), "x\n"), "");
        }
    }
}
