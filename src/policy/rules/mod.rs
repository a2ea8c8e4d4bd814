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
use crate::store::maildir::FolderName;
use model::{CondRef, CondSpec, FileSpec, RuleSpec};
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
}

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
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
}

impl Cond {
    pub fn uses_body(&self) -> bool {
        match self {
            Cond::Body(_) => true,
            Cond::All(v) | Cond::Any(v) => v.iter().any(Cond::uses_body),
            Cond::Not(c) => c.uses_body(),
            _ => false,
        }
    }
}

/// A rule's terminal action.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleAction {
    Folder(FolderName),
    Junk,
    Discard,
    Inbox,
    Reject { status: String, text: String },
    Defer { status: String, text: String },
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub cond: Cond,
    pub score: f64,
    pub action: Option<RuleAction>,
}

/// The patterns of all of a layer's rules on one header, compiled together.
#[derive(Debug, Clone)]
pub struct HeaderGroup {
    pub name: String,
    pub patterns: PatternGroup,
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
}

impl<'a> Loader<'a> {
    fn new(file: &'a Path, text: &'a str, origin: Origin) -> Loader<'a> {
        Loader {
            file,
            text,
            origin,
            diags: Vec::new(),
            groups: Vec::new(),
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
        if parts.is_empty() {
            self.diag_at(at, format!("rule {name:?} has no condition"));
        }
        let mut actions = Vec::new();
        if let Some(f) = &r.folder {
            if let Some(folder) = self.folder(f) {
                actions.push(match folder {
                    Some(f) => RuleAction::Folder(f),
                    None => RuleAction::Inbox,
                });
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
        let action_written = r.folder.is_some()
            || r.junk.is_some()
            || r.discard.is_some()
            || r.inbox.is_some()
            || r.reject.is_some()
            || r.defer.is_some();
        if r.score.is_none() && !action_written {
            self.diag_at(
                at,
                format!("rule {name:?} has neither a score nor an action"),
            );
        }
        Some(Rule {
            name,
            cond: Cond::All(parts),
            score,
            action: actions.into_iter().next(),
        })
    }

    /// Compiles the `[[rule]]` tables and their header groups.
    fn rules(&mut self, specs: &[RuleSpec]) -> (Vec<Rule>, Vec<HeaderGroup>) {
        let mut rules = Vec::new();
        for (i, r) in specs.iter().enumerate() {
            if let Some(rule) = self.rule(i, r) {
                rules.push(rule);
            }
        }
        (rules, self.build_groups())
    }

    /// A relative table path is relative to the rules file's directory.
    fn resolve_spec(&self, spec: &str) -> String {
        match spec.split_once(':') {
            Some((kind, path))
                if !path.is_empty() && !path.starts_with('/') && !path.contains(':') =>
            {
                let dir = self.file.parent().unwrap_or(Path::new(""));
                format!("{kind}:{}", dir.join(path).display())
            }
            _ => spec.to_string(),
        }
    }

    fn maps(&mut self, specs: &[Spanned<String>], opts: &OpenOptions) -> Vec<Box<dyn Table>> {
        let mut out = Vec::new();
        for s in specs {
            match maps::open(&self.resolve_spec(s.get_ref()), opts) {
                Ok(t) => out.push(t),
                Err(e) => {
                    // A missing file is reported where the rules file names it;
                    // a problem inside the map at the map's own line and column.
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
                }
            }
        }
        out
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
) -> Result<(Vec<Rule>, Vec<HeaderGroup>), Vec<Diag>> {
    let mut l = Loader::new(file, text, origin);
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
    let mut l = Loader::new(file, text, origin);
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
    };
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
    fn line_col_counts_chars() {
        assert_eq!(line_col("ab\ncdé f", 8), (2, 5));
        assert_eq!(line_col("x", 0), (1, 1));
    }
}
