//! `regexp:` tables (regexp_table(5)): POSIX regular expressions, as glibc's
//! regcomp(3) reads them in the C locale, run on the `regex` crate.
//!
//! File structure (shared with `pcre:`, see `regex_table.rs`):
//! `/pattern/flags result`, `!/pattern/flags result`, the legacy
//! `/pattern1/!/pattern2/ result` (match 1 and not 2), `if /pattern/flags`
//! ... `endif` (nesting), any non-alphanumeric first character as delimiter
//! (a backslash escapes it; the backslash stays in the pattern, as in
//! Postfix), `$n`, `${n}`, `$(n)` and `$$` in results, first match wins.
//!
//! Flags toggle, as in Postfix: `i` (on by default: case-insensitive), `m`
//! (off: REG_NEWLINE, `^`/`$` at line breaks and `.`/`[^...]` not matching a
//! newline), `x` (on by default: extended syntax; toggling it selects POSIX
//! *basic* syntax). Any other flag is a [`Diag`].
//!
//! The POSIX syntax is translated, not passed through, because it differs
//! from the regex crate's where it matters:
//! - bracket expressions: a backslash is literal (`[\d]` is `\` or `d`), `]`
//!   first is literal, `[:class:]`, and `[=c=]`/`[.c.]` for one character;
//! - `{,n}` means `{0,n}`; a repeated repetition (`a**`, `a+?`) repeats the
//!   repeated atom, it is not a lazy quantifier; an unmatched `)` is literal;
//! - GNU escapes `\w \W \s \S \b \B \< \> \` \'` keep their glibc meaning;
//! - basic syntax (`x` flag): `\( \) \{ \} \| \+ \?` are the operators, `*`
//!   at the start is literal, `^`/`$` are anchors only at the ends.
//!
//! Refused with a [`Diag`] naming line and column: back-references
//! (`\1`..`\9`, which the regex crate cannot do), escapes that POSIX leaves
//! undefined (`\d`, `\n`, `\t`...: glibc matches nothing with `\d` when the
//! `i` flag is on, and the literal letter otherwise; write `[[:digit:]]`),
//! multi-character collating elements, and what glibc itself rejects.
//!
//! Known difference: POSIX picks the longest match at the leftmost position
//! (glibc: `/x(a|ab)/` on `xab` gives `$1` = `ab`), the regex crate the first
//! alternative that matches (`$1` = `a`). Whether a rule matches is never
//! affected, only the text of `$n` when alternatives of different lengths
//! can match at the same place.

use super::regex_table::{build, CompileError, Compiled, Dialect, RawPattern, RegexTable};
use crate::output::diag::Diag;
use std::path::Path;

/// A `regexp:` table: the shared regex-table engine with this dialect.
#[derive(Debug)]
pub struct Regexp;

impl Regexp {
    pub fn open(spec: &str, path: &Path) -> Result<RegexTable, Diag> {
        RegexTable::open(spec, path, Dialect::Posix, compile)
    }

    #[cfg(test)]
    fn parse(text: &str) -> Result<RegexTable, Diag> {
        RegexTable::parse(
            "regexp:t",
            Path::new("t"),
            text.as_bytes(),
            Dialect::Posix,
            compile,
        )
    }
}

fn compile(raw: &RawPattern<'_>, _notes: &mut Vec<String>) -> Result<Compiled, CompileError> {
    let mut icase = true;
    let mut newline = false;
    let mut extended = true;
    for (i, c) in raw.flags.char_indices() {
        match c {
            'i' => icase = !icase,
            'm' => newline = !newline,
            'x' => extended = !extended,
            other => {
                return Err(CompileError {
                    offset: i,
                    in_flags: true,
                    msg: format!(
                        "unknown regexp option \"{other}\" (regexp tables know i, m and x)"
                    ),
                })
            }
        }
    }
    let body =
        translate(raw.text, extended, newline, icase).map_err(|(offset, msg)| CompileError {
            offset,
            in_flags: false,
            msg,
        })?;
    let mut prefix = String::from("(?");
    if icase {
        prefix.push('i');
    }
    if newline {
        prefix.push('m');
    } else {
        prefix.push('s');
    }
    prefix.push(')');
    let re = build(&format!("{prefix}{body}")).map_err(|msg| CompileError {
        offset: 0,
        in_flags: false,
        msg,
    })?;
    Ok(Compiled {
        re,
        anchored: false,
    })
}

const CLASSES: &[&str] = &[
    "alpha", "upper", "lower", "digit", "xdigit", "space", "print", "punct", "graph", "cntrl",
    "blank", "alnum",
];

/// glibc's RE_DUP_MAX.
const DUP_MAX: u32 = 0x7fff;

fn hex(out: &mut String, b: u8) {
    out.push_str(&format!("\\x{b:02X}"));
}

struct Group {
    /// Output offset of the group's `(`.
    out_start: usize,
    /// Pattern offset of the `(`, for "unmatched" errors.
    pat_at: usize,
}

/// Translate a POSIX regular expression (ERE when `extended`, else BRE) to
/// regex crate syntax. `Err((offset in pattern, message))`.
pub(crate) fn translate(
    p: &str,
    extended: bool,
    newline: bool,
    icase: bool,
) -> Result<String, (usize, String)> {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len() * 2);
    let mut groups: Vec<Group> = Vec::new();
    // Output offset where the last quantifiable atom starts.
    let mut atom: Option<usize> = None;
    // The last thing emitted was a quantifier (applied to `atom`).
    let mut quantified = false;
    // BRE: at the start of the RE, after \( or after \| (where `*` is literal
    // and `^` is an anchor).
    let mut at_start = true;
    let mut i = 0;

    macro_rules! set_atom {
        ($start:expr) => {{
            atom = Some($start);
            quantified = false;
            at_start = false;
        }};
    }
    macro_rules! no_atom {
        () => {{
            atom = None;
            quantified = false;
        }};
    }

    // Apply quantifier text `q` found at pattern offset `at`.
    let quantify = |out: &mut String,
                    atom: &mut Option<usize>,
                    quantified: &mut bool,
                    q: &str,
                    at: usize|
     -> Result<(), (usize, String)> {
        let Some(start) = *atom else {
            return Err((at, "Invalid preceding regular expression".to_string()));
        };
        if *quantified {
            out.insert_str(start, "(?:");
            out.push(')');
        }
        out.push_str(q);
        *quantified = true;
        Ok(())
    };

    while i < b.len() {
        let c = b[i];
        match c {
            b'\\' => {
                let Some(&n) = b.get(i + 1) else {
                    return Err((i, "Trailing backslash".to_string()));
                };
                if !extended {
                    match n {
                        b'(' => {
                            groups.push(Group {
                                out_start: out.len(),
                                pat_at: i,
                            });
                            out.push('(');
                            no_atom!();
                            at_start = true;
                            i += 2;
                            continue;
                        }
                        b')' => {
                            let Some(g) = groups.pop() else {
                                return Err((i, "Unmatched ) or \\)".to_string()));
                            };
                            out.push(')');
                            set_atom!(g.out_start);
                            i += 2;
                            continue;
                        }
                        b'|' => {
                            out.push('|');
                            no_atom!();
                            at_start = true;
                            i += 2;
                            continue;
                        }
                        b'{' => {
                            let (q, next) = interval(p, i + 2, true)?;
                            quantify(&mut out, &mut atom, &mut quantified, &q, i)?;
                            at_start = false;
                            i = next;
                            continue;
                        }
                        b'+' | b'?' => {
                            quantify(
                                &mut out,
                                &mut atom,
                                &mut quantified,
                                &(n as char).to_string(),
                                i,
                            )?;
                            at_start = false;
                            i += 2;
                            continue;
                        }
                        _ => {}
                    }
                }
                match n {
                    b'1'..=b'9' => {
                        return Err((
                            i,
                            format!(
                                "back-reference \\{} is not supported (the regex crate cannot match back-references)",
                                n as char
                            ),
                        ))
                    }
                    b'w' | b'W' | b's' | b'S' => {
                        let s = out.len();
                        out.push('\\');
                        out.push(n as char);
                        set_atom!(s);
                    }
                    b'b' | b'B' => {
                        out.push('\\');
                        out.push(n as char);
                        no_atom!();
                        at_start = false;
                    }
                    b'<' => {
                        out.push_str("\\b{start}");
                        no_atom!();
                        at_start = false;
                    }
                    b'>' => {
                        out.push_str("\\b{end}");
                        no_atom!();
                        at_start = false;
                    }
                    b'`' => {
                        out.push_str("\\A");
                        no_atom!();
                        at_start = false;
                    }
                    b'\'' => {
                        out.push_str("\\z");
                        no_atom!();
                        at_start = false;
                    }
                    n if n.is_ascii_alphanumeric() => {
                        return Err((
                            i,
                            format!(
                                "\\{} is not defined in POSIX regular expressions (glibc matches nothing with it when the i flag is on); use a bracket expression such as [[:digit:]] or [[:space:]]",
                                n as char
                            ),
                        ))
                    }
                    n => {
                        let s = out.len();
                        hex(&mut out, n);
                        set_atom!(s);
                    }
                }
                i += 2;
            }
            b'(' if extended => {
                groups.push(Group {
                    out_start: out.len(),
                    pat_at: i,
                });
                out.push('(');
                no_atom!();
                i += 1;
            }
            b')' if extended && !groups.is_empty() => {
                let g = groups.pop().expect("checked non-empty");
                out.push(')');
                set_atom!(g.out_start);
                i += 1;
            }
            b'|' if extended => {
                out.push('|');
                no_atom!();
                i += 1;
            }
            b'*' if !extended && atom.is_none() => {
                // BRE: '*' at the start of an RE (or after \(, \| or ^) is literal.
                let s = out.len();
                hex(&mut out, b'*');
                set_atom!(s);
                i += 1;
            }
            b'*' => {
                quantify(&mut out, &mut atom, &mut quantified, "*", i)?;
                at_start = false;
                i += 1;
            }
            b'+' | b'?' if extended => {
                quantify(
                    &mut out,
                    &mut atom,
                    &mut quantified,
                    &(c as char).to_string(),
                    i,
                )?;
                i += 1;
            }
            b'{' if extended => {
                let (q, next) = interval(p, i + 1, false)?;
                quantify(&mut out, &mut atom, &mut quantified, &q, i)?;
                i = next;
            }
            b'^' if extended || at_start => {
                out.push('^');
                no_atom!();
                at_start = false;
                i += 1;
            }
            b'$' if extended
                || i + 1 == b.len()
                || b[i + 1..].starts_with(b"\\)")
                || b[i + 1..].starts_with(b"\\|") =>
            {
                out.push('$');
                no_atom!();
                at_start = false;
                i += 1;
            }
            b'.' => {
                let s = out.len();
                out.push('.');
                set_atom!(s);
                i += 1;
            }
            b'[' => {
                let s = out.len();
                i = bracket(p, i, newline, icase, &mut out)?;
                set_atom!(s);
            }
            c if c.is_ascii_alphanumeric() => {
                let s = out.len();
                out.push(c as char);
                set_atom!(s);
                i += 1;
            }
            c => {
                let s = out.len();
                hex(&mut out, c);
                set_atom!(s);
                i += 1;
            }
        }
    }
    if let Some(g) = groups.pop() {
        return Err((g.pat_at, "Unmatched ( or \\(".to_string()));
    }
    Ok(out)
}

/// Parse an interval after `{` (or `\{` in BRE) at `i`; returns the regex
/// crate quantifier and the offset after the closing brace.
fn interval(p: &str, i: usize, bre: bool) -> Result<(String, usize), (usize, String)> {
    let b = p.as_bytes();
    let at = i.saturating_sub(if bre { 2 } else { 1 });
    let num = |j: &mut usize| -> Option<u32> {
        let s = *j;
        while *j < b.len() && b[*j].is_ascii_digit() {
            *j += 1;
        }
        if *j == s {
            None
        } else {
            Some(p[s..*j].parse::<u32>().unwrap_or(u32::MAX))
        }
    };
    let mut j = i;
    let min = num(&mut j);
    let mut max = min;
    let mut comma = false;
    if b.get(j) == Some(&b',') {
        comma = true;
        j += 1;
        max = num(&mut j);
    }
    let close_ok = if bre {
        b[j..].starts_with(b"\\}")
    } else {
        b.get(j) == Some(&b'}')
    };
    if !close_ok {
        return Err((at, "Unmatched \\{ or invalid content of \\{\\}".to_string()));
    }
    if min.is_none() && !comma {
        return Err((at, "Invalid content of \\{\\}".to_string()));
    }
    let lo = min.unwrap_or(0);
    if lo > DUP_MAX || max.is_some_and(|m| m > DUP_MAX) {
        return Err((
            at,
            "Regular expression too big (a count above 32767)".to_string(),
        ));
    }
    if let Some(hi) = max {
        if hi < lo {
            return Err((at, "Invalid content of \\{\\}".to_string()));
        }
    }
    let q = match (comma, max) {
        (false, _) => format!("{{{lo}}}"),
        (true, None) => format!("{{{lo},}}"),
        (true, Some(hi)) => format!("{{{lo},{hi}}}"),
    };
    Ok((q, j + if bre { 2 } else { 1 }))
}

enum Elem {
    Byte(u8),
    /// A `[:name:]` class (the name).
    Class(String),
}

/// Parse one bracket element at `j`: a byte, `[:class:]`, `[=c=]` or `[.c.]`.
fn elem(p: &str, j: usize, open: usize) -> Result<(Elem, usize), (usize, String)> {
    let b = p.as_bytes();
    let unmatched = || (open, "Unmatched [, [^, [:, [., or [=".to_string());
    if b[j] == b'[' && matches!(b.get(j + 1), Some(b':' | b'.' | b'=')) {
        let kind = b[j + 1];
        let end = b[j + 2..]
            .windows(2)
            .position(|w| w[0] == kind && w[1] == b']')
            .map(|k| j + 2 + k)
            .ok_or_else(unmatched)?;
        let name = &p[j + 2..end];
        let next = end + 2;
        return match kind {
            b':' => {
                if CLASSES.contains(&name) {
                    Ok((Elem::Class(name.to_string()), next))
                } else {
                    Err((j, format!("Invalid character class name \"{name}\"")))
                }
            }
            _ => {
                if name.len() == 1 {
                    Ok((Elem::Byte(name.as_bytes()[0]), next))
                } else {
                    Err((
                        j,
                        format!(
                            "collating element [{}{name}{}] is not supported (only single characters)",
                            kind as char, kind as char
                        ),
                    ))
                }
            }
        };
    }
    Ok((Elem::Byte(b[j]), j + 1))
}

/// Members of a POSIX character class in the C locale.
fn class_member(name: &str, c: u8) -> bool {
    match name {
        "alpha" => c.is_ascii_alphabetic(),
        "upper" => c.is_ascii_uppercase(),
        "lower" => c.is_ascii_lowercase(),
        "digit" => c.is_ascii_digit(),
        "xdigit" => c.is_ascii_hexdigit(),
        "space" => matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        "print" => (0x20..0x7f).contains(&c),
        "punct" => c.is_ascii_punctuation(),
        "graph" => c.is_ascii_graphic(),
        "cntrl" => c.is_ascii_control(),
        "blank" => c == b' ' || c == b'\t',
        "alnum" => c.is_ascii_alphanumeric(),
        _ => false,
    }
}

/// Translate the bracket expression at `open` (`[`) into an explicit byte
/// set; returns the offset after its `]`.
///
/// glibc in the C locale with REG_ICASE compares upper-cased bytes: a byte
/// `c` is in `[lo-hi]` when `toupper(lo) <= toupper(c) <= toupper(hi)`
/// (so `[x-~]` matches `[` but not `a`, and `[Z-a]` is an invalid range).
/// The set is computed here, byte by byte, so the regex crate's own case
/// folding of classes (which differs) changes nothing: the set is already
/// closed under ASCII case.
fn bracket(
    p: &str,
    open: usize,
    newline: bool,
    icase: bool,
    out: &mut String,
) -> Result<usize, (usize, String)> {
    let b = p.as_bytes();
    let t = |c: u8| if icase { c.to_ascii_uppercase() } else { c };
    let unmatched = (open, "Unmatched [, [^, [:, [., or [=".to_string());
    let mut set = [false; 256];
    let mut j = open + 1;
    let negate = b.get(j) == Some(&b'^');
    if negate {
        j += 1;
    }
    let mut first = true;
    loop {
        if j >= b.len() {
            return Err(unmatched);
        }
        if b[j] == b']' && !first {
            j += 1;
            break;
        }
        if b[j] == b'-' && !first && b.get(j + 1) != Some(&b']') {
            // glibc: '-' may only start the list, end it, or end a range.
            return Err((j, "Invalid range end".to_string()));
        }
        first = false;
        let (e, next) = elem(p, j, open)?;
        j = next;
        match e {
            Elem::Class(name) => {
                for c in 0..=255u8 {
                    if class_member(&name, c) {
                        set[t(c) as usize] = true;
                    }
                }
            }
            Elem::Byte(lo) => {
                if b.get(j) == Some(&b'-') && b.get(j + 1).is_some_and(|&c| c != b']') {
                    let (e2, next2) = elem(p, j + 1, open)?;
                    let Elem::Byte(hi) = e2 else {
                        return Err((j, "Invalid range end".to_string()));
                    };
                    let (a, z) = (t(lo), t(hi));
                    if a > z {
                        return Err((j, "Invalid range end".to_string()));
                    }
                    for c in a..=z {
                        set[c as usize] = true;
                    }
                    j = next2;
                } else {
                    set[t(lo) as usize] = true;
                }
            }
        }
    }
    let mut member = [false; 256];
    for (c, m) in member.iter_mut().enumerate() {
        *m = set[t(c as u8) as usize] != negate;
    }
    if negate && newline {
        // REG_NEWLINE: a non-matching list never matches a newline.
        member[b'\n' as usize] = false;
    }
    // Keys are C strings: NUL never occurs.
    member[0] = false;
    if !member.iter().any(|&m| m) {
        out.push_str("[^\\x00-\\xFF]");
        return Ok(j);
    }
    out.push('[');
    let mut c = 0usize;
    while c < 256 {
        if !member[c] {
            c += 1;
            continue;
        }
        let start = c;
        while c + 1 < 256 && member[c + 1] {
            c += 1;
        }
        hex(out, start as u8);
        if c > start {
            out.push('-');
            hex(out, c as u8);
        }
        c += 1;
    }
    out.push(']');
    Ok(j)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::maps::Table;

    fn one(rule: &str, key: &str) -> Option<String> {
        Regexp::parse(rule).unwrap().lookup(key).unwrap()
    }

    #[test]
    fn translation_examples() {
        let t = |p: &str| translate(p, true, false, false).unwrap();
        assert_eq!(t("a{,2}"), "a{0,2}");
        assert_eq!(t("a**"), "(?:a*)*");
        assert_eq!(t("a+?"), "(?:a+)?");
        assert_eq!(t("(ab)*{2}"), "(?:(ab)*){2}");
        assert_eq!(t("[\\d]"), "[\\x5C\\x64]");
        assert_eq!(t("a)"), "a\\x29");
        assert_eq!(t("[a-c]"), "[\\x61-\\x63]");
        assert_eq!(
            translate("[\\d]", true, false, true).unwrap(),
            "[\\x44\\x5C\\x64]",
            "icase: the set holds both cases"
        );
        assert_eq!(
            translate("[^a]", true, true, true).unwrap(),
            "[\\x01-\\x09\\x0B-\\x40\\x42-\\x60\\x62-\\xFF]",
            "REG_NEWLINE: no newline in a negated list"
        );
        let b = |p: &str| translate(p, false, false, false).unwrap();
        assert_eq!(b("\\(a\\)*"), "(a)*");
        assert_eq!(b("*a"), "\\x2Aa");
        assert_eq!(b("a\\{2\\}"), "a{2}");
        assert_eq!(b("a{2}"), "a\\x7B2\\x7D");
        assert_eq!(b("^*"), "^\\x2A");
        assert_eq!(b("a^b$c$"), "a\\x5Eb\\x24c$");
        assert_eq!(b("a\\|b\\+\\?"), "a|(?:b+)?");
    }

    #[test]
    fn icase_ranges_compare_upper_case_like_glibc() {
        // Checked with postmap and with glibc regcomp(REG_ICASE) directly.
        assert_eq!(one("/^[x-~]$/ r", "[").as_deref(), Some("r"));
        assert_eq!(one("/^[x-~]$/ r", "X").as_deref(), Some("r"));
        assert_eq!(one("/^[x-~]$/ r", "a"), None);
        assert_eq!(one("/^[A-z]$/ r", "_"), None);
        assert_eq!(one("/^[A-z]$/ r", "q").as_deref(), Some("r"));
        assert_eq!(one("/^[[:lower:]]$/ l", "A").as_deref(), Some("l"));
        assert_eq!(one("/^[^[:upper:]]$/ n", "a"), None);
        assert_eq!(
            one("/^[]-a]$/i r", "^").as_deref(),
            Some("r"),
            "case-sensitive: a valid range"
        );
        for bad in ["/[Z-a]/ r", "/[]-a]/ r", "/[a-c-e]/ r"] {
            let e = Regexp::parse(bad).unwrap_err();
            assert!(e.msg.contains("Invalid range end"), "{bad}: {e}");
        }
        assert_eq!(
            one("/^[^a][^a]$/ hi", "é").as_deref(),
            Some("hi"),
            "bytes >= 0x80 are not 'a'"
        );
    }

    #[test]
    fn glibc_behaviour() {
        // Each of these was checked with postmap -q / glibc regcomp.
        assert_eq!(one("/[\\d]/ bs", "d").as_deref(), Some("bs"));
        assert_eq!(one("/[\\d]/ bs", "\\").as_deref(), Some("bs"));
        assert_eq!(one("/[\\d]/ bs", "5"), None);
        assert_eq!(one("/a+b/x bre", "aab"), None);
        assert_eq!(one("/a+b/x bre", "a+b").as_deref(), Some("bre"));
        assert_eq!(one("/X/ ci", "x").as_deref(), Some("ci"));
        assert_eq!(one("/X/i cs", "x"), None);
        assert_eq!(one("/^a.b$/ dot", "a\nb").as_deref(), Some("dot"));
        assert_eq!(one("/a.b/m mdot", "a\nb"), None);
        assert_eq!(one("/a[^x]b/m mneg", "a\nb"), None);
        assert_eq!(one("/a[^x]b/ neg", "a\nb").as_deref(), Some("neg"));
        assert_eq!(one("/^a$/m ml", "x\na\ny").as_deref(), Some("ml"));
        assert_eq!(one("/x$/ dollar", "x\n"), None);
        assert_eq!(one("/é/ utf", "É"), None);
        assert_eq!(one("/é/ utf", "é").as_deref(), Some("utf"));
        assert_eq!(one("/^.$/ onechar", "é"), None);
        assert_eq!(one("/a\\|b/ altesc", "b"), None);
        assert_eq!(one("/a\\|b/ altesc", "a|b").as_deref(), Some("altesc"));
        assert_eq!(one("/\\w+\\s\\<x\\>/ gnu", "ab x").as_deref(), Some("gnu"));
        assert_eq!(one("/a{,2}b/ brace", "b").as_deref(), Some("brace"));
        assert_eq!(one("/[]a]/ rb", "]").as_deref(), Some("rb"));
        assert_eq!(one("/[^]a]/ nrb", "]"), None);
        assert_eq!(one("/^x[a-]$/ dash", "x-").as_deref(), Some("dash"));
        assert_eq!(one("/[[:digit:]]+/ cls", "12").as_deref(), Some("cls"));
        assert_eq!(one("/[[=a=]]/ eq", "a").as_deref(), Some("eq"));
        assert_eq!(one("/[[.-.]]/ coll", "-").as_deref(), Some("coll"));
        assert_eq!(
            one("/a\\{2\\}/ escbrace", "a{2}").as_deref(),
            Some("escbrace")
        );
        assert_eq!(one("/()/ empty", "x").as_deref(), Some("empty"));
        assert_eq!(one("#x# hash-delim", "x"), None, "a # line is a comment");
        assert_eq!(one("|x| bar", "x").as_deref(), Some("bar"));
        assert_eq!(one("/a\\/b/ slash", "a/b").as_deref(), Some("slash"));
        assert_eq!(one("/(x)(y)?/ [$2]", "x").as_deref(), Some("[]"));
        assert_eq!(one("/x/!/xy/ sec", "x").as_deref(), Some("sec"));
        assert_eq!(one("/x/!/xy/ sec", "xy"), None);
        assert_eq!(one("!/x/ neg", "y").as_deref(), Some("neg"));
        assert_eq!(
            one("/x/  spaced    result  ", "x").as_deref(),
            Some("spaced    result")
        );
        assert_eq!(
            one(
                "/^(.*)-outgoing@(.*)$/ 550 Use ${1}@${2} instead",
                "list-outgoing@example.com"
            )
            .as_deref(),
            Some("550 Use list@example.com instead")
        );
    }

    #[test]
    fn errors_name_line_column_and_construct() {
        let cases: &[(&str, (usize, usize), &str)] = &[
            ("/(x)\\1/ r", (1, 5), "back-reference \\1"),
            ("# c\n/\\d+/ r", (2, 2), "\\d is not defined"),
            ("/x/q r", (1, 4), "unknown regexp option \"q\""),
            ("/x r", (1, 1), "no closing regexp delimiter \"/\""),
            ("/x/ $0", (1, 5), "out-of-range replacement index \"0\""),
            ("/x/ $1", (1, 5), "out of range replacement index \"1\""),
            ("/(x)/ a$1b", (1, 8), "non-numeric replacement index \"1b\""),
            ("/(x)/ $", (1, 7), "empty macro name"),
            ("!/(x)/ $1", (1, 8), "$number found in negative match"),
            ("aa/x/ alpha", (1, 1), "unrecognized request"),
            ("/*a/ r", (1, 2), "Invalid preceding regular expression"),
            ("/a|*b/ r", (1, 4), "Invalid preceding regular expression"),
            ("/a{1/ r", (1, 3), "Unmatched \\{"),
            ("/a{2,1}/ r", (1, 3), "Invalid content"),
            ("/[z-a]/ r", (1, 4), "Invalid range end"),
            ("/[[:foo:]]/ r", (1, 3), "Invalid character class name"),
            ("/[a/ r", (1, 2), "Unmatched ["),
            ("/(a/ r", (1, 2), "Unmatched ( or"),
            ("/x\\/ r", (1, 1), "no closing regexp delimiter"),
            ("/[[.hyphen.]]/ r", (1, 3), "collating element"),
            ("/a{32768}/ r", (1, 3), "too big"),
            ("/(a{1000}){1000}/ r", (1, 2), "pattern too large"),
            ("if /x/\n/y/ r\nendif x\n/\\(/x r", (4, 2), "Unmatched ( or"),
            ("if", (1, 3), "no regexp"),
            ("/x/ r\n  /y/i! cont", (1, 1), ""),
        ];
        for (text, pos, msg) in cases {
            match Regexp::parse(text) {
                Err(e) => {
                    assert!(!msg.is_empty(), "{text:?}: unexpected {e}");
                    assert_eq!((e.line, e.col), *pos, "{text:?}: {e}");
                    assert!(e.msg.contains(msg), "{text:?}: {e}");
                }
                Ok(_) => assert!(msg.is_empty(), "{text:?} should fail with {msg}"),
            }
        }
    }

    #[test]
    fn if_endif_nesting_and_notes() {
        let t = Regexp::parse(
            "/^postmaster@/ OK\n\
             if !/^owner-/\n\
             /^(.*)-outgoing@(.*)$/ 550 Use ${1}@${2} instead\n\
             endif\n\
             IF /@example\\.com$/\n\
             if /^a/\n\
             /./ a-at-example\n\
             endif\n\
             /./ other-at-example\n\
             ENDIF\n\
             endif\n\
             if /never/ extra\n\
             /./ unreachable\n",
        )
        .unwrap();
        let g = |k: &str| t.lookup(k).unwrap();
        assert_eq!(g("Postmaster@x").as_deref(), Some("OK"));
        assert_eq!(g("l-outgoing@x").as_deref(), Some("550 Use l@x instead"));
        assert_eq!(g("owner-l-outgoing@x"), None);
        assert_eq!(g("abc@example.com").as_deref(), Some("a-at-example"));
        assert_eq!(g("bc@example.com").as_deref(), Some("other-at-example"));
        assert_eq!(g("zz"), None, "failed IF without ENDIF ends the search");
        let n = t.note().unwrap();
        assert!(
            n.contains("line 11: ignoring ENDIF without matching IF"),
            "{n}"
        );
        assert!(n.contains("line 12: ignoring extra text after IF"), "{n}");
        assert!(n.contains("line 12: IF has no matching ENDIF"), "{n}");
    }

    #[test]
    fn empty_result_is_a_lookup_error() {
        let t = Regexp::parse("/x/\n/y/ ok\n").unwrap();
        assert!(t.note().unwrap().contains("no replacement text"));
        let e = t.lookup("x").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.msg.contains("empty string result is not allowed"), "{e}");
        assert_eq!(t.lookup("y").unwrap().as_deref(), Some("ok"));
        let t = Regexp::parse("/(x)(y)?/ ${2}\n").unwrap();
        assert!(t.lookup("x").is_err());
    }

    #[test]
    fn hostile_patterns_are_bounded() {
        let e = Regexp::parse("/((a{100}){100}){100}/ r").unwrap_err();
        assert!(e.msg.contains("too large"), "{e}");
    }
}
