//! Compiled rule patterns: the regex crate's syntax and engine
//! (`regex-automata`'s meta regex), tuned for a process that lives a
//! millisecond and matches short header values.
//!
//! Start-up cost is what matters here (BENCHMARKS.md, "Measurements behind
//! design choices"):
//! - the literal prefilter is off: most of the regex crate's building time
//!   on case-insensitive rules goes into it (all 64 case variants of
//!   `(?i)viagra` and an Aho-Corasick automaton per pattern), and it gains
//!   nothing on header values of a few hundred bytes;
//! - one regex per rule would build a forward and a reverse NFA and a lazy
//!   DFA each, so the patterns of all rules on one header are one
//!   multi-pattern regex (`PatternGroup`) that reports, in one pass over a
//!   header value, every rule pattern that matches; small groups run on the
//!   PikeVM without a lazy DFA (no reverse NFA to build), large ones keep
//!   the lazy DFA.
//!
//! Matching stays linear in time, no capture groups are built, and compiled
//! size is bounded so that a hostile pattern in a user's file cannot exhaust
//! memory.

use regex_automata::meta::{self, Regex};
use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::{Input, MatchKind, PatternSet};

use crate::policy::regex_limits::{RULE_GROUP_NFA, RULE_LAZY_DFA, RULE_NFA};

/// Groups with more patterns than this keep the lazy DFA: the PikeVM's cost
/// per byte grows with the number of patterns.
const PIKEVM_MAX_PATTERNS: usize = 16;

fn config() -> meta::Config {
    meta::Config::new()
        .auto_prefilter(false)
        .which_captures(WhichCaptures::None)
        .onepass(false)
        .dfa(false)
        .hybrid_cache_capacity(RULE_LAZY_DFA)
        // One thread: the default pool size asks available_parallelism,
        // which reads the cgroup CPU quota files at every start.
        .pool_capacity(1)
}

/// Why a pattern did not compile, in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError(pub String);

fn error(e: &meta::BuildError) -> PatternError {
    let msg = match (e.syntax_error(), e.size_limit()) {
        (Some(s), _) => format!("bad regex: {}", one_line(&s.to_string())),
        (None, Some(n)) => format!("regex too big (over {n} bytes compiled)"),
        _ => format!("bad regex: {}", one_line(&e.to_string())),
    };
    PatternError(msg)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a single pattern is matched against, which decides the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Haystack {
    /// Envelope values and the like: the PikeVM, nothing more to build.
    Short,
    /// The body window (up to 64 KiB): worth a lazy DFA.
    Long,
}

/// A compiled pattern that answers "does it match".
#[derive(Clone, Debug)]
pub struct Pattern(Regex);

impl Pattern {
    pub fn new(pattern: &str, haystack: Haystack) -> Result<Pattern, PatternError> {
        let config = config()
            .nfa_size_limit(Some(RULE_NFA))
            .hybrid(haystack == Haystack::Long);
        // What a user's file compiles is charged to its budget (src/policy/budget.rs).
        crate::policy::budget::charge(|| {
            Regex::builder()
                .configure(config)
                .build(pattern)
                .map(Pattern)
                .map_err(|e| error(&e))
        })
        .map_err(PatternError)?
    }

    pub fn is_match(&self, haystack: &str) -> bool {
        self.0.is_match(haystack)
    }
}

/// A pattern that is a plain sequence of literal text and character
/// classes, possibly anchored at the start (`^`) and the end (`$`): most
/// spam rules (`(?i)viagra`, `^\[SPAM\]`). Matched directly on the parsed
/// form (regex-syntax's HIR, the same parse the regex engine compiles), so
/// no automaton (and its table of transitions) is built for it at every
/// start (BENCHMARKS.md, "Measurements behind design choices"). The answers
/// are the regex crate's (tested against it below).
#[derive(Clone, Debug)]
struct Simple {
    start: bool,
    end: bool,
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug)]
enum Piece {
    Literal(Box<[u8]>),
    /// Sorted, non-overlapping character ranges.
    Class(Vec<(char, char)>),
}

impl Simple {
    fn parse(pattern: &str) -> Option<Simple> {
        use regex_syntax::hir::{Class, HirKind, Look};
        let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
        let parts = match hir.kind() {
            HirKind::Concat(v) => v.as_slice(),
            _ => std::slice::from_ref(&hir),
        };
        let mut out = Simple {
            start: false,
            end: false,
            pieces: Vec::new(),
        };
        for (i, h) in parts.iter().enumerate() {
            match h.kind() {
                HirKind::Empty => {}
                HirKind::Literal(l) => out.pieces.push(Piece::Literal(l.0.clone())),
                HirKind::Class(Class::Unicode(c)) => out.pieces.push(Piece::Class(
                    c.ranges().iter().map(|r| (r.start(), r.end())).collect(),
                )),
                HirKind::Class(Class::Bytes(c)) if c.is_ascii() => out.pieces.push(Piece::Class(
                    c.ranges()
                        .iter()
                        .map(|r| (char::from(r.start()), char::from(r.end())))
                        .collect(),
                )),
                HirKind::Look(Look::Start) if i == 0 => out.start = true,
                HirKind::Look(Look::End) if i == parts.len() - 1 => out.end = true,
                _ => return None,
            }
        }
        Some(out)
    }

    /// Does the sequence match `hay` from byte offset `at`?
    fn matches_at(&self, hay: &str, mut at: usize) -> bool {
        for p in &self.pieces {
            match p {
                Piece::Literal(lit) => {
                    if !hay.as_bytes()[at..].starts_with(lit) {
                        return false;
                    }
                    at += lit.len();
                }
                Piece::Class(ranges) => {
                    let Some(c) = hay[at..].chars().next() else {
                        return false;
                    };
                    if !ranges.iter().any(|&(a, b)| a <= c && c <= b) {
                        return false;
                    }
                    at += c.len_utf8();
                }
            }
        }
        !self.end || at == hay.len()
    }

    fn is_match(&self, hay: &str) -> bool {
        if self.start {
            return self.matches_at(hay, 0);
        }
        hay.char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(hay.len()))
            .any(|i| self.matches_at(hay, i))
    }
}

/// The patterns of all rules on one header, compiled together: the plain
/// ones (`Simple`) are matched directly, the others by one multi-pattern
/// regex.
#[derive(Clone, Debug)]
pub struct PatternGroup {
    len: usize,
    simple: Vec<(usize, Simple)>,
    /// The regex of the other patterns, and their numbers in the group.
    regex: Option<(Regex, Vec<usize>)>,
}

impl PatternGroup {
    /// Compiles the group. On error, the index of the pattern at fault (when
    /// one is) and the message.
    pub fn new(patterns: &[&str]) -> Result<PatternGroup, (Option<usize>, PatternError)> {
        let mut simple = Vec::new();
        let mut rest = Vec::new();
        for (i, p) in patterns.iter().enumerate() {
            match Simple::parse(p) {
                Some(s) => simple.push((i, s)),
                None => rest.push(i),
            }
        }
        let regex = if rest.is_empty() {
            None
        } else {
            let pats: Vec<&str> = rest.iter().map(|&i| patterns[i]).collect();
            let limit = RULE_NFA
                .saturating_mul(pats.len().max(1))
                .min(RULE_GROUP_NFA);
            let config = config()
                .match_kind(MatchKind::All)
                .nfa_size_limit(Some(limit))
                .hybrid(pats.len() > PIKEVM_MAX_PATTERNS);
            let re = crate::policy::budget::charge(|| {
                Regex::builder()
                    .configure(config)
                    .build_many(&pats)
                    .map_err(|e| (e.pattern().map(|p| rest[p.as_usize()]), error(&e)))
            })
            .map_err(|e| (None, PatternError(e)))??;
            Some((re, rest))
        };
        Ok(PatternGroup {
            len: patterns.len(),
            simple,
            regex,
        })
    }

    /// Which patterns match `haystack`.
    pub fn matches(&self, haystack: &str) -> PatternSet {
        let mut set = PatternSet::new(self.len);
        for (i, s) in &self.simple {
            if s.is_match(haystack) {
                set.insert(regex_automata::PatternID::new_unchecked(*i));
            }
        }
        if let Some((re, ids)) = &self.regex {
            let mut found = PatternSet::new(re.pattern_len());
            re.which_overlapping_matches(&Input::new(haystack), &mut found);
            for p in found.iter() {
                set.insert(regex_automata::PatternID::new_unchecked(ids[p.as_usize()]));
            }
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_crate_syntax_and_semantics() {
        for h in [Haystack::Short, Haystack::Long] {
            let p = Pattern::new("(?i)v[i1]agra", h).unwrap();
            assert!(p.is_match("Cheap VIAGRA now"));
            assert!(p.is_match("v1agra"));
            assert!(!p.is_match("vagra"));
        }
        let same = |pat: &str, hay: &str| {
            Pattern::new(pat, Haystack::Short).unwrap().is_match(hay)
                == regex::Regex::new(pat).unwrap().is_match(hay)
        };
        assert!(same("(?i)straße", "STRASSE"));
        assert!(same("(?i)élève", "ÉLÈVE"));
        assert!(same(r"^\d+$", "١٢٣"));
        assert!(same("^a.c$", "aéc"));
        assert!(same(r"\bword\b", "a word here"));
    }

    #[test]
    fn groups_report_every_matching_pattern() {
        let g = PatternGroup::new(&["(?i)free", "^Re:", "offer$", "nomatch", "(?i)FREE offer"])
            .unwrap();
        let s = g.matches("Re: a free offer");
        let got: Vec<usize> = s.iter().map(|p| p.as_usize()).collect();
        assert_eq!(got, vec![0, 1, 2, 4]);
        assert!(g.matches("").is_empty());
        // Large groups (lazy DFA) agree with small ones.
        let many: Vec<String> = (0..40).map(|i| format!("(?i)word{i}\\b")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let g = PatternGroup::new(&refs).unwrap();
        let got: Vec<usize> = g
            .matches("WORD3 and word39, not word4x")
            .iter()
            .map(|p| p.as_usize())
            .collect();
        assert_eq!(got, vec![3, 39]);
    }

    #[test]
    fn errors_name_the_pattern_and_fit_one_line() {
        let (at, e) = PatternGroup::new(&["ok", "(unclosed", "fine"]).unwrap_err();
        assert_eq!(at, Some(1));
        assert!(
            e.0.starts_with("bad regex: ") && !e.0.contains('\n'),
            "{e:?}"
        );
        let e = Pattern::new("(?=look)", Haystack::Short).unwrap_err();
        assert!(e.0.contains("look-around"), "{e:?}");
        let e = Pattern::new(r"\w{1000}{1000}", Haystack::Long).unwrap_err();
        assert!(e.0.contains("too big"), "{e:?}");
        let (_, e) = PatternGroup::new(&[r"\w{1000}{1000}"]).unwrap_err();
        assert!(e.0.contains("too big"), "{e:?}");
    }

    #[test]
    fn plain_patterns_skip_the_regex_and_mixed_groups_keep_numbers() {
        let g = PatternGroup::new(&["(?i)free", r"\bword\b", "^Re:", "x+y", "offer$"]).unwrap();
        assert_eq!(g.simple.len(), 3);
        assert_eq!(g.regex.as_ref().unwrap().1, vec![1, 3]);
        let got: Vec<usize> = g
            .matches("Re: FREE word xxy offer")
            .iter()
            .map(|p| p.as_usize())
            .collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        let (at, _) = PatternGroup::new(&["plain", "(bad"]).unwrap_err();
        assert_eq!(at, Some(1));
    }

    use proptest::strategy::Strategy;

    fn piece() -> impl Strategy<Value = String> {
        proptest::sample::select(vec![
            "a", "b", "s", "k", "K", "é", "É", "ß", "σ", "Σ", "ς", "ſ", "\u{212A}", " ", "-",
            r"\.", ".", "[ab]", "[^a]", r"\d", "^", "$", "İ", "i", "(?i)", "(?-i)", "(?:ab)",
        ])
        .prop_map(str::to_string)
    }

    fn hay_piece() -> impl Strategy<Value = String> {
        proptest::sample::select(vec![
            "a", "A", "b", "B", "s", "S", "ſ", "k", "K", "\u{212A}", "é", "É", "ß", "ẞ", "σ", "Σ",
            "ς", " ", "-", ".", "1", "İ", "i", "I", "\n",
        ])
        .prop_map(str::to_string)
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(4000))]
        #[test]
        fn groups_answer_as_the_regex_crate(
            pats in proptest::collection::vec(
                proptest::collection::vec(piece(), 0..6).prop_map(|v| v.concat()), 1..5),
            hay in proptest::collection::vec(hay_piece(), 0..10).prop_map(|v| v.concat()),
        ) {
            let pats: Vec<String> = pats
                .into_iter()
                .filter(|p| regex::Regex::new(p).is_ok())
                .collect();
            let refs: Vec<&str> = pats.iter().map(String::as_str).collect();
            let g = PatternGroup::new(&refs).unwrap();
            let set = g.matches(&hay);
            for (i, p) in pats.iter().enumerate() {
                let want = regex::Regex::new(p).unwrap().is_match(&hay);
                let got = set.contains(regex_automata::PatternID::new_unchecked(i));
                proptest::prop_assert_eq!(got, want, "pattern {:?} on {:?}", p, hay);
            }
        }
    }
}
