//! Removing what an upgrade leaves behind: the paths the installed version listed and the
//! new version no longer ships, after the new version is unpacked (dpkg's loop over the
//! old file list in `process_archive`).
//!
//! The old list is walked backwards, so a directory's entries go before the directory.
//! A directory goes only when it is empty and no other package lists it (dpkg's
//! `dir_is_used_by_others`); a file or symlink goes unless another package lists it or it
//! is the very inode of a file the new version installed under another name (reached
//! through a symlinked directory, as with merged /usr: dpkg compares device and inode
//! too). Every path is reached through [`Beneath`], so a symlink never leads a removal
//! out of the root.

use crate::formats::beneath::{describe_resolve_error, Beneath, RelPath};
use anyhow::{anyhow, bail, Context, Result};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType};
use rustix::io::Errno;
use std::collections::{BTreeSet, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Removes the paths of `old` (the installed version's file list) that `new` lacks from
/// `root`, and returns those it removed or tried to (a directory not empty stays): each
/// of them activates file triggers, as dpkg's `trig_path_activate`.
/// `listed_by_others` says whether another package lists a path. With `sync`, the
/// directories that lost entries are synced (`Durability::Full`).
pub fn remove_obsolete(
    root: &Path,
    package: &str,
    old: &[PathBuf],
    new: &[PathBuf],
    listed_by_others: &dyn Fn(&Path) -> bool,
    sync: bool,
) -> Result<Vec<PathBuf>> {
    let shipped: HashSet<&PathBuf> = new.iter().collect();
    let obsolete: Vec<&PathBuf> = old
        .iter()
        .rev()
        .filter(|p| !shipped.contains(p) && p.as_os_str() != "/.")
        .collect();
    if obsolete.is_empty() {
        return Ok(Vec::new());
    }
    let beneath = Beneath::open(root)
        .map_err(|e| anyhow!("opening {}: {}", root.display(), std::io::Error::from(e)))?;
    let mut new_inodes: Option<HashSet<(u64, u64)>> = None;
    let mut touched = Vec::new();
    let mut changed_dirs = BTreeSet::new();
    for listed in obsolete {
        let what = || format!("package {package}: removing obsolete {}", listed.display());
        let Some(rel) = rel_path(listed).with_context(what)? else {
            continue;
        };
        let Some((parent, stat)) = lstat(&beneath, &rel).with_context(what)? else {
            continue; // already gone, as dpkg tolerates
        };
        if listed_by_others(listed) {
            continue;
        }
        let name = rel.file_name();
        if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            touched.push(listed.clone());
            match rustix::fs::unlinkat(&parent, name, AtFlags::REMOVEDIR) {
                Ok(()) => {
                    // Its parent is synced instead: the directory is gone.
                    changed_dirs.remove(rel.as_bytes());
                    changed_dirs.insert(rel.parent().to_vec());
                }
                // Something no package lists is left in it: dpkg keeps it too.
                Err(Errno::NOTEMPTY | Errno::EXIST) => {}
                Err(e) => bail!("{}: {}", what(), std::io::Error::from(e)),
            }
            continue;
        }
        let inodes = match &new_inodes {
            Some(set) => set,
            None => new_inodes.insert(inodes_of(&beneath, new)),
        };
        if inodes.contains(&(stat.st_dev, stat.st_ino)) {
            continue;
        }
        touched.push(listed.clone());
        rustix::fs::unlinkat(&parent, name, AtFlags::empty())
            .map_err(|e| anyhow!("{}: {}", what(), std::io::Error::from(e)))?;
        changed_dirs.insert(rel.parent().to_vec());
    }
    if sync {
        for dir in changed_dirs {
            let fd = beneath.open_dir_readable(&dir).map_err(|e| {
                anyhow!(
                    "package {package}: syncing {:?} after removing obsolete files: {}",
                    String::from_utf8_lossy(&dir),
                    describe_resolve_error(e)
                )
            })?;
            rustix::fs::fsync(fd.as_fd()).map_err(|e| {
                anyhow!(
                    "package {package}: syncing {:?}: {}",
                    String::from_utf8_lossy(&dir),
                    std::io::Error::from(e)
                )
            })?;
        }
    }
    Ok(touched)
}

/// A listed path ("/usr/bin/x") as a path inside the root; `None` for the root itself.
fn rel_path(listed: &Path) -> Result<Option<RelPath>> {
    let bytes = listed.as_os_str().as_bytes();
    let bytes = bytes.strip_prefix(b"/").unwrap_or(bytes);
    if bytes.is_empty() {
        return Ok(None);
    }
    RelPath::parse(bytes).map_err(|e| anyhow!("the file list holds a bad name: {e}"))
}

/// The entry at `rel` without following it, with its directory; `None` when it or its
/// directory is not there (or its directory is reached only through a symlink leaving
/// the root, which no removal may follow).
fn lstat(beneath: &Beneath, rel: &RelPath) -> Result<Option<(OwnedFd, rustix::fs::Stat)>> {
    let parent = match beneath.open_dir(rel.parent()) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR | Errno::XDEV | Errno::LOOP) => return Ok(None),
        Err(e) => bail!(describe_resolve_error(e)),
    };
    match rustix::fs::statat(&parent, rel.file_name(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some((parent, stat))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => bail!("stat: {}", std::io::Error::from(e)),
    }
}

/// Device and inode of every path of the new version that can be reached.
fn inodes_of(beneath: &Beneath, paths: &[PathBuf]) -> HashSet<(u64, u64)> {
    paths
        .iter()
        .filter_map(|p| rel_path(p).ok().flatten())
        .filter_map(|rel| lstat(beneath, &rel).ok().flatten())
        .map(|(_, stat)| (stat.st_dev, stat.st_ino))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn listed(paths: &[&str]) -> Vec<PathBuf> {
        paths.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn old_files_go_shared_and_nonempty_directories_stay() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/share/doc/p")).unwrap();
        fs::create_dir_all(root.join("usr/share/gone")).unwrap();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        fs::write(root.join("usr/share/doc/p/old"), "x").unwrap();
        fs::write(root.join("usr/share/doc/p/kept"), "x").unwrap();
        fs::write(root.join("usr/share/gone/f"), "x").unwrap();
        fs::write(root.join("usr/lib/shared"), "x").unwrap();
        // Merged /usr: the new version ships lib/x, which is the old usr/lib/x.
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        fs::write(root.join("usr/lib/x"), "x").unwrap();
        let old = listed(&[
            "/.",
            "/usr",
            "/usr/lib",
            "/usr/lib/shared",
            "/usr/lib/x",
            "/usr/share",
            "/usr/share/doc",
            "/usr/share/doc/p",
            "/usr/share/doc/p/kept",
            "/usr/share/doc/p/old",
            "/usr/share/gone",
            "/usr/share/gone/f",
            "/usr/share/missing",
        ]);
        let new = listed(&[
            "/.",
            "/lib",
            "/lib/x",
            "/usr",
            "/usr/share",
            "/usr/share/doc",
            "/usr/share/doc/p",
            "/usr/share/doc/p/kept",
        ]);
        let others = |p: &Path| p == Path::new("/usr/lib/shared") || p == Path::new("/usr/lib");
        let touched = remove_obsolete(root, "p", &old, &new, &others, true).unwrap();
        assert!(!root.join("usr/share/doc/p/old").exists());
        assert!(
            !root.join("usr/share/gone").exists(),
            "emptied, then removed"
        );
        assert!(root.join("usr/share/doc/p/kept").exists());
        assert!(
            root.join("usr/lib/shared").exists(),
            "another package lists it"
        );
        assert!(
            root.join("usr/lib/x").exists(),
            "the same inode as the new /lib/x"
        );
        assert_eq!(
            touched,
            listed(&[
                "/usr/share/gone/f",
                "/usr/share/gone",
                "/usr/share/doc/p/old",
            ])
        );
    }

    #[test]
    fn a_directory_holding_unlisted_files_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("var/cache/p")).unwrap();
        fs::write(dir.path().join("var/cache/p/state"), "x").unwrap();
        let old = listed(&["/var", "/var/cache", "/var/cache/p"]);
        let new = listed(&["/var"]);
        remove_obsolete(dir.path(), "p", &old, &new, &|_| false, false).unwrap();
        assert!(dir.path().join("var/cache/p/state").exists());
    }
}
