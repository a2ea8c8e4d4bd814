//! Policy: what deliver decides, and nothing else (no Maildir, no exit).
//!
//! - `rules`: the system and user rules files (model, loading, the rules
//!   cache), compiled into `rules::Layer`s;
//! - `maps`: Postfix's lookup tables, one module per table type, behind the
//!   `maps::Table` trait; `access`: smtpd's access(5) semantics over them;
//! - `spam`: the verdicts of upstream filters, from the topmost headers;
//! - `pattern`, `regex_limits`, `budget`: compiled patterns, their bounds,
//!   and the memory budget of a user's layer;
//! - `decide`: the decision, a pure function of the message, envelope and
//!   layers that returns a trace and a `plan::Plan`; `plan` says in what
//!   order the plan's actions run and what a failure of each means;
//! - `vars`: templates (`${1}`, `${sender}`) in rule texts and their values;
//! - `check`: `deliver check`, the same loading without a message;
//! - `vacation`, `duplicate`, `forward`: the pure parts of the verbs that
//!   act beyond the Maildir (should a reply go, and what it says; a
//!   message's duplicate key; the forwarding loop marker and limits).

pub mod access;
pub mod budget;
pub mod check;
pub mod decide;
pub mod duplicate;
pub mod forward;
pub mod maps;
pub mod pattern;
pub mod plan;
pub mod regex_limits;
pub mod rules;
pub mod spam;
pub mod vacation;
pub mod vars;
