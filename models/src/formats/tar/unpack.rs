//! Unpacking one archive entry by entry: each entry is checked, its directory resolved
//! beneath the target, and its last component created with `*at` calls there.

use super::claims::{check_symlink_target, hard_link_target, Claims, Made};
use super::dirs::{open_dir_nofollow, DirCache};
use super::read::{At, Head, ReadError, TarReader};
use super::staging::{self, backup_name, created_name, start_writeback, Deferred, UndoLog};
use super::{Owners, Staging, UnpackOptions, UnpackReport};
use crate::formats::beneath::{describe_resolve_error, Beneath, RelPath};
use crate::Durability;
use anyhow::{anyhow, bail, Result};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FallocateFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use tar::EntryType;

/// Copy buffer for file data: large enough that a decompressor fills it in few calls.
const COPY_BUFFER: usize = 256 << 10;
/// The permission bits an entry may set, and of those the setuid and setgid bits.
const PERMISSION_BITS: u32 = 0o7777;
const SETID_BITS: u32 = 0o6000;

/// A failure and the entry it belongs to.
struct Failure {
    at: At,
    problem: String,
}

impl Failure {
    fn into_error(self, archive: &Path) -> anyhow::Error {
        let archive = archive.display();
        match self.at {
            At::Entry(name) => {
                anyhow!(
                    "unpacking {archive}: entry {:?}: {}",
                    String::from_utf8_lossy(&name),
                    self.problem
                )
            }
            At::After(Some(name)) => {
                anyhow!(
                    "unpacking {archive}: after entry {:?}: {}",
                    String::from_utf8_lossy(&name),
                    self.problem
                )
            }
            At::After(None) => anyhow!("unpacking {archive}: at the first entry: {}", self.problem),
        }
    }
}

fn finish_failure(e: staging::FinishError) -> Failure {
    Failure {
        at: At::Entry(e.name),
        problem: e.problem,
    }
}

impl From<ReadError> for Failure {
    fn from(e: ReadError) -> Self {
        Failure {
            at: e.at,
            problem: e.problem,
        }
    }
}

pub(super) fn unpack(
    archive: &Path,
    input: impl Read,
    dest: &Path,
    opts: UnpackOptions,
    owners: Option<Owners<'_>>,
) -> Result<UnpackReport> {
    let root = Beneath::open(dest).map_err(|e| {
        anyhow!(
            "unpacking {}: opening target {}: {}",
            archive.display(),
            dest.display(),
            std::io::Error::from(e)
        )
    })?;
    let mut unpacker = Unpacker::new(&root, opts, owners);
    let result = unpacker
        .run(&mut TarReader::new(input))
        .and_then(|()| unpacker.finish());
    match result {
        Ok(()) => {
            let sync = opts.durability == Durability::Full;
            unpacker
                .undo
                .remove_backups(&root, sync)
                .map_err(|e| finish_failure(e).into_error(archive))?;
            Ok(unpacker.report)
        }
        Err(failure) => {
            unpacker.undo.rollback(&root);
            Err(failure.into_error(archive))
        }
    }
}

struct Unpacker<'a> {
    root: &'a Beneath,
    opts: UnpackOptions,
    /// The file database of an upgrade: what the package may replace.
    owners: Option<Owners<'a>>,
    dirs: DirCache,
    undo: UndoLog,
    claims: Claims,
    deferred: Vec<Deferred>,
    report: UnpackReport,
    buf: Vec<u8>,
}

impl<'a> Unpacker<'a> {
    fn new(root: &'a Beneath, opts: UnpackOptions, owners: Option<Owners<'a>>) -> Self {
        Unpacker {
            root,
            opts,
            owners,
            dirs: DirCache::default(),
            undo: UndoLog::default(),
            claims: Claims::default(),
            deferred: Vec::new(),
            report: UnpackReport::default(),
            buf: vec![0; COPY_BUFFER],
        }
    }

    fn run(&mut self, reader: &mut TarReader<impl Read>) -> Result<(), Failure> {
        while let Some(head) = reader.next_head()? {
            self.entry(&head, reader).map_err(|e| Failure {
                at: At::Entry(head.name.clone()),
                problem: format!("{e:#}"),
            })?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Failure> {
        staging::finish(
            self.root,
            &mut self.dirs,
            &mut self.undo,
            &self.deferred,
            self.opts,
        )
        .map_err(finish_failure)
    }

    fn entry(&mut self, head: &Head, reader: &mut TarReader<impl Read>) -> Result<()> {
        let Some(path) = RelPath::parse(&head.name)? else {
            // "./": the target itself, listed by dpkg as "/.". Its mode is the caller's.
            if head.kind != EntryType::Directory {
                bail!("name denotes the target directory itself");
            }
            self.report.paths.push("/.".into());
            return Ok(());
        };
        // Old (v7) archives mark directories only by a trailing slash, as GNU tar knows.
        let old_style_dir = head.kind == EntryType::Regular && head.name.ends_with(b"/");
        match head.kind {
            EntryType::Directory => self.directory(&path, head.mode)?,
            EntryType::Regular if old_style_dir => self.directory(&path, head.mode)?,
            EntryType::Regular | EntryType::Continuous => self.file(&path, head, reader)?,
            EntryType::Symlink => self.symlink(&path, &head.link)?,
            EntryType::Link => self.hard_link(&path, &head.link)?,
            EntryType::Char => bail!("character device entries are refused"),
            EntryType::Block => bail!("block device entries are refused"),
            EntryType::Fifo => bail!("fifo entries are refused"),
            EntryType::GNUSparse => bail!("sparse file entries are not supported"),
            other => bail!(
                "entry type {:?} is not supported",
                char::from(other.as_byte())
            ),
        }
        self.report.paths.push(path.to_listed());
        Ok(())
    }

    fn directory(&mut self, path: &RelPath, mode: u32) -> Result<()> {
        self.claims.claim(path, Made::Dir)?;
        let parent = self.dirs.get(self.root, &mut self.undo, path.parent())?;
        let name = path.file_name();
        let fd = match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {
                self.undo.dir(path.as_bytes());
                open_dir_nofollow(parent, name)?
            }
            Err(Errno::EXIST) => match existing_dir(self.root, parent, path)? {
                Existing::Dir(fd) => fd,
                Existing::SymlinkToDir(fd) => {
                    // dpkg keeps a symlink to a directory where a package has a directory
                    // (merged /usr: lib -> usr/lib); entries below go through it.
                    self.dirs.remember(path.as_bytes(), fd);
                    return Ok(());
                }
            },
            Err(e) => bail!("creating directory: {}", std::io::Error::from(e)),
        };
        let mode = self.permission_bits(mode);
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
        self.dirs.remember(path.as_bytes(), fd);
        Ok(())
    }

    fn file(
        &mut self,
        path: &RelPath,
        head: &Head,
        reader: &mut TarReader<impl Read>,
    ) -> Result<()> {
        self.claims.claim(path, Made::File)?;
        let staging = self.opts.staging;
        let overwrite = self.overwrite(path);
        let parent = self.dirs.get(self.root, &mut self.undo, path.parent())?;
        let name = created_name(path.file_name(), staging);
        if clear_the_way(parent, path.file_name(), staging, overwrite)? {
            self.undo.backup(path.as_bytes());
        }
        let fd = rustix::fs::openat(
            parent,
            &name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| anyhow!("creating file: {}", std::io::Error::from(e)))?;
        self.undo.file(&with_name(path, &name));
        let mut file = File::from(fd);
        copy_data(reader, &mut file, head.size, &mut self.buf)?;
        // After the data: a write by a non-root user would clear setuid bits again.
        let mode = self.permission_bits(head.mode);
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?;
        if self.opts.durability != Durability::None {
            start_writeback(file.as_fd());
        }
        self.deferred.push(Deferred {
            path: path.clone(),
            regular: true,
        });
        self.report.files += 1;
        self.report.bytes += head.size;
        Ok(())
    }

    /// Whether a file or symlink already at `path` may be replaced: always without
    /// `refuse_overwrite`; with it, in an upgrade (the file database at hand), unless the
    /// database says another package owns it. A file no package owns is replaced, as
    /// dpkg replaces it: that is what the reinstall of a half-installed package meets,
    /// the new files its killed unpack had already renamed into place. Without the
    /// database (an install), anything in the way is refused.
    fn overwrite(&self, path: &RelPath) -> Overwrite<'a> {
        if !self.opts.refuse_overwrite {
            return Overwrite::Replace;
        }
        let Some(owners) = self.owners else {
            return Overwrite::Refuse(None);
        };
        match owners.by_path.get(&path.to_listed()) {
            Some(owner) if owner == owners.package => Overwrite::Replace,
            Some(owner) => Overwrite::Refuse(Some(owner.as_str())),
            None => Overwrite::Replace,
        }
    }

    /// The mode an entry gets: the archive's permission bits, without setuid and setgid
    /// unless the caller keeps them (the module doc's policy); stripped entries are counted.
    fn permission_bits(&mut self, mode: u32) -> u32 {
        let mode = mode & PERMISSION_BITS;
        if self.opts.keep_setid || mode & SETID_BITS == 0 {
            return mode;
        }
        self.report.setid_stripped += 1;
        mode & !SETID_BITS
    }

    fn symlink(&mut self, path: &RelPath, target: &[u8]) -> Result<()> {
        check_symlink_target(path, target)?;
        self.claims.claim(path, Made::Symlink)?;
        let staging = self.opts.staging;
        let overwrite = self.overwrite(path);
        let parent = self.dirs.get(self.root, &mut self.undo, path.parent())?;
        let name = created_name(path.file_name(), staging);
        if clear_the_way(parent, path.file_name(), staging, overwrite)? {
            self.undo.backup(path.as_bytes());
        }
        rustix::fs::symlinkat(target, parent, &name)
            .map_err(|e| anyhow!("creating symlink: {}", std::io::Error::from(e)))?;
        self.undo.file(&with_name(path, &name));
        self.deferred.push(Deferred {
            path: path.clone(),
            regular: false,
        });
        Ok(())
    }

    /// A hard link to a file earlier in this archive (dpkg links to the target's
    /// `.dpkg-new` while both wait to be renamed).
    fn hard_link(&mut self, path: &RelPath, target: &[u8]) -> Result<()> {
        let target = hard_link_target(target)?;
        if !self.claims.is_file(&target) {
            bail!(
                "hard link target {:?} is not a regular file earlier in this archive",
                String::from_utf8_lossy(target.as_bytes())
            );
        }
        self.claims.claim(path, Made::File)?;
        let staging = self.opts.staging;
        let overwrite = self.overwrite(path);
        let target_dir = self
            .root
            .open_dir(target.parent())
            .map_err(|e| anyhow!(describe_resolve_error(e)))?;
        let target_name = created_name(target.file_name(), staging);
        let parent = self.dirs.get(self.root, &mut self.undo, path.parent())?;
        let name = created_name(path.file_name(), staging);
        if clear_the_way(parent, path.file_name(), staging, overwrite)? {
            self.undo.backup(path.as_bytes());
        }
        rustix::fs::linkat(&target_dir, &target_name, parent, &name, AtFlags::empty())
            .map_err(|e| anyhow!("creating hard link: {}", std::io::Error::from(e)))?;
        self.undo.file(&with_name(path, &name));
        self.deferred.push(Deferred {
            path: path.clone(),
            regular: false,
        });
        Ok(())
    }
}

/// What may happen to a file or symlink already where an entry goes.
#[derive(Debug, Clone, Copy)]
enum Overwrite<'o> {
    Replace,
    /// dpkg's "trying to overwrite", with the owning package when the database names one.
    Refuse(Option<&'o str>),
}

enum Existing {
    Dir(OwnedFd),
    SymlinkToDir(OwnedFd),
}

/// What is at `path`, where a directory entry found something already there.
fn existing_dir(root: &Beneath, parent: BorrowedFd, path: &RelPath) -> Result<Existing> {
    let name = path.file_name();
    let stat = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Directory => Ok(Existing::Dir(open_dir_nofollow(parent, name)?)),
        FileType::Symlink => match root.open_dir(path.as_bytes()) {
            Ok(fd) => Ok(Existing::SymlinkToDir(fd)),
            Err(e) => bail!(
                "a symlink is where the directory goes, and it does not lead to a directory \
                 inside the target: {}",
                describe_resolve_error(e)
            ),
        },
        _ => bail!("a file is where the directory goes"),
    }
}

/// Prepares to create `name` in `parent`: a directory there is an error (a file never
/// replaces a directory). Without staging, an existing file or symlink is moved aside to
/// its backup name, so that a failure can put it back; returns true then. With staging it
/// stays until the rename replaces it, and only a stale `NAME.dpkg-new` from an
/// interrupted unpack is removed. With `Overwrite::Refuse`, an existing file or symlink
/// is refused instead (dpkg's "trying to overwrite").
fn clear_the_way(
    parent: BorrowedFd,
    name: &[u8],
    staging: Staging,
    overwrite: Overwrite,
) -> Result<bool> {
    let in_the_way = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
            bail!("a directory is where this entry goes")
        }
        Ok(_) => true,
        Err(Errno::NOENT) => false,
        Err(e) => bail!("looking at what is in the way: {}", std::io::Error::from(e)),
    };
    match overwrite {
        Overwrite::Refuse(Some(owner)) if in_the_way => {
            bail!("trying to overwrite a file of package {owner}")
        }
        Overwrite::Refuse(None) if in_the_way => {
            bail!("trying to overwrite a file another package installed")
        }
        _ => {}
    }
    match staging {
        Staging::Direct if in_the_way => move_aside(parent, name),
        Staging::Direct => Ok(false),
        Staging::DpkgNew => {
            match rustix::fs::unlinkat(parent, created_name(name, staging), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => Ok(false),
                Err(e) => bail!("removing a stale .dpkg-new: {}", std::io::Error::from(e)),
            }
        }
    }
}

/// Renames the file or symlink `name` to its backup name in the same directory, never
/// over an existing backup (one left by an interrupted unpack is refused, not lost).
/// Returns false when `name` vanished meanwhile: there is nothing to put back.
fn move_aside(parent: BorrowedFd, name: &[u8]) -> Result<bool> {
    let backup = backup_name(name);
    match rustix::fs::renameat_with(parent, name, parent, &backup, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(Errno::EXIST) => bail!(
            "the backup name {:?} is taken (left by an interrupted unpack?); remove it first",
            String::from_utf8_lossy(&backup)
        ),
        Err(e) => bail!(
            "moving what is in the way aside to {:?}: {}",
            String::from_utf8_lossy(&backup),
            std::io::Error::from(e)
        ),
    }
}

/// Streams the entry's data into the file.
fn copy_data(
    reader: &mut TarReader<impl Read>,
    file: &mut File,
    size: u64,
    buf: &mut [u8],
) -> Result<()> {
    if size > 0 {
        // Tell the filesystem the size up front, as dpkg does (fd_allocate_size), for
        // fewer, larger extents. A hint: filesystems without fallocate just write.
        let _ = rustix::fs::fallocate(&*file, FallocateFlags::empty(), 0, size);
    }
    loop {
        let n = reader.read_data(buf)?;
        if n == 0 {
            return Ok(());
        }
        file.write_all(&buf[..n])
            .map_err(|e| anyhow!("writing file: {e}"))?;
    }
}

/// `path` with its last component replaced by `name` (to log the staged name).
fn with_name(path: &RelPath, name: &[u8]) -> Vec<u8> {
    let parent = path.parent();
    let mut out = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        out.extend_from_slice(parent);
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}
