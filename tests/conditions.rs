//! The `address` condition, table paths and captures, through the real
//! binary: parsed addresses rather than header text, the envelope's
//! `+detail`, an address-book table, `~/` paths.

mod util;

use std::fs;
use util::*;

/// Delivers `headers` to `rcpt` and returns the folder it was filed in
/// ("" for the Inbox), with the log on stderr.
fn folder_of(h: &Home, rcpt: &str, headers: &str) -> (String, Run) {
    let before = h.delivered();
    // As local(8) runs it: USER and HOME name the recipient.
    let mut c = h.command(&["-f", "sender@example.org", "-a", rcpt, "--log-stderr"]);
    c.env("USER", "nobody");
    let r = run_cmd(c, &msg(headers, "body\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let after = h.delivered();
    let new: Vec<&String> = after
        .iter()
        .filter(|(k, v)| before.get(*k).map_or(0, Vec::len) < v.len())
        .map(|(k, _)| k)
        .collect();
    assert_eq!(new.len(), 1, "one copy filed: {after:?}");
    (new[0].clone(), r)
}

fn folder(h: &Home, headers: &str) -> String {
    folder_of(h, "user@example.com", headers).0
}

#[test]
fn a_display_name_is_not_the_address() {
    let h = Home::new();
    h.user(
        r#"
[[rule]]
name = "boss"
address = { header = "From", is = "boss@corp.example" }
folder = "Boss"

[[rule]]
name = "text"
header = "From"
match = "boss@corp\\.example"
folder = "Text"
"#,
    );
    // The text contains boss's address; the address is the attacker's.
    for from in [
        r#""boss@corp.example" <attacker@evil.test>"#,
        "boss@corp.example <attacker@evil.test>",
        "attacker@evil.test (boss@corp.example)",
        "=?utf-8?q?boss=40corp.example?= <attacker@evil.test>",
    ] {
        assert_eq!(folder(&h, &format!("From: {from}\n")), "Text", "{from}");
    }
    // The address is boss's, however it is written.
    for from in [
        "boss@corp.example",
        "Boss <boss@corp.example>",
        "BOSS@Corp.Example (the boss)",
        r#""Boss, The" <boss@corp.example>"#,
        "=?utf-8?q?B=C3=B6ss?= <boss@corp.example>",
        "bosses: other@corp.example, boss@corp.example;",
        "(comment) <@relay.example:boss@corp.example>",
        "Boss\n <boss@corp.example>",
    ] {
        assert_eq!(folder(&h, &format!("From: {from}\n")), "Boss", "{from}");
    }
}

#[test]
fn any_address_of_any_listed_header() {
    let h = Home::new();
    h.user(
        r#"
[[rule]]
name = "lists"
address = { header = ["To", "Cc"], part = "detail", match = "^lists$" }
folder = "Lists"
"#,
    );
    assert_eq!(
        folder(
            &h,
            "To: a@x.example\nCc: b@y.example, \"me\" <me+lists@home.example>\n"
        ),
        "Lists"
    );
    assert_eq!(
        folder(&h, "To: a@x.example\nTo: me+lists@home.example\n"),
        "Lists"
    );
    // Not in a header that is not listed, nor in a display name.
    assert_eq!(folder(&h, "From: me+lists@home.example\n"), "");
    assert_eq!(
        folder(&h, "To: \"me+lists@home.example\" <me@home.example>\n"),
        ""
    );
    assert_eq!(folder(&h, "To: me+other@home.example\n"), "");
}

#[test]
fn address_parts() {
    let h = Home::new();
    h.user(
        r#"
[[rule]]
address = { header = "From", part = "detail", is = "" }
folder = "EmptyDetail"
[[rule]]
address = { header = "From", part = "detail", is = "news" }
folder = "Detail"
[[rule]]
address = { header = "From", part = "user", is = "alice" }
folder = "User"
[[rule]]
address = { header = "From", part = "localpart", is = "bob+x" }
folder = "Local"
[[rule]]
address = { header = "From", part = "domain", match = "(^|\\.)corp\\.example$" }
folder = "Domain"
"#,
    );
    assert_eq!(folder(&h, "From: carol+news@x.example\n"), "Detail");
    assert_eq!(folder(&h, "From: carol+@x.example\n"), "EmptyDetail");
    assert_eq!(folder(&h, "From: alice+whatever@x.example\n"), "User");
    assert_eq!(folder(&h, "From: Alice@x.example\n"), "User");
    assert_eq!(folder(&h, "From: bob+x@x.example\n"), "Local");
    assert_eq!(folder(&h, "From: bob+y@x.example\n"), "");
    assert_eq!(folder(&h, "From: dave@mail.corp.example\n"), "Domain");
    assert_eq!(folder(&h, "From: dave@corp.example.evil\n"), "");
    // No detail: "detail" matches nothing, not even "".
    assert_eq!(folder(&h, "From: erin@x.example\n"), "");
}

#[test]
fn envelope_recipient_detail_and_sender() {
    let mut h = Home::new();
    // The system's recipient delimiter (several characters, as in Postfix).
    h.system("[settings]\nrecipient_delimiter = \"+-\"\n");
    h.user(
        r#"
[[rule]]
address = { envelope = "recipient", part = "detail", is = "lists" }
folder = "Plus"
[[rule]]
address = { envelope = "sender", part = "domain", is = "bank.example" }
folder = "Bank"
"#,
    );
    let f = |rcpt: &str| folder_of(&h, rcpt, "Subject: x\n").0;
    assert_eq!(f("user+lists@example.com"), "Plus");
    assert_eq!(f("user-lists@example.com"), "Plus");
    assert_eq!(f("user+other@example.com"), "");
    assert_eq!(f("user@example.com"), "");
    let r = h.run(
        &["-f", "alerts@BANK.example", "-a", "user@example.com"],
        &msg("Subject: x\n", "b\n"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(h.delivered().contains_key("Bank"), "{:?}", h.delivered());
}

/// The whitelist recipe: From addresses in the user's `friends` table go
/// to the Inbox even when the spam filter flagged them.
#[test]
fn address_book_whitelist() {
    let h = Home::new();
    fs::write(
        h.home.join("friends"),
        "friend@pals.example  friend\nfamily.example  family\n",
    )
    .unwrap();
    chown_tree(&h.home.join("friends"), h.uid, h.gid);
    h.user(
        r#"
[[rule]]
name = "friends"
address = { header = "From", table = "texthash:friends" }
inbox = true
"#,
    );
    let spam = |from: &str| format!("From: {from}\nX-Spam-Flag: YES\nSubject: hi\n");
    assert_eq!(folder(&h, &spam("Friend <friend@pals.example>")), "");
    assert_eq!(folder(&h, &spam("FRIEND@pals.example")), "");
    // access(5) forms: the domain, and its subdomains.
    assert_eq!(folder(&h, &spam("aunt@family.example")), "");
    assert_eq!(folder(&h, &spam("cousin@mail.family.example")), "");
    // Not a friend, or a friend's address as a display name: Junk.
    assert_eq!(folder(&h, &spam("other@pals.example")), "Junk");
    assert_eq!(
        folder(&h, &spam("\"friend@pals.example\" <x@evil.test>")),
        "Junk"
    );
}

/// `~/` is the recipient's home; a relative path is relative to the rules
/// file's directory; both in `[access]` and in `address.table`.
#[test]
fn table_paths_tilde_and_relative() {
    let mut h = Home::new();
    let conf = h.home.join(".config/deliver");
    fs::create_dir_all(&conf).unwrap();
    fs::write(h.home.join("vip"), "vip@x.example  yes\n").unwrap();
    fs::write(conf.join("near"), "near@x.example  yes\n").unwrap();
    fs::write(conf.join("senders"), "blocked.example  DISCARD\n").unwrap();
    chown_tree(&h.home, h.uid, h.gid);
    h.user_rules = conf.join("rules.toml");
    h.user(
        r#"
[access]
sender = ["texthash:senders"]

[[rule]]
address = { header = "From", table = "texthash:~/vip" }
folder = "Vip"
[[rule]]
address = { header = "From", table = "texthash:near" }
folder = "Near"
"#,
    );
    let (f, r) = folder_of(&h, "user@example.com", "From: vip@x.example\n");
    assert_eq!(f, "Vip", "{}", r.stderr);
    assert_eq!(folder(&h, "From: near@x.example\n"), "Near");
    let mut c = h.command(&["-f", "a@blocked.example", "-a", "user@example.com"]);
    c.env("USER", "nobody");
    let r = run_cmd(c, &msg("From: vip@x.example\n", "b\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(h.count(), 2, "the blocked sender's mail was discarded");

    // A `~/` table that does not exist: the user's file is not used, and
    // the reason names the file, line and column.
    h.user(
        "[[rule]]\naddress = { header = \"From\", table = \"texthash:~/nope\" }\nfolder = \"X\"\n",
    );
    let (f, r) = folder_of(&h, "user@example.com", "From: vip@x.example\n");
    assert_eq!(f, "");
    let at = format!("{}:2:38", h.user_rules.display());
    assert!(r.stderr.contains(&at), "{at} in {}", r.stderr);
    assert!(r.stderr.contains("texthash:~/nope"), "{}", r.stderr);

    // In the system file, `~/` is refused where it is written.
    let sys = h.file("sys.toml", "[access]\nsender = [\"texthash:~/senders\"]\n");
    let mut c = std::process::Command::new(BIN);
    c.arg("check").arg("--rules").arg(&sys).env_clear();
    if is_root() {
        use std::os::unix::process::CommandExt;
        c.uid(h.uid).gid(h.gid);
    }
    let r = run_cmd(c, b"");
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    let at = format!(
        "{}:2:11: texthash:~/senders: '~/' is for a user's rules file",
        sys.display()
    );
    assert!(r.stdout.contains(&at), "{at} in {}", r.stdout);
}

#[test]
fn load_errors_name_the_place() {
    let h = Home::new();
    let check = |text: &str| h.check_fails(text);
    let file = h.user_rules.display().to_string();
    let out = check("[[rule]]\naddress = { header = \"Subject\", is = \"x\" }\nfolder = \"X\"\n");
    assert!(
        out.contains(&format!(
            "{file}:2:22: address: header \"Subject\" does not hold addresses"
        )),
        "{out}"
    );
    let out = check(
        "[[rule]]\naddress = { header = \"From\", is = \"x\", match = \"y\" }\nfolder = \"X\"\n",
    );
    assert!(
        out.contains(&format!(
            "{file}:2:11: address: give exactly one of 'is', 'match' and 'table'"
        )),
        "{out}"
    );
    let out = check("[[rule]]\naddress = { envelope = \"to\", is = \"x\" }\nfolder = \"X\"\n");
    assert!(
        out.contains(&format!("{file}:2:24: address: envelope = \"to\"")),
        "{out}"
    );
    let out = check(
        "[[rule]]\naddress = { header = \"From\", part = \"host\", is = \"x\" }\nfolder = \"X\"\n",
    );
    assert!(
        out.contains(&format!("{file}:2:37: address: part = \"host\"")),
        "{out}"
    );
    let out = check("[[rule]]\naddress = { header = \"From\", match = \"(\" }\nfolder = \"X\"\n");
    assert!(
        out.contains(&format!("{file}:2:38: address match: bad regex")),
        "{out}"
    );
    let out = check("[[rule]]\naddress = { header = \"From\", envelope = \"sender\", is = \"x\" }\nfolder = \"X\"\n");
    assert!(
        out.contains("exactly one of 'header' and 'envelope'"),
        "{out}"
    );
    let out = check("[[rule]]\naddress = { header = \"From\", part = \"domain\", table = \"texthash:t\" }\nfolder = \"X\"\n");
    assert!(out.contains("remove 'part'"), "{out}");
    let out = check("[[rule]]\naddress = { header = \"From\", iss = \"x\" }\nfolder = \"X\"\n");
    assert!(
        out.contains(&format!("{file}:2:")) && out.contains("iss"),
        "{out}"
    );
}

/// Captures in a folder name (`folder = "Lists.${1}"`).
#[test]
fn list_id_capture_names_the_folder() {
    let h = Home::new();
    h.user(
        r#"
[[rule]]
name = "lists"
header = "List-Id"
match = "<([^.>]+)\\."
folder = "Lists.${1}"
"#,
    );
    assert_eq!(
        folder(&h, "List-Id: Rust users <rust-users.lists.example.org>\n"),
        "Lists.rust-users"
    );
    assert_eq!(
        folder(&h, "List-Id: <announce.example.org>\n"),
        "Lists.announce"
    );
}

/// A capture that makes a bad folder name files into the Inbox, with a
/// log line.
#[test]
fn a_bad_captured_folder_name_files_into_the_inbox() {
    let h = Home::new();
    h.user(
        r#"
[[rule]]
name = "lists"
header = "List-Id"
match = "<([^>]*)>"
folder = "Lists.${1}"
"#,
    );
    let (f, r) = folder_of(&h, "user@example.com", "List-Id: <..>\n");
    assert_eq!(f, "");
    assert!(r.stderr.contains("Lists..."), "{}", r.stderr);
    let (f, _) = folder_of(&h, "user@example.com", "List-Id: <a/../../x>\n");
    assert_eq!(f, "");
    assert_eq!(h.count(), 2);
}
