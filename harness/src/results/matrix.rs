//! The table a run prints by default: a matrix with a row per model and a column per
//! workload in lifecycle order, so "how do the models compare on each workload?" reads
//! off one screen. Two blocks: the medians with the half-width of the median's interval
//! (relative, its level in the heading), then every model's median divided by a baseline
//! model's. References (`ModelInfo::reference_for`) get their own block under the models,
//! in the order of the models they stand beside. The long table (`table`) stays
//! available with `--table long` and in `summary.md`.

use super::{ModelResult, RunResults, Status};
use crate::stats::Summary;
use std::fmt::Write as _;

/// The columns, in the order of a model's lifecycle: (heading, workload, metric).
pub const COLUMNS: [(&str, &str, &str); 7] = [
    ("install", "install", "wall_ns"),
    ("durable", "install", "durable_wall_ns"),
    ("cold-read", "cold-read", "wall_ns"),
    ("warm-read", "warm-read", "wall_ns"),
    ("many-file", "many-file", "wall_ns"),
    ("upgrade", "upgrade", "wall_ns"),
    ("exec", "exec", "wall_ns"),
];

/// Width of a model's name column and of each workload's.
const NAME: usize = 15;
const CELL: usize = 15;

fn summary<'a>(model: &'a ModelResult, workload: &str, metric: &str) -> Option<&'a Summary> {
    let w = model.workloads.get(workload)?;
    if w.reason.is_some() {
        return None;
    }
    w.metrics.get(metric)
}

/// Models first (in run order), then references under them in the order of the models
/// they stand beside.
fn ordered(results: &RunResults) -> (Vec<&ModelResult>, Vec<&ModelResult>) {
    let reference_for =
        |m: &ModelResult| models::catalog::find(&m.name).and_then(|info| info.reference_for);
    let models: Vec<&ModelResult> = results
        .models
        .iter()
        .filter(|m| reference_for(m).is_none())
        .collect();
    let mut references: Vec<&ModelResult> = results
        .models
        .iter()
        .filter(|m| reference_for(m).is_some())
        .collect();
    let rank = |m: &ModelResult| {
        let beside = reference_for(m).unwrap_or("");
        models
            .iter()
            .position(|x| x.name == beside)
            .unwrap_or(usize::MAX)
    };
    references.sort_by_key(|m| rank(m));
    (models, references)
}

/// The columns some model measured.
fn columns(results: &RunResults) -> Vec<(&'static str, &'static str, &'static str)> {
    COLUMNS
        .into_iter()
        .filter(|(_, w, metric)| {
            results
                .models
                .iter()
                .any(|m| summary(m, w, metric).is_some())
        })
        .collect()
}

fn header(out: &mut String, first: &str, columns: &[(&str, &str, &str)]) {
    let _ = write!(out, "{first:<NAME$}");
    for (heading, _, _) in columns {
        let _ = write!(out, " {heading:>CELL$}");
    }
    out.push('\n');
}

/// One row: the model's name and a cell per column, or why it has no numbers.
fn row(
    out: &mut String,
    model: &ModelResult,
    columns: &[(&str, &str, &str)],
    cell: &dyn Fn(&ModelResult, &str, &str, &str) -> String,
) {
    if model.status != Status::Ok {
        let word = match model.status {
            Status::Skipped => "skipped",
            Status::Failed => "failed",
            Status::NotAvailable => "not available",
            Status::Ok => "ok",
        };
        let _ = writeln!(
            out,
            "{:<NAME$} {word}: {}",
            model.name,
            model.reason.as_deref().unwrap_or("")
        );
        return;
    }
    let _ = write!(out, "{:<NAME$}", model.name);
    for (_, workload, metric) in columns {
        let _ = write!(out, " {:>CELL$}", cell(model, workload, metric, ""));
    }
    out.push('\n');
}

/// `767.3 ±9%`: the median in ms and half the interval's width relative to it; `*`
/// marks a sample timed warm where it should start cold; `refused` a workload the model
/// refused; `-` one it does not have.
fn median_cell(model: &ModelResult, workload: &str, metric: &str, _: &str) -> String {
    let Some(w) = model.workloads.get(workload) else {
        return "-".into();
    };
    if w.reason.is_some() {
        return "refused".into();
    }
    let Some(s) = w.metrics.get(metric) else {
        return "-".into();
    };
    let warm = if w.caches_dropped == Some(false) && workload != "warm-read" {
        "*"
    } else {
        ""
    };
    let ms = s.median / 1e6;
    let value = if ms >= 100.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.1}")
    };
    if s.ci_level <= 0.0 || s.median <= 0.0 {
        return format!("{value}{warm}");
    }
    let spread = (s.ci_high - s.ci_low) / 2.0 / s.median * 100.0;
    format!("{value} ±{spread:.0}%{warm}")
}

/// The lowest level of the intervals shown, for the heading.
fn lowest_level(results: &RunResults, columns: &[(&str, &str, &str)]) -> f64 {
    results
        .models
        .iter()
        .flat_map(|m| columns.iter().filter_map(move |(_, w, k)| summary(m, w, k)))
        .map(|s| s.ci_level)
        .fold(1.0, f64::min)
}

/// The matrix of `results`, with ratios to `baseline` (default: the first model that
/// ran). An unknown baseline is an error naming the models that ran.
pub fn render_matrix(results: &RunResults, baseline: Option<&str>) -> Result<String, String> {
    let columns = columns(results);
    let ran: Vec<&str> = results
        .models
        .iter()
        .filter(|m| m.status == Status::Ok)
        .map(|m| m.name.as_str())
        .collect();
    let base_name = match baseline {
        Some(name) if ran.contains(&name) => Some(name),
        Some(name) => {
            return Err(format!(
                "--baseline {name}: no such model ran (ran: {})",
                ran.join(", ")
            ))
        }
        None => ran.first().copied(),
    };
    let (models, references) = ordered(results);
    let mut out = String::new();
    let level = lowest_level(results, &columns);
    let _ = writeln!(
        out,
        "median ms ± half the interval of the median ({:.1}% level{})",
        level * 100.0,
        if results.models.iter().any(|m| {
            m.workloads
                .iter()
                .any(|(w, r)| r.caches_dropped == Some(false) && w != "warm-read")
        }) {
            "; * timed warm: caches could not be dropped"
        } else {
            ""
        }
    );
    let blocks =
        |out: &mut String, first: &str, cell: &dyn Fn(&ModelResult, &str, &str, &str) -> String| {
            header(out, first, &columns);
            for m in &models {
                row(out, m, &columns, cell);
            }
            if !references.is_empty() {
                let _ = writeln!(out, "references");
                for m in &references {
                    row(out, m, &columns, cell);
                }
            }
        };
    blocks(&mut out, "model", &median_cell);
    let Some(base_name) = base_name else {
        return Ok(out);
    };
    let base = results.models.iter().find(|m| m.name == base_name);
    let ratio_cell = |model: &ModelResult, workload: &str, metric: &str, _: &str| {
        let (Some(s), Some(b)) = (
            summary(model, workload, metric),
            base.and_then(|b| summary(b, workload, metric)),
        ) else {
            return "-".to_string();
        };
        if b.median <= 0.0 {
            return "-".to_string();
        }
        format!("{:.2}x", s.median / b.median)
    };
    let _ = writeln!(
        out,
        "\nratio to {base_name} (median / {base_name}'s median; < 1: faster than {base_name})"
    );
    blocks(&mut out, "model", &ratio_cell);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::WorkloadResult;

    fn model(name: &str, install_ms: &[f64], read_ms: Option<&[f64]>) -> ModelResult {
        let mut m = ModelResult::new(name, "x", Status::Ok, None);
        let ms = |v: &[f64]| Summary::of(&v.iter().map(|x| x * 1e6).collect::<Vec<_>>()).unwrap();
        let mut install = WorkloadResult::default();
        install.metrics.insert("wall_ns".into(), ms(install_ms));
        m.workloads.insert("install".into(), install);
        if let Some(read) = read_ms {
            let mut w = WorkloadResult::default();
            w.metrics.insert("wall_ns".into(), ms(read));
            m.workloads.insert("cold-read".into(), w);
        }
        m
    }

    fn results(models: Vec<ModelResult>) -> RunResults {
        crate::mock::results_with(models)
    }

    #[test]
    fn rows_are_models_then_references_beside_them_and_ratios_use_the_baseline() {
        let r = results(vec![
            model("hooks", &[100.0, 200.0, 300.0], Some(&[10.0, 10.0, 10.0])),
            model("ref-dpkg", &[400.0, 400.0, 400.0], None),
            model("nar", &[50.0, 50.0, 50.0], Some(&[20.0, 20.0, 20.0])),
        ]);
        let text = render_matrix(&r, None).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // Lifecycle order of columns; only those measured.
        assert!(lines[1].starts_with("model"), "{text}");
        assert!(
            lines[1].find("install") < lines[1].find("cold-read"),
            "{text}"
        );
        assert!(!lines[1].contains("upgrade"), "{text}");
        // Models in run order, then the reference block.
        let names: Vec<&str> = lines
            .iter()
            .map(|l| l.split_whitespace().next().unwrap_or(""))
            .collect();
        let at = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(at("hooks") < at("nar") && at("nar") < at("references"));
        assert!(at("references") < at("ref-dpkg"));
        // hooks install: median 200 ms, 3 samples give [min, max] at 75%: ±50%.
        assert!(text.contains("200 ±50%"), "{text}");
        assert!(text.contains("(75.0% level)"), "{text}");
        // Ratios to the first model: nar 50/200, ref-dpkg 400/200, nar cold-read 2.
        assert!(text.contains("ratio to hooks"), "{text}");
        let ratios = &text[text.find("ratio to hooks").unwrap()..];
        assert!(
            ratios.contains("0.25x") && ratios.contains("2.00x"),
            "{text}"
        );
        // Another baseline, and an unknown one.
        let by_nar = render_matrix(&r, Some("nar")).unwrap();
        assert!(
            by_nar.contains("ratio to nar") && by_nar.contains("4.00x"),
            "{by_nar}"
        );
        let err = render_matrix(&r, Some("composefs")).unwrap_err();
        assert_eq!(
            err,
            "--baseline composefs: no such model ran (ran: hooks, ref-dpkg, nar)"
        );
    }

    #[test]
    fn a_model_without_numbers_says_why_and_a_refused_workload_says_so() {
        let mut refused = model("fuse", &[1.0, 1.0, 1.0], None);
        let w = WorkloadResult {
            reason: Some("no exec".into()),
            ..Default::default()
        };
        refused.workloads.insert("exec".into(), w);
        let mut hooks = model("hooks", &[1.0, 1.0, 1.0], None);
        let mut exec = WorkloadResult::default();
        exec.metrics
            .insert("wall_ns".into(), Summary::of(&[2e6, 2e6, 2e6]).unwrap());
        hooks.workloads.insert("exec".into(), exec);
        let r = results(vec![
            hooks,
            refused,
            ModelResult::new(
                "overlay",
                "x",
                Status::Skipped,
                Some("needs loop devices".into()),
            ),
        ]);
        let text = render_matrix(&r, None).unwrap();
        assert!(
            text.contains("overlay         skipped: needs loop devices"),
            "{text}"
        );
        let fuse = text.lines().find(|l| l.starts_with("fuse")).unwrap();
        assert!(fuse.ends_with("refused"), "{text}");
        assert!(
            !text.contains("cold-read"),
            "a column nobody measured: {text}"
        );
    }
}
