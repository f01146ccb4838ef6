//! Tar archives of package trees: deterministic packing and safe, staged unpacking.
//! (Being written: see the API below.)

use crate::Durability;
use anyhow::Result;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// How `unpack` makes entries visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staging {
    /// Each entry is created under its final name.
    Direct,
    /// dpkg's way: each file or symlink is written as `NAME.dpkg-new`, and after the whole
    /// archive every one is (with durability native) fsynced and renamed into place.
    DpkgNew,
}

#[derive(Debug, Clone, Copy)]
pub struct UnpackOptions {
    pub staging: Staging,
    pub durability: Durability,
}

/// What an unpack created.
#[derive(Debug, Clone, Default)]
pub struct UnpackReport {
    /// Every entry of the archive, as absolute paths inside the target ("/usr/bin/x"),
    /// in archive order: dpkg's `PKG.list`.
    pub paths: Vec<PathBuf>,
    pub files: u64,
    pub bytes: u64,
}

/// Packs `src` (a directory) into a tar stream: deterministic.
pub fn pack_tree(src: &Path, out: impl Write) -> Result<()> {
    let _ = (src, out);
    anyhow::bail!("tar packing is not written yet")
}

/// Unpacks a tar stream into `dest`, refusing hostile entries.
pub fn unpack(archive: &Path, input: impl Read, dest: &Path, opts: UnpackOptions) -> Result<UnpackReport> {
    let _ = (archive, input, dest, opts);
    anyhow::bail!("tar unpacking is not written yet")
}
