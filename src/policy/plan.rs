//! The plan: what a decision says to do with one message, in the order the
//! engine does it.
//!
//! `decide()` is pure; it returns a `Plan` inside its `Decision`. The engine
//! (`crate::engine`) executes the plan, and `--test` prints it. A plan is an
//! ordered list of actions followed by one final disposition:
//!
//! 1. the actions, in list order:
//!    - `Deliver`: file the message into a folder (the Inbox when `None`),
//!      with the header lines to add in front of it. Failure rule: a folder
//!      that cannot be used (a symlink, someone else's, a bad name on disk)
//!      falls back to the Inbox with a log line; anything a retry could fix
//!      (a full disk, an I/O error) defers the whole delivery (75 / 4xx),
//!      and nothing is left in `tmp/`;
//! 2. the disposition: `Delivered` (exit 0, after every `Deliver` is on
//!    disk), `Discarded` (exit 0, nothing written), `Rejected` (77 / 5xx
//!    with the status) or `Deferred` (75 / 4xx with the status).
//!
//! A new verb (filter, pipe, forward, reply) is a new `Action` variant, its
//! executor in the engine, and its failure rule in the list above.

use crate::store::maildir::FolderName;
use serde::Serialize;

/// One thing to do with the message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// File the message.
    Deliver(Delivery),
}

/// Filing one copy of the message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    /// The folder; `None` is the Inbox.
    #[serde(serialize_with = "ser_folder")]
    pub folder: Option<FolderName>,
    /// Header lines added in front of the message (from PREPEND results),
    /// each a valid `Name: value` line without its line ending.
    pub add_headers: Vec<String>,
}

/// How the delivery ends once the actions are done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "disposition", rename_all = "snake_case")]
pub enum Disposition {
    /// Every `Deliver` action is on disk: exit 0, LMTP 250.
    Delivered,
    /// Nothing is written: exit 0, LMTP 250.
    Discarded,
    /// Bounce: exit 77 with the status line, LMTP 5xx.
    Rejected { status: String, text: String },
    /// Retry later: exit 75 with the status line, LMTP 4xx.
    Deferred { status: String, text: String },
}

/// The actions and the disposition of one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    #[serde(flatten)]
    pub disposition: Disposition,
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
