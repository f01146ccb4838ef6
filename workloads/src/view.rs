//! Walking a model's view, and the view digest that proves two views hold the same tree.
//!
//! Every model exposes its installed packages as one directory tree (a root, a profile of
//! symlinks, a FUSE or OverlayFS mount). The harness reports timings only for a view whose
//! digest equals the corpus digest: same paths, kinds, modes (every permission bit of
//! files and directories, and the setuid, setgid and sticky bits), symlink targets and
//! contents. Two things a model may ask the walk to see through, and only these:
//! - `internal_roots`: a symlink whose absolute target lies under one of these is the
//!   model's own indirection (a Nix profile pointing into the store) and is followed, so
//!   the view shows what it points to. A package's own symlinks are never followed.
//! - `excluded`: relative paths of state the model keeps beside the packages (dpkg's
//!   database, `ld.so.cache`); they are neither digested nor walked by the workloads.
//!
//! Which links are internal is worked out once, untimed ([`internal_links`]); the walk
//! itself then makes the same calls per entry for every model: one `lstat`, except for an
//! internal link, which costs one following `stat`, what a program's `open` of the path
//! pays (or one `lstat` of the store entry when that is itself a package's symlink).
//!
//! Modes: a view must show the packages' modes as installed, which is the packages' own
//! with the setuid and setgid bits of regular files cleared (every model strips them:
//! `hooks` at unpack, the image and `.deb` mirrors at pack, NAR cannot carry them). A Nix
//! store cannot hold any other mode than 0444 or 0555 for a file and 0555 for a
//! directory, so a model whose view is a store says so ([`ModeRule::NixStore`]) and is
//! compared with the corpus under that rule ([`TreeDigest::as_installed`]).

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

/// One entry of a tree as the digest sees it. Modes are `st_mode & 0o7777`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Entry {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        size: u64,
        sha256: String,
    },
    Symlink {
        target: String,
    },
}

/// The permission, setuid, setgid and sticky bits of a mode.
pub const MODE_BITS: u32 = 0o7777;
/// The bits every model strips from a regular file (module doc).
pub const SETID_BITS: u32 = 0o6000;

/// How a model's view shows the packages' modes (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModeRule {
    /// The packages' modes, setuid and setgid of regular files cleared.
    #[default]
    AsPackaged,
    /// A Nix store's: files 0555 when their owner may execute them, else 0444;
    /// directories 0555 (Nix's `canonicalisePathMetaData`).
    NixStore,
}

impl Entry {
    fn digest_line(&self) -> String {
        match self {
            Entry::Dir { mode } => format!("d{mode:04o}"),
            Entry::File { mode, sha256, .. } => format!("f{mode:04o}{sha256}"),
            Entry::Symlink { target } => format!("l{target}"),
        }
    }

    /// This entry as a model following `rule` installs it.
    fn as_installed(&self, rule: ModeRule) -> Entry {
        match (self, rule) {
            (Entry::Dir { mode }, ModeRule::AsPackaged) => Entry::Dir { mode: *mode },
            (Entry::Dir { .. }, ModeRule::NixStore) => Entry::Dir { mode: 0o555 },
            (Entry::File { mode, size, sha256 }, rule) => Entry::File {
                mode: match rule {
                    ModeRule::AsPackaged => mode & !SETID_BITS,
                    ModeRule::NixStore if mode & 0o100 != 0 => 0o555,
                    ModeRule::NixStore => 0o444,
                },
                size: *size,
                sha256: sha256.clone(),
            },
            (link @ Entry::Symlink { .. }, _) => link.clone(),
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

    /// The tree as a model following `rule` must show it (module doc): what its view is
    /// compared with.
    pub fn as_installed(&self, rule: ModeRule) -> TreeDigest {
        TreeDigest {
            entries: self
                .entries
                .iter()
                .map(|(path, entry)| (path.clone(), entry.as_installed(rule)))
                .collect(),
        }
    }

    pub fn files(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e, Entry::File { .. }))
            .count()
    }

    /// Adds another tree's entries (a package) to this union. A directory may appear in
    /// many packages and keeps the mode of the first (dpkg leaves an existing directory
    /// as it is; an overlay and the fuse union show the first layer's); any other path in
    /// two packages, or a path that is a directory in one and something else in another,
    /// is a conflict.
    pub fn merge_package(&mut self, other: TreeDigest, package: &str) -> Result<()> {
        for (path, entry) in other.entries {
            match self.entries.get(&path) {
                None => {
                    self.entries.insert(path, entry);
                }
                Some(Entry::Dir { .. }) if matches!(entry, Entry::Dir { .. }) => {}
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
            Entry::Dir { mode } => format!("directory of mode {mode:04o}"),
            Entry::File { mode, size, sha256 } => format!(
                "file of mode {mode:04o} and {size} bytes, sha256 {}",
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

/// The model's own links of a view (module doc), found by an untimed pass: each one's
/// path relative to the view, with its target and whether that target is itself a
/// symlink (a package's, which the view must show as one).
#[derive(Debug, Clone, Default)]
pub struct InternalLinks {
    links: BTreeMap<PathBuf, (PathBuf, bool)>,
}

impl InternalLinks {
    pub fn len(&self) -> usize {
        self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

/// Finds the internal links of `spec`'s view (module doc): a walk that reads every
/// symlink's target when the view has internal roots, and none otherwise. Untimed: the
/// workloads' walk then needs no `readlink`.
pub fn internal_links(spec: &ViewSpec) -> Result<InternalLinks> {
    let mut found = InternalLinks::default();
    if spec.internal_roots.is_empty() {
        return Ok(found);
    }
    find_links(spec, &spec.root, Path::new(""), &mut found, 0)?;
    Ok(found)
}

fn find_links(
    spec: &ViewSpec,
    abs_dir: &Path,
    rel_dir: &Path,
    found: &mut InternalLinks,
    depth: usize,
) -> Result<()> {
    for name in sorted_names(abs_dir, depth)? {
        let rel = rel_dir.join(&name);
        if spec.excluded.iter().any(|x| x == &rel) {
            continue;
        }
        let abs = abs_dir.join(&name);
        let meta =
            fs::symlink_metadata(&abs).with_context(|| format!("lstat {}", abs.display()))?;
        let is_dir = if meta.file_type().is_symlink() {
            let target =
                fs::read_link(&abs).with_context(|| format!("readlink {}", abs.display()))?;
            if !spec.internal_roots.iter().any(|r| target.starts_with(r)) {
                continue;
            }
            let seen = fs::symlink_metadata(&target)
                .with_context(|| format!("following model symlink {}", abs.display()))?;
            let target_is_link = seen.file_type().is_symlink();
            found.links.insert(rel.clone(), (target, target_is_link));
            seen.is_dir()
        } else {
            meta.is_dir()
        };
        if is_dir {
            find_links(spec, &abs, &rel, found, depth + 1)?;
        }
    }
    Ok(())
}

/// The names in a directory in byte order; refuses nesting deeper than 256.
fn sorted_names(abs_dir: &Path, depth: usize) -> Result<Vec<std::ffi::OsString>> {
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
    Ok(names)
}

/// Walks `spec.root` depth first in byte order of names, calling `visit(rel, abs, kind,
/// metadata)` for every entry, seeing through the model's own indirection (`links`, from
/// [`internal_links`]) and skipping excluded state (module doc). Per entry one `lstat`,
/// or for an internal link one following `stat`. `abs` is the path to use for reading
/// the entry: through the view, so the model's lookup cost is paid.
pub fn walk(
    spec: &ViewSpec,
    links: &InternalLinks,
    visit: &mut dyn FnMut(&Path, &Path, WalkKind, &Metadata) -> Result<()>,
) -> Result<()> {
    walk_dir(spec, links, &spec.root, Path::new(""), visit, 0)
}

fn walk_dir(
    spec: &ViewSpec,
    links: &InternalLinks,
    abs_dir: &Path,
    rel_dir: &Path,
    visit: &mut dyn FnMut(&Path, &Path, WalkKind, &Metadata) -> Result<()>,
    depth: usize,
) -> Result<()> {
    for name in sorted_names(abs_dir, depth)? {
        let rel = rel_dir.join(&name);
        if spec.excluded.iter().any(|x| x == &rel) {
            continue;
        }
        let mut abs = abs_dir.join(&name);
        let meta = match links.links.get(&rel) {
            // Exactly one level of the model's indirection is seen through: the store
            // entry may itself be a package's symlink, which the view must show as one.
            Some((target, true)) => {
                abs = target.clone();
                fs::symlink_metadata(&abs)
                    .with_context(|| format!("lstat of model symlink target {}", abs.display()))?
            }
            Some((_, false)) => fs::metadata(&abs)
                .with_context(|| format!("stat through model symlink {}", abs.display()))?,
            None => {
                fs::symlink_metadata(&abs).with_context(|| format!("lstat {}", abs.display()))?
            }
        };
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
            walk_dir(spec, links, &abs, &rel, visit, depth + 1)?;
        }
    }
    Ok(())
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

/// The digest of a view: finds its internal links, walks it, then hashes the files in
/// parallel.
pub fn digest_view(spec: &ViewSpec) -> Result<TreeDigest> {
    let links = internal_links(spec)?;
    let mut entries = BTreeMap::new();
    let mut files: Vec<(String, PathBuf, u32, u64)> = Vec::new();
    walk(spec, &links, &mut |rel, abs, kind, meta| {
        let key = rel_string(rel)?;
        let mode = meta.permissions().mode() & MODE_BITS;
        match kind {
            WalkKind::Dir => {
                entries.insert(key, Entry::Dir { mode });
            }
            WalkKind::Symlink => {
                let target =
                    fs::read_link(abs).with_context(|| format!("readlink {}", abs.display()))?;
                let target = rel_string(&target)?;
                entries.insert(key, Entry::Symlink { target });
            }
            WalkKind::File => {
                files.push((key, abs.to_path_buf(), mode, meta.len()));
            }
        }
        Ok(())
    })?;
    let hashed: Vec<(String, Entry)> = files
        .into_par_iter()
        .map(|(key, abs, mode, size)| {
            let sha256 = sha256_file(&abs)?;
            Ok((key, Entry::File { mode, size, sha256 }))
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
            diff[0].starts_with("/usr/bin/tool: want file of mode 0755"),
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
                "/var: unexpected directory of mode 0755",
                "/var/lib: unexpected directory of mode 0755"
            ]
        );
    }

    #[test]
    fn merge_refuses_a_path_in_two_packages() {
        let mut union = TreeDigest::default();
        let mut one = TreeDigest::default();
        one.entries.insert("usr".into(), Entry::Dir { mode: 0o755 });
        one.entries
            .insert("usr/x".into(), Entry::Symlink { target: "y".into() });
        union.merge_package(one.clone(), "one").unwrap();
        let err = union.merge_package(one, "two").unwrap_err().to_string();
        assert!(err.contains("package two: path /usr/x"), "{err}");
    }

    /// Every permission bit counts, of files and of directories, and the sticky bit:
    /// a model that drops or changes a mode gets a different digest.
    #[test]
    fn the_digest_covers_the_whole_mode_of_files_and_directories() {
        let a = tempfile::tempdir().unwrap();
        tree(a.path());
        let want = digest_view(&ViewSpec::plain(a.path())).unwrap();
        for (path, mode) in [
            ("usr/readme", 0o600),
            ("usr/readme", 0o1644),
            ("usr/bin/tool", 0o750),
            ("usr/bin", 0o700),
            ("usr", 0o1755),
        ] {
            let b = tempfile::tempdir().unwrap();
            tree(b.path());
            fs::set_permissions(b.path().join(path), fs::Permissions::from_mode(mode)).unwrap();
            let got = digest_view(&ViewSpec::plain(b.path())).unwrap();
            assert_ne!(want.hex(), got.hex(), "{path} as {mode:o}");
            let diff = want.differences(&got, 10);
            assert_eq!(diff.len(), 1, "{diff:?}");
            assert!(
                diff[0].starts_with(&format!("/{path}: want "))
                    && diff[0].contains(&format!("{mode:04o}")),
                "{diff:?}"
            );
        }
    }

    #[test]
    fn as_installed_clears_setid_of_files_and_applies_the_nix_store_modes() {
        let mut d = TreeDigest::default();
        d.entries.insert("usr".into(), Entry::Dir { mode: 0o2755 });
        let file = |mode| Entry::File {
            mode,
            size: 1,
            sha256: "00".into(),
        };
        d.entries.insert("usr/su".into(), file(0o4755));
        d.entries.insert("usr/doc".into(), file(0o1644));
        d.entries.insert("usr/x".into(), file(0o700));
        d.entries
            .insert("usr/l".into(), Entry::Symlink { target: "x".into() });
        let shipped = d.as_installed(ModeRule::AsPackaged);
        assert_eq!(shipped.entries["usr"], Entry::Dir { mode: 0o2755 });
        assert_eq!(shipped.entries["usr/su"], file(0o755));
        assert_eq!(shipped.entries["usr/doc"], file(0o1644));
        let store = d.as_installed(ModeRule::NixStore);
        assert_eq!(store.entries["usr"], Entry::Dir { mode: 0o555 });
        assert_eq!(store.entries["usr/su"], file(0o555));
        assert_eq!(store.entries["usr/doc"], file(0o444));
        assert_eq!(store.entries["usr/x"], file(0o555));
        assert_eq!(store.entries["usr/l"], d.entries["usr/l"]);
        assert_ne!(shipped.hex(), store.hex());
    }

    /// The walk itself never reads a link to decide whether it is the model's own: that
    /// is `internal_links`'s untimed pass. Without its answer, a profile's links are
    /// plain symlinks; with it, each is one following stat.
    #[test]
    fn which_links_are_internal_is_decided_before_the_walk() {
        let store = tempfile::tempdir().unwrap();
        let profile = tempfile::tempdir().unwrap();
        tree(store.path());
        fs::create_dir(profile.path().join("usr")).unwrap();
        symlink(store.path().join("usr/bin"), profile.path().join("usr/bin")).unwrap();
        symlink(
            store.path().join("usr/alias"),
            profile.path().join("usr/alias"),
        )
        .unwrap();
        let spec = ViewSpec {
            root: profile.path().into(),
            internal_roots: vec![store.path().into()],
            excluded: vec![],
        };
        let kinds = |links: &InternalLinks| {
            let mut seen = Vec::new();
            walk(&spec, links, &mut |rel, _, kind, _| {
                seen.push((rel.to_string_lossy().into_owned(), kind));
                Ok(())
            })
            .unwrap();
            seen
        };
        let links = internal_links(&spec).unwrap();
        assert_eq!(links.len(), 2);
        assert_eq!(
            kinds(&links),
            vec![
                ("usr".to_string(), WalkKind::Dir),
                ("usr/alias".to_string(), WalkKind::Symlink),
                ("usr/bin".to_string(), WalkKind::Dir),
                ("usr/bin/tool".to_string(), WalkKind::File),
            ]
        );
        assert_eq!(
            kinds(&InternalLinks::default()),
            vec![
                ("usr".to_string(), WalkKind::Dir),
                ("usr/alias".to_string(), WalkKind::Symlink),
                ("usr/bin".to_string(), WalkKind::Symlink),
            ]
        );
        // A plain view has no internal links, and its pass reads no link at all.
        assert!(internal_links(&ViewSpec::plain(store.path()))
            .unwrap()
            .is_empty());
    }
}
