//! `deliver check`: validate the rules files without reading a message.
//! Each problem is one line, `file:line:col: message`.
//!
//! It also maintains the index cache of the system file's large text tables
//! (see `crate::policy::maps::index`): run as root, it writes their indexes into the
//! system cache directory, the only place a delivery believes an index of a
//! table the recipient does not own; run as anyone else, it says whether
//! they are there. These lines are notes, not problems.

use crate::engine::load;
use crate::output::diag::Diag;
use crate::policy::access::{parse_action, AccessAction};
use crate::policy::maps::{index, OpenOptions, Table};
use crate::policy::rules::model::FileSpec;
use crate::policy::rules::{self, cache, Layer, Origin};
use crate::store::maildir::FolderName;
use std::path::{Path, PathBuf};

/// What `deliver check` found.
#[derive(Debug, Default)]
pub struct Report {
    /// Problems, one per line; an empty list means clean (exit 0).
    pub problems: Vec<Diag>,
    /// What the index cache did for the system file's large tables
    /// (`SPEC: index written: PATH`, `SPEC: indexed: ...`, or why not).
    pub notes: Vec<String>,
    /// What was checked, for the summary: the rules files read, their
    /// rules, and the distinct tables they name.
    pub files: usize,
    pub rules: usize,
    tables: std::collections::BTreeSet<String>,
}

impl Report {
    /// The number of distinct tables (by spec) the files name.
    pub fn tables(&self) -> usize {
        self.tables.len()
    }

    /// The one-line summary of a clean check, e.g. `ok: 2 files, 31
    /// rules, 4 tables, 0 warnings`. Every finding of `check` is a
    /// problem (exit 1), so a clean check has no warnings.
    pub fn summary(&self) -> String {
        let n =
            |k: usize, one: &str, many: &str| format!("{k} {}", if k == 1 { one } else { many });
        format!(
            "ok: {}, {}, {}, {}",
            n(self.files, "file", "files"),
            n(self.rules, "rule", "rules"),
            n(self.tables(), "table", "tables"),
            n(self.problems.len(), "warning", "warnings"),
        )
    }

    /// Counts a layer that loaded.
    fn count(&mut self, layer: &Layer) {
        self.files += 1;
        self.rules += layer.rules.len();
        self.tables
            .extend(layer.access.tables().map(|t| t.spec().to_string()));
        let mut tables = Vec::new();
        for r in &layer.rules {
            r.cond.tables(&mut tables);
        }
        self.tables
            .extend(tables.into_iter().map(|t| t.spec().to_string()));
    }
}

/// Loads the system file with the system cache directory, so that its large
/// tables are indexed there (as root) or found there. A table modified within
/// the last seconds is not indexed yet (`index::HOT_SECONDS`): as root, wait
/// once and load again, so that `deliver check` right after an edit works.
fn load_system(text: &str, path: &Path) -> Result<(Layer, FileSpec), Vec<Diag>> {
    let opts = OpenOptions {
        cache_dir: None,
        system_cache_dir: Some(PathBuf::from(index::SYSTEM_CACHE_DIR)),
        home: None,
    };
    let loaded = rules::load_spec(text, path, Origin::System, &opts)?;
    let hot = loaded.0.access.tables().any(|t| t.index_pending());
    if hot && nix::unistd::geteuid().is_root() {
        wait_cool_down();
        return rules::load_spec(text, path, Origin::System, &opts);
    }
    Ok(loaded)
}

/// Waits until a file modified just now may be cached (`index::HOT_SECONDS`).
fn wait_cool_down() {
    std::thread::sleep(std::time::Duration::from_millis(
        index::HOT_SECONDS * 1000 + 100,
    ));
}

/// As root, writes the rules cache of the system file (parsed as `spec`)
/// into the system cache directory, where deliveries (which do not run as
/// root) read it but cannot write it (see `crate::policy::rules::cache`). Returns
/// the note to print.
fn system_rules_cache(path: &Path, text: &str, spec: &FileSpec) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let meta = std::fs::metadata(path).ok()?;
    let dir = Path::new(index::SYSTEM_CACHE_DIR);
    let why = if meta.len() != text.len() as u64 {
        Err(index::NotWritten::from(
            "the file changed while it was read".to_string(),
        ))
    } else {
        match cache::store(dir, path, &meta, spec)? {
            Err(e) if e.hot => {
                wait_cool_down();
                cache::store(dir, path, &meta, spec)?
            }
            res => res,
        }
    };
    Some(match why {
        Ok(cache::Stored::Written(p)) => {
            format!("{}: rules cache written: {}", path.display(), p.display())
        }
        Ok(cache::Stored::Present(p)) => {
            format!(
                "{}: rules cache up to date: {}",
                path.display(),
                p.display()
            )
        }
        Err(e) => format!("{}: rules cache not written: {e}", path.display()),
    })
}

/// The index cache's note of each table of a layer, once per table.
fn cache_notes(layer: &Layer) -> Vec<String> {
    let a = &layer.access;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for t in a.tables() {
        if let Some(n) = t.cache_note() {
            if seen.insert(t.spec().to_string()) {
                out.push(format!("{}: {n}", t.spec()));
            }
        }
    }
    out
}

/// Checks the system file (or notes the embedded default) and the user's
/// file: the problems found (none means clean), and the index cache's notes.
pub fn check_report(system: Option<&Path>, user: Option<&Path>, uid: u32) -> Report {
    let mut report = Report::default();
    let mut diags = Vec::new();
    let mut notes = Vec::new();
    let (sys_path, explicit) = match system {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(rules::SYSTEM_RULES), false),
    };
    let read = crate::input::safe_open::open(&sys_path).and_then(|(mut f, m)| {
        crate::input::safe_open::read_text(&mut f, &m, &sys_path, crate::input::safe_open::MAX_FILE)
    });
    match read {
        Ok(text) => match load_system(&text, &sys_path) {
            Ok((layer, spec)) => {
                report.count(&layer);
                diags.extend(map_results(&layer));
                notes = cache_notes(&layer);
                notes.extend(system_rules_cache(&sys_path, &text, &spec));
                // The [lmtp] section's own checks (its template, tables, limits).
                if spec.lmtp.is_some() {
                    diags.extend(crate::lmtp::config::check(&sys_path));
                }
            }
            Err(d) => diags.extend(d),
        },
        Err(e) if e.is_not_found() && !explicit => {}
        Err(e) => diags.push(Diag {
            file: sys_path.clone(),
            cause: e.cause(),
            line: 0,
            col: 0,
            msg: e.msg(),
        }),
    }
    if let Some(p) = user {
        // Within the user's memory budget, as a delivery loads it.
        let loaded = load::user_budget(|| {
            load::read_user_file(p, uid).map(|text| {
                // `~/` in its table paths is the running user's home, as
                // it is the recipient's at delivery.
                let opts = OpenOptions {
                    home: load::own_home(),
                    ..OpenOptions::default()
                };
                text.map(|text| rules::load_str(&text, p, Origin::User, &opts))
            })
        });
        match loaded {
            Ok(Some(loaded)) => match loaded {
                Ok(layer) => {
                    report.count(&layer);
                    diags.extend(map_results(&layer));
                }
                Err(d) => diags.extend(d),
            },
            Ok(None) => diags.push(Diag::file(p, "no such file")),
            Err(d) => diags.push(Diag {
                msg: format!("would be ignored: {}", d.msg),
                ..d
            }),
        }
    }
    Report {
        problems: diags,
        notes,
        ..report
    }
}

/// The file a table spec names: the part after the last `type:` prefix.
fn table_file(t: &dyn Table) -> PathBuf {
    let spec = t.spec();
    let mut rest = spec;
    while let Some((kind, path)) = rest.split_once(':') {
        if kind.contains('/') {
            break;
        }
        rest = path;
    }
    PathBuf::from(rest)
}

/// `DEFER_IF_PERMIT` or `DEFER_IF_REJECT` when the result is one of them.
fn defer_if(result: &str) -> Option<&'static str> {
    let word = result.split([' ', '\t']).next().unwrap_or("");
    ["DEFER_IF_PERMIT", "DEFER_IF_REJECT"]
        .into_iter()
        .find(|kw| word.eq_ignore_ascii_case(kw))
}

/// Whether a result's first word is PREPEND (any case).
fn is_prepend(result: &str) -> bool {
    let word = result.split([' ', '\t']).next().unwrap_or("");
    word.eq_ignore_ascii_case("PREPEND")
}

/// Results in a layer's maps that delivery cannot honour as written.
fn map_results(layer: &Layer) -> Vec<Diag> {
    let a = &layer.access;
    let mut out = Vec::new();
    for t in a.tables() {
        let file = table_file(t.as_ref());
        for (line, text) in t.results() {
            let msg = match parse_action(&text) {
                AccessAction::Ignored(raw) if is_prepend(&raw) => Some(format!(
                    "result {raw:?} cannot be honoured: not a valid header line (name: value); delivery treats it as DUNNO"
                )),
                AccessAction::Ignored(raw) => Some(format!(
                    "result {raw:?} cannot be honoured after queueing; delivery treats it as DUNNO"
                )),
                AccessAction::Folder(name) => FolderName::parse(&name).err().map(|e| {
                    format!("FOLDER {name:?} would be refused ({e}); delivery uses the Inbox")
                }),
                AccessAction::Defer { .. } => defer_if(&text).map(|kw| {
                    format!(
                        "{kw} defers every message it matches, like DEFER (exit 75): delivery has no later restriction to make it conditional, so the message stays queued and bounces when maximal_queue_lifetime ends"
                    )
                }),
                _ => None,
            };
            if let Some(msg) = msg {
                out.push(Diag::at(&file, line, 1, msg));
            }
        }
    }
    out
}
