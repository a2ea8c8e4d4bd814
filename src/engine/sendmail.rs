//! Sending mail through the MTA, never around it: the sendmail(1)
//! interface, as local(8), procmail and dovecot-lda use it.
//!
//! `send` runs `SENDMAIL -i -f SENDER -- RECIPIENT...` (the command and any
//! fixed arguments of its own come from the system `[settings]` key
//! `sendmail`, default `/usr/sbin/sendmail`), writes the message to its
//! standard input and waits for it, within a time limit. Postfix then
//! queues, retries, signs and logs it as for any local submission.
//!
//! - The environment is cleared, then `PATH` is set (and `MAIL_CONFIG`
//!   kept when set, for a Postfix instance of its own), and the program
//!   runs in its own process group, which is killed at the time limit.
//! - The outcome is the exit status, as sysexits(3) says: 0 is sent; every
//!   other status, a signal, the time limit, or a program that cannot be
//!   started is a failure with its text, and `Failure::temporary` says
//!   whether sendmail itself called it temporary (EX_TEMPFAIL and the
//!   other statuses Postfix defers on). The caller decides what a failure
//!   means for the delivery (`crate::policy::plan`); deliver defers.
//! - Nothing is read from the program's standard output; the first 4 KiB of
//!   its standard error go into the failure's text.

use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The default command.
pub const DEFAULT: &str = "/usr/sbin/sendmail";
/// How long one sendmail may take by default.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(60);
const STDERR_KEEP: usize = 4096;

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    /// sendmail called it temporary (or it never ran): a retry may work.
    pub temporary: bool,
    pub text: String,
}

/// The sendmail command: the program and its own fixed arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sendmail {
    pub argv: Vec<String>,
    pub time_limit: Duration,
}

impl Default for Sendmail {
    fn default() -> Self {
        Sendmail {
            argv: vec![DEFAULT.to_string()],
            time_limit: DEFAULT_TIME_LIMIT,
        }
    }
}

/// sysexits(3) statuses a retry may fix (Postfix's own list of statuses
/// it defers on, `sys_exits.c`).
fn temporary_status(code: i32) -> bool {
    matches!(code, 71 | 72 | 74 | 75)
}

fn sysexit_name(code: i32) -> &'static str {
    match code {
        64 => "EX_USAGE",
        65 => "EX_DATAERR",
        66 => "EX_NOINPUT",
        67 => "EX_NOUSER",
        68 => "EX_NOHOST",
        69 => "EX_UNAVAILABLE",
        70 => "EX_SOFTWARE",
        71 => "EX_OSERR",
        72 => "EX_OSFILE",
        73 => "EX_CANTCREAT",
        74 => "EX_IOERR",
        75 => "EX_TEMPFAIL",
        76 => "EX_PROTOCOL",
        77 => "EX_NOPERM",
        78 => "EX_CONFIG",
        _ => "",
    }
}

impl Sendmail {
    /// Sends `message` (written by `write` to the program's standard
    /// input) from `sender` (`""`: the null sender) to `recipients`.
    pub fn send(
        &self,
        sender: &str,
        recipients: &[String],
        write: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), SendFailure> {
        let Some((prog, fixed)) = self.argv.split_first() else {
            return Err(SendFailure {
                temporary: true,
                text: "no sendmail command".into(),
            });
        };
        let mut cmd = Command::new(prog);
        cmd.args(fixed)
            .arg("-i")
            .arg("-f")
            .arg(sender)
            .arg("--")
            .args(recipients)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(c) = std::env::var_os("MAIL_CONFIG") {
            cmd.env("MAIL_CONFIG", c);
        }
        let mut child = cmd.spawn().map_err(|e| SendFailure {
            temporary: true,
            text: format!("cannot run {prog}: {e}"),
        })?;
        let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
        // The delivery's watchdog kills it too (dropped after the wait).
        let _running = super::program::mark_running(pgid.as_raw());
        let mut stderr = child.stderr.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut kept = Vec::new();
            let _ = (&mut stderr)
                .take(STDERR_KEEP as u64)
                .read_to_end(&mut kept);
            // The rest is read and dropped, so that the program never blocks
            // on a full pipe.
            let _ = io::copy(&mut stderr, &mut io::sink());
            kept
        });
        let mut stdin = child.stdin.take().expect("piped");
        // The writes happen here; a program that stops reading is killed at
        // the deadline by the watcher thread, which breaks the pipe.
        let watcher = {
            let limit = self.time_limit;
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let h = std::thread::spawn(move || {
                if rx.recv_timeout(limit) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                    true
                } else {
                    false
                }
            });
            (tx, h)
        };
        let wrote = write(&mut stdin).and_then(|()| stdin.flush());
        drop(stdin);
        let status = child.wait();
        let _ = watcher.0.send(());
        let timed_out = watcher.1.join().unwrap_or(false);
        let err = reader.join().unwrap_or_default();
        let err = String::from_utf8_lossy(&err);
        let err = err.trim();
        let with_err = |t: String| {
            if err.is_empty() {
                t
            } else {
                format!("{t}: {}", err.replace('\n', " "))
            }
        };
        let status = status.map_err(|e| SendFailure {
            temporary: true,
            text: format!("waiting for {prog}: {e}"),
        })?;
        if timed_out {
            return Err(SendFailure {
                temporary: true,
                text: with_err(format!(
                    "{prog} did not finish within {}s, killed",
                    self.time_limit.as_secs()
                )),
            });
        }
        match status.code() {
            Some(0) => match wrote {
                Ok(()) => Ok(()),
                // It exited 0 without reading the whole message: it did not
                // queue what was meant.
                Err(e) => Err(SendFailure {
                    temporary: true,
                    text: format!("writing to {prog}: {e}"),
                }),
            },
            Some(code) => Err(SendFailure {
                temporary: temporary_status(code),
                text: with_err(format!(
                    "{prog} exited with status {code} {}",
                    sysexit_name(code)
                )),
            }),
            None => Err(SendFailure {
                temporary: true,
                text: with_err(format!(
                    "{prog} killed by signal {}",
                    status.signal().unwrap_or(0)
                )),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &std::path::Path, body: &str) -> Sendmail {
        let p = dir.join("sendmail");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        Sendmail {
            argv: vec![p.to_string_lossy().into_owned()],
            time_limit: Duration::from_secs(5),
        }
    }

    fn body(w: &mut dyn Write) -> io::Result<()> {
        w.write_all(b"Subject: hi\n\nbody\n")
    }

    #[test]
    fn arguments_and_message_reach_the_program() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let s = script(
            d.path(),
            &format!(
                "printf '%s|' \"$@\" > {0}; echo >> {0}; cat >> {0}; env | grep -c . >> {0}",
                out.display()
            ),
        );
        s.send("", &["a@x.example".into(), "-b@y".into()], &mut body)
            .unwrap();
        let got = std::fs::read_to_string(&out).unwrap();
        assert!(
            got.starts_with("-i|-f||--|a@x.example|-b@y|\nSubject: hi\n\nbody\n"),
            "{got}"
        );
    }

    #[test]
    fn statuses_are_failures_and_tempfail_is_temporary() {
        let d = tempfile::tempdir().unwrap();
        let f = script(d.path(), "cat >/dev/null; echo 'queue full' >&2; exit 75")
            .send("s@x", &["r@y".into()], &mut body)
            .unwrap_err();
        assert!(f.temporary);
        assert!(f.text.contains("75 EX_TEMPFAIL: queue full"), "{}", f.text);
        let f = script(d.path(), "exit 67")
            .send("s@x", &["r@y".into()], &mut body)
            .unwrap_err();
        assert!(!f.temporary, "{f:?}");
    }

    #[test]
    fn missing_program_and_time_limit_are_temporary_failures() {
        let s = Sendmail {
            argv: vec!["/nonexistent/sendmail".into()],
            time_limit: Duration::from_secs(5),
        };
        let f = s.send("", &["r@y".into()], &mut body).unwrap_err();
        assert!(f.temporary && f.text.contains("cannot run"), "{f:?}");
        let d = tempfile::tempdir().unwrap();
        let mut s = script(d.path(), "sleep 30");
        s.time_limit = Duration::from_millis(300);
        let f = s.send("", &["r@y".into()], &mut body).unwrap_err();
        assert!(f.temporary && f.text.contains("did not finish"), "{f:?}");
    }
}
