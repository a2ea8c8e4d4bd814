//! `cdb:` tables: D. J. Bernstein's constant database, read and written.
//!
//! Reading: `cdb:/etc/postfix/x` opens `/etc/postfix/x.cdb`, the file that
//! `postmap cdb:/etc/postfix/x` writes, directly through a read-only memory
//! map (no postmap at run time). The format is the classic one: a 2048-byte
//! header of 256 (position, slot count) pairs, records of
//! (key length, data length, key, data), then 256 open-addressing hash
//! tables of (hash, record position) pairs; all integers are 32-bit little
//! endian, the hash is `h = 5381; h = (h * 33) ^ byte`.
//!
//! Keys and NUL: postmap 3.7 stores keys and values *without* a trailing NUL
//! (checked with `xxd` on a postmap-built file); `postmap -N` stores both
//! *with* one. Like Postfix's dict_cdb (DICT_FLAG_TRY1NULL|TRY0NULL), a
//! lookup first tries the key as is and then with a NUL appended, and a
//! trailing NUL is removed from a value.
//!
//! Keys are folded like every fixed table (see `fold_key`): postmap folds
//! them when it builds the file, and the lookup key is folded here.
//!
//! Every offset read from the file is bounds-checked: a truncated or corrupt
//! database is a [`Diag`], never a panic. The map assumes, like Postfix,
//! that the file is replaced (postmap writes a new file and renames it), not
//! rewritten in place while it is open.
//!
//! Writing: [`CdbWriter`] builds a database in the same format; the index
//! cache of large text tables uses it.

use super::{file_err, fold_key, Table};
use crate::output::diag::Diag;
use memmap2::{Mmap, MmapOptions};
use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const HEADER: usize = 2048;

/// The cdb hash function.
pub fn hash(key: &[u8]) -> u32 {
    let mut h: u32 = 5381;
    for &b in key {
        h = (h << 5).wrapping_add(h) ^ u32::from(b);
    }
    h
}

/// A read-only, memory-mapped cdb file.
pub struct Cdb {
    path: PathBuf,
    map: Mmap,
}

impl std::fmt::Debug for Cdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cdb")
            .field("path", &self.path)
            .field("len", &self.map.len())
            .finish()
    }
}

impl Cdb {
    /// Map `path`. The file must at least hold the 2048-byte header.
    pub fn open(path: &Path) -> Result<Cdb, Diag> {
        let (file, meta) = crate::input::safe_open::open(path)?;
        Cdb::from_file_len(path, &file, meta.len())
    }

    /// Map an already opened file whose length (from its metadata) is `len`.
    pub fn from_file_len(path: &Path, file: &File, len: u64) -> Result<Cdb, Diag> {
        if len < HEADER as u64 {
            return Err(file_err(
                path,
                format!("not a cdb file: {len} bytes, shorter than the 2048-byte header"),
            ));
        }
        if len > u64::from(u32::MAX) {
            return Err(file_err(path, "not a cdb file: larger than 4 GiB"));
        }
        // SAFETY: the map is read-only and every access is bounds-checked.
        // Like Postfix we rely on cdb files being replaced by rename, not
        // modified in place, while they are mapped.
        // With the length given, memmap2 does not fstat the file again.
        let map = unsafe { MmapOptions::new().len(len as usize).map(file) }
            .map_err(|e| super::io_err(path, "mmap", &e))?;
        Ok(Cdb {
            path: path.to_path_buf(),
            map,
        })
    }

    fn corrupt(&self, what: &str) -> Diag {
        file_err(&self.path, format!("corrupt cdb file: {what}"))
    }

    fn u32_at(&self, pos: usize) -> Result<u32, Diag> {
        let b = self
            .map
            .get(
                pos..pos
                    .checked_add(4)
                    .ok_or_else(|| self.corrupt("offset overflow"))?,
            )
            .ok_or_else(|| self.corrupt("offset past end of file"))?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The data stored under `key`, if any.
    pub fn get(&self, key: &[u8]) -> Result<Option<&[u8]>, Diag> {
        let h = hash(key);
        let slot_base = ((h & 0xff) as usize) * 8;
        let tpos = self.u32_at(slot_base)? as usize;
        let nslots = self.u32_at(slot_base + 4)? as usize;
        if nslots == 0 {
            return Ok(None);
        }
        if tpos
            .checked_add(
                nslots
                    .checked_mul(8)
                    .ok_or_else(|| self.corrupt("table size"))?,
            )
            .is_none_or(|end| end > self.map.len())
        {
            return Err(self.corrupt("hash table past end of file"));
        }
        let mut slot = ((h >> 8) as usize) % nslots;
        for _ in 0..nslots {
            let spos = tpos + slot * 8;
            let hv = self.u32_at(spos)?;
            let rpos = self.u32_at(spos + 4)? as usize;
            if rpos == 0 {
                return Ok(None);
            }
            if hv == h {
                let klen = self.u32_at(rpos)? as usize;
                let dlen = self.u32_at(rpos + 4)? as usize;
                let kstart = rpos + 8;
                let kend = kstart
                    .checked_add(klen)
                    .ok_or_else(|| self.corrupt("key length"))?;
                let dend = kend
                    .checked_add(dlen)
                    .ok_or_else(|| self.corrupt("data length"))?;
                if dend > self.map.len() {
                    return Err(self.corrupt("record past end of file"));
                }
                if &self.map[kstart..kend] == key {
                    return Ok(Some(&self.map[kend..dend]));
                }
            }
            slot += 1;
            if slot == nslots {
                slot = 0;
            }
        }
        Ok(None)
    }
}

/// A `cdb:` table.
#[derive(Debug)]
pub struct CdbTable {
    spec: String,
    cdb: Cdb,
}

impl CdbTable {
    /// Open `cdb:name`, i.e. the file `name.cdb`.
    pub fn open(spec: &str, name: &Path) -> Result<CdbTable, Diag> {
        let mut path = name.as_os_str().to_owned();
        path.push(".cdb");
        let cdb = Cdb::open(Path::new(&path))?;
        Ok(CdbTable {
            spec: spec.to_string(),
            cdb,
        })
    }

    /// Look up an already folded key: as is, then with a trailing NUL.
    pub(crate) fn get_folded(cdb: &Cdb, key: &str) -> Result<Option<String>, Diag> {
        let mut found = cdb.get(key.as_bytes())?;
        if found.is_none() {
            let mut k = Vec::with_capacity(key.len() + 1);
            k.extend_from_slice(key.as_bytes());
            k.push(0);
            found = cdb.get(&k)?;
        }
        let Some(mut v) = found else { return Ok(None) };
        if let Some((&0, rest)) = v.split_last() {
            v = rest;
        }
        match std::str::from_utf8(v) {
            Ok(s) => Ok(Some(s.to_string())),
            Err(_) => Err(file_err(
                &cdb.path,
                format!("key \"{key}\": non-UTF-8 value"),
            )),
        }
    }
}

impl Table for CdbTable {
    fn spec(&self) -> &str {
        &self.spec
    }
    fn is_pattern(&self) -> bool {
        false
    }
    fn lookup(&self, key: &str) -> Result<Option<String>, Diag> {
        CdbTable::get_folded(&self.cdb, &fold_key(key))
    }
}

/// Writes a cdb file. Records are written in the order they are added; a
/// reader finds the first record added under a key.
pub struct CdbWriter<W: Write + Seek> {
    out: BufWriter<W>,
    pos: u64,
    entries: Vec<(u32, u32)>,
}

impl<W: Write + Seek> CdbWriter<W> {
    pub fn new(inner: W) -> io::Result<CdbWriter<W>> {
        let mut out = BufWriter::with_capacity(1 << 16, inner);
        out.write_all(&[0u8; HEADER])?;
        Ok(CdbWriter {
            out,
            pos: HEADER as u64,
            entries: Vec::new(),
        })
    }

    fn too_big() -> io::Error {
        io::Error::other("cdb file would exceed 4 GiB")
    }

    pub fn add(&mut self, key: &[u8], data: &[u8]) -> io::Result<()> {
        let klen = u32::try_from(key.len()).map_err(|_| Self::too_big())?;
        let dlen = u32::try_from(data.len()).map_err(|_| Self::too_big())?;
        let pos = u32::try_from(self.pos).map_err(|_| Self::too_big())?;
        self.out.write_all(&klen.to_le_bytes())?;
        self.out.write_all(&dlen.to_le_bytes())?;
        self.out.write_all(key)?;
        self.out.write_all(data)?;
        self.pos += 8 + u64::from(klen) + u64::from(dlen);
        if self.pos > u64::from(u32::MAX) {
            return Err(Self::too_big());
        }
        self.entries.push((hash(key), pos));
        Ok(())
    }

    /// Write the hash tables and the header; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let mut counts = [0usize; 256];
        for &(h, _) in &self.entries {
            counts[(h & 0xff) as usize] += 1;
        }
        // Group the entries by table, keeping insertion order in each.
        let mut starts = [0usize; 257];
        for i in 0..256 {
            starts[i + 1] = starts[i] + counts[i];
        }
        let mut fill = starts;
        let mut grouped = vec![(0u32, 0u32); self.entries.len()];
        for &(h, p) in &self.entries {
            let t = (h & 0xff) as usize;
            grouped[fill[t]] = (h, p);
            fill[t] += 1;
        }
        let mut header = [0u8; HEADER];
        let mut slots: Vec<(u32, u32)> = Vec::new();
        for t in 0..256 {
            let group = &grouped[starts[t]..starts[t + 1]];
            let nslots = group.len() * 2;
            let tpos = u32::try_from(self.pos).map_err(|_| Self::too_big())?;
            header[t * 8..t * 8 + 4].copy_from_slice(&tpos.to_le_bytes());
            header[t * 8 + 4..t * 8 + 8].copy_from_slice(&(nslots as u32).to_le_bytes());
            if nslots == 0 {
                continue;
            }
            slots.clear();
            slots.resize(nslots, (0, 0));
            for &(h, p) in group {
                let mut s = ((h >> 8) as usize) % nslots;
                while slots[s].1 != 0 {
                    s = (s + 1) % nslots;
                }
                slots[s] = (h, p);
            }
            for &(h, p) in &slots {
                self.out.write_all(&h.to_le_bytes())?;
                self.out.write_all(&p.to_le_bytes())?;
            }
            self.pos += 8 * nslots as u64;
            if self.pos > u64::from(u32::MAX) {
                return Err(Self::too_big());
            }
        }
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&header)?;
        self.out.flush()?;
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(path: &Path, pairs: &[(&[u8], &[u8])]) {
        let f = File::create(path).unwrap();
        let mut w = CdbWriter::new(f).unwrap();
        for (k, v) in pairs {
            w.add(k, v).unwrap();
        }
        w.finish().unwrap();
    }

    #[test]
    fn roundtrip_and_first_record_wins() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.cdb");
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..5000)
            .map(|i| (format!("key{i}").into_bytes(), format!("v{i}").into_bytes()))
            .collect();
        pairs.push((b"key7".to_vec(), b"second".to_vec()));
        pairs.push((Vec::new(), b"empty key".to_vec()));
        let refs: Vec<(&[u8], &[u8])> = pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        build(&p, &refs);
        let c = Cdb::open(&p).unwrap();
        for i in 0..5000 {
            assert_eq!(
                c.get(format!("key{i}").as_bytes()).unwrap(),
                Some(format!("v{i}").as_bytes())
            );
        }
        assert_eq!(c.get(b"key7").unwrap(), Some(&b"v7"[..]));
        assert_eq!(c.get(b"").unwrap(), Some(&b"empty key"[..]));
        assert_eq!(c.get(b"nope").unwrap(), None);
    }

    #[test]
    fn nul_terminated_keys_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.cdb");
        build(&p, &[(b"foo\0", b"bar\0"), (b"plain", b"value")]);
        let t = CdbTable {
            spec: "cdb:n".into(),
            cdb: Cdb::open(&p).unwrap(),
        };
        assert_eq!(t.lookup("FOO").unwrap().as_deref(), Some("bar"));
        assert_eq!(t.lookup("Plain").unwrap().as_deref(), Some("value"));
        assert_eq!(t.lookup("other").unwrap(), None);
        assert!(!t.is_pattern());
    }

    #[test]
    fn corrupt_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("short.cdb");
        std::fs::write(&p, b"tiny").unwrap();
        let e = Cdb::open(&p).unwrap_err();
        assert!(e.msg.contains("not a cdb file"), "{e}");

        // A header that points past the end of the file.
        let p = dir.path().join("bad.cdb");
        let mut data = vec![0u8; HEADER];
        let h = hash(b"k");
        let t = (h & 0xff) as usize;
        data[t * 8..t * 8 + 4].copy_from_slice(&4000u32.to_le_bytes());
        data[t * 8 + 4..t * 8 + 8].copy_from_slice(&2u32.to_le_bytes());
        std::fs::write(&p, &data).unwrap();
        let c = Cdb::open(&p).unwrap();
        assert!(c.get(b"k").unwrap_err().msg.contains("corrupt"));

        // A slot that points to a record past the end.
        let p = dir.path().join("bad2.cdb");
        let mut data = vec![0u8; HEADER + 16];
        data[t * 8..t * 8 + 4].copy_from_slice(&(HEADER as u32).to_le_bytes());
        data[t * 8 + 4..t * 8 + 8].copy_from_slice(&2u32.to_le_bytes());
        let s = ((h >> 8) % 2) as usize;
        let off = HEADER + s * 8;
        data[off..off + 4].copy_from_slice(&h.to_le_bytes());
        data[off + 4..off + 8].copy_from_slice(&100_000u32.to_le_bytes());
        std::fs::write(&p, &data).unwrap();
        let c = Cdb::open(&p).unwrap();
        assert!(c.get(b"k").unwrap_err().msg.contains("corrupt"));
    }

    #[test]
    fn missing_file_names_the_cdb_path() {
        let e = CdbTable::open("cdb:/nonexistent/x", Path::new("/nonexistent/x")).unwrap_err();
        assert_eq!(e.file, PathBuf::from("/nonexistent/x.cdb"));
    }
}
