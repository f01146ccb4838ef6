//! Install time by stage: each model's install phases grouped by what they are
//! (`models::catalog::Stage`: fetch and verify, extraction, maintainer scripts, triggers,
//! recording, activation, or a real tool's unsplit run), so dpkg's serial hooks and
//! triggers stand next to models that have none. Each model says the stage of each of
//! its phases in its own description; the harness only adds them up.
//!
//! A stage's value is the median over samples of the sum of its phases in that sample
//! (not a sum of medians, which need not belong to any one install), and `other` is the
//! median of what no phase covers (the wall time minus every phase), so a stack's height
//! is close to the whole install's median. When a phase was not recorded in every sample
//! the samples cannot be paired, and the sum of the medians is given instead.

use super::read::{Key, Measured};
use models::catalog::Stage;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One model's install, split by stage (nanoseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct StageSplit {
    pub model: String,
    /// The stages the model has, in the order its phases go through them.
    pub stages: Vec<(Stage, f64)>,
    /// The wall time no phase covers.
    pub other_ns: f64,
    /// The whole install's median.
    pub whole_ns: f64,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Per-sample sums of `series` (all of length `n`), or `None` when one is not.
fn paired_sums(series: &[&Measured], n: usize) -> Option<Vec<f64>> {
    if series.iter().any(|m| m.samples.len() != n) {
        return None;
    }
    Some(
        (0..n)
            .map(|i| series.iter().map(|m| m.samples[i]).sum())
            .collect(),
    )
}

/// The install of every model in `measured` that the catalog describes, in catalog order.
pub fn install_stages(measured: &BTreeMap<Key, Measured>) -> Vec<StageSplit> {
    let mut out = Vec::new();
    for info in models::catalog::catalog() {
        let get = |metric: &str| measured.get(&(info.name.into(), "install".into(), metric.into()));
        let Some(wall) = get("wall_ns") else {
            continue;
        };
        let n = wall.samples.len();
        let mut all_phases: Vec<&Measured> = Vec::new();
        let mut stages = Vec::new();
        for stage in Stage::ALL {
            let phases: Vec<&Measured> = info
                .phases
                .iter()
                .filter(|p| info.stage_of(p) == Some(stage))
                .filter_map(|p| get(&format!("phase_{p}_ns")))
                .collect();
            if phases.is_empty() {
                continue;
            }
            let value = match paired_sums(&phases, n) {
                Some(mut sums) => median(&mut sums),
                None => phases.iter().map(|m| m.median).sum(),
            };
            all_phases.extend(&phases);
            stages.push((stage, value));
        }
        // In the order the model goes through them: by its first phase of each.
        let first_phase = |stage: Stage| {
            info.phases
                .iter()
                .position(|p| info.stage_of(p) == Some(stage))
                .unwrap_or(usize::MAX)
        };
        stages.sort_by_key(|(stage, _)| first_phase(*stage));
        let other_ns = match paired_sums(&all_phases, n) {
            Some(covered) => {
                let mut rest: Vec<f64> = wall
                    .samples
                    .iter()
                    .zip(&covered)
                    .map(|(w, c)| (w - c).max(0.0))
                    .collect();
                median(&mut rest)
            }
            None => (wall.median - stages.iter().map(|s| s.1).sum::<f64>()).max(0.0),
        };
        out.push(StageSplit {
            model: info.name.to_string(),
            stages,
            other_ns,
            whole_ns: wall.median,
        });
    }
    out
}

/// The table for `summary.md`: one row per model, one column per stage any model has.
pub fn render_stages(splits: &[StageSplit]) -> String {
    if splits.iter().all(|s| s.stages.is_empty()) {
        return String::new();
    }
    let columns: Vec<Stage> = Stage::ALL
        .into_iter()
        .filter(|st| splits.iter().any(|s| s.stages.iter().any(|x| x.0 == *st)))
        .collect();
    let mut out = String::from(
        "\ninstall by stage (ms; median over samples of each stage's phases; other: wall time no phase covers)\n",
    );
    let _ = write!(out, "{:<14}", "model");
    for st in &columns {
        let _ = write!(out, " {:>12}", st.name());
    }
    let _ = writeln!(out, " {:>9} {:>9}", "other", "whole");
    for s in splits {
        let _ = write!(out, "{:<14}", s.model);
        for st in &columns {
            let cell = s
                .stages
                .iter()
                .find(|x| x.0 == *st)
                .map_or_else(|| "-".to_string(), |x| format!("{:.1}", x.1 / 1e6));
            let _ = write!(out, " {cell:>12}");
        }
        let _ = writeln!(out, " {:>9.1} {:>9.1}", s.other_ns / 1e6, s.whole_ns / 1e6);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(samples: &[f64]) -> Measured {
        let mut sorted = samples.to_vec();
        Measured {
            median: median(&mut sorted),
            low: 0.0,
            high: 0.0,
            level: 0.0,
            samples: samples.to_vec(),
        }
    }

    fn key(model: &str, metric: &str) -> Key {
        (model.into(), "install".into(), metric.into())
    }

    /// hooks: the stages its description gives, in the order of its phases (preinst
    /// hooks before unpack), each the median of per-sample sums (a sum of medians would
    /// give fetch+verify 30 + 4 = 34, not 31), and the rest of the wall time as `other`.
    #[test]
    fn stages_are_medians_of_paired_sums_and_other_is_the_uncovered_rest() {
        let mut measured = BTreeMap::new();
        measured.insert(key("hooks", "wall_ns"), m(&[100.0, 110.0, 120.0]));
        measured.insert(key("hooks", "phase_fetch_ns"), m(&[30.0, 10.0, 50.0]));
        measured.insert(key("hooks", "phase_verify_ns"), m(&[1.0, 4.0, 9.0]));
        measured.insert(key("hooks", "phase_unpack_ns"), m(&[40.0, 50.0, 30.0]));
        measured.insert(key("hooks", "phase_hooks_ns"), m(&[5.0, 5.0, 5.0]));
        measured.insert(key("hooks", "phase_triggers_ns"), m(&[2.0, 2.0, 2.0]));
        measured.insert(key("hooks", "phase_database_ns"), m(&[10.0, 10.0, 10.0]));
        // A model the catalog does not describe gets no row.
        measured.insert(key("mystery", "wall_ns"), m(&[1.0]));
        let splits = install_stages(&measured);
        assert_eq!(splits.len(), 1);
        let hooks = &splits[0];
        assert_eq!(
            hooks.stages,
            vec![
                (Stage::Fetch, 31.0), // sums 31, 14, 59
                (Stage::Hooks, 5.0),
                (Stage::Extract, 40.0),
                (Stage::Record, 10.0),
                (Stage::Triggers, 2.0),
            ]
        );
        // Uncovered: 100-88 = 12, 110-81 = 29, 120-106 = 14.
        assert_eq!(hooks.other_ns, 14.0);
        assert_eq!(hooks.whole_ns, 110.0);
        let table = render_stages(&splits);
        assert!(table.contains("fetch+verify"), "{table}");
        assert!(!table.contains("unsplit"), "{table}");
    }

    #[test]
    fn unpaired_samples_fall_back_to_sums_of_medians() {
        let mut measured = BTreeMap::new();
        measured.insert(key("fuse", "wall_ns"), m(&[10.0, 20.0, 30.0]));
        measured.insert(key("fuse", "phase_fetch_ns"), m(&[4.0, 6.0]));
        measured.insert(key("fuse", "phase_mount_ns"), m(&[1.0, 2.0, 3.0]));
        let splits = install_stages(&measured);
        assert_eq!(
            splits[0].stages,
            vec![(Stage::Fetch, 5.0), (Stage::Activate, 2.0)]
        );
        assert_eq!(splits[0].other_ns, 20.0 - 7.0);
    }
}
