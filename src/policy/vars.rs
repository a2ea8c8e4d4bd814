//! Variables in rule texts (folder names, added headers, program
//! arguments): templates, parsed when the rules load and expanded per
//! message.
//!
//! Syntax (deliver.rules(5)): `${0}` to `${9}` are the groups of the rule's
//! own regex match (`${0}` the whole match); `${name}` is a named value
//! ([`Name`]); `$$` is a literal `$`. Any other `$` is an error, as is an
//! unknown name, so a typo is found when the file loads (with its
//! position), never at delivery. A value that is not set (no such group,
//! no From address, ...) expands to the empty string.

use crate::input::address;
use crate::input::envelope::Envelope;
use crate::input::message::Headers;
use std::borrow::Cow;
use std::fmt;

/// A named value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    /// The envelope sender (empty for the null sender).
    Sender,
    /// The envelope recipient.
    Recipient,
    /// The recipient's local part without its `+detail`.
    User,
    /// The recipient's detail (after the recipient delimiter).
    Detail,
    /// The recipient's domain.
    Domain,
    /// The first address of the topmost From field.
    From,
    /// List-Id's identifier, without the angle brackets.
    ListId,
}

impl Name {
    pub const ALL: [Name; 7] = [
        Name::Sender,
        Name::Recipient,
        Name::User,
        Name::Detail,
        Name::Domain,
        Name::From,
        Name::ListId,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Name::Sender => "sender",
            Name::Recipient => "recipient",
            Name::User => "user",
            Name::Detail => "detail",
            Name::Domain => "domain",
            Name::From => "from",
            Name::ListId => "list_id",
        }
    }

    fn parse(s: &str) -> Option<Name> {
        Name::ALL.into_iter().find(|n| n.as_str() == s)
    }
}

/// What `${...}` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// A group of the rule's match, 0 to 9.
    Group(u8),
    Named(Name),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// A variable, and the byte offset of its `$` in the template's text.
    Var(Var, usize),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// Why a template does not parse, and where: `offset` is the byte offset
/// in the template's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub offset: usize,
    pub msg: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.msg, self.offset)
    }
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            lit.push_str(&rest[..i]);
            let offset = text.len() - rest.len() + i;
            let after = &rest[i + 1..];
            if let Some(a) = after.strip_prefix('$') {
                lit.push('$');
                rest = a;
                continue;
            }
            let Some(inner) = after.strip_prefix('{') else {
                return Err(TemplateError {
                    offset,
                    msg: "'$' starts a variable, ${name} or ${1}; write $$ for a '$'".into(),
                });
            };
            let Some(close) = inner.find('}') else {
                return Err(TemplateError {
                    offset,
                    msg: "'${' without its '}'".into(),
                });
            };
            let name = &inner[..close];
            let var = match name.as_bytes() {
                [d @ b'0'..=b'9'] => Var::Group(d - b'0'),
                _ => match Name::parse(name) {
                    Some(n) => Var::Named(n),
                    None => {
                        let known: Vec<&str> = Name::ALL.iter().map(|n| n.as_str()).collect();
                        return Err(TemplateError {
                            offset,
                            msg: format!(
                                "unknown variable ${{{name}}} (known: ${{0}} to ${{9}}, {})",
                                known.join(", ")
                            ),
                        });
                    }
                },
            };
            if !lit.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut lit)));
            }
            pieces.push(Piece::Var(var, offset));
            rest = &inner[close + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Text(lit));
        }
        Ok(Template { pieces })
    }

    /// Whether the template has no variable: its text is [`Template::literal`].
    pub fn is_literal(&self) -> bool {
        !self.pieces.iter().any(|p| matches!(p, Piece::Var(..)))
    }

    /// The text of a template without variables (`$$` already a `$`).
    pub fn literal(&self) -> Option<String> {
        self.is_literal().then(|| self.expand(&|_| None))
    }

    /// The variables it uses, in order.
    pub fn vars(&self) -> impl Iterator<Item = Var> + '_ {
        self.vars_at().map(|(v, _)| v)
    }

    /// The variables it uses, each with the byte offset of its `$` in the
    /// template's text (for a load error's position).
    pub fn vars_at(&self) -> impl Iterator<Item = (Var, usize)> + '_ {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(v, at) => Some((*v, *at)),
            Piece::Text(_) => None,
        })
    }

    /// Whether it uses a group of the rule's match (`${0}` to `${9}`).
    pub fn uses_groups(&self) -> bool {
        self.vars().any(|v| matches!(v, Var::Group(_)))
    }

    /// The text with every variable replaced by its value (unset: empty).
    pub fn expand<'v>(&self, value: &dyn Fn(Var) -> Option<Cow<'v, str>>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(v, _) => {
                    if let Some(s) = value(*v) {
                        out.push_str(&s);
                    }
                }
            }
        }
        out
    }
}

/// A text of a rule's action: literal (used as it is, at no cost when the
/// rule matches), or a template with variables, expanded when it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text {
    Literal(String),
    Template(Template),
}

impl Text {
    pub fn new(t: Template) -> Text {
        match t.literal() {
            Some(s) => Text::Literal(s),
            None => Text::Template(t),
        }
    }

    /// The text, with the variables replaced by `value`'s (a literal is
    /// borrowed).
    pub fn expand<'t, 'v>(&'t self, value: &dyn Fn(Var) -> Option<Cow<'v, str>>) -> Cow<'t, str> {
        match self {
            Text::Literal(s) => Cow::Borrowed(s),
            Text::Template(t) => Cow::Owned(t.expand(value)),
        }
    }

    pub fn uses_groups(&self) -> bool {
        matches!(self, Text::Template(t) if t.uses_groups())
    }
}

/// The groups of a regex match: `get(0)` is the whole match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captures {
    groups: Vec<Option<String>>,
}

impl Captures {
    pub fn from_regex(c: &regex::Captures<'_>) -> Captures {
        Captures {
            groups: c
                .iter()
                .map(|m| m.map(|m| m.as_str().to_string()))
                .collect(),
        }
    }

    pub fn get(&self, i: usize) -> Option<&str> {
        self.groups.get(i)?.as_deref()
    }
}

/// The values of the variables for one message.
pub struct Values<'a> {
    pub envelope: &'a Envelope,
    pub headers: &'a Headers,
    /// The raw header block, for the From address.
    pub header_block: &'a [u8],
    /// The recipient delimiter (`[settings]`).
    pub delimiter: &'a str,
    /// The groups of the rule's match, if it has one.
    pub captures: Option<&'a Captures>,
}

impl Values<'_> {
    pub fn get(&self, v: Var) -> Option<Cow<'_, str>> {
        let recipient = || {
            let r = &self.envelope.recipient.value;
            r.rsplit_once('@').unwrap_or((r, ""))
        };
        match v {
            Var::Group(i) => self.captures?.get(i.into()).map(Cow::Borrowed),
            Var::Named(n) => match n {
                Name::Sender => Some(Cow::Borrowed(self.envelope.sender.value.as_str())),
                Name::Recipient => Some(Cow::Borrowed(self.envelope.recipient.value.as_str())),
                Name::User => {
                    let local = recipient().0;
                    let user = address::split_detail(local, self.delimiter).map_or(local, |d| d.0);
                    Some(Cow::Borrowed(user))
                }
                Name::Detail => {
                    address::split_detail(recipient().0, self.delimiter).map(|d| Cow::Borrowed(d.1))
                }
                Name::Domain => Some(Cow::Borrowed(recipient().1)),
                Name::From => {
                    let block = self.header_block;
                    let n = self.headers.len();
                    crate::input::edit::raw_fields(block)
                        .take(n)
                        .filter(|f| f.name(block).eq_ignore_ascii_case(b"From"))
                        .find_map(|f| {
                            let v = String::from_utf8_lossy(f.value(block));
                            address::parse_list(&v).into_iter().next()
                        })
                        .map(|a| Cow::Owned(a.full()))
                }
                Name::ListId => self.headers.all("List-Id").next().map(|v| {
                    let id = match (v.rfind('<'), v.rfind('>')) {
                        (Some(a), Some(b)) if a < b => &v[a + 1..b],
                        _ => v,
                    };
                    Cow::Borrowed(id.trim())
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::envelope::Flags;

    fn expand<'v>(t: &str, f: &dyn Fn(Var) -> Option<Cow<'v, str>>) -> String {
        Template::parse(t).unwrap().expand(f)
    }

    #[test]
    fn parses_and_expands() {
        let vals = |v: Var| -> Option<Cow<'_, str>> {
            match v {
                Var::Group(1) => Some("rust-users".into()),
                Var::Named(Name::Sender) => Some("a@b".into()),
                _ => None,
            }
        };
        assert_eq!(expand("Lists.${1}", &vals), "Lists.rust-users");
        assert_eq!(expand("X-Tag: ${sender} ${2}!", &vals), "X-Tag: a@b !");
        assert_eq!(expand("cost $$5 $${1}", &vals), "cost $5 ${1}");
        assert_eq!(expand("", &vals), "");
        let t = Template::parse("plain $$ text").unwrap();
        assert!(t.is_literal());
        assert_eq!(t.literal().as_deref(), Some("plain $ text"));
        let t = Template::parse("a${0}${list_id}").unwrap();
        assert!(!t.is_literal() && t.uses_groups());
        assert_eq!(
            t.vars().collect::<Vec<_>>(),
            [Var::Group(0), Var::Named(Name::ListId)]
        );
        assert!(!Template::parse("${from}").unwrap().uses_groups());
    }

    #[test]
    fn errors_say_where() {
        let e = Template::parse("Lists.${nmae}").unwrap_err();
        assert_eq!(e.offset, 6);
        assert!(e.msg.contains("unknown variable ${nmae}"), "{}", e.msg);
        assert!(e.msg.contains("list_id"), "{}", e.msg);
        assert_eq!(Template::parse("ab$1").unwrap_err().offset, 2);
        assert_eq!(Template::parse("é${1").unwrap_err().offset, 2);
        assert_eq!(Template::parse("${10}").unwrap_err().offset, 0);
        assert_eq!(Template::parse("${}").unwrap_err().offset, 0);
        assert_eq!(Template::parse("x$").unwrap_err().offset, 1);
    }

    #[test]
    fn named_values() {
        let block = b"From: \"boss@corp.example\" <attacker@evil.test>, b@c\nList-Id: Rust users <rust-users.lists.example.org>\nSubject: x\n\n";
        let headers = Headers::parse(block);
        let env = Envelope::resolve(
            &Flags {
                sender: Some("s@x.example".into()),
                recipient: Some("me+lists@home.example".into()),
                ..Flags::default()
            },
            &|_| None,
            None,
            &headers,
        );
        let caps = Captures {
            groups: vec![Some("whole".into()), None, Some("two".into())],
        };
        let v = Values {
            envelope: &env,
            headers: &headers,
            header_block: block,
            delimiter: "+",
            captures: Some(&caps),
        };
        let t = Template::parse(
            "${sender}|${recipient}|${user}|${detail}|${domain}|${from}|${list_id}|${0}|${1}|${2}|${3}",
        )
        .unwrap();
        assert_eq!(
            t.expand(&|x| v.get(x)),
            "s@x.example|me+lists@home.example|me|lists|home.example|attacker@evil.test|rust-users.lists.example.org|whole||two|"
        );
        let plain = Values {
            captures: None,
            delimiter: "",
            ..v
        };
        assert_eq!(
            Template::parse("${user}.${detail}.${1}")
                .unwrap()
                .expand(&|x| plain.get(x)),
            "me+lists.."
        );
    }
}
