//! The command line: `harness run | sweep | list | doctor | compare | plot | pack | unpack`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "harness",
    version,
    about = "pkgbench: measure Linux packaging models on identical workloads"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Install a corpus with each model and measure install and reads.
    Run(RunArgs),
    /// Run the lifecycle of `run` on synthetic corpora of growing size (synthetic:N for
    /// each N of --packages) and write sweep.json and scaling figures.
    Sweep(SweepArgs),
    /// List the models, workloads and corpora.
    List,
    /// Say what this machine can run, and for each thing it cannot, why.
    Doctor(DoctorArgs),
    /// Judge NEW against BASE: per model, workload and metric regressed, improved or
    /// unchanged; exit 1 when anything regressed, 2 on unusable input.
    Compare {
        base: PathBuf,
        new: PathBuf,
        /// Noise threshold: a change counts only when its whole interval lies beyond it.
        #[arg(long, default_value = "5%")]
        threshold: String,
        /// Metrics to compare, comma-separated (default: every time, `*_ns`).
        #[arg(long)]
        metrics: Option<String>,
        /// Print the verdicts but exit 0 even on a regression (CI on noisy machines).
        #[arg(long)]
        report_only: bool,
        /// Compare files that measured different corpora (otherwise exit 2).
        #[arg(long)]
        allow_config_change: bool,
    },
    /// Draw the figures of one or more runs (SVG and PNG).
    Plot {
        #[arg(required = true)]
        results: Vec<PathBuf>,
        /// Directory for the figures.
        #[arg(long)]
        out: PathBuf,
        /// The model the normalised figure divides by (default: the first model shown).
        #[arg(long)]
        baseline: Option<String>,
    },
    /// What maintainer scripts cost, per script: measure the real ones on real closures
    /// (the table the embedded corpora's stand-ins replay), or --check the stand-ins
    /// against that table.
    HookCosts(HookCostsArgs),
    /// One self-contained report.html (tables, figures inline, warnings) of one or more
    /// runs, and their figures.
    Report {
        #[arg(required = true)]
        results: Vec<PathBuf>,
        /// Directory for report.html and figures/.
        #[arg(long)]
        out: PathBuf,
        /// The model the matrix's ratios and the normalised figure divide by.
        #[arg(long)]
        baseline: Option<String>,
        /// A results file to compare the last one with (compare's verdicts in the page).
        #[arg(long)]
        compare: Option<PathBuf>,
    },
    /// Recover what a `run` killed during its upgrade left in a model's target, as the
    /// real tool's next run would, and say which set the recovered view holds (crash
    /// trials; see harness/tests/crash_trials.rs).
    #[command(hide = true)]
    RecoverUpgrade(RecoverArgs),
    /// Pack a directory tree into an archive.
    Pack {
        /// Archive format (tar).
        #[arg(long)]
        format: String,
        src_dir: PathBuf,
        out: PathBuf,
    },
    /// Unpack an archive into a directory, refusing hostile entries.
    Unpack {
        /// Archive format (tar).
        #[arg(long)]
        format: String,
        /// tar: keep setuid and setgid bits (by default they are stripped and counted).
        #[arg(long)]
        keep_setid: bool,
        input: PathBuf,
        dest: PathBuf,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Models to run: all, or a comma-separated list (hooks,nar,fuse,overlay).
    #[arg(long, default_value = "all")]
    pub model: String,
    /// Workloads: all, or a comma-separated list (install,cold-read,warm-read,many-file,exec,upgrade).
    #[arg(long, default_value = "all")]
    pub workload: String,
    /// Corpus: debian-qemu, debian-python3, or NAME:PKG,PKG,... for a subset.
    #[arg(long, default_value = "debian-qemu")]
    pub corpus: String,
    /// Measured runs per model (6: the fewest whose interval of the median, [min, max],
    /// reaches 95%: 96.9%; 10 gives [x(2), x(9)] at 97.9%, robust to one outlier on
    /// either side).
    #[arg(long, default_value_t = 6)]
    pub runs: usize,
    /// Unrecorded runs before the measured ones.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// The order of iterations: interleaved (one of every model, then the next round),
    /// sequential (each model's in a row), or shuffled[:SEED] (each round shuffled).
    #[arg(long, default_value = "interleaved")]
    pub order: String,
    /// Measure on fresh filesystems of these kinds, one after another (ext4, xfs,
    /// btrfs, tmpfs; comma-separated): each loop-backed under the work directory, with
    /// results per filesystem and figures across them. Default: the work directory's.
    #[arg(long)]
    pub fs: Option<String>,
    /// none (no fsync of package contents), native (what the real system does), full.
    #[arg(long, default_value = "native")]
    pub durability: String,
    /// Fetch over a real link: RATE[:DELAY] (100mbit, 1gbit:1ms; DELAY each way) between
    /// network namespaces the harness makes, the mirror served over HTTP, or none (a
    /// local copy). A comma-separated list (10mbit,100mbit,1gbit,none) runs everything
    /// over each in turn: results per link, and install time against the rate with the
    /// crossovers in summary.md and a figure.
    #[arg(long, default_value = "none")]
    pub link: String,
    /// A mirror's stream compression, MODEL=none|gzip|xz|zstd[:LEVEL] (hooks: the data
    /// archives, nar: the NARs; ref-dpkg and ref-nix follow them); repeatable. Default:
    /// what each system ships, xz:6 for both.
    #[arg(long = "compression", value_name = "MODEL=SPEC")]
    pub compression: Vec<String>,
    /// The table printed at the end: matrix (a row per model, a column per workload, and
    /// ratios to the baseline model) or long (a row per model and workload, with phases).
    /// summary.md holds both.
    #[arg(long, default_value = "matrix", value_parser = ["matrix", "long"])]
    pub table: String,
    /// The model the matrix's ratios divide by (default: the first model that ran).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Parallel jobs for models that install in parallel (Nix's max-substitution-jobs).
    #[arg(long, default_value_t = 16)]
    pub jobs: usize,
    /// hooks: unpack only, without maintainer scripts and triggers.
    #[arg(long)]
    pub no_maintainer_scripts: bool,
    /// hooks on real corpora: install onto an empty root instead of the base system
    /// (a minimal root of the host's suite, built once in the work directory); scripts
    /// that need a system are then skipped, with the reason in the notes.
    #[arg(long)]
    pub no_base_root: bool,
    /// fuse: one daemon setting, KEY=VALUE (threads, entry_timeout_ms, negative_entries,
    /// keep_cache, max_readahead, readdirplus); repeatable. Default: every speed setting on.
    #[arg(long = "fuse-option", value_name = "KEY=VALUE")]
    pub fuse_options: Vec<String>,
    /// Where results go (default results/runs/<UTC time>-<host>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where corpora, mirrors and install targets live.
    #[arg(long, env = "PKGBENCH_WORK_DIR", default_value = "/var/tmp/pkgbench")]
    pub work_dir: PathBuf,
}

#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {
    /// Package counts: one synthetic:N corpus each, comma-separated.
    #[arg(long, default_value = "10,100,1000")]
    pub packages: String,
    /// Models to run: all, or a comma-separated list (hooks,nar,fuse,overlay).
    #[arg(long, default_value = "all")]
    pub model: String,
    /// Measured runs per model and package count.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Unrecorded runs before the measured ones (0 by default: every sample already
    /// starts from an empty target and dropped caches, and a sweep has many points).
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    /// none (no fsync of package contents), native (what the real system does), full.
    #[arg(long, default_value = "native")]
    pub durability: String,
    /// Parallel jobs for models that install in parallel (Nix's max-substitution-jobs).
    #[arg(long, default_value_t = 16)]
    pub jobs: usize,
    /// overlay: cold samples of each lookup (each after dropping caches).
    #[arg(long, default_value_t = 5)]
    pub lookup_samples: usize,
    /// Where results go (default results/runs/<UTC time>-<host>-sweep).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where corpora, mirrors and install targets live.
    #[arg(long, env = "PKGBENCH_WORK_DIR", default_value = "/var/tmp/pkgbench")]
    pub work_dir: PathBuf,
}

#[derive(clap::Args, Debug, Clone)]
pub struct HookCostsArgs {
    /// Corpora, comma-separated. Measure: real closures (default
    /// debian:python3,debian:qemu-system-x86); --check: an embedded corpus (default
    /// debian-qemu).
    #[arg(long)]
    pub corpus: Option<String>,
    /// Install the embedded corpus with its stand-ins and compare their cost per class
    /// with the real scripts' (the committed table, or --table).
    #[arg(long)]
    pub check: bool,
    /// The table --check compares with (default: the one built into the harness).
    #[arg(long)]
    pub table: Option<PathBuf>,
    /// Cost passes per corpus (medians); one more pass counts processes under strace.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Where measure writes the table (workloads/data/hook-costs.tsv regenerates the
    /// committed one); default: standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where corpora, mirrors and install targets live.
    #[arg(long, env = "PKGBENCH_WORK_DIR", default_value = "/var/tmp/pkgbench")]
    pub work_dir: PathBuf,
}

#[derive(clap::Args, Debug, Clone)]
pub struct DoctorArgs {
    /// The work directory to check (as for `run`).
    #[arg(long, env = "PKGBENCH_WORK_DIR", default_value = "/var/tmp/pkgbench")]
    pub work_dir: PathBuf,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RecoverArgs {
    /// The model whose target (`WORK_DIR/targets/MODEL`) a killed run left.
    #[arg(long)]
    pub model: String,
    /// The killed run's corpus.
    #[arg(long)]
    pub corpus: String,
    /// After recovering a view that holds only part of the point release, upgrade the
    /// rest (apt's next `upgrade`) and check the view is then the new set.
    #[arg(long)]
    pub complete: bool,
    /// The killed run's work directory.
    #[arg(long, env = "PKGBENCH_WORK_DIR", default_value = "/var/tmp/pkgbench")]
    pub work_dir: PathBuf,
}
