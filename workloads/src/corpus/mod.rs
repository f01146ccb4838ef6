//! Corpora: embedded replays of Debian closures, generated once and cached on disk.
//! (Being written: see the API below.)

use crate::view::TreeDigest;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bumped whenever generation would produce different bytes; part of the cache key.
pub const GENERATOR_VERSION: u32 = 1;

/// One generated package.
#[derive(Debug, Clone)]
pub struct CorpusPackage {
    pub name: String,
    pub version: String,
    /// The package's files as installed (`root/usr/bin/...`).
    pub root: PathBuf,
    /// Names of packages in this corpus it depends on (alternatives resolved, versions
    /// dropped, packages outside the corpus dropped).
    pub depends: Vec<String>,
    pub pre_depends: Vec<String>,
    /// Maintainer scripts by name, as generated files.
    pub scripts: BTreeMap<String, PathBuf>,
    /// Trigger directives as in the manifest ("activate-noawait ldconfig").
    pub triggers: Vec<String>,
    pub files: u64,
    pub bytes: u64,
}

/// A generated corpus on disk.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// The name it was opened by (with any subset selector).
    pub name: String,
    /// Its cache directory.
    pub dir: PathBuf,
    pub packages: Vec<CorpusPackage>,
    /// The union of all packages: what every model's view must hold.
    pub digest: TreeDigest,
}

/// The embedded corpora: (name, description).
pub fn builtin() -> &'static [(&'static str, &'static str)] {
    &[]
}

/// Opens a corpus, generating it into `cache_root` on first use.
pub fn open(name: &str, cache_root: &Path, progress: &dyn Fn(u64, u64)) -> Result<Corpus> {
    let _ = (name, cache_root, progress);
    anyhow::bail!("corpus generation is not written yet")
}
