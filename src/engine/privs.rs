//! Who we deliver as. deliver has no setuid bit: it runs as the user Postfix
//! starts it as. Started as root it requires `-d USER` and becomes that user
//! (initgroups, setgid, setuid) before it opens any of the user's files.
//!
//! Started as the recipient by Postfix's local(8), which exports `USER`,
//! `LOGNAME` and `HOME` for the recipient, deliver takes the name and home
//! from there and skips the password lookup (NSS: nscd, nsswitch.conf,
//! /etc/passwd: files opened and read at every start), as dovecot-lda
//! does. As root, with `-d`, or when either variable is missing, the
//! password entry decides.

use crate::output::exit::Failure;
use nix::unistd::{self, Uid, User};
use std::ffi::{CString, OsString};
use std::path::PathBuf;

/// The recipient we run as.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: Option<PathBuf>,
}

/// What the environment says about who we are: `HOME`, and `USER` (or
/// else `LOGNAME`).
#[derive(Debug, Clone, Default)]
pub struct EnvIdentity {
    pub user: Option<String>,
    pub home: Option<PathBuf>,
}

impl EnvIdentity {
    /// Reads `USER`, `LOGNAME` and `HOME` through `env`.
    pub fn from_env(env: impl Fn(&str) -> Option<OsString>) -> EnvIdentity {
        let named = |k: &str| {
            env(k)
                .filter(|v| !v.is_empty())
                .map(|v| v.to_string_lossy().into_owned())
        };
        EnvIdentity {
            user: named("USER").or_else(|| named("LOGNAME")),
            home: env("HOME").map(PathBuf::from),
        }
    }

    /// Reads the process environment.
    pub fn current() -> EnvIdentity {
        EnvIdentity::from_env(|k| std::env::var_os(k))
    }

    /// The name and home when both are given and the home is an absolute
    /// path: then no password lookup is needed.
    fn complete(&self) -> Option<(&str, &PathBuf)> {
        match (&self.user, &self.home) {
            (Some(u), Some(h)) if h.is_absolute() => Some((u, h)),
            _ => None,
        }
    }
}

/// The running user's home directory, as a delivery finds it: `HOME` when
/// not root and `USER` (or `LOGNAME`) and an absolute `HOME` are set, else
/// the password entry (for `check`).
pub fn own_home(env: &EnvIdentity) -> Option<PathBuf> {
    if !unistd::geteuid().is_root() {
        if let Some((_, home)) = env.complete() {
            return Some(home.clone());
        }
    }
    User::from_uid(unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.dir)
}

fn lookup_failed(what: &str, e: nix::errno::Errno) -> Failure {
    Failure::system(Some(e), format!("cannot look up {what}: {e}"))
}

/// Becomes `-d USER` when running as root; otherwise checks that `-d`, if
/// given, names the user we already are. Not root and without `-d`, the
/// name and home come from `env` when it has both (see [`EnvIdentity`]);
/// otherwise from the password entry, with `env`'s home as the fallback
/// when the running uid has none.
pub fn become_recipient(
    d: Option<&str>,
    env: &EnvIdentity,
    allow_root: bool,
) -> Result<Recipient, Failure> {
    let home_env = env.home.clone();
    let euid = unistd::geteuid();
    if euid.is_root() {
        let Some(name) = d else {
            if allow_root {
                let me = User::from_uid(euid).map_err(|e| lookup_failed("root", e))?;
                let r = Recipient {
                    name: "root".into(),
                    uid: 0,
                    gid: 0,
                    home: me.map(|u| u.dir).or(home_env),
                };
                return Ok(r);
            }
            return Err(Failure::config(
                "running as root without -d USER: refusing to deliver as root (use -d USER, or let Postfix run deliver as the recipient)",
            ));
        };
        let user = User::from_name(name)
            .map_err(|e| lookup_failed(&format!("user {name}"), e))?
            .ok_or_else(|| Failure::config(format!("-d {name}: no such user")))?;
        if user.uid.is_root() && !allow_root {
            return Err(Failure::config(format!(
                "-d {name}: refusing to deliver as root"
            )));
        }
        let cname = CString::new(name).map_err(|_| Failure::config("bad user name"))?;
        unistd::initgroups(&cname, user.gid)
            .map_err(|e| Failure::system(Some(e), format!("initgroups {name}: {e}")))?;
        unistd::setgid(user.gid)
            .map_err(|e| Failure::system(Some(e), format!("setgid {}: {e}", user.gid)))?;
        unistd::setuid(user.uid)
            .map_err(|e| Failure::system(Some(e), format!("setuid {}: {e}", user.uid)))?;
        if !user.uid.is_root() && (unistd::geteuid().is_root() || unistd::getuid().is_root()) {
            return Err(Failure::system(None, "could not drop root privileges"));
        }
        // setuid(2) as root set the real, effective and saved uid.
        let r = Recipient {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: Some(user.dir),
        };
        return Ok(r);
    }
    let uid = unistd::getuid();
    if d.is_none() {
        if let Some((name, home)) = env.complete() {
            // As local(8) runs mailbox_command: no password lookup needed.
            let r = Recipient {
                name: name.to_string(),
                uid: uid.as_raw(),
                gid: unistd::getgid().as_raw(),
                home: Some(home.clone()),
            };
            return Ok(r);
        }
    }
    let me = User::from_uid(uid).map_err(|e| lookup_failed(&format!("uid {uid}"), e))?;
    if let Some(name) = d {
        if me.as_ref().map(|u| u.name.as_str()) != Some(name) {
            return Err(Failure::config(
                format!("-d {name}: running as uid {uid}, not as {name}, and without root privileges to switch"),
            ));
        }
    }
    let r = Recipient {
        name: me
            .as_ref()
            .map_or_else(|| uid.to_string(), |u| u.name.clone()),
        uid: uid.as_raw(),
        gid: unistd::getgid().as_raw(),
        home: me.map(|u| u.dir).or(home_env),
    };
    Ok(r)
}

/// The uid we run as now.
pub fn current_uid() -> u32 {
    Uid::effective().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> EnvIdentity {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        EnvIdentity::from_env(|k| {
            vars.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| OsString::from(v))
        })
    }

    #[test]
    fn name_and_home_from_the_environment() {
        let c = |e: &EnvIdentity| e.complete().map(|(u, h)| (u.to_string(), h.clone()));
        let home = PathBuf::from("/home/alice");
        let e = env(&[
            ("USER", "alice"),
            ("LOGNAME", "bob"),
            ("HOME", "/home/alice"),
        ]);
        assert_eq!(c(&e), Some(("alice".into(), home.clone())));
        // An empty USER: LOGNAME names the user.
        let e = env(&[("USER", ""), ("LOGNAME", "bob"), ("HOME", "/home/alice")]);
        assert_eq!(c(&e), Some(("bob".into(), home.clone())));
        let e = env(&[("LOGNAME", "bob"), ("HOME", "/home/alice")]);
        assert_eq!(c(&e), Some(("bob".into(), home)));
        // Either missing, or a relative home: the password entry decides.
        for e in [
            env(&[("HOME", "/home/alice")]),
            env(&[("USER", ""), ("LOGNAME", ""), ("HOME", "/home/alice")]),
            env(&[("USER", "alice")]),
            env(&[("USER", "alice"), ("HOME", "home/alice")]),
            env(&[("USER", "alice"), ("HOME", "")]),
        ] {
            assert_eq!(c(&e), None, "{e:?}");
        }
    }
}
