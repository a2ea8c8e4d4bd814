//! Compiled rule patterns: the regex crate's syntax and engine
//! (`regex-automata`'s meta regex), tuned for a process that lives a
//! millisecond and matches short header values.
//!
//! Start-up cost is what matters here. Measured with callgrind on workload
//! W1 (24 case-insensitive header rules), per process:
//! - the regex crate's defaults: 13.96M instructions of regex building, most
//!   of it a literal prefilter (all 64 case variants of `(?i)viagra` and an
//!   Aho-Corasick automaton per pattern), which gains nothing on header
//!   values of a few hundred bytes: so the prefilter is off;
//! - one regex per rule: a forward and a reverse NFA and a lazy DFA each;
//! - so the patterns of all rules on one header are one multi-pattern regex
//!   (`PatternGroup`) that reports, in one pass over a header value, every
//!   rule pattern that matches; small groups run on the PikeVM without a
//!   lazy DFA (no reverse NFA to build), large ones keep the lazy DFA.
//!
//! Matching stays linear in time, no capture groups are built, and compiled
//! size is bounded so that a hostile pattern in a user's file cannot exhaust
//! memory.

use regex_automata::meta::{self, Regex};
use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::{Input, MatchKind, PatternSet};

/// Bound on one compiled pattern (NFA), and on the lazy DFA's cache.
const SIZE_LIMIT: usize = 4 << 20;
const CACHE_LIMIT: usize = 2 << 20;
/// Bound on a whole group: generous for large system files, still bounded.
const GROUP_SIZE_LIMIT: usize = 64 << 20;
/// Groups with more patterns than this keep the lazy DFA: the PikeVM's cost
/// per byte grows with the number of patterns.
const PIKEVM_MAX_PATTERNS: usize = 16;

fn config() -> meta::Config {
    meta::Config::new()
        .auto_prefilter(false)
        .which_captures(WhichCaptures::None)
        .onepass(false)
        .dfa(false)
        .hybrid_cache_capacity(CACHE_LIMIT)
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
            .nfa_size_limit(Some(SIZE_LIMIT))
            .hybrid(haystack == Haystack::Long);
        // What a user's file compiles is charged to its budget (src/budget.rs).
        crate::budget::charge(|| {
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

/// The patterns of all rules on one header, compiled together.
#[derive(Clone, Debug)]
pub struct PatternGroup(Regex);

impl PatternGroup {
    /// Compiles the group. On error, the index of the pattern at fault (when
    /// one is) and the message.
    pub fn new(patterns: &[&str]) -> Result<PatternGroup, (Option<usize>, PatternError)> {
        let limit = SIZE_LIMIT
            .saturating_mul(patterns.len().max(1))
            .min(GROUP_SIZE_LIMIT);
        let config = config()
            .match_kind(MatchKind::All)
            .nfa_size_limit(Some(limit))
            .hybrid(patterns.len() > PIKEVM_MAX_PATTERNS);
        crate::budget::charge(|| {
            Regex::builder()
                .configure(config)
                .build_many(patterns)
                .map(PatternGroup)
                .map_err(|e| (e.pattern().map(|p| p.as_usize()), error(&e)))
        })
        .map_err(|e| (None, PatternError(e)))?
    }

    pub fn len(&self) -> usize {
        self.0.pattern_len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Which patterns match `haystack`.
    pub fn matches(&self, haystack: &str) -> PatternSet {
        let mut set = PatternSet::new(self.0.pattern_len());
        self.0
            .which_overlapping_matches(&Input::new(haystack), &mut set);
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
}
