//! The envelope, and where each part of it came from.
//!
//! Sources, in order of precedence: command-line flags, Postfix's environment
//! (see local(8): SENDER, RECIPIENT, CLIENT_ADDRESS, ...), the `From sender
//! date` line that local(8) prepends, and the Return-Path / Delivered-To
//! headers. Every value keeps its source, for `--test` traces.
//!
//! The null sender is the empty string; `<>`, an empty `SENDER` and the
//! From_ line's `MAILER-DAEMON` all mean it. Control characters are replaced
//! with `_` on the way in, so no envelope value can start a new header or log
//! line.

use crate::input::message::Headers;
use serde::Serialize;

/// Where an envelope value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum Source {
    Flag(&'static str),
    Env(&'static str),
    FromLine,
    Header(&'static str),
    Missing,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag(n) => write!(f, "flag {n}"),
            Source::Env(n) => write!(f, "environment {n}"),
            Source::FromLine => f.write_str("From_ line"),
            Source::Header(n) => write!(f, "header {n}"),
            Source::Missing => f.write_str("not given"),
        }
    }
}

/// One envelope value with its provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    pub value: String,
    pub source: Source,
}

impl Field {
    fn missing() -> Self {
        Field {
            value: String::new(),
            source: Source::Missing,
        }
    }

    pub fn is_set(&self) -> bool {
        self.source != Source::Missing
    }

    pub fn as_opt(&self) -> Option<&str> {
        self.is_set().then_some(self.value.as_str())
    }
}

/// Envelope values given on the command line (all optional).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub client_address: Option<String>,
    pub client_hostname: Option<String>,
    pub helo: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Envelope {
    /// Envelope sender; empty for the null sender.
    pub sender: Field,
    pub recipient: Field,
    pub original_recipient: Field,
    pub user: Field,
    pub extension: Field,
    pub domain: Field,
    pub local: Field,
    pub client_address: Field,
    pub client_hostname: Field,
    pub client_helo: Field,
    pub client_protocol: Field,
    pub sasl_method: Field,
    pub sasl_username: Field,
    pub sasl_sender: Field,
}

/// Strip one pair of angle brackets and surrounding space: `<a@b>` -> `a@b`.
pub fn strip_brackets(s: &str) -> &str {
    let t = s.trim();
    t.strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(t)
        .trim()
}

fn normalize_sender(s: &str) -> String {
    let s = strip_brackets(s);
    if s.eq_ignore_ascii_case("MAILER-DAEMON") {
        String::new()
    } else {
        crate::output::text::for_envelope(s)
    }
}

impl Envelope {
    /// Builds the envelope. `env` reads one environment variable (a closure so
    /// that the caller decides what the environment is, and tests need none).
    pub fn resolve(
        flags: &Flags,
        env: &dyn Fn(&str) -> Option<String>,
        from_line: Option<&str>,
        headers: &Headers,
    ) -> Envelope {
        let pick = |flag: &Option<String>, flag_name: &'static str, var: &'static str| -> Field {
            if let Some(v) = flag {
                return Field {
                    value: crate::output::text::for_envelope(v),
                    source: Source::Flag(flag_name),
                };
            }
            match env(var) {
                Some(v) => Field {
                    value: crate::output::text::for_envelope(&v),
                    source: Source::Env(var),
                },
                None => Field::missing(),
            }
        };
        let var = |name: &'static str| pick(&None, "", name);

        let mut sender = pick(&flags.sender, "-f", "SENDER");
        if sender.is_set() {
            sender.value = normalize_sender(&sender.value);
        } else if let Some(s) = from_line.and_then(from_line_sender) {
            sender = Field {
                value: normalize_sender(s),
                source: Source::FromLine,
            };
        } else if let Some(rp) = headers.first("Return-Path") {
            sender = Field {
                value: normalize_sender(&rp),
                source: Source::Header("Return-Path"),
            };
        }

        let mut recipient = pick(&flags.recipient, "-a", "RECIPIENT");
        if !recipient.is_set() {
            if let Some(dt) = headers.first("Delivered-To") {
                recipient = Field {
                    value: crate::output::text::for_envelope(strip_brackets(&dt)),
                    source: Source::Header("Delivered-To"),
                };
            }
        } else {
            recipient.value = strip_brackets(&recipient.value).to_string();
        }

        let mut user = var("USER");
        if !user.is_set() {
            user = var("LOGNAME");
        }

        Envelope {
            sender,
            recipient,
            original_recipient: var("ORIGINAL_RECIPIENT"),
            user,
            extension: var("EXTENSION"),
            domain: var("DOMAIN"),
            local: var("LOCAL"),
            client_address: pick(&flags.client_address, "--client-address", "CLIENT_ADDRESS"),
            client_hostname: pick(
                &flags.client_hostname,
                "--client-hostname",
                "CLIENT_HOSTNAME",
            ),
            client_helo: pick(&flags.helo, "--helo", "CLIENT_HELO"),
            client_protocol: var("CLIENT_PROTOCOL"),
            sasl_method: var("SASL_METHOD"),
            sasl_username: var("SASL_USERNAME"),
            sasl_sender: var("SASL_SENDER"),
        }
    }
}

/// The sender from `From sender  Sat Nov 21 10:00:00 2026`.
pub fn from_line_sender(line: &str) -> Option<&str> {
    line.strip_prefix("From ")?.split_ascii_whitespace().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn headers(text: &str) -> Headers {
        Headers::parse(text.as_bytes())
    }

    #[test]
    fn flag_beats_env_beats_from_line_beats_header() {
        let h = headers("Return-Path: <rp@x>\nDelivered-To: dt@y\n\n");
        let e = env_of(&[("SENDER", "env@x"), ("RECIPIENT", "envr@y")]);
        let flags = Flags {
            sender: Some("flag@x".into()),
            ..Default::default()
        };
        let env = Envelope::resolve(&flags, &e, Some("From fl@x  Sat"), &h);
        assert_eq!(env.sender.value, "flag@x");
        assert_eq!(env.sender.source, Source::Flag("-f"));
        assert_eq!(env.recipient.value, "envr@y");
        assert_eq!(env.recipient.source, Source::Env("RECIPIENT"));

        let env = Envelope::resolve(&Flags::default(), &env_of(&[]), Some("From fl@x  Sat"), &h);
        assert_eq!(env.sender.value, "fl@x");
        assert_eq!(env.sender.source, Source::FromLine);
        assert_eq!(env.recipient.value, "dt@y");

        let env = Envelope::resolve(&Flags::default(), &env_of(&[]), None, &h);
        assert_eq!(env.sender.value, "rp@x");
        assert_eq!(env.sender.source, Source::Header("Return-Path"));
    }

    #[test]
    fn null_sender_forms() {
        let h = headers("\n");
        for s in ["", "<>", "MAILER-DAEMON"] {
            let f = Flags {
                sender: Some(s.into()),
                ..Default::default()
            };
            let env = Envelope::resolve(&f, &env_of(&[]), None, &h);
            assert_eq!(env.sender.value, "", "{s:?}");
        }
        let env = Envelope::resolve(
            &Flags::default(),
            &env_of(&[]),
            Some("From MAILER-DAEMON  Sat Nov 21"),
            &h,
        );
        assert_eq!(env.sender.value, "");
        assert_eq!(env.sender.source, Source::FromLine);
    }

    #[test]
    fn control_characters_are_replaced() {
        let f = Flags {
            sender: Some("a@b\r\nX-Evil: 1".into()),
            ..Default::default()
        };
        let env = Envelope::resolve(
            &f,
            &env_of(&[("RECIPIENT", "r@x\nBcc: y")]),
            None,
            &headers("\n"),
        );
        assert!(!env.sender.value.contains(['\r', '\n']));
        assert!(!env.recipient.value.contains('\n'));
    }
}
