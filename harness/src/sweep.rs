//! Sweeps: the lifecycle of `harness run` repeated on `synthetic:N` for growing N, and
//! what only a sweep measures: how long the `overlay` model takes to look up a name as
//! the number of layers grows.
//!
//! `sweep.json` (results/SCHEMA.md, "sweep.json") holds one row per model and N with the
//! medians a scaling curve needs; each N's full `results.json` (every sample) is written
//! beside it, so `harness compare` and `harness plot` work on any point of a sweep.
//!
//! Lookups. OverlayFS stacks the layers in the order it is given them, the first on top
//! (`models::overlay::stack`), and the model gives them in artifact order, which is
//! corpus order: package 0 is the top layer, package N-1 the bottom one. A lookup of a
//! name that exists in only one layer stops at the first layer that has it, so a name of
//! package 0 is found at once, while a name of package N-1, or a name in no layer, is
//! looked for in every layer whose copy of the parent directory exists. The names are
//! chosen in the directory that most packages share (`usr/lib/x86_64-linux-gnu`,
//! `usr/bin`, ...), where a merged directory has the most layers beneath it.
//!
//! Each lookup is an `fstatat(AT_SYMLINK_NOFOLLOW)` relative to a descriptor of the view
//! root, so the walk from `/` to the view (on the host filesystem) is not part of it.
//! Cold: after dropping page cache, dentries and inodes, one lookup (one sample per
//! drop). Warm: right after, the same lookup repeated in batches; a sample is the mean
//! of one batch, since one warm lookup (a dentry cache hit) takes well under a
//! microsecond, near the clock's resolution.

use crate::caches::CacheControl;
use crate::calibrate::Calibration;
use crate::host::HostFacts;
use crate::results::{CorpusRecord, ModelResult, Status, ToolFacts};
use crate::stats::Summary;
use anyhow::{bail, Context, Result};
use models::{Artifact, Model, RunCtx};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;
use workloads::corpus::Corpus;

pub const SWEEP_SCHEMA_VERSION: u32 = 1;

/// Lookups of one warm batch.
pub const WARM_BATCH: usize = 100;
/// Warm batches per name.
pub const WARM_BATCHES: usize = 21;
/// A name no package has, looked up in the top layer's shared directory.
pub const MISSING_NAME: &str = "pkgbench-no-such-name.so.1";

/// `sweep.json`.
#[derive(Debug, Clone, Serialize)]
pub struct SweepResults {
    pub schema_version: u32,
    /// Always "sweep": tells a sweep.json from a results.json.
    pub kind: String,
    pub tool: ToolFacts,
    pub started_utc: String,
    pub finished_utc: Option<String>,
    pub host: HostFacts,
    pub config: SweepConfig,
    /// The work directory's limits, measured once at the start of the sweep.
    pub calibration: Calibration,
    /// One per N, in increasing order.
    pub corpora: Vec<SweepCorpus>,
    /// One per model and N, in the order measured.
    pub rows: Vec<SweepRow>,
}

/// The effective configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepConfig {
    pub models: Vec<String>,
    pub packages: Vec<usize>,
    pub workloads: Vec<String>,
    pub runs: usize,
    pub warmup: usize,
    pub durability: String,
    pub jobs: usize,
    pub work_dir: String,
    pub private_mount_namespace: bool,
    /// Always `sequential`: a sweep measures each model's iterations in a row.
    pub order: String,
    pub caches_dropped: bool,
    pub synthetic_version: u32,
    pub generator_version: u32,
    pub size_knee_bytes: u64,
    pub lookup_cold_samples: usize,
    pub lookup_warm_batches: usize,
    pub lookup_warm_batch_size: usize,
}

/// One corpus of the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepCorpus {
    pub packages: usize,
    pub corpus: CorpusRecord,
    /// Seconds spent opening the corpus (generating it, unless it was cached).
    pub open_s: f64,
    /// The full results of this N, relative to the sweep's directory.
    pub results: String,
}

/// One model at one N: the medians of its samples.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepRow {
    pub model: String,
    pub packages: usize,
    /// ok, skipped, failed or not_available, as in results.json.
    pub status: String,
    pub reason: Option<String>,
    pub install_wall_ns: Option<f64>,
    /// `install_wall_ns / packages`.
    pub install_per_package_ns: Option<f64>,
    /// Median of each install phase (`fetch`, `loop`, `squashfs`, `overlay` for overlay).
    pub install_phases_ns: BTreeMap<String, f64>,
    pub installed_bytes: Option<f64>,
    pub cold_read_wall_ns: Option<f64>,
    pub many_file_wall_ns: Option<f64>,
    /// `many_file_wall_ns / packages`.
    pub many_file_per_package_ns: Option<f64>,
    /// overlay only: lookups against the number of layers.
    pub lookup: Option<Lookups>,
}

/// Lookup latency of three names in an installed overlay view.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lookups {
    /// Layers of the overlay (the package count).
    pub layers: usize,
    pub first_layer: Lookup,
    pub last_layer: Lookup,
    pub missing: Lookup,
    /// Set when the lookups could not be measured; the fields above are then empty.
    pub error: Option<String>,
}

/// One name's lookups.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Lookup {
    /// The name, relative to the view root.
    pub path: String,
    /// The package that holds it (none for the missing name).
    pub package: Option<String>,
    pub cold_ns: Option<Summary>,
    pub warm_ns: Option<Summary>,
}

fn median(r: &ModelResult, workload: &str, metric: &str) -> Option<f64> {
    r.workloads
        .get(workload)?
        .metrics
        .get(metric)
        .map(|s| s.median)
}

/// The row of one model's result at `packages`.
pub fn row_of(result: &ModelResult, packages: usize) -> SweepRow {
    let status = status_name(result.status);
    let install = median(result, "install", "wall_ns");
    let many = median(result, "many-file", "wall_ns");
    let phases = result
        .workloads
        .get("install")
        .map(|w| {
            w.metrics
                .iter()
                .filter_map(|(k, s)| {
                    let phase = k.strip_prefix("phase_")?.strip_suffix("_ns")?;
                    Some((phase.to_string(), s.median))
                })
                .collect()
        })
        .unwrap_or_default();
    SweepRow {
        model: result.name.clone(),
        packages,
        status,
        reason: result.reason.clone(),
        install_wall_ns: install,
        install_per_package_ns: install.map(|v| v / packages as f64),
        install_phases_ns: phases,
        installed_bytes: median(result, "install", "installed_bytes"),
        cold_read_wall_ns: median(result, "cold-read", "wall_ns"),
        many_file_wall_ns: many,
        many_file_per_package_ns: many.map(|v| v / packages as f64),
        lookup: None,
    }
}

/// Parses `--packages`: counts of 1..=`synthetic::MAX_PACKAGES`, sorted, without
/// duplicates.
pub fn parse_counts(spec: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        let n: usize = part
            .parse()
            .with_context(|| format!("--packages: {part:?} is not a number of packages"))?;
        if n == 0 || n > workloads::corpus::synthetic::MAX_PACKAGES {
            bail!(
                "--packages: {n}: a synthetic corpus has 1..={} packages",
                workloads::corpus::synthetic::MAX_PACKAGES
            );
        }
        out.push(n);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The three names looked up, relative to the view root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupNames {
    pub first: (String, String),
    pub last: (String, String),
    pub missing: String,
}

/// Picks a non-directory name of the first and of the last package, each in the
/// package's directory that the most packages of the corpus hold (ties: the shorter
/// path, then byte order), and a missing name in the first one's directory.
pub fn lookup_names(corpus: &Corpus) -> Result<LookupNames> {
    let (Some(first), Some(last)) = (corpus.packages.first(), corpus.packages.last()) else {
        bail!("corpus {} has no packages", corpus.name);
    };
    let pick = |root: &Path, name: &str| -> Result<String> {
        let mut entries = Vec::new();
        collect_non_dirs(root, Path::new(""), &mut entries)?;
        let mut shared: BTreeMap<PathBuf, usize> = BTreeMap::new();
        let mut best: Option<(usize, usize, String)> = None;
        for rel in entries {
            let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
            let count = *shared.entry(parent.clone()).or_insert_with(|| {
                corpus
                    .packages
                    .iter()
                    .filter(|p| p.root.join(&parent).is_dir())
                    .count()
            });
            let text = workloads::view::rel_string(&rel)?;
            let candidate = (count, text.len(), text);
            let better = match &best {
                None => true,
                Some((c, l, t)) => {
                    count > *c || (count == *c && (candidate.1, &candidate.2) < (*l, t))
                }
            };
            if better {
                best = Some(candidate);
            }
        }
        best.map(|b| b.2)
            .with_context(|| format!("package {name} has no file or symlink to look up"))
    };
    let first_path = pick(&first.root, &first.name)?;
    let last_path = pick(&last.root, &last.name)?;
    let missing = match first_path.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{MISSING_NAME}"),
        None => MISSING_NAME.to_string(),
    };
    Ok(LookupNames {
        first: (first_path, first.name.clone()),
        last: (last_path, last.name.clone()),
        missing,
    })
}

fn collect_non_dirs(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let child = rel.join(e.file_name());
        let kind = e
            .file_type()
            .with_context(|| format!("stat {}", root.join(&child).display()))?;
        if kind.is_dir() {
            collect_non_dirs(root, &child, out)?;
        } else {
            out.push(child);
        }
    }
    Ok(())
}

/// How lookups are sampled.
#[derive(Debug, Clone, Copy)]
pub struct LookupPlan {
    pub cold_samples: usize,
    pub warm_batches: usize,
    pub warm_batch: usize,
}

/// Installs `artifacts` with a fresh `model` into `target`, measures the lookups of
/// `names`, and tears down whatever happened.
pub fn measure_layer_lookups(
    model: &mut dyn Model,
    artifacts: &[Artifact],
    ctx: &RunCtx,
    names: &LookupNames,
    caches: &mut dyn CacheControl,
    plan: LookupPlan,
) -> Result<Lookups> {
    crate::runner::empty_dir(&ctx.target)?;
    let outcome = model
        .install(artifacts, ctx)
        .context("installing for the lookups")
        .and_then(|_| measure_lookups(&model.view().root, names, caches, plan));
    let teardown = model.teardown().context("teardown after the lookups");
    let _ = fs::remove_dir_all(&ctx.target);
    let lookups = outcome?;
    teardown?;
    Ok(Lookups {
        layers: artifacts.len(),
        ..lookups
    })
}

/// Measures the lookups of `names` below `view_root` (module doc). The first and last
/// names must exist and the missing one must not: a lookup that finds something else
/// measures something else.
pub fn measure_lookups(
    view_root: &Path,
    names: &LookupNames,
    caches: &mut dyn CacheControl,
    plan: LookupPlan,
) -> Result<Lookups> {
    let root = File::open(view_root).with_context(|| format!("opening {}", view_root.display()))?;
    let mut one = |path: &str, package: Option<&str>, exists: bool| -> Result<Lookup> {
        let c = CString::new(Path::new(path).as_os_str().as_bytes())
            .with_context(|| format!("{path:?} holds a NUL byte"))?;
        let found = lstat_at(&root, &c);
        if found != exists {
            bail!(
                "{path} {} in the view at {}",
                if exists { "is missing" } else { "exists" },
                view_root.display()
            );
        }
        let mut cold = Vec::with_capacity(plan.cold_samples);
        for _ in 0..plan.cold_samples {
            caches.drop_caches()?;
            let start = Instant::now();
            lstat_at(&root, &c);
            cold.push(start.elapsed().as_nanos() as f64);
        }
        // The first warm lookup fills the caches the cold ones left dropped.
        lstat_at(&root, &c);
        let mut warm = Vec::with_capacity(plan.warm_batches);
        for _ in 0..plan.warm_batches {
            let start = Instant::now();
            for _ in 0..plan.warm_batch {
                lstat_at(&root, &c);
            }
            warm.push(start.elapsed().as_nanos() as f64 / plan.warm_batch.max(1) as f64);
        }
        Ok(Lookup {
            path: path.to_string(),
            package: package.map(String::from),
            cold_ns: Summary::of(&cold),
            warm_ns: Summary::of(&warm),
        })
    };
    let first_layer = one(&names.first.0, Some(&names.first.1), true)?;
    let last_layer = one(&names.last.0, Some(&names.last.1), true)?;
    let missing = one(&names.missing, None, false)?;
    Ok(Lookups {
        layers: 0,
        first_layer,
        last_layer,
        missing,
        error: None,
    })
}

/// `fstatat(dir, path, AT_SYMLINK_NOFOLLOW)`: true when the name exists.
fn lstat_at(dir: &File, path: &CString) -> bool {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `dir` is an open descriptor, `path` a NUL-terminated string, and `st` a
    // buffer of the size fstatat writes.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            path.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    rc == 0
}

/// The lookups of a failed measurement: the error, no samples.
pub fn failed_lookups(layers: usize, e: &anyhow::Error) -> Lookups {
    Lookups {
        layers,
        first_layer: Lookup::default(),
        last_layer: Lookup::default(),
        missing: Lookup::default(),
        error: Some(format!("{e:#}")),
    }
}

/// A status in the form rows carry it.
pub fn status_name(s: Status) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_sorted_deduplicated_and_checked() {
        assert_eq!(parse_counts("100, 1,10,10").unwrap(), vec![1, 10, 100]);
        for bad in ["", "0", "x", "1,,2", "100000"] {
            assert!(parse_counts(bad).is_err(), "{bad}");
        }
    }

    struct NoCaches(usize);
    impl CacheControl for NoCaches {
        fn drop_caches(&mut self) -> Result<()> {
            self.0 += 1;
            Ok(())
        }
        fn can_drop(&self) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lookups_drop_caches_before_every_cold_sample_and_refuse_wrong_names() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("usr/bin")).unwrap();
        fs::write(dir.path().join("usr/bin/a"), b"").unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("usr/bin/b")).unwrap();
        let names = LookupNames {
            first: ("usr/bin/a".into(), "pa".into()),
            last: ("usr/bin/b".into(), "pb".into()),
            missing: "usr/bin/c".into(),
        };
        let plan = LookupPlan {
            cold_samples: 3,
            warm_batches: 4,
            warm_batch: 10,
        };
        let mut caches = NoCaches(0);
        let l = measure_lookups(dir.path(), &names, &mut caches, plan).unwrap();
        assert_eq!(caches.0, 9);
        assert_eq!(l.first_layer.cold_ns.as_ref().unwrap().samples.len(), 3);
        assert_eq!(l.missing.warm_ns.as_ref().unwrap().samples.len(), 4);
        assert_eq!(l.last_layer.package.as_deref(), Some("pb"));
        let wrong = LookupNames {
            missing: "usr/bin/a".into(),
            ..names
        };
        let e = measure_lookups(dir.path(), &wrong, &mut caches, plan).unwrap_err();
        assert!(e.to_string().contains("usr/bin/a exists"), "{e}");
    }
}
