//! The end of an unpack: syncing and renaming staged entries into place (dpkg's
//! `tar_deferred_extract`), or undoing everything an unpack did when it fails: removing
//! what it created and, with direct staging, putting back what it moved aside.

use super::dirs::{split, DirCache};
use super::{Staging, UnpackOptions};
use crate::formats::beneath::{describe_resolve_error, Beneath, RelPath};
use crate::Durability;
use anyhow::{anyhow, Result};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags};
use std::collections::BTreeSet;

/// dpkg's staging suffix: the new version of a file waits under this name.
pub(super) const DPKG_NEW: &[u8] = b".dpkg-new";

/// With direct staging, a file or symlink an entry replaces waits under
/// `.NAME.pkgbench-old` beside it until the unpack has succeeded (then it is removed) or
/// failed (then it is renamed back).
pub(super) const BACKUP_SUFFIX: &[u8] = b".pkgbench-old";

/// The name `name` is moved aside to while an unpack replaces it: hidden, and in the same
/// directory, so moving it aside and back are renames, never copies.
pub(super) fn backup_name(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + name.len() + BACKUP_SUFFIX.len());
    out.push(b'.');
    out.extend_from_slice(name);
    out.extend_from_slice(BACKUP_SUFFIX);
    out
}

/// One thing an unpack did to the target.
enum Undo {
    /// A file, symlink or hard link created under this name.
    File,
    Dir,
    /// What was at this path moved to its backup name.
    Backup,
}

/// What an unpack did, in order, so a failure can undo exactly that.
#[derive(Default)]
pub(super) struct UndoLog {
    done: Vec<(Vec<u8>, Undo)>,
}

impl UndoLog {
    /// A file, symlink or hard link under the name it was created with.
    pub fn file(&mut self, rel: &[u8]) {
        self.done.push((rel.to_vec(), Undo::File));
    }

    pub fn dir(&mut self, rel: &[u8]) {
        self.done.push((rel.to_vec(), Undo::Dir));
    }

    /// What was at `rel` now waits under its backup name.
    pub fn backup(&mut self, rel: &[u8]) {
        self.done.push((rel.to_vec(), Undo::Backup));
    }

    /// Undoes everything recorded, newest first: directories are empty by the time they
    /// are reached, and an entry created over a backup is gone before the backup is
    /// renamed back. Best effort: a directory that is not empty (it holds something
    /// already renamed into place) stays, and nothing else is touched.
    pub fn rollback(&self, root: &Beneath) {
        for (rel, undo) in self.done.iter().rev() {
            let (parent, name) = split(rel);
            let Ok(parent) = root.open_dir(parent) else {
                continue;
            };
            let _ = match undo {
                Undo::File => rustix::fs::unlinkat(&parent, name, AtFlags::empty()),
                Undo::Dir => rustix::fs::unlinkat(&parent, name, AtFlags::REMOVEDIR),
                Undo::Backup => rustix::fs::renameat(&parent, backup_name(name), &parent, name),
            };
        }
    }

    /// After a successful unpack: removes every backup, for good. With `sync`, the
    /// directories that held them are synced, as `Durability::Full` syncs every change.
    /// Nothing is rolled back when this fails: the package is complete, and the error
    /// names the backup left behind.
    pub fn remove_backups(&self, root: &Beneath, sync: bool) -> Result<(), FinishError> {
        let mut parents = BTreeSet::new();
        for (rel, undo) in &self.done {
            if matches!(undo, Undo::Backup) {
                remove_backup(root, rel).map_err(|problem| FinishError {
                    name: rel.clone(),
                    problem,
                })?;
                parents.insert(split(rel).0);
            }
        }
        if sync {
            for parent in parents {
                sync_dir(root, parent)?;
            }
        }
        Ok(())
    }

    /// Parents of the directories this unpack created.
    fn dir_parents(&self) -> impl Iterator<Item = &[u8]> {
        self.done
            .iter()
            .filter(|(_, undo)| matches!(undo, Undo::Dir))
            .map(|(rel, _)| split(rel).0)
    }
}

/// Removes the backup of `rel`, whose replacement is in place.
fn remove_backup(root: &Beneath, rel: &[u8]) -> Result<(), String> {
    let (parent, name) = split(rel);
    let backup = backup_name(name);
    root.open_dir(parent)
        .map_err(describe_resolve_error)
        .and_then(|dir| {
            rustix::fs::unlinkat(&dir, &backup, AtFlags::empty())
                .map_err(|e| std::io::Error::from(e).to_string())
        })
        .map_err(|e| {
            format!(
                "unpacked, but the replaced file's backup {:?} could not be removed and is \
                 left there: {e}",
                String::from_utf8_lossy(&backup)
            )
        })
}

/// An entry whose file must be synced or renamed after the whole archive.
pub(super) struct Deferred {
    /// The entry's final path.
    pub path: RelPath,
    /// A regular file with data of its own (not a symlink or hard link): synced.
    pub regular: bool,
}

/// Why finishing failed, for the entry it names.
pub(super) struct FinishError {
    /// The entry's path, or the directory's ("." for the target).
    pub name: Vec<u8>,
    pub problem: String,
}

/// The name an entry is created under: `NAME.dpkg-new` when staging, else `NAME`.
pub(super) fn created_name(name: &[u8], staging: Staging) -> Vec<u8> {
    let mut out = name.to_vec();
    if staging == Staging::DpkgNew {
        out.extend_from_slice(DPKG_NEW);
    }
    out
}

/// Kicks off writeback of a file just written, so its data goes to disk while later
/// entries are unpacked and the fsync at the end has little left to wait for.
pub(super) fn start_writeback(fd: BorrowedFd) {
    // SAFETY: sync_file_range only reads its integer arguments; the fd is open.
    // The result is ignored as dpkg ignores it: this is a hint, the fsync comes later.
    unsafe {
        libc::sync_file_range(fd.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Makes the unpacked entries durable (per `opts.durability`) and, when staging, renames
/// each into place in archive order.
///
/// Every file is synced before any is renamed (dpkg interleaves fsync and rename per
/// file): the same system calls, but an I/O error in a sync then leaves nothing renamed,
/// so only a crash or a failing rename can leave part of a package visible.
pub(super) fn finish(
    root: &Beneath,
    dirs: &mut DirCache,
    undo: &mut UndoLog,
    deferred: &[Deferred],
    opts: UnpackOptions,
) -> Result<(), FinishError> {
    if opts.durability != Durability::None {
        writeback_barrier(root, dirs, undo, deferred, opts.staging);
        for entry in deferred.iter().filter(|e| e.regular) {
            sync_file(root, dirs, undo, entry, opts.staging).map_err(|e| failed(entry, e))?;
        }
    }
    if opts.staging == Staging::DpkgNew {
        rename_all(root, dirs, undo, deferred)?;
    }
    if opts.durability == Durability::Full {
        sync_dirs(root, undo, deferred)?;
    }
    Ok(())
}

/// dpkg's `tar_writeback_barrier`: waits for the writeback started after each file was
/// written, before the fsyncs, so they find their data already on its way.
fn writeback_barrier(
    root: &Beneath,
    dirs: &mut DirCache,
    undo: &mut UndoLog,
    deferred: &[Deferred],
    staging: Staging,
) {
    for entry in deferred.iter().filter(|e| e.regular) {
        // Errors are ignored, as dpkg does: the fsync that follows reports them.
        if let Ok(fd) = open_created(root, dirs, undo, &entry.path, staging) {
            // SAFETY: as in `start_writeback`.
            unsafe {
                libc::sync_file_range(fd.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WAIT_BEFORE);
            }
        }
    }
}

fn sync_file(
    root: &Beneath,
    dirs: &mut DirCache,
    undo: &mut UndoLog,
    entry: &Deferred,
    staging: Staging,
) -> Result<()> {
    let fd = open_created(root, dirs, undo, &entry.path, staging)?;
    rustix::fs::fsync(&fd).map_err(|e| anyhow!("fsync: {}", std::io::Error::from(e)))
}

/// Reopens a file this unpack wrote, as dpkg does (it closes each file after writing).
/// Read-only is enough for fsync and works on files whose mode forbids writing.
fn open_created(
    root: &Beneath,
    dirs: &mut DirCache,
    undo: &mut UndoLog,
    path: &RelPath,
    staging: Staging,
) -> Result<OwnedFd> {
    let parent = dirs.get(root, undo, path.parent())?;
    let name = created_name(path.file_name(), staging);
    rustix::fs::openat(
        parent,
        &name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| anyhow!("reopening to sync: {}", std::io::Error::from(e)))
}

fn rename_all(
    root: &Beneath,
    dirs: &mut DirCache,
    undo: &mut UndoLog,
    deferred: &[Deferred],
) -> Result<(), FinishError> {
    for (done, entry) in deferred.iter().enumerate() {
        rename_into_place(root, dirs, undo, &entry.path).map_err(|e| FinishError {
            name: entry.path.as_bytes().to_vec(),
            problem: format!(
                "renaming into place: {e:#}; {done} of {} entries were already in place, so the \
                 package is partially installed",
                deferred.len()
            ),
        })?;
    }
    Ok(())
}

fn rename_into_place(
    root: &Beneath,
    dirs: &mut DirCache,
    undo: &mut UndoLog,
    path: &RelPath,
) -> Result<()> {
    let parent = dirs.get(root, undo, path.parent())?;
    let staged = created_name(path.file_name(), Staging::DpkgNew);
    rustix::fs::renameat(parent, &staged, parent, path.file_name())
        .map_err(|e| anyhow!("{}", std::io::Error::from(e)))
}

/// Durability::Full: also syncs every directory whose entries changed, so the names
/// (not only the data) survive a crash. dpkg does not do this.
fn sync_dirs(root: &Beneath, undo: &UndoLog, deferred: &[Deferred]) -> Result<(), FinishError> {
    let mut parents: BTreeSet<&[u8]> = deferred.iter().map(|e| e.path.parent()).collect();
    parents.extend(undo.dir_parents());
    for parent in parents {
        sync_dir(root, parent)?;
    }
    Ok(())
}

/// Syncs directory `rel` ("" for the target) of the target.
fn sync_dir(root: &Beneath, rel: &[u8]) -> Result<(), FinishError> {
    root.open_dir_readable(rel)
        .map_err(describe_resolve_error)
        .and_then(|fd| {
            rustix::fs::fsync(fd.as_fd()).map_err(|e| format!("fsync: {}", std::io::Error::from(e)))
        })
        .map_err(|problem| FinishError {
            name: if rel.is_empty() {
                b".".to_vec()
            } else {
                rel.to_vec()
            },
            problem: format!("syncing directory: {problem}"),
        })
}

fn failed(entry: &Deferred, e: anyhow::Error) -> FinishError {
    FinishError {
        name: entry.path.as_bytes().to_vec(),
        problem: format!("{e:#}"),
    }
}
