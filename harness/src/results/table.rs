//! The table printed at the end of a run: per model and workload the median wall time
//! with its range, and the install phases.

use super::{RunResults, Status};
use std::fmt::Write as _;

fn ms(ns: f64) -> String {
    format!("{:.1}", ns / 1e6)
}

pub fn render_table(results: &RunResults) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:<10} {:>11} {:>21}  detail",
        "model", "workload", "median ms", "min..max ms"
    );
    for model in &results.models {
        if model.status != Status::Ok {
            let _ = writeln!(
                out,
                "{:<14} {:<10} {}: {}",
                model.name,
                "-",
                status_word(model.status),
                model.reason.as_deref().unwrap_or("")
            );
            continue;
        }
        for (workload, w) in &model.workloads {
            if let Some(reason) = &w.reason {
                let _ = writeln!(out, "{:<14} {:<10} refused: {reason}", model.name, workload);
                continue;
            }
            let Some(wall) = w.metrics.get("wall_ns") else {
                continue;
            };
            let detail: Vec<String> = w
                .metrics
                .iter()
                .filter_map(|(k, s)| {
                    let phase = k.strip_prefix("phase_")?.strip_suffix("_ns")?;
                    Some(format!("{phase} {}", ms(s.median)))
                })
                .collect();
            let _ = writeln!(
                out,
                "{:<14} {:<10} {:>11} {:>21}  {}",
                model.name,
                workload,
                ms(wall.median),
                format!("{}..{}", ms(wall.min), ms(wall.max)),
                detail.join(", ")
            );
        }
    }
    out
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Skipped => "skipped",
        Status::Failed => "failed",
        Status::NotAvailable => "not available",
    }
}
