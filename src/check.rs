//! `deliver check`: validate the rules files without reading a message.
//! Each problem is one line, `file:line:col: message`.

use crate::maps::OpenOptions;
use crate::rules::{self, Diag, Origin};
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
            if let Err(d) =
                rules::load_str(&text, &sys_path, Origin::System, &OpenOptions::default())
            {
                diags.extend(d);
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
                if let Err(d) = rules::load_str(&text, p, Origin::User, &OpenOptions::default()) {
                    diags.extend(d);
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
