//! The `ref-nix` reference run: the real `nix-store --restore` restoring the `nar`
//! model's NARs, the reference for `nar`.
//!
//! Pack: exactly the `nar` model's packing (`crate::nar::pack`), so the binary cache
//! holds the same bytes. Install: **restore**: for every store path, its narinfo is read,
//! then `zstd -d` of the cache file piped into `nix-store --restore
//! TARGET/nix/store/HASH-NAME`, one pair of processes per path, `--jobs` paths at a time
//! (Nix's `max-substitution-jobs`; a restore needs no order). Nix's own substituter
//! decompresses and restores in-process; these are its reference tools. No hash check,
//! canonicalisation or registration (`nix-store --restore` does none of them).
//! **profile**: the `nar` model's profile builder over the restored paths, so the view is
//! the same tree (not registered: there is no database).

use super::tail;
use crate::nar::narinfo::NarInfo;
use crate::nar::substitute::nar_file;
use crate::nar::{make_profile, pack, read_narinfos, Layout};
use crate::{Artifact, Model, PackageTree, PhaseTimes, Requirements, RunCtx, View};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The nix-store reference model. See the module doc.
#[derive(Default)]
pub struct NixStoreModel {
    layout: Option<Layout>,
}

impl NixStoreModel {
    pub fn new() -> Self {
        Self::default()
    }
}

/// `zstd -d -c NAR | nix-store --restore DEST`.
fn restore(nar: &Path, dest: &Path) -> Result<()> {
    let mut zstd = Command::new("zstd")
        .args(["-d", "-q", "-c"])
        .arg(nar)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting zstd -d {}", nar.display()))?;
    let stdout = zstd.stdout.take().context("zstd has no stdout")?;
    let restored = Command::new("nix-store")
        .arg("--restore")
        .arg(dest)
        .stdin(stdout)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let unpacked = zstd
        .wait_with_output()
        .with_context(|| format!("waiting for zstd -d {}", nar.display()))?;
    let restored =
        restored.with_context(|| format!("starting nix-store --restore {}", dest.display()))?;
    if !unpacked.status.success() {
        bail!(
            "zstd -d {} failed ({}): {}",
            nar.display(),
            unpacked.status,
            tail(&unpacked.stderr)
        );
    }
    if !restored.status.success() {
        bail!(
            "nix-store --restore {} failed ({}): {}",
            dest.display(),
            restored.status,
            tail(&restored.stderr)
        );
    }
    Ok(())
}

/// Restores every path of `set` into the store, `ctx.jobs` at a time.
fn restore_all(set: &[Artifact], ctx: &RunCtx, layout: &Layout) -> Result<()> {
    let infos = read_narinfos(set, &ctx.mirror)?;
    let next = AtomicUsize::new(0);
    let work = |infos: &[NarInfo]| -> Result<()> {
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            let Some(info) = infos.get(i) else {
                return Ok(());
            };
            let nar = nar_file(&ctx.mirror, info)?;
            restore(&nar, &layout.store.join(&info.store_path))?;
        }
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..ctx.jobs.max(1))
            .map(|_| s.spawn(|| work(&infos)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("a restore thread panicked"))?)
            .collect::<Result<Vec<()>>>()
    })?;
    Ok(())
}

impl Model for NixStoreModel {
    fn name(&self) -> &'static str {
        "ref-nix"
    }

    fn requirements(&self) -> Requirements {
        Requirements {
            programs: vec!["nix-store", "zstd"],
            ..Default::default()
        }
    }

    fn format_version(&self) -> u32 {
        // 2: a real binary cache (HASH.narinfo, nar/FILEHASH.nar.zst, nix-cache-info), no
        // CA, references without cycles.
        2
    }

    fn pack(&self, pkg: &PackageTree, mirror: &Path) -> Result<Artifact> {
        pack::pack_package(pkg, mirror)
    }

    fn install(&mut self, set: &[Artifact], ctx: &RunCtx) -> Result<PhaseTimes> {
        let layout = Layout::create(&ctx.target)?;
        self.layout = Some(layout.clone());
        let mut times = PhaseTimes::default();
        times.time("restore", || restore_all(set, ctx, &layout))?;
        times.time("profile", || -> Result<()> {
            let infos = read_narinfos(set, &ctx.mirror)?;
            make_profile(&layout, set, &infos, None)
        })?;
        Ok(times)
    }

    /// The new versions restored next to the old ones with nix-store, then a profile of
    /// the new set as the next generation (the nar model's switch).
    fn upgrade(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<PhaseTimes> {
        let Some(layout) = self.layout.clone() else {
            bail!("ref-nix: upgrade before install");
        };
        let set = crate::upgraded_set(installed, to);
        let mut times = PhaseTimes::default();
        times.time("restore", || restore_all(to, ctx, &layout))?;
        times.time("profile", || -> Result<()> {
            let infos = read_narinfos(&set, &ctx.mirror)?;
            make_profile(&layout, &set, &infos, None)
        })?;
        Ok(times)
    }

    fn view(&self) -> View {
        self.layout.as_ref().map(Layout::view).unwrap_or_default()
    }

    fn reset_caches(&mut self) -> Result<()> {
        Ok(())
    }

    fn teardown(&mut self) -> Result<()> {
        match self.layout.take() {
            Some(l) => l.release(),
            None => Ok(()),
        }
    }
}
