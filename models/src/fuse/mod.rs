//! The `fuse` model: distri's package images served by a FUSE daemon as one union tree.
//!
//! Stands for distri (github.com/distr1/distri): every package is one uncompressed
//! SquashFS image in an image directory; a FUSE daemon serves the union of all images
//! (its exchange directories) and each package alone under `/ro/PKG`, reading the images
//! itself, and caching entries and attributes "forever" since images never change.
//! Installing is copying the image into place and telling the running daemon to pick it
//! up: nothing is unpacked and nothing is remounted.
//!
//! The daemon is a process of its own (the harness binary run as `harness fuse-daemon`),
//! as distri's is; its CPU, I/O and memory are counted with every sample through
//! [`Model::service_pids`].
//!
//! Layout of the target: `TARGET/images/NAME_VERSION.sqfs` (the image directory) and
//! the mount at `TARGET/ro`, holding `ro/union/` (the view, [`View::root`]) and
//! `ro/NAME_VERSION/` per package, outside the view so the view digest is the corpus's.
//!
//! Install, timed in phases:
//! 1. **mount**: start the daemon with an empty union (distri's daemon runs from boot;
//!    here it is part of getting from an empty target to a view);
//! 2. per package: **fetch**, copy the image into `TARGET/images` under a temporary name
//!    and rename it into place, **verify** (between the two) its sha256 and size against
//!    the mirror's index, and **notify**, one command over the daemon's control socket:
//!    it opens the image and merges it (see `server`).
//!
//! Durability `native` is distri's: its installer (`cmd/distri/install.go`, `install1`)
//! writes each image with `os.Create`, `io.Copy` and `os.Rename`, without an fsync, so
//! nothing is synced here either and the harness's `durable_wall_ns` times the flush
//! that follows. `full` fsyncs each image before its rename and the image directory at
//! the end; `none` syncs nothing. distri itself checks no hash of an image: it trusts
//! its transport (HTTPS for a remote repository). The verify phase gives this model the
//! same work as every other model (apt, Nix and snapd all check what they fetched).
//!
//! Upgrade, timed in phases:
//! 1. **fetch** and **verify** every new version's image at once, as install does,
//!    beside the old versions' (`distri update` runs distri's installer, which
//!    downloads every package of the transaction concurrently);
//! 2. per new version, in the order given, **notify**: one `replace` command: the
//!    daemon puts the new image in the old one's place in the image order, drops the old
//!    one from the union and `ro/`, and tells the kernel to forget every listing, entry
//!    and file that changed (see `union`); then the old version's image is deleted
//!    (distri keeps old versions under `/ro` until its `gc`; here that is done at once,
//!    so the image directory holds the set the view shows). Nothing is remounted: the view is the same mount before and after.
//!
//! Durability `full` syncs the image directory once at the end (fetch).
//! An image that fails its fetch or check fails the upgrade before any package is
//! replaced (the images that did arrive stay in the image directory, as distri's
//! downloads would); a failed replace leaves the union partly upgraded. Teardown
//! unmounts as always.
//!
//! Modules: `image` reads one SquashFS image (pread fast path for uncompressed images),
//! `union` merges images into the served tree (the rule for two packages providing the
//! same path is documented there), `fs` is the fuser `Filesystem` with the speed knobs
//! ([`FuseOptions`]), `server` is the daemon process (mount, control socket, unmount),
//! `daemon` is the harness's side of it, and `reference` is the `squashfuse` reference
//! run.
//!
//! Where it differs from distri: install names the new image to the daemon instead of
//! asking it to rescan the image directory; images are checked against the mirror's
//! sha256 (distri checks none) but not against signatures; no writable `/ro` control files; hard links, xattrs and
//! device nodes are not served. `reset_caches` empties the daemon's metadata caches and
//! forgets every directory listing; the kernel's caches of the mount (dentries, inodes,
//! page cache) are dropped by the harness's `drop_caches`, which covers FUSE mounts.

pub mod daemon;
pub mod fs;
pub mod image;
pub mod reference;
pub mod server;
pub mod union;

pub use fs::FuseOptions;

/// distri's installer renames each image into place without syncing it (module doc).
const DISTRI_SYNC: NativeSync = NativeSync::Unsynced;

use crate::formats::squashfs::ImageOptions;
use crate::mirror_files::{fetch_verified_image, fetch_verified_images, sync_dir, NativeSync};
use crate::overlay::OverlayModel;
use crate::{Artifact, Model, PackageTree, PhaseTimes, RunCtx, View};
use anyhow::{bail, Context, Result};
use daemon::Daemon;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The fuse model. See the module doc.
#[derive(Default)]
pub struct FuseModel {
    /// How images are built on the mirror (default: uncompressed, 128 KiB blocks).
    pub image: ImageOptions,
    /// The daemon's speed knobs (default: all on).
    pub options: FuseOptions,
    /// Also mount each image with the kernel (loop + squashfs) and name that mount to
    /// the daemon as the image's backing directory: the `fuse-passthrough` model.
    pub kernel_mounts: bool,
    daemon: Option<Daemon>,
    /// Each installed package's image: where it is and its package directory's name.
    images: BTreeMap<String, (PathBuf, String)>,
    /// With `kernel_mounts`, each installed package's kernel mount of its image.
    mounts: BTreeMap<String, PathBuf>,
    /// Kernel mounts of images an upgrade replaced, until it releases them (teardown
    /// unmounts them too, should the upgrade fail before).
    retired: Vec<PathBuf>,
    /// Kernel mounts made so far: each gets the next number as its mount point's name,
    /// so an upgrade's new mount never takes an old one's place.
    mounts_made: usize,
}

impl FuseModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// The running daemon of the last install.
    pub fn daemon(&mut self) -> Option<&mut Daemon> {
        self.daemon.as_mut()
    }

    /// The mount point of the last install (`TARGET/ro`).
    pub fn mountpoint(&self) -> Option<&Path> {
        self.daemon.as_ref().map(|d| d.mountpoint.as_path())
    }

    /// Installs one more image into the running daemon: copy, then notify. What
    /// `install` does per package, after fetching them all at once; public so tests can
    /// add an image to a live mount.
    pub fn add(&mut self, art: &Artifact, ctx: &RunCtx, times: &mut PhaseTimes) -> Result<()> {
        if self.daemon.is_none() {
            bail!("fuse: no daemon running: install first");
        }
        let images = ctx.target.join("images");
        let image = fetch_verified_image(art, ctx, &images, DISTRI_SYNC, times)?;
        self.notify_added(art, image, ctx, times)
    }

    /// Tells the daemon of `art`'s fetched and verified `image` (mounted by the kernel
    /// first, with `kernel_mounts`).
    fn notify_added(
        &mut self,
        art: &Artifact,
        image: PathBuf,
        ctx: &RunCtx,
        times: &mut PhaseTimes,
    ) -> Result<()> {
        let name = image_name(&image)?;
        let backing = self.mount_backing(&art.package, &image, ctx, times)?;
        let Some(daemon) = &mut self.daemon else {
            bail!("fuse: no daemon running: install first");
        };
        times.time("notify", || {
            daemon.add_image(&image, &name, backing.as_deref())
        })?;
        self.images.insert(art.package.clone(), (image, name));
        Ok(())
    }

    /// With `kernel_mounts`, attaches `image` to a loop device and mounts it read-only
    /// at `TARGET/backing/N` (timed as "loop" and "squashfs", as `overlay` does), and
    /// returns the mount point; the mount is `package`'s from then on. Without, nothing.
    fn mount_backing(
        &mut self,
        package: &str,
        image: &Path,
        ctx: &RunCtx,
        times: &mut PhaseTimes,
    ) -> Result<Option<PathBuf>> {
        if !self.kernel_mounts {
            return Ok(None);
        }
        let root = ctx.target.join("backing");
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let point = root.join(self.mounts_made.to_string());
        self.mounts_made += 1;
        let mut mounted = Vec::new();
        crate::overlay::mount_layer(image, package, &point, false, times, &mut mounted)?;
        // Only an upgrade mounts a package twice; it releases the old mount.
        self.retired
            .extend(self.mounts.insert(package.to_string(), point.clone()));
        Ok(Some(point))
    }

    /// Unmounts (lazily) and removes the kernel mounts upgrades replaced.
    fn release_retired(&mut self) -> Result<()> {
        for point in std::mem::take(&mut self.retired) {
            crate::overlay::unmount_all(std::slice::from_ref(&point))?;
            std::fs::remove_dir(&point).with_context(|| format!("removing {}", point.display()))?;
        }
        Ok(())
    }

    /// Unmounts every kernel mount of images and mounts each again at the same place:
    /// squashfs keeps caches per mount that `drop_caches` does not empty (as `overlay`'s
    /// `reset_caches` says). No file is open between samples, so no backing file is.
    fn remount_backing(&mut self) -> Result<()> {
        let mut untimed = PhaseTimes::default();
        for (package, point) in &self.mounts {
            let Some((image, _)) = self.images.get(package) else {
                bail!("fuse: a kernel mount of {package} without its image");
            };
            crate::overlay::unmount_all(std::slice::from_ref(point))?;
            let mut mounted = Vec::new();
            crate::overlay::mount_layer(image, package, point, false, &mut untimed, &mut mounted)?;
        }
        Ok(())
    }

    /// Unmounts every kernel mount of images (after the daemon is gone).
    fn unmount_backing(&mut self) -> Result<()> {
        let mut points: Vec<PathBuf> = std::mem::take(&mut self.mounts).into_values().collect();
        points.append(&mut self.retired);
        crate::overlay::unmount_all(&points)
    }

    /// Upgrades one installed package to `art`, its new version, whose verified image
    /// `upgrade` has fetched to `image`: replace (see the module doc). What `upgrade`
    /// does per package once every new image is in.
    pub fn replace(
        &mut self,
        art: &Artifact,
        image: PathBuf,
        ctx: &RunCtx,
        times: &mut PhaseTimes,
    ) -> Result<()> {
        if self.daemon.is_none() {
            bail!("fuse: no daemon running: install first");
        }
        let Some((old_image, old_name)) = self.images.get(&art.package).cloned() else {
            bail!("fuse: cannot upgrade {}: it is not installed", art.package);
        };
        let name = image_name(&image)?;
        let backing = self.mount_backing(&art.package, &image, ctx, times)?;
        let Some(daemon) = &mut self.daemon else {
            bail!("fuse: no daemon running: install first");
        };
        times.time("notify", || {
            daemon.replace_image(&old_name, &image, &name, backing.as_deref())
        })?;
        // `fuse` times deleting the old image with the notify, as it always has; with
        // kernel mounts there is a mount to release too, timed as `overlay` times its.
        let phase = if self.kernel_mounts {
            "release"
        } else {
            "notify"
        };
        times.time(phase, || -> Result<()> {
            // The daemon has let go of it: nothing serves the old version any more. A
            // backing file a reader still holds keeps only the detached mount alive.
            self.release_retired()?;
            if old_image != image {
                std::fs::remove_file(&old_image)
                    .with_context(|| format!("removing {}", old_image.display()))?;
            }
            Ok(())
        })?;
        self.images.insert(art.package.clone(), (image, name));
        Ok(())
    }
}

/// The package directory an image is shown as: its file name without `.sqfs`.
fn image_name(image: &Path) -> Result<String> {
    Ok(image
        .file_stem()
        .and_then(|s| s.to_str())
        .with_context(|| format!("image name {} is not UTF-8", image.display()))?
        .to_string())
}

/// The `fuse` model, described for the catalog.
pub const INFO: crate::ModelInfo = crate::ModelInfo {
    name: "fuse",
    stands_for: "distri: one SquashFS image per package, served as one union tree by a FUSE daemon",
    phases: &["fetch", "verify", "mount", "notify"],
    stages: &[
        (crate::catalog::Stage::Fetch, &["fetch", "verify"]),
        (crate::catalog::Stage::Activate, &["mount", "notify"]),
    ],
    // What FUSE costs at read time: squashfuse's C reader, and the kernel's squashfs on
    // the same images.
    compared_with: &[
        crate::catalog::Pair {
            reference: "ref-squashfuse",
            kind: crate::catalog::PairKind::Readers,
            phases: &[],
        },
        crate::catalog::Pair {
            reference: "overlay",
            kind: crate::catalog::PairKind::Readers,
            phases: &[],
        },
    ],
    reference_for: None,
    needs: &[crate::needs::ROOT, crate::needs::FUSE_DEVICE],
    install_bound: Some(crate::catalog::InstallBound::SequentialWrite),
    sweep: crate::catalog::SweepFigures {
        phases: &[],
        layer_lookups: false,
    },
    make: Some(|o| {
        let mut model = FuseModel::new();
        model.options = o.fuse;
        Box::new(model)
    }),
};

impl Model for FuseModel {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn format_version(&self) -> u32 {
        // 2: the overlay packer's images, setuid and setgid stripped.
        2
    }

    /// The same images as the `overlay` model.
    fn pack(&self, pkg: &PackageTree, mirror: &Path) -> Result<Artifact> {
        let mut packer = OverlayModel::new();
        packer.image = self.image;
        packer.pack(pkg, mirror)
    }

    fn install(&mut self, set: &[Artifact], ctx: &RunCtx) -> Result<PhaseTimes> {
        if self.daemon.is_some() {
            bail!("fuse: install called twice without teardown");
        }
        let images = ctx.target.join("images");
        let mountpoint = ctx.target.join("ro");
        for dir in [&images, &mountpoint] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut times = PhaseTimes::default();
        let daemon = times.time("mount", || Daemon::spawn(&mountpoint, self.options))?;
        self.daemon = Some(daemon);
        // distri downloads every package at once, then tells the daemon (one
        // `ScanPackages` call after all downloads; this daemon takes one `add` per image).
        let fetched = fetch_verified_images(set, ctx, &images, DISTRI_SYNC, &mut times)?;
        for (art, image) in set.iter().zip(fetched) {
            self.notify_added(art, image, ctx, &mut times)?;
        }
        if DISTRI_SYNC.syncs(ctx.durability) {
            times.time("fetch", || sync_dir(&images))?;
        }
        Ok(times)
    }

    /// Every new version fetched at once, as at install (`distri update` is distri's
    /// installer run on the new versions), then per package notify (`replace`); see the
    /// module doc.
    fn upgrade(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<PhaseTimes> {
        let mut times = PhaseTimes::default();
        for art in to {
            if !installed.iter().any(|a| a.package == art.package) {
                bail!("fuse: {} is not in the installed set", art.package);
            }
        }
        let images = ctx.target.join("images");
        let fetched = fetch_verified_images(to, ctx, &images, DISTRI_SYNC, &mut times)?;
        for (art, image) in to.iter().zip(fetched) {
            self.replace(art, image, ctx, &mut times)
                .with_context(|| format!("upgrading {} to {}", art.package, art.version))?;
        }
        if DISTRI_SYNC.syncs(ctx.durability) {
            times.time("fetch", || sync_dir(&ctx.target.join("images")))?;
        }
        Ok(times)
    }

    /// distri after a kill: its daemon started again on the image directory serves each
    /// package's newest image there (distri's exchange directories pick the newest
    /// version of a package). The upgrade fetches every new image at once and then
    /// replaces one package at a time, deleting the old image after the new one is
    /// served, so what is left is the packages whose new image had arrived in their new
    /// version and the rest old, each image whole; an old image the kill left beside its
    /// new one is deleted, as the upgrade would have.
    fn recover_upgrade(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<crate::Recovery> {
        if self.daemon.is_some() {
            bail!("fuse: recovery on a model that has a daemon running");
        }
        let images = ctx.target.join("images");
        let left = crate::mirror_files::images_left(installed, to, &images)?;
        let mountpoint = ctx.target.join("ro");
        std::fs::create_dir_all(&mountpoint)
            .with_context(|| format!("creating {}", mountpoint.display()))?;
        self.daemon = Some(Daemon::spawn(&mountpoint, self.options)?);
        let mut recovery = crate::Recovery::default();
        for l in &left {
            let (art, image) = match (l.new, &l.new_image, &l.old_image) {
                (Some(new), Some(image), old) => {
                    if let Some(old) = old {
                        std::fs::remove_file(old)
                            .with_context(|| format!("removing {}", old.display()))?;
                        recovery.steps.push(format!(
                            "{}: old image {} removed beside the new one",
                            l.old.package,
                            old.display()
                        ));
                    }
                    (new, image)
                }
                (_, _, Some(image)) => (l.old, image),
                (_, _, None) => bail!(
                    "fuse: no image of {} in {} after the kill",
                    l.old.package,
                    images.display()
                ),
            };
            self.notify_added(art, image.clone(), ctx, &mut PhaseTimes::default())?;
        }
        Ok(recovery)
    }

    fn view(&self) -> View {
        View {
            root: self
                .mountpoint()
                .map(|m| m.join("union"))
                .unwrap_or_default(),
            internal_roots: Vec::new(),
            excluded: Vec::new(),
            modes: crate::ViewModes::AsPackaged,
        }
    }

    fn reset_caches(&mut self) -> Result<()> {
        match &mut self.daemon {
            Some(daemon) => daemon.forget_listings()?,
            None => return Ok(()),
        }
        self.remount_backing()
            .context("fuse: mounting the images again to empty squashfs's caches")
    }

    fn notes(&self) -> Vec<String> {
        vec![format!(
            "daemon settings: {}",
            self.options.to_words().join(" ")
        )]
    }

    fn service_pids(&self) -> Vec<u32> {
        self.daemon
            .as_ref()
            .and_then(Daemon::pid)
            .into_iter()
            .collect()
    }

    fn teardown(&mut self) -> Result<()> {
        self.images.clear();
        let unmounted = match self.daemon.take() {
            Some(mut daemon) => daemon.unmount(),
            None => Ok(()),
        };
        // After the daemon: its backing files are on these mounts.
        let released = self.unmount_backing();
        unmounted.and(released)
    }
}
