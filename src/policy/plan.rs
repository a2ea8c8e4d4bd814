//! The plan: what a decision says to do with one message, in the order the
//! engine does it.
//!
//! `decide()` is pure; it returns a `Plan` inside its `Decision`. The engine
//! (`crate::engine`) executes the plan, and `--test` prints it. A plan is
//! the header edits, an ordered list of actions, and one final
//! disposition. A filter is not in the plan: it is a request in the
//! `Decision` (`crate::policy::decide::FilterRequest`), run before the
//! message is decided again, so that the plan is always of the final
//! message. The engine executes a plan in this order:
//!
//! 1. the edits, if any: the message is written once, edited, into a new
//!    `tmp/` file (the header fields edited, the body copied byte for
//!    byte); every copy filed or piped is of that file;
//! 2. the `Pipe` actions, in list order. Exit 0 is done; exit 75
//!    (EX_TEMPFAIL) defers the whole delivery (75 / 4.x.x) before anything
//!    is filed; any other failure (the program cannot start, another exit
//!    status, a signal, the time limit) is a log line, and the message is
//!    filed into the Inbox instead when that pipe was the delivery (a
//!    failing copy-pipe only logs). Mail is never lost to a pipe;
//! 3. the `Deliver` actions: the file is fsynced once, then linked into
//!    each folder (the same inode; into `new/` without flags, into
//!    `cur/NAME:2,FLAGS` with flags), each directory fsynced. A folder
//!    that cannot be used (a symlink, someone else's, a bad name on disk)
//!    falls back to the Inbox with a log line; anything a retry could fix
//!    (a full disk, an I/O error) defers the whole delivery (75 / 4xx),
//!    and nothing is left in `tmp/`. The copies already linked stay (they
//!    are on disk; a retry files them again: filing is not atomic across
//!    folders);
//!    With `Forward` actions in the plan, each folder filed is first
//!    journaled with the unique name the file gets, and a retry files only
//!    into the folders where that name is not (`crate::engine::effects`);
//! 4. the `Forward` actions, after every copy is filed: each sends the
//!    message (edited, as filed) through sendmail with the envelope sender
//!    kept and the loop marker line in front (`crate::policy::forward`).
//!    A forward an earlier attempt of this delivery sent is skipped (the
//!    journal, `crate::engine::effects`); one that sendmail refuses or that
//!    cannot start defers the whole delivery (75 / 4.3.0) unless a copy of
//!    the message was kept (filed now or by an earlier attempt), in which
//!    case it is a log line;
//! 5. the `Reply` action (vacation): sent with a null envelope sender,
//!    once per sender per period (the `replied` state, claimed first). It
//!    never fails the delivery: a reply that cannot be sent, or a state
//!    that cannot be used, is a log line, and no reply;
//! 6. the disposition: `Delivered` (exit 0, after every action is done),
//!    `Discarded` (exit 0: nothing written but the copies), `Rejected`
//!    (77 / 5xx with the status) or `Deferred` (75 / 4xx with the status);
//!    a rejected or deferred plan has no actions.
//!
//! A plan never files the same folder twice: `decide` merges the
//! deliveries into one folder (their flags together).

use crate::store::maildir::FolderName;
use serde::Serialize;

/// One thing to do with the message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// File the message.
    Deliver(Delivery),
    /// Give the message to a program on its stdin.
    Pipe(Pipe),
    /// Forward the message through sendmail.
    Forward(Forward),
    /// Send the vacation auto-reply.
    Reply(Reply),
}

/// Forwarding the message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forward {
    pub to: Vec<String>,
    /// A copy: the message is filed too (by this plan's deliveries).
    pub copy: bool,
    pub rule: String,
}

/// The vacation reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reply {
    pub rule: String,
    pub to: String,
    pub from: String,
    pub subject: String,
    pub vacation: crate::policy::vacation::Vacation,
}

/// Filing one copy of the message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    /// The folder; `None` is the Inbox.
    #[serde(serialize_with = "ser_folder")]
    pub folder: Option<FolderName>,
    /// Maildir flag letters, sorted (`"FS"`); empty for none (then the
    /// file goes into `new/`, else into `cur/` with the `:2,` info).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub flags: String,
}

/// Delivering the message to a program.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pipe {
    /// The program and its arguments (no shell); `~/` at the start of the
    /// program is the recipient's home.
    pub argv: Vec<String>,
    /// A copy: a failure only logs. Otherwise the pipe is the delivery,
    /// and a failure files into the Inbox instead.
    pub copy: bool,
    /// The rule that asked for it.
    pub rule: String,
}

/// The header edits, applied in this order to every copy: `add` lines in
/// front (in rule order), the subject prefix, the fields removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Edits {
    /// Lines added at the top, each a valid `Name: value` line without its
    /// line ending (PREPEND results and `add_header`).
    pub add: Vec<String>,
    /// Put before the Subject (the first one given wins, as in procmail
    /// recipes that tag once).
    pub subject_prefix: Option<String>,
    /// Header names whose fields are removed.
    pub remove: Vec<String>,
}

impl Edits {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.subject_prefix.is_none() && self.remove.is_empty()
    }
}

/// How the delivery ends once the actions are done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "disposition", rename_all = "snake_case")]
pub enum Disposition {
    /// Every action is done: exit 0, LMTP 250.
    Delivered,
    /// Nothing is written but the copies: exit 0, LMTP 250.
    Discarded,
    /// Bounce: exit 77 with the status line, LMTP 5xx.
    Rejected { status: String, text: String },
    /// Retry later: exit 75 with the status line, LMTP 4xx.
    Deferred { status: String, text: String },
}

/// The edits, actions and disposition of one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub edits: Edits,
    pub actions: Vec<Action>,
    pub disposition: Disposition,
}

impl Plan {
    /// The deliveries, in order.
    pub fn deliveries(&self) -> impl Iterator<Item = &Delivery> {
        self.actions.iter().filter_map(|a| match a {
            Action::Deliver(d) => Some(d),
            _ => None,
        })
    }

    /// The forwards, in order.
    pub fn forwards(&self) -> impl Iterator<Item = &Forward> {
        self.actions.iter().filter_map(|a| match a {
            Action::Forward(f) => Some(f),
            _ => None,
        })
    }

    /// The reply, if any.
    pub fn reply(&self) -> Option<&Reply> {
        self.actions.iter().find_map(|a| match a {
            Action::Reply(r) => Some(r),
            _ => None,
        })
    }

    /// The pipes, in order.
    pub fn pipes(&self) -> impl Iterator<Item = &Pipe> {
        self.actions.iter().filter_map(|a| match a {
            Action::Pipe(p) => Some(p),
            _ => None,
        })
    }
}

/// The JSON of a plan (deliver(1)): `edits` only when there are some
/// beyond added lines, and each deliver action with the lines added to it
/// (`add_headers`), as before edits existed.
impl Serialize for Plan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(tag = "action", rename_all = "snake_case")]
        enum A<'a> {
            Deliver {
                #[serde(serialize_with = "ser_folder")]
                folder: &'a Option<FolderName>,
                #[serde(skip_serializing_if = "str::is_empty")]
                flags: &'a str,
                add_headers: &'a [String],
            },
            Pipe(&'a Pipe),
            Forward(&'a Forward),
            Reply(&'a Reply),
        }
        #[derive(Serialize)]
        struct P<'a> {
            #[serde(skip_serializing_if = "Edits::is_empty")]
            edits: &'a Edits,
            actions: Vec<A<'a>>,
            #[serde(flatten)]
            disposition: &'a Disposition,
        }
        let actions = self
            .actions
            .iter()
            .map(|a| match a {
                Action::Deliver(d) => A::Deliver {
                    folder: &d.folder,
                    flags: &d.flags,
                    add_headers: &self.edits.add,
                },
                Action::Pipe(p) => A::Pipe(p),
                Action::Forward(f) => A::Forward(f),
                Action::Reply(r) => A::Reply(r),
            })
            .collect();
        P {
            edits: &self.edits,
            actions,
            disposition: &self.disposition,
        }
        .serialize(s)
    }
}

pub(crate) fn ser_folder<S: serde::Serializer>(
    f: &Option<FolderName>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match f {
        Some(f) => s.serialize_str(&f.name),
        None => s.serialize_none(),
    }
}
