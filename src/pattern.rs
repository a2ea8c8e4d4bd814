//! Compiled rule patterns: the regex crate's syntax and engine
//! (`regex-automata`'s meta regex), tuned for a process that lives a
//! millisecond and matches short header values.
//!
//! The regex crate extracts literals from every pattern to build a
//! prefilter; for a case-insensitive literal such as `(?i)viagra` that means
//! all 64 case variants and an Aho-Corasick automaton, which was 60% of the
//! cost of starting with 24 rules. Header values are a few hundred bytes,
//! where a prefilter gains nothing, so it is off; rules need no capture
//! groups either. Matching stays linear in time, and compiled size is
//! bounded so that a hostile pattern in a user's file cannot exhaust memory.

use regex_automata::meta::{self, Regex};
use regex_automata::nfa::thompson::WhichCaptures;

/// Bound on a compiled pattern (NFA) and on the lazy DFA's cache.
const SIZE_LIMIT: usize = 4 << 20;
const CACHE_LIMIT: usize = 2 << 20;

/// A compiled pattern that answers "does it match".
#[derive(Clone, Debug)]
pub struct Pattern(Regex);

/// Why a pattern did not compile, in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError(pub String);

impl Pattern {
    pub fn new(pattern: &str) -> Result<Pattern, PatternError> {
        let config = meta::Config::new()
            .auto_prefilter(false)
            .which_captures(WhichCaptures::None)
            .nfa_size_limit(Some(SIZE_LIMIT))
            .onepass(false)
            .dfa(false)
            .hybrid_cache_capacity(CACHE_LIMIT);
        // What a user's file compiles is charged to its budget (src/budget.rs).
        crate::budget::charge(|| {
            Regex::builder()
                .configure(config)
                .build(pattern)
                .map(Pattern)
                .map_err(|e| {
                    let msg = match (e.syntax_error(), e.size_limit()) {
                        (Some(s), _) => format!("bad regex: {}", one_line(&s.to_string())),
                        (None, Some(n)) => format!("regex too big (over {n} bytes compiled)"),
                        _ => format!("bad regex: {}", one_line(&e.to_string())),
                    };
                    PatternError(msg)
                })
        })
        .map_err(PatternError)?
    }

    pub fn is_match(&self, haystack: &str) -> bool {
        self.0.is_match(haystack)
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_crate_syntax_and_semantics() {
        let p = Pattern::new("(?i)v[i1]agra").unwrap();
        assert!(p.is_match("Cheap VIAGRA now"));
        assert!(p.is_match("v1agra"));
        assert!(!p.is_match("vagra"));
        // Unicode-aware case folding, as in the regex crate.
        assert!(
            Pattern::new("(?i)straße").unwrap().is_match("STRASSE")
                == regex::Regex::new("(?i)straße").unwrap().is_match("STRASSE")
        );
        assert!(Pattern::new("(?i)élève").unwrap().is_match("ÉLÈVE"));
        assert!(Pattern::new(r"^\d+$").unwrap().is_match("١٢٣"));
        assert!(Pattern::new("^a.c$").unwrap().is_match("aéc"));
    }

    #[test]
    fn errors_are_one_line() {
        let e = Pattern::new("(unclosed").unwrap_err();
        assert!(e.0.starts_with("bad regex: "), "{e:?}");
        assert!(!e.0.contains('\n'));
        let e = Pattern::new("(?=look)").unwrap_err();
        assert!(e.0.contains("look-around"), "{e:?}");
        let e = Pattern::new(r"\w{1000}{1000}").unwrap_err();
        assert!(e.0.contains("too big"), "{e:?}");
    }
}
