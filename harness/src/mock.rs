//! A mock model with known timings, for tests of the runner and of regression detection:
//! it installs by copying package trees, takes a set extra time, and can be told to
//! corrupt its view. `Slowed` wraps any model and makes its install a set factor slower
//! (object_store's throttle decorator, for models), so `compare` can be shown to catch it.

use anyhow::{Context, Result};
use models::{Artifact, Model, PackageTree, PhaseTimes, RunCtx, View};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the mock saw, in order: "install(empty)", "reset", "upgrade(N)", "teardown".
pub type MockLog = Arc<Mutex<Vec<String>>>;

#[derive(Default)]
pub struct MockModel {
    pub root: Option<PathBuf>,
    /// When set, the install leaves out this path (relative), so the view differs.
    pub drop_path: Option<PathBuf>,
    /// When set, the install changes this path's (relative) mode, so the view differs.
    pub chmod_path: Option<(PathBuf, u32)>,
    /// Time the install takes on top of copying: a known timing.
    pub install_delay: Duration,
    /// When set, `upgrade` answers that the model does not model one.
    pub no_upgrade: bool,
    pub log: MockLog,
    /// Prefixed to every entry of the log ("a: install(empty=true)"), so models sharing
    /// one log can be told apart.
    pub tag: &'static str,
}

impl MockModel {
    fn note(&self, s: String) {
        if let Ok(mut log) = self.log.lock() {
            log.push(if self.tag.is_empty() {
                s
            } else {
                format!("{}: {s}", self.tag)
            });
        }
    }
}

impl Model for MockModel {
    fn name(&self) -> &'static str {
        "mock"
    }
    fn format_version(&self) -> u32 {
        1
    }
    fn pack(&self, pkg: &PackageTree, mirror: &Path) -> Result<Artifact> {
        let rel = PathBuf::from(format!("{}_{}", pkg.name, pkg.version));
        copy_tree(&pkg.root, &mirror.join(&rel))?;
        Ok(Artifact {
            package: pkg.name.clone(),
            version: pkg.version.clone(),
            files: vec![rel],
            sha256: String::new(),
            size_bytes: 0,
            depends: pkg.depends.clone(),
            pre_depends: pkg.pre_depends.clone(),
            triggers: pkg.triggers.clone(),
        })
    }
    fn install(&mut self, set: &[Artifact], ctx: &RunCtx) -> Result<PhaseTimes> {
        let empty = fs::read_dir(&ctx.target)?.next().is_none();
        self.note(format!("install(empty={empty})"));
        let root = ctx.target.join("view");
        let mut times = PhaseTimes::default();
        times.time("delay", || std::thread::sleep(self.install_delay));
        for art in set {
            times.time("copy", || copy_tree(&ctx.mirror.join(&art.files[0]), &root))?;
        }
        if let Some(p) = &self.drop_path {
            fs::remove_file(root.join(p))
                .with_context(|| format!("tampering with {}", p.display()))?;
        }
        if let Some((p, mode)) = &self.chmod_path {
            fs::set_permissions(root.join(p), fs::Permissions::from_mode(*mode))
                .with_context(|| format!("tampering with the mode of {}", p.display()))?;
        }
        self.root = Some(root);
        Ok(times)
    }
    /// Copies the new set into a fresh view: each installed package, or its new version.
    fn upgrade(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<PhaseTimes> {
        if self.no_upgrade {
            return Err(models::UpgradeUnsupported("mock").into());
        }
        self.note(format!("upgrade({})", to.len()));
        let root = ctx.target.join("view-upgraded");
        let mut times = PhaseTimes::default();
        for art in models::upgraded_set(installed, to) {
            times.time("copy", || copy_tree(&ctx.mirror.join(&art.files[0]), &root))?;
        }
        self.root = Some(root);
        Ok(times)
    }
    fn view(&self) -> View {
        View {
            root: self.root.clone().unwrap_or_default(),
            ..Default::default()
        }
    }
    fn reset_caches(&mut self) -> Result<()> {
        self.note("reset".into());
        Ok(())
    }
    fn teardown(&mut self) -> Result<()> {
        self.note("teardown".into());
        Ok(())
    }
}

/// Copies a tree of directories, regular files and symlinks, merging into `dst`.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    for entry in fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = fs::symlink_metadata(&from)?;
        if meta.is_dir() {
            copy_tree(&from, &to)?;
            fs::set_permissions(&to, fs::Permissions::from_mode(meta.permissions().mode()))?;
        } else if meta.file_type().is_symlink() {
            symlink(fs::read_link(&from)?, &to)?;
        } else {
            fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
        }
    }
    Ok(())
}

/// Any model with its install made `factor` times slower: after the inner install, the
/// wrapper waits (factor - 1) times as long as the install took.
pub struct Slowed<M: Model> {
    pub inner: M,
    pub factor: f64,
}

impl<M: Model> Model for Slowed<M> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn format_version(&self) -> u32 {
        self.inner.format_version()
    }
    fn pack(&self, pkg: &PackageTree, mirror: &Path) -> Result<Artifact> {
        self.inner.pack(pkg, mirror)
    }
    fn install(&mut self, set: &[Artifact], ctx: &RunCtx) -> Result<PhaseTimes> {
        let start = Instant::now();
        let mut times = self.inner.install(set, ctx)?;
        let extra = start.elapsed().mul_f64((self.factor - 1.0).max(0.0));
        times.time("slowdown", || std::thread::sleep(extra));
        Ok(times)
    }
    fn view(&self) -> View {
        self.inner.view()
    }
    fn reset_caches(&mut self) -> Result<()> {
        self.inner.reset_caches()
    }
    fn teardown(&mut self) -> Result<()> {
        self.inner.teardown()
    }
}

/// Cache control for tests: counts drops instead of dropping (no root needed), or
/// refuses like an unprivileged machine.
#[derive(Default)]
pub struct FakeCaches {
    pub drops: usize,
    pub refuse: bool,
}

impl crate::caches::CacheControl for FakeCaches {
    fn drop_caches(&mut self) -> Result<()> {
        anyhow::ensure!(!self.refuse, "drop_caches called although can_drop refused");
        self.drops += 1;
        Ok(())
    }
    fn can_drop(&self) -> Result<()> {
        anyhow::ensure!(!self.refuse, "no privilege to drop caches (a test's fake)");
        Ok(())
    }
}

/// A results file around `models`, with this machine's facts and a made-up corpus.
pub fn results_with(models: Vec<crate::results::ModelResult>) -> crate::results::RunResults {
    use crate::results::*;
    RunResults {
        schema_version: SCHEMA_VERSION,
        tool: ToolFacts {
            name: "pkgbench",
            version: env!("CARGO_PKG_VERSION"),
            git_commit: "test".into(),
        },
        started_utc: "2026-01-01T00:00:00Z".into(),
        finished_utc: None,
        host: crate::host::host_facts(Path::new("/")),
        config: RunConfigRecord {
            models: models.iter().map(|m| m.name.clone()).collect(),
            workloads: vec!["install".into()],
            corpus: "test".into(),
            runs: 3,
            warmup: 1,
            durability: "native".into(),
            jobs: 1,
            work_dir: "/tmp".into(),
            private_mount_namespace: false,
            caches_dropped: true,
            order: "interleaved".into(),
            fs: Some(crate::filesystems::FsRecord {
                kind: "ext4".into(),
                mkfs: "mkfs.ext4 -q -F IMAGE".into(),
                size_bytes: 8 << 30,
                mount_options: "rw,relatime".into(),
            }),
            base_root: None,
            link: None,
        },
        corpus: CorpusRecord {
            name: "test".into(),
            generator_version: 1,
            packages: 2,
            files: 2,
            dirs: 3,
            symlinks: 0,
            file_bytes: 7000,
            digest: "0".repeat(64),
        },
        calibration: crate::calibrate::Calibration::default(),
        fidelity: fidelity::fidelity(&models),
        models,
    }
}

/// A results file with no models and the given fidelity rows (for rendering tests).
pub fn results_with_fidelity(
    rows: Vec<crate::results::fidelity::FidelityRow>,
) -> crate::results::RunResults {
    let mut results = results_with(Vec::new());
    results.fidelity = rows;
    results
}
