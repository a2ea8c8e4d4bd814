//! Loading for the engine: the system rules file (or the embedded default),
//! the recipient's rules file with its trust checks and memory budget, the
//! rules a message needs from the rules cache, and where the Maildir is.
//! A user's file that does not load is ignored, never a failure, unless a
//! retry could read it (decided by the errno).

use crate::engine::privs::{self, Recipient};
use crate::input::envelope::Flags;
use crate::input::message;
use crate::input::safe_open;
use crate::output::diag::Diag;
use crate::output::exit::{Cause, Failure, Kind};
use crate::output::log::Logger;
use crate::policy::maps::OpenOptions;
use crate::policy::rules::cache::{self, Deferred, LoadError};
use crate::policy::rules::{self, Layer, Origin};
use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub envelope: Flags,
    pub user: Option<String>,
    pub maildir: Option<PathBuf>,
    pub rules: Option<PathBuf>,
    pub user_rules: Option<PathBuf>,
    /// The LMTP session this delivery belongs to (`--session`, given by
    /// the service to the child that delivers as a system user).
    pub session: Option<String>,
}

/// The recipient's layer, and what happened to the user's file.
#[derive(Debug, Default)]
pub struct UserRules {
    pub layer: Option<Layer>,
    /// Why the user's file was not used, when it exists but was ignored.
    pub ignored: Option<String>,
    pub path: Option<PathBuf>,
    /// The user layer's rules cache while its rules are compiled for the
    /// message at hand (`restore_user` puts it back, for a filter's output).
    pub cached: Option<Deferred>,
}

/// A variable of the process environment (Postfix's `SENDER`, ...), for
/// `Envelope::resolve`.
pub fn read_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

/// The cache directory for compiled map indexes: `~/.cache/deliver`.
pub fn cache_dir(home: Option<&Path>) -> Option<PathBuf> {
    home.map(|h| h.join(".cache").join("deliver"))
}

/// The system cache directory: the system file's `system_cache_dir`, else
/// `/var/cache/deliver`.
fn system_cache_dir(system: &Layer) -> PathBuf {
    system
        .settings
        .system_cache_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::policy::maps::index::SYSTEM_CACHE_DIR))
}

/// Loads the system layer. A missing default file means the embedded
/// default; any other problem is a temporary failure (75) naming the file,
/// line and column, so mail waits until the admin fixes it. With `defer`,
/// the rules may stay in the rules cache until the message is read
/// (`complete_layers`).
pub fn load_system(
    path: Option<&Path>,
    cache: Option<PathBuf>,
    defer: bool,
) -> Result<Layer, Failure> {
    let (path, explicit) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(rules::SYSTEM_RULES), false),
    };
    let (file, meta) = match safe_open::open(&path) {
        Ok(fm) => fm,
        Err(e) if e.is_not_found() && !explicit => return Ok(rules::default_layer()),
        Err(e) => return Err(Failure::config(format!("system rules {e}"))),
    };
    // Before the system file is read, its system_cache_dir is not known:
    // the system file's own cache is always in the default place.
    let opts = OpenOptions {
        cache_dir: cache,
        system_cache_dir: Some(PathBuf::from(crate::policy::maps::index::SYSTEM_CACHE_DIR)),
        home: None,
    };
    cache::load(file, &meta, &path, Origin::System, &opts, defer).map_err(|e| match e {
        LoadError::Read(e) => Failure::config(format!("system rules {e}")),
        LoadError::Diags(diags) => {
            let more = if diags.len() > 1 {
                format!(" (and {} more)", diags.len() - 1)
            } else {
                String::new()
            };
            Failure::config(format!("system rules: {}{more}", diags[0]))
        }
    })
}

/// Why a user's rules file is not used, and what that came from.
struct Unused {
    why: String,
    cause: Cause,
}

impl From<Diag> for Unused {
    fn from(d: Diag) -> Unused {
        Unused {
            why: d.to_string(),
            cause: d.cause,
        }
    }
}

impl From<safe_open::Error> for Unused {
    fn from(e: safe_open::Error) -> Unused {
        Diag::from(e).into()
    }
}

/// Opens a user's rules file (without blocking, a regular file only:
/// `crate::input::safe_open`) and checks that it belongs to the user and is not
/// writable by group or others.
fn open_user_file(path: &Path, uid: u32) -> Result<Option<(File, Metadata)>, Diag> {
    let (f, md) = match safe_open::open(path) {
        Ok(fm) => fm,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if md.uid() != uid {
        return Err(Diag::file(
            path,
            format!(
                "owned by uid {}, not by the recipient (uid {uid})",
                md.uid()
            ),
        ));
    }
    if md.mode() & 0o022 != 0 {
        return Err(Diag::file(
            path,
            format!(
                "writable by group or others (mode {:o})",
                md.mode() & 0o7777
            ),
        ));
    }
    Ok(Some((f, md)))
}

/// Checks a user's rules file as `open_user_file` does. Returns its text,
/// read within the bounds of `crate::input::safe_open`.
pub fn read_user_file(path: &Path, uid: u32) -> Result<Option<String>, Diag> {
    let Some((mut f, md)) = open_user_file(path, uid)? else {
        return Ok(None);
    };
    let text = safe_open::read_text(&mut f, &md, path, safe_open::MAX_USER_RULES)?;
    Ok(Some(text))
}

/// The user's rules file: `--user-rules` or `~/.config/deliver/rules.toml`.
pub fn user_rules_path(opt: Option<&Path>, home: Option<&Path>) -> Option<PathBuf> {
    opt.map(Path::to_path_buf)
        .or_else(|| home.map(|h| h.join(".config").join("deliver").join("rules.toml")))
}

/// Loads the recipient's rules file. It is ignored (and the reason kept)
/// when it has a bad owner or mode or does not load: a user never loses
/// mail to their own typo. With `defer`, its rules may stay in the rules
/// cache until the message is read (`complete_layers`).
pub fn load_user_rules(
    opts: &Options,
    system: &Layer,
    who: &Recipient,
    defer: bool,
) -> Result<UserRules, Failure> {
    let path = user_rules_path(opts.user_rules.as_deref(), who.home.as_deref());
    load_user_rules_at(path, system, who, defer)
}

/// `load_user_rules` for the user's file at `path` (none: no user file).
pub fn load_user_rules_at(
    path: Option<PathBuf>,
    system: &Layer,
    who: &Recipient,
    defer: bool,
) -> Result<UserRules, Failure> {
    let mut user = UserRules {
        path: path.clone(),
        ..UserRules::default()
    };
    if let Some(path) = path {
        let opts = user_cache_opts(system, who);
        (user.layer, user.ignored) = load_user(&path, who.uid, &opts, defer)?;
    }
    Ok(user)
}

/// Where the user's layer keeps its caches (map indexes, rules cache): for
/// what the user owns, the system's `map_cache_dir` when it sets one, else
/// `~/.cache/deliver`; for the rest, the system cache directory.
fn user_cache_opts(system: &Layer, who: &Recipient) -> OpenOptions {
    OpenOptions {
        cache_dir: system
            .settings
            .map_cache_dir
            .clone()
            .or_else(|| cache_dir(who.home.as_deref())),
        system_cache_dir: Some(system_cache_dir(system)),
        home: who.home.clone(),
    }
}

/// Loads a user's rules file: the layer, or why it is ignored.
fn load_user(
    path: &Path,
    uid: u32,
    opts: &OpenOptions,
    defer: bool,
) -> Result<(Option<Layer>, Option<String>), Failure> {
    let loaded = match open_user_file(path, uid) {
        Ok(None) => Ok(None),
        Ok(Some((file, meta))) => {
            user_budget(|| cache::load(file, &meta, path, Origin::User, opts, defer))
                .map_err(|e| match e {
                    LoadError::Read(e) => e.into(),
                    LoadError::Diags(d) => Unused {
                        why: format_diags(&d),
                        cause: d
                            .iter()
                            .map(|d| d.cause)
                            .find(|c| c.is_transient())
                            .unwrap_or_default(),
                    },
                })
                .map(Some)
        }
        Err(d) => Err(d.into()),
    };
    match loaded {
        Ok(l) => Ok((l, None)),
        // The user's file (or a table it names) could not be read because
        // the system is short of descriptors or memory, or the disk failed
        // (the errno says so, not the message): not the user's doing, and
        // a retry will read it. Ignoring the file would file or keep mail
        // against the user's rules.
        Err(Unused {
            why,
            cause: Cause::Io(errno),
        }) if Cause::Io(errno).is_transient() => Err(Failure::new(
            Kind::System { errno: Some(errno) },
            format!("user rules: {why}"),
        )),
        Err(u) => Ok((None, Some(u.why))),
    }
}

/// Runs `f` (which compiles a user's rules) within the user's memory
/// budget: many patterns, each within its own bound, must not add up to
/// more memory than a user may ask for (src/policy/budget.rs).
pub(crate) fn user_budget<T>(f: impl FnOnce() -> T) -> T {
    crate::policy::budget::arm(Some(crate::policy::budget::USER_LIMIT));
    let out = f();
    crate::policy::budget::arm(None);
    out
}

/// Compiles the rules the rules cache left for the message: those its
/// headers can trigger (src/policy/rules/cache.rs). If the cache fails here, the
/// file is loaded in full instead, as without a cache. Returns the system
/// layer's rules cache, which `restore_system` puts back after the
/// decision, so that the system layer serves the next message too; on a
/// failure the system layer is left as it was loaded.
pub fn complete_layers(
    system: &mut Layer,
    user: &mut UserRules,
    headers: &message::Headers,
    opts: &Options,
    who: &Recipient,
    log: &Logger,
) -> Result<Option<Deferred>, Failure> {
    let mut kept = None;
    if let Some(d) = system.deferred.take() {
        match d.complete(system, headers) {
            Ok(_) => kept = Some(d),
            Err(why) => {
                log.warn(&format!(
                    "rules cache of {}: {why}; loading the file",
                    system.describe()
                ));
                let cache = cache_dir(who.home.as_deref());
                match load_system(opts.rules.as_deref(), cache, false) {
                    Ok(full) => *system = full,
                    Err(f) => {
                        // The layer stays as loaded, for the next message.
                        restore_system(system, Some(d));
                        return Err(f);
                    }
                }
            }
        }
    }
    if let Err(f) = complete_user(system, user, headers, who, log) {
        restore_system(system, kept);
        return Err(f);
    }
    Ok(kept)
}

/// The user's part of `complete_layers`.
fn complete_user(
    system: &Layer,
    user: &mut UserRules,
    headers: &message::Headers,
    who: &Recipient,
    log: &Logger,
) -> Result<(), Failure> {
    if let Some(layer) = &mut user.layer {
        if let Some(d) = layer.deferred.take() {
            match user_budget(|| d.complete(layer, headers)) {
                Ok(_) => user.cached = Some(d),
                Err(why) => {
                    log.warn(&format!(
                        "rules cache of {}: {why}; loading the file",
                        layer.describe()
                    ));
                    let path = user.path.clone().unwrap_or_default();
                    let opts = user_cache_opts(system, who);
                    (user.layer, user.ignored) = load_user(&path, who.uid, &opts, false)?;
                }
            }
        }
    }
    Ok(())
}

/// Puts the system layer's rules cache back, with the rules compiled for
/// one message removed (see `complete_layers`).
pub fn restore_system(system: &mut Layer, cached: Option<Deferred>) {
    if let Some(d) = cached {
        system.rules.clear();
        system.header_groups.clear();
        system.deferred = Some(d);
    }
}

/// Puts the user layer's rules cache back, so that `complete_layers` can
/// compile the rules for another header block (a filter's output).
pub fn restore_user(user: &mut UserRules) {
    if let (Some(d), Some(layer)) = (user.cached.take(), user.layer.as_mut()) {
        layer.rules.clear();
        layer.header_groups.clear();
        layer.deferred = Some(d);
    }
}

pub fn format_diags(diags: &[Diag]) -> String {
    diags
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The Maildir: `--maildir` or `~/Maildir`.
pub fn maildir_path(opts: &Options, who: &Recipient) -> Result<PathBuf, Failure> {
    if let Some(m) = &opts.maildir {
        return Ok(m.clone());
    }
    match &who.home {
        Some(h) => Ok(h.join("Maildir")),
        None => Err(Failure::config(format!(
            "no home directory known for {}",
            who.name
        ))),
    }
}

/// The running user's home, found as a delivery finds it (for `check`):
/// see `privs::own_home`.
pub fn own_home() -> Option<PathBuf> {
    privs::own_home(&privs::EnvIdentity::current())
}

/// The uid whose files we own now (for `check`'s owner test).
pub fn uid() -> u32 {
    privs::current_uid()
}
