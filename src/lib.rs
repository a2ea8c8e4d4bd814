//! deliver: a local delivery agent for Postfix.
//!
//! Postfix runs `deliver` once per message as the recipient (local(8)'s
//! `mailbox_command`). The library is laid out by the stages a message
//! goes through, each folder promising what its module doc says:
//!
//! - `input`: what deliver reads: the envelope, the message (a bounded
//!   header block and body window, the rest streamed to disk), and every
//!   file, opened without blocking and read within a bound;
//! - `policy`: what deliver decides: the rules files, access maps and
//!   their tables, the spam headers, and `decide()`, a pure function that
//!   returns a plan;
//! - `store`: where deliver writes: the Maildir, by its protocol, into
//!   directories only the recipient can write;
//! - `output`: what deliver says: the failure kinds and their exit and
//!   RFC 3463 statuses, the log line, the `--test` report;
//! - `report`: `deliver report`, a summary of deliver's log lines (never
//!   on the delivery path);
//! - `engine`: the delivery engine that runs the stages for one message
//!   after another (`Engine::deliver`), with the loading of the rules, the
//!   recipient's identity and the time limit of a delivery;
//! - `replay`: `deliver replay`, the engine's dry run over stored mail.
//!
//! `main.rs` is the command-line front end over the engine.

pub mod engine;
pub mod input;
pub mod lmtp;
pub mod output;
pub mod policy;
pub mod replay;
pub mod report;
pub mod store;
pub mod testhook;
