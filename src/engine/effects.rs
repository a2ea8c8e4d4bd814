//! Side effects that leave the Maildir (forwards and replies), duplicates,
//! and the journal that makes a retried delivery skip what it already did.
//!
//! Postfix retries a whole delivery after a 75, and after a crash. The
//! journal (`crate::store::state`, kind `Journal`) holds one entry per
//! (delivery, effect), the delivery being `state::delivery_id` (the
//! recipient and the header block as Postfix hands it over, the same at
//! every attempt), the effect a short text: `file INBOX`, `file Lists.rust`,
//! `forward a@x.example,b@y.example`. The executor asks `done` before each
//! effect and calls `record` right after it:
//!
//! - a copy filed: recorded before its link, with the unique name the
//!   file gets (the tmp/ name); a retry that finds the entry looks for that
//!   name in the folder's `new/` and `cur/`, and files again only when it
//!   is not there (the attempt died before the link). Filing is so done
//!   exactly once, whatever the point of the kill;
//! - a forward: recorded after sendmail exits 0 (sendmail has queued it);
//! - a reply: its own record is the `Replied` entry, claimed before the
//!   reply is sent (exactly one of concurrent deliveries wins it), so a
//!   retry finds it claimed and sends nothing.
//!
//! The one window left is a kill between sendmail's exit and the forward's
//! record (one file creation): the retry then forwards again. A forward is
//! repeated rather than lost; a reply is lost rather than repeated (claimed
//! first). A journal that cannot be used (see `state`) is logged
//! and the delivery goes on: effects may then repeat on a retry, replies
//! never go (no state, no reply).

use crate::engine::sendmail::{SendFailure, Sendmail};
use crate::input::message::Headers;
use crate::policy::vacation::{self, Reply, Vacation};
use crate::store::maildir::Maildir;
use crate::store::state::{self, Claim, Kind, State};
use std::io::{self, Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The state of one delivery.
pub struct Effects {
    state: Result<State, String>,
    delivery: String,
    now: SystemTime,
    /// Log lines (a state rebuilt or unusable, a sweep).
    pub notes: Vec<String>,
}

/// The answer of the duplicate check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dup {
    /// First seen now (this delivery's entry was made).
    New,
    /// Seen by this same delivery at an earlier attempt.
    Retry,
    /// Seen within the window by another delivery.
    Duplicate,
    /// The state cannot be used: treated as new (never discard blindly).
    Unusable(String),
}

/// What became of a forward that sendmail did not refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forwarded {
    Sent,
    /// Sent, but the journal could not record it (a retry sends it again).
    SentUnrecorded(String),
    /// An earlier attempt of this delivery sent it.
    AlreadyDone,
}

/// What became of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replied {
    Sent,
    /// Already replied to this sender within the period (or by an earlier
    /// attempt of this delivery).
    Already,
    /// No reply: the state cannot be used.
    Unusable(String),
    /// sendmail failed; the claim is given back so a later message can get
    /// the reply.
    Failed(SendFailure),
}

impl Effects {
    /// The state of `md` for the delivery of the message whose header block
    /// (as Postfix hands it over) is `header_block` to `recipient`.
    pub fn open(md: &Maildir, recipient: &str, header_block: &[u8], now: SystemTime) -> Effects {
        Self::open_id(md, state::delivery_id(recipient, header_block), now)
    }

    /// `open` with the delivery's identity already computed
    /// (`state::delivery_id`).
    pub fn open_id(md: &Maildir, delivery: String, now: SystemTime) -> Effects {
        let mut notes = Vec::new();
        let state = State::open(md);
        match &state {
            Ok(st) => {
                notes.extend(st.notes.iter().cloned());
                if let Some(s) = st.maybe_sweep(now) {
                    if s != state::Swept::default() {
                        notes.push(format!(
                            "state sweep: {} expired, {} over the cap, {} broken, {} left in tmp removed",
                            s.expired, s.over_cap, s.broken, s.stale_tmp
                        ));
                    }
                }
            }
            Err(why) => notes.push(format!(
                "state unusable, no replies, effects may repeat on a retry: {why}"
            )),
        }
        Effects {
            state,
            delivery,
            now,
            notes,
        }
    }

    fn journal_key(&self, effect: &str) -> String {
        state::key(&[b"journal", self.delivery.as_bytes(), effect.as_bytes()])
    }

    /// Whether an earlier attempt of this delivery did `effect`.
    pub fn done(&self, effect: &str) -> bool {
        let Ok(st) = &self.state else { return false };
        st.exists(Kind::Journal, &self.journal_key(effect), self.now)
            .unwrap_or(false)
    }

    /// Records that `effect` is done; a failure is returned for the log.
    pub fn record(&self, effect: &str) -> Result<(), String> {
        let st = self.state.as_ref().map_err(Clone::clone)?;
        st.claim(
            Kind::Journal,
            &self.journal_key(effect),
            self.now + state::JOURNAL_KEEP,
            effect.as_bytes(),
            self.now,
        )
        .map(|_| ())
        .map_err(|e| format!("journal: {e}"))
    }

    /// The content of the journal entry of `effect`, if an earlier attempt
    /// of this delivery made one.
    pub fn journal_get(&self, effect: &str) -> Option<Vec<u8>> {
        let st = self.state.as_ref().ok()?;
        st.get(Kind::Journal, &self.journal_key(effect), self.now)
            .ok()
            .flatten()
            .map(|e| e.content)
    }

    /// Sets the journal entry of `effect` to `content` (replacing one an
    /// earlier attempt made).
    pub fn journal_set(&self, effect: &str, content: &[u8]) -> Result<(), String> {
        let st = self.state.as_ref().map_err(Clone::clone)?;
        let k = self.journal_key(effect);
        st.remove(Kind::Journal, &k)
            .map_err(|e| format!("journal: {e}"))?;
        st.claim(
            Kind::Journal,
            &k,
            self.now + state::JOURNAL_KEEP,
            content,
            self.now,
        )
        .map(|_| ())
        .map_err(|e| format!("journal: {e}"))
    }

    fn seen_key(key: &str) -> String {
        state::key(&[b"seen", key.as_bytes()])
    }

    /// Checks and claims the duplicate key `key` for `window`.
    pub fn duplicate(&self, key: &str, window: Duration) -> Dup {
        let st = match &self.state {
            Ok(st) => st,
            Err(why) => return Dup::Unusable(why.clone()),
        };
        match st.claim(
            Kind::Seen,
            &Self::seen_key(key),
            self.now + window,
            self.delivery.as_bytes(),
            self.now,
        ) {
            Ok(Claim::Won) => Dup::New,
            Ok(Claim::Held(e)) if e.content == self.delivery.as_bytes() => Dup::Retry,
            Ok(Claim::Held(_)) => Dup::Duplicate,
            Err(e) => Dup::Unusable(e.to_string()),
        }
    }

    /// Gives the duplicate key back when this delivery did not succeed, so
    /// that the next copy is not discarded as a duplicate of nothing.
    pub fn release_duplicate(&self, key: &str) {
        if let Ok(st) = &self.state {
            if let Ok(Some(e)) = st.get(Kind::Seen, &Self::seen_key(key), self.now) {
                if e.content == self.delivery.as_bytes() {
                    let _ = st.remove(Kind::Seen, &Self::seen_key(key));
                }
            }
        }
    }

    /// Forwards the message: `marker` in front of what `message` reads, from
    /// `sender` to `to`, unless an earlier attempt did. Recorded in the
    /// journal once sendmail has it.
    pub fn forward(
        &self,
        sendmail: &Sendmail,
        sender: &str,
        to: &[String],
        marker: &str,
        eol: &str,
        message: &mut dyn Read,
    ) -> Result<Forwarded, SendFailure> {
        let effect = format!("forward {}", to.join(","));
        if self.done(&effect) {
            return Ok(Forwarded::AlreadyDone);
        }
        sendmail.send(sender, to, &mut |w: &mut dyn Write| {
            w.write_all(marker.as_bytes())?;
            w.write_all(eol.as_bytes())?;
            io::copy(message, w).map(|_| ())
        })?;
        let recorded = match self.record(&effect) {
            Ok(()) => Forwarded::Sent,
            Err(e) => Forwarded::SentUnrecorded(e),
        };
        crate::testhook::pause("forwarded");
        Ok(recorded)
    }

    /// Sends the vacation reply `reply` for the message with `headers`,
    /// once per sender per `v.days` (the `Replied` entry, claimed first).
    pub fn reply(
        &self,
        sendmail: &Sendmail,
        v: &Vacation,
        reply: &Reply,
        headers: &Headers,
        host: &str,
    ) -> Replied {
        let st = match &self.state {
            Ok(st) => st,
            Err(why) => return Replied::Unusable(why.clone()),
        };
        let k = state::key(&[
            b"replied",
            v.handle().as_bytes(),
            reply.to.to_ascii_lowercase().as_bytes(),
        ]);
        let until = self.now + Duration::from_secs(u64::from(v.days) * 86400);
        match st.claim(Kind::Replied, &k, until, reply.to.as_bytes(), self.now) {
            Ok(Claim::Won) => {}
            Ok(Claim::Held(_)) => return Replied::Already,
            Err(e) => return Replied::Unusable(e.to_string()),
        }
        crate::testhook::pause("reply-claimed");
        let secs = self
            .now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let id = format!(
            "deliver.{}.{}@{host}",
            secs,
            &state::key(&[self.delivery.as_bytes(), reply.to.as_bytes()])[..16]
        );
        let bytes = vacation::compose(v, reply, headers, secs, &id);
        match sendmail.send(
            "",
            std::slice::from_ref(&reply.to),
            &mut |w: &mut dyn Write| w.write_all(&bytes),
        ) {
            Ok(()) => {
                crate::testhook::pause("replied");
                Replied::Sent
            }
            Err(f) => {
                let _ = st.remove(Kind::Replied, &k);
                Replied::Failed(f)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn setup() -> (tempfile::TempDir, Maildir, Sendmail, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let md = Maildir::open(&d.path().join("Maildir")).unwrap();
        let out = d.path().join("sent");
        let p = d.path().join("sendmail");
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\n{{ printf '%s ' \"$@\"; echo; cat; echo .; }} >> {}\n",
                out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sm = Sendmail {
            argv: vec![p.to_string_lossy().into_owned()],
            time_limit: Duration::from_secs(10),
        };
        (d, md, sm, out)
    }

    #[test]
    fn a_retried_delivery_skips_the_forward_already_sent() {
        let (_d, md, sm, out) = setup();
        let now = SystemTime::now();
        let block = b"Received: id 1\nSubject: x\n\n";
        for _ in 0..3 {
            let fx = Effects::open(&md, "u@x.example", block, now);
            fx.forward(
                &sm,
                "s@y",
                &["a@z.example".into()],
                "X-Deliver-Forwarded: u@x.example",
                "\n",
                &mut &b"Subject: x\n\nbody\n"[..],
            )
            .unwrap();
        }
        let sent = std::fs::read_to_string(&out).unwrap();
        assert_eq!(
            sent.matches("-i -f s@y -- a@z.example").count(),
            1,
            "{sent}"
        );
        assert!(sent.contains("X-Deliver-Forwarded: u@x.example\nSubject: x\n\nbody\n"));
        // Another delivery (another header block) forwards again.
        let fx = Effects::open(&md, "u@x.example", b"Received: id 2\n\n", now);
        assert_eq!(
            fx.forward(
                &sm,
                "s@y",
                &["a@z.example".into()],
                "m: x",
                "\n",
                &mut &b""[..]
            ),
            Ok(Forwarded::Sent)
        );
    }

    #[test]
    fn duplicates_are_per_key_and_a_retry_is_not_its_own_duplicate() {
        let (_d, md, _sm, _) = setup();
        let now = SystemTime::now();
        let w = Duration::from_secs(86400);
        let a = Effects::open(&md, "u@x", b"Received: 1\n\n", now);
        let b = Effects::open(&md, "u@x", b"Received: 2\n\n", now);
        assert_eq!(a.duplicate("id@1", w), Dup::New);
        assert_eq!(a.duplicate("id@1", w), Dup::Retry);
        assert_eq!(b.duplicate("id@1", w), Dup::Duplicate);
        // The first delivery failed: its claim is given back.
        a.release_duplicate("id@1");
        assert_eq!(b.duplicate("id@1", w), Dup::New);
        // b's claim is not a's to release.
        a.release_duplicate("id@1");
        assert_eq!(a.duplicate("id@1", w), Dup::Duplicate);
        let later = Effects::open(
            &md,
            "u@x",
            b"Received: 3\n\n",
            now + w + Duration::from_secs(1),
        );
        assert_eq!(later.duplicate("id@1", w), Dup::New);
    }

    #[test]
    fn one_reply_per_sender_per_period_and_none_without_state() {
        let (_d, md, sm, out) = setup();
        let now = SystemTime::now();
        let v = Vacation {
            days: 7,
            subject: Some("Away".into()),
            body: "Back soon.".into(),
            addresses: vec![],
            from: None,
            start: None,
            end: None,
        };
        let h = Headers::parse(b"Message-ID: <m@x>\nSubject: hi\n\n");
        let r = Reply {
            to: "ann@example.com".into(),
            from: "u@x.example".into(),
        };
        for i in 0..3 {
            let fx = Effects::open(
                &md,
                "u@x.example",
                format!("Received: {i}\n\n").as_bytes(),
                now,
            );
            let got = fx.reply(&sm, &v, &r, &h, "host.example");
            assert_eq!(
                got,
                if i == 0 {
                    Replied::Sent
                } else {
                    Replied::Already
                }
            );
        }
        let sent = std::fs::read_to_string(&out).unwrap();
        assert_eq!(
            sent.matches("-i -f  -- ann@example.com").count(),
            1,
            "{sent}"
        );
        assert!(sent.contains("Auto-Submitted: auto-replied"));
        // Eight days later: a reply again.
        let fx = Effects::open(
            &md,
            "u@x.example",
            b"Received: 9\n\n",
            now + Duration::from_secs(8 * 86400),
        );
        assert_eq!(fx.reply(&sm, &v, &r, &h, "host.example"), Replied::Sent);
        // The state made unusable (someone else may write it): no reply.
        let p = md.path().join(state::DIR);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
        let fx = Effects::open(
            &md,
            "u@x.example",
            b"Received: 10\n\n",
            now + Duration::from_secs(30 * 86400),
        );
        assert!(matches!(
            fx.reply(&sm, &v, &r, &h, "host.example"),
            Replied::Unusable(_)
        ));
        assert!(
            fx.notes.iter().any(|n| n.contains("state unusable")),
            "{:?}",
            fx.notes
        );
    }
}
