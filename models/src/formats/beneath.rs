//! Safe path resolution inside a target directory, for unpacking untrusted archives.
//!
//! Two layers, because a name check alone cannot see the symlinks already on disk:
//!
//! - [`RelPath`] normalises an archive's entry name lexically: no absolute names, no
//!   `..`, no NUL; `.` and empty components (`./usr//bin`) are dropped. Every name an
//!   unpacker passes to the kernel is one component of a `RelPath`, never a path.
//! - [`Beneath`] holds the target open and resolves a *directory* inside it with
//!   `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`: the kernel walks the path and
//!   refuses (`EXDEV`) any step, through `..` or a symlink, absolute or relative, that
//!   would leave the target, and refuses `/proc` magic links (`ELOOP`). Symlinks that stay
//!   inside (`usr/share/doc/libgcc-s1 -> gcc-12-base`) are followed. The final component
//!   is then created with `*at` calls relative to that directory, so a symlink in the
//!   final component is never followed either.
//!
//! `RESOLVE_IN_ROOT` would instead resolve absolute symlinks as if the target were `/`
//! (what `dpkg --root` means by them); writing through a package's symlink is refused
//! either way, so the stricter `RESOLVE_BENEATH` is used and the refusal is explicit.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags, ResolveFlags, CWD};
use rustix::io::Errno;
use std::fmt;
use std::path::Path;

/// How often a resolution is retried when the kernel reports a concurrent rename
/// (`EAGAIN` from `RESOLVE_BENEATH`); renames inside the target are the unpacker's own.
const RACE_RETRIES: usize = 8;

/// Why an entry name is not a path inside the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    Empty,
    Absolute,
    DotDot,
    Nul,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::Empty => "name is empty",
            NameError::Absolute => "name is absolute",
            NameError::DotDot => "name may not contain \"..\"",
            NameError::Nul => "name contains a NUL byte",
        })
    }
}

impl std::error::Error for NameError {}

/// A normalised relative path: components joined by single `/`, none of them empty, `.`
/// or `..`, no NUL. Never the target itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelPath(Vec<u8>);

impl RelPath {
    /// Parses an archive name. `Ok(None)` means the name denotes the target itself
    /// (`.` or `./`, the first entry of every dpkg `data.tar`).
    pub fn parse(raw: &[u8]) -> Result<Option<RelPath>, NameError> {
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        if raw[0] == b'/' {
            return Err(NameError::Absolute);
        }
        if raw.contains(&0) {
            return Err(NameError::Nul);
        }
        let mut out = Vec::with_capacity(raw.len());
        for component in raw.split(|&b| b == b'/') {
            match component {
                b"" | b"." => continue,
                b".." => return Err(NameError::DotDot),
                _ => {
                    if !out.is_empty() {
                        out.push(b'/');
                    }
                    out.extend_from_slice(component);
                }
            }
        }
        Ok((!out.is_empty()).then_some(RelPath(out)))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The directory holding this path, relative to the target ("" at the top).
    pub fn parent(&self) -> &[u8] {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.0[..i],
            None => b"",
        }
    }

    /// The last component.
    pub fn file_name(&self) -> &[u8] {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|&b| b == b'/')
    }

    /// Every proper ancestor except the target itself, shortest first ("a", "a/b" for
    /// "a/b/c").
    pub fn ancestors(&self) -> impl Iterator<Item = &[u8]> {
        self.0
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'/')
            .map(|(i, _)| &self.0[..i])
    }

    /// The same path with `suffix` appended to its last component (`x` -> `x.dpkg-new`).
    pub fn with_suffix(&self, suffix: &[u8]) -> RelPath {
        let mut bytes = self.0.clone();
        bytes.extend_from_slice(suffix);
        RelPath(bytes)
    }

    /// The path as dpkg lists it: absolute inside the target ("/usr/bin/x").
    pub fn to_listed(&self) -> std::path::PathBuf {
        use std::os::unix::ffi::OsStrExt;
        let mut bytes = Vec::with_capacity(self.0.len() + 1);
        bytes.push(b'/');
        bytes.extend_from_slice(&self.0);
        Path::new(std::ffi::OsStr::from_bytes(&bytes)).to_path_buf()
    }
}

/// Whether a symlink at `link` with the relative `target` climbs above the target
/// directory through `..` ("a/l" -> "../../etc"), judged lexically. This is policy, not
/// the safety boundary: a link that passes can still point at another symlink that leaves,
/// which is why [`Beneath`] resolution never trusts symlinks. Absolute targets are not
/// judged here (they are meaningful only relative to the target as a root).
pub fn symlink_climbs_out(link: &RelPath, target: &[u8]) -> bool {
    if target.first() == Some(&b'/') {
        return false;
    }
    // Depth of the directory holding the link, below the target.
    let mut depth = link.components().count() as isize - 1;
    for component in target.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

/// A target directory held open; every directory inside it is resolved beneath it.
#[derive(Debug)]
pub struct Beneath {
    root: OwnedFd,
}

impl Beneath {
    /// Opens the target. The target itself may be reached through symlinks: it is the
    /// caller's choice, not the archive's.
    pub fn open(dir: &Path) -> rustix::io::Result<Beneath> {
        let root = rustix::fs::openat(
            CWD,
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Beneath { root })
    }

    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Resolves directory `rel` ("" for the target) into an `O_PATH` handle usable as the
    /// directory of `*at` calls.
    pub fn open_dir(&self, rel: &[u8]) -> rustix::io::Result<OwnedFd> {
        self.resolve(rel, OFlags::PATH | OFlags::DIRECTORY)
    }

    /// Resolves directory `rel` for reading: a handle that can be `fsync`ed.
    pub fn open_dir_readable(&self, rel: &[u8]) -> rustix::io::Result<OwnedFd> {
        self.resolve(rel, OFlags::RDONLY | OFlags::DIRECTORY)
    }

    fn resolve(&self, rel: &[u8], flags: OFlags) -> rustix::io::Result<OwnedFd> {
        let path: &[u8] = if rel.is_empty() { b"." } else { rel };
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        let mut attempts = 0;
        loop {
            match rustix::fs::openat2(
                &self.root,
                path,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                resolve,
            ) {
                Err(Errno::AGAIN) if attempts < RACE_RETRIES => attempts += 1,
                other => return other,
            }
        }
    }
}

/// Says what a failed resolution means for a package: the kernel's refusals become
/// the reason an entry is refused.
pub fn describe_resolve_error(err: Errno) -> String {
    match err {
        Errno::XDEV | Errno::LOOP => "path leads outside the target through a symlink".into(),
        Errno::NOTDIR => "a parent of this path is not a directory".into(),
        Errno::NOENT => "a parent directory of this path does not exist".into(),
        Errno::NOSYS => "openat2 is not available (Linux 5.6 or later is needed)".into(),
        other => format!(
            "resolving the parent directory: {}",
            std::io::Error::from(other)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> RelPath {
        RelPath::parse(s.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(rel("./usr//bin/./x").as_bytes(), b"usr/bin/x");
        assert_eq!(rel("usr/").as_bytes(), b"usr");
        assert_eq!(RelPath::parse(b"./"), Ok(None));
        assert_eq!(RelPath::parse(b"."), Ok(None));
    }

    #[test]
    fn hostile_names_are_refused() {
        assert_eq!(RelPath::parse(b""), Err(NameError::Empty));
        assert_eq!(RelPath::parse(b"/etc/x"), Err(NameError::Absolute));
        assert_eq!(RelPath::parse(b"../x"), Err(NameError::DotDot));
        assert_eq!(RelPath::parse(b"a/../../x"), Err(NameError::DotDot));
        assert_eq!(
            RelPath::parse(b"a/..b"),
            Ok(Some(RelPath(b"a/..b".to_vec())))
        );
        assert_eq!(RelPath::parse(b"a\0b"), Err(NameError::Nul));
    }

    #[test]
    fn parts_of_a_path() {
        let p = rel("a/b/c");
        assert_eq!(p.parent(), b"a/b");
        assert_eq!(p.file_name(), b"c");
        assert_eq!(p.ancestors().collect::<Vec<_>>(), vec![&b"a"[..], b"a/b"]);
        assert_eq!(rel("top").parent(), b"");
        assert_eq!(rel("top").ancestors().count(), 0);
        assert_eq!(p.with_suffix(b".dpkg-new").as_bytes(), b"a/b/c.dpkg-new");
        assert_eq!(p.to_listed(), Path::new("/a/b/c"));
    }

    #[test]
    fn symlinks_that_climb_out_are_recognised() {
        assert!(symlink_climbs_out(&rel("a/l"), b"../../etc"));
        assert!(symlink_climbs_out(&rel("l"), b".."));
        assert!(symlink_climbs_out(&rel("a/l"), b"x/../../../y"));
        assert!(!symlink_climbs_out(&rel("a/l"), b"../etc"));
        assert!(!symlink_climbs_out(&rel("usr/share/doc/x"), b"gcc-12-base"));
        assert!(!symlink_climbs_out(
            &rel("lib64/ld.so"),
            b"/lib/x86_64-linux-gnu/ld.so"
        ));
    }
}
