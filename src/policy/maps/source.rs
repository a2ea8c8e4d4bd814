//! Logical lines of a Postfix table source file, as readllines(3) reads them.
//!
//! Promises, checked against postmap(1) 3.7:
//! - Empty lines, whitespace-only lines and lines whose first non-whitespace
//!   character is `#` are ignored, also in the middle of a logical line.
//! - A logical line starts with non-whitespace text; a line that starts with
//!   whitespace continues it. Physical lines are joined without the newline,
//!   keeping the continuation line's leading whitespace (`qux` + `  more`
//!   gives `qux  more`), exactly as Postfix does.
//! - Whitespace is C `isspace()`: space, `\t`, `\n`, `\v`, `\f`, `\r`.
//! - Every byte offset of a logical line maps back to a 1-based physical line
//!   and 1-based column (counted in characters), for error messages.
//!
//! Where Postfix only warns and then drops input, this reader refuses: a
//! continuation line with no logical line to continue, and text that is not
//! UTF-8 (Postfix with `smtputf8_enable = yes` ignores such lines), are
//! [`Diag`]s. A NUL byte ends the logical line's text, as in Postfix's C
//! strings, and is reported as a note.

use crate::output::diag::Diag;
use std::path::Path;

/// C `isspace()` in the C locale.
pub(crate) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Postfix `trimblanks()`: the string without trailing whitespace.
pub(crate) fn trim_end_space(s: &str) -> &str {
    s.trim_end_matches(|c: char| c.is_ascii() && is_space(c as u8))
}

/// Postfix: skip leading whitespace.
pub(crate) fn trim_start_space(s: &str) -> &str {
    s.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8))
}

#[derive(Debug, Clone, Copy)]
struct Seg {
    /// Byte offset of this physical line's text inside the logical line.
    off: usize,
    /// 1-based physical line number.
    line: usize,
}

/// One logical line. `text` has its trailing whitespace removed.
#[derive(Debug, Default)]
pub(crate) struct LogicalLine {
    pub text: String,
    segs: Vec<Seg>,
}

impl LogicalLine {
    /// The physical line the logical line starts on.
    pub fn line(&self) -> usize {
        self.segs.first().map(|s| s.line).unwrap_or(0)
    }

    /// 1-based (line, column) of byte offset `off` of `text`.
    pub fn pos(&self, off: usize) -> (usize, usize) {
        let mut off = off.min(self.text.len());
        while !self.text.is_char_boundary(off) {
            off -= 1;
        }
        let seg = self
            .segs
            .iter()
            .rev()
            .find(|s| s.off <= off)
            .copied()
            .unwrap_or(Seg { off: 0, line: 0 });
        let start = seg.off.min(self.text.len());
        let col = self.text[start..off].chars().count() + 1;
        (seg.line, col)
    }

    /// A Diag at byte offset `off` of this line.
    pub fn err(&self, path: &Path, off: usize, msg: impl Into<String>) -> Diag {
        let (line, col) = self.pos(off);
        Diag::at(path, line, col, msg.into())
    }
}

/// The note Postfix logs for each `if` left open at the end of a table.
pub(crate) fn unclosed_if_notes(path: &Path, if_lines: impl Iterator<Item = usize>) -> Vec<String> {
    if_lines
        .map(|line| format!("{}, line {line}: IF has no matching ENDIF", path.display()))
        .collect()
}

/// Calls `f` for each logical line of `data` (the content of `path`).
/// `notes` collects the warnings Postfix would log without dropping input.
/// What `f` builds is checked against the user's memory budget, when it is
/// armed (`crate::policy::budget`), every `budget::CHECK_LINES` lines and at the end.
pub(crate) fn for_each_logical_line<F>(
    path: &Path,
    data: &[u8],
    notes: &mut Vec<String>,
    mut f: F,
) -> Result<(), Diag>
where
    F: FnMut(&LogicalLine) -> Result<(), Diag>,
{
    let mut cur = LogicalLine::default();
    // Set when the text of `cur` was cut at a NUL byte: later continuation
    // lines are then ignored, as in a C string.
    let mut cut = false;
    let mut lineno = 0usize;
    let mut pos = 0usize;
    while pos < data.len() {
        let end = memchr_nl(&data[pos..])
            .map(|i| pos + i)
            .unwrap_or(data.len());
        let raw = &data[pos..end];
        pos = end + 1;
        lineno += 1;
        if lineno.is_multiple_of(crate::policy::budget::CHECK_LINES) {
            over_budget(path, lineno)?;
        }
        let first = raw.iter().position(|&b| !is_space(b));
        let Some(first) = first else { continue };
        if raw[first] == b'#' {
            continue;
        }
        let continues = first > 0;
        if !continues {
            if !cur.segs.is_empty() {
                finish(&mut cur, &mut f)?;
            }
            cut = false;
        } else if cur.segs.is_empty() {
            let text = String::from_utf8_lossy(raw);
            return Err(Diag {
                file: path.to_path_buf(),
                cause: crate::output::exit::Cause::Input,
                line: lineno,
                col: 1,
                msg: format!(
                    "logical line must not start with whitespace: \"{}\"",
                    truncate_for_msg(text.trim_end(), 30)
                ),
            });
        }
        if cut {
            continue;
        }
        let mut raw = raw;
        if let Some(nul) = raw.iter().position(|&b| b == 0) {
            notes.push(format!(
                "{}, line {}: text after null byte is ignored",
                path.display(),
                lineno
            ));
            raw = &raw[..nul];
            cut = true;
        }
        let text = match std::str::from_utf8(raw) {
            Ok(t) => t,
            Err(e) => {
                let good = std::str::from_utf8(&raw[..e.valid_up_to()]).unwrap_or("");
                return Err(Diag {
                    file: path.to_path_buf(),
                    cause: crate::output::exit::Cause::Input,
                    line: lineno,
                    col: good.chars().count() + 1,
                    msg: "non-UTF-8 input (Postfix ignores such lines when smtputf8_enable = yes)"
                        .to_string(),
                });
            }
        };
        cur.segs.push(Seg {
            off: cur.text.len(),
            line: lineno,
        });
        cur.text.push_str(text);
    }
    if !cur.segs.is_empty() {
        finish(&mut cur, &mut f)?;
    }
    over_budget(path, lineno)
}

/// A [`Diag`] at `line` of `path` when the user's memory budget is spent.
fn over_budget(path: &Path, line: usize) -> Result<(), Diag> {
    crate::policy::budget::check().map_err(|msg| Diag::at(path, line, 0, msg))
}

fn finish<F>(cur: &mut LogicalLine, f: &mut F) -> Result<(), Diag>
where
    F: FnMut(&LogicalLine) -> Result<(), Diag>,
{
    let keep = trim_end_space(&cur.text).len();
    cur.text.truncate(keep);
    let r = f(cur);
    cur.text.clear();
    cur.segs.clear();
    r
}

fn memchr_nl(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b'\n')
}

/// At most `n` characters of `s`, with "..." when cut.
pub(crate) fn truncate_for_msg(s: &str, n: usize) -> String {
    let mut it = s.chars();
    let head: String = it.by_ref().take(n).collect();
    if it.next().is_some() {
        format!("{head}...")
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(data: &[u8]) -> Result<Vec<(String, usize)>, Diag> {
        let mut out = Vec::new();
        let mut notes = Vec::new();
        for_each_logical_line(Path::new("t"), data, &mut notes, |l| {
            out.push((l.text.clone(), l.line()));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn readllines_cases_from_postfix() {
        // The test vectors of Postfix's readlline.c, plus positions.
        assert_eq!(lines(b"#abc\ndef").unwrap(), vec![("def".into(), 2)]);
        assert_eq!(lines(b"\nabc\n").unwrap(), vec![("abc".into(), 2)]);
        assert_eq!(lines(b" \nabc\n").unwrap(), vec![("abc".into(), 2)]);
        assert_eq!(lines(b"abc def").unwrap(), vec![("abc def".into(), 1)]);
        assert_eq!(lines(b"#abc def").unwrap(), vec![]);
        assert_eq!(lines(b"abc\n def\n").unwrap(), vec![("abc def".into(), 1)]);
        assert_eq!(
            lines(b"abc\n #def\n ghi").unwrap(),
            vec![("abc ghi".into(), 1)]
        );
        assert_eq!(
            lines(b"abc\n#def\n ghi").unwrap(),
            vec![("abc ghi".into(), 1)]
        );
        assert_eq!(lines(b"abc\n \n ghi").unwrap(), vec![("abc ghi".into(), 1)]);
        assert_eq!(lines(b"abc\n\n ghi").unwrap(), vec![("abc ghi".into(), 1)]);
        assert_eq!(lines(b"abc\n #def\n").unwrap(), vec![("abc".into(), 1)]);
        assert_eq!(lines(b"abc\n \t").unwrap(), vec![("abc".into(), 1)]);
        assert_eq!(
            lines(b"a 1\r\nb 2\r\n").unwrap(),
            vec![("a 1".into(), 1), ("b 2".into(), 2)]
        );
    }

    #[test]
    fn orphan_continuation_is_an_error_with_position() {
        let e = lines(b"# c\n  abc\nx y\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 1));
        assert!(e.msg.contains("must not start with whitespace"), "{e}");
    }

    #[test]
    fn non_utf8_is_an_error_with_position() {
        let e = lines(b"ok 1\nab\xff cd\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 3));
    }

    #[test]
    fn nul_cuts_the_logical_line() {
        let mut notes = Vec::new();
        let mut out = Vec::new();
        for_each_logical_line(Path::new("t"), b"ab\0cd\n more\nx y", &mut notes, |l| {
            out.push(l.text.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(out, vec!["ab".to_string(), "x y".to_string()]);
        assert_eq!(notes.len(), 1);
    }

    #[test]
    fn positions_map_back_to_physical_lines() {
        let mut notes = Vec::new();
        for_each_logical_line(
            Path::new("t"),
            "ké y\n\n  zz\n".as_bytes(),
            &mut notes,
            |l| {
                assert_eq!(l.text, "ké y  zz");
                assert_eq!(l.pos(0), (1, 1));
                assert_eq!(l.pos(4), (1, 4)); // 'y': é is one column
                assert_eq!(l.pos(5), (3, 1));
                assert_eq!(l.pos(7), (3, 3));
                Ok(())
            },
        )
        .unwrap();
    }
}
