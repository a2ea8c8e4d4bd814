//! Crash-injection points for the tests, compiled only into debug builds.
//!
//! With `DELIVER_TEST_PAUSE_AT=<step>` in the environment, a debug build
//! stops itself with SIGSTOP when it reaches the named step, so that a test
//! can SIGKILL it exactly there (tests/crash.rs). In a release build
//! `pause` is an empty function and the variable is never read: the string
//! `DELIVER_TEST_PAUSE_AT` is not even in the binary.
//!
//! The steps, in the order a delivery reaches them:
//!
//! | step           | state of the Maildir when stopped there                    |
//! |----------------|------------------------------------------------------------|
//! | `maildir-open` | Maildir, tmp/, new/, cur/ exist                             |
//! | `tmp-created`  | an empty file in tmp/                                       |
//! | `tmp-partial`  | the header block written to the tmp/ file, not the body     |
//! | `tmp-written`  | the whole message in the tmp/ file, not yet fsynced         |
//! | `tmp-synced`   | decided to file it; the tmp/ file fsynced (not with PREPEND)|
//! | `prepended`    | a second tmp/ file with PREPEND headers, the first removed  |
//! | `folder-mkdir` | the folder directory made, without tmp/new/cur or marker    |
//! | `folder-ready` | the folder complete, not yet in `subscriptions`             |
//! | `linked`       | linked into new/, new/ not fsynced, tmp/ name still there   |
//! | `new-synced`   | new/ fsynced, tmp/ name still there                         |
//! | `delivered`    | tmp/ name removed; the stale-file sweep and log line remain |
//! | `forwarded`    | a forward sent through sendmail and journaled               |
//! | `reply-claimed`| the vacation's `replied` entry made, the reply not sent     |
//! | `replied`      | the reply sent                                              |

use std::io::{self, Write};

/// Stops the process (SIGSTOP) when `DELIVER_TEST_PAUSE_AT` names `step`.
#[cfg(debug_assertions)]
pub fn pause(step: &str) {
    if std::env::var_os("DELIVER_TEST_PAUSE_AT").is_some_and(|v| v == step) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
    }
}

/// Release builds: nothing.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn pause(_step: &str) {}

/// A writer that pauses at `tmp-partial` after its first write.
pub struct Partial<W> {
    inner: W,
    wrote: bool,
}

impl<W: Write> Partial<W> {
    pub fn new(inner: W) -> Self {
        Partial {
            inner,
            wrote: false,
        }
    }
}

impl<W: Write> Write for Partial<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if !self.wrote {
            self.wrote = true;
            self.inner.flush()?;
            pause("tmp-partial");
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
