//! Scaling curves from a sweep: a cost against the number of packages, on a log x axis
//! (the package counts of a sweep grow by factors) and a log y axis (models and lookups
//! differ by orders of magnitude), one line with markers per model or measurement.
//!
//! Figures: install time per package by model; cold-read and many-file time by model;
//! and what each model's description asks for (`models::catalog::SweepFigures`): its
//! install phases against the number of packages (overlay: fetch, loop, squashfs, overlay
//! mount), and for a view of one layer per package its lookup latency (a name in the
//! first layer, in the last, in none; cold and warm) against the number of layers.

use super::{both_formats, drawing, register_shipped_font, FONT, PALETTE};
use crate::sweep::{Lookup, SweepRow};
use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// One line of a figure: (packages, value) points in increasing x.
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Every scaling figure of `rows` into `out`; figures without data are left out.
pub fn plot_sweep(rows: &[SweepRow], out: &Path) -> Result<Vec<PathBuf>> {
    register_shipped_font()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut models: Vec<&str> = Vec::new();
    for r in rows {
        if !models.contains(&r.model.as_str()) {
            models.push(&r.model);
        }
    }
    let by_model = |label: &dyn Fn(&str) -> String, value: &dyn Fn(&SweepRow) -> Option<f64>| {
        models
            .iter()
            .map(|m| Curve {
                label: label(m),
                points: points(rows.iter().filter(|r| r.model == *m), value),
            })
            .collect::<Vec<_>>()
    };
    let mut written = Vec::new();
    written.extend(plot_curves(
        &out.join("scaling-install"),
        "install time per package",
        "packages (log)",
        "install wall time per package (ms, log)",
        by_model(&|m| m.to_string(), &|r| {
            r.install_per_package_ns.map(|v| v / 1e6)
        }),
    )?);
    let mut reads = by_model(&|m| format!("{m} cold-read"), &|r| {
        r.cold_read_wall_ns.map(|v| v / 1e6)
    });
    reads.extend(by_model(&|m| format!("{m} many-file"), &|r| {
        r.many_file_wall_ns.map(|v| v / 1e6)
    }));
    written.extend(plot_curves(
        &out.join("scaling-reads"),
        "reads: 20 largest files (cold-read), whole view (many-file)",
        "packages (log)",
        "wall time (ms, log)",
        reads,
    )?);
    // What each model's description asks for besides (`models::catalog::SweepFigures`).
    for info in models::catalog() {
        let own: Vec<&SweepRow> = rows.iter().filter(|r| r.model == info.name).collect();
        if own.is_empty() {
            continue;
        }
        if !info.sweep.phases.is_empty() {
            written.extend(plot_phase_curves(info.name, info.sweep.phases, &own, out)?);
        }
        if info.sweep.layer_lookups {
            written.extend(plot_lookup_curves(info.name, &own, out)?);
        }
    }
    Ok(written)
}

fn points<'a>(
    rows: impl Iterator<Item = &'a SweepRow>,
    value: &dyn Fn(&SweepRow) -> Option<f64>,
) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = rows
        .filter_map(|r| Some((r.packages as f64, value(r)?)))
        // A log axis has no place for zero.
        .filter(|(_, v)| *v > 0.0 && v.is_finite())
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Draws `curves` as `BASE.svg` and `BASE.png`; nothing when no curve has a point.
pub fn plot_curves(
    base: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    curves: Vec<Curve>,
) -> Result<Vec<PathBuf>> {
    let curves: Vec<Curve> = curves
        .into_iter()
        .filter(|c| !c.points.is_empty())
        .collect();
    if curves.is_empty() {
        return Ok(Vec::new());
    }
    let all = curves.iter().flat_map(|c| &c.points);
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in all {
        xmin = xmin.min(*x);
        xmax = xmax.max(*x);
        ymin = ymin.min(*y);
        ymax = ymax.max(*y);
    }
    // Margins in log space; headroom above for the legend.
    let x_range = (xmin / 1.6)..(xmax * 1.6);
    let y_range = (ymin / 2.0)..(ymax * 10f64.powf(0.3 + 0.12 * curves.len() as f64));
    let figure = base.to_path_buf();
    both_formats(
        base,
        |a| {
            draw(
                a, &figure, title, x_desc, y_desc, &curves, &x_range, &y_range,
            )
        },
        |a| {
            draw(
                a, &figure, title, x_desc, y_desc, &curves, &x_range, &y_range,
            )
        },
    )
}

#[allow(clippy::too_many_arguments)]
fn draw<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    figure: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    curves: &[Curve],
    x_range: &std::ops::Range<f64>,
    y_range: &std::ops::Range<f64>,
) -> Result<()> {
    drawing(figure, area.fill(&WHITE))?;
    let mut chart = drawing(
        figure,
        ChartBuilder::on(&area)
            .caption(title, (FONT, 30))
            .margin(20)
            .x_label_area_size(60)
            .y_label_area_size(110)
            .build_cartesian_2d(x_range.clone().log_scale(), y_range.clone().log_scale()),
    )?;
    drawing(
        figure,
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|x| format_number(*x))
            .y_label_formatter(&|y| format_number(*y))
            .label_style((FONT, 22))
            .axis_desc_style((FONT, 24))
            .draw(),
    )?;
    for (i, curve) in curves.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let anno = drawing(
            figure,
            chart.draw_series(LineSeries::new(
                curve.points.iter().copied(),
                colour.stroke_width(3),
            )),
        )?;
        anno.label(curve.label.clone()).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3))
        });
        drawing(
            figure,
            chart.draw_series(
                curve
                    .points
                    .iter()
                    .map(|p| Circle::new(*p, 5, colour.filled())),
            ),
        )?;
    }
    drawing(
        figure,
        chart
            .configure_series_labels()
            .label_font((FONT, 22))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw(),
    )?;
    drawing(figure, area.present())
}

/// Axis numbers without needless decimals: 1, 10, 250, 0.5, 0.02.
fn format_number(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        let s = format!("{v:.1}");
        s.trim_end_matches(".0").to_string()
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// `model`'s install `phases` against the number of packages (`scaling-MODEL-phases`).
fn plot_phase_curves(
    model: &str,
    phases: &[&str],
    rows: &[&SweepRow],
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let curves = phases
        .iter()
        .map(|phase| Curve {
            label: format!("{phase} phase"),
            points: points(rows.iter().copied(), &|r| {
                r.install_phases_ns.get(*phase).map(|v| v / 1e6)
            }),
        })
        .collect();
    plot_curves(
        &out.join(format!("scaling-{model}-phases")),
        &format!("{model} install phases"),
        // Not "layers": composefs's set is one image and one mount at every N.
        "packages installed (log)",
        "phase time (ms, log)",
        curves,
    )
}

/// `model`'s lookup latency against its number of layers (`scaling-MODEL-lookup`).
fn plot_lookup_curves(model: &str, rows: &[&SweepRow], out: &Path) -> Result<Vec<PathBuf>> {
    type Pick = fn(&crate::sweep::Lookups) -> &Lookup;
    let names: [(&str, Pick); 3] = [
        ("first layer", |l| &l.first_layer),
        ("last layer", |l| &l.last_layer),
        ("in no layer", |l| &l.missing),
    ];
    let mut lookups = Vec::new();
    for (warm, state) in [(false, "cold"), (true, "warm")] {
        for (name, pick) in names {
            lookups.push(Curve {
                label: format!("{name}, {state}"),
                points: points(rows.iter().copied(), &|r| {
                    let l = pick(r.lookup.as_ref()?);
                    let s = if warm { &l.warm_ns } else { &l.cold_ns };
                    s.as_ref().map(|s| s.median / 1e3)
                }),
            });
        }
    }
    plot_curves(
        &out.join(format!("scaling-{model}-lookup")),
        &format!("{model}: lookup of one name (median)"),
        "layers (packages, log)",
        "lookup latency (µs, log)",
        lookups,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_on_axes_are_short() {
        assert_eq!(format_number(1000.0), "1000");
        assert_eq!(format_number(10.0), "10");
        assert_eq!(format_number(2.5), "2.5");
        assert_eq!(format_number(0.02), "0.02");
    }
}
