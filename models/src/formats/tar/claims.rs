//! Rules about an archive as a whole, decided before anything touches the disk: which
//! names, link targets and combinations of entries an unpack accepts.

use super::staging::{BACKUP_SUFFIX, DPKG_NEW};
use crate::formats::beneath::{symlink_climbs_out, NameError, RelPath};
use anyhow::{bail, Result};
use std::collections::HashMap;

/// What an entry of this archive made a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Made {
    Dir,
    /// A regular file or a hard link to one.
    File,
    Symlink,
}

impl Made {
    fn noun(self) -> &'static str {
        match self {
            Made::Dir => "directory",
            Made::File => "file",
            Made::Symlink => "symlink",
        }
    }
}

/// The paths this archive has made so far.
#[derive(Default)]
pub(super) struct Claims {
    made: HashMap<Vec<u8>, Made>,
}

impl Claims {
    /// Records what an entry makes `path`, refusing what cannot be unpacked the same way
    /// with and without staging: a name listed twice (a directory may be listed again),
    /// a path below a file or symlink of this archive (with staging that file or symlink
    /// does not exist under its name yet), and names ending in `.dpkg-new` or
    /// `.pkgbench-old`, which staging and the backups of direct staging use for
    /// themselves (an entry under a backup's name would be removed with the backup).
    pub fn claim(&mut self, path: &RelPath, made: Made) -> Result<()> {
        if path.components().any(|c| c.ends_with(DPKG_NEW)) {
            bail!("names ending in \".dpkg-new\" are reserved for staging");
        }
        if path.components().any(|c| c.ends_with(BACKUP_SUFFIX)) {
            bail!("names ending in \".pkgbench-old\" are reserved for backups");
        }
        for ancestor in path.ancestors() {
            match self.made.get(ancestor) {
                Some(Made::Dir) | None => {}
                Some(other) => bail!(
                    "path goes through {:?}, a {} of this archive; writing through it is refused",
                    String::from_utf8_lossy(ancestor),
                    other.noun()
                ),
            }
        }
        match self.made.get(path.as_bytes()) {
            None => {
                self.made.insert(path.as_bytes().to_vec(), made);
                Ok(())
            }
            Some(Made::Dir) if made == Made::Dir => Ok(()),
            Some(_) => bail!("entry appears twice in the archive"),
        }
    }

    /// Whether an earlier entry made `path` a regular file (a valid hard link target).
    pub fn is_file(&self, path: &RelPath) -> bool {
        self.made.get(path.as_bytes()) == Some(&Made::File)
    }
}

/// Accepts a symlink target: not empty, no NUL, and if relative, not climbing above the
/// target directory. Absolute targets are accepted: they mean a path in the installed
/// root and are never followed while unpacking.
pub(super) fn check_symlink_target(path: &RelPath, target: &[u8]) -> Result<()> {
    if target.is_empty() {
        bail!("symlink target is empty");
    }
    if target.contains(&0) {
        bail!("symlink target contains a NUL byte");
    }
    if symlink_climbs_out(path, target) {
        bail!(
            "symlink target {:?} climbs above the target directory",
            String::from_utf8_lossy(target)
        );
    }
    Ok(())
}

/// Parses a hard link's target, which must be a path inside the target.
pub(super) fn hard_link_target(target: &[u8]) -> Result<RelPath> {
    let shown = String::from_utf8_lossy(target);
    match RelPath::parse(target) {
        Ok(Some(target)) => Ok(target),
        Ok(None) => bail!("hard link target {shown:?} is the target directory"),
        Err(NameError::Absolute) => bail!("hard link target {shown:?} is absolute"),
        Err(NameError::DotDot) => {
            bail!("hard link target {shown:?} leads outside the target (\"..\")")
        }
        Err(e) => bail!("hard link target {shown:?}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> RelPath {
        RelPath::parse(s.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn directories_may_repeat_other_names_may_not() {
        let mut claims = Claims::default();
        claims.claim(&rel("usr"), Made::Dir).unwrap();
        claims.claim(&rel("usr"), Made::Dir).unwrap();
        claims.claim(&rel("usr/x"), Made::File).unwrap();
        assert!(claims.claim(&rel("usr/x"), Made::File).is_err());
        assert!(claims.claim(&rel("usr/x"), Made::Dir).is_err());
        assert!(claims.claim(&rel("usr"), Made::Symlink).is_err());
    }

    #[test]
    fn nothing_goes_below_a_file_or_symlink_of_the_archive() {
        let mut claims = Claims::default();
        claims.claim(&rel("evil"), Made::Symlink).unwrap();
        claims.claim(&rel("f"), Made::File).unwrap();
        let err = claims.claim(&rel("evil/passwd"), Made::File).unwrap_err();
        assert!(err.to_string().contains("\"evil\", a symlink"), "{err}");
        assert!(claims.claim(&rel("f/x/y"), Made::Dir).is_err());
    }

    #[test]
    fn staging_names_are_reserved() {
        let mut claims = Claims::default();
        assert!(claims.claim(&rel("a/x.dpkg-new"), Made::File).is_err());
        assert!(claims.claim(&rel("a.dpkg-new/x"), Made::File).is_err());
        assert!(claims.claim(&rel("a/x.dpkg-newer"), Made::File).is_ok());
        assert!(claims.claim(&rel("a/.x.pkgbench-old"), Made::File).is_err());
    }

    #[test]
    fn hard_links_stay_inside_and_only_to_files() {
        assert!(hard_link_target(b"/etc/passwd").is_err());
        assert!(hard_link_target(b"../outside").is_err());
        assert!(hard_link_target(b"./").is_err());
        let mut claims = Claims::default();
        claims.claim(&rel("a/f"), Made::File).unwrap();
        claims.claim(&rel("a/l"), Made::Symlink).unwrap();
        assert!(claims.is_file(&hard_link_target(b"./a//f").unwrap()));
        assert!(!claims.is_file(&rel("a/l")));
    }

    #[test]
    fn symlink_targets() {
        assert!(check_symlink_target(&rel("lib64/ld.so"), b"/lib/ld.so").is_ok());
        assert!(check_symlink_target(&rel("a/l"), b"../b").is_ok());
        assert!(check_symlink_target(&rel("a/l"), b"../../etc").is_err());
        assert!(check_symlink_target(&rel("a/l"), b"").is_err());
    }
}
