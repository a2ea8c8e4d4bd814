//! The decision as a pure function: layering, scores, thresholds, dialects.

use deliver::input::envelope::{Envelope, Flags};
use deliver::input::message::Headers;
use deliver::policy::decide::{decide, Decision, Input, Route as Action};
use deliver::policy::maps::OpenOptions;
use deliver::policy::rules::{load_str, Layer, Origin};
use std::path::Path;

fn layer(text: &str, origin: Origin) -> Layer {
    load_str(text, Path::new("t.toml"), origin, &OpenOptions::default())
        .unwrap_or_else(|d| panic!("{d:?}"))
}

fn run(headers: &str, system: &str, user: Option<&str>) -> Decision {
    run_with(headers, system, user, "")
}

fn run_with(headers: &str, system: &str, user: Option<&str>, body: &str) -> Decision {
    let block = format!("{headers}\n");
    let h = Headers::parse(block.as_bytes());
    let env = Envelope::resolve(
        &Flags {
            sender: Some("someone@example.org".into()),
            recipient: Some("user@example.com".into()),
            ..Default::default()
        },
        &|_| None,
        None,
        &h,
    );
    let sys = layer(system, Origin::System);
    let usr = user.map(|u| layer(u, Origin::User));
    let input = Input {
        envelope: &env,
        headers: &h,
        header_block: block.as_bytes(),
        body_window: body.as_bytes(),
        size: (block.len() + body.len()) as u64,
        limit_hit: None,
        filters_done: &[],
        duplicate: None,
        today: 20270101,
    };
    decide(&input, &sys, usr.as_ref())
}

fn folder(d: &Decision) -> Option<&str> {
    d.folder.as_ref().map(|f| f.name.as_str())
}

const SYS: &str = r#"
[spam]
junk_threshold = 5.0
discard_threshold = 15.0
junk_folder = "Junk"
virus = "discard"
user_junk_threshold_min = 3.0
user_junk_threshold_max = 10.0

[[rule]]
name = "pills"
header = "Subject"
match = "(?i)v[i1]agra"
score = 3.0

[[rule]]
name = "casino"
header = "Subject"
match = "(?i)casino"
score = 2.5

[[rule]]
name = "rust-list"
header = "List-Id"
match = "rust-users\\.lists\\.example\\.org"
folder = "Lists.rust"
"#;

#[test]
fn scores_add_up_against_thresholds() {
    let d = run("Subject: viagra", SYS, None);
    assert_eq!((d.action, d.score), (Action::Inbox, 3.0));
    let d = run("Subject: viagra casino", SYS, None);
    assert_eq!(
        (d.action, folder(&d), d.score),
        (Action::Junk, Some("Junk"), 5.5)
    );
    let d = run(
        "Subject: viagra\nX-Spam-Status: No, score=1.5 required=5.0",
        SYS,
        None,
    );
    assert_eq!((d.action, d.score), (Action::Inbox, 4.5));
    let d = run(
        "Subject: viagra\nX-Spam-Status: No, score=2.0 required=5.0",
        SYS,
        None,
    );
    assert_eq!(
        (d.action, d.score),
        (Action::Junk, 5.0),
        "the threshold is inclusive"
    );
    let d = run(
        "Subject: viagra casino\nX-Spam-Status: Yes, score=9.5",
        SYS,
        None,
    );
    assert_eq!((d.action, d.score), (Action::Discard, 15.0));
}

#[test]
fn negative_rule_scores_lower_the_total() {
    let sys = format!(
        "{SYS}\n[[rule]]\nname = \"friend\"\nsender = \"@example\\\\.org$\"\nscore = -4.0\n"
    );
    let d = run("Subject: viagra casino", &sys, None);
    assert_eq!((d.action, d.score), (Action::Inbox, 1.5));
}

#[test]
fn terminal_rule_stops_and_keeps_the_score_so_far() {
    let d = run(
        "Subject: viagra\nList-Id: <rust-users.lists.example.org>",
        SYS,
        None,
    );
    assert_eq!((d.action, folder(&d)), (Action::Folder, Some("Lists.rust")));
    assert_eq!(d.reason, "rule rust-list");
}

#[test]
fn spam_dialects_route_to_junk() {
    for h in [
        "X-Spam-Flag: YES",
        "X-Spam-Status: Yes, score=6.1 required=5.0",
        "X-Spam-Score: 7",
        "X-Spam-Level: ********",
        "X-Spam: Yes",
        "X-Spamd-Result: default: True [12.30 / 15.00]",
        "X-Rspamd-Score: 6.5",
    ] {
        let d = run(h, SYS, None);
        assert_eq!(d.action, Action::Junk, "{h}: {:?}", d.trace);
    }
    // With no threshold configured, the flag alone decides (the embedded default).
    let d = run("X-Spam: Yes", "", None);
    assert_eq!(d.action, Action::Junk);
    let d = run("X-Spam-Flag: NO", "", None);
    assert_eq!(d.action, Action::Inbox);
}

#[test]
fn custom_dialect() {
    let sys = "[spam]\njunk_threshold = 5.0\n[[spam.custom]]\nheader = \"X-Filter\"\nmatch = \"score:([-0-9.]+)\"\n";
    assert_eq!(
        run("X-Filter: verdict score:8.5", sys, None).action,
        Action::Junk
    );
    assert_eq!(
        run("X-Filter: verdict score:1.5", sys, None).action,
        Action::Inbox
    );
}

#[test]
fn forged_spam_headers_below_the_filter_change_nothing() {
    let filter = "X-Spam-Flag: YES\nX-Spam-Status: Yes, score=9.0 required=5.0";
    let plain = run(&format!("{filter}\nSubject: x"), SYS, None);
    let forged = run(
        &format!("{filter}\nSubject: x\nX-Spam-Flag: NO\nX-Spam-Status: No, score=-100\nX-Spam-Score: -100\nX-Spamd-Result: default: False [-50 / 15]"),
        SYS,
        None,
    );
    assert_eq!(plain.action, Action::Junk);
    assert_eq!(forged.action, plain.action);
    assert_eq!(forged.score, plain.score);
    // A lone forged negative score cannot pull rule scores under the threshold.
    let d = run("Subject: viagra casino\nX-Spam-Score: -20", SYS, None);
    assert_eq!((d.action, d.score), (Action::Junk, 5.5));
}

#[test]
fn virus_verdicts() {
    let d = run(
        "X-Amavis-Alert: INFECTED, message contains virus: Eicar-Signature",
        SYS,
        None,
    );
    assert_eq!(d.action, Action::Discard);
    let sys = "[spam]\nvirus = \"Quarantine\"\n";
    let d = run(
        "X-Amavis-Alert: INFECTED, message contains virus: Eicar-Signature",
        sys,
        None,
    );
    assert_eq!((d.action, folder(&d)), (Action::Folder, Some("Quarantine")));
    let d = run(
        "X-Virus-Status: Infected (Eicar)",
        "[spam]\nvirus = \"junk\"\n",
        None,
    );
    assert_eq!(d.action, Action::Junk);
    // A user cannot override a virus verdict.
    let user = "[[rule]]\nheader = \"Subject\"\nmatch = \"x\"\ninbox = true\n";
    let d = run(
        "X-Amavis-Alert: INFECTED, virus\nSubject: x",
        SYS,
        Some(user),
    );
    assert_eq!(d.action, Action::Discard);
}

#[test]
fn user_threshold_within_system_bounds() {
    let h = "Subject: viagra\nX-Spam-Status: No, score=1.0"; // total 4.0
    assert_eq!(run(h, SYS, None).action, Action::Inbox);
    assert_eq!(
        run(h, SYS, Some("[spam]\njunk_threshold = 3.5\n")).action,
        Action::Junk
    );
    // 1.0 is below the system minimum of 3.0: clamped to 3.0, still junk at 4.0.
    let d = run(
        "Subject: casino",
        SYS,
        Some("[spam]\njunk_threshold = 1.0\n"),
    ); // 2.5
    assert_eq!(d.action, Action::Inbox, "clamped to 3.0: {:?}", d.log);
    assert!(d
        .log
        .iter()
        .any(|l| l.contains("outside the system bounds")));
    // 50 is above the maximum of 10: clamped.
    let d = run(
        "Subject: viagra casino\nX-Spam-Score: 5",
        SYS,
        Some("[spam]\njunk_threshold = 50\n"),
    ); // 10.5
    assert_eq!(d.action, Action::Junk);
    // The user's junk folder name is used.
    let d = run(
        "X-Spam-Flag: YES\nX-Spam-Score: 9",
        SYS,
        Some("[spam]\njunk_folder = \"Spam\"\n"),
    );
    assert_eq!(folder(&d), Some("Spam"));
}

#[test]
fn user_layer_overrides_system_spam_routing_but_not_hard_results() {
    let user_inbox =
        "[[rule]]\nname = \"boss\"\nsender = \"^someone@example\\\\.org$\"\ninbox = true\n";
    let d = run(
        "Subject: viagra casino\nX-Spam-Flag: YES\nX-Spam-Score: 9",
        SYS,
        Some(user_inbox),
    );
    assert_eq!((d.action, d.reason.as_str()), (Action::Inbox, "rule boss"));
    // System terminal folder is provisional: the user's verdict replaces it.
    let user_junk = "[[rule]]\nheader = \"List-Id\"\nmatch = \"rust\"\njunk = true\n";
    let d = run(
        "List-Id: <rust-users.lists.example.org>",
        SYS,
        Some(user_junk),
    );
    assert_eq!(d.action, Action::Junk);
    // System hard results are final.
    let sys_reject =
        "[[rule]]\nname = \"no\"\nheader = \"Subject\"\nmatch = \"^bad$\"\nreject = \"nope\"\n";
    let d = run("Subject: bad", sys_reject, Some(user_inbox));
    assert_eq!(d.action, Action::Reject);
    let sys_discard = "[[rule]]\nheader = \"Subject\"\nmatch = \"^bad$\"\ndiscard = true\n";
    assert_eq!(
        run("Subject: bad", sys_discard, Some(user_inbox)).action,
        Action::Discard
    );
    let sys_defer = "[[rule]]\nheader = \"Subject\"\nmatch = \"^bad$\"\ndefer = \"wait\"\n";
    assert_eq!(
        run("Subject: bad", sys_defer, Some(user_inbox)).action,
        Action::Defer
    );
    // Score-based discard is spam routing: a user's inbox rule wins over it.
    let d = run(
        "Subject: viagra casino\nX-Spam-Score: 12",
        SYS,
        Some(user_inbox),
    );
    assert_eq!(d.action, Action::Inbox);
}

#[test]
fn user_scores_add_to_system_scores() {
    let user = "[[rule]]\nheader = \"Subject\"\nmatch = \"(?i)meeting\"\nscore = -10\n";
    let d = run("Subject: casino meeting\nX-Spam-Score: 4", SYS, Some(user));
    assert_eq!((d.action, d.score), (Action::Inbox, -3.5));
}

#[test]
fn conditions_combine() {
    let sys = r#"
[[rule]]
name = "combo"
all = [ { header = "From", match = "@shop\\.example" }, { any = [ { header = "Subject", match = "(?i)sale" }, { body = "(?i)discount" } ] } ]
not = { header = "X-Priority" }
folder = "Shopping"

[[rule]]
name = "big"
size_over = 1000
folder = "Big"

[[rule]]
name = "sender"
sender = "^someone@"
recipient = "^user@example\\.com$"
score = 1
"#;
    let f = |h: &str, body: &str| {
        let d = run_with(h, sys, None, body);
        (d.action, d.folder.map(|f| f.name))
    };
    assert_eq!(
        f("From: a@shop.example\nSubject: big sale", ""),
        (Action::Folder, Some("Shopping".into()))
    );
    assert_eq!(
        f("From: a@shop.example\nSubject: hello", "a discount for you"),
        (Action::Folder, Some("Shopping".into()))
    );
    assert_eq!(
        f("From: a@shop.example\nSubject: hello", "nothing"),
        (Action::Inbox, None)
    );
    assert_eq!(
        f("From: a@shop.example\nSubject: sale\nX-Priority: 1", ""),
        (Action::Inbox, None)
    );
    assert_eq!(
        f("Subject: x", &"y".repeat(2000)),
        (Action::Folder, Some("Big".into()))
    );
    let d = run("Subject: x", sys, None);
    assert_eq!(d.score, 1.0);
}

#[test]
fn body_rules_see_decoded_text_parts() {
    let sys = "[[rule]]\nbody = \"secret phrase\"\nfolder = \"Found\"\n";
    let h = "MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=b\n";
    let body = "--b\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\nYSBzZWNyZXQgcGhyYXNlIGluc2lkZQ==\n--b--\n";
    assert_eq!(run_with(h, sys, None, body).action, Action::Folder);
    let qp = "--b\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\nsecret=20phrase\n--b--\n";
    assert_eq!(run_with(h, sys, None, qp).action, Action::Folder);
}

#[test]
fn header_match_sees_decoded_unfolded_values_of_any_occurrence() {
    let sys = "[[rule]]\nheader = \"Subject\"\nmatch = \"^élève at school$\"\nfolder = \"F\"\n[[rule]]\nheader = \"Received\"\nmatch = \"RDNS_NONE\"\nfolder = \"R\"\n";
    assert_eq!(
        run(
            "Subject: =?UTF-8?Q?=C3=A9l=C3=A8ve?= at\n school",
            sys,
            None
        )
        .action,
        Action::Folder
    );
    let d = run("Received: from a\nReceived: from b\n\tRDNS_NONE", sys, None);
    assert_eq!(folder(&d), Some("R"));
}

#[test]
fn trace_lists_every_rule_and_the_final_step() {
    let d = run("Subject: viagra", SYS, None);
    let rules: Vec<(&str, &str)> = d
        .trace
        .iter()
        .filter(|s| s.kind == "rule")
        .map(|s| (s.name.as_str(), s.result.as_str()))
        .collect();
    assert_eq!(
        rules,
        vec![
            ("pills", "match"),
            ("casino", "no match"),
            ("rust-list", "no match")
        ]
    );
    let last = d.trace.last().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.result.as_str()),
        ("final", "inbox")
    );
}
