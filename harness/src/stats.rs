//! Summaries of samples: median, minimum, maximum, a bootstrap 95% interval of the median,
//! and warnings when a sample stands out (as hyperfine warns).
//!
//! The bootstrap resamples with a fixed seed, so the same samples always give the same
//! interval: a results file can be recomputed and compared bit for bit.

use serde::{Deserialize, Serialize};

/// Resamples drawn for the bootstrap interval.
pub const BOOTSTRAP_RESAMPLES: usize = 10_000;
/// A sample whose modified z-score (Iglewicz and Hoaglin) exceeds this is an outlier.
pub const OUTLIER_Z: f64 = 3.5;

/// The samples of one metric and their summary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub samples: Vec<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Bootstrap 95% interval of the median (percentile method).
    pub ci95_low: f64,
    pub ci95_high: f64,
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
        let (ci95_low, ci95_high) = bootstrap_median_interval(samples);
        Some(Summary {
            samples: samples.to_vec(),
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            ci95_low,
            ci95_high,
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

/// splitmix64: a tiny, well-known generator; here only to pick resample indices.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The 2.5th and 97.5th percentiles of the medians of resamples with replacement.
pub fn bootstrap_median_interval(samples: &[f64]) -> (f64, f64) {
    let n = samples.len();
    if n == 1 {
        return (samples[0], samples[0]);
    }
    let mut rng = SplitMix(0x005e_ed0f_b007);
    let mut medians = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    let mut resample = vec![0.0; n];
    for _ in 0..BOOTSTRAP_RESAMPLES {
        for slot in resample.iter_mut() {
            *slot = samples[(rng.next() % n as u64) as usize];
        }
        resample.sort_by(f64::total_cmp);
        medians.push(median_of_sorted(&resample));
    }
    medians.sort_by(f64::total_cmp);
    let at = |q: f64| medians[((q * (medians.len() - 1) as f64).round()) as usize];
    (at(0.025), at(0.975))
}

/// Warnings in hyperfine's spirit: the first run much slower than the rest (a cold
/// start the warmup did not absorb), and outliers by the modified z-score
/// 0.6745 (x - median) / MAD.
pub fn outlier_warnings(samples: &[f64], median: f64) -> Vec<String> {
    let mut warnings = Vec::new();
    if samples.len() < 3 {
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

    #[test]
    fn the_interval_holds_the_median_narrows_with_agreement_and_is_reproducible() {
        let wide = Summary::of(&[10.0, 20.0, 30.0, 40.0, 50.0]).unwrap();
        assert!(wide.ci95_low <= wide.median && wide.median <= wide.ci95_high);
        assert!(wide.ci95_low >= wide.min && wide.ci95_high <= wide.max);
        assert!(wide.ci95_high - wide.ci95_low >= 20.0, "{wide:?}");
        let tight = Summary::of(&[30.0, 30.1, 29.9, 30.0, 30.05]).unwrap();
        assert!(tight.ci95_high - tight.ci95_low < 0.25, "{tight:?}");
        assert_eq!(wide, Summary::of(&[10.0, 20.0, 30.0, 40.0, 50.0]).unwrap());
        let one = Summary::of(&[7.0]).unwrap();
        assert_eq!((one.ci95_low, one.ci95_high), (7.0, 7.0));
    }

    #[test]
    fn a_slow_first_run_and_outliers_are_warned_about() {
        let s = Summary::of(&[100.0, 10.0, 10.2, 9.9, 10.1, 10.0]).unwrap();
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        assert!(s.warnings[0].starts_with("the first run was much slower"));
        assert!(s.warnings[1].starts_with("1 of 6 samples are statistical outliers"));
        let calm = Summary::of(&[10.0, 10.2, 9.9, 10.1, 10.0]).unwrap();
        assert!(calm.warnings.is_empty(), "{:?}", calm.warnings);
    }
}
