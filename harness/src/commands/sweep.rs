//! `harness sweep`: the lifecycle of `harness run` on `synthetic:N` for each N of
//! `--packages`, in increasing order, with one calibration for the whole sweep.
//!
//! For each N: open (generate, once) the corpus, then measure every selected model with
//! `run`'s own `measure_model`; for a model whose view is one layer per package
//! (`SweepFigures::layer_lookups` in its description: `overlay`) also the lookups of
//! `crate::sweep`, on a separate install, because the runner tears down after every iteration. After each
//! model, `sweep.json` is rewritten (a late failure loses nothing) and so is the N's
//! `nN/results.json`. At the end: a table, and the scaling figures in `figures/`.

use crate::caches::{CacheControl, KernelCaches};
use crate::calibrate::calibrate;
use crate::cli::SweepArgs;
use crate::commands::run::{
    corpus_key, corpus_record, default_out_dir, measure_model, open_corpus, select_models,
    write_outputs, Bench,
};
use crate::host::host_facts;
use crate::mirror::{package_trees, prepare_mirror};
use crate::namespace::{enter_private_mount_namespace, is_root};
use crate::progress::spinner;
use crate::results::json::write_value;
use crate::results::{RunConfigRecord, RunResults, Status, ToolFacts};
use crate::runner::{Plan, Workload};
use crate::sweep::{
    failed_lookups, lookup_names, measure_layer_lookups, parse_counts, row_of, LookupPlan,
    SweepConfig, SweepCorpus, SweepResults, SweepRow, SWEEP_SCHEMA_VERSION, WARM_BATCH,
    WARM_BATCHES,
};
use anyhow::{bail, Context, Result};
use models::{catalog, Durability, ModelOptions, RunCtx};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime};
use workloads::corpus::{synthetic, GENERATOR_VERSION};
use workloads::reads::{miss_list, COLD_READ_FILES};

pub fn sweep(args: &SweepArgs) -> Result<ExitCode> {
    // First, before any thread exists (see namespace.rs): the overlay model's mounts
    // must not outlive the harness.
    let namespace = if is_root() {
        enter_private_mount_namespace()?;
        true
    } else {
        eprintln!(
            "harness: not root: no private mount namespace, and models that need root are skipped"
        );
        false
    };
    let counts = parse_counts(&args.packages)?;
    let selected = select_models(&args.model)?;
    let durability = Durability::parse(&args.durability)?;
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    // Held until the run ends: no other run may empty or mount our targets meanwhile.
    let _work_dir_lock = crate::workdir::claim_work_dir(&args.work_dir)?;
    let started = SystemTime::now();
    let host = host_facts(&args.work_dir);
    let out_dir = match &args.out {
        Some(dir) => dir.clone(),
        None => {
            let base = default_out_dir(started, &host.hostname);
            base.with_file_name(format!(
                "{}-sweep",
                base.file_name()
                    .map_or_else(|| "sweep".into(), |n| n.to_string_lossy().into_owned())
            ))
        }
    };
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut caches = KernelCaches;
    let caches_dropped = caches.can_drop().is_ok();
    if !caches_dropped {
        eprintln!("harness: cannot drop caches (needs root): cold samples and lookups will be refused, not recorded warm");
    }
    let sp = spinner("calibrate");
    sp.set_message("the work directory's read, write and create limits");
    let calibration = calibrate(&args.work_dir, &mut caches).context("calibrating")?;
    sp.finish_and_clear();
    crate::commands::run::warn_of_caches_below(&calibration);

    // The sweep measures installs and reads per package count; upgrades are a run's.
    let workloads: Vec<Workload> = Workload::ALL
        .into_iter()
        .filter(|w| *w != Workload::Upgrade)
        .collect();
    let tool = ToolFacts::current();
    let lookup_plan = LookupPlan {
        cold_samples: args.lookup_samples.max(1),
        warm_batches: WARM_BATCHES,
        warm_batch: WARM_BATCH,
    };
    let mut sweep = SweepResults {
        schema_version: SWEEP_SCHEMA_VERSION,
        kind: "sweep".into(),
        tool: tool.clone(),
        started_utc: humantime::format_rfc3339_seconds(started).to_string(),
        finished_utc: None,
        host: host.clone(),
        config: SweepConfig {
            models: selected.clone(),
            packages: counts.clone(),
            workloads: workloads.iter().map(|w| w.name().to_string()).collect(),
            runs: args.runs,
            warmup: args.warmup,
            durability: durability.as_str().into(),
            jobs: args.jobs,
            work_dir: args.work_dir.display().to_string(),
            private_mount_namespace: namespace,
            order: "sequential".into(),
            caches_dropped,
            synthetic_version: synthetic::SYNTHETIC_VERSION,
            generator_version: GENERATOR_VERSION,
            size_knee_bytes: synthetic::SIZE_KNEE,
            lookup_cold_samples: lookup_plan.cold_samples,
            lookup_warm_batches: lookup_plan.warm_batches,
            lookup_warm_batch_size: lookup_plan.warm_batch,
        },
        calibration: calibration.clone(),
        corpora: Vec::new(),
        rows: Vec::new(),
    };
    let plan = Plan {
        workloads: workloads.clone(),
        runs: args.runs,
        warmup: args.warmup,
        durability,
        jobs: args.jobs,
    };
    let options = ModelOptions::default();
    let misses = miss_list();
    let sweep_json = out_dir.join("sweep.json");

    let targets = args.work_dir.join("targets");
    for &n in &counts {
        let name = format!("{}:{n}", synthetic::NAME);
        let opened = Instant::now();
        let corpus = open_corpus(&name, &args.work_dir)?;
        let open_s = opened.elapsed().as_secs_f64();
        eprintln!(
            "harness: {name}: {} files, {} MiB (opened in {open_s:.1} s)",
            corpus.files(),
            corpus.bytes() >> 20
        );
        let corpus_key = corpus_key(&corpus)?;
        let trees = package_trees(&corpus);
        let cold_files = corpus.largest_files(COLD_READ_FILES);
        let no_exec = Err("synthetic corpora hold no program that runs".to_string());
        let bench = Bench {
            corpus: &corpus,
            trees: &trees,
            corpus_key: &corpus_key,
            work_dir: &args.work_dir,
            targets: &targets,
            cold_files: &cold_files,
            misses: &misses,
            exec: &no_exec,
            upgrade: None,
            plan: &plan,
            options: &options,
            calibration: &calibration,
            link: None,
        };
        let point_dir = out_dir.join(format!("n{n}"));
        fs::create_dir_all(&point_dir)
            .with_context(|| format!("creating {}", point_dir.display()))?;
        let mut results = RunResults::begin(
            tool.clone(),
            SystemTime::now(),
            host.clone(),
            RunConfigRecord {
                models: selected.clone(),
                workloads: sweep.config.workloads.clone(),
                corpus: name.clone(),
                runs: args.runs,
                warmup: args.warmup,
                durability: durability.as_str().into(),
                jobs: args.jobs,
                work_dir: args.work_dir.display().to_string(),
                private_mount_namespace: namespace,
                caches_dropped,
                // A sweep measures each model's point in a row.
                order: "sequential".into(),
                fs: None,
                base_root: None,
                link: None,
            },
            corpus_record(&corpus),
            calibration.clone(),
        );
        sweep.corpora.push(SweepCorpus {
            packages: n,
            corpus: results.corpus.clone(),
            open_s,
            results: format!("n{n}/results.json"),
        });
        for info in catalog()
            .into_iter()
            .filter(|m| selected.iter().any(|s| s == m.name))
        {
            let result = measure_model(&info, &bench, &mut caches);
            let mut row = row_of(&result, n);
            if info.sweep.layer_lookups && result.status == Status::Ok && caches_dropped {
                row.lookup = Some(layer_lookups(&info, &bench, &mut caches, lookup_plan));
            }
            results.models.push(result);
            results.fidelity = crate::results::fidelity::fidelity(&results.models);
            write_outputs(&results, &point_dir)?;
            sweep.rows.push(row);
            write_value(
                &serde_json::to_value(&sweep).context("serialising sweep.json")?,
                &sweep_json,
            )?;
        }
        results.finished_utc =
            Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
        write_outputs(&results, &point_dir)?;
    }
    sweep.finished_utc = Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
    write_value(
        &serde_json::to_value(&sweep).context("serialising sweep.json")?,
        &sweep_json,
    )?;
    print!("{}", render_sweep_table(&sweep.rows));
    println!("sweep: {}", sweep_json.display());
    let figures = out_dir.join("figures");
    match crate::plot::scaling::plot_sweep(&sweep.rows, &figures) {
        Ok(files) => println!("figures: {} ({} files)", figures.display(), files.len()),
        // Figures are a view of the results, which are written: say so and go on.
        Err(e) => eprintln!("harness: drawing figures failed: {e:#}"),
    }
    match sweep_report(
        &sweep.corpora,
        &render_sweep_table(&sweep.rows),
        &figures,
        &out_dir,
    ) {
        Ok(path) => println!("report: {}", path.display()),
        Err(e) => eprintln!("harness: writing report.html failed: {e:#}"),
    }
    let failed = sweep.rows.iter().any(|r| r.status == "failed")
        || sweep
            .rows
            .iter()
            .any(|r| r.lookup.as_ref().is_some_and(|l| l.error.is_some()));
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The sweep's `report.html`: its table, every package count's results, its figures.
fn sweep_report(
    corpora: &[SweepCorpus],
    table: &str,
    figures: &Path,
    out_dir: &Path,
) -> Result<PathBuf> {
    let mut values = Vec::new();
    for c in corpora {
        let path = out_dir.join(&c.results);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
        values.push((format!("{} packages", c.packages), value));
    }
    let page = crate::report::Page {
        title: "pkgbench sweep".into(),
        sections: values
            .iter()
            .map(|(label, results)| crate::report::Section {
                results,
                label: label.clone(),
                baseline: None,
            })
            .collect(),
        texts: vec![("Sweep".into(), table.to_string())],
        figures: crate::report::svg_figures(figures),
        compare: None,
    };
    crate::report::write(&page, out_dir)
}

/// The lookups of the layered model `info` on a fresh install of the bench's corpus (its
/// mirror is packed by now). A failure is recorded in the lookups, not raised: the other
/// numbers stand.
fn layer_lookups(
    info: &models::ModelInfo,
    bench: &Bench<'_>,
    caches: &mut KernelCaches,
    plan: LookupPlan,
) -> crate::sweep::Lookups {
    let layers = bench.corpus.packages.len();
    let sp = spinner(info.name);
    sp.set_message("lookups");
    let outcome = (|| {
        let make = info
            .make
            .with_context(|| format!("the {} model is not built", info.name))?;
        let mut model = make(bench.options);
        let mirror = prepare_mirror(
            model.as_ref(),
            bench.trees,
            bench.corpus_key,
            &bench.work_dir.join("mirrors"),
            &|_, _| {},
        )?;
        // The lookups name the first and last package as layers; that holds only if the
        // model receives the packages in corpus order.
        let order_ok = mirror.artifacts.iter().map(|a| a.package.as_str()).eq(bench
            .corpus
            .packages
            .iter()
            .map(|p| p.name.as_str()));
        if !order_ok {
            bail!(
                "the {} mirror's artifacts are not in corpus order",
                info.name
            );
        }
        let names = lookup_names(bench.corpus)?;
        let ctx = RunCtx {
            target: bench
                .work_dir
                .join("targets")
                .join(format!("{}-lookups", info.name)),
            mirror: mirror.dir.clone(),
            durability: bench.plan.durability,
            jobs: bench.plan.jobs,
            http: None,
        };
        measure_layer_lookups(
            model.as_mut(),
            &mirror.artifacts,
            &ctx,
            &names,
            caches,
            plan,
        )
    })();
    sp.finish_and_clear();
    outcome.unwrap_or_else(|e| {
        eprintln!(
            "harness: {} lookups at {layers} layers failed: {e:#}",
            info.name
        );
        failed_lookups(layers, &e)
    })
}

/// One line per model and N: the medians, in milliseconds (lookups in microseconds).
fn render_sweep_table(rows: &[SweepRow]) -> String {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{:.1}", v / 1e6));
    let us = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{:.2}", v / 1e3));
    let mut out = format!(
        "{:<8} {:>6} {:>8} {:>12} {:>11} {:>10} {:>10} {:>24} {:>24} {:>24}\n",
        "model",
        "N",
        "status",
        "install_ms",
        "per_pkg_ms",
        "cold_ms",
        "many_ms",
        "first cold/warm us",
        "last cold/warm us",
        "miss cold/warm us"
    );
    for r in rows {
        let lookup = |pick: fn(&crate::sweep::Lookups) -> &crate::sweep::Lookup| {
            r.lookup.as_ref().map_or_else(
                || "-".to_string(),
                |l| {
                    let x = pick(l);
                    format!(
                        "{}/{}",
                        us(x.cold_ns.as_ref().map(|s| s.median)),
                        us(x.warm_ns.as_ref().map(|s| s.median))
                    )
                },
            )
        };
        out.push_str(&format!(
            "{:<8} {:>6} {:>8} {:>12} {:>11} {:>10} {:>10} {:>24} {:>24} {:>24}\n",
            r.model,
            r.packages,
            r.status,
            ms(r.install_wall_ns),
            r.install_per_package_ns
                .map_or_else(|| "-".to_string(), |v| format!("{:.2}", v / 1e6)),
            ms(r.cold_read_wall_ns),
            ms(r.many_file_wall_ns),
            lookup(|l| &l.first_layer),
            lookup(|l| &l.last_layer),
            lookup(|l| &l.missing),
        ));
        if let Some(reason) = &r.reason {
            out.push_str(&format!("         {reason}\n"));
        }
    }
    out
}
