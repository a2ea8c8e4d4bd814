//! `texthash:` tables: the postmap(1) source format, read at open time.
//!
//! Promises, each checked against postmap 3.7 (see `tests/postmap_diff.rs`):
//! - Logical lines as in `source.rs`: `#` comments, blank lines, and
//!   continuation lines (leading whitespace) joined without the newline.
//! - `key whitespace value`. The key ends at the first whitespace that is not
//!   inside double quotes and not escaped by a backslash; quotes and
//!   backslashes stay part of the key (`"a b" v` has the key `"a b"`,
//!   `k\ y v` the key `k\ y`), exactly as postmap stores them. The value is
//!   the rest, without surrounding whitespace.
//! - Keys are folded like Postfix with `smtputf8_enable = yes` (ASCII lower
//!   case plus Unicode full case folding, `STRAßE` = `strasse`), both in the
//!   file and at lookup.
//! - Duplicate keys: the FIRST entry wins, later ones are ignored, as postmap
//!   does ("duplicate entry" warning); each duplicate becomes a note.
//! - A key ending in `:` gets postmap's "is this an alias file?" note.
//! - Refused with a [`Diag`] (postmap warns and drops the line): a line
//!   without a value, an unbalanced `"`, text that is not UTF-8.
//!
//! Large files: with a cache directory in [`OpenOptions`] and a source larger
//! than [`super::index::THRESHOLD`], the parsed table is stored once as a cdb
//! index and later opens map that index instead of parsing (see
//! [`super::index`] for which directory, and whose index is believed); the
//! answers are the same either way. The table's note says what the cache did
//! ("indexed: ...", "index written: ...", or why it was not used).

use super::cdb::{Cdb, CdbTable};
use super::source::{for_each_logical_line, is_space, LogicalLine};
use super::{fold_key, index, io_err, join_notes, OpenOptions, Table};
use crate::output::diag::Diag;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// At most this many notes are kept; the rest are counted.
const MAX_NOTES: usize = 50;

#[derive(Debug)]
enum Store {
    Memory(HashMap<String, String>),
    Index(Cdb),
}

/// A `texthash:` table (also the storage behind `hash:`, `btree:`, `lmdb:`).
#[derive(Debug)]
pub struct TextHash {
    spec: String,
    path: PathBuf,
    store: Store,
    notes: Vec<String>,
    /// What the index cache did (also the first of `notes`).
    cache_note: Option<String>,
    /// The source was too recently modified to be indexed (see
    /// `Table::index_pending`).
    index_pending: bool,
}

/// The parsed content of a source file.
pub(crate) struct Parsed {
    pub map: HashMap<String, String>,
    pub notes: Vec<String>,
}

/// Parse postmap source text. `path` is only used in messages.
pub(crate) fn parse(path: &Path, data: &[u8]) -> Result<Parsed, Diag> {
    let mut notes = Vec::new();
    let mut extra_notes = 0usize;
    let mut map: HashMap<String, String> = HashMap::new();
    let mut reader_notes = Vec::new();
    for_each_logical_line(path, data, &mut reader_notes, |l: &LogicalLine| {
        let (key, value) = split_entry(path, l)?;
        let mut note = |s: String| {
            if notes.len() < MAX_NOTES {
                notes.push(s);
            } else {
                extra_notes += 1;
            }
        };
        if key.ends_with(':') {
            note(format!(
                "{}, line {}: record is in \"key: value\" format; is this an alias file?",
                path.display(),
                l.line()
            ));
        }
        let key = fold_key(key).into_owned();
        match map.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => note(format!(
                "{}, line {}: duplicate entry: \"{}\" (the first one is used)",
                path.display(),
                l.line(),
                e.key()
            )),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(value.to_string());
            }
        }
        Ok(())
    })?;
    reader_notes.append(&mut notes);
    if extra_notes > 0 {
        reader_notes.push(format!("{extra_notes} more warnings not shown"));
    }
    Ok(Parsed {
        map,
        notes: reader_notes,
    })
}

/// Split a logical line into key and value, the way postmap does.
fn split_entry<'a>(path: &Path, l: &'a LogicalLine) -> Result<(&'a str, &'a str), Diag> {
    let t = &l.text;
    let b = t.as_bytes();
    let mut in_quotes = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                if i + 1 >= b.len() {
                    i += 1;
                    break;
                }
                i += 2;
                continue;
            }
            b'"' => in_quotes = !in_quotes,
            c if is_space(c) && !in_quotes => break,
            _ => {}
        }
        i += 1;
    }
    let i = i.min(b.len());
    if in_quotes {
        return Err(l.err(
            path,
            0,
            format!(
                "unbalanced '\"' in '{}' (postmap ignores this line)",
                super::source::truncate_for_msg(t, 60)
            ),
        ));
    }
    let key = &t[..i];
    let value = super::source::trim_start_space(&t[i..]);
    if value.is_empty() {
        return Err(l.err(
            path,
            i,
            "expected format: key whitespace value (postmap ignores this line)",
        ));
    }
    Ok((key, value))
}

/// Read a file through one descriptor and report whether it stayed the same
/// file with the same size and mtime while it was read.
pub(crate) fn read_stable(path: &Path) -> Result<(Vec<u8>, std::fs::Metadata, bool), Diag> {
    let (mut f, before) = crate::input::safe_open::open(path)?;
    let data =
        crate::input::safe_open::read(&mut f, &before, path, crate::input::safe_open::MAX_FILE)?;
    let after = f.metadata().map_err(|e| io_err(path, "fstat", &e))?;
    let stable = index::SourceId::of(&before) == index::SourceId::of(&after)
        && data.len() as u64 == after.len();
    Ok((data, before, stable))
}

impl TextHash {
    /// Open `path` as a texthash table shown as `spec`.
    pub fn open(spec: &str, path: &Path, opts: &OpenOptions) -> Result<TextHash, Diag> {
        if opts.cache_dir.is_some() || opts.system_cache_dir.is_some() {
            let meta = std::fs::metadata(path).map_err(|e| io_err(path, "open", &e))?;
            if meta.is_file() && meta.len() > index::THRESHOLD {
                return Self::open_cached(spec, path, opts, &meta);
            }
        }
        let data = super::read_source(path)?;
        let parsed = parse(path, &data)?;
        Ok(TextHash {
            spec: spec.to_string(),
            path: path.to_path_buf(),
            store: Store::Memory(parsed.map),
            notes: parsed.notes,
            cache_note: None,
            index_pending: false,
        })
    }

    /// Open a large source through the index cache: map a trusted index, or
    /// parse the source and write one when we may ([`index`] decides which
    /// directory and whose index to believe).
    fn open_cached(
        spec: &str,
        path: &Path,
        opts: &OpenOptions,
        meta: &std::fs::Metadata,
    ) -> Result<TextHash, Diag> {
        let table = |store, mut notes: Vec<String>, cache_note: String, index_pending| {
            // First, so that many parse warnings cannot hide it.
            notes.insert(0, cache_note.clone());
            TextHash {
                spec: spec.to_string(),
                path: path.to_path_buf(),
                store,
                notes,
                cache_note: Some(cache_note),
                index_pending,
            }
        };
        let Some(dir) = index::dir_for(
            opts.cache_dir.as_deref(),
            opts.system_cache_dir.as_deref(),
            meta,
        ) else {
            let parsed = parse(path, &super::read_source(path)?)?;
            let why = format!(
                "index cache not used: no cache directory is set for {} (owned by uid {})",
                path.display(),
                meta.uid()
            );
            return Ok(table(Store::Memory(parsed.map), parsed.notes, why, false));
        };
        match index::open_index(index::MAP, dir, path, meta) {
            Ok(Some((cdb, notes))) => {
                let ipath = index::index_path(index::MAP, dir, path, meta);
                let why = format!("indexed: answered from {}", ipath.display());
                Ok(table(Store::Index(cdb), notes, why, false))
            }
            Ok(None) => {
                let (data, meta, stable) = read_stable(path)?;
                let parsed = parse(path, &data)?;
                drop(data);
                let mut pending = false;
                let why = if !stable {
                    format!(
                        "index cache not used: {} changed while it was read; index not written",
                        path.display()
                    )
                } else {
                    match index::write_index(
                        index::MAP,
                        dir,
                        path,
                        &meta,
                        parsed.map.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())),
                        &parsed.notes,
                    ) {
                        Ok(ipath) => format!("index written: {}", ipath.display()),
                        Err(not) => {
                            pending = not.hot;
                            format!("index cache not used: {not}")
                        }
                    }
                };
                Ok(table(Store::Memory(parsed.map), parsed.notes, why, pending))
            }
            Err(why) => {
                let parsed = parse(path, &super::read_source(path)?)?;
                let why = format!("index cache not used: {why}");
                Ok(table(Store::Memory(parsed.map), parsed.notes, why, false))
            }
        }
    }

    /// True when lookups are answered from a cached cdb index.
    pub fn is_indexed(&self) -> bool {
        matches!(self.store, Store::Index(_))
    }

    pub(crate) fn notes(&self) -> &[String] {
        &self.notes
    }
}

impl Table for TextHash {
    fn spec(&self) -> &str {
        &self.spec
    }
    fn is_pattern(&self) -> bool {
        false
    }
    fn lookup(&self, key: &str) -> Result<Option<String>, Diag> {
        let key = fold_key(key);
        match &self.store {
            Store::Memory(m) => Ok(m.get(key.as_ref()).cloned()),
            Store::Index(cdb) => {
                if key.as_bytes().first() == Some(&0) {
                    // Index metadata records start with NUL; no real key can.
                    return Ok(None);
                }
                CdbTable::get_folded(cdb, &key)
            }
        }
    }
    fn note(&self) -> Option<String> {
        join_notes(&self.notes)
    }
    fn cache_note(&self) -> Option<String> {
        self.cache_note.clone()
    }
    fn index_pending(&self) -> bool {
        self.index_pending
    }
    /// Reads the source again (the parsed or indexed form keeps no lines).
    fn results(&self) -> Vec<(usize, String)> {
        let Ok(data) = super::read_source(&self.path) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let _ = for_each_logical_line(&self.path, &data, &mut Vec::new(), |l: &LogicalLine| {
            if let Ok((_, value)) = split_entry(&self.path, l) {
                out.push((l.line(), value.to_string()));
            }
            Ok(())
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Result<TextHash, Diag> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, text).unwrap();
        TextHash::open("texthash:t", &p, &OpenOptions::default())
    }

    fn get(t: &TextHash, k: &str) -> Option<String> {
        t.lookup(k).unwrap()
    }

    #[test]
    fn entries_built_count_against_an_armed_budget() {
        // About 2 MB of short lines, whose entries take ten times that:
        // a 3 MiB budget admits the file but not what is built from it,
        // and the parse stops on the way, not at the end.
        let text: String = (0..200_000).map(|i| format!("k{i:06} v\n")).collect();
        crate::policy::budget::arm(Some(3 << 20));
        let r = table(&text);
        crate::policy::budget::arm(None);
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            let e = r.unwrap_err();
            assert!(e.msg.contains("MiB compiled in total"), "{e}");
            assert!(e.line > 0 && e.line < 200_000, "{e}");
        }
    }

    #[test]
    fn format_as_postmap_reads_it() {
        let t = table(
            "Foo  bar\nfoo second\nBAZ qux\n  continued here\n# comment\n   # indented\n\n\
             key1\tval with  spaces   \n\"quoted key\" v\n\"a\\\"b\" v2\nk3 v3\n\n  cont after blank\n\
             k\\ y v7\nkey: v8\nSTRAßE v9\n",
        )
        .unwrap();
        assert_eq!(get(&t, "foo").as_deref(), Some("bar"));
        assert_eq!(get(&t, "FOO").as_deref(), Some("bar"));
        assert_eq!(get(&t, "baz").as_deref(), Some("qux  continued here"));
        assert_eq!(get(&t, "key1").as_deref(), Some("val with  spaces"));
        assert_eq!(get(&t, "\"quoted key\"").as_deref(), Some("v"));
        assert_eq!(get(&t, "quoted key"), None);
        assert_eq!(get(&t, "\"a\\\"b\"").as_deref(), Some("v2"));
        assert_eq!(get(&t, "k3").as_deref(), Some("v3  cont after blank"));
        assert_eq!(get(&t, "k\\ y").as_deref(), Some("v7"));
        assert_eq!(get(&t, "key:").as_deref(), Some("v8"));
        assert_eq!(get(&t, "strasse").as_deref(), Some("v9"));
        assert_eq!(get(&t, "Straße").as_deref(), Some("v9"));
        let note = t.note().unwrap();
        assert!(note.contains("line 2: duplicate entry: \"foo\""), "{note}");
        assert!(note.contains("alias file"), "{note}");
        assert!(!t.is_pattern());
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let e = table("a 1\nnovalue\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 8), "{e}");
        assert!(e.msg.contains("expected format: key whitespace value"));
        let e = table("a 1\n\n\"unterminated key v\n").unwrap_err();
        assert_eq!((e.line, e.col), (3, 1), "{e}");
        assert!(e.msg.contains("unbalanced"));
        let e = table("  leading v\n").unwrap_err();
        assert_eq!((e.line, e.col), (1, 1), "{e}");
        let e = table("ok 1\nbad\u{1} v\n").err();
        assert!(e.is_none(), "control characters are fine");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, b"ok 1\nab \xff\n").unwrap();
        let e = TextHash::open("texthash:t", &p, &OpenOptions::default()).unwrap_err();
        assert_eq!((e.line, e.col), (2, 4), "{e}");
        assert!(e.msg.contains("non-UTF-8"));
    }

    #[test]
    fn missing_file() {
        let e = TextHash::open(
            "texthash:/nonexistent",
            Path::new("/nonexistent"),
            &OpenOptions::default(),
        )
        .unwrap_err();
        assert_eq!(e.file, PathBuf::from("/nonexistent"));
    }
}
