//! Mirror files shared by the models: hashing an artifact as a repository index would
//! publish it, checking a fetched file against that hash, and fetching an image into a
//! model's image directory, checked and (where the real system does) synced.

use crate::{Artifact, Durability, PackageTree, PhaseTimes, RunCtx};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Whether a model's image fetch syncs the image before renaming it into place: what its
/// real system does at durability `native` (snapd: yes; distri: no), always at `full`,
/// never at `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeSync {
    /// The real system fsyncs each image before the rename and the directory after.
    Synced,
    /// The real system renames without syncing (distri's installer: `os.Create`,
    /// `io.Copy`, `os.Rename`); the harness's `durable_wall_ns` then times the flush.
    Unsynced,
}

impl NativeSync {
    /// Whether to sync at `durability`.
    pub fn syncs(self, durability: Durability) -> bool {
        match durability {
            Durability::None => false,
            Durability::Native => self == NativeSync::Synced,
            Durability::Full => true,
        }
    }
}

/// An image artifact's file on the mirror and its file name, which it keeps in the
/// target's image directory.
fn image_of(art: &Artifact) -> Result<(&Path, &std::ffi::OsStr)> {
    let rel = art
        .files
        .first()
        .with_context(|| format!("{}: artifact lists no image", art.package))?;
    let name = rel
        .file_name()
        .with_context(|| format!("mirror entry {} has no file name", rel.display()))?;
    Ok((rel, name))
}

/// Where [`fetch_verified_image`] puts `art`'s image in `images`.
pub fn image_path(art: &Artifact, images: &Path) -> Result<PathBuf> {
    Ok(images.join(image_of(art)?.1))
}

/// Fetches one image into the image directory and checks it, as snapd does before it
/// mounts a snap: **fetch** copies it under a temporary name; **verify** reads it back
/// and compares its sha256 and size with the mirror's index (`art.sha256`,
/// `art.size_bytes`); then (still **fetch**) it is synced if `sync` says so and renamed
/// into place, so a mount or a daemon never opens a torn or unchecked image. When any
/// step fails (a full disk, a hash mismatch) the temporary file is removed: nothing of
/// the image is left, mounted or served.
pub fn fetch_verified_image(
    art: &Artifact,
    ctx: &RunCtx,
    images: &Path,
    sync: NativeSync,
    times: &mut PhaseTimes,
) -> Result<PathBuf> {
    let (rel, name) = image_of(art)?;
    let dst = images.join(name);
    let tmp = images.join(format!(".{}.tmp", name.to_string_lossy()));
    let synced = sync.syncs(ctx.durability);
    let outcome = (|| -> Result<()> {
        times.time("fetch", || ctx.source().fetch_to(rel, &tmp).map(drop))?;
        times.time("verify", || {
            verify_fetched(art, &tmp)
                .with_context(|| format!("package {}: image {}", art.package, rel.display()))
        })?;
        times.time("fetch", || -> Result<()> {
            if synced {
                File::open(&tmp)
                    .and_then(|f| f.sync_all())
                    .with_context(|| format!("syncing {}", tmp.display()))?;
            }
            fs::rename(&tmp, &dst).with_context(|| format!("renaming {}", dst.display()))?;
            if ctx.durability == Durability::Full {
                sync_dir(images)?;
            }
            Ok(())
        })
    })();
    if let Err(e) = outcome {
        // Best effort: the error that matters is the one being returned.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(dst)
}

/// Fetches on at most this many threads at once: the image models fetch every package
/// at once as their systems do, and this bounds what "every" may start.
pub const MAX_PARALLEL_FETCHES: usize = 256;

/// Fetches and verifies every image of `set` at once (one thread, and over a link one
/// connection, per image, at most [`MAX_PARALLEL_FETCHES`]), as distri's installer
/// downloads every package of a transaction concurrently (an errgroup per package with
/// no limit: `internal/install`, `Ctx.Packages`) and snapd runs the download tasks of
/// the snaps of one change concurrently (`overlord/state`, `TaskRunner.Ensure`). Each
/// image as `fetch_verified_image`. The section's wall time is split between `fetch`
/// and `verify` in proportion to the time the threads spent in each, so the phases
/// still add up to the install's wall. On the first error the rest stop before their
/// next image; images already in place stay, as a serial fetch leaves those before the
/// failing one, and nothing of the failing image is left.
pub fn fetch_verified_images(
    set: &[Artifact],
    ctx: &RunCtx,
    images: &Path,
    sync: NativeSync,
    times: &mut PhaseTimes,
) -> Result<Vec<PathBuf>> {
    let start = std::time::Instant::now();
    // Each image with the time its thread spent in each phase.
    let fetched = crate::parallel::in_parallel(set, MAX_PARALLEL_FETCHES, |art| {
        let mut spent = PhaseTimes::default();
        let image = fetch_verified_image(art, ctx, images, sync, &mut spent)?;
        Ok((image, spent))
    })?;
    let wall = start.elapsed();
    let mut spent = PhaseTimes::default();
    for (_, mine) in &fetched {
        for (phase, d) in &mine.phases {
            spent.add(phase, *d);
        }
    }
    let total: f64 = spent.phases.iter().map(|(_, d)| d.as_secs_f64()).sum();
    for (phase, d) in &spent.phases {
        let share = if total > 0.0 {
            d.as_secs_f64() / total
        } else {
            0.0
        };
        times.add(phase, wall.mul_f64(share));
    }
    Ok(fetched.into_iter().map(|(image, _)| image).collect())
}

/// Checks a fetched file against the mirror index's sha256 and size of it, as apt checks
/// an archive and snapd a snap; the error names the file and both hashes.
pub fn verify_fetched(art: &Artifact, fetched: &Path) -> Result<()> {
    let (sha256, size) = sha256_and_size(fetched)?;
    if size != art.size_bytes || sha256 != art.sha256 {
        bail!(
            "{}: hash sum mismatch (want sha256 {} and {} bytes, got {} and {} bytes)",
            fetched.display(),
            art.sha256,
            art.size_bytes,
            sha256,
            size
        );
    }
    Ok(())
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

/// One installed package's images in the image directory a killed upgrade left: its old
/// version's and, when the upgrade has a new version of it, the new one's, each where
/// it is in place under its final name. An image is renamed there only after it was
/// copied and verified whole, so one in place is whole (a kill is no power cut: what
/// was written before it stays in the page cache).
#[derive(Debug)]
pub struct ImagesLeft<'a> {
    pub old: &'a Artifact,
    pub old_image: Option<PathBuf>,
    pub new: Option<&'a Artifact>,
    pub new_image: Option<PathBuf>,
}

/// The images of every package of `installed` in `images` after a killed upgrade to
/// `to`, in install order; removes what the killed run left half fetched
/// (`.NAME.tmp`), which no system would ever mount.
pub fn images_left<'a>(
    installed: &'a [Artifact],
    to: &'a [Artifact],
    images: &Path,
) -> Result<Vec<ImagesLeft<'a>>> {
    for entry in fs::read_dir(images).with_context(|| format!("reading {}", images.display()))? {
        let entry = entry.with_context(|| format!("reading {}", images.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") {
            fs::remove_file(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    let in_place = |art: &Artifact| -> Result<Option<PathBuf>> {
        let (_, name) = image_of(art)?;
        let path = images.join(name);
        Ok(path.is_file().then_some(path))
    };
    installed
        .iter()
        .map(|old| {
            let new = to.iter().find(|n| n.package == old.package);
            Ok(ImagesLeft {
                old,
                old_image: in_place(old)?,
                new,
                new_image: match new {
                    Some(n) => in_place(n)?,
                    None => None,
                },
            })
        })
        .collect()
}
