//! The stream compressions a mirror's archives can carry: what each real system ships
//! by default, and `--compression MODEL=none|gzip|xz|zstd[:LEVEL]` to change one.
//!
//! Defaults, as published: Debian 12's `.deb`s have xz data members (dpkg-deb's default
//! compressor since 1.17.0; `DPKG_DEB_COMPRESSOR([xz])` in dpkg's configure.ac, level 6),
//! cache.nixos.org serves xz NARs (Nix's binary cache `compression` setting defaults to
//! `xz`). Images are not streams: their compression is SquashFS's own
//! (`formats::squashfs`).

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A stream compression and its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip(u32),
    Xz(u32),
    Zstd(i32),
}

/// What Debian's `.deb`s and Nix's binary caches ship: xz at level 6.
impl Default for Compression {
    fn default() -> Self {
        Compression::XZ_DEFAULT
    }
}

impl Compression {
    /// dpkg-deb's and Nix's default: xz at level 6 (`xz -6`, liblzma's preset default).
    pub const XZ_DEFAULT: Compression = Compression::Xz(6);

    /// `none`, `gzip`, `xz` or `zstd`, with an optional `:LEVEL` (gzip 1-9, default 6;
    /// xz 0-9, default 6; zstd 1-19, default 3).
    pub fn parse(text: &str) -> Result<Compression> {
        let (name, level) = match text.split_once(':') {
            Some((n, l)) => (n, Some(l)),
            None => (text, None),
        };
        let given = level;
        let level = |default: i64, range: std::ops::RangeInclusive<i64>| -> Result<i64> {
            let value = match level {
                None => default,
                Some(l) => l.parse::<i64>().with_context(|| {
                    format!("compression {text:?}: level {l:?} is not a number")
                })?,
            };
            if !range.contains(&value) {
                bail!(
                    "compression {text:?}: level {value} is outside {}..={}",
                    range.start(),
                    range.end()
                );
            }
            Ok(value)
        };
        Ok(match name {
            "none" if given.is_none() => Compression::None,
            "none" => bail!("compression {text:?}: none takes no level"),
            "gzip" => Compression::Gzip(level(6, 1..=9)? as u32),
            "xz" => Compression::Xz(level(6, 0..=9)? as u32),
            "zstd" => Compression::Zstd(level(3, 1..=19)? as i32),
            _ => bail!("compression {text:?}: not none, gzip, xz or zstd[:LEVEL]"),
        })
    }

    /// The name as `parse` takes it, with the level (`xz:6`).
    pub fn name(&self) -> String {
        match self {
            Compression::None => "none".into(),
            Compression::Gzip(l) => format!("gzip:{l}"),
            Compression::Xz(l) => format!("xz:{l}"),
            Compression::Zstd(l) => format!("zstd:{l}"),
        }
    }

    /// The file name extension of a stream in it (`""`, `.gz`, `.xz`, `.zst`).
    pub fn extension(&self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip(_) => ".gz",
            Compression::Xz(_) => ".xz",
            Compression::Zstd(_) => ".zst",
        }
    }

    /// The compression a file name's extension says, at the default level (readers need
    /// no level).
    pub fn of_extension(name: &str) -> Compression {
        if name.ends_with(".gz") {
            Compression::Gzip(6)
        } else if name.ends_with(".xz") {
            Compression::Xz(6)
        } else if name.ends_with(".zst") {
            Compression::Zstd(3)
        } else {
            Compression::None
        }
    }

    /// A writer compressing into `out`; `finish` it to write the stream's end.
    pub fn encoder<'a, W: Write + 'a>(&self, out: W) -> Result<Encoder<'a, W>> {
        Ok(match *self {
            Compression::None => Encoder::None(out),
            Compression::Gzip(l) => Encoder::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(l),
            )),
            Compression::Xz(l) => Encoder::Xz(xz2::write::XzEncoder::new(out, l)),
            Compression::Zstd(l) => {
                Encoder::Zstd(zstd::Encoder::new(out, l).context("starting a zstd stream")?)
            }
        })
    }

    /// A reader decompressing `input`.
    pub fn decoder<'a, R: Read + 'a>(&self, input: R) -> Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(input),
            Compression::Gzip(_) => Box::new(flate2::read::GzDecoder::new(input)),
            Compression::Xz(_) => Box::new(xz2::read::XzDecoder::new(input)),
            Compression::Zstd(_) => {
                Box::new(zstd::Decoder::new(input).context("starting a zstd stream")?)
            }
        })
    }
}

/// The time an install spent decompressing, summed over its threads: the wall time
/// inside each decoder's reads less the time its source's reads took (the fetch or the
/// file). Clones share one count.
#[derive(Debug, Clone, Default)]
pub struct DecodeClock(Arc<AtomicU64>);

impl DecodeClock {
    /// Starts the count again (at an install's start).
    pub fn reset(&self) {
        self.0.store(0, Ordering::SeqCst);
    }

    /// Nanoseconds counted so far.
    pub fn nanos(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// `compression`'s decoder of `input`, its decoding time counted here.
    pub fn decoder<'a, R: Read + 'a>(
        &self,
        compression: Compression,
        input: R,
    ) -> Result<Box<dyn Read + 'a>> {
        let source_spent = Arc::new(AtomicU64::new(0));
        let source = TimedSource {
            inner: input,
            spent: Arc::clone(&source_spent),
        };
        Ok(Box::new(TimedDecoder {
            inner: compression.decoder(source)?,
            source_spent,
            clock: self.clone(),
        }))
    }
}

struct TimedSource<R> {
    inner: R,
    spent: Arc<AtomicU64>,
}

impl<R: Read> Read for TimedSource<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = Instant::now();
        let n = self.inner.read(buf);
        self.spent
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        n
    }
}

struct TimedDecoder<'a> {
    inner: Box<dyn Read + 'a>,
    source_spent: Arc<AtomicU64>,
    clock: DecodeClock,
}

impl Read for TimedDecoder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = Instant::now();
        let n = self.inner.read(buf);
        let total = start.elapsed().as_nanos() as u64;
        let source = self.source_spent.swap(0, Ordering::Relaxed);
        self.clock
            .0
            .fetch_add(total.saturating_sub(source), Ordering::Relaxed);
        n
    }
}

/// A compressing writer of `Compression::encoder`.
pub enum Encoder<'a, W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Xz(xz2::write::XzEncoder<W>),
    Zstd(zstd::Encoder<'a, W>),
}

impl<W: Write> Encoder<'_, W> {
    /// Writes the stream's end and returns the inner writer.
    pub fn finish(self) -> std::io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Xz(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Xz(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Xz(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_levels() {
        assert_eq!(Compression::parse("none").ok(), Some(Compression::None));
        assert_eq!(Compression::parse("xz").ok(), Some(Compression::Xz(6)));
        assert_eq!(
            Compression::parse("zstd:19").ok(),
            Some(Compression::Zstd(19))
        );
        assert_eq!(
            Compression::parse("gzip:9").ok(),
            Some(Compression::Gzip(9))
        );
        for bad in ["", "lz4", "xz:10", "zstd:0", "gzip:x", "none:1", "zstd:"] {
            assert!(Compression::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Compression::Xz(6).name(), "xz:6");
    }

    #[test]
    fn every_compression_round_trips_and_shrinks_what_repeats() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for c in ["none", "gzip", "xz", "zstd"] {
            let c = Compression::parse(c).unwrap();
            let mut enc = c.encoder(Vec::new()).unwrap();
            enc.write_all(&data).unwrap();
            let packed = enc.finish().unwrap();
            if c != Compression::None {
                assert!(packed.len() < data.len() / 10, "{c:?}: {}", packed.len());
            }
            let mut back = Vec::new();
            c.decoder(&packed[..])
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{c:?}");
            assert_eq!(
                Compression::of_extension(&format!("a{}", c.extension()))
                    .name()
                    .split(':')
                    .next(),
                c.name().split(':').next()
            );
        }
    }
}
