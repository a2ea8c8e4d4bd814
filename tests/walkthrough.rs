//! The walk-throughs in examples/walkthrough/ show real commands and their
//! real output. This test runs each command and fails when the committed
//! document differs from what the binary prints now.
//! Regenerate with: DELIVER_BLESS=1 cargo test --test walkthrough

use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_deliver");

struct Case {
    file: &'static str,
    title: &'static str,
    intro: &'static str,
    message: &'static str,
    args: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        file: "spam.md",
        title: "A spam-flagged message",
        intro: "SpamAssassin (through amavis) scored the message 12.3 and set `X-Spam-Flag: YES`. \
                The upstream score and the local rule scores add up, and the total is compared \
                with the thresholds.",
        message: "examples/messages/spam.eml",
        args: &[
            "-f",
            "spammer@bulk-sender.example",
            "-a",
            "alice@mx.example.test",
        ],
    },
    Case {
        file: "blocked-client.md",
        title: "A message from a blocklisted client network",
        intro: "The same `client_access.cidr` that smtpd uses lists 203.0.113.0/24. Replaying \
                the message as if it came from 203.0.113.7 shows the lookup order (host name and \
                parent domains, then the address) and the exit status that makes Postfix bounce.",
        message: "examples/messages/plain.eml",
        args: &[
            "-f",
            "carol@example.com",
            "-a",
            "alice@mx.example.test",
            "--client-address",
            "203.0.113.7",
            "--client-hostname",
            "mail.example.com",
            "--helo",
            "mail.example.com",
        ],
    },
    Case {
        file: "list.md",
        title: "A list message sorted into a folder",
        intro: "The `rust-list` rule matches the List-Id header and files the message into \
                `Lists.rust`, which is `~/Maildir/.Lists.rust/` on disk (created on first use \
                and added to `subscriptions`).",
        message: "examples/messages/list.eml",
        args: &[
            "-f",
            "rust-users-bounces@lists.example.org",
            "-a",
            "alice@mx.example.test",
        ],
    },
];

fn render(case: &Case) -> String {
    let mut args: Vec<&str> = vec!["--test"];
    args.extend_from_slice(case.args);
    args.extend_from_slice(&[
        "--rules",
        "examples/walkthrough/rules.toml",
        "--user-rules",
        "/nonexistent/rules.toml",
        "--maildir",
        "/home/alice/Maildir",
    ]);
    let run = |extra: &[&str]| {
        let input = std::fs::File::open(case.message).unwrap();
        let out = Command::new(BIN)
            .args(&args)
            .args(extra)
            .env_clear()
            .stdin(Stdio::from(input))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = run(&[]);
    let json: serde_json::Value = serde_json::from_str(&run(&["--format", "json"])).unwrap();
    let cmd = format!("deliver {} < {}", args.join(" "), case.message);
    format!(
        "# {}\n\n{}\n\n```\n$ {}\n{}```\n\nThe same decision as JSON (`--format json`), abridged to the stable top-level keys:\n\n```json\n{}\n```\n",
        case.title,
        case.intro,
        cmd,
        text,
        serde_json::to_string_pretty(&serde_json::json!({
            "action": json["action"],
            "folder": json["folder"],
            "path": json["path"],
            "score": json["score"],
            "exit_code": json["exit_code"],
            "status_line": json["status_line"],
        }))
        .unwrap()
    )
}

#[test]
fn walkthroughs_match_the_binary() {
    let bless = std::env::var_os("DELIVER_BLESS").is_some();
    let mut stale = Vec::new();
    for case in CASES {
        let path = Path::new("examples/walkthrough").join(case.file);
        let want = render(case);
        if bless {
            std::fs::write(&path, &want).unwrap();
            continue;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            stale.push(format!("{}:\n{}", path.display(), want));
        }
    }
    assert!(
        stale.is_empty(),
        "walk-throughs differ from the binary's output (DELIVER_BLESS=1 to regenerate):\n{}",
        stale.join("\n")
    );
}
