//! Reading one SquashFS 4.0 image in-process, as distri's FUSE daemon reads its package
//! images: the superblock, the inode and directory tables (metadata blocks of at most
//! 8 KiB, each with a two-byte header), the fragment table, and file data.
//!
//! The fast path is for distri's uncompressed images (what `formats::squashfs` builds by
//! default): every block carries its "stored uncompressed" bit, so a byte range of a file
//! is one `pread` of the image for the full blocks and one for the tail in its fragment;
//! nothing is copied twice or decompressed. Blocks compressed with zstd are decompressed
//! (a slow path, for the compression knob); other compressors are refused with a message
//! naming the image. Where it differs from squashfuse: no xattrs, no export table, no
//! device nodes (packages have none), and no block cache of its own (the page cache of
//! the image file is the cache, as it is for a loop device).
//!
//! Layout facts from the kernel's `fs/squashfs/squashfs_fs.h`.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

const MAGIC: u32 = 0x7371_7368;
const SUPERBLOCK_SIZE: usize = 96;
const METADATA_SIZE: usize = 8192;
/// Bit 15 of a metadata block header: stored uncompressed.
const METADATA_UNCOMPRESSED: u16 = 0x8000;
/// Bit 24 of a data block size: stored uncompressed.
const BLOCK_UNCOMPRESSED: u32 = 1 << 24;
const NO_FRAGMENT: u32 = 0xFFFF_FFFF;
const ZSTD: u16 = 6;

/// An inode's place: the metadata block's offset from the inode table's start, and the
/// offset inside the block's uncompressed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InodeRef {
    pub block: u64,
    pub offset: u16,
}

impl InodeRef {
    fn from_raw(raw: u64) -> Self {
        InodeRef {
            block: raw >> 16,
            offset: (raw & 0xFFFF) as u16,
        }
    }
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
}

/// A directory: where its listing is in the directory table and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirLoc {
    pub block: u64,
    pub offset: u16,
    /// Bytes of the listing (the inode's `file_size` less the 3 the format adds).
    pub size: u32,
}

/// A regular file's data: full blocks from `blocks_start`, then a tail in a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLoc {
    pub size: u64,
    pub blocks_start: u64,
    /// On-disk size word of each full block (with the uncompressed bit).
    pub block_sizes: Vec<u32>,
    /// (fragment index, offset in the fragment block) of the tail.
    pub fragment: Option<(u32, u32)>,
    /// Every block is stored uncompressed at full size: a byte range is one pread.
    pub contiguous: bool,
}

/// An inode as the union needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
    pub nlink: u32,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Dir(DirLoc),
    File(FileLoc),
    Symlink(Vec<u8>),
}

impl Inode {
    pub fn size(&self) -> u64 {
        match &self.body {
            Body::Dir(d) => u64::from(d.size) + 3,
            Body::File(f) => f.size,
            Body::Symlink(t) => t.len() as u64,
        }
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub kind: Kind,
    pub inode: InodeRef,
}

/// Decoded metadata blocks by offset, each with the offset of the block after it.
type MetadataCache = HashMap<u64, (Arc<[u8]>, u64)>;

/// One fragment block: where it is and its on-disk size word.
#[derive(Debug, Clone, Copy)]
struct Fragment {
    start: u64,
    size: u32,
}

/// An open image.
#[derive(Debug)]
pub struct Image {
    pub path: PathBuf,
    /// Where the kernel has this image mounted (loop + squashfs), when the daemon passes
    /// opens through: a file's backing file is this directory joined with its path in
    /// the image (`fs`'s passthrough opens).
    pub backing: Option<PathBuf>,
    file: File,
    /// Decoded metadata blocks by their offset in the image, with the next block's
    /// offset: the daemon's own cache of inode and directory tables, emptied by
    /// `reset_caches` (see `Image::forget_metadata`).
    metadata_cache: Mutex<MetadataCache>,
    block_size: u32,
    compressor: u16,
    pub root: InodeRef,
    inode_table: u64,
    dir_table: u64,
    ids: Vec<u32>,
    fragments: Vec<Fragment>,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

impl Image {
    /// Tells the kernel not to read ahead in this image file (`POSIX_FADV_RANDOM` over
    /// the whole file: a length of 0 is "to the end").
    pub fn advise_random(&self) -> Result<()> {
        rustix::fs::fadvise(&self.file, 0, 0, rustix::fs::Advice::Random)
            .with_context(|| format!("fadvise RANDOM on {}", self.path.display()))
    }

    /// Opens `path` and reads its superblock, id table and fragment table.
    pub fn open(path: &Path) -> Result<Image> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut sb = [0u8; SUPERBLOCK_SIZE];
        file.read_exact_at(&mut sb, 0)
            .with_context(|| format!("reading the superblock of {}", path.display()))?;
        if u32_at(&sb, 0) != MAGIC {
            bail!("{}: not a SquashFS image (bad magic)", path.display());
        }
        let (major, minor) = (u16_at(&sb, 28), u16_at(&sb, 30));
        if (major, minor) != (4, 0) {
            bail!("{}: SquashFS {major}.{minor}, expected 4.0", path.display());
        }
        let block_size = u32_at(&sb, 12);
        if !block_size.is_power_of_two() || !(4096..=1 << 20).contains(&block_size) {
            bail!("{}: block size {block_size} out of range", path.display());
        }
        let mut image = Image {
            path: path.to_path_buf(),
            backing: None,
            file,
            metadata_cache: Mutex::new(HashMap::new()),
            block_size,
            compressor: u16_at(&sb, 20),
            root: InodeRef::from_raw(u64_at(&sb, 32)),
            inode_table: u64_at(&sb, 64),
            dir_table: u64_at(&sb, 72),
            ids: Vec::new(),
            fragments: Vec::new(),
        };
        let id_count = usize::from(u16_at(&sb, 26));
        let ids = image
            .read_table(u64_at(&sb, 48), id_count * 4)
            .with_context(|| format!("reading the id table of {}", path.display()))?;
        image.ids = ids.chunks_exact(4).map(|c| u32_at(c, 0)).collect();
        let fragment_count = u32_at(&sb, 16) as usize;
        if fragment_count > 0 {
            let raw = image
                .read_table(u64_at(&sb, 80), fragment_count * 16)
                .with_context(|| format!("reading the fragment table of {}", path.display()))?;
            image.fragments = raw
                .chunks_exact(16)
                .map(|c| Fragment {
                    start: u64_at(c, 0),
                    size: u32_at(c, 8),
                })
                .collect();
        }
        Ok(image)
    }

    /// A table stored as metadata blocks whose locations are listed (u64 each) at `at`.
    fn read_table(&self, at: u64, bytes: usize) -> Result<Vec<u8>> {
        let blocks = bytes.div_ceil(METADATA_SIZE);
        let mut index = vec![0u8; blocks * 8];
        self.file.read_exact_at(&mut index, at)?;
        let mut out = Vec::with_capacity(bytes);
        for i in 0..blocks {
            // Tables kept in memory are read past the cache.
            let (data, _) = self.read_metadata_block(u64_at(&index, i * 8))?;
            out.extend_from_slice(&data);
        }
        if out.len() < bytes {
            bail!("table at {at} is {} bytes, expected {bytes}", out.len());
        }
        out.truncate(bytes);
        Ok(out)
    }

    fn cache(&self) -> MutexGuard<'_, MetadataCache> {
        // A panic elsewhere cannot leave the map half-updated: recover it.
        self.metadata_cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Empties the metadata cache (before cold samples).
    pub fn forget_metadata(&self) {
        self.cache().clear();
    }

    /// Bytes held by the metadata cache.
    pub fn cached_metadata_bytes(&self) -> usize {
        self.cache().values().map(|(b, _)| b.len()).sum()
    }

    /// The uncompressed bytes of the metadata block at `at` (cached), and the offset of
    /// the next block.
    fn metadata_block(&self, at: u64) -> Result<(Arc<[u8]>, u64)> {
        if let Some((data, next)) = self.cache().get(&at) {
            return Ok((data.clone(), *next));
        }
        let (data, next) = self.read_metadata_block(at)?;
        let data: Arc<[u8]> = data.into();
        self.cache().insert(at, (data.clone(), next));
        Ok((data, next))
    }

    fn read_metadata_block(&self, at: u64) -> Result<(Vec<u8>, u64)> {
        let mut header = [0u8; 2];
        self.file.read_exact_at(&mut header, at)?;
        let word = u16::from_le_bytes(header);
        let len = usize::from(word & !METADATA_UNCOMPRESSED);
        if len == 0 || len > METADATA_SIZE {
            bail!("metadata block at {at}: bad length {len}");
        }
        let mut data = vec![0u8; len];
        self.file.read_exact_at(&mut data, at + 2)?;
        if word & METADATA_UNCOMPRESSED == 0 {
            data = self.decompress(&data, METADATA_SIZE)?;
        }
        Ok((data, at + 2 + len as u64))
    }

    fn decompress(&self, data: &[u8], capacity: usize) -> Result<Vec<u8>> {
        if self.compressor != ZSTD {
            bail!(
                "{}: compressed block with compressor {}: only uncompressed and zstd images are served",
                self.path.display(),
                self.compressor
            );
        }
        zstd::bulk::decompress(data, capacity)
            .with_context(|| format!("{}: zstd block", self.path.display()))
    }

    /// `len` bytes of a metadata stream (inode or directory table) starting at
    /// block `table + block`, byte `offset`, continuing across blocks.
    fn metadata(&self, table: u64, block: u64, offset: u16, len: usize) -> Result<Vec<u8>> {
        let mut at = table + block;
        let mut skip = usize::from(offset);
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let (data, next) = self.metadata_block(at)?;
            if skip > data.len() {
                bail!("metadata offset {skip} beyond its block of {}", data.len());
            }
            let take = (len - out.len()).min(data.len() - skip);
            out.extend_from_slice(&data[skip..skip + take]);
            skip = 0;
            at = next;
        }
        Ok(out)
    }

    fn id(&self, index: u16) -> Result<u32> {
        self.ids
            .get(usize::from(index))
            .copied()
            .with_context(|| format!("{}: id index {index} out of range", self.path.display()))
    }

    /// Reads the inode at `r`. Inodes are at most a few KiB (a file's block list); the
    /// fixed part is read first, then what its sizes say follows.
    pub fn inode(&self, r: InodeRef) -> Result<Inode> {
        self.read_inode(r)
            .with_context(|| format!("{}: inode {}:{}", self.path.display(), r.block, r.offset))
    }

    fn read_inode(&self, r: InodeRef) -> Result<Inode> {
        let header = self.metadata(self.inode_table, r.block, r.offset, 16)?;
        let kind_code = u16_at(&header, 0);
        // The fixed part that follows the header, by inode type.
        let fixed = match kind_code {
            1 | 2 => 16,
            8 => 24,
            9 => 40,
            3 | 10 => 8,
            other => bail!("inode type {other} is not served (devices, fifos, sockets)"),
        };
        let head = self.metadata(self.inode_table, r.block, r.offset, 16 + fixed)?;
        let mode = u16_at(&head, 2) & 0o7777;
        let uid = self.id(u16_at(&head, 4))?;
        let gid = self.id(u16_at(&head, 6))?;
        let mtime = u32_at(&head, 8);
        let b = &head[16..];
        let (kind, nlink, body) = match kind_code {
            1 => {
                let dir = DirLoc {
                    block: u64::from(u32_at(b, 0)),
                    offset: u16_at(b, 10),
                    size: u32::from(u16_at(b, 8)).saturating_sub(3),
                };
                (Kind::Dir, u32_at(b, 4), Body::Dir(dir))
            }
            8 => {
                let dir = DirLoc {
                    block: u64::from(u32_at(b, 8)),
                    offset: u16_at(b, 18),
                    size: u32_at(b, 4).saturating_sub(3),
                };
                (Kind::Dir, u32_at(b, 0), Body::Dir(dir))
            }
            2 => {
                let (start, frag, frag_off, size) = (
                    u64::from(u32_at(b, 0)),
                    u32_at(b, 4),
                    u32_at(b, 8),
                    u64::from(u32_at(b, 12)),
                );
                let file = self.file_loc(r, 16 + 16, start, size, frag, frag_off)?;
                (Kind::File, 1, Body::File(file))
            }
            9 => {
                let (start, size, nlink, frag, frag_off) = (
                    u64_at(b, 0),
                    u64_at(b, 8),
                    u32_at(b, 24),
                    u32_at(b, 28),
                    u32_at(b, 32),
                );
                let file = self.file_loc(r, 16 + 40, start, size, frag, frag_off)?;
                (Kind::File, nlink, Body::File(file))
            }
            3 | 10 => {
                let (nlink, len) = (u32_at(b, 0), u32_at(b, 4) as usize);
                if len == 0 || len > 4096 {
                    bail!("symlink target of {len} bytes");
                }
                let all = self.metadata(self.inode_table, r.block, r.offset, 16 + 8 + len)?;
                (Kind::Symlink, nlink, Body::Symlink(all[24..].to_vec()))
            }
            _ => unreachable!("inode types are checked above"),
        };
        Ok(Inode {
            kind,
            mode,
            uid,
            gid,
            mtime,
            nlink,
            body,
        })
    }

    fn file_loc(
        &self,
        r: InodeRef,
        fixed: usize,
        blocks_start: u64,
        size: u64,
        fragment: u32,
        fragment_offset: u32,
    ) -> Result<FileLoc> {
        let bs = u64::from(self.block_size);
        let has_fragment = fragment != NO_FRAGMENT;
        let count = if has_fragment {
            size / bs
        } else {
            size.div_ceil(bs)
        } as usize;
        let all = self.metadata(self.inode_table, r.block, r.offset, fixed + count * 4)?;
        let block_sizes: Vec<u32> = all[fixed..].chunks_exact(4).map(|c| u32_at(c, 0)).collect();
        let full = |i: usize, w: u32| {
            let want = (size - i as u64 * bs).min(bs) as u32;
            w & BLOCK_UNCOMPRESSED != 0 && w & !BLOCK_UNCOMPRESSED == want
        };
        let fragment = has_fragment.then_some((fragment, fragment_offset));
        let tail_plain = match fragment {
            Some((index, _)) => self
                .fragments
                .get(index as usize)
                .is_some_and(|f| f.size & BLOCK_UNCOMPRESSED != 0),
            None => true,
        };
        let contiguous = tail_plain && block_sizes.iter().enumerate().all(|(i, &w)| full(i, w));
        Ok(FileLoc {
            size,
            blocks_start,
            block_sizes,
            fragment,
            contiguous,
        })
    }

    /// The entries of the directory at `d`, in the image's (byte-sorted) order.
    pub fn read_dir(&self, d: &DirLoc) -> Result<Vec<DirEntry>> {
        self.read_listing(d).with_context(|| {
            format!(
                "{}: directory at {}:{}",
                self.path.display(),
                d.block,
                d.offset
            )
        })
    }

    fn read_listing(&self, d: &DirLoc) -> Result<Vec<DirEntry>> {
        let size = d.size as usize;
        let raw = self.metadata(self.dir_table, d.block, d.offset, size)?;
        let mut entries = Vec::new();
        let mut at = 0;
        while at + 12 <= size {
            let count = u32_at(&raw, at) as usize + 1;
            let start = u64::from(u32_at(&raw, at + 4));
            at += 12;
            for _ in 0..count {
                if at + 8 > size {
                    bail!("directory listing truncated");
                }
                let offset = u16_at(&raw, at);
                let kind = match u16_at(&raw, at + 4) {
                    1 | 8 => Kind::Dir,
                    2 | 9 => Kind::File,
                    3 | 10 => Kind::Symlink,
                    other => bail!("directory entry of type {other} is not served"),
                };
                let name_len = usize::from(u16_at(&raw, at + 6)) + 1;
                at += 8;
                let name = raw
                    .get(at..at + name_len)
                    .context("directory entry name truncated")?
                    .to_vec();
                at += name_len;
                if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
                    bail!(
                        "directory entry with an invalid name {:?}",
                        String::from_utf8_lossy(&name)
                    );
                }
                entries.push(DirEntry {
                    name,
                    kind,
                    inode: InodeRef {
                        block: start,
                        offset,
                    },
                });
            }
        }
        Ok(entries)
    }

    /// Reads up to `buf.len()` bytes of the file `f` from `offset`; returns the count.
    pub fn read_file(&self, f: &FileLoc, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= f.size {
            return Ok(0);
        }
        let len = (buf.len() as u64).min(f.size - offset) as usize;
        let buf = &mut buf[..len];
        let bs = u64::from(self.block_size);
        let blocks_end = f.block_sizes.len() as u64 * bs;
        let mut done = 0usize;
        if f.contiguous {
            // distri's images: file bytes lie in the image as they are; one pread for the
            // part in full blocks, one for the part in the fragment.
            if offset < blocks_end {
                let n = (blocks_end - offset).min(len as u64) as usize;
                self.file
                    .read_exact_at(&mut buf[..n], f.blocks_start + offset)?;
                done = n;
            }
        } else {
            while done < len && offset + (done as u64) < blocks_end {
                let pos = offset + done as u64;
                let n = self.read_block_part(f, pos, &mut buf[done..])?;
                done += n;
            }
        }
        if done < len {
            let pos = offset + done as u64;
            self.read_tail(f, pos - blocks_end, &mut buf[done..])?;
        }
        Ok(len)
    }

    /// Slow path: the part of one (compressed or sparse) data block that holds `pos`.
    fn read_block_part(&self, f: &FileLoc, pos: u64, out: &mut [u8]) -> Result<usize> {
        let bs = u64::from(self.block_size);
        let index = (pos / bs) as usize;
        let disk: u64 = f.block_sizes[..index]
            .iter()
            .map(|w| u64::from(w & !BLOCK_UNCOMPRESSED))
            .sum();
        let word = f.block_sizes[index];
        let on_disk = (word & !BLOCK_UNCOMPRESSED) as usize;
        let block_len = (f.size - index as u64 * bs).min(bs) as usize;
        let within = (pos % bs) as usize;
        let n = (block_len - within).min(out.len());
        if on_disk == 0 {
            out[..n].fill(0); // a sparse block
        } else if word & BLOCK_UNCOMPRESSED != 0 {
            self.file
                .read_exact_at(&mut out[..n], f.blocks_start + disk + within as u64)?;
        } else {
            let mut raw = vec![0u8; on_disk];
            self.file.read_exact_at(&mut raw, f.blocks_start + disk)?;
            let data = self.decompress(&raw, self.block_size as usize)?;
            let got = data
                .get(within..within + n)
                .context("decompressed block shorter than the file says")?;
            out[..n].copy_from_slice(got);
        }
        Ok(n)
    }

    /// The tail in the fragment block, from byte `pos` of the tail.
    fn read_tail(&self, f: &FileLoc, pos: u64, out: &mut [u8]) -> Result<()> {
        let (index, frag_offset) = f
            .fragment
            .context("file shorter than its size: no fragment")?;
        let frag = self
            .fragments
            .get(index as usize)
            .with_context(|| format!("fragment {index} out of range"))?;
        let at = u64::from(frag_offset) + pos;
        if frag.size & BLOCK_UNCOMPRESSED != 0 {
            self.file.read_exact_at(out, frag.start + at)?;
        } else {
            let mut raw = vec![0u8; (frag.size & !BLOCK_UNCOMPRESSED) as usize];
            self.file.read_exact_at(&mut raw, frag.start)?;
            let data = self.decompress(&raw, self.block_size as usize)?;
            let got = data
                .get(at as usize..at as usize + out.len())
                .context("fragment shorter than the file's tail")?;
            out.copy_from_slice(got);
        }
        Ok(())
    }
}
