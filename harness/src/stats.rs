//! Summaries of samples: median, minimum, maximum, an interval of the median that
//! states its own confidence, and warnings when a sample stands out (as hyperfine
//! warns).
//!
//! The interval is distribution-free: the order statistics `[x(k), x(n+1-k)]` of the
//! sorted samples hold the true median with probability `1 - 2 P(B <= k-1)`, `B` a
//! binomial(n, 1/2) count, whatever the distribution of the samples (Hahn and Meeker,
//! *Statistical Intervals*, 2nd ed., §5.2). `k` is the largest that still gives at least
//! 95%; below 6 samples no interval reaches 95%, and the widest one, `[min, max]`, is
//! given with the level it really has (75% for 3 samples, 93.75% for 5). The level is
//! part of the summary, so nothing says "95%" that is not.

use serde::{Deserialize, Serialize};

/// The confidence an interval is chosen to reach, when the sample count allows it.
pub const TARGET_LEVEL: f64 = 0.95;
/// A sample whose modified z-score (Iglewicz and Hoaglin) exceeds this is an outlier.
pub const OUTLIER_Z: f64 = 3.5;
/// Outlier and slow-first-run warnings need this many samples: with fewer, the median
/// absolute deviation rests on two or three values and flags ordinary noise.
pub const MIN_SAMPLES_FOR_WARNINGS: usize = 6;

/// The samples of one metric and their summary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub samples: Vec<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Order-statistic interval of the median (module doc) and its confidence.
    pub ci_low: f64,
    pub ci_high: f64,
    pub ci_level: f64,
    /// Why these samples may not be trusted as they are: a slow first run, outliers.
    pub warnings: Vec<String>,
}

impl Summary {
    /// `None` for no samples.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = median_of_sorted(&sorted);
        let interval = median_interval(&sorted);
        Some(Summary {
            samples: samples.to_vec(),
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            ci_low: interval.low,
            ci_high: interval.high,
            ci_level: interval.level,
            warnings: outlier_warnings(samples, median),
        })
    }
}

/// The median of `samples`; `None` for none.
pub fn median(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(median_of_sorted(&sorted))
}

fn median_of_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// An interval and the probability that it holds what it estimates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
    pub level: f64,
}

/// `C(n, k)` as a float (exact up to far more samples than a run takes).
fn binomial(n: usize, k: usize) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// The confidence of `[x(k), x(n+1-k)]` (1-based) as an interval of the median of `n`
/// samples: `1 - 2 P(Binomial(n, 1/2) <= k - 1)`.
pub fn order_statistic_level(n: usize, k: usize) -> f64 {
    let tail: f64 = (0..k).map(|i| binomial(n, i)).sum::<f64>() / 2f64.powi(n as i32);
    (1.0 - 2.0 * tail).max(0.0)
}

/// The narrowest symmetric order-statistic interval of the median of `sorted` with at
/// least `TARGET_LEVEL`, or the widest there is with its own level (module doc).
pub fn median_interval(sorted: &[f64]) -> Interval {
    let n = sorted.len();
    let mut k = 1;
    while k < n.div_ceil(2) && order_statistic_level(n, k + 1) >= TARGET_LEVEL {
        k += 1;
    }
    Interval {
        low: sorted[k - 1],
        high: sorted[n - k],
        level: order_statistic_level(n, k),
    }
}

/// The level of the interval `median_interval` gives for `n` samples (it depends on
/// the count only); 0 for none.
pub fn interval_level(n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let ranks: Vec<f64> = (0..n).map(|i| i as f64).collect();
    median_interval(&ranks).level
}

/// The smallest sample count whose widest interval reaches `TARGET_LEVEL`.
pub fn runs_for_target_level() -> usize {
    (1..)
        .find(|&n| order_statistic_level(n, 1) >= TARGET_LEVEL)
        .unwrap_or(6)
}

/// Warnings in hyperfine's spirit: the first run much slower than the rest (a cold
/// start the warmup did not absorb), and outliers by the modified z-score
/// 0.6745 (x - median) / MAD.
pub fn outlier_warnings(samples: &[f64], median: f64) -> Vec<String> {
    let mut warnings = Vec::new();
    if samples.len() < MIN_SAMPLES_FOR_WARNINGS {
        return warnings;
    }
    let mut deviations: Vec<f64> = samples.iter().map(|x| (x - median).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    let mad = median_of_sorted(&deviations);
    if mad == 0.0 {
        return warnings;
    }
    let z = |x: f64| 0.6745 * (x - median) / mad;
    if z(samples[0]) > OUTLIER_Z {
        warnings.push(
            "the first run was much slower than the rest: more --warmup may be needed".into(),
        );
    }
    let outliers = samples.iter().filter(|x| z(**x).abs() > OUTLIER_Z).count();
    if outliers > 0 {
        warnings.push(format!(
            "{outliers} of {} samples are statistical outliers (modified z-score above {OUTLIER_Z}): another process may have interfered",
            samples.len()
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(s.samples, vec![3.0, 1.0, 2.0]);
        assert_eq!(Summary::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!(Summary::of(&[]).is_none());
    }

    /// The order-statistic formula, computed by hand: 3 samples give [min, max] at
    /// 1 - 2/8 = 75%; 5 give [min, max] at 1 - 2/32 = 93.75%; 6 reach 95% with
    /// [min, max] at 1 - 2/64 = 96.875%; 10 give [x(2), x(9)] at
    /// 1 - 2 (1 + 10)/1024 = 97.85%, since [x(3), x(8)] has only
    /// 1 - 2 (1 + 10 + 45)/1024 = 89.06%.
    #[test]
    fn the_interval_of_the_median_has_the_level_the_order_statistics_give() {
        let three = Summary::of(&[30.0, 10.0, 20.0]).unwrap();
        assert_eq!((three.ci_low, three.ci_high), (10.0, 30.0));
        assert!((three.ci_level - 0.75).abs() < 1e-12, "{}", three.ci_level);
        let five = Summary::of(&[5.0, 1.0, 4.0, 2.0, 3.0]).unwrap();
        assert_eq!((five.ci_low, five.ci_high), (1.0, 5.0));
        assert!((five.ci_level - 0.9375).abs() < 1e-12);
        let six = Summary::of(&[6.0, 1.0, 5.0, 2.0, 4.0, 3.0]).unwrap();
        assert_eq!((six.ci_low, six.ci_high), (1.0, 6.0));
        assert!((six.ci_level - 0.96875).abs() < 1e-12);
        let ten: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        let ten = Summary::of(&ten).unwrap();
        assert_eq!((ten.ci_low, ten.ci_high), (2.0, 9.0));
        assert!((ten.ci_level - (1.0 - 2.0 * 11.0 / 1024.0)).abs() < 1e-12);
        assert!((order_statistic_level(10, 3) - (1.0 - 2.0 * 56.0 / 1024.0)).abs() < 1e-12);
        let one = Summary::of(&[7.0]).unwrap();
        assert_eq!((one.ci_low, one.ci_high, one.ci_level), (7.0, 7.0, 0.0));
        assert_eq!(runs_for_target_level(), 6);
    }

    #[test]
    fn a_slow_first_run_and_outliers_are_warned_about() {
        let s = Summary::of(&[100.0, 10.0, 10.2, 9.9, 10.1, 10.0]).unwrap();
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        assert!(s.warnings[0].starts_with("the first run was much slower"));
        assert!(s.warnings[1].starts_with("1 of 6 samples are statistical outliers"));
        let calm = Summary::of(&[10.0, 10.2, 9.9, 10.1, 10.0, 10.1]).unwrap();
        assert!(calm.warnings.is_empty(), "{:?}", calm.warnings);
        // Too few samples for a warning to mean anything.
        let few = Summary::of(&[100.0, 10.0, 10.2, 9.9, 10.1]).unwrap();
        assert!(few.warnings.is_empty(), "{:?}", few.warnings);
    }
}
