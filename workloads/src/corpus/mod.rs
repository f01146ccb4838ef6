//! Corpora: embedded replays of Debian closures, generated once and cached on disk.
//!
//! A corpus is the set of package trees every model installs. The embedded ones replay a
//! Debian closure from its manifest (`crate::manifest`): the same paths, modes, symlinks,
//! sizes and maintainer scripts, with generated contents (`content`) that compress with
//! `zstd -3` like the real files did. Generation is deterministic, so a corpus and its
//! digest are the same on every machine; it is done once per cache directory (`cache`).
//!
//! Selectors: `debian-qemu` (the default), `debian-python3`, or a subset of either,
//! `NAME:PKG1,PKG2,...`, for tests and quick runs; a subset's dependencies resolve only
//! within the subset. `synthetic:N` draws N packages from the embedded ones (`synthetic`),
//! for scaling curves. `debian:PKG` and `debs:DIR` are real packages (`deb`).

pub mod base_root;
mod cache;
pub mod content;
pub mod deb;
mod deb_control;
mod deb_members;
mod generate;
pub mod hook_costs;
mod rng;
pub mod script;
mod source;
pub mod synthetic;
pub mod upgrade;

use crate::manifest::{Manifest, Package};
use crate::view::{Entry, TreeDigest};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bumped whenever generation would produce different bytes; part of the cache key.
pub const GENERATOR_VERSION: u32 = 2;

/// The corpus `harness run` uses when none is named.
pub const DEFAULT: &str = source::QEMU;

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
    /// Real packages: the control stanza the `.deb` shipped (`control/control` beside
    /// the package's root); `None` for generated packages.
    pub control: Option<PathBuf>,
    /// Regular files and their bytes.
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

impl Corpus {
    /// Regular files in all packages.
    pub fn files(&self) -> u64 {
        self.packages.iter().map(|p| p.files).sum()
    }

    /// Bytes of regular files in all packages.
    pub fn bytes(&self) -> u64 {
        self.packages.iter().map(|p| p.bytes).sum()
    }

    pub fn package(&self, name: &str) -> Option<&CorpusPackage> {
        self.packages.iter().find(|p| p.name == name)
    }

    /// The `n` largest regular files of the union, as paths relative to the view root
    /// ("usr/bin/qemu-system-x86_64"), largest first, ties broken by path.
    pub fn largest_files(&self, n: usize) -> Vec<String> {
        let mut files: Vec<(u64, &String)> = self
            .digest
            .entries
            .iter()
            .filter_map(|(path, e)| match e {
                Entry::File { size, .. } => Some((*size, path)),
                _ => None,
            })
            .collect();
        files.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        files.into_iter().take(n).map(|(_, p)| p.clone()).collect()
    }
}

/// The embedded corpora: (name, description).
pub fn builtin() -> &'static [(&'static str, &'static str)] {
    &source::BUILTIN
}

/// The manifest an embedded corpus replays (`NAME`, or a selector `NAME:...`, whose
/// subset is ignored here).
pub fn manifest(name: &str) -> Result<&'static Manifest> {
    let base = name.split_once(':').map_or(name, |(base, _)| base);
    Ok(source::embedded(base)?.manifest()?.0)
}

/// Opens a corpus, generating it into `<cache_root>/corpora/` on first use.
///
/// `progress(done, total)` counts bytes of regular files generated; it is called on the
/// calling thread after each file, and not at all when the corpus is already cached.
pub fn open(name: &str, cache_root: &Path, progress: &dyn Fn(u64, u64)) -> Result<Corpus> {
    if let Some(source) = deb::parse_selector(name)? {
        return open_real(name, &source, cache_root);
    }
    let selection = source::select(name)?;
    let key = cache::cache_key(&selection.cache_name);
    cache::check_key(&key)?;
    let want = cache::Metadata::new(&selection.canonical, &selection.manifest_sha256);
    // Absolute, so package roots stay valid for a model that changes directory.
    let corpora = std::path::absolute(cache_root)
        .with_context(|| format!("cache directory {}", cache_root.display()))?
        .join("corpora");
    let (dir, meta, _generated) = cache::open_or_build(&corpora, &key, &want, &mut |tmp| {
        let packages: Vec<&Package> = selection.packages.iter().map(|p| p.as_ref()).collect();
        let (packages, digest) = generate::generate(tmp, &packages, progress)?;
        Ok(cache::Metadata {
            packages,
            digest,
            ..want.clone()
        })
    })
    .with_context(|| format!("corpus {name}"))?;
    Ok(from_metadata(name, dir, meta))
}

/// Opens `debian:PKG` or `debs:DIR`: the `.deb` files (downloaded if needed), converted
/// into a corpus once per set of files. The cache name carries a hash of the set, so a
/// new package version makes a new corpus and new mirrors rather than reusing old ones.
fn open_real(name: &str, source: &deb::Source, cache_root: &Path) -> Result<Corpus> {
    let cache_root = std::path::absolute(cache_root)
        .with_context(|| format!("cache directory {}", cache_root.display()))?;
    let debs = deb::collect(source, &cache_root).with_context(|| format!("corpus {name}"))?;
    let identity = deb::identity(&debs).with_context(|| format!("corpus {name}"))?;
    let key = cache::cache_key(&format!("{name}@{}", &identity[..16]));
    cache::check_key(&key)?;
    let want = cache::Metadata::new(name, &identity);
    let (dir, meta, _generated) =
        cache::open_or_build(&cache_root.join("corpora"), &key, &want, &mut |tmp| {
            let (packages, digest) = deb::import(tmp, &debs)?;
            Ok(cache::Metadata {
                packages,
                digest,
                ..want.clone()
            })
        })
        .with_context(|| format!("corpus {name}"))?;
    Ok(from_metadata(name, dir, meta))
}

/// Whether a selector names real packages (`debian:PKG`, `debs:DIR`), whose programs run
/// and whose maintainer scripts are real.
pub fn is_real(name: &str) -> bool {
    matches!(deb::parse_selector(name), Ok(Some(_)))
}

fn from_metadata(name: &str, dir: PathBuf, meta: cache::Metadata) -> Corpus {
    let packages = meta
        .packages
        .into_iter()
        .map(|m| CorpusPackage {
            control: dir
                .join(&m.root)
                .parent()
                .map(|p| p.join("control/control"))
                .filter(|c| is_real(name) && c.is_file()),
            root: dir.join(&m.root),
            scripts: m
                .scripts
                .into_iter()
                .map(|(script, rel)| (script, dir.join(rel)))
                .collect(),
            name: m.name,
            version: m.version,
            depends: m.depends,
            pre_depends: m.pre_depends,
            triggers: m.triggers,
            files: m.files,
            bytes: m.bytes,
        })
        .collect();
    Corpus {
        name: name.to_string(),
        dir,
        packages,
        digest: meta.digest,
    }
}
