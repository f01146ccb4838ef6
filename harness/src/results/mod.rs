//! The one internal result of a run, and its exporters (JSON, long CSV, Bencher's BMF,
//! github-action-benchmark's custom JSON, the terminal table).
//! `results/SCHEMA.md` documents every field of the JSON; keep the two in step.

pub mod bmf;
pub mod csv;
pub mod fidelity;
pub mod github_benchmark;
pub mod json;
pub mod latex;
pub mod matrix;
pub mod read;
pub mod stages;
pub mod table;

use crate::host::HostFacts;
use crate::stats::Summary;
use serde::Serialize;
use std::collections::BTreeMap;

/// 2: intervals of the median state their level (`ci_low`, `ci_high`, `ci_level`).
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Debug, Clone, Serialize)]
pub struct RunResults {
    pub schema_version: u32,
    pub tool: ToolFacts,
    pub started_utc: String,
    pub finished_utc: Option<String>,
    pub host: HostFacts,
    pub config: RunConfigRecord,
    pub corpus: CorpusRecord,
    /// The work directory's limits, measured at the start of the run.
    pub calibration: crate::calibrate::Calibration,
    pub models: Vec<ModelResult>,
    /// Each model against its reference run (`fidelity`), once both ran.
    pub fidelity: Vec<fidelity::FidelityRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ToolFacts {
    pub name: &'static str,
    pub version: &'static str,
    pub git_commit: String,
}

impl ToolFacts {
    /// This harness: its version and the commit it was built from.
    pub fn current() -> ToolFacts {
        ToolFacts {
            name: "pkgbench",
            version: env!("CARGO_PKG_VERSION"),
            git_commit: crate::host::git_commit(),
        }
    }
}

impl RunResults {
    /// The results of a run about to measure its models: everything but the models.
    pub fn begin(
        tool: ToolFacts,
        started: std::time::SystemTime,
        host: HostFacts,
        config: RunConfigRecord,
        corpus: CorpusRecord,
        calibration: crate::calibrate::Calibration,
    ) -> RunResults {
        RunResults {
            schema_version: SCHEMA_VERSION,
            tool,
            started_utc: humantime::format_rfc3339_seconds(started).to_string(),
            finished_utc: None,
            host,
            config,
            corpus,
            calibration,
            models: Vec::new(),
            fidelity: Vec::new(),
        }
    }
}

/// The effective configuration, echoed as fio does.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfigRecord {
    pub models: Vec<String>,
    pub workloads: Vec<String>,
    pub corpus: String,
    pub runs: usize,
    pub warmup: usize,
    pub durability: String,
    pub jobs: usize,
    pub work_dir: String,
    pub private_mount_namespace: bool,
    pub caches_dropped: bool,
    /// The order models were measured in (`schedule`): `interleaved`, `sequential`,
    /// `shuffled:SEED`.
    pub order: String,
    /// The filesystem the models' targets were on, when the run made one (`--fs`).
    pub fs: Option<crate::filesystems::FsRecord>,
    /// Real corpora: the base system `hooks` installs onto (suite and path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_root: Option<String>,
    /// The link the fetches crossed (`--link`); absent: a local copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<crate::net::link::LinkRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CorpusRecord {
    pub name: String,
    pub generator_version: u32,
    pub packages: usize,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub file_bytes: u64,
    pub digest: String,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Skipped,
    Failed,
    NotAvailable,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelResult {
    pub name: String,
    pub stands_for: String,
    pub status: Status,
    pub reason: Option<String>,
    pub view_digest: Option<String>,
    /// How the view shows the packages' modes (`as-packaged`, `nix-store`): the view
    /// digest is compared with the corpus under this rule.
    pub mode_rule: Option<workloads::view::ModeRule>,
    pub digest_matches: Option<bool>,
    /// Up to 20 paths where the view differs from the corpus.
    pub view_differences: Vec<String>,
    pub mirror_bytes: Option<u64>,
    /// What the model reports about its last install that a number cannot say: on real
    /// packages, the maintainer scripts `hooks` skipped or that failed, and why.
    pub notes: Vec<String>,
    pub workloads: BTreeMap<String, WorkloadResult>,
}

impl ModelResult {
    pub fn new(name: &str, stands_for: &str, status: Status, reason: Option<String>) -> Self {
        ModelResult {
            name: name.into(),
            stands_for: stands_for.into(),
            status,
            reason,
            view_digest: None,
            mode_rule: None,
            digest_matches: None,
            view_differences: Vec::new(),
            mirror_bytes: None,
            notes: Vec::new(),
            workloads: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct WorkloadResult {
    pub status: Option<Status>,
    pub reason: Option<String>,
    /// Whether every sample started from dropped caches; `false` for `warm-read` (warm
    /// by definition) and, in a run without the privilege to drop caches, for `install`
    /// and `upgrade`, which are then timed warm. Null for a workload that did not run.
    pub caches_dropped: Option<bool>,
    /// Metric name (unit in the name) to its measured samples and summary.
    pub metrics: BTreeMap<String, Summary>,
}
