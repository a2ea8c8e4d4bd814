//! `hash:`, `btree:` and `lmdb:` tables, read from their source text.
//!
//! This program links no Berkeley DB or LMDB library. A `hash:/etc/postfix/x`
//! table is the file `/etc/postfix/x.db` that `postmap` built from the source
//! text `/etc/postfix/x`; we read that source text instead, with exactly the
//! `texthash:` rules (which are postmap's input rules), and
//! [`Table::note`] says so: "hash:/etc/postfix/x: read from the source text
//! /etc/postfix/x, not x.db". When the database is older than its source
//! (someone forgot to run postmap) smtpd and this program may disagree, and
//! the note says that too.
//!
//! A spec naming the database file itself (`hash:/etc/postfix/x.db`,
//! `lmdb:/etc/postfix/x.lmdb`) is accepted: the suffix is removed. When the
//! source text is missing the open fails with a [`Diag`] that says
//! exactly that; there is no fallback to the binary database.
//!
//! Large sources use the index cache like `texthash:` (see [`super::index`]).

use super::texthash::TextHash;
use super::{file_err, join_notes, OpenOptions, Table};
use crate::output::diag::Diag;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A `hash:`/`btree:`/`lmdb:` table read from its source text.
#[derive(Debug)]
pub struct DbSource {
    inner: TextHash,
    note: String,
}

impl DbSource {
    /// `kind` is `hash`, `btree` or `lmdb`; `name` the table name from the spec.
    pub fn open(spec: &str, kind: &str, name: &Path, opts: &OpenOptions) -> Result<DbSource, Diag> {
        let suffix = if kind == "lmdb" { ".lmdb" } else { ".db" };
        let source: PathBuf = match name.as_os_str().as_bytes().strip_suffix(suffix.as_bytes()) {
            Some(stem) if !stem.is_empty() => PathBuf::from(OsStr::from_bytes(stem)),
            _ => name.to_path_buf(),
        };
        let mut db = source.clone().into_os_string();
        db.push(suffix);
        let db = PathBuf::from(db);
        let db_name = db
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match std::fs::metadata(&source) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(file_err(
                    &source,
                    format!("{spec}: the source text {} is not a regular file; this program reads the source text, not {db_name}", source.display()),
                ))
            }
            Err(e) => {
                return Err(Diag {
                    cause: crate::output::exit::Cause::of(&e),
                    ..file_err(
                        &source,
                        format!(
                            "{spec}: the source text {} is missing ({e}); this program reads the source text beside the database, not {db_name}",
                            source.display()
                        ),
                    )
                })
            }
        }
        let inner = TextHash::open(spec, &source, opts)?;
        let mut note = format!(
            "{spec}: read from the source text {}, not {db_name}",
            source.display()
        );
        let src_mtime = std::fs::metadata(&source).and_then(|m| m.modified()).ok();
        match std::fs::metadata(&db).and_then(|m| m.modified()) {
            Ok(db_mtime) => {
                if src_mtime.is_some_and(|s| s > db_mtime) {
                    note.push_str(&format!(
                        " ({db_name} is older than its source: smtpd still uses the old content until \"postmap {kind}:{}\" is run)",
                        source.display()
                    ));
                }
            }
            Err(_) => note.push_str(&format!(" ({db_name} does not exist)")),
        }
        Ok(DbSource { inner, note })
    }
}

impl Table for DbSource {
    fn spec(&self) -> &str {
        self.inner.spec()
    }
    fn is_pattern(&self) -> bool {
        false
    }
    fn lookup(&self, key: &str) -> Result<Option<String>, Diag> {
        self.inner.lookup(key)
    }
    fn results(&self) -> Vec<(usize, String)> {
        self.inner.results()
    }
    fn cache_note(&self) -> Option<String> {
        self.inner.cache_note()
    }
    fn index_pending(&self) -> bool {
        self.inner.index_pending()
    }
    fn note(&self) -> Option<String> {
        let mut all = vec![self.note.clone()];
        all.extend(self.inner.notes().iter().cloned());
        join_notes(&all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_source_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("x");
        std::fs::write(&src, "Key Value\n").unwrap();
        let spec = format!("hash:{}", src.display());
        let t = DbSource::open(&spec, "hash", &src, &OpenOptions::default()).unwrap();
        assert_eq!(t.lookup("KEY").unwrap().as_deref(), Some("Value"));
        let n = t.note().unwrap();
        assert!(
            n.starts_with(&format!(
                "{spec}: read from the source text {}, not x.db",
                src.display()
            )),
            "{n}"
        );
        assert!(n.contains("x.db does not exist"), "{n}");

        // lmdb: with the database name itself.
        let db = dir.path().join("x.lmdb");
        std::fs::write(&db, "binary").unwrap();
        let t = DbSource::open("lmdb:x.lmdb", "lmdb", &db, &OpenOptions::default()).unwrap();
        assert_eq!(t.lookup("key").unwrap().as_deref(), Some("Value"));
        assert!(t.note().unwrap().contains("not x.lmdb"));
    }

    #[test]
    fn stale_database_is_mentioned() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("y");
        let db = dir.path().join("y.db");
        std::fs::write(&db, "old").unwrap();
        std::fs::write(&src, "k v\n").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&db)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let t = DbSource::open("btree:y", "btree", &src, &OpenOptions::default()).unwrap();
        assert!(t.note().unwrap().contains("y.db is older than its source"));
    }

    #[test]
    fn missing_source_is_an_error_saying_so() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("gone");
        std::fs::write(dir.path().join("gone.db"), "binary").unwrap();
        let e = DbSource::open("hash:gone", "hash", &src, &OpenOptions::default()).unwrap_err();
        assert_eq!(e.file, src);
        assert!(e.msg.contains("the source text"), "{e}");
        assert!(e.msg.contains("is missing"), "{e}");
        assert!(e.msg.contains("not gone.db"), "{e}");
    }
}
