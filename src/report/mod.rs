//! `deliver report`: a summary of deliver's log lines, as pflogsumm gives
//! one of Postfix's. It reads mail logs (plain or gzipped) or the bare
//! lines of `journalctl -o cat`, keeps the lines of a period, and counts
//! messages per action, folder, rule, sender, recipient, hour and score
//! (`Summary`); `text`, `json`, `prom` and `html` print a summary.
//!
//! It runs only as `deliver report`: nothing here is on the delivery path.
//! A line it cannot read is counted and shown, never an error; only a file
//! that cannot be opened or read is.

pub mod html;
pub mod json;
pub mod parse;
pub mod prom;
pub mod text;
pub mod time;

use parse::Source;
use std::io::{BufRead, Read};

/// The report's hash maps: keys come from mail (senders), so the hasher
/// is seeded per process.
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use time::{Stamp, YearGuess};

/// The actions of the delivery line (deliver(1), LOGGING), in the order
/// the report shows them. An action not in this list (from a newer
/// deliver) is counted under its own name, and as "other" where a
/// per-action table has fixed columns.
pub const ACTIONS: [&str; 8] = [
    "inbox", "folder", "junk", "discard", "reject", "defer", "pipe", "forward",
];
/// Fixed per-action columns: `ACTIONS`, then "other".
pub const COLUMNS: usize = ACTIONS.len() + 1;

fn action_index(a: &str) -> usize {
    ACTIONS
        .iter()
        .position(|x| *x == a)
        .unwrap_or(ACTIONS.len())
}

/// The upper bounds of the spam-score histogram's buckets (a score `s`
/// falls in the first bucket with `s <= bound`, the last one being +Inf),
/// as Prometheus' `le` buckets.
pub const SCORE_BOUNDS: [f64; 13] = [
    0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0,
];

/// How many unparsable lines are kept to be shown.
pub const EXAMPLES: usize = 10;

/// Counts by key. Looked up by `&str` first, so that a key seen before
/// costs no allocation.
#[derive(Debug, Default)]
pub struct Counter(pub HashMap<Box<str>, u64>);

impl Counter {
    pub fn add(&mut self, key: &str, n: u64) {
        match self.0.get_mut(key) {
            Some(c) => *c += n,
            None => {
                self.0.insert(key.into(), n);
            }
        }
    }

    pub fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// The entries by count, highest first, then by key; `limit` of them.
    pub fn top(&self, limit: usize) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self.0.iter().map(|(k, &c)| (&**k, c)).collect();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v.truncate(limit);
        v
    }
}

/// Where a line was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unparsable {
    pub file: String,
    pub line: u64,
    pub text: String,
}

/// How the lines read were taken.
#[derive(Debug, Default, Clone, Copy)]
pub struct Lines {
    /// Every line read.
    pub read: u64,
    /// deliver's delivery lines in the period (the messages counted).
    pub delivery: u64,
    /// deliver's other lines in the period (warnings, notes).
    pub other: u64,
    /// deliver's lines that are not what deliver writes (see
    /// `parse::delivery`), or not UTF-8.
    pub unparsable: u64,
    /// Lines of other programs.
    pub foreign: u64,
    /// deliver's lines outside `--since`/`--until`.
    pub outside_period: u64,
    /// deliver's lines without a timestamp (bare lines): counted, as no
    /// period can apply to them.
    pub without_timestamp: u64,
}

impl Lines {
    /// Each count with what it counts, for people (the text and HTML
    /// reports).
    pub fn described(&self) -> [(&'static str, u64); 7] {
        [
            ("read", self.read),
            ("delivery lines of deliver (messages)", self.delivery),
            ("other lines of deliver", self.other),
            ("unparsable lines of deliver", self.unparsable),
            ("lines of other programs", self.foreign),
            ("lines of deliver outside the period", self.outside_period),
            (
                "lines of deliver without a timestamp",
                self.without_timestamp,
            ),
        ]
    }
}

/// The LMTP session (empty without one) and status of a reject or defer
/// line whose warning line has not come yet (`Summary::pending`).
type Pending = (Box<str>, Box<str>);

/// What to keep.
#[derive(Debug, Clone, Copy)]
pub struct Period {
    /// From this time on (inclusive).
    pub since: Option<Stamp>,
    /// Before this time (exclusive).
    pub until: Option<Stamp>,
    /// The current local time: the reference of the year of syslog's
    /// traditional dates.
    pub now: Stamp,
}

/// The counts of a report.
#[derive(Debug)]
pub struct Summary {
    pub period: Period,
    years: YearGuess,
    /// The first and last timestamps of the lines counted.
    pub first: Option<Stamp>,
    pub last: Option<Stamp>,
    pub lines: Lines,
    pub examples: Vec<Unparsable>,
    /// Messages by action (every action seen, known or not).
    pub actions: Counter,
    /// Messages by folder filed into (`INBOX` for the Inbox).
    pub folders: Counter,
    /// Messages by what decided (`rule=`): a rule, a table entry, ...
    pub rules: Counter,
    pub rejected_senders: Counter,
    pub discarded_senders: Counter,
    /// Deferrals by the decision (`action=defer`), by status line.
    pub deferrals: Counter,
    /// Failures outside the decision (deferred or bounced by a failure of
    /// deliver or the system: a full disk, a bad rules file), by status
    /// line, from deliver's `warning:` lines.
    pub failures: Counter,
    /// Non-cumulative counts per `SCORE_BOUNDS` bucket, then +Inf.
    pub scores: [u64; SCORE_BOUNDS.len() + 1],
    pub score_sum: f64,
    /// Per recipient (`to=` without brackets): counts per `COLUMNS`.
    pub recipients: HashMap<Box<str>, [u64; COLUMNS]>,
    /// Per hour (stamp / 3600) of timestamped lines: counts per `COLUMNS`.
    pub hours: HashMap<i64, [u64; COLUMNS]>,
    /// Per process (0 without a process ID): the LMTP session (empty
    /// without one) and status of the last reject or defer line of each
    /// session, to tell the warning line deliver writes after it (the same
    /// status) from a failure of its own. The warning names the session
    /// when the service wrote it; a system user's delivery, exec mode in a
    /// child of the service, logs its session on the delivery line only.
    pending: HashMap<u32, Vec<Pending>>,
}

impl Summary {
    pub fn new(period: Period) -> Self {
        Summary {
            period,
            years: YearGuess::new(period.now),
            first: None,
            last: None,
            lines: Lines::default(),
            examples: Vec::new(),
            actions: Counter::default(),
            folders: Counter::default(),
            rules: Counter::default(),
            rejected_senders: Counter::default(),
            discarded_senders: Counter::default(),
            deferrals: Counter::default(),
            failures: Counter::default(),
            scores: [0; SCORE_BOUNDS.len() + 1],
            score_sum: 0.0,
            recipients: HashMap::default(),
            hours: HashMap::default(),
            pending: HashMap::default(),
        }
    }

    /// Messages counted (delivery lines in the period).
    pub fn messages(&self) -> u64 {
        self.lines.delivery
    }

    pub fn scored(&self) -> u64 {
        self.scores.iter().sum()
    }

    fn unparsable(&mut self, file: &str, line: u64, text: &[u8]) {
        self.lines.unparsable += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(Unparsable {
                file: file.to_string(),
                line,
                text: crate::output::text::for_log_line(&String::from_utf8_lossy(text)),
            });
        }
    }

    /// Takes one line (without its line end); `file` and `n` say where it
    /// was read, for an unparsable one.
    pub fn line(&mut self, raw: &[u8], file: &str, n: u64) {
        self.lines.read += 1;
        let (stamp, pid, text) = match parse::source(raw, &self.years) {
            Source::Foreign => {
                self.lines.foreign += 1;
                return;
            }
            Source::Deliver { stamp, pid, text } => (stamp, pid, text),
            Source::NotUtf8 => return self.unparsable(file, n, raw),
        };
        match stamp {
            Some(t) => {
                if self.period.since.is_some_and(|s| t < s)
                    || self.period.until.is_some_and(|u| t >= u)
                {
                    self.lines.outside_period += 1;
                    return;
                }
                self.first = Some(self.first.map_or(t, |f| f.min(t)));
                self.last = Some(self.last.map_or(t, |l| l.max(t)));
            }
            None => self.lines.without_timestamp += 1,
        }
        if text.starts_with("from=") {
            match parse::delivery(text) {
                Some(d) => self.delivery(&d, stamp, pid.unwrap_or(0)),
                None => self.unparsable(file, n, raw),
            }
            return;
        }
        self.lines.other += 1;
        if let Some(f) = parse::failure(text) {
            let pid = pid.unwrap_or(0);
            let echo = self.pending.get_mut(&pid).and_then(|v| {
                let i = v.iter().position(|(session, status)| {
                    **status == *f.status && f.session.is_none_or(|s| **session == *s)
                })?;
                v.swap_remove(i);
                Some(v.is_empty())
            });
            match echo {
                Some(true) => {
                    self.pending.remove(&pid);
                }
                Some(false) => {}
                None => self.failures.add(f.status, 1),
            }
        }
    }

    /// Counts a delivery line. Its values are counted as they are in the
    /// line, escaped: `finish` decodes them.
    fn delivery(&mut self, d: &parse::Delivery<'_>, stamp: Option<Stamp>, pid: u32) {
        self.lines.delivery += 1;
        let col = action_index(d.action);
        self.actions.add(d.action, 1);
        for f in &d.folders {
            self.folders.add(f, 1);
        }
        if !d.rule.is_empty() {
            self.rules.add(&parse::rule_key(d.rule), 1);
        }
        match d.action {
            "reject" => self.rejected_senders.add(d.from, 1),
            "discard" => self.discarded_senders.add(d.from, 1),
            "defer" => self.deferrals.add(d.status.unwrap_or(""), 1),
            _ => {}
        }
        if let Some(s) = d.status.and_then(crate::output::text::decode_log_value) {
            let session = d.session.unwrap_or("");
            let v = self.pending.entry(pid).or_default();
            match v.iter_mut().find(|(x, _)| **x == *session) {
                Some(e) => e.1 = s.into(),
                None => v.push((session.into(), s.into())),
            }
        }
        if let Some(s) = d.score {
            let b = SCORE_BOUNDS
                .iter()
                .position(|&b| s <= b)
                .unwrap_or(SCORE_BOUNDS.len());
            self.scores[b] += 1;
            self.score_sum += s;
        }
        match self.recipients.get_mut(d.to) {
            Some(c) => c[col] += 1,
            None => {
                let mut c = [0; COLUMNS];
                c[col] = 1;
                self.recipients.insert(d.to.into(), c);
            }
        }
        if let Some(t) = stamp {
            self.hours.entry(t.div_euclid(3600)).or_insert([0; COLUMNS])[col] += 1;
        }
    }

    /// Decodes the values counted as they were in the lines (escaped),
    /// adding up the counts of values that decode alike. Call once, after
    /// the last line.
    pub fn finish(&mut self) {
        for c in [
            &mut self.actions,
            &mut self.folders,
            &mut self.rules,
            &mut self.rejected_senders,
            &mut self.discarded_senders,
            &mut self.deferrals,
        ] {
            let mut out = Counter::default();
            for (k, n) in c.0.drain() {
                out.add(&decoded(&k), n);
            }
            *c = out;
        }
        let mut out: HashMap<Box<str>, [u64; COLUMNS]> = HashMap::default();
        for (k, n) in self.recipients.drain() {
            let e = out.entry(decoded(&k).into()).or_insert([0; COLUMNS]);
            e.iter_mut().zip(n).for_each(|(a, b)| *a += b);
        }
        self.recipients = out;
    }

    /// Reads every line of `r`; `name` names it in messages. Gzip is
    /// recognised by its magic number, whatever the file's name.
    pub fn read(&mut self, r: impl Read, name: &str) -> std::io::Result<()> {
        let mut r = std::io::BufReader::with_capacity(1 << 20, r);
        let gz = r.fill_buf()?.starts_with(&[0x1f, 0x8b]);
        if gz {
            let d = flate2::read::MultiGzDecoder::new(r);
            self.read_lines(std::io::BufReader::with_capacity(1 << 20, d), name)
        } else {
            self.read_lines(r, name)
        }
    }

    /// Takes each line where it lies in the reader's buffer; only a line
    /// that spans two fills of the buffer is copied.
    fn read_lines(&mut self, mut r: impl BufRead, name: &str) -> std::io::Result<()> {
        let mut carry: Vec<u8> = Vec::new();
        let mut n = 0u64;
        loop {
            let buf = match r.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                if !carry.is_empty() {
                    n += 1;
                    self.line(trim_cr(&carry), name, n);
                }
                return Ok(());
            }
            let mut start = 0;
            for end in memchr::memchr_iter(b'\n', buf) {
                n += 1;
                if carry.is_empty() {
                    let end = end.min(start + MAX_LINE);
                    self.line(trim_cr(&buf[start..end]), name, n);
                } else {
                    extend_line(&mut carry, &buf[start..end]);
                    self.line(trim_cr(&carry), name, n);
                    carry.clear();
                }
                start = end + 1;
            }
            extend_line(&mut carry, &buf[start..]);
            let len = buf.len();
            r.consume(len);
        }
    }

    /// Recipients by messages, most first, then by address; `limit` of them.
    pub fn top_recipients(&self, limit: usize) -> Vec<(&str, &[u64; COLUMNS])> {
        let mut v: Vec<(&str, &[u64; COLUMNS])> =
            self.recipients.iter().map(|(k, c)| (&**k, c)).collect();
        v.sort_unstable_by(|a, b| {
            b.1.iter()
                .sum::<u64>()
                .cmp(&a.1.iter().sum::<u64>())
                .then(a.0.cmp(b.0))
        });
        v.truncate(limit);
        v
    }

    /// The hours from the first to the last with messages, each with its
    /// counts (zeros for an hour without any).
    pub fn hour_series(&self) -> Vec<(i64, [u64; COLUMNS])> {
        let (Some(&lo), Some(&hi)) = (self.hours.keys().min(), self.hours.keys().max()) else {
            return Vec::new();
        };
        (lo..=hi)
            .map(|h| (h, self.hours.get(&h).copied().unwrap_or([0; COLUMNS])))
            .collect()
    }
}

/// The most of one line that is kept (syslog lines are a few KiB at
/// most; deliver's, with its values cut at 512 characters, less): a file
/// without line ends cannot fill the memory.
const MAX_LINE: usize = 64 * 1024;

fn extend_line(line: &mut Vec<u8>, more: &[u8]) {
    let room = MAX_LINE.saturating_sub(line.len());
    line.extend_from_slice(&more[..more.len().min(room)]);
}

/// A value counted escaped, decoded (`parse::delivery` checked that it
/// decodes).
fn decoded(v: &str) -> String {
    crate::output::text::decode_log_value(v).unwrap_or_else(|| v.to_string())
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Reads `files` (standard input when there is none, and for `-`) into a
/// summary of `period`. An error names the file that could not be read.
pub fn read_all(files: &[std::path::PathBuf], period: Period) -> Result<Summary, String> {
    let mut s = Summary::new(period);
    let stdin = [std::path::PathBuf::from("-")];
    for f in if files.is_empty() { &stdin[..] } else { files } {
        let name = f.display().to_string();
        let r = if name == "-" {
            s.read(std::io::stdin().lock(), "-")
        } else {
            std::fs::File::open(f).and_then(|file| s.read(file, &name))
        };
        r.map_err(|e| format!("{name}: {e}"))?;
    }
    s.finish();
    Ok(s)
}

/// Writes `data` to `path` by a temporary file beside it, renamed over it:
/// a reader (a web server, a collector) sees the old file or the new one,
/// never half of one.
pub fn write_atomically(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp{}", std::process::id()));
    let tmp = std::path::PathBuf::from(name);
    let r = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(data)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// The label of score bucket `i`: `<= 0`, `0 to 1`, ..., `> 20`.
pub fn bucket_label(i: usize) -> String {
    match i {
        0 => format!("<= {}", SCORE_BOUNDS[0]),
        i if i == SCORE_BOUNDS.len() => format!("> {}", SCORE_BOUNDS[i - 1]),
        i => format!("{} to {}", SCORE_BOUNDS[i - 1], SCORE_BOUNDS[i]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(lines: &str) -> Summary {
        let mut s = Summary::new(Period {
            since: None,
            until: None,
            now: time::stamp(2026, 12, 10, 0, 0, 0),
        });
        s.read(lines.as_bytes(), "t").unwrap();
        s.finish();
        s
    }

    #[test]
    fn failure_echo_is_not_counted_twice() {
        let s = summary(
            "Dec  3 10:00:00 mx deliver[1]: from=<a@x> to=<u@y> action=reject score=0.00 rule=r status=5.7.1\\sno\n\
             Dec  3 10:00:00 mx deliver[1]: warning: 5.7.1 no\n\
             Dec  3 10:00:01 mx deliver[2]: warning: 4.2.2 mailbox full\n\
             Dec  3 10:00:02 mx deliver[3]: from=<b@x> to=<u@y> action=defer score=0.00 rule=r status=4.7.1\\slater\n\
             Dec  3 10:00:02 mx deliver[3]: warning: 4.7.1 later\n",
        );
        assert_eq!(s.rejected_senders.get("a@x"), 1);
        assert_eq!(s.deferrals.get("4.7.1 later"), 1);
        assert_eq!(s.failures.top(10), [("4.2.2 mailbox full", 1)]);
        assert_eq!((s.lines.delivery, s.lines.other), (2, 3));
    }

    #[test]
    fn a_score_threshold_is_one_rule_whatever_the_scores() {
        let s = summary(
            "Dec  3 10:00:00 mx deliver[1]: from=<a@x> to=<u@y> action=junk folder=Junk score=14.80 rule=score\\s14.8\\s>=\\sjunk_threshold\\s5\n\
             Dec  3 10:00:01 mx deliver[2]: from=<b@x> to=<u@y> action=junk folder=Junk score=6.00 rule=score\\s6\\s>=\\sjunk_threshold\\s5\n",
        );
        assert_eq!(s.rules.top(10), [("score >= junk_threshold 5", 2)]);
    }

    #[test]
    fn lmtp_failure_echo_is_told_apart_by_session() {
        // One process, two sessions whose lines interleave.
        let s = summary(
            "Dec  3 10:00:00 mx deliver[9]: from=<a@x> to=<u@y> action=reject score=0.00 rule=r status=5.7.1\\sno session=A.1\n\
             Dec  3 10:00:00 mx deliver[9]: from=<b@x> to=<v@y> action=defer score=0.00 rule=r status=4.7.1\\slater session=A.2\n\
             Dec  3 10:00:00 mx deliver[9]: warning: 5.7.1 no (to=<u@y> session=A.1)\n\
             Dec  3 10:00:00 mx deliver[9]: warning: 4.7.1 later (to=<v@y> session=A.2)\n\
             Dec  3 10:00:01 mx deliver[9]: warning: 4.3.0 out of descriptors (to=<w@y> session=A.3)\n",
        );
        assert_eq!(s.rejected_senders.get("a@x"), 1);
        assert_eq!(s.deferrals.get("4.7.1 later"), 1);
        assert_eq!(s.failures.top(10), [("4.3.0 out of descriptors", 1)]);
        // A system user's delivery: exec mode in a child of the service,
        // whose delivery line has the session and whose warning has not.
        let s = summary(
            "Dec  3 10:00:00 mx deliver[10]: from=<a@x> to=<u@y> action=reject score=0.00 rule=r status=5.7.1\\sno session=A.4\n\
             Dec  3 10:00:00 mx deliver[10]: warning: 5.7.1 no\n",
        );
        assert_eq!(s.rejected_senders.get("a@x"), 1);
        assert_eq!(s.failures.top(10), []);
    }

    #[test]
    fn period_and_unparsable() {
        let mut s = Summary::new(Period {
            since: Some(time::stamp(2026, 12, 3, 0, 0, 0)),
            until: Some(time::stamp(2026, 12, 4, 0, 0, 0)),
            now: time::stamp(2026, 12, 10, 0, 0, 0),
        });
        let log = "Dec  2 23:59:59 mx deliver[1]: from=<a> to=<u> action=inbox folder=INBOX score=0.00 rule=default\n\
                   Dec  3 00:00:00 mx deliver[1]: from=<a> to=<u> action=inbox folder=INBOX score=0.00 rule=default\n\
                   Dec  3 12:00:00 mx deliver[1]: from=<a> to=<u> action=\n\
                   Dec  3 12:00:00 mx postfix/local[2]: to=<u>, status=sent\n\
                   Dec  4 00:00:00 mx deliver[1]: from=<a> to=<u> action=junk folder=Junk score=9.00 rule=default\n\
                   from=<a> to=<u> action=junk folder=Junk score=9.00 rule=default\n";
        s.read(log.as_bytes(), "mail.log").unwrap();
        s.finish();
        assert_eq!(s.messages(), 2);
        assert_eq!(s.actions.get("inbox"), 1);
        assert_eq!(s.actions.get("junk"), 1);
        assert_eq!(s.lines.outside_period, 2);
        assert_eq!(s.lines.without_timestamp, 1);
        assert_eq!(s.lines.foreign, 1);
        assert_eq!(
            s.examples,
            [Unparsable {
                file: "mail.log".into(),
                line: 3,
                text: "Dec  3 12:00:00 mx deliver[1]: from=<a> to=<u> action=".into()
            }]
        );
    }

    #[test]
    fn values_are_counted_decoded() {
        let s = summary(
            "from=<a\\sb> to=<u\\x40y> action=reject score=0.00 rule=my\\srule status=5.7.1\\sno\n\
             from=<a\\x20b> to=<u@y> action=reject score=0.00 rule=my\\x20rule status=5.7.1\\sno\n",
        );
        assert_eq!(s.rejected_senders.top(9), [("a b", 2)]);
        assert_eq!(s.rules.top(9), [("my rule", 2)]);
        assert_eq!(s.top_recipients(9), [("u@y", &[0, 0, 0, 0, 2, 0, 0, 0, 0])]);
    }

    #[test]
    fn lines_across_buffer_fills() {
        let line = "from=<a> to=<u> action=junk folder=Junk score=9.00 rule=x\n";
        let long = format!(
            "from=<a> to=<u> action=inbox rule={}\n",
            "y".repeat(MAX_LINE)
        );
        let last = line.trim_end();
        let text = format!("{line}{last}\r\n{long}{last}");
        for cap in [1, 5, 64, 1 << 20] {
            let mut s = summary("");
            s.read_lines(std::io::BufReader::with_capacity(cap, text.as_bytes()), "t")
                .unwrap();
            assert_eq!(s.lines.read, 4, "{cap}");
            assert_eq!(s.actions.get("junk"), 3, "{cap}");
            // The long line is cut, within its rule.
            assert_eq!(s.actions.get("inbox"), 1, "{cap}");
            let longest = s.rules.0.keys().map(|k| k.len()).max();
            assert_eq!(
                longest,
                Some(MAX_LINE - "from=<a> to=<u> action=inbox rule=".len()),
                "{cap}"
            );
            assert_eq!(s.lines.unparsable, 0, "{cap}");
        }
    }

    #[test]
    fn gzip_is_read_by_its_magic() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"from=<a> to=<u> action=discard score=1.50 rule=x\n")
            .unwrap();
        let s = {
            let mut s = summary("");
            s.read(&gz.finish().unwrap()[..], "x").unwrap();
            s
        };
        assert_eq!(s.discarded_senders.get("a"), 1);
        assert_eq!(s.scores[2], 1);
    }
}
