//! The fidelity table: each model against the reference run of the real tool doing the
//! same work, and the readers (FUSE, passthrough, composefs) against each other, as ratios of medians (model /
//! reference; below 1 the model is faster).
//!
//! A ratio is printed only for the same work. The read workloads are the same walk and
//! the same reads for every model, so their whole times compare. An install or upgrade
//! compares as a whole only where both sides do all of it (fetch, verify, write,
//! configure or register, and the view), and then also by the phases both do, named on
//! each side: `hooks`'s `fetch`+`verify` against apt's `acquire`, its unpack, scripts,
//! database and triggers against `dpkg`; `nar`'s `fetch`+`restore`+`verify`+`register`
//! against `nix copy`'s `substitute`, and `profile` against `profile`. Whole install and
//! upgrade rows carry the ratio of the times to a durable state too.
//!
//! `ref-squashfuse` is another design than distri (one FUSE mount per image under an
//! overlay), so it is no fidelity pair of `fuse`: `fuse` is compared with it, and with
//! `overlay` (the kernel's squashfs on the same images), as a reader only.

use super::{ModelResult, RunResults, Status};
use crate::stats::median;
use serde::Serialize;
use std::fmt::Write as _;

pub use models::catalog::{Pair, PairKind, PhaseGroup};

const READ_WORKLOADS: [&str; 3] = ["cold-read", "warm-read", "many-file"];
const WRITE_WORKLOADS: [&str; 2] = ["install", "upgrade"];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FidelityRow {
    pub model: String,
    pub reference: String,
    pub kind: PairKind,
    pub workload: String,
    /// The model's phases compared, or empty for the whole workload.
    pub model_phases: Vec<String>,
    /// The reference's phases compared, or empty for the whole workload.
    pub reference_phases: Vec<String>,
    /// Median of the model's time (`wall_ns`, or the phases' sum per run) over the
    /// reference's.
    pub ratio: f64,
    /// The same for `durable_wall_ns`, for whole installs and upgrades.
    pub durable_ratio: Option<f64>,
}

/// The samples of `metric` of `workload`, when it ran.
fn samples<'a>(m: &'a ModelResult, workload: &str, metric: &str) -> Option<&'a [f64]> {
    let w = m.workloads.get(workload)?;
    if w.reason.is_some() {
        return None;
    }
    w.metrics.get(metric).map(|s| s.samples.as_slice())
}

/// Per run, the sum of the `phases` the workload has; None when it has none of them.
fn phase_sums(m: &ModelResult, workload: &str, phases: &[&str]) -> Option<Vec<f64>> {
    let present: Vec<&[f64]> = phases
        .iter()
        .filter_map(|p| samples(m, workload, &format!("phase_{p}_ns")))
        .collect();
    let runs = present.iter().map(|s| s.len()).min()?;
    Some(
        (0..runs)
            .map(|i| present.iter().map(|s| s[i]).sum())
            .collect(),
    )
}

fn ratio(a: &[f64], b: &[f64]) -> Option<f64> {
    let (a, b) = (median(a)?, median(b)?);
    (b > 0.0).then_some(a / b)
}

/// Every comparison of same work for the pairs where both ran with status ok.
pub fn fidelity(models: &[ModelResult]) -> Vec<FidelityRow> {
    let ok = |name: &str| {
        models
            .iter()
            .find(|m| m.name == name && m.status == Status::Ok)
    };
    let mut rows = Vec::new();
    // The pairs as the models describe them, in catalog order.
    for (model, pair) in models::catalog::pairs() {
        let (Some(m), Some(r)) = (ok(model), ok(pair.reference)) else {
            continue;
        };
        let row = |workload: &str, mp: &[&str], rp: &[&str], ratio, durable_ratio| FidelityRow {
            model: model.into(),
            reference: pair.reference.into(),
            kind: pair.kind,
            workload: workload.into(),
            model_phases: mp.iter().map(|s| s.to_string()).collect(),
            reference_phases: rp.iter().map(|s| s.to_string()).collect(),
            ratio,
            durable_ratio,
        };
        let writes: &[&str] = match pair.kind {
            PairKind::Fidelity => &WRITE_WORKLOADS,
            PairKind::Readers => &[],
        };
        for workload in writes.iter().chain(READ_WORKLOADS.iter()) {
            let (Some(a), Some(b)) = (
                samples(m, workload, "wall_ns"),
                samples(r, workload, "wall_ns"),
            ) else {
                continue;
            };
            if let Some(whole) = ratio(a, b) {
                let durable = match (
                    samples(m, workload, "durable_wall_ns"),
                    samples(r, workload, "durable_wall_ns"),
                ) {
                    (Some(a), Some(b)) => ratio(a, b),
                    _ => None,
                };
                rows.push(row(workload, &[], &[], whole, durable));
            }
            if !WRITE_WORKLOADS.contains(workload) {
                continue;
            }
            for group in pair.phases {
                let (Some(a), Some(b)) = (
                    phase_sums(m, workload, group.model),
                    phase_sums(r, workload, group.reference),
                ) else {
                    continue;
                };
                if let Some(x) = ratio(&a, &b) {
                    rows.push(row(workload, group.model, group.reference, x, None));
                }
            }
        }
    }
    rows
}

/// The phases a row compares, as printed: "whole" or `a+b vs c`.
fn compared(row: &FidelityRow) -> String {
    if row.model_phases.is_empty() {
        "whole".to_string()
    } else {
        format!(
            "{} vs {}",
            row.model_phases.join("+"),
            row.reference_phases.join("+")
        )
    }
}

/// The table printed after the main one; empty when no pair ran.
pub fn render_fidelity(results: &RunResults) -> String {
    let mut out = String::new();
    for (kind, title) in [
        (
            PairKind::Fidelity,
            "fidelity: each model against the real tool doing the same work (median model / median reference; < 1: the model is faster)",
        ),
        (
            PairKind::Readers,
            "readers of the same tree (median model / median other; < 1: the model reads faster)",
        ),
    ] {
        let rows: Vec<&FidelityRow> = results.fidelity.iter().filter(|r| r.kind == kind).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title}");
        let _ = writeln!(
            out,
            "{:<6} {:<15} {:<10} {:<50} {:>7} {:>8}",
            "model", "reference", "workload", "compared", "ratio", "durable"
        );
        for row in rows {
            let _ = writeln!(
                out,
                "{:<6} {:<15} {:<10} {:<50} {:>7.2} {:>8}",
                row.model,
                row.reference,
                row.workload,
                compared(row),
                row.ratio,
                row.durable_ratio
                    .map_or_else(|| "-".to_string(), |d| format!("{d:.2}"))
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Summary;

    fn model(name: &str, status: Status, metrics: &[(&str, &str, &[f64])]) -> ModelResult {
        let mut m = ModelResult::new(name, "", status, None);
        for (w, metric, samples) in metrics {
            m.workloads
                .entry((*w).into())
                .or_default()
                .metrics
                .insert((*metric).into(), Summary::of(samples).unwrap());
        }
        m
    }

    #[test]
    fn whole_and_phase_ratios_for_pairs_that_both_ran() {
        let models = vec![
            model(
                "hooks",
                Status::Ok,
                &[
                    ("install", "wall_ns", &[10.0, 30.0, 20.0]),
                    ("install", "durable_wall_ns", &[12.0, 32.0, 22.0]),
                    ("install", "phase_fetch_ns", &[1.0, 1.0, 1.0]),
                    ("install", "phase_verify_ns", &[1.0, 1.0, 1.0]),
                    ("install", "phase_unpack_ns", &[6.0, 6.0, 6.0]),
                    ("cold-read", "wall_ns", &[4.0]),
                ],
            ),
            model("fuse", Status::Ok, &[("install", "wall_ns", &[5.0])]),
            model(
                "ref-squashfuse",
                Status::Failed,
                &[("install", "wall_ns", &[5.0])],
            ),
            model(
                "ref-dpkg",
                Status::Ok,
                &[
                    ("install", "wall_ns", &[40.0, 40.0, 50.0]),
                    ("install", "durable_wall_ns", &[44.0, 44.0, 55.0]),
                    ("install", "phase_acquire_ns", &[4.0, 4.0, 4.0]),
                    ("install", "phase_dpkg_ns", &[30.0, 30.0, 30.0]),
                    ("many-file", "wall_ns", &[1.0]),
                ],
            ),
        ];
        let rows = fidelity(&models);
        let got: Vec<(String, String, f64, Option<f64>)> = rows
            .iter()
            .map(|r| (r.workload.clone(), compared(r), r.ratio, r.durable_ratio))
            .collect();
        assert_eq!(
            got,
            vec![
                ("install".into(), "whole".into(), 0.5, Some(0.5)),
                (
                    "install".into(),
                    "fetch+verify vs acquire".into(),
                    0.5,
                    None
                ),
                (
                    "install".into(),
                    "hooks+unpack+database+remove+triggers vs dpkg".into(),
                    0.2,
                    None
                ),
            ]
        );
        assert!(rows.iter().all(|r| r.kind == PairKind::Fidelity));
    }

    #[test]
    fn readers_compare_reads_only_and_refused_workloads_give_no_ratio() {
        let mut a = model(
            "fuse",
            Status::Ok,
            &[
                ("install", "wall_ns", &[2.0]),
                ("cold-read", "wall_ns", &[2.0]),
                ("many-file", "wall_ns", &[3.0]),
            ],
        );
        let b = model(
            "overlay",
            Status::Ok,
            &[
                ("install", "wall_ns", &[4.0]),
                ("cold-read", "wall_ns", &[1.0]),
                ("many-file", "wall_ns", &[2.0]),
            ],
        );
        a.workloads.get_mut("cold-read").unwrap().reason = Some("no privilege".into());
        let rows = fidelity(&[a, b]);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].workload, "many-file");
        assert_eq!(rows[0].kind, PairKind::Readers);
        assert!((rows[0].ratio - 1.5).abs() < 1e-12);
        let text = render_fidelity(&crate::mock::results_with_fidelity(rows));
        assert!(text.contains("readers of the same tree"), "{text}");
        assert!(!text.contains("fidelity:"), "{text}");
    }
}
