//! The delivery engine: load the system rules once, then deliver any number
//! of messages to any number of recipients from one process.
//!
//! One delivery (`Engine::deliver`) runs the pipeline:
//!
//! 1. input: spool the message into the Maildir's `tmp/` while the bounded
//!    header block and body window are kept (`crate::message`);
//! 2. policy: load the recipient's rules, then `crate::decide::decide`,
//!    which returns the trace and a `Plan` (`crate::plan`);
//! 3. store: execute the plan in order (`Engine::execute`), with the
//!    failure rule of each action documented in `crate::plan`;
//! 4. output: one log line, and an `Outcome` that the front end turns into
//!    an exit status (`crate::exit`) or, later, an LMTP reply.
//!
//! Promises: nothing of one delivery outlives it (the user's layer, the
//! rules compiled for the message, the memory budget, open files and the
//! tmp/ file are all dropped or restored before `deliver` returns); the
//! engine never exits the process; and it never reports a message as
//! delivered before the file and its directory are fsynced.

use crate::decide::{decide, Decision, Input};
use crate::envelope::{Envelope, Flags};
use crate::exit::Failure;
use crate::log::{Line, Logger};
use crate::maildir::{self, Maildir};
use crate::message::{self, Spooled};
use crate::plan::{Action, Delivery};
use crate::privs::Recipient;
use crate::rules::Layer;
use crate::run::{self, Options, UserRules};
use crate::testhook;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Filed (every delivery of the plan is on disk) or discarded.
    Done,
    /// Rejected or deferred by policy, or failed: the status says which.
    Failed(Failure),
}

impl Outcome {
    /// The exit status for local(8) (`crate::exit`).
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Done => crate::exit::OK,
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

/// Everything `--test` computed.
pub struct DryRun<'e> {
    pub who: Recipient,
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
        let cache = run::cache_dir(who.home.as_deref());
        match run::load_system(opts.rules.as_deref(), cache, defer) {
            Ok(system) => Ok(Engine { opts, log, system }),
            Err(f) => Err((f, log)),
        }
    }

    /// The logger, once the engine is done.
    pub fn into_logger(self) -> Logger {
        self.log
    }

    /// The system layer.
    pub fn system(&self) -> &Layer {
        &self.system
    }

    /// Delivers one message from `input` to `who`.
    pub fn deliver(&mut self, input: impl Read, envelope: &Flags, who: &Recipient) -> Outcome {
        let start = Instant::now();
        match self.deliver_inner(input, envelope, who, start) {
            Ok(()) => Outcome::Done,
            Err(f) => Outcome::Failed(f),
        }
    }

    fn deliver_inner(
        &mut self,
        input: impl Read,
        flags: &Flags,
        who: &Recipient,
        start: Instant,
    ) -> Result<(), Failure> {
        let mut user = run::load_user_rules(&self.opts, &self.system, who, true)?;
        let limits = self.system.settings.limits;
        let md_path = run::maildir_path(&self.opts, who)?;
        let md = Maildir::open(&md_path)?;
        testhook::pause("maildir-open");
        let mut tmp = md.create_tmp()?;
        testhook::pause("tmp-created");
        let sp = message::read(input, &limits, &mut testhook::Partial::new(&mut tmp.file))?;
        testhook::pause("tmp-written");
        let cached = run::complete_layers(
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
            &run::read_env,
            sp.head.from_line.as_deref(),
            &sp.head.headers,
        );
        let d = decide_for(&sp, &env, &self.system, user.layer.as_ref());
        run::restore_system(&mut self.system, cached);
        drop(user);
        for l in &d.log {
            self.log.info(l);
        }
        let done = self.execute(&md, tmp, &sp, &d)?;
        self.log.info(&log_line(
            &env,
            &sp,
            done.size,
            &d,
            done.folder.as_deref(),
            start,
        ));
        md.clean_tmp(std::time::SystemTime::now());
        match crate::exit::failure_of(&d.plan.disposition) {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// Executes a plan's actions in order. The failure rule of each
    /// action is in `crate::plan`; the disposition is the caller's.
    fn execute<'m>(
        &self,
        md: &'m Maildir,
        tmp: maildir::TmpFile<'m>,
        sp: &Spooled,
        d: &Decision,
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
                    done = self.file(md, t, sp, delivery)?;
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
        tmp: maildir::TmpFile<'m>,
        sp: &Spooled,
        delivery: &Delivery,
    ) -> Result<Executed, Failure> {
        // fsync only what will be linked into new/: not a message that is
        // discarded, rejected or deferred, nor the copy PREPEND replaces.
        let (tmp, size) = if delivery.add_headers.is_empty() {
            if let Err(e) = tmp.file.sync_all() {
                let what = format!("fsync {}", md.path().join("tmp").display());
                return Err(Failure::from_io(what, &e));
            }
            testhook::pause("tmp-synced");
            (tmp, sp.size)
        } else {
            let p = prepend_headers(md, tmp, &delivery.add_headers, eol(&sp.head))?;
            testhook::pause("prepended");
            p
        };
        let delivered = md.commit(tmp, delivery.folder.as_ref(), size)?;
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
        who: Recipient,
    ) -> Result<DryRun<'_>, Failure> {
        let user = run::load_user_rules(&self.opts, &self.system, &who, false)?;
        let limits = self.system.settings.limits;
        let spooled = message::read(input, &limits, &mut io::sink())?;
        let envelope = Envelope::resolve(
            flags,
            &run::read_env,
            spooled.head.from_line.as_deref(),
            &spooled.head.headers,
        );
        let decision = decide_for(&spooled, &envelope, &self.system, user.layer.as_ref());
        let maildir = run::maildir_path(&self.opts, &who).ok();
        Ok(DryRun {
            who,
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
        limit_hit: sp.head.limit_hit.as_deref(),
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

/// Rewrites the spooled tmp file with header lines in front of it.
fn prepend_headers<'m>(
    md: &'m Maildir,
    tmp: maildir::TmpFile<'m>,
    lines: &[String],
    eol: &str,
) -> Result<(maildir::TmpFile<'m>, u64), Failure> {
    let mut src = md.reopen_tmp(&tmp)?;
    let mut out = md.create_tmp()?;
    let mut size = 0u64;
    let res = (|| -> io::Result<()> {
        for l in lines {
            let line = format!("{l}{eol}");
            out.file.write_all(line.as_bytes())?;
            size += line.len() as u64;
        }
        size += io::copy(&mut src, &mut out.file)?;
        out.file.sync_all()
    })();
    drop(tmp);
    res.map_err(|e| Failure::from_io("adding headers", &e))?;
    Ok((out, size))
}

/// The one log line for a delivery.
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
        .kv("rule", d.reason.replace(' ', "_"));
    if let Some(s) = d.status_line() {
        l = l.kv("status", s.replace(' ', "_"));
    }
    l.kv("delay", format!("{:.3}", start.elapsed().as_secs_f64()))
        .finish()
}
