//! The `ref-squashfuse` reference run: the `fuse` model's images served by the C
//! implementation, Debian's `squashfuse_ll` (squashfuse's low-level-API binary, its
//! fastest), one FUSE mount per package, combined into one tree by OverlayFS with the
//! `overlay` model's mount code.
//!
//! It stands beside `fuse` (our daemon) and `overlay` (the kernel's squashfs under the
//! same overlay) so a `fuse` number can be read against both the kernel and the C
//! implementation on the same images. It differs from `fuse` in more than the reader:
//! one process per image, and the union is the kernel's overlay, not the daemon's. Up to
//! 500 packages (one overlay; `OVL_MAX_STACK`).
//!
//! Each `squashfuse_ll` runs in the foreground as a child of the harness with
//! `PR_SET_PDEATHSIG`, so it dies with the harness; its mount lives in the harness's
//! private mount namespace and goes with it. Install phases: **fetch** (as `fuse`),
//! **squashfuse** (start each daemon and wait until its mount is up), **overlay**.
//! Upgrade: as the `overlay` model's, with squashfuse layers (see `upgrade`).

use crate::formats::squashfs::ImageOptions;
use crate::mirror_files::{fetch_verified_images, sync_dir, NativeSync};
use crate::overlay::stack::{mount_overlay, MountApi, MAX_LOWER_LAYERS};
use crate::overlay::OverlayModel;
use crate::{Artifact, Durability, Model, PackageTree, PhaseTimes, RunCtx, View};
use anyhow::{bail, Context, Result};
use nix::mount::{umount2, MntFlags};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long one `squashfuse_ll` may take to mount its image.
const MOUNT_WAIT: Duration = Duration::from_secs(10);

/// The squashfuse reference model. See the module doc.
#[derive(Default)]
pub struct SquashfuseModel {
    pub image: ImageOptions,
    state: Option<State>,
}

#[derive(Default)]
struct State {
    view: PathBuf,
    /// Mount points in mount order.
    mounts: Vec<PathBuf>,
    daemons: Vec<Child>,
    /// Each installed package's squashfuse mount, in install order.
    layers: Vec<PathBuf>,
    /// The image each of `layers` serves.
    images: Vec<PathBuf>,
    /// Upgrades so far: names the new layers and view of the next one.
    generation: u32,
}

impl SquashfuseModel {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The `ref-squashfuse` reference, described for the catalog.
pub const INFO: crate::ModelInfo = crate::ModelInfo {
    name: "ref-squashfuse",
    stands_for: "reference: the fuse model's images served by squashfuse_ll (one FUSE mount per package) under OverlayFS",
    phases: &["fetch", "verify", "squashfuse", "overlay", "release"],
    stages: &[
        (crate::catalog::Stage::Fetch, &["fetch", "verify"]),
        (crate::catalog::Stage::Activate, &["squashfuse", "overlay", "release"]),
    ],
    compared_with: &[],
    reference_for: Some("fuse"),
    needs: &[
        crate::needs::ROOT,
        crate::needs::FUSE_DEVICE,
        crate::needs::OVERLAYFS,
        crate::needs::Need::Program("squashfuse_ll"),
    ],
    install_bound: Some(crate::catalog::InstallBound::SequentialWrite),
    sweep: crate::catalog::SweepFigures {
        phases: &[],
        layer_lookups: false,
    },
    make: Some(|_| Box::new(SquashfuseModel::new())),
};

impl Model for SquashfuseModel {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn format_version(&self) -> u32 {
        // 2: the overlay packer's images, setuid and setgid stripped.
        2
    }

    fn pack(&self, pkg: &PackageTree, mirror: &Path) -> Result<Artifact> {
        let mut packer = OverlayModel::new();
        packer.image = self.image;
        packer.pack(pkg, mirror)
    }

    fn install(&mut self, set: &[Artifact], ctx: &RunCtx) -> Result<PhaseTimes> {
        if self.state.is_some() {
            bail!("ref-squashfuse: install called twice without teardown");
        }
        if set.len() > MAX_LOWER_LAYERS {
            bail!(
                "ref-squashfuse: {} packages: one overlay takes at most {MAX_LOWER_LAYERS}",
                set.len()
            );
        }
        let images = ctx.target.join("images");
        let layers = ctx.target.join("layers");
        let view = ctx.target.join("view");
        for dir in [&images, &layers, &view] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let state = self.state.insert(State {
            view: view.clone(),
            ..State::default()
        });
        let mut times = PhaseTimes::default();
        // The same fetch as `overlay`'s, every image at once: only the readers differ.
        let fetched = fetch_verified_images(set, ctx, &images, NativeSync::Synced, &mut times)?;
        if ctx.durability != Durability::None {
            times.time("fetch", || sync_dir(&images))?;
        }
        let mut lowers = Vec::with_capacity(set.len() + 1);
        for (i, image) in fetched.iter().enumerate() {
            let layer = layers.join(i.to_string());
            times.time("squashfuse", || start_squashfuse(image, &layer, state))?;
            lowers.push(layer);
        }
        state.layers = lowers.clone();
        state.images = fetched;
        times.time("overlay", || mount_union(&lowers, &view, &ctx.target))?;
        state.mounts.push(view);
        Ok(times)
    }

    /// As the `overlay` model upgrades, with squashfuse mounts for layers: **fetch** of
    /// every new image at once, per new version **squashfuse** (a new `squashfuse_ll` at
    /// `layers/N.G`), a new
    /// overlay at `view-G` over the new layer list (**overlay**: the switch), then
    /// **release**: the old view and the replaced layers unmounted (their daemons exit
    /// with their mounts). A failure leaves the old view in place; teardown unmounts all.
    fn upgrade(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<PhaseTimes> {
        let Some(state) = self.state.as_mut() else {
            bail!("ref-squashfuse: upgrade before install");
        };
        if state.layers.len() != installed.len() {
            bail!("ref-squashfuse: the installed set is not the one this install mounted");
        }
        state.generation += 1;
        let g = state.generation;
        let images = ctx.target.join("images");
        let mut times = PhaseTimes::default();
        let mut layers = state.layers.clone();
        let mut images_now = state.images.clone();
        let mut replaced = Vec::with_capacity(to.len());
        let places = to
            .iter()
            .map(|art| {
                installed
                    .iter()
                    .position(|a| a.package == art.package)
                    .with_context(|| format!("ref-squashfuse: {} is not installed", art.package))
            })
            .collect::<Result<Vec<usize>>>()?;
        // Every new image at once, as `overlay` and `fuse` fetch theirs.
        let fetched = fetch_verified_images(to, ctx, &images, NativeSync::Synced, &mut times)?;
        for (i, image) in places.into_iter().zip(fetched) {
            let layer = ctx.target.join("layers").join(format!("{i}.{g}"));
            times.time("squashfuse", || start_squashfuse(&image, &layer, state))?;
            images_now[i] = image;
            replaced.push(std::mem::replace(&mut layers[i], layer));
        }
        if ctx.durability != Durability::None {
            times.time("fetch", || sync_dir(&images))?;
        }
        let view = ctx.target.join(format!("view-{g}"));
        std::fs::create_dir_all(&view).with_context(|| format!("creating {}", view.display()))?;
        times.time("overlay", || mount_union(&layers, &view, &ctx.target))?;
        state.mounts.push(view.clone());
        let old_view = std::mem::replace(&mut state.view, view);
        state.layers = layers;
        state.images = images_now;
        times.time("release", || -> Result<()> {
            for point in std::iter::once(&old_view).chain(&replaced) {
                umount2(point, MntFlags::MNT_DETACH)
                    .with_context(|| format!("unmounting {}", point.display()))?;
                state.mounts.retain(|m| m != point);
            }
            Ok(())
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
            ..View::default()
        }
    }

    /// Starts every `squashfuse_ll` again under the same view: each keeps a cache of
    /// inodes and blocks in its own memory, which `drop_caches` cannot reach, and the
    /// kernel has no way to ask it to forget. Untimed; the harness drops the kernel's
    /// caches afterwards.
    fn reset_caches(&mut self) -> Result<()> {
        let Some(state) = self.state.as_mut() else {
            return Ok(());
        };
        (|| -> Result<()> {
            stop_all(state)?;
            for (image, layer) in state.images.clone().iter().zip(state.layers.clone()) {
                start_squashfuse(image, &layer, state)?;
            }
            let target = state
                .view
                .parent()
                .map(Path::to_path_buf)
                .context("the view has no parent")?;
            mount_union(&state.layers, &state.view, &target)?;
            state.mounts.push(state.view.clone());
            Ok(())
        })()
        .context("ref-squashfuse: starting the daemons again to empty their caches")
    }

    fn service_pids(&self) -> Vec<u32> {
        self.state
            .as_ref()
            .map(|s| s.daemons.iter().map(Child::id).collect())
            .unwrap_or_default()
    }

    fn teardown(&mut self) -> Result<()> {
        let Some(mut state) = self.state.take() else {
            return Ok(());
        };
        stop_all(&mut state)
    }
}

/// Unmounts every mount of `state` (newest first) and reaps every daemon: each exits
/// when its mount goes; one that does not is killed. Every step is tried; the first
/// error is returned.
fn stop_all(state: &mut State) -> Result<()> {
    let mut first_error = None;
    for point in state.mounts.iter().rev() {
        if let Err(e) = umount2(point, MntFlags::MNT_DETACH) {
            first_error.get_or_insert_with(|| {
                anyhow::Error::new(e).context(format!("unmounting {}", point.display()))
            });
        }
    }
    state.mounts.clear();
    for child in &mut state.daemons {
        let start = Instant::now();
        while matches!(child.try_wait(), Ok(None)) && start.elapsed() < MOUNT_WAIT {
            std::thread::sleep(Duration::from_millis(2));
        }
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
    state.daemons.clear();
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Mounts one read-only overlay of `layers` (first on top) at `view`; a single layer gets
/// an empty one beneath (`TARGET/empty`), since an overlay needs two.
fn mount_union(layers: &[PathBuf], view: &Path, target: &Path) -> Result<()> {
    let mut lowers = layers.to_vec();
    if lowers.len() == 1 {
        let empty = target.join("empty");
        std::fs::create_dir_all(&empty).with_context(|| format!("creating {}", empty.display()))?;
        lowers.push(empty);
    }
    mount_overlay(&lowers, view, MountApi::New).map(drop)
}

/// Starts `squashfuse_ll -f IMAGE LAYER` and waits until LAYER is a mount.
fn start_squashfuse(image: &Path, layer: &Path, state: &mut State) -> Result<()> {
    if !layer.is_dir() {
        std::fs::create_dir(layer).with_context(|| format!("creating {}", layer.display()))?;
    }
    let before = std::fs::metadata(layer)
        .with_context(|| format!("stat of {}", layer.display()))?
        .dev();
    let mut command = Command::new("squashfuse_ll");
    command
        .arg("-f")
        .arg(image)
        .arg(layer)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // SAFETY: prctl is async-signal-safe; it only sets this child's death signal.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .with_context(|| format!("starting squashfuse_ll for {}", image.display()))?;
    state.daemons.push(child);
    let start = Instant::now();
    loop {
        // The mount is up when the layer's device changes.
        if std::fs::metadata(layer).is_ok_and(|m| m.dev() != before) {
            state.mounts.push(layer.to_path_buf());
            return Ok(());
        }
        if let Some(child) = state.daemons.last_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                bail!("squashfuse_ll {} exited with {status}", image.display());
            }
        }
        if start.elapsed() > MOUNT_WAIT {
            bail!(
                "squashfuse_ll did not mount {} within {MOUNT_WAIT:?}",
                image.display()
            );
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}
