//! The `[lmtp]` section of the system rules file: where a recipient's mail
//! goes (a path template, Postfix `virtual_mailbox_maps` tables, or, with
//! neither, the system user of the local part), and the service's limits.
//! Every problem is a `Diag` naming file:line:col.

use crate::input::safe_open;
use crate::output::diag::Diag;
use crate::policy::maps::{self, OpenOptions, Table};
use crate::policy::rules::model::LmtpSpec;
use crate::policy::rules::{line_col, SYSTEM_RULES};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The service's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sessions at once; one more is told `421 4.3.2` and closed.
    pub max_sessions: usize,
    /// The largest message (advertised as SIZE), in bytes.
    pub max_message_size: u64,
    /// Recipients per transaction; one more gets `452 4.5.3`.
    pub max_recipients: usize,
    /// The longest command line, in bytes with its CRLF. DATA lines are
    /// not limited (only the message size is).
    pub max_line_length: usize,
    /// How long a session may wait for a command.
    pub idle_timeout: Duration,
    /// How long one read of DATA may wait.
    pub data_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 100,
            // Postfix's message_size_limit default.
            max_message_size: 10_240_000 * 5,
            max_recipients: 1000,
            max_line_length: 2048,
            idle_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(300),
        }
    }
}

/// Where recipients' Maildirs are.
#[derive(Debug)]
pub enum Mapping {
    /// `mailbox = "/var/vmail/%d/%n/Maildir"`.
    Template(String),
    /// `mailbox_maps` with `mailbox_base`.
    Maps {
        tables: Vec<Box<dyn Table>>,
        base: PathBuf,
    },
    /// Neither: the local part names a system user, whose `~/Maildir` it is
    /// (the service runs as root and delivers in a child as the user).
    SystemUsers,
}

/// The `[lmtp]` section, loaded.
#[derive(Debug)]
pub struct Config {
    pub mapping: Mapping,
    pub limits: Limits,
    pub spool_dir: PathBuf,
    /// The files read (the rules file and the tables), for the identity
    /// check that reloads them when one changes.
    pub files: Vec<PathBuf>,
}

/// What a recipient resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A virtual mailbox: the Maildir's path.
    Maildir(PathBuf),
    /// A system user (`Mapping::SystemUsers`).
    User(String),
    /// No such recipient: `550 5.1.1`.
    Unknown,
    /// An address the mapping cannot use (a part with `/`, `..` or a
    /// control character): `550 5.1.3`.
    Bad(String),
    /// A lookup or result failed: `451`, with the reason.
    Failed(String),
}

#[derive(serde::Deserialize)]
struct OnlyLmtp {
    lmtp: Option<LmtpSpec>,
}

/// Loads `[lmtp]` from the system rules file (`path`, else the default
/// file; a default file that does not exist gives the defaults).
pub fn load(path: Option<&Path>, opts: &OpenOptions) -> Result<Config, Vec<Diag>> {
    let (file, explicit) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(SYSTEM_RULES), false),
    };
    let text = match safe_open::open(&file) {
        Ok((mut f, meta)) => safe_open::read_text(&mut f, &meta, &file, safe_open::MAX_FILE)
            .map_err(|e| vec![Diag::from(e)])?,
        Err(e) if e.is_not_found() && !explicit => String::new(),
        Err(e) => return Err(vec![Diag::from(e)]),
    };
    let spec: OnlyLmtp = toml::from_str(&text).map_err(|e| {
        let (line, col) = e.span().map_or((0, 0), |s| line_col(&text, s.start));
        vec![Diag::at(&file, line, col, e.message().trim().to_string())]
    })?;
    compile(spec.lmtp.unwrap_or_default(), &text, &file, opts)
}

/// Checks the `[lmtp]` section of a system rules file, for `deliver check`.
pub fn check(path: &Path) -> Vec<Diag> {
    match load(Some(path), &OpenOptions::default()) {
        Ok(_) => Vec::new(),
        Err(d) => d,
    }
}

fn compile(
    spec: LmtpSpec,
    text: &str,
    file: &Path,
    opts: &OpenOptions,
) -> Result<Config, Vec<Diag>> {
    let mut diags = Vec::new();
    let at = |diags: &mut Vec<Diag>, start: usize, msg: String| {
        let (line, col) = line_col(text, start);
        diags.push(Diag::at(file, line, col, msg));
    };
    let mut limits = Limits::default();
    let mut num = |v: &Option<toml::Spanned<i64>>, name: &str, lo: i64, hi: i64| -> Option<u64> {
        let v = v.as_ref()?;
        let n = *v.get_ref();
        if (lo..=hi).contains(&n) {
            Some(n as u64)
        } else {
            at(
                &mut diags,
                v.span().start,
                format!("{name} must be {lo} to {hi}, not {n}"),
            );
            None
        }
    };
    if let Some(n) = num(&spec.max_sessions, "max_sessions", 1, 100_000) {
        limits.max_sessions = n as usize;
    }
    if let Some(n) = num(&spec.max_message_size, "max_message_size", 1024, 1 << 40) {
        limits.max_message_size = n;
    }
    if let Some(n) = num(&spec.max_recipients, "max_recipients", 1, 100_000) {
        limits.max_recipients = n as usize;
    }
    if let Some(n) = num(&spec.max_line_length, "max_line_length", 512, 1 << 20) {
        limits.max_line_length = n as usize;
    }
    if let Some(n) = num(&spec.idle_timeout, "idle_timeout", 1, 86_400) {
        limits.idle_timeout = Duration::from_secs(n);
    }
    if let Some(n) = num(&spec.data_timeout, "data_timeout", 1, 86_400) {
        limits.data_timeout = Duration::from_secs(n);
    }
    let mut files = vec![file.to_path_buf()];
    let dir = file.parent().unwrap_or(Path::new("/"));
    let mapping = match (&spec.mailbox, &spec.mailbox_maps) {
        (Some(_), Some(m)) => {
            let start = m.first().map_or(0, |s| s.span().start);
            at(
                &mut diags,
                start,
                "set mailbox or mailbox_maps, not both".into(),
            );
            Mapping::SystemUsers
        }
        (Some(t), None) => {
            if let Err(e) = check_template(t.get_ref()) {
                at(&mut diags, t.span().start, format!("mailbox: {e}"));
            }
            Mapping::Template(t.get_ref().clone())
        }
        (None, Some(specs)) => {
            let mut tables = Vec::new();
            for s in specs {
                let spec = resolve_spec(dir, s.get_ref());
                files.extend(table_files(&spec));
                match maps::open(&spec, opts) {
                    Ok(t) => tables.push(t),
                    Err(e) if e.line == 0 => at(
                        &mut diags,
                        s.span().start,
                        format!("{}: {}", s.get_ref(), e.msg),
                    ),
                    Err(e) => diags.push(e),
                }
            }
            let base = match &spec.mailbox_base {
                Some(b) if Path::new(b.get_ref()).is_absolute() => PathBuf::from(b.get_ref()),
                Some(b) => {
                    at(
                        &mut diags,
                        b.span().start,
                        "mailbox_base must be an absolute path".into(),
                    );
                    PathBuf::new()
                }
                None => {
                    let start = specs.first().map_or(0, |s| s.span().start);
                    at(&mut diags, start, "mailbox_maps needs mailbox_base".into());
                    PathBuf::new()
                }
            };
            Mapping::Maps { tables, base }
        }
        (None, None) => Mapping::SystemUsers,
    };
    let spool_dir = match &spec.spool_dir {
        Some(d) if Path::new(d.get_ref()).is_absolute() => PathBuf::from(d.get_ref()),
        Some(d) => {
            at(
                &mut diags,
                d.span().start,
                "spool_dir must be an absolute path".into(),
            );
            PathBuf::new()
        }
        None => std::env::temp_dir(),
    };
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(Config {
        mapping,
        limits,
        spool_dir,
        files,
    })
}

/// A relative table path is relative to the rules file's directory, as in
/// the rest of the rules file.
fn resolve_spec(dir: &Path, spec: &str) -> String {
    match spec.split_once(':') {
        Some((kind, path)) if !path.is_empty() && !path.starts_with('/') && !path.contains(':') => {
            format!("{kind}:{}", dir.join(path).display())
        }
        _ => spec.to_string(),
    }
}

/// The files a table spec reads, for the identity check.
pub fn table_files(spec: &str) -> Vec<PathBuf> {
    let name = spec.rsplit(':').next().unwrap_or(spec);
    if name.is_empty() {
        return Vec::new();
    }
    let p = PathBuf::from(name);
    if spec.starts_with("cdb:") {
        vec![PathBuf::from(format!("{name}.cdb"))]
    } else {
        vec![p]
    }
}

fn check_template(t: &str) -> Result<(), String> {
    if !t.starts_with('/') {
        return Err("must be an absolute path".into());
    }
    let mut it = t.chars();
    while let Some(c) = it.next() {
        if c == '%' {
            match it.next() {
                Some('u' | 'n' | 'd' | '%') => {}
                Some(o) => return Err(format!("unknown %{o} (known: %u, %n, %d, %%)")),
                None => return Err("a lone % at the end".into()),
            }
        }
    }
    Ok(())
}

/// One part of an address as a path component: refused when empty, `.`,
/// containing `..` or `/`, or a control character.
fn safe_part(p: &str) -> bool {
    !p.is_empty()
        && p != "."
        && !p.contains("..")
        && !p.contains('/')
        && !p.chars().any(char::is_control)
}

/// Splits `address` (without angle brackets) into the lower-cased local
/// part, the local part without `+detail` and the domain.
fn parts(address: &str, delimiter: &str) -> (String, String, String) {
    let lower = address.to_lowercase();
    let (local, domain) = match lower.rsplit_once('@') {
        Some((l, d)) => (l.to_string(), d.to_string()),
        None => (lower.clone(), String::new()),
    };
    let user = delimiter
        .chars()
        .filter_map(|c| local.find(c))
        .min()
        .filter(|&i| i > 0)
        .map_or(local.clone(), |i| local[..i].to_string());
    (local, user, domain)
}

impl Config {
    /// Where `address` (the RCPT TO path, without angle brackets) is
    /// delivered. `delimiter` is the system file's recipient_delimiter.
    pub fn resolve(&self, address: &str, delimiter: &str) -> Resolved {
        let (local, user, domain) = parts(address, delimiter);
        match &self.mapping {
            Mapping::Template(t) => {
                let whole = address.to_lowercase();
                if domain.is_empty() && (t.contains("%d") || t.contains("%u")) {
                    return Resolved::Bad("the address has no domain".into());
                }
                for p in [&whole, &user, &domain] {
                    if !p.is_empty() && !safe_part(p) {
                        return Resolved::Bad(format!("{p:?} cannot be part of a path"));
                    }
                }
                let mut out = String::new();
                let mut it = t.chars();
                while let Some(c) = it.next() {
                    if c != '%' {
                        out.push(c);
                        continue;
                    }
                    match it.next() {
                        Some('u') => out.push_str(&whole),
                        Some('n') => out.push_str(&user),
                        Some('d') => out.push_str(&domain),
                        _ => out.push('%'),
                    }
                }
                Resolved::Maildir(PathBuf::from(out))
            }
            Mapping::Maps { tables, base } => {
                // As virtual(8): the address, then without +detail, then @domain.
                let mut keys = vec![address.to_string()];
                if user != local {
                    keys.push(format!("{user}@{domain}"));
                }
                if !domain.is_empty() {
                    keys.push(format!("@{domain}"));
                }
                for key in &keys {
                    for t in tables {
                        match t.lookup(key) {
                            Ok(Some(r)) => return maildir_of(base, &r),
                            Ok(None) => {}
                            Err(d) => return Resolved::Failed(format!("lookup of {key}: {d}")),
                        }
                    }
                }
                Resolved::Unknown
            }
            Mapping::SystemUsers => {
                if !safe_part(&user) {
                    return Resolved::Bad(format!("{user:?} cannot be a user name"));
                }
                // root is never delivered to (exec mode refuses it too).
                match nix::unistd::User::from_name(&user) {
                    Ok(Some(u)) if !u.uid.is_root() => Resolved::User(user),
                    Ok(_) => Resolved::Unknown,
                    Err(e) => Resolved::Failed(format!("looking up user {user}: {e}")),
                }
            }
        }
    }
}

/// A table's result under `base`: a path relative to it (a trailing `/`,
/// Postfix's mark of a Maildir, is allowed and changes nothing).
fn maildir_of(base: &Path, result: &str) -> Resolved {
    let r = result.trim();
    let rel = r.trim_start_matches('/').trim_end_matches('/');
    if rel.is_empty()
        || rel.split('/').any(|c| c == ".." || c == ".")
        || rel.chars().any(char::is_control)
    {
        return Resolved::Failed(format!(
            "mailbox_maps result {r:?} is not a path under mailbox_base"
        ));
    }
    Resolved::Maildir(base.join(rel))
}

/// The identity of a file (`None`: it cannot be read now), for the reload
/// check: device, inode, size, mtime and ctime, as the caches compare.
pub type Identity = Option<(u64, u64, u64, i64, i64, i64, i64)>;

pub fn identity(p: &Path) -> Identity {
    let m = std::fs::metadata(p).ok()?;
    Some((
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(t: &str) -> Config {
        Config {
            mapping: Mapping::Template(t.into()),
            limits: Limits::default(),
            spool_dir: PathBuf::from("/tmp"),
            files: vec![],
        }
    }

    #[test]
    fn template_expands_lower_cased_parts() {
        let c = template("/v/%d/%n/Maildir");
        assert_eq!(
            c.resolve("Alice+Lists@Example.COM", "+"),
            Resolved::Maildir("/v/example.com/alice/Maildir".into())
        );
        let c = template("/v/%u/Maildir");
        assert_eq!(
            c.resolve("bob@x.test", "+"),
            Resolved::Maildir("/v/bob@x.test/Maildir".into())
        );
        for bad in [
            "../x@a.test",
            "a/b@x.test",
            "a@..",
            "a\u{1}b@x.test",
            "a@x/y",
        ] {
            assert!(
                matches!(template("/v/%d/%n").resolve(bad, "+"), Resolved::Bad(_)),
                "{bad}"
            );
        }
        assert!(matches!(
            template("/v/%d/%n").resolve("nodomain", "+"),
            Resolved::Bad(_)
        ));
    }

    #[test]
    fn templates_are_checked() {
        assert!(check_template("/v/%d/%n/Maildir").is_ok());
        assert!(check_template("v/%d").is_err());
        assert!(check_template("/v/%x").is_err());
        assert!(check_template("/v/%").is_err());
    }

    #[test]
    fn map_results_stay_under_the_base() {
        let b = Path::new("/var/vmail");
        assert_eq!(
            maildir_of(b, "example.com/alice/"),
            Resolved::Maildir("/var/vmail/example.com/alice".into())
        );
        assert!(matches!(
            maildir_of(b, "example.com/../../etc/"),
            Resolved::Failed(_)
        ));
        assert!(matches!(maildir_of(b, "/"), Resolved::Failed(_)));
    }
}
