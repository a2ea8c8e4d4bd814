//! `deliver replay`: the rules run over stored mail, to see what they would
//! do, writing nothing.
//!
//! The engine is loaded once (the system file, and the recipient's file,
//! both in full as `--test` loads them), then each message is read and
//! decided by `Engine::dry_decide`, the dry run of `--test`: the same
//! reading and the same `decide()` as a delivery, with the message read
//! into no file. Nothing is written: no Maildir, no tmp/ file, no log
//! line. The only files a replay may write are the ones `--test` may: the
//! index of a large table and the rules cache of a file with many rules,
//! in the running user's cache directory (`crate::policy::maps::index`,
//! `crate::policy::rules::cache`), which a delivery would write anyway.
//! Files are opened with `O_NOATIME` where the kernel allows it, so that
//! a mail reader that compares an mbox's access and modification times
//! still sees its new mail as new.
//!
//! A plan's side effects (a filter, a pipe, a forward, a vacation reply)
//! are described, never run (nothing is sent): the
//! dry run's decision is the plan, and the replay prints where it files.
//!
//! Sources (each PATH; without one, the recipient's Maildir with its
//! subfolders):
//! - a Maildir folder (a directory with `cur/` or `new/`): the messages of
//!   both, in the order of their names (which start with the time of
//!   delivery); with `recursive`, also each Maildir++ subfolder (`.NAME`
//!   with `cur/` or `new/`) of it, one level, as Dovecot and Courier lay
//!   them out;
//! - a file that starts with `From `: an mbox (`Mbox`);
//! - any other file: one message.
//!
//! Each message gives one line (or one JSON object): where it would go and
//! why, and with `compare` the folder it is in now. A message that cannot
//! be read is reported, counted and skipped; exit status 1 says some were.

use crate::engine::load;
use crate::engine::privs::{self, EnvIdentity};
use crate::engine::Engine;
use crate::input::envelope::Flags;
use crate::output::exit::Failure;
use crate::output::log::Logger;
use crate::output::text::for_status;
use crate::policy::decide::Decision;
use crate::policy::plan::{Action, Disposition};
use crate::store::maildir::FolderName;
use serde::Serialize;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Every message was read and decided.
pub const EXIT_OK: u8 = 0;
/// Some messages (or paths) could not be read; the others were replayed.
pub const EXIT_UNREADABLE: u8 = 1;
/// Nothing was replayed: the command line, the rules or the recipient.
pub const EXIT_TROUBLE: u8 = 2;

/// What `deliver replay` was asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The rules files, `-d` and `--maildir`, as for a delivery.
    pub load: load::Options,
    /// What to replay; none is the Maildir (`--maildir` or `~/Maildir`)
    /// with its subfolders.
    pub paths: Vec<PathBuf>,
    /// Also show the folder each message is in now, and the moves.
    pub compare: bool,
    /// Also the Maildir++ subfolders of each Maildir given.
    pub recursive: bool,
    pub json: bool,
}

/// One message's result, as printed.
#[derive(Debug, Serialize)]
struct Entry {
    /// The file, or `FILE#N` for the Nth message of an mbox.
    source: String,
    file: String,
    /// The message's number in its mbox (from 1).
    mbox_index: Option<usize>,
    /// With `compare`: the folder the message is in now, when it comes
    /// from a Maildir folder (`INBOX` for the Inbox); `None` otherwise.
    folder_now: Option<String>,
    /// Where it would go: `INBOX`, a folder, `discard`, `reject STATUS`,
    /// `defer STATUS`.
    destination: Option<String>,
    /// The decision's route (`inbox`, `junk`, `folder`, ...).
    action: Option<&'static str>,
    /// The folders it would be filed into (`INBOX` for the Inbox).
    folders: Vec<String>,
    status: Option<String>,
    reason: Option<String>,
    score: Option<f64>,
    /// With `compare`: whether it would leave the folder it is in now;
    /// `None` when that folder is unknown.
    moves: Option<bool>,
    /// Why the message could not be read.
    error: Option<String>,
}

/// Where a message was read from.
struct Origin {
    file: PathBuf,
    mbox_index: Option<usize>,
    /// The Maildir folder it is in: (directory name inside the Maildir,
    /// `""` for the Inbox; the name shown).
    folder: Option<(String, String)>,
}

/// The counts for the summary.
#[derive(Default)]
struct Tally {
    messages: usize,
    unreadable: usize,
    /// Destination -> messages, in order of first appearance.
    destinations: Vec<(String, usize)>,
    dest_index: HashMap<String, usize>,
    /// (from, to) -> messages, for the moves.
    moves: Vec<((String, String), usize)>,
    move_index: HashMap<(String, String), usize>,
    /// Messages whose current folder is not known (files, mboxes).
    unknown_now: usize,
}

fn bump<K: Clone + Eq + std::hash::Hash>(
    list: &mut Vec<(K, usize)>,
    index: &mut HashMap<K, usize>,
    key: K,
) {
    match index.get(&key) {
        Some(&i) => list[i].1 += 1,
        None => {
            index.insert(key.clone(), list.len());
            list.push((key, 1));
        }
    }
}

/// Counts first, then names.
fn sorted<K: Clone + Ord>(list: &[(K, usize)]) -> Vec<(K, usize)> {
    let mut v = list.to_vec();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// The name a folder is shown by: `INBOX`, or the folder's name.
fn folder_label(f: Option<&FolderName>) -> String {
    f.map_or_else(|| "INBOX".to_string(), |f| f.name.clone())
}

/// The destination of a decision, and the folders it files into as
/// (directory, name) pairs.
fn destination(d: &Decision) -> (String, Vec<(String, String)>) {
    let mut folders = Vec::new();
    let mut labels = Vec::new();
    for a in &d.plan.actions {
        // Every action of a plan is listed here: a new kind of action (a
        // forward, a reply) must say what it shows; a replay never runs one.
        match a {
            Action::Deliver(del) => {
                let label = folder_label(del.folder.as_ref());
                labels.push(label.clone());
                folders.push((
                    del.folder.as_ref().map_or(String::new(), |f| f.dir.clone()),
                    label,
                ));
            }
            Action::Pipe(p) => labels.push(format!("| {}", p.argv.join(" "))),
            Action::Forward(f) => labels.push(format!("> {}", f.to.join(" "))),
            Action::Reply(r) => labels.push(format!("reply to {}", r.to)),
        }
    }
    let dest = match &d.plan.disposition {
        Disposition::Delivered => labels.join(", "),
        Disposition::Discarded => "discard".to_string(),
        Disposition::Rejected { status, .. } => format!("reject {status}"),
        Disposition::Deferred { status, .. } => format!("defer {status}"),
    };
    (dest, folders)
}

/// The output: text lines or one JSON document, written as the messages
/// are replayed.
struct Printer<W: Write> {
    out: W,
    json: bool,
    compare: bool,
    first: bool,
}

impl<W: Write> Printer<W> {
    fn start(&mut self) -> io::Result<()> {
        if self.json {
            self.out.write_all(b"{\"messages\": [")?;
        }
        Ok(())
    }

    fn entry(&mut self, e: &Entry) -> io::Result<()> {
        if self.json {
            let sep = if std::mem::replace(&mut self.first, false) {
                "\n"
            } else {
                ",\n"
            };
            self.out.write_all(sep.as_bytes())?;
            serde_json::to_writer(&mut self.out, e)?;
            return Ok(());
        }
        let source = for_status(&e.source);
        if let Some(err) = &e.error {
            return writeln!(self.out, "{source}: unreadable: {}", for_status(err));
        }
        let dest = for_status(e.destination.as_deref().unwrap_or(""));
        let reason = for_status(e.reason.as_deref().unwrap_or(""));
        if !self.compare {
            return writeln!(self.out, "{source}: {dest}: {reason}");
        }
        let now = e.folder_now.as_deref().map_or("-".into(), for_status);
        let mark = if e.moves == Some(true) {
            " (moves)"
        } else {
            ""
        };
        writeln!(self.out, "{source}: {now} -> {dest}{mark}: {reason}")
    }

    fn summary(&mut self, t: &Tally, rules: &RulesUsed) -> io::Result<()> {
        let dests = sorted(&t.destinations);
        let moves = sorted(&t.moves);
        if self.json {
            let v = serde_json::json!({
                "messages": t.messages,
                "replayed": t.messages - t.unreadable,
                "unreadable": t.unreadable,
                "destinations": dests.iter().map(|(d, n)| serde_json::json!({
                    "destination": d, "messages": n,
                })).collect::<Vec<_>>(),
                "moves": self.compare.then(|| moves.iter().map(|((f, to), n)| serde_json::json!({
                    "from": f, "to": to, "messages": n,
                })).collect::<Vec<_>>()),
                "unknown_folder": self.compare.then_some(t.unknown_now),
                "rules": rules,
            });
            let sep = if self.first { "" } else { "\n" };
            write!(self.out, "{sep}],\n\"summary\": ")?;
            serde_json::to_writer_pretty(&mut self.out, &v)?;
            return writeln!(self.out, "}}");
        }
        writeln!(self.out)?;
        writeln!(
            self.out,
            "{} messages: {} replayed, {} unreadable",
            t.messages,
            t.messages - t.unreadable,
            t.unreadable
        )?;
        let mut rows: Vec<(String, usize)> =
            dests.iter().map(|(d, n)| (for_status(d), *n)).collect();
        if t.unreadable > 0 {
            rows.push(("(unreadable)".into(), t.unreadable));
        }
        table(&mut self.out, "destination", &rows)?;
        if self.compare {
            let moved: usize = moves.iter().map(|(_, n)| n).sum();
            writeln!(self.out)?;
            writeln!(self.out, "{moved} would move")?;
            let rows: Vec<(String, usize)> = moves
                .iter()
                .map(|((f, to), n)| (format!("{} -> {}", for_status(f), for_status(to)), *n))
                .collect();
            if !rows.is_empty() {
                table(&mut self.out, "from -> to", &rows)?;
            }
            if t.unknown_now > 0 {
                writeln!(
                    self.out,
                    "{} not from a Maildir folder: where they are now is not known",
                    t.unknown_now
                )?;
            }
        }
        writeln!(self.out)?;
        writeln!(self.out, "rules: system {}", for_status(&rules.system))?;
        match (&rules.user, &rules.user_ignored) {
            (Some(u), _) => writeln!(self.out, "       user {}", for_status(u)),
            (None, Some(why)) => writeln!(self.out, "       user IGNORED: {}", for_status(why)),
            (None, None) => writeln!(self.out, "       user none"),
        }
    }
}

/// A two-column table: a name and a count, right-aligned.
fn table(out: &mut impl Write, head: &str, rows: &[(String, usize)]) -> io::Result<()> {
    let w = rows
        .iter()
        .map(|(d, _)| d.chars().count())
        .chain(std::iter::once(head.len()))
        .max()
        .unwrap_or(0);
    let nw = rows
        .iter()
        .map(|(_, n)| n.to_string().len())
        .chain(std::iter::once("messages".len()))
        .max()
        .unwrap_or(0);
    writeln!(out, "  {head:<w$}  {:>nw$}", "messages")?;
    for (d, n) in rows {
        let pad = w - d.chars().count();
        writeln!(out, "  {d}{:pad$}  {n:>nw$}", "")?;
    }
    Ok(())
}

/// The rules a replay ran, for the summary.
#[derive(Serialize)]
struct RulesUsed {
    system: String,
    user: Option<String>,
    user_ignored: Option<String>,
}

/// The replay: loads the rules once, then decides every message of every
/// path, printing as it goes. Returns the exit status (`EXIT_*`).
pub fn run(opts: Options, out: impl Write, err: &mut impl Write) -> u8 {
    let trouble = |err: &mut dyn Write, f: &Failure| {
        let _ = writeln!(err, "deliver replay: {}", f.status_line());
        EXIT_TROUBLE
    };
    // As root without -d it evaluates as root, as --test does (nothing is
    // written); with -d as that user, reading as that user.
    let who =
        match privs::become_recipient(opts.load.user.as_deref(), &EnvIdentity::current(), true) {
            Ok(w) => w,
            Err(f) => return trouble(err, &f),
        };
    let flags: Flags = opts.load.envelope.clone();
    let engine = match Engine::load(opts.load.clone(), &who, Logger::silent(), false) {
        Ok(e) => e,
        Err((f, _)) => return trouble(err, &f),
    };
    let user = match engine.dry_user_rules(&who) {
        Ok(u) => u,
        Err(f) => return trouble(err, &f),
    };
    if let Some(why) = &user.ignored {
        let _ = writeln!(
            err,
            "deliver replay: user rules IGNORED, as a delivery would: {}",
            for_status(why)
        );
    }
    let rules = RulesUsed {
        system: engine.system().describe(),
        user: user.layer.as_ref().map(|l| l.describe()),
        user_ignored: user.ignored.clone(),
    };
    // The envelope of each message is its own (From_ line or Return-Path,
    // Delivered-To), never the environment's.
    let no_env = |_: &str| None;
    let mut p = Printer {
        out: io::BufWriter::new(out),
        json: opts.json,
        compare: opts.compare,
        first: true,
    };
    // Without a path, the recipient's Maildir, every folder of it.
    let (paths, recursive) = if opts.paths.is_empty() {
        match load::maildir_path(&opts.load, &who) {
            Ok(md) => (vec![md], true),
            Err(f) => return trouble(err, &f),
        }
    } else {
        (opts.paths.clone(), opts.recursive)
    };
    let mut tally = Tally::default();
    let res = (|| -> io::Result<()> {
        p.start()?;
        for path in &paths {
            for_each_message(path, recursive, &mut |origin, read| {
                let decided = read.and_then(|r| {
                    engine
                        .dry_decide(r, &flags, &no_env, &user, &who, false)
                        .map_err(|f| f.to_string())
                });
                let e = entry(
                    origin,
                    decided.map(|d| d.decision),
                    opts.compare,
                    &mut tally,
                );
                p.entry(&e)
            })?;
        }
        p.summary(&tally, &rules)?;
        p.out.flush()
    })();
    match res {
        Ok(()) if tally.unreadable > 0 => EXIT_UNREADABLE,
        Ok(()) => EXIT_OK,
        // A reader that went away (`| head`) ends the replay quietly.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => EXIT_TROUBLE,
        Err(e) => {
            let _ = writeln!(err, "deliver replay: writing the output: {e}");
            EXIT_TROUBLE
        }
    }
}

/// One message's entry, counted into `t`.
fn entry(o: Origin, decided: Result<Decision, String>, compare: bool, t: &mut Tally) -> Entry {
    let file = o.file.to_string_lossy().into_owned();
    let source = match o.mbox_index {
        Some(n) => format!("{file}#{n}"),
        None => file.clone(),
    };
    let mut e = Entry {
        source,
        file,
        mbox_index: o.mbox_index,
        folder_now: None,
        destination: None,
        action: None,
        folders: Vec::new(),
        status: None,
        reason: None,
        score: None,
        moves: None,
        error: None,
    };
    if compare {
        e.folder_now = o.folder.as_ref().map(|(_, name)| name.clone());
    }
    t.messages += 1;
    let d = match decided {
        Ok(d) => d,
        Err(why) => {
            t.unreadable += 1;
            e.error = Some(why);
            return e;
        }
    };
    let (dest, folders) = destination(&d);
    bump(&mut t.destinations, &mut t.dest_index, dest.clone());
    if compare {
        match &o.folder {
            Some((dir, name)) => {
                // A plan that files into the folder it is in (a copy
                // elsewhere or not) leaves it there.
                let stays = matches!(d.plan.disposition, Disposition::Delivered)
                    && folders.iter().any(|(fdir, _)| fdir == dir);
                e.moves = Some(!stays);
                if !stays {
                    bump(
                        &mut t.moves,
                        &mut t.move_index,
                        (name.clone(), dest.clone()),
                    );
                }
            }
            None => t.unknown_now += 1,
        }
    }
    e.destination = Some(dest);
    e.action = Some(d.action.as_str());
    e.folders = folders.into_iter().map(|(_, n)| n).collect();
    e.status = d.status;
    e.reason = Some(d.reason);
    e.score = Some(d.score);
    e
}

type Each<'a> = dyn FnMut(Origin, Result<&mut dyn Read, String>) -> io::Result<()> + 'a;

/// Calls `each` for every message under `path` (a Maildir folder, an mbox,
/// or a message file), with a reader of the message or why it cannot be
/// read. Only `each`'s own errors (the output's) are returned.
fn for_each_message(path: &Path, recursive: bool, each: &mut Each<'_>) -> io::Result<()> {
    let plain = |file: &Path| Origin {
        file: file.to_path_buf(),
        mbox_index: None,
        folder: None,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return each(plain(path), Err(format!("{e}"))),
    };
    if meta.is_dir() {
        if !is_maildir(path) {
            return each(
                plain(path),
                Err("a directory, but not a Maildir folder (no cur/ or new/)".into()),
            );
        }
        maildir_folder(path, folder_of(path), each)?;
        if recursive {
            for (sub, dir) in subfolders(path) {
                let name = folder_name(&dir);
                maildir_folder(&sub, (dir, name), each)?;
            }
        }
        return Ok(());
    }
    let file = match open(path) {
        Ok(f) => f,
        Err(e) => return each(plain(path), Err(e)),
    };
    let mut r = BufReader::with_capacity(64 * 1024, file);
    let is_mbox = match r.fill_buf() {
        Ok(b) => b.starts_with(b"From "),
        Err(e) => return each(plain(path), Err(format!("read: {e}"))),
    };
    if !is_mbox {
        return each(plain(path), Ok(&mut r));
    }
    let mut mbox = Mbox::new(r);
    let mut n = 0;
    while mbox.next_message() {
        n += 1;
        let o = Origin {
            file: path.to_path_buf(),
            mbox_index: Some(n),
            folder: None,
        };
        each(o, Ok(&mut mbox))?;
    }
    if let Some(e) = mbox.failed.take() {
        // The rest of the mbox cannot be read: an entry for the file says so.
        each(
            plain(path),
            Err(format!(
                "read error after message {n}: {e}; the rest of the mbox is not read"
            )),
        )?;
    }
    Ok(())
}

/// Opens a message file for reading: without blocking (a FIFO in a
/// Maildir must not hang the replay), without updating its access time
/// where the kernel allows, a regular file only.
fn open(path: &Path) -> Result<File, String> {
    use nix::libc::{O_NOATIME, O_NONBLOCK};
    let try_open = |flags| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(path)
    };
    // O_NOATIME is refused (EPERM) for a file the caller does not own.
    let f = match try_open(O_NONBLOCK | O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(nix::libc::EPERM) => try_open(O_NONBLOCK),
        r => r,
    }
    .map_err(|e| format!("open: {e}"))?;
    let m = f.metadata().map_err(|e| format!("fstat: {e}"))?;
    if !m.is_file() {
        return Err("not a regular file".into());
    }
    Ok(f)
}

fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() || dir.join("new").is_dir()
}

/// A Maildir folder's directory name inside its Maildir and shown name:
/// `.NAME` is the folder NAME, anything else the Inbox.
fn folder_of(path: &Path) -> (String, String) {
    let base = std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    match base {
        Some(b) if b.len() > 1 && b.starts_with('.') => {
            let name = folder_name(&b);
            (b, name)
        }
        _ => (String::new(), "INBOX".to_string()),
    }
}

/// The name of the folder stored in directory `dir` (`.Lists.rust` is
/// `Lists.rust`); a directory name deliver would not write is shown as it
/// is.
fn folder_name(dir: &str) -> String {
    let raw = &dir[1..];
    match FolderName::parse(raw) {
        Ok(Some(f)) if f.dir == dir => f.name,
        _ => raw.to_string(),
    }
}

/// The Maildir++ subfolders of a Maildir (`.NAME` directories, not through
/// a symlink, with `cur/` or `new/`), by name.
fn subfolders(root: &Path) -> Vec<(PathBuf, String)> {
    let Ok(rd) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut v: Vec<(PathBuf, String)> = rd
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            (name.len() > 1 && name.starts_with('.') && name != "..").then(|| (e.path(), name))
        })
        .filter(|(p, _)| is_maildir(p))
        .collect();
    v.sort_by(|a, b| a.1.cmp(&b.1));
    v
}

/// Every message of one Maildir folder: the files of `cur/` and `new/`
/// (not `tmp/`, nor names starting with `.`), in the order of their names.
fn maildir_folder(path: &Path, folder: (String, String), each: &mut Each<'_>) -> io::Result<()> {
    let mut files = Vec::new();
    for sub in ["cur", "new"] {
        let dir = path.join(sub);
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                let o = Origin {
                    file: dir,
                    mbox_index: None,
                    folder: Some(folder.clone()),
                };
                each(o, Err(format!("read directory: {e}")))?;
                continue;
            }
        };
        for e in rd {
            match e {
                Ok(e) if e.file_name().as_encoded_bytes().starts_with(b".") => {}
                Ok(e) => files.push((e.file_name(), e.path())),
                Err(e) => {
                    let o = Origin {
                        file: dir.clone(),
                        mbox_index: None,
                        folder: Some(folder.clone()),
                    };
                    each(o, Err(format!("read directory: {e}")))?;
                }
            }
        }
    }
    files.sort();
    for (_, file) in files {
        let o = Origin {
            file: file.clone(),
            mbox_index: None,
            folder: Some(folder.clone()),
        };
        match open(&file) {
            Ok(f) => each(o, Ok(&mut BufReader::with_capacity(64 * 1024, f)))?,
            Err(e) => each(o, Err(e))?,
        }
    }
    Ok(())
}

/// An mbox, read one message at a time, each as a stream (a message is
/// never held whole in memory, only its longest line).
///
/// As mboxrd and mboxo readers (Python's `mailbox.mbox`, mutt) do: a line
/// that starts with `From ` starts a message, and is kept as the message's
/// From_ line (the envelope sender, as local(8) gives it); the empty line
/// before it (or before the end of the file) belongs to the separator, not
/// to the message; a line `>From `, `>>From `, ... loses one `>` (mboxrd;
/// for mboxo, which escapes `From ` alone, that is the same except for a
/// line that was `>From ` before it was stored).
pub struct Mbox<R> {
    r: R,
    /// The From_ line that starts the next message, once read.
    next: Option<Vec<u8>>,
    /// The current message's bytes not yet read, from `pos`.
    buf: Vec<u8>,
    pos: usize,
    /// An empty line held back: part of the message unless a separator or
    /// the end of the file follows.
    blank: Option<Vec<u8>>,
    /// The current message has ended.
    ended: bool,
    /// A read error: the rest of the file is not read.
    pub failed: Option<io::Error>,
}

impl<R: BufRead> Mbox<R> {
    /// An mbox whose first line is a From_ line (lines before the first
    /// From_ line are skipped).
    pub fn new(r: R) -> Self {
        Mbox {
            r,
            next: None,
            buf: Vec::new(),
            pos: 0,
            blank: None,
            ended: true,
            failed: None,
        }
    }

    /// One line, with its line ending; empty at the end of the file.
    fn line(&mut self) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        self.r.read_until(b'\n', &mut line)?;
        Ok(line)
    }

    /// Moves to the next message (the rest of the current one is skipped).
    /// `false` at the end of the file, or after a read error (`failed`).
    pub fn next_message(&mut self) -> bool {
        let mut sink = [0u8; 8192];
        while !self.ended {
            match self.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    self.failed.get_or_insert(e);
                    return false;
                }
            }
        }
        if self.failed.is_some() {
            return false;
        }
        if self.next.is_none() {
            // Only at the start: skip to the first From_ line.
            loop {
                match self.line() {
                    Ok(l) if l.is_empty() => return false,
                    Ok(l) if l.starts_with(b"From ") => {
                        self.next = Some(l);
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        self.failed = Some(e);
                        return false;
                    }
                }
            }
        }
        let Some(from) = self.next.take() else {
            return false;
        };
        self.buf = from;
        self.pos = 0;
        self.blank = None;
        self.ended = false;
        true
    }

    /// Reads the next line of the current message into `buf`.
    fn fill(&mut self) -> io::Result<()> {
        self.buf.clear();
        self.pos = 0;
        while self.buf.is_empty() && !self.ended {
            let mut line = match self.line() {
                Ok(l) => l,
                Err(e) => {
                    self.ended = true;
                    return Err(self.failed.insert(e).kind().into());
                }
            };
            if line.is_empty() {
                self.ended = true;
            } else if line.starts_with(b"From ") {
                self.next = Some(line);
                self.ended = true;
            } else {
                if let Some(b) = self.blank.take() {
                    self.buf.extend_from_slice(&b);
                }
                if line == b"\n" || line == b"\r\n" {
                    self.blank = Some(line);
                } else {
                    let quoted = line.iter().take_while(|&&b| b == b'>').count();
                    if quoted > 0 && line[quoted..].starts_with(b"From ") {
                        line.remove(0);
                    }
                    self.buf.extend_from_slice(&line);
                }
            }
        }
        Ok(())
    }
}

impl<R: BufRead> Read for Mbox<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            if self.ended {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &[u8]) -> Vec<Vec<u8>> {
        let mut m = Mbox::new(text);
        let mut out = Vec::new();
        while m.next_message() {
            let mut v = Vec::new();
            m.read_to_end(&mut v).unwrap();
            out.push(v);
        }
        assert!(m.failed.is_none());
        out
    }

    #[test]
    fn mbox_splits_on_from_lines_and_unescapes_one_quote() {
        let text = b"From a@x Sat Nov 21 10:00:00 2026\nSubject: 1\n\n>From here\n>>From there\n>Fromage\n\nFrom b@x Sat Nov 21 10:00:01 2026\r\nSubject: 2\r\n\r\nbody\r\n\r\n";
        let m = messages(text);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[0],
            b"From a@x Sat Nov 21 10:00:00 2026\nSubject: 1\n\nFrom here\n>From there\n>Fromage\n"
        );
        assert_eq!(
            m[1],
            b"From b@x Sat Nov 21 10:00:01 2026\r\nSubject: 2\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn mbox_keeps_inner_blank_lines_and_a_last_line_without_newline() {
        let m = messages(b"junk before\nFrom a@x d\nS: 1\n\n\nx\n\n\ny");
        assert_eq!(m, vec![b"From a@x d\nS: 1\n\n\nx\n\n\ny".to_vec()]);
        assert!(messages(b"").is_empty());
        assert!(messages(b"no from line\n").is_empty());
    }

    #[test]
    fn mbox_skips_the_unread_rest_of_a_message() {
        let mut m = Mbox::new(&b"From a d\nS: 1\n\nlong\nbody\nFrom b d\nS: 2\n"[..]);
        assert!(m.next_message());
        let mut two = [0u8; 2];
        m.read_exact(&mut two).unwrap();
        assert!(m.next_message());
        let mut v = Vec::new();
        m.read_to_end(&mut v).unwrap();
        assert_eq!(v, b"From b d\nS: 2\n");
        assert!(!m.next_message());
    }
}
