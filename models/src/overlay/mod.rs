//! The `overlay` model: one SquashFS image per package, loop-mounted by the kernel and
//! combined into one tree with OverlayFS.
//!
//! Stands for the kernel-native way to use package images: snapd's loop-mounted
//! squashfs snaps (each a read-only mount, attached with `LOOP_CONFIGURE` and
//! autoclear), with the union that snaps do not have made by OverlayFS, as container
//! runtimes stack image layers. Reads go through the kernel's squashfs and overlay code
//! only; no daemon is involved.
//!
//! Install, per package in the given order:
//! 1. **fetch**: copy the image from the mirror into `TARGET/images` (see
//!    [`Durability`] below), and **verify** it before it is renamed into place: its
//!    sha256 and size against the mirror's index, as snapd checks a downloaded snap's
//!    SHA3-384 and size against the store's signed `snap-revision` assertion before it
//!    mounts it (a mismatch names the package and the image, and the image is removed);
//! 2. **loop**: attach it to a free loop device, read-only, autoclear (`loopdev`);
//! 3. **squashfs**: mount the device read-only at `TARGET/layers/N`, then close our
//!    descriptor of the device, so the mount is its only user;
//!
//! then 4. **overlay**: one read-only OverlayFS of all layers at `TARGET/view`, or past
//! 500 layers two levels of them (`stack`).
//!
//! Durability: with `native` each image is written to a temporary name, fsynced and
//! renamed, and the image directory fsynced once at the end, as snapd does when it puts
//! a snap in place: a mount set up after a crash must never see a torn image. `none`
//! skips the syncs; `full` also syncs the directory after every rename.
//!
//! Upgrade, as snapd refreshes a snap but for one union: the new versions' images are
//! fetched all at once (as above) and each loop-mounted at `TARGET/layers/N.G` (loop,
//! squashfs), N the package's place in the install order and G the upgrade's number; then
//! (**overlay**) a new OverlayFS over the full new layer list, the installed order with
//! each upgraded package's layer in place of its old one, grouped as install groups
//! it, is mounted at `TARGET/view-G` (its groups at `TARGET/groups-G/N`). That mount is
//! the switch: the old view is never changed, and `view()` answers the new path from
//! then on. Then **release**: the old view and its groups are unmounted, then the
//! replaced versions' squashfs mounts (their loop devices detach themselves), their mount
//! points removed, and the replaced images deleted. snapd keeps one old revision to
//! revert to; nothing here reverts, so none is kept. A failure before the switch (a
//! corrupt image) unmounts what the upgrade mounted and removes its images: the old view
//! stays as it was.
//!
//! Teardown unmounts every mount still listed (the current generation's, and anything
//! of an older one that failed to unmount), deepest first, with a lazy detach; the loop
//! devices then detach themselves (autoclear). Where it differs
//! from snapd: the hash is sha256 from an unsigned index (snapd's is SHA3-384 in a signed
//! assertion), no
//! systemd mount units (mounts live in the harness's private mount namespace), and the
//! union is an overlay rather than one mount per snap.

pub mod loopdev;
pub mod stack;

use crate::formats::squashfs::{build_image, ImageOptions};
use crate::mirror_files::{artifact_for, fetch_verified_images, image_path, sync_dir, NativeSync};
use crate::{Artifact, Durability, Model, PackageTree, PhaseTimes, RunCtx, View};
use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use stack::{mount_overlay, plan, MountApi, Plan};
use std::fs;
use std::path::{Path, PathBuf};

/// The overlay model. See the module doc.
#[derive(Debug, Default)]
pub struct OverlayModel {
    /// How images are built on the mirror (default: uncompressed, 128 KiB blocks).
    pub image: ImageOptions,
    /// Attach loop devices with `LO_FLAGS_DIRECT_IO`: reads of an image bypass the page
    /// cache of the image file (only the squashfs pages are cached).
    pub direct_io: bool,
    /// Mount overlays with the legacy `mount(2)` option string even where the new mount
    /// API is available (for tests and comparison).
    pub force_legacy_mount: bool,
    /// Set by `install`: the view and everything mounted, in mount order.
    state: Option<Installed>,
}

#[derive(Debug)]
struct Installed {
    view: PathBuf,
    /// Everything mounted now, in mount order; teardown goes in reverse.
    mounts: Vec<PathBuf>,
    /// The API the overlays were mounted with, once they are.
    api: Option<MountApi>,
    /// The view's layers, in install order (the first on top).
    layers: Vec<Layer>,
    /// The overlays that make the view: its groups, if any, then the view itself.
    overlays: Vec<PathBuf>,
    /// Upgrades attempted so far; names the mount points of each.
    generation: usize,
}

/// One package's image as a layer of the view.
#[derive(Debug, Clone)]
struct Layer {
    package: String,
    image: PathBuf,
    /// Where its squashfs is mounted.
    point: PathBuf,
}

/// What an upgrade sets up before its switch: all of it is undone when the upgrade
/// fails, and none of it is seen until the new view is mounted.
#[derive(Debug, Default)]
struct Generation {
    view: PathBuf,
    group_root: PathBuf,
    /// The new versions' images, fetched.
    images: Vec<PathBuf>,
    /// The new versions' layer mount points (created or not).
    layer_points: Vec<PathBuf>,
    /// Mounted so far, in mount order.
    mounts: Vec<PathBuf>,
    /// The overlays among them: groups, then the view.
    overlays: Vec<PathBuf>,
}

impl Generation {
    /// Unmounts what was mounted and removes the new images and mount points. What
    /// cannot be unmounted stays in `mounts`, and its error is returned.
    fn roll_back(&mut self) -> Result<()> {
        let failed = unmount_each(&self.mounts);
        let first_error = failed.first().map(|(point, e)| {
            anyhow::anyhow!("unmounting {} of the failed upgrade: {e}", point.display())
        });
        self.mounts = failed.into_iter().map(|(point, _)| point).collect();
        for image in &self.images {
            // Best effort: the upgrade's own error is the one that matters.
            let _ = fs::remove_file(image);
        }
        if self.mounts.is_empty() {
            // Only empty directories go: nothing is mounted on any of them any more.
            let groups = fs::read_dir(&self.group_root)
                .map(|dir| dir.flatten().map(|e| e.path()).collect::<Vec<_>>())
                .unwrap_or_default();
            for dir in self.layer_points.iter().chain(&groups) {
                let _ = fs::remove_dir(dir);
            }
            let _ = fs::remove_dir(&self.group_root);
            let _ = fs::remove_dir(&self.view);
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl OverlayModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// The API the last install mounted its overlays with.
    pub fn mount_api(&self) -> Option<MountApi> {
        self.state.as_ref().and_then(|s| s.api)
    }

    /// Every mount point the last install set up, in mount order.
    pub fn mount_points(&self) -> Vec<PathBuf> {
        self.state
            .as_ref()
            .map(|s| s.mounts.clone())
            .unwrap_or_default()
    }
}

fn image_name(name: &str, version: &str) -> String {
    format!("{name}_{}.sqfs", version.replace(':', "%3a"))
}

/// The `overlay` model, described for the catalog.
pub const INFO: crate::ModelInfo = crate::ModelInfo {
    name: "overlay",
    stands_for: "the same images loop-mounted by the kernel and combined with OverlayFS",
    phases: &["fetch", "verify", "loop", "squashfs", "overlay", "release"],
    stages: &[
        (crate::catalog::Stage::Fetch, &["fetch", "verify"]),
        (
            crate::catalog::Stage::Activate,
            &["loop", "squashfs", "overlay", "release"],
        ),
    ],
    compared_with: &[],
    reference_for: None,
    needs: &[
        crate::needs::ROOT,
        crate::needs::LOOP_DEVICES,
        crate::needs::SQUASHFS,
        crate::needs::OVERLAYFS,
    ],
    install_bound: Some(crate::catalog::InstallBound::SequentialWrite),
    // One lower layer per package: how the phases and a lookup grow with the layers.
    sweep: crate::catalog::SweepFigures {
        phases: &["fetch", "loop", "squashfs", "overlay"],
        layer_lookups: true,
    },
    make: Some(|_| Box::new(OverlayModel::new())),
};

impl OverlayModel {
    /// Steps 2 to 4 of an install: each image of `set` (fetched to `images`) attached and
    /// mounted as a layer, then the overlay of them all at the state's view.
    fn mount_view(
        &mut self,
        set: &[Artifact],
        fetched: Vec<PathBuf>,
        stacking: &Plan,
        ctx: &RunCtx,
        times: &mut PhaseTimes,
    ) -> Result<()> {
        let direct_io = self.direct_io;
        let force_legacy_mount = self.force_legacy_mount;
        let Some(state) = self.state.as_mut() else {
            bail!("overlay: mounting a view without an install");
        };
        let layers = ctx.target.join("layers");
        let view = state.view.clone();
        for (i, (art, image)) in set.iter().zip(fetched).enumerate() {
            let point = layers.join(i.to_string());
            mount_layer(
                &image,
                &art.package,
                &point,
                direct_io,
                times,
                &mut state.mounts,
            )?;
            state.layers.push(Layer {
                package: art.package.clone(),
                image,
                point,
            });
        }

        let api = if force_legacy_mount {
            MountApi::Legacy
        } else {
            MountApi::New
        };
        let lowers = lowers_of(&state.layers, ctx)?;
        let group_root = ctx.target.join("groups");
        let used = times.time("overlay", || {
            mount_stack(
                &lowers,
                stacking,
                &view,
                &group_root,
                api,
                &mut state.mounts,
                &mut state.overlays,
            )
        })?;
        state.api = Some(used);
        Ok(())
    }
}

/// The highest upgrade generation whose mount points lie in `target` (`view-G`), or 0.
fn generations_left(target: &Path) -> Result<usize> {
    let mut highest = 0;
    for entry in fs::read_dir(target).with_context(|| format!("reading {}", target.display()))? {
        let entry = entry.with_context(|| format!("reading {}", target.display()))?;
        let name = entry.file_name();
        if let Some(g) = name
            .to_str()
            .and_then(|n| n.strip_prefix("view-"))
            .and_then(|g| g.parse::<usize>().ok())
        {
            highest = highest.max(g);
        }
    }
    Ok(highest)
}

impl Model for OverlayModel {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn format_version(&self) -> u32 {
        // 2: setuid and setgid bits stripped; images verified at fetch.
        2
    }

    fn pack(&self, pkg: &PackageTree, mirror: &Path) -> Result<Artifact> {
        let dir = mirror.join("images");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let rel = PathBuf::from("images").join(image_name(&pkg.name, &pkg.version));
        let image = mirror.join(&rel);
        // Setuid and setgid never take effect in a package view: every model strips them.
        let opts = ImageOptions {
            strip_setid: true,
            ..self.image
        };
        build_image(&pkg.root, &image, &opts).with_context(|| format!("packing {}", pkg.name))?;
        artifact_for(pkg, vec![rel], mirror)
    }

    fn install(&mut self, set: &[Artifact], ctx: &RunCtx) -> Result<PhaseTimes> {
        if self.state.is_some() {
            bail!("overlay: install called twice without teardown");
        }
        // Refuse before touching anything what the kernel cannot stack.
        let stacking = plan(set.len())?;
        let images = ctx.target.join("images");
        let layers = ctx.target.join("layers");
        let view = ctx.target.join("view");
        for dir in [&images, &layers, &view] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        self.state = Some(Installed {
            view: view.clone(),
            mounts: Vec::new(),
            api: None,
            layers: Vec::with_capacity(set.len()),
            overlays: Vec::new(),
            generation: 0,
        });
        let mut times = PhaseTimes::default();

        // snapd downloads the snaps of one change concurrently.
        let fetched = fetch_verified_images(set, ctx, &images, NativeSync::Synced, &mut times)?;
        if ctx.durability != Durability::None {
            times.time("fetch", || sync_dir(&images))?;
        }

        self.mount_view(set, fetched, &stacking, ctx, &mut times)?;
        Ok(times)
    }

    /// snapd after a kill: the upgrade's switch (its overlay mount) and every mount went
    /// with the killed namespace; what is left is the image directory, and the view is
    /// mounted again from it. The upgrade renames every new image into place before it
    /// mounts the new view and deletes the replaced ones only after, so: every new
    /// image in place means the upgrade had everything of its switch ready, and the
    /// new set is mounted (the old images it had not released yet are deleted, its
    /// release finished); otherwise the old set is mounted and the new images fetched
    /// so far are deleted (its rollback). Either way one whole set, never a mix; each
    /// chosen image is checked against the mirror's index before it is mounted.
    fn recover_upgrade(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<crate::Recovery> {
        if self.state.is_some() {
            bail!("overlay: recovery on a model that has a view mounted");
        }
        let images = ctx.target.join("images");
        let left = crate::mirror_files::images_left(installed, to, &images)?;
        let forward = left
            .iter()
            .all(|l| l.new.is_none() || l.new_image.is_some());
        let mut recovery = crate::Recovery::default();
        recovery.steps.push(
            if forward {
                "every new image in place: the new set (release finished)"
            } else {
                "not every new image in place: the old set (rolled back)"
            }
            .to_string(),
        );
        let mut set = Vec::with_capacity(left.len());
        let mut paths = Vec::with_capacity(left.len());
        for l in &left {
            let (keep, drop) = match l.new {
                Some(new) if forward => ((new, &l.new_image), &l.old_image),
                Some(_) => ((l.old, &l.old_image), &l.new_image),
                None => ((l.old, &l.old_image), &None),
            };
            let (art, Some(image)) = keep else {
                bail!(
                    "overlay: no image of {} {} in {} after the kill",
                    keep.0.package,
                    keep.0.version,
                    images.display()
                );
            };
            crate::mirror_files::verify_fetched(art, image).with_context(|| {
                format!("overlay: the image of {} left by the kill", art.package)
            })?;
            if let Some(drop) = drop {
                fs::remove_file(drop).with_context(|| format!("removing {}", drop.display()))?;
                recovery.steps.push(format!("{} removed", drop.display()));
            }
            set.push(art.clone());
            paths.push(image.clone());
        }
        let stacking = plan(set.len())?;
        let view = ctx.target.join("view");
        fs::create_dir_all(&view).with_context(|| format!("creating {}", view.display()))?;
        self.state = Some(Installed {
            view,
            mounts: Vec::new(),
            api: None,
            layers: Vec::with_capacity(set.len()),
            overlays: Vec::new(),
            // Past the killed run's generations, whose empty mount points are left.
            generation: generations_left(&ctx.target)?,
        });
        let mut times = PhaseTimes::default();
        self.mount_view(&set, paths, &stacking, ctx, &mut times)?;
        Ok(recovery)
    }

    fn upgrade(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<PhaseTimes> {
        let Some(state) = self.state.as_mut() else {
            bail!("overlay: upgrade called without an install");
        };
        let Some(api) = state.api else {
            bail!("overlay: upgrade of an install that did not mount its view");
        };
        let installed_names: Vec<&str> = installed.iter().map(|a| a.package.as_str()).collect();
        let layer_names: Vec<&str> = state.layers.iter().map(|l| l.package.as_str()).collect();
        if installed_names != layer_names {
            bail!(
                "overlay: upgrade from a set of {} packages that is not the installed one \
                 ({} layers, in install order)",
                installed.len(),
                state.layers.len()
            );
        }
        // Which layer each new version replaces; refused before anything is fetched.
        let mut replaced = Vec::with_capacity(to.len());
        for art in to {
            let index = state
                .layers
                .iter()
                .position(|l| l.package == art.package)
                .with_context(|| {
                    format!(
                        "overlay: upgrade to {} {}: not installed",
                        art.package, art.version
                    )
                })?;
            if replaced.contains(&index) {
                bail!("overlay: {} is upgraded twice in one upgrade", art.package);
            }
            // Fetching a same-named image would rename it over the mounted one's name, and
            // releasing the old one would then remove the new.
            let name = art.files.first().and_then(|f| f.file_name());
            if name.is_some() && name == state.layers[index].image.file_name() {
                bail!(
                    "overlay: upgrade of {} to {}: that image is installed",
                    art.package,
                    art.version
                );
            }
            replaced.push(index);
        }
        let stacking = plan(state.layers.len())?;
        // Every attempt gets names of its own, so one whose rollback left something
        // mounted never collides with the next.
        state.generation += 1;
        let generation = state.generation;
        let mut times = PhaseTimes::default();

        // The new generation, until the switch: what a failure rolls back.
        let mut new = Generation {
            view: ctx.target.join(format!("view-{generation}")),
            group_root: ctx.target.join(format!("groups-{generation}")),
            ..Generation::default()
        };
        let direct_io = self.direct_io;
        let outcome = (|| -> Result<(Vec<Layer>, MountApi)> {
            let images = ctx.target.join("images");
            // Every new image at once, as install fetches (snapd downloads the snaps of
            // one refresh concurrently). Listed first, so that a rollback after a failure
            // midway removes those that arrived.
            for art in to {
                new.images.push(image_path(art, &images)?);
            }
            let fetched = fetch_verified_images(to, ctx, &images, NativeSync::Synced, &mut times)?;
            if ctx.durability != Durability::None {
                times.time("fetch", || sync_dir(&images))?;
            }
            // The installed order, each upgraded package's layer in place of its old one.
            let mut layers = state.layers.clone();
            for ((art, image), &index) in to.iter().zip(fetched).zip(&replaced) {
                let point = ctx
                    .target
                    .join("layers")
                    .join(format!("{index}.{generation}"));
                new.layer_points.push(point.clone());
                mount_layer(
                    &image,
                    &art.package,
                    &point,
                    direct_io,
                    &mut times,
                    &mut new.mounts,
                )
                .with_context(|| format!("upgrading {} to {}", art.package, art.version))?;
                layers[index] = Layer {
                    package: art.package.clone(),
                    image,
                    point,
                };
            }
            let lowers = lowers_of(&layers, ctx)?;
            fs::create_dir(&new.view)
                .with_context(|| format!("creating {}", new.view.display()))?;
            // The switch: once this mount is there, it is the view.
            let used = times.time("overlay", || {
                mount_stack(
                    &lowers,
                    &stacking,
                    &new.view,
                    &new.group_root,
                    api,
                    &mut new.mounts,
                    &mut new.overlays,
                )
            })?;
            Ok((layers, used))
        })();
        let (layers, used) = match outcome {
            Ok(built) => built,
            Err(e) => {
                // The old view was never touched: undo the new one and keep the old.
                if let Err(undo) = new.roll_back() {
                    // What could not be unmounted stays listed, for teardown.
                    state.mounts.extend(new.mounts);
                    return Err(e.context(format!(
                        "the upgrade failed, and so did its rollback ({undo:#})"
                    )));
                }
                return Err(e);
            }
        };

        // The switch happened with the new view's mount: from here on it is the view.
        let old_overlays = std::mem::replace(&mut state.overlays, new.overlays);
        let old_layers = std::mem::replace(&mut state.layers, layers);
        state.view = new.view.clone();
        state.api = Some(used);
        state.mounts.extend(new.mounts);
        times.time("release", || {
            release(state, old_overlays, old_layers, &replaced)
        })?;
        Ok(times)
    }

    fn view(&self) -> View {
        View {
            root: self
                .state
                .as_ref()
                .map(|s| s.view.clone())
                .unwrap_or_default(),
            internal_roots: Vec::new(),
            excluded: Vec::new(),
            modes: crate::ViewModes::AsPackaged,
        }
    }

    /// Mounts the whole view again: squashfs keeps a cache of decompressed metadata
    /// and fragment blocks per mount (its `read_page`, fragment and metadata caches),
    /// which `drop_caches` does not empty; only a new superblock starts empty. Every
    /// layer is unmounted (its loop device detaches itself) and attached and mounted
    /// again at the same place, then the overlays, at the same view path. Untimed, and
    /// before the harness drops the kernel's caches, so the remount's own reads of
    /// superblocks and tables are dropped too.
    fn reset_caches(&mut self) -> Result<()> {
        let direct_io = self.direct_io;
        let Some(state) = self.state.as_mut() else {
            return Ok(());
        };
        remount(state, direct_io)
            .context("overlay: mounting the view again to empty squashfs's caches")
    }

    fn teardown(&mut self) -> Result<()> {
        let Some(state) = self.state.take() else {
            return Ok(());
        };
        unmount_all(&state.mounts)
    }
}

/// Unmounts everything of `state` and mounts the same layers and overlays again at the
/// same places (see `reset_caches`).
fn remount(state: &mut Installed, direct_io: bool) -> Result<()> {
    let api = state.api.context("no overlay is mounted")?;
    unmount_all(&state.mounts)?;
    state.mounts.clear();
    let group_root = match state.overlays.as_slice() {
        [first, _, ..] => first.parent().map(Path::to_path_buf).unwrap_or_default(),
        _ => PathBuf::new(),
    };
    state.overlays.clear();
    let mut untimed = PhaseTimes::default();
    for layer in &state.layers {
        mount_layer(
            &layer.image,
            &layer.package,
            &layer.point,
            direct_io,
            &mut untimed,
            &mut state.mounts,
        )?;
    }
    let mut lowers: Vec<PathBuf> = state.layers.iter().map(|l| l.point.clone()).collect();
    if lowers.len() == 1 {
        // The empty layer beneath a single one (`lowers_of`) is still there.
        let empty = state
            .view
            .parent()
            .map(|t| t.join("empty"))
            .context("the view has no parent")?;
        lowers.push(empty);
    }
    let stacking = plan(state.layers.len())?;
    mount_stack(
        &lowers,
        &stacking,
        &state.view,
        &group_root,
        api,
        &mut state.mounts,
        &mut state.overlays,
    )?;
    Ok(())
}

/// Attaches `image` (of `package`) to a loop device and mounts it read-only at `point`,
/// which it creates if it is missing; `point` goes onto `mounts` once mounted. Timed as
/// "loop" and "squashfs".
pub(crate) fn mount_layer(
    image: &Path,
    package: &str,
    point: &Path,
    direct_io: bool,
    times: &mut PhaseTimes,
    mounts: &mut Vec<PathBuf>,
) -> Result<()> {
    let device = times.time("loop", || loopdev::attach(image, direct_io))?;
    times.time("squashfs", || -> Result<()> {
        if !point.is_dir() {
            fs::create_dir(point).with_context(|| format!("creating {}", point.display()))?;
        }
        mount(
            Some(&device.path),
            point,
            Some("squashfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
            None::<&str>,
        )
        .with_context(|| {
            format!(
                "mounting {} ({} of {package}) at {}",
                device.path.display(),
                image.display(),
                point.display()
            )
        })?;
        mounts.push(point.to_path_buf());
        Ok(())
    })?;
    // The mount now holds the device; closing ours arms autoclear. On a failed mount
    // this close detaches the device.
    drop(device);
    Ok(())
}

/// The lower layers of an overlay over `layers`: their mount points, and an empty
/// directory beneath a single one, as a read-only overlay needs two.
fn lowers_of(layers: &[Layer], ctx: &RunCtx) -> Result<Vec<PathBuf>> {
    let mut lowers: Vec<PathBuf> = layers.iter().map(|l| l.point.clone()).collect();
    if lowers.len() == 1 {
        let empty = ctx.target.join("empty");
        fs::create_dir_all(&empty).with_context(|| format!("creating {}", empty.display()))?;
        lowers.push(empty);
    }
    Ok(lowers)
}

/// Mounts the overlays over `lowers` as `stacking` says: each group at
/// `group_root/N`, then the top one at `view`. Each mount point goes onto `mounts` and
/// `overlays` as soon as it is mounted. Returns the API used.
fn mount_stack(
    lowers: &[PathBuf],
    stacking: &Plan,
    view: &Path,
    group_root: &Path,
    api: MountApi,
    mounts: &mut Vec<PathBuf>,
    overlays: &mut Vec<PathBuf>,
) -> Result<MountApi> {
    let mut mounted = |point: &Path| {
        mounts.push(point.to_path_buf());
        overlays.push(point.to_path_buf());
    };
    match stacking {
        Plan::Single => {
            let used = mount_overlay(lowers, view, api)?;
            mounted(view);
            Ok(used)
        }
        Plan::TwoLevel(groups) => {
            let mut tops = Vec::with_capacity(groups.len());
            let mut used = api;
            for (g, range) in groups.iter().enumerate() {
                let point = group_root.join(g.to_string());
                fs::create_dir_all(&point)
                    .with_context(|| format!("creating {}", point.display()))?;
                used = mount_overlay(&lowers[range.clone()], &point, used)
                    .with_context(|| format!("group {g} of {}", groups.len()))?;
                mounted(&point);
                tops.push(point);
            }
            used = mount_overlay(&tops, view, used).context("the top overlay")?;
            mounted(view);
            Ok(used)
        }
    }
}

/// After an upgrade's switch: unmounts the old view (top first, then its groups) and the
/// replaced packages' squashfs mounts (their loop devices detach themselves), removes
/// their mount points and the replaced images. Every step is tried; what could not be
/// unmounted stays in `state.mounts` for teardown, and the first error is returned.
fn release(
    state: &mut Installed,
    old_overlays: Vec<PathBuf>,
    old_layers: Vec<Layer>,
    replaced: &[usize],
) -> Result<()> {
    let group_root = (old_overlays.len() > 1)
        .then(|| old_overlays[0].parent().map(Path::to_path_buf))
        .flatten();
    // `unmount_each` goes in reverse: layers last, the view first.
    let mut gone: Vec<PathBuf> = replaced
        .iter()
        .map(|&i| old_layers[i].point.clone())
        .collect();
    gone.extend(old_overlays);
    let failed = unmount_each(&gone);
    let mut first_error = failed
        .first()
        .map(|(point, e)| anyhow::anyhow!("unmounting {} of the old view: {e}", point.display()));
    let unmounted: Vec<&PathBuf> = gone
        .iter()
        .filter(|p| !failed.iter().any(|(f, _)| f == *p))
        .collect();
    let set: std::collections::HashSet<&PathBuf> = unmounted.iter().copied().collect();
    state.mounts.retain(|m| !set.contains(m));
    let mut note = |r: std::io::Result<()>, what: String| {
        if let Err(e) = r {
            first_error.get_or_insert_with(|| anyhow::Error::new(e).context(what));
        }
    };
    // An old path now fails loudly instead of showing an empty directory.
    for point in unmounted.iter().rev() {
        note(
            fs::remove_dir(point),
            format!("removing {}", point.display()),
        );
    }
    if let Some(dir) = group_root.filter(|_| failed.is_empty()) {
        note(fs::remove_dir(&dir), format!("removing {}", dir.display()));
    }
    // No old revision is kept: nothing here reverts, and the unlink is part of the
    // cost of the upgrade. The removal is not synced: an old image found after a
    // crash is only wasted space.
    for &i in replaced {
        let image = &old_layers[i].image;
        note(
            fs::remove_file(image),
            format!("removing {}", image.display()),
        );
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Unmounts `mounts` in reverse order, lazily: a reader still holding a file keeps only
/// its detached tree alive, never a name in the target. Every mount is tried; returns
/// those that failed, with their errors.
fn unmount_each(mounts: &[PathBuf]) -> Vec<(PathBuf, nix::Error)> {
    mounts
        .iter()
        .rev()
        .filter_map(|point| {
            umount2(point, MntFlags::MNT_DETACH)
                .err()
                .map(|e| (point.clone(), e))
        })
        .collect()
}

/// Unmounts `mounts` as `unmount_each` does; the first error is returned.
pub(crate) fn unmount_all(mounts: &[PathBuf]) -> Result<()> {
    match unmount_each(mounts).into_iter().next() {
        Some((point, e)) => {
            Err(anyhow::Error::new(e).context(format!("unmounting {}", point.display())))
        }
        None => Ok(()),
    }
}
