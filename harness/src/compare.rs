//! Regression verdicts between two runs, the criterion way: a metric has regressed only
//! when the whole interval of its change lies beyond the noise threshold.
//!
//! Each measurement carries a 95% interval of its median. The change from base to new is
//! bounded by comparing the intervals' ends: at least `new.low / base.high - 1`, at most
//! `new.high / base.low - 1`. Regressed when the lower bound exceeds `+threshold`,
//! improved when the upper bound is below `-threshold`, unchanged otherwise.

use crate::results::read::{Key, Measured, Unusable};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
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

/// One row of the comparison.
#[derive(Debug, Clone)]
pub struct Row {
    pub key: Key,
    pub base: Measured,
    pub new: Measured,
    /// Bounds of the relative change (0.1 = 10% slower).
    pub change_low: f64,
    pub change_high: f64,
    pub verdict: Verdict,
}

/// The verdict for one measurement (module doc).
pub fn judge(base: Measured, new: Measured, threshold: f64) -> (f64, f64, Verdict) {
    // A zero lower bound (an empty phase) makes any change unbounded: call it unchanged
    // unless both ends moved.
    let low = if base.high > 0.0 {
        new.low / base.high - 1.0
    } else {
        0.0
    };
    let high = if base.low > 0.0 {
        new.high / base.low - 1.0
    } else {
        0.0
    };
    let verdict = if low > threshold {
        Verdict::Regressed
    } else if high < -threshold {
        Verdict::Improved
    } else {
        Verdict::Unchanged
    };
    (low, high, verdict)
}

/// Compares every measurement both files hold whose metric is selected (by default the
/// times: metrics ending in `_ns`).
pub fn compare(
    base: &BTreeMap<Key, Measured>,
    new: &BTreeMap<Key, Measured>,
    threshold: f64,
    metrics: Option<&[String]>,
) -> Result<Vec<Row>> {
    let selected = |metric: &str| match metrics {
        Some(list) => list.iter().any(|m| m == metric),
        None => metric.ends_with("_ns"),
    };
    let rows: Vec<Row> = base
        .iter()
        .filter(|(key, _)| selected(&key.2))
        .filter_map(|(key, b)| {
            let n = new.get(key)?;
            let (change_low, change_high, verdict) = judge(*b, *n, threshold);
            Some(Row {
                key: key.clone(),
                base: *b,
                new: *n,
                change_low,
                change_high,
                verdict,
            })
        })
        .collect();
    if rows.is_empty() {
        bail!(Unusable(
            "the two files have no measurement in common".into()
        ));
    }
    Ok(rows)
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

/// The comparison as a Markdown table (for a terminal and GitHub's step summary).
pub fn markdown(rows: &[Row], threshold: f64) -> String {
    let mut out = String::new();
    let regressed = rows
        .iter()
        .filter(|r| r.verdict == Verdict::Regressed)
        .count();
    let improved = rows
        .iter()
        .filter(|r| r.verdict == Verdict::Improved)
        .count();
    let _ = writeln!(
        out,
        "pkgbench compare: {regressed} regressed, {improved} improved, {} unchanged (threshold {:.1}%)\n",
        rows.len() - regressed - improved,
        threshold * 100.0
    );
    let _ = writeln!(
        out,
        "| model | workload | metric | base median | new median | change (interval) | verdict |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---|---|");
    for r in rows {
        let (model, workload, metric) = &r.key;
        let change = if r.base.median > 0.0 {
            format!("{:+.1}%", (r.new.median / r.base.median - 1.0) * 100.0)
        } else {
            "n/a".into()
        };
        let _ =
            writeln!(
            out,
            "| {model} | {workload} | {metric} | {} | {} | {change} ({:+.1}% .. {:+.1}%) | {} |",
            human(metric, r.base.median),
            human(metric, r.new.median),
            r.change_low * 100.0,
            r.change_high * 100.0,
            if r.verdict == Verdict::Regressed { "**regressed**" } else { r.verdict.as_str() }
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

    fn m(median: f64, low: f64, high: f64) -> Measured {
        Measured { median, low, high }
    }

    #[test]
    fn only_a_whole_interval_beyond_the_threshold_is_a_verdict() {
        let base = m(100.0, 98.0, 102.0);
        assert_eq!(
            judge(base, m(120.0, 118.0, 122.0), 0.05).2,
            Verdict::Regressed
        );
        assert_eq!(judge(base, m(80.0, 78.0, 82.0), 0.05).2, Verdict::Improved);
        // The median moved 8%, but the intervals leave room for less than 5%.
        assert_eq!(
            judge(base, m(108.0, 100.0, 115.0), 0.05).2,
            Verdict::Unchanged
        );
        assert_eq!(judge(base, base, 0.05).2, Verdict::Unchanged);
    }

    #[test]
    fn thresholds_parse_as_percentages_or_fractions() {
        assert_eq!(parse_threshold("5%").unwrap(), 0.05);
        assert_eq!(parse_threshold("0.1").unwrap(), 0.1);
        assert!(parse_threshold("five").is_err());
        assert!(parse_threshold("-3%").is_err());
    }
}
