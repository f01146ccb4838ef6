//! Tar archives of package trees: deterministic packing and safe, staged unpacking. This
//! is the `hooks` model's `data.tar`, unpacked the way dpkg unpacks it (dpkg's
//! `src/main/archives.c`: `tarobject`, `tar_deferred_extract`).
//!
//! # Packing
//! [`pack_tree`] writes the same bytes for the same tree: entries sorted by path bytes,
//! owner root, mtime 0, modes as on disk, GNU long names (see `tar/pack.rs`).
//!
//! # Unpacking untrusted archives
//! [`unpack`] streams the archive (nothing but the list of names is held in memory) and
//! writes nothing outside `dest`:
//! - names are normalised (`./`, `//`, `.` dropped); empty, absolute and `..` names are
//!   refused;
//! - the directory of every entry is resolved with `openat2(RESOLVE_BENEATH |
//!   RESOLVE_NO_MAGICLINKS)` from `dest`, so no symlink, whether already in `dest` or
//!   unpacked earlier, leads a write outside; the entry itself is created with `*at`
//!   calls in that directory (`O_CREAT|O_EXCL|O_NOFOLLOW`, `symlinkat`, `linkat`,
//!   `renameat`), so a symlink in the last component is never followed (see
//!   [`beneath`](crate::formats::beneath));
//! - symlinks may point anywhere absolute (`/lib64/ld-linux-x86-64.so.2` means a path in
//!   the installed root, as with `dpkg --root`) but not above `dest` through `..`;
//! - hard links must name a regular file earlier in the same archive (not absolute, no
//!   `..`, not a file already in `dest`);
//! - devices, fifos, sparse and other special entries are refused;
//! - a truncated archive (short data, a cut header, a missing end-of-archive block) or a
//!   corrupt header (bad checksum or number fields) is refused;
//! - so that both stagings unpack the same tree, a name listed twice (except a
//!   directory), a path below a file or symlink of the same archive, and names ending in
//!   `.dpkg-new` or `.pkgbench-old` (the names staging and backups use) are refused.
//!
//! What is already in `dest`: a directory where a directory goes is kept and gets the
//! archive's mode; a symlink to a directory inside `dest` is kept (merged /usr) and
//! entries below go through it; a file or symlink where a file or symlink goes is
//! replaced; anything where a directory goes, or a directory where a file goes, is an
//! error. Directories an archive needs but does not list are created with mode 0755.
//! With [`UnpackOptions::refuse_overwrite`] an existing file or symlink is refused
//! instead (dpkg's "trying to overwrite"), except, in [`unpack_upgrade`], one that no
//! other package owns: an upgrade replaces its own files and files no package owns (as
//! dpkg does; a half-installed package's reinstall meets its own new files there),
//! never another package's (the error then names the owner).
//!
//! Errors read `unpacking ARCHIVE: entry "NAME": PROBLEM`.
//!
//! # Staging and durability
//! - [`Staging::DpkgNew`]: each file, symlink and hard link is created as
//!   `NAME.dpkg-new` (a stale one removed first); directories are created directly.
//!   After the whole archive, each staged entry is renamed into place, in archive order.
//! - [`Staging::Direct`]: each entry is created under its final name. A file or symlink
//!   it replaces is first renamed to `.NAME.pkgbench-old` in the same directory (refused
//!   if that name is taken, say by an interrupted unpack), and the backups are removed
//!   once the whole archive is unpacked (and synced).
//!
//! With [`Durability::Native`] (dpkg's default) each file gets `sync_file_range(WRITE)`
//! right after it is written, and after the archive a writeback barrier
//! (`SYNC_FILE_RANGE_WAIT_BEFORE`) and an `fsync` of every file before the renames.
//! All files are synced before the first rename, where dpkg interleaves fsync and rename
//! per file: the same system calls, but an I/O error while syncing leaves nothing renamed.
//! [`Durability::Full`] also syncs every directory whose entries changed.
//! [`Durability::None`] is `dpkg --force-unsafe-io`: no syncs at all. `Direct` syncs the
//! same way (without renames), so the two stagings differ only in staging.
//!
//! # Failure
//! No partial package is left behind: when any entry fails, everything this unpack created
//! (`.dpkg-new` files, or with `Direct` the entries themselves, and the directories it
//! made, deepest first) is removed and, with `Direct`, every file or symlink it replaced
//! is renamed back from its backup, so the target is as it was. With `DpkgNew` nothing is
//! renamed into place before every file is written (and, unless `None`, synced); the one
//! remaining window is the rename loop itself: a crash there, or a failing rename, leaves
//! the entries renamed so far in place next to the old versions of the rest. With
//! `Direct`, a crash leaves the new entries and the backups; a failure to remove a backup
//! after success is reported, naming it, and leaves the new package in place.
//!
//! # Ownership, modes, times
//! Files belong to the user running the unpack (the harness runs as root on package
//! content it generated; archives say root anyway). Modes are set with `fchmod` after
//! the data is written, so umask does not apply. Setuid and setgid bits are stripped:
//! a hostile package unpacked by root must not leave a root-owned setuid program behind.
//! They are cleared on files and on directories alike (setgid on a directory would hand
//! its group to everything created in it later), and each entry stripped is counted in
//! [`UnpackReport::setid_stripped`]; [`UnpackOptions::keep_setid`] keeps them, as dpkg
//! does. The sticky bit (`/tmp`'s 1777) is kept. Modification times are not restored
//! (packed archives carry 0, and view digests do not include them).

mod claims;
mod dirs;
mod pack;
mod read;
mod staging;
mod unpack;

use crate::Durability;
use anyhow::Result;
use std::collections::HashMap;
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
    /// dpkg's check against its file database: an entry whose path already holds a file
    /// or symlink (installed by another package) is refused, "trying to overwrite", and
    /// the archive is rolled back. Off, an existing file or symlink is replaced.
    pub refuse_overwrite: bool,
    /// Keep setuid and setgid bits. Off (the default policy for untrusted packages),
    /// they are cleared on files and directories and counted in
    /// [`UnpackReport::setid_stripped`].
    pub keep_setid: bool,
}

/// dpkg's file database as an upgrade's unpack consults it: who owns what is already
/// in the target.
#[derive(Debug, Clone, Copy)]
pub struct Owners<'a> {
    /// The package being unpacked: a file or symlink it owns (its installed version's)
    /// is replaced even with [`UnpackOptions::refuse_overwrite`].
    pub package: &'a str,
    /// Installed paths ("/usr/bin/x", as [`UnpackReport::paths`] lists them) and the
    /// package that owns each. Files and symlinks have one owner; for a directory that
    /// several packages list, any of them.
    pub by_path: &'a HashMap<PathBuf, String>,
}

/// What an unpack created.
#[derive(Debug, Clone, Default)]
pub struct UnpackReport {
    /// Every entry of the archive, as absolute paths inside the target ("/usr/bin/x"),
    /// in archive order: dpkg's `PKG.list`. A `./` entry is listed as "/.".
    pub paths: Vec<PathBuf>,
    /// Regular file entries (hard links not counted) and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// Files and directories whose setuid or setgid bits were cleared (zero with
    /// [`UnpackOptions::keep_setid`]).
    pub setid_stripped: u64,
}

/// Packs `src` (a directory) into a tar stream: deterministic. Only directories, regular
/// files and symlinks can be packed; hard-linked files are packed as separate files.
pub fn pack_tree(src: &Path, out: impl Write) -> Result<()> {
    pack::pack_tree(src, out)
}

/// Unpacks a tar stream into `dest` (an existing directory), refusing hostile entries;
/// `archive` names the archive in messages. See the module documentation.
pub fn unpack(
    archive: &Path,
    input: impl Read,
    dest: &Path,
    opts: UnpackOptions,
) -> Result<UnpackReport> {
    unpack::unpack(archive, input, dest, opts, None)
}

/// Unpacks a new version of an installed package over the old one: as [`unpack`], but a
/// file or symlink that `owners` says the package owns is replaced rather than refused.
pub fn unpack_upgrade(
    archive: &Path,
    input: impl Read,
    dest: &Path,
    opts: UnpackOptions,
    owners: Owners<'_>,
) -> Result<UnpackReport> {
    unpack::unpack(archive, input, dest, opts, Some(owners))
}
