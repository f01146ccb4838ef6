//! Mirror files shared by the models: hashing an artifact as a repository index would
//! publish it, and fetching an image durably into a model's image directory.

use crate::{Artifact, Durability, PackageTree, RunCtx};
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Copies the image into the image directory: under a temporary name, synced unless
/// durability is `none`, then renamed: a mount or a daemon must never open a torn image.
/// When any step fails (a full disk), the temporary file is removed: a partial image
/// is never left behind.
pub fn fetch_image(art: &Artifact, ctx: &RunCtx, images: &Path) -> Result<PathBuf> {
    let rel = art
        .files
        .first()
        .with_context(|| format!("{}: artifact lists no image", art.package))?;
    let name = rel
        .file_name()
        .with_context(|| format!("mirror entry {} has no file name", rel.display()))?;
    let src = ctx.mirror.join(rel);
    let dst = images.join(name);
    let tmp = images.join(format!(".{}.tmp", name.to_string_lossy()));
    if let Err(e) = copy_into_place(&src, &tmp, &dst, ctx.durability) {
        // Best effort: the error that matters is the one being returned.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if ctx.durability == Durability::Full {
        sync_dir(images)?;
    }
    Ok(dst)
}

/// `src` copied to `tmp`, synced (unless durability is `none`) and renamed to `dst`.
fn copy_into_place(src: &Path, tmp: &Path, dst: &Path, durability: Durability) -> Result<()> {
    fs::copy(src, tmp)
        .with_context(|| format!("fetching {} into {}", src.display(), tmp.display()))?;
    if durability != Durability::None {
        File::open(tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", tmp.display()))?;
    }
    fs::rename(tmp, dst).with_context(|| format!("renaming {}", dst.display()))
}

/// Syncs a directory, so the renames into it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// sha256 (hex) and size of a file, streaming: what a repository index publishes.
pub fn sha256_and_size(path: &Path) -> Result<(String, u64)> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    let digest = hasher.finalize();
    Ok((digest.iter().map(|b| format!("{b:02x}")).collect(), size))
}

/// The artifact of `pkg` whose mirror files are `files` (relative to `mirror`; the first
/// is the archive or image, hashed as a repository index publishes it).
pub fn artifact_for(pkg: &PackageTree, files: Vec<PathBuf>, mirror: &Path) -> Result<Artifact> {
    let first = files
        .first()
        .with_context(|| format!("package {}: no file on the mirror", pkg.name))?;
    let (sha256, size_bytes) = sha256_and_size(&mirror.join(first))?;
    Ok(Artifact {
        package: pkg.name.clone(),
        version: pkg.version.clone(),
        files,
        sha256,
        size_bytes,
        depends: pkg.depends.clone(),
        pre_depends: pkg.pre_depends.clone(),
        triggers: pkg.triggers.clone(),
    })
}
