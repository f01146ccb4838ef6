//! One substitution, as one stream (Nix's `copyStorePath` into a local store): read the
//! compressed NAR from the binary cache → zstd decode → sha256 → restore into
//! `STORE/HASH-NAME.tmp` with canonical metadata → check NarHash and NarSize → rename into
//! place. The caller registers the path afterwards.
//!
//! Where it differs from Nix: Nix restores straight into the final path under a lock and
//! canonicalises with a second walk; here the `.tmp` name keeps a half-written path from
//! ever carrying the final name, and canonical metadata is applied while restoring
//! (see `RestoreOptions::canonical`). Nix does not check FileHash on substitution, and
//! neither does this.

use super::narinfo::{nix32, NarInfo};
use crate::formats::compression::DecodeClock;
use crate::formats::nar::{remove_restored, restore, RestoreOptions};
use crate::remote::MirrorSource;
use crate::Durability;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Thread time one substitution spent in each phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamTimes {
    /// Reading the compressed NAR from the mirror.
    pub fetch: Duration,
    /// Decompressing and writing the tree (and the final rename).
    pub restore: Duration,
    /// Hashing the NAR and comparing hash and size.
    pub verify: Duration,
}

/// A reader that adds the time spent in its inner reads to a counter it shares (the
/// decoder that owns it is a trait object).
struct Timed<R> {
    inner: R,
    spent: std::rc::Rc<std::cell::Cell<Duration>>,
}

impl<R: Read> Read for Timed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = Instant::now();
        let n = self.inner.read(buf);
        self.spent.set(self.spent.get() + start.elapsed());
        n
    }
}

/// A reader that hashes and counts what it returns, timing the hashing.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    spent: Duration,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let start = Instant::now();
        self.hasher.update(&buf[..n]);
        self.spent += start.elapsed();
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Substitutes the path `info` describes into `store` (an absolute directory), reading the
/// compressed NAR from `nar_file`. On any error nothing of the path is left in the store.
pub fn substitute(
    info: &NarInfo,
    decode: &DecodeClock,
    mirror: MirrorSource<'_>,
    nar_file: &Path,
    store: &Path,
    durability: Durability,
) -> Result<StreamTimes> {
    let final_path = store.join(&info.store_path);
    let tmp = store.join(format!("{}.tmp", info.store_path));
    let outcome = stream(
        info,
        decode,
        mirror,
        nar_file,
        &tmp,
        &final_path,
        durability,
    );
    if outcome.is_err() {
        // Best effort: the substitution's error is the one worth reporting.
        let _ = remove_restored(&tmp);
    }
    outcome.with_context(|| format!("substituting {}", info.full_path()))
}

fn stream(
    info: &NarInfo,
    decode: &DecodeClock,
    mirror: MirrorSource<'_>,
    nar_file: &Path,
    tmp: &Path,
    final_path: &Path,
    durability: Durability,
) -> Result<StreamTimes> {
    let compression = super::pack::compression_of_narinfo(&info.compression)?;
    let start = Instant::now();
    // The NAR streams from the file or the response body through the decompressor into
    // the restore, as Nix's substituter streams it: no whole download on disk first.
    let file = mirror.open(nar_file)?;
    let fetched = std::rc::Rc::new(std::cell::Cell::new(Duration::ZERO));
    let timed = Timed {
        inner: file,
        spent: std::rc::Rc::clone(&fetched),
    };
    let decoder = decode
        .decoder(compression, timed)
        .with_context(|| format!("reading {}", mirror.describe(nar_file)))?;
    let mut hashing = Hashing {
        inner: decoder,
        hasher: Sha256::new(),
        bytes: 0,
        spent: Duration::ZERO,
    };
    if tmp.exists() {
        remove_restored(tmp).with_context(|| format!("removing a stale {}", tmp.display()))?;
    }
    let opts = RestoreOptions {
        canonical: true,
        fsync: durability == Durability::Full,
    };
    restore(&mut hashing, tmp, opts)
        .map_err(anyhow::Error::new)
        .with_context(|| format!("restoring {}", mirror.describe(nar_file)))?;
    let fetch = fetched.get();
    let verify_start = Instant::now();
    let nar_hash: [u8; 32] = hashing.hasher.finalize().into();
    if hashing.bytes != info.nar_size || nar_hash != info.nar_hash {
        bail!(
            "hash mismatch: the narinfo says sha256:{} and {} bytes, the archive has sha256:{} and {} bytes",
            nix32(&info.nar_hash),
            info.nar_size,
            nix32(&nar_hash),
            hashing.bytes
        );
    }
    let verify = hashing.spent + verify_start.elapsed();
    std::fs::rename(tmp, final_path)
        .with_context(|| format!("renaming {} into place", tmp.display()))?;
    if durability == Durability::Full {
        File::open(final_path.parent().unwrap_or(Path::new("/")))
            .and_then(|d| d.sync_all())
            .context("syncing the store directory")?;
    }
    let total = start.elapsed();
    Ok(StreamTimes {
        fetch,
        restore: total.saturating_sub(fetch + verify),
        verify,
    })
}

/// Where a path's compressed NAR lies on the mirror.
pub fn nar_file(info: &NarInfo) -> Result<PathBuf> {
    let url = Path::new(&info.url);
    if url.is_absolute()
        || url
            .components()
            .any(|c| c == std::path::Component::ParentDir)
    {
        bail!("narinfo URL {:?} leaves the mirror", info.url);
    }
    Ok(url.to_path_buf())
}
