//! The rules cache: a delivery with a large rules file neither parses the
//! whole TOML nor compiles every pattern.
//!
//! Compiling rules is most of what a delivery costs (BENCHMARKS.md): every
//! pattern is parsed and compiled at every start, and a file of 10,000
//! header rules costs a quarter of a second per message. Yet almost every
//! header rule is a word or phrase that a given message does not contain.
//! So, after a rules file has loaded in full, its parsed form is stored in
//! a cdb file next to the map indexes (`crate::policy::maps::index`, same naming,
//! identity check, atomic writes and safety rules), as:
//! - the file without its rules (settings, spam, access), as TOML;
//! - every rule as a TOML table of its own, with its name made explicit;
//! - for each *indexed* rule (a rule whose only condition is one header
//!   pattern with required literals, `super::literal`): every requirement
//!   of its pattern (every match contains one string of each set), and one
//!   key per string of one of those sets: the header name and a 3- or
//!   4-byte piece of the folded string, whose value lists the rules it may
//!   trigger; the set and the piece chosen are those the fewest rules
//!   share;
//! - a Bloom filter of those keys, so that most pieces of a header value
//!   are ruled out without a lookup in the cdb;
//! - the numbers of the other rules, which every delivery compiles.
//!
//! A delivery then loads the settings, spam and access part at once (their
//! maps are opened as without the cache), reads the message, folds each value of the
//! indexed headers and looks up each of its 3- and 4-byte pieces. A rule a
//! piece names is compiled only if that value contains a string of every
//! one of its requirements; it is compiled with the unindexed rules, in
//! file order, by the same loader as a full load (`super::compile_rules`).
//! A rule that was not compiled cannot match: no value of its header holds
//! every literal its pattern needs. The decision is the same as with the whole file; the
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

use super::literal::{fold_into, requirements};
use super::model::{FileSpec, RuleSpec};
use super::{compile_rules, parse_spec, Layer, Origin};
use crate::input::message::Headers;
use crate::output::diag::Diag;
use crate::policy::maps::cdb::Cdb;
use crate::policy::maps::index::{self, Kind, SourceId};
use crate::policy::maps::OpenOptions;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, Metadata};
use std::path::{Path, PathBuf};

pub(crate) const KIND: Kind = Kind {
    prefix: "rules.",
    version: "r2",
};

const HEAD: &[u8] = b"\0head";
const ALWAYS: &[u8] = b"\0always";
const HEADERS: &[u8] = b"\0headers";
const BLOOM: &[u8] = b"\0bloom";

/// Literal pieces are this many bytes (3 for a literal of exactly 3).
const GRAM: usize = 4;
const GRAM_MIN: usize = 3;

/// A file is cached when it has at least this many indexed rules.
pub const MIN_INDEXED: usize = 4;

/// An indexed rule: its header (lowercase) and every requirement of its
/// pattern (`literal::requirements`), at least one of which has only
/// strings of [`GRAM_MIN`] bytes or more.
struct Plan {
    header: String,
    sets: Vec<Vec<String>>,
}

impl Plan {
    /// The sets whose strings the index can key.
    fn keyable(&self) -> impl Iterator<Item = &Vec<String>> {
        self.sets
            .iter()
            .filter(|s| s.iter().all(|l| l.len() >= GRAM_MIN))
    }
}

/// What a rule is indexed under. `None`: the rule is compiled at every
/// delivery.
fn indexed(r: &RuleSpec) -> Option<Plan> {
    if !header_pattern_only(r) {
        return None;
    }
    let header = r.header.as_ref()?.get_ref().trim().to_ascii_lowercase();
    let plan = Plan {
        header,
        sets: requirements(r.pattern.as_ref()?.get_ref())?,
    };
    plan.keyable().next()?;
    Some(plan)
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
        && r.header_limit.is_none()
        && r.address.is_none()
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

/// How unusual a piece is: the sum of its bytes' rarity.
fn piece_rarity(w: &[u8]) -> u32 {
    w.iter().map(|&c| rarity(c)).sum()
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
    windows(lit)
        .min_by_key(|w| (count(w), std::cmp::Reverse(piece_rarity(w))))
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
    id_key(b'r', i)
}

/// The key of a rule's requirements.
fn sets_key(i: u32) -> Vec<u8> {
    id_key(b'v', i)
}

fn id_key(tag: u8, i: u32) -> Vec<u8> {
    let mut k = vec![tag];
    k.extend_from_slice(&i.to_le_bytes());
    k
}

/// Requirements as stored: per set, its string count (u16), then per
/// string its length (u16) and bytes.
fn encode_sets(sets: &[Vec<String>]) -> Result<Vec<u8>, String> {
    let len16 = |n: usize| u16::try_from(n).map_err(|_| "requirement too large".to_string());
    let mut out = Vec::new();
    for set in sets {
        out.extend_from_slice(&len16(set.len())?.to_le_bytes());
        for lit in set {
            out.extend_from_slice(&len16(lit.len())?.to_le_bytes());
            out.extend_from_slice(lit.as_bytes());
        }
    }
    Ok(out)
}

/// Does `text` contain a string of every stored set? `None` when the
/// encoding is damaged.
fn satisfies(mut enc: &[u8], text: &[u8]) -> Option<bool> {
    fn take<'a>(enc: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = enc.split_at_checked(n)?;
        *enc = rest;
        Some(head)
    }
    fn u16_at(enc: &mut &[u8]) -> Option<usize> {
        take(enc, 2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
    }
    let mut all = true;
    while !enc.is_empty() {
        let mut any = false;
        for _ in 0..u16_at(&mut enc)? {
            let n = u16_at(&mut enc)?;
            let lit = take(&mut enc, n)?;
            any = any || memchr::memmem::find(text, lit).is_some();
        }
        all = all && any;
    }
    Some(all)
}

/// A Bloom filter of (header, piece) keys: 64-bit words, three bits set
/// in one word per key (one cache line per test). Its false positives only
/// cost a cdb lookup.
struct Bloom(Vec<u64>);

impl Bloom {
    /// Room for `n` keys at about 16 bits a key.
    fn new(n: usize) -> Bloom {
        Bloom(vec![0; (n.max(1) * 16).div_ceil(64).next_power_of_two()])
    }

    fn insert(&mut self, seed: u64, gram: &[u8]) {
        let (w, bits) = bloom_bits(seed, gram, self.0.len());
        self.0[w] |= bits;
    }

    fn bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|w| w.to_le_bytes()).collect()
    }
}

/// May the stored filter `bloom` hold the key? (Yes when there is none.)
fn bloom_may_have(bloom: &[u8], seed: u64, gram: &[u8]) -> bool {
    let words = bloom.len() / 8;
    if words == 0 {
        return true;
    }
    let (w, bits) = bloom_bits(seed, gram, words);
    let b = &bloom[w * 8..w * 8 + 8];
    let word = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    word & bits == bits
}

/// The word (of `words`, a power of two) and the bits of a key.
fn bloom_bits(seed: u64, gram: &[u8], words: usize) -> (usize, u64) {
    let mut x = (gram.len() as u64) << 56;
    for (i, &b) in gram.iter().enumerate() {
        x |= u64::from(b) << (8 * i);
    }
    // The murmur3 finalizer: every input bit moves every output bit.
    x ^= seed;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    let bits = (1u64 << ((x >> 40) & 63)) | (1u64 << ((x >> 46) & 63)) | (1u64 << ((x >> 52) & 63));
    ((x as usize) & (words - 1), bits)
}

/// A header name's seed for the filter (FNV-1a).
fn header_seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
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
) -> Option<Result<Stored, index::NotWritten>> {
    if spec.rule.iter().filter(|r| header_pattern_only(r)).count() < MIN_INDEXED {
        return None;
    }
    // Before any pattern is analysed: a cache is only ever written for a
    // file with enough indexed rules, and `--test` loads the whole file at
    // every run.
    let existing = index::index_path(KIND, dir, path, meta);
    if existing.exists() {
        return Some(Ok(Stored::Present(existing)));
    }
    let plan: Vec<_> = spec.rule.iter().map(indexed).collect();
    if plan.iter().flatten().count() < MIN_INDEXED {
        return None;
    }
    Some(write(dir, path, meta, spec, plan).map(Stored::Written))
}

/// Writes the cache; `plan` is `indexed` of each rule.
fn write(
    dir: &Path,
    path: &Path,
    meta: &Metadata,
    spec: &FileSpec,
    plan: Vec<Option<Plan>>,
) -> Result<PathBuf, index::NotWritten> {
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
    for p in plan.iter().flatten() {
        for lit in p.keyable().flatten() {
            let mut seen = HashSet::new();
            for w in windows(lit) {
                if seen.insert(w) {
                    *shared.entry(gram_key(&p.header, w)).or_default() += 1;
                }
            }
        }
    }
    let mut bloom_keys: Vec<(u64, Vec<u8>)> = Vec::new();
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
            Some(p) => {
                let count = |w: &[u8]| shared.get(&gram_key(&p.header, w)).copied().unwrap_or(0);
                // The set whose pieces select the fewest rules.
                let cost = |set: &&Vec<String>| {
                    let pieces = set.iter().map(|l| gram(l, count));
                    (
                        pieces.clone().map(count).sum::<usize>(),
                        std::cmp::Reverse(pieces.map(piece_rarity).min().unwrap_or(0)),
                    )
                };
                let Some(set) = p.keyable().min_by_key(cost) else {
                    // Not reached (`indexed` made sure there is one); if
                    // it were, the rule would be compiled every time.
                    always.extend_from_slice(&n.to_le_bytes());
                    continue;
                };
                for lit in set {
                    let g = gram(lit, count);
                    let v = grams.entry(gram_key(&p.header, g)).or_default();
                    if v.is_empty() {
                        bloom_keys.push((header_seed(&p.header), g.to_vec()));
                    }
                    if !ids(v).any(|x| x == n) {
                        v.extend_from_slice(&n.to_le_bytes());
                    }
                }
                entries.push((sets_key(n), encode_sets(&p.sets)?));
                if !headers.contains(&p.header) {
                    headers.push(p.header);
                }
            }
            None => always.extend_from_slice(&n.to_le_bytes()),
        }
    }
    let mut bloom = Bloom::new(bloom_keys.len());
    for (seed, g) in &bloom_keys {
        bloom.insert(*seed, g);
    }
    entries.push((ALWAYS.to_vec(), always));
    entries.push((HEADERS.to_vec(), headers.join("\n").into_bytes()));
    entries.push((BLOOM.to_vec(), bloom.bytes()));
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
    /// How the rules' own tables (`address.table`) are opened.
    opts: OpenOptions,
}

/// Opens the cache of `path` and parses its settings, spam and access part.
/// `None` when there is no usable cache.
pub fn open(
    dir: &Path,
    path: &Path,
    meta: &Metadata,
    opts: &OpenOptions,
) -> Option<(Deferred, String)> {
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
            opts: opts.clone(),
        },
        head,
    ))
}

impl Deferred {
    /// The rules that can match a message with these headers: the
    /// unindexed ones, and the indexed ones for which one folded value of
    /// their header contains a string of each of their requirements. In
    /// file order.
    pub fn select(&self, headers: &Headers) -> Result<Vec<u32>, String> {
        let get = |k: &[u8]| self.cdb.get(k).map_err(|e| e.msg);
        let bloom = get(BLOOM)?.unwrap_or_default();
        let mut out = self.always.clone();
        let mut folded = String::new();
        let mut candidates = Vec::new();
        for name in &self.headers {
            let seed = header_seed(name);
            let mut key = gram_key(name, b"");
            let base = key.len();
            for value in headers.all(name) {
                folded.clear();
                fold_into(value, &mut folded);
                let b = folded.as_bytes();
                candidates.clear();
                for i in 0..b.len() {
                    for n in [GRAM_MIN, GRAM] {
                        let Some(piece) = b.get(i..i + n) else { break };
                        if !bloom_may_have(bloom, seed, piece) {
                            continue;
                        }
                        key.truncate(base);
                        key.extend_from_slice(piece);
                        if let Some(v) = get(&key)? {
                            candidates.extend(ids(v));
                        }
                    }
                }
                candidates.sort_unstable();
                candidates.dedup();
                for &n in &candidates {
                    let sets = get(&sets_key(n))?
                        .ok_or_else(|| format!("rule {} has no requirements", n + 1))?;
                    if satisfies(sets, b).ok_or("damaged requirements")? {
                        out.push(n);
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
        let (rules, groups) = compile_rules(&spec.rule, &text, &file, layer.origin, &self.opts)
            .map_err(|d| diag_text(&d))?;
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
    /// Reading the file failed, or it is not a regular file within the
    /// size bounds (`crate::input::safe_open`).
    Read(crate::input::safe_open::Error),
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
    // The same trust as map indexes (crate::policy::maps::index): the cache of a
    // file the user owns in the user's cache directory, of any other file
    // (the system's) in the system cache directory, which only root writes.
    let dir = index::dir_for(
        opts.cache_dir.as_deref(),
        opts.system_cache_dir.as_deref(),
        meta,
    )
    .filter(|_| meta.is_file());
    if let (true, Some(dir)) = (defer, dir) {
        if let Some((deferred, head)) = open(dir, path, meta, opts) {
            // The head is a valid file's head: an error here means the
            // cache is not what it should be, and the full load decides.
            if let Ok(mut layer) = super::load_str(&head, path, origin, opts) {
                layer.deferred = Some(deferred);
                return Ok(layer);
            }
        }
    }
    let max = match origin {
        Origin::System => crate::input::safe_open::MAX_FILE,
        Origin::User => crate::input::safe_open::MAX_USER_RULES,
    };
    let text =
        crate::input::safe_open::read_text(&mut file, meta, path, max).map_err(LoadError::Read)?;
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
