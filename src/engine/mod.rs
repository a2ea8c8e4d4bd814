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

pub mod effects;
pub mod inflight;
pub mod load;
pub mod privs;
pub mod program;
pub mod sendmail;

use self::load::{Options, UserRules};
use crate::engine::inflight::Flight;
use crate::engine::privs::Recipient;
use crate::input::envelope::{Envelope, Flags};
use crate::input::message::{self, Spooled};
use crate::output::exit::Failure;
use crate::output::log::{Line, Logger};
use crate::policy::decide::{decide, Decision, FilterId, Input, Step, StepKind, StepLayer};
use crate::policy::plan::Delivery;
use crate::policy::rules::Layer;
use crate::store::maildir::{self, Maildir};
use crate::testhook;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
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
        let mut sp = message::read(input, &limits, &mut testhook::Partial::new(tmp.file()))?;
        testhook::pause("tmp-written");
        let env = Envelope::resolve(
            flags,
            target.env,
            sp.head.envelope_from_line(),
            &sp.head.headers,
        );
        // The per-user state, opened when a duplicate rule, a forward or a
        // reply needs it, for this delivery as Postfix hands it over.
        let fx = LazyEffects {
            md: &md,
            recipient: env.recipient.value.clone(),
            id: std::cell::OnceCell::new(),
            now: std::time::SystemTime::now(),
            cell: std::cell::OnceCell::new(),
            log: &self.log,
        };
        let mut dup: Option<(String, effects::Dup)> = None;
        // The decision, again after each filter on its output: only the
        // last one is executed (`crate::policy::decide`).
        let mut ran: Vec<FilterId> = Vec::new();
        let mut filtered: Vec<String> = Vec::new();
        let d = loop {
            let cached = load::complete_layers(
                &mut self.system,
                &mut user,
                &sp.head.headers,
                &self.opts,
                who,
                &self.log,
            )?;
            if ran.is_empty() {
                if let Some(why) = &user.ignored {
                    self.log.warn(&format!("ignoring user rules: {why}"));
                }
            }
            if dup.is_none() {
                if let Some(w) = duplicate_window(&self.system, user.layer.as_ref()) {
                    let key = crate::policy::duplicate::key(&sp.head.headers, &sp.window)
                        .unwrap_or_else(|digest| digest);
                    let answer = fx.get(&sp.head).duplicate(&key, w);
                    if let effects::Dup::Unusable(why) = &answer {
                        self.log.warn(&format!(
                            "duplicate check of {key} not possible, treated as new: {why}"
                        ));
                    }
                    dup = Some((key, answer));
                }
            }
            let is_dup = dup.as_ref().map(|(_, a)| *a == effects::Dup::Duplicate);
            let d = decide_for(&sp, &env, &self.system, user.layer.as_ref(), &ran, is_dup);
            load::restore_system(&mut self.system, cached);
            load::restore_user(&mut user);
            let Some(req) = d.filter else { break d };
            ran.push(req.id);
            let settings = &self.system.settings;
            let outcome = match over_filter_size(&sp, settings) {
                Some(why) => Err(why),
                None => run_filter(&md, flight, &tmp, &sp, &env, who, settings, &req.argv),
            };
            match outcome {
                Ok((t, s)) => {
                    // The delivery is known by the message as Postfix
                    // handed it over, not as a filter rewrote it.
                    fx.pin(&sp.head);
                    tmp = t;
                    sp = s;
                    filtered.push(format!("{}:ok", req.rule));
                }
                Err(why) => {
                    self.log.warn(&format!(
                        "filter {} ({}): {why}; the message goes on unchanged",
                        req.rule,
                        req.argv.join(" ")
                    ));
                    filtered.push(format!("{}:failed", req.rule));
                }
            }
        };
        drop(user);
        for l in &d.log {
            self.log.info(l);
        }
        let result = self
            .execute(&md, tmp, &sp, &d, &env, who, flight, &fx)
            .and_then(|done| {
                self.log.info(&log_line(
                    &env,
                    &sp,
                    &d,
                    &done,
                    &filtered,
                    start,
                    target.session,
                ));
                md.clean_tmp(std::time::SystemTime::now());
                match crate::output::exit::failure_of(&d.plan.disposition) {
                    Some(f) => Err(f),
                    None => Ok(()),
                }
            });
        // RFC 7352: a message is recorded as seen only when its delivery
        // succeeds; the claim of one that did not is given back.
        if let (Err(_), Some((key, effects::Dup::New))) = (&result, &dup) {
            fx.get(&sp.head).release_duplicate(key);
        }
        result
    }

    /// Executes a plan in the order `crate::policy::plan` documents, with
    /// its failure rules: the edits (one edited tmp/ file), the pipes,
    /// then one fsync and a link into each folder. The disposition is the
    /// caller's.
    #[allow(clippy::too_many_arguments)]
    fn execute<'m>(
        &self,
        md: &'m Maildir,
        tmp: Tracked<'m, '_>,
        sp: &Spooled,
        d: &Decision,
        env: &Envelope,
        who: &Recipient,
        flight: &Flight,
        fx: &LazyEffects<'_>,
    ) -> Result<Executed, Failure> {
        let plan = &d.plan;
        let mut done = Executed {
            size: sp.size,
            folders: Vec::new(),
            pipes: Vec::new(),
            forwards: Vec::new(),
            reply: None,
        };
        if plan.actions.is_empty() {
            return Ok(done);
        }
        // 1. The edits: one edited copy for every action.
        let mut tmp = if plan.edits.is_empty() {
            tmp
        } else {
            let (t, size) = write_edited(md, flight, tmp, sp, &plan.edits)?;
            testhook::pause("prepended");
            done.size = size;
            t
        };
        // 2. The pipes, in order; a failed delivery-pipe files into the Inbox.
        let mut inbox_instead = false;
        for p in plan.pipes() {
            let limits = program::Limits {
                time: self.system.settings.program_time_limit,
                output: 0,
            };
            let argv = &p.argv;
            let penv = program::ProgramEnv::new(env, who);
            match program::pipe(argv, &penv, tmp.file(), &limits) {
                program::PipeOutcome::Delivered => done.pipes.push(format!("{}:ok", p.rule)),
                program::PipeOutcome::Defer(why) => {
                    return Err(Failure::new(
                        crate::output::exit::Kind::Deferred {
                            status: PIPE_DEFER_STATUS.into(),
                        },
                        format!("pipe {} ({}) asked to defer: {why}", p.rule, argv.join(" ")),
                    ));
                }
                program::PipeOutcome::Failed(why) => {
                    done.pipes.push(format!("{}:failed", p.rule));
                    if p.copy {
                        self.log.warn(&format!(
                            "copy pipe {} ({}) failed: {why}",
                            p.rule,
                            argv.join(" ")
                        ));
                    } else {
                        self.log.warn(&format!(
                            "pipe {} ({}) failed: {why}; delivered to the Inbox instead",
                            p.rule,
                            argv.join(" ")
                        ));
                        inbox_instead = true;
                    }
                }
            }
        }
        // 3. One fsync, then a link into each folder (the same inode).
        // With forwards in the plan, a deferral can follow the filing: each
        // folder filed is journaled, and a retry skips it.
        let inbox = Delivery {
            folder: None,
            flags: String::new(),
        };
        let journaled = plan.forwards().next().is_some();
        let effect = |d: &Delivery| {
            format!(
                "file {}",
                d.folder.as_ref().map_or("INBOX", |f| f.name.as_str())
            )
        };
        let extra = inbox_instead && !plan.deliveries().any(|d| d.folder.is_none());
        let mut deliveries: Vec<&Delivery> =
            plan.deliveries().chain(extra.then_some(&inbox)).collect();
        let mut kept = false;
        if journaled {
            let name = tmp.tmp().name.clone();
            deliveries.retain(|d| {
                let effect = effect(d);
                let before = fx
                    .get(&sp.head)
                    .journal_get(&effect)
                    .and_then(|n| String::from_utf8(n).ok())
                    .is_some_and(|n| filed_as(md, d.folder.as_ref(), &n));
                if before {
                    kept = true;
                    self.log.info(&format!(
                        "{effect}: done by an earlier attempt of this delivery, skipped"
                    ));
                } else if let Err(e) = fx.get(&sp.head).journal_set(&effect, name.as_bytes()) {
                    self.log.warn(&format!("{effect}: {e}"));
                }
                !before
            });
        }
        // The message as filed, for the forwards (the tmp/ name goes with
        // the commit; the descriptor stays).
        let message = if journaled {
            Some(
                tmp.file()
                    .try_clone()
                    .map_err(|e| Failure::from_io("the message for a forward", &e))?,
            )
        } else {
            None
        };
        if !deliveries.is_empty() {
            if let Err(e) = tmp.file().sync_all() {
                let what = format!("fsync {}", md.path().join("tmp").display());
                return Err(Failure::from_io(what, &e));
            }
            testhook::pause("tmp-synced");
            let size = done.size;
            let linked = tmp.commit_all(md, &deliveries, size)?;
            testhook::pause("delivered");
            kept = true;
            for (delivery, delivered) in deliveries.iter().zip(&linked) {
                if let Some(why) = &delivered.fallback {
                    self.log.warn(&format!(
                        "folder {} unusable, delivered to the Inbox: {why}",
                        delivery.folder.as_ref().map_or("", |f| f.name.as_str())
                    ));
                }
                if let Some(note) = &delivered.note {
                    self.log.warn(note);
                }
                let name = delivered
                    .folder
                    .as_ref()
                    .map_or("INBOX", |f| f.name.as_str());
                if !done.folders.iter().any(|f| f == name) {
                    done.folders.push(name.to_string());
                }
            }
        } else {
            drop(tmp);
        }
        // 4. The forwards.
        let sendmail = crate::engine::sendmail::Sendmail {
            argv: self.system.settings.sendmail.clone(),
            time_limit: self.system.settings.program_time_limit,
        };
        if let Some(file) = &message {
            let marker = crate::policy::forward::marker_line(&env.recipient.value);
            for f in plan.forwards() {
                let mut reader = ReadAt { file, pos: 0 };
                match fx.get(&sp.head).forward(
                    &sendmail,
                    &env.sender.value,
                    &f.to,
                    &marker,
                    eol(&sp.head),
                    &mut reader,
                ) {
                    Ok(effects::Forwarded::Sent) => {
                        done.forwards.push(format!("{}:ok", f.to.join(",")))
                    }
                    Ok(effects::Forwarded::SentUnrecorded(e)) => {
                        self.log.warn(&format!(
                            "forward to {} sent, not journaled (a retry sends it again): {e}",
                            f.to.join(",")
                        ));
                        done.forwards.push(format!("{}:ok", f.to.join(",")))
                    }
                    Ok(effects::Forwarded::AlreadyDone) => {
                        self.log.info(&format!(
                            "forward to {}: done by an earlier attempt of this delivery, skipped",
                            f.to.join(",")
                        ));
                        done.forwards.push(format!("{}:done", f.to.join(",")))
                    }
                    Err(e) if kept => {
                        self.log.warn(&format!(
                            "forward to {} (rule {}) failed, a copy is kept: {}",
                            f.to.join(","),
                            f.rule,
                            e.text
                        ));
                        done.forwards.push(format!("{}:failed", f.to.join(",")))
                    }
                    Err(e) => {
                        return Err(Failure::system(
                            None,
                            format!(
                                "forward to {} (rule {}) failed: {}",
                                f.to.join(","),
                                f.rule,
                                e.text
                            ),
                        ));
                    }
                }
            }
        }
        // 5. The reply.
        if let Some(r) = plan.reply() {
            let host = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "localhost".into());
            let got = fx.get(&sp.head).reply(
                &sendmail,
                &r.vacation,
                &r_reply(r),
                &sp.head.headers,
                &host,
            );
            let what = match &got {
                effects::Replied::Sent => "sent".to_string(),
                effects::Replied::Already => "already".to_string(),
                effects::Replied::Unusable(why) => {
                    self.log.warn(&format!(
                        "vacation reply to {} not sent: state unusable: {why}",
                        r.to
                    ));
                    "unusable".to_string()
                }
                effects::Replied::Failed(e) => {
                    self.log
                        .warn(&format!("vacation reply to {} failed: {}", r.to, e.text));
                    "failed".to_string()
                }
            };
            done.reply = Some(format!("{}:{what}", r.to));
        }
        Ok(done)
    }

    /// The dry run: the same loading and decision as a delivery, writing
    /// nothing. Load the engine without `defer`, so that every rule shows.
    pub fn dry_run(
        &mut self,
        input: impl Read,
        flags: &Flags,
        who: &Recipient,
        run_filters: bool,
    ) -> Result<DryRun<'_>, Failure> {
        let user = self.dry_user_rules(who)?;
        let Dry {
            envelope,
            spooled,
            decision,
        } = self.dry_decide(input, flags, &load::read_env, &user, who, run_filters)?;
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

    /// The recipient's rules as a dry run loads them: in full, so that
    /// every rule can show. `dry_run` loads them per message; `replay`
    /// (`crate::replay`) once for all its messages.
    pub fn dry_user_rules(&self, who: &Recipient) -> Result<UserRules, Failure> {
        load::load_user_rules(&self.opts, &self.system, who, false)
    }

    /// One message's decision in a dry run: read (into no file) and
    /// decided as a delivery would, with the user's layer `user`
    /// (`dry_user_rules`). `env` reads the environment's envelope
    /// variables (`load::read_env`, or none). Writes nothing; runs the
    /// filters only with `run_filters` (`--test --run-filters`, never
    /// `replay`), on an unnamed temporary file. Pipes never run: a plan's
    /// side effects are only described.
    pub fn dry_decide(
        &self,
        input: impl Read,
        flags: &Flags,
        env: &dyn Fn(&str) -> Option<String>,
        user: &UserRules,
        who: &Recipient,
        run_filters: bool,
    ) -> Result<Dry, Failure> {
        let limits = self.system.settings.limits;
        // With --run-filters the message is spooled into an unnamed
        // temporary file for the filters to read; otherwise nothing is
        // written.
        let mut spool = if run_filters {
            Some(unnamed_tmp().map_err(|e| Failure::from_io("a temporary file", &e))?)
        } else {
            None
        };
        let mut spooled = match &mut spool {
            Some(f) => message::read(input, &limits, f)?,
            None => message::read(input, &limits, &mut io::sink())?,
        };
        let envelope = Envelope::resolve(
            flags,
            env,
            spooled.head.envelope_from_line(),
            &spooled.head.headers,
        );
        let mut ran: Vec<FilterId> = Vec::new();
        let mut trace = Vec::new();
        let decision = loop {
            let mut d = decide_for(
                &spooled,
                &envelope,
                &self.system,
                user.layer.as_ref(),
                &ran,
                None,
            );
            trace.append(&mut d.trace);
            let Some(req) = d.filter.take() else {
                d.trace = trace;
                break d;
            };
            ran.push(req.id);
            let settings = &self.system.settings;
            let result = match (&spool, over_filter_size(&spooled, settings)) {
                (_, Some(why)) => format!("skipped: {why}"),
                (None, None) => "not run: --test runs filters only with --run-filters; \
                         the rules go on with the message unchanged"
                    .to_string(),
                (Some(f), None) => {
                    let mut out =
                        unnamed_tmp().map_err(|e| Failure::from_io("a temporary file", &e))?;
                    let got =
                        filter_into(&req.argv, f, &mut out, &spooled, &envelope, who, settings);
                    match got {
                        Ok(s) => {
                            spooled = s;
                            spool = Some(out);
                            "ran: the rules run again on its output".to_string()
                        }
                        Err(why) => format!("failed: {why}; the message goes on unchanged"),
                    }
                }
            };
            trace.push(Step {
                layer: StepLayer::Neither,
                kind: StepKind::Action,
                name: format!("filter {}", req.rule),
                key: Some(req.argv.join(" ")),
                result,
                score: None,
            });
        };
        Ok(Dry {
            envelope,
            spooled,
            decision,
        })
    }
}

/// One message's dry-run decision (`Engine::dry_decide`).
pub struct Dry {
    pub envelope: Envelope,
    pub spooled: Spooled,
    pub decision: Decision,
}

/// An unnamed temporary file for `--test --run-filters` (O_TMPFILE where
/// the file system has it, else created and removed at once).
fn unnamed_tmp() -> io::Result<std::fs::File> {
    let dir = std::env::temp_dir();
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_TMPFILE)
        .mode(0o600)
        .open(&dir)
    {
        Ok(f) => Ok(f),
        Err(_) => {
            let p = dir.join(format!("deliver-test.{}", std::process::id()));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p)?;
            let _ = std::fs::remove_file(&p);
            Ok(f)
        }
    }
}

/// The status of a delivery deferred because a pipe exited 75, as
/// local(8) gives it for a command.
const PIPE_DEFER_STATUS: &str = "4.3.0";

/// What the execution of a plan wrote.
struct Executed {
    /// The size written (with any edits), or the size read.
    size: u64,
    /// The folders the message went to (`INBOX` for the Inbox), in order.
    folders: Vec<String>,
    /// Each pipe's rule and result (`RULE:ok`, `RULE:failed`).
    pipes: Vec<String>,
    /// Each forward's addresses and result (`ADDRS:ok`, `:failed`, `:done`).
    forwards: Vec<String>,
    /// The reply's address and result (`ADDR:sent`, `:already`, ...).
    reply: Option<String>,
}

/// Whether a file of the unique name `name` (a tmp/ name, filed as
/// `NAME,S=SIZE` in `new/` or `NAME,S=SIZE:2,FLAGS` in `cur/`) is in the
/// folder.
fn filed_as(md: &Maildir, folder: Option<&crate::store::maildir::FolderName>, name: &str) -> bool {
    let new = crate::store::maildir::new_dir_path(md.path(), folder);
    let prefix = format!("{name},");
    [new.clone(), new.with_file_name("cur")].iter().any(|dir| {
        std::fs::read_dir(dir).is_ok_and(|rd| {
            rd.filter_map(Result::ok).any(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(&prefix))
            })
        })
    })
}

/// The line end of the message's header block (for the line a forward
/// puts in front).
fn eol(head: &message::Head) -> &'static str {
    let block = &head.bytes[..head.header_len];
    match block.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && block[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

/// The vacation reply of a plan's `Reply`.
fn r_reply(r: &crate::policy::plan::Reply) -> crate::policy::vacation::Reply {
    crate::policy::vacation::Reply {
        to: r.to.clone(),
        from: r.from.clone(),
    }
}

/// Reads a file from its start with pread(2), leaving the descriptor's
/// offset alone.
struct ReadAt<'f> {
    file: &'f std::fs::File,
    pos: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// The per-user state of one delivery (`crate::engine::effects`), opened
/// the first time it is needed: an ordinary delivery never touches it.
struct LazyEffects<'a> {
    md: &'a Maildir,
    recipient: String,
    /// The delivery's identity (`crate::store::state::delivery_id`): of
    /// the header block as Postfix handed it over, computed when first
    /// needed or before a filter replaces the message.
    id: std::cell::OnceCell<String>,
    now: std::time::SystemTime,
    cell: std::cell::OnceCell<effects::Effects>,
    log: &'a Logger,
}

impl LazyEffects<'_> {
    /// Fixes the delivery's identity from `head` (the first call wins).
    fn pin(&self, head: &message::Head) -> &str {
        self.id.get_or_init(|| {
            crate::store::state::delivery_id(&self.recipient, &head.bytes[..head.header_len])
        })
    }

    /// The state, opened on first use; `head` is the message at hand (its
    /// identity is used unless `pin` fixed one before).
    fn get(&self, head: &message::Head) -> &effects::Effects {
        self.cell.get_or_init(|| {
            let id = self.pin(head).to_string();
            let fx = effects::Effects::open_id(self.md, id, self.now);
            for n in &fx.notes {
                self.log.warn(n);
            }
            fx
        })
    }
}

/// What a filter's outcome means: its output, when it is a message (a
/// header block with at least one field); else why the original goes on.
fn filter_result(
    got: program::FilterOutcome<Spooled>,
    before: &Spooled,
) -> Result<Spooled, String> {
    match got {
        program::FilterOutcome::Unchanged(why) => Err(why),
        program::FilterOutcome::Replaced(s) if s.size == 0 => Err("it wrote nothing".into()),
        program::FilterOutcome::Replaced(s) if s.head.headers.is_empty() => {
            Err("its output is not a message (no header fields)".into())
        }
        program::FilterOutcome::Replaced(mut s) => {
            // The fields the filter added are the local filter's own: read
            // first (`crate::policy::spam` trusts the topmost).
            s.head.headers.promote_added(&before.head.headers);
            Ok(s)
        }
    }
}

/// Runs a filter on the tmp/ file: its output spooled into a new tracked
/// tmp/ file (`message::read`), which replaces the message; or why not.
#[allow(clippy::too_many_arguments)]
fn run_filter<'m, 'f>(
    md: &'m Maildir,
    flight: &'f Flight,
    tmp: &Tracked<'m, 'f>,
    sp: &Spooled,
    env: &Envelope,
    who: &Recipient,
    settings: &crate::policy::rules::Settings,
    argv: &[String],
) -> Result<(Tracked<'m, 'f>, Spooled), String> {
    let mut out = Tracked::create(md, flight).map_err(|f| f.to_string())?;
    let input = md.reopen_tmp(tmp.tmp()).map_err(|f| f.to_string())?;
    let s = filter_into(argv, &input, out.file(), sp, env, who, settings)?;
    Ok((out, s))
}

/// Why a message is not filtered because of its size, if it is not
/// (`filter_size_limit`).
fn over_filter_size(sp: &Spooled, settings: &crate::policy::rules::Settings) -> Option<String> {
    (sp.size > settings.filter_size_limit).then(|| {
        format!(
            "message of {} bytes over filter_size_limit {}",
            sp.size, settings.filter_size_limit
        )
    })
}

/// Runs the filter `argv` on `input` (the message `sp`) within the
/// settings' limits, its output spooled into `out` (`message::read`):
/// the new message, or why the original goes on (`filter_result`).
/// Delivery and `--test --run-filters` both filter through here.
fn filter_into(
    argv: &[String],
    input: &std::fs::File,
    out: &mut std::fs::File,
    sp: &Spooled,
    env: &Envelope,
    who: &Recipient,
    settings: &crate::policy::rules::Settings,
) -> Result<Spooled, String> {
    let limits = program::Limits {
        time: settings.program_time_limit,
        output: settings.filter_output_limit,
    };
    let got = program::filter(
        argv,
        &program::ProgramEnv::new(env, who),
        input,
        &limits,
        &mut |r: &mut dyn Read| message::read(r, &settings.limits, &mut *out),
    );
    filter_result(got, sp)
}

/// Writes the edited copy of the message into a new tracked tmp/ file:
/// the edited header block, then the rest of the spooled file byte for
/// byte. The unedited file is removed. Returns the copy and its size.
fn write_edited<'m, 'f>(
    md: &'m Maildir,
    flight: &'f Flight,
    tmp: Tracked<'m, 'f>,
    sp: &Spooled,
    edits: &crate::policy::plan::Edits,
) -> Result<(Tracked<'m, 'f>, u64), Failure> {
    let head = &sp.head;
    let block = crate::input::edit::edit(
        &head.bytes[..head.header_len],
        &edits.add,
        edits.subject_prefix.as_deref(),
        &edits.remove,
    );
    let mut src = md.reopen_tmp(tmp.tmp())?;
    let mut out = Tracked::create(md, flight)?;
    let res = (|| -> io::Result<u64> {
        let file = out.file();
        file.write_all(&block)?;
        io::Seek::seek(&mut src, io::SeekFrom::Start(head.header_len as u64))?;
        Ok(block.len() as u64 + io::copy(&mut src, file)?)
    })();
    drop(tmp);
    let size = res.map_err(|e| Failure::from_io("writing the edited message", &e))?;
    Ok((out, size))
}

/// Runs the decision over a spooled message.
pub fn decide_for(
    sp: &Spooled,
    envelope: &Envelope,
    system: &Layer,
    user: Option<&Layer>,
    filters_done: &[FilterId],
    duplicate: Option<bool>,
) -> Decision {
    let input = Input {
        envelope,
        headers: &sp.head.headers,
        header_block: &sp.head.bytes[..sp.head.header_len],
        body_window: &sp.window,
        size: sp.size,
        limit_hit: sp.head.limit_hit,
        filters_done,
        duplicate,
        // Only a vacation rule reads the date: the time zone file is not
        // read for every delivery.
        today: if has_vacation(system, user) {
            today()
        } else {
            0
        },
    };
    decide(&input, system, user)
}

/// Whether a rule of the layers sends a vacation reply.
fn has_vacation(system: &Layer, user: Option<&Layer>) -> bool {
    std::iter::once(system)
        .chain(user)
        .flat_map(|l| l.rules.iter())
        .any(|r| r.vacation.is_some())
}

/// Today's date as `YYYYMMDD` in the local time zone (vacation's start
/// and end dates are the user's days).
pub fn today() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as nix::libc::time_t;
    // SAFETY: `tm` is plain data; localtime_r reads `t` and writes only
    // into `tm`.
    let mut tm: nix::libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !nix::libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        return 0;
    }
    (tm.tm_year + 1900) as u32 * 10000 + (tm.tm_mon + 1) as u32 * 100 + tm.tm_mday as u32
}

/// The window of the first `duplicate` rule of the layers, if any.
fn duplicate_window(system: &Layer, user: Option<&Layer>) -> Option<std::time::Duration> {
    std::iter::once(system)
        .chain(user)
        .flat_map(|l| l.rules.iter())
        .find_map(|r| r.duplicate.as_ref().map(|d| d.window))
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

    /// Links the file into each delivery's folder (`Maildir::link`), as
    /// one step: once that succeeds, neither the time limit nor an
    /// allocation failure makes the delivery a 75. The tmp/ name is gone
    /// either way.
    fn commit_all(
        mut self,
        md: &'m Maildir,
        deliveries: &[&Delivery],
        size: u64,
    ) -> Result<Vec<maildir::Delivered>, Failure> {
        let tmp = self
            .tmp
            .take()
            .expect("a tmp file until dropped or committed");
        let name = tmp.name.clone();
        let committed = self.flight.committing(|| {
            let mut out = Vec::with_capacity(deliveries.len());
            for d in deliveries {
                out.push(md.link(&tmp, d.folder.as_ref(), &d.flags, size)?);
            }
            Ok(out)
        });
        drop(tmp);
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

/// The one log line for a delivery: the keys in the fixed order that
/// deliver(1) documents (LOGGING), each value escaped by `Line`.
/// `size` is what was written (with any edits), or the size read when
/// nothing was written.
fn log_line(
    env: &Envelope,
    sp: &Spooled,
    d: &Decision,
    done: &Executed,
    filters: &[String],
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
        .kv("size", done.size)
        .kv("action", d.action.as_str());
    // One key per folder, pipe and filter: a folder or rule name may hold
    // any separator a joined list would use.
    for f in &done.folders {
        l = l.kv("folder", f);
    }
    for p in &done.pipes {
        l = l.kv("pipe", p);
    }
    for f in &done.forwards {
        l = l.kv("forward", f);
    }
    if let Some(r) = &done.reply {
        l = l.kv("reply", r);
    }
    for f in filters {
        l = l.kv("filter", f);
    }
    let e = &d.plan.edits;
    if !e.is_empty() {
        let n = e.add.len() + usize::from(e.subject_prefix.is_some()) + e.remove.len();
        l = l.kv("edits", n);
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
