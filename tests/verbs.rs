//! The rule actions of deliver.rules(5) through the real binary: copies,
//! flags, header edits, pipes and filters, against real Maildirs and real
//! programs (shell scripts written into the test's directory).

mod util;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use util::*;

const ARGS: [&str; 5] = [
    "-f",
    "sender@example.org",
    "-a",
    "user@example.com",
    "--log-stderr",
];

/// Writes an executable script beside the rules and returns its path.
fn script(h: &Home, name: &str, body: &str) -> String {
    let p = h.file(name, &format!("#!/bin/sh\n{body}\n"));
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

/// The files of a Maildir subdirectory (e.g. `.Work/new`), sorted.
fn files(h: &Home, rel: &str) -> Vec<PathBuf> {
    let mut v = h.files_in(rel);
    v.sort();
    v
}

/// Runs the binary as local(8) would: with the recipient's name and home
/// in the environment (the programs see them as `HOME` and `USER`).
fn run(h: &Home, args: &[&str], input: &[u8]) -> Run {
    let name = fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == h.uid.to_string())
        .map(|f| f[0].to_string())
        .expect("the test user in /etc/passwd");
    let mut c = h.command(args);
    c.env("LOGNAME", name);
    run_cmd(c, input)
}

fn tmp_is_empty(h: &Home) {
    assert_eq!(files(h, "tmp"), Vec::<PathBuf>::new(), "tmp/ not empty");
}

/// The delivery log line (the one with `action=`).
fn log_line(r: &Run) -> String {
    r.stderr
        .lines()
        .find(|l| l.contains(" action="))
        .unwrap_or_else(|| panic!("no log line in {}", r.stderr))
        .to_string()
}

#[test]
fn copies_go_into_two_folders_as_one_file() {
    let h = Home::new();
    h.user(
        r#"
[[rule]]
name = "backup"
header = "Subject"
match = "report"
folder = "Backup"
copy = true

[[rule]]
name = "work"
header = "Subject"
match = "report"
folder = "Work"
"#,
    );
    let input = msg("Subject: weekly report\n", "numbers\n");
    let r = run(&h, &ARGS, &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d = h.delivered();
    assert_eq!(d.keys().collect::<Vec<_>>(), ["Backup", "Work"], "{d:?}");
    assert_eq!(d["Backup"], vec![without_from(&input).to_vec()]);
    assert_eq!(d["Work"], vec![without_from(&input).to_vec()]);
    let (b, w) = (&files(&h, ".Backup/new")[0], &files(&h, ".Work/new")[0]);
    let (mb, mw) = (fs::metadata(b).unwrap(), fs::metadata(w).unwrap());
    assert_eq!((mb.dev(), mb.ino()), (mw.dev(), mw.ino()), "one inode");
    assert_eq!(mb.nlink(), 2);
    let line = log_line(&r);
    assert!(line.contains(" folder=Backup folder=Work "), "{line}");
    tmp_is_empty(&h);

    // A copy into the folder the message goes to anyway files it once.
    let h = Home::new();
    h.user("[[rule]]\nheader = \"Subject\"\nmatch = \"x\"\ninbox = true\ncopy = true\n");
    let r = run(&h, &ARGS, &msg("Subject: x\n", "b\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(h.count(), 1, "{:?}", h.delivered());
}

#[test]
fn flags_file_into_cur_with_the_info() {
    let h = Home::new();
    h.user(
        r#"
[[rule]]
name = "notify"
header = "From"
match = "notifications@service\\.example"
folder = "Notifications"
flags = ["seen", "flagged"]
"#,
    );
    let input = msg("From: notifications@service.example\nSubject: n\n", "b\n");
    let r = run(&h, &ARGS, &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(files(&h, ".Notifications/new").is_empty());
    let cur = files(&h, ".Notifications/cur");
    assert_eq!(cur.len(), 1, "{cur:?}");
    let name = cur[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(":2,FS"), "{name}");
    assert_eq!(fs::read(&cur[0]).unwrap(), without_from(&input));
    tmp_is_empty(&h);

    // Into the Inbox's cur/ too.
    let h = Home::new();
    h.user("[[rule]]\nheader = \"Subject\"\nmatch = \"x\"\ninbox = true\nflags = [\"seen\"]\n");
    let r = run(&h, &ARGS, &msg("Subject: x\n", "b\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let cur = files(&h, "cur");
    assert_eq!(cur.len(), 1, "{cur:?}");
    assert!(cur[0].to_string_lossy().ends_with(":2,S"), "{cur:?}");
    assert!(files(&h, "new").is_empty());
}

#[test]
fn header_edits_leave_the_body_alone() {
    let h = Home::new();
    h.user(
        r#"
[[rule]]
name = "tag"
header = "Subject"
match = "offer"
add_header = ["X-Tag: offer", "X-Second: 2"]
subject_prefix = "[SPAM] "
remove_header = "X-Foo"
"#,
    );
    let body = "Subject: not a header, the body\nX-Foo: body too\n\n=?UTF-8?B?w6k=?=\n";
    let input = msg(
        "Subject: great offer\nX-Foo: one\nX-Foo: two\n  folded\nTo: u@example.com\n",
        body,
    );
    let r = run(&h, &ARGS, &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d = h.delivered();
    let got = String::from_utf8(d[""][0].clone()).unwrap();
    assert_eq!(
        got,
        format!(
            "X-Tag: offer\nX-Second: 2\nSubject: [SPAM] great offer\nTo: u@example.com\n\n{body}"
        )
    );
    assert!(log_line(&r).contains(" edits=4 "), "{}", r.stderr);

    // An RFC 2047 Subject keeps its encoded word whole.
    let h = Home::new();
    h.user("[[rule]]\nheader = \"Subject\"\nmatch = \"été\"\nsubject_prefix = \"[SPAM]\"\n");
    let input = msg("Subject: =?UTF-8?B?w6l0w6k=?=\n", "b\n");
    let r = run(&h, &ARGS, &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = String::from_utf8(h.delivered()[""][0].clone()).unwrap();
    assert_eq!(got, "Subject: [SPAM] =?UTF-8?B?w6l0w6k=?=\n\nb\n");
    tmp_is_empty(&h);
}

#[test]
fn trace_headers_cannot_be_removed() {
    let h = Home::new();
    let rules = h.file(
        "r.toml",
        "[[rule]]\nheader = \"Subject\"\nmatch = \"x\"\nremove_header = [\"X-A\", \"received\"]\n",
    );
    let mut c = h.bare_command(&["check", "--rules"]);
    c.arg(&rules);
    let r = run_cmd(c, b"");
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let want = format!(
        "{}:4:17: remove_header: received is a trace header",
        rules.display()
    );
    assert!(r.stdout.contains(&want), "{}", r.stdout);
    for (bad, what) in [
        (
            "flags = [\"seen\", \"shiny\"]\nfolder = \"F\"",
            "unknown flag \"shiny\"",
        ),
        ("copy = true\nscore = 1", "'copy' needs a filing action"),
        ("pipe = []", "pipe: the program is missing"),
        ("add_header = \"no colon here\"", "is not a header line"),
        (
            "filter = [\"spamc\"]\nfolder = \"F\"",
            "'filter' cannot be combined",
        ),
    ] {
        fs::write(&rules, format!("[[rule]]\nheader = \"S\"\n{bad}\n")).unwrap();
        let mut c = h.bare_command(&["check", "--rules"]);
        c.arg(&rules);
        let r = run_cmd(c, b"");
        assert_eq!(r.code, 1, "{bad}: {}", r.stdout);
        assert!(r.stdout.contains(what), "{bad}: {}", r.stdout);
        assert!(
            r.stdout.contains(&format!("{}:3:", rules.display())),
            "{}",
            r.stdout
        );
    }
}

#[test]
fn pipes_deliver_defer_or_fall_back_to_the_inbox() {
    for (code, want_exit, filed) in [(0, 0, false), (75, 75, false), (1, 0, true)] {
        let h = Home::new();
        let out = h.home.join("piped");
        let prog = script(&h, "p.sh", &format!("cat > \"$HOME/piped\"\nexit {code}"));
        h.user(&format!(
            "[[rule]]\nname = \"alert\"\nheader = \"Subject\"\nmatch = \"x\"\npipe = [\"{prog}\", \"arg\"]\n"
        ));
        let input = msg("Subject: x\n", "body\n");
        let r = run(&h, &ARGS, &input);
        assert_eq!(r.code, want_exit, "exit {code}: {}", r.stderr);
        assert_eq!(fs::read(&out).unwrap(), without_from(&input), "exit {code}");
        if filed {
            assert_eq!(h.delivered()[""], vec![without_from(&input).to_vec()]);
            assert!(
                r.stderr.contains("failed: exited with status 1"),
                "{}",
                r.stderr
            );
            let line = log_line(&r);
            assert!(line.contains(" pipe=alert:failed "), "{line}");
            assert!(line.contains(" folder=INBOX "), "{line}");
        } else {
            assert_eq!(h.count(), 0, "exit {code}: {:?}", h.delivered());
        }
        if code == 75 {
            assert!(r.first_line().starts_with("4.3.0 "), "{}", r.stderr);
        }
        if code == 0 {
            assert!(log_line(&r).contains(" pipe=alert:ok "), "{}", r.stderr);
        }
        tmp_is_empty(&h);
    }
}

#[test]
fn a_copy_pipe_and_the_delivery() {
    let h = Home::new();
    let prog = script(
        &h,
        "p.sh",
        "cat > \"$HOME/piped\"; echo \"$SENDER\" > \"$HOME/sender\"",
    );
    h.user(&format!(
        "[[rule]]\nname = \"alert\"\nheader = \"From\"\nmatch = \"alerts@\"\npipe = [\"{prog}\"]\ncopy = true\n"
    ));
    let input = msg("From: alerts@monitor.example\n", "down\n");
    let r = run(&h, &ARGS, &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        fs::read(h.home.join("piped")).unwrap(),
        without_from(&input)
    );
    assert_eq!(
        fs::read_to_string(h.home.join("sender")).unwrap(),
        "sender@example.org\n"
    );
    assert_eq!(h.delivered()[""], vec![without_from(&input).to_vec()]);
    tmp_is_empty(&h);
}

#[test]
fn the_rules_see_the_filtered_message() {
    let h = Home::new();
    let prog = script(
        &h,
        "f.sh",
        "echo run >> \"$HOME/runs\"\nsed '1,/^$/s/^Subject: .*/Subject: rewritten by the filter/'",
    );
    h.user(&format!(
        r#"
[[rule]]
name = "early"
header = "Subject"
match = "rewritten"
folder = "Early"
copy = true

[[rule]]
name = "f"
header = "Subject"
filter = ["{prog}"]

[[rule]]
name = "after"
header = "Subject"
match = "rewritten by the filter"
folder = "Filtered"
"#
    ));
    let input = msg("Subject: original\nTo: u@example.com\n", "the body\n");
    let r = run(&h, &ARGS, &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let want = b"Subject: rewritten by the filter\nTo: u@example.com\n\nthe body\n".to_vec();
    let d = h.delivered();
    // Rules above the filter run again on its output too.
    assert_eq!(d.keys().collect::<Vec<_>>(), ["Early", "Filtered"], "{d:?}");
    assert_eq!(d["Filtered"], vec![want.clone()]);
    assert_eq!(d["Early"], vec![want]);
    assert_eq!(fs::read_to_string(h.home.join("runs")).unwrap(), "run\n");
    assert!(log_line(&r).contains(" filter=f:ok "), "{}", r.stderr);
    tmp_is_empty(&h);
}

#[test]
fn a_failing_filter_leaves_the_message_unchanged() {
    for (body, why) in [
        (
            "echo broken >&2; exit 1",
            "exited with status 1 (stderr: broken)",
        ),
        ("cat > /dev/null", "wrote nothing"),
        ("exec /nonexistent/program", "exited with status 127"),
    ] {
        let h = Home::new();
        let prog = script(&h, "f.sh", body);
        h.user(&format!(
            "[[rule]]\nname = \"f\"\nheader = \"Subject\"\nfilter = [\"{prog}\"]\n"
        ));
        let input = msg("Subject: original\n", "the body\n");
        let r = run(&h, &ARGS, &input);
        assert_eq!(r.code, 0, "{body}: {}", r.stderr);
        assert_eq!(
            h.delivered()[""],
            vec![without_from(&input).to_vec()],
            "{body}"
        );
        assert!(r.stderr.contains(why), "{body}: {}", r.stderr);
        assert!(
            r.stderr.contains("the message goes on unchanged"),
            "{}",
            r.stderr
        );
        assert!(log_line(&r).contains(" filter=f:failed "), "{}", r.stderr);
        tmp_is_empty(&h);
    }
    // A program that does not exist.
    let h = Home::new();
    h.user("[[rule]]\nname = \"f\"\nheader = \"Subject\"\nfilter = [\"/nonexistent/spamc\"]\n");
    let input = msg("Subject: original\n", "the body\n");
    let r = run(&h, &ARGS, &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot run /nonexistent/spamc"),
        "{}",
        r.stderr
    );
    assert_eq!(h.delivered()[""], vec![without_from(&input).to_vec()]);
}

#[test]
fn test_mode_shows_the_plan_and_runs_nothing() {
    let h = Home::new();
    let filter = script(&h, "f.sh", "touch \"$HOME/filter-ran\"; cat");
    let pipe = script(&h, "p.sh", "touch \"$HOME/pipe-ran\"; cat > /dev/null");
    h.user(&format!(
        r#"
[[rule]]
name = "f"
header = "Subject"
filter = ["{filter}"]

[[rule]]
name = "backup"
header = "Subject"
folder = "Backup"
copy = true

[[rule]]
name = "copy-pipe"
header = "Subject"
pipe = ["{pipe}"]
copy = true

[[rule]]
name = "tag"
header = "Subject"
subject_prefix = "[T] "
remove_header = "X-Foo"

[[rule]]
name = "file"
header = "Subject"
folder = "Work"
flags = ["seen"]
"#
    ));
    let input = msg("Subject: x\n", "b\n");
    let mut args = vec!["--test"];
    args.extend_from_slice(&ARGS[..4]);
    let r = run(&h, &args, &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let o = &r.stdout;
    assert!(o.contains("filter f"), "{o}");
    assert!(
        o.contains("not run: --test runs filters only with --run-filters"),
        "{o}"
    );
    let plan = &o[o.find("\nPlan\n").unwrap()..o.find("\nDecision\n").unwrap()];
    assert_eq!(
        plan,
        format!(
            "\nPlan\n  1. edit the header: prefix the Subject with \"[T] \"; remove X-Foo\n  2. deliver into Backup\n  3. pipe a copy to {pipe} (rule copy-pipe; exit 75 defers, another failure is logged)\n  4. deliver into Work (cur/, flags S)\n  5. delivered (exit 0)\n"
        )
    );
    args.extend_from_slice(&["--format", "json"]);
    let r = run(&h, &args, &input);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v["plan"],
        serde_json::json!({
            "edits": {"add": [], "subject_prefix": "[T] ", "remove": ["X-Foo"]},
            "actions": [
                {"action": "deliver", "folder": "Backup", "add_headers": []},
                {"action": "pipe", "argv": [pipe], "copy": true, "rule": "copy-pipe"},
                {"action": "deliver", "folder": "Work", "flags": "S", "add_headers": []},
            ],
            "disposition": "delivered"
        })
    );
    assert!(!h.home.join("filter-ran").exists());
    assert!(!h.home.join("pipe-ran").exists());
    assert!(!h.maildir.exists() || h.count() == 0);

    // --run-filters runs the filter (and still files nothing).
    let mut args = vec!["--test", "--run-filters"];
    args.extend_from_slice(&ARGS[..4]);
    let r = run(&h, &args, &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("ran: the rules run again on its output"),
        "{}",
        r.stdout
    );
    assert!(h.home.join("filter-ran").exists());
    assert!(!h.home.join("pipe-ran").exists());
}

/// The header block of a filed message, as text.
fn header_block(m: &[u8]) -> String {
    let s = String::from_utf8_lossy(m);
    s[..s.find("\n\n").expect("a header block")].to_string()
}

#[test]
fn header_edits_with_variables() {
    let h = Home::new();
    h.user(
        r#"
[[rule]]
name = "list"
header = "List-Id"
match = '<([^.>]+)\.'
add_header = ["X-List: ${1}", "X-Envelope: ${sender} for ${user} ($$)"]
subject_prefix = "[${1}] "
folder = "Lists.${1}"
"#,
    );
    let input = msg(
        "List-Id: Rust users <rust-users.lists.example.org>\nSubject: hi\n",
        "body\n",
    );
    let r = run(&h, &ARGS, &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d = h.delivered();
    assert_eq!(d.keys().collect::<Vec<_>>(), ["Lists.rust-users"], "{d:?}");
    let head = header_block(&d["Lists.rust-users"][0]);
    assert!(
        head.contains("\nX-List: rust-users\n") || head.starts_with("X-List: rust-users\n"),
        "{head}"
    );
    assert!(
        head.contains("X-Envelope: sender@example.org for user ($)\n"),
        "{head}"
    );
    assert!(head.contains("\nSubject: [rust-users] hi"), "{head}");
    tmp_is_empty(&h);
}

/// A decoded header value can hold a line break (`=0D=0A` in an encoded
/// word). Put into an added line or the subject prefix through a capture,
/// it would add a header of the sender's choice: the edit is refused,
/// logged with the value escaped, and the message still filed.
#[test]
fn a_captured_line_break_never_adds_a_header() {
    let h = Home::new();
    h.user(
        r#"
[[rule]]
name = "copy-subject"
header = "Subject"
match = '(?s)^(.+)$'
add_header = "X-Was: ${1}"
subject_prefix = "${1} "
folder = "Tagged"
"#,
    );
    let input = msg(
        "Subject: =?UTF-8?Q?a=0D=0ABcc:_victim@example.net?=\n",
        "body\n",
    );
    let r = run(&h, &ARGS, &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d = h.delivered();
    assert_eq!(d.keys().collect::<Vec<_>>(), ["Tagged"], "{d:?}");
    assert_eq!(
        d["Tagged"][0],
        without_from(&input),
        "the message is unedited"
    );
    for what in ["add_header", "subject_prefix"] {
        assert!(
            r.stderr.contains(&format!("rule copy-subject: {what} ")),
            "{what}: {}",
            r.stderr
        );
    }
    assert!(
        r.stderr
            .contains(r#"add_header "X-Was: a\r\nBcc: victim@example.net" refused"#),
        "the log names the value, escaped: {}",
        r.stderr
    );
    tmp_is_empty(&h);
}

#[test]
fn pipe_arguments_with_variables() {
    let h = Home::new();
    let prog = script(
        &h,
        "p.sh",
        "cat > /dev/null; printf '%s|' \"$@\" > \"$HOME/args\"",
    );
    h.user(&format!(
        r#"
[[rule]]
name = "alert"
header = "Subject"
match = '^ALERT (\w+)'
pipe = ["{prog}", "${{sender}}", "--host=${{1}}", "${{from}}", "$${{1}}"]
"#
    ));
    let input = msg(
        "From: Monitor <alerts@monitor.example>\nSubject: ALERT db1 down\n",
        "b\n",
    );
    let r = run(&h, &ARGS, &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        fs::read_to_string(h.home.join("args")).unwrap(),
        "sender@example.org|--host=db1|alerts@monitor.example|${1}|"
    );
    assert_eq!(h.count(), 0, "the pipe was the delivery");
    assert!(log_line(&r).contains(" pipe=alert:ok "), "{}", r.stderr);
}

/// A NUL cannot be passed to a program: a pipe whose expanded argument
/// holds one (a decoded `=00`) does not run; the message is filed into
/// the Inbox, as when a pipe fails, and the log says why.
#[test]
fn a_pipe_argument_with_a_nul_files_into_the_inbox() {
    let h = Home::new();
    let prog = script(&h, "p.sh", "cat > \"$HOME/piped\"");
    h.user(&format!(
        r#"
[[rule]]
name = "alert"
header = "Subject"
match = '^ALERT (.+)$'
pipe = ["{prog}", "${{1}}"]
"#
    ));
    let input = msg("Subject: ALERT =?UTF-8?Q?a=00b?=\n", "b\n");
    let r = run(&h, &ARGS, &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!h.home.join("piped").exists(), "the pipe ran");
    assert_eq!(h.delivered()[""], vec![without_from(&input).to_vec()]);
    assert!(
        r.stderr
            .contains(r#"rule alert: pipe argument "a\0b" refused"#),
        "{}",
        r.stderr
    );
    tmp_is_empty(&h);
}

#[test]
fn test_mode_shows_the_expanded_values() {
    let h = Home::new();
    h.user(
        r#"
[[rule]]
name = "backup"
header = "List-Id"
match = '<([^.>]+)\.'
folder = "Archive.${1}"
copy = true

[[rule]]
name = "list"
header = "List-Id"
match = '<([^.>]*)\.'
add_header = "X-Tag: ${sender} ${1}"
folder = "Lists.${1}"
"#,
    );
    let mut args = vec!["--test"];
    args.extend_from_slice(&ARGS[..4]);
    let r = run(
        &h,
        &args,
        &msg(
            "List-Id: <rust-users.lists.example.org>\nSubject: s\n",
            "b\n",
        ),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let o = &r.stdout;
    let plan = &o[o.find("\nPlan\n").unwrap()..o.find("\nDecision\n").unwrap()];
    assert_eq!(
        plan,
        "\nPlan\n  1. deliver into Archive.rust-users, adding \"X-Tag: sender@example.org rust-users\"\n  2. deliver into Lists.rust-users, adding \"X-Tag: sender@example.org rust-users\"\n  3. delivered (exit 0)\n",
        "{o}"
    );
    // A capture that makes a bad name: the Inbox, and the trace says why.
    let r = run(
        &h,
        &args,
        &msg("List-Id: <.lists.example.org>\nSubject: s\n", "b\n"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let o = &r.stdout;
    assert!(o.contains("folder name refused: the Inbox"), "{o}");
    assert!(o.contains("\"Lists.\""), "{o}");
    assert!(o.contains("deliver into INBOX"), "{o}");
    assert!(!h.maildir.exists() || h.count() == 0);
}

#[test]
fn template_load_errors_name_the_place() {
    let h = Home::new();
    let check = |text: &str| h.check_fails(text);
    let file = h.user_rules.display().to_string();
    let out = check("[[rule]]\nheader = \"List-Id\"\nmatch = \"<(.+)>\"\nfolder = \"L.${2}\"\n");
    assert!(
        out.contains(&format!(
            "{file}:4:13: folder: ${{2}}, but the rule's match has 1 group"
        )),
        "{out}"
    );
    let out = check("[[rule]]\nheader = \"List-Id\"\nadd_header = \"X-A: ${1}\"\n");
    assert!(
        out.contains(&format!(
            "{file}:3:20: add_header: ${{1}} is a group of the rule's match, and the rule has none"
        )),
        "{out}"
    );
    let out = check("[[rule]]\nheader = \"S\"\nmatch = \"x\"\nsubject_prefix = \"[${nmae}] \"\n");
    assert!(
        out.contains(&format!(
            "{file}:4:20: subject_prefix: unknown variable ${{nmae}}"
        )),
        "{out}"
    );
    let out = check("[[rule]]\nheader = \"S\"\npipe = [\"~/bin/${user}\"]\n");
    assert!(
        out.contains(&format!(
            "{file}:3:9: pipe: the program cannot use variables"
        )),
        "{out}"
    );
    let out = check("[[rule]]\nheader = \"S\"\nfilter = [\"f\", \"$HOME\"]\n");
    assert!(
        out.contains(&format!("{file}:3:17: filter: '$' starts a variable")),
        "{out}"
    );
    let out = check("[[rule]]\nheader = \"S\"\nmatch = \"(x)\"\nfolder = \"../${1}\"\n");
    assert!(
        out.contains(&format!("{file}:4:10: refused folder name")),
        "{out}"
    );
    let out = check("[[rule]]\nheader = \"S\"\nmatch = \"(x)\"\nadd_header = \"X ${1}\"\n");
    assert!(out.contains("is not a header line"), "{out}");
    // An address match gives the groups when there is no header match.
    h.user("[[rule]]\naddress = { header = \"To\", part = \"detail\", match = \"^(.+)-(.+)$\" }\nfolder = \"${1}.${2}\"\n");
    let mut c = h.bare_command(&["check", "--user-rules"]);
    c.arg(&h.user_rules);
    let r = run_cmd(c, b"");
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
}
