//! The `fuse-passthrough` model: `fuse`'s daemon and union, with file reads passed
//! through to the kernel (`FUSE_PASSTHROUGH`, Linux 6.9).
//!
//! Stands for the design the project's question asks about and no distribution ships:
//! distri's install (add an image to a running union: no remount, no layer limit) with
//! the kernel's read path for file data. The daemon answers lookups, attributes and
//! listings exactly as `fuse`'s does (same union, same caches, same knobs); an open of a
//! regular file is answered with a backing file, and from then on its reads, mmap and
//! splice go from the kernel straight to that file, never to the daemon.
//!
//! Passthrough needs a whole file to pass to, not a range of an image, so every image is
//! also mounted by the kernel, as `overlay` mounts it: attached to a loop device
//! (read-only, autoclear) and mounted as squashfs at `TARGET/backing/N`. A file's
//! backing file is the same path in its image's mount. That is what passthrough costs at
//! install: per package a **loop** and a **squashfs** phase beside `fuse`'s fetch,
//! verify and notify (and the daemon's **mount** once); no union mount is made or
//! remade, so the cost grows with the package count, not with the union.
//!
//! Install: the daemon starts with an empty union (**mount**); every image is fetched at
//! once and verified (**fetch**, **verify**), then per package **loop**, **squashfs**
//! and **notify** (`add` with the mount as the image's backing directory). Durability as
//! `fuse`'s (distri's installer syncs nothing).
//!
//! Upgrade, per new version: fetch and verify the new image, mount it (loop, squashfs),
//! `replace` in the daemon (notify), then **release**: the old version's mount is
//! detached (a reader still holding a backing file keeps only the detached mount) and
//! its image deleted. Recovery after a kill is `fuse`'s, each image mounted again.
//!
//! `reset_caches` empties the daemon's caches, as `fuse`'s, and mounts every image again
//! (squashfs keeps caches per mount that `drop_caches` leaves, as `overlay` says).
//!
//! Which opens pass through is the daemon's setting (`--fuse-option
//! passthrough_min_bytes=N`, default 0: every regular file); smaller files are served by
//! the daemon's own reads. Where it differs from a real system: none ships this; the
//! backing mounts are the harness's loop + squashfs, where a real design might back onto
//! a per-file store (composefs's objects) and spare the loop devices. A kernel that does
//! not grant `FUSE_PASSTHROUGH` at `FUSE_INIT` fails the install naming it; a kernel
//! older than 6.9 skips the model (its needs).

use crate::fuse::{FuseModel, FuseOptions};
use crate::{Artifact, Model, PackageTree, PhaseTimes, Recovery, RunCtx, View};
use anyhow::Result;
use std::path::Path;

/// The fuse-passthrough model. See the module doc.
pub struct FusePassthroughModel {
    inner: FuseModel,
}

impl FusePassthroughModel {
    /// `fuse`'s daemon with `options`, passthrough on, and a kernel mount per image.
    pub fn new(options: FuseOptions) -> Self {
        let mut inner = FuseModel::new();
        inner.options = FuseOptions {
            passthrough: true,
            ..options
        };
        inner.kernel_mounts = true;
        FusePassthroughModel { inner }
    }

    /// The `fuse` model underneath (its daemon, for tests).
    pub fn fuse(&mut self) -> &mut FuseModel {
        &mut self.inner
    }
}

impl Default for FusePassthroughModel {
    fn default() -> Self {
        Self::new(FuseOptions::default())
    }
}

/// The `fuse-passthrough` model, described for the catalog.
pub const INFO: crate::ModelInfo = crate::ModelInfo {
    name: "fuse-passthrough",
    stands_for: "distri's FUSE union with file reads passed through to the kernel's own squashfs mount of each image (FUSE_PASSTHROUGH)",
    phases: &["fetch", "verify", "mount", "loop", "squashfs", "notify", "release"],
    stages: &[
        (crate::catalog::Stage::Fetch, &["fetch", "verify"]),
        (
            crate::catalog::Stage::Activate,
            &["mount", "loop", "squashfs", "notify", "release"],
        ),
    ],
    // Its question: does it read as the kernel does (overlay) and install as fuse does?
    compared_with: &[
        crate::catalog::Pair {
            reference: "overlay",
            kind: crate::catalog::PairKind::Readers,
            phases: &[],
        },
        crate::catalog::Pair {
            reference: "fuse",
            kind: crate::catalog::PairKind::Readers,
            phases: &[],
        },
    ],
    reference_for: None,
    needs: &[
        crate::needs::ROOT,
        crate::needs::FUSE_DEVICE,
        crate::needs::FUSE_PASSTHROUGH,
        crate::needs::LOOP_DEVICES,
        crate::needs::SQUASHFS,
    ],
    install_bound: Some(crate::catalog::InstallBound::SequentialWrite),
    sweep: crate::catalog::SweepFigures {
        phases: &["fetch", "loop", "squashfs", "notify"],
        layer_lookups: false,
    },
    make: Some(|o| Box::new(FusePassthroughModel::new(o.fuse))),
};

impl Model for FusePassthroughModel {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn format_version(&self) -> u32 {
        self.inner.format_version()
    }

    /// `fuse`'s images.
    fn pack(&self, pkg: &PackageTree, mirror: &Path) -> Result<Artifact> {
        self.inner.pack(pkg, mirror)
    }

    fn install(&mut self, set: &[Artifact], ctx: &RunCtx) -> Result<PhaseTimes> {
        self.inner.install(set, ctx)
    }

    fn upgrade(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<PhaseTimes> {
        self.inner.upgrade(installed, to, ctx)
    }

    fn recover_upgrade(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<Recovery> {
        self.inner.recover_upgrade(installed, to, ctx)
    }

    fn view(&self) -> View {
        self.inner.view()
    }

    fn reset_caches(&mut self) -> Result<()> {
        self.inner.reset_caches()
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = self.inner.notes();
        notes.push(
            "backing files: each image loop-mounted as squashfs at TARGET/backing/N, timed at install as loop and squashfs"
                .to_string(),
        );
        notes
    }

    fn service_pids(&self) -> Vec<u32> {
        self.inner.service_pids()
    }

    fn teardown(&mut self) -> Result<()> {
        self.inner.teardown()
    }
}
