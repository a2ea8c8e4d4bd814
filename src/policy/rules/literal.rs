//! Required literals: for a pattern, a small set of strings at least one of
//! which occurs in every text the pattern matches. The rules cache
//! (`super::cache`) indexes header rules by them, so that a delivery only
//! compiles the patterns whose literal occurs in one of the message's
//! headers; a pattern without such a set is compiled at every delivery, as
//! before. Losing precision only costs speed; being wrong would skip a rule,
//! so every step below keeps the promise or gives up.
//!
//! Texts are compared *folded*: each character replaced by the lowercase of
//! its uppercase (so that `ſ` and `s`, `ς` and `σ` fold alike), one
//! character at a time. Folding is done character by character, so if a pattern matches a stretch of a header
//! value that contains the literal `s`, the folded value contains the folded
//! `s`: folding can add candidates (which the real pattern then rejects)
//! and never loses one. Case-insensitive patterns come out of the parser as
//! small character classes (`(?i)k` is `[Kk\u{212A}]`), which fold to a
//! few strings.
//!
//! The analysis works on the parsed pattern (regex-syntax's HIR), the same
//! parse the matcher compiles, with the same syntax defaults.

use regex_syntax::hir::{Class, Hir, HirKind};

/// At most this many strings in a set (exact texts or alternatives).
const MAX_SET: usize = 32;
/// At most this many bytes in one exact string.
const MAX_LEN: usize = 48;
/// At most this many characters in a class that is expanded.
const MAX_CLASS: usize = 16;

/// Appends the folded form of `s` to `out`.
pub fn fold_into(s: &str, out: &mut String) {
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(c.to_uppercase().flat_map(char::to_lowercase));
        }
    }
}

pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    fold_into(s, &mut out);
    out
}

/// What is known of the texts a (sub)pattern matches.
#[derive(Debug, Clone)]
struct Info {
    /// Every match is exactly one of these (folded; may include "").
    exact: Option<Vec<String>>,
    /// Every match contains one of these (folded, none empty).
    required: Option<Vec<String>>,
    /// Requirements that all hold at once: every match contains one string
    /// of each set (each usable and minimized; `required` and the usable
    /// `exact` are among them).
    all: Vec<Vec<String>>,
}

impl Info {
    fn exact(set: Vec<String>) -> Info {
        let all = conjunction([set.as_slice()]);
        let required = usable(&set).then(|| set.clone());
        Info {
            exact: Some(set),
            required,
            all,
        }
    }

    fn unknown() -> Info {
        Info {
            exact: None,
            required: None,
            all: Vec::new(),
        }
    }

    /// The best requirement this node gives.
    fn best(&self) -> Option<Vec<String>> {
        let mut best = self.required.clone();
        if let Some(e) = &self.exact {
            consider(&mut best, e);
        }
        best
    }
}

/// A set can be required only if none of its strings is empty.
fn usable(set: &[String]) -> bool {
    !set.is_empty() && set.iter().all(|s| !s.is_empty())
}

/// Ranks a requirement: longer shortest string first, then fewer strings.
fn rank(set: &[String]) -> (usize, std::cmp::Reverse<usize>) {
    let shortest = set.iter().map(String::len).min().unwrap_or(0);
    (shortest, std::cmp::Reverse(set.len()))
}

/// Drops strings that contain another string of the set: a text that
/// contains the longer one contains the shorter one too.
fn minimize(set: &[String]) -> Vec<String> {
    set.iter()
        .filter(|s| !set.iter().any(|t| t != *s && s.contains(t.as_str())))
        .cloned()
        .collect()
}

fn consider(best: &mut Option<Vec<String>>, set: &[String]) {
    if !usable(set) {
        return;
    }
    let set = minimize(set);
    if best.as_ref().is_none_or(|b| rank(&set) > rank(b)) {
        *best = Some(set);
    }
}

/// At most this many sets in `Info::all`.
const MAX_ALL: usize = 8;

/// The usable sets among `sets`, minimized, without repeats, best first,
/// at most [`MAX_ALL`].
fn conjunction<'a>(sets: impl IntoIterator<Item = &'a [String]>) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    for s in sets {
        if usable(s) {
            let s = minimize(s);
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(rank(s)));
    out.truncate(MAX_ALL);
    out
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// Every concatenation of one string of `a` and one of `b`, within bounds.
fn cross(a: &[String], b: &[String]) -> Option<Vec<String>> {
    if a.len().saturating_mul(b.len()) > MAX_SET {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            if x.len() + y.len() > MAX_LEN {
                return None;
            }
            out.push(format!("{x}{y}"));
        }
    }
    Some(dedup(out))
}

fn class(c: &Class) -> Info {
    let mut chars = Vec::new();
    match c {
        Class::Unicode(u) => {
            for r in u.ranges() {
                let n = (r.end() as u32 - r.start() as u32) as usize + 1;
                if chars.len() + n > MAX_CLASS {
                    return Info::unknown();
                }
                chars.extend(r.start()..=r.end());
            }
        }
        Class::Bytes(b) => {
            for r in b.ranges() {
                if !r.end().is_ascii() {
                    return Info::unknown();
                }
                let n = usize::from(r.end() - r.start()) + 1;
                if chars.len() + n > MAX_CLASS {
                    return Info::unknown();
                }
                chars.extend((r.start()..=r.end()).map(char::from));
            }
        }
    }
    if chars.is_empty() {
        // Matches nothing: any requirement holds, but say nothing.
        return Info::unknown();
    }
    let set = chars
        .into_iter()
        .map(|c| fold(c.encode_utf8(&mut [0; 4])))
        .collect();
    Info::exact(dedup(set))
}

fn concat(subs: &[Hir]) -> Info {
    let mut run = vec![String::new()];
    let mut whole = true;
    let mut best = None;
    // Every finished run and every requirement of a part holds for the
    // whole: a match of the concatenation contains a match of each part.
    let mut all: Vec<Vec<String>> = Vec::new();
    for sub in subs {
        let i = info(sub);
        match &i.exact {
            Some(e) => match cross(&run, e) {
                Some(x) => run = x,
                None => {
                    consider(&mut best, &run);
                    all.push(std::mem::replace(&mut run, e.clone()));
                    whole = false;
                }
            },
            None => {
                consider(&mut best, &run);
                if let Some(r) = &i.required {
                    consider(&mut best, r);
                }
                all.push(std::mem::replace(&mut run, vec![String::new()]));
                all.extend(i.all);
                whole = false;
            }
        }
    }
    consider(&mut best, &run);
    all.push(run.clone());
    Info {
        exact: whole.then_some(run),
        required: best,
        all: conjunction(all.iter().map(Vec::as_slice)),
    }
}

fn alternation(subs: &[Hir]) -> Info {
    let infos: Vec<Info> = subs.iter().map(info).collect();
    let exact = infos
        .iter()
        .map(|i| i.exact.clone())
        .collect::<Option<Vec<_>>>()
        .map(|v| dedup(v.concat()))
        .filter(|v| v.len() <= MAX_SET);
    let required = infos
        .iter()
        .map(Info::best)
        .collect::<Option<Vec<_>>>()
        .map(|v| dedup(v.concat()))
        .filter(|v| v.len() <= MAX_SET);
    let all = conjunction(required.as_deref());
    Info {
        exact,
        required,
        all,
    }
}

fn info(h: &Hir) -> Info {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => Info::exact(vec![String::new()]),
        HirKind::Literal(l) => match std::str::from_utf8(&l.0) {
            Ok(s) if s.len() <= MAX_LEN => Info::exact(vec![fold(s)]),
            // A long literal: any piece of it is required.
            Ok(s) => {
                let mut end = MAX_LEN;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                let set = vec![fold(&s[..end])];
                Info {
                    exact: None,
                    all: conjunction([set.as_slice()]),
                    required: Some(set),
                }
            }
            Err(_) => Info::unknown(),
        },
        HirKind::Class(c) => class(c),
        HirKind::Capture(c) => info(&c.sub),
        HirKind::Repetition(r) => {
            let sub = info(&r.sub);
            if r.min == 0 {
                let exact = match (&sub.exact, r.max) {
                    (Some(e), Some(1)) => {
                        let mut v = e.clone();
                        v.push(String::new());
                        Some(dedup(v))
                    }
                    _ => None,
                };
                return Info {
                    exact,
                    required: None,
                    all: Vec::new(),
                };
            }
            let mut exact = None;
            if r.max == Some(r.min) && r.min <= 4 {
                if let Some(e) = &sub.exact {
                    let mut acc = Some(vec![String::new()]);
                    for _ in 0..r.min {
                        acc = acc.and_then(|a| cross(&a, e));
                    }
                    exact = acc;
                }
            }
            let mut all = sub.all.clone();
            all.extend(exact.clone());
            Info {
                exact,
                required: sub.best(),
                all: conjunction(all.iter().map(Vec::as_slice)),
            }
        }
        HirKind::Concat(subs) => concat(subs),
        HirKind::Alternation(subs) => alternation(subs),
    }
}

/// Every requirement found for `pattern`: every match contains one string
/// of each set (folded, none empty, at most [`MAX_ALL`] sets, the best
/// first). `None` for a pattern that does not parse; empty when no
/// requirement is known.
pub fn requirements(pattern: &str) -> Option<Vec<Vec<String>>> {
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    let i = info(&hir);
    let best = i.best();
    let mut all = i.all;
    all.extend(best);
    Some(conjunction(all.iter().map(Vec::as_slice)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The best requirement of `pattern` (the one `requirements` puts
    /// first, when `info` finds one), if all its strings are at least
    /// `min_len` bytes long.
    fn required(pattern: &str, min_len: usize) -> Option<Vec<String>> {
        let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
        let set = info(&hir).best()?;
        set.iter().all(|s| s.len() >= min_len).then_some(set)
    }

    fn req(p: &str) -> Option<Vec<String>> {
        required(p, 1)
    }

    fn v(s: &[&str]) -> Option<Vec<String>> {
        Some(s.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn literals_and_case_insensitive_words() {
        assert_eq!(req("viagra"), v(&["viagra"]));
        assert_eq!(req("(?i)ViAgRa"), v(&["viagra"]));
        assert_eq!(req("(?i)^YES"), v(&["yes"]));
        assert_eq!(req(r"(?i)cheap-meds\.example"), v(&["cheap-meds.example"]));
        // The Kelvin sign folds to k, the long s to s, final sigma to σ.
        assert_eq!(req("(?i)kiss"), v(&["kiss"]));
        assert_eq!(req("(?i)σας"), v(&["σασ"]));
        assert_eq!(req("(?i)ß"), v(&["ss", "ß"]));
    }

    #[test]
    fn the_best_piece_is_kept() {
        assert_eq!(req(r"zqref-12-[0-9]+"), v(&["zqref-12-"]));
        assert_eq!(
            req(r"^\d+ tickets? for (you|me)$"),
            v(&[
                " ticket for me",
                " ticket for you",
                " tickets for me",
                " tickets for you"
            ])
        );
        assert_eq!(
            req("(?i)(cheap|discount|bargain) zqitem7"),
            v(&["bargain zqitem7", "cheap zqitem7", "discount zqitem7"])
        );
        assert_eq!(req("foo.*barbaz"), v(&["barbaz"]));
        assert_eq!(req("colou?r"), v(&["color", "colour"]));
        assert_eq!(req("(ab){2}c"), v(&["ababc"]));
        assert_eq!(req("x(abc)+"), v(&["abc"]));
    }

    #[test]
    fn all_requirements_of_a_concatenation() {
        let all = |p: &str| requirements(p).unwrap();
        let v2 = |s: &[&[&str]]| -> Vec<Vec<String>> {
            s.iter()
                .map(|s| s.iter().map(|x| x.to_string()).collect())
                .collect()
        };
        assert_eq!(
            all("(?i)charset=.?gb2312"),
            v2(&[&["charset="], &["gb2312"]])
        );
        assert_eq!(
            all(r"^Subject:.*(cheap|free) (pills|meds)"),
            v2(&[
                &["cheap meds", "cheap pills", "free meds", "free pills"],
                &["subject:"]
            ])
        );
        assert_eq!(all("viagra"), v2(&[&["viagra"]]));
        assert_eq!(all("a.*b"), v2(&[&["a"], &["b"]]));
        assert!(all(".*").is_empty());
        assert!(all("foo?|x*").is_empty());
        assert!(requirements("(unclosed").is_none());
    }

    #[test]
    fn no_requirement_when_a_match_can_avoid_every_literal() {
        assert_eq!(req(".*"), None);
        assert_eq!(req(r"\d{5}"), None);
        assert_eq!(req("^$"), None);
        assert_eq!(req("foo|.*"), None);
        assert_eq!(req("(foo)?bar?"), v(&["ba"]));
        assert_eq!(req("(?i)a|bc"), v(&["a", "bc"]));
        assert_eq!(required("(?i)a|bc", 2), None);
        assert_eq!(req("(unclosed"), None);
    }

    #[test]
    fn requirements_hold_on_matching_texts() {
        // Every text the regex crate matches contains a required string
        // once both are folded.
        let cases = [
            ("(?i)straße", "STRASSE STRAẞE straße"),
            ("(?i)élève", "ÉLÈVE"),
            ("(?i)k", "\u{212A}"),
            ("ΣΑΣ", "ΣΑΣ"),
            ("(?i)σας", "ΣΑΣ σας ΣΑς"),
            ("İstanbul", "İstanbul"),
            ("(?i)i̇stanbul", "İSTANBUL"),
        ];
        for (p, hay) in cases {
            let re = regex::Regex::new(p).unwrap();
            let Some(set) = req(p) else { continue };
            for m in re.find_iter(hay) {
                let f = fold(m.as_str());
                assert!(
                    set.iter().any(|s| f.contains(s.as_str())),
                    "{p} {hay} {set:?}"
                );
            }
        }
    }

    fn atom() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            proptest::sample::select(vec![
                "a", "b", "s", "S", "ſ", "k", "K", "\u{212A}", "σ", "ς", "Σ", "ß", "ẞ", "İ", "i",
                ".", "\\d", "\\w", "[ab]", "[sſ]", "[^a]", "^", "$", "\\b", "-", " ",
            ])
            .prop_map(str::to_string),
            "[a-c]{1,4}",
        ]
    }

    fn pattern() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = proptest::collection::vec(atom(), 1..5).prop_map(|v| v.concat());
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 2..4).prop_map(|v| v.concat()),
                proptest::collection::vec(inner.clone(), 2..4)
                    .prop_map(|v| format!("(?:{})", v.join("|"))),
                (
                    inner.clone(),
                    proptest::sample::select(vec!["?", "+", "*", "{2}", "{1,3}"])
                )
                    .prop_map(|(p, q)| format!("(?:{p}){q}")),
                inner.prop_map(|p| format!("(?i:{p})")),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(3000))]
        #[test]
        fn every_match_contains_a_required_string(
            p in pattern(),
            hay in proptest::collection::vec(atom(), 0..12),
        ) {
            let Ok(re) = regex::Regex::new(&p) else { return Ok(()) };
            let hay: String = hay.concat().replace('\\', "");
            let f = fold(&hay);
            if re.is_match(&hay) {
                if let Some(set) = req(&p) {
                    proptest::prop_assert!(
                        set.iter().any(|s| f.contains(s.as_str())),
                        "pattern {:?} matches {:?} but no folded {:?} is in {:?}", p, hay, set, f
                    );
                }
                for set in requirements(&p).unwrap() {
                    proptest::prop_assert!(
                        set.iter().any(|s| f.contains(s.as_str())),
                        "pattern {:?} matches {:?} but no folded {:?} (of all) is in {:?}",
                        p, hay, set, f
                    );
                }
            }
        }
    }
}
