//! `harness hook-costs`: what maintainer scripts cost, per script, measured with the
//! `hooks` model's probe (`models::hooks::probe`).
//!
//! `measure` installs real closures (`debian:python3`, `debian:qemu-system-x86` by
//! default) onto the base root with `hooks`, the real scripts chrooted, and writes the
//! table the embedded corpora's stand-ins replay (`workloads/data/hook-costs.tsv`): per
//! script run, the median of `--runs` cost passes (wall, CPU, files, bytes) and one
//! strace pass (processes, programs). `check` installs an embedded corpus with its
//! stand-ins under the same probe and prints, per script class, the stand-ins' cost next
//! to the real scripts' from the table, with the ratio: the stand-ins are only as good as
//! that ratio, measured on this machine.

use crate::cli::HookCostsArgs;
use crate::mirror::{package_trees, prepare_mirror};
use anyhow::{bail, Context, Result};
use models::hooks::probe::{ProbeMode, ScriptProbe, ScriptRun};
use models::hooks::HooksModel;
use models::{Durability, Model, RunCtx};
use std::collections::BTreeMap;
use std::fs;
use std::process::ExitCode;
use std::sync::Arc;
use workloads::corpus::hook_costs::{self, classify, ScriptCost};
use workloads::corpus::{self, Corpus};

pub fn hook_costs(args: &HookCostsArgs) -> Result<ExitCode> {
    if !crate::namespace::is_root() {
        bail!("hook-costs runs maintainer scripts chrooted: run as root");
    }
    crate::namespace::enter_private_mount_namespace()?;
    let _lock = crate::workdir::claim_work_dir(&args.work_dir)?;
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if args.check {
        check(args)
    } else {
        measure(args)
    }
}

/// One probed install per pass; the script runs of every pass, in install order.
fn probed_runs(corpus: &Corpus, args: &HookCostsArgs, real: bool) -> Result<Vec<Vec<ScriptRun>>> {
    let base = if real {
        Some(corpus::base_root::ensure(&args.work_dir, &|m| {
            eprintln!("hook-costs: {m}")
        })?)
    } else {
        None
    };
    let model = HooksModel::new();
    let trees = package_trees(corpus);
    let key = crate::commands::run::corpus_key(corpus)?;
    let mirror = prepare_mirror(
        &model,
        &trees,
        &key,
        &args.work_dir.join("mirrors"),
        &|_, _| {},
    )?;
    let target = args.work_dir.join("targets").join("hook-costs");
    let traces = args.work_dir.join("targets").join("hook-costs-traces");
    let mut passes = Vec::new();
    let modes = (0..args.runs)
        .map(|_| ProbeMode::Cost)
        .chain(std::iter::once(ProbeMode::Processes(traces.clone())));
    for (i, mode) in modes.enumerate() {
        eprintln!(
            "hook-costs: {}: pass {} of {} ({})",
            corpus.name,
            i + 1,
            args.runs + 1,
            if mode == ProbeMode::Cost {
                "cost"
            } else {
                "processes, under strace"
            }
        );
        for dir in [&target, &traces] {
            if dir.exists() {
                fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
            }
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let probe = Arc::new(ScriptProbe::new(mode));
        let mut model = HooksModel::new();
        model.chroot_scripts = real;
        model.base_root = base.as_ref().map(|b| b.root.clone());
        model.probe = Some(probe.clone());
        let ctx = RunCtx {
            target: target.clone(),
            mirror: mirror.dir.clone(),
            durability: Durability::Native,
            jobs: 1,
            http: None,
        };
        model.prepare(&mirror.artifacts, &ctx)?;
        model
            .install(&mirror.artifacts, &ctx)
            .with_context(|| format!("installing {} with the probe", corpus.name))?;
        let failed: Vec<String> = model
            .notes()
            .into_iter()
            .filter(|n| n.contains("skipped") || n.contains("failed in the chroot"))
            .collect();
        if !failed.is_empty() {
            bail!(
                "{}: not every script ran: {}",
                corpus.name,
                failed.join("; ")
            );
        }
        model.teardown()?;
        passes.push(probe.runs());
    }
    for dir in [&target, &traces] {
        let _ = fs::remove_dir_all(dir);
    }
    Ok(passes)
}

/// The median of `values` (upper middle for an even count: one measured value).
fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// Rows of the cost table from the passes of one corpus: medians of the cost passes,
/// counts of the strace pass, the class from the script's text.
fn rows(corpus: &Corpus, passes: &[Vec<ScriptRun>]) -> Result<Vec<ScriptCost>> {
    let (costs, processes) = passes.split_at(passes.len() - 1);
    let processes = &processes[0];
    let n = processes.len();
    if costs.iter().any(|p| p.len() != n) {
        bail!(
            "{}: the passes ran different numbers of scripts",
            corpus.name
        );
    }
    let mut out = Vec::with_capacity(n);
    for (k, counted) in processes.iter().enumerate() {
        let pick = |f: fn(&ScriptRun) -> u64| median(costs.iter().map(|p| f(&p[k])).collect());
        let text = corpus
            .package(&counted.package)
            .and_then(|p| p.scripts.get(&counted.script))
            .map(|path| fs::read_to_string(path).unwrap_or_default())
            .unwrap_or_default();
        out.push(ScriptCost {
            package: counted.package.clone(),
            script: counted.script.clone(),
            action: counted.action.clone(),
            class: classify(&text).to_string(),
            wall_us: pick(|r| r.wall_ns) / 1000,
            cpu_us: pick(|r| r.cpu_ns) / 1000,
            processes: counted.processes,
            execs: counted.execs,
            files: pick(|r| r.files),
            bytes: pick(|r| r.bytes),
        });
    }
    Ok(out)
}

fn measure(args: &HookCostsArgs) -> Result<ExitCode> {
    let names = args
        .corpus
        .clone()
        .unwrap_or_else(|| "debian:python3,debian:qemu-system-x86".into());
    let mut table: Vec<ScriptCost> = Vec::new();
    for name in names.split(',') {
        if !corpus::is_real(name) {
            bail!("hook-costs measure: {name} is not a real corpus (debian:PKG, debs:DIR)");
        }
        let corpus = crate::commands::run::open_corpus(name, &args.work_dir)?;
        let passes = probed_runs(&corpus, args, true)?;
        for row in rows(&corpus, &passes)? {
            // A package in both closures is measured once: the first closure's.
            if !table.iter().any(|r| {
                (&r.package, &r.script, &r.action) == (&row.package, &row.script, &row.action)
            }) {
                table.push(row);
            }
        }
    }
    let host = crate::host::host_facts(&args.work_dir);
    let mut text = format!(
        "# pkgbench: what real maintainer scripts cost, measured by `harness hook-costs measure --corpus {names} --runs {}`\n\
         # on {} ({} cores, kernel {}), onto the base root; wall and CPU are medians of {} passes, processes and execs from one strace pass.\n\
         # The embedded corpora's stand-ins replay these rows (workloads::corpus::script).\n{}\n",
        args.runs,
        host.cpu_model,
        host.cpus,
        host.kernel,
        args.runs,
        hook_costs::HEADER
    );
    for row in &table {
        text.push_str(&row.to_line());
        text.push('\n');
    }
    match &args.out {
        Some(out) => {
            fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "hook-costs: {} script runs written to {}",
                table.len(),
                out.display()
            );
        }
        None => print!("{text}"),
    }
    print_classes(&table, None);
    Ok(ExitCode::SUCCESS)
}

fn check(args: &HookCostsArgs) -> Result<ExitCode> {
    let name = args
        .corpus
        .clone()
        .unwrap_or_else(|| corpus::DEFAULT.to_string());
    if corpus::is_real(&name) {
        bail!("hook-costs --check: {name} is real; the stand-ins are the embedded corpora's");
    }
    let real = match &args.table {
        Some(path) => hook_costs::parse(
            &fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("{}", path.display()))?,
        None => hook_costs::table()?,
    };
    let corpus = crate::commands::run::open_corpus(&name, &args.work_dir)?;
    let passes = probed_runs(&corpus, args, false)?;
    let standins = rows(&corpus, &passes)?;
    // The stand-in's class is the real script's.
    let classed: Vec<(ScriptCost, ScriptCost)> = standins
        .into_iter()
        .filter_map(|s| {
            real.iter()
                .find(|r| (&r.package, &r.script, &r.action) == (&s.package, &s.script, &s.action))
                .map(|r| {
                    (
                        ScriptCost {
                            class: r.class.clone(),
                            ..s
                        },
                        r.clone(),
                    )
                })
        })
        .collect();
    if let Some(out) = &args.out {
        // The stand-ins' own rows, in the table's format, beside the real ones.
        let mut text = format!(
            "# stand-ins of {name}, measured by harness hook-costs --check\n{}\n",
            hook_costs::HEADER
        );
        for (s, _) in &classed {
            text.push_str(&s.to_line());
            text.push('\n');
        }
        fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    }
    print_classes(
        &classed.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
        Some(&classed.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>()),
    );
    Ok(ExitCode::SUCCESS)
}

/// Per class: runs, and the sums of wall, CPU, processes, files and bytes; with
/// `standins`, theirs beside and the ratio stand-in / real.
fn print_classes(real: &[ScriptCost], standins: Option<&[ScriptCost]>) {
    let sums = |rows: &[ScriptCost]| {
        let mut by: BTreeMap<String, [u64; 6]> = BTreeMap::new();
        for r in rows {
            let s = by.entry(r.class.clone()).or_default();
            for (slot, v) in
                s.iter_mut()
                    .zip([1, r.wall_us, r.cpu_us, r.processes, r.files, r.bytes])
            {
                *slot += v;
            }
        }
        by
    };
    let real_sums = sums(real);
    match standins {
        None => {
            println!(
                "{:<20} {:>5} {:>10} {:>10} {:>9} {:>7} {:>11}",
                "class", "runs", "wall ms", "cpu ms", "processes", "files", "bytes"
            );
            for (class, s) in &real_sums {
                println!(
                    "{class:<20} {:>5} {:>10.1} {:>10.1} {:>9} {:>7} {:>11}",
                    s[0],
                    s[1] as f64 / 1000.0,
                    s[2] as f64 / 1000.0,
                    s[3],
                    s[4],
                    s[5]
                );
            }
        }
        Some(standins) => {
            let stand_sums = sums(standins);
            println!(
                "{:<20} {:>5} {:>21} {:>21} {:>13} {:>11} {:>17}",
                "class (stand-in/real)", "runs", "wall ms", "cpu ms", "processes", "files", "bytes"
            );
            for (class, r) in &real_sums {
                let s = stand_sums.get(class).copied().unwrap_or_default();
                let ratio = |a: u64, b: u64| {
                    if b == 0 {
                        "-".to_string()
                    } else {
                        format!("{:.2}", a as f64 / b as f64)
                    }
                };
                println!(
                    "{class:<20} {:>5} {:>8.1}/{:<8.1}{:>4} {:>8.1}/{:<8.1}{:>4} {:>5}/{:<5}{:>3} {:>4}/{:<4}{:>3} {:>8}/{:<8}",
                    r[0],
                    s[1] as f64 / 1000.0,
                    r[1] as f64 / 1000.0,
                    ratio(s[1], r[1]),
                    s[2] as f64 / 1000.0,
                    r[2] as f64 / 1000.0,
                    ratio(s[2], r[2]),
                    s[3],
                    r[3],
                    "",
                    s[4],
                    r[4],
                    "",
                    s[5],
                    r[5]
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_a_measured_value() {
        assert_eq!(median(vec![5, 1, 3]), 3);
        assert_eq!(median(vec![4, 2]), 4);
        assert_eq!(median(Vec::new()), 0);
    }
}
