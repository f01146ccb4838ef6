//! `harness run`: the lifecycle of DESIGN.md. Check requirements, enter a private mount
//! namespace, build the corpus and each model's mirror (untimed), measure each model, and
//! write results after each model so a late failure loses nothing.

use crate::caches::KernelCaches;
use crate::calibrate::{calibrate, fractions, Calibration};
use crate::cli::RunArgs;
use crate::host::host_facts;
use crate::mirror::{package_trees, prepare_mirror};
use crate::namespace::{enter_private_mount_namespace, is_root};
use crate::progress::{bar, spinner};
use crate::requirements::unmet;
use crate::results::bmf::to_bmf;
use crate::results::csv::write_csv;
use crate::results::github_benchmark::to_github_benchmark;
use crate::results::json::{write_json, write_value};
use crate::results::table::render_table;
use crate::results::{CorpusRecord, ModelResult, RunConfigRecord, RunResults, Status, ToolFacts};
use crate::runner::{run_model, Event, Plan, ReadSet, Setup, UpgradeSet, Workload};
use crate::stats::Summary;
use anyhow::{bail, Context, Result};
use models::{catalog, Durability, ModelInfo, ModelOptions, PackageTree};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;
use workloads::corpus::{self, Corpus, GENERATOR_VERSION};
use workloads::reads::{miss_list, COLD_READ_FILES};
use workloads::view::Entry;

pub fn run(args: &RunArgs) -> Result<ExitCode> {
    // First, before any thread exists (see namespace.rs).
    let namespace = if is_root() {
        enter_private_mount_namespace()?;
        true
    } else {
        eprintln!(
            "harness: not root: no private mount namespace, and models that need root are skipped"
        );
        false
    };
    let real_corpus = corpus::is_real(&args.corpus);
    let workloads = Workload::parse_list(&args.workload, real_corpus)?;
    let selected = select_models(&args.model)?;
    let durability = Durability::parse(&args.durability)?;
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    // Held until the run ends: no other run may empty or mount our targets meanwhile.
    let _work_dir_lock = crate::workdir::claim_work_dir(&args.work_dir)?;
    let started = SystemTime::now();

    let corpus = open_corpus(&args.corpus, &args.work_dir)?;
    let host = host_facts(&args.work_dir);
    let out_dir = match &args.out {
        Some(dir) => dir.clone(),
        None => default_out_dir(started, &host.hostname),
    };
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut caches = KernelCaches;
    let caches_dropped = crate::caches::CacheControl::can_drop(&caches).is_ok();
    if !caches_dropped {
        eprintln!("harness: cannot drop caches (needs root): cold-read and many-file samples will be refused, not recorded warm");
    }

    let sp = spinner("calibrate");
    sp.set_message("the work directory's read, write and create limits");
    let calibration = calibrate(&args.work_dir, &mut caches).context("calibrating")?;
    sp.finish_and_clear();

    let mut results = RunResults::begin(
        ToolFacts::current(),
        started,
        host,
        RunConfigRecord {
            models: selected.clone(),
            workloads: workloads.iter().map(|w| w.name().to_string()).collect(),
            corpus: args.corpus.clone(),
            runs: args.runs,
            warmup: args.warmup,
            durability: durability.as_str().into(),
            jobs: args.jobs,
            work_dir: args.work_dir.display().to_string(),
            private_mount_namespace: namespace,
            caches_dropped,
        },
        corpus_record(&corpus),
        calibration.clone(),
    );

    let trees = package_trees(&corpus);
    let cold_files = corpus.largest_files(COLD_READ_FILES);
    let misses = miss_list();
    let plan = Plan {
        workloads,
        runs: args.runs,
        warmup: args.warmup,
        durability,
        jobs: args.jobs,
    };
    let mut fuse = models::fuse::FuseOptions::default();
    for word in &args.fuse_options {
        fuse.set(word).context("--fuse-option")?;
    }
    let options = ModelOptions {
        skip_maintainer_scripts: args.no_maintainer_scripts,
        chroot_maintainer_scripts: real_corpus,
        fuse,
    };
    let exec = workloads::exec::command_for(&args.corpus);
    let corpus_key = corpus_key(&corpus)?;
    let release = if plan.workloads.contains(&Workload::Upgrade) {
        let sp = spinner("point release");
        sp.set_message("building the new versions the upgrade installs");
        let release = workloads::corpus::upgrade::point_release(&corpus)
            .with_context(|| format!("the point release of corpus {}", args.corpus))?;
        sp.finish_and_clear();
        Some(release)
    } else {
        None
    };
    let new_trees = release
        .as_ref()
        .map(|r| crate::mirror::trees_of(&r.packages))
        .unwrap_or_default();
    let upgrade = release.as_ref().map(|r| UpgradeInput {
        trees: &new_trees,
        expected: &r.digest,
    });
    let bench = Bench {
        corpus: &corpus,
        trees: &trees,
        corpus_key: &corpus_key,
        work_dir: &args.work_dir,
        cold_files: &cold_files,
        misses: &misses,
        exec: &exec,
        upgrade,
        plan: &plan,
        options: &options,
        calibration: &calibration,
    };
    for info in catalog()
        .into_iter()
        .filter(|m| selected.iter().any(|s| s == m.name))
    {
        let result = measure_model(&info, &bench, &mut caches);
        results.models.push(result);
        results.fidelity = crate::results::fidelity::fidelity(&results.models);
        write_outputs(&results, &out_dir)?;
    }
    results.finished_utc = Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
    write_outputs(&results, &out_dir)?;
    let table = format!(
        "{}{}",
        render_table(&results),
        crate::results::fidelity::render_fidelity(&results)
    );
    print!("{table}");
    fs::write(out_dir.join("summary.md"), format!("```\n{table}```\n"))
        .with_context(|| format!("writing {}", out_dir.join("summary.md").display()))?;
    println!("results: {}", out_dir.join("results.json").display());
    let json = out_dir.join("results.json");
    let figures = out_dir.join("figures");
    match crate::results::read::load(&json).and_then(|measured| {
        crate::plot::plot_all(
            &[crate::plot::Series {
                label: crate::commands::plot::series_label(&json),
                measured,
            }],
            &figures,
        )
    }) {
        Ok(files) => println!("figures: {} ({} files)", figures.display(), files.len()),
        // Figures are a view of the results, which are written: say so and go on.
        Err(e) => eprintln!("harness: drawing figures failed: {e:#}"),
    }
    let failed = results.models.iter().any(|m| m.status == Status::Failed);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// What every model of one run is measured on: the corpus, its packages as models
/// receive them, the reads, the plan and the calibrated limits.
pub struct Bench<'a> {
    pub corpus: &'a Corpus,
    pub trees: &'a [PackageTree],
    /// Names the corpus's mirrors under `WORK_DIR/mirrors`.
    pub corpus_key: &'a str,
    pub work_dir: &'a Path,
    pub cold_files: &'a [String],
    pub misses: &'a [PathBuf],
    /// The `exec` workload's program, or why this corpus has none.
    pub exec: &'a std::result::Result<workloads::exec::ExecCommand, String>,
    /// The point release, when the plan has `upgrade`.
    pub upgrade: Option<UpgradeInput<'a>>,
    pub plan: &'a Plan,
    pub options: &'a ModelOptions,
    pub calibration: &'a Calibration,
}

/// The new versions the `upgrade` workload installs and the view they make.
#[derive(Clone, Copy)]
pub struct UpgradeInput<'a> {
    pub trees: &'a [PackageTree],
    pub expected: &'a workloads::view::TreeDigest,
}

/// Step 4 of the lifecycle for one model of the catalog: not available, skipped (with
/// the unmet requirements), failed (packing or measuring, with the reason), or measured
/// on its mirror (packed first if needed) with limit fractions added. Never fails.
pub fn measure_model(
    info: &ModelInfo,
    bench: &Bench<'_>,
    caches: &mut KernelCaches,
) -> ModelResult {
    let Some(make) = info.make else {
        return ModelResult::new(
            info.name,
            info.stands_for,
            Status::NotAvailable,
            Some("not built yet in this version of pkgbench".into()),
        );
    };
    let mut model = make(bench.options);
    let missing = unmet(&model.requirements());
    if !missing.is_empty() {
        return ModelResult::new(
            info.name,
            info.stands_for,
            Status::Skipped,
            Some(missing.join("; ")),
        );
    }
    // The point release's packages go on the same mirror (their names carry the new
    // version), which is then another mirror than the corpus's alone.
    let mut trees = bench.trees.to_vec();
    let mut mirror_key = bench.corpus_key.to_string();
    if let Some(upgrade) = &bench.upgrade {
        trees.extend_from_slice(upgrade.trees);
        mirror_key.push_str("+upgrade");
    }
    let pb = bar(&format!("pack {}", info.name), trees.len() as u64);
    let mirror = prepare_mirror(
        model.as_ref(),
        &trees,
        &mirror_key,
        &bench.work_dir.join("mirrors"),
        &|done, _| pb.set_position(done),
    );
    pb.finish_and_clear();
    let mirror = match mirror {
        Ok(m) => m,
        Err(e) => {
            return ModelResult::new(
                info.name,
                info.stands_for,
                Status::Failed,
                Some(format!("{e:#}")),
            );
        }
    };
    let target = bench.work_dir.join("targets").join(info.name);
    let sp = spinner(info.name);
    let mut events: Vec<Event> = Vec::new();
    let installed = bench.trees.len().min(mirror.artifacts.len());
    let (artifacts, new_versions) = mirror.artifacts.split_at(installed);
    let setup = Setup {
        artifacts,
        upgrade: bench.upgrade.as_ref().map(|u| UpgradeSet {
            to: new_versions,
            expected: u.expected,
        }),
        mirror: &mirror.dir,
        target: &target,
        reads: ReadSet {
            expected: &bench.corpus.digest,
            cold_files: bench.cold_files,
            misses: bench.misses,
            exec: bench.exec.as_ref().map_err(|s| s.as_str()),
        },
        plan: bench.plan,
    };
    let mut result = run_model(
        model.as_mut(),
        info.stands_for,
        &setup,
        caches,
        &mut events,
        &|step| sp.set_message(step.to_string()),
    );
    sp.finish_and_clear();
    result.mirror_bytes = Some(mirror.bytes());
    add_limit_fractions(
        &mut result,
        bench.calibration,
        bench.plan.durability != Durability::None,
        bench.corpus.digest.files() as u64,
    );
    eprintln!(
        "harness: {}: {}",
        info.name,
        match &result.reason {
            Some(r) => format!("{:?}: {r}", result.status),
            None => "done".to_string(),
        }
    );
    result
}

/// Every export of the one result: JSON, long CSV, Bencher's BMF, github-action-benchmark,
/// and the LaTeX headline table.
pub(crate) fn write_outputs(results: &RunResults, out_dir: &Path) -> Result<()> {
    write_json(results, &out_dir.join("results.json"))?;
    write_csv(results, &out_dir.join("results.csv"))?;
    write_value(&to_bmf(results), &out_dir.join("bmf.json"))?;
    write_value(
        &to_github_benchmark(results),
        &out_dir.join("github-benchmark.json"),
    )?;
    let tex = out_dir.join("table.tex");
    fs::write(&tex, crate::results::latex::to_latex(results))
        .with_context(|| format!("writing {}", tex.display()))
}

/// Adds to every sample its rate and its fraction of the calibrated limit that bounds it.
fn add_limit_fractions(result: &mut ModelResult, cal: &Calibration, durable: bool, files: u64) {
    for (workload, w) in result.workloads.iter_mut() {
        let runs = w.metrics.get("wall_ns").map_or(0, |s| s.samples.len());
        let mut derived: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for i in 0..runs {
            let sample: BTreeMap<String, f64> = w
                .metrics
                .iter()
                .filter_map(|(k, s)| Some((k.clone(), *s.samples.get(i)?)))
                .collect();
            for (k, v) in fractions(cal, workload, durable, &sample, files) {
                derived.entry(k).or_default().push(v);
            }
        }
        for (k, v) in derived {
            if let Some(summary) = Summary::of(&v) {
                w.metrics.insert(k, summary);
            }
        }
    }
}

/// Validates `--model`: all, or names of the catalog.
pub fn select_models(spec: &str) -> Result<Vec<String>> {
    let known: Vec<&str> = catalog().iter().map(|m| m.name).collect();
    if spec == "all" {
        return Ok(known.iter().map(|s| s.to_string()).collect());
    }
    let mut out = Vec::new();
    for name in spec.split(',') {
        if !known.contains(&name) {
            bail!(
                "unknown model {name:?}: known models are {}",
                known.join(", ")
            );
        }
        if !out.iter().any(|s: &String| s == name) {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

pub(crate) fn open_corpus(name: &str, work_dir: &Path) -> Result<Corpus> {
    let pb = bar("corpus", 0);
    let corpus = corpus::open(name, work_dir, &|done, total| {
        pb.set_length(total);
        pb.set_position(done);
    });
    pb.finish_and_clear();
    corpus.with_context(|| format!("opening corpus {name}"))
}

/// The mirror cache key: the corpus's cache directory name, which carries its name and
/// every generator version, so a mirror packed from older contents is never reused.
pub(crate) fn corpus_key(corpus: &Corpus) -> Result<String> {
    corpus
        .dir
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .with_context(|| format!("corpus directory {}", corpus.dir.display()))
}

pub(crate) fn corpus_record(corpus: &Corpus) -> CorpusRecord {
    let mut record = CorpusRecord {
        name: corpus.name.clone(),
        generator_version: GENERATOR_VERSION,
        packages: corpus.packages.len(),
        files: 0,
        dirs: 0,
        symlinks: 0,
        file_bytes: 0,
        digest: corpus.digest.hex(),
    };
    for entry in corpus.digest.entries.values() {
        match entry {
            Entry::Dir { .. } => record.dirs += 1,
            Entry::Symlink { .. } => record.symlinks += 1,
            Entry::File { size, .. } => {
                record.files += 1;
                record.file_bytes += size;
            }
        }
    }
    record
}

/// `results/runs/<UTC time>-<host>`, e.g. `results/runs/20261125T231000Z-vm`.
pub(crate) fn default_out_dir(started: SystemTime, host: &str) -> PathBuf {
    let stamp: String = humantime::format_rfc3339_seconds(started)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    PathBuf::from("results/runs").join(format!("{stamp}-{host}"))
}
