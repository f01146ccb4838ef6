//! A streaming tar reader: one header at a time, entry data read through the caller.
//!
//! The `tar` crate decodes the header fields; this reader owns the stream so that every
//! failure can name its entry (even a header whose checksum is wrong has a readable name
//! field) and so that damage the crate accepts silently is refused: an archive that ends
//! without its end-of-archive block was cut at an entry boundary. It understands GNU long
//! names and link names (`L`, `K`) and pax headers (`x`: `path`, `linkpath`, `size`);
//! global pax headers (`g`) describe no entry and are skipped.

use std::io::{self, Read};
use tar::{EntryType, Header, PaxExtensions};

const BLOCK: u64 = 512;
/// Long names and pax records are held in memory; real ones are far below this.
const MAX_EXTENSION_BYTES: u64 = 1 << 20;

/// Which entry a read error belongs to.
#[derive(Debug, Clone)]
pub(super) enum At {
    /// The entry's name (for a corrupt header: what its name field says).
    Entry(Vec<u8>),
    /// No readable name: the entry after this one (`None`: the first entry).
    After(Option<Vec<u8>>),
}

#[derive(Debug)]
pub(super) struct ReadError {
    pub at: At,
    pub problem: String,
}

/// One entry's header, with long names and pax overrides applied.
#[derive(Debug, Clone)]
pub(super) struct Head {
    pub name: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: EntryType,
    pub mode: u32,
    pub size: u64,
}

/// Long names, link names and size that extension headers set for the next entry.
#[derive(Default)]
struct Pending {
    name: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    any: bool,
}

pub(super) struct TarReader<R> {
    input: R,
    /// Data bytes of the current entry not yet read, and the zero padding after them.
    data_left: u64,
    pad_left: u64,
    last_name: Option<Vec<u8>>,
    scratch: Vec<u8>,
}

impl<R: Read> TarReader<R> {
    pub fn new(input: R) -> Self {
        TarReader {
            input,
            data_left: 0,
            pad_left: 0,
            last_name: None,
            scratch: vec![0; 64 << 10],
        }
    }

    /// The next entry, or `None` after the end-of-archive block. Unread data of the
    /// previous entry is skipped.
    pub fn next_head(&mut self) -> Result<Option<Head>, ReadError> {
        let mut pending = Pending::default();
        loop {
            self.skip_rest()?;
            let Some(block) = self.read_header_block(&pending)? else {
                return Ok(None);
            };
            let header = Header::from_byte_slice(&block);
            let size = self.entry_size(header, &pending)?;
            self.data_left = size;
            self.pad_left = padding(size);
            match header.entry_type() {
                EntryType::GNULongName => pending.name = Some(self.read_extension(header, size)?),
                EntryType::GNULongLink => pending.link = Some(self.read_extension(header, size)?),
                EntryType::XHeader => {
                    let records = self.read_extension(header, size)?;
                    apply_pax(&records, &mut pending)
                        .map_err(|problem| self.err_in(header, problem))?;
                }
                // Skipped with the next header; it describes no entry.
                EntryType::XGlobalHeader => continue,
                _ => return self.finish_head(header, pending, size).map(Some),
            }
            pending.any = true;
        }
    }

    /// Reads data of the current entry; `Ok(0)` at its end. Input that ends early is an
    /// `UnexpectedEof` error: the archive is truncated.
    pub fn read_data(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.data_left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.data_left).unwrap_or(usize::MAX));
        let n = read_retrying(&mut self.input, &mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "archive is truncated: entry data ends {} bytes early",
                    self.data_left
                ),
            ));
        }
        self.data_left -= n as u64;
        Ok(n)
    }

    fn finish_head(
        &mut self,
        header: &Header,
        pending: Pending,
        size: u64,
    ) -> Result<Head, ReadError> {
        let name = pending
            .name
            .unwrap_or_else(|| header.path_bytes().into_owned());
        let link = pending
            .link
            .or_else(|| header.link_name_bytes().map(|l| l.into_owned()))
            .unwrap_or_default();
        let mode = header.mode().map_err(|e| ReadError {
            at: At::Entry(name.clone()),
            problem: format!("bad mode field: {e}"),
        })?;
        self.last_name = Some(name.clone());
        Ok(Head {
            name,
            link,
            kind: header.entry_type(),
            mode,
            size,
        })
    }

    /// Reads one header block and checks it. `None` at the end-of-archive block.
    fn read_header_block(&mut self, pending: &Pending) -> Result<Option<[u8; 512]>, ReadError> {
        let mut block = [0u8; 512];
        let filled =
            read_full(&mut self.input, &mut block).map_err(|e| self.err_after(e.to_string()))?;
        if filled == 0 {
            return Err(self.err_after(
                "archive is truncated: it ends without an end-of-archive block".into(),
            ));
        }
        if filled < block.len() {
            return Err(self.err_after("archive is truncated inside a header".into()));
        }
        if block.iter().all(|&b| b == 0) {
            if pending.any {
                return Err(
                    self.err_after("an extension header is not followed by an entry".into())
                );
            }
            return Ok(None);
        }
        check_checksum(&block)
            .map_err(|problem| self.err_in(Header::from_byte_slice(&block), problem))?;
        Ok(Some(block))
    }

    /// The data size: a pax `size` record overrides the header of the entry it
    /// describes, not the extension headers before it.
    fn entry_size(&self, header: &Header, pending: &Pending) -> Result<u64, ReadError> {
        let kind = header.entry_type();
        let is_extension = kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions();
        if let (Some(size), false) = (pending.size, is_extension) {
            return Ok(size);
        }
        header
            .entry_size()
            .map_err(|e| self.err_in(header, format!("bad size field: {e}")))
    }

    /// Reads the data of a long-name or pax header into memory.
    fn read_extension(&mut self, header: &Header, size: u64) -> Result<Vec<u8>, ReadError> {
        if size > MAX_EXTENSION_BYTES {
            return Err(self.err_in(
                header,
                format!("extension header of {size} bytes is too large"),
            ));
        }
        let mut data = vec![0u8; size as usize];
        let filled = read_full(&mut self.input, &mut data)
            .map_err(|e| self.err_in(header, e.to_string()))?;
        if filled < data.len() {
            return Err(self.err_in(
                header,
                "archive is truncated inside an extension header".into(),
            ));
        }
        self.data_left = 0;
        // GNU long names carry a trailing NUL.
        while data.last() == Some(&0) {
            data.pop();
        }
        Ok(data)
    }

    /// Skips what the caller left of the current entry, and its padding.
    fn skip_rest(&mut self) -> Result<(), ReadError> {
        let mut left = self.data_left + self.pad_left;
        while left > 0 {
            let want = self
                .scratch
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = read_retrying(&mut self.input, &mut self.scratch[..want])
                .map_err(|e| self.err_last(e.to_string()))?;
            if n == 0 {
                return Err(self.err_last("archive is truncated inside this entry's data".into()));
            }
            left -= n as u64;
        }
        self.data_left = 0;
        self.pad_left = 0;
        Ok(())
    }

    fn err_in(&self, header: &Header, problem: String) -> ReadError {
        ReadError {
            at: At::Entry(header.path_bytes().into_owned()),
            problem,
        }
    }

    fn err_after(&self, problem: String) -> ReadError {
        ReadError {
            at: At::After(self.last_name.clone()),
            problem,
        }
    }

    fn err_last(&self, problem: String) -> ReadError {
        match &self.last_name {
            Some(name) => ReadError {
                at: At::Entry(name.clone()),
                problem,
            },
            None => self.err_after(problem),
        }
    }
}

/// Applies the pax records this reader honours; others (mtime, uid, xattrs) do not
/// change what is unpacked.
fn apply_pax(records: &[u8], pending: &mut Pending) -> Result<(), String> {
    for record in PaxExtensions::new(records) {
        let record = record.map_err(|e| format!("malformed pax header: {e}"))?;
        match record.key_bytes() {
            b"path" => pending.name = Some(record.value_bytes().to_vec()),
            b"linkpath" => pending.link = Some(record.value_bytes().to_vec()),
            b"size" => {
                let size = record
                    .value()
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| "malformed pax size record".to_string())?;
                pending.size = Some(size);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Verifies a header's checksum. Like GNU tar, a sum of signed bytes (written by some
/// old tars) is accepted too.
fn check_checksum(block: &[u8; 512]) -> Result<(), String> {
    let header = Header::from_byte_slice(block);
    let stored = header
        .cksum()
        .map_err(|_| "corrupt header: the checksum field is not a number".to_string())?;
    let fields = block[..148].iter().chain(&block[156..]);
    let unsigned: u32 = fields.clone().map(|&b| u32::from(b)).sum::<u32>() + 8 * 32;
    let signed: i64 = fields.map(|&b| i64::from(b as i8)).sum::<i64>() + 8 * 32;
    if stored == unsigned || i64::from(stored) == signed {
        return Ok(());
    }
    Err(format!(
        "corrupt header: checksum mismatch (stored {stored:o}, computed {unsigned:o})"
    ))
}

fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

/// Fills `buf` as far as the input allows; returns how much was filled.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match read_retrying(input, &mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn read_retrying(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match input.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, kind: EntryType, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h
    }

    fn archive(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for part in parts {
            out.extend_from_slice(part);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out
    }

    #[test]
    fn reads_entries_and_their_data() {
        let h = header("a/b", EntryType::Regular, 3);
        let bytes = archive(&[h.as_bytes(), b"xyz", &[0; 1024]]);
        let mut r = TarReader::new(&bytes[..]);
        let head = r.next_head().unwrap().unwrap();
        assert_eq!(head.name, b"a/b");
        let mut buf = [0u8; 8];
        assert_eq!(r.read_data(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"xyz");
        assert!(r.next_head().unwrap().is_none());
    }

    #[test]
    fn gnu_long_names_and_pax_paths_apply_to_the_next_entry() {
        let long = "d/".repeat(80) + "file";
        let l = header(
            "././@LongLink",
            EntryType::GNULongName,
            long.len() as u64 + 1,
        );
        let f = header("short", EntryType::Regular, 0);
        let record = "17 path=pax/name\n";
        let x = header("PaxHeader", EntryType::XHeader, record.len() as u64);
        let mut long_nul = long.clone().into_bytes();
        long_nul.push(0);
        let bytes = archive(&[
            l.as_bytes(),
            &long_nul,
            f.as_bytes(),
            x.as_bytes(),
            record.as_bytes(),
            f.as_bytes(),
            &[0; 1024],
        ]);
        let mut r = TarReader::new(&bytes[..]);
        assert_eq!(r.next_head().unwrap().unwrap().name, long.as_bytes());
        assert_eq!(r.next_head().unwrap().unwrap().name, b"pax/name");
        assert!(r.next_head().unwrap().is_none());
    }

    #[test]
    fn a_missing_end_block_is_truncation() {
        let h = header("a", EntryType::Regular, 0);
        let bytes = archive(&[h.as_bytes()]);
        let mut r = TarReader::new(&bytes[..]);
        r.next_head().unwrap().unwrap();
        let err = r.next_head().unwrap_err();
        assert!(err.problem.contains("end-of-archive"), "{}", err.problem);
        assert!(matches!(err.at, At::After(Some(ref n)) if n == b"a"));
    }

    #[test]
    fn a_bad_checksum_names_the_entry() {
        let mut h = header("etc/x", EntryType::Regular, 0);
        h.as_mut_bytes()[0] = b'E';
        let bytes = archive(&[h.as_bytes(), &[0; 1024]]);
        let err = TarReader::new(&bytes[..]).next_head().unwrap_err();
        assert!(err.problem.contains("checksum"));
        assert!(matches!(err.at, At::Entry(ref n) if n == b"Etc/x"));
    }
}
