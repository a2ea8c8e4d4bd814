//! The files the Debian package ships that come from elsewhere in the tree
//! (Cargo.toml, `[package.metadata.deb]`): the shell completions are the
//! binary's own output, and the conffile is rules/rules.toml commented out,
//! which the binary reads as the embedded default rules.
//!
//! After changing the command line or rules/rules.toml, regenerate them with
//!     DELIVER_UPDATE_PACKAGE_FILES=1 cargo test --test package

mod util;

use std::fs;
use std::path::Path;
use std::process::Command;
use util::*;

/// Whether to rewrite the generated files instead of comparing.
fn updating() -> bool {
    std::env::var_os("DELIVER_UPDATE_PACKAGE_FILES").is_some()
}

/// Compares `path` (relative to the crate) with `want`, or writes it.
fn generated(path: &str, want: &str) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if updating() {
        fs::write(&p, want).unwrap();
        return;
    }
    let have = fs::read_to_string(&p).unwrap_or_default();
    assert!(
        have == want,
        "{path} is not what the binary generates; regenerate it:\n    \
         DELIVER_UPDATE_PACKAGE_FILES=1 cargo test --test package"
    );
}

#[test]
fn the_completions_are_the_binarys_own() {
    for (shell, path) in [
        ("bash", "package/completions/deliver.bash"),
        ("zsh", "package/completions/_deliver"),
        ("fish", "package/completions/deliver.fish"),
    ] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        // What a user types must be in there: options and the subcommand.
        for word in ["user-rules", "client-address", "log-stderr", "check"] {
            assert!(script.contains(word), "{shell}: {word}");
        }
        generated(path, &script);
    }
}

/// What precedes the commented example in the shipped conffile.
const CONFFILE_HEAD: &str = "\
# As shipped, every line of this file is a comment, and a system rules file
# that sets nothing means the embedded default rules, as a missing one does:
# mail an upstream filter flagged as spam goes to Junk, mail flagged as a
# virus is discarded. For rules of your own, uncomment the example below
# (remove the single leading #) and edit it.
#
";

/// rules/rules.toml with each line that is not already a comment or blank
/// commented out by a single `#`.
fn commented(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if !t.is_empty() && !t.starts_with('#') {
            out.push('#');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn conffile() -> String {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/rules.toml");
    format!(
        "{CONFFILE_HEAD}{}",
        commented(&fs::read_to_string(example).unwrap())
    )
}

#[test]
fn the_conffile_is_the_example_commented_out() {
    let text = conffile();
    for line in text.lines() {
        assert!(line.is_empty() || line.starts_with('#'), "{line:?}");
    }
    // Uncommented, it is the example, which is a valid rules file.
    assert!(text.contains("\n#[spam]\n#junk_threshold = 5.0"));
    generated("package/rules.toml", &text);
}

#[test]
fn the_conffile_as_shipped_means_the_default_rules() {
    let mut h = Home::new();
    h.system(&conffile());
    // A spam-flagged message goes to Junk, a virus is discarded, as with no
    // system file at all (delivery.rs), and --test says why.
    let spam = msg("Subject: x\nX-Spam-Flag: YES\n", "x\n");
    let r = h.deliver(&spam);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(h.delivered()["Junk"].len(), 1);
    let virus = msg(
        "Subject: y\nX-Amavis-Alert: INFECTED, message contains virus: Eicar\n",
        "y\n",
    );
    let r = h.deliver(&virus);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(h.count(), 1);
    let r = h.run(&["--test", "-f", "a@b.example", "-a", "u@c.example"], &spam);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("\n  system  embedded default rules\n"),
        "{}",
        r.stdout
    );
    // `deliver check` finds nothing wrong with it.
    let rules = h.file("conffile.toml", &conffile());
    let out = Command::new(BIN)
        .arg("check")
        .arg("--rules")
        .arg(&rules)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_package_changelog_names_this_version() {
    // cargo-deb takes the package's version from Cargo.toml; the Debian
    // changelog's latest entry must be that version, revision 1.
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("package/changelog");
    let text = fs::read_to_string(p).unwrap();
    let want = format!("deliver ({}-1) ", env!("CARGO_PKG_VERSION"));
    assert!(
        text.starts_with(&want),
        "{want:?}: {}",
        text.lines().next().unwrap_or("")
    );
}
