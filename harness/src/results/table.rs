//! The table printed at the end of a run: per model and workload the median wall time
//! with its range, for install and upgrade the median time to a durable state (the
//! model's time plus the flush of what it left dirty), and the phases. A workload timed
//! without dropped caches where it should start cold is marked `warm`.

use super::{RunResults, Status};
use std::fmt::Write as _;

fn ms(ns: f64) -> String {
    format!("{:.1}", ns / 1e6)
}

pub fn render_table(results: &RunResults) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:<10} {:>11} {:>21} {:>11}  detail",
        "model", "workload", "median ms", "min..max ms", "durable ms"
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
            let mut detail: Vec<String> = Vec::new();
            if w.caches_dropped == Some(false) && workload != "warm-read" {
                detail.push("warm: caches could not be dropped".into());
            }
            detail.extend(w.metrics.iter().filter_map(|(k, s)| {
                let phase = k.strip_prefix("phase_")?.strip_suffix("_ns")?;
                Some(format!("{phase} {}", ms(s.median)))
            }));
            let durable = w
                .metrics
                .get("durable_wall_ns")
                .map_or_else(|| "-".to_string(), |d| ms(d.median));
            let _ = writeln!(
                out,
                "{:<14} {:<10} {:>11} {:>21} {:>11}  {}",
                model.name,
                workload,
                ms(wall.median),
                format!("{}..{}", ms(wall.min), ms(wall.max)),
                durable,
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
