//! The `composefs` model's mirror: one manifest per package, and a content-addressed
//! object store shared by every package and version.
//!
//! Laid out as an ostree archive repository is fetched: a package's manifest (its
//! "commit" and "dirtree" in one JSON file, `manifests/NAME_VERSION.json`) lists every
//! entry with its mode, owner and time; a regular file larger than composefs's inline
//! limit ([`INLINE_MAX`], 64 bytes) names its object by its fs-verity sha256 digest,
//! smaller ones carry their bytes (composefs stores them in the EROFS image, not as
//! objects). Objects are `objects/XX/REST.zlib`, XX and REST the digest's hex as
//! composefs's own store names them, zlib-compressed as ostree's archive objects are
//! (level 6, ostree's default). An object two packages or two versions share is on the
//! mirror once, and a client that holds it fetches nothing.

use crate::PackageTree;
use anyhow::{bail, Context, Result};
use composefs::fsverity::{compute_verity, FsVerityHashValue, Sha256HashValue};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Regular files of at most this many bytes go into the image itself.
pub const INLINE_MAX: usize = composefs::INLINE_CONTENT_MAX_V0;
/// The manifest format this module writes and reads.
pub const FORMAT: u32 = 1;

/// One package's manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub package: String,
    pub version: String,
    /// Every entry of the package, parents before children; the first is the root ("").
    pub entries: Vec<Entry>,
}

/// One entry of a manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to the package root, `/`-separated; "" is the root.
    pub path: String,
    /// Permission bits (`0o7777` at most; setuid and setgid already stripped).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub kind: Kind,
    /// Regular files: their size.
    #[serde(default)]
    pub size: u64,
    /// Regular files above [`INLINE_MAX`]: their object (fs-verity sha256, hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Regular files up to [`INLINE_MAX`]: their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<Vec<u8>>,
    /// Symlinks: their target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Dir,
    File,
    Symlink,
}

impl Entry {
    /// The object of a regular file stored as one.
    pub fn object_id(&self) -> Result<Option<Sha256HashValue>> {
        self.object
            .as_deref()
            .map(|hex| {
                Sha256HashValue::from_hex(hex)
                    .map_err(|e| anyhow::anyhow!("{}: object {hex:?}: {e:?}", self.path))
            })
            .transpose()
    }
}

/// The manifest's place on the mirror.
pub fn manifest_path(name: &str, version: &str) -> PathBuf {
    PathBuf::from("manifests").join(format!("{name}_{}.json", version.replace(':', "%3a")))
}

/// An object's place on the mirror.
pub fn object_path(id: &Sha256HashValue) -> PathBuf {
    PathBuf::from("objects").join(format!("{}.zlib", id.to_object_pathname()))
}

/// Packs `pkg` into `mirror`: its objects (those not already there) and its manifest.
/// Returns the mirror files of the package, the manifest first.
pub fn pack(pkg: &PackageTree, mirror: &Path) -> Result<Vec<PathBuf>> {
    let mut entries = Vec::new();
    let mut objects = Vec::new();
    walk(&pkg.root, Path::new(""), mirror, &mut entries, &mut objects)
        .with_context(|| format!("packing {} from {}", pkg.name, pkg.root.display()))?;
    let manifest = Manifest {
        format: FORMAT,
        package: pkg.name.clone(),
        version: pkg.version.clone(),
        entries,
    };
    let rel = manifest_path(&pkg.name, &pkg.version);
    let path = mirror.join(&rel);
    let dir = path.parent().context("manifest path without parent")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = serde_json::to_vec(&manifest)?;
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    objects.sort();
    objects.dedup();
    let mut files = vec![rel];
    files.extend(objects);
    Ok(files)
}

/// Adds the entry at `root/rel` and, for a directory, everything below it (in name
/// order) to `entries`; writes the objects of its files to `mirror`.
fn walk(
    root: &Path,
    rel: &Path,
    mirror: &Path,
    entries: &mut Vec<Entry>,
    objects: &mut Vec<PathBuf>,
) -> Result<()> {
    let path = root.join(rel);
    let meta = fs::symlink_metadata(&path).with_context(|| format!("{}", path.display()))?;
    let name = rel
        .to_str()
        .with_context(|| format!("{}: the path is not UTF-8", path.display()))?;
    let kind = meta.file_type();
    let mut entry = Entry {
        path: name.to_string(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec().clamp(0, 999_999_999) as u32,
        kind: Kind::Dir,
        size: 0,
        object: None,
        inline: None,
        target: None,
    };
    if kind.is_dir() {
        entries.push(entry);
        let mut names: Vec<_> = fs::read_dir(&path)
            .with_context(|| format!("listing {}", path.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("listing {}", path.display()))?;
        names.sort();
        for child in names {
            walk(root, &rel.join(child), mirror, entries, objects)?;
        }
        return Ok(());
    }
    if kind.is_symlink() {
        let target = fs::read_link(&path).with_context(|| format!("{}", path.display()))?;
        entry.kind = Kind::Symlink;
        entry.target = Some(
            target
                .to_str()
                .with_context(|| format!("{}: the link target is not UTF-8", path.display()))?
                .to_string(),
        );
    } else if kind.is_file() {
        // Setuid and setgid never take effect in a package view: every model strips them.
        entry.mode &= !0o6000;
        entry.kind = Kind::File;
        let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        entry.size = data.len() as u64;
        if data.len() <= INLINE_MAX {
            entry.inline = Some(data);
        } else {
            let id: Sha256HashValue = compute_verity(&data);
            let rel = object_path(&id);
            write_object(&mirror.join(&rel), &data)?;
            entry.object = Some(id.to_hex());
            objects.push(rel);
        }
    } else {
        bail!(
            "{}: neither a directory, a regular file nor a symlink",
            path.display()
        );
    }
    entries.push(entry);
    Ok(())
}

/// Writes one object, compressed, unless the mirror has it; whole or not at all.
fn write_object(path: &Path, data: &[u8]) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let dir = path.parent().context("object path without parent")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    let mut encoder = flate2::write::ZlibEncoder::new(
        fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
        flate2::Compression::new(6),
    );
    encoder
        .write_all(data)
        .and_then(|()| encoder.finish().map(drop))
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {}", path.display()))
}

/// Parses and checks a fetched manifest of `package`; `source` names it in errors.
pub fn parse(bytes: &[u8], package: &str, source: &str) -> Result<Manifest> {
    let manifest: Manifest = serde_json::from_slice(bytes)
        .with_context(|| format!("{source}: not a composefs manifest"))?;
    let bad = |what: String| anyhow::anyhow!("{source}: {what}");
    if manifest.format != FORMAT {
        return Err(bad(format!(
            "manifest format {} (this harness reads {FORMAT})",
            manifest.format
        )));
    }
    if manifest.package != package {
        return Err(bad(format!("a manifest of {}", manifest.package)));
    }
    match manifest.entries.first() {
        Some(root) if root.path.is_empty() && root.kind == Kind::Dir => {}
        _ => return Err(bad("the first entry is not the root directory".into())),
    }
    for e in &manifest.entries[1..] {
        let path = Path::new(&e.path);
        if e.path.is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(bad(format!("entry {:?}: not a relative path", e.path)));
        }
        if e.mode > 0o7777 {
            return Err(bad(format!("entry {:?}: mode {:o}", e.path, e.mode)));
        }
        match e.kind {
            Kind::Dir => {}
            Kind::Symlink if e.target.as_deref().is_some_and(|t| !t.is_empty()) => {}
            Kind::Symlink => return Err(bad(format!("symlink {:?} has no target", e.path))),
            Kind::File => {
                let size_ok = match (&e.inline, e.object_id().map_err(|x| bad(x.to_string()))?) {
                    (Some(bytes), None) => {
                        bytes.len() as u64 == e.size && bytes.len() <= INLINE_MAX
                    }
                    (None, Some(_)) => e.size as usize > INLINE_MAX,
                    _ => false,
                };
                if !size_ok {
                    return Err(bad(format!(
                        "file {:?}: its size {} does not fit its contents",
                        e.path, e.size
                    )));
                }
            }
        }
    }
    Ok(manifest)
}
