//! The table printed at the end of a run: per model and workload the median wall time
//! with the distribution-free interval of the median and the level it reaches with the
//! run's sample count (see `stats`), for install and upgrade the median time to a durable state (the
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
        "{:<14} {:<10} {:>11} {:>28} {:>11}  detail",
        "model", "workload", "median ms", "interval of median ms", "durable ms"
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
                "{:<14} {:<10} {:>11} {:>28} {:>11}  {}",
                model.name,
                workload,
                ms(wall.median),
                interval(wall),
                durable,
                detail.join(", ")
            );
        }
    }
    out
}

/// `low..high @level`; a single sample has no interval.
fn interval(s: &crate::stats::Summary) -> String {
    if s.ci_level <= 0.0 {
        return "- (one sample)".into();
    }
    format!(
        "{}..{} @{:.1}%",
        ms(s.ci_low),
        ms(s.ci_high),
        s.ci_level * 100.0
    )
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Skipped => "skipped",
        Status::Failed => "failed",
        Status::NotAvailable => "not available",
    }
}

#[cfg(test)]
mod tests {
    use super::interval;
    use crate::stats::Summary;

    #[test]
    fn the_interval_column_states_its_level_and_one_sample_has_none() {
        let ten: Vec<f64> = (1..=10).map(|i| i as f64 * 1e6).collect();
        // Ten samples: [x(2), x(9)] at 1 - 2 * 11/1024.
        assert_eq!(interval(&Summary::of(&ten).unwrap()), "2.0..9.0 @97.9%");
        let three = [3e6, 1e6, 2e6];
        assert_eq!(interval(&Summary::of(&three).unwrap()), "1.0..3.0 @75.0%");
        assert_eq!(interval(&Summary::of(&[5e6]).unwrap()), "- (one sample)");
    }
}
