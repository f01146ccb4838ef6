//! Deterministic packing: the same tree gives the same bytes, whoever packs it and when.
//!
//! Entries are sorted by the bytes of their path (what `find | LC_ALL=C sort` gives, so a
//! directory precedes its contents); names are relative without "./", directories end in
//! "/"; owner 0/0 "root"/"root", mtime 0, modes as on disk including setuid, setgid and
//! sticky bits; symlink targets verbatim. Headers are GNU format and names or link
//! targets over 100 bytes get a GNU long-name header (`L`, `K`), as GNU tar writes them.
//! Only the list of paths is held in memory; file data streams.

use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use tar::{EntryType, Header};

/// Every entry's modification time: fixed, so packing is reproducible.
const MTIME: u64 = 0;
const NAME_FIELD: usize = 100;

enum Kind {
    Dir,
    File { size: u64 },
    Symlink { target: Vec<u8> },
}

struct Item {
    /// Relative path, without a trailing "/".
    rel: Vec<u8>,
    mode: u32,
    kind: Kind,
}

pub(super) fn pack_tree(src: &Path, out: impl Write) -> Result<()> {
    let mut items = Vec::new();
    collect(src, &mut Vec::new(), &mut items)?;
    items.sort_by(|a, b| a.rel.cmp(&b.rel));
    let mut out = BufWriter::with_capacity(256 << 10, out);
    for item in &items {
        write_item(src, item, &mut out).with_context(|| {
            format!(
                "packing {}: {:?}",
                src.display(),
                String::from_utf8_lossy(&item.rel)
            )
        })?;
    }
    out.write_all(&[0u8; 1024])?; // two zero blocks end the archive
    out.flush()?;
    Ok(())
}

/// Lists `src/rel` recursively (without following symlinks).
fn collect(src: &Path, rel: &mut Vec<u8>, items: &mut Vec<Item>) -> Result<()> {
    let dir = join(src, rel);
    let listing =
        fs::read_dir(&dir).with_context(|| format!("packing: listing {}", dir.display()))?;
    for dirent in listing {
        let dirent = dirent.with_context(|| format!("packing: listing {}", dir.display()))?;
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(dirent.file_name().as_bytes());
        let item = describe(src, rel)?;
        let is_dir = matches!(item.kind, Kind::Dir);
        items.push(item);
        if is_dir {
            collect(src, rel, items)?;
        }
        rel.truncate(len);
    }
    Ok(())
}

fn describe(src: &Path, rel: &[u8]) -> Result<Item> {
    let path = join(src, rel);
    let meta =
        fs::symlink_metadata(&path).with_context(|| format!("packing: {}", path.display()))?;
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File { size: meta.len() }
    } else if ft.is_symlink() {
        let target =
            fs::read_link(&path).with_context(|| format!("packing: {}", path.display()))?;
        Kind::Symlink {
            target: target.into_os_string().into_vec(),
        }
    } else {
        bail!(
            "packing {}: {:?} is a {}: only directories, regular files and symlinks can be packed",
            src.display(),
            String::from_utf8_lossy(rel),
            special_kind(&ft)
        );
    };
    Ok(Item {
        rel: rel.to_vec(),
        mode: meta.mode() & 0o7777,
        kind,
    })
}

fn write_item(src: &Path, item: &Item, out: &mut impl Write) -> Result<()> {
    match &item.kind {
        Kind::Dir => {
            let mut name = item.rel.clone();
            name.push(b'/');
            write_header(out, EntryType::Directory, &name, b"", item.mode, 0)?;
        }
        Kind::Symlink { target } => {
            write_header(out, EntryType::Symlink, &item.rel, target, 0o777, 0)?;
        }
        Kind::File { size } => {
            write_header(out, EntryType::Regular, &item.rel, b"", item.mode, *size)?;
            copy_file(&join(src, &item.rel), *size, out)?;
        }
    }
    Ok(())
}

/// Streams exactly `size` bytes of the file, then the padding to a block.
fn copy_file(path: &Path, size: u64, out: &mut impl Write) -> Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let copied = io::copy(&mut file.take(size), out)
        .with_context(|| format!("reading {}", path.display()))?;
    if copied != size {
        bail!("file shrank from {size} to {copied} bytes while being packed");
    }
    write_padding(out, size)
}

/// Writes a header for `name` (and `link`), preceded by GNU long-name headers when
/// either does not fit its 100-byte field.
fn write_header(
    out: &mut impl Write,
    kind: EntryType,
    name: &[u8],
    link: &[u8],
    mode: u32,
    size: u64,
) -> Result<()> {
    if name.len() > NAME_FIELD {
        write_long(out, EntryType::GNULongName, name)?;
    }
    if link.len() > NAME_FIELD {
        write_long(out, EntryType::GNULongLink, link)?;
    }
    let mut header = base_header(kind, mode, size)?;
    let old = header.as_old_mut();
    copy_truncated(&mut old.name, name);
    copy_truncated(&mut old.linkname, link);
    header.set_cksum();
    out.write_all(header.as_bytes())?;
    Ok(())
}

/// A GNU `L`/`K` header whose data is the full name and a NUL.
fn write_long(out: &mut impl Write, kind: EntryType, value: &[u8]) -> Result<()> {
    let size = value.len() as u64 + 1;
    let mut header = base_header(kind, 0o644, size)?;
    copy_truncated(&mut header.as_old_mut().name, b"././@LongLink");
    header.set_cksum();
    out.write_all(header.as_bytes())?;
    out.write_all(value)?;
    out.write_all(&[0])?;
    write_padding(out, size)
}

fn base_header(kind: EntryType, mode: u32, size: u64) -> Result<Header> {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(MTIME);
    header.set_username("root")?;
    header.set_groupname("root")?;
    Ok(header)
}

fn copy_truncated(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

fn write_padding(out: &mut impl Write, size: u64) -> Result<()> {
    let pad = (512 - size % 512) % 512;
    out.write_all(&[0u8; 512][..pad as usize])?;
    Ok(())
}

fn join(src: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        src.to_path_buf()
    } else {
        src.join(std::ffi::OsStr::from_bytes(rel))
    }
}

fn special_kind(ft: &fs::FileType) -> &'static str {
    if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_get_a_gnu_long_name_header() {
        let mut out = Vec::new();
        let name = vec![b'n'; 150];
        write_header(&mut out, EntryType::Regular, &name, b"", 0o644, 0).unwrap();
        assert_eq!(out.len(), 512 * 3);
        assert_eq!(out[156], b'L');
        assert_eq!(&out[512..662], &name[..]);
        assert_eq!(out[662], 0);
    }

    #[test]
    fn setuid_bits_survive_in_the_header() {
        let mut out = Vec::new();
        write_header(&mut out, EntryType::Regular, b"usr/bin/su", b"", 0o4755, 0).unwrap();
        let header = Header::from_byte_slice(&out[..512]);
        assert_eq!(header.mode().unwrap(), 0o4755);
        assert_eq!(header.username().unwrap(), Some("root"));
    }
}
