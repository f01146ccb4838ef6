//! The streaming NAR parser: reads the grammar of `mod.rs`, checks every rule current Nix
//! checks, and hands entries to a [`NarSink`] as they arrive. Nothing but the path of the
//! current entry and each open directory's last name is held in memory; file contents
//! pass from the input buffer straight to the sink's writer.

use super::error::{show, NarError, NarErrorKind};
use super::{BUFFER_BYTES, MAGIC, MAX_DEPTH, MAX_NAME_BYTES, MAX_TARGET_BYTES};
use std::io::{self, Read, Write};

/// Longest keyword of the grammar ("nix-archive-1" has 13 bytes); a longer string where a
/// keyword belongs is refused before it is read, so a hostile length cannot allocate.
const MAX_KEYWORD_BYTES: usize = 16;

/// Receives the entries of a NAR in archive order. `name` is the entry's name in its
/// directory, empty for the archive's root.
pub trait NarSink {
    fn directory(&mut self, name: &[u8]) -> Result<(), NarErrorKind>;
    /// After the last entry of the directory opened most recently.
    fn end_directory(&mut self) -> Result<(), NarErrorKind>;
    /// A regular file of `contents.len()` bytes; what the sink does not read is skipped.
    fn file(
        &mut self,
        name: &[u8],
        executable: bool,
        contents: &mut Contents<'_>,
    ) -> Result<(), NarErrorKind>;
    fn symlink(&mut self, name: &[u8], target: &[u8]) -> Result<(), NarErrorKind>;
}

/// The input with its own buffer, so contents can be written from it without a copy and
/// every position is known.
struct Input<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// Archive offset of `buf[pos]`.
    offset: u64,
}

impl<R: Read> Input<R> {
    fn new(inner: R) -> Self {
        Input {
            inner,
            buf: vec![0u8; BUFFER_BYTES].into_boxed_slice(),
            pos: 0,
            end: 0,
            offset: 0,
        }
    }

    /// Refills an empty buffer; false at the end of the input.
    fn fill(&mut self) -> Result<bool, NarErrorKind> {
        if self.pos < self.end {
            return Ok(true);
        }
        self.pos = 0;
        self.end = 0;
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(NarErrorKind::Truncated)
                }
                Err(e) => return Err(NarErrorKind::Read(e)),
            }
        }
    }

    /// The next up to `max` buffered bytes (at least one), consumed.
    fn take(&mut self, max: usize) -> Result<&[u8], NarErrorKind> {
        if !self.fill()? {
            return Err(NarErrorKind::Truncated);
        }
        let n = max.min(self.end - self.pos);
        let start = self.pos;
        self.pos += n;
        self.offset += n as u64;
        Ok(&self.buf[start..start + n])
    }

    fn read_exact(&mut self, out: &mut [u8]) -> Result<(), NarErrorKind> {
        let mut done = 0;
        while done < out.len() {
            let chunk = self.take(out.len() - done)?;
            out[done..done + chunk.len()].copy_from_slice(chunk);
            done += chunk.len();
        }
        Ok(())
    }

    fn read_u64(&mut self) -> Result<u64, NarErrorKind> {
        let mut b = [0u8; 8];
        self.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// The zero bytes that pad a string of `len` bytes to a multiple of 8.
    fn read_padding(&mut self, len: u64) -> Result<(), NarErrorKind> {
        let pad = ((8 - len % 8) % 8) as usize;
        let mut b = [0u8; 8];
        self.read_exact(&mut b[..pad])?;
        if b[..pad].iter().any(|&x| x != 0) {
            return Err(NarErrorKind::NonZeroPadding);
        }
        Ok(())
    }

    /// True when no byte is left.
    fn at_end(&mut self) -> Result<bool, NarErrorKind> {
        Ok(!self.fill()?)
    }
}

/// Where [`Contents`] reads from: the parser's buffered input.
trait Source {
    fn take(&mut self, max: usize) -> Result<&[u8], NarErrorKind>;
}

impl<R: Read> Source for Input<R> {
    fn take(&mut self, max: usize) -> Result<&[u8], NarErrorKind> {
        Input::take(self, max)
    }
}

/// A regular file's bytes, read from the archive by the sink.
pub struct Contents<'a> {
    src: &'a mut dyn Source,
    remaining: u64,
    len: u64,
}

impl Contents<'_> {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes all (remaining) bytes to `out`, straight from the input buffer.
    pub fn copy_to(&mut self, out: &mut dyn Write) -> Result<(), NarErrorKind> {
        while self.remaining > 0 {
            let want = self.remaining.min(BUFFER_BYTES as u64) as usize;
            let chunk = self.src.take(want)?;
            out.write_all(chunk).map_err(NarErrorKind::Write)?;
            self.remaining -= chunk.len() as u64;
        }
        Ok(())
    }

    /// Reads past what the sink left unread.
    fn skip_rest(&mut self) -> Result<(), NarErrorKind> {
        while self.remaining > 0 {
            let want = self.remaining.min(BUFFER_BYTES as u64) as usize;
            let n = self.src.take(want)?.len();
            self.remaining -= n as u64;
        }
        Ok(())
    }
}

/// Parses one NAR from `input`, handing its entries to `sink`. Returns the archive's size.
pub fn parse(input: impl Read, sink: &mut dyn NarSink) -> Result<u64, NarError> {
    let mut p = Parser {
        input: Input::new(input),
        path: Vec::new(),
        token_start: 0,
    };
    p.magic()?;
    p.node(sink, b"", 0)?;
    p.token_start = p.input.offset;
    match p.input.at_end() {
        Ok(true) => Ok(p.input.offset),
        Ok(false) => Err(p.fail(NarErrorKind::TrailingData)),
        Err(kind) => Err(p.fail(kind)),
    }
}

struct Parser<R> {
    input: Input<R>,
    /// Path of the entry being parsed, relative to the archive's root.
    path: Vec<u8>,
    /// Where the string being read started: the offset errors name.
    token_start: u64,
}

impl<R: Read> Parser<R> {
    fn fail(&self, kind: NarErrorKind) -> NarError {
        NarError {
            offset: self.token_start,
            path: self.path.clone(),
            kind,
        }
    }

    /// Reads a string of at most `max` bytes; `too_long` says what a longer one is. The
    /// length is checked before anything is allocated.
    fn string(
        &mut self,
        max: usize,
        too_long: fn(u64) -> NarErrorKind,
    ) -> Result<Vec<u8>, NarError> {
        self.token_start = self.input.offset;
        let len = self.input.read_u64().map_err(|k| self.fail(k))?;
        if len > max as u64 {
            return Err(self.fail(too_long(len)));
        }
        let mut bytes = vec![0u8; len as usize];
        let read = self.input.read_exact(&mut bytes);
        read.and_then(|()| self.input.read_padding(len))
            .map_err(|k| self.fail(k))?;
        Ok(bytes)
    }

    fn keyword(&mut self) -> Result<Vec<u8>, NarError> {
        self.string(MAX_KEYWORD_BYTES, |len| NarErrorKind::StringTooLong {
            len,
            max: MAX_KEYWORD_BYTES,
        })
    }

    fn unexpected(&self, expected: &'static str, found: &[u8]) -> NarError {
        self.fail(NarErrorKind::UnexpectedToken {
            expected,
            found: format!("{:?}", show(found)),
        })
    }

    fn expect(&mut self, want: &'static str) -> Result<(), NarError> {
        let got = self.keyword()?;
        if got != want.as_bytes() {
            return Err(self.unexpected(want, &got));
        }
        Ok(())
    }

    fn magic(&mut self) -> Result<(), NarError> {
        let magic = self.string(MAGIC.len(), |_| NarErrorKind::BadMagic);
        match magic {
            Ok(m) if m == MAGIC => Ok(()),
            Ok(_) => Err(self.fail(NarErrorKind::BadMagic)),
            // Input shorter than the magic is not a NAR at all, not a truncated one.
            Err(e) if matches!(e.kind, NarErrorKind::Truncated) && e.offset == 0 => {
                Err(self.fail(NarErrorKind::BadMagic))
            }
            Err(e) => Err(e),
        }
    }

    /// One node named `name` (empty for the root) at `depth` directories below the root,
    /// up to and including its closing ")".
    fn node(&mut self, sink: &mut dyn NarSink, name: &[u8], depth: usize) -> Result<(), NarError> {
        self.expect("(")?;
        self.expect("type")?;
        let kind = self.keyword()?;
        match kind.as_slice() {
            b"regular" => self.regular(sink, name)?,
            b"symlink" => self.symlink(sink, name)?,
            // A directory's entries end with the node's own ")".
            b"directory" => return self.directory(sink, name, depth),
            other => {
                return Err(self.unexpected("\"regular\", \"symlink\" or \"directory\"", other))
            }
        }
        self.expect(")")
    }

    fn symlink(&mut self, sink: &mut dyn NarSink, name: &[u8]) -> Result<(), NarError> {
        self.expect("target")?;
        let target = self.string(MAX_TARGET_BYTES, |len| NarErrorKind::SymlinkTargetTooLong {
            len,
        })?;
        if target.is_empty() {
            return Err(self.fail(NarErrorKind::EmptySymlinkTarget));
        }
        if target.contains(&0) {
            return Err(self.fail(NarErrorKind::NulInSymlinkTarget));
        }
        sink.symlink(name, &target).map_err(|k| self.fail(k))
    }

    fn regular(&mut self, sink: &mut dyn NarSink, name: &[u8]) -> Result<(), NarError> {
        let mut token = self.keyword()?;
        let mut executable = false;
        if token == b"executable" {
            let marker = self.keyword()?;
            if !marker.is_empty() {
                return Err(self.fail(NarErrorKind::ExecutableMarkerNotEmpty));
            }
            executable = true;
            token = self.keyword()?;
        }
        if token != b"contents" {
            return Err(self.unexpected("\"contents\"", &token));
        }
        self.token_start = self.input.offset;
        let len = self.input.read_u64().map_err(|k| self.fail(k))?;
        let mut contents = Contents {
            src: &mut self.input,
            remaining: len,
            len,
        };
        let written = sink
            .file(name, executable, &mut contents)
            .and_then(|()| contents.skip_rest());
        written.map_err(|k| self.fail(k))?;
        self.input.read_padding(len).map_err(|k| self.fail(k))
    }

    fn directory(
        &mut self,
        sink: &mut dyn NarSink,
        name: &[u8],
        depth: usize,
    ) -> Result<(), NarError> {
        sink.directory(name).map_err(|k| self.fail(k))?;
        let mut previous: Option<Vec<u8>> = None;
        loop {
            let token = self.keyword()?;
            match token.as_slice() {
                b")" => return sink.end_directory().map_err(|k| self.fail(k)),
                b"entry" => {}
                other => return Err(self.unexpected("\"entry\" or \")\"", other)),
            }
            self.expect("(")?;
            self.expect("name")?;
            let entry = self.string(MAX_NAME_BYTES, |len| NarErrorKind::NameTooLong { len })?;
            let parent_len = self.path.len();
            if !self.path.is_empty() {
                self.path.push(b'/');
            }
            self.path.extend_from_slice(&entry);
            check_name(&entry, previous.as_deref()).map_err(|k| self.fail(k))?;
            if depth + 1 > MAX_DEPTH {
                return Err(self.fail(NarErrorKind::TooDeep));
            }
            self.expect("node")?;
            self.node(sink, &entry, depth + 1)?;
            self.expect(")")?;
            self.path.truncate(parent_len);
            previous = Some(entry);
        }
    }
}

/// The rules for one entry name, given the name before it in the same directory.
fn check_name(name: &[u8], previous: Option<&[u8]>) -> Result<(), NarErrorKind> {
    match name {
        b"" => return Err(NarErrorKind::EmptyName),
        b"." => return Err(NarErrorKind::DotName),
        b".." => return Err(NarErrorKind::DotDotName),
        _ => {}
    }
    if name.contains(&b'/') {
        return Err(NarErrorKind::SlashInName);
    }
    if name.contains(&0) {
        return Err(NarErrorKind::NulInName);
    }
    if let Some(previous) = previous {
        if name == previous {
            return Err(NarErrorKind::Duplicate { name: show(name) });
        }
        if name < previous {
            return Err(NarErrorKind::NotSorted {
                previous: show(previous),
                name: show(name),
            });
        }
    }
    Ok(())
}
