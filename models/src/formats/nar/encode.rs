//! The NAR encoder: `nix-store --dump PATH` (Nix's `dumpPath`), byte for byte.

use super::{BUFFER_BYTES, MAGIC};
use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes the NAR of `path` (a directory, file or symlink, not followed) to `out` and
/// returns its size in bytes. Like Nix, a file is executable when its owner may execute
/// it, entries are sorted by the bytes of their names, and anything but directories,
/// regular files and symlinks is refused.
pub fn dump_path(path: &Path, out: &mut dyn Write) -> Result<u64> {
    let mut w = Encoder {
        out,
        written: 0,
        buf: vec![0u8; BUFFER_BYTES],
    };
    w.string(MAGIC)?;
    w.node(path)?;
    Ok(w.written)
}

struct Encoder<'a> {
    out: &'a mut dyn Write,
    written: u64,
    buf: Vec<u8>,
}

impl Encoder<'_> {
    fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn padding(&mut self, len: u64) -> Result<()> {
        let pad = ((8 - len % 8) % 8) as usize;
        self.raw(&[0u8; 8][..pad])
    }

    fn string(&mut self, s: &[u8]) -> Result<()> {
        self.raw(&(s.len() as u64).to_le_bytes())?;
        self.raw(s)?;
        self.padding(s.len() as u64)
    }

    fn strings(&mut self, list: &[&[u8]]) -> Result<()> {
        list.iter().try_for_each(|s| self.string(s))
    }

    fn node(&mut self, path: &Path) -> Result<()> {
        let meta =
            fs::symlink_metadata(path).with_context(|| format!("lstat {}", path.display()))?;
        let ft = meta.file_type();
        self.strings(&[b"(", b"type"])?;
        if ft.is_file() {
            self.string(b"regular")?;
            if meta.permissions().mode() & 0o100 != 0 {
                self.strings(&[b"executable", b""])?;
            }
            self.string(b"contents")?;
            self.contents(path, meta.len())?;
        } else if ft.is_symlink() {
            let target =
                fs::read_link(path).with_context(|| format!("readlink {}", path.display()))?;
            self.strings(&[b"symlink", b"target", target.as_os_str().as_bytes()])?;
        } else if ft.is_dir() {
            self.string(b"directory")?;
            let mut names: Vec<_> = fs::read_dir(path)
                .with_context(|| format!("reading directory {}", path.display()))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<_>>()
                .with_context(|| format!("reading directory {}", path.display()))?;
            names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            for name in names {
                self.strings(&[b"entry", b"(", b"name", name.as_bytes(), b"node"])?;
                self.node(&path.join(&name))?;
                self.string(b")")?;
            }
        } else {
            bail!("{}: file has an unsupported type", path.display());
        }
        self.string(b")")
    }

    /// The file's length, then exactly that many bytes: a file that changes size while it
    /// is dumped is an error, as in Nix.
    fn contents(&mut self, path: &Path, len: u64) -> Result<()> {
        self.raw(&len.to_le_bytes())?;
        let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut left = len;
        let mut buf = std::mem::take(&mut self.buf);
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = file
                .read(&mut buf[..want])
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                bail!("{}: file shrank while it was dumped", path.display());
            }
            self.raw(&buf[..n])?;
            left -= n as u64;
        }
        self.buf = buf;
        self.padding(len)
    }
}
