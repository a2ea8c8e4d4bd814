//! Output: what deliver says about a delivery.
//!
//! - `exit`: the failure kinds, and the one mapping from a kind to an exit
//!   status and an RFC 3463 status;
//! - `diag`: a problem located in a file (file, line, column, cause);
//! - `log`: the one delivery log line (a documented `key=value` format)
//!   and the other log lines, to syslog;
//! - `text`: the cleaning of text for each place it is written (status
//!   line, log value, SMTP reply text, envelope value);
//! - `report`: the `--test` report, text or JSON.

pub mod diag;
pub mod exit;
pub mod log;
pub mod report;
pub mod text;
