//! The composefs image of an installed set: one EROFS image of metadata only, built
//! with the `composefs` crate from the packages' manifests.
//!
//! Every regular file above the inline limit becomes a metacopy entry whose overlay
//! redirect names its object in the store (`RegularFile::External`: the fs-verity
//! digest goes into the metacopy xattr, so a store with fs-verity has every read
//! checked by OverlayFS); smaller files are stored in the image. Packages are merged
//! in install order: a directory two packages ship keeps the first one's attributes,
//! as the top layer's show in `overlay`; packages never share a non-directory path in
//! these corpora, and should two, the first one's stays.

use super::manifest::{Kind, Manifest};
use anyhow::{bail, Context, Result};
use composefs::erofs::writer::{mkfs_erofs, ValidatedFileSystem};
use composefs::fsverity::Sha256HashValue;
use composefs::generic_tree::{Inode, LeafContent, Stat};
use composefs::tree::{Directory, FileSystem, RegularFile};
use std::ffi::OsStr;
use std::path::Path;

/// The EROFS image of `manifests` merged in their order.
pub fn build(manifests: &[&Manifest]) -> Result<Box<[u8]>> {
    let root = manifests
        .first()
        .and_then(|m| m.entries.first())
        .context("an image of no package")?;
    let mut fs: FileSystem<Sha256HashValue> = FileSystem::new(stat(root));
    for manifest in manifests {
        for entry in &manifest.entries[1..] {
            let path = Path::new(&entry.path);
            let (parent, name) = match (path.parent(), path.file_name()) {
                (Some(parent), Some(name)) => (parent, name),
                _ => bail!("{}: entry {:?} has no name", manifest.package, entry.path),
            };
            let exists = directory(&mut fs.root, parent, &manifest.package)?
                .lookup(name)
                .is_some();
            if exists {
                continue;
            }
            let inode = match entry.kind {
                Kind::Dir => Inode::Directory(Box::new(Directory::new(stat(entry)))),
                kind => {
                    let content = match kind {
                        Kind::Symlink => LeafContent::Symlink(
                            OsStr::new(entry.target.as_deref().unwrap_or_default()).into(),
                        ),
                        _ => LeafContent::Regular(match (&entry.inline, entry.object_id()?) {
                            (_, Some(id)) => RegularFile::External(id, entry.size),
                            (Some(bytes), None) => RegularFile::Inline(bytes.clone().into()),
                            (None, None) => bail!(
                                "{}: file {:?} has neither object nor contents",
                                manifest.package,
                                entry.path
                            ),
                        }),
                    };
                    Inode::leaf(fs.push_leaf(stat(entry), content))
                }
            };
            directory(&mut fs.root, parent, &manifest.package)?.insert(name, inode);
        }
    }
    let validated = ValidatedFileSystem::new(fs).context("checking the image's tree")?;
    Ok(mkfs_erofs(&validated))
}

/// The directory `parent` of the tree being built, which an earlier entry made.
fn directory<'a>(
    root: &'a mut Directory<Sha256HashValue>,
    parent: &Path,
    package: &str,
) -> Result<&'a mut Directory<Sha256HashValue>> {
    root.get_directory_mut(parent.as_os_str())
        .map_err(|e| anyhow::anyhow!("{package}: {}: {e}", parent.display()))
}

fn stat(entry: &super::manifest::Entry) -> Stat {
    Stat {
        st_mode: entry.mode,
        st_uid: entry.uid,
        st_gid: entry.gid,
        st_mtim_sec: entry.mtime,
        st_mtim_nsec: entry.mtime_nsec,
        xattrs: Default::default(),
    }
}
