//! The From_ line local(8) puts at the top is recognised however the input
//! arrives (in pieces, with pauses) and whatever its length: it is removed,
//! and the header block after it is parsed. Through the binary.

mod util;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::Stdio;
use util::*;

/// Bytes written into the pipe `fd` and not yet read (FIONREAD).
fn unread(fd: i32) -> i32 {
    let mut n: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int; `fd` is an open pipe.
    let rc = unsafe { nix::libc::ioctl(fd, nix::libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    n
}

/// Runs the binary with `pieces` written to its stdin one after the other,
/// each only once the binary has read all of the one before: each arrives
/// in a read of its own.
fn run_in_pieces(h: &Home, pieces: &[&[u8]]) -> Run {
    let mut c = h.command(&[
        "--log-stderr",
        "-f",
        "a@example.org",
        "-a",
        "user@example.com",
    ]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for (i, p) in pieces.iter().enumerate() {
        if i > 0 {
            // A guard against a hang, not a timing condition of the test.
            let mut waited = 0;
            while unread(stdin.as_raw_fd()) > 0 {
                assert!(waited < 60_000, "the binary did not read its input");
                std::thread::sleep(std::time::Duration::from_millis(5));
                waited += 5;
            }
        }
        stdin.write_all(p).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const FROM: &str = "From a@example.org  Sat Nov 21 10:00:00 2026\n";

#[test]
fn a_from_line_split_across_reads_is_found() {
    let virus = format!(
        "{FROM}X-Amavis-Alert: INFECTED, message contains virus: Eicar\nSubject: x\n\nbody\n"
    );
    let spam = format!("{FROM}X-Spam-Flag: YES\nSubject: x\n\nbody\n");
    for at in [1, 3, 4, 5, 6, 20, FROM.len()] {
        // The embedded default rules: a virus is discarded, spam filed in Junk.
        let h = Home::new();
        let v = virus.as_bytes();
        let r = run_in_pieces(&h, &[&v[..at], &v[at..]]);
        assert_eq!(r.code, 0, "split at {at}: {}", r.stderr);
        assert!(
            r.stderr.contains("action=discard"),
            "split at {at}: {}",
            r.stderr
        );
        assert_eq!(h.count(), 0, "split at {at}");

        let s = spam.as_bytes();
        let r = run_in_pieces(&h, &[&s[..at], &s[at..]]);
        assert_eq!(r.code, 0, "split at {at}: {}", r.stderr);
        let d = h.delivered();
        assert_eq!(d.keys().collect::<Vec<_>>(), ["Junk"], "split at {at}");
        assert!(
            d["Junk"][0] == s[FROM.len()..],
            "split at {at}: bytes differ"
        );
    }
    // Byte by byte.
    let h = Home::new();
    let pieces: Vec<&[u8]> = spam.as_bytes().chunks(1).take(60).collect();
    let mut all = pieces.clone();
    all.push(&spam.as_bytes()[60..]);
    let r = run_in_pieces(&h, &all);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(h.delivered()["Junk"][0], spam.as_bytes()[FROM.len()..]);
}

#[test]
fn a_from_line_longer_than_the_bound_is_removed_and_the_headers_parsed() {
    for total in [4000, 4096, 4097, 5000, 70_000, 1 << 20] {
        // `From SENDER  Sat Nov 21 10:00:00 2026\n` is `total` bytes.
        let sender = format!("{}@example.org", "a".repeat(total - 32 - 12));
        let from = format!("From {sender}  Sat Nov 21 10:00:00 2026\n");
        assert_eq!(from.len(), total);
        let rest = "X-Spam-Flag: YES\nSubject: x\n\nbody\n";
        let input = format!("{from}{rest}").into_bytes();
        let h = Home::new();
        // No -f: the envelope sender may come from the From_ line.
        let r = h.run(&["--log-stderr", "-a", "user@example.com"], &input);
        assert_eq!(r.code, 0, "{total}: {}", r.stderr);
        let d = h.delivered();
        assert_eq!(d.keys().collect::<Vec<_>>(), ["Junk"], "{total}");
        assert!(d["Junk"][0] == rest.as_bytes(), "{total}: bytes differ");
        // The sender is taken from a From_ line only when it was read whole.
        let r = h.run(
            &["--test", "--format", "json", "-a", "u@example.com"],
            &input,
        );
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let s = &v["envelope"]["sender"];
        let whole = total <= deliver::input::message::MAX_FROM_LINE;
        assert_eq!(s["source"]["kind"] == "from_line", whole, "{total}: {s}");
        assert_eq!(s["value"] == sender.as_str(), whole, "{total}");
        assert_eq!(v["action"], "junk", "{total}");
    }
}
