//! The rules file as written (serde model). Every value that can be wrong
//! keeps its span, so problems are reported as `file:line:col`.

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// Declares the condition keys once, for `[[rule]]` tables and for the
/// nested `all`/`any`/`not` tables, which cannot use `#[serde(flatten)]`
/// together with `deny_unknown_fields`.
macro_rules! condition_struct {
    ($(#[$m:meta])* pub struct $name:ident { $($extra:tt)* }) => {
        $(#[$m])*
        #[derive(Debug, Deserialize, Serialize, Default, Clone)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Header name; with `match`, any occurrence's decoded value must
            /// match; alone, the header must exist.
            pub header: Option<Spanned<String>>,
            #[serde(rename = "match")]
            pub pattern: Option<Spanned<String>>,
            pub sender: Option<Spanned<String>>,
            pub recipient: Option<Spanned<String>>,
            pub client_address: Option<Spanned<String>>,
            pub client_hostname: Option<Spanned<String>>,
            pub helo: Option<Spanned<String>>,
            pub body: Option<Spanned<String>>,
            pub size_over: Option<u64>,
            pub size_under: Option<u64>,
            /// Whether a header limit was reached.
            pub header_limit: Option<bool>,
            /// The parsed addresses of headers or of the envelope.
            pub address: Option<Spanned<AddressSpec>>,
            pub all: Option<Vec<CondSpec>>,
            pub any: Option<Vec<CondSpec>>,
            pub not: Option<Box<CondSpec>>,
            $($extra)*
        }

        impl $name {
            /// The condition keys, borrowed.
            pub fn cond(&self) -> CondRef<'_> {
                CondRef {
                    header: &self.header,
                    pattern: &self.pattern,
                    regexes: [
                        (&self.sender, "sender"),
                        (&self.recipient, "recipient"),
                        (&self.client_address, "client_address"),
                        (&self.client_hostname, "client_hostname"),
                        (&self.helo, "helo"),
                        (&self.body, "body"),
                    ],
                    size_over: self.size_over,
                    size_under: self.size_under,
                    header_limit: self.header_limit,
                    address: &self.address,
                    all: &self.all,
                    any: &self.any,
                    not: &self.not,
                }
            }
        }
    };
}

/// The condition keys of a `[[rule]]` or a nested table, borrowed.
pub struct CondRef<'a> {
    pub header: &'a Option<Spanned<String>>,
    pub pattern: &'a Option<Spanned<String>>,
    /// The regex-valued keys with their names, in the order above.
    pub regexes: [(&'a Option<Spanned<String>>, &'static str); 6],
    pub size_over: Option<u64>,
    pub size_under: Option<u64>,
    pub header_limit: Option<bool>,
    pub address: &'a Option<Spanned<AddressSpec>>,
    pub all: &'a Option<Vec<CondSpec>>,
    pub any: &'a Option<Vec<CondSpec>>,
    pub not: &'a Option<Box<CondSpec>>,
}

/// One header name or several.
#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(untagged)]
pub enum Names {
    One(String),
    Many(Vec<String>),
}

impl Names {
    pub fn list(&self) -> &[String] {
        match self {
            Names::One(n) => std::slice::from_ref(n),
            Names::Many(v) => v,
        }
    }
}

/// `address = { header|envelope, part, is|match|table }`.
#[derive(Debug, Deserialize, Serialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct AddressSpec {
    pub header: Option<Spanned<Names>>,
    /// "sender" or "recipient".
    pub envelope: Option<Spanned<String>>,
    /// "all" (default), "localpart", "domain", "user", "detail".
    pub part: Option<Spanned<String>>,
    pub is: Option<Spanned<String>>,
    #[serde(rename = "match")]
    pub pattern: Option<Spanned<String>>,
    /// A table spec, looked up with access(5)'s address forms.
    pub table: Option<Spanned<String>>,
}

condition_struct! {
    /// A nested condition table.
    pub struct CondSpec {}
}

condition_struct! {
    /// One `[[rule]]`.
    pub struct RuleSpec {
        pub name: Option<Spanned<String>>,
        pub score: Option<f64>,
        pub folder: Option<Spanned<String>>,
        pub junk: Option<Spanned<bool>>,
        pub discard: Option<Spanned<bool>>,
        pub inbox: Option<Spanned<bool>>,
        pub reject: Option<Spanned<String>>,
        pub defer: Option<Spanned<String>>,
        /// Maildir flags for the filing action: seen, answered, flagged,
        /// deleted, draft.
        pub flags: Option<Spanned<Vec<Spanned<String>>>>,
        /// With folder / inbox / junk / pipe: a copy; the rules go on.
        pub copy: Option<Spanned<bool>>,
        /// One `Name: value` line or a list of them (an edit).
        pub add_header: Option<Spanned<OneOrMany>>,
        /// Text put before the Subject (an edit).
        pub subject_prefix: Option<Spanned<String>>,
        /// Header names whose fields are removed (an edit).
        pub remove_header: Option<Spanned<OneOrMany>>,
        /// A program (argv, no shell) the message passes through.
        pub filter: Option<Spanned<Vec<Spanned<String>>>>,
        /// A program (argv, no shell) the message is delivered to.
        pub pipe: Option<Spanned<Vec<Spanned<String>>>>,
        /// Addresses the message is forwarded to (through sendmail); with
        /// `copy = true` a copy, and the rules go on.
        pub forward: Option<Spanned<Vec<Spanned<String>>>>,
        /// An auto-reply (RFC 5230); the rules go on.
        pub vacation: Option<Spanned<VacationSpec>>,
        /// A message seen within the window (RFC 7352) is discarded or
        /// filed into a folder; otherwise the rule does not match.
        pub duplicate: Option<Spanned<DuplicateSpec>>,
    }
}

/// `vacation = { days, subject, body, addresses, from, start, end }`.
#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct VacationSpec {
    pub days: Option<Spanned<i64>>,
    pub subject: Option<Spanned<String>>,
    pub body: Spanned<String>,
    pub addresses: Option<Vec<Spanned<String>>>,
    pub from: Option<Spanned<String>>,
    /// `YYYY-MM-DD`, the first day replies go.
    pub start: Option<Spanned<String>>,
    /// `YYYY-MM-DD`, the last day replies go.
    pub end: Option<Spanned<String>>,
}

/// `duplicate = { window_days, action = "discard" }` or
/// `duplicate = { window_days, folder = "Dups" }`.
#[derive(Debug, Deserialize, Serialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct DuplicateSpec {
    pub window_days: Option<Spanned<i64>>,
    pub action: Option<Spanned<String>>,
    pub folder: Option<Spanned<String>>,
}

/// A string or a list of strings (`add_header`, `remove_header`).
#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> &[String] {
        match self {
            OneOrMany::One(s) => std::slice::from_ref(s),
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct CustomSpamSpec {
    pub header: Spanned<String>,
    /// Regex whose first capture group is the score.
    #[serde(rename = "match")]
    pub pattern: Spanned<String>,
    /// Optional regex that, when it matches, flags the message as spam.
    pub flag: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Serialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct SpamSpec {
    pub junk_threshold: Option<Spanned<f64>>,
    pub discard_threshold: Option<Spanned<f64>>,
    pub junk_folder: Option<Spanned<String>>,
    pub virus: Option<Spanned<String>>,
    /// Enabled dialects: "spamassassin", "amavis", "rspamd".
    pub dialects: Option<Spanned<Vec<String>>>,
    /// Let an upstream score below zero lower the total (default false).
    pub trust_negative_scores: Option<Spanned<bool>>,
    /// Bounds the system puts on a user's junk_threshold.
    pub user_junk_threshold_min: Option<Spanned<f64>>,
    pub user_junk_threshold_max: Option<Spanned<f64>>,
    pub custom: Option<Vec<CustomSpamSpec>>,
}

#[derive(Debug, Deserialize, Serialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct AccessSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client: Vec<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub helo: Vec<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sender: Vec<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipient: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, Serialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct SettingsSpec {
    pub recipient_delimiter: Option<Spanned<String>>,
    pub parent_domain_matches_subdomains: Option<bool>,
    pub quarantine_folder: Option<Spanned<String>>,
    pub max_header_bytes: Option<usize>,
    pub max_headers: Option<usize>,
    pub body_window: Option<usize>,
    /// Where compiled indexes of large maps the recipient owns are cached
    /// (default: the recipient's `~/.cache/deliver`).
    pub map_cache_dir: Option<Spanned<String>>,
    /// Where indexes of large maps the recipient does not own are read from,
    /// written only by root (default: `/var/cache/deliver`).
    pub system_cache_dir: Option<Spanned<String>>,
    /// Seconds a delivery may take before it defers (default 300).
    pub time_limit: Option<Spanned<i64>>,
    /// Seconds a filter or pipe program may run (default 60).
    pub program_time_limit: Option<Spanned<i64>>,
    /// Messages larger than this many bytes skip filters (default 512000).
    pub filter_size_limit: Option<Spanned<i64>>,
    /// The most a filter may write, in bytes (default 64 MiB).
    pub filter_output_limit: Option<Spanned<i64>>,
    /// The sendmail command forwards and replies go through: a path, or
    /// an argv list (default `/usr/sbin/sendmail`).
    pub sendmail: Option<Spanned<OneOrMany>>,
}

#[derive(Debug, Deserialize, Serialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub settings: Option<SettingsSpec>,
    pub spam: Option<SpamSpec>,
    pub access: Option<AccessSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rule: Vec<RuleSpec>,
    /// The LMTP service (`deliver lmtp`, src/lmtp): read by the service,
    /// not by a delivery; system file only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lmtp: Option<LmtpSpec>,
}

/// `[lmtp]`: where the LMTP service files a recipient's mail, and its
/// limits (src/lmtp/config.rs gives the defaults).
#[derive(Debug, Deserialize, Serialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct LmtpSpec {
    /// A Maildir path template: `%u` the address, `%n` the local part
    /// without `+detail`, `%d` the domain, `%%` a percent sign.
    pub mailbox: Option<Spanned<String>>,
    /// Postfix `virtual_mailbox_maps` tables: address to a path under
    /// `mailbox_base`.
    pub mailbox_maps: Option<Vec<Spanned<String>>>,
    pub mailbox_base: Option<Spanned<String>>,
    pub max_sessions: Option<Spanned<i64>>,
    pub max_message_size: Option<Spanned<i64>>,
    pub max_recipients: Option<Spanned<i64>>,
    pub max_line_length: Option<Spanned<i64>>,
    pub idle_timeout: Option<Spanned<i64>>,
    pub data_timeout: Option<Spanned<i64>>,
    /// Where DATA larger than what is kept in memory is spooled.
    pub spool_dir: Option<Spanned<String>>,
}

impl FileSpec {
    /// Nothing set that a delivery reads: no table, no key (a file of
    /// comments and blank lines), or only `[lmtp]`, which the service reads
    /// on its own. Such a system file means the embedded default rules.
    pub fn is_empty(&self) -> bool {
        self.settings.is_none()
            && self.spam.is_none()
            && self.access.is_none()
            && self.rule.is_empty()
    }
}
