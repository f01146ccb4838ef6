//! Install time against link rate (`harness run --link 10mbit,100mbit,1gbit,none`):
//! one run per link, then a figure of every model's install median against the rate
//! (log axes) and, in `summary.md`, the table and the points where two models' curves
//! cross.
//!
//! A crossover is found between two neighbouring rates where the sign of the ratio of
//! two models' medians changes; its rate is interpolated on the figure's axes (the log
//! of the ratio linear in the log of the rate), so it is an estimate between two
//! measured rates, and said so. The local copy (`none`) has no rate: it is shown in the
//! table and named as a crossover "beyond the fastest link" when the order of two
//! models changes between the fastest link and the local copy.

use crate::results::read::{Key, Measured};
use anyhow::Result;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One link's run: its rate (`None`: the local copy), its name, and each model's
/// install median in ms.
#[derive(Debug, Clone)]
pub struct RatePoint {
    pub name: String,
    pub rate_bits_per_s: Option<u64>,
    pub install_ms: BTreeMap<String, f64>,
}

impl RatePoint {
    /// The point of one run's results: every model with an `ok` install median.
    pub fn of(
        name: &str,
        rate_bits_per_s: Option<u64>,
        measured: &BTreeMap<Key, Measured>,
    ) -> RatePoint {
        let install_ms = measured
            .iter()
            .filter(|((_, w, m), _)| w == "install" && m == "wall_ns")
            .map(|((model, _, _), s)| (model.clone(), s.median / 1e6))
            .collect();
        RatePoint {
            name: name.to_string(),
            rate_bits_per_s,
            install_ms,
        }
    }
}

/// Where `a` and `b` swap order.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossover {
    /// The model faster at the higher rate.
    pub faster_above: String,
    pub slower_above: String,
    /// The measured rates it lies between (names), and the interpolated rate in bit/s
    /// (`None`: between the fastest link and the local copy).
    pub between: (String, String),
    pub estimate_bits_per_s: Option<f64>,
}

/// The points in rate order, the local copy last (it is faster than every link).
fn by_rate(points: &[RatePoint]) -> Vec<&RatePoint> {
    let mut ordered: Vec<&RatePoint> = points.iter().collect();
    ordered.sort_by_key(|p| p.rate_bits_per_s.unwrap_or(u64::MAX));
    ordered
}

/// Every model any point has, once each.
fn models_of(points: &[RatePoint]) -> Vec<String> {
    let mut models: Vec<String> = points
        .iter()
        .flat_map(|p| p.install_ms.keys().cloned())
        .collect();
    models.sort();
    models.dedup();
    models
}

/// Every crossover of every pair of models, pair by pair, each pair's in rate order. A
/// tie (ratio exactly 1) at a measured rate is skipped: the crossover is then placed
/// between the rates on either side of it.
pub fn crossovers(points: &[RatePoint]) -> Vec<Crossover> {
    let ordered = by_rate(points);
    let models = models_of(points);
    let mut out = Vec::new();
    for (i, a) in models.iter().enumerate() {
        for b in &models[i + 1..] {
            // log(a / b) at each point both have.
            let logs: Vec<(&RatePoint, f64)> = ordered
                .iter()
                .filter_map(|p| {
                    let (ta, tb) = (p.install_ms.get(a)?, p.install_ms.get(b)?);
                    (*ta > 0.0 && *tb > 0.0).then(|| (*p, (ta / tb).ln()))
                })
                // A tie is on neither side: the order changes across it or not at all.
                .filter(|(_, d)| *d != 0.0)
                .collect();
            for pair in logs.windows(2) {
                let ((lo, d0), (hi, d1)) = (pair[0], pair[1]);
                if (d0 < 0.0) == (d1 < 0.0) {
                    continue;
                }
                // a is faster above when a/b < 1 there.
                let (faster_above, slower_above) = if d1 < 0.0 { (a, b) } else { (b, a) };
                let estimate = match (lo.rate_bits_per_s, hi.rate_bits_per_s) {
                    (Some(r0), Some(r1)) => {
                        let (x0, x1) = ((r0 as f64).ln(), (r1 as f64).ln());
                        Some((x0 + (x1 - x0) * d0 / (d0 - d1)).exp())
                    }
                    _ => None,
                };
                out.push(Crossover {
                    faster_above: faster_above.clone(),
                    slower_above: slower_above.clone(),
                    between: (lo.name.clone(), hi.name.clone()),
                    estimate_bits_per_s: estimate,
                });
            }
        }
    }
    out
}

/// A rate in bit/s as a person writes it (`310 Mbit/s`).
fn rate_text(bits: f64) -> String {
    if bits >= 1e9 {
        format!("{:.2} Gbit/s", bits / 1e9)
    } else if bits >= 1e6 {
        format!("{:.0} Mbit/s", bits / 1e6)
    } else {
        format!("{:.0} kbit/s", bits / 1e3)
    }
}

/// The markdown for `summary.md`: install medians by link and model, then crossovers.
pub fn render_summary(points: &[RatePoint]) -> String {
    let ordered = by_rate(points);
    let models = crate::plot::display_order(models_of(points));
    let mut s = String::from("# Install time against link rate\n\nInstall wall time, median of each link's runs (ms); `local` is the local copy (`--link none`).\n\n");
    let _ = writeln!(s, "| link | {} |", models.join(" | "));
    let _ = writeln!(s, "|---|{}", "---:|".repeat(models.len()));
    for p in &ordered {
        let cells: Vec<String> = models
            .iter()
            .map(|m| {
                p.install_ms
                    .get(m)
                    .map_or("-".to_string(), |v| format!("{v:.0}"))
            })
            .collect();
        let name = if p.rate_bits_per_s.is_none() {
            "local"
        } else {
            &p.name
        };
        let _ = writeln!(s, "| {name} | {} |", cells.join(" | "));
    }
    s.push_str("\n## Crossovers\n\n");
    let found = crossovers(points);
    if found.is_empty() {
        s.push_str("No two models change order between the measured links.\n");
    }
    for c in &found {
        let (lo, hi) = &c.between;
        let _ = match c.estimate_bits_per_s {
            Some(r) => writeln!(
                s,
                "- `{}` overtakes `{}` between {lo} and {hi}: at about {} (interpolated on log axes between the two measured rates)",
                c.faster_above, c.slower_above, rate_text(r)
            ),
            None => writeln!(
                s,
                "- `{}` overtakes `{}` beyond the fastest link: slower at {lo}, faster on the local copy",
                c.faster_above, c.slower_above
            ),
        };
    }
    s
}

/// The figure `install-vs-link` (SVG and PNG) in `out`: install median against link
/// rate in Mbit/s, one line per model; the local copy's median is in the legend.
pub fn plot(points: &[RatePoint], out: &Path) -> Result<Vec<PathBuf>> {
    crate::plot::register_shipped_font()?;
    std::fs::create_dir_all(out).map_err(|e| anyhow::anyhow!("creating {}: {e}", out.display()))?;
    let local = points.iter().find(|p| p.rate_bits_per_s.is_none());
    let curves = crate::plot::display_order(models_of(points))
        .into_iter()
        .map(|m| {
            let mut pts: Vec<(f64, f64)> = points
                .iter()
                .filter_map(|p| Some((p.rate_bits_per_s? as f64 / 1e6, *p.install_ms.get(&m)?)))
                .filter(|(_, v)| *v > 0.0)
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let label = match local.and_then(|l| l.install_ms.get(&m)) {
                Some(v) => format!("{m} (local {v:.0} ms)"),
                None => m.clone(),
            };
            crate::plot::scaling::Curve { label, points: pts }
        })
        .collect();
    crate::plot::scaling::plot_curves(
        &out.join("install-vs-link"),
        "install time against link rate",
        "link rate (Mbit/s, log)",
        "install wall time (ms, log)",
        curves,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(name: &str, rate: Option<u64>, times: &[(&str, f64)]) -> RatePoint {
        RatePoint {
            name: name.into(),
            rate_bits_per_s: rate,
            install_ms: times.iter().map(|(m, t)| (m.to_string(), *t)).collect(),
        }
    }

    #[test]
    fn a_crossover_is_interpolated_on_log_axes_between_the_rates_it_lies_between() {
        // fuse/nar = 4 at 10 Mbit, 1/4 at 1000 Mbit: log ratio ±ln 4, symmetric, so the
        // curves cross at the geometric middle, 100 Mbit.
        let points = [
            point(
                "1gbit",
                Some(1_000_000_000),
                &[("fuse", 250.0), ("nar", 1000.0)],
            ),
            point(
                "10mbit",
                Some(10_000_000),
                &[("fuse", 4000.0), ("nar", 1000.0)],
            ),
            point("none", None, &[("fuse", 200.0), ("nar", 900.0)]),
        ];
        let found = crossovers(&points);
        assert_eq!(found.len(), 1, "{found:?}");
        let c = &found[0];
        assert_eq!(
            (c.faster_above.as_str(), c.slower_above.as_str()),
            ("fuse", "nar")
        );
        assert_eq!(c.between, ("10mbit".to_string(), "1gbit".to_string()));
        let r = c.estimate_bits_per_s.unwrap();
        assert!((r - 1e8).abs() < 1.0, "{r}");
        let text = render_summary(&points);
        assert!(
            text.contains("`fuse` overtakes `nar` between 10mbit and 1gbit: at about 100 Mbit/s"),
            "{text}"
        );
        // Rows in rate order, the local copy last.
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| ")).collect();
        assert_eq!(
            rows[1..]
                .iter()
                .map(|r| r.split(" | ").next().unwrap())
                .collect::<Vec<_>>(),
            ["| 10mbit", "| 1gbit", "| local"]
        );
    }

    #[test]
    fn an_order_change_only_on_the_local_copy_has_no_rate_and_a_tie_is_crossed() {
        let points = [
            point(
                "100mbit",
                Some(100_000_000),
                &[("a", 2.0), ("b", 1.0), ("c", 3.0)],
            ),
            point("none", None, &[("a", 1.0), ("b", 2.0), ("c", 3.0)]),
            point(
                "1gbit",
                Some(1_000_000_000),
                &[("a", 2.0), ("b", 1.0), ("c", 1.0)],
            ),
            point(
                "10mbit",
                Some(10_000_000),
                &[("a", 2.0), ("b", 1.0), ("c", 0.5)],
            ),
        ];
        let found: Vec<String> = crossovers(&points)
            .iter()
            .map(|c| {
                format!(
                    "{} over {}, {}..{}{}",
                    c.faster_above,
                    c.slower_above,
                    c.between.0,
                    c.between.1,
                    if c.estimate_bits_per_s.is_some() {
                        ", at a rate"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                // a-b: b faster on every link, a on the local copy.
                "a over b, 1gbit..none",
                // a-c: c faster at 10 Mbit, a at 100 Mbit, c at 1 Gbit, a locally.
                "a over c, 10mbit..100mbit, at a rate",
                "c over a, 100mbit..1gbit, at a rate",
                "a over c, 1gbit..none",
                // b-c: c faster at 10 Mbit, b at 100 Mbit, a tie at 1 Gbit, b locally:
                // one crossover, and none across the tie.
                "b over c, 10mbit..100mbit, at a rate",
            ]
        );
        assert!(render_summary(&points).contains("beyond the fastest link"));
    }
}
