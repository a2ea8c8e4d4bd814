//! Malformed rules files and tables through a real delivery: each gets a
//! `file:line:col: message` (a cdb file, which has no lines: the position
//! in the rules file that names it)
//! and the policy of deliver.rules(5): in the system file the message is
//! deferred (75, 4.3.5, the position in the status line); in a user's file
//! the file is ignored (logged with the position) and the mail delivered by
//! the system rules. `deliver check` reports the same errors: tests/dryrun.rs.

mod util;

use util::*;

/// (what, the rules text with TABLE for a table's path, the table's bytes,
/// the expected position in the rules file or in the table).
struct Case {
    what: &'static str,
    rules: &'static str,
    table: &'static [u8],
    /// `"R:l:c"`: in the rules file; `"T:l:c"`: in the table.
    at: &'static str,
}

const CASES: &[Case] = &[
    Case {
        what: "TOML syntax",
        rules: "[[rule]\nheader = \"S\"\n",
        table: b"",
        at: "R:1:8",
    },
    Case {
        what: "unknown key",
        rules: "[spam]\njunk_treshold = 5\n",
        table: b"",
        at: "R:2:1",
    },
    Case {
        what: "wrong type",
        rules: "[[rule]]\nheader = \"S\"\nscore = \"high\"\n",
        table: b"",
        at: "R:3:9",
    },
    Case {
        what: "bad regex",
        rules: "[[rule]]\nheader = \"S\"\nmatch = \"(x\"\nscore = 1\n",
        table: b"",
        at: "R:3:9",
    },
    Case {
        what: "bad folder",
        rules: "[[rule]]\nheader = \"S\"\nfolder = \"a//b\"\n",
        table: b"",
        at: "R:3:10",
    },
    Case {
        what: "empty all",
        rules: "[[rule]]\nall = []\nscore = 1\n",
        table: b"",
        at: "R:1:1",
    },
    Case {
        what: "reject with a 4 code",
        rules: "[[rule]]\nheader = \"S\"\nreject = \"4.7.1 no\"\n",
        table: b"",
        at: "R:3:10",
    },
    Case {
        what: "texthash without value",
        rules: "[access]\nsender = [\"texthash:TABLE\"]\n",
        table: b"a@b OK\nlonely\n",
        at: "T:2:",
    },
    Case {
        what: "texthash continuation first",
        rules: "[access]\nsender = [\"texthash:TABLE\"]\n",
        table: b"  a@b OK\n",
        at: "T:1:1",
    },
    Case {
        what: "texthash not UTF-8",
        rules: "[access]\nsender = [\"texthash:TABLE\"]\n",
        table: b"a@b OK\nx\xff REJECT\n",
        at: "T:2:2",
    },
    Case {
        what: "cidr bad network",
        rules: "[access]\nclient = [\"cidr:TABLE\"]\n",
        table: b"192.0.2.0/24 OK\n300.1.2.3/8 REJECT\n",
        at: "T:2:1",
    },
    Case {
        what: "regexp bad pattern",
        rules: "[access]\nsender = [\"regexp:TABLE\"]\n",
        table: b"/a(b/ REJECT\n",
        at: "T:1:",
    },
    Case {
        what: "regexp no closing delimiter",
        rules: "[access]\nsender = [\"regexp:TABLE\"]\n",
        table: b"/ab REJECT\n",
        at: "T:1:",
    },
    Case {
        what: "pcre look-behind",
        rules: "[access]\nsender = [\"pcre:TABLE\"]\n",
        table: b"/(?<=a)b/ REJECT\n",
        at: "T:1:",
    },
    Case {
        what: "cdb truncated",
        rules: "[access]\nsender = [\"cdb:TABLE\"]\n",
        table: b"not a cdb file",
        at: "R:2:11",
    },
];

fn expected_prefix(c: &Case, rules: &std::path::Path, table: &std::path::Path) -> String {
    let table_file = if c.rules.contains("cdb:") {
        table.with_extension("cdb")
    } else {
        table.to_path_buf()
    };
    match c.at.split_once(':') {
        Some(("R", pos)) => format!("{}:{pos}", rules.display()),
        _ => format!("{}:{}", table_file.display(), &c.at[2..]),
    }
}

#[test]
fn system_file_problems_defer_with_the_position() {
    let mut bad = Vec::new();
    for c in CASES {
        let mut h = Home::new();
        let table = h._dir.path().join("table");
        let file = if c.rules.contains("cdb:") {
            table.with_extension("cdb")
        } else {
            table.clone()
        };
        std::fs::write(&file, c.table).unwrap();
        h.system(&c.rules.replace("TABLE", table.to_str().unwrap()));
        let rules = h.system_rules.clone().unwrap();
        let r = h.run(
            &["-f", "a@b", "--client-address", "192.0.2.1"],
            &msg("Subject: x\n", "x\n"),
        );
        assert_eq!(r.code, 75, "{}: {}", c.what, r.stderr);
        let want = format!("4.3.5 system rules: {}", expected_prefix(c, &rules, &table));
        if !r.first_line().starts_with(&want) {
            bad.push(format!("{}:\nwant {want}\ngot  {}", c.what, r.first_line()));
        }
        assert_eq!(h.count(), 0, "{}", c.what);
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn user_file_problems_are_ignored_and_mail_delivered() {
    for c in CASES {
        let h = Home::new();
        let table = h.home.join("table");
        let file = if c.rules.contains("cdb:") {
            table.with_extension("cdb")
        } else {
            table.clone()
        };
        std::fs::write(&file, c.table).unwrap();
        chown_tree(&file, h.uid, h.gid);
        h.user(&c.rules.replace("TABLE", table.to_str().unwrap()));
        let input = msg("Subject: x\n", "x\n");
        let r = h.run(
            &["--log-stderr", "-f", "a@b", "--client-address", "192.0.2.1"],
            &input,
        );
        assert_eq!(r.code, 0, "{}: {}", c.what, r.stderr);
        let want = format!(
            "ignoring user rules: {}",
            expected_prefix(c, &h.user_rules, &table)
        );
        assert!(
            r.stderr.contains(&want),
            "{}:\nwant {want}\ngot  {}",
            c.what,
            r.stderr
        );
        assert_eq!(h.delivered()[""][0], without_from(&input), "{}", c.what);
    }
}
