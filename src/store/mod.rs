//! Store: where deliver writes.
//!
//! - `maildir`: the Maildir protocol (unique name in `tmp/`, write, fsync,
//!   link the written inode into `new/` without replacing anything, fsync
//!   `new/`), Maildir++ folders and their names; an uncommitted `tmp/`
//!   file removes itself when dropped;
//! - `safedir`: every directory written into is the recipient's and no one
//!   else can write it;
//! - `state`: the per-user state beside the Maildir's folders (replied
//!   senders, seen messages, the journal of side effects), safe on shared
//!   storage, under concurrent deliveries and kill -9.

pub mod maildir;
pub mod safedir;
pub mod state;
