//! The addresses of an address header (From, To, Cc, ...): an RFC 5322
//! address-list parser over the raw field value.
//!
//! Only the addresses are kept: display names, comments and group names are
//! skipped, never read as addresses, so `"boss@corp.example"
//! <attacker@evil.test>` has the one address `attacker@evil.test`.
//! Encoded words (RFC 2047) are not decoded: they may only stand in display
//! names and comments (RFC 2047 section 5), which are skipped, and an
//! "address" that is an encoded word has no `@` and is no address.
//!
//! Accepted: `addr-spec`, `name <addr-spec>`, quoted local parts
//! (`"john doe"@example.com`, kept unquoted as `john doe@example.com`, the
//! form Postfix's tables use), domain literals, source routes (`<@a,@b:u@d>`,
//! the route dropped), groups (`team: a@x, b@y;`, empty ones too), nested
//! comments, folding, and the obsolete white space around `.` and `@`. A
//! display name with specials (`boss@corp.example <x@y>`, which RFC 5322
//! does not allow unquoted) is still skipped. A mailbox that does not parse
//! (no `@`, an empty local part or domain, two angle addresses, an
//! unclosed `<` or quote) is skipped, and the list goes on after the next
//! comma. Non-ASCII text (RFC 6532) is taken as written.

/// One parsed address: the local part (unquoted) and the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub local: String,
    pub domain: String,
}

impl Address {
    /// `local@domain`.
    pub fn full(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A run of atext and dots.
    Atom(String),
    /// A quoted string's content, unescaped.
    Quoted(String),
    /// A domain literal, with its brackets.
    Literal(String),
    /// One of `<>@,;:`.
    Special(char),
    /// Something that does not lex: an unclosed quote, literal, comment,
    /// or a stray `"`/`]`/`)`/`\`.
    Bad,
}

fn is_special(c: char) -> bool {
    matches!(c, '<' | '>' | '@' | ',' | ';' | ':')
}

fn is_atom_char(c: char) -> bool {
    !(c.is_ascii_whitespace()
        || c.is_ascii_control()
        || is_special(c)
        || matches!(c, '(' | ')' | '"' | '[' | ']' | '\\'))
}

fn lex(value: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut it = value.chars().peekable();
    while let Some(&c) = it.peek() {
        if c.is_ascii_whitespace() || c.is_ascii_control() {
            it.next();
        } else if c == '(' {
            // A comment, nested, with quoted pairs.
            it.next();
            let mut depth = 1;
            while depth > 0 {
                match it.next() {
                    Some('\\') => {
                        it.next();
                    }
                    Some('(') => depth += 1,
                    Some(')') => depth -= 1,
                    Some(_) => {}
                    None => {
                        out.push(Tok::Bad);
                        break;
                    }
                }
            }
        } else if c == '"' {
            it.next();
            let mut s = String::new();
            loop {
                match it.next() {
                    Some('\\') => match it.next() {
                        Some(q) => s.push(q),
                        None => {
                            out.push(Tok::Bad);
                            break;
                        }
                    },
                    Some('"') => {
                        out.push(Tok::Quoted(s));
                        break;
                    }
                    // Folding inside a quoted string is removed.
                    Some('\r' | '\n') => {}
                    Some(q) => s.push(q),
                    None => {
                        out.push(Tok::Bad);
                        break;
                    }
                }
            }
        } else if c == '[' {
            it.next();
            let mut s = String::from("[");
            loop {
                match it.next() {
                    Some(']') => {
                        s.push(']');
                        out.push(Tok::Literal(s));
                        break;
                    }
                    Some('\\') => {
                        if let Some(q) = it.next() {
                            s.push(q);
                        }
                    }
                    Some(q) if q.is_ascii_whitespace() => {}
                    Some(q) => s.push(q),
                    None => {
                        out.push(Tok::Bad);
                        break;
                    }
                }
            }
        } else if is_special(c) {
            it.next();
            out.push(Tok::Special(c));
        } else if is_atom_char(c) {
            let mut s = String::new();
            while let Some(&a) = it.peek() {
                if !is_atom_char(a) {
                    break;
                }
                s.push(a);
                it.next();
            }
            out.push(Tok::Atom(s));
        } else {
            it.next();
            out.push(Tok::Bad);
        }
    }
    out
}

/// An addr-spec from its tokens: local-part `@` domain, with the obsolete
/// white space between words allowed (the lexer dropped it).
fn addr_spec(toks: &[Tok]) -> Option<Address> {
    let at = toks.iter().rposition(|t| *t == Tok::Special('@'))?;
    let (local, domain) = (&toks[..at], &toks[at + 1..]);
    let mut l = String::new();
    for t in local {
        match t {
            Tok::Atom(a) => l.push_str(a),
            Tok::Quoted(q) => l.push_str(q),
            _ => return None,
        }
    }
    let mut d = String::new();
    for t in domain {
        match t {
            Tok::Atom(a) => d.push_str(a),
            Tok::Literal(x) if domain.len() == 1 => d.push_str(x),
            _ => return None,
        }
    }
    if l.is_empty() || d.is_empty() || d.starts_with('.') || d.ends_with('.') || d.contains("..") {
        return None;
    }
    Some(Address {
        local: l,
        domain: d,
    })
}

/// The address of one mailbox: the angle address if there is one (the
/// words before it are its display name), else the tokens as an addr-spec.
fn mailbox(toks: &[Tok]) -> Option<Address> {
    if toks.contains(&Tok::Bad) {
        return None;
    }
    let open = toks.iter().position(|t| *t == Tok::Special('<'));
    let Some(open) = open else {
        return addr_spec(toks);
    };
    let close = open + toks[open..].iter().position(|t| *t == Tok::Special('>'))?;
    // Nothing may follow the angle address, and it holds no second `<`.
    if close + 1 != toks.len() || toks[open + 1..close].contains(&Tok::Special('<')) {
        return None;
    }
    let mut inner = &toks[open + 1..close];
    // An obsolete source route: `@a,@b:` before the address.
    if let Some(colon) = inner.iter().position(|t| *t == Tok::Special(':')) {
        if inner.first() == Some(&Tok::Special('@')) {
            inner = &inner[colon + 1..];
        } else {
            return None;
        }
    }
    addr_spec(inner)
}

/// The addresses of an address-list field value (raw: folded, with
/// comments and encoded words as written), in order; what does not parse
/// is skipped.
pub fn parse_list(value: &str) -> Vec<Address> {
    let toks = lex(value);
    let mut out = Vec::new();
    let mut cur: Vec<Tok> = Vec::new();
    let mut in_angle = false;
    let mut in_group = false;
    let flush = |cur: &mut Vec<Tok>, out: &mut Vec<Address>| {
        if !cur.is_empty() {
            if let Some(a) = mailbox(cur) {
                out.push(a);
            }
            cur.clear();
        }
    };
    for t in toks {
        match t {
            Tok::Special('<') => {
                in_angle = true;
                cur.push(t);
            }
            Tok::Special('>') => {
                in_angle = false;
                cur.push(t);
            }
            // A group's name ends at its colon: the words before it are
            // its display name, never an address.
            Tok::Special(':') if !in_angle && !in_group => {
                cur.clear();
                in_group = true;
            }
            Tok::Special(',') if !in_angle => flush(&mut cur, &mut out),
            Tok::Special(';') if !in_angle => {
                flush(&mut cur, &mut out);
                in_group = false;
            }
            t => cur.push(t),
        }
    }
    flush(&mut cur, &mut out);
    out
}

/// The local part without its extension and the extension, split at the
/// first of the `delimiters` characters (Postfix's recipient_delimiter, as
/// `crate::policy::access` splits it). `None` when there is no extension.
pub fn split_detail<'a>(local: &'a str, delimiters: &str) -> Option<(&'a str, &'a str)> {
    let user = crate::policy::access::strip_extension(local, delimiters)?;
    let rest = &local[user.len()..];
    let delim = rest.chars().next()?;
    Some((user, &rest[delim.len_utf8()..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(v: &str) -> Vec<String> {
        parse_list(v).iter().map(Address::full).collect()
    }

    #[test]
    fn display_names_are_not_addresses() {
        assert_eq!(
            addrs(r#""boss@corp.example" <attacker@evil.test>"#),
            ["attacker@evil.test"]
        );
        assert_eq!(
            addrs("boss@corp.example <attacker@evil.test>"),
            ["attacker@evil.test"]
        );
        assert_eq!(
            addrs("Boss (boss@corp.example) <attacker@evil.test>"),
            ["attacker@evil.test"]
        );
        assert_eq!(
            addrs("attacker@evil.test (boss@corp.example)"),
            ["attacker@evil.test"]
        );
        assert_eq!(
            addrs("=?utf-8?q?boss=40corp.example?= <attacker@evil.test>"),
            ["attacker@evil.test"]
        );
        assert_eq!(
            addrs("=?utf-8?q?boss=40corp.example?="),
            Vec::<String>::new()
        );
        assert_eq!(
            addrs(r#""=?utf-8?q?J=C3=B6rg?=" <joerg@x.example>"#),
            ["joerg@x.example"]
        );
    }

    #[test]
    fn lists_groups_and_quoting() {
        assert_eq!(
            addrs(r#"Team: a@x.example, "B, C" <b@y.example>; , d@z.example"#),
            ["a@x.example", "b@y.example", "d@z.example"]
        );
        assert_eq!(addrs("undisclosed-recipients:;"), Vec::<String>::new());
        assert_eq!(addrs(r#""john doe"@example.com"#), ["john doe@example.com"]);
        assert_eq!(addrs(r#""boss"@corp.example"#), ["boss@corp.example"]);
        assert_eq!(addrs(r#"<"a\"b"@example.com>"#), ["a\"b@example.com"]);
        assert_eq!(addrs("a@b, , <c@d>, x y <e@f>"), ["a@b", "c@d", "e@f"]);
        assert_eq!(addrs("a@b,\r\n c@d"), ["a@b", "c@d"]);
        assert_eq!(
            addrs("<@route.example,@r2:user@x.example>"),
            ["user@x.example"]
        );
        assert_eq!(
            addrs("john . doe @ example . com"),
            ["john.doe@example.com"]
        );
        assert_eq!(addrs("u@[192.0.2.1]"), ["u@[192.0.2.1]"]);
        assert_eq!(addrs("(a (nested) comment) u@x.example"), ["u@x.example"]);
        assert_eq!(addrs("jörg@bücher.example"), ["jörg@bücher.example"]);
    }

    #[test]
    fn bad_mailboxes_are_skipped() {
        assert_eq!(addrs("bogus"), Vec::<String>::new());
        assert_eq!(addrs("A <a@x.example> <b@y.example>, c@z"), ["c@z"]);
        assert_eq!(addrs("\"unterminated <a@b>"), Vec::<String>::new());
        assert_eq!(addrs("a@b <c@d"), Vec::<String>::new());
        assert_eq!(addrs("@x.example, u@, u@x..example, ok@x"), ["ok@x"]);
        assert_eq!(addrs("(unclosed u@x"), Vec::<String>::new());
        assert_eq!(addrs("<>"), Vec::<String>::new());
    }

    #[test]
    fn details() {
        assert_eq!(split_detail("user+lists", "+"), Some(("user", "lists")));
        assert_eq!(split_detail("user+", "+"), Some(("user", "")));
        assert_eq!(split_detail("user", "+"), None);
        assert_eq!(split_detail("user-a+b", "+-"), Some(("user", "a+b")));
        assert_eq!(split_detail("+x", "+"), None);
        assert_eq!(split_detail("user§x", "§"), Some(("user", "x")));
    }
}
