//! Who we deliver as. deliver has no setuid bit: it runs as the user Postfix
//! starts it as. Started as root it requires `-d USER` and becomes that user
//! (initgroups, setgid, setuid) before it opens any of the user's files.

use crate::exit::Failure;
use nix::unistd::{self, Uid, User};
use std::ffi::CString;
use std::path::PathBuf;

/// The recipient we run as.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: Option<PathBuf>,
}

fn lookup_failed(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::temp("4.3.0", format!("cannot look up {what}: {e}"))
}

/// Becomes `-d USER` when running as root; otherwise checks that `-d`, if
/// given, names the user we already are. `home_env` is the fallback home
/// when the running uid has no password entry.
pub fn become_recipient(
    d: Option<&str>,
    home_env: Option<PathBuf>,
    allow_root: bool,
) -> Result<Recipient, Failure> {
    let euid = unistd::geteuid();
    if euid.is_root() {
        let Some(name) = d else {
            if allow_root {
                let me = User::from_uid(euid).map_err(|e| lookup_failed("root", e))?;
                return Ok(Recipient {
                    name: "root".into(),
                    uid: 0,
                    gid: 0,
                    home: me.map(|u| u.dir).or(home_env),
                });
            }
            return Err(Failure::temp(
                "4.3.5",
                "running as root without -d USER: refusing to deliver as root (use -d USER, or let Postfix run deliver as the recipient)",
            ));
        };
        let user = User::from_name(name)
            .map_err(|e| lookup_failed(&format!("user {name}"), e))?
            .ok_or_else(|| Failure::temp("4.3.5", format!("-d {name}: no such user")))?;
        if user.uid.is_root() && !allow_root {
            return Err(Failure::temp(
                "4.3.5",
                format!("-d {name}: refusing to deliver as root"),
            ));
        }
        let cname = CString::new(name).map_err(|_| Failure::temp("4.3.5", "bad user name"))?;
        unistd::initgroups(&cname, user.gid)
            .map_err(|e| Failure::temp("4.3.0", format!("initgroups {name}: {e}")))?;
        unistd::setgid(user.gid)
            .map_err(|e| Failure::temp("4.3.0", format!("setgid {}: {e}", user.gid)))?;
        unistd::setuid(user.uid)
            .map_err(|e| Failure::temp("4.3.0", format!("setuid {}: {e}", user.uid)))?;
        if !user.uid.is_root() && (unistd::geteuid().is_root() || unistd::getuid().is_root()) {
            return Err(Failure::temp("4.3.0", "could not drop root privileges"));
        }
        return Ok(Recipient {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: Some(user.dir),
        });
    }
    let uid = unistd::getuid();
    let me = User::from_uid(uid).map_err(|e| lookup_failed(&format!("uid {uid}"), e))?;
    if let Some(name) = d {
        if me.as_ref().map(|u| u.name.as_str()) != Some(name) {
            return Err(Failure::temp(
                "4.3.5",
                format!("-d {name}: running as uid {uid}, not as {name}, and without root privileges to switch"),
            ));
        }
    }
    Ok(Recipient {
        name: me
            .as_ref()
            .map_or_else(|| uid.to_string(), |u| u.name.clone()),
        uid: uid.as_raw(),
        gid: unistd::getgid().as_raw(),
        home: me.map(|u| u.dir).or(home_env),
    })
}

/// The uid we run as now.
pub fn current_uid() -> u32 {
    Uid::effective().as_raw()
}
