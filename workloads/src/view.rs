//! Walking a model's view, and the view digest that proves two views hold the same tree.
//!
//! Every model exposes its installed packages as one directory tree (a root, a profile of
//! symlinks, a FUSE or OverlayFS mount). The harness reports timings only for a view whose
//! digest equals the corpus digest: same paths, kinds, executable bits, symlink targets and
//! contents. Two things a model may ask the walk to see through, and only these:
//! - `internal_roots`: a symlink whose absolute target lies under one of these is the
//!   model's own indirection (a Nix profile pointing into the store) and is followed, so
//!   the view shows what it points to. A package's own symlinks are never followed.
//! - `excluded`: relative paths of state the model keeps beside the packages (dpkg's
//!   database, `ld.so.cache`); they are neither digested nor walked by the workloads.

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What the walk may see through in a model's view (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct ViewSpec {
    pub root: PathBuf,
    pub internal_roots: Vec<PathBuf>,
    pub excluded: Vec<PathBuf>,
}

impl ViewSpec {
    pub fn plain(root: impl Into<PathBuf>) -> Self {
        ViewSpec {
            root: root.into(),
            ..Default::default()
        }
    }
}

/// One entry of a tree as the digest sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Entry {
    Dir,
    File {
        executable: bool,
        size: u64,
        sha256: String,
    },
    Symlink {
        target: String,
    },
}

impl Entry {
    fn digest_line(&self) -> String {
        match self {
            Entry::Dir => "d".to_string(),
            Entry::File {
                executable, sha256, ..
            } => format!("f{}{}", if *executable { 'x' } else { '-' }, sha256),
            Entry::Symlink { target } => format!("l{target}"),
        }
    }
}

/// The kind of an entry met during a walk, before any content is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkKind {
    Dir,
    File,
    Symlink,
}

/// A tree's entries keyed by their path relative to the root ("usr/bin/qemu"), without
/// the root itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeDigest {
    pub entries: BTreeMap<String, Entry>,
}

impl TreeDigest {
    /// The digest: sha256 over every entry in byte order of its path.
    pub fn hex(&self) -> String {
        let mut hasher = Sha256::new();
        for (path, entry) in &self.entries {
            hasher.update(path.as_bytes());
            hasher.update([0]);
            hasher.update(entry.digest_line().as_bytes());
            hasher.update([b'\n']);
        }
        hex(&hasher.finalize())
    }

    pub fn files(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e, Entry::File { .. }))
            .count()
    }

    /// Adds another tree's entries (a package) to this union. A directory may appear in
    /// many packages; any other path in two packages, or a path that is a directory in
    /// one and something else in another, is a conflict.
    pub fn merge_package(&mut self, other: TreeDigest, package: &str) -> Result<()> {
        for (path, entry) in other.entries {
            match self.entries.get(&path) {
                None => {
                    self.entries.insert(path, entry);
                }
                Some(Entry::Dir) if entry == Entry::Dir => {}
                Some(_) => {
                    bail!("package {package}: path /{path} is already provided by another package")
                }
            }
        }
        Ok(())
    }

    /// The paths where `self` (expected) and `actual` differ, at most `limit` of them.
    pub fn differences(&self, actual: &TreeDigest, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        for (path, want) in &self.entries {
            match actual.entries.get(path) {
                None => out.push(format!("/{path}: missing (want {})", want.describe())),
                Some(got) if got != want => out.push(format!(
                    "/{path}: want {}, view has {}",
                    want.describe(),
                    got.describe()
                )),
                Some(_) => {}
            }
            if out.len() >= limit {
                return out;
            }
        }
        for (path, got) in &actual.entries {
            if !self.entries.contains_key(path) {
                out.push(format!("/{path}: unexpected {}", got.describe()));
                if out.len() >= limit {
                    break;
                }
            }
        }
        out
    }
}

impl Entry {
    fn describe(&self) -> String {
        match self {
            Entry::Dir => "directory".into(),
            Entry::File {
                executable,
                size,
                sha256,
            } => format!(
                "{} file of {size} bytes, sha256 {}",
                if *executable { "executable" } else { "plain" },
                &sha256[..12.min(sha256.len())]
            ),
            Entry::Symlink { target } => format!("symlink to {target:?}"),
        }
    }
}

/// Lowercase hexadecimal of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Path relative to the view, as the digest and error messages spell it.
pub fn rel_string(rel: &Path) -> Result<String> {
    rel.to_str()
        .map(str::to_owned)
        .with_context(|| format!("path {rel:?} is not UTF-8"))
}

/// Walks `spec.root` depth first in byte order of names, calling `visit(rel, abs, kind,
/// metadata)` for every entry, seeing through the model's own indirection and skipping
/// excluded state (module doc). `abs` is the path to use for reading the entry: through the
/// view, so the model's lookup cost is paid.
pub fn walk(
    spec: &ViewSpec,
    visit: &mut dyn FnMut(&Path, &Path, WalkKind, &Metadata) -> Result<()>,
) -> Result<()> {
    walk_dir(spec, &spec.root, Path::new(""), visit, 0)
}

fn walk_dir(
    spec: &ViewSpec,
    abs_dir: &Path,
    rel_dir: &Path,
    visit: &mut dyn FnMut(&Path, &Path, WalkKind, &Metadata) -> Result<()>,
    depth: usize,
) -> Result<()> {
    if depth > 256 {
        bail!(
            "{}: directories nested deeper than 256 (a loop?)",
            abs_dir.display()
        );
    }
    let mut names: Vec<_> = fs::read_dir(abs_dir)
        .with_context(|| format!("reading directory {}", abs_dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading directory {}", abs_dir.display()))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let rel = rel_dir.join(&name);
        if spec.excluded.iter().any(|x| x == &rel) {
            continue;
        }
        let mut abs = abs_dir.join(&name);
        let mut meta =
            fs::symlink_metadata(&abs).with_context(|| format!("lstat {}", abs.display()))?;
        if meta.file_type().is_symlink() {
            if let Some(target) = internal_link_target(spec, &abs)? {
                // Exactly one level of the model's indirection is seen through: the store
                // entry may itself be a package's symlink, which the view must show as one.
                meta = fs::symlink_metadata(&target)
                    .with_context(|| format!("following model symlink {}", abs.display()))?;
                if meta.file_type().is_symlink() {
                    abs = target;
                }
            }
        }
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            WalkKind::Dir
        } else if ft.is_file() {
            WalkKind::File
        } else if ft.is_symlink() {
            WalkKind::Symlink
        } else if ft.is_block_device() || ft.is_char_device() || ft.is_fifo() || ft.is_socket() {
            bail!(
                "{}: special files have no place in a package view",
                abs.display()
            )
        } else {
            bail!("{}: unknown file type", abs.display())
        };
        visit(&rel, &abs, kind, &meta)?;
        if kind == WalkKind::Dir {
            walk_dir(spec, &abs, &rel, visit, depth + 1)?;
        }
    }
    Ok(())
}

/// The target of `link` when it is the model's own indirection (module doc).
fn internal_link_target(spec: &ViewSpec, link: &Path) -> Result<Option<PathBuf>> {
    if spec.internal_roots.is_empty() {
        return Ok(None);
    }
    let target = fs::read_link(link).with_context(|| format!("readlink {}", link.display()))?;
    Ok(spec
        .internal_roots
        .iter()
        .any(|r| target.starts_with(r))
        .then_some(target))
}

/// Hashes a file's contents with sha256, streaming.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// The digest of a view: walks it, then hashes the files in parallel.
pub fn digest_view(spec: &ViewSpec) -> Result<TreeDigest> {
    let mut entries = BTreeMap::new();
    let mut files: Vec<(String, PathBuf, bool, u64)> = Vec::new();
    walk(spec, &mut |rel, abs, kind, meta| {
        let key = rel_string(rel)?;
        match kind {
            WalkKind::Dir => {
                entries.insert(key, Entry::Dir);
            }
            WalkKind::Symlink => {
                let target =
                    fs::read_link(abs).with_context(|| format!("readlink {}", abs.display()))?;
                let target = rel_string(&target)?;
                entries.insert(key, Entry::Symlink { target });
            }
            WalkKind::File => {
                let executable = meta.permissions().mode() & 0o100 != 0;
                files.push((key, abs.to_path_buf(), executable, meta.len()));
            }
        }
        Ok(())
    })?;
    let hashed: Vec<(String, Entry)> = files
        .into_par_iter()
        .map(|(key, abs, executable, size)| {
            let sha256 = sha256_file(&abs)?;
            Ok((
                key,
                Entry::File {
                    executable,
                    size,
                    sha256,
                },
            ))
        })
        .collect::<Result<_>>()?;
    entries.extend(hashed);
    Ok(TreeDigest { entries })
}

/// True when `name` is one path component a tree may hold.
pub fn is_plain_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && b != b"." && b != b".." && !b.contains(&b'/') && !b.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree(dir: &Path) {
        fs::create_dir_all(dir.join("usr/bin")).unwrap();
        fs::write(dir.join("usr/bin/tool"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(dir.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.join("usr/readme"), b"hello").unwrap();
        symlink("bin/tool", dir.join("usr/alias")).unwrap();
    }

    #[test]
    fn same_tree_same_digest_and_changes_are_named() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        tree(a.path());
        tree(b.path());
        let da = digest_view(&ViewSpec::plain(a.path())).unwrap();
        let db = digest_view(&ViewSpec::plain(b.path())).unwrap();
        assert_eq!(da.hex(), db.hex());
        assert_eq!(da.entries.len(), 5);

        fs::write(b.path().join("usr/readme"), b"hellO").unwrap();
        fs::set_permissions(
            b.path().join("usr/bin/tool"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let db = digest_view(&ViewSpec::plain(b.path())).unwrap();
        assert_ne!(da.hex(), db.hex());
        let diff = da.differences(&db, 10);
        assert_eq!(diff.len(), 2, "{diff:?}");
        assert!(
            diff[0].starts_with("/usr/bin/tool: want executable"),
            "{diff:?}"
        );
        assert!(diff[1].starts_with("/usr/readme"), "{diff:?}");
    }

    #[test]
    fn model_indirection_is_transparent_but_package_symlinks_are_not() {
        let store = tempfile::tempdir().unwrap();
        let plain = tempfile::tempdir().unwrap();
        let profile = tempfile::tempdir().unwrap();
        tree(store.path());
        tree(plain.path());
        // A profile whose `usr/bin` is one symlink into the store, as buildEnv makes it,
        // and whose `usr/alias` links to the store's entry, itself a package symlink.
        fs::create_dir(profile.path().join("usr")).unwrap();
        symlink(store.path().join("usr/bin"), profile.path().join("usr/bin")).unwrap();
        symlink(
            store.path().join("usr/alias"),
            profile.path().join("usr/alias"),
        )
        .unwrap();
        symlink(
            store.path().join("usr/readme"),
            profile.path().join("usr/readme"),
        )
        .unwrap();
        let want = digest_view(&ViewSpec::plain(plain.path())).unwrap();
        let seen_through = digest_view(&ViewSpec {
            root: profile.path().into(),
            internal_roots: vec![store.path().into()],
            excluded: vec![],
        })
        .unwrap();
        assert_eq!(want, seen_through);
        let not_declared = digest_view(&ViewSpec::plain(profile.path())).unwrap();
        assert_ne!(want.hex(), not_declared.hex());
    }

    #[test]
    fn excluded_state_is_not_digested() {
        let a = tempfile::tempdir().unwrap();
        tree(a.path());
        let want = digest_view(&ViewSpec::plain(a.path())).unwrap();
        fs::create_dir_all(a.path().join("var/lib/dpkg")).unwrap();
        let spec = ViewSpec {
            root: a.path().into(),
            internal_roots: vec![],
            excluded: vec![PathBuf::from("var/lib/dpkg")],
        };
        // Its parents are not excluded, so the digest differs by exactly those.
        let got = digest_view(&spec).unwrap();
        assert_eq!(
            want.differences(&got, 10),
            vec![
                "/var: unexpected directory",
                "/var/lib: unexpected directory"
            ]
        );
    }

    #[test]
    fn merge_refuses_a_path_in_two_packages() {
        let mut union = TreeDigest::default();
        let mut one = TreeDigest::default();
        one.entries.insert("usr".into(), Entry::Dir);
        one.entries
            .insert("usr/x".into(), Entry::Symlink { target: "y".into() });
        union.merge_package(one.clone(), "one").unwrap();
        let err = union.merge_package(one, "two").unwrap_err().to_string();
        assert!(err.contains("package two: path /usr/x"), "{err}");
    }
}
