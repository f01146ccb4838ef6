//! The source tree of an image, read from disk in the order SquashFS needs: every entry
//! before its directory (post-order), the entries of a directory sorted by name bytes.
//!
//! SquashFS stores a directory as a list of (name, inode reference) pairs, and a
//! reference is only known once the inode is written, so children must come first;
//! the kernel binary-searches directory listings, so names must be sorted by bytes.

use anyhow::{bail, Context, Result};
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What one entry of the tree is.
pub(super) enum Kind {
    /// Children as (name, index into the node list), sorted by name bytes.
    Dir {
        children: Vec<(CString, usize)>,
    },
    File {
        path: PathBuf,
    },
    Symlink {
        target: Vec<u8>,
    },
}

/// One entry of the tree: its kind and its permission bits (setuid, setgid, sticky kept).
pub(super) struct Node {
    pub kind: Kind,
    pub permissions: u16,
}

impl Node {
    /// The `st_mode` type bits of this node's kind.
    pub fn type_bits(&self) -> u16 {
        match self.kind {
            Kind::Dir { .. } => libc::S_IFDIR as u16,
            Kind::File { .. } => libc::S_IFREG as u16,
            Kind::Symlink { .. } => libc::S_IFLNK as u16,
        }
    }
}

/// Reads `root` into a post-order node list; the root directory is the last node.
/// Only directories, regular files and symlinks can be packed (packages have nothing
/// else); a hard-linked file becomes separate files with the same content.
pub(super) fn read_tree(root: &Path) -> Result<Vec<Node>> {
    let meta = fs::symlink_metadata(root).with_context(|| format!("reading {}", root.display()))?;
    if !meta.is_dir() {
        bail!("{}: not a directory", root.display());
    }
    let mut nodes = Vec::new();
    read_dir_into(root, meta.permissions().mode(), &mut nodes, 0)?;
    Ok(nodes)
}

/// The kernel's own limit on path depth is far beyond any package; this only stops a
/// runaway walk.
const MAX_DEPTH: usize = 256;

fn read_dir_into(dir: &Path, mode: u32, nodes: &mut Vec<Node>, depth: usize) -> Result<usize> {
    if depth > MAX_DEPTH {
        bail!("{}: deeper than {MAX_DEPTH} directories", dir.display());
    }
    let mut entries = fs::read_dir(dir)
        .with_context(|| format!("reading directory {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("reading directory {}", dir.display()))?;
    entries.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut children = Vec::with_capacity(entries.len());
    for name in entries {
        let path = dir.join(&name);
        let meta =
            fs::symlink_metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        let permissions = (meta.mode() & 0o7777) as u16;
        let index = if meta.is_dir() {
            read_dir_into(&path, meta.mode(), nodes, depth + 1)?
        } else if meta.is_file() {
            nodes.push(Node {
                kind: Kind::File { path: path.clone() },
                permissions,
            });
            nodes.len() - 1
        } else if meta.is_symlink() {
            let target = fs::read_link(&path)
                .with_context(|| format!("reading symlink {}", path.display()))?;
            nodes.push(Node {
                kind: Kind::Symlink {
                    target: target.as_os_str().as_bytes().to_vec(),
                },
                permissions,
            });
            nodes.len() - 1
        } else {
            bail!(
                "{}: only directories, regular files and symlinks can go into an image",
                path.display()
            );
        };
        let name = CString::new(name.as_bytes())
            .with_context(|| format!("{}: name holds a NUL byte", path.display()))?;
        children.push((name, index));
    }
    nodes.push(Node {
        kind: Kind::Dir { children },
        permissions: (mode & 0o7777) as u16,
    });
    Ok(nodes.len() - 1)
}
