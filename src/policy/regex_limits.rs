//! Bounds on compiled regexes, all in one place. Every regex engine deliver
//! uses (the regex crate, regex-automata) matches in time linear in the
//! text, with no backtracking, so what a hostile or careless pattern can
//! blow up is memory: the compiled program (an NFA; a counted repetition
//! such as `x{1000}` or a large Unicode class makes it big) and the lazy
//! DFA's cache of transitions. A pattern whose program would be larger than
//! its bound is an error that says so (`regex too big`), reported like a
//! syntax error. What a user's file compiles is also charged to the user's
//! memory budget (src/policy/budget.rs).
//!
//! The regex crate's `size_limit` and `dfa_size_limit` set the same two
//! bounds as regex-automata's `nfa_size_limit` and `hybrid_cache_capacity`:
//! the `*_NFA` and `*_LAZY_DFA` constants below.
//!
//! The bounds differ by use: a table compiles one regex per line, and a
//! table may have thousands of lines, so a table pattern gets half of a
//! rule pattern's program; rule patterns on one header are compiled
//! together, so their group has its own, larger bound.

/// A rule pattern (`match`, `sender`, `body`, ... in a rules file; see
/// `crate::policy::pattern`): its compiled NFA.
pub const RULE_NFA: usize = 4 << 20;
/// The patterns of the rules on one header compiled as one regex
/// (`crate::policy::pattern::PatternGroup`): [`RULE_NFA`] for each pattern, and at
/// most this for the group, generous for a large system file.
pub const RULE_GROUP_NFA: usize = 64 << 20;
/// The lazy DFA's cache of a rule pattern or group.
pub const RULE_LAZY_DFA: usize = 2 << 20;

/// A `[[spam.custom]]` pattern (the system file only; see `crate::policy::rules`):
/// its compiled program.
pub const SPAM_CUSTOM_NFA: usize = 4 << 20;
/// A `[[spam.custom]]` pattern's lazy DFA cache.
pub const SPAM_CUSTOM_LAZY_DFA: usize = 4 << 20;

/// One pattern of a `regexp:` or `pcre:` table (`crate::policy::maps::regex_table`):
/// its compiled program.
pub const TABLE_NFA: usize = 2 << 20;
/// One table pattern's lazy DFA cache.
pub const TABLE_LAZY_DFA: usize = 2 << 20;
