//! access(5) policy: which keys to look up, in which order, and what a
//! result means — once, for every table type, as Postfix's smtpd_check.c
//! does it (check_mail_access, check_domain_access, check_addr_access,
//! check_namadr_access, check_table_result).
//!
//! A list of tables behaves like consecutive `check_*_access` restrictions:
//! each table is searched with the access(5) key order; the first key found
//! in a table ends that table's search (DUNNO: "pretend not found, and do not
//! try shorter keys"); then the next table. Hits are returned in order; the
//! search stops after the first terminal one (see [`AccessAction::is_terminal`]).
//!
//! Key orders (fixed tables get every key; pattern tables — regexp, pcre,
//! cidr — only the whole string, unmodified; keys are passed to
//! [`Table::lookup`] unmodified, fixed tables fold case themselves; empty
//! keys are never looked up, as in Postfix's maps_find()):
//! - Address `user+ext@a.b.c` (mail_addr_find with smtpd's strategy):
//!   `user+ext@a.b.c`, `user@a.b.c`, then the domain and its parents
//!   (`a.b.c`, `b.c`, `c` with parent_domain_matches_subdomains; else
//!   `a.b.c`, `.b.c`, `.c`), then `user+ext@`, `user@`. The extension is
//!   split at the first character of `recipient_delimiter` found in the
//!   localpart (any one of its characters), never for `postmaster`,
//!   `mailer-daemon`, `double-bounce`, never when the result would have an
//!   empty localpart, and (when `-` is a delimiter) not for `owner-*` or
//!   `*-request`. A localpart that needs RFC 5322 quoting is looked up in
//!   quoted form first, then unquoted (Postfix's external-first rule).
//!   The null sender (empty or `<>`) is looked up as `<>` only, in every
//!   table. An address without `@` is not looked up at all: smtpd first
//!   qualifies it with `@$myorigin`, which this module does not know, and
//!   Postfix's check_mail_access() skips an address that has no `@domain`.
//! - HELO `a.b.c`: `a.b.c`, then parents as above; a numeric name (an IP
//!   address) only as itself.
//! - Client: the hostname as for HELO (not when absent or empty; the name
//!   `unknown` IS looked up, as smtpd does for an unverified client), then
//!   the address: IPv4 `1.2.3.4`, `1.2.3`, `1.2`, `1`; IPv6 in inet_ntop(3)
//!   compressed form with trailing `:group`s removed one at a time, as
//!   split_at_right() does: `2001:db8::1`, `2001:db8:`, `2001:db8`, `2001`.
//!   The address is normalised first (brackets and `IPv6:` removed,
//!   IPv4-mapped IPv6 turned into IPv4, IPv6 compressed like inet_ntop).
//!
//! Results ([`parse_action`], keywords case-insensitive as in Postfix):
//! `OK`, `RELAY`, all-numerical and the restriction `permit` → Ok;
//! `REJECT [text]` → 554 5.7.1 "Access denied"; `DEFER [text]` → 450 4.7.1;
//! `DEFER_IF_PERMIT`/`DEFER_IF_REJECT` → 450 4.7.1 "Service unavailable";
//! `4NN text`/`5NN text` → Defer/Reject with that code; an RFC 3463 status at
//! the start of the text is used, with its class forced to the code's class
//! as smtpd_check_reject() does; `DUNNO`, `DISCARD`, `HOLD`, `PREPEND`,
//! `WARN`, `INFO`; our delivery-stage `JUNK [text]` and `FOLDER name`.
//! Actions smtpd performs before or while queueing (`FILTER`, `REDIRECT`,
//! `BCC`, `HANGUP`, restriction names and lists) are [`AccessAction::Ignored`];
//! a result naming a lookup table (`type:name`) is Postfix's "server
//! configuration error", a 451 4.3.5 Defer.
//!
//! A lookup that fails, or a table that returns an empty result (which
//! Postfix's maps_find() treats as a configuration error), is returned as
//! the `Err`: smtpd would answer 451 4.3.5 there.
//!
//! Where this module knowingly differs from smtpd:
//! - `HOLD`, `DEFER_IF_PERMIT` and `DEFER_IF_REJECT` end the search here. In
//!   smtpd they only flag the message (HOLD) or arm a conditional deferral,
//!   and the restrictions go on (a later table may still reject).
//! - smtpd_dsn_fix() is not applied. access(5): for a sender check smtpd
//!   turns a recipient status (4.1.1-4.1.6) into the corresponding sender
//!   status and vice versa, and for client/HELO checks it turns address
//!   statuses into a generic one (e.g. 4.0.0). The functions here do not
//!   know which check the caller runs; a caller that knows may do it.
//! - Restriction names and lists in a result (`permit_mynetworks, reject`,
//!   restriction classes) are not evaluated: they are [`AccessAction::Ignored`],
//!   except the single restriction `permit`, which is Ok.
//! - `421`/`521` ("disconnect") are plain Defer/Reject.
//! - A PREPEND text must be a header line deliver may write
//!   (`crate::input::message::valid_header_line`: no white space before the colon,
//!   no control character but tab); smtpd's is_header() also takes
//!   `name : value`. Any other PREPEND is [`AccessAction::Ignored`].

use crate::output::diag::Diag;
use crate::output::exit::{dsn_split, DEFER_STATUS, REJECT_STATUS};
use crate::policy::maps::Table;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The null sender's lookup key (Postfix's smtpd_null_access_lookup_key).
pub const NULL_SENDER_KEY: &str = "<>";
/// Postfix's access_map_reject_code default.
pub const ACCESS_MAP_REJECT_CODE: u16 = 554;
/// Postfix's access_map_defer_code default.
pub const ACCESS_MAP_DEFER_CODE: u16 = 450;

/// Settings that change the key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessOptions {
    /// Postfix's recipient_delimiter: any one of these characters separates
    /// the extension. Empty: no extensions. Default `+`.
    pub recipient_delimiter: String,
    /// Whether `smtpd_access_maps` is in parent_domain_matches_subdomains:
    /// `example.com` then also matches subdomains. Default true.
    pub parent_domain_matches_subdomains: bool,
}

impl Default for AccessOptions {
    fn default() -> Self {
        AccessOptions {
            recipient_delimiter: "+".to_string(),
            parent_domain_matches_subdomains: true,
        }
    }
}

/// One lookup attempted, for `--test` traces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The table's spec.
    pub table: String,
    /// The key as passed to the table.
    pub key: String,
    /// What the table returned.
    pub result: Option<String>,
}

/// What an access table result means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessAction {
    /// OK, RELAY, all-numerical, `permit`: accept; terminal.
    Ok,
    /// DUNNO: this table says nothing; the next table is searched.
    Dunno,
    /// 5NN or REJECT: terminal.
    Reject {
        status: String,
        code: u16,
        text: String,
    },
    /// 4NN, DEFER, DEFER_IF_PERMIT, DEFER_IF_REJECT: terminal.
    Defer {
        status: String,
        code: u16,
        text: String,
    },
    /// `DISCARD [text]`: terminal.
    Discard(String),
    /// `HOLD [text]`: terminal here. (smtpd itself goes on evaluating after
    /// HOLD, which only flags the message; see the module documentation.)
    Hold(String),
    /// `PREPEND name: value`: not terminal. The text is a header line deliver
    /// writes (`crate::input::message::valid_header_line`).
    Prepend(String),
    /// `WARN [text]`: log; not terminal.
    Warn(String),
    /// `INFO [text]`: log; not terminal.
    Info(String),
    /// `JUNK [text]`: file as junk; terminal (delivery-stage extension).
    Junk(String),
    /// `FOLDER name`: file into that folder; terminal (delivery-stage extension).
    Folder(String),
    /// Not honourable after queueing (BCC, FILTER, REDIRECT, HANGUP,
    /// restriction names such as permit_mynetworks, a malformed PREPEND or
    /// FOLDER): the raw result; not terminal (treated as DUNNO).
    Ignored(String),
}

impl AccessAction {
    /// True when no later table is consulted after this result.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            AccessAction::Ok
                | AccessAction::Reject { .. }
                | AccessAction::Defer { .. }
                | AccessAction::Discard(_)
                | AccessAction::Hold(_)
                | AccessAction::Junk(_)
                | AccessAction::Folder(_)
        )
    }
}

/// A table result that was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The table's spec.
    pub table: String,
    /// The key that was found.
    pub key: String,
    /// The result as the table returned it.
    pub raw: String,
    /// What it means.
    pub action: AccessAction,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{b}' | '\u{c}' | '\r')
}

/// smtpd_check_reject(): a reply with the status class forced to the code's.
fn reply(code: u16, def_dsn: &str, text: &str, def_text: &str) -> (String, u16, String) {
    let (mut status, rest) = dsn_split(def_dsn, text);
    let class = char::from(b'0' + (code / 100) as u8);
    status.replace_range(0..1, &class.to_string());
    let t = if rest.is_empty() { def_text } else { rest };
    (status, code, crate::output::text::for_reply(t))
}

/// Translate one table result into an action, as check_table_result() does.
pub fn parse_action(raw: &str) -> AccessAction {
    let cmd_len = raw.find([' ', '\t']).unwrap_or(raw.len());
    let cmd = &raw[..cmd_len];
    let text = raw[cmd_len..].trim_start_matches(is_space);
    let is = |kw: &str| cmd.eq_ignore_ascii_case(kw);
    if is("DUNNO") {
        return AccessAction::Dunno;
    }
    if is("REJECT") {
        let (status, code, text) =
            reply(ACCESS_MAP_REJECT_CODE, REJECT_STATUS, text, "Access denied");
        return AccessAction::Reject { status, code, text };
    }
    if is("DEFER") {
        let (status, code, text) =
            reply(ACCESS_MAP_DEFER_CODE, DEFER_STATUS, text, "Access denied");
        return AccessAction::Defer { status, code, text };
    }
    if is("HANGUP") || is("FILTER") || is("REDIRECT") || is("BCC") {
        return AccessAction::Ignored(raw.to_string());
    }
    if is("INFO") {
        return AccessAction::Info(text.to_string());
    }
    if is("WARN") {
        return AccessAction::Warn(text.to_string());
    }
    if is("HOLD") {
        return AccessAction::Hold(text.to_string());
    }
    if is("DISCARD") {
        return AccessAction::Discard(text.to_string());
    }
    if is("DEFER_IF_PERMIT") || is("DEFER_IF_REJECT") {
        let (status, code, text) = reply(
            ACCESS_MAP_DEFER_CODE,
            DEFER_STATUS,
            text,
            "Service unavailable",
        );
        return AccessAction::Defer { status, code, text };
    }
    if is("PREPEND") {
        return if crate::input::message::valid_header_line(text) {
            AccessAction::Prepend(text.to_string())
        } else {
            AccessAction::Ignored(raw.to_string())
        };
    }
    if is("JUNK") {
        return AccessAction::Junk(text.to_string());
    }
    if is("FOLDER") {
        return if text.is_empty() {
            AccessAction::Ignored(raw.to_string())
        } else {
            AccessAction::Folder(text.to_string())
        };
    }
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        return AccessAction::Ok;
    }
    let b = raw.as_bytes();
    if cmd_len == 3
        && !text.is_empty()
        && matches!(b[0], b'4' | b'5')
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
    {
        let code: u16 = cmd.parse().unwrap_or(0);
        let def = if b[0] == b'4' {
            DEFER_STATUS
        } else {
            REJECT_STATUS
        };
        let (status, code, text) = reply(code, def, text, "Access denied");
        return if b[0] == b'4' {
            AccessAction::Defer { status, code, text }
        } else {
            AccessAction::Reject { status, code, text }
        };
    }
    if is("OK") || is("RELAY") {
        return AccessAction::Ok;
    }
    if raw.contains(':') {
        // "do not specify lookup tables inside SMTPD access maps".
        return AccessAction::Defer {
            status: crate::output::exit::Kind::Config.status().to_string(),
            code: 451,
            text: "Server configuration error".to_string(),
        };
    }
    let words: Vec<&str> = raw
        .split(|c: char| c == ',' || is_space(c))
        .filter(|w| !w.is_empty())
        .collect();
    match words.as_slice() {
        // "access table entry has empty value": smtpd treats it as OK.
        [] => AccessAction::Ok,
        [w] if w.eq_ignore_ascii_case("permit") => AccessAction::Ok,
        _ => AccessAction::Ignored(raw.to_string()),
    }
}

/// One key to try, and whether pattern tables see it (Postfix's FULL
/// lookups) or only fixed tables (PARTIAL, DICT_FLAG_FIXED).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    key: String,
    full: bool,
}

fn push(keys: &mut Vec<Key>, key: &str, full: bool) {
    if !key.is_empty() {
        keys.push(Key {
            key: key.to_string(),
            full,
        });
    }
}

/// Search `tables` with `keys`, as consecutive check_*_access restrictions.
fn search(
    tables: &[Box<dyn Table>],
    keys: &[Key],
    probes: &mut Vec<Probe>,
) -> Result<Vec<Hit>, Diag> {
    let mut hits = Vec::new();
    for t in tables {
        let pattern = t.is_pattern();
        for k in keys {
            if pattern && !k.full {
                continue;
            }
            let found = t.lookup(&k.key).map_err(|mut e| {
                e.msg = format!("{} (looking up \"{}\" in {})", e.msg, k.key, t.spec());
                e
            })?;
            probes.push(Probe {
                table: t.spec().to_string(),
                key: k.key.clone(),
                result: found.clone(),
            });
            if let Some(raw) = found {
                if raw.is_empty() {
                    return Err(Diag {
                        file: t.spec().into(),
                        cause: crate::output::exit::Cause::Input,
                        line: 0,
                        col: 0,
                        msg: format!(
                            "lookup of \"{}\" returns an empty string result; a table should return no result when a key is not found",
                            k.key
                        ),
                    });
                }
                let action = parse_action(&raw);
                let terminal = action.is_terminal();
                hits.push(Hit {
                    table: t.spec().to_string(),
                    key: k.key.clone(),
                    raw,
                    action,
                });
                if terminal {
                    return Ok(hits);
                }
                break;
            }
        }
    }
    Ok(hits)
}

/// Postfix valid_ipv4_hostaddr(): four decimal octets (leading zeros
/// allowed), none above 255, and a first octet of 0 only in 0.0.0.0.
fn valid_ipv4_hostaddr(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return false;
    }
    for p in &parts {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        if p.trim_start_matches('0').len() > 3 || p.parse::<u32>().map_or(true, |v| v > 255) {
            return false;
        }
    }
    let first_zero = parts[0].bytes().all(|b| b == b'0');
    !first_zero || s.bytes().all(|b| b == b'0' || b == b'.')
}

/// Postfix valid_hostaddr(): an IPv4 or IPv6 address (without brackets).
fn valid_hostaddr(s: &str) -> bool {
    if s.contains(':') {
        s.parse::<Ipv6Addr>().is_ok()
    } else {
        valid_ipv4_hostaddr(s)
    }
}

/// check_domain_access() keys: the name and its parent domains.
fn domain_keys(
    keys: &mut Vec<Key>,
    domain: &str,
    pdms: bool,
    numeric_stop: bool,
    first_full: bool,
) {
    let mut name = 0usize;
    let mut full = first_full;
    let numeric = numeric_stop && valid_hostaddr(domain);
    while name < domain.len() {
        push(keys, &domain[name..], full);
        full = false;
        // "Don't apply subdomain magic to numerical hostnames."
        if numeric {
            break;
        }
        // Past the first character (which may be more than one byte).
        let first = domain[name..].chars().next().map_or(1, char::len_utf8);
        let Some(k) = domain[name + first..].find('.') else {
            break;
        };
        let next = name + first + k;
        name = if pdms { next + 1 } else { next };
    }
}

/// inet_ntop(3) form of an address; IPv4-mapped IPv6 becomes IPv4 (as
/// smtpd does). `None` when `s` is not an address.
fn normalize_addr(s: &str) -> Option<String> {
    let mut t = s.trim();
    if let Some(inner) = t.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        t = inner;
    }
    if t.len() > 5 && t.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("ipv6:")) {
        t = &t[5..];
    }
    if let Ok(v4) = t.parse::<Ipv4Addr>() {
        return Some(v4.to_string());
    }
    let v6 = t.parse::<Ipv6Addr>().ok()?;
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4.to_string());
    }
    let w = v6.segments();
    if w[..6].iter().all(|&x| x == 0) && w[6] != 0 {
        // glibc prints IPv4-compatible addresses with a dotted tail.
        let o = v6.octets();
        return Some(format!("::{}.{}.{}.{}", o[12], o[13], o[14], o[15]));
    }
    Some(v6.to_string())
}

/// check_addr_access() keys: the address, then shorter networks.
fn addr_keys(keys: &mut Vec<Key>, addr: &str) {
    let a = normalize_addr(addr).unwrap_or_else(|| addr.to_string());
    let delim = if a.contains(':') { ':' } else { '.' };
    let mut cur = a.as_str();
    let mut full = true;
    loop {
        push(keys, cur, full);
        full = false;
        match cur.rfind(delim) {
            Some(i) => cur = &cur[..i],
            None => break,
        }
    }
}

/// quote_822_local(): the address with its localpart quoted when it is not
/// an RFC 822 dot-string. `with_domain`: the localpart ends at the last `@`.
fn quote_822_local(addr: &str, with_domain: bool) -> String {
    let (prefix, rest) = match addr.find(':') {
        Some(c) if addr.starts_with('@') => addr.split_at(c + 1),
        _ => ("", addr),
    };
    let end = if with_domain {
        rest.rfind('@').unwrap_or(rest.len())
    } else {
        rest.len()
    };
    let local = &rest[..end];
    let dot_string = !local.is_empty()
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && !local.chars().any(|c| {
            c == ' '
                || c.is_ascii_control()
                || matches!(
                    c,
                    '(' | ')' | '<' | '>' | '@' | ',' | ';' | ':' | '\\' | '"' | '[' | ']'
                )
        });
    if dot_string {
        return addr.to_string();
    }
    let mut q = String::with_capacity(addr.len() + 4);
    q.push_str(prefix);
    q.push('"');
    for c in local.chars() {
        if c == '"' || c == '\\' || c == '\r' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q.push_str(&rest[end..]);
    q
}

/// find_addr() with MA_FORM_EXTERNAL_FIRST: quoted form, then as given.
fn addr_forms(keys: &mut Vec<Key>, addr: &str, full: bool) {
    let ext = quote_822_local(addr, true);
    push(keys, &ext, full);
    if ext != addr {
        push(keys, addr, full);
    }
}

/// split_addr(): the localpart without its extension, if it has one.
pub(crate) fn strip_extension<'a>(local: &'a str, delims: &str) -> Option<&'a str> {
    if delims.is_empty() {
        return None;
    }
    for special in ["postmaster", "mailer-daemon", "double-bounce"] {
        if local.eq_ignore_ascii_case(special) {
            return None;
        }
    }
    if delims.contains('-') {
        let lower = local.to_ascii_lowercase();
        if lower.starts_with("owner-") || (local.len() > 8 && lower.ends_with("-request")) {
            return None;
        }
    }
    let pos = local.find(|c: char| delims.contains(c))?;
    if pos == 0 {
        return None;
    }
    Some(&local[..pos])
}

/// The keys of check_mail_access() for one address.
fn address_keys(addr: &str, opts: &AccessOptions) -> Vec<Key> {
    let mut keys = Vec::new();
    let mut a = addr;
    if let Some(inner) = a.strip_prefix('<').and_then(|x| x.strip_suffix('>')) {
        a = inner;
    }
    if a.is_empty() {
        push(&mut keys, NULL_SENDER_KEY, true);
        return keys;
    }
    let Some(at) = a.rfind('@') else {
        return keys;
    };
    let local = &a[..at];
    let domain = &a[at + 1..];
    let bare_local = strip_extension(local, &opts.recipient_delimiter);
    // user+ext@domain, user@domain
    addr_forms(&mut keys, a, true);
    if let Some(bl) = bare_local {
        addr_forms(&mut keys, &format!("{bl}@{domain}"), false);
    }
    // domain and parents
    domain_keys(
        &mut keys,
        domain,
        opts.parent_domain_matches_subdomains,
        false,
        false,
    );
    // user+ext@, user@
    addr_forms(&mut keys, &format!("{local}@"), false);
    if let Some(bl) = bare_local {
        addr_forms(&mut keys, &format!("{bl}@"), false);
    }
    keys
}

/// check_sender_access / check_recipient_access over `tables`.
pub fn check_address(
    tables: &[Box<dyn Table>],
    addr: &str,
    opts: &AccessOptions,
    probes: &mut Vec<Probe>,
) -> Result<Vec<Hit>, Diag> {
    search(tables, &address_keys(addr, opts), probes)
}

/// check_helo_access over `tables`.
pub fn check_helo(
    tables: &[Box<dyn Table>],
    helo: &str,
    opts: &AccessOptions,
    probes: &mut Vec<Probe>,
) -> Result<Vec<Hit>, Diag> {
    let mut keys = Vec::new();
    domain_keys(
        &mut keys,
        helo,
        opts.parent_domain_matches_subdomains,
        true,
        true,
    );
    search(tables, &keys, probes)
}

/// check_client_access over `tables`: hostname keys, then address keys.
pub fn check_client(
    tables: &[Box<dyn Table>],
    hostname: Option<&str>,
    address: Option<&str>,
    opts: &AccessOptions,
    probes: &mut Vec<Probe>,
) -> Result<Vec<Hit>, Diag> {
    let mut keys = Vec::new();
    if let Some(h) = hostname {
        domain_keys(
            &mut keys,
            h,
            opts.parent_domain_matches_subdomains,
            true,
            true,
        );
    }
    if let Some(a) = address {
        addr_keys(&mut keys, a);
    }
    search(tables, &keys, probes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ks(keys: &[Key]) -> Vec<String> {
        keys.iter()
            .map(|k| {
                if k.full {
                    format!("{}*", k.key)
                } else {
                    k.key.clone()
                }
            })
            .collect()
    }

    #[test]
    fn address_key_order() {
        let o = AccessOptions::default();
        assert_eq!(
            ks(&address_keys("user+ext@a.b.c", &o)),
            [
                "user+ext@a.b.c*",
                "user@a.b.c",
                "a.b.c",
                "b.c",
                "c",
                "user+ext@",
                "user@"
            ]
        );
        let o2 = AccessOptions {
            parent_domain_matches_subdomains: false,
            ..o.clone()
        };
        assert_eq!(
            ks(&address_keys("user@a.b.c", &o2)),
            ["user@a.b.c*", "a.b.c", ".b.c", ".c", "user@"]
        );
        assert_eq!(ks(&address_keys("", &o)), ["<>*"]);
        assert_eq!(ks(&address_keys("<>", &o)), ["<>*"]);
        assert!(address_keys("nodomain", &o).is_empty());
        assert_eq!(
            ks(&address_keys("john doe@x", &o)),
            [
                "\"john doe\"@x*",
                "john doe@x*",
                "x",
                "\"john doe\"@",
                "john doe@"
            ]
        );
    }

    #[test]
    fn extension_rules() {
        assert_eq!(strip_extension("user+ext", "+"), Some("user"));
        assert_eq!(strip_extension("user-ext+x", "+-"), Some("user"));
        assert_eq!(strip_extension("+ext", "+"), None);
        assert_eq!(strip_extension("user", "+"), None);
        assert_eq!(strip_extension("user+ext", ""), None);
        assert_eq!(strip_extension("Postmaster", "+"), None);
        assert_eq!(strip_extension("owner-list", "-"), None);
        assert_eq!(strip_extension("list-request", "-"), None);
        assert_eq!(strip_extension("owner-list+x", "+"), Some("owner-list"));
    }

    #[test]
    fn helo_and_client_keys() {
        let mut k = Vec::new();
        domain_keys(&mut k, "mail.example.com", true, true, true);
        assert_eq!(ks(&k), ["mail.example.com*", "example.com", "com"]);
        let mut k = Vec::new();
        domain_keys(&mut k, "1.2.3.4", true, true, true);
        assert_eq!(ks(&k), ["1.2.3.4*"]);
        let mut k = Vec::new();
        domain_keys(&mut k, "a.b.", false, true, true);
        assert_eq!(ks(&k), ["a.b.*", ".b.", "."]);
        let mut k = Vec::new();
        addr_keys(&mut k, "2001:DB8:0:0::1");
        assert_eq!(ks(&k), ["2001:db8::1*", "2001:db8:", "2001:db8", "2001"]);
        let mut k = Vec::new();
        addr_keys(&mut k, "::1");
        assert_eq!(ks(&k), ["::1*", ":"]);
        let mut k = Vec::new();
        addr_keys(&mut k, "[IPv6:::ffff:10.0.0.1]");
        assert_eq!(ks(&k), ["10.0.0.1*", "10.0.0", "10.0", "10"]);
        assert_eq!(normalize_addr("::1.2.3.4").as_deref(), Some("::1.2.3.4"));
        assert_eq!(
            normalize_addr("fe80:0:0:0:0:0:0:1").as_deref(),
            Some("fe80::1")
        );
        assert_eq!(normalize_addr("unknown"), None);
    }

    #[test]
    fn valid_hostaddr_like_postfix() {
        assert!(valid_hostaddr("1.2.3.4"));
        assert!(valid_hostaddr("01.2.3.4"));
        assert!(valid_hostaddr("0.0.0.0"));
        assert!(!valid_hostaddr("0.1.2.3"));
        assert!(!valid_hostaddr("1.2.3.256"));
        assert!(!valid_hostaddr("1.2.3"));
        assert!(!valid_hostaddr("1.2.3.4."));
        assert!(valid_hostaddr("::1"));
        assert!(!valid_hostaddr("[1.2.3.4]"));
    }
}
