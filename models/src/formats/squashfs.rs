//! SquashFS images of package trees: one image per package, as distri ships them and as
//! snaps are, for the `overlay` (and later `fuse`) model.
//!
//! Built with Debian's libsquashfs (squashfs-tools-ng) through bindings of its writer
//! API (`squashfs/sys.rs`; the `squashfs-ng` crate links the library and reads images
//! back in tests). See `squashfs/writer.rs` for how an image is laid out.
//!
//! # Determinism
//! The same tree gives the same bytes: entries sorted by name bytes and numbered in
//! post-order, owner and group 0, every time (inodes and the superblock) 0, modes as on
//! disk (permission bits, setuid, setgid and sticky), one block-processor worker.
//!
//! # Compression
//! - [`Compression::None`] (the default, distri's choice): nothing is compressed, not
//!   file data, fragments, inodes, directories nor the id table: the writer is given a
//!   compressor that always declines, so libsquashfs stores every block with its
//!   "uncompressed" bit, as `mksquashfs -noI -noD -noF -noX` does. The superblock names
//!   gzip (a compressor id is required) and sets the `UNCOMPRESSED_*` flags; no reader
//!   ever has to decompress anything.
//! - [`Compression::Zstd`], [`Compression::Lz4`], [`Compression::Xz`]: libsquashfs's
//!   defaults for each (zstd level 15 and xz level 6 as in `mksquashfs`; lz4 without HC).
//!   A block is stored compressed only when that makes it smaller.
//!
//! Small files and file tails share fragment blocks, and identical blocks are stored
//! once, as `mksquashfs` does by default.
//!
//! # Differences from distri's and snap's images
//! No extended attributes, no hard links (a hard-linked file is packed as separate
//! files), no devices, fifos or sockets; the images are padded to 4 KiB like
//! `mksquashfs` pads them.

mod sys;
mod tree;
mod writer;

use anyhow::{bail, Context, Result};
use std::path::Path;

/// How an image's blocks are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Zstd,
    Lz4,
    Xz,
}

impl Compression {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Compression::None),
            "zstd" => Ok(Compression::Zstd),
            "lz4" => Ok(Compression::Lz4),
            "xz" => Ok(Compression::Xz),
            other => bail!("unknown compression {other:?}: use none, zstd, lz4 or xz"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
            Compression::Xz => "xz",
        }
    }
}

/// SquashFS's default data block size, and distri's.
pub const DEFAULT_BLOCK_SIZE: u32 = 128 * 1024;

/// How to build an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageOptions {
    pub compression: Compression,
    /// Data block size in bytes: a power of two from 4 KiB to 1 MiB (the format's range).
    pub block_size: u32,
    /// Clears the setuid and setgid bits of regular files (the models' packers set it:
    /// the project strips them everywhere; `harness pack` keeps them).
    pub strip_setid: bool,
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions {
            compression: Compression::None,
            block_size: DEFAULT_BLOCK_SIZE,
            strip_setid: false,
        }
    }
}

/// What [`build_image`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageReport {
    /// Inodes in the image: every directory, file and symlink, the root included.
    pub inodes: u64,
    /// The superblock's `bytes_used`: the image without its padding.
    pub bytes_used: u64,
    /// The size of the file, padded to 4 KiB.
    pub size_bytes: u64,
}

/// Builds a SquashFS image of the directory `src` at `out` (replacing it). On failure
/// the partial image is removed.
pub fn build_image(src: &Path, out: &Path, opts: &ImageOptions) -> Result<ImageReport> {
    let bs = opts.block_size;
    if !bs.is_power_of_two() || !(4096..=1024 * 1024).contains(&bs) {
        bail!("block size {bs}: must be a power of two from 4096 to 1048576");
    }
    let nodes = tree::read_tree(src).with_context(|| format!("reading {}", src.display()))?;
    let outcome = writer::write_image(&nodes, out, opts);
    if outcome.is_err() {
        let _ = std::fs::remove_file(out);
    }
    outcome.with_context(|| format!("building image {} of {}", out.display(), src.display()))
}
