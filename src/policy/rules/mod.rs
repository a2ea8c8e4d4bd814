//! Rules: loading the system and per-user TOML files into compiled form.
//!
//! Loading is where every error is found: TOML syntax, unknown keys, regex
//! syntax, folder names, maps that do not open or parse. Each problem is a
//! `Diag` with `file:line:col`. Loading is the only I/O here; the compiled
//! `Layer` is then used by the pure `crate::policy::decide::decide`.
//!
//! The format is documented in deliver.rules(5).

pub mod cache;
pub mod literal;
pub mod model;

use crate::input::message::Limits;
use crate::output::diag::Diag;
use crate::output::exit::{split_status, DEFER_STATUS, REJECT_STATUS};
use crate::policy::maps::{self, OpenOptions, Table};
use crate::policy::pattern::{Haystack, Pattern, PatternGroup};
use crate::policy::vars::{Template, Text, Var};
use crate::store::maildir::FolderName;
use model::{AddressSpec, CondRef, CondSpec, FileSpec, RuleSpec};
use regex::{Regex, RegexBuilder};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The rules used when no system file exists: spam-flagged mail goes to
/// Junk, virus-flagged mail is discarded.
pub const DEFAULT_RULES: &str = include_str!("../../../rules/default.toml");

/// The default system rules file.
pub const SYSTEM_RULES: &str = "/etc/deliver/rules.toml";

/// At most this many problems are reported for one file.
const MAX_DIAGS: usize = 100;

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Which layer a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    System,
    User,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::System => "system",
            Origin::User => "user",
        })
    }
}

/// System-wide settings (from the system file only).
#[derive(Debug, Clone)]
pub struct Settings {
    pub recipient_delimiter: String,
    pub parent_domain_matches_subdomains: bool,
    pub quarantine_folder: FolderName,
    pub limits: Limits,
    pub map_cache_dir: Option<PathBuf>,
    /// Indexes of maps the running user does not own (system file only).
    pub system_cache_dir: Option<PathBuf>,
    /// How long a delivery may take before it defers (`crate::engine::inflight`).
    pub time_limit: Duration,
    /// How long a filter or pipe program may run.
    pub program_time_limit: Duration,
    /// Messages larger than this skip filters, in bytes.
    pub filter_size_limit: u64,
    /// The most a filter may write, in bytes.
    pub filter_output_limit: u64,
    /// The sendmail command (argv) forwards and replies go through.
    pub sendmail: Vec<String>,
}

/// The default `program_time_limit`.
pub const DEFAULT_PROGRAM_TIME_LIMIT: Duration = Duration::from_secs(60);
/// The default `filter_size_limit`: spamc's `-s` default (500 KB).
pub const DEFAULT_FILTER_SIZE_LIMIT: u64 = 512_000;
/// The default `filter_output_limit`: 64 MiB.
pub const DEFAULT_FILTER_OUTPUT_LIMIT: u64 = 64 << 20;

/// The default `time_limit`: well under Postfix's `command_time_limit`
/// (1000 s), after which local(8) kills the command and the tmp/ file
/// stays behind.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(300);

/// The largest `time_limit` accepted, in seconds (a day).
pub const MAX_TIME_LIMIT: i64 = 86_400;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            recipient_delimiter: "+".into(),
            parent_domain_matches_subdomains: true,
            quarantine_folder: FolderName::parse("Quarantine").unwrap().unwrap(),
            limits: Limits::default(),
            map_cache_dir: None,
            system_cache_dir: None,
            time_limit: DEFAULT_TIME_LIMIT,
            program_time_limit: DEFAULT_PROGRAM_TIME_LIMIT,
            filter_size_limit: DEFAULT_FILTER_SIZE_LIMIT,
            filter_output_limit: DEFAULT_FILTER_OUTPUT_LIMIT,
            sendmail: vec![crate::engine::sendmail::DEFAULT.to_string()],
        }
    }
}

/// What to do with a message an upstream virus scanner flagged.
#[derive(Debug, Clone, PartialEq)]
pub enum VirusAction {
    Discard,
    Junk,
    Folder(FolderName),
}

/// A custom spam header: a regex whose first group is the score.
#[derive(Debug, Clone)]
pub struct CustomDialect {
    pub header: String,
    pub score: Regex,
    pub flag: Option<Regex>,
}

#[derive(Debug, Clone)]
pub struct SpamConfig {
    pub junk_threshold: Option<f64>,
    pub discard_threshold: Option<f64>,
    pub junk_folder: Option<FolderName>,
    pub virus: VirusAction,
    pub spamassassin: bool,
    pub amavis: bool,
    pub rspamd: bool,
    pub trust_negative_scores: bool,
    pub user_junk_threshold_min: Option<f64>,
    pub user_junk_threshold_max: Option<f64>,
    pub custom: Vec<CustomDialect>,
}

impl Default for SpamConfig {
    fn default() -> Self {
        SpamConfig {
            junk_threshold: None,
            discard_threshold: None,
            junk_folder: None,
            virus: VirusAction::Discard,
            spamassassin: true,
            amavis: true,
            rspamd: true,
            trust_negative_scores: false,
            user_junk_threshold_min: None,
            user_junk_threshold_max: None,
            custom: Vec::new(),
        }
    }
}

/// The four access map lists, in smtpd's order of evaluation.
#[derive(Debug, Default)]
pub struct Access {
    pub client: Vec<Box<dyn Table>>,
    pub helo: Vec<Box<dyn Table>>,
    pub sender: Vec<Box<dyn Table>>,
    pub recipient: Vec<Box<dyn Table>>,
}

impl Access {
    pub fn is_empty(&self) -> bool {
        self.tables().next().is_none()
    }

    /// Every table: client, helo, sender, recipient, in that order.
    pub fn tables(&self) -> impl Iterator<Item = &Box<dyn Table>> {
        self.client
            .iter()
            .chain(&self.helo)
            .chain(&self.sender)
            .chain(&self.recipient)
    }
}

/// A compiled condition.
#[derive(Debug, Clone)]
pub enum Cond {
    /// Any occurrence of the header matches (or exists, without a pattern).
    /// The pattern is number `.1` of the layer's header group `.0`.
    Header(String, Option<(usize, usize)>),
    Sender(Pattern),
    Recipient(Pattern),
    ClientAddress(Pattern),
    ClientHostname(Pattern),
    Helo(Pattern),
    Body(Pattern),
    SizeOver(u64),
    SizeUnder(u64),
    /// Whether a header limit was reached (`true`) or not (`false`).
    HeaderLimit(bool),
    /// A test of parsed addresses (`address = { ... }`).
    Address(Box<AddressCond>),
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
}

impl Cond {
    /// The tables this condition looks addresses up in.
    pub fn tables<'a>(&'a self, out: &mut Vec<&'a dyn Table>) {
        match self {
            Cond::Address(a) => {
                if let AddressTest::Table(t, _) = &a.test {
                    out.extend(t.iter().map(|t| &**t));
                }
            }
            Cond::All(v) | Cond::Any(v) => v.iter().for_each(|c| c.tables(out)),
            Cond::Not(c) => c.tables(out),
            _ => {}
        }
    }

    pub fn uses_body(&self) -> bool {
        match self {
            Cond::Body(_) => true,
            Cond::All(v) | Cond::Any(v) => v.iter().any(Cond::uses_body),
            Cond::Not(c) => c.uses_body(),
            _ => false,
        }
    }
}

/// The headers an `address` condition may name: those that hold address
/// lists (RFC 5322 sections 3.6.2, 3.6.3, 3.6.6), and Delivered-To and
/// Return-Path, which hold one address.
pub const ADDRESS_HEADERS: [&str; 12] = [
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Bcc",
    "Resent-From",
    "Resent-Sender",
    "Resent-To",
    "Resent-Cc",
    "Delivered-To",
    "Return-Path",
];

/// Whose addresses an `address` condition tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressSource {
    /// Every address of every occurrence of these headers (canonical case,
    /// from [`ADDRESS_HEADERS`]).
    Headers(Vec<&'static str>),
    EnvelopeSender,
    EnvelopeRecipient,
}

/// Which part of an address is tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPart {
    /// `local@domain`.
    All,
    LocalPart,
    Domain,
    /// The local part without its `+detail`.
    User,
    /// The `+detail`; an address without one has none.
    Detail,
}

impl AddressPart {
    pub const NAMES: [(&'static str, AddressPart); 5] = [
        ("all", AddressPart::All),
        ("localpart", AddressPart::LocalPart),
        ("domain", AddressPart::Domain),
        ("user", AddressPart::User),
        ("detail", AddressPart::Detail),
    ];
}

/// The test an `address` condition applies to each address's part.
#[derive(Debug, Clone)]
pub enum AddressTest {
    /// Equal, ASCII case-insensitively (Sieve's i;ascii-casemap).
    Is(String),
    /// The regex (its source kept for the captures, `decide::Ctx::captures`).
    Match(Pattern, String),
    /// The table, searched with access(5)'s address keys; its spec as written.
    Table(std::sync::Arc<Vec<Box<dyn Table>>>, String),
}

/// `address = { header|envelope, part, is|match|table }`.
#[derive(Debug, Clone)]
pub struct AddressCond {
    pub source: AddressSource,
    pub part: AddressPart,
    pub test: AddressTest,
}

/// A rule's filing or ending action: terminal, or a copy with `copy`.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleAction {
    Folder(FolderName),
    /// A folder name with variables: checked by `FolderName::parse` once
    /// expanded (a refused name files into the Inbox).
    FolderTemplate(Template),
    Junk,
    Discard,
    Inbox,
    Reject {
        status: String,
        text: String,
    },
    Defer {
        status: String,
        text: String,
    },
    /// Deliver to a program: argv, no shell (`~/` in argv[0] is the home).
    /// argv[0] is always literal; the arguments may use variables.
    Pipe(Vec<Text>),
    /// Forward to these addresses through sendmail.
    Forward(Vec<String>),
}

/// A rule's `duplicate`: what to do with a message seen within `window`.
#[derive(Debug, Clone, PartialEq)]
pub struct DuplicateRule {
    pub window: Duration,
    /// `None`: discard; else file into this folder.
    pub folder: Option<FolderName>,
}

/// The default `duplicate` window (RFC 7352 leaves it to the
/// implementation; Pigeonhole's default is 12 hours, formail's cache is
/// by size): 7 days.
pub const DEFAULT_DUPLICATE_DAYS: i64 = 7;

/// A header edit: applied to every copy filed or piped, never to the body.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// A `Name: value` line added at the top (variables allowed: the
    /// expanded line is checked again).
    Add(Text),
    /// Text put before the Subject's (variables allowed).
    SubjectPrefix(Text),
    /// Every field of this name removed.
    Remove(String),
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub cond: Cond,
    pub score: f64,
    pub action: Option<RuleAction>,
    /// The filing action (folder, inbox, junk, pipe) is a copy: the rules go on.
    pub copy: bool,
    /// Maildir flag letters for the filing action, sorted (e.g. `"FS"`).
    pub flags: String,
    /// Header edits, in the order written (add, subject prefix, remove).
    pub edits: Vec<Edit>,
    /// A program the message passes through (argv); the rules then run
    /// again from the top on its output.
    pub filter: Option<Vec<Text>>,
    /// Whether the action texts use the groups of the rule's match
    /// (`${0}`..`${9}`): only then are they computed when it matches.
    pub uses_groups: bool,
    /// An auto-reply; the rules go on.
    pub vacation: Option<crate::policy::vacation::Vacation>,
    /// Duplicate suppression: the rule matches only a duplicate.
    pub duplicate: Option<DuplicateRule>,
}

impl Rule {
    /// Every text of the rule's actions that may hold variables.
    pub fn texts(&self) -> impl Iterator<Item = &Text> {
        let argv = match &self.action {
            Some(RuleAction::Pipe(argv)) => argv.as_slice(),
            _ => &[],
        };
        let edits = self.edits.iter().filter_map(|e| match e {
            Edit::Add(t) | Edit::SubjectPrefix(t) => Some(t),
            Edit::Remove(_) => None,
        });
        argv.iter().chain(self.filter.iter().flatten()).chain(edits)
    }
}

/// The Maildir flag letter of a flag name (Sieve imap4flags's names
/// without the backslash), or `None`.
pub fn flag_letter(name: &str) -> Option<char> {
    Some(match name.to_ascii_lowercase().as_str() {
        "seen" => 'S',
        "answered" => 'R',
        "flagged" => 'F',
        "deleted" => 'T',
        "draft" => 'D',
        _ => return None,
    })
}

/// The patterns of all of a layer's rules on one header, compiled together.
#[derive(Debug, Clone)]
pub struct HeaderGroup {
    pub name: String,
    pub patterns: PatternGroup,
    /// The patterns as written, in the group's order (for the captures of
    /// a rule whose actions use them, `decide::Ctx::captures`).
    pub sources: Vec<String>,
}

/// One loaded layer: the system file (or the embedded default) or a user's.
#[derive(Debug)]
pub struct Layer {
    pub origin: Origin,
    /// The file it came from; `None` for the embedded default.
    pub path: Option<PathBuf>,
    pub settings: Settings,
    pub spam: SpamConfig,
    pub access: Access,
    pub rules: Vec<Rule>,
    /// Header patterns, one group per header name (see `Cond::Header`).
    pub header_groups: Vec<HeaderGroup>,
    /// Set when the layer came from the rules cache: `rules` and
    /// `header_groups` are still to be compiled for the message at hand
    /// (`cache::Deferred::complete`); the decision refuses such a layer.
    pub deferred: Option<cache::Deferred>,
}

impl Layer {
    pub fn uses_body(&self) -> bool {
        self.rules.iter().any(|r| r.cond.uses_body())
    }

    pub fn describe(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "embedded default rules".into(),
        }
    }
}

/// Collects diagnostics while compiling a file.
/// Header patterns collected while loading: per header, the patterns and
/// where each was written.
struct PendingGroup {
    name: String,
    patterns: Vec<(String, usize)>,
}

struct Loader<'a> {
    file: &'a Path,
    text: &'a str,
    origin: Origin,
    diags: Vec<Diag>,
    groups: Vec<PendingGroup>,
    /// How tables are opened: `[access]`'s and `address.table`'s.
    opts: OpenOptions,
    /// The rule being compiled: the source of its own regex match (the
    /// one `${0}`..`${9}` refer to), and its number of groups once asked.
    rule_match: Option<String>,
    rule_groups: Option<Option<usize>>,
}

impl<'a> Loader<'a> {
    fn new(file: &'a Path, text: &'a str, origin: Origin, opts: &OpenOptions) -> Loader<'a> {
        Loader {
            file,
            text,
            origin,
            diags: Vec::new(),
            groups: Vec::new(),
            opts: opts.clone(),
            rule_match: None,
            rule_groups: None,
        }
    }

    /// Keeps a problem, up to [`MAX_DIAGS`]: a file of a million bad
    /// entries must not build a million messages.
    fn push(&mut self, d: Diag) {
        if self.diags.len() < MAX_DIAGS {
            self.diags.push(d);
        }
    }

    fn diag_at(&mut self, offset: usize, msg: impl Into<String>) {
        let (line, col) = line_col(self.text, offset);
        self.push(Diag::at(self.file, line, col, msg.into()));
    }

    fn regex(&mut self, s: &Spanned<String>, what: &str) -> Option<Regex> {
        match RegexBuilder::new(s.get_ref())
            .size_limit(crate::policy::regex_limits::SPAM_CUSTOM_NFA)
            .dfa_size_limit(crate::policy::regex_limits::SPAM_CUSTOM_LAZY_DFA)
            .build()
        {
            Ok(r) => Some(r),
            Err(e) => {
                let msg = match e {
                    regex::Error::CompiledTooBig(n) => {
                        format!("{what}: regex too big (over {n} bytes compiled)")
                    }
                    e => format!(
                        "{what}: bad regex: {}",
                        e.to_string()
                            .replace('\n', " ")
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                };
                self.diag_at(s.span().start, msg);
                None
            }
        }
    }

    /// Registers a header pattern in its header's group: (group, index).
    fn header_pattern(&mut self, name: &str, s: &Spanned<String>) -> (usize, usize) {
        let g = match self
            .groups
            .iter()
            .position(|g| g.name.eq_ignore_ascii_case(name))
        {
            Some(g) => g,
            None => {
                self.groups.push(PendingGroup {
                    name: name.to_string(),
                    patterns: Vec::new(),
                });
                self.groups.len() - 1
            }
        };
        let pats = &mut self.groups[g].patterns;
        pats.push((s.get_ref().clone(), s.span().start));
        (g, pats.len() - 1)
    }

    /// Compiles the header groups, reporting each bad pattern where it is.
    fn build_groups(&mut self) -> Vec<HeaderGroup> {
        let mut out = Vec::new();
        for g in std::mem::take(&mut self.groups) {
            let pats: Vec<&str> = g.patterns.iter().map(|(p, _)| p.as_str()).collect();
            match PatternGroup::new(&pats) {
                Ok(patterns) => out.push(HeaderGroup {
                    name: g.name,
                    patterns,
                    sources: g.patterns.into_iter().map(|p| p.0).collect(),
                }),
                Err((None, e)) => {
                    let at = g.patterns.first().map_or(0, |p| p.1);
                    self.diag_at(
                        at,
                        format!("the patterns on header {:?} together: {}", g.name, e.0),
                    );
                }
                Err((Some(_), _)) => {
                    // Name every bad pattern, not only the first.
                    for (p, at) in &g.patterns {
                        if let Err(e) = Pattern::new(p, Haystack::Short) {
                            self.diag_at(*at, format!("match: {}", e.0));
                        }
                    }
                }
            }
        }
        out
    }

    fn pattern(&mut self, s: &Spanned<String>, what: &str) -> Option<Pattern> {
        let haystack = if what == "body" {
            Haystack::Long
        } else {
            Haystack::Short
        };
        match Pattern::new(s.get_ref(), haystack) {
            Ok(p) => Some(p),
            Err(e) => {
                self.diag_at(s.span().start, format!("{what}: {}", e.0));
                None
            }
        }
    }

    fn folder(&mut self, s: &Spanned<String>) -> Option<Option<FolderName>> {
        match FolderName::parse(s.get_ref()) {
            Ok(f) => Some(f),
            Err(e) => {
                self.diag_at(s.span().start, format!("refused folder name: {e}"));
                None
            }
        }
    }

    /// Compiles the condition keys of a table into a conjunction.
    fn cond_parts(&mut self, c: CondRef<'_>, at: usize) -> Vec<Cond> {
        let mut parts = Vec::new();
        match (c.header, c.pattern) {
            (Some(h), p) => {
                let name = h.get_ref().trim();
                if name.is_empty()
                    || name.contains(|c: char| c == ':' || c.is_whitespace() || c.is_control())
                {
                    self.diag_at(h.span().start, format!("bad header name {:?}", h.get_ref()));
                }
                let test = p.as_ref().map(|p| self.header_pattern(name, p));
                parts.push(Cond::Header(name.to_string(), test));
            }
            (None, Some(p)) => self.diag_at(p.span().start, "'match' needs 'header'"),
            (None, None) => {}
        }
        for (spec, what) in c.regexes {
            if let Some(s) = spec {
                let Some(r) = self.pattern(s, what) else {
                    parts.push(Cond::Any(vec![]));
                    continue;
                };
                parts.push(match what {
                    "sender" => Cond::Sender(r),
                    "recipient" => Cond::Recipient(r),
                    "client_address" => Cond::ClientAddress(r),
                    "client_hostname" => Cond::ClientHostname(r),
                    "helo" => Cond::Helo(r),
                    _ => Cond::Body(r),
                });
            }
        }
        if let Some(n) = c.size_over {
            parts.push(Cond::SizeOver(n));
        }
        if let Some(n) = c.size_under {
            parts.push(Cond::SizeUnder(n));
        }
        if let Some(b) = c.header_limit {
            parts.push(Cond::HeaderLimit(b));
        }
        if let Some(a) = c.address {
            match self.address(a) {
                Some(a) => parts.push(Cond::Address(Box::new(a))),
                None => parts.push(Cond::Any(vec![])),
            }
        }
        if let Some(v) = c.all {
            if v.is_empty() {
                self.diag_at(at, "'all' is empty: it would always match");
            }
            let c = v.iter().map(|c| self.cond(c, at)).collect();
            parts.push(Cond::All(c));
        }
        if let Some(v) = c.any {
            if v.is_empty() {
                self.diag_at(at, "'any' is empty: it can never match");
            }
            let c = v.iter().map(|c| self.cond(c, at)).collect();
            parts.push(Cond::Any(c));
        }
        if let Some(c) = c.not {
            let c = self.cond(c, at);
            parts.push(Cond::Not(Box::new(c)));
        }
        parts
    }

    fn cond(&mut self, c: &CondSpec, at: usize) -> Cond {
        let at = c.header.as_ref().map_or(at, |h| h.span().start);
        let parts = self.cond_parts(c.cond(), at);
        if parts.is_empty() {
            self.diag_at(at, "empty condition: it would always match");
        }
        Cond::All(parts)
    }

    fn rule(&mut self, index: usize, r: &RuleSpec) -> Option<Rule> {
        let at = r
            .name
            .as_ref()
            .map(|n| n.span().start)
            .or_else(|| r.header.as_ref().map(|h| h.span().start))
            .unwrap_or(0);
        let name = r
            .name
            .as_ref()
            .map_or_else(|| format!("rule#{}", index + 1), |n| n.get_ref().clone());
        let parts = self.cond_parts(r.cond(), at);
        // A rule without a condition matches every message (procmail's
        // `:0` without conditions, a Sieve action outside `if`): allowed
        // for the verbs that act on every message; a score or a filing
        // action alone for every message is more likely a mistake.
        let every_message_verb = r.filter.is_some()
            || r.pipe.is_some()
            || r.forward.is_some()
            || r.vacation.is_some()
            || r.duplicate.is_some()
            || r.copy.is_some()
            || r.add_header.is_some()
            || r.subject_prefix.is_some()
            || r.remove_header.is_some();
        if parts.is_empty() && !every_message_verb {
            self.diag_at(at, format!("rule {name:?} has no condition"));
        }
        // The regex whose groups `${0}`..`${9}` are (`decide::Ctx::captures`).
        self.rule_match = match (&r.header, &r.pattern, &r.address) {
            (Some(_), Some(p), _) => Some(p.get_ref().clone()),
            (_, _, Some(a)) => a.get_ref().pattern.as_ref().map(|p| p.get_ref().clone()),
            _ => None,
        };
        self.rule_groups = None;
        let mut actions = Vec::new();
        if let Some(f) = &r.folder {
            if let Some(action) = self.folder_action(f) {
                actions.push(action);
            }
        }
        for (flag, action, key) in [
            (&r.junk, RuleAction::Junk, "junk"),
            (&r.discard, RuleAction::Discard, "discard"),
            (&r.inbox, RuleAction::Inbox, "inbox"),
        ] {
            if let Some(b) = flag {
                if *b.get_ref() {
                    actions.push(action);
                } else {
                    self.diag_at(
                        b.span().start,
                        format!("'{key} = false' means nothing; remove it"),
                    );
                }
            }
        }
        if let Some(t) = &r.reject {
            let (status, text) = split_status(t.get_ref(), '5', REJECT_STATUS);
            if t.get_ref().trim().starts_with('4') {
                self.diag_at(
                    t.span().start,
                    "reject text starts with a 4.x.x code; use 'defer' for that",
                );
            }
            actions.push(RuleAction::Reject { status, text });
        }
        if let Some(t) = &r.defer {
            if t.get_ref().trim().starts_with('5') {
                self.diag_at(
                    t.span().start,
                    "defer text starts with a 5.x.x code; use 'reject' for that",
                );
            }
            let (status, text) = split_status(t.get_ref(), '4', DEFER_STATUS);
            actions.push(RuleAction::Defer { status, text });
        }
        if let Some(p) = &r.pipe {
            if let Some(argv) = self.argv(p, "pipe") {
                actions.push(RuleAction::Pipe(argv));
            }
        }
        if let Some(f) = &r.forward {
            if let Some(to) = self.forward(f) {
                actions.push(RuleAction::Forward(to));
            }
        }
        let duplicate = r.duplicate.as_ref().and_then(|d| self.duplicate(d));
        if r.duplicate.is_some() && !actions.is_empty() {
            self.diag_at(
                at,
                format!(
                    "rule {name:?}: 'duplicate' has its own action (action = \"discard\" or folder = ...); give no other"
                ),
            );
        }
        let vacation = r.vacation.as_ref().and_then(|v| self.vacation(v));
        if actions.len() > 1 {
            self.diag_at(
                at,
                format!(
                    "rule {name:?} has {} terminal actions; give one",
                    actions.len()
                ),
            );
        }
        let score = r.score.unwrap_or(0.0);
        if !score.is_finite() {
            self.diag_at(at, format!("rule {name:?}: score must be a finite number"));
        }
        let (copy, flags, edits, filter) = self.verbs(r, &name, actions.first());
        let folder_groups =
            matches!(actions.first(), Some(RuleAction::FolderTemplate(t)) if t.uses_groups());
        let action_written = r.folder.is_some()
            || r.junk.is_some()
            || r.discard.is_some()
            || r.inbox.is_some()
            || r.reject.is_some()
            || r.defer.is_some()
            || r.pipe.is_some()
            || r.forward.is_some()
            || r.vacation.is_some()
            || r.duplicate.is_some()
            || r.filter.is_some()
            || !edits.is_empty();
        if r.score.is_none() && !action_written {
            self.diag_at(
                at,
                format!("rule {name:?} has neither a score nor an action"),
            );
        }
        let mut rule = Rule {
            name,
            cond: Cond::All(parts),
            score,
            action: actions.into_iter().next(),
            copy,
            flags,
            edits,
            filter,
            vacation,
            duplicate,
            uses_groups: false,
        };
        rule.uses_groups = folder_groups || rule.texts().any(Text::uses_groups);
        Some(rule)
    }

    /// `forward = [addresses]`: plain addresses, at most
    /// `forward::MAX_PER_RULE`.
    fn forward(&mut self, f: &Spanned<Vec<Spanned<String>>>) -> Option<Vec<String>> {
        use crate::policy::forward::{check_address, MAX_PER_RULE};
        let list = f.get_ref();
        if list.is_empty() {
            self.diag_at(f.span().start, "forward: no address (an empty list)");
            return None;
        }
        if list.len() > MAX_PER_RULE {
            self.diag_at(
                f.span().start,
                format!(
                    "forward: {} addresses; at most {MAX_PER_RULE} per rule",
                    list.len()
                ),
            );
            return None;
        }
        let mut ok = true;
        for a in list {
            if let Err(e) = check_address(a.get_ref()) {
                self.diag_at(a.span().start, e);
                ok = false;
            }
        }
        ok.then(|| list.iter().map(|a| a.get_ref().clone()).collect())
    }

    /// `vacation = { ... }`, checked.
    fn vacation(
        &mut self,
        v: &Spanned<crate::policy::rules::model::VacationSpec>,
    ) -> Option<crate::policy::vacation::Vacation> {
        use crate::policy::vacation::{parse_date, Vacation, DEFAULT_DAYS, MAX_DAYS, MIN_DAYS};
        let spec = v.get_ref();
        let mut ok = true;
        let days = match &spec.days {
            None => DEFAULT_DAYS,
            Some(d) => match u32::try_from(*d.get_ref()) {
                Ok(n) if (MIN_DAYS..=MAX_DAYS).contains(&n) => n,
                _ => {
                    self.diag_at(
                        d.span().start,
                        format!(
                            "vacation: days must be {MIN_DAYS} to {MAX_DAYS}, not {}",
                            d.get_ref()
                        ),
                    );
                    ok = false;
                    DEFAULT_DAYS
                }
            },
        };
        let text_ok = |t: &str, multiline: bool| {
            !t.chars()
                .any(|c| c.is_control() && c != '\t' && !(multiline && (c == '\n' || c == '\r')))
        };
        if let Some(s) = &spec.subject {
            if s.get_ref().trim().is_empty() || !text_ok(s.get_ref(), false) {
                self.diag_at(s.span().start, "vacation: subject must be one line of text");
                ok = false;
            }
        }
        if spec.body.get_ref().trim().is_empty() || !text_ok(spec.body.get_ref(), true) {
            self.diag_at(
                spec.body.span().start,
                "vacation: body must be text, not empty",
            );
            ok = false;
        }
        let mut addresses = Vec::new();
        for a in spec.addresses.iter().flatten().chain(spec.from.iter()) {
            if let Err(e) = crate::policy::forward::check_address(a.get_ref()) {
                self.diag_at(
                    a.span().start,
                    format!("vacation: {}", e.replacen("forward address", "address", 1)),
                );
                ok = false;
            }
        }
        for a in spec.addresses.iter().flatten() {
            addresses.push(a.get_ref().clone());
        }
        let mut date = |d: &Option<Spanned<String>>| -> Option<u32> {
            let d = d.as_ref()?;
            match parse_date(d.get_ref()) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.diag_at(d.span().start, format!("vacation: {e}"));
                    ok = false;
                    None
                }
            }
        };
        let start = date(&spec.start);
        let end = date(&spec.end);
        if let (Some(s), Some(e)) = (start, end) {
            if e < s {
                self.diag_at(v.span().start, "vacation: end is before start");
                ok = false;
            }
        }
        ok.then(|| Vacation {
            days,
            subject: spec.subject.as_ref().map(|s| s.get_ref().clone()),
            body: spec.body.get_ref().clone(),
            addresses,
            from: spec.from.as_ref().map(|s| s.get_ref().clone()),
            start,
            end,
        })
    }

    /// `duplicate = { window_days, action = "discard" | folder = ... }`.
    fn duplicate(
        &mut self,
        d: &Spanned<crate::policy::rules::model::DuplicateSpec>,
    ) -> Option<DuplicateRule> {
        let spec = d.get_ref();
        let days = match &spec.window_days {
            None => DEFAULT_DUPLICATE_DAYS,
            Some(w) => match *w.get_ref() {
                n @ 1..=365 => n,
                n => {
                    self.diag_at(
                        w.span().start,
                        format!("duplicate: window_days must be 1 to 365, not {n}"),
                    );
                    return None;
                }
            },
        };
        let folder = match (&spec.action, &spec.folder) {
            (Some(a), None) if a.get_ref() == "discard" => None,
            (Some(a), None) => {
                self.diag_at(
                    a.span().start,
                    format!(
                        "duplicate: action {:?}: only \"discard\" (or give a folder)",
                        a.get_ref()
                    ),
                );
                return None;
            }
            (None, Some(f)) => match self.folder(f)? {
                Some(f) => Some(f),
                None => {
                    self.diag_at(f.span().start, "duplicate: the folder cannot be the Inbox (that is what happens without the rule)");
                    return None;
                }
            },
            _ => {
                self.diag_at(
                    d.span().start,
                    "duplicate: give one of action = \"discard\" and folder = \"NAME\"",
                );
                return None;
            }
        };
        Some(DuplicateRule {
            window: Duration::from_secs(days as u64 * 86400),
            folder,
        })
    }

    /// `folder`: a name written in full is checked now; one with
    /// variables is checked with each variable as `x` (what no value can
    /// mend, such as a leading `.`), and again once expanded.
    fn folder_action(&mut self, f: &Spanned<String>) -> Option<RuleAction> {
        let t = self.template(f, "folder")?;
        let Some(name) = t.literal() else {
            let probe = t.expand(&|_| Some("x".into()));
            if let Err(e) = FolderName::parse(&probe) {
                self.diag_at(
                    f.span().start,
                    format!("refused folder name: {e} (with each variable as \"x\")"),
                );
                return None;
            }
            return Some(RuleAction::FolderTemplate(t));
        };
        match FolderName::parse(&name) {
            Ok(Some(f)) => Some(RuleAction::Folder(f)),
            Ok(None) => Some(RuleAction::Inbox),
            Err(e) => {
                self.diag_at(f.span().start, format!("refused folder name: {e}"));
                None
            }
        }
    }

    /// An argv array: not empty, argv[0] not empty, no NUL anywhere; the
    /// arguments may use variables, the program (argv[0]) may not: what
    /// runs is never chosen by a message.
    fn argv(&mut self, v: &Spanned<Vec<Spanned<String>>>, key: &str) -> Option<Vec<Text>> {
        let Some(first) = v.get_ref().first() else {
            self.diag_at(
                v.span().start,
                format!("{key}: the program is missing (an empty list)"),
            );
            return None;
        };
        if first.get_ref().is_empty() {
            self.diag_at(first.span().start, format!("{key}: empty program name"));
            return None;
        }
        let mut ok = true;
        let mut argv = Vec::with_capacity(v.get_ref().len());
        for (i, a) in v.get_ref().iter().enumerate() {
            if a.get_ref().contains('\0') {
                self.diag_at(a.span().start, format!("{key}: NUL in an argument"));
                ok = false;
                continue;
            }
            let Some(t) = self.template(a, key) else {
                ok = false;
                continue;
            };
            if i == 0 && !t.is_literal() {
                self.diag_at(
                    a.span().start,
                    format!(
                        "{key}: the program cannot use variables (a message must not choose \
                         what runs); give them as arguments"
                    ),
                );
                ok = false;
            }
            argv.push(Text::new(t));
        }
        ok.then_some(argv)
    }

    /// The non-terminal verbs of a rule: `copy`, `flags`, the header
    /// edits and `filter`, checked against the rule's filing action.
    fn verbs(
        &mut self,
        r: &RuleSpec,
        name: &str,
        action: Option<&RuleAction>,
    ) -> (bool, String, Vec<Edit>, Option<Vec<Text>>) {
        let files = matches!(
            action,
            Some(
                RuleAction::Folder(_)
                    | RuleAction::FolderTemplate(_)
                    | RuleAction::Inbox
                    | RuleAction::Junk
            )
        );
        let mut copy = false;
        if let Some(c) = &r.copy {
            if !*c.get_ref() {
                self.diag_at(c.span().start, "'copy = false' means nothing; remove it");
            } else if files || matches!(action, Some(RuleAction::Pipe(_) | RuleAction::Forward(_)))
            {
                copy = true;
            } else {
                self.diag_at(
                    c.span().start,
                    "'copy' needs a filing action: folder, inbox, junk, pipe or forward",
                );
            }
        }
        let mut flags = String::new();
        if let Some(f) = &r.flags {
            if !files {
                self.diag_at(
                    f.span().start,
                    "'flags' needs a filing action: folder, inbox or junk",
                );
            }
            for n in f.get_ref() {
                match flag_letter(n.get_ref()) {
                    Some(c) if !flags.contains(c) => flags.push(c),
                    Some(_) => {}
                    None => self.diag_at(
                        n.span().start,
                        format!(
                            "unknown flag {:?} (known: seen, answered, flagged, deleted, draft)",
                            n.get_ref()
                        ),
                    ),
                }
            }
            // The Maildir spec: the info's flags in ASCII order.
            let mut v: Vec<char> = flags.chars().collect();
            v.sort_unstable();
            flags = v.into_iter().collect();
        }
        let mut edits = Vec::new();
        if let Some(a) = &r.add_header {
            for line in a.get_ref().items() {
                let Some(t) = self.template_in(line, a.span(), "add_header") else {
                    continue;
                };
                // With variables: what no value can mend (no colon, a bad
                // name) is found now; the expanded line is checked again.
                let probe = t.expand(&|_| Some("x".into()));
                if crate::input::message::valid_header_line(&probe)
                    && !probe.split_once(':').is_some_and(|(n, _)| n.is_empty())
                {
                    edits.push(Edit::Add(Text::new(t)));
                } else {
                    self.diag_at(
                        a.span().start,
                        format!(
                            "add_header: {line:?} is not a header line (Name: value, one line)"
                        ),
                    );
                }
            }
        }
        if let Some(p) = &r.subject_prefix {
            if p.get_ref().is_empty() {
                self.diag_at(p.span().start, "subject_prefix is empty");
            } else if let Some(t) = self.template(p, "subject_prefix") {
                if t.expand(&|_| None)
                    .chars()
                    .any(|c| c.is_control() && c != '\t')
                {
                    self.diag_at(p.span().start, "subject_prefix: control character");
                } else {
                    edits.push(Edit::SubjectPrefix(Text::new(t)));
                }
            }
        }
        if let Some(rm) = &r.remove_header {
            for h in rm.get_ref().items() {
                if h.is_empty() || !h.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
                    self.diag_at(
                        rm.span().start,
                        format!("remove_header: bad header name {h:?}"),
                    );
                } else if crate::input::edit::is_protected(h) {
                    self.diag_at(
                        rm.span().start,
                        format!("remove_header: {h} is a trace header and is never removed"),
                    );
                } else {
                    edits.push(Edit::Remove(h.clone()));
                }
            }
        }
        let filter = r.filter.as_ref().and_then(|f| {
            if action.is_some() || !edits.is_empty() || r.flags.is_some() {
                self.diag_at(
                    f.span().start,
                    format!(
                        "rule {name:?}: 'filter' cannot be combined with another action \
                         (the rules run again on its output; give those in other rules)"
                    ),
                );
            }
            self.argv(f, "filter")
        });
        (copy, flags, edits, filter)
    }

    /// Compiles the `[[rule]]` tables and their header groups.
    fn rules(&mut self, specs: &[RuleSpec]) -> (Vec<Rule>, Vec<HeaderGroup>) {
        let mut rules = Vec::new();
        let mut dups = specs.iter().filter_map(|r| r.duplicate.as_ref()).skip(1);
        if let Some(d) = dups.next() {
            self.diag_at(
                d.span().start,
                "a second 'duplicate' rule: one per file (one window per message)",
            );
        }
        for (i, r) in specs.iter().enumerate() {
            if let Some(rule) = self.rule(i, r) {
                rules.push(rule);
            }
        }
        (rules, self.build_groups())
    }

    /// A table path that starts with `~/` is in the user's home (a user's
    /// file only); a relative one is relative to the rules file's directory.
    fn resolve_spec(&self, spec: &str) -> Result<String, String> {
        match spec.split_once(':') {
            Some((kind, path)) if path.starts_with("~/") => match (self.origin, &self.opts.home) {
                (Origin::User, Some(home)) => Ok(format!("{kind}:{}", home.join(&path[2..]).display())),
                (Origin::User, None) => Err(format!("{spec}: no home directory is known for '~/'")),
                (Origin::System, _) => Err(format!(
                    "{spec}: '~/' is for a user's rules file; the system file names tables by absolute path"
                )),
            },
            Some((kind, path))
                if !path.is_empty() && !path.starts_with('/') && !path.contains(':') =>
            {
                let dir = self.file.parent().unwrap_or(Path::new(""));
                Ok(format!("{kind}:{}", dir.join(path).display()))
            }
            _ => Ok(spec.to_string()),
        }
    }

    fn maps(&mut self, specs: &[Spanned<String>], opts: &OpenOptions) -> Vec<Box<dyn Table>> {
        specs.iter().filter_map(|s| self.map(s, opts)).collect()
    }

    /// Opens one table, or reports why not where the rules file names it
    /// (a problem inside the table: at the table's own line and column).
    fn map(&mut self, s: &Spanned<String>, opts: &OpenOptions) -> Option<Box<dyn Table>> {
        let spec = match self.resolve_spec(s.get_ref()) {
            Ok(spec) => spec,
            Err(e) => {
                self.diag_at(s.span().start, e);
                return None;
            }
        };
        match maps::open(&spec, opts) {
            Ok(t) => Some(t),
            Err(e) => {
                if e.line == 0 {
                    let (line, col) = line_col(self.text, s.span().start);
                    self.push(Diag {
                        file: self.file.to_path_buf(),
                        cause: e.cause,
                        line,
                        col,
                        msg: format!("{}: {}", s.get_ref(), e.msg),
                    });
                } else {
                    // Rules-file problems always show a column.
                    self.push(Diag {
                        col: e.col.max(1),
                        ..e
                    });
                }
                None
            }
        }
    }

    /// Compiles `address = { header|envelope, part, is|match|table }`.
    fn address(&mut self, a: &Spanned<AddressSpec>) -> Option<AddressCond> {
        let at = a.span().start;
        let spec = a.get_ref();
        let source = match (&spec.header, &spec.envelope) {
            (Some(h), None) => {
                let mut names = Vec::new();
                for n in h.get_ref().list() {
                    match ADDRESS_HEADERS
                        .iter()
                        .find(|k| k.eq_ignore_ascii_case(n.trim()))
                    {
                        Some(k) => names.push(*k),
                        None => self.diag_at(
                            h.span().start,
                            format!(
                                "address: header {n:?} does not hold addresses (one of: {})",
                                ADDRESS_HEADERS.join(", ")
                            ),
                        ),
                    }
                }
                if names.is_empty() {
                    self.diag_at(h.span().start, "address: 'header' names no header");
                    return None;
                }
                AddressSource::Headers(names)
            }
            (None, Some(e)) => match e.get_ref().as_str() {
                "sender" => AddressSource::EnvelopeSender,
                "recipient" => AddressSource::EnvelopeRecipient,
                other => {
                    self.diag_at(
                        e.span().start,
                        format!("address: envelope = {other:?}; give \"sender\" or \"recipient\""),
                    );
                    return None;
                }
            },
            _ => {
                self.diag_at(at, "address: give exactly one of 'header' and 'envelope'");
                return None;
            }
        };
        let part = match &spec.part {
            None => AddressPart::All,
            Some(p) => match AddressPart::NAMES.iter().find(|(n, _)| n == p.get_ref()) {
                Some((_, part)) => *part,
                None => {
                    let names: Vec<&str> = AddressPart::NAMES.iter().map(|(n, _)| *n).collect();
                    self.diag_at(
                        p.span().start,
                        format!(
                            "address: part = {:?}; one of: {}",
                            p.get_ref(),
                            names.join(", ")
                        ),
                    );
                    return None;
                }
            },
        };
        let test = match (&spec.is, &spec.pattern, &spec.table) {
            (Some(v), None, None) => AddressTest::Is(v.get_ref().clone()),
            (None, Some(p), None) => {
                let pat = self.pattern(p, "address match")?;
                AddressTest::Match(pat, p.get_ref().clone())
            }
            (None, None, Some(t)) => {
                if part != AddressPart::All {
                    self.diag_at(
                        spec.part.as_ref().map_or(at, |p| p.span().start),
                        "address: a table is looked up with whole addresses (access(5) forms); remove 'part'",
                    );
                    return None;
                }
                let opts = self.opts.clone();
                let table = self.map(t, &opts)?;
                AddressTest::Table(std::sync::Arc::new(vec![table]), t.get_ref().clone())
            }
            _ => {
                self.diag_at(at, "address: give exactly one of 'is', 'match' and 'table'");
                return None;
            }
        };
        Some(AddressCond { source, part, test })
    }

    /// Parses a template (`crate::policy::vars`), reporting a problem at
    /// its position in the file (`what`: the key, for the message).
    pub(crate) fn template(&mut self, s: &Spanned<String>, what: &str) -> Option<Template> {
        self.template_in(s.get_ref(), s.span(), what)
    }

    /// [`Loader::template`] for `text` written at `span` (the string
    /// itself, or the array it is in). A group (`${N}`) must be one of
    /// the rule's own regex match (`rule_match`).
    fn template_in(
        &mut self,
        text: &str,
        span: std::ops::Range<usize>,
        what: &str,
    ) -> Option<Template> {
        // The position inside the string, when it is written without
        // escapes (`"..."` or `'...'`); else where the value starts.
        let raw = self.text.get(span.start + 1..span.end.saturating_sub(1));
        let at = |offset: usize| {
            if raw == Some(text) {
                span.start + 1 + offset
            } else {
                span.start
            }
        };
        let t = match Template::parse(text) {
            Ok(t) => t,
            Err(e) => {
                self.diag_at(at(e.offset), format!("{what}: {}", e.msg));
                return None;
            }
        };
        let mut ok = true;
        for (v, offset) in t.vars_at() {
            let Var::Group(n) = v else { continue };
            let msg = match self.rule_groups() {
                None => format!(
                    "{what}: ${{{n}}} is a group of the rule's match, and the rule has \
                     none (a header 'match' or an address 'match' at its top)"
                ),
                Some(g) if usize::from(n) > g => format!(
                    "{what}: ${{{n}}}, but the rule's match has {g} group{}",
                    if g == 1 { "" } else { "s" }
                ),
                Some(_) => continue,
            };
            self.diag_at(at(offset), msg);
            ok = false;
        }
        ok.then_some(t)
    }

    /// The number of groups of the current rule's own regex match
    /// (`rule_match`), compiled only for a rule whose texts use groups.
    fn rule_groups(&mut self) -> Option<usize> {
        if let Some(g) = self.rule_groups {
            return g;
        }
        let g = self.rule_match.as_deref().map(|src| {
            RegexBuilder::new(src)
                .size_limit(crate::policy::regex_limits::RULE_NFA)
                .dfa_size_limit(crate::policy::regex_limits::RULE_LAZY_DFA)
                .build()
                // A regex that does not compile is reported where it is.
                .map_or(9, |r| r.captures_len() - 1)
        });
        self.rule_groups = Some(g);
        g
    }
}

/// Where a user may not go: keys only the system file may set.
fn user_forbidden(spec: &FileSpec, text: &str) -> Vec<(usize, String)> {
    // Tables have no span in the model: point at where the header is written.
    let table_at = |header: &str| text.find(header).unwrap_or(0);
    let mut found: Vec<(usize, String)> = Vec::new();
    if spec.settings.is_some() {
        found.push((table_at("[settings]"), "[settings]".into()));
    }
    if spec.lmtp.is_some() {
        found.push((table_at("[lmtp]"), "[lmtp]".into()));
    }
    if let Some(s) = &spec.spam {
        let keys = [
            (
                s.discard_threshold.as_ref().map(|k| k.span()),
                "'discard_threshold'",
            ),
            (
                s.user_junk_threshold_min.as_ref().map(|k| k.span()),
                "'user_junk_threshold_min'",
            ),
            (
                s.user_junk_threshold_max.as_ref().map(|k| k.span()),
                "'user_junk_threshold_max'",
            ),
            (s.virus.as_ref().map(|k| k.span()), "'virus'"),
            (s.dialects.as_ref().map(|k| k.span()), "'dialects'"),
            (
                s.trust_negative_scores.as_ref().map(|k| k.span()),
                "'trust_negative_scores'",
            ),
        ];
        for (span, key) in keys {
            if let Some(span) = span {
                found.push((span.start, key.into()));
            }
        }
        if s.custom.is_some() {
            found.push((table_at("[[spam.custom]]"), "[[spam.custom]]".into()));
        }
    }
    found
        .into_iter()
        .map(|(at, key)| (at, format!("{key} may only be set in the system file")))
        .collect()
}

/// Parses and compiles one rules file. All problems are returned together.
pub fn load_str(
    text: &str,
    file: &Path,
    origin: Origin,
    opts: &OpenOptions,
) -> Result<Layer, Vec<Diag>> {
    load_spec(text, file, origin, opts).map(|(layer, _)| layer)
}

/// Parses the TOML of a rules file (or of a piece the rules cache stored).
pub(crate) fn parse_spec(text: &str, file: &Path) -> Result<FileSpec, Vec<Diag>> {
    toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map_or((0, 0), |s| line_col(text, s.start));
        vec![Diag::at(file, line, col, e.message().trim().to_string())]
    })
}

/// Compiles `[[rule]]` tables alone: the rules and their header groups.
/// `text` is what they were parsed from (for positions).
pub(crate) fn compile_rules(
    specs: &[RuleSpec],
    text: &str,
    file: &Path,
    origin: Origin,
    opts: &OpenOptions,
) -> Result<(Vec<Rule>, Vec<HeaderGroup>), Vec<Diag>> {
    let mut l = Loader::new(file, text, origin, opts);
    let out = l.rules(specs);
    if l.diags.is_empty() {
        Ok(out)
    } else {
        Err(l.diags)
    }
}

/// `load_str`, also returning the parsed file (for the rules cache).
pub(crate) fn load_spec(
    text: &str,
    file: &Path,
    origin: Origin,
    opts: &OpenOptions,
) -> Result<(Layer, FileSpec), Vec<Diag>> {
    let spec = parse_spec(text, file)?;
    // A system file that sets nothing (only comments, as the Debian package
    // ships /etc/deliver/rules.toml) means the embedded default, as a
    // missing one does: not a layer without spam routing.
    if origin == Origin::System && spec.is_empty() {
        return Ok((default_layer(), spec));
    }
    let mut l = Loader::new(file, text, origin, opts);
    // What parsing built counts against the user's budget (crate::policy::budget).
    if let Err(msg) = crate::policy::budget::check() {
        return Err(vec![Diag::file(file, msg)]);
    }
    if l.origin == Origin::User {
        for (at, msg) in user_forbidden(&spec, text) {
            l.diag_at(at, msg);
        }
    }

    let mut settings = Settings::default();
    if let Some(s) = &spec.settings {
        if let Some(d) = &s.recipient_delimiter {
            settings.recipient_delimiter = d.get_ref().clone();
        }
        if let Some(b) = s.parent_domain_matches_subdomains {
            settings.parent_domain_matches_subdomains = b;
        }
        if let Some(q) = &s.quarantine_folder {
            match l.folder(q) {
                Some(Some(f)) => settings.quarantine_folder = f,
                Some(None) => {
                    l.diag_at(q.span().start, "the quarantine folder cannot be the Inbox")
                }
                None => {}
            }
        }
        if let Some(n) = s.max_header_bytes {
            settings.limits.max_header_bytes = n.max(1024);
        }
        if let Some(n) = s.max_headers {
            settings.limits.max_headers = n.max(1);
        }
        if let Some(n) = s.body_window {
            settings.limits.body_window = n;
        }
        if let Some(d) = &s.map_cache_dir {
            settings.map_cache_dir = Some(PathBuf::from(d.get_ref()));
        }
        if let Some(d) = &s.system_cache_dir {
            if Path::new(d.get_ref()).is_absolute() {
                settings.system_cache_dir = Some(PathBuf::from(d.get_ref()));
            } else {
                l.diag_at(d.span().start, "system_cache_dir must be an absolute path");
            }
        }
        if let Some(t) = &s.time_limit {
            match *t.get_ref() {
                n @ 1..=MAX_TIME_LIMIT => settings.time_limit = Duration::from_secs(n as u64),
                n => l.diag_at(
                    t.span().start,
                    format!("time_limit must be 1 to {MAX_TIME_LIMIT} seconds, not {n}"),
                ),
            }
        }
        if let Some(t) = &s.program_time_limit {
            match *t.get_ref() {
                n @ 1..=MAX_TIME_LIMIT => {
                    settings.program_time_limit = Duration::from_secs(n as u64)
                }
                n => l.diag_at(
                    t.span().start,
                    format!("program_time_limit must be 1 to {MAX_TIME_LIMIT} seconds, not {n}"),
                ),
            }
        }
        for (v, key, dst) in [
            (
                &s.filter_size_limit,
                "filter_size_limit",
                &mut settings.filter_size_limit,
            ),
            (
                &s.filter_output_limit,
                "filter_output_limit",
                &mut settings.filter_output_limit,
            ),
        ] {
            if let Some(v) = v {
                match u64::try_from(*v.get_ref()) {
                    Ok(n) if n > 0 => *dst = n,
                    _ => l.diag_at(
                        v.span().start,
                        format!("{key} must be a positive number of bytes"),
                    ),
                }
            }
        }
    }

    if let Some(sm) = spec.settings.as_ref().and_then(|s| s.sendmail.as_ref()) {
        let argv = sm.get_ref().items();
        match argv.first() {
            Some(p) if Path::new(p).is_absolute() && !argv.iter().any(|a| a.contains('\0')) => {
                settings.sendmail = argv.to_vec()
            }
            _ => l.diag_at(
                sm.span().start,
                "sendmail must be an absolute path, or a list starting with one",
            ),
        }
    }

    let mut spam = SpamConfig::default();
    if let Some(s) = &spec.spam {
        spam.junk_threshold = s.junk_threshold.as_ref().map(|v| *v.get_ref());
        spam.discard_threshold = s.discard_threshold.as_ref().map(|v| *v.get_ref());
        if let Some(f) = &s.junk_folder {
            match l.folder(f) {
                Some(Some(f)) => spam.junk_folder = Some(f),
                Some(None) => l.diag_at(f.span().start, "the junk folder cannot be the Inbox"),
                None => {}
            }
        }
        if let Some(v) = &s.virus {
            spam.virus = match v.get_ref().as_str() {
                "discard" => VirusAction::Discard,
                "junk" => VirusAction::Junk,
                other => match l.folder(v) {
                    Some(Some(f)) => VirusAction::Folder(f),
                    Some(None) => {
                        l.diag_at(
                            v.span().start,
                            format!("virus = {other:?}: virus-flagged mail cannot go to the Inbox"),
                        );
                        VirusAction::Discard
                    }
                    None => VirusAction::Discard,
                },
            };
        }
        if let Some(d) = &s.dialects {
            spam.spamassassin = false;
            spam.amavis = false;
            spam.rspamd = false;
            for name in d.get_ref() {
                match name.as_str() {
                    "spamassassin" => spam.spamassassin = true,
                    "amavis" => spam.amavis = true,
                    "rspamd" => spam.rspamd = true,
                    other => l.diag_at(
                        d.span().start,
                        format!(
                            "unknown spam dialect {other:?} (known: spamassassin, amavis, rspamd)"
                        ),
                    ),
                }
            }
        }
        spam.trust_negative_scores = s
            .trust_negative_scores
            .as_ref()
            .is_some_and(|b| *b.get_ref());
        spam.user_junk_threshold_min = s.user_junk_threshold_min.as_ref().map(|v| *v.get_ref());
        spam.user_junk_threshold_max = s.user_junk_threshold_max.as_ref().map(|v| *v.get_ref());
        for (k, v) in [
            ("junk_threshold", &s.junk_threshold),
            ("discard_threshold", &s.discard_threshold),
            ("user_junk_threshold_min", &s.user_junk_threshold_min),
            ("user_junk_threshold_max", &s.user_junk_threshold_max),
        ] {
            if let Some(v) = v {
                if !v.get_ref().is_finite() {
                    l.diag_at(v.span().start, format!("{k} must be a finite number"));
                }
            }
        }
        if let (Some(lo), Some(hi)) = (&s.user_junk_threshold_min, &s.user_junk_threshold_max) {
            if lo.get_ref() > hi.get_ref() {
                l.diag_at(
                    hi.span().start,
                    "user_junk_threshold_max is below user_junk_threshold_min",
                );
            }
        }
        if let (Some(j), Some(d)) = (&s.junk_threshold, &s.discard_threshold) {
            if d.get_ref() < j.get_ref() {
                l.diag_at(d.span().start, "discard_threshold is below junk_threshold");
            }
        }
        for c in s.custom.iter().flatten() {
            let score = l.regex(&c.pattern, "spam.custom match");
            if let Some(r) = &score {
                if r.captures_len() < 2 {
                    l.diag_at(
                        c.pattern.span().start,
                        "spam.custom match needs a capture group for the score",
                    );
                }
            }
            let flag = c.flag.as_ref().and_then(|f| l.regex(f, "spam.custom flag"));
            if let Some(score) = score {
                spam.custom.push(CustomDialect {
                    header: c.header.get_ref().clone(),
                    score,
                    flag,
                });
            }
        }
    }

    let opts = OpenOptions {
        cache_dir: settings
            .map_cache_dir
            .clone()
            .or_else(|| opts.cache_dir.clone()),
        system_cache_dir: settings
            .system_cache_dir
            .clone()
            .or_else(|| opts.system_cache_dir.clone()),
        home: opts.home.clone(),
    };
    l.opts = opts.clone();
    let mut access = Access::default();
    if let Some(a) = &spec.access {
        access.client = l.maps(&a.client, &opts);
        access.helo = l.maps(&a.helo, &opts);
        access.sender = l.maps(&a.sender, &opts);
        access.recipient = l.maps(&a.recipient, &opts);
    }

    let (rules, header_groups) = l.rules(&spec.rule);
    if !l.diags.is_empty() {
        l.diags.sort_by_key(|d| (d.line, d.col));
        return Err(l.diags);
    }
    let layer = Layer {
        origin,
        path: Some(file.to_path_buf()),
        settings,
        spam,
        access,
        rules,
        header_groups,
        deferred: None,
    };
    Ok((layer, spec))
}

/// The embedded default layer.
pub fn default_layer() -> Layer {
    let mut l = load_str(
        DEFAULT_RULES,
        Path::new("(default rules)"),
        Origin::System,
        &OpenOptions::default(),
    )
    .expect("the embedded default rules are valid");
    l.path = None;
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, origin: Origin) -> Result<Layer, Vec<Diag>> {
        load_str(text, Path::new("r.toml"), origin, &OpenOptions::default())
    }

    fn err(text: &str, origin: Origin) -> String {
        load(text, origin)
            .unwrap_err()
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn default_is_valid() {
        let l = default_layer();
        assert_eq!(l.spam.virus, VirusAction::Discard);
        assert_eq!(l.spam.junk_folder.as_ref().unwrap().name, "Junk");
    }

    #[test]
    fn a_system_file_that_sets_nothing_is_the_default() {
        for text in ["", "\n", "# only\n  # comments\n\n#[spam]\n"] {
            let l = load(text, Origin::System).unwrap();
            assert_eq!(l.describe(), "embedded default rules", "{text:?}");
            assert_eq!(l.spam.junk_folder.as_ref().unwrap().name, "Junk");
        }
        // A table, even empty, is a file that says something.
        let l = load("[settings]\n", Origin::System).unwrap();
        assert_eq!(l.describe(), "r.toml");
        assert!(l.spam.junk_folder.is_none());
        // A user's empty file adds nothing to the system layer.
        let u = load("# nothing\n", Origin::User).unwrap();
        assert_eq!(u.describe(), "r.toml");
        assert!(u.spam.junk_folder.is_none());
    }

    #[test]
    fn issue_example_loads() {
        let t = r#"
[spam]
junk_threshold = 5.0
discard_threshold = 15.0
junk_folder = "Junk"
virus = "discard"

[[rule]]
name   = "pills"
header = "Subject"
match  = "(?i)v[i1]agra"
score  = 3.0

[[rule]]
name   = "rust-list"
header = "List-Id"
match  = "rust-users\\.lists\\.example\\.org"
folder = "Lists.rust"
"#;
        let l = load(t, Origin::System).unwrap();
        assert_eq!(l.rules.len(), 2);
        assert_eq!(
            l.rules[1].action,
            Some(RuleAction::Folder(
                FolderName::parse("Lists.rust").unwrap().unwrap()
            ))
        );
    }

    #[test]
    fn errors_have_positions() {
        assert_eq!(
            err("[spam]\njunk_treshold = 5\n", Origin::System)
                .split(": ")
                .next()
                .unwrap(),
            "r.toml:2:1"
        );
        let e = err(
            "[[rule]]\nheader = \"Subject\"\nmatch = \"(unclosed\"\nscore = 1\n",
            Origin::System,
        );
        assert!(e.starts_with("r.toml:3:9: match: bad regex"), "{e}");
        let e = err(
            "[[rule]]\nheader = \"S\"\nmatch = \"x\"\nfolder = \"../etc\"\n",
            Origin::System,
        );
        assert!(e.starts_with("r.toml:4:10: refused folder name"), "{e}");
        let e = err("[spam\n", Origin::System);
        assert!(e.starts_with("r.toml:1:"), "{e}");
    }

    #[test]
    fn rule_checks() {
        let e = err(
            "[[rule]]\nname = \"x\"\nheader = \"S\"\nmatch = \"x\"\n",
            Origin::System,
        );
        assert!(e.contains("neither a score nor an action"), "{e}");
        let e = err(
            "[[rule]]\nname = \"x\"\nheader = \"S\"\nmatch = \"x\"\njunk = true\ndiscard = true\n",
            Origin::System,
        );
        assert!(e.contains("2 terminal actions"), "{e}");
        let e = err("[[rule]]\nname = \"x\"\nscore = 1\n", Origin::System);
        assert!(e.contains("no condition"), "{e}");
        let e = err(
            "[[rule]]\nname = \"x\"\nmatch = \"y\"\nscore = 1\n",
            Origin::System,
        );
        assert!(e.contains("'match' needs 'header'"), "{e}");
        let e = err(
            "[[rule]]\nname = \"x\"\nall = []\nscore = 1\n",
            Origin::System,
        );
        assert!(e.contains("'all' is empty"), "{e}");
        let e = err(
            "[[rule]]\nname = \"x\"\nheader = \"S\"\ndefer = \"5.7.1 no\"\n",
            Origin::System,
        );
        assert!(e.contains("use 'reject'"), "{e}");
        let e = err(
            "[spam]\nuser_junk_threshold_min = 8\nuser_junk_threshold_max = 4\n",
            Origin::System,
        );
        assert!(e.contains("below user_junk_threshold_min"), "{e}");
    }

    #[test]
    fn user_may_not_set_system_keys() {
        let e = err("[spam]\nvirus = \"junk\"\n", Origin::User);
        assert!(e.contains("only be set in the system file"), "{e}");
        let e = err("# mine\n[settings]\nmax_headers = 5\n", Origin::User);
        assert!(
            e.starts_with("r.toml:2:1: [settings] may only be set"),
            "{e}"
        );
        assert!(load("[spam]\njunk_threshold = 8.0\n", Origin::User).is_ok());
    }

    #[test]
    fn reject_status() {
        let l = load("[[rule]]\nheader=\"S\"\nmatch=\"x\"\nreject=\"5.7.26 go away\"\n[[rule]]\nheader=\"S\"\nmatch=\"y\"\ndefer=\"later\"\n", Origin::System).unwrap();
        assert_eq!(
            l.rules[0].action,
            Some(RuleAction::Reject {
                status: "5.7.26".into(),
                text: "go away".into()
            })
        );
        assert_eq!(
            l.rules[1].action,
            Some(RuleAction::Defer {
                status: "4.7.1".into(),
                text: "later".into()
            })
        );
    }

    #[test]
    fn literal_texts_stay_literal() {
        let l = load(
            "[[rule]]\nheader = \"S\"\nmatch = \"(x)\"\nfolder = \"Cost$$\"\nadd_header = \"X-A: $$1\"\n\
             [[rule]]\nheader = \"S\"\nmatch = \"(x)\"\npipe = [\"p\", \"${sender}\", \"a$$b\"]\n\
             [[rule]]\nheader = \"S\"\nmatch = \"(x)\"\nfolder = \"L.${1}\"\n",
            Origin::System,
        )
        .unwrap();
        let [a, b, c] = &l.rules[..] else { panic!() };
        assert_eq!(
            a.action,
            Some(RuleAction::Folder(
                FolderName::parse("Cost$").unwrap().unwrap()
            ))
        );
        assert_eq!(a.edits, [Edit::Add(Text::Literal("X-A: $1".into()))]);
        assert!(!a.uses_groups);
        let Some(RuleAction::Pipe(argv)) = &b.action else {
            panic!()
        };
        assert!(matches!(argv[1], Text::Template(_)));
        assert_eq!(argv[2], Text::Literal("a$b".into()));
        assert!(!b.uses_groups, "named values need no captures");
        assert!(matches!(c.action, Some(RuleAction::FolderTemplate(_))));
        assert!(c.uses_groups);
    }

    #[test]
    fn line_col_counts_chars() {
        assert_eq!(line_col("ab\ncdé f", 8), (2, 5));
        assert_eq!(line_col("x", 0), (1, 1));
    }
}
