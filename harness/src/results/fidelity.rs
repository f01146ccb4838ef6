//! The fidelity table: each model against the reference run of the real tool it stands
//! for, as the ratio of their medians (model / reference; below 1 the model is faster).

use super::{ModelResult, RunResults, Status};
use serde::Serialize;
use std::fmt::Write as _;

/// (model, reference) pairs.
pub const PAIRS: [(&str, &str); 3] = [
    ("hooks", "ref-dpkg"),
    ("nar", "ref-nix"),
    ("fuse", "ref-squashfuse"),
];
/// Workloads compared, by their `wall_ns` medians.
pub const WORKLOADS: [&str; 5] = ["install", "cold-read", "warm-read", "many-file", "upgrade"];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FidelityRow {
    pub model: String,
    pub reference: String,
    pub workload: String,
    /// Median wall time of the model divided by the reference's.
    pub ratio: f64,
}

fn median(m: &ModelResult, workload: &str) -> Option<f64> {
    let w = m.workloads.get(workload)?;
    if w.reason.is_some() {
        return None;
    }
    w.metrics.get("wall_ns").map(|s| s.median)
}

/// Every ratio for the pairs where both ran with status ok and both have the workload.
pub fn fidelity(models: &[ModelResult]) -> Vec<FidelityRow> {
    let ok = |name: &str| {
        models
            .iter()
            .find(|m| m.name == name && m.status == Status::Ok)
    };
    let mut rows = Vec::new();
    for (model, reference) in PAIRS {
        let (Some(m), Some(r)) = (ok(model), ok(reference)) else {
            continue;
        };
        for workload in WORKLOADS {
            if let (Some(a), Some(b)) = (median(m, workload), median(r, workload)) {
                if b > 0.0 {
                    rows.push(FidelityRow {
                        model: model.into(),
                        reference: reference.into(),
                        workload: workload.into(),
                        ratio: a / b,
                    });
                }
            }
        }
    }
    rows
}

/// The table printed after the main one; empty when no pair ran.
pub fn render_fidelity(results: &RunResults) -> String {
    let mut out = String::new();
    if results.fidelity.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "\nfidelity (median model / median reference; < 1: the model is faster)"
    );
    let _ = writeln!(
        out,
        "{:<8} {:<15} {:<10} {:>8}",
        "model", "reference", "workload", "ratio"
    );
    for row in &results.fidelity {
        let _ = writeln!(
            out,
            "{:<8} {:<15} {:<10} {:>8.2}",
            row.model, row.reference, row.workload, row.ratio
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::WorkloadResult;
    use crate::stats::Summary;

    fn model(name: &str, status: Status, walls: &[(&str, &[f64])]) -> ModelResult {
        let mut m = ModelResult::new(name, "", status, None);
        for (w, samples) in walls {
            let mut r = WorkloadResult::default();
            r.metrics
                .insert("wall_ns".into(), Summary::of(samples).unwrap());
            m.workloads.insert((*w).into(), r);
        }
        m
    }

    #[test]
    fn ratios_of_medians_for_pairs_that_both_ran() {
        let models = vec![
            model(
                "hooks",
                Status::Ok,
                &[("install", &[10.0, 30.0, 20.0]), ("cold-read", &[4.0])],
            ),
            model("nar", Status::Ok, &[("install", &[5.0])]),
            model("fuse", Status::Ok, &[("install", &[5.0])]),
            model("ref-squashfuse", Status::Failed, &[("install", &[5.0])]),
            model(
                "ref-dpkg",
                Status::Ok,
                &[("install", &[40.0, 40.0, 50.0]), ("many-file", &[1.0])],
            ),
        ];
        let rows = fidelity(&models);
        assert_eq!(
            rows,
            vec![FidelityRow {
                model: "hooks".into(),
                reference: "ref-dpkg".into(),
                workload: "install".into(),
                ratio: 0.5,
            }]
        );
    }

    #[test]
    fn refused_workloads_give_no_ratio() {
        let mut a = model(
            "nar",
            Status::Ok,
            &[("install", &[2.0]), ("cold-read", &[2.0])],
        );
        let b = model(
            "ref-nix",
            Status::Ok,
            &[("install", &[4.0]), ("cold-read", &[1.0])],
        );
        a.workloads.get_mut("cold-read").unwrap().reason = Some("no privilege".into());
        let rows = fidelity(&[a, b]);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].workload, "install");
        assert!((rows[0].ratio - 0.5).abs() < 1e-12);
    }
}
