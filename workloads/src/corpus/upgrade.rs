//! The point release the `upgrade` workload installs over a corpus: a tenth of its
//! packages in a new version, as a security update to a stable release brings them.
//!
//! A new version of a package ([`new_version`]) has the version `OLD+pkgbench1` and:
//! - every regular file rebuilt: its bytes change throughout (the first 16 bytes of each
//!   4 KiB block are replaced by a hash of package, path and block), so its size and
//!   compressibility stay those of the old file;
//! - its smallest regular file dropped (when it has two or more), which an upgrade must
//!   remove from the view;
//! - one new file, `usr/share/pkgbench-upgrade/NAME`, which it must add;
//! - directories, symlinks, modes, maintainer scripts and triggers unchanged.
//!
//! So an upgrade replaces files, removes one and adds one per package: the three things
//! a package manager's upgrade path does. Real packages (`debian:PKG`, `debs:DIR`) keep
//! working through it: their maintainer scripts run for real on a base root, and their
//! programs, libraries and the shell libraries those scripts source must stay what they
//! are. So in a real package only the documentation is rebuilt (`usr/share/doc`,
//! `usr/share/man`, `usr/share/info`), and the file dropped is the smallest of those
//! (none if it has none). Which packages: sorted by name, every tenth
//! from the first (at least one). The new trees are built once per corpus into
//! `CORPUS_DIR/upgrade-gN/` (built in a temporary directory, renamed into place whole).

use super::{Corpus, CorpusPackage};
use crate::view::{digest_view, Entry, TreeDigest, ViewSpec};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

/// Bumped whenever a new version would be built differently: part of the directory name.
pub const UPGRADE_VERSION: u32 = 2;
/// What a real package's new version may change: files no program runs or reads to work.
const DOC_DIRS: [&str; 3] = ["usr/share/doc", "usr/share/man", "usr/share/info"];
/// One package in this many is upgraded.
const ONE_IN: usize = 10;
/// Where each upgraded package puts its new file.
pub const NEWS_DIR: &str = "usr/share/pkgbench-upgrade";

/// The upgraded packages of a corpus and the view after the upgrade.
#[derive(Debug, Clone)]
pub struct PointRelease {
    /// The new versions, in the corpus's package order.
    pub packages: Vec<CorpusPackage>,
    /// The union of every package after the upgrade: what each view must hold then.
    pub digest: TreeDigest,
}

/// The names of the packages the point release upgrades.
pub fn chosen(corpus: &Corpus) -> Vec<String> {
    let mut names: Vec<&str> = corpus.packages.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    names
        .iter()
        .step_by(ONE_IN)
        .map(|n| n.to_string())
        .collect()
}

/// Builds (or reuses) the point release of `corpus`.
pub fn point_release(corpus: &Corpus) -> Result<PointRelease> {
    let dir = corpus.dir.join(format!("upgrade-g{UPGRADE_VERSION}"));
    let names = chosen(corpus);
    let upgraded: Vec<&CorpusPackage> = corpus
        .packages
        .iter()
        .filter(|p| names.contains(&p.name))
        .collect();
    if !dir.is_dir() {
        let tmp = corpus.dir.join(format!(
            ".upgrade-g{UPGRADE_VERSION}.tmp-{}",
            std::process::id()
        ));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
        }
        for pkg in &upgraded {
            new_version(
                &pkg.root,
                &tmp.join(&pkg.name),
                &pkg.name,
                pkg.control.is_some(),
            )
            .with_context(|| format!("building the new version of {}", pkg.name))?;
        }
        fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        fs::rename(&tmp, &dir)
            .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    }
    let mut digest = corpus.digest.clone();
    let mut packages = Vec::with_capacity(upgraded.len());
    for old in upgraded {
        let root = dir.join(&old.name);
        let after = replace_package(&mut digest, old, &root)?;
        let (files, bytes) = after
            .entries
            .values()
            .filter_map(|e| match e {
                Entry::File { size, .. } => Some(*size),
                _ => None,
            })
            .fold((0, 0), |(n, b), size| (n + 1, b + size));
        packages.push(CorpusPackage {
            version: format!("{}+pkgbench1", old.version),
            root,
            files,
            bytes,
            ..old.clone()
        });
    }
    Ok(PointRelease { packages, digest })
}

/// Replaces in `digest` the package `old` by its new version's tree at `new_root`;
/// returns the new version's own digest.
fn replace_package(
    digest: &mut TreeDigest,
    old: &CorpusPackage,
    new_root: &Path,
) -> Result<TreeDigest> {
    let before = digest_view(&ViewSpec::plain(&old.root))?;
    let after = digest_view(&ViewSpec::plain(new_root))
        .with_context(|| format!("digesting the new version of {}", old.name))?;
    // A package's own files and symlinks leave the view; directories may be shared.
    for (path, entry) in &before.entries {
        if !matches!(entry, Entry::Dir { .. }) {
            digest.entries.remove(path);
        }
    }
    digest.merge_package(after.clone(), &old.name)?;
    Ok(after)
}

/// The view after an upgrade that got through only the new versions of `release` at
/// the places `upgraded` (indices into its packages), each whole, the others still old:
/// what a package manager that upgrades one package at a time (dpkg, distri) leaves
/// when it stops between two. dpkg stops after a prefix of its order; distri, whose
/// downloads run at once, after whichever images had arrived. No places is the corpus's
/// digest, every place the release's.
pub fn digest_with(
    corpus: &Corpus,
    release: &PointRelease,
    upgraded: &[usize],
) -> Result<TreeDigest> {
    let mut digest = corpus.digest.clone();
    for &i in upgraded {
        let Some(new) = release.packages.get(i) else {
            bail!(
                "the point release has {} packages, no package {i}",
                release.packages.len()
            );
        };
        let old = corpus
            .packages
            .iter()
            .find(|p| p.name == new.name)
            .with_context(|| format!("{} of the point release is not in the corpus", new.name))?;
        replace_package(&mut digest, old, &new.root)?;
    }
    Ok(digest)
}

/// Builds the new version of the package tree at `old` into `new` (see the module doc).
/// `real`: only documentation changes (module doc).
pub fn new_version(old: &Path, new: &Path, name: &str, real: bool) -> Result<()> {
    let mut files = Vec::new();
    collect_files(old, Path::new(""), &mut files)?;
    let changes = |rel: &Path| !real || DOC_DIRS.iter().any(|d| rel.starts_with(d));
    files.retain(|(rel, _)| changes(rel));
    // The smallest regular file (ties: the first path) leaves, if one remains.
    let dropped = if files.len() >= 2 {
        files
            .iter()
            .min_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)))
            .map(|(p, _)| p.clone())
    } else {
        None
    };
    copy_tree(old, new, Path::new(""), name, dropped.as_deref(), &changes)?;
    let news_dir = new.join(NEWS_DIR);
    fs::create_dir_all(&news_dir).with_context(|| format!("creating {}", news_dir.display()))?;
    let news = news_dir.join(name);
    fs::write(
        &news,
        format!("{name}: rebuilt for pkgbench's point release\n"),
    )
    .with_context(|| format!("writing {}", news.display()))?;
    fs::set_permissions(&news, fs::Permissions::from_mode(0o644))
        .with_context(|| format!("chmod {}", news.display()))
}

/// Every regular file below `dir` with its size, as paths relative to the tree root.
fn collect_files(dir: &Path, rel: &Path, out: &mut Vec<(PathBuf, u64)>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let meta = entry.metadata()?;
        let rel = rel.join(entry.file_name());
        if meta.is_dir() {
            collect_files(&entry.path(), &rel, out)?;
        } else if meta.is_file() {
            out.push((rel, meta.len()));
        }
    }
    Ok(())
}

fn copy_tree(
    from: &Path,
    to: &Path,
    rel: &Path,
    name: &str,
    dropped: Option<&Path>,
    changes: &dyn Fn(&Path) -> bool,
) -> Result<()> {
    let meta = fs::symlink_metadata(from).with_context(|| format!("stat {}", from.display()))?;
    fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    fs::set_permissions(
        to,
        fs::Permissions::from_mode(meta.permissions().mode() & 0o7777),
    )
    .with_context(|| format!("chmod {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry.with_context(|| format!("reading {}", from.display()))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let rel = rel.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&src, &dst, &rel, name, dropped, changes)?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&src)?;
            symlink(&target, &dst).with_context(|| format!("creating {}", dst.display()))?;
        } else if kind.is_file() {
            if dropped == Some(rel.as_path()) {
                continue;
            }
            let mut bytes = fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
            if changes(&rel) {
                rebuild(&mut bytes, name, &rel);
            }
            fs::write(&dst, &bytes).with_context(|| format!("writing {}", dst.display()))?;
            let mode = entry.metadata()?.permissions().mode() & 0o7777;
            fs::set_permissions(&dst, fs::Permissions::from_mode(mode))
                .with_context(|| format!("chmod {}", dst.display()))?;
        } else {
            bail!("{}: not a file, directory or symlink", src.display());
        }
    }
    Ok(())
}

/// Changes `bytes` throughout, keeping their length: the first 16 bytes of every 4 KiB
/// block become a hash of package, path and block number. An empty file stays empty.
fn rebuild(bytes: &mut [u8], name: &str, rel: &Path) {
    for (block, chunk) in bytes.chunks_mut(4096).enumerate() {
        let mut h = Sha256::new();
        h.update(name.as_bytes());
        h.update([0]);
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update((block as u64).to_le_bytes());
        let hash = h.finalize();
        let n = chunk.len().min(16);
        chunk[..n].copy_from_slice(&hash[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_packages_new_version_changes_only_its_documentation() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        fs::create_dir_all(old.join("usr/bin")).unwrap();
        fs::create_dir_all(old.join("usr/share/doc/p")).unwrap();
        fs::write(old.join("usr/bin/p"), b"#!/bin/sh\necho ok\n").unwrap();
        fs::write(old.join("usr/share/doc/p/copyright"), b"c").unwrap();
        fs::write(old.join("usr/share/doc/p/changelog"), vec![1u8; 5000]).unwrap();
        let new = dir.path().join("new");
        new_version(&old, &new, "p", true).unwrap();
        assert_eq!(
            fs::read(new.join("usr/bin/p")).unwrap(),
            b"#!/bin/sh\necho ok\n"
        );
        assert!(
            !new.join("usr/share/doc/p/copyright").exists(),
            "the smallest doc leaves"
        );
        assert_ne!(
            fs::read(new.join("usr/share/doc/p/changelog")).unwrap(),
            vec![1u8; 5000]
        );
        assert!(new.join(NEWS_DIR).join("p").is_file());
    }

    #[test]
    fn a_new_version_changes_every_file_drops_the_smallest_and_adds_one() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        fs::create_dir_all(old.join("usr/bin")).unwrap();
        fs::create_dir_all(old.join("usr/share/doc/p")).unwrap();
        fs::write(old.join("usr/bin/p"), vec![7u8; 10_000]).unwrap();
        fs::set_permissions(old.join("usr/bin/p"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(old.join("usr/share/doc/p/copyright"), b"c").unwrap();
        symlink("p", old.join("usr/bin/q")).unwrap();
        let new = dir.path().join("new");
        new_version(&old, &new, "p", false).unwrap();

        let bin = fs::read(new.join("usr/bin/p")).unwrap();
        assert_eq!(bin.len(), 10_000);
        assert_ne!(bin, vec![7u8; 10_000]);
        assert_eq!(&bin[16..4096], &[7u8; 4080][..], "only block heads change");
        let mode = fs::metadata(new.join("usr/bin/p"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(
            !new.join("usr/share/doc/p/copyright").exists(),
            "the smallest file leaves"
        );
        assert!(new.join("usr/share/doc/p").is_dir(), "its directory stays");
        assert_eq!(
            fs::read_link(new.join("usr/bin/q")).unwrap(),
            Path::new("p")
        );
        assert!(new.join(NEWS_DIR).join("p").is_file());
        // Deterministic: a second build is byte-identical.
        let again = dir.path().join("again");
        new_version(&old, &again, "p", false).unwrap();
        assert_eq!(fs::read(again.join("usr/bin/p")).unwrap(), bin);
    }
}
