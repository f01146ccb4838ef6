//! Mirrors: each model's packed form of a corpus, built once (untimed) and cached by
//! corpus, generator version and the model's format version.

use anyhow::{Context, Result};
use models::{Artifact, Model, PackageTree};
use std::fs;
use std::path::{Path, PathBuf};

/// A packed mirror on disk.
pub struct Mirror {
    pub dir: PathBuf,
    pub artifacts: Vec<Artifact>,
}

impl Mirror {
    /// Bytes of every file on the mirror: the model's download size. A file several
    /// artifacts list (an object `composefs` packages share) counts once.
    pub fn bytes(&self) -> u64 {
        let files: std::collections::BTreeSet<&PathBuf> =
            self.artifacts.iter().flat_map(|a| &a.files).collect();
        files
            .into_iter()
            .filter_map(|f| fs::metadata(self.dir.join(f)).ok())
            .map(|m| m.len())
            .sum()
    }
}

const INDEX: &str = "index.json";

pub use models::conformance::{package_trees, trees_of};

/// Opens the model's mirror of a corpus under `mirrors_root`, packing it first if needed.
/// `corpus_key` names the corpus and its generator version.
pub fn prepare_mirror(
    model: &dyn Model,
    packages: &[PackageTree],
    corpus_key: &str,
    mirrors_root: &Path,
    progress: &dyn Fn(u64, u64),
) -> Result<Mirror> {
    let dir = mirrors_root.join(corpus_key).join(format!(
        "{}-f{}{}",
        model.name(),
        model.format_version(),
        model.mirror_variant()
    ));
    let index = dir.join(INDEX);
    if let Ok(text) = fs::read_to_string(&index) {
        let artifacts: Vec<Artifact> = serde_json::from_str(&text)
            .with_context(|| format!("reading mirror index {}", index.display()))?;
        return Ok(Mirror { dir, artifacts });
    }
    let parent = dir.parent().context("mirror directory has no parent")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    // Pack into a private directory and rename it into place: a mirror is whole or absent.
    let tmp = parent.join(format!(
        ".{}-f{}.tmp-{}",
        model.name(),
        model.format_version(),
        std::process::id()
    ));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut artifacts = Vec::with_capacity(packages.len());
    for (i, pkg) in packages.iter().enumerate() {
        artifacts.push(
            model
                .pack(pkg, &tmp)
                .with_context(|| format!("packing {} for model {}", pkg.name, model.name()))?,
        );
        progress(i as u64 + 1, packages.len() as u64);
    }
    let text = serde_json::to_string_pretty(&artifacts)?;
    fs::write(tmp.join(INDEX), text).with_context(|| format!("writing {}", index.display()))?;
    match fs::rename(&tmp, &dir) {
        Ok(()) => {}
        // Another run packed the same mirror meanwhile: use theirs.
        Err(_) if dir.join(INDEX).exists() => {
            let _ = fs::remove_dir_all(&tmp);
        }
        Err(e) => return Err(e).with_context(|| format!("renaming mirror to {}", dir.display())),
    }
    Ok(Mirror { dir, artifacts })
}
