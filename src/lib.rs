//! deliver: a local delivery agent for Postfix.
//!
//! Postfix's local(8) runs `deliver` once per message as the recipient. It
//! reads the envelope and headers, decides (access maps, header/score rules,
//! spam-header routing: `decide`), and files the message durably into a
//! Maildir (`maildir`), or discards, rejects or defers it, telling Postfix
//! the outcome through the exit status (`exit`).

pub mod access;
pub mod budget;
pub mod check;
pub mod decide;
pub mod diag;
pub mod engine;
pub mod envelope;
pub mod exit;
pub mod inflight;
pub mod log;
pub mod maildir;
pub mod maps;
pub mod message;
pub mod pattern;
pub mod plan;
pub mod privs;
pub mod regex_limits;
pub mod report;
pub mod rules;
pub mod run;
pub mod safe_open;
pub mod safedir;
pub mod spam;
pub mod testhook;
pub mod text;
