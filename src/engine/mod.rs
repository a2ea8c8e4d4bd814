//! The delivery engine: load the system rules once, then deliver any number
//! of messages to any number of recipients from one process.
//!
//! One delivery (`Engine::deliver`) runs the pipeline:
//!
//! 1. input: spool the message into the Maildir's `tmp/` while the bounded
//!    header block and body window are kept (`crate::input::message`);
//! 2. policy: load the recipient's rules, then `crate::policy::decide::decide`,
//!    which returns the trace and a `Plan` (`crate::policy::plan`);
//! 3. store: execute the plan in order (`Engine::execute`), with the
//!    failure rule of each action documented in `crate::policy::plan`;
//! 4. output: one log line, and an `Outcome` that the front end turns into
//!    an exit status (`crate::output::exit`) or, later, an LMTP reply.
//!
//! Promises: nothing of one delivery outlives it (the user's layer, the
//! rules compiled for the message, the memory budget, open files and the
//! tmp/ file are all dropped or restored before `deliver` returns); the
//! engine never exits the process; and it never reports a message as
//! delivered before the file and its directory are fsynced.

pub mod inflight;
pub mod load;
pub mod privs;

use self::load::{Options, UserRules};
use crate::engine::inflight::Flight;
use crate::engine::privs::Recipient;
use crate::input::envelope::{Envelope, Flags};
use crate::input::message::{self, Spooled};
use crate::output::exit::Failure;
use crate::output::log::{Line, Logger};
use crate::policy::decide::{decide, Decision, Input};
use crate::policy::plan::{Action, Delivery};
use crate::policy::rules::Layer;
use crate::store::maildir::{self, Maildir};
use crate::testhook;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Filed (every delivery of the plan is on disk) or discarded.
    Done,
    /// Rejected or deferred by policy, or failed: the failure's kind says
    /// which (`crate::output::exit`).
    Failed(Failure),
}

impl Outcome {
    /// The exit status for local(8) (`crate::output::exit`).
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Done => crate::output::exit::OK,
            Outcome::Failed(f) => f.exit_code(),
        }
    }
}

/// The system layer, loaded once, with the logger and the options.
pub struct Engine {
    opts: Options,
    log: Logger,
    system: Layer,
}

/// Where one delivery files and what it reads besides the message: the
/// Maildir, the user's rules file, the session it belongs to (logged as
/// `session=`), and the environment `Envelope::resolve` may read
/// (Postfix's variables in exec mode; none in the LMTP service).
pub struct Target<'a> {
    pub maildir: PathBuf,
    pub user_rules: Option<PathBuf>,
    pub session: Option<&'a str>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// Everything `--test` computed.
pub struct DryRun<'e> {
    pub system: &'e Layer,
    pub user: UserRules,
    pub envelope: Envelope,
    pub spooled: Spooled,
    pub decision: Decision,
    pub maildir: Option<PathBuf>,
}

impl Engine {
    /// Loads the system rules. `who` is the recipient this process runs as
    /// (exec mode): the system file's tables that the recipient owns keep
    /// their indexes in the recipient's cache. With `defer`, the system
    /// rules may stay in the rules cache until a message is read: each
    /// delivery then compiles only the rules its headers can trigger.
    /// On failure the logger is handed back, to report it.
    pub fn load(
        opts: Options,
        who: &Recipient,
        log: Logger,
        defer: bool,
    ) -> Result<Self, (Failure, Logger)> {
        let cache = load::cache_dir(who.home.as_deref());
        match load::load_system(opts.rules.as_deref(), cache, defer) {
            Ok(system) => Ok(Engine { opts, log, system }),
            Err(f) => Err((f, log)),
        }
    }

    /// The logger, once the engine is done.
    pub fn into_logger(self) -> Logger {
        self.log
    }

    /// Delivers one message from `input` to `who`, as the delivery
    /// `flight` (`crate::engine::inflight`: its time limit, and its tmp/ files for
    /// a delivery that ends without returning).
    pub fn deliver(
        &mut self,
        input: impl Read,
        envelope: &Flags,
        who: &Recipient,
        flight: &Flight,
    ) -> Outcome {
        let maildir = match load::maildir_path(&self.opts, who) {
            Ok(m) => m,
            Err(f) => return Outcome::Failed(f),
        };
        let session = self.opts.session.clone();
        let target = Target {
            maildir,
            user_rules: load::user_rules_path(self.opts.user_rules.as_deref(), who.home.as_deref()),
            session: session.as_deref(),
            env: &load::read_env,
        };
        self.deliver_to(input, envelope, who, &target, flight)
    }

    /// Delivers one message from `input` to `who` into `target`'s Maildir,
    /// with `target`'s user rules: `deliver` for a target of its own
    /// choosing (the LMTP service, per recipient).
    pub fn deliver_to(
        &mut self,
        input: impl Read,
        envelope: &Flags,
        who: &Recipient,
        target: &Target<'_>,
        flight: &Flight,
    ) -> Outcome {
        let start = Instant::now();
        let limit = self.system.settings.time_limit;
        if limit != crate::policy::rules::DEFAULT_TIME_LIMIT {
            flight.set_limit(limit);
        }
        match self.deliver_inner(input, envelope, who, target, flight, start) {
            Ok(()) => Outcome::Done,
            Err(f) => Outcome::Failed(f),
        }
    }

    /// The system layer as loaded (the LMTP service reads its settings).
    pub fn system(&self) -> &Layer {
        &self.system
    }

    fn deliver_inner(
        &mut self,
        input: impl Read,
        flags: &Flags,
        who: &Recipient,
        target: &Target<'_>,
        flight: &Flight,
        start: Instant,
    ) -> Result<(), Failure> {
        let mut user =
            load::load_user_rules_at(target.user_rules.clone(), &self.system, who, true)?;
        let limits = self.system.settings.limits;
        let md = Maildir::open(&target.maildir)?;
        testhook::pause("maildir-open");
        let mut tmp = Tracked::create(&md, flight)?;
        testhook::pause("tmp-created");
        let sp = message::read(input, &limits, &mut testhook::Partial::new(tmp.file()))?;
        testhook::pause("tmp-written");
        let cached = load::complete_layers(
            &mut self.system,
            &mut user,
            &sp.head.headers,
            &self.opts,
            who,
            &self.log,
        )?;
        if let Some(why) = &user.ignored {
            self.log.warn(&format!("ignoring user rules: {why}"));
        }
        let env = Envelope::resolve(
            flags,
            target.env,
            sp.head.envelope_from_line(),
            &sp.head.headers,
        );
        let d = decide_for(&sp, &env, &self.system, user.layer.as_ref());
        load::restore_system(&mut self.system, cached);
        drop(user);
        for l in &d.log {
            self.log.info(l);
        }
        let done = self.execute(&md, tmp, &sp, &d, flight)?;
        self.log.info(&log_line(
            &env,
            &sp,
            done.size,
            &d,
            done.folder.as_deref(),
            start,
            target.session,
        ));
        md.clean_tmp(std::time::SystemTime::now());
        match crate::output::exit::failure_of(&d.plan.disposition) {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// Executes a plan's actions in order. The failure rule of each
    /// action is in `crate::policy::plan`; the disposition is the caller's.
    fn execute<'m>(
        &self,
        md: &'m Maildir,
        tmp: Tracked<'m, '_>,
        sp: &Spooled,
        d: &Decision,
        flight: &Flight,
    ) -> Result<Executed, Failure> {
        let mut tmp = Some(tmp);
        let mut done = Executed {
            size: sp.size,
            folder: None,
        };
        for action in &d.plan.actions {
            match action {
                Action::Deliver(delivery) => {
                    let t = tmp.take().expect("one delivery per plan");
                    done = self.file(md, t, sp, delivery, flight)?;
                }
            }
        }
        Ok(done)
    }

    /// Files the spooled message as `delivery` says: fsync (or a copy with
    /// the added headers), then the link into the folder's `new/`.
    fn file<'m>(
        &self,
        md: &'m Maildir,
        mut tmp: Tracked<'m, '_>,
        sp: &Spooled,
        delivery: &Delivery,
        flight: &Flight,
    ) -> Result<Executed, Failure> {
        // fsync only what will be linked into new/: not a message that is
        // discarded, rejected or deferred, nor the copy PREPEND replaces.
        let (tmp, size) = if delivery.add_headers.is_empty() {
            if let Err(e) = tmp.file().sync_all() {
                let what = format!("fsync {}", md.path().join("tmp").display());
                return Err(Failure::from_io(what, &e));
            }
            testhook::pause("tmp-synced");
            (tmp, sp.size)
        } else {
            let p = prepend_headers(md, flight, tmp, &delivery.add_headers, eol(&sp.head))?;
            testhook::pause("prepended");
            p
        };
        let delivered = tmp.commit(md, delivery.folder.as_ref(), size)?;
        testhook::pause("delivered");
        if let Some(why) = &delivered.fallback {
            self.log.warn(&format!(
                "folder {} unusable, delivered to the Inbox: {why}",
                delivery.folder.as_ref().map_or("", |f| f.name.as_str())
            ));
        }
        if let Some(note) = &delivered.note {
            self.log.warn(note);
        }
        let folder = delivered
            .folder
            .as_ref()
            .map_or("INBOX", |f| f.name.as_str())
            .to_string();
        Ok(Executed {
            size,
            folder: Some(folder),
        })
    }

    /// The dry run: the same loading and decision as a delivery, writing
    /// nothing. Load the engine without `defer`, so that every rule shows.
    pub fn dry_run(
        &mut self,
        input: impl Read,
        flags: &Flags,
        who: &Recipient,
    ) -> Result<DryRun<'_>, Failure> {
        let user = load::load_user_rules(&self.opts, &self.system, who, false)?;
        let limits = self.system.settings.limits;
        let spooled = message::read(input, &limits, &mut io::sink())?;
        let envelope = Envelope::resolve(
            flags,
            &load::read_env,
            spooled.head.envelope_from_line(),
            &spooled.head.headers,
        );
        let decision = decide_for(&spooled, &envelope, &self.system, user.layer.as_ref());
        let maildir = load::maildir_path(&self.opts, who).ok();
        Ok(DryRun {
            system: &self.system,
            user,
            envelope,
            spooled,
            decision,
            maildir,
        })
    }
}

/// What the execution of a plan wrote.
struct Executed {
    /// The size written (with any added headers), or the size read.
    size: u64,
    /// The folder the message went to (`INBOX` for the Inbox).
    folder: Option<String>,
}

/// Runs the decision over a spooled message.
pub fn decide_for(
    sp: &Spooled,
    envelope: &Envelope,
    system: &Layer,
    user: Option<&Layer>,
) -> Decision {
    let input = Input {
        envelope,
        headers: &sp.head.headers,
        header_block: &sp.head.bytes[..sp.head.header_len],
        body_window: &sp.window,
        size: sp.size,
        limit_hit: sp.head.limit_hit,
    };
    decide(&input, system, user)
}

/// Line ending used by the message's header block.
fn eol(head: &message::Head) -> &'static str {
    let block = &head.bytes[..head.header_len];
    match block.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && block[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

/// A tmp/ file of the delivery `flight`, tracked by it until the file is
/// removed (dropped) or committed, so that a delivery that ends without
/// returning (its time limit, an allocation failure) removes it too.
struct Tracked<'m, 'f> {
    tmp: Option<maildir::TmpFile<'m>>,
    flight: &'f Flight,
}

impl<'m, 'f> Tracked<'m, 'f> {
    /// A new tmp/ file: created and tracked as one step the time limit
    /// does not interrupt.
    fn create(md: &'m Maildir, flight: &'f Flight) -> Result<Self, Failure> {
        flight.creating(|| {
            let tmp = md.create_tmp()?;
            flight.track(md.tmp_dir(), &tmp.name);
            Ok(Tracked {
                tmp: Some(tmp),
                flight,
            })
        })
    }

    fn tmp(&self) -> &maildir::TmpFile<'m> {
        self.tmp
            .as_ref()
            .expect("a tmp file until dropped or committed")
    }

    fn file(&mut self) -> &mut std::fs::File {
        &mut self
            .tmp
            .as_mut()
            .expect("a tmp file until dropped or committed")
            .file
    }

    /// Links the file into the folder's `new/` (`Maildir::commit`): once
    /// that succeeds, neither the time limit nor an allocation failure
    /// makes the delivery a 75. The tmp/ name is gone either way.
    fn commit(
        mut self,
        md: &'m Maildir,
        folder: Option<&crate::store::maildir::FolderName>,
        size: u64,
    ) -> Result<maildir::Delivered, Failure> {
        let tmp = self
            .tmp
            .take()
            .expect("a tmp file until dropped or committed");
        let name = tmp.name.clone();
        let committed = self.flight.committing(|| md.commit(tmp, folder, size));
        self.flight.untrack(&name);
        committed
    }
}

impl Drop for Tracked<'_, '_> {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let name = tmp.name.clone();
            drop(tmp);
            self.flight.untrack(&name);
        }
    }
}

/// Rewrites the spooled tmp file with header lines in front of it.
fn prepend_headers<'m, 'f>(
    md: &'m Maildir,
    flight: &'f Flight,
    tmp: Tracked<'m, 'f>,
    lines: &[String],
    eol: &str,
) -> Result<(Tracked<'m, 'f>, u64), Failure> {
    let mut src = md.reopen_tmp(tmp.tmp())?;
    let mut out = Tracked::create(md, flight)?;
    let mut size = 0u64;
    let res = (|| -> io::Result<()> {
        let file = out.file();
        for l in lines {
            let line = format!("{l}{eol}");
            file.write_all(line.as_bytes())?;
            size += line.len() as u64;
        }
        size += io::copy(&mut src, file)?;
        file.sync_all()
    })();
    drop(tmp);
    res.map_err(|e| Failure::from_io("adding headers", &e))?;
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
    session: Option<&str>,
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
    l = l.kv("delay", format!("{:.3}", start.elapsed().as_secs_f64()));
    if let Some(id) = session {
        l = l.kv("session", id);
    }
    l.finish()
}
