//! One LMTP session (RFC 2033): the commands, their order, and one reply
//! per accepted recipient after DATA.
//!
//! Replies are buffered and sent when the client has nothing more in the
//! input buffer, so a pipelining client (RFC 2920) gets them in one write,
//! and a client that waits for each reply gets it at once.

use super::config::Resolved;
use super::data::{self, Data};
use super::{Gen, Shared, Stream};
use crate::input::message::read_line_bounded;
use crate::output::text::for_status;
use std::io::{self, BufReader, BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

/// A transaction: MAIL FROM, then the accepted recipients.
struct Txn {
    sender: String,
    rcpts: Vec<(String, Resolved)>,
    gen: Arc<Gen>,
}

pub struct Session<'s> {
    shared: &'s Shared,
    pub id: String,
    stream: Stream,
    r: BufReader<Stream>,
    w: BufWriter<Stream>,
    lhlo: bool,
    txn: Option<Txn>,
    /// Set while a transaction is open: SIGTERM lets it finish.
    busy: Arc<AtomicBool>,
}

/// How reading a command line ended.
enum Line {
    Text(String),
    TooLong,
    Bad,
}

/// Whether an I/O error is a read timeout.
fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The path of `MAIL FROM:<path> params` or `RCPT TO:<path> params`,
/// after the colon: the address without brackets, and the parameters.
fn path_and_params(arg: &str) -> Option<(String, Vec<String>)> {
    let a = arg.trim_start();
    let rest = a.strip_prefix('<')?;
    let end = rest.find('>')?;
    let addr = rest[..end].to_string();
    let params = rest[end + 1..]
        .split_ascii_whitespace()
        .map(str::to_string)
        .collect();
    if rest[end + 1..].chars().next().is_some_and(|c| c != ' ') {
        return None;
    }
    Some((addr, params))
}

/// An address fit for an envelope and a header line: printable, no
/// control characters. (Source routes `@a,@b:x@y` are reduced to `x@y`.)
fn clean_address(a: &str) -> Option<String> {
    let a = match a.split_once(':') {
        Some((route, rest)) if route.starts_with('@') => rest,
        _ => a,
    };
    (!a.chars()
        .any(|c| c.is_control() || c == ' ' || c == '<' || c == '>'))
    .then(|| a.to_string())
}

impl<'s> Session<'s> {
    pub fn new(shared: &'s Shared, id: String, stream: Stream, busy: Arc<AtomicBool>) -> Self {
        let r = BufReader::with_capacity(64 * 1024, stream.clone());
        let w = BufWriter::with_capacity(8 * 1024, stream.clone());
        Session {
            shared,
            id,
            stream,
            r,
            w,
            lhlo: false,
            txn: None,
            busy,
        }
    }

    fn reply(&mut self, line: &str) -> io::Result<()> {
        self.w.write_all(line.as_bytes())?;
        self.w.write_all(b"\r\n")
    }

    /// Reads one command line, within the line length limit. `None` is the
    /// end of the input.
    fn read_line(&mut self) -> io::Result<Option<Line>> {
        let max = self.shared.limits().max_line_length;
        let mut buf = Vec::with_capacity(128);
        if read_line_bounded(&mut self.r, &mut buf, max)? == 0 {
            return Ok(None);
        }
        if !buf.ends_with(b"\n") {
            if buf.len() < max {
                return Ok(None); // the end of the input within a line
            }
            // Too long: the rest of the line goes too.
            loop {
                buf.clear();
                let n = read_line_bounded(&mut self.r, &mut buf, 64 * 1024)?;
                if n == 0 {
                    return Ok(None);
                }
                if buf.ends_with(b"\n") {
                    return Ok(Some(Line::TooLong));
                }
            }
        }
        buf.pop();
        if buf.ends_with(b"\r") {
            buf.pop();
        }
        match String::from_utf8(buf) {
            Ok(s) if !s.chars().any(|c| c.is_control() && c != '\t') => Ok(Some(Line::Text(s))),
            _ => Ok(Some(Line::Bad)),
        }
    }

    /// Runs the session to its end.
    pub fn run(mut self) -> io::Result<()> {
        let host = self.shared.hostname.clone();
        self.reply(&format!("220 {host} LMTP deliver ready"))?;
        loop {
            if self.txn.is_none() && self.shared.stopping() {
                self.reply(&format!("421 4.3.2 {host} shutting down"))?;
                return self.w.flush();
            }
            if self.r.buffer().is_empty() {
                self.w.flush()?;
            }
            self.stream
                .set_read_timeout(Some(self.shared.limits().idle_timeout))?;
            let line = match self.read_line() {
                Ok(Some(l)) => l,
                Ok(None) => {
                    self.abandon("the client closed the connection");
                    if self.shared.stopping() {
                        // The stop closed our reading side (`serve`).
                        self.reply(&format!("421 4.3.2 {host} shutting down"))?;
                        return self.w.flush();
                    }
                    return Ok(());
                }
                Err(e) if timed_out(&e) => {
                    self.abandon("idle timeout");
                    self.reply(&format!("421 4.4.2 {host} timeout, closing"))?;
                    return self.w.flush();
                }
                Err(e) => {
                    self.abandon(&format!("reading a command: {e}"));
                    return Ok(());
                }
            };
            let text = match line {
                Line::Text(t) => t,
                Line::TooLong => {
                    self.reply("500 5.5.2 Line too long")?;
                    continue;
                }
                Line::Bad => {
                    self.reply("500 5.5.2 Syntax error: control or non-UTF-8 character")?;
                    continue;
                }
            };
            let (verb, arg) = match text.split_once(' ') {
                Some((v, a)) => (v.to_ascii_uppercase(), a.to_string()),
                None => (text.to_ascii_uppercase(), String::new()),
            };
            match verb.as_str() {
                "LHLO" => self.lhlo(&arg)?,
                "MAIL" => self.mail(&arg)?,
                "RCPT" => self.rcpt(&arg)?,
                "DATA" => {
                    if !self.data(&arg)? {
                        return Ok(());
                    }
                }
                "RSET" => {
                    self.end_txn();
                    self.reply("250 2.0.0 Ok")?;
                }
                "NOOP" => self.reply("250 2.0.0 Ok")?,
                "VRFY" => self.reply("252 2.5.0 Send mail to find out")?,
                "QUIT" => {
                    self.reply(&format!("221 2.0.0 {host} closing"))?;
                    return self.w.flush();
                }
                "HELO" | "EHLO" => self.reply("500 5.5.1 This is LMTP: use LHLO")?,
                _ => self.reply("500 5.5.2 Command not recognized")?,
            }
        }
    }

    fn abandon(&mut self, why: &str) {
        if self.txn.is_some() {
            self.shared.warn(&format!(
                "session={}: transaction abandoned: {why}",
                self.id
            ));
        }
        self.end_txn();
    }

    fn end_txn(&mut self) {
        self.txn = None;
        self.busy.store(false, SeqCst);
    }

    fn lhlo(&mut self, arg: &str) -> io::Result<()> {
        if arg.trim().is_empty() {
            return self.reply("501 5.5.4 LHLO needs a host name");
        }
        self.end_txn();
        self.lhlo = true;
        let host = self.shared.hostname.clone();
        let size = self.shared.limits().max_message_size;
        self.reply(&format!("250-{host}"))?;
        self.reply("250-PIPELINING")?;
        self.reply("250-ENHANCEDSTATUSCODES")?;
        self.reply("250-8BITMIME")?;
        self.reply(&format!("250 SIZE {size}"))
    }

    fn mail(&mut self, arg: &str) -> io::Result<()> {
        if !self.lhlo {
            return self.reply("503 5.5.1 Send LHLO first");
        }
        if self.txn.is_some() {
            return self.reply("503 5.5.1 Nested MAIL command");
        }
        let Some(rest) = arg
            .get(..5)
            .filter(|p| p.eq_ignore_ascii_case("FROM:"))
            .map(|_| &arg[5..])
        else {
            return self.reply("501 5.5.4 Syntax: MAIL FROM:<address>");
        };
        let Some((addr, params)) = path_and_params(rest) else {
            return self.reply("501 5.5.4 Syntax: MAIL FROM:<address>");
        };
        let Some(sender) = clean_address(&addr) else {
            return self.reply("501 5.1.7 Bad sender address syntax");
        };
        let max = self.shared.limits().max_message_size;
        for p in &params {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k.to_ascii_uppercase().as_str() {
                "SIZE" => match v.parse::<u64>() {
                    Ok(n) if n > max => {
                        return self.reply("552 5.3.4 Message size exceeds the limit");
                    }
                    Ok(_) => {}
                    Err(_) => return self.reply("501 5.5.4 Bad SIZE parameter"),
                },
                "BODY" if v.eq_ignore_ascii_case("7BIT") || v.eq_ignore_ascii_case("8BITMIME") => {}
                "BODY" => return self.reply("501 5.5.4 Unsupported BODY type"),
                _ => {
                    return self.reply(&format!(
                        "555 5.5.4 Unsupported parameter {}",
                        for_status(k)
                    ))
                }
            }
        }
        let gen = self.shared.current();
        self.txn = Some(Txn {
            sender,
            rcpts: Vec::new(),
            gen,
        });
        self.busy.store(true, SeqCst);
        self.reply("250 2.1.0 Ok")
    }

    fn rcpt(&mut self, arg: &str) -> io::Result<()> {
        let max = self.shared.limits().max_recipients;
        let Some(txn) = &mut self.txn else {
            return self.reply("503 5.5.1 Send MAIL first");
        };
        let Some(rest) = arg
            .get(..3)
            .filter(|p| p.eq_ignore_ascii_case("TO:"))
            .map(|_| &arg[3..])
        else {
            return self.reply("501 5.5.4 Syntax: RCPT TO:<address>");
        };
        let Some((addr, params)) = path_and_params(rest) else {
            return self.reply("501 5.5.4 Syntax: RCPT TO:<address>");
        };
        if let Some(p) = params.first() {
            let k = p.split_once('=').map_or(p.as_str(), |(k, _)| k);
            return self.reply(&format!(
                "555 5.5.4 Unsupported parameter {}",
                for_status(k)
            ));
        }
        let Some(rcpt) = clean_address(&addr).filter(|a| !a.is_empty()) else {
            return self.reply("501 5.1.3 Bad recipient address syntax");
        };
        if txn.rcpts.len() >= max {
            return self.reply("452 4.5.3 Too many recipients");
        }
        let resolved = txn.gen.resolve(&rcpt);
        let shown = for_status(&rcpt);
        let line = match &resolved {
            Resolved::Maildir(_) | Resolved::User(_) => format!("250 2.1.5 <{shown}> Ok"),
            Resolved::Unknown => format!("550 5.1.1 <{shown}> User unknown"),
            Resolved::Bad(why) => format!("550 5.1.3 <{shown}> {}", for_status(why)),
            Resolved::Failed(why) => {
                self.shared
                    .warn(&format!("session={}: recipient <{rcpt}>: {why}", self.id));
                format!("451 4.3.0 <{shown}> Temporary lookup failure")
            }
        };
        if matches!(resolved, Resolved::Maildir(_) | Resolved::User(_)) {
            txn.rcpts.push((rcpt, resolved));
        }
        self.reply(&line)
    }

    /// DATA and the replies. Returns false when the session must end.
    fn data(&mut self, arg: &str) -> io::Result<bool> {
        let host = self.shared.hostname.clone();
        match &self.txn {
            None => {
                self.reply("503 5.5.1 Send MAIL first")?;
                return Ok(true);
            }
            Some(t) if t.rcpts.is_empty() => {
                self.reply("503 5.5.1 No valid recipients")?;
                return Ok(true);
            }
            Some(_) if !arg.trim().is_empty() => {
                self.reply("501 5.5.4 DATA takes no argument")?;
                return Ok(true);
            }
            Some(_) => {}
        }
        self.reply("354 Send the message, end with <CRLF>.<CRLF>")?;
        self.w.flush()?;
        let limits = self.shared.limits();
        self.stream.set_read_timeout(Some(limits.data_timeout))?;
        let txn = self.txn.take().expect("checked above");
        let read = data::read(
            &mut self.r,
            limits.max_message_size,
            &txn.gen.config.spool_dir,
        );
        let data = match read {
            Ok(d) => d,
            Err(e) => {
                // Nothing is delivered, nothing stays: the spool is dropped.
                self.txn = Some(txn);
                if timed_out(&e) {
                    self.abandon("timeout during DATA");
                    self.reply(&format!("421 4.4.2 {host} timeout during DATA, closing"))?;
                    self.w.flush()?;
                } else {
                    self.abandon(&format!("during DATA: {e}"));
                }
                return Ok(false);
            }
        };
        for (rcpt, to) in &txn.rcpts {
            let line = match &data {
                Data::TooBig => format!(
                    "552 5.3.4 <{}> Message size exceeds the limit",
                    for_status(rcpt)
                ),
                Data::SpoolFailed(e) => {
                    self.shared
                        .warn(&format!("session={}: spooling the message: {e}", self.id));
                    let f = crate::output::exit::Failure::from_io("spooling the message", e);
                    super::reply_for(rcpt, &Err(f))
                }
                Data::Spooled(spool) => {
                    let out = self
                        .shared
                        .deliver(&txn.gen, spool, &txn.sender, rcpt, to, &self.id);
                    super::reply_for(rcpt, &out)
                }
            };
            self.reply(&line)?;
            self.w.flush()?;
        }
        drop(txn);
        self.end_txn();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_parameters() {
        assert_eq!(
            path_and_params("<a@b> SIZE=10 BODY=8BITMIME"),
            Some(("a@b".into(), vec!["SIZE=10".into(), "BODY=8BITMIME".into()]))
        );
        assert_eq!(path_and_params(" <>"), Some((String::new(), vec![])));
        assert_eq!(path_and_params("a@b"), None);
        assert_eq!(path_and_params("<a@b>x"), None);
        assert_eq!(clean_address("@r1,@r2:x@y").as_deref(), Some("x@y"));
        assert_eq!(clean_address("a b@c"), None);
    }
}
