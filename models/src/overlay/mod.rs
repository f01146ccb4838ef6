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
//!    [`Durability`] below);
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
//! Teardown unmounts the view, the group overlays and the layers, deepest first, with a
//! lazy detach; the loop devices then detach themselves (autoclear). Where it differs
//! from snapd: no signature or hash check of the image (snapd checks assertions), no
//! systemd mount units (mounts live in the harness's private mount namespace), and the
//! union is an overlay rather than one mount per snap.

pub mod loopdev;
pub mod stack;

use crate::formats::squashfs::{build_image, ImageOptions};
use crate::mirror_files::{artifact_for, fetch_image, sync_dir};
use crate::{Artifact, Durability, Model, PackageTree, PhaseTimes, Requirements, RunCtx, View};
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
    /// Mount points in the order they were mounted; teardown goes in reverse.
    mounts: Vec<PathBuf>,
    /// The API the overlays were mounted with, once they are.
    api: Option<MountApi>,
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

impl Model for OverlayModel {
    fn name(&self) -> &'static str {
        "overlay"
    }

    fn requirements(&self) -> Requirements {
        Requirements {
            root: true,
            loop_devices: true,
            overlayfs: true,
            ..Default::default()
        }
    }

    fn format_version(&self) -> u32 {
        1
    }

    fn pack(&self, pkg: &PackageTree, mirror: &Path) -> Result<Artifact> {
        let dir = mirror.join("images");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let rel = PathBuf::from("images").join(image_name(&pkg.name, &pkg.version));
        let image = mirror.join(&rel);
        build_image(&pkg.root, &image, &self.image)
            .with_context(|| format!("packing {}", pkg.name))?;
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
        let state = self.state.insert(Installed {
            view: view.clone(),
            mounts: Vec::new(),
            api: None,
        });
        let mut times = PhaseTimes::default();

        let mut fetched = Vec::with_capacity(set.len());
        for art in set {
            fetched.push(times.time("fetch", || fetch_image(art, ctx, &images))?);
        }
        if ctx.durability != Durability::None {
            times.time("fetch", || sync_dir(&images))?;
        }

        let mut lowers = Vec::with_capacity(set.len() + 1);
        for (i, (art, image)) in set.iter().zip(&fetched).enumerate() {
            let device = times.time("loop", || loopdev::attach(image, self.direct_io))?;
            let layer = layers.join(i.to_string());
            times.time("squashfs", || -> Result<()> {
                fs::create_dir(&layer).with_context(|| format!("creating {}", layer.display()))?;
                mount(
                    Some(&device.path),
                    &layer,
                    Some("squashfs"),
                    MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
                    None::<&str>,
                )
                .with_context(|| {
                    format!(
                        "mounting {} ({} of {}) at {}",
                        device.path.display(),
                        image.display(),
                        art.package,
                        layer.display()
                    )
                })?;
                state.mounts.push(layer.clone());
                Ok(())
            })?;
            // The mount now holds the device; closing ours arms autoclear.
            drop(device);
            lowers.push(layer);
        }
        if lowers.len() == 1 {
            // A read-only overlay needs two lower layers: an empty one goes beneath.
            let empty = ctx.target.join("empty");
            fs::create_dir_all(&empty).with_context(|| format!("creating {}", empty.display()))?;
            lowers.push(empty);
        }

        let api = if self.force_legacy_mount {
            MountApi::Legacy
        } else {
            MountApi::New
        };
        let used = times.time("overlay", || -> Result<MountApi> {
            match &stacking {
                Plan::Single => {
                    let used = mount_overlay(&lowers, &view, api)?;
                    state.mounts.push(view.clone());
                    Ok(used)
                }
                Plan::TwoLevel(groups) => {
                    let group_root = ctx.target.join("groups");
                    let mut tops = Vec::with_capacity(groups.len());
                    let mut used = api;
                    for (g, range) in groups.iter().enumerate() {
                        let point = group_root.join(g.to_string());
                        fs::create_dir_all(&point)
                            .with_context(|| format!("creating {}", point.display()))?;
                        used = mount_overlay(&lowers[range.clone()], &point, used)
                            .with_context(|| format!("group {g} of {}", groups.len()))?;
                        state.mounts.push(point.clone());
                        tops.push(point);
                    }
                    used = mount_overlay(&tops, &view, used).context("the top overlay")?;
                    state.mounts.push(view.clone());
                    Ok(used)
                }
            }
        })?;
        state.api = Some(used);
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
        }
    }

    fn reset_caches(&mut self) -> Result<()> {
        // Only kernel caches, which the harness drops.
        Ok(())
    }

    fn teardown(&mut self) -> Result<()> {
        let Some(state) = self.state.take() else {
            return Ok(());
        };
        unmount_all(&state.mounts)
    }
}

/// Unmounts `mounts` in reverse order, lazily: a reader still holding a file keeps only
/// its detached tree alive, never a name in the target. Every mount is tried; the
/// first error is returned.
fn unmount_all(mounts: &[PathBuf]) -> Result<()> {
    let mut first_error = None;
    for point in mounts.iter().rev() {
        if let Err(e) = umount2(point, MntFlags::MNT_DETACH) {
            first_error.get_or_insert_with(|| {
                anyhow::Error::new(e).context(format!("unmounting {}", point.display()))
            });
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
