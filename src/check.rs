//! `deliver check`: validate the rules files without reading a message.
//! Each problem is one line, `file:line:col: message`.

use crate::access::{parse_action, Action};
use crate::maildir::FolderName;
use crate::maps::{OpenOptions, Table};
use crate::rules::{self, Diag, Layer, Origin};
use crate::run;
use std::path::{Path, PathBuf};

/// Checks the system file (or notes the embedded default) and the user's
/// file. Returns the problems found; an empty list means clean.
pub fn check(system: Option<&Path>, user: Option<&Path>, uid: u32) -> Vec<Diag> {
    let mut diags = Vec::new();
    let (sys_path, explicit) = match system {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(rules::SYSTEM_RULES), false),
    };
    match std::fs::read_to_string(&sys_path) {
        Ok(text) => {
            match rules::load_str(&text, &sys_path, Origin::System, &OpenOptions::default()) {
                Ok(layer) => diags.extend(map_results(&layer)),
                Err(d) => diags.extend(d),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {}
        Err(e) => diags.push(Diag {
            file: sys_path.clone(),
            line: 0,
            col: 0,
            msg: e.to_string(),
        }),
    }
    if let Some(p) = user {
        match run::read_user_file(p, uid) {
            Ok(Some(text)) => {
                match rules::load_str(&text, p, Origin::User, &OpenOptions::default()) {
                    Ok(layer) => diags.extend(map_results(&layer)),
                    Err(d) => diags.extend(d),
                }
            }
            Ok(None) => diags.push(Diag {
                file: p.to_path_buf(),
                line: 0,
                col: 0,
                msg: "no such file".into(),
            }),
            Err(why) => diags.push(Diag {
                file: p.to_path_buf(),
                line: 0,
                col: 0,
                msg: format!(
                    "would be ignored: {}",
                    why.trim_start_matches(&format!("{}: ", p.display()))
                ),
            }),
        }
    }
    diags
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

/// Results in a layer's maps that delivery cannot honour as written.
fn map_results(layer: &Layer) -> Vec<Diag> {
    let a = &layer.access;
    let mut out = Vec::new();
    for t in a
        .client
        .iter()
        .chain(&a.helo)
        .chain(&a.sender)
        .chain(&a.recipient)
    {
        let file = table_file(t.as_ref());
        for (line, text) in t.results() {
            let msg = match parse_action(&text) {
                Action::Ignored(raw) => Some(format!(
                    "result {raw:?} cannot be honoured after queueing; delivery treats it as DUNNO"
                )),
                Action::Folder(name) => FolderName::parse(&name).err().map(|e| {
                    format!("FOLDER {name:?} would be refused ({e}); delivery uses the Inbox")
                }),
                Action::Prepend(h) if !crate::decide::valid_header_line(&h) => Some(format!(
                    "PREPEND {h:?} is not a valid header line; delivery ignores it"
                )),
                _ => None,
            };
            if let Some(msg) = msg {
                out.push(Diag {
                    file: file.clone(),
                    line,
                    col: 1,
                    msg,
                });
            }
        }
    }
    out
}
