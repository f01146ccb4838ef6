//! The FUSE side of the daemon: fuser's `Filesystem` over the [`Union`], read-only.
//!
//! What makes it fast, each a knob of [`FuseOptions`] so its effect can be measured:
//! - **worker threads**: fuser's multi-threaded session loop (`Config::n_threads`), each
//!   thread with its own `/dev/fuse` descriptor (`clone_fd`, `FUSE_DEV_IOC_CLONE`), so
//!   requests of parallel readers are served in parallel;
//! - **timeouts**: entries and attributes of image content never change (images are
//!   immutable), so the kernel may cache them "forever" as distri does (one year here);
//!   a new image, or an upgrade's replaced one, invalidates what it changes (see
//!   `union`);
//! - **negative entries**: a miss is answered with node 0 and the entry timeout, which the
//!   kernel keeps as a negative dentry: the next identical miss never reaches us;
//! - **keep_cache** on open (`FOPEN_KEEP_CACHE`): the page cache of a file survives its
//!   close; and `FOPEN_CACHE_DIR` on opendir keeps directory listings in the page cache;
//! - **readahead and request size**: `max_readahead` as large as the kernel allows and
//!   `FUSE_MAX_PAGES` (fuser asks for it), so a read request carries up to 1 MiB;
//! - **readdirplus** (`FUSE_DO_READDIRPLUS` with `FUSE_READDIRPLUS_AUTO`): a listing
//!   carries every entry's attributes, sparing one lookup per entry of a walk;
//! - **zero-message open** (`FUSE_NO_OPEN_SUPPORT`, `FUSE_NO_OPENDIR_SUPPORT`): the first
//!   `OPEN` and `OPENDIR` are answered `ENOSYS`, after which the kernel opens files and
//!   directories without asking (with keep-cache and cache-dir) and sends no `RELEASE`:
//!   two round trips fewer per file a walk reads, the kernel's own way of saying "this
//!   filesystem keeps no per-open state";
//! - `FUSE_PARALLEL_DIROPS` (lookups in one directory in parallel) and
//!   `FUSE_CACHE_SYMLINKS` (symlink targets in the page cache).
//!
//! - **passthrough** (`FUSE_PASSTHROUGH`, Linux 6.9; off by default, on in the
//!   `fuse-passthrough` model): an open of a regular file of at least
//!   `passthrough_min_bytes` is answered with a backing file, the same file in the
//!   kernel's own mount of the image (an image added with a backing directory, see
//!   `union`), registered once per node while it is open (`FUSE_DEV_IOC_BACKING_OPEN`;
//!   the kernel refuses two backing files for one inode) and kept until the daemon's
//!   caches are emptied. Its reads, mmap and splice then never reach the daemon. Passthrough needs the `OPEN` and `RELEASE` messages,
//!   so with it files are opened by message (directories still are not), and a smaller
//!   file, or one of an image without a backing directory, is served by the daemon's
//!   reads as without passthrough.
//!
//! Where it differs from distri's daemon (Go, jacobsa/fuse): one process for harness and
//! daemon, no write support for `/ro` at all, no xattrs; distri has no passthrough (a
//! file's bytes are a range inside an image, not a file the kernel could read directly:
//! passthrough needs the kernel's own mount of each image).

use super::image::Kind;
use super::union::{Attr, Union};
use fuser::BackingId;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEntry, ReplyOpen, ReplyStatfs, Request,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

/// The daemon's speed knobs. `Default` turns every one on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuseOptions {
    /// FUSE worker threads (1: fuser's single-threaded loop).
    pub threads: usize,
    /// How long the kernel may keep entries and attributes.
    pub entry_timeout: Duration,
    /// Answer misses with a cacheable negative entry.
    pub negative_entries: bool,
    /// `FOPEN_KEEP_CACHE` on files and `FOPEN_CACHE_DIR` on directories.
    pub keep_cache: bool,
    /// Readahead requested from the kernel, in bytes (it may allow less).
    pub max_readahead: u32,
    /// Ask for `FUSE_DO_READDIRPLUS`.
    pub readdirplus: bool,
    /// Zero-message open: answer `OPEN` and `OPENDIR` with `ENOSYS` once, so the kernel
    /// stops sending them (and their `RELEASE`s) and opens with keep-cache by itself.
    /// Only with `keep_cache`, since the kernel's own opens always keep the cache.
    /// With `passthrough` only directories are opened without a message.
    pub zero_message_open: bool,
    /// Pass opens of regular files through to backing files (`FUSE_PASSTHROUGH`).
    pub passthrough: bool,
    /// With `passthrough`, only files of at least this many bytes pass through.
    pub passthrough_min_bytes: u64,
    /// Let the kernel read ahead in the image files the daemon reads (see
    /// `Union::with_image_readahead`).
    pub image_readahead: bool,
}

/// Entries and attributes of immutable images: as good as forever.
pub const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

impl Default for FuseOptions {
    fn default() -> Self {
        FuseOptions {
            threads: 4,
            entry_timeout: FOREVER,
            negative_entries: true,
            keep_cache: true,
            max_readahead: 1 << 20,
            readdirplus: true,
            zero_message_open: true,
            passthrough: false,
            passthrough_min_bytes: 0,
            image_readahead: true,
        }
    }
}

impl FuseOptions {
    /// The settings as `KEY=VALUE` words, the form [`FuseOptions::set`] reads: how the
    /// daemon process gets them on its command line.
    pub fn to_words(&self) -> Vec<String> {
        vec![
            format!("threads={}", self.threads),
            format!("entry_timeout_ms={}", self.entry_timeout.as_millis()),
            format!("negative_entries={}", self.negative_entries),
            format!("keep_cache={}", self.keep_cache),
            format!("max_readahead={}", self.max_readahead),
            format!("readdirplus={}", self.readdirplus),
            format!("zero_message_open={}", self.zero_message_open),
            format!("passthrough={}", self.passthrough),
            format!("passthrough_min_bytes={}", self.passthrough_min_bytes),
            format!("image_readahead={}", self.image_readahead),
        ]
    }

    /// Sets one setting from a `KEY=VALUE` word (keys as [`FuseOptions::to_words`]
    /// writes them; booleans `true`/`false`/`on`/`off`): the daemon's command line and
    /// `harness run --fuse-option`.
    pub fn set(&mut self, word: &str) -> anyhow::Result<()> {
        use anyhow::{bail, Context};
        let Some((key, value)) = word.split_once('=') else {
            bail!("fuse option {word:?} is not KEY=VALUE");
        };
        let number = || -> anyhow::Result<u64> {
            value
                .parse::<u64>()
                .with_context(|| format!("fuse option {key}: {value:?} is not a number"))
        };
        let flag = || -> anyhow::Result<bool> {
            match value {
                "true" | "on" | "1" => Ok(true),
                "false" | "off" | "0" => Ok(false),
                _ => bail!("fuse option {key}: {value:?} is not true or false"),
            }
        };
        match key {
            "threads" => {
                let n = number()?;
                if !(1..=256).contains(&n) {
                    bail!("fuse option threads: {n} is not between 1 and 256");
                }
                self.threads = n as usize;
            }
            "entry_timeout_ms" => self.entry_timeout = Duration::from_millis(number()?),
            "negative_entries" => self.negative_entries = flag()?,
            "keep_cache" => self.keep_cache = flag()?,
            "max_readahead" => {
                self.max_readahead = u32::try_from(number()?)
                    .with_context(|| format!("fuse option max_readahead: {value} is too large"))?
            }
            "readdirplus" => self.readdirplus = flag()?,
            "zero_message_open" => self.zero_message_open = flag()?,
            "passthrough" => self.passthrough = flag()?,
            "passthrough_min_bytes" => self.passthrough_min_bytes = number()?,
            "image_readahead" => self.image_readahead = flag()?,
            _ => bail!(
                "unknown fuse option {key:?} (known: threads, entry_timeout_ms, negative_entries, keep_cache, max_readahead, readdirplus, zero_message_open, passthrough, passthrough_min_bytes, image_readahead)"
            ),
        }
        Ok(())
    }
}

/// What the kernel answered to the request for `FUSE_PASSTHROUGH` at `FUSE_INIT`.
#[derive(Debug, Default)]
pub struct PassthroughState(AtomicU8);

impl PassthroughState {
    // 0, the default: not asked for, or no FUSE_INIT yet.
    const GRANTED: u8 = 1;
    const REFUSED: u8 = 2;

    fn set(&self, state: u8) {
        self.0.store(state, Ordering::SeqCst);
    }

    /// Whether the kernel granted passthrough.
    pub fn granted(&self) -> bool {
        self.0.load(Ordering::SeqCst) == Self::GRANTED
    }

    /// `off` (not asked for, or no `FUSE_INIT` yet), `granted` or `refused`.
    pub fn word(&self) -> &'static str {
        match self.0.load(Ordering::SeqCst) {
            Self::GRANTED => "granted",
            Self::REFUSED => "refused",
            _ => "off",
        }
    }
}

/// A node's backing file: the kernel's id of it and the image whose file it is (an
/// upgrade may give the node another image's file).
#[derive(Debug)]
struct Backing {
    id: BackingId,
    image: Arc<super::image::Image>,
}

/// The backing files registered with the kernel, by node. Kept after a node's last
/// close, as the kernel keeps an inode and its dentry: the next open of the node is one
/// message, not a path walk in the image's mount and a registration. Emptied with the
/// daemon's other caches (`forget`), which also lets the kernel mounts go.
#[derive(Debug, Default)]
pub struct BackingCache(Mutex<HashMap<u64, Backing>>);

impl BackingCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Backing>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes every backing file (ids of nodes open now stay valid in the kernel until
    /// their last close: it holds its own reference).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Closes the backing files of images `served` says the union no longer reads (an
    /// upgrade replaced them), so that their kernel mounts can go.
    pub fn retain_served(&self, served: impl Fn(&Arc<super::image::Image>) -> bool) {
        self.lock().retain(|_, b| served(&b.image));
    }

    /// Backing files registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The file handle of an open that passed through (0: one served by our reads). Its
/// `RELEASE` needs nothing: the backing file stays registered (see [`BackingCache`]).
const PASSED_THROUGH: FileHandle = FileHandle(1);

/// fuser's filesystem over the union.
pub struct UnionFs {
    pub union: Arc<Union>,
    pub options: FuseOptions,
    /// Set at `FUSE_INIT`: whether passthrough opens may be answered.
    pub passthrough: Arc<PassthroughState>,
    /// `READ` requests answered: what passthrough spares (the daemon's `stats`).
    pub reads: Arc<AtomicU64>,
    /// Backing files registered, by node (see [`BackingCache`]).
    pub backings: Arc<BackingCache>,
}

fn errno(e: &anyhow::Error) -> Errno {
    // An image that cannot be read is an I/O error to the reader; the cause is logged
    // nowhere else, so it goes to stderr once per failing request.
    eprintln!("pkgbench fuse: {e:#}");
    Errno::EIO
}

fn file_attr(ino: u64, a: &Attr) -> FileAttr {
    let time = UNIX_EPOCH + Duration::from_secs(u64::from(a.mtime));
    let kind = match a.kind {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
    };
    FileAttr {
        ino: INodeNo(ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: time,
        mtime: time,
        ctime: time,
        crtime: time,
        kind,
        perm: a.mode,
        nlink: a.nlink.max(1),
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        // The image's block size: programs size their reads by st_blksize.
        blksize: 128 * 1024,
        flags: 0,
    }
}

impl UnionFs {
    pub fn new(union: Arc<Union>, options: FuseOptions) -> UnionFs {
        UnionFs {
            union,
            options,
            passthrough: Arc::default(),
            reads: Arc::default(),
            backings: Arc::default(),
        }
    }

    /// Whether directory opens are left to the kernel (see
    /// [`FuseOptions::zero_message_open`]).
    fn zero_message_open(&self) -> bool {
        self.options.zero_message_open && self.options.keep_cache
    }

    /// Whether file opens are left to the kernel too: not when they may pass through.
    fn zero_message_file_open(&self) -> bool {
        self.zero_message_open() && !self.options.passthrough
    }

    /// Answers an open of file `ino` with its backing file, if it has one and is large
    /// enough; gives the reply back when the daemon is to serve the reads itself.
    fn open_passthrough(&self, ino: u64, reply: ReplyOpen) -> Option<ReplyOpen> {
        if !self.passthrough.granted() {
            return Some(reply);
        }
        let Some((file, path)) = self.union.file_path(ino) else {
            // Not a file of the tree (an upgrade took it out): our reads serve it.
            return Some(reply);
        };
        if file.loc.size < self.options.passthrough_min_bytes {
            return Some(reply);
        }
        let Some(root) = &file.image.backing else {
            return Some(reply);
        };
        let mut backings = self.backings.lock();
        if let Some(b) = backings.get(&ino) {
            if Arc::ptr_eq(&b.image, &file.image) {
                reply.opened_passthrough(PASSED_THROUGH, FopenFlags::empty(), &b.id);
                return None;
            }
        }
        let backing_path = root.join(&path);
        let opened = std::fs::File::open(&backing_path)
            .map_err(|e| {
                anyhow::anyhow!("opening the backing file {}: {e}", backing_path.display())
            })
            .and_then(|f| {
                reply.open_backing(&f).map_err(|e| {
                    anyhow::anyhow!(
                        "registering the backing file {}: {e}",
                        backing_path.display()
                    )
                })
            });
        match opened {
            Ok(id) => {
                reply.opened_passthrough(PASSED_THROUGH, FopenFlags::empty(), &id);
                // A node an upgrade gave another image's file while a reader held the
                // old one gets the new file here; the kernel refuses this open (EBUSY)
                // until the old one is closed, as it refuses two backing files per inode.
                backings.insert(
                    ino,
                    Backing {
                        id,
                        image: file.image.clone(),
                    },
                );
            }
            Err(e) => reply.error(errno(&e)),
        }
        None
    }

    fn cache_flags(&self, dir: bool) -> FopenFlags {
        match (self.options.keep_cache, dir) {
            (false, _) => FopenFlags::empty(),
            (true, false) => FopenFlags::FOPEN_KEEP_CACHE,
            (true, true) => FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
        }
    }

    /// `.` and `..` first, then the children from index `offset - 2`.
    fn dot_entries(&self, ino: u64) -> [(u64, &'static [u8]); 2] {
        let parent = self.union.parent(ino).unwrap_or(ino);
        [(ino, b"."), (parent, b"..")]
    }
}

thread_local! {
    /// Each worker thread's read buffer, kept between requests: allocating and zeroing a
    /// fresh buffer of up to 1 MiB for every read request was a visible part of a warm
    /// read (a page-cache miss of ours is a memcpy-bound request).
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Entries of one readdir reply: a page of the kernel's buffer holds far fewer.
const LIST_BATCH: usize = 512;

impl Filesystem for UnionFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let mut wanted = InitFlags::FUSE_ASYNC_READ
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_CACHE_SYMLINKS;
        if self.options.readdirplus {
            wanted |= InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO;
        }
        if self.zero_message_open() {
            wanted |= InitFlags::FUSE_NO_OPENDIR_SUPPORT;
        }
        if self.zero_message_file_open() {
            wanted |= InitFlags::FUSE_NO_OPEN_SUPPORT;
        }
        if self.options.passthrough {
            // The backing files are on squashfs (stacking depth 0): one level above it.
            let granted = config.capabilities().contains(InitFlags::FUSE_PASSTHROUGH)
                && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
                && config.set_max_stack_depth(1).is_ok();
            self.passthrough.set(if granted {
                PassthroughState::GRANTED
            } else {
                PassthroughState::REFUSED
            });
        }
        // Ask for each capability the kernel has; one it lacks is simply not used.
        let available = config.capabilities() & wanted;
        let _ = config.add_capabilities(available);
        if let Err(nearest) = config.set_max_readahead(self.options.max_readahead) {
            let _ = config.set_max_readahead(nearest);
        }
        // Readahead and reads proceed in the background: let many be in flight.
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let ttl = self.options.entry_timeout;
        match self.union.lookup(parent.0, name.as_bytes()) {
            Ok(Some((ino, attr))) => reply.entry(&ttl, &file_attr(ino, &attr), Generation(0)),
            Ok(None) if self.options.negative_entries => {
                // Node 0 with a timeout: the kernel keeps a negative dentry.
                let mut none = file_attr(
                    0,
                    &Attr {
                        kind: Kind::File,
                        mode: 0,
                        uid: 0,
                        gid: 0,
                        mtime: 0,
                        nlink: 1,
                        size: 0,
                    },
                );
                none.ino = INodeNo(0);
                reply.entry(&ttl, &none, Generation(0));
            }
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.union.attr(ino.0) {
            Some(a) => reply.attr(&self.options.entry_timeout, &file_attr(ino.0, &a)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.union.symlink(ino.0) {
            Some(target) => reply.data(&target),
            None => reply.error(Errno::EINVAL),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if self.zero_message_file_open() {
            // The kernel takes ENOSYS as "never ask again" and opens every file itself
            // with FOPEN_KEEP_CACHE; the mount is read-only, so writes are refused there.
            return reply.error(Errno::ENOSYS);
        }
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.union.attr(ino.0) {
            Some(a) if a.kind == Kind::File => {
                if let Some(reply) = self.open_passthrough(ino.0, reply) {
                    reply.opened(FileHandle(0), self.cache_flags(false))
                }
            }
            Some(_) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let Some(file) = self.union.file(ino.0) else {
            return reply.error(Errno::EISDIR);
        };
        let want = (size as u64).min(file.loc.size.saturating_sub(offset)) as usize;
        READ_BUFFER.with_borrow_mut(|buf| {
            if buf.len() < want {
                buf.resize(want, 0);
            }
            match file.image.read_file(&file.loc, offset, &mut buf[..want]) {
                Ok(n) => reply.data(&buf[..n]),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.zero_message_open() {
            // As for files: the kernel opens directories itself, with FOPEN_CACHE_DIR.
            return reply.error(Errno::ENOSYS);
        }
        match self.union.attr(ino.0) {
            Some(a) if a.kind == Kind::Dir => reply.opened(FileHandle(0), self.cache_flags(true)),
            Some(_) => reply.error(Errno::ENOTDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut next = offset;
        for (ino, name) in self.dot_entries(ino.0).into_iter().skip(offset as usize) {
            next += 1;
            if reply.add(
                INodeNo(ino),
                next,
                FileType::Directory,
                OsStr::from_bytes(name),
            ) {
                return reply.ok();
            }
        }
        loop {
            let batch = match self.union.list(ino.0, next as usize - 2, LIST_BATCH) {
                Ok(b) => b,
                Err(e) => return reply.error(errno(&e)),
            };
            if batch.is_empty() {
                return reply.ok();
            }
            for (i, name, child, attr) in batch {
                next = i as u64 + 3;
                let kind = file_attr(child, &attr).kind;
                if reply.add(INodeNo(child), next, kind, OsStr::from_bytes(&name)) {
                    return reply.ok();
                }
            }
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let ttl = self.options.entry_timeout;
        let mut next = offset;
        for (dot, name) in self.dot_entries(ino.0).into_iter().skip(offset as usize) {
            next += 1;
            let Some(a) = self.union.attr(dot) else {
                return reply.error(Errno::ENOENT);
            };
            if reply.add(
                INodeNo(dot),
                next,
                OsStr::from_bytes(name),
                &ttl,
                &file_attr(dot, &a),
                Generation(0),
            ) {
                return reply.ok();
            }
        }
        loop {
            let batch = match self.union.list(ino.0, next as usize - 2, LIST_BATCH) {
                Ok(b) => b,
                Err(e) => return reply.error(errno(&e)),
            };
            if batch.is_empty() {
                return reply.ok();
            }
            for (i, name, child, attr) in batch {
                next = i as u64 + 3;
                let a = file_attr(child, &attr);
                if reply.add(
                    INodeNo(child),
                    next,
                    OsStr::from_bytes(&name),
                    &ttl,
                    &a,
                    Generation(0),
                ) {
                    return reply.ok();
                }
            }
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let files = self.union.node_count() as u64;
        reply.statfs(0, 0, 0, files, 0, 128 * 1024, 255, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_survive_the_words_they_are_written_as() {
        let mut changed = FuseOptions {
            threads: 2,
            entry_timeout: Duration::from_millis(1500),
            negative_entries: false,
            keep_cache: false,
            max_readahead: 4096,
            readdirplus: false,
            zero_message_open: false,
            passthrough: true,
            passthrough_min_bytes: 65536,
            image_readahead: false,
        };
        let mut read = FuseOptions::default();
        for word in changed.to_words() {
            read.set(&word).unwrap();
        }
        assert_eq!(read, changed);
        changed.set("keep_cache=on").unwrap();
        assert!(changed.keep_cache);
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let mut o = FuseOptions::default();
        for (word, expected) in [
            ("threads", "is not KEY=VALUE"),
            ("threads=0", "not between 1 and 256"),
            ("threads=many", "is not a number"),
            ("keep_cache=maybe", "is not true or false"),
            ("max_readahead=99999999999", "too large"),
            ("splice=true", "unknown fuse option \"splice\""),
        ] {
            let e = o.set(word).unwrap_err().to_string();
            assert!(e.contains(expected), "{word}: {e}");
        }
        assert_eq!(
            o,
            FuseOptions::default(),
            "a refused setting changes nothing"
        );
    }
}
