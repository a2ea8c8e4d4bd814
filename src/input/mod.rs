//! Input: what deliver reads, and the bounds it reads it within.
//!
//! - `envelope`: the sender, recipient and client of the message, from the
//!   command line, Postfix's environment, the From_ line and the headers,
//!   each with where it came from; control characters never get through.
//! - `message`: the From_ line, a header block bounded by `max_headers` and
//!   `max_header_bytes`, and a body window bounded by `body_window`; every
//!   other byte is streamed to the Maildir's `tmp/` file unchanged, so the
//!   delivered file is the input byte for byte, minus the From_ line.
//! - `address`: the addresses of an address header (RFC 5322 lists);
//! - `edit`: a header block with lines added, fields removed and the
//!   Subject tagged (the body is never touched);
//! - `safe_open`: every file deliver reads (rules, tables, caches) is
//!   opened without blocking, must be a regular file, and is read within a
//!   size bound.

pub mod address;
pub mod edit;
pub mod envelope;
pub mod message;
pub mod safe_open;
