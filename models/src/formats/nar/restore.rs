//! Restoring a NAR to disk: `nix-store --restore PATH` (Nix's `restorePath`), and the
//! store's canonical metadata applied on the way.
//!
//! Safety: the destination's parent is opened with [`Beneath`] and everything below is
//! created with `*at` calls relative to directory handles this restore opened itself on
//! directories it just created (`mkdirat`, then `openat(O_NOFOLLOW|O_DIRECTORY)`), passing
//! the kernel one checked name at a time. No path of more than one component is ever
//! resolved, so no symlink, from the archive or already on disk, is ever followed: the
//! guarantee `openat2(RESOLVE_BENEATH)` gives, without resolving a path per entry. Files
//! are created with `O_EXCL|O_NOFOLLOW`, so nothing existing is overwritten.
//!
//! A failed restore removes everything it created (the destination did not exist).

use super::decode::{parse, Contents, NarSink};
use super::error::{NarError, NarErrorKind};
use crate::formats::beneath::Beneath;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps, UTIME_OMIT};
use std::cell::Cell;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// How entries are written.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreOptions {
    /// The Nix store's canonical metadata (Nix's `canonicalisePathMetaData`): mode 0444,
    /// or 0555 for directories and executables, and modification time 1. Applied as each
    /// entry is finished, on the handle already open, where Nix walks the tree again with
    /// `lstat`, `chmod` and `utimes`: the same result with fewer system calls. Without it,
    /// modes are those of `nix-store --restore` (0666 or 0777 less the umask) and times
    /// are left alone.
    pub canonical: bool,
    /// fsync every file and directory (Nix's `fsync-store-paths`).
    pub fsync: bool,
}

/// What a restore wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Size of the archive read.
    pub nar_bytes: u64,
    pub files: u64,
    pub file_bytes: u64,
    pub directories: u64,
    pub symlinks: u64,
}

/// Restores the NAR read from `input` as `dest`, which must not exist (its parent must).
/// On any error, what was created is removed.
pub fn restore(
    input: impl Read,
    dest: &Path,
    opts: RestoreOptions,
) -> Result<RestoreReport, NarError> {
    let setup_error = |e: io::Error| NarError {
        offset: 0,
        path: Vec::new(),
        kind: NarErrorKind::Write(io::Error::new(
            e.kind(),
            format!("opening the parent of {}: {e}", dest.display()),
        )),
    };
    let name = dest.file_name().ok_or_else(|| {
        setup_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "destination has no file name",
        ))
    })?;
    let parent_dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = Beneath::open(parent_dir).map_err(|e| setup_error(e.into()))?;
    let mut sink = RestoreSink {
        parent: parent.root(),
        top_name: name.as_bytes(),
        stack: Vec::new(),
        opts,
        report: RestoreReport::default(),
        created_top: Cell::new(false),
    };
    match parse(input, &mut sink) {
        Ok(size) => {
            let mut report = sink.report;
            report.nar_bytes = size;
            Ok(report)
        }
        Err(e) => {
            let created = sink.created_top.get();
            drop(sink);
            if created {
                // Best effort: the archive's error is the one worth reporting.
                let _ = remove_restored(dest);
            }
            Err(e)
        }
    }
}

/// Removes a restored tree, making read-only directories writable first, as Nix's garbage
/// collector must (canonical store directories have mode 0555).
pub fn remove_restored(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_dirs_writable(path)?;
            fs::remove_dir_all(path)
        }
        other => other,
    }
}

/// Gives every directory below and including `dir` mode 0755, so the tree can be removed.
pub fn make_dirs_writable(dir: &Path) -> io::Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            make_dirs_writable(&entry.path())?;
        }
    }
    Ok(())
}

struct RestoreSink<'a> {
    parent: BorrowedFd<'a>,
    top_name: &'a [u8],
    /// Open handles of the directories being filled, innermost last.
    stack: Vec<OwnedFd>,
    opts: RestoreOptions,
    report: RestoreReport,
    /// Whether the destination exists because of this restore (and so may be removed).
    created_top: Cell<bool>,
}

const MTIME_STORE: Timestamps = Timestamps {
    last_access: Timespec {
        tv_sec: 0,
        tv_nsec: UTIME_OMIT,
    },
    last_modification: Timespec {
        tv_sec: 1,
        tv_nsec: 0,
    },
};

fn write_err(e: rustix::io::Errno) -> NarErrorKind {
    NarErrorKind::Write(e.into())
}

impl RestoreSink<'_> {
    /// The directory to create `name` in, and the name to use: the destination itself for
    /// the archive's root.
    fn place<'s, 'n: 's>(&'s self, name: &'n [u8]) -> (BorrowedFd<'s>, &'s [u8]) {
        match self.stack.last() {
            Some(dir) => (dir.as_fd(), name),
            None => (self.parent, self.top_name),
        }
    }

    fn note_created(&self) {
        self.created_top.set(true);
    }
}

impl NarSink for RestoreSink<'_> {
    fn directory(&mut self, name: &[u8]) -> Result<(), NarErrorKind> {
        let (at, name) = self.place(name);
        rustix::fs::mkdirat(at, name, Mode::from_raw_mode(0o777)).map_err(write_err)?;
        let fd = rustix::fs::openat(
            at,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(write_err);
        self.note_created();
        self.stack.push(fd?);
        self.report.directories += 1;
        Ok(())
    }

    fn end_directory(&mut self) -> Result<(), NarErrorKind> {
        let Some(dir) = self.stack.pop() else {
            return Ok(());
        };
        if self.opts.canonical {
            rustix::fs::fchmod(&dir, Mode::from_raw_mode(0o555)).map_err(write_err)?;
            rustix::fs::futimens(&dir, &MTIME_STORE).map_err(write_err)?;
        }
        if self.opts.fsync {
            rustix::fs::fsync(&dir).map_err(write_err)?;
        }
        Ok(())
    }

    fn file(
        &mut self,
        name: &[u8],
        executable: bool,
        contents: &mut Contents<'_>,
    ) -> Result<(), NarErrorKind> {
        let (at, name) = self.place(name);
        let mode = if executable { 0o777 } else { 0o666 };
        let fd = rustix::fs::openat(
            at,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(write_err)?;
        self.note_created();
        let mut file = File::from(fd);
        contents.copy_to(&mut file)?;
        if self.opts.canonical {
            let mode = if executable { 0o555 } else { 0o444 };
            rustix::fs::fchmod(&file, Mode::from_raw_mode(mode)).map_err(write_err)?;
            rustix::fs::futimens(&file, &MTIME_STORE).map_err(write_err)?;
        }
        if self.opts.fsync {
            file.sync_all().map_err(NarErrorKind::Write)?;
        }
        self.report.files += 1;
        self.report.file_bytes += contents.len();
        Ok(())
    }

    fn symlink(&mut self, name: &[u8], target: &[u8]) -> Result<(), NarErrorKind> {
        let (at, name) = self.place(name);
        rustix::fs::symlinkat(target, at, name).map_err(write_err)?;
        self.note_created();
        if self.opts.canonical {
            rustix::fs::utimensat(at, name, &MTIME_STORE, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(write_err)?;
        }
        self.report.symlinks += 1;
        Ok(())
    }
}
