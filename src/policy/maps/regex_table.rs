//! The rule engine shared by `regexp:` and `pcre:` tables.
//!
//! Postfix's dict_regexp.c and dict_pcre.c read the same file structure:
//! `/pattern/flags result`, `!/pattern/flags result`, `if /pattern/flags`,
//! `endif`, with any delimiter character, and `$n`/`${n}`/`$(n)`/`$$` in
//! the result. This module implements that structure once; the two dialects
//! differ only in how a pattern and its flags become a Rust regex, which
//! [`super::regexp`] and [`super::pcre`] provide.
//!
//! Matching is done on the key's bytes with Unicode disabled, because Postfix
//! matches in the C locale (POSIX) or in PCRE's non-UTF mode: `.` is one
//! byte, case-insensitivity is ASCII-only (`É` does not match `é`), `\w` is
//! `[0-9A-Za-z_]`. Every compiled regex is bounded
//! (`crate::policy::regex_limits::TABLE_NFA`, `TABLE_LAZY_DFA`), so a hostile
//! pattern cannot exhaust memory, and the regex crate's matching time is
//! linear in the key length.

use super::source::{
    for_each_logical_line, is_space, trim_start_space, unclosed_if_notes, LogicalLine,
};
use super::{join_notes, read_source, Table};
use crate::output::diag::Diag;
use regex::bytes::{Regex, RegexBuilder};
use std::path::{Path, PathBuf};

/// Which table type; decides the syntax details Postfix's two readers differ in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Posix,
    Pcre,
}

impl Dialect {
    fn name(self) -> &'static str {
        match self {
            Dialect::Posix => "regexp",
            Dialect::Pcre => "pcre",
        }
    }
}

/// A compiled pattern.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub re: Regex,
    /// PCRE's `A` flag: only a match that starts at offset 0 counts. (With
    /// leftmost-first search, an anchored match exists iff the leftmost
    /// match starts at 0, and it is that match.)
    pub anchored: bool,
}

impl Compiled {
    fn is_match(&self, hay: &[u8]) -> bool {
        if self.anchored {
            self.re.find(hay).is_some_and(|m| m.start() == 0)
        } else {
            self.re.is_match(hay)
        }
    }

    fn captures<'h>(&self, hay: &'h [u8]) -> Option<regex::bytes::Captures<'h>> {
        let c = self.re.captures(hay)?;
        if self.anchored && c.get(0).is_some_and(|m| m.start() != 0) {
            return None;
        }
        Some(c)
    }

    /// Number of capture groups, not counting the whole match.
    fn groups(&self) -> usize {
        self.re.captures_len() - 1
    }
}

/// Build a Rust regex from translated text with the limits applied.
pub(crate) fn build(translated: &str) -> Result<Regex, String> {
    crate::policy::budget::charge(|| {
        RegexBuilder::new(translated)
            .unicode(false)
            .size_limit(crate::policy::regex_limits::TABLE_NFA)
            .dfa_size_limit(crate::policy::regex_limits::TABLE_LAZY_DFA)
            .build()
    })?
    .map_err(|e| match e {
        regex::Error::CompiledTooBig(n) => {
            format!("pattern too large: its compiled form exceeds the {n}-byte limit")
        }
        other => {
            let s = other.to_string();
            let last = s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
            format!("invalid pattern: {}", last.trim_start_matches("error: "))
        }
    })
}

/// A pattern as written in the table, before compilation.
pub(crate) struct RawPattern<'a> {
    /// The text between the delimiters, as written.
    pub text: &'a str,
    /// Byte offset of `text` in the logical line.
    pub offset: usize,
    /// The flag characters after the closing delimiter.
    pub flags: &'a str,
    /// Byte offset of `flags` in the logical line.
    pub flags_offset: usize,
}

/// Error from a dialect's compiler: byte offset relative to the pattern text
/// (or to the flags when `in_flags`), and a message.
pub(crate) struct CompileError {
    pub offset: usize,
    pub in_flags: bool,
    pub msg: String,
}

/// A dialect's compiler: pattern + flags -> compiled regex, plus notes.
pub(crate) type CompileFn = fn(&RawPattern<'_>, &mut Vec<String>) -> Result<Compiled, CompileError>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Sub(usize),
}

/// A result with `$n` substitutions, parsed like Postfix's mac_parse().
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replacement {
    parts: Vec<Part>,
    max_sub: usize,
}

impl Replacement {
    /// Parse `s`; `Err((byte offset, message))` as Postfix words it.
    pub(crate) fn parse(s: &str, dialect: Dialect) -> Result<Replacement, (usize, String)> {
        let b = s.as_bytes();
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut max_sub = 0usize;
        let mut i = 0;
        let mut lit_start = 0;
        while i < b.len() {
            if b[i] != b'$' {
                i += 1;
                continue;
            }
            lit.push_str(&s[lit_start..i]);
            if b.get(i + 1) == Some(&b'$') {
                lit.push('$');
                i += 2;
                lit_start = i;
                continue;
            }
            let dollar = i;
            i += 1;
            let name: &str;
            if let Some(&open) = b.get(i).filter(|&&c| c == b'{' || c == b'(') {
                let close = if open == b'{' { b'}' } else { b')' };
                let mut level = 1;
                let start = i + 1;
                let mut j = start;
                loop {
                    if j >= b.len() {
                        return Err((dollar, format!("truncated macro reference: \"{s}\"")));
                    }
                    if b[j] == open {
                        level += 1;
                    }
                    if b[j] == close {
                        level -= 1;
                        if level == 0 {
                            break;
                        }
                    }
                    j += 1;
                }
                name = &s[start..j];
                i = j + 1;
            } else {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                name = &s[start..i];
            }
            if name.is_empty() {
                return Err((dollar, format!("empty macro name: \"{s}\"")));
            }
            if !name.bytes().all(|c| c.is_ascii_digit()) {
                return Err((
                    dollar,
                    format!("non-numeric replacement index \"{name}\" (write ${{1}}x, not $1x)"),
                ));
            }
            let n = name.parse::<usize>().unwrap_or(usize::MAX);
            if n < 1 || n == usize::MAX {
                let word = match dialect {
                    Dialect::Posix => "out-of-range",
                    Dialect::Pcre => "out of range",
                };
                return Err((dollar, format!("{word} replacement index \"{name}\"")));
            }
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Sub(n));
            max_sub = max_sub.max(n);
            lit_start = i;
        }
        lit.push_str(&s[lit_start..]);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Replacement { parts, max_sub })
    }

    fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Lit(s)] => Some(s),
            _ => None,
        }
    }

    fn expand(&self, caps: &regex::bytes::Captures<'_>) -> String {
        let mut out: Vec<u8> = Vec::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.extend_from_slice(s.as_bytes()),
                Part::Sub(n) => {
                    if let Some(m) = caps.get(*n) {
                        out.extend_from_slice(m.as_bytes());
                    }
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[derive(Debug)]
enum Rule {
    Match {
        first: Compiled,
        first_positive: bool,
        second: Option<(Compiled, bool)>,
        result: Replacement,
        /// The result as written, for `deliver check`.
        text: String,
        line: usize,
    },
    If {
        re: Compiled,
        positive: bool,
        end: Option<usize>,
        line: usize,
    },
    Endif,
}

/// A `regexp:` or `pcre:` table.
#[derive(Debug)]
pub struct RegexTable {
    spec: String,
    path: PathBuf,
    dialect: Dialect,
    rules: Vec<Rule>,
    notes: Vec<String>,
}

/// `!`s before a pattern: (positive, offset after them).
fn negations(t: &str, mut i: usize, dialect: Dialect) -> (bool, usize) {
    let b = t.as_bytes();
    let mut positive = true;
    match dialect {
        // dict_regexp: all '!' first, then whitespace.
        Dialect::Posix => {
            while b.get(i) == Some(&b'!') {
                positive = !positive;
                i += 1;
            }
            while b.get(i).is_some_and(|&c| is_space(c)) {
                i += 1;
            }
        }
        // dict_pcre: '!' and whitespace in any order.
        Dialect::Pcre => {
            while let Some(&c) = b.get(i) {
                if c == b'!' {
                    positive = !positive;
                } else if !is_space(c) {
                    break;
                }
                i += 1;
            }
        }
    }
    (positive, i)
}

/// Split `!/pattern/flags` at offset `i`: (positive, raw, offset after flags).
fn get_pattern<'a>(
    path: &Path,
    l: &'a LogicalLine,
    i: usize,
    dialect: Dialect,
) -> Result<(bool, RawPattern<'a>, usize), Diag> {
    let t = l.text.as_str();
    let b = t.as_bytes();
    let (positive, mut p) = negations(t, i, dialect);
    if p >= b.len() {
        return Err(l.err(path, p, "no regexp"));
    }
    let delim = b[p];
    if !delim.is_ascii() {
        return Err(l.err(path, p, "the regexp delimiter must be an ASCII character"));
    }
    p += 1;
    let start = p;
    while p < b.len() {
        if b[p] == b'\\' {
            if p + 1 < b.len() {
                p += 1;
            } else {
                break;
            }
        } else if b[p] == delim {
            break;
        }
        p += 1;
    }
    if p >= b.len() {
        return Err(l.err(
            path,
            start - 1,
            format!("no closing regexp delimiter \"{}\"", delim as char),
        ));
    }
    let text = &t[start..p];
    p += 1;
    let flags_start = p;
    while p < b.len() && !is_space(b[p]) && !(dialect == Dialect::Posix && b[p] == b'!') {
        p += 1;
    }
    Ok((
        positive,
        RawPattern {
            text,
            offset: start,
            flags: &t[flags_start..p],
            flags_offset: flags_start,
        },
        p,
    ))
}

fn compile_at(
    path: &Path,
    l: &LogicalLine,
    raw: &RawPattern<'_>,
    compile: CompileFn,
    notes: &mut Vec<String>,
) -> Result<Compiled, Diag> {
    let mut local = Vec::new();
    let r = compile(raw, &mut local);
    for n in local {
        notes.push(format!("{}, line {}: {n}", path.display(), l.line()));
    }
    r.map_err(|e| {
        let base = if e.in_flags {
            raw.flags_offset
        } else {
            raw.offset
        };
        l.err(path, base + e.offset, e.msg)
    })
}

impl RegexTable {
    pub(crate) fn open(
        spec: &str,
        path: &Path,
        dialect: Dialect,
        compile: CompileFn,
    ) -> Result<RegexTable, Diag> {
        let data = read_source(path)?;
        RegexTable::parse(spec, path, &data, dialect, compile)
    }

    pub(crate) fn parse(
        spec: &str,
        path: &Path,
        data: &[u8],
        dialect: Dialect,
        compile: CompileFn,
    ) -> Result<RegexTable, Diag> {
        let mut rules: Vec<Rule> = Vec::new();
        let mut notes: Vec<String> = Vec::new();
        let mut stack: Vec<usize> = Vec::new();
        let mut reader_notes = Vec::new();
        for_each_logical_line(path, data, &mut reader_notes, |l: &LogicalLine| {
            let t = l.text.as_str();
            let lineno = l.line();
            let b = t.as_bytes();
            let here = format!("{}, line {lineno}", path.display());
            if b.is_empty() {
                // Only a line that starts with a null byte is empty here.
                return Err(l.err(path, 0, "no pattern before a null byte"));
            }
            if !b[0].is_ascii_alphanumeric() {
                let (positive, first, mut p) = get_pattern(path, l, 0, dialect)?;
                let mut second_raw = None;
                if dialect == Dialect::Posix && b.get(p) == Some(&b'!') {
                    let (pos2, raw2, p2) = get_pattern(path, l, p, dialect)?;
                    second_raw = Some((pos2, raw2));
                    p = p2;
                }
                let rstart = t.len() - trim_start_space(&t[p..]).len();
                let rtext = &t[rstart..];
                if rtext.is_empty() {
                    notes.push(format!("{here}: no replacement text: using empty string (a match is a lookup error)"));
                }
                let result = Replacement::parse(rtext, dialect).map_err(|(off, m)| {
                    l.err(path, rstart + off, format!("bad replacement syntax: {m}"))
                })?;
                if result.max_sub > 0 && !positive {
                    return Err(l.err(
                        path,
                        rstart,
                        "$number found in negative match replacement text",
                    ));
                }
                let first_c = compile_at(path, l, &first, compile, &mut notes)?;
                if result.max_sub > first_c.groups() {
                    return Err(l.err(
                        path,
                        rstart,
                        format!(
                            "out of range replacement index \"{}\": the pattern has {} group(s)",
                            result.max_sub,
                            first_c.groups()
                        ),
                    ));
                }
                let second = match second_raw {
                    Some((pos2, raw2)) => {
                        Some((compile_at(path, l, &raw2, compile, &mut notes)?, pos2))
                    }
                    None => None,
                };
                rules.push(Rule::Match {
                    first: first_c,
                    first_positive: positive,
                    second,
                    result,
                    text: rtext.to_string(),
                    line: lineno,
                });
                return Ok(());
            }
            if super::cidr::keyword(t, "if") {
                let start = 2 + (t.len() - 2 - trim_start_space(&t[2..]).len());
                let (positive, raw, p) = get_pattern(path, l, start, dialect)?;
                let rest = trim_start_space(&t[p..]);
                if !rest.is_empty() {
                    notes.push(format!(
                        "{here}: ignoring extra text after IF statement: \"{rest}\" (do not prepend whitespace to statements between IF and ENDIF)"
                    ));
                }
                let re = compile_at(path, l, &raw, compile, &mut notes)?;
                stack.push(rules.len());
                rules.push(Rule::If {
                    re,
                    positive,
                    end: None,
                    line: lineno,
                });
                return Ok(());
            }
            if super::cidr::keyword(t, "endif") {
                match stack.pop() {
                    None => {
                        notes.push(format!("{here}: ignoring ENDIF without matching IF"));
                        return Ok(());
                    }
                    Some(i) => {
                        if !trim_start_space(&t[5..]).is_empty() {
                            notes.push(format!("{here}: ignoring extra text after ENDIF"));
                        }
                        let at = rules.len();
                        if let Rule::If { end, .. } = &mut rules[i] {
                            *end = Some(at);
                        }
                        rules.push(Rule::Endif);
                    }
                }
                return Ok(());
            }
            Err(l.err(
                path,
                0,
                "unrecognized request: expected /pattern/ result, if /pattern/ or endif",
            ))
        })?;
        notes.extend(unclosed_if_notes(
            path,
            stack.iter().filter_map(|&i| match rules[i] {
                Rule::If { line, .. } => Some(line),
                _ => None,
            }),
        ));
        reader_notes.append(&mut notes);
        Ok(RegexTable {
            spec: spec.to_string(),
            path: path.to_path_buf(),
            dialect,
            rules,
            notes: reader_notes,
        })
    }
}

impl Table for RegexTable {
    fn results(&self) -> Vec<(usize, String)> {
        self.rules
            .iter()
            .filter_map(|r| match r {
                Rule::Match { text, line, .. } => Some((*line, text.clone())),
                _ => None,
            })
            .collect()
    }
    fn spec(&self) -> &str {
        &self.spec
    }
    fn is_pattern(&self) -> bool {
        true
    }
    fn lookup(&self, key: &str) -> Result<Option<String>, Diag> {
        let hay = key.as_bytes();
        let mut i = 0;
        while i < self.rules.len() {
            match &self.rules[i] {
                Rule::Match {
                    first,
                    first_positive,
                    second,
                    result,
                    line,
                    ..
                } => {
                    let value = if result.max_sub > 0 {
                        // Only positive rules carry $n (checked at parse).
                        match first.captures(hay) {
                            Some(c) => {
                                if second
                                    .as_ref()
                                    .is_some_and(|(re, pos)| re.is_match(hay) != *pos)
                                {
                                    None
                                } else {
                                    Some(result.expand(&c))
                                }
                            }
                            None => None,
                        }
                    } else if first.is_match(hay) == *first_positive
                        && second
                            .as_ref()
                            .is_none_or(|(re, pos)| re.is_match(hay) == *pos)
                    {
                        Some(result.literal().unwrap_or("").to_string())
                    } else {
                        None
                    };
                    if let Some(v) = value {
                        if v.is_empty() {
                            return Err(Diag {
                                file: self.path.clone(),
                                cause: crate::output::exit::Cause::Input,
                                line: *line,
                                col: 0,
                                msg: format!(
                                    "{} table {}: key \"{key}\": empty string result is not allowed",
                                    self.dialect.name(),
                                    self.spec
                                ),
                            });
                        }
                        return Ok(Some(v));
                    }
                }
                Rule::If {
                    re, positive, end, ..
                } => {
                    if re.is_match(hay) != *positive {
                        match end {
                            Some(e) => i = *e,
                            None => return Ok(None),
                        }
                    }
                }
                Rule::Endif => {}
            }
            i += 1;
        }
        Ok(None)
    }
    fn note(&self) -> Option<String> {
        join_notes(&self.notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_parsing_follows_mac_parse() {
        let r = Replacement::parse("a$1b${2}c$(3)d$$e", Dialect::Pcre);
        assert!(r.is_err(), "$1b is the name 1b");
        let r = Replacement::parse("a${1}b${2}c$(3)d$$e", Dialect::Pcre).unwrap();
        assert_eq!(r.max_sub, 3);
        assert_eq!(
            r.parts,
            vec![
                Part::Lit("a".into()),
                Part::Sub(1),
                Part::Lit("b".into()),
                Part::Sub(2),
                Part::Lit("c".into()),
                Part::Sub(3),
                Part::Lit("d$e".into())
            ]
        );
        let r = Replacement::parse("550 cost $$5", Dialect::Posix).unwrap();
        assert_eq!(r.literal(), Some("550 cost $5"));
        for (s, off, msg) in [
            ("x $", 2, "empty macro name"),
            ("x $ y", 2, "empty macro name"),
            ("$a", 0, "non-numeric replacement index \"a\""),
            ("ab ${1", 3, "truncated macro reference"),
            ("$0", 0, "replacement index \"0\""),
            ("${1x}", 0, "non-numeric"),
        ] {
            let (o, m) = Replacement::parse(s, Dialect::Posix).unwrap_err();
            assert_eq!(o, off, "{s}");
            assert!(m.contains(msg), "{s}: {m}");
        }
        let (_, m) = Replacement::parse("$0", Dialect::Posix).unwrap_err();
        assert!(m.starts_with("out-of-range"), "{m}");
        let (_, m) = Replacement::parse("$0", Dialect::Pcre).unwrap_err();
        assert!(m.starts_with("out of range"), "{m}");
    }
}
