//! The directories entries are created in: resolved beneath the target, created when an
//! archive omits them, and cached because consecutive entries share a parent.

use super::staging::UndoLog;
use crate::formats::beneath::{describe_resolve_error, Beneath};
use anyhow::{anyhow, bail, Result};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// Mode of directories an archive needs but does not list (GNU tar's default too).
const IMPLIED_DIR_MODE: u32 = 0o755;

/// The last directory resolved, by its path relative to the target.
///
/// Keeping it is sound because an unpack removes or moves aside (direct staging's backup)
/// only the final component of the entry it is working on, whose parent is the cached
/// directory: that can never change what the cached path resolves to.
#[derive(Default)]
pub(super) struct DirCache {
    key: Vec<u8>,
    fd: Option<OwnedFd>,
}

impl DirCache {
    /// The directory `rel` ("" for the target), created with its missing ancestors.
    pub fn get<'s>(
        &'s mut self,
        root: &'s Beneath,
        undo: &mut UndoLog,
        rel: &[u8],
    ) -> Result<BorrowedFd<'s>> {
        if rel.is_empty() {
            return Ok(root.root());
        }
        let hit = self.fd.is_some() && self.key == rel;
        if !hit {
            let fd = open_or_create(root, undo, rel)?;
            self.key.clear();
            self.key.extend_from_slice(rel);
            self.fd = Some(fd);
        }
        match &self.fd {
            Some(fd) => Ok(fd.as_fd()),
            None => bail!("internal error: directory cache is empty"),
        }
    }

    /// Remembers a directory just created or checked, which usually holds the next entry.
    pub fn remember(&mut self, rel: &[u8], fd: OwnedFd) {
        self.key.clear();
        self.key.extend_from_slice(rel);
        self.fd = Some(fd);
    }
}

/// Resolves `rel`; when something on the way does not exist, creates the missing
/// directories from the top down, each beneath the target.
fn open_or_create(root: &Beneath, undo: &mut UndoLog, rel: &[u8]) -> Result<OwnedFd> {
    match root.open_dir(rel) {
        Err(Errno::NOENT) => {}
        other => return other.map_err(|e| anyhow!(describe_resolve_error(e))),
    }
    for end in prefix_ends(rel) {
        let prefix = &rel[..end];
        match root.open_dir(prefix) {
            Ok(_) => continue,
            Err(Errno::NOENT) => {}
            Err(e) => bail!(describe_resolve_error(e)),
        }
        let (parent, name) = split(prefix);
        let parent_fd = root
            .open_dir(parent)
            .map_err(|e| anyhow!(describe_resolve_error(e)))?;
        make_dir(parent_fd.as_fd(), name, IMPLIED_DIR_MODE, undo, prefix).map_err(|e| {
            anyhow!(
                "creating missing directory {:?}: {e:#}",
                String::from_utf8_lossy(prefix)
            )
        })?;
    }
    root.open_dir(rel)
        .map_err(|e| anyhow!(describe_resolve_error(e)))
}

/// Creates directory `name` in `parent` with exactly `mode` (umask does not apply),
/// records it for rollback, and returns it open.
fn make_dir(
    parent: BorrowedFd,
    name: &[u8],
    mode: u32,
    undo: &mut UndoLog,
    rel: &[u8],
) -> Result<OwnedFd> {
    // Created private, then opened without following a symlink, then given its mode.
    rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))?;
    undo.dir(rel);
    let fd = open_dir_nofollow(parent, name)?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    Ok(fd)
}

/// Opens directory `name` in `parent`; a symlink there is an error, not followed.
pub(super) fn open_dir_nofollow(parent: BorrowedFd, name: &[u8]) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Splits a relative path into its parent ("" at the top) and last component.
pub(super) fn split(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (b"", rel),
    }
}

/// End offsets of every prefix of `rel` that ends at a component boundary, shortest
/// first, including `rel` itself.
fn prefix_ends(rel: &[u8]) -> impl Iterator<Item = usize> + '_ {
    rel.iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'/')
        .map(|(i, _)| i)
        .chain(std::iter::once(rel.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_splits() {
        let ends: Vec<_> = prefix_ends(b"a/bc/d").collect();
        assert_eq!(ends, vec![1, 4, 6]);
        assert_eq!(split(b"a/bc/d"), (&b"a/bc"[..], &b"d"[..]));
        assert_eq!(split(b"top"), (&b""[..], &b"top"[..]));
    }
}
