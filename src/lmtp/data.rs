//! Reading DATA once for all the transaction's recipients: dot-unstuffing,
//! CRLF to LF (the Maildir convention, as local(8) hands mail to
//! `mailbox_command`), the size limit, and the spool the recipients'
//! deliveries read from.
//!
//! The end of the data is `CRLF . CRLF` only, as RFC 5321 says. A bare LF
//! ends a text line (stored as LF), but a `.` line after one does not end
//! the data, so no other reading of the same bytes can see a different end
//! (SMTP smuggling). NUL and 8-bit bytes are kept as they are.

use crate::input::message::read_line_bounded;
use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Up to this much is kept in memory; more goes to a file in the spool
/// directory (unlinked: nothing stays behind however the process ends).
pub const IN_MEMORY: usize = 1 << 20;

/// The message as received, for the deliveries to read.
#[derive(Debug)]
pub enum Spool {
    Mem(Vec<u8>),
    File { file: File, len: u64 },
}

impl Spool {
    pub fn len(&self) -> u64 {
        match self {
            Spool::Mem(v) => v.len() as u64,
            Spool::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A reader of the whole message from its start; each reader has its
    /// own position.
    pub fn reader(&self) -> SpoolReader<'_> {
        SpoolReader {
            spool: self,
            pos: 0,
        }
    }
}

pub struct SpoolReader<'s> {
    spool: &'s Spool,
    pos: u64,
}

impl Read for SpoolReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.spool {
            Spool::Mem(v) => {
                let rest = &v[(self.pos as usize).min(v.len())..];
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                n
            }
            Spool::File { file, len } => {
                let want = (len - self.pos.min(*len)).min(buf.len() as u64) as usize;
                if want == 0 {
                    0
                } else {
                    file.read_at(&mut buf[..want], self.pos)?
                }
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

/// Where DATA is written while it is read.
struct Sink<'d> {
    spool: Spool,
    dir: &'d Path,
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.spool {
            Spool::Mem(v) if v.len() + buf.len() <= IN_MEMORY => {
                v.extend_from_slice(buf);
                Ok(())
            }
            Spool::Mem(v) => {
                let mut file = tempfile::tempfile_in(self.dir)?;
                file.write_all(v)?;
                file.write_all(buf)?;
                let len = (v.len() + buf.len()) as u64;
                self.spool = Spool::File { file, len };
                Ok(())
            }
            Spool::File { file, len } => {
                file.write_all(buf)?;
                *len += buf.len() as u64;
                Ok(())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How DATA ended (the client sent the final dot).
#[derive(Debug)]
pub enum Data {
    Spooled(Spool),
    /// Larger than the limit: `552 5.3.4` for every recipient.
    TooBig,
    /// The spool could not be written (a full disk, say): `451` or `452`
    /// for every recipient.
    SpoolFailed(io::Error),
}

/// Reads DATA up to its final dot. An error is the client's connection
/// failing (end of input, a timeout): the transaction is abandoned.
pub fn read<R: BufRead>(r: &mut R, max_size: u64, spool_dir: &Path) -> io::Result<Data> {
    let mut sink = Sink {
        spool: Spool::Mem(Vec::with_capacity(16 * 1024)),
        dir: spool_dir,
    };
    let mut failed: Option<io::Error> = None;
    let mut size = 0u64;
    let mut too_big = false;
    let mut piece = Vec::with_capacity(8192);
    let mut out = Vec::with_capacity(8192);
    // At the start of a line; the line before ended in CRLF (or none did:
    // the data's first line); a CR ended the last piece of a line.
    let (mut at_start, mut after_crlf, mut pending_cr) = (true, true, false);
    loop {
        piece.clear();
        if read_line_bounded(r, &mut piece, 64 * 1024)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed during DATA",
            ));
        }
        let complete = piece.ends_with(b"\n");
        let mut content = &piece[..];
        if at_start {
            if after_crlf && content == b".\r\n" {
                break;
            }
            if content.first() == Some(&b'.') {
                content = &content[1..];
            }
        }
        out.clear();
        if pending_cr && content.first() != Some(&b'\n') {
            out.push(b'\r');
        }
        if complete {
            let crlf = content.ends_with(b"\r\n") || (pending_cr && content == b"\n");
            let body = if content.ends_with(b"\r\n") {
                &content[..content.len() - 2]
            } else {
                &content[..content.len() - 1]
            };
            out.extend_from_slice(body);
            out.push(b'\n');
            after_crlf = crlf;
            pending_cr = false;
        } else if let Some(b) = content.strip_suffix(b"\r") {
            out.extend_from_slice(b);
            pending_cr = true;
        } else {
            out.extend_from_slice(content);
            pending_cr = false;
        }
        at_start = complete;
        size += out.len() as u64;
        if size > max_size {
            too_big = true;
        }
        if !too_big && failed.is_none() {
            if let Err(e) = sink.write_all(&out) {
                failed = Some(e);
            }
        }
    }
    if pending_cr && !too_big && failed.is_none() {
        // A CR at the very end of the last line's piece, never followed by LF.
        if let Err(e) = sink.write_all(b"\r") {
            failed = Some(e);
        }
    }
    Ok(if too_big {
        Data::TooBig
    } else if let Some(e) = failed {
        Data::SpoolFailed(e)
    } else {
        Data::Spooled(sink.spool)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(input: &[u8]) -> Vec<u8> {
        let mut r = io::BufReader::with_capacity(7, input);
        match read(&mut r, 1 << 20, Path::new("/tmp")).unwrap() {
            Data::Spooled(s) => {
                let mut v = Vec::new();
                s.reader().read_to_end(&mut v).unwrap();
                v
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn unstuffs_and_ends_at_crlf_dot_crlf() {
        assert_eq!(data(b"A: b\r\n\r\n..x\r\n.\r\n"), b"A: b\n\n.x\n");
        assert_eq!(data(b".\r\n"), b"");
        // Bare LF ends a line; a dot line after it does not end the data.
        assert_eq!(data(b"a\n.\r\nb\r\n.\r\n"), b"a\n\nb\n");
        assert_eq!(data(b"a\r\n.\nb\r\n.\r\n"), b"a\n\nb\n");
        // A bare CR and NUL are kept.
        assert_eq!(data(b"a\rb\0c\r\n.\r\n"), b"a\rb\0c\n");
        // A CRLF split across pieces.
        let mut long = vec![b'x'; 64 * 1024 - 1];
        long.extend_from_slice(b"\r\n.\r\n");
        let mut want = vec![b'x'; 64 * 1024 - 1];
        want.push(b'\n');
        assert_eq!(data(&long), want);
    }

    #[test]
    fn too_big_reads_to_the_end() {
        let mut input = vec![b'x'; 3000];
        input.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
        let mut r = io::BufReader::new(&input[..]);
        assert!(matches!(
            read(&mut r, 1024, Path::new("/tmp")).unwrap(),
            Data::TooBig
        ));
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "NOOP\r\n");
    }

    #[test]
    fn large_data_goes_to_a_file() {
        let mut input = Vec::new();
        for _ in 0..30_000 {
            input.extend_from_slice(b"0123456789012345678901234567890123456789\r\n");
        }
        input.extend_from_slice(b".\r\n");
        let mut r = io::BufReader::new(&input[..]);
        let Data::Spooled(s) = read(&mut r, 1 << 30, Path::new("/tmp")).unwrap() else {
            panic!()
        };
        assert!(matches!(s, Spool::File { .. }));
        assert_eq!(s.len(), 30_000 * 41);
        let mut v = Vec::new();
        s.reader().read_to_end(&mut v).unwrap();
        assert_eq!(v.len(), 30_000 * 41);
    }

    #[test]
    fn vanishing_client_is_an_error() {
        let mut r = io::BufReader::new(&b"a\r\nb"[..]);
        assert!(read(&mut r, 1 << 20, Path::new("/tmp")).is_err());
    }
}
