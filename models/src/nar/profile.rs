//! The profile: one FHS tree of symlinks into the store that merges every package, as
//! Nix's `buildEnv` (nixpkgs' `build-support/buildenv/builder.pl`) makes a user
//! environment.
//!
//! The result is the same as buildEnv's: a directory that only one package provides is one
//! symlink to that package's directory; a directory several packages provide is a real
//! directory whose entries are merged the same way, one level down; every other entry is a
//! symlink to the package's entry. Links are absolute, to the store directory as it lies
//! on disk (a store below a target stands in for `/nix/store`).
//!
//! Where it differs: buildEnv probes the growing profile on disk and, when a second
//! package provides a directory that is still one symlink, replaces the symlink by a
//! directory; here every store path is read once (`readdir`, kinds from `d_type`), the
//! merged tree is computed in memory and written once. buildEnv treats a symlink to a
//! directory as a directory and forgives two identical files; here, as in the corpus
//! digest, a symlink is never merged, and any path two packages provide (other than a
//! directory both provide) is an error naming both.

use super::narinfo::STORE_DIR;
use anyhow::{bail, Context, Result};
use rustix::fs::{AtFlags, Timespec, Timestamps, CWD, UTIME_OMIT};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

/// A package in the profile.
#[derive(Debug, Clone)]
pub struct Member {
    pub package: String,
    /// `HASH-NAME` in the store.
    pub store_path: String,
}

enum Node {
    Dir {
        providers: Vec<usize>,
        children: BTreeMap<OsString, Node>,
    },
    Leaf {
        provider: usize,
        /// The package's entry is itself a symlink (see `Writer::link`).
        symlink: bool,
    },
}

/// What the profile holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProfileReport {
    pub directories: u64,
    pub symlinks: u64,
}

/// Builds the profile of `members` (each a directory in `store`) as the new directory
/// `out`, with canonical metadata (directories 0555, modification time 1).
pub fn build_profile(store: &Path, members: &[Member], out: &Path) -> Result<ProfileReport> {
    let mut root = BTreeMap::new();
    for (i, m) in members.iter().enumerate() {
        let dir = store.join(&m.store_path);
        merge(&mut root, &dir, Path::new(""), i, members)
            .with_context(|| format!("building the profile from {}", dir.display()))?;
    }
    let mut report = ProfileReport::default();
    fs::create_dir(out).with_context(|| format!("creating {}", out.display()))?;
    let mut writer = Writer {
        store,
        members,
        report: &mut report,
    };
    writer.children(out, Path::new(""), &root)?;
    canonical_dir(out)?;
    Ok(report)
}

/// Adds the entries of `dir` (the directory `rel` of member `i`) to `children`.
fn merge(
    children: &mut BTreeMap<OsString, Node>,
    dir: &Path,
    rel: &Path,
    i: usize,
    members: &[Member],
) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name();
        let kind = entry
            .file_type()
            .with_context(|| format!("lstat {}", entry.path().display()))?;
        let is_dir = kind.is_dir();
        let child_rel = rel.join(&name);
        match (children.get_mut(&name), is_dir) {
            (None, true) => {
                let mut grand = BTreeMap::new();
                merge(&mut grand, &entry.path(), &child_rel, i, members)?;
                children.insert(
                    name,
                    Node::Dir {
                        providers: vec![i],
                        children: grand,
                    },
                );
            }
            (None, false) => {
                children.insert(
                    name,
                    Node::Leaf {
                        provider: i,
                        symlink: kind.is_symlink(),
                    },
                );
            }
            (
                Some(Node::Dir {
                    providers,
                    children: grand,
                }),
                true,
            ) => {
                providers.push(i);
                merge(grand, &entry.path(), &child_rel, i, members)?;
            }
            (Some(Node::Dir { providers, .. }), false) => {
                collision(&child_rel, members, providers[0], i)?
            }
            (Some(Node::Leaf { provider, .. }), _) => collision(&child_rel, members, *provider, i)?,
        }
    }
    Ok(())
}

fn collision(rel: &Path, members: &[Member], first: usize, second: usize) -> Result<()> {
    let (a, b) = (&members[first], &members[second]);
    bail!(
        "collision: /{} is provided by both package {} ({STORE_DIR}/{}) and package {} ({STORE_DIR}/{})",
        rel.display(),
        a.package,
        a.store_path,
        b.package,
        b.store_path
    )
}

struct Writer<'a> {
    store: &'a Path,
    members: &'a [Member],
    report: &'a mut ProfileReport,
}

impl Writer<'_> {
    /// Links `at` to the provider's entry in the store. A package's own symlink with a
    /// relative target is copied instead: linked to, it would resolve inside its store
    /// path, and Debian packages point across packages (`/usr/bin/python3 ->
    /// python3.11`, shipped by python3 and python3.11-minimal). Nix packages are built
    /// never to need this; buildEnv links to the symlink. The digest sees the same target
    /// either way.
    fn link(&mut self, at: &Path, rel: &Path, provider: usize, is_symlink: bool) -> Result<()> {
        let mut target: PathBuf = self
            .store
            .join(&self.members[provider].store_path)
            .join(rel);
        if is_symlink {
            let own =
                fs::read_link(&target).with_context(|| format!("readlink {}", target.display()))?;
            if own.is_relative() {
                target = own;
            }
        }
        symlink(&target, at).with_context(|| format!("creating {}", at.display()))?;
        rustix::fs::utimensat(CWD, at, &MTIME_STORE, AtFlags::SYMLINK_NOFOLLOW)
            .with_context(|| format!("setting the time of {}", at.display()))?;
        self.report.symlinks += 1;
        Ok(())
    }

    fn children(
        &mut self,
        dir: &Path,
        rel: &Path,
        children: &BTreeMap<OsString, Node>,
    ) -> Result<()> {
        for (name, node) in children {
            let at = dir.join(name);
            let child_rel = rel.join(name);
            match node {
                Node::Leaf { provider, symlink } => {
                    self.link(&at, &child_rel, *provider, *symlink)?
                }
                Node::Dir { providers, .. } if providers.len() == 1 => {
                    self.link(&at, &child_rel, providers[0], false)?
                }
                Node::Dir { children, .. } => {
                    fs::create_dir(&at).with_context(|| format!("creating {}", at.display()))?;
                    self.children(&at, &child_rel, children)?;
                    canonical_dir(&at)?;
                    self.report.directories += 1;
                }
            }
        }
        Ok(())
    }
}

const MTIME_STORE: Timestamps = Timestamps {
    last_access: Timespec {
        tv_sec: 0,
        tv_nsec: UTIME_OMIT,
    },
    last_modification: Timespec {
        tv_sec: 1,
        tv_nsec: 0,
    },
};

fn canonical_dir(dir: &Path) -> Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o555))
        .with_context(|| format!("chmod {}", dir.display()))?;
    rustix::fs::utimensat(CWD, dir, &MTIME_STORE, AtFlags::empty())
        .with_context(|| format!("setting the time of {}", dir.display()))
}
