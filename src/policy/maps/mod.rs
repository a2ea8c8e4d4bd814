//! Lookup tables: Postfix's table types, one module each, behind one trait.
//!
//! This module knows *storage*: how to read a `type:name` table and answer one
//! exact lookup. It knows nothing of access(5) policy (which keys to try, in
//! which order, what a result means); that lives once, in `crate::policy::access`.
//!
//! Supported types: `texthash:`, `cidr:`, `regexp:`, `pcre:`, `cdb:`, and
//! `hash:`/`btree:`/`lmdb:` (read from the source text file beside the
//! database, which `Table::note` reports).
//!
//! [`open`] dispatches on the `type:` prefix. A spec without a type (an
//! absolute path) is `hash:`, Postfix's `default_database_type` on Debian, and
//! `proxy:TYPE:NAME` opens `TYPE:NAME` directly (proxymap(8) would read the
//! same file). Other types (ldap:, mysql:, inline:, static:...) are refused
//! with a [`Diag`] rather than half-implemented.
//!
//! Errors: every problem is a [`Diag`] naming the file and, for syntax
//! errors, the 1-based line and column. The rule of thumb, applied in every
//! table type: input that Postfix *drops* with a warning ("skipping this
//! rule", "ignoring this line") is an error here, because an access rule
//! that silently vanishes is a policy hole; input that Postfix *keeps* with a
//! warning (duplicate keys, text after `endif`, an `if` without `endif`) is
//! accepted the same way and the warning is kept for [`Table::note`]. The one
//! exception is a CIDR network with host bits set, which is skipped with a
//! note exactly as Postfix does.

use crate::output::diag::Diag;
use std::fmt;
use std::path::{Path, PathBuf};

pub mod cdb;
pub mod cidr;
mod fold;
pub mod hash;
pub mod index;
pub mod pcre;
mod regex_table;
pub mod regexp;
mod source;
pub mod texthash;

/// One opened lookup table.
pub trait Table: Send + Sync + fmt::Debug {
    /// The table as configured, e.g. `texthash:/etc/postfix/sender_access`.
    fn spec(&self) -> &str;
    /// Postfix's DICT_FLAG_PATTERN: regexp, pcre and cidr tables are matched
    /// against whole strings only, so access(5) tries no partial keys on them.
    fn is_pattern(&self) -> bool;
    /// Look up one key. Fixed tables (texthash, cdb, hash...) fold the key to
    /// lower case themselves, as postmap does by default. `Ok(None)` is "not found".
    fn lookup(&self, key: &str) -> Result<Option<String>, Diag>;
    /// A remark for `--test` output, e.g. that a `hash:` table was read from
    /// its source text. `None` when there is nothing to say.
    fn note(&self) -> Option<String> {
        None
    }
    /// Every result the table can return, with the 1-based line it is
    /// written on, for `deliver check`. Templates with `$n` are given as
    /// written. Empty for tables that cannot list them (cdb).
    fn results(&self) -> Vec<(usize, String)> {
        Vec::new()
    }
    /// What the index cache did for this table (answered from an index,
    /// wrote one, or why not), for `deliver check`; also part of `note()`.
    /// `None` for tables the cache does not serve (small, or not text).
    fn cache_note(&self) -> Option<String> {
        None
    }
    /// The source was modified too recently to be indexed
    /// (`index::HOT_SECONDS`): opened again after that long, it may be.
    fn index_pending(&self) -> bool {
        false
    }
}

/// Where compiled indexes of large text tables may be cached. Which of the
/// two directories serves a table depends on who owns it
/// ([`index::dir_for`]); with neither set, large tables are parsed at each
/// open.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// The running user's cache directory, for the indexes of the tables
    /// that user owns (created on demand, mode 0700). Not used as root.
    pub cache_dir: Option<PathBuf>,
    /// The system cache directory, for the indexes of every other table
    /// (root's, another user's): read by everyone, written only by root
    /// (`deliver check`), who creates it with mode 0755.
    pub system_cache_dir: Option<PathBuf>,
    /// The home directory that `~/` stands for at the start of a table
    /// path in a user's rules file (`crate::policy::rules`); `None`: such a
    /// path is refused.
    pub home: Option<PathBuf>,
}

/// Fold a fixed-table key the way Postfix does with `smtputf8_enable = yes`:
/// ASCII lower case plus Unicode full case folding (`STRAßE` → `strasse`).
pub fn fold_key(key: &str) -> std::borrow::Cow<'_, str> {
    fold::fold(key)
}

/// Open the table `spec` (`type:name`).
///
/// - `texthash:PATH`, `cidr:PATH`, `regexp:PATH`, `pcre:PATH`: the text file.
/// - `cdb:PATH`: the database `PATH.cdb` that `postmap cdb:PATH` wrote.
/// - `hash:PATH`, `btree:PATH`, `lmdb:PATH`: the source text `PATH` (a
///   trailing `.db` / `.lmdb` is removed), read as `texthash:`; the table's
///   `note()` says so.
/// - `proxy:TYPE:NAME`: the same as `TYPE:NAME`.
/// - `/absolute/path`: `hash:/absolute/path`.
///
/// Large text tables (`texthash:` and the `hash:` family) are served from a
/// cached cdb index when `opts.cache_dir` is set; see [`index`].
pub fn open(spec: &str, opts: &OpenOptions) -> Result<Box<dyn Table>, Diag> {
    open_as(spec, spec, opts)
}

fn open_as(spec: &str, shown: &str, opts: &OpenOptions) -> Result<Box<dyn Table>, Diag> {
    let (kind, name) = if spec.starts_with('/') {
        ("hash", spec)
    } else {
        match spec.split_once(':') {
            Some((k, n)) => (k, n),
            None => {
                return Err(spec_err(
                    spec,
                    "table has no type: expected type:name, e.g. texthash:/etc/postfix/access",
                ))
            }
        }
    };
    if name.is_empty() {
        return Err(spec_err(spec, "table has no name after the type"));
    }
    match kind {
        "texthash" => Ok(Box::new(texthash::TextHash::open(shown, Path::new(name), opts)?)),
        "cidr" => Ok(Box::new(cidr::Cidr::open(shown, Path::new(name))?)),
        "regexp" => Ok(Box::new(regexp::Regexp::open(shown, Path::new(name))?)),
        "pcre" => Ok(Box::new(pcre::Pcre::open(shown, Path::new(name))?)),
        "cdb" => Ok(Box::new(cdb::CdbTable::open(shown, Path::new(name))?)),
        "hash" | "btree" | "lmdb" => Ok(Box::new(hash::DbSource::open(shown, kind, Path::new(name), opts)?)),
        "proxy" => open_as(name, shown, opts),
        other => Err(spec_err(
            spec,
            &format!(
                "unsupported lookup table type \"{other}\" (supported: texthash, cidr, regexp, pcre, cdb, hash, btree, lmdb)"
            ),
        )),
    }
}

pub(crate) fn spec_err(spec: &str, msg: &str) -> Diag {
    Diag::file(Path::new(spec), msg)
}

pub(crate) fn file_err(path: &Path, msg: impl Into<String>) -> Diag {
    Diag::file(path, msg)
}

/// A failed system call `op` on `path`, with its errno as the cause.
pub(crate) fn io_err(path: &Path, op: &str, e: &std::io::Error) -> Diag {
    Diag::io(path, op, e)
}

/// Read a whole table source file: a regular file, opened without
/// blocking, within the size bounds of `crate::input::safe_open`.
pub(crate) fn read_source(path: &Path) -> Result<Vec<u8>, Diag> {
    Ok(crate::input::safe_open::read_file(path)?.0)
}

/// The notes of a table, as `Table::note` shows them, or `None`.
pub(crate) fn join_notes(notes: &[String]) -> Option<String> {
    const MAX: usize = 20;
    if notes.is_empty() {
        return None;
    }
    let mut s = notes
        .iter()
        .take(MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if notes.len() > MAX {
        s.push_str(&format!("; and {} more", notes.len() - MAX));
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_dispatch_errors() {
        let o = OpenOptions::default();
        let e = open("ldap:/etc/postfix/ldap.cf", &o).unwrap_err();
        assert!(
            e.msg.contains("unsupported lookup table type \"ldap\""),
            "{e}"
        );
        let e = open("noType", &o).unwrap_err();
        assert!(e.msg.contains("no type"), "{e}");
        let e = open("cidr:", &o).unwrap_err();
        assert!(e.msg.contains("no name"), "{e}");
        let e = open("cidr:/nonexistent/x", &o).unwrap_err();
        assert_eq!(e.file, PathBuf::from("/nonexistent/x"));
        assert!(e.msg.starts_with("open:"), "{e}");
    }

    #[test]
    fn proxy_and_default_type() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("access");
        std::fs::write(&p, "Example.COM REJECT\n").unwrap();
        let o = OpenOptions::default();
        let spec = format!("proxy:texthash:{}", p.display());
        let t = open(&spec, &o).unwrap();
        assert_eq!(t.spec(), spec);
        assert_eq!(t.lookup("example.com").unwrap().as_deref(), Some("REJECT"));
        let t = open(&p.display().to_string(), &o).unwrap();
        assert!(t.note().unwrap().contains("read from the source text"));
        assert_eq!(t.lookup("EXAMPLE.com").unwrap().as_deref(), Some("REJECT"));
    }

    #[test]
    fn fold_key_is_full_case_folding() {
        assert_eq!(fold_key("MiXeD@Example.COM"), "mixed@example.com");
        assert_eq!(fold_key("STRAßE"), "strasse");
        assert_eq!(fold_key("ΣΑΣ"), "σασ");
        assert_eq!(fold_key("ǅ"), "ǆ");
        assert!(matches!(fold_key("plain"), std::borrow::Cow::Borrowed(_)));
    }
}
