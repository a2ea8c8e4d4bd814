//! `pcre:` tables (pcre_table(5)): Perl-compatible patterns on the `regex`
//! crate, as far as that crate can match them, and a clear error where not.
//!
//! File structure (shared with `regexp:`, see `regex_table.rs`):
//! `/pattern/flags result`, `!/pattern/flags result` (`!` and whitespace in
//! any order), `if /pattern/flags` ... `endif`, any delimiter, `$n`, `${n}`,
//! `$(n)`, `$$`, first match wins.
//!
//! Flags toggle, as in Postfix 3.7 with PCRE2: `i` (on by default), `m`
//! (off), `s` (on by default: `.` matches a newline), `x` (off), `A`
//! (anchored at the start), `E` (`$` only at the very end), `U` (ungreedy);
//! `X` is accepted and ignored with a note, as Postfix does with PCRE2; any
//! other flag is a [`Diag`].
//!
//! Matching is PCRE's non-UTF mode, which Postfix uses: bytes, ASCII-only
//! case folding and classes. The pattern is translated rather than passed
//! through where the two syntaxes differ: escapes of punctuation (`\<` is a
//! literal `<` in PCRE, a word boundary in the regex crate), `{` that does
//! not start a counted repetition (literal in PCRE), whitespace and `#` in
//! character classes under `x`, `\Q...\E`, `(?#...)`, `(?'name'...)`, `\G`
//! (`\A` here, since matching always starts at offset 0), `\h \H \v \V \R
//! \N \e \a \cX \o{...} \0nn` and `\C`.
//!
//! Refused with a [`Diag`] naming file, line, column and the construct,
//! e.g. `pcre table construct not supported: look-ahead (?=...)`:
//! look-ahead and look-behind, atomic groups, possessive quantifiers,
//! back-references (`\1`, `\g`, `\k`, `(?P=name)`), recursion and
//! subroutine calls, conditional groups, callouts, backtracking verbs
//! `(*...)`, branch reset `(?|`, `\K`, `\X`, Unicode properties `\p`, and
//! the options `(?n)`, `(?J)`, `(?xx)`, `(?^)`.
//!
//! Known differences: `$` (without `m` or `E`) and `\Z` match only at the
//! very end of the key, not also before a final newline (access keys never
//! end in a newline); with `A`, a pattern is tried at offset 0 the way the
//! regex crate's leftmost-first search finds it.

use super::regex_table::{build, CompileError, Compiled, Dialect, RawPattern, RegexTable};
use crate::output::diag::Diag;
use std::path::Path;

/// A `pcre:` table: the shared regex-table engine with this dialect.
#[derive(Debug)]
pub struct Pcre;

impl Pcre {
    pub fn open(spec: &str, path: &Path) -> Result<RegexTable, Diag> {
        RegexTable::open(spec, path, Dialect::Pcre, compile)
    }

    #[cfg(test)]
    fn parse(text: &str) -> Result<RegexTable, Diag> {
        RegexTable::parse(
            "pcre:t",
            Path::new("t"),
            text.as_bytes(),
            Dialect::Pcre,
            compile,
        )
    }
}

fn compile(raw: &RawPattern<'_>, notes: &mut Vec<String>) -> Result<Compiled, CompileError> {
    let (mut i, mut m, mut s, mut x, mut a, mut e, mut u) =
        (true, false, true, false, false, false, false);
    for (off, c) in raw.flags.char_indices() {
        match c {
            'i' => i = !i,
            'm' => m = !m,
            's' => s = !s,
            'x' => x = !x,
            'A' => a = !a,
            'E' => e = !e,
            'U' => u = !u,
            'X' => notes
                .push("ignoring obsolete regexp option \"X\" (not supported with PCRE2)".into()),
            other => {
                return Err(CompileError {
                    offset: off,
                    in_flags: true,
                    msg: format!(
                    "unknown regexp option \"{other}\" (pcre tables know i, m, s, x, A, E, U, X)"
                ),
                })
            }
        }
    }
    // E (DOLLAR_ENDONLY) is what the regex crate's `$` does anyway.
    let _ = e;
    let body = translate(raw.text, x).map_err(|(offset, msg)| CompileError {
        offset,
        in_flags: false,
        msg,
    })?;
    let mut prefix = String::new();
    for (on, f) in [(i, 'i'), (m, 'm'), (s, 's'), (x, 'x'), (u, 'U')] {
        if on {
            prefix.push(f);
        }
    }
    let full = if prefix.is_empty() {
        body
    } else {
        format!("(?{prefix}){body}")
    };
    let re = build(&full).map_err(|msg| CompileError {
        offset: 0,
        in_flags: false,
        msg,
    })?;
    Ok(Compiled { re, anchored: a })
}

fn hex(out: &mut String, b: u8) {
    out.push_str(&format!("\\x{b:02X}"));
}

fn unsupported(at: usize, what: &str) -> (usize, String) {
    (at, format!("pcre table construct not supported: {what}"))
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

/// A single character produced by an escape, or something else.
enum Esc {
    /// One byte value.
    Byte(u8),
    /// Text to emit as is (a class like `\d`, an assertion...).
    Text(String),
    /// `\Q`: start of a quoted literal run.
    Quote,
    /// `\E` outside `\Q`: ignored.
    Nothing,
}

/// Parse the escape at `i` (the backslash). `in_class`: inside `[...]`.
/// Returns the escape and the offset after it.
/// `groups`: capture groups opened before `i` (decides `\10`: back-reference
/// or octal, as PCRE does).
fn escape(
    p: &str,
    i: usize,
    in_class: bool,
    groups: usize,
) -> Result<(Esc, usize), (usize, String)> {
    let b = p.as_bytes();
    let Some(&c) = b.get(i + 1) else {
        return Err((i, "\\ at end of pattern".to_string()));
    };
    let n = i + 2;
    let ctl = |v: u8| Ok((Esc::Byte(v), n));
    match c {
        b'a' => ctl(0x07),
        b'e' => ctl(0x1b),
        b'f' => ctl(0x0c),
        b'n' => ctl(b'\n'),
        b'r' => ctl(b'\r'),
        b't' => ctl(b'\t'),
        b'b' if in_class => ctl(0x08),
        b'0' => {
            // \0 followed by up to two more octal digits.
            let mut v: u32 = 0;
            let mut j = n;
            while j < b.len() && j < n + 2 && (b'0'..=b'7').contains(&b[j]) {
                v = v * 8 + u32::from(b[j] - b'0');
                j += 1;
            }
            Ok((Esc::Byte(v as u8), j))
        }
        b'1'..=b'9' if in_class && c <= b'7' => {
            // In a class, \1..\7 are octal.
            let mut v: u32 = 0;
            let mut j = i + 1;
            while j < b.len() && j < i + 4 && (b'0'..=b'7').contains(&b[j]) {
                v = v * 8 + u32::from(b[j] - b'0');
                j += 1;
            }
            if v > 0xff {
                return Err((i, "octal value greater than \\377 in non-UTF mode".into()));
            }
            Ok((Esc::Byte(v as u8), j))
        }
        b'1'..=b'9' => {
            let mut j = i + 1;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let num: usize = p[i + 1..j].parse().unwrap_or(usize::MAX);
            if num < 10 || c == b'8' || c == b'9' || num <= groups {
                return Err(unsupported(
                    i,
                    &format!("back-reference \\{}", &p[i + 1..j]),
                ));
            }
            // Not that many groups: up to three octal digits.
            let mut v: u32 = 0;
            let mut j = i + 1;
            while j < b.len() && j < i + 4 && (b'0'..=b'7').contains(&b[j]) {
                v = v * 8 + u32::from(b[j] - b'0');
                j += 1;
            }
            if v > 0xff {
                return Err((i, "octal value greater than \\377 in non-UTF mode".into()));
            }
            Ok((Esc::Byte(v as u8), j))
        }
        b'o' => {
            if b.get(n) != Some(&b'{') {
                return Err((i, "missing opening brace after \\o".into()));
            }
            braced_code(p, i, n, 'o', 8, "octal")
        }
        b'x' => {
            if b.get(n) == Some(&b'{') {
                braced_code(p, i, n, 'x', 16, "hexadecimal")
            } else {
                let mut v: u32 = 0;
                let mut j = n;
                while j < b.len() && j < n + 2 && is_hex(b[j]) {
                    v = v * 16 + (b[j] as char).to_digit(16).unwrap_or(0);
                    j += 1;
                }
                Ok((Esc::Byte(v as u8), j))
            }
        }
        b'c' => {
            let Some(&x) = b.get(n) else {
                return Err((i, "\\c at end of pattern".into()));
            };
            if !(0x20..0x7f).contains(&x) {
                return Err((
                    i,
                    "\\c must be followed by a printable ASCII character".into(),
                ));
            }
            Ok((Esc::Byte(x.to_ascii_uppercase() ^ 0x40), n + 1))
        }
        b'd' | b'D' | b's' | b'S' | b'w' | b'W' => Ok((Esc::Text(format!("\\{}", c as char)), n)),
        b'h' => Ok((
            Esc::Text(if in_class {
                "\\t\\x20\\xA0".into()
            } else {
                "[\\t\\x20\\xA0]".into()
            }),
            n,
        )),
        b'H' => Ok((Esc::Text("[^\\t\\x20\\xA0]".into()), n)),
        b'v' => Ok((
            Esc::Text(if in_class {
                "\\n\\x0B\\x0C\\r\\x85".into()
            } else {
                "[\\n\\x0B\\x0C\\r\\x85]".into()
            }),
            n,
        )),
        b'V' => Ok((Esc::Text("[^\\n\\x0B\\x0C\\r\\x85]".into()), n)),
        b'Q' => Ok((Esc::Quote, n)),
        b'E' => Ok((Esc::Nothing, n)),
        _ if in_class => match c {
            b'p' | b'P' => Err(unsupported(i, "Unicode property \\p")),
            b'N' | b'R' | b'X' | b'B' | b'A' | b'z' | b'Z' | b'G' | b'K' | b'C' | b'g' | b'k' => {
                Err((
                    i,
                    format!("escape \\{} is not allowed in a character class", c as char),
                ))
            }
            c if c.is_ascii_alphanumeric() => Err((
                i,
                format!("unrecognized character follows \\: \\{}", c as char),
            )),
            c => Ok((Esc::Byte(c), n)),
        },
        b'b' | b'B' | b'A' | b'z' => Ok((Esc::Text(format!("\\{}", c as char)), n)),
        b'G' => Ok((Esc::Text("\\A".into()), n)),
        b'Z' => Ok((Esc::Text("\\z".into()), n)),
        b'R' => Ok((Esc::Text("(?:\\r\\n|[\\n\\x0B\\x0C\\r\\x85])".into()), n)),
        b'N' => {
            if b.get(n) == Some(&b'{') {
                Err(unsupported(i, "\\N{...}"))
            } else {
                Ok((Esc::Text("[^\\n]".into()), n))
            }
        }
        b'C' => Ok((Esc::Text("(?s-u:.)".into()), n)),
        b'K' => Err(unsupported(i, "\\K (reset start of match)")),
        b'X' => Err(unsupported(i, "\\X (extended grapheme cluster)")),
        b'p' | b'P' => Err(unsupported(i, "Unicode property \\p")),
        b'g' => Err(unsupported(i, "back-reference or subroutine call \\g")),
        b'k' => Err(unsupported(i, "named back-reference \\k")),
        b'u' | b'U' | b'l' | b'L' => Err((i, format!("PCRE2 does not support \\{}", c as char))),
        c if c.is_ascii_alphanumeric() => Err((
            i,
            format!("unrecognized character follows \\: \\{}", c as char),
        )),
        c => Ok((Esc::Byte(c), n)),
    }
}

/// Is there a valid counted repetition `{n}`, `{n,}` or `{n,m}` at `i`?
/// Returns its end (after `}`).
/// `\o{...}` or `\x{...}` (the `{` at byte `n`): one byte's code in `radix`.
fn braced_code(
    p: &str,
    i: usize,
    n: usize,
    letter: char,
    radix: u32,
    digits_name: &str,
) -> Result<(Esc, usize), (usize, String)> {
    let close = p[n..]
        .find('}')
        .map(|k| n + k)
        .ok_or((i, format!("missing }} after \\{letter}{{")))?;
    let v = u32::from_str_radix(&p[n + 1..close], radix)
        .map_err(|_| (i, format!("bad {digits_name} digits in \\{letter}{{...}}")))?;
    if v > 0xff {
        return Err((
            i,
            format!("character code in \\{letter}{{...}} too large for non-UTF mode"),
        ));
    }
    Ok((Esc::Byte(v as u8), close + 1))
}

fn counted(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    let s = j;
    while j < b.len() && b[j].is_ascii_digit() {
        j += 1;
    }
    if j == s {
        return None;
    }
    if b.get(j) == Some(&b',') {
        j += 1;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
    }
    (b.get(j) == Some(&b'}')).then_some(j + 1)
}

/// Translate a PCRE pattern to regex crate syntax. `extended`: the x flag.
pub(crate) fn translate(p: &str, extended: bool) -> Result<String, (usize, String)> {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len() * 2);
    // x-mode per group nesting level.
    let mut xs: Vec<bool> = vec![extended];
    let mut groups = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let x = *xs.last().unwrap_or(&extended);
        match c {
            b'\\' => {
                let (e, next) = escape(p, i, false, groups)?;
                match e {
                    Esc::Byte(v) => hex(&mut out, v),
                    Esc::Text(t) => out.push_str(&t),
                    Esc::Nothing => {}
                    Esc::Quote => {
                        let end = p[next..].find("\\E").map(|k| next + k).unwrap_or(b.len());
                        for &v in &b[next..end] {
                            hex(&mut out, v);
                        }
                        i = (end + 2).min(b.len());
                        continue;
                    }
                }
                i = next;
            }
            b'[' => {
                i = class(p, i, &mut out)?;
            }
            b'(' => {
                let rest = &p[i..];
                if rest.starts_with("(*") {
                    return Err(unsupported(
                        i,
                        "backtracking verb or start-of-pattern option (*...)",
                    ));
                }
                if !rest.starts_with("(?") {
                    out.push('(');
                    groups += 1;
                    xs.push(x);
                    i += 1;
                    continue;
                }
                let r = &rest[2..];
                let what: Option<&str> = if r.starts_with('=') {
                    Some("look-ahead (?=...)")
                } else if r.starts_with('!') {
                    Some("negative look-ahead (?!...)")
                } else if r.starts_with("<=") {
                    Some("look-behind (?<=...)")
                } else if r.starts_with("<!") {
                    Some("negative look-behind (?<!...)")
                } else if r.starts_with('>') {
                    Some("atomic group (?>...)")
                } else if r.starts_with('|') {
                    Some("branch reset group (?|...)")
                } else if r.starts_with('(') {
                    Some("conditional group (?(...)...)")
                } else if r.starts_with('C') {
                    Some("callout (?C...)")
                } else if r.starts_with("P=") {
                    Some("named back-reference (?P=name)")
                } else if r.starts_with("P>") || r.starts_with('&') {
                    Some("subroutine call (?&name)")
                } else if r.starts_with('R')
                    || r.starts_with(|ch: char| ch.is_ascii_digit())
                    || ((r.starts_with('+') || r.starts_with('-'))
                        && r[1..].starts_with(|ch: char| ch.is_ascii_digit()))
                {
                    Some("recursion or subroutine call (?R), (?1)")
                } else {
                    None
                };
                if let Some(w) = what {
                    return Err(unsupported(i, w));
                }
                if r.starts_with('#') {
                    let end = p[i..]
                        .find(')')
                        .map(|k| i + k)
                        .ok_or((i, "missing ) after (?# comment".to_string()))?;
                    i = end + 1;
                    continue;
                }
                if let Some(after) = r.strip_prefix("P<").or_else(|| r.strip_prefix('<')) {
                    let close = after.find('>').ok_or((
                        i,
                        "syntax error in subpattern name (missing terminator?)".to_string(),
                    ))?;
                    out.push_str(&format!("(?P<{}>", &after[..close]));
                    groups += 1;
                    xs.push(x);
                    i += 2 + (r.len() - after.len()) + close + 1;
                    continue;
                }
                if let Some(after) = r.strip_prefix('\'') {
                    let close = after.find('\'').ok_or((
                        i,
                        "syntax error in subpattern name (missing terminator?)".to_string(),
                    ))?;
                    out.push_str(&format!("(?P<{}>", &after[..close]));
                    groups += 1;
                    xs.push(x);
                    i += 3 + close + 1;
                    continue;
                }
                // Option settings: (?imsxU-imsxU) or (?imsxU-imsxU:...)
                let fl_len = r
                    .find([')', ':'])
                    .ok_or((i, "missing ) after (? options".to_string()))?;
                let fl = &r[..fl_len];
                let mut newx = x;
                let mut on = true;
                for (k, ch) in fl.char_indices() {
                    match ch {
                        '-' => on = false,
                        'i' | 'm' | 's' | 'U' => {}
                        'x' => {
                            if fl[k + 1..].starts_with('x') {
                                return Err(unsupported(i, "option (?xx)"));
                            }
                            newx = on;
                        }
                        'n' => return Err(unsupported(i, "option (?n) (no auto capture)")),
                        'J' => return Err(unsupported(i, "option (?J) (duplicate group names)")),
                        '^' => return Err(unsupported(i, "option (?^)")),
                        other => {
                            return Err((
                                i + 2 + k,
                                format!("unrecognized character after (? or (?-: \"{other}\""),
                            ))
                        }
                    }
                }
                let close = r.as_bytes()[fl_len];
                out.push_str("(?");
                out.push_str(fl);
                out.push(close as char);
                if close == b':' {
                    xs.push(newx);
                } else if let Some(top) = xs.last_mut() {
                    *top = newx;
                }
                i += 2 + fl_len + 1;
            }
            b')' => {
                if xs.len() > 1 {
                    xs.pop();
                }
                out.push(')');
                i += 1;
            }
            b'*' | b'+' | b'?' | b'{' => {
                let end = if c == b'{' {
                    match counted(b, i) {
                        Some(e) => e,
                        None => {
                            hex(&mut out, b'{');
                            i += 1;
                            continue;
                        }
                    }
                } else {
                    i + 1
                };
                out.push_str(&p[i..end]);
                let mut j = end;
                if x {
                    while j < b.len() && super::source::is_space(b[j]) {
                        j += 1;
                    }
                }
                match b.get(j) {
                    Some(b'+') => {
                        return Err(unsupported(i, "possessive quantifier (*+, ++, ?+, {n}+)"))
                    }
                    Some(b'?') => {
                        out.push('?');
                        i = j + 1;
                    }
                    _ => i = end,
                }
            }
            b'#' if x => {
                // A comment to the end of the pattern (patterns have no newline).
                out.push_str(&p[i..]);
                out.push('\n');
                i = b.len();
            }
            b'^' | b'$' | b'.' | b'|' => {
                out.push(c as char);
                i += 1;
            }
            c if c.is_ascii_alphanumeric() || (c == b' ' || c == b'\t') && !x => {
                if c.is_ascii_alphanumeric() {
                    out.push(c as char);
                } else {
                    hex(&mut out, c);
                }
                i += 1;
            }
            c if x && super::source::is_space(c) => {
                out.push(c as char);
                i += 1;
            }
            c => {
                hex(&mut out, c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Translate the character class at `open`; returns the offset after `]`.
fn class(p: &str, open: usize, out: &mut String) -> Result<usize, (usize, String)> {
    let b = p.as_bytes();
    let missing = (
        open,
        "missing terminating ] for character class".to_string(),
    );
    let mut j = open + 1;
    let mut items = String::new();
    let negate = b.get(j) == Some(&b'^');
    if negate {
        j += 1;
    }
    let mut first = true;
    // What the previous item was: a single character (a range may follow),
    // a class (\d, [:alpha:]: a following '-' must be literal or an error),
    // or nothing (start, or just after a range).
    #[derive(PartialEq)]
    enum Prev {
        Nothing,
        Char,
        Class,
    }
    let mut prev = Prev::Nothing;
    loop {
        if j >= b.len() {
            return Err(missing);
        }
        let c = b[j];
        if c == b']' && !first {
            j += 1;
            break;
        }
        first = false;
        if c == b'[' && matches!(b.get(j + 1), Some(b'.' | b'=')) {
            return Err((j, "POSIX collating elements are not supported".into()));
        }
        if c == b'[' && b.get(j + 1) == Some(&b':') {
            if let Some(k) = p[j + 2..].find(":]") {
                let name = &p[j + 2..j + 2 + k];
                items.push_str(&format!("[:{name}:]"));
                j = j + 2 + k + 2;
                prev = Prev::Class;
                continue;
            }
        }
        if c == b'-' && !matches!(b.get(j + 1), None | Some(b']')) && prev != Prev::Nothing {
            // PCRE2: a range needs single characters on both sides.
            let next_is_class = match b.get(j + 1) {
                Some(b'[') => matches!(b.get(j + 2), Some(b':')),
                Some(b'\\') => matches!(
                    b.get(j + 2),
                    Some(
                        b'd' | b'D'
                            | b's'
                            | b'S'
                            | b'w'
                            | b'W'
                            | b'h'
                            | b'H'
                            | b'v'
                            | b'V'
                            | b'p'
                            | b'P'
                    )
                ),
                _ => false,
            };
            if prev == Prev::Class || next_is_class {
                return Err((j, "invalid range in character class".into()));
            }
            items.push('-');
            j += 1;
            prev = Prev::Nothing;
            continue;
        }
        if c == b'\\' {
            let (e, next) = escape(p, j, true, 0)?;
            match e {
                Esc::Byte(v) => {
                    hex(&mut items, v);
                    prev = Prev::Char;
                }
                Esc::Text(t) => {
                    items.push_str(&t);
                    prev = Prev::Class;
                }
                Esc::Nothing => {}
                Esc::Quote => {
                    let end = p[next..].find("\\E").map(|k| next + k).unwrap_or(b.len());
                    for &v in &b[next..end] {
                        hex(&mut items, v);
                        prev = Prev::Char;
                    }
                    j = (end + 2).min(b.len());
                    continue;
                }
            }
            j = next;
            continue;
        }
        hex(&mut items, c);
        prev = Prev::Char;
        j += 1;
    }
    out.push('[');
    if negate {
        out.push('^');
    }
    out.push_str(&items);
    out.push(']');
    Ok(j)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::maps::Table;

    fn one(rule: &str, key: &str) -> Option<String> {
        Pcre::parse(rule).unwrap().lookup(key).unwrap()
    }

    #[test]
    fn behaviour_checked_with_postmap() {
        assert_eq!(one("/x(a|ab)/ [$1]", "xab").as_deref(), Some("[a]"));
        assert_eq!(one("/^a.b$/ dot", "a\nb").as_deref(), Some("dot"));
        assert_eq!(one("/^a.b$/s nodot", "a\nb"), None);
        assert_eq!(one("/é/ u", "É"), None);
        assert_eq!(one("/é/ u", "é").as_deref(), Some("u"));
        assert_eq!(one("/^.$/ one", "é"), None);
        assert_eq!(one("/a b/x ext", "ab").as_deref(), Some("ext"));
        assert_eq!(one("/a b/x ext", "a b"), None);
        assert_eq!(one("! ! /x/ dneg", "x").as_deref(), Some("dneg"));
        assert_eq!(one("/a+?/U [x]", "a").as_deref(), Some("[x]"));
        assert_eq!(one("/(a+?)/U [$1]", "aaa").as_deref(), Some("[aaa]"));
        assert_eq!(one("/b/A anch", "ab"), None);
        assert_eq!(one("/b/A anch", "b").as_deref(), Some("anch"));
        assert_eq!(one("/\\d+/ d", "123").as_deref(), Some("d"));
        assert_eq!(one("/(x)|(y)/ [$1][$2]", "y").as_deref(), Some("[][y]"));
        assert_eq!(one("/\\x41/ hex", "a").as_deref(), Some("hex"));
        assert_eq!(one("/a#c/x com", "a").as_deref(), Some("com"));
        assert_eq!(
            one("/[a b]/x sp", " ").as_deref(),
            Some("sp"),
            "space in a class counts under x"
        );
        assert_eq!(one("/\\<x\\>/ lt", "<x>").as_deref(), Some("lt"));
        assert_eq!(one("/a{/ lb", "a{").as_deref(), Some("lb"));
        assert_eq!(one("/a{,2}/ lb2", "a{,2}").as_deref(), Some("lb2"));
        assert_eq!(one("/^a{2}$/ cnt", "aa").as_deref(), Some("cnt"));
        assert_eq!(one("/\\Qa.b\\E/ q", "a.b").as_deref(), Some("q"));
        assert_eq!(one("/\\Qa.b\\E/ q", "axb"), None);
        assert_eq!(one("/a(?#comment)b/ c", "ab").as_deref(), Some("c"));
        assert_eq!(
            one("/(?'n'x)(?<m>y)(?P<o>z)/ [$1$2$3]", "xyz").as_deref(),
            Some("[xyz]")
        );
        assert_eq!(one("/\\Gx/ g", "x").as_deref(), Some("g"));
        assert_eq!(one("/\\Gx/ g", "ax"), None);
        assert_eq!(one("/[\\w-]/ r", "-").as_deref(), Some("r"));
        assert_eq!(one("/[a-c-e]/ r", "-").as_deref(), Some("r"));
        assert_eq!(one("/[a-c-e]/ r", "d"), None);
        assert_eq!(one("/[a-c]/ r", "b").as_deref(), Some("r"));
        assert_eq!(one("/[&&]/ amp", "&").as_deref(), Some("amp"));
        assert_eq!(one("/[]a]/ rb", "]").as_deref(), Some("rb"));
        assert_eq!(one("/[[:^alpha:]]/ na", "1").as_deref(), Some("na"));
        assert_eq!(one("/\\cA/ ctl", "\u{1}").as_deref(), Some("ctl"));
        assert_eq!(
            one("/\\101/ oct", "A").as_deref(),
            Some("oct"),
            "\\101 is octal without 101 groups"
        );
    }

    #[test]
    fn unsupported_constructs_name_themselves() {
        let cases: &[(&str, usize, &str)] = &[
            ("/(?=a)a/ r", 2, "look-ahead (?=...)"),
            ("/(?!a)b/ r", 2, "negative look-ahead (?!...)"),
            ("/(?<=a)b/ r", 2, "look-behind (?<=...)"),
            ("/(?<!a)b/ r", 2, "negative look-behind (?<!...)"),
            ("/(?>a)/ r", 2, "atomic group"),
            ("/a*+/ r", 3, "possessive quantifier"),
            ("/a{2}+/ r", 3, "possessive quantifier"),
            ("/a* +/x r", 3, "possessive quantifier"),
            ("/(a)\\1/ r", 5, "back-reference \\1"),
            ("/(?<n>a)\\k<n>/ r", 9, "named back-reference \\k"),
            ("/(a)\\g1/ r", 5, "\\g"),
            ("/(?P=n)/ r", 2, "named back-reference (?P=name)"),
            ("/(a(?R))/ r", 4, "recursion"),
            ("/(a)(?1)/ r", 5, "recursion"),
            ("/(?&n)/ r", 2, "subroutine call"),
            ("/(?(1)a|b)/ r", 2, "conditional group"),
            ("/a\\Kb/ r", 3, "\\K"),
            ("/(*UTF)a/ r", 2, "(*...)"),
            ("/(?|a)/ r", 2, "branch reset"),
            ("/\\p{L}/ r", 2, "Unicode property"),
            ("/\\X/ r", 2, "\\X"),
            ("/(?n)a/ r", 2, "(?n)"),
            ("/(?xx)a/ r", 2, "(?xx)"),
            ("/(?C1)a/ r", 2, "callout"),
        ];
        for (rule, col, what) in cases {
            let e = Pcre::parse(rule).unwrap_err();
            assert_eq!((e.line, e.col), (1, *col), "{rule}: {e}");
            assert!(e.msg.contains(what), "{rule}: {e}");
            if !what.contains("\\g") && !what.contains("(?n)") {
                assert!(
                    e.msg.starts_with("pcre table construct not supported: "),
                    "{rule}: {e}"
                );
            }
        }
        let e = Pcre::parse("/x/ ok\n# c\n/(?=a)/ r\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t:3:2: pcre table construct not supported: look-ahead (?=...)"
        );
    }

    #[test]
    fn flags_and_other_errors() {
        let t = Pcre::parse("/x/X obs\n").unwrap();
        assert!(t.note().unwrap().contains("obsolete regexp option \"X\""));
        assert_eq!(t.lookup("x").unwrap().as_deref(), Some("obs"));
        let e = Pcre::parse("/x/q r").unwrap_err();
        assert_eq!(
            (e.col, e.msg.contains("unknown regexp option \"q\"")),
            (4, true),
            "{e}"
        );
        let e = Pcre::parse("!/x/!/y/ two").unwrap_err();
        assert!(e.msg.contains("unknown regexp option \"!\""), "{e}");
        let e = Pcre::parse("/(x)/ $0").unwrap_err();
        assert!(
            e.msg.contains("out of range replacement index \"0\""),
            "{e}"
        );
        let e = Pcre::parse("/(?<n>x)/ $n").unwrap_err();
        assert!(e.msg.contains("non-numeric replacement index \"n\""), "{e}");
        let e = Pcre::parse("/[a/ r").unwrap_err();
        assert!(e.msg.contains("missing terminating ]"), "{e}");
        let e = Pcre::parse("/a)/ r").unwrap_err();
        assert!(e.msg.contains("invalid pattern"), "{e}");
        let e = Pcre::parse("/\\x{100}/ r").unwrap_err();
        assert!(e.msg.contains("too large"), "{e}");
        let e = Pcre::parse("/[[.a.]]/ r").unwrap_err();
        assert!(e.msg.contains("collating"), "{e}");
        for bad in ["/[\\d-z]/ r", "/[[:alpha:]-z]/ r", "/[a-\\d]/ r"] {
            let e = Pcre::parse(bad).unwrap_err();
            assert!(
                e.msg.contains("invalid range in character class"),
                "{bad}: {e}"
            );
        }
        let e = Pcre::parse("/\\q/ r").unwrap_err();
        assert!(e.msg.contains("unrecognized character follows \\"), "{e}");
    }

    #[test]
    fn if_endif_and_substitution() {
        let t = Pcre::parse(
            "if /^(?i)ADMIN/\n\
             /^admin\\+(.*)@/ FOLDER ${1}\n\
             endif\n\
             /^(friend@(?:[a-z]+\\.)*example\\.com)$/ 550 Stick this in your pipe $1\n\
             /^noddy@my\\.domain$/\n  550 This user is a funny one.\n  Really.\n",
        )
        .unwrap();
        assert_eq!(
            t.lookup("admin+lists@x").unwrap().as_deref(),
            Some("FOLDER lists")
        );
        assert_eq!(
            t.lookup("friend@a.example.com").unwrap().as_deref(),
            Some("550 Stick this in your pipe friend@a.example.com")
        );
        assert_eq!(
            t.lookup("noddy@my.domain").unwrap().as_deref(),
            Some("550 This user is a funny one.  Really.")
        );
        assert!(t.is_pattern());
    }
}
