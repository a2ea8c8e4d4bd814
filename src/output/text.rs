//! Text from outside (envelope, headers, tables, rules files) made safe
//! for where deliver writes it. One function for each destination:
//!
//! | destination | function | what it does |
//! |---|---|---|
//! | an envelope value (flags, environment) | [`for_envelope`] | control characters become `_` |
//! | a table's text in an SMTP reply | [`for_reply`] | control characters become spaces (Postfix's printable()) |
//! | the status line, a `--test` report value | [`for_status`] | hidden characters become `?`; cut at [`MAX_VALUE`] |
//! | a free-text log line | [`for_log_line`] | hidden characters become `?` |
//! | a value of the `key=value` log line | [`encode_log_value`] | escaped, reversibly ([`decode_log_value`]) |
//!
//! "Control characters" are Unicode's general category Cc (ASCII controls,
//! DEL and U+0080 to U+009F); "hidden characters" are those of
//! [`hidden_category`]: Cc, and the format and line-separator characters
//! that can hide text or break a line in a program that shows it.

/// The longest text, in characters, that [`for_status`] and
/// [`encode_log_value`] keep; a longer one is cut there and `...` is
/// appended.
pub const MAX_VALUE: usize = 512;

/// The Unicode general category of `c` when it is one that text shown to
/// people must not carry as it is: `Cc` (controls: CR, LF, NUL, ...), `Cf`
/// (format characters: the zero-width space, the soft hyphen, bidirectional
/// overrides such as U+202E, ...), `Zl` and `Zp` (U+2028 and U+2029, which
/// some programs show as line breaks). `None` for every other character.
pub fn hidden_category(c: char) -> Option<&'static str> {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    if c.is_ascii() {
        return c.is_ascii_control().then_some("Cc");
    }
    match c.general_category() {
        G::Control => Some("Cc"),
        G::Format => Some("Cf"),
        G::LineSeparator => Some("Zl"),
        G::ParagraphSeparator => Some("Zp"),
        _ => None,
    }
}

/// Text shown to people inside a line: the status line deliver prints for
/// Postfix (`exit::Failure`, `decide::Decision`) and each value of the
/// `--test` report. Control, format and line-separator characters (see
/// [`hidden_category`]) become `?`, so that nothing from the message or
/// envelope can forge an extra line or hide in this one, and the length is
/// cut at [`MAX_VALUE`].
pub fn for_status(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_VALUE));
    for (i, c) in s.chars().enumerate() {
        if i >= MAX_VALUE {
            out.push_str("...");
            break;
        }
        out.push(if hidden_category(c).is_some() { '?' } else { c });
    }
    out
}

/// A free-text log line (`log::Logger`): hidden characters (see
/// [`hidden_category`]) become `?`, as in [`for_status`], but the line is
/// not cut (a log line may be long).
pub fn for_log_line(s: &str) -> String {
    s.chars()
        .map(|c| if hidden_category(c).is_some() { '?' } else { c })
        .collect()
}

/// A table's text that becomes the text of an SMTP reply (an access map's
/// REJECT or DEFER text), as Postfix's printable() makes it: control
/// characters become spaces.
pub fn for_reply(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// An envelope value from a flag or the environment, before any rule, table
/// or header sees it: control characters become `_`, as Postfix's local(8)
/// replaces shell-special characters in what it exports.
pub fn for_envelope(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .collect()
}

/// Characters that show nothing although their general category is a
/// letter or a mark: the rest of Unicode's Default_Ignorable_Code_Point
/// property once `Cf` and unassigned code points are taken out (the
/// combining grapheme joiner, Hangul fillers, Khmer inherent vowels,
/// Mongolian and other variation selectors).
const INVISIBLE: &[(char, char)] = &[
    ('\u{034F}', '\u{034F}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{17B4}', '\u{17B5}'),
    ('\u{180B}', '\u{180F}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FE00}', '\u{FE0F}'),
    ('\u{FFA0}', '\u{FFA0}'),
    ('\u{E0100}', '\u{E01EF}'),
];

/// Whether a log value shows `c` as it is: a visible character that cannot
/// end the value or hide. Escaped are whitespace, `"`, `\\`, and the
/// general categories Cc, Cf, Zl, Zp, Zs, Co (private use) and Cn
/// (unassigned), and the invisible letters and marks in `INVISIBLE`.
fn verbatim(c: char) -> bool {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    if c.is_ascii() {
        return c.is_ascii_graphic() && c != '"' && c != '\\';
    }
    !c.is_whitespace()
        && !matches!(
            c.general_category(),
            G::Control
                | G::Format
                | G::LineSeparator
                | G::ParagraphSeparator
                | G::SpaceSeparator
                | G::PrivateUse
                | G::Unassigned
                | G::Surrogate
        )
        && !INVISIBLE.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// Appends `value` to `out` as a value of the `key=value` delivery log line
/// (`log::Line`): every character that `verbatim`
/// allows as it is, a space as `\s`, a backslash as `\\`, and any other
/// character as `\xHH`, `\uHHHH` or `\UHHHHHHHH`: its code point in 2, 4 or
/// 8 upper-case hex digits, the fewest that hold it. A value longer than
/// `MAX_VALUE` characters is cut there and `...` is appended, so a decoded
/// value longer than `MAX_VALUE` characters is one that was cut.
pub fn encode_log_value(value: &str, out: &mut String) {
    use std::fmt::Write as _;
    for (i, c) in value.chars().enumerate() {
        if i >= MAX_VALUE {
            out.push_str("...");
            break;
        }
        let _ = match c {
            c if verbatim(c) => {
                out.push(c);
                Ok(())
            }
            ' ' => out.write_str("\\s"),
            '\\' => out.write_str("\\\\"),
            c if (c as u32) <= 0xFF => write!(out, "\\x{:02X}", c as u32),
            c if (c as u32) <= 0xFFFF => write!(out, "\\u{:04X}", c as u32),
            c => write!(out, "\\U{:08X}", c as u32),
        };
    }
}

/// The value that [`encode_log_value`] wrote: `None` when `v` holds a space, a
/// `"`, or a backslash that does not start one of its escapes.
pub fn decode_log_value(v: &str) -> Option<String> {
    let mut out = String::with_capacity(v.len());
    walk_log_value(v, &mut out)?;
    Some(out)
}

/// Whether `v` decodes (`decode_log_value` is `Some`), without building
/// the value.
pub fn log_value_decodes(v: &str) -> bool {
    walk_log_value(v, &mut ()).is_some()
}

/// Where a decoded value goes.
trait Decoded {
    fn text(&mut self, s: &str);
    fn char(&mut self, c: char);
}

impl Decoded for String {
    fn text(&mut self, s: &str) {
        self.push_str(s)
    }
    fn char(&mut self, c: char) {
        self.push(c)
    }
}

/// Nowhere: only whether the value decodes.
impl Decoded for () {
    fn text(&mut self, _: &str) {}
    fn char(&mut self, _: char) {}
}

fn walk_log_value(v: &str, out: &mut impl Decoded) -> Option<()> {
    let mut rest = v;
    // The three are ASCII: `i` is a character boundary.
    while let Some(i) = memchr::memchr3(b'\\', b' ', b'"', rest.as_bytes()) {
        out.text(&rest[..i]);
        let esc = rest[i..].strip_prefix('\\')?;
        let (c, len) = match esc.as_bytes().first()? {
            b's' => (' ', 1),
            b'\\' => ('\\', 1),
            &k @ (b'x' | b'u' | b'U') => {
                let n = match k {
                    b'x' => 2,
                    b'u' => 4,
                    _ => 8,
                };
                let hex = esc.get(1..1 + n)?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                (char::from_u32(u32::from_str_radix(hex, 16).ok()?)?, 1 + n)
            }
            _ => return None,
        };
        out.char(c);
        rest = &esc[len..];
    }
    out.text(rest);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::{
        decode_log_value as decode_value, encode_log_value as encode_value, for_status as sanitize,
    };
    use crate::output::log::parse_line;

    #[test]
    fn sanitize_controls() {
        assert_eq!(sanitize("a\r\nb\0c\td"), "a??b?c?d");
        assert_eq!(sanitize("plain é"), "plain é");
    }

    #[test]
    fn values_escape_what_is_hidden_and_decode_back() {
        for (raw, enc) in [
            ("Entw\u{fc}rfe", "Entw\u{fc}rfe"),
            ("\u{418}\u{41d}", "\u{418}\u{41d}"),
            ("a\\b", "a\\\\b"),
            ("\"q\"", "\\x22q\\x22"),
            ("a\tb\r\0", "a\\x09b\\x0D\\x00"),
            ("\u{a0}\u{ad}\u{85}", "\\xA0\\xAD\\x85"),
            (
                "\u{200b}\u{202e}\u{2028}\u{2029}\u{3000}",
                "\\u200B\\u202E\\u2028\\u2029\\u3000",
            ),
            ("\u{3164}\u{fe0f}\u{e000}", "\\u3164\\uFE0F\\uE000"),
            ("\u{e0041}\u{10ffff}", "\\U000E0041\\U0010FFFF"),
            ("=x", "=x"),
            ("", ""),
        ] {
            let mut got = String::new();
            encode_value(raw, &mut got);
            assert_eq!(got, enc, "{raw:?}");
            assert_eq!(decode_value(&got).as_deref(), Some(raw), "{raw:?}");
        }
        for bad in [
            "a b",
            "a\"",
            "\\",
            "\\q",
            "\\x4",
            "\\xZZ",
            "\\uD800",
            "\\U00110000",
        ] {
            assert_eq!(decode_value(bad), None, "{bad:?}");
        }
        assert_eq!(parse_line("a=1 a=2"), None);
        assert_eq!(
            parse_line("folder=A folder=B,C").unwrap(),
            [("folder", "A".to_string()), ("folder", "B,C".to_string())]
        );
        assert_eq!(parse_line("a=1 b"), None);
        assert_eq!(parse_line("a=1  b=2"), None);
        let mut long = String::new();
        encode_value(&"x".repeat(MAX_VALUE + 1), &mut long);
        assert_eq!(long, format!("{}...", "x".repeat(MAX_VALUE)));
    }

    proptest::proptest! {
        #[test]
        fn any_value_round_trips(v in "\\PC{0,40}|[ -~\\t\\n\\u{200b}-\\u{202e}]{0,40}|.{0,40}") {
            let mut enc = String::new();
            encode_value(&v, &mut enc);
            proptest::prop_assert!(!enc.chars().any(|c| c.is_whitespace() || c == '"'));
            proptest::prop_assert!(enc.chars().all(|c| c == '\\' || verbatim(c)));
            proptest::prop_assert_eq!(decode_value(&enc), Some(v));
        }
    }

    #[test]
    fn hidden_characters_are_replaced_in_free_text() {
        assert_eq!(
            sanitize("a\u{202e}b\u{2028}c\u{200b}d \u{418}"),
            "a?b?c?d \u{418}"
        );
        assert_eq!(hidden_category('\u{2029}'), Some("Zp"));
        assert_eq!(hidden_category('\u{ad}'), Some("Cf"));
        assert_eq!(hidden_category('\u{85}'), Some("Cc"));
        assert_eq!(hidden_category(' '), None);
        assert_eq!(hidden_category('\u{406}'), None);
    }

    #[test]
    fn replies_and_envelope_values() {
        assert_eq!(for_reply("a\r\nb\u{85}c\td"), "a  b c d");
        assert_eq!(for_envelope("a@b\r\nX\u{85}Y\tZ"), "a@b__X_Y_Z");
        assert_eq!(for_log_line(&"x\n".repeat(600)), "x?".repeat(600));
    }
}
