//! The table a run prints by default: a matrix with a row per model and a column per
//! workload in lifecycle order, so "how do the models compare on each workload?" reads
//! off one screen. Two blocks: the medians with the half-width of the median's interval
//! (relative, its level in the heading), then every model's median divided by a baseline
//! model's. References (`ModelInfo::reference_for`) get their own block under the models,
//! in the order of the models they stand beside. The long table (`table`) stays
//! available with `--table long` and in `summary.md`.

use super::RunResults;
use serde_json::Value;
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

/// One cell: what a model measured for a column.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// The model does not have this workload.
    Missing,
    /// The model refused the workload (the reason is in results.json).
    Refused,
    Value {
        median: f64,
        low: f64,
        high: f64,
        level: f64,
        /// Timed warm where it should start cold.
        warm: bool,
    },
}

impl Cell {
    fn median(&self) -> Option<f64> {
        match self {
            Cell::Value { median, .. } => Some(*median),
            _ => None,
        }
    }

    /// `767 ±9%`: the median in ms and half the interval's width relative to it; `*`
    /// marks warm; `refused`; `-` for a workload the model does not have.
    pub fn text(&self) -> String {
        let Cell::Value {
            median,
            low,
            high,
            level,
            warm,
        } = self
        else {
            return if *self == Cell::Refused {
                "refused"
            } else {
                "-"
            }
            .into();
        };
        let warm = if *warm { "*" } else { "" };
        let ms = median / 1e6;
        let value = if ms >= 100.0 {
            format!("{ms:.0}")
        } else {
            format!("{ms:.1}")
        };
        if *level <= 0.0 || *median <= 0.0 {
            return format!("{value}{warm}");
        }
        let spread = (high - low) / 2.0 / median * 100.0;
        format!("{value} ±{spread:.0}%{warm}")
    }
}

/// One model's row.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    /// `ok`, `skipped`, `failed`, `not_available`.
    pub status: String,
    pub reason: Option<String>,
    pub cells: Vec<Cell>,
}

/// The matrix of one results file (see the module doc).
#[derive(Debug, Clone)]
pub struct Matrix {
    /// The headings of the columns some model measured.
    pub columns: Vec<&'static str>,
    pub models: Vec<Row>,
    pub references: Vec<Row>,
    /// The lowest level of the intervals shown.
    pub level: f64,
    pub any_warm: bool,
    /// The model ratios divide by; `None` when no model ran.
    pub baseline: Option<String>,
}

impl Matrix {
    /// Reads the matrix from a results file's JSON (schema 2), with ratios to `baseline`
    /// (default: the first model that ran); an unknown baseline is an error naming the
    /// models that ran.
    pub fn from_json(results: &Value, baseline: Option<&str>) -> Result<Matrix, String> {
        let empty = Vec::new();
        let all = results["models"].as_array().unwrap_or(&empty);
        let columns: Vec<(&'static str, &'static str, &'static str)> = COLUMNS
            .into_iter()
            .filter(|(_, w, metric)| {
                all.iter().any(|m| {
                    m["workloads"][*w]["reason"].is_null()
                        && m["workloads"][*w]["metrics"][*metric].is_object()
                })
            })
            .collect();
        let mut level: f64 = 1.0;
        let mut any_warm = false;
        let mut rows = Vec::new();
        for m in all {
            let name = m["name"].as_str().unwrap_or("?").to_string();
            let cells = columns
                .iter()
                .map(|(_, workload, metric)| {
                    let w = &m["workloads"][*workload];
                    if !w.is_object() {
                        return Cell::Missing;
                    }
                    if !w["reason"].is_null() {
                        return Cell::Refused;
                    }
                    let s = &w["metrics"][*metric];
                    let Some(median) = s["median"].as_f64() else {
                        return Cell::Missing;
                    };
                    let num = |k: &str| s[k].as_f64().unwrap_or(0.0);
                    let warm =
                        w["caches_dropped"] == Value::Bool(false) && *workload != "warm-read";
                    level = level.min(num("ci_level"));
                    any_warm |= warm;
                    Cell::Value {
                        median,
                        low: num("ci_low"),
                        high: num("ci_high"),
                        level: num("ci_level"),
                        warm,
                    }
                })
                .collect();
            rows.push(Row {
                name,
                status: m["status"].as_str().unwrap_or("?").to_string(),
                reason: m["reason"].as_str().map(str::to_string),
                cells,
            });
        }
        let ran: Vec<&str> = rows
            .iter()
            .filter(|r| r.status == "ok")
            .map(|r| r.name.as_str())
            .collect();
        let baseline = match baseline {
            Some(name) if ran.contains(&name) => Some(name.to_string()),
            Some(name) => {
                return Err(format!(
                    "--baseline {name}: no such model ran (ran: {})",
                    ran.join(", ")
                ))
            }
            None => ran.first().map(|s| s.to_string()),
        };
        // Models first (in run order), then references under them in the order of the
        // models they stand beside.
        let reference_for =
            |name: &str| models::catalog::find(name).and_then(|info| info.reference_for);
        let (mut references, models): (Vec<Row>, Vec<Row>) = rows
            .into_iter()
            .partition(|r| reference_for(&r.name).is_some());
        let rank = |r: &Row| {
            let beside = reference_for(&r.name).unwrap_or("");
            models
                .iter()
                .position(|x| x.name == beside)
                .unwrap_or(usize::MAX)
        };
        references.sort_by_key(|r| rank(r));
        Ok(Matrix {
            columns: columns.iter().map(|c| c.0).collect(),
            models,
            references,
            level,
            any_warm,
            baseline,
        })
    }

    fn baseline_row(&self) -> Option<&Row> {
        let name = self.baseline.as_deref()?;
        self.models
            .iter()
            .chain(&self.references)
            .find(|r| r.name == name)
    }

    /// `row`'s median over the baseline's in column `i`, if both measured it.
    pub fn ratio(&self, row: &Row, i: usize) -> Option<f64> {
        let base = self.baseline_row()?.cells.get(i)?.median()?;
        let own = row.cells.get(i)?.median()?;
        (base > 0.0).then(|| own / base)
    }

    /// The heading of the medians block.
    pub fn heading(&self) -> String {
        format!(
            "median ms ± half the interval of the median ({:.1}% level{})",
            self.level * 100.0,
            if self.any_warm {
                "; * timed warm: caches could not be dropped"
            } else {
                ""
            }
        )
    }

    /// The heading of the ratios block.
    pub fn ratio_heading(&self) -> Option<String> {
        let b = self.baseline.as_deref()?;
        Some(format!(
            "ratio to {b} (median / {b}'s median; < 1: faster than {b})"
        ))
    }

    /// The terminal's text: the medians block, then the ratios block.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.heading());
        self.block(&mut out, &|row, i| row.cells[i].text());
        if let Some(heading) = self.ratio_heading() {
            let _ = writeln!(out, "\n{heading}");
            self.block(&mut out, &|row, i| {
                self.ratio(row, i)
                    .map_or_else(|| "-".to_string(), |r| format!("{r:.2}x"))
            });
        }
        out
    }

    fn block(&self, out: &mut String, cell: &dyn Fn(&Row, usize) -> String) {
        let _ = write!(out, "{:<NAME$}", "model");
        for heading in &self.columns {
            let _ = write!(out, " {heading:>CELL$}");
        }
        out.push('\n');
        let line = |out: &mut String, row: &Row| {
            if row.status != "ok" {
                let _ = writeln!(
                    out,
                    "{:<NAME$} {}: {}",
                    row.name,
                    row.status.replace('_', " "),
                    row.reason.as_deref().unwrap_or("")
                );
                return;
            }
            let _ = write!(out, "{:<NAME$}", row.name);
            for i in 0..self.columns.len() {
                let _ = write!(out, " {:>CELL$}", cell(row, i));
            }
            out.push('\n');
        };
        for row in &self.models {
            line(out, row);
        }
        if !self.references.is_empty() {
            let _ = writeln!(out, "references");
            for row in &self.references {
                line(out, row);
            }
        }
    }
}

/// The matrix of `results` as the terminal shows it (see `Matrix::from_json`).
pub fn render_matrix(results: &RunResults, baseline: Option<&str>) -> Result<String, String> {
    let json = serde_json::to_value(results).map_err(|e| format!("results as JSON: {e}"))?;
    Ok(Matrix::from_json(&json, baseline)?.text())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{ModelResult, Status, WorkloadResult};
    use crate::stats::Summary;

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
