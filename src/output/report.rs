//! Output of `deliver --test`: a text report for a person, or one JSON
//! object with stable keys (documented in deliver(1)).

use crate::engine::DryRun;
use crate::input::envelope::Field;
use crate::policy::decide::{Decision, Route};
use crate::policy::plan::{Action, Disposition, Edits};
use crate::store::maildir::new_dir_path;
use serde_json::json;
use std::fmt::Write;

/// The directory the message would be written into (`.../new`), if any.
pub fn target_path(dr: &DryRun<'_>) -> Option<std::path::PathBuf> {
    let d = &dr.decision;
    match d.action {
        Route::Inbox | Route::Junk | Route::Folder => dr
            .maildir
            .as_ref()
            .map(|m| new_dir_path(m, d.folder.as_ref())),
        _ => None,
    }
}

fn field(out: &mut String, label: &str, f: &Field) {
    let v = if f.is_set() && f.value.is_empty() && label == "sender" {
        "<>"
    } else {
        f.value.as_str()
    };
    if f.is_set() {
        let _ = writeln!(out, "  {label:<16} {v}  ({})", f.source);
    } else {
        let _ = writeln!(out, "  {label:<16} -  (not given)");
    }
}

fn what_happens(d: &Decision, path: Option<&std::path::Path>) -> String {
    match (d.status_line(), path) {
        (Some(s), _) => format!("would print \"{s}\""),
        (None, Some(p)) => format!("would write into {}", p.display()),
        (None, None) => "would write nothing (discard)".into(),
    }
}

fn describe_action(a: &Action, edits: &Edits) -> String {
    match a {
        Action::Deliver(d) => {
            let mut s = format!(
                "deliver into {}",
                d.folder.as_ref().map_or("INBOX", |f| f.name.as_str())
            );
            if !d.flags.is_empty() {
                let _ = write!(s, " (cur/, flags {})", d.flags);
            }
            for h in &edits.add {
                let _ = write!(s, ", adding \"{}\"", crate::output::text::for_status(h));
            }
            s
        }
        Action::Pipe(p) => format!(
            "{} to {} (rule {}; exit 75 defers, another failure {})",
            if p.copy { "pipe a copy" } else { "pipe" },
            crate::output::text::for_status(&p.argv.join(" ")),
            p.rule,
            if p.copy {
                "is logged"
            } else {
                "files into INBOX"
            }
        ),
        Action::Forward(f) => format!(
            "forward {}to {} through sendmail, the envelope sender kept (rule {}; \
             a failure {})",
            if f.copy { "a copy " } else { "" },
            crate::output::text::for_status(&f.to.join(", ")),
            f.rule,
            if f.copy {
                "is logged: the copy is kept"
            } else {
                "defers unless a copy is kept"
            }
        ),
        Action::Reply(r) => format!(
            "send the vacation reply to {} from {}, subject \"{}\", null envelope sender \
             (rule {}; once per {} days per sender; nothing is sent by --test)",
            crate::output::text::for_status(&r.to),
            crate::output::text::for_status(&r.from),
            crate::output::text::for_status(&r.subject),
            r.rule,
            r.vacation.days
        ),
    }
}

/// The reply a plan would send: its header as it would go to sendmail
/// (with a Date of now and a Message-ID made when sent), then its text as
/// written (sent encoded, as the Content-Transfer-Encoding says).
fn reply_text(dr: &DryRun<'_>, r: &crate::policy::plan::Reply) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let bytes = crate::policy::vacation::compose(
        &r.vacation,
        &crate::policy::vacation::Reply {
            to: r.to.clone(),
            from: r.from.clone(),
        },
        &dr.spooled.head.headers,
        now,
        "made.when.sent@localhost",
    );
    let text = String::from_utf8_lossy(&bytes).replace("\r\n", "\n");
    let head = text.split_once("\n\n").map_or(text.as_str(), |(h, _)| h);
    format!("{head}\n\n{}", r.vacation.body)
}

/// The edits step of the plan, when there are any beyond added lines.
fn describe_edits(e: &Edits) -> Option<String> {
    if e.subject_prefix.is_none() && e.remove.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    if let Some(p) = &e.subject_prefix {
        parts.push(format!(
            "prefix the Subject with \"{}\"",
            crate::output::text::for_status(p)
        ));
    }
    if !e.remove.is_empty() {
        parts.push(format!("remove {}", e.remove.join(", ")));
    }
    Some(format!("edit the header: {}", parts.join("; ")))
}

fn describe_disposition(d: &Disposition) -> String {
    match d {
        Disposition::Delivered => "delivered (exit 0)".into(),
        Disposition::Discarded => "discarded: nothing written (exit 0)".into(),
        Disposition::Rejected { status, text } => format!(
            "rejected: {status} {} (exit {})",
            crate::output::text::for_status(text),
            crate::output::exit::NOPERM
        ),
        Disposition::Deferred { status, text } => format!(
            "deferred: {status} {} (exit {})",
            crate::output::text::for_status(text),
            crate::output::exit::TEMPFAIL
        ),
    }
}

pub fn text(dr: &DryRun<'_>) -> String {
    let mut out = String::new();
    let e = &dr.envelope;
    out.push_str("Envelope\n");
    field(&mut out, "sender", &e.sender);
    field(&mut out, "recipient", &e.recipient);
    field(&mut out, "client address", &e.client_address);
    field(&mut out, "client hostname", &e.client_hostname);
    field(&mut out, "helo", &e.client_helo);
    let _ = writeln!(out, "  {:<16} {}", "size", dr.spooled.size);
    if let Some(f) = &dr.spooled.head.from_line {
        let _ = writeln!(
            out,
            "  {:<16} {}",
            "From_ line",
            crate::output::text::for_status(f)
        );
        if dr.spooled.head.from_line_cut {
            let _ = writeln!(
                out,
                "  {:<16} longer than {} bytes: removed, the sender not taken from it",
                "",
                crate::input::message::MAX_FROM_LINE
            );
        }
    }

    out.push_str("\nRules\n");
    let _ = writeln!(out, "  system  {}", dr.system.describe());
    match (&dr.user.layer, &dr.user.ignored, &dr.user.path) {
        (Some(u), _, _) => {
            let _ = writeln!(out, "  user    {}", u.describe());
        }
        (None, Some(why), _) => {
            let _ = writeln!(out, "  user    IGNORED: {why}");
        }
        (None, None, Some(p)) => {
            let _ = writeln!(out, "  user    none ({} does not exist)", p.display());
        }
        _ => out.push_str("  user    none\n"),
    }
    for l in std::iter::once(dr.system).chain(dr.user.layer.as_ref()) {
        let a = &l.access;
        for t in a.tables() {
            if let Some(n) = t.note() {
                let _ = writeln!(out, "  note    {n}");
            }
        }
    }

    out.push_str("\nTrace\n");
    for s in &dr.decision.trace {
        let key = s
            .key
            .as_deref()
            .map(|k| format!(" [{}]", crate::output::text::for_status(k)))
            .unwrap_or_default();
        let score = s
            .score
            .map(|v| format!("  (score {v:+})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<6} {:<9} {}{} -> {}{}",
            s.layer, s.kind, s.name, key, s.result, score
        );
    }
    for l in &dr.decision.log {
        let _ = writeln!(out, "  log: {}", crate::output::text::for_status(l));
    }
    for h in &dr.decision.plan.edits.add {
        let _ = writeln!(
            out,
            "  would add header: {}",
            crate::output::text::for_status(h)
        );
    }

    let d = &dr.decision;
    out.push_str("\nPlan\n");
    let mut n = 0;
    let mut item = |out: &mut String, s: String| {
        n += 1;
        let _ = writeln!(out, "  {n}. {s}");
    };
    if let Some(e) = describe_edits(&d.plan.edits) {
        item(&mut out, e);
    }
    for a in &d.plan.actions {
        item(&mut out, describe_action(a, &d.plan.edits));
    }
    item(&mut out, describe_disposition(&d.plan.disposition));
    if let Some(r) = d.plan.reply() {
        out.push_str("\nReply (not sent)\n");
        for line in reply_text(dr, r).lines() {
            let _ = writeln!(out, "  | {line}");
        }
    }

    let path = target_path(dr);
    out.push_str("\nDecision\n");
    let _ = writeln!(out, "  action     {}", d.action.as_str());
    let _ = writeln!(
        out,
        "  folder     {}",
        d.folder.as_ref().map_or("-", |f| f.name.as_str())
    );
    let _ = writeln!(out, "  score      {:.2}", d.score);
    let _ = writeln!(
        out,
        "  reason     {}",
        crate::output::text::for_status(&d.reason)
    );
    let _ = writeln!(out, "  result     {}", what_happens(d, path.as_deref()));
    let _ = writeln!(
        out,
        "  exit       {}",
        crate::output::exit::code_of(&d.plan.disposition)
    );
    out
}

pub fn json(dr: &DryRun<'_>) -> String {
    let d = &dr.decision;
    let path = target_path(dr);
    let v = json!({
        "action": d.action,
        "folder": d.folder.as_ref().map(|f| f.name.clone()),
        "path": path.map(|p| p.display().to_string()),
        "score": d.score,
        "exit_code": crate::output::exit::code_of(&d.plan.disposition),
        "status_line": d.status_line(),
        "reason": d.reason,
        "add_headers": d.plan.edits.add,
        "log": d.log,
        "envelope": dr.envelope,
        "rules": {
            "system": dr.system.describe(),
            "user": dr.user.layer.as_ref().map(|u| u.describe()),
            "user_ignored": dr.user.ignored,
        },
        "trace": d.trace,
        "plan": d.plan,
        "reply": d.plan.reply().map(|r| reply_text(dr, r)),
    });
    serde_json::to_string_pretty(&v).expect("JSON values serialize")
}
