//! The packaging models pkgbench compares, behind one small trait, and the package formats
//! they use.
//!
//! A model turns a set of packages into a *view*: one directory tree that workloads read.
//! Every model gets the same package trees, packs them into its own mirror format
//! (untimed), installs them into an empty target (timed, in phases), and exposes the
//! view. The harness digests every view and refuses timings for one that differs.
//! The shape follows object_store: few required methods, one module per model, one
//! conformance suite (`conformance`, feature `conformance`) that every model's tests
//! call.

pub mod catalog;
pub mod composefs;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod formats;
pub mod fuse;
pub mod fuse_passthrough;
pub mod hooks;
pub mod mirror_files;
pub mod nar;
pub mod needs;
pub mod order;
pub mod overlay;
pub mod parallel;
pub mod phases;
pub mod refs;
pub mod remote;

pub use catalog::{catalog, ModelInfo, ModelOptions};
pub use needs::Need;

pub use phases::PhaseTimes;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One package as every model receives it: its files as a directory tree on disk plus the
/// metadata a package manager keeps beside them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackageTree {
    pub name: String,
    pub version: String,
    /// The package's files, laid out as they are installed (`ROOT/usr/bin/...`).
    pub root: PathBuf,
    /// Names of packages of the same set this one depends on (alternatives resolved).
    pub depends: Vec<String>,
    /// Names of packages that must be fully installed before this one is unpacked.
    pub pre_depends: Vec<String>,
    /// Maintainer scripts by name (`preinst`, `postinst`, `prerm`, `postrm`).
    pub scripts: BTreeMap<String, PathBuf>,
    /// dpkg trigger directives, as in a `triggers` control file ("activate-noawait ldconfig").
    pub triggers: Vec<String>,
    /// Real packages: the control stanza the `.deb` shipped, for a model that rebuilds
    /// `.deb`s (its Architecture and Multi-Arch fields); `None` for generated packages.
    #[serde(default)]
    pub control: Option<PathBuf>,
}

/// One packed package on a model's mirror. Serialised into the mirror's index so a
/// mirror is packed once per corpus and format version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub package: String,
    pub version: String,
    /// The files of this package on the mirror, relative to the mirror directory; the
    /// first is the archive or image itself.
    pub files: Vec<PathBuf>,
    /// sha256 of the first file, as a repository index would publish it.
    pub sha256: String,
    pub size_bytes: u64,
    pub depends: Vec<String>,
    pub pre_depends: Vec<String>,
    pub triggers: Vec<String>,
}

/// How much a model syncs to disk while installing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// No fsync at all (dpkg's `--force-unsafe-io`, Nix with fsync-metadata off).
    None,
    /// What the real system does by default.
    #[default]
    Native,
    /// Everything the model writes is synced (Nix's fsync-store-paths).
    Full,
}

impl Durability {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Durability::None),
            "native" => Ok(Durability::Native),
            "full" => Ok(Durability::Full),
            other => anyhow::bail!("unknown durability {other:?}: use none, native or full"),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::None => "none",
            Durability::Native => "native",
            Durability::Full => "full",
        }
    }
}

/// Where and how one install runs.
#[derive(Debug, Clone)]
pub struct RunCtx {
    /// An empty directory the model owns for this install: its root, store, mounts.
    pub target: PathBuf,
    /// The mirror the artifacts were packed into.
    pub mirror: PathBuf,
    pub durability: Durability,
    /// Parallel jobs where the model installs in parallel (Nix's max-substitution-jobs).
    pub jobs: usize,
    /// The mirror served over HTTP on the harness's link (`--link`), which the fetch
    /// phases read instead of `mirror`; `None`: a local copy.
    pub http: Option<std::sync::Arc<remote::HttpMirror>>,
}

impl RunCtx {
    /// The mirror as the install's fetch reads it (see `remote`).
    pub fn source(&self) -> remote::MirrorSource<'_> {
        remote::MirrorSource {
            dir: &self.mirror,
            http: self.http.as_ref(),
        }
    }
}

/// A model's view: the tree workloads read, and what the digest may see through.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub root: PathBuf,
    /// Symlinks whose absolute target lies under one of these are the model's own
    /// indirection and are followed (a profile pointing into a store).
    pub internal_roots: Vec<PathBuf>,
    /// Paths relative to `root` that hold the model's own state, not package content
    /// (dpkg's `ld.so.cache`); neither digested nor walked.
    pub excluded: Vec<PathBuf>,
    /// How the view shows the packages' modes; the digest check compares it with the
    /// corpus under this rule.
    pub modes: ViewModes,
}

/// How a view shows the packages' modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewModes {
    /// As the packages ship them, with the setuid and setgid bits of regular files
    /// cleared (every model strips them).
    #[default]
    AsPackaged,
    /// As a Nix store holds them: files 0444, or 0555 when their owner may execute
    /// them; directories 0555. A NAR carries nothing but the executable bit.
    NixStore,
}

/// The set after an upgrade: each artifact of `installed`, or the new version of it that
/// `to` holds, in the installed order.
pub fn upgraded_set(installed: &[Artifact], to: &[Artifact]) -> Vec<Artifact> {
    installed
        .iter()
        .map(|old| {
            to.iter()
                .find(|new| new.package == old.package)
                .unwrap_or(old)
                .clone()
        })
        .collect()
}

/// The error of a model that does not model an upgrade (the reference runs): the
/// harness skips the workload for it rather than failing the model.
#[derive(Debug, Clone, Copy)]
pub struct UpgradeUnsupported(pub &'static str);

impl std::fmt::Display for UpgradeUnsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} does not model an upgrade", self.0)
    }
}

impl std::error::Error for UpgradeUnsupported {}

/// The error of a model that has no recovery from an interrupted upgrade.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryUnsupported(pub &'static str);

impl std::fmt::Display for RecoveryUnsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} has no recovery from an interrupted upgrade", self.0)
    }
}

impl std::error::Error for RecoveryUnsupported {}

/// What a model's recovery did to the state a killed upgrade left (`Model::recover_upgrade`).
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// One line per step the recovery took, as the real tool would report it
    /// ("libc6: half-installed: reinstalled 2.36-9+pkgbench1").
    pub steps: Vec<String>,
}

/// A packaging model. See the crate doc and ARCHITECTURE.md.
pub trait Model: Send {
    /// Its catalog name (`INFO.name` of its module).
    fn name(&self) -> &'static str;
    /// Bumped whenever `pack` would write different bytes, so cached mirrors are rebuilt.
    fn format_version(&self) -> u32;
    /// Packs one package into the mirror (untimed).
    fn pack(&self, pkg: &PackageTree, mirror: &Path) -> Result<Artifact>;
    /// Puts in place, untimed, what the real system already has before an install
    /// starts (apt's package lists read from the repository's index): called on the
    /// empty target before the caches are dropped and the install's clock starts.
    /// Nothing a model's install must do itself (fetch, verify, write) belongs here.
    fn prepare(&mut self, set: &[Artifact], ctx: &RunCtx) -> Result<()> {
        let _ = (set, ctx);
        Ok(())
    }
    /// Installs `set` into `ctx.target`, which is empty but for what `prepare` put
    /// there. Timed by the caller as a whole; returns the time of each phase.
    fn install(&mut self, set: &[Artifact], ctx: &RunCtx) -> Result<PhaseTimes>;
    /// Upgrades what the last install put in place: every artifact of `to` is a new
    /// version of the installed package of the same name and replaces it (its files may
    /// change, appear and vanish); every other package of `installed` (the whole set the
    /// install got, in its order) stays. `to` is in install order (dependencies first).
    /// Afterwards `view()` shows the new set; the target is the install's. Timed by the
    /// caller as a whole; returns the time of each phase. Models that do not model an
    /// upgrade say so, and the workload is skipped for them with that reason.
    fn upgrade(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<PhaseTimes> {
        let _ = (installed, to, ctx);
        Err(anyhow::Error::new(UpgradeUnsupported(self.name())))
    }
    /// Recovers what an upgrade killed at any moment (SIGKILL of the process and its
    /// children, so every mount and daemon of it is gone) left in `ctx.target`, as the
    /// real tool's next run would (`dpkg --configure -a` and apt's rerun, Nix's next
    /// command, a daemon started again on its image directory), on a fresh model that
    /// has done nothing else; afterwards `view()` shows what that system would show.
    /// `installed` and `to` are what the killed run installed and upgraded to. Needs
    /// what `install` needs (root, a private mount namespace); `teardown` after it.
    fn recover_upgrade(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<Recovery> {
        let _ = (installed, to, ctx);
        Err(anyhow::Error::new(RecoveryUnsupported(self.name())))
    }
    /// What distinguishes this model's mirror beyond `format_version` (its compression,
    /// `-xz6`): part of the mirror's directory name, so mirrors of two settings never
    /// mix. Empty by default.
    fn mirror_variant(&self) -> String {
        String::new()
    }
    /// The view of the last install (or upgrade).
    fn view(&self) -> View;
    /// Empties caches the model keeps itself (a daemon's), before cold samples.
    fn reset_caches(&mut self) -> Result<()>;
    /// Unmounts and releases everything the install set up; the target is then removable.
    fn teardown(&mut self) -> Result<()>;
    /// Processes the model keeps running to serve its view (a FUSE daemon): their CPU
    /// time, I/O and memory count with every sample, as the harness's own do.
    fn service_pids(&self) -> Vec<u32> {
        Vec::new()
    }
    /// Remarks on the last install for the results (scripts skipped, and why).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// Counts the last install left that only the model can read, recorded with the
    /// install's sample (`hook_created_files_count`: what maintainer scripts created
    /// beside the packages' files). Called after the clock stopped.
    fn install_counts(&self) -> Result<Vec<(&'static str, f64)>> {
        Ok(Vec::new())
    }
}
