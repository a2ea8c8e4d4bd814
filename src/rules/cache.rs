//! The rules cache: a delivery with a large rules file neither parses the
//! whole TOML nor compiles every pattern.
//!
//! Compiling rules is most of what a delivery costs (BENCHMARKS.md): every
//! pattern is parsed and compiled at every start, and a file of 10,000
//! header rules costs a quarter of a second per message. Yet almost every
//! header rule is a word or phrase that a given message does not contain.
//! So, after a rules file has loaded in full, its parsed form is stored in
//! a cdb file next to the map indexes (`crate::maps::index`, same naming,
//! identity check, atomic writes and safety rules), as:
//! - the file without its rules (settings, spam, access), as TOML;
//! - every rule as a TOML table of its own, with its name made explicit;
//! - for each *indexed* rule (a rule whose only condition is one header
//!   pattern with required literals, `super::literal`), one key per
//!   literal: the header name and a 3- or 4-byte piece of the folded
//!   literal, whose value lists the rules it may trigger;
//! - the numbers of the other rules, which every delivery compiles.
//!
//! A delivery then loads the settings, spam and access part at once (their
//! maps are opened as before), reads the message, folds each value of the
//! indexed headers and looks up each of its 3- and 4-byte pieces, and
//! compiles the rules found plus the unindexed ones, in file order, with the
//! same loader as a full load (`super::compile_rules`). A rule that was not
//! compiled cannot match: its pattern needs one of its literals, and the
//! header has none. The decision is the same as with the whole file; the
//! tests compare the two. `--test` and `check` load the whole file, so
//! that `--test` can show every rule.
//!
//! The cache is trusted as map indexes are: the cache of a file the user
//! owns lives in the user's cache directory, the cache of any other file
//! (the system's) in the system cache directory, written only by root
//! (`deliver check` or `--test` run as root); a system file's cache in a
//! user's directory would let that user edit the system's rules for their
//! own mail. Whatever goes wrong with the cache (unreadable, stale, a piece
//! that does not parse) ends in a full load of the file, never in a failed
//! delivery.

use super::literal::{fold_into, required};
use super::model::{FileSpec, RuleSpec};
use super::{compile_rules, parse_spec, Diag, Layer, Origin};
use crate::maps::cdb::Cdb;
use crate::maps::index::{self, Kind, SourceId};
use crate::maps::OpenOptions;
use crate::message::Headers;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, Metadata};
use std::io::Read;
use std::path::{Path, PathBuf};

pub(crate) const KIND: Kind = Kind {
    prefix: "rules.",
    version: "r1",
};

const HEAD: &[u8] = b"\0head";
const ALWAYS: &[u8] = b"\0always";
const HEADERS: &[u8] = b"\0headers";

/// Literal pieces are this many bytes (3 for a literal of exactly 3).
const GRAM: usize = 4;
const GRAM_MIN: usize = 3;

/// A file is cached when it has at least this many indexed rules.
pub const MIN_INDEXED: usize = 4;

/// What a rule is indexed under: its header and the required literals of
/// its pattern. `None`: the rule is compiled at every delivery.
fn indexed(r: &RuleSpec) -> Option<(String, Vec<String>)> {
    if !header_pattern_only(r) {
        return None;
    }
    let header = r.header.as_ref()?.get_ref().trim().to_ascii_lowercase();
    let lits = required(r.pattern.as_ref()?.get_ref(), GRAM_MIN)?;
    Some((header, lits))
}

/// Is the rule's only condition `header` with `match`? (What `indexed`
/// needs before it parses the pattern.)
fn header_pattern_only(r: &RuleSpec) -> bool {
    r.header.is_some()
        && r.pattern.is_some()
        && r.sender.is_none()
        && r.recipient.is_none()
        && r.client_address.is_none()
        && r.client_hostname.is_none()
        && r.helo.is_none()
        && r.body.is_none()
        && r.size_over.is_none()
        && r.size_under.is_none()
        && r.all.is_none()
        && r.any.is_none()
        && r.not.is_none()
}

/// How unusual a byte is in header text: pieces made of rare bytes select
/// fewer rules. Only speed depends on this.
fn rarity(b: u8) -> u32 {
    match b {
        b'e' | b't' | b'a' | b'o' | b'i' | b'n' | b's' | b'r' | b'h' | b'l' => 1,
        b' ' | b'.' | b'-' | b'@' => 1,
        b'z' | b'q' | b'x' | b'j' => 6,
        b'a'..=b'z' => 3,
        b'0'..=b'9' => 4,
        _ => 3,
    }
}

/// The pieces of a folded literal that the index could keep.
fn windows(lit: &str) -> impl Iterator<Item = &[u8]> {
    let b = lit.as_bytes();
    let n = b.len().min(GRAM);
    b.windows(n)
}

/// The piece of a folded literal that the index keeps: the one the fewest
/// literals of the file share (`count`), then the one of the rarest bytes.
/// A piece shared by many rules would select them all whenever it occurs.
fn gram(lit: &str, count: impl Fn(&[u8]) -> usize) -> &[u8] {
    let score = |w: &[u8]| w.iter().map(|&c| rarity(c)).sum::<u32>();
    windows(lit)
        .min_by_key(|w| (count(w), std::cmp::Reverse(score(w))))
        .unwrap_or(lit.as_bytes())
}

fn gram_key(header: &str, gram: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(header.len() + gram.len() + 2);
    k.push(b'g');
    k.extend_from_slice(header.as_bytes());
    k.push(0);
    k.extend_from_slice(gram);
    k
}

fn rule_key(i: u32) -> Vec<u8> {
    let mut k = vec![b'r'];
    k.extend_from_slice(&i.to_le_bytes());
    k
}

fn ids(v: &[u8]) -> impl Iterator<Item = u32> + '_ {
    v.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

/// `[[rule]]` tables, as TOML.
#[derive(Serialize)]
struct Rules<'a> {
    rule: Vec<&'a RuleSpec>,
}

/// What [`store`] did.
#[derive(Debug)]
pub enum Stored {
    Written(PathBuf),
    /// The cache of this version of the file was there already.
    Present(PathBuf),
}

/// Writes the cache of `path` (whose parsed content is `spec`) into `dir`,
/// unless it is there already: `Some` with what was done, or why it could
/// not be written. `None` when the file has fewer than [`MIN_INDEXED`]
/// indexed rules, which is decided without parsing a pattern for most
/// small files.
pub fn store(
    dir: &Path,
    path: &Path,
    meta: &Metadata,
    spec: &FileSpec,
) -> Option<Result<Stored, String>> {
    if spec.rule.iter().filter(|r| header_pattern_only(r)).count() < MIN_INDEXED {
        return None;
    }
    let plan: Vec<_> = spec.rule.iter().map(indexed).collect();
    if plan.iter().flatten().count() < MIN_INDEXED {
        return None;
    }
    let existing = index::index_path(KIND, dir, path, meta);
    if existing.exists() {
        return Some(Ok(Stored::Present(existing)));
    }
    Some(write(dir, path, meta, spec, plan).map(Stored::Written))
}

/// Writes the cache; `plan` is `indexed` of each rule.
fn write(
    dir: &Path,
    path: &Path,
    meta: &Metadata,
    spec: &FileSpec,
    plan: Vec<Option<(String, Vec<String>)>>,
) -> Result<PathBuf, String> {
    let head = FileSpec {
        rule: Vec::new(),
        ..spec.clone()
    };
    let head = toml::to_string(&head).map_err(|e| format!("cannot serialize: {e}"))?;
    let mut entries: Vec<(Vec<u8>, Vec<u8>)> = vec![(HEAD.to_vec(), head.into_bytes())];
    let mut always = Vec::new();
    let mut grams: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut headers: Vec<String> = Vec::new();
    // How many literals (per header) contain each piece.
    let mut shared: HashMap<Vec<u8>, usize> = HashMap::new();
    for (header, lits) in plan.iter().flatten() {
        for lit in lits {
            let mut seen = HashSet::new();
            for w in windows(lit) {
                if seen.insert(w) {
                    *shared.entry(gram_key(header, w)).or_default() += 1;
                }
            }
        }
    }
    for (i, (r, plan)) in spec.rule.iter().zip(plan).enumerate() {
        let n = u32::try_from(i).map_err(|_| "too many rules".to_string())?;
        let mut r = r.clone();
        if r.name.is_none() {
            // The name a full load gives it (`Loader::rule`).
            r.name = Some(toml::Spanned::new(0..0, format!("rule#{}", i + 1)));
        }
        let text = toml::to_string(&Rules { rule: vec![&r] })
            .map_err(|e| format!("cannot serialize rule {}: {e}", i + 1))?;
        entries.push((rule_key(n), text.into_bytes()));
        match plan {
            Some((header, lits)) => {
                let count = |w: &[u8]| shared.get(&gram_key(&header, w)).copied().unwrap_or(0);
                for lit in &lits {
                    let v = grams
                        .entry(gram_key(&header, gram(lit, count)))
                        .or_default();
                    if !ids(v).any(|x| x == n) {
                        v.extend_from_slice(&n.to_le_bytes());
                    }
                }
                if !headers.contains(&header) {
                    headers.push(header);
                }
            }
            None => always.extend_from_slice(&n.to_le_bytes()),
        }
    }
    entries.push((ALWAYS.to_vec(), always));
    entries.push((HEADERS.to_vec(), headers.join("\n").into_bytes()));
    entries.extend(grams);
    index::write_index(
        KIND,
        dir,
        path,
        meta,
        entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
        &[],
    )
}

/// A layer's rules, still in the cache.
#[derive(Debug)]
pub struct Deferred {
    cdb: Cdb,
    /// The indexed headers, lowercase.
    headers: Vec<String>,
    always: Vec<u32>,
}

/// Opens the cache of `path` and parses its settings, spam and access part.
/// `None` when there is no usable cache.
pub fn open(dir: &Path, path: &Path, meta: &Metadata) -> Option<(Deferred, String)> {
    let (cdb, _) = index::open_index(KIND, dir, path, meta).ok()??;
    let head = String::from_utf8(cdb.get(HEAD).ok()??.to_vec()).ok()?;
    let headers = std::str::from_utf8(cdb.get(HEADERS).ok()??)
        .ok()?
        .split('\n')
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect();
    let always = ids(cdb.get(ALWAYS).ok()??).collect();
    Some((
        Deferred {
            cdb,
            headers,
            always,
        },
        head,
    ))
}

impl Deferred {
    /// The rules that can match a message with these headers: the
    /// unindexed ones, and the indexed ones one of whose literal pieces
    /// occurs in a folded value of their header. In file order.
    pub fn select(&self, headers: &Headers) -> Result<Vec<u32>, String> {
        let mut out = self.always.clone();
        let mut folded = String::new();
        for name in &self.headers {
            let mut key = gram_key(name, b"");
            let base = key.len();
            for value in headers.all(name) {
                folded.clear();
                fold_into(value, &mut folded);
                let b = folded.as_bytes();
                for i in 0..b.len() {
                    for n in [GRAM_MIN, GRAM] {
                        let Some(piece) = b.get(i..i + n) else { break };
                        key.truncate(base);
                        key.extend_from_slice(piece);
                        if let Some(v) = self.cdb.get(&key).map_err(|e| e.msg)? {
                            out.extend(ids(v));
                        }
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Compiles the rules this message can trigger into `layer`.
    pub fn complete(&self, layer: &mut Layer, headers: &Headers) -> Result<usize, String> {
        let file = layer.path.clone().unwrap_or_default();
        let mut text = String::new();
        for n in self.select(headers)? {
            let piece = self
                .cdb
                .get(&rule_key(n))
                .map_err(|e| e.msg)?
                .ok_or_else(|| format!("rule {} missing", n + 1))?;
            text.push_str(std::str::from_utf8(piece).map_err(|e| e.to_string())?);
            text.push('\n');
        }
        let spec = parse_spec(&text, &file).map_err(|d| diag_text(&d))?;
        let (rules, groups) =
            compile_rules(&spec.rule, &text, &file, layer.origin).map_err(|d| diag_text(&d))?;
        let n = rules.len();
        layer.rules = rules;
        layer.header_groups = groups;
        Ok(n)
    }
}

fn diag_text(d: &[Diag]) -> String {
    d.first().map_or_else(String::new, |d| d.msg.clone())
}

/// Why a rules file did not load.
#[derive(Debug)]
pub enum LoadError {
    /// Reading the file failed.
    Read(std::io::Error),
    /// The file has errors.
    Diags(Vec<Diag>),
}

/// Loads an opened rules file whose metadata is `meta`. With `defer`, and a
/// usable cache, from the cache: the rules are then left in
/// `Layer::deferred` for `Deferred::complete`. Otherwise in full, and then
/// the cache is written when the file is worth it.
pub fn load(
    mut file: File,
    meta: &Metadata,
    path: &Path,
    origin: Origin,
    opts: &OpenOptions,
    defer: bool,
) -> Result<Layer, LoadError> {
    // The same trust as map indexes (crate::maps::index): the cache of a
    // file the user owns in the user's cache directory, of any other file
    // (the system's) in the system cache directory, which only root writes.
    let dir = index::dir_for(
        opts.cache_dir.as_deref(),
        opts.system_cache_dir.as_deref(),
        meta,
    )
    .filter(|_| meta.is_file());
    if let (true, Some(dir)) = (defer, dir) {
        if let Some((deferred, head)) = open(dir, path, meta) {
            // The head is a valid file's head: an error here means the
            // cache is not what it should be, and the full load decides.
            if let Ok(mut layer) = super::load_str(&head, path, origin, opts) {
                layer.deferred = Some(deferred);
                return Ok(layer);
            }
        }
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(LoadError::Read)?;
    let (layer, spec) = super::load_spec(&text, path, origin, opts).map_err(LoadError::Diags)?;
    if let Some(dir) = dir.filter(|_| index::may_write(meta)) {
        let unchanged = file
            .metadata()
            .is_ok_and(|m| SourceId::of(&m) == SourceId::of(meta) && text.len() as u64 == m.len());
        if unchanged {
            // Best effort, like the map index: a delivery never fails
            // because of the cache.
            let _ = store(dir, path, meta, &spec);
        }
    }
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grams_prefer_pieces_few_literals_share_then_rare_bytes() {
        let none = |_: &[u8]| 0;
        assert_eq!(gram("yes", none), b"yes");
        assert_eq!(gram("viagra", none), b"viag");
        assert_eq!(gram("@zqsender3.example", none), b"@zqs");
        assert_eq!(gram("cheap zqitem17", none), b"p zq");
        let shared = |w: &[u8]| usize::from(w.contains(&b'z') || w.contains(&b'q'));
        assert_eq!(gram("cheap zqitem17", shared), b"em17");
    }
}
