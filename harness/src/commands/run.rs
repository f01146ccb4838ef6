//! `harness run`: the lifecycle of ARCHITECTURE.md. Check requirements, enter a private mount
//! namespace, build the corpus and each model's mirror (untimed), measure each model, and
//! write results after each model so a late failure loses nothing.

use crate::caches::KernelCaches;
use crate::calibrate::{calibrate, fractions, Calibration};
use crate::cli::RunArgs;
use crate::filesystems::{FsKind, TestFs};
use crate::host::host_facts;
use crate::mirror::Mirror;
use crate::mirror::{package_trees, prepare_mirror};
use crate::namespace::{enter_private_mount_namespace, is_root};
use crate::net::link::{enter_own_namespace, Link, LinkSpec};
use crate::progress::{bar, spinner};
use crate::requirements::unmet;
use crate::results::bmf::to_bmf;
use crate::results::csv::write_csv;
use crate::results::github_benchmark::to_github_benchmark;
use crate::results::json::{write_json, write_value};
use crate::results::matrix::render_matrix;
use crate::results::table::render_table;
use crate::results::{CorpusRecord, ModelResult, RunConfigRecord, RunResults, Status, ToolFacts};
use crate::runner::OverLink;
use crate::runner::{Event, ModelRun, Plan, ReadSet, Setup, UpgradeSet, Workload};
use crate::schedule::Order;
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

/// `PKGBENCH_LOG_STEPS=1`: `harness run` prints every step of the measurement to stderr
/// ("harness: step: MODEL: STEP") as it starts.
pub const LOG_STEPS_VAR: &str = "PKGBENCH_LOG_STEPS";

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
    if let Some(baseline) = &args.baseline {
        if !selected.contains(baseline) {
            bail!(
                "--baseline {baseline}: not among the models to run ({})",
                selected.join(", ")
            );
        }
    }
    let durability = Durability::parse(&args.durability)?;
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let order = Order::parse(&args.order)?;
    let filesystems = match &args.fs {
        Some(list) => FsKind::parse_list(list)?,
        None => Vec::new(),
    };
    if !filesystems.is_empty() && !namespace {
        bail!("--fs makes and mounts filesystems: run as root");
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
    // Real packages' scripts need a system under them (workloads::corpus::base_root).
    let base_root = if real_corpus
        && namespace
        && !args.no_base_root
        && !args.no_maintainer_scripts
        && selected.iter().any(|m| m == models::hooks::INFO.name)
    {
        let sp = spinner("base root");
        let base = corpus::base_root::ensure(&args.work_dir, &|m| sp.set_message(m.to_string()))
            .context("the base root hooks installs real packages onto")?;
        sp.finish_and_clear();
        Some(base)
    } else {
        None
    };
    let options = ModelOptions {
        skip_maintainer_scripts: args.no_maintainer_scripts,
        chroot_maintainer_scripts: real_corpus,
        base_root: base_root.as_ref().map(|b| b.root.clone()),
        fuse,
        compression: parse_compression(&args.compression)?,
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
    let links = parse_links(&args.link)?;
    if links.iter().any(Option::is_some) {
        if !namespace {
            bail!("--link makes network namespaces and a veth pair: run as root");
        }
        // After everything that may need the host's network (the base root's
        // download); before any thread that fetches exists.
        enter_own_namespace()?;
    }
    if links.len() > 1 && !filesystems.is_empty() {
        bail!("--fs and a list of --link rates are two dimensions: measure one at a time");
    }
    // One link: it is up for the whole run. A list: each comes up in its turn, below.
    let link = match links.as_slice() {
        [Some(spec)] => Some(link_up(*spec, &args.work_dir)?),
        _ => None,
    };
    let targets = args.work_dir.join("targets");
    let unmeasured = Calibration::default();
    let bench = Bench {
        corpus: &corpus,
        trees: &trees,
        corpus_key: &corpus_key,
        work_dir: &args.work_dir,
        targets: &targets,
        cold_files: &cold_files,
        misses: &misses,
        exec: &exec,
        upgrade,
        plan: &plan,
        options: &options,
        calibration: &unmeasured,
        link: link.as_ref(),
    };
    let session = Session {
        args,
        started,
        host,
        selected,
        namespace,
        caches_dropped,
        order,
    };
    if links.len() > 1 {
        return measure_over_links(&session, &bench, &links, &out_dir, &mut caches);
    }
    if filesystems.is_empty() {
        let failed = measure_on(
            &session,
            &bench,
            &args.work_dir,
            &out_dir,
            None,
            &mut caches,
        )?;
        return Ok(exit_code(failed));
    }
    let mut failed = false;
    let mut series = Vec::new();
    for kind in filesystems {
        let sp = spinner(kind.name());
        sp.set_message(format!("making and mounting {}", kind.name()));
        let made = TestFs::create(kind, &args.work_dir)
            .with_context(|| format!("--fs {}: making the filesystem", kind.name()))?;
        sp.finish_and_clear();
        let targets = made.mount_point.join("targets");
        let on_fs = Bench {
            targets: &targets,
            ..bench
        };
        let dir = out_dir.join(kind.name());
        eprintln!(
            "harness: measuring on {} ({})",
            kind.name(),
            made.mount_point.display()
        );
        failed |= measure_on(
            &session,
            &on_fs,
            &made.mount_point,
            &dir,
            Some(made.record.clone()),
            &mut caches,
        )?;
        drop(made);
        let json = dir.join("results.json");
        match crate::results::read::load(&json) {
            Ok(measured) => series.push(crate::plot::Series {
                label: kind.name().to_string(),
                measured,
            }),
            Err(e) => eprintln!("harness: {}: {e:#}", json.display()),
        }
    }
    // One figure per workload with a bar per filesystem: models x workloads x fs.
    let figures = out_dir.join("figures");
    match crate::plot::plot_all(&series, args.baseline.as_deref(), &figures) {
        Ok(files) => println!(
            "figures across filesystems: {} ({} files)",
            figures.display(),
            files.len()
        ),
        Err(e) => eprintln!("harness: drawing the figures across filesystems failed: {e:#}"),
    }
    Ok(exit_code(failed))
}

/// `--link`: one spec, or a comma-separated list of them (`none` among them: the local
/// copy), each at most once.
fn parse_links(text: &str) -> Result<Vec<Option<LinkSpec>>> {
    let mut out: Vec<Option<LinkSpec>> = Vec::new();
    for word in text.split(',') {
        let spec = LinkSpec::parse(word.trim())?;
        if out.contains(&spec) {
            bail!("--link {text:?}: {word:?} is listed twice");
        }
        out.push(spec);
    }
    Ok(out)
}

/// Brings up the link of `spec` with the mirror directory of `work_dir` served on it.
fn link_up(spec: LinkSpec, work_dir: &Path) -> Result<Link> {
    let served = crate::net::link::served_root(work_dir);
    fs::create_dir_all(&served).with_context(|| format!("creating {}", served.display()))?;
    let link = Link::up(spec, &served, work_dir)
        .with_context(|| format!("--link {}: making the link", spec.name()))?;
    eprintln!(
        "harness: fetching over {} ({}): {}; {}",
        spec.name(),
        link.record.url,
        link.record.qdiscs.join("; "),
        link.record.routes.join("; ")
    );
    Ok(link)
}

/// `--link A,B,...`: the whole run over each link in turn (`OUT/LINK/`, `local` for
/// `none`), then the install medians against the rate: `OUT/summary.md` with the
/// crossovers, and `OUT/figures/install-vs-link` (`net::rates`).
fn measure_over_links(
    session: &Session<'_>,
    bench: &Bench<'_>,
    links: &[Option<LinkSpec>],
    out_dir: &Path,
    caches: &mut KernelCaches,
) -> Result<ExitCode> {
    let args = session.args;
    let mut failed = false;
    let mut points = Vec::new();
    for spec in links {
        let name = spec.map_or("local".to_string(), |s| s.name());
        // The previous link, its server and its qdiscs are gone before this one exists.
        let link = spec.map(|s| link_up(s, &args.work_dir)).transpose()?;
        let over = Bench {
            link: link.as_ref(),
            ..*bench
        };
        let dir = out_dir.join(&name);
        eprintln!("harness: measuring over {name}");
        failed |= measure_on(session, &over, &args.work_dir, &dir, None, caches)?;
        drop(link);
        let json = dir.join("results.json");
        match crate::results::read::load(&json) {
            Ok(measured) => points.push(crate::net::rates::RatePoint::of(
                &name,
                spec.map(|s| s.rate_bits_per_s),
                &measured,
            )),
            Err(e) => eprintln!("harness: {}: {e:#}", json.display()),
        }
    }
    let summary = crate::net::rates::render_summary(&points);
    print!("{summary}");
    let path = out_dir.join("summary.md");
    fs::write(&path, &summary).with_context(|| format!("writing {}", path.display()))?;
    let figures = out_dir.join("figures");
    match crate::net::rates::plot(&points, &figures) {
        Ok(files) => println!(
            "figures across links: {} ({} files)",
            figures.display(),
            files.len()
        ),
        Err(e) => eprintln!("harness: drawing the figure across links failed: {e:#}"),
    }
    Ok(exit_code(failed))
}

/// `--compression MODEL=SPEC` words, by model: only the models whose mirrors carry
/// compressed streams take one (the images' compression is SquashFS's own).
fn parse_compression(
    words: &[String],
) -> Result<std::collections::BTreeMap<String, models::formats::compression::Compression>> {
    let takers = [models::hooks::INFO.name, models::nar::INFO.name];
    let mut out = std::collections::BTreeMap::new();
    for word in words {
        let Some((model, spec)) = word.split_once('=') else {
            bail!("--compression {word:?}: not MODEL=SPEC");
        };
        if !takers.contains(&model) {
            bail!(
                "--compression {word:?}: {model} has no compressed streams on its mirror (only {} do; their references follow them)",
                takers.join(" and ")
            );
        }
        let c = models::formats::compression::Compression::parse(spec)
            .with_context(|| format!("--compression {word:?}"))?;
        out.insert(model.to_string(), c);
    }
    Ok(out)
}

fn exit_code(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// What one `harness run` fixes for every filesystem it measures on.
struct Session<'a> {
    args: &'a RunArgs,
    started: SystemTime,
    host: crate::host::HostFacts,
    selected: Vec<String>,
    namespace: bool,
    caches_dropped: bool,
    order: Order,
}

/// Calibrates `calibration_dir`'s filesystem, measures every selected model on `bench`
/// (whose targets live there), and writes results, table and figures into `out_dir`.
/// Returns whether a model failed.
fn measure_on(
    session: &Session<'_>,
    bench: &Bench<'_>,
    calibration_dir: &Path,
    out_dir: &Path,
    fs_record: Option<crate::filesystems::FsRecord>,
    caches: &mut KernelCaches,
) -> Result<bool> {
    let args = session.args;
    fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let sp = spinner("calibrate");
    sp.set_message("the filesystem's read, write and create limits");
    let calibration = calibrate(calibration_dir, caches).context("calibrating")?;
    sp.finish_and_clear();
    warn_of_caches_below(&calibration);
    let bench = Bench {
        calibration: &calibration,
        ..*bench
    };
    let mut results = RunResults::begin(
        ToolFacts::current(),
        session.started,
        session.host.clone(),
        RunConfigRecord {
            models: session.selected.clone(),
            workloads: bench
                .plan
                .workloads
                .iter()
                .map(|w| w.name().to_string())
                .collect(),
            corpus: args.corpus.clone(),
            runs: args.runs,
            warmup: args.warmup,
            durability: bench.plan.durability.as_str().into(),
            jobs: args.jobs,
            work_dir: args.work_dir.display().to_string(),
            private_mount_namespace: session.namespace,
            caches_dropped: session.caches_dropped,
            order: session.order.name(),
            fs: fs_record,
            base_root: bench
                .options
                .base_root
                .as_ref()
                .map(|p| p.display().to_string()),
            link: bench.link.map(|l| l.record.clone()),
        },
        corpus_record(bench.corpus),
        calibration.clone(),
    );
    let infos: Vec<ModelInfo> = catalog()
        .into_iter()
        .filter(|m| session.selected.iter().any(|s| s == m.name))
        .collect();
    measure_models(&infos, &bench, caches, session.order, &mut |models| {
        results.models = models;
        results.fidelity = crate::results::fidelity::fidelity(&results.models);
        write_outputs(&results, out_dir)
    })?;
    results.finished_utc = Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
    write_outputs(&results, out_dir)?;
    let json = out_dir.join("results.json");
    // The stage table reads the results as written, as `plot` and `compare` do.
    let measured = crate::results::read::load(&json);
    let stages = match &measured {
        Ok(m) => crate::results::stages::render_stages(&crate::results::stages::install_stages(m)),
        Err(_) => String::new(),
    };
    let matrix = render_matrix(&results, session.args.baseline.as_deref()).unwrap_or_else(|e| {
        // The baseline was selected but did not run: ratios to the first model instead.
        eprintln!("harness: {e}; ratios are to the first model that ran");
        render_matrix(&results, None).unwrap_or_default()
    });
    let long = render_table(&results);
    let rest = format!(
        "{stages}{}",
        crate::results::fidelity::render_fidelity(&results)
    );
    let shown = if session.args.table == "long" {
        &long
    } else {
        &matrix
    };
    print!("{shown}{rest}");
    fs::write(
        out_dir.join("summary.md"),
        format!("```\n{matrix}\n{long}{rest}```\n"),
    )
    .with_context(|| format!("writing {}", out_dir.join("summary.md").display()))?;
    println!("results: {}", json.display());
    let figures = out_dir.join("figures");
    match measured.and_then(|measured| {
        crate::plot::plot_all(
            &[crate::plot::Series {
                label: crate::commands::plot::series_label(&json),
                measured,
            }],
            session.args.baseline.as_deref(),
            &figures,
        )
    }) {
        Ok(files) => println!("figures: {} ({} files)", figures.display(), files.len()),
        // Figures are a view of the results, which are written: say so and go on.
        Err(e) => eprintln!("harness: drawing figures failed: {e:#}"),
    }
    match write_report(
        &results,
        &json,
        session.args.baseline.as_deref(),
        &figures,
        out_dir,
    ) {
        Ok(path) => println!("report: {}", path.display()),
        Err(e) => eprintln!("harness: writing report.html failed: {e:#}"),
    }
    Ok(results.models.iter().any(|m| m.status == Status::Failed))
}

/// `report.html` beside `results.json`, with the figures just drawn.
fn write_report(
    results: &crate::results::RunResults,
    json: &Path,
    baseline: Option<&str>,
    figures: &Path,
    out_dir: &Path,
) -> Result<PathBuf> {
    let value = serde_json::to_value(results).context("results as JSON")?;
    let label = crate::commands::plot::series_label(json);
    let page = crate::report::Page {
        title: format!("pkgbench run {label}"),
        sections: vec![crate::report::Section {
            results: &value,
            label,
            baseline,
        }],
        texts: Vec::new(),
        figures: crate::report::svg_figures(figures),
        compare: None,
    };
    crate::report::write(&page, out_dir)
}

/// What every model of one run is measured on: the corpus, its packages as models
/// receive them, the reads, the plan and the calibrated limits.
#[derive(Clone, Copy)]
pub struct Bench<'a> {
    pub corpus: &'a Corpus,
    pub trees: &'a [PackageTree],
    /// Names the corpus's mirrors under `WORK_DIR/mirrors`.
    pub corpus_key: &'a str,
    /// Where corpora and mirrors live (`WORK_DIR/mirrors`).
    pub work_dir: &'a Path,
    /// Where each model's target is made (`TARGETS/NAME`): the filesystem measured on.
    pub targets: &'a Path,
    pub cold_files: &'a [String],
    pub misses: &'a [PathBuf],
    /// The `exec` workload's program, or why this corpus has none.
    pub exec: &'a std::result::Result<workloads::exec::ExecCommand, String>,
    /// The point release, when the plan has `upgrade`.
    pub upgrade: Option<UpgradeInput<'a>>,
    pub plan: &'a Plan,
    pub options: &'a ModelOptions,
    pub calibration: &'a Calibration,
    /// The link the fetches cross (`--link`), serving `WORK_DIR/mirrors`.
    pub link: Option<&'a crate::net::link::Link>,
}

/// The new versions the `upgrade` workload installs and the view they make.
#[derive(Clone, Copy)]
pub struct UpgradeInput<'a> {
    pub trees: &'a [PackageTree],
    pub expected: &'a workloads::view::TreeDigest,
}

/// A model of the catalog ready to be measured: built, its requirements met, its
/// mirror packed (untimed).
pub struct Prepared {
    info: ModelInfo,
    model: Box<dyn models::Model>,
    mirror: Mirror,
    target: PathBuf,
    /// The mirror's URL on the run's link.
    url: Option<String>,
}

impl Prepared {
    /// What the runner measures this model on.
    fn setup<'a>(&'a self, bench: &'a Bench<'_>) -> Setup<'a> {
        setup_of(&self.mirror, &self.target, self.url.as_deref(), bench)
    }
}

/// What the runner measures a model on: its mirror (at `url` on the link, if any) and
/// target, and the bench's reads.
fn setup_of<'a>(
    mirror: &'a Mirror,
    target: &'a Path,
    url: Option<&'a str>,
    bench: &'a Bench<'_>,
) -> Setup<'a> {
    let installed = bench.trees.len().min(mirror.artifacts.len());
    let (artifacts, new_versions) = mirror.artifacts.split_at(installed);
    Setup {
        artifacts,
        upgrade: bench.upgrade.as_ref().map(|u| UpgradeSet {
            to: new_versions,
            expected: u.expected,
        }),
        mirror: &mirror.dir,
        target,
        reads: ReadSet {
            expected: &bench.corpus.digest,
            cold_files: bench.cold_files,
            misses: bench.misses,
            exec: bench.exec.as_ref().map_err(|s| s.as_str()),
        },
        plan: bench.plan,
        link: bench
            .link
            .zip(url)
            .map(|(link, url)| OverLink { link, url }),
    }
}

/// Steps 1 and 3 of the lifecycle for one model of the catalog: not available, skipped
/// (with the unmet requirements) or failed packing (with the reason) is its final
/// result; otherwise it is ready, its mirror packed if needed.
pub fn prepare_model(info: &ModelInfo, bench: &Bench<'_>) -> Result<Prepared, Box<ModelResult>> {
    let Some(make) = info.make else {
        return Err(Box::new(ModelResult::new(
            info.name,
            info.stands_for,
            Status::NotAvailable,
            Some("not built yet in this version of pkgbench".into()),
        )));
    };
    let missing = unmet(info.needs);
    if !missing.is_empty() {
        return Err(Box::new(ModelResult::new(
            info.name,
            info.stands_for,
            Status::Skipped,
            Some(missing.join("; ")),
        )));
    }
    let model = make(bench.options);
    // The point release's packages go on the same mirror (their names carry the new
    // version), which is then another mirror than the corpus's alone.
    let mut trees = bench.trees.to_vec();
    let mut mirror_key = bench.corpus_key.to_string();
    if let Some(upgrade) = &bench.upgrade {
        trees.extend_from_slice(upgrade.trees);
        // With the point release's own version: a rebuilt release is another mirror.
        mirror_key.push_str(&format!(
            "+upgrade-g{}",
            workloads::corpus::upgrade::UPGRADE_VERSION
        ));
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
    let served = crate::net::link::served_root(bench.work_dir);
    let mirror = mirror.and_then(|mirror| {
        let url = bench
            .link
            .map(|link| link.url_of(&served, &mirror.dir))
            .transpose()?;
        Ok((mirror, url))
    });
    match mirror {
        Ok((mirror, url)) => Ok(Prepared {
            info: *info,
            model,
            mirror,
            target: bench.targets.join(info.name),
            url,
        }),
        Err(e) => Err(Box::new(ModelResult::new(
            info.name,
            info.stands_for,
            Status::Failed,
            Some(format!("{e:#}")),
        ))),
    }
}

/// One model's place in a run: prepared and being measured, or its final result.
enum Slot {
    Measuring(Box<(Prepared, ModelRun)>),
    Final(ModelResult),
}

/// Steps 3 to 5 for `infos`: prepares every model, then measures them round by round in
/// `order` (`schedule`), calling `written` with every model's result so far after each
/// round, so a late failure loses nothing. Returns the final results in catalog order.
pub fn measure_models(
    infos: &[ModelInfo],
    bench: &Bench<'_>,
    caches: &mut dyn crate::caches::CacheControl,
    order: Order,
    written: &mut dyn FnMut(Vec<ModelResult>) -> Result<()>,
) -> Result<Vec<ModelResult>> {
    let mut slots: Vec<Slot> = infos
        .iter()
        .map(|info| match prepare_model(info, bench) {
            Ok(p) => {
                let run = ModelRun::new(p.info.name, p.info.stands_for, bench.plan, &*caches);
                Slot::Measuring(Box::new((p, run)))
            }
            Err(result) => Slot::Final(*result),
        })
        .collect();
    let snapshot = |slots: &[Slot]| -> Vec<ModelResult> {
        slots
            .iter()
            .map(|slot| match slot {
                Slot::Measuring(m) => finished_result(m.1.result(&m.0.setup(bench)), &m.0, bench),
                Slot::Final(r) => r.clone(),
            })
            .collect()
    };
    written(snapshot(&slots))?;
    let measuring: Vec<usize> = (0..slots.len())
        .filter(|i| matches!(slots[*i], Slot::Measuring(..)))
        .collect();
    let iterations = bench.plan.warmup + bench.plan.runs;
    let rounds = order.rounds(measuring.len(), iterations);
    let sp = spinner("measure");
    // Every step on its own line of stderr, written before the step starts: the crash
    // trials wait for "upgrade" there to kill the run inside it (the spinner draws
    // nothing without a terminal).
    let log_steps = std::env::var_os(LOG_STEPS_VAR).is_some_and(|v| v == "1");
    let mut events: Vec<Event> = Vec::new();
    for (r, round) in rounds.iter().enumerate() {
        for &m in round {
            let Slot::Measuring(slot) = &mut slots[measuring[m]] else {
                continue;
            };
            let (p, run) = &mut **slot;
            if run.is_done() {
                continue;
            }
            let Prepared {
                info,
                model,
                mirror,
                target,
                url,
            } = p;
            let setup = setup_of(mirror, target, url.as_deref(), bench);
            let name = info.name;
            run.step(model.as_mut(), &setup, caches, &mut events, &|step| {
                if log_steps {
                    eprintln!("harness: step: {name}: {step}");
                }
                sp.set_message(format!("round {}/{}: {name}: {step}", r + 1, rounds.len()))
            });
            // Nothing reads the events of a real run; keep them from growing.
            events.clear();
            if run.is_done() {
                let result = run.result(&setup);
                eprintln!(
                    "harness: {name}: {}",
                    match &result.reason {
                        Some(reason) => format!("{:?}: {reason}", result.status),
                        None => "done".to_string(),
                    }
                );
            }
        }
        written(snapshot(&slots))?;
    }
    sp.finish_and_clear();
    Ok(snapshot(&slots))
}

/// Measures one model, its iterations in a row (`sweep`). Never fails.
pub fn measure_model(
    info: &ModelInfo,
    bench: &Bench<'_>,
    caches: &mut dyn crate::caches::CacheControl,
) -> ModelResult {
    match measure_models(
        std::slice::from_ref(info),
        bench,
        caches,
        Order::Sequential,
        &mut |_| Ok(()),
    ) {
        Ok(mut results) => results
            .pop()
            .unwrap_or_else(|| ModelResult::new(info.name, info.stands_for, Status::Failed, None)),
        Err(e) => ModelResult::new(
            info.name,
            info.stands_for,
            Status::Failed,
            Some(format!("{e:#}")),
        ),
    }
}

/// A model's result as written: with its mirror's size and every sample's rate and
/// fraction of the calibrated limit.
fn finished_result(mut result: ModelResult, p: &Prepared, bench: &Bench<'_>) -> ModelResult {
    result.mirror_bytes = Some(p.mirror.bytes());
    add_limit_fractions(
        &mut result,
        bench.calibration,
        bench.plan.durability,
        bench.corpus.digest.files() as u64,
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
fn add_limit_fractions(
    result: &mut ModelResult,
    cal: &Calibration,
    durability: Durability,
    files: u64,
) {
    let model = result.name.clone();
    for (workload, w) in result.workloads.iter_mut() {
        let runs = w.metrics.get("wall_ns").map_or(0, |s| s.samples.len());
        let mut derived: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for i in 0..runs {
            let sample: BTreeMap<String, f64> = w
                .metrics
                .iter()
                .filter_map(|(k, s)| Some((k.clone(), *s.samples.get(i)?)))
                .collect();
            for (k, v) in fractions(cal, &model, workload, durability, &sample, files) {
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

/// Says so when a buffered cold read beat the device (`calibrate`): a cache below the
/// guest (a VM's host) serves what the guest thinks is cold.
pub(crate) fn warn_of_caches_below(cal: &Calibration) {
    if cal.cold_below_guest == "suspect" {
        let mb = |l: &Option<crate::calibrate::Limit>| l.as_ref().map_or(0.0, |l| l.median / 1e6);
        eprintln!(
            "harness: warning: a cold buffered read ({:.0} MB/s) beat O_DIRECT ({:.0} MB/s): something below this machine caches (a VM's host?), so cold reads here are not cold all the way down",
            mb(&cal.seq_read_cold_bytes_per_s),
            mb(&cal.seq_read_direct_bytes_per_s)
        );
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
