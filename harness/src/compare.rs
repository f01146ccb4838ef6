//! Regression verdicts between two runs, the criterion way: a metric has regressed only
//! when the whole interval of its change lies beyond the noise threshold.
//!
//! The interval comes from the change itself, with two samples: the Hodges-Lehmann
//! interval of the shift of log times (Hollander, Wolfe and Chicco, *Nonparametric
//! Statistical Methods*, 3rd ed., §4.3). Of the `n·m` differences `ln new_j - ln base_i`
//! sorted, `[d(k), d(nm+1-k)]` holds the true log ratio with probability
//! `1 - 2 P(U <= k-1)`, `U` the Mann-Whitney count under no change, exactly and
//! whatever the distribution; `k` is the largest that keeps at least 95%, and the level
//! is printed (with 3 runs a side no interval reaches 95%: the widest has 90%). The
//! estimate is the median of the differences. Regressed when the interval's lower end,
//! as a relative change, exceeds `+threshold`, improved when its upper end is below
//! `-threshold`, unchanged otherwise.
//!
//! Beyond the times: a model or workload that was `ok` in BASE and is `failed`,
//! `skipped` or missing in NEW is a regression of its own, named; and two files that
//! measured different things (corpus, durability, workloads, filesystem, kernel) are
//! said so above the table. A different corpus is unusable input unless allowed.

use crate::results::read::{Key, Measured, ResultsFile, Unusable};
use crate::stats::TARGET_LEVEL;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Regressed,
    Improved,
    Unchanged,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Regressed => "regressed",
            Verdict::Improved => "improved",
            Verdict::Unchanged => "unchanged",
        }
    }
}

/// The change from base to new of one measurement, as relative changes (0.1 = 10%
/// slower): the Hodges-Lehmann estimate and interval, and the interval's level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
    pub level: f64,
}

/// One row of the comparison.
#[derive(Debug, Clone)]
pub struct Row {
    pub key: Key,
    pub base: Measured,
    pub new: Measured,
    /// None when the samples do not allow a ratio (a zero time: an empty phase).
    pub change: Option<Change>,
    pub verdict: Verdict,
}

/// A model or workload that stopped being ok.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    pub model: String,
    /// Empty for the model as a whole.
    pub workload: String,
    /// Its status in NEW, or "missing".
    pub now: String,
}

/// The whole comparison.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub rows: Vec<Row>,
    pub lost: Vec<Lost>,
    /// What differs between the two files' configurations: (what, base, new).
    pub config_changes: Vec<(String, String, String)>,
}

impl Comparison {
    pub fn regressed(&self) -> bool {
        !self.lost.is_empty() || self.rows.iter().any(|r| r.verdict == Verdict::Regressed)
    }
}

/// The Mann-Whitney count's null distribution for `n` and `m` samples: the number of
/// arrangements giving each `U` from 0 to `n·m` (memoised recursion on whether the
/// largest observation is from the first sample).
fn mann_whitney_counts(
    n: usize,
    m: usize,
    memo: &mut HashMap<(usize, usize), Vec<f64>>,
) -> Vec<f64> {
    if n == 0 || m == 0 {
        return vec![1.0];
    }
    if let Some(d) = memo.get(&(n, m)) {
        return d.clone();
    }
    let first = mann_whitney_counts(n - 1, m, memo);
    let second = mann_whitney_counts(n, m - 1, memo);
    let mut out = vec![0.0; n * m + 1];
    for (u, c) in first.iter().enumerate() {
        out[u + m] += c;
    }
    for (u, c) in second.iter().enumerate() {
        out[u] += c;
    }
    memo.insert((n, m), out.clone());
    out
}

/// The level of `[d(k), d(nm+1-k)]` (module doc).
pub fn shift_interval_level(n: usize, m: usize, k: usize) -> f64 {
    let counts = mann_whitney_counts(n, m, &mut HashMap::new());
    let total: f64 = counts.iter().sum();
    let tail: f64 = counts.iter().take(k).sum::<f64>() / total;
    (1.0 - 2.0 * tail).max(0.0)
}

/// The change from `base` to `new` (module doc); None when a sample is not positive.
pub fn change(base: &[f64], new: &[f64]) -> Option<Change> {
    if base.is_empty() || new.is_empty() || base.iter().chain(new).any(|x| *x <= 0.0) {
        return None;
    }
    let mut d: Vec<f64> = new
        .iter()
        .flat_map(|y| base.iter().map(move |x| y.ln() - x.ln()))
        .collect();
    d.sort_by(f64::total_cmp);
    let (n, m) = (base.len(), new.len());
    let counts = mann_whitney_counts(n, m, &mut HashMap::new());
    let total: f64 = counts.iter().sum();
    let level = |k: usize| (1.0 - 2.0 * counts.iter().take(k).sum::<f64>() / total).max(0.0);
    let mut k = 1;
    while k < d.len().div_ceil(2) && level(k + 1) >= TARGET_LEVEL {
        k += 1;
    }
    let estimate = crate::stats::median(&d)?;
    Some(Change {
        estimate: estimate.exp() - 1.0,
        low: d[k - 1].exp() - 1.0,
        high: d[d.len() - k].exp() - 1.0,
        level: level(k),
    })
}

/// The verdict for a change at `threshold` (module doc).
pub fn judge(change: Option<Change>, threshold: f64) -> Verdict {
    match change {
        Some(c) if c.low > threshold => Verdict::Regressed,
        Some(c) if c.high < -threshold => Verdict::Improved,
        _ => Verdict::Unchanged,
    }
}

/// Compares every measurement both files hold whose metric is selected (by default the
/// times: metrics ending in `_ns`), every status that was ok in `base`, and the two
/// configurations. A different corpus is unusable unless `allow_config_change`.
pub fn compare(
    base: &ResultsFile,
    new: &ResultsFile,
    threshold: f64,
    metrics: Option<&[String]>,
    allow_config_change: bool,
) -> Result<Comparison> {
    let config_changes: Vec<(String, String, String)> = base
        .config
        .iter()
        .filter_map(|(what, b)| {
            // A fact one file does not record ("?") is not a difference.
            let n = new.config.get(what).cloned().unwrap_or_else(|| "?".into());
            (*b != n && *b != "?" && n != "?").then(|| (what.to_string(), b.clone(), n))
        })
        .collect();
    if !allow_config_change {
        if let Some((_, b, n)) = config_changes.iter().find(|c| c.0 == "corpus digest") {
            bail!(Unusable(format!(
                "the two files measured different corpora (digest {b} and {n}): pass --allow-config-change to compare them anyway"
            )));
        }
    }
    let selected = |metric: &str| match metrics {
        Some(list) => list.iter().any(|m| m == metric),
        None => metric.ends_with("_ns"),
    };
    let rows: Vec<Row> = base
        .measured
        .iter()
        .filter(|(key, _)| selected(&key.2))
        .filter_map(|(key, b)| {
            let n = new.measured.get(key)?;
            let change = change(&b.samples, &n.samples);
            Some(Row {
                key: key.clone(),
                base: b.clone(),
                new: n.clone(),
                change,
                verdict: judge(change, threshold),
            })
        })
        .collect();
    let mut lost = Vec::new();
    for ((model, workload), status) in &base.statuses {
        if status != "ok" {
            continue;
        }
        // A model that is lost as a whole is named once, not with each workload.
        if !workload.is_empty()
            && lost
                .iter()
                .any(|l: &Lost| l.model == *model && l.workload.is_empty())
        {
            continue;
        }
        let now = new
            .statuses
            .get(&(model.clone(), workload.clone()))
            .cloned()
            .unwrap_or_else(|| "missing".into());
        if now != "ok" {
            lost.push(Lost {
                model: model.clone(),
                workload: workload.clone(),
                now,
            });
        }
    }
    if rows.is_empty() && lost.is_empty() {
        bail!(Unusable(
            "the two files have no measurement in common".into()
        ));
    }
    Ok(Comparison {
        rows,
        lost,
        config_changes,
    })
}

fn human(metric: &str, v: f64) -> String {
    if metric.ends_with("_ns") {
        format!("{:.2} ms", v / 1e6)
    } else if metric.ends_with("_bytes") {
        format!("{:.2} MiB", v / (1024.0 * 1024.0))
    } else {
        format!("{v:.0}")
    }
}

/// The comparison as Markdown (for a terminal and GitHub's step summary).
pub fn markdown(c: &Comparison, threshold: f64) -> String {
    let mut out = String::new();
    let count = |v: Verdict| c.rows.iter().filter(|r| r.verdict == v).count();
    let (regressed, improved) = (count(Verdict::Regressed), count(Verdict::Improved));
    let _ = writeln!(
        out,
        "pkgbench compare: {regressed} regressed, {improved} improved, {} unchanged, {} no longer ok (threshold {:.1}%)\n",
        c.rows.len() - regressed - improved,
        c.lost.len(),
        threshold * 100.0
    );
    if !c.config_changes.is_empty() {
        let _ = writeln!(
            out,
            "**warning: the two files did not measure the same thing:**\n"
        );
        for (what, b, n) in &c.config_changes {
            let _ = writeln!(out, "- {what}: {b} (base) vs {n} (new)");
        }
        let _ = writeln!(out);
    }
    if !c.lost.is_empty() {
        let _ = writeln!(out, "**regressed: no longer ok in NEW:**\n");
        for l in &c.lost {
            match l.workload.as_str() {
                "" => {
                    let _ = writeln!(out, "- model {}: ok in base, {} in new", l.model, l.now);
                }
                w => {
                    let _ = writeln!(out, "- {} {w}: ok in base, {} in new", l.model, l.now);
                }
            }
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "| model | workload | metric | base median | new median | change (interval, level) | verdict |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---|---|");
    for r in &c.rows {
        let (model, workload, metric) = &r.key;
        let change = match r.change {
            Some(ch) => format!(
                "{:+.1}% ({:+.1}% .. {:+.1}%, {:.1}%)",
                ch.estimate * 100.0,
                ch.low * 100.0,
                ch.high * 100.0,
                ch.level * 100.0
            ),
            None => "n/a".into(),
        };
        let _ = writeln!(
            out,
            "| {model} | {workload} | {metric} | {} | {} | {change} | {} |",
            human(metric, r.base.median),
            human(metric, r.new.median),
            if r.verdict == Verdict::Regressed {
                "**regressed**"
            } else {
                r.verdict.as_str()
            }
        );
    }
    out
}

/// Parses "5%" or "0.05" into a fraction.
pub fn parse_threshold(s: &str) -> Result<f64> {
    let value = match s.strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().map(|p| p / 100.0),
        None => s.trim().parse::<f64>(),
    }
    .with_context(|| format!("threshold {s:?}: give a percentage such as 5%"))?;
    if !(0.0..10.0).contains(&value) {
        bail!("threshold {s:?} is out of range");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Mann-Whitney distribution for 3 and 3 samples: 20 arrangements, one each
    /// with U = 0 and U = 9; so [d(1), d(9)] has level 1 - 2/20 = 90%, and with 6 and 6
    /// samples the 95% interval uses k = 6 (P(U <= 5) = 19/924: the partitions of 0..5).
    #[test]
    fn the_shift_interval_has_the_level_the_mann_whitney_counts_give() {
        let counts = mann_whitney_counts(3, 3, &mut HashMap::new());
        assert_eq!(counts, vec![1., 1., 2., 3., 3., 3., 3., 2., 1., 1.]);
        assert!((shift_interval_level(3, 3, 1) - 0.9).abs() < 1e-12);
        assert!((shift_interval_level(6, 6, 6) - (1.0 - 2.0 * 19.0 / 924.0)).abs() < 1e-12);
        let base = [10.0, 11.0, 12.0, 10.5, 11.5, 10.8];
        let slower: Vec<f64> = base.iter().map(|x| x * 1.5).collect();
        let c = change(&base, &slower).unwrap();
        assert!((c.estimate - 0.5).abs() < 1e-9, "{c:?}");
        assert!(
            (c.level - (1.0 - 2.0 * 19.0 / 924.0)).abs() < 1e-12,
            "{c:?}"
        );
        assert!(c.low > 0.2 && c.high > c.low, "{c:?}");
        assert_eq!(judge(Some(c), 0.05), Verdict::Regressed);
        let same = change(&base, &base).unwrap();
        assert!(same.low < 0.0 && same.high > 0.0, "{same:?}");
        assert_eq!(judge(Some(same), 0.05), Verdict::Unchanged);
        let faster: Vec<f64> = base.iter().map(|x| x * 0.5).collect();
        assert_eq!(judge(change(&base, &faster), 0.05), Verdict::Improved);
        assert_eq!(change(&[0.0, 1.0], &[1.0]), None);
    }

    #[test]
    fn thresholds_parse_as_percentages_or_fractions() {
        assert_eq!(parse_threshold("5%").unwrap(), 0.05);
        assert_eq!(parse_threshold("0.1").unwrap(), 0.1);
        assert!(parse_threshold("five").is_err());
        assert!(parse_threshold("-3%").is_err());
    }
}
