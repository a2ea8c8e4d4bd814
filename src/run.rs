//! The delivery shell: load the rules, read the message, spool it into the
//! Maildir's tmp/, decide, then file, discard, reject or defer. All I/O of a
//! delivery happens here; the decision itself is `crate::decide::decide`.

use crate::decide::{decide, Action, Decision, Input};
use crate::envelope::{Envelope, Flags};
use crate::exit::{Cause, Failure};
use crate::inflight::{self, Flight};
use crate::log::{Line, Logger};
use crate::maildir::{self, Maildir};
use crate::maps::OpenOptions;
use crate::message::{self, Head, Limits};
use crate::privs::{self, Recipient};
use crate::rules::cache::{self, LoadError};
use crate::rules::{self, Diag, Layer, Origin};
use crate::safe_open;
use crate::testhook;
use std::fs::{File, Metadata};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub envelope: Flags,
    pub user: Option<String>,
    pub maildir: Option<PathBuf>,
    pub rules: Option<PathBuf>,
    pub user_rules: Option<PathBuf>,
    pub log_stderr: bool,
}

/// The loaded layers, and what happened to the user's file.
pub struct Layers {
    pub system: Layer,
    pub user: Option<Layer>,
    /// Why the user's file was not used, when it exists but was ignored.
    pub user_ignored: Option<String>,
    pub user_path: Option<PathBuf>,
}

fn read_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

/// The cache directory for compiled map indexes: `~/.cache/deliver`.
fn cache_dir(home: Option<&Path>) -> Option<PathBuf> {
    home.map(|h| h.join(".cache").join("deliver"))
}

/// The system cache directory: the system file's `system_cache_dir`, else
/// `/var/cache/deliver`.
fn system_cache_dir(system: &Layer) -> PathBuf {
    system
        .settings
        .system_cache_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::maps::index::SYSTEM_CACHE_DIR))
}

/// Loads the system layer. A missing default file means the embedded
/// default; any other problem is a temporary failure (75) naming the file,
/// line and column, so mail waits until the admin fixes it. With `defer`,
/// the rules may stay in the rules cache until the message is read
/// (`Layers::complete`).
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
        Err(e) => return Err(Failure::temp("4.3.5", format!("system rules {e}"))),
    };
    // Before the system file is read, its system_cache_dir is not known:
    // the system file's own cache is always in the default place.
    let opts = OpenOptions {
        cache_dir: cache,
        system_cache_dir: Some(PathBuf::from(crate::maps::index::SYSTEM_CACHE_DIR)),
    };
    cache::load(file, &meta, &path, Origin::System, &opts, defer).map_err(|e| match e {
        LoadError::Read(e) => Failure::temp("4.3.5", format!("system rules {e}")),
        LoadError::Diags(diags) => {
            let more = if diags.len() > 1 {
                format!(" (and {} more)", diags.len() - 1)
            } else {
                String::new()
            };
            Failure::temp("4.3.5", format!("system rules: {}{more}", diags[0]))
        }
    })
}

/// Why a user's rules file is not used, and what that came from.
struct Unused {
    why: String,
    cause: Cause,
}

impl From<safe_open::Error> for Unused {
    fn from(e: safe_open::Error) -> Unused {
        Unused {
            why: e.to_string(),
            cause: e.cause(),
        }
    }
}

impl Unused {
    fn input(why: String) -> Unused {
        Unused {
            why,
            cause: Cause::Input,
        }
    }
}

/// Opens a user's rules file (without blocking, a regular file only:
/// `crate::safe_open`) and checks that it belongs to the user and is not
/// writable by group or others.
fn open_user_file(path: &Path, uid: u32) -> Result<Option<(File, Metadata)>, Unused> {
    let (f, md) = match safe_open::open(path) {
        Ok(fm) => fm,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if md.uid() != uid {
        return Err(Unused::input(format!(
            "{}: owned by uid {}, not by the recipient (uid {uid})",
            path.display(),
            md.uid()
        )));
    }
    if md.mode() & 0o022 != 0 {
        return Err(Unused::input(format!(
            "{}: writable by group or others (mode {:o})",
            path.display(),
            md.mode() & 0o7777
        )));
    }
    Ok(Some((f, md)))
}

/// Checks a user's rules file as `open_user_file` does. Returns its text,
/// read within the bounds of `crate::safe_open`.
pub fn read_user_file(path: &Path, uid: u32) -> Result<Option<String>, String> {
    let Some((mut f, md)) = open_user_file(path, uid).map_err(|u| u.why)? else {
        return Ok(None);
    };
    let text = safe_open::read_text(&mut f, &md, path, safe_open::MAX_USER_RULES)
        .map_err(|e| e.to_string())?;
    Ok(Some(text))
}

/// The user's rules file: `--user-rules` or `~/.config/deliver/rules.toml`.
pub fn user_rules_path(opt: Option<&Path>, home: Option<&Path>) -> Option<PathBuf> {
    opt.map(Path::to_path_buf)
        .or_else(|| home.map(|h| h.join(".config").join("deliver").join("rules.toml")))
}

/// Loads both layers. The user's file is ignored (and the reason kept) when
/// it has a bad owner or mode or does not load: a user never loses mail to
/// their own typo. With `defer`, rules may stay in the rules cache until
/// the message is read (`Layers::complete`).
pub fn load_layers(opts: &Options, who: &Recipient, defer: bool) -> Result<Layers, Failure> {
    let cache = cache_dir(who.home.as_deref());
    let system = load_system(opts.rules.as_deref(), cache.clone(), defer)?;
    let user_path = user_rules_path(opts.user_rules.as_deref(), who.home.as_deref());
    let mut layers = Layers {
        system,
        user: None,
        user_ignored: None,
        user_path: user_path.clone(),
    };
    if let Some(path) = user_path {
        let opts = user_cache_opts(&layers.system, who);
        let (user, ignored) = load_user(&path, who.uid, &opts, defer)?;
        layers.user = user;
        layers.user_ignored = ignored;
    }
    Ok(layers)
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
        Err(u) => Err(u),
    };
    match loaded {
        Ok(l) => Ok((l, None)),
        // The user's file (or a table it names) could not be read because
        // the system is short of descriptors or memory, or the disk failed
        // (the errno says so, not the message): not the user's doing, and
        // a retry will read it. Ignoring the file would file or keep mail
        // against the user's rules.
        Err(u) if u.cause.is_transient() => {
            Err(Failure::temp("4.3.0", format!("user rules: {}", u.why)))
        }
        Err(u) => Ok((None, Some(u.why))),
    }
}

/// Runs `f` (which compiles a user's rules) within the user's memory
/// budget: many patterns, each within its own bound, must not add up to
/// more memory than a user may ask for (src/budget.rs).
pub(crate) fn user_budget<T>(f: impl FnOnce() -> T) -> T {
    crate::budget::arm(Some(crate::budget::USER_LIMIT));
    let out = f();
    crate::budget::arm(None);
    out
}

impl Layers {
    /// Compiles the rules the rules cache left for the message: those its
    /// headers can trigger (src/rules/cache.rs). If the cache fails here,
    /// the file is loaded in full instead, as without a cache.
    pub fn complete(
        &mut self,
        headers: &message::Headers,
        opts: &Options,
        who: &Recipient,
        log: &Logger,
    ) -> Result<(), Failure> {
        if let Some(d) = self.system.deferred.take() {
            if let Err(why) = d.complete(&mut self.system, headers) {
                log.warn(&format!(
                    "rules cache of {}: {why}; loading the file",
                    self.system.describe()
                ));
                let cache = cache_dir(who.home.as_deref());
                self.system = load_system(opts.rules.as_deref(), cache, false)?;
            }
        }
        if let Some(user) = &mut self.user {
            if let Some(d) = user.deferred.take() {
                if let Err(why) = user_budget(|| d.complete(user, headers)) {
                    log.warn(&format!(
                        "rules cache of {}: {why}; loading the file",
                        user.describe()
                    ));
                    let path = self.user_path.clone().unwrap_or_default();
                    let opts = user_cache_opts(&self.system, who);
                    let (user, ignored) = load_user(&path, who.uid, &opts, false)?;
                    self.user = user;
                    self.user_ignored = ignored;
                }
            }
        }
        Ok(())
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
        None => Err(Failure::temp(
            "4.3.5",
            format!("no home directory known for {}", who.name),
        )),
    }
}

/// A message read and spooled, ready for the decision.
pub struct Spooled {
    pub head: Head,
    pub window: Vec<u8>,
    pub size: u64,
}

/// Reads stdin, writing it to `sink` (a tmp file, or nothing for --test).
pub fn read_message<W: Write>(
    input: impl Read,
    limits: &Limits,
    sink: &mut W,
) -> Result<Spooled, Failure> {
    let mut r = BufReader::with_capacity(64 * 1024, input);
    let head = message::read_head(&mut r, limits)
        .map_err(|e| Failure::from_io("reading the message", &e))?;
    let mut window = Vec::new();
    let size = message::spool(&mut r, &head, sink, &mut window, limits.body_window)
        .map_err(|e| Failure::from_io("spooling the message", &e))?;
    Ok(Spooled { head, window, size })
}

/// Runs the decision over a spooled message.
pub fn decide_for(sp: &Spooled, envelope: &Envelope, layers: &Layers) -> Decision {
    let input = Input {
        envelope,
        headers: &sp.head.headers,
        header_block: &sp.head.bytes[..sp.head.header_len],
        body_window: &sp.window,
        size: sp.size,
        limit_hit: sp.head.limit_hit,
    };
    decide(&input, &layers.system, layers.user.as_ref())
}

/// Line ending used by the message's header block.
fn eol(head: &Head) -> &'static str {
    let block = &head.bytes[..head.header_len];
    match block.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && block[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

/// Creates a tmp/ file for the delivery `flight`, which removes it if the
/// delivery ends without returning (time limit, out of memory).
fn create_tmp(md: &Maildir, flight: &Flight) -> Result<maildir::TmpFile, Failure> {
    flight.creating(|| {
        let tmp = md.create_tmp()?;
        flight.track(md.tmp_dir(), &tmp.name);
        Ok(tmp)
    })
}

/// Removes a tmp/ file of the delivery `flight` (`Maildir::discard`).
fn discard(md: &Maildir, flight: &Flight, tmp: maildir::TmpFile) {
    // Untracked once removed: an expiry in between removes it itself.
    let name = tmp.name.clone();
    md.discard(tmp);
    flight.untrack(&name);
}

/// Rewrites the spooled tmp file with header lines in front of it.
fn prepend_headers(
    md: &Maildir,
    flight: &Flight,
    tmp: maildir::TmpFile,
    lines: &[String],
    eol: &str,
) -> Result<(maildir::TmpFile, u64), Failure> {
    let (mut src, mut out) = match md
        .reopen_tmp(&tmp)
        .and_then(|s| Ok((s, create_tmp(md, flight)?)))
    {
        Ok(pair) => pair,
        Err(f) => {
            discard(md, flight, tmp);
            return Err(f);
        }
    };
    let mut size = 0u64;
    let mut res = (|| -> io::Result<()> {
        for l in lines {
            let line = format!("{l}{eol}");
            out.file.write_all(line.as_bytes())?;
            size += line.len() as u64;
        }
        size += io::copy(&mut src, &mut out.file)?;
        out.file.sync_all()
    })();
    discard(md, flight, tmp);
    if let Err(e) = res.as_mut() {
        let f = Failure::from_io("adding headers", e);
        discard(md, flight, out);
        return Err(f);
    }
    Ok((out, size))
}

/// The one log line for a delivery: the keys in the fixed order that
/// deliver(1) documents (LOGGING), each value escaped by `Line`.
/// `size` is what was written (with any PREPENDed headers), or the size
/// read when nothing was written.
fn log_line(
    env: &Envelope,
    sp: &Spooled,
    size: u64,
    d: &Decision,
    folder: Option<&str>,
    start: Instant,
) -> String {
    let msgid = sp.head.headers.first("Message-ID").unwrap_or_default();
    let mut l = Line::new()
        .kv("from", format!("<{}>", env.sender.value))
        .kv("to", format!("<{}>", env.recipient.value))
        .kv(
            "msgid",
            if msgid.is_empty() {
                "<>".to_string()
            } else {
                msgid
            },
        )
        .kv("size", size)
        .kv("action", d.action.as_str());
    if let Some(f) = folder {
        l = l.kv("folder", f);
    }
    l = l
        .kv("score", format!("{:.2}", d.score))
        .kv("rule", &d.reason);
    if let Some(limit) = sp.head.limit_hit {
        l = l.kv("header_limit", limit.setting());
    }
    if let Some(s) = d.status_line() {
        l = l.kv("status", s);
    }
    l.kv("delay", format!("{:.3}", start.elapsed().as_secs_f64()))
        .finish()
}

/// Real delivery. Returns Ok for 0; every failure is a `Failure`.
/// The time limit runs from here, with the default until the system rules
/// set theirs (reading them, or stdin, can hang too); see `crate::inflight`.
pub fn deliver(opts: &Options, input: impl Read, log: &Logger) -> Result<(), Failure> {
    let start = Instant::now();
    // First: dropped last, after everything that uses the tmp/ file.
    let flight = inflight::begin(rules::DEFAULT_TIME_LIMIT);
    let who = privs::become_recipient(opts.user.as_deref(), &privs::EnvIdentity::current(), false)?;
    let mut layers = load_layers(opts, &who, true)?;
    if layers.system.settings.time_limit != rules::DEFAULT_TIME_LIMIT {
        flight.set_limit(layers.system.settings.time_limit);
    }
    let limits = layers.system.settings.limits;
    let md_path = maildir_path(opts, &who)?;
    let md = Maildir::open(&md_path)?;
    testhook::pause("maildir-open");
    let mut tmp = create_tmp(&md, &flight)?;
    testhook::pause("tmp-created");
    let spooled = read_message(input, &limits, &mut testhook::Partial::new(&mut tmp.file));
    let sp = match spooled {
        Ok(sp) => sp,
        Err(f) => {
            discard(&md, &flight, tmp);
            return Err(f);
        }
    };
    testhook::pause("tmp-written");
    if let Err(f) = layers.complete(&sp.head.headers, opts, &who, log) {
        discard(&md, &flight, tmp);
        return Err(f);
    }
    if let Some(why) = &layers.user_ignored {
        log.warn(&format!("ignoring user rules: {why}"));
    }
    let env = Envelope::resolve(
        &opts.envelope,
        &read_env,
        sp.head.envelope_from_line(),
        &sp.head.headers,
    );
    let d = decide_for(&sp, &env, &layers);
    for l in &d.log {
        log.info(l);
    }
    let result = match d.action {
        Action::Inbox | Action::Junk | Action::Folder => {
            // fsync only what will be linked into new/: not a message that
            // is discarded, rejected or deferred, nor the copy PREPEND replaces.
            let (tmp, size) = if d.add_headers.is_empty() {
                if let Err(e) = tmp.file.sync_all() {
                    discard(&md, &flight, tmp);
                    let what = format!("fsync {}", md_path.join("tmp").display());
                    return Err(Failure::from_io(what, &e));
                }
                testhook::pause("tmp-synced");
                (tmp, sp.size)
            } else {
                let p = prepend_headers(&md, &flight, tmp, &d.add_headers, eol(&sp.head))?;
                testhook::pause("prepended");
                p
            };
            // The commit removes the tmp/ name whatever its outcome; once
            // it succeeds nothing makes the delivery a 75 (`inflight`).
            let name = tmp.name.clone();
            let committed = flight.committing(|| md.commit(tmp, d.folder.as_ref(), size));
            flight.untrack(&name);
            let delivered = committed?;
            testhook::pause("delivered");
            if let Some(why) = &delivered.fallback {
                log.warn(&format!(
                    "folder {} unusable, delivered to the Inbox: {why}",
                    d.folder.as_ref().map_or("", |f| f.name.as_str())
                ));
            }
            if let Some(note) = &delivered.note {
                log.warn(note);
            }
            let folder = delivered.folder.as_ref().map(|f| f.name.as_str());
            log.info(&log_line(
                &env,
                &sp,
                size,
                &d,
                Some(folder.unwrap_or("INBOX")),
                start,
            ));
            Ok(())
        }
        Action::Discard => {
            discard(&md, &flight, tmp);
            log.info(&log_line(&env, &sp, sp.size, &d, None, start));
            Ok(())
        }
        Action::Reject | Action::Defer => {
            discard(&md, &flight, tmp);
            log.info(&log_line(&env, &sp, sp.size, &d, None, start));
            let status = d.status.clone().unwrap_or_default();
            let text = d.text.clone().unwrap_or_default();
            Err(if d.action == Action::Reject {
                Failure::Perm { status, text }
            } else {
                Failure::Temp { status, text }
            })
        }
    };
    md.clean_tmp(std::time::SystemTime::now());
    result
}

/// Everything `--test` computed.
pub struct DryRun {
    pub who: Recipient,
    pub layers: Layers,
    pub envelope: Envelope,
    pub spooled: Spooled,
    pub decision: Decision,
    pub maildir: Option<PathBuf>,
}

/// The dry run: the same loading and decision as delivery, writing nothing.
/// As root without -d it evaluates as root (nothing is written anyway).
pub fn dry_run(opts: &Options, input: impl Read) -> Result<DryRun, Failure> {
    let who = privs::become_recipient(opts.user.as_deref(), &privs::EnvIdentity::current(), true)?;
    // The whole files, so that --test can show every rule.
    let layers = load_layers(opts, &who, false)?;
    let limits = layers.system.settings.limits;
    let spooled = read_message(input, &limits, &mut io::sink())?;
    let envelope = Envelope::resolve(
        &opts.envelope,
        &read_env,
        spooled.head.envelope_from_line(),
        &spooled.head.headers,
    );
    let decision = decide_for(&spooled, &envelope, &layers);
    let maildir = maildir_path(opts, &who).ok();
    Ok(DryRun {
        who,
        layers,
        envelope,
        spooled,
        decision,
        maildir,
    })
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
