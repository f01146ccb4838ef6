//! A mock model for tests of the runner and, later, of regression detection: it installs
//! by copying package trees, and can be told to corrupt its view.

use anyhow::{Context, Result};
use models::{Artifact, Model, PackageTree, PhaseTimes, Requirements, RunCtx, View};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What the mock saw, in order: "install(empty)", "reset", "teardown".
pub type MockLog = Arc<Mutex<Vec<String>>>;

#[derive(Default)]
pub struct MockModel {
    pub root: Option<PathBuf>,
    /// When set, the install leaves out this path (relative), so the view differs.
    pub drop_path: Option<PathBuf>,
    pub log: MockLog,
}

impl MockModel {
    fn note(&self, s: String) {
        if let Ok(mut log) = self.log.lock() {
            log.push(s);
        }
    }
}

impl Model for MockModel {
    fn name(&self) -> &'static str {
        "mock"
    }
    fn requirements(&self) -> Requirements {
        Requirements::default()
    }
    fn format_version(&self) -> u32 {
        1
    }
    fn pack(&self, pkg: &PackageTree, mirror: &Path) -> Result<Artifact> {
        let rel = PathBuf::from(&pkg.name);
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
        for art in set {
            times.time("copy", || copy_tree(&ctx.mirror.join(&art.files[0]), &root))?;
        }
        if let Some(p) = &self.drop_path {
            fs::remove_file(root.join(p))
                .with_context(|| format!("tampering with {}", p.display()))?;
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
