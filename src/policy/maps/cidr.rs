//! `cidr:` tables (cidr_table(5)): network/prefix patterns, first match wins.
//!
//! Promises, each checked against postmap 3.7:
//! - `pattern result` where pattern is `address`, `address/prefix`,
//!   `[address]`, `[address]/prefix` or `[address/prefix]`, IPv4 or IPv6
//!   (an address with a `:` is IPv6). Addresses are parsed like inet_pton(3):
//!   IPv4 is exactly four decimal octets without leading zeros; IPv6 may use
//!   `::` and an embedded IPv4 tail; leading zeros in IPv6 groups are fine.
//! - `!pattern result` matches when the key does NOT match the pattern; any
//!   number of `!` (toggling) and whitespace may precede the pattern.
//! - `if pattern` / `if !pattern` ... `endif` blocks, nested; `if` and
//!   `endif` are case-insensitive words.
//! - Matching is binary, after converting key and pattern from text: rules
//!   of the other address family never match, not even negated ones, and a
//!   failed `if` of the other family skips its block. A key that is not an
//!   address (brackets, leading zeros, a name) matches nothing.
//! - Rules are tried in file order; the first match returns its result,
//!   verbatim (inner whitespace kept, trailing whitespace removed).
//! - A network with host bits set (`10.1.2.3/8`) is skipped with a note that
//!   suggests the right network, exactly like Postfix ("non-null host address
//!   bits ... skipping this rule").
//! - Real syntax errors, which Postfix skips with a warning, are a
//!   [`Diag`] with line and column: bad address, bad or too long prefix,
//!   missing `]`, text after `]`, missing result, text after `endif`.
//!   An `endif` without `if` and an `if` without `endif` are notes, as in
//!   Postfix; a failed `if` without `endif` then ends the search.

use super::source::{
    for_each_logical_line, is_space, trim_end_space, unclosed_if_notes, LogicalLine,
};
use super::{join_notes, read_source, Table};
use crate::output::diag::Diag;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

#[derive(Debug, Clone, Copy)]
struct Net {
    family: Family,
    addr: u128,
    /// Network mask over the low `bits()` bits of `addr`.
    mask: u128,
    /// true for a positive match, false after an odd number of `!`.
    positive: bool,
}

impl Net {
    fn matches(&self, family: Family, addr: u128) -> bool {
        self.family == family && ((addr & self.mask) == self.addr) == self.positive
    }
}

#[derive(Debug)]
enum Rule {
    Match {
        net: Net,
        value: String,
        line: usize,
    },
    If {
        net: Net,
        end: Option<usize>,
        line: usize,
    },
    Endif,
}

/// A `cidr:` table.
#[derive(Debug)]
pub struct Cidr {
    spec: String,
    rules: Vec<Rule>,
    notes: Vec<String>,
}

/// Parse a lookup key or a pattern address like inet_pton(3).
fn parse_addr(s: &str) -> Option<(Family, u128)> {
    if s.contains(':') {
        s.parse::<Ipv6Addr>()
            .ok()
            .map(|a| (Family::V6, u128::from(a)))
    } else {
        s.parse::<Ipv4Addr>()
            .ok()
            .map(|a| (Family::V4, u128::from(u32::from(a))))
    }
}

fn bits(f: Family) -> u32 {
    match f {
        Family::V4 => 32,
        Family::V6 => 128,
    }
}

fn mask_of(f: Family, len: u32) -> u128 {
    let b = bits(f);
    if len == 0 {
        return 0;
    }
    let all: u128 = if b == 128 {
        u128::MAX
    } else {
        (1u128 << b) - 1
    };
    (all >> (b - len)) << (b - len)
}

fn format_addr(f: Family, a: u128) -> String {
    match f {
        Family::V4 => Ipv4Addr::from(a as u32).to_string(),
        Family::V6 => Ipv6Addr::from(a).to_string(),
    }
}

/// Outcome of parsing one address pattern.
enum Pat {
    Net(Net),
    /// Host bits set: Postfix's message; the rule is skipped.
    HostBits(String),
}

/// cidr_match_parse(): `pattern` is the text after any `!`. `Err` is the
/// Postfix message for a syntax error.
fn parse_pattern(pattern: &str, positive: bool) -> Result<Pat, String> {
    let (pat, mask): (&str, Option<&str>);
    if let Some(rest) = pattern.strip_prefix('[') {
        let Some(close) = rest.find(']') else {
            return Err(format!("missing ']' character after \"[{rest}\""));
        };
        let inside = &rest[..close];
        let after = &rest[close + 1..];
        if let Some(m) = after.strip_prefix('/') {
            pat = inside;
            mask = Some(m);
        } else if !after.is_empty() {
            return Err(format!("garbage after \"[{inside}]\""));
        } else {
            match inside.split_once('/') {
                Some((p, m)) => {
                    pat = p;
                    mask = Some(m);
                }
                None => {
                    pat = inside;
                    mask = None;
                }
            }
        }
    } else {
        match pattern.split_once('/') {
            Some((p, m)) => {
                pat = p;
                mask = Some(m);
            }
            None => {
                pat = pattern;
                mask = None;
            }
        }
    }
    let family = if pat.contains(':') {
        Family::V6
    } else {
        Family::V4
    };
    match mask {
        Some(m) => {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("bad mask value in \"{pat}/{m}\""));
            }
            let len: u32 = m.trim_start_matches('0').parse::<u32>().unwrap_or(
                if m.trim_start_matches('0').is_empty() {
                    0
                } else {
                    u32::MAX
                },
            );
            if len > bits(family) {
                return Err(format!("bad mask length in \"{pat}/{m}\""));
            }
            let Some((_, addr)) = parse_addr(pat).filter(|(f, _)| *f == family) else {
                return Err(format!("bad network value in \"{pat}/{m}\""));
            };
            let mask = mask_of(family, len);
            if addr & !mask != 0 {
                return Ok(Pat::HostBits(format!(
                    "non-null host address bits in \"{pat}/{m}\", perhaps you should use \"{}/{len}\" instead",
                    format_addr(family, addr & mask)
                )));
            }
            Ok(Pat::Net(Net {
                family,
                addr,
                mask,
                positive,
            }))
        }
        None => {
            let Some((_, addr)) = parse_addr(pat).filter(|(f, _)| *f == family) else {
                return Err(format!("bad address pattern: \"{pat}\""));
            };
            Ok(Pat::Net(Net {
                family,
                addr,
                mask: mask_of(family, bits(family)),
                positive,
            }))
        }
    }
}

/// Skip `!` and whitespace; returns (positive, byte offset after them).
fn negations(s: &str, mut i: usize) -> (bool, usize) {
    let b = s.as_bytes();
    let mut positive = true;
    while i < b.len() && (b[i] == b'!' || is_space(b[i])) {
        if b[i] == b'!' {
            positive = !positive;
        }
        i += 1;
    }
    (positive, i)
}

/// `word` at the start of `s`, case-insensitive, followed by a non-alnum.
pub(crate) fn keyword(s: &str, word: &str) -> bool {
    s.len() >= word.len()
        && s.as_bytes()[..word.len()].eq_ignore_ascii_case(word.as_bytes())
        && s.as_bytes()
            .get(word.len())
            .is_none_or(|c| !c.is_ascii_alphanumeric())
}

impl Cidr {
    pub fn open(spec: &str, path: &Path) -> Result<Cidr, Diag> {
        let data = read_source(path)?;
        Cidr::parse(spec, path, &data)
    }

    fn parse(spec: &str, path: &Path, data: &[u8]) -> Result<Cidr, Diag> {
        let mut rules: Vec<Rule> = Vec::new();
        let mut notes = Vec::new();
        let mut stack: Vec<usize> = Vec::new();
        let mut reader_notes = Vec::new();
        for_each_logical_line(path, data, &mut reader_notes, |l: &LogicalLine| {
            let t = l.text.as_str();
            let lineno = l.line();
            if keyword(t, "if") {
                let (positive, start) = negations(t, 2);
                let pat = trim_end_space(&t[start..]);
                if pat.is_empty() {
                    return Err(l.err(path, start, "no address pattern"));
                }
                match parse_pattern(pat, positive).map_err(|m| l.err(path, start, m))? {
                    Pat::Net(net) => {
                        stack.push(rules.len());
                        rules.push(Rule::If {
                            net,
                            end: None,
                            line: lineno,
                        });
                    }
                    Pat::HostBits(m) => {
                        // Postfix skips the IF rule itself; its block then
                        // belongs to the enclosing level and the matching
                        // ENDIF is "without IF". Refuse: that is not what the
                        // author meant, and it is not a plain skipped rule.
                        return Err(l.err(path, start, m));
                    }
                }
                return Ok(());
            }
            if keyword(t, "endif") {
                let rest = super::source::trim_start_space(&t[5..]);
                if !rest.is_empty() {
                    return Err(l.err(path, t.len() - rest.len(), "garbage after ENDIF"));
                }
                match stack.pop() {
                    Some(i) => {
                        let here = rules.len();
                        if let Rule::If { end, .. } = &mut rules[i] {
                            *end = Some(here);
                        }
                        rules.push(Rule::Endif);
                    }
                    None => notes.push(format!(
                        "{}, line {lineno}: ENDIF without IF: ignored",
                        path.display()
                    )),
                }
                return Ok(());
            }
            let (positive, start) = negations(t, 0);
            let b = t.as_bytes();
            let mut end = start;
            while end < b.len() && !is_space(b[end]) {
                end += 1;
            }
            let pat = &t[start..end];
            if pat.is_empty() {
                return Err(l.err(path, start, "no address pattern"));
            }
            let value = super::source::trim_start_space(&t[end..]);
            if value.is_empty() {
                return Err(l.err(path, end, "no lookup result"));
            }
            match parse_pattern(pat, positive).map_err(|m| l.err(path, start, m))? {
                Pat::Net(net) => rules.push(Rule::Match {
                    net,
                    value: value.to_string(),
                    line: lineno,
                }),
                Pat::HostBits(m) => notes.push(format!(
                    "{}, line {lineno}: {m}: skipping this rule",
                    path.display()
                )),
            }
            Ok(())
        })?;
        notes.extend(unclosed_if_notes(
            path,
            stack.iter().filter_map(|&i| match rules[i] {
                Rule::If { line, .. } => Some(line),
                _ => None,
            }),
        ));
        reader_notes.append(&mut notes);
        Ok(Cidr {
            spec: spec.to_string(),
            rules,
            notes: reader_notes,
        })
    }
}

impl Table for Cidr {
    fn spec(&self) -> &str {
        &self.spec
    }
    fn is_pattern(&self) -> bool {
        true
    }
    fn lookup(&self, key: &str) -> Result<Option<String>, Diag> {
        let Some((family, addr)) = parse_addr(key) else {
            return Ok(None);
        };
        let mut i = 0;
        while i < self.rules.len() {
            match &self.rules[i] {
                Rule::Match { net, value, .. } => {
                    if net.matches(family, addr) {
                        return Ok(Some(value.clone()));
                    }
                }
                Rule::If { net, end, .. } => {
                    if !net.matches(family, addr) {
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
    fn results(&self) -> Vec<(usize, String)> {
        self.rules
            .iter()
            .filter_map(|r| match r {
                Rule::Match { value, line, .. } => Some((*line, value.clone())),
                _ => None,
            })
            .collect()
    }
    fn note(&self) -> Option<String> {
        join_notes(&self.notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Result<Cidr, Diag> {
        Cidr::parse("cidr:t", Path::new("t"), text.as_bytes())
    }
    fn get(t: &Cidr, k: &str) -> Option<String> {
        t.lookup(k).unwrap()
    }

    #[test]
    fn masks() {
        assert_eq!(mask_of(Family::V4, 0), 0);
        assert_eq!(mask_of(Family::V4, 8), 0xff00_0000);
        assert_eq!(mask_of(Family::V4, 32), 0xffff_ffff);
        assert_eq!(mask_of(Family::V6, 128), u128::MAX);
        assert_eq!(mask_of(Family::V6, 1), 1u128 << 127);
    }

    #[test]
    fn first_match_negation_blocks_and_families() {
        let t = table(
            "[172.20.0.0]/16 br2\n\
             2001:DB8::/32 v6net\n\
             2001:0db8:0000::1 v6host\n\
             if 10.0.0.0/8\n\
             10.1.0.0/16 inner1\n\
             if !10.1.0.0/16\n\
             10.2.0.0/16 inner2\n\
             endif\n\
             endif\n\
             if !::/0\n\
             1.0.0.0/8 v4only\n\
             endif\n\
             !! 1.2.3.4 doubleneg\n\
             [1.2.3.0/24] bracketed\n\
             ! 192.168.0.0/16 not-private\n\
             0.0.0.0/0    catch  all  \n",
        )
        .unwrap();
        assert_eq!(get(&t, "172.20.1.1").as_deref(), Some("br2"));
        assert_eq!(get(&t, "2001:db8::1").as_deref(), Some("v6net"));
        assert_eq!(get(&t, "2001:DB8:0::1").as_deref(), Some("v6net"));
        assert_eq!(get(&t, "10.1.5.5").as_deref(), Some("inner1"));
        assert_eq!(get(&t, "10.2.5.5").as_deref(), Some("inner2"));
        assert_eq!(get(&t, "1.1.1.1").as_deref(), Some("not-private"));
        assert_eq!(get(&t, "1.2.3.4").as_deref(), Some("doubleneg"));
        assert_eq!(get(&t, "1.2.3.5").as_deref(), Some("bracketed"));
        assert_eq!(get(&t, "192.168.1.1").as_deref(), Some("catch  all"));
        // Negated v4 rules do not match v6 keys; nothing else does.
        assert_eq!(get(&t, "::1"), None);
        for bad in [
            "01.2.3.4",
            "[1.2.3.4]",
            "1.2.3",
            " 1.2.3.4",
            "foo",
            "",
            "::ffff:1.2.3.4",
        ] {
            assert_eq!(get(&t, bad), None, "{bad}");
        }
        assert!(t.is_pattern());
    }

    #[test]
    fn if_without_endif_ends_the_search_when_it_fails() {
        let t = table("IF 10.0.0.0/8\n1.2.3.4 after\n").unwrap();
        assert_eq!(get(&t, "1.2.3.4"), None);
        assert!(t
            .note()
            .unwrap()
            .contains("line 1: IF has no matching ENDIF"));
        let t = table("if ! 10.0.0.0/8\n1.2.3.4 after\n").unwrap();
        assert_eq!(get(&t, "1.2.3.4").as_deref(), Some("after"));
        let t = table("if!10.0.0.0/8\n1.2.3.4 after\nENDIF\t\n").unwrap();
        assert_eq!(get(&t, "1.2.3.4").as_deref(), Some("after"));
        assert!(t.note().is_none());
        let t = table("endif\n1.2.3.4 after\n").unwrap();
        assert_eq!(get(&t, "1.2.3.4").as_deref(), Some("after"));
        assert!(t.note().unwrap().contains("ENDIF without IF"));
    }

    #[test]
    fn host_bits_are_skipped_with_postfix_message() {
        let t = table("10.1.2.3/8 hostbits\n1.2.3.4/08 x\n10.0.0.0/8 net\n").unwrap();
        assert_eq!(get(&t, "10.1.1.1").as_deref(), Some("net"));
        assert_eq!(get(&t, "1.2.3.4"), None);
        let n = t.note().unwrap();
        assert!(
            n.contains("line 1: non-null host address bits in \"10.1.2.3/8\", perhaps you should use \"10.0.0.0/8\" instead: skipping this rule"),
            "{n}"
        );
        assert!(n.contains("\"1.0.0.0/8\""), "{n}");
        let t = table("2001:db8::1/32 x\n").unwrap();
        assert!(t.note().unwrap().contains("\"2001:db8::/32\""));
        // /032 is 32, like atoi().
        let t = table("1.2.3.4/032 x\n").unwrap();
        assert_eq!(get(&t, "1.2.3.4").as_deref(), Some("x"));
    }

    #[test]
    fn syntax_errors_have_positions_and_postfix_wording() {
        let cases: &[(&str, (usize, usize), &str)] = &[
            ("1.2.3.4/33 x", (1, 1), "bad mask length in \"1.2.3.4/33\""),
            (
                "# c\n  \n1.2.3.4/ x",
                (3, 1),
                "bad mask value in \"1.2.3.4/\"",
            ),
            ("1.2.3.4/x x", (1, 1), "bad mask value"),
            ("1.2.3.4/+8 x", (1, 1), "bad mask value"),
            ("garbage x", (1, 1), "bad address pattern: \"garbage\""),
            ("!! 1.2.3.4", (1, 11), "no lookup result"),
            ("if", (1, 3), "no address pattern"),
            ("if !", (1, 5), "no address pattern"),
            ("if 10.0.0.0/8\nENDIF x", (2, 7), "garbage after ENDIF"),
            (
                "if 10.0.0.0/8 extra",
                (1, 4),
                "bad mask value in \"10.0.0.0/8 extra\"",
            ),
            (
                "[1.2.3.4 x",
                (1, 1),
                "missing ']' character after \"[1.2.3.4\"",
            ),
            ("[1.2.3.4]x y", (1, 1), "garbage after \"[1.2.3.4]\""),
            ("::/129 x", (1, 1), "bad mask length"),
            ("fe80::1%eth0 x", (1, 1), "bad address pattern"),
            ("1.2.3.0/24,x y", (1, 1), "bad mask value"),
            (
                "if10.0.0.0/8 x",
                (1, 1),
                "bad network value in \"if10.0.0.0/8\"",
            ),
            ("endifx y", (1, 1), "bad address pattern: \"endifx\""),
            ("  1.2.3.4 x", (1, 1), "must not start with whitespace"),
            ("1.2.3.4 ok\n  ! 10.0.0.0/33 x\n", (1, 1), ""),
        ];
        for (text, pos, msg) in cases {
            match table(text) {
                Err(e) => {
                    if msg.is_empty() {
                        panic!("{text:?}: unexpected error {e}");
                    }
                    assert_eq!((e.line, e.col), *pos, "{text:?}: {e}");
                    assert!(e.msg.contains(msg), "{text:?}: {e}");
                }
                Ok(_) => assert!(msg.is_empty(), "{text:?} should fail with {msg}"),
            }
        }
    }
}
