//! Writing an image with libsquashfs, the way squashfs-tools-ng's `gensquashfs` and the
//! `squashfs-ng` crate's `Writer` do: data and fragments through the block processor,
//! then every inode into the inode table (children before parents), directory listings
//! into the directory table, and the fragment, export and id tables; the superblock last.
//!
//! Where it goes beyond `squashfs-ng`'s `Writer`: the compressor and block size are
//! chosen, the image time and every inode time are 0, every directory records its
//! parent's inode number (the kernel answers `..` from it) and its link count, and the
//! block processor runs with one worker so nothing depends on thread timing.

use super::sys::*;
use super::tree::{Kind, Node};
use super::{Compression, ImageOptions, ImageReport};
use anyhow::{bail, Context, Result};
use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A libsquashfs object; every one starts with `sqfs_object_t`, whose `destroy` frees it.
struct Object<T>(*mut T);

impl<T> Object<T> {
    fn new(ptr: *mut T, what: &str) -> Result<Self> {
        if ptr.is_null() {
            bail!("libsquashfs: creating the {what} failed");
        }
        Ok(Object(ptr))
    }
}

impl<T> Drop for Object<T> {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a libsquashfs constructor and is destroyed once.
        unsafe {
            let obj = self.0 as *mut sqfs_object_t;
            if let Some(destroy) = (*obj).destroy {
                destroy(obj);
            }
        }
    }
}

/// An inode allocated by libsquashfs (or by us with `calloc`), freed with `sqfs_free`.
struct Inode(*mut sqfs_inode_generic_t);

impl Drop for Inode {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: allocated with malloc/calloc by libsquashfs or `symlink_inode`.
            unsafe { sqfs_free(self.0 as *mut libc::c_void) }
        }
    }
}

fn check(code: i32, what: &str) -> Result<()> {
    if code < 0 {
        bail!("libsquashfs: {what}: {}", error_name(code));
    }
    Ok(())
}

fn error_name(code: i32) -> &'static str {
    match code {
        SQFS_ERROR_ALLOC => "out of memory",
        SQFS_ERROR_IO => "I/O error",
        SQFS_ERROR_COMPRESSOR => "compressor error",
        SQFS_ERROR_INTERNAL => "internal error",
        SQFS_ERROR_CORRUPTED => "corrupted data",
        SQFS_ERROR_UNSUPPORTED => "unsupported",
        SQFS_ERROR_OVERFLOW => "overflow",
        SQFS_ERROR_OUT_OF_BOUNDS => "out of bounds",
        SQFS_ERROR_ARG_INVALID => "invalid argument",
        SQFS_ERROR_SEQUENCE => "calls out of order",
        _ => "unknown error",
    }
}

/// `do_block` of the `none` compressor: "the result would be larger than the input", so
/// libsquashfs stores every data block, fragment block and metadata block as it is, with
/// its uncompressed bit set (what `mksquashfs -noI -noD -noF -noX` writes).
unsafe extern "C" fn store_uncompressed(
    _cmp: *mut sqfs_compressor_t,
    _input: *const sqfs_u8,
    _size: sqfs_u32,
    _out: *mut sqfs_u8,
    _outsize: sqfs_u32,
) -> sqfs_s32 {
    0
}

type DoBlock = unsafe extern "C" fn(
    *mut sqfs_compressor_t,
    *const sqfs_u8,
    sqfs_u32,
    *mut sqfs_u8,
    sqfs_u32,
) -> sqfs_s32;

/// The library's own `do_block` of each compressor, by compressor id.
static LIBRARY_DO_BLOCK: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];

/// `do_block` of the real compressors: the library's, but a result that is not smaller
/// than the input is declined, so the block is stored uncompressed. libsquashfs 1.2's lz4
/// returns a 5-byte "compressed" id table of 4 bytes, which `unsquashfs` 4.5 cannot read
/// (`gensquashfs -c lz4` images fail the same way); `mksquashfs` never stores a block
/// that did not shrink.
unsafe extern "C" fn compress_if_smaller(
    cmp: *mut sqfs_compressor_t,
    input: *const sqfs_u8,
    size: sqfs_u32,
    out: *mut sqfs_u8,
    outsize: sqfs_u32,
) -> sqfs_s32 {
    let Some(get_configuration) = (*cmp).get_configuration else {
        return SQFS_ERROR_INTERNAL;
    };
    let mut cfg: sqfs_compressor_config_t = std::mem::zeroed();
    get_configuration(cmp, &mut cfg);
    let library = LIBRARY_DO_BLOCK
        .get(usize::from(cfg.id))
        .map_or(0, |f| f.load(Ordering::Relaxed));
    if library == 0 {
        return SQFS_ERROR_INTERNAL;
    }
    // SAFETY: stored from a `do_block` of this very compressor kind below.
    let library: DoBlock = std::mem::transmute::<usize, DoBlock>(library);
    match library(cmp, input, size, out, outsize) {
        n if n < 0 => n,
        n if n as u32 >= size => 0,
        n => n,
    }
}

fn compressor_id(c: Compression) -> SQFS_COMPRESSOR {
    match c {
        // The superblock must name some compressor; gzip is the one every kernel with
        // squashfs has, and with `none` it is never asked to decompress anything.
        Compression::None => SQFS_COMP_GZIP,
        Compression::Zstd => SQFS_COMP_ZSTD,
        Compression::Lz4 => SQFS_COMP_LZ4,
        Compression::Xz => SQFS_COMP_XZ,
    }
}

/// SquashFS images are padded to 4 KiB so a loop device sees whole blocks.
const PAD_TO: u64 = 4096;
/// The inode time and the image time: fixed, so the same tree gives the same bytes.
const MTIME: u32 = 0;
/// "No extended attributes" for `sqfs_dir_writer_create_inode`.
const NO_XATTR: u32 = 0xFFFF_FFFF;
const READ_CHUNK: usize = 128 * 1024;

/// Writes `nodes` (post-order, root last) to `out` as a SquashFS image.
pub(super) fn write_image(nodes: &[Node], out: &Path, opts: &ImageOptions) -> Result<ImageReport> {
    if nodes.is_empty() {
        bail!("an image needs at least its root directory");
    }
    let count = u32::try_from(nodes.len()).context("too many inodes for one image")?;
    let block_size = opts.block_size as usize;
    let id = compressor_id(opts.compression);
    let cpath = CString::new(out.as_os_str().as_bytes())
        .with_context(|| format!("{}: path holds a NUL byte", out.display()))?;

    // Declared in dependency order: locals drop in reverse, so users go before what
    // they use.
    // SAFETY (whole block): every pointer handed to libsquashfs comes from its own
    // constructors (checked non-null by `Object::new`) or points to live locals.
    unsafe {
        let file = Object::new(
            sqfs_open_file(cpath.as_ptr(), SQFS_FILE_OPEN_OVERWRITE),
            "output file",
        )
        .with_context(|| format!("opening {}", out.display()))?;
        let mut cfg: sqfs_compressor_config_t = std::mem::zeroed();
        check(
            sqfs_compressor_config_init(&mut cfg, id, block_size, 0),
            "compressor configuration",
        )?;
        let mut cmp_ptr: *mut sqfs_compressor_t = ptr::null_mut();
        check(sqfs_compressor_create(&cfg, &mut cmp_ptr), "compressor")?;
        let cmp = Object::new(cmp_ptr, "compressor")?;
        if opts.compression == Compression::None {
            (*cmp.0).do_block = Some(store_uncompressed);
        } else {
            let library = (*cmp.0)
                .do_block
                .context("libsquashfs compressor without do_block")?;
            LIBRARY_DO_BLOCK[id as usize].store(library as usize, Ordering::Relaxed);
            (*cmp.0).do_block = Some(compress_if_smaller);
        }
        let mut sb: sqfs_super_t = std::mem::zeroed();
        check(
            sqfs_super_init(&mut sb, block_size, MTIME, id),
            "superblock",
        )?;
        let frag_table = Object::new(sqfs_frag_table_create(0), "fragment table")?;
        let block_writer = Object::new(
            sqfs_block_writer_create(file.0, PAD_TO as usize, 0),
            "block writer",
        )?;
        let processor = Object::new(
            sqfs_block_processor_create(block_size, cmp.0, 1, 16, block_writer.0, frag_table.0),
            "block processor",
        )?;
        let id_table = Object::new(sqfs_id_table_create(0), "id table")?;
        let inode_writer = Object::new(
            sqfs_meta_writer_create(file.0, cmp.0, 0),
            "inode table writer",
        )?;
        let dirent_writer = Object::new(
            sqfs_meta_writer_create(file.0, cmp.0, SQFS_META_WRITER_KEEP_IN_MEMORY),
            "directory table writer",
        )?;
        let dir_writer = Object::new(
            sqfs_dir_writer_create(dirent_writer.0, SQFS_DIR_WRITER_CREATE_EXPORT_TABLE),
            "directory writer",
        )?;

        check(sqfs_super_write(&sb, file.0), "writing the superblock")?;
        let write_options = (*cmp.0)
            .write_options
            .context("libsquashfs compressor without write_options")?;
        let options = write_options(cmp.0, file.0);
        check(options, "writing compressor options")?;
        if options > 0 {
            sb.flags |= SQFS_FLAG_COMPRESSOR_OPTIONS as u16;
        }

        // File data first. The processor may still rewrite (and reallocate) a file's
        // inode until `finish`, so each inode pointer lives in its own box.
        let mut inodes: Vec<Box<Inode>> = Vec::with_capacity(nodes.len());
        let mut buf = vec![0u8; READ_CHUNK];
        for node in nodes {
            let mut inode = Box::new(Inode(ptr::null_mut()));
            match &node.kind {
                Kind::File { path } => {
                    let mut f =
                        File::open(path).with_context(|| format!("opening {}", path.display()))?;
                    check(
                        sqfs_block_processor_begin_file(
                            processor.0,
                            &mut inode.0,
                            ptr::null_mut(),
                            0,
                        ),
                        "starting a file",
                    )?;
                    loop {
                        let n = f
                            .read(&mut buf)
                            .with_context(|| format!("reading {}", path.display()))?;
                        if n == 0 {
                            break;
                        }
                        check(
                            sqfs_block_processor_append(
                                processor.0,
                                buf.as_ptr() as *const libc::c_void,
                                n,
                            ),
                            "writing file data",
                        )
                        .with_context(|| format!("packing {}", path.display()))?;
                    }
                    check(
                        sqfs_block_processor_end_file(processor.0),
                        "finishing a file",
                    )?;
                }
                Kind::Symlink { target } => inode.0 = symlink_inode(target)?,
                Kind::Dir { .. } => {}
            }
            inodes.push(inode);
        }
        check(
            sqfs_block_processor_finish(processor.0),
            "finishing the data blocks",
        )?;

        let mut parent = vec![count + 1; nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            if let Kind::Dir { children } = &node.kind {
                for &(_, c) in children {
                    parent[c] = i as u32 + 1;
                }
            }
        }
        let mut uid_idx: u16 = 0;
        check(
            sqfs_id_table_id_to_index(id_table.0, 0, &mut uid_idx),
            "id table",
        )?;
        let get_size = (*file.0)
            .get_size
            .context("libsquashfs file without get_size")?;
        sb.inode_table_start = get_size(file.0);

        // Inodes in node order (children first), each directory's listing just before
        // its inode, since the listing needs the children's inode references.
        let mut refs: Vec<u64> = vec![0; nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            if let Kind::Dir { children } = &node.kind {
                check(
                    sqfs_dir_writer_begin(dir_writer.0, 0),
                    "starting a directory",
                )?;
                let mut subdirs = 0usize;
                for (name, c) in children {
                    let child = &nodes[*c];
                    if matches!(child.kind, Kind::Dir { .. }) {
                        subdirs += 1;
                    }
                    check(
                        sqfs_dir_writer_add_entry(
                            dir_writer.0,
                            name.as_ptr(),
                            *c as u32 + 1,
                            refs[*c],
                            child.type_bits() | child.permissions,
                        ),
                        "adding a directory entry",
                    )?;
                }
                check(sqfs_dir_writer_end(dir_writer.0), "finishing a directory")?;
                inodes[i].0 =
                    sqfs_dir_writer_create_inode(dir_writer.0, 2 + subdirs, NO_XATTR, parent[i]);
                if inodes[i].0.is_null() {
                    bail!("libsquashfs: creating a directory inode failed");
                }
            }
            let inode = inodes[i].0;
            if inode.is_null() {
                bail!("libsquashfs: no inode for entry {i}");
            }
            let base = &mut (*inode).base;
            let permissions = match node.kind {
                Kind::File { .. } if opts.strip_setid => node.permissions & !0o6000,
                _ => node.permissions,
            };
            base.mode = node.type_bits() | permissions;
            base.uid_idx = uid_idx;
            base.gid_idx = uid_idx;
            base.mod_time = MTIME;
            base.inode_number = i as u32 + 1;
            let (mut block, mut offset) = (0u64, 0u32);
            sqfs_meta_writer_get_position(inode_writer.0, &mut block, &mut offset);
            refs[i] = (block << 16) | u64::from(offset);
            check(
                sqfs_meta_writer_write_inode(inode_writer.0, inode),
                "writing an inode",
            )?;
        }
        let root_ref = refs[nodes.len() - 1];
        sb.root_inode_ref = root_ref;
        sb.inode_count = count;
        check(sqfs_meta_writer_flush(inode_writer.0), "flushing inodes")?;
        check(
            sqfs_meta_writer_flush(dirent_writer.0),
            "flushing directories",
        )?;
        sb.directory_table_start = get_size(file.0);
        check(
            sqfs_meta_write_write_to_file(dirent_writer.0),
            "writing the directory table",
        )?;
        check(
            sqfs_frag_table_write(frag_table.0, file.0, &mut sb, cmp.0),
            "writing the fragment table",
        )?;
        check(
            sqfs_dir_writer_write_export_table(
                dir_writer.0,
                file.0,
                cmp.0,
                count,
                root_ref,
                &mut sb,
            ),
            "writing the export table",
        )?;
        check(
            sqfs_id_table_write(id_table.0, file.0, &mut sb, cmp.0),
            "writing the id table",
        )?;
        sb.flags |= SQFS_FLAG_NO_XATTRS as u16;
        if opts.compression == Compression::None {
            sb.flags |= (SQFS_FLAG_UNCOMPRESSED_INODES
                | SQFS_FLAG_UNCOMPRESSED_DATA
                | SQFS_FLAG_UNCOMPRESSED_FRAGMENTS
                | SQFS_FLAG_UNCOMPRESSED_IDS
                | SQFS_FLAG_UNCOMPRESSED_XATTRS) as u16;
        }
        sb.bytes_used = get_size(file.0);
        check(sqfs_super_write(&sb, file.0), "rewriting the superblock")?;
        let pad = (PAD_TO - sb.bytes_used % PAD_TO) % PAD_TO;
        if pad > 0 {
            let write_at = (*file.0)
                .write_at
                .context("libsquashfs file without write_at")?;
            let zeros = vec![0u8; pad as usize];
            check(
                write_at(
                    file.0,
                    sb.bytes_used,
                    zeros.as_ptr() as *const libc::c_void,
                    zeros.len(),
                ),
                "padding the image",
            )?;
        }
        Ok(ImageReport {
            inodes: u64::from(count),
            bytes_used: sb.bytes_used,
            size_bytes: sb.bytes_used + pad,
        })
    }
}

/// A symlink inode with its target in the trailing payload, allocated as libsquashfs
/// allocates inodes (so `sqfs_free` frees it).
unsafe fn symlink_inode(target: &[u8]) -> Result<*mut sqfs_inode_generic_t> {
    if target.is_empty() || target.len() > 4095 {
        bail!("symlink target of {} bytes (must be 1..4095)", target.len());
    }
    let at = std::mem::offset_of!(sqfs_inode_generic_t, extra);
    let size = (at + target.len()).max(std::mem::size_of::<sqfs_inode_generic_t>());
    let inode = libc::calloc(1, size) as *mut sqfs_inode_generic_t;
    if inode.is_null() {
        bail!("out of memory for a symlink inode");
    }
    (*inode).base.type_ = SQFS_INODE_SLINK as u16;
    (*inode).payload_bytes_available = target.len() as u32;
    (*inode).payload_bytes_used = target.len() as u32;
    (*inode).data.slink = sqfs_inode_slink_t {
        nlink: 1,
        target_size: target.len() as u32,
    };
    ptr::copy_nonoverlapping(target.as_ptr(), (inode as *mut u8).add(at), target.len());
    Ok(inode)
}
