//! The decision: a pure function of (envelope, headers, body window, size,
//! rules). No I/O, no clock, no environment: real delivery and `--test` run
//! exactly this code, and the trace it returns is what `--test` prints.
//!
//! Order (documented as a numbered list in deliver.rules(5)):
//!
//! 1. A header limit that was reached is noted in the trace and the log;
//!    the steps below see the complete fields within the limits, and the
//!    rule condition `header_limit` tells that a limit was reached.
//! 2. System access maps (client, helo, sender, recipient), then the virus
//!    verdict, then system rules. REJECT, DEFER, DISCARD, HOLD and a virus
//!    verdict are final. OK, JUNK, FOLDER and a rule's filing action are
//!    provisional: the user's layer may replace them. As in smtpd, the first
//!    access result that decides ends the system layer: after a system OK,
//!    JUNK or FOLDER no system rule runs (not even a reject rule).
//! 3. The user's access maps and rules. Their first terminal result is
//!    final; a user OK overrides the system's spam routing for that sender.
//! 4. The system's provisional result, if any.
//! 5. Spam routing: the upstream score plus every matched rule's score
//!    against the thresholds (the user's junk threshold within the system's
//!    bounds), and the upstream spam flag when no score was given.
//! 6. The Inbox.
//!
//! Non-terminal actions do not end a layer: a copy (`copy = true` with
//! folder, inbox, junk or pipe) and the header edits (PREPEND results,
//! `add_header`, `subject_prefix`, `remove_header`) accumulate, in the
//! order met, from the system layer (its access maps and rules, as far as
//! step 2 runs them) and then the user's. They stay whatever the final
//! result: the copies are filed next to the final delivery (one folder
//! once) and the edits apply to every copy; a discard keeps the copies;
//! a reject or a deferral drops them all (nothing is written).
//!
//! A matched rule's texts with variables (`crate::policy::vars`: a folder
//! name, added lines, the subject prefix, program arguments) are expanded
//! then, with the groups of the rule's own match computed only for a rule
//! whose texts use them. A result that is refused never does harm: a
//! folder name `FolderName::parse` refuses gives the Inbox, an edit that
//! is not one valid header line is skipped, a program argument with a NUL
//! stops the pipe (the Inbox) or the filter (the message goes on); each
//! with a trace step and a log line naming the value, escaped.
//!
//! A matching `filter` rule ends the decision with a `FilterRequest`: the
//! engine runs the program and decides again from the top on its output
//! (or on the original, when the filter failed), with every filter that
//! ran (`Input::filters_done`) skipped. Only the last decision's plan is
//! executed, so every copy is of the final message.

use crate::input::address::{self, Address};
use crate::input::envelope::Envelope;
use crate::input::message::{self, HeaderLimit, Headers};
use crate::policy::access::{self, AccessAction, AccessOptions, Hit, Probe};
use crate::policy::plan::{self, Action, Delivery, Disposition, Edits, Plan};
use crate::policy::rules::{
    AddressCond, AddressPart, AddressSource, AddressTest, Cond, Edit, Layer, Origin, Rule,
    RuleAction, Settings, VirusAction, ADDRESS_HEADERS,
};
use crate::policy::spam;
use crate::policy::vars::{Captures, Text, Values};
use crate::store::maildir::FolderName;
use regex_automata::PatternSet;
use serde::Serialize;
use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::fmt;

/// Everything the decision looks at.
pub struct Input<'a> {
    pub envelope: &'a Envelope,
    pub headers: &'a Headers,
    /// The raw header block (for MIME-decoding the body window).
    pub header_block: &'a [u8],
    /// The first bytes of the body, as bounded by the limits.
    pub body_window: &'a [u8],
    /// The size of the message as delivered (without the From_ line).
    pub size: u64,
    /// Set when a header limit was reached: `headers` are then the fields
    /// within the limits.
    pub limit_hit: Option<HeaderLimit>,
    /// The filters that already ran on this message (skipped).
    pub filters_done: &'a [FilterId],
    /// Whether the message is a duplicate (`crate::engine::effects`), for
    /// a rule with `duplicate`; `None` when not known (`--test` does not
    /// read the state): then it is not one.
    pub duplicate: Option<bool>,
    /// Today's date (`YYYYMMDD`, local time) for vacation's start and end.
    pub today: u32,
}

/// A filter rule: its layer and its name (not its position: with the
/// rules cache, the rules compiled for the filter's output may be others).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilterId {
    pub origin: Origin,
    pub rule: String,
}

/// A filter to run before the message is decided again.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilterRequest {
    #[serde(skip)]
    pub id: FilterId,
    /// The rule's name.
    pub rule: String,
    pub argv: Vec<String>,
}

/// Where the decision sends the message, in the words of the JSON output
/// (`action`) and of the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    Inbox,
    Junk,
    Folder,
    Discard,
    Reject,
    Defer,
    Pipe,
    /// Forward (without keeping a copy).
    Forward,
    /// A filter is to run first (the decision is not final).
    Filter,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Inbox => "inbox",
            Route::Junk => "junk",
            Route::Folder => "folder",
            Route::Discard => "discard",
            Route::Reject => "reject",
            Route::Defer => "defer",
            Route::Pipe => "pipe",
            Route::Forward => "forward",
            Route::Filter => "filter",
        }
    }
}

/// The layer a trace step belongs to (`-` for steps outside the layers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StepLayer {
    #[serde(rename = "system")]
    System,
    #[serde(rename = "user")]
    User,
    #[serde(rename = "-")]
    Neither,
}

/// What a trace step looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Limit,
    Access,
    Virus,
    Spam,
    Rule,
    Threshold,
    /// A copy, an edit or a filter: a non-terminal action.
    Action,
    Final,
}

impl StepLayer {
    pub fn as_str(self) -> &'static str {
        match self {
            StepLayer::System => "system",
            StepLayer::User => "user",
            StepLayer::Neither => "-",
        }
    }
}

impl From<Origin> for StepLayer {
    fn from(o: Origin) -> Self {
        match o {
            Origin::System => StepLayer::System,
            Origin::User => StepLayer::User,
        }
    }
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Limit => "limit",
            StepKind::Access => "access",
            StepKind::Virus => "virus",
            StepKind::Spam => "spam",
            StepKind::Rule => "rule",
            StepKind::Threshold => "threshold",
            StepKind::Action => "action",
            StepKind::Final => "final",
        }
    }
}

macro_rules! str_like {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}
/// The access check a table belongs to, in smtpd's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessCheck {
    Client,
    Helo,
    Sender,
    Recipient,
}

impl AccessCheck {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessCheck::Client => "client",
            AccessCheck::Helo => "helo",
            AccessCheck::Sender => "sender",
            AccessCheck::Recipient => "recipient",
        }
    }
}

str_like!(StepLayer);
str_like!(StepKind);
str_like!(AccessCheck);

/// One step of the trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub layer: StepLayer,
    pub kind: StepKind,
    /// The table, rule or header concerned.
    pub name: String,
    /// The lookup key or header read, when there is one.
    pub key: Option<String>,
    pub result: String,
    pub score: Option<f64>,
}

/// The decision: the plan, and what led to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Where the message goes.
    #[serde(rename = "action")]
    pub action: Route,
    /// The folder for `junk` and `folder` (and a quarantine); `None` is the Inbox.
    #[serde(serialize_with = "plan::ser_folder")]
    pub folder: Option<FolderName>,
    /// The total score: upstream plus rules.
    pub score: f64,
    /// RFC 3463 status and text for `reject` and `defer`.
    pub status: Option<String>,
    pub text: Option<String>,
    /// What decided, e.g. `rule pills`, `access sender texthash:/x`, `threshold`.
    pub reason: String,
    /// The filter to run before deciding again; the plan is then empty.
    pub filter: Option<FilterRequest>,
    /// Lines to log (WARN/INFO results, ignored results, bad folder names).
    pub log: Vec<String>,
    pub trace: Vec<Step>,
    /// What the engine does, in order.
    pub plan: Plan,
}

impl Decision {
    /// The status line printed for reject/defer: the plan's failure's
    /// (`crate::output::exit`).
    pub fn status_line(&self) -> Option<String> {
        crate::output::exit::failure_of(&self.plan.disposition).map(|f| f.status_line())
    }
}

/// A result that ends or proposes the decision.
#[derive(Debug, Clone)]
struct Proposal {
    route: Route,
    folder: Option<FolderName>,
    status: Option<String>,
    text: Option<String>,
    reason: String,
    /// HOLD and virus verdicts: final although they file the message.
    hard: bool,
    /// Maildir flag letters for a filing route.
    flags: String,
    /// The program of a `Pipe` route.
    argv: Vec<String>,
}

impl Proposal {
    fn simple(route: Route, folder: Option<FolderName>, reason: String) -> Self {
        Proposal {
            route,
            folder,
            status: None,
            text: None,
            reason,
            hard: false,
            flags: String::new(),
            argv: Vec::new(),
        }
    }

    /// A reject or defer, with its status and text.
    fn reply(route: Route, status: &str, text: String, reason: String) -> Self {
        Proposal {
            route,
            folder: None,
            status: Some(status.to_string()),
            text: Some(text),
            reason,
            hard: false,
            flags: String::new(),
            argv: Vec::new(),
        }
    }

    /// REJECT, DEFER, DISCARD, HOLD and virus verdicts cannot be replaced by
    /// a user's layer.
    fn is_hard(&self) -> bool {
        self.hard || matches!(self.route, Route::Reject | Route::Defer | Route::Discard)
    }
}

struct Ctx<'a> {
    input: &'a Input<'a>,
    body: OnceCell<String>,
    /// Per (layer, header group): which patterns each occurrence matches.
    header_matches: RefCell<HashMap<(Origin, usize), Vec<PatternSet>>>,
    /// The addresses of the address headers (`ADDRESS_HEADERS`), in field
    /// order, parsed the first time an `address` condition needs them.
    addresses: OnceCell<Vec<(&'static str, Address)>>,
    /// The access options of the system's settings (recipient delimiter,
    /// parent domains), for `address` conditions.
    access_opts: AccessOptions,
    /// Lines to log from condition tests (a table lookup that failed):
    /// moved into `log` after each rule.
    cond_log: RefCell<Vec<String>>,
    trace: Vec<Step>,
    log: Vec<String>,
    /// Copies (non-terminal filing and pipes), in the order met.
    copies: Vec<Copy>,
    edits: Edits,
    filter: Option<FilterRequest>,
    score: f64,
    /// The first vacation of a matched rule, with the rule's name.
    vacation: Option<(crate::policy::vacation::Vacation, String)>,
    /// The upstream filter flagged the message as spam, or a virus.
    spam: bool,
    virus: bool,
}

impl<'a> Ctx<'a> {
    /// Nothing decided yet about `input`, under the system layer's settings.
    fn new(input: &'a Input<'a>, system: &Layer) -> Self {
        Ctx {
            input,
            body: OnceCell::new(),
            header_matches: RefCell::new(HashMap::new()),
            addresses: OnceCell::new(),
            access_opts: AccessOptions {
                recipient_delimiter: system.settings.recipient_delimiter.clone(),
                parent_domain_matches_subdomains: system.settings.parent_domain_matches_subdomains,
            },
            cond_log: RefCell::new(Vec::new()),
            trace: Vec::new(),
            log: Vec::new(),
            copies: Vec::new(),
            edits: Edits::default(),
            filter: None,
            score: 0.0,
            vacation: None,
            spam: false,
            virus: false,
        }
    }
}

/// A rule's action whose expanded text was refused: the log line (after
/// the rule's name), the trace step's key (the value, escaped) and result.
struct Refused {
    log: String,
    key: String,
    step: &'static str,
}

/// A copy a rule asked for; the junk folder is resolved at the end.
#[derive(Debug, Clone)]
enum Copy {
    Folder(Option<FolderName>, String),
    Junk(String),
    Pipe(Vec<String>, String),
    Forward(Vec<String>, String),
}

impl Ctx<'_> {
    fn step(
        &mut self,
        layer: StepLayer,
        kind: StepKind,
        name: &str,
        key: Option<&str>,
        result: impl Into<String>,
        score: Option<f64>,
    ) {
        self.trace.push(Step {
            layer,
            kind,
            name: name.to_string(),
            key: key.map(str::to_string),
            result: result.into(),
            score,
        });
    }

    fn body(&self) -> &str {
        self.body
            .get_or_init(|| message::body_text(self.input.header_block, self.input.body_window))
    }

    /// Does pattern `pid` of the layer's header group `g` match any
    /// occurrence of the header? Each occurrence is matched once against
    /// the whole group, the first time any of its patterns is asked for.
    fn header_match(&self, layer: &Layer, g: usize, pid: usize) -> bool {
        let mut cache = self.header_matches.borrow_mut();
        let sets = cache.entry((layer.origin, g)).or_insert_with(|| {
            let group = &layer.header_groups[g];
            self.input
                .headers
                .all(&group.name)
                .map(|v| group.patterns.matches(v))
                .collect()
        });
        let pid = regex_automata::PatternID::new_unchecked(pid);
        sets.iter().any(|s| s.contains(pid))
    }

    fn eval(&self, layer: &Layer, c: &Cond) -> bool {
        let env = self.input.envelope;
        match c {
            Cond::Header(name, test) => match test {
                None => self.input.headers.all(name).next().is_some(),
                Some((g, pid)) => self.header_match(layer, *g, *pid),
            },
            Cond::Sender(re) => re.is_match(&env.sender.value),
            Cond::Recipient(re) => re.is_match(&env.recipient.value),
            Cond::ClientAddress(re) => re.is_match(&env.client_address.value),
            Cond::ClientHostname(re) => re.is_match(&env.client_hostname.value),
            Cond::Helo(re) => re.is_match(&env.client_helo.value),
            Cond::Body(re) => re.is_match(self.body()),
            Cond::SizeOver(n) => self.input.size > *n,
            Cond::SizeUnder(n) => self.input.size < *n,
            Cond::HeaderLimit(b) => self.input.limit_hit.is_some() == *b,
            Cond::Address(a) => self.address(a),
            Cond::All(v) => v.iter().all(|c| self.eval(layer, c)),
            Cond::Any(v) => v.iter().any(|c| self.eval(layer, c)),
            Cond::Not(c) => !self.eval(layer, c),
        }
    }

    /// The addresses of every address header, parsed once from the raw
    /// fields (those within the header limits): display names, comments
    /// and encoded words are never read as addresses (`input::address`).
    fn header_addresses(&self) -> &[(&'static str, Address)] {
        self.addresses.get_or_init(|| {
            let block = self.input.header_block;
            let mut out = Vec::new();
            for f in crate::input::edit::raw_fields(block).take(self.input.headers.len()) {
                let name = f.name(block);
                let Some(known) = ADDRESS_HEADERS
                    .iter()
                    .find(|k| k.as_bytes().eq_ignore_ascii_case(name))
                else {
                    continue;
                };
                let value = String::from_utf8_lossy(f.value(block));
                out.extend(address::parse_list(&value).into_iter().map(|a| (*known, a)));
            }
            out
        })
    }

    /// Whether `test` holds for any address of `source` (Sieve's "any
    /// address of any header"). The envelope sender and recipient are one
    /// address each; the null sender is the empty address.
    fn any_address(&self, source: &AddressSource, test: &mut dyn FnMut(&Address) -> bool) -> bool {
        let envelope = |v: &str| match v.rsplit_once('@') {
            Some((l, d)) => Address {
                local: l.to_string(),
                domain: d.to_string(),
            },
            None => Address {
                local: v.to_string(),
                domain: String::new(),
            },
        };
        match source {
            AddressSource::Headers(names) => self
                .header_addresses()
                .iter()
                .filter(|(n, _)| names.contains(n))
                .any(|(_, a)| test(a)),
            AddressSource::EnvelopeSender => test(&envelope(&self.input.envelope.sender.value)),
            AddressSource::EnvelopeRecipient => {
                test(&envelope(&self.input.envelope.recipient.value))
            }
        }
    }

    /// The tested part of an address; `None` when it has no such part (no
    /// detail, no domain).
    fn address_part<'x>(&self, a: &'x Address, part: AddressPart) -> Option<Cow<'x, str>> {
        let delims = &self.access_opts.recipient_delimiter;
        match part {
            AddressPart::All if a.domain.is_empty() => Some(Cow::Borrowed(&a.local)),
            AddressPart::All => Some(Cow::Owned(a.full())),
            AddressPart::LocalPart => Some(Cow::Borrowed(&a.local)),
            AddressPart::Domain => (!a.domain.is_empty()).then_some(Cow::Borrowed(&a.domain)),
            AddressPart::User => Some(Cow::Borrowed(
                address::split_detail(&a.local, delims).map_or(a.local.as_str(), |d| d.0),
            )),
            AddressPart::Detail => {
                address::split_detail(&a.local, delims).map(|d| Cow::Borrowed(d.1))
            }
        }
    }

    /// Evaluates an `address` condition.
    fn address(&self, c: &AddressCond) -> bool {
        match &c.test {
            AddressTest::Is(want) => self.any_address(&c.source, &mut |a| {
                self.address_part(a, c.part)
                    .is_some_and(|v| v.eq_ignore_ascii_case(want))
            }),
            AddressTest::Match(re, _) => self.any_address(&c.source, &mut |a| {
                self.address_part(a, c.part)
                    .is_some_and(|v| re.is_match(&v))
            }),
            AddressTest::Table(tables, spec) => self.any_address(&c.source, &mut |a| {
                let full = self.address_part(a, AddressPart::All).unwrap_or_default();
                let mut probes = Vec::new();
                match access::check_address(tables, &full, &self.access_opts, &mut probes) {
                    Ok(hits) => hits.iter().any(|h| h.action != AccessAction::Dunno),
                    Err(e) => {
                        self.cond_log.borrow_mut().push(format!(
                            "address table {spec}: lookup failed, the condition does not hold: {e}"
                        ));
                        false
                    }
                }
            }),
        }
    }

    /// The groups of the rule's own regex match: its top-level header
    /// `match` if it has one, else its top-level `address.match`; `None`
    /// when it has neither or it does not match. For a rule that matched
    /// and whose actions use `${0}`..`${9}`: the rule's regex is compiled
    /// again, with capture groups, only then (deciding builds none).
    pub(crate) fn captures(&self, layer: &Layer, rule: &Rule) -> Option<Captures> {
        let Cond::All(parts) = &rule.cond else {
            return None;
        };
        let compile = |src: &str| {
            regex::RegexBuilder::new(src)
                .size_limit(crate::policy::regex_limits::RULE_NFA)
                .dfa_size_limit(crate::policy::regex_limits::RULE_LAZY_DFA)
                .build()
                .ok()
        };
        let header = parts.iter().find_map(|p| match p {
            Cond::Header(name, Some((g, pid))) => Some((name, *g, *pid)),
            _ => None,
        });
        if let Some((name, g, pid)) = header {
            let re = compile(layer.header_groups.get(g)?.sources.get(pid)?)?;
            return self
                .input
                .headers
                .all(name)
                .find_map(|v| re.captures(v).map(|c| Captures::from_regex(&c)));
        }
        let (a, src) = parts.iter().find_map(|p| match p {
            Cond::Address(a) => match &a.test {
                AddressTest::Match(_, src) => Some((a, src)),
                _ => None,
            },
            _ => None,
        })?;
        let re = compile(src)?;
        let mut out = None;
        self.any_address(&a.source, &mut |addr| {
            let found = self
                .address_part(addr, a.part)
                .and_then(|v| re.captures(&v).map(|c| Captures::from_regex(&c)));
            out = found;
            out.is_some()
        });
        out
    }

    /// The values of the variables (`crate::policy::vars`) for this
    /// message, with a rule's `captures`.
    pub(crate) fn values<'c>(&'c self, captures: Option<&'c Captures>) -> Values<'c> {
        Values {
            envelope: self.input.envelope,
            headers: self.input.headers,
            header_block: self.input.header_block,
            delimiter: &self.access_opts.recipient_delimiter,
            captures,
        }
    }

    /// A text of a matched rule's action: a literal as it is, a template
    /// expanded with the message's values and the rule's `captures`.
    fn expand<'t>(&self, t: &'t Text, captures: Option<&Captures>) -> Cow<'t, str> {
        match t {
            Text::Literal(s) => Cow::Borrowed(s),
            Text::Template(_) => {
                let values = self.values(captures);
                Cow::Owned(t.expand(&|v| values.get(v)).into_owned())
            }
        }
    }

    /// Turns an access-map hit into a verdict, or records it and goes on.
    fn access_hit(
        &mut self,
        layer: &Layer,
        settings: &Settings,
        what: AccessCheck,
        hit: &Hit,
    ) -> Option<Proposal> {
        let lname = layer.origin.to_string();
        let reason = format!("access {what} {} key {}: {}", hit.table, hit.key, hit.raw);
        match &hit.action {
            AccessAction::Ok => Some(Proposal::simple(Route::Inbox, None, reason)),
            AccessAction::Dunno => None,
            AccessAction::Reject { status, text, .. } => {
                let text = smtpd_text(self.input.envelope, what, text);
                Some(Proposal::reply(Route::Reject, status, text, reason))
            }
            AccessAction::Defer { status, text, .. } => {
                let text = smtpd_text(self.input.envelope, what, text);
                Some(Proposal::reply(Route::Defer, status, text, reason))
            }
            AccessAction::Discard(_) => Some(Proposal::simple(Route::Discard, None, reason)),
            AccessAction::Hold(_) => {
                let mut v = Proposal::simple(
                    Route::Folder,
                    Some(settings.quarantine_folder.clone()),
                    format!("{reason} (HOLD: quarantine)"),
                );
                v.hard = true;
                Some(v)
            }
            AccessAction::Junk(_) => Some(Proposal::simple(Route::Junk, None, reason)),
            AccessAction::Folder(name) => match FolderName::parse(name) {
                Ok(Some(f)) => Some(Proposal::simple(Route::Folder, Some(f), reason)),
                Ok(None) => Some(Proposal::simple(Route::Inbox, None, reason)),
                Err(e) => {
                    self.log.push(format!(
                        "{lname} {what} map {}: refused folder {name:?} ({e}); using the Inbox",
                        hit.table
                    ));
                    Some(Proposal::simple(
                        Route::Inbox,
                        None,
                        format!("{reason} (refused folder name)"),
                    ))
                }
            },
            AccessAction::Prepend(h) => {
                // `access::parse_action` gives only lines that pass this
                // test; it is repeated where a line is added to the message.
                if crate::input::message::valid_header_line(h) {
                    self.edits.add.push(h.clone());
                } else {
                    self.log.push(format!(
                        "{lname} {what} map {}: ignoring malformed PREPEND {h:?}",
                        hit.table
                    ));
                }
                None
            }
            AccessAction::Warn(t) => {
                self.log
                    .push(format!("WARN {what} {} key {}: {t}", hit.table, hit.key));
                None
            }
            AccessAction::Info(t) => {
                self.log
                    .push(format!("INFO {what} {} key {}: {t}", hit.table, hit.key));
                None
            }
            AccessAction::Ignored(raw) => {
                self.log.push(format!(
                    "{lname} {what} map {} key {}: result {raw:?} cannot be honoured at delivery; treated as DUNNO",
                    hit.table, hit.key
                ));
                None
            }
        }
    }

    /// Runs one layer's access maps in smtpd's order. The first verdict wins.
    /// `s` is always the system's settings: a user's file has none.
    fn access(&mut self, layer: &Layer, s: &Settings) -> Option<Proposal> {
        if layer.access.is_empty() {
            return None;
        }
        let env = self.input.envelope;
        let opts = AccessOptions {
            recipient_delimiter: s.recipient_delimiter.clone(),
            parent_domain_matches_subdomains: s.parent_domain_matches_subdomains,
        };
        let sl = StepLayer::from(layer.origin);
        type Check<'x> =
            Box<dyn Fn(&mut Vec<Probe>) -> Result<Vec<Hit>, crate::output::diag::Diag> + 'x>;
        let checks: Vec<(AccessCheck, Check)> = vec![
            (
                AccessCheck::Client,
                Box::new(|p: &mut Vec<Probe>| {
                    access::check_client(
                        &layer.access.client,
                        env.client_hostname.as_opt(),
                        env.client_address.as_opt(),
                        &opts,
                        p,
                    )
                }),
            ),
            (
                AccessCheck::Helo,
                Box::new(|p: &mut Vec<Probe>| match env.client_helo.as_opt() {
                    Some(h) if !h.is_empty() => access::check_helo(&layer.access.helo, h, &opts, p),
                    _ => Ok(Vec::new()),
                }),
            ),
            (
                AccessCheck::Sender,
                Box::new(|p: &mut Vec<Probe>| {
                    if env.sender.is_set() {
                        access::check_address(&layer.access.sender, &env.sender.value, &opts, p)
                    } else {
                        Ok(Vec::new())
                    }
                }),
            ),
            (
                AccessCheck::Recipient,
                Box::new(|p: &mut Vec<Probe>| match env.recipient.as_opt() {
                    Some(r) if !r.is_empty() => {
                        access::check_address(&layer.access.recipient, r, &opts, p)
                    }
                    _ => Ok(Vec::new()),
                }),
            ),
        ];
        for (what, check) in checks {
            let mut probes = Vec::new();
            let hits = check(&mut probes);
            for p in &probes {
                let result = p.result.clone().unwrap_or_else(|| "not found".into());
                self.step(
                    sl,
                    StepKind::Access,
                    &format!("{what} {}", p.table),
                    Some(&p.key),
                    result,
                    None,
                );
            }
            match hits {
                Ok(hits) => {
                    for hit in &hits {
                        if let Some(v) = self.access_hit(layer, s, what, hit) {
                            return Some(v);
                        }
                    }
                }
                Err(e) => {
                    // A table that fails at lookup time: the system's defers
                    // (an admin can fix it); a user's is skipped.
                    self.step(
                        sl,
                        StepKind::Access,
                        what.as_str(),
                        None,
                        format!("error: {e}"),
                        None,
                    );
                    if layer.origin == Origin::System {
                        return Some(Proposal::reply(
                            Route::Defer,
                            crate::output::exit::Kind::System { errno: None }.status(),
                            format!("map lookup failed: {e}"),
                            format!("access {what} lookup error"),
                        ));
                    }
                    self.log
                        .push(format!("user {what} map lookup failed, skipped: {e}"));
                }
            }
        }
        None
    }

    /// Runs one layer's rules: scores add up, copies and edits
    /// accumulate; the first terminal rule (or a filter) wins.
    fn rules(&mut self, layer: &Layer) -> Option<Proposal> {
        let sl = StepLayer::from(layer.origin);
        for rule in &layer.rules {
            let matched = self.eval(layer, &rule.cond);
            self.log.append(self.cond_log.get_mut());
            if !matched {
                self.step(sl, StepKind::Rule, &rule.name, None, "no match", None);
                continue;
            }
            if let Some(dup) = &rule.duplicate {
                let why = match self.input.duplicate {
                    Some(true) => None,
                    Some(false) => Some("match: not a duplicate"),
                    None => {
                        Some("match: duplicate not known (the state is not read here): not one")
                    }
                };
                if let Some(why) = why {
                    self.step(sl, StepKind::Rule, &rule.name, None, why, None);
                    continue;
                }
                self.score += rule.score;
                let reason = format!("rule {} (duplicate)", rule.name);
                let p = match &dup.folder {
                    Some(f) => Proposal::simple(Route::Folder, Some(f.clone()), reason),
                    None => Proposal::simple(Route::Discard, None, reason),
                };
                self.step(
                    sl,
                    StepKind::Rule,
                    &rule.name,
                    None,
                    format!(
                        "match: a duplicate (seen within {} days): {}",
                        dup.window.as_secs() / 86400,
                        p.route.as_str()
                    ),
                    Some(rule.score),
                );
                self.log.push(format!(
                    "duplicate of a message seen within {} days: {}",
                    dup.window.as_secs() / 86400,
                    dup.folder
                        .as_ref()
                        .map_or("discarded".to_string(), |f| format!(
                            "filed into {}",
                            f.name
                        ))
                ));
                return Some(p);
            }
            self.score += rule.score;
            // The groups of the rule's match, for its texts that use them
            // (a rule with literal texts computes nothing here).
            let captures = if rule.uses_groups {
                self.captures(layer, rule)
            } else {
                None
            };
            let captures = captures.as_ref();
            if let Some(argv) = &rule.filter {
                let id = FilterId {
                    origin: layer.origin,
                    rule: rule.name.clone(),
                };
                if self.input.filters_done.contains(&id) {
                    self.step(
                        sl,
                        StepKind::Rule,
                        &rule.name,
                        None,
                        "match: filter already ran, skipped",
                        Some(rule.score),
                    );
                    continue;
                }
                let argv: Vec<String> = argv
                    .iter()
                    .map(|a| self.expand(a, captures).into_owned())
                    .collect();
                if let Some(bad) = argv.iter().find(|a| a.contains('\0')) {
                    // Fail open, as a filter that cannot start: the rules
                    // go on with the message unchanged.
                    self.log.push(format!(
                        "rule {}: filter argument {bad:?} refused (a NUL cannot be passed \
                         to a program); the filter does not run",
                        rule.name
                    ));
                    self.step(
                        sl,
                        StepKind::Rule,
                        &rule.name,
                        Some(&format!("{bad:?}")),
                        "match: filter refused: NUL in an argument",
                        Some(rule.score),
                    );
                    continue;
                }
                self.step(
                    sl,
                    StepKind::Rule,
                    &rule.name,
                    None,
                    format!("match: filter {}", argv.join(" ")),
                    Some(rule.score),
                );
                self.filter = Some(FilterRequest {
                    id,
                    rule: rule.name.clone(),
                    argv,
                });
                let mut p = Proposal::simple(Route::Filter, None, format!("filter {}", rule.name));
                p.hard = true;
                return Some(p);
            }
            let (verdict, refused) = match &rule.action {
                Some(a) => {
                    let (p, refused) =
                        self.proposal(rule, a, format!("rule {}", rule.name), captures);
                    (Some(p), refused)
                }
                None => (None, None),
            };
            let result = match &verdict {
                Some(v) if rule.copy => format!("match: copy, {}", v.route.as_str()),
                Some(v) => format!("match: {}", v.route.as_str()),
                None => "match".into(),
            };
            self.step(
                sl,
                StepKind::Rule,
                &rule.name,
                None,
                result,
                Some(rule.score),
            );
            let refused_pipe =
                refused.is_some() && matches!(rule.action, Some(RuleAction::Pipe(_)));
            if let Some(r) = refused {
                self.log.push(format!("rule {}: {}", rule.name, r.log));
                self.step(sl, StepKind::Action, &rule.name, Some(&r.key), r.step, None);
            }
            self.rule_edits(sl, rule, captures);
            if let Some(v) = &rule.vacation {
                if self.vacation.is_none() {
                    self.vacation = Some((v.clone(), rule.name.clone()));
                    self.step(sl, StepKind::Action, &rule.name, None, "vacation", None);
                } else {
                    self.step(
                        sl,
                        StepKind::Action,
                        &rule.name,
                        None,
                        "vacation ignored: one reply per message (the first rule's)",
                        None,
                    );
                }
            }
            match verdict {
                // A copy-pipe refused is not a copy at all (as a failing
                // copy-pipe only logs).
                Some(_) if rule.copy && refused_pipe => {}
                Some(v) if rule.copy => {
                    let what = match v.route {
                        Route::Junk => Copy::Junk(v.flags),
                        Route::Pipe => Copy::Pipe(v.argv, rule.name.clone()),
                        Route::Forward => Copy::Forward(v.argv, rule.name.clone()),
                        _ => Copy::Folder(v.folder, v.flags),
                    };
                    self.copies.push(what);
                }
                Some(v) => return Some(v),
                None => {}
            }
        }
        None
    }

    /// The proposal of a rule's filing or ending action, its texts
    /// expanded; an expansion that is refused gives the Inbox (and says
    /// why: the second value).
    fn proposal(
        &self,
        rule: &Rule,
        a: &RuleAction,
        reason: String,
        captures: Option<&Captures>,
    ) -> (Proposal, Option<Refused>) {
        let mut refused = None;
        let mut p = match a {
            RuleAction::Folder(f) => Proposal::simple(Route::Folder, Some(f.clone()), reason),
            RuleAction::FolderTemplate(t) => {
                let values = self.values(captures);
                let name = t.expand(&|v| values.get(v));
                match FolderName::parse(&name) {
                    Ok(Some(f)) => Proposal::simple(Route::Folder, Some(f), reason),
                    Ok(None) => Proposal::simple(Route::Inbox, None, reason),
                    Err(e) => {
                        refused = Some(Refused {
                            log: format!("folder {name:?} refused ({e}); filing into the Inbox"),
                            key: format!("{name:?}"),
                            step: "folder name refused: the Inbox",
                        });
                        Proposal::simple(
                            Route::Inbox,
                            None,
                            format!("{reason} (refused folder name)"),
                        )
                    }
                }
            }
            RuleAction::Junk => Proposal::simple(Route::Junk, None, reason),
            RuleAction::Discard => Proposal::simple(Route::Discard, None, reason),
            RuleAction::Inbox => Proposal::simple(Route::Inbox, None, reason),
            RuleAction::Pipe(argv) => {
                let argv: Vec<String> = argv
                    .iter()
                    .map(|a| self.expand(a, captures).into_owned())
                    .collect();
                match argv.iter().find(|a| a.contains('\0')) {
                    // A NUL cannot be passed to a program: the pipe is
                    // refused before it runs, as a pipe that fails is after.
                    Some(bad) => {
                        let instead = if rule.copy {
                            "the copy is not piped"
                        } else {
                            "filing into the Inbox"
                        };
                        refused = Some(Refused {
                            log: format!(
                                "pipe argument {bad:?} refused (a NUL cannot be passed to a \
                                 program); {instead}"
                            ),
                            key: format!("{bad:?}"),
                            step: if rule.copy {
                                "pipe refused: NUL in an argument"
                            } else {
                                "pipe refused: NUL in an argument: the Inbox"
                            },
                        });
                        Proposal::simple(Route::Inbox, None, format!("{reason} (refused pipe)"))
                    }
                    None => {
                        let mut p = Proposal::simple(Route::Pipe, None, reason);
                        p.argv = argv;
                        p
                    }
                }
            }
            RuleAction::Forward(to) => {
                let mut p = Proposal::simple(Route::Forward, None, reason);
                p.argv = to.clone();
                p
            }
            RuleAction::Reject { status, text } => {
                let text = if text.is_empty() {
                    "Message rejected"
                } else {
                    text
                };
                Proposal::reply(Route::Reject, status, text.to_string(), reason)
            }
            RuleAction::Defer { status, text } => {
                let text = if text.is_empty() {
                    "Message deferred"
                } else {
                    text
                };
                Proposal::reply(Route::Defer, status, text.to_string(), reason)
            }
        };
        p.flags = rule.flags.clone();
        (p, refused)
    }

    /// A matched rule's header edits, expanded: kept, and traced. An
    /// expanded line that is not one valid header line (a value with a
    /// line break, from a decoded header, say) is refused, never added.
    fn rule_edits(&mut self, sl: StepLayer, rule: &Rule, captures: Option<&Captures>) {
        for e in &rule.edits {
            let (what, text) = match e {
                Edit::Add(h) => {
                    let h = self.expand(h, captures);
                    if matches!(e, Edit::Add(Text::Template(_))) && !message::valid_header_line(&h)
                    {
                        self.refuse_edit(sl, rule, "add_header", &h, "the header is not added");
                        continue;
                    }
                    self.edits.add.push(h.to_string());
                    ("add_header", h)
                }
                Edit::SubjectPrefix(p) => {
                    let p = self.expand(p, captures);
                    if matches!(e, Edit::SubjectPrefix(Text::Template(_)))
                        && p.chars().any(|c| c.is_control() && c != '\t')
                    {
                        self.refuse_edit(
                            sl,
                            rule,
                            "subject_prefix",
                            &p,
                            "the subject is not tagged",
                        );
                        continue;
                    }
                    // Applied in rule order: a later prefix goes in front.
                    let prefix = match self.edits.subject_prefix.take() {
                        Some(old) => format!("{p}{old}"),
                        None => p.to_string(),
                    };
                    self.edits.subject_prefix = Some(prefix);
                    ("subject_prefix", p)
                }
                Edit::Remove(h) => {
                    if !self.edits.remove.iter().any(|r| r.eq_ignore_ascii_case(h)) {
                        self.edits.remove.push(h.clone());
                    }
                    ("remove_header", Cow::Borrowed(h.as_str()))
                }
            };
            self.step(sl, StepKind::Action, &rule.name, Some(&text), what, None);
        }
    }

    /// An expanded edit that is refused: logged (the value escaped) and
    /// traced.
    fn refuse_edit(&mut self, sl: StepLayer, rule: &Rule, what: &str, value: &str, so: &str) {
        self.log.push(format!(
            "rule {}: {what} {value:?} refused (not one header line: a line break or a \
             control character); {so}",
            rule.name
        ));
        self.step(
            sl,
            StepKind::Action,
            &rule.name,
            Some(&format!("{value:?}")),
            format!("{what} refused"),
            None,
        );
    }
}

/// smtpd's wording: `<addr>: Sender address rejected: text`.
fn smtpd_text(env: &Envelope, what: AccessCheck, text: &str) -> String {
    let text = if text.is_empty() {
        "Access denied"
    } else {
        text
    };
    let (subject, label) = match what {
        AccessCheck::Client => (
            format!(
                "{}[{}]",
                env.client_hostname.as_opt().unwrap_or("unknown"),
                env.client_address.value
            ),
            "Client host rejected",
        ),
        AccessCheck::Helo => (
            format!("<{}>", env.client_helo.value),
            "Helo command rejected",
        ),
        AccessCheck::Sender => (format!("<{}>", env.sender.value), "Sender address rejected"),
        AccessCheck::Recipient => (
            format!("<{}>", env.recipient.value),
            "Recipient address rejected",
        ),
    };
    format!("{subject}: {label}: {text}")
}

/// Decides what to do with a message: the numbered steps of the module
/// documentation (and of deliver.rules(5)), one function each.
pub fn decide(input: &Input, system: &Layer, user: Option<&Layer>) -> Decision {
    // A layer from the rules cache must first get the rules this message
    // can trigger (`rules::cache::Deferred::complete`); deciding without
    // them would skip rules. A bug, caught: the panic is a deferral (75).
    assert!(
        system.deferred.is_none() && user.is_none_or(|u| u.deferred.is_none()),
        "decide() on a layer whose rules are still in the cache"
    );
    let mut cx = Ctx::new(input, system);
    let p = cx.steps(system, user);
    cx.finish(p, system, user)
}

/// What step 2 leaves for the later steps.
enum SystemResult {
    /// A final verdict: REJECT, DEFER, DISCARD, HOLD, a virus.
    Final(Proposal),
    /// A result the user's layer may replace (or none), and the upstream
    /// filter's spam findings for step 5.
    Provisional(Option<Proposal>, spam::Findings),
}

impl Ctx<'_> {
    fn steps(&mut self, system: &Layer, user: Option<&Layer>) -> Proposal {
        self.step1_limits();
        let (provisional, findings) = match self.step2_system(system) {
            SystemResult::Final(p) => return p,
            SystemResult::Provisional(p, f) => (p, f),
        };
        if let Some(p) = user.and_then(|u| self.step3_user(u, system)) {
            return p;
        }
        if let Some(p) = provisional {
            return p; // 4. the system's provisional result
        }
        if let Some(p) = self.step5_spam_routing(system, user, &findings) {
            return p;
        }
        // 6. The Inbox.
        Proposal::simple(Route::Inbox, None, "default".into())
    }

    /// 1. Limits: noted, and the decision goes on with the fields within
    ///    them (the envelope does not depend on the headers, and a local
    ///    filter's verdict is at the top).
    fn step1_limits(&mut self) {
        let Some(l) = self.input.limit_hit else {
            return;
        };
        let n = self.input.headers.len();
        self.step(
            StepLayer::Neither,
            StepKind::Limit,
            l.setting(),
            None,
            format!("{l}: the first {n} fields are used"),
            None,
        );
        self.log.push(format!(
            "header limit reached: {l}; rules see the first {n} fields"
        ));
    }

    /// 2. System access maps, then the virus verdict, then system rules.
    fn step2_system(&mut self, system: &Layer) -> SystemResult {
        let findings = spam::read(self.input.headers, &system.spam);
        self.spam = findings.flagged_by.is_some();
        self.virus = findings.virus.is_some();
        let provisional = self.access(system, &system.settings);
        if let Some(p) = provisional.as_ref().filter(|p| p.is_hard()) {
            return SystemResult::Final(p.clone());
        }
        for r in &findings.readings {
            self.step(
                StepLayer::System,
                StepKind::Spam,
                &r.header,
                Some(&r.value),
                r.meaning.clone(),
                None,
            );
        }
        if let Some(h) = &findings.virus {
            let reason = format!("virus verdict in {h}");
            let mut p = match &system.spam.virus {
                VirusAction::Discard => Proposal::simple(Route::Discard, None, reason),
                VirusAction::Junk => Proposal::simple(Route::Junk, None, reason),
                VirusAction::Folder(f) => Proposal::simple(Route::Folder, Some(f.clone()), reason),
            };
            p.hard = true;
            self.step(
                StepLayer::System,
                StepKind::Virus,
                h,
                None,
                p.route.as_str(),
                None,
            );
            return SystemResult::Final(p);
        }
        if let Some(s) = findings.score {
            self.score += s;
            let h = findings.score_header.as_deref().unwrap_or("score");
            self.step(
                StepLayer::System,
                StepKind::Spam,
                h,
                None,
                format!("upstream score {s}"),
                Some(s),
            );
        }
        // As in smtpd, an access result ends the system layer: after a
        // system OK, JUNK or FOLDER no system rule runs.
        let provisional = match provisional {
            Some(p) => Some(p),
            None => match self.rules(system) {
                Some(p) if p.is_hard() => return SystemResult::Final(p),
                p => p,
            },
        };
        SystemResult::Provisional(provisional, findings)
    }

    /// 3. The user's access maps and rules: their first verdict is final.
    fn step3_user(&mut self, user: &Layer, system: &Layer) -> Option<Proposal> {
        self.access(user, &system.settings)
            .or_else(|| self.rules(user))
    }

    /// 5. Spam routing: the total score against the thresholds, then
    ///    the upstream spam flag when no score was given.
    fn step5_spam_routing(
        &mut self,
        system: &Layer,
        user: Option<&Layer>,
        findings: &spam::Findings,
    ) -> Option<Proposal> {
        let user_junk = user.and_then(|u| u.spam.junk_threshold);
        let junk_threshold = match user_junk {
            Some(t) => {
                let lo = system
                    .spam
                    .user_junk_threshold_min
                    .unwrap_or(f64::NEG_INFINITY);
                let hi = system.spam.user_junk_threshold_max.unwrap_or(f64::INFINITY);
                let c = t.clamp(lo, hi.max(lo));
                if c != t {
                    self.log.push(format!(
                        "user junk_threshold {t} outside the system bounds; using {c}"
                    ));
                }
                Some(c)
            }
            None => system.spam.junk_threshold,
        };
        if let Some(d) = system.spam.discard_threshold {
            if let Some(p) =
                self.threshold(StepLayer::System, "discard_threshold", d, Route::Discard)
            {
                return Some(p);
            }
        }
        if let Some(j) = junk_threshold {
            let layer = if user_junk.is_some() {
                StepLayer::User
            } else {
                StepLayer::System
            };
            if let Some(p) = self.threshold(layer, "junk_threshold", j, Route::Junk) {
                return Some(p);
            }
        }
        // The upstream flag decides only when no upstream score was given (or
        // no threshold is set): with a score, the thresholds above decide.
        let h = findings.flagged_by.as_ref()?;
        if findings.score.is_some() && junk_threshold.is_some() {
            return None;
        }
        self.step(
            StepLayer::System,
            StepKind::Spam,
            h,
            None,
            "spam flag: junk",
            None,
        );
        Some(Proposal::simple(
            Route::Junk,
            None,
            format!("spam flag in {h}"),
        ))
    }

    /// One threshold of step 5, traced either way.
    fn threshold(
        &mut self,
        layer: StepLayer,
        name: &str,
        limit: f64,
        route: Route,
    ) -> Option<Proposal> {
        let total = self.score;
        if total >= limit {
            self.step(
                layer,
                StepKind::Threshold,
                name,
                None,
                format!("{total} >= {limit}: {}", route.as_str()),
                Some(total),
            );
            return Some(Proposal::simple(
                route,
                None,
                format!("score {total} >= {name} {limit}"),
            ));
        }
        self.step(
            layer,
            StepKind::Threshold,
            name,
            None,
            format!("{total} < {limit}"),
            Some(total),
        );
        None
    }

    /// The decision, its trace's final step, and its plan.
    fn finish(mut self, p: Proposal, system: &Layer, user: Option<&Layer>) -> Decision {
        let junk = || {
            user.and_then(|u| u.spam.junk_folder.clone())
                .or_else(|| system.spam.junk_folder.clone())
                .unwrap_or_else(|| FolderName::parse("Junk").unwrap().unwrap())
        };
        let folder = match p.route {
            Route::Junk => Some(p.folder.clone().unwrap_or_else(junk)),
            Route::Folder => p.folder.clone(),
            _ => None,
        };
        let what = match (&folder, p.route) {
            (Some(f), _) => format!("{} {}", p.route.as_str(), f.name),
            (None, Route::Pipe) => format!("pipe {}", p.argv.join(" ")),
            (None, Route::Forward) => format!("forward {}", p.argv.join(", ")),
            (None, _) => p.route.as_str().to_string(),
        };
        let score = self.score;
        self.step(
            StepLayer::Neither,
            StepKind::Final,
            &p.reason,
            None,
            what,
            Some(score),
        );
        let reply = || {
            (
                p.status.clone().unwrap_or_default(),
                p.text.clone().unwrap_or_default(),
            )
        };
        let keeps_copies = matches!(
            p.route,
            Route::Inbox
                | Route::Junk
                | Route::Folder
                | Route::Pipe
                | Route::Forward
                | Route::Discard
        );
        if !keeps_copies && !self.copies.is_empty() {
            let step = match p.route {
                Route::Filter => "copies wait for the filter",
                _ => "copies dropped: nothing is written",
            };
            self.step(StepLayer::Neither, StepKind::Action, step, None, "-", None);
        }
        // The common case (one delivery, no copies) allocates one action.
        let mut actions: Vec<Action> = Vec::with_capacity(1 + self.copies.len());
        let mut forwards: Vec<plan::Forward> = Vec::new();
        if keeps_copies {
            for c in std::mem::take(&mut self.copies) {
                match c {
                    Copy::Folder(f, flags) => add_delivery(&mut actions, f, &flags),
                    Copy::Junk(flags) => add_delivery(&mut actions, Some(junk()), &flags),
                    Copy::Pipe(argv, rule) => actions.push(Action::Pipe(plan::Pipe {
                        argv,
                        copy: true,
                        rule,
                    })),
                    Copy::Forward(to, rule) => forwards.push(plan::Forward {
                        to,
                        copy: true,
                        rule,
                    }),
                }
            }
        }
        let rule_of = |reason: &str| reason.strip_prefix("rule ").unwrap_or(reason).to_string();
        if p.route == Route::Forward {
            forwards.push(plan::Forward {
                to: p.argv.clone(),
                copy: false,
                rule: rule_of(&p.reason),
            });
        }
        // The loop marker: a message this recipient forwarded before is
        // not forwarded again; without a copy kept, it is filed instead.
        let recipient = self.input.envelope.recipient.value.clone();
        if !forwards.is_empty()
            && crate::policy::forward::already_forwarded(self.input.headers, &recipient)
        {
            let filed = forwards.iter().any(|f| !f.copy);
            self.step(
                StepLayer::Neither,
                StepKind::Action,
                "forward",
                Some(&format!("{}: {recipient}", crate::policy::forward::MARKER)),
                if filed {
                    "not forwarded: this recipient forwarded it before (a loop); filed into INBOX"
                } else {
                    "not forwarded: this recipient forwarded it before (a loop)"
                },
                None,
            );
            self.log.push(format!(
                "forward loop: the message already carries {}: {recipient}; not forwarded{}",
                crate::policy::forward::MARKER,
                if filed { ", filed into INBOX" } else { "" }
            ));
            if filed {
                add_delivery(&mut actions, None, "");
            }
            forwards.clear();
        }
        // The limit per message, over all rules.
        let mut room = crate::policy::forward::MAX_PER_MESSAGE;
        for f in &mut forwards {
            if f.to.len() > room {
                self.log.push(format!(
                    "forward limit: {} recipients per message; rule {} forwards to {} of {}",
                    crate::policy::forward::MAX_PER_MESSAGE,
                    f.rule,
                    room,
                    f.to.len()
                ));
                f.to.truncate(room);
            }
            room -= f.to.len();
        }
        forwards.retain(|f| !f.to.is_empty());
        let disposition = match p.route {
            Route::Inbox | Route::Junk | Route::Folder => {
                add_delivery(&mut actions, folder.clone(), &p.flags);
                Disposition::Delivered
            }
            Route::Pipe => {
                actions.push(Action::Pipe(plan::Pipe {
                    argv: p.argv.clone(),
                    copy: false,
                    rule: p
                        .reason
                        .strip_prefix("rule ")
                        .unwrap_or(&p.reason)
                        .to_string(),
                }));
                Disposition::Delivered
            }
            Route::Forward => Disposition::Delivered,
            Route::Discard => Disposition::Discarded,
            Route::Filter => Disposition::Delivered,
            Route::Reject => {
                let (status, text) = reply();
                Disposition::Rejected { status, text }
            }
            Route::Defer => {
                let (status, text) = reply();
                Disposition::Deferred { status, text }
            }
        };
        actions.extend(forwards.into_iter().map(Action::Forward));
        if let Some((v, rule)) = self.vacation.take().filter(|_| keeps_copies) {
            let spam = self.spam || p.route == Route::Junk || p.reason.starts_with("score ");
            let headers = self.input.headers;
            let m = crate::policy::vacation::Message {
                sender: &self.input.envelope.sender.value,
                recipient: &recipient,
                delimiter: self.access_opts.recipient_delimiter.chars().next(),
                headers,
                header_block: self.input.header_block,
                spam,
                virus: self.virus,
                today: self.input.today,
            };
            match crate::policy::vacation::should_reply(&v, &m) {
                Ok(r) => {
                    self.step(
                        StepLayer::Neither,
                        StepKind::Action,
                        &rule,
                        None,
                        format!(
                            "vacation: reply to {} (unless replied to within {} days)",
                            r.to, v.days
                        ),
                        None,
                    );
                    actions.push(Action::Reply(plan::Reply {
                        rule,
                        subject: crate::policy::vacation::subject(&v, headers),
                        to: r.to,
                        from: r.from,
                        vacation: v,
                    }));
                }
                Err(why) => self.step(
                    StepLayer::Neither,
                    StepKind::Action,
                    &rule,
                    None,
                    format!("vacation: no reply: {why}"),
                    None,
                ),
            }
        }
        let edits = if actions.is_empty() {
            Edits::default()
        } else {
            self.edits
        };
        Decision {
            action: p.route,
            folder,
            score,
            status: p.status,
            text: p.text,
            reason: p.reason,
            filter: self.filter,
            log: self.log,
            trace: self.trace,
            plan: Plan {
                edits,
                actions,
                disposition,
            },
        }
    }
}

/// Adds a delivery into `folder`, or merges `flags` into the one already
/// there: a plan files each folder once.
fn add_delivery(actions: &mut Vec<Action>, folder: Option<FolderName>, flags: &str) {
    for a in actions.iter_mut() {
        if let Action::Deliver(d) = a {
            if d.folder.as_ref().map(|f| &f.name) == folder.as_ref().map(|f| &f.name) {
                if !flags.is_empty() {
                    let mut v: Vec<char> = d.flags.chars().chain(flags.chars()).collect();
                    v.sort_unstable();
                    v.dedup();
                    d.flags = v.into_iter().collect();
                }
                return;
            }
        }
    }
    actions.push(Action::Deliver(Delivery {
        folder,
        flags: flags.to_string(),
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::envelope::Flags;
    use crate::policy::maps::OpenOptions;
    use crate::policy::rules::load_str;
    use crate::policy::vars::{Template, Var};
    use std::path::Path;

    /// The captures and values a rule's templates would get, for each rule.
    fn expand_each(rules: &str, block: &str, template: &str) -> Vec<Option<String>> {
        let layer = load_str(
            rules,
            Path::new("r.toml"),
            Origin::User,
            &OpenOptions::default(),
        )
        .unwrap();
        let headers = Headers::parse(block.as_bytes());
        let envelope = Envelope::resolve(
            &Flags {
                sender: Some("s@x.example".into()),
                recipient: Some("me+box@home.example".into()),
                ..Flags::default()
            },
            &|_| None,
            None,
            &headers,
        );
        let input = Input {
            envelope: &envelope,
            headers: &headers,
            header_block: block.as_bytes(),
            body_window: b"",
            size: 0,
            limit_hit: None,
            filters_done: &[],
            duplicate: None,
            today: 20270101,
        };
        let system = crate::policy::rules::default_layer();
        let cx = Ctx::new(&input, &system);
        let t = Template::parse(template).unwrap();
        layer
            .rules
            .iter()
            .map(|r| {
                cx.eval(&layer, &r.cond).then(|| {
                    let caps = cx.captures(&layer, r);
                    let values = cx.values(caps.as_ref());
                    t.expand(&|v: Var| values.get(v))
                })
            })
            .collect()
    }

    #[test]
    fn captures_of_the_rules_own_match() {
        let rules = r#"
[[rule]]
name = "list"
header = "List-Id"
match = "<([^.>]+)\\."
score = 1
[[rule]]
name = "address"
address = { header = ["To", "Cc"], part = "detail", match = "^(.+)-(.+)$" }
score = 1
[[rule]]
name = "header first"
header = "Subject"
match = "(hello)"
address = { header = "To", match = "(.+)" }
score = 1
[[rule]]
name = "none"
header = "Subject"
score = 1
"#;
        let block = "List-Id: Rust users <rust-users.lists.example.org>\nTo: \"x+a-b@y\" <u@v>, me+news-daily@home.example\nSubject: hello world\n\n";
        assert_eq!(
            expand_each(
                rules,
                block,
                "${0}|${1}|${2}|${user}|${detail}|${list_id}|${from}"
            ),
            [
                Some("<rust-users.|rust-users||me|box|rust-users.lists.example.org|".into()),
                Some("news-daily|news|daily|me|box|rust-users.lists.example.org|".into()),
                Some("hello|hello||me|box|rust-users.lists.example.org|".into()),
                Some("|||me|box|rust-users.lists.example.org|".into()),
            ]
        );
    }
}
