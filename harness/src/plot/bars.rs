//! Per workload: grouped bars of the median wall time by model, one bar per results
//! file in each group, with whiskers for the interval of the median (its level in the
//! title); for install and
//! upgrade a second figure of the time to a durable state (`durable_wall_ns`).

use super::{
    both_formats, drawing, family_colour, is_reference, lighter, model_chart, Series, FONT, PALETTE,
};
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// (model, [(median, low, high) per series, None where the series lacks it]).
/// The lowest level of the intervals drawn is said in the title.
type Groups = Vec<(String, Vec<Option<(f64, f64, f64)>>)>;

/// The metrics drawn as bars: the time the model returns, and the time until its state
/// is durable (only install and upgrade have it), with their file suffix and axis label.
pub const METRICS: [(&str, &str, &str); 2] = [
    ("wall_ns", "", "wall time"),
    ("durable_wall_ns", "-durable", "time to durable state"),
];

fn groups(series: &[Series], workload: &str, metric: &str) -> Groups {
    let models: Vec<&str> = series
        .iter()
        .flat_map(|s| s.measured.keys())
        .filter(|k| k.1 == workload && k.2 == metric)
        .map(|k| k.0.as_str())
        .collect();
    let models = super::display_order(models.into_iter().map(str::to_string).collect());
    models
        .iter()
        .map(|model| {
            let bars = series
                .iter()
                .map(|s| {
                    s.measured
                        .get(&(model.clone(), workload.to_string(), metric.to_string()))
                        .map(|m| (m.median / 1e6, m.low / 1e6, m.high / 1e6))
                })
                .collect();
            (model.to_string(), bars)
        })
        .collect()
}

/// The figures of one workload: one per metric of `METRICS` it has.
pub fn plot_workload(series: &[Series], workload: &str, out: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (metric, suffix, what) in METRICS {
        let data = groups(series, workload, metric);
        if data.is_empty() {
            continue;
        }
        let labels: Vec<String> = series.iter().map(|s| s.label.clone()).collect();
        let base = out.join(format!("{workload}{suffix}"));
        let level = series
            .iter()
            .flat_map(|s| s.measured.iter())
            .filter(|(k, _)| k.1 == workload && k.2 == metric)
            .map(|(_, m)| m.level)
            .fold(1.0f64, f64::min);
        let title = format!("{workload}: median {what}, {:.1}% interval", level * 100.0);
        let axis = format!("{what} (ms)");
        written.extend(both_formats(
            &base,
            |a| draw(a, &base, &title, &axis, &data, &labels),
            |a| draw(a, &base, &title, &axis, &data, &labels),
        )?);
    }
    Ok(written)
}

fn draw<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    figure: &Path,
    title: &str,
    axis: &str,
    data: &Groups,
    labels: &[String],
) -> Result<()> {
    drawing(figure, area.fill(&WHITE))?;
    let per_group = labels.len().max(1);
    let ymax = data
        .iter()
        .flat_map(|(_, bars)| bars.iter().flatten().map(|b| b.2))
        .fold(0.0f64, f64::max)
        * 1.15;
    let names: Vec<String> = data.iter().map(|(m, _)| m.clone()).collect();
    let mut chart = model_chart(&area, figure, title, &names, ymax, axis)?;
    let width = 0.8 / per_group as f64;
    for (g, (_, bars)) in data.iter().enumerate() {
        for (s, bar) in bars.iter().enumerate() {
            let Some((median, low, high)) = bar else {
                continue;
            };
            let x0 = g as f64 + 0.1 + s as f64 * width;
            let x1 = x0 + width * 0.9;
            // One file: a colour per model, its reference lighter. Several: a colour per
            // file, references lighter.
            let colour = if per_group == 1 {
                family_colour(&names, &data[g].0)
            } else if is_reference(&data[g].0) {
                lighter(PALETTE[s % PALETTE.len()])
            } else {
                PALETTE[s % PALETTE.len()]
            };
            drawing(
                figure,
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x0, 0.0), (x1, *median)],
                    colour.filled(),
                ))),
            )?;
            let mid = (x0 + x1) / 2.0;
            let cap = width * 0.2;
            let series = [
                PathElement::new(vec![(mid, *low), (mid, *high)], BLACK.stroke_width(2)),
                PathElement::new(
                    vec![(mid - cap, *low), (mid + cap, *low)],
                    BLACK.stroke_width(2),
                ),
                PathElement::new(
                    vec![(mid - cap, *high), (mid + cap, *high)],
                    BLACK.stroke_width(2),
                ),
            ];
            let anno = chart.draw_series(series);
            let anno = drawing(figure, anno)?;
            if g == 0 && per_group > 1 {
                anno.label(labels[s].clone()).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 8), (x + 16, y + 8)], colour.filled())
                });
            }
        }
    }
    if data.iter().any(|(m, _)| is_reference(m)) {
        let note = "lighter bars: reference runs, beside the model they stand for";
        drawing(figure, area.draw(&Text::new(note, (150, 62), (FONT, 22))))?;
    }
    if labels.len() > 1 {
        drawing(
            figure,
            chart
                .configure_series_labels()
                .label_font((FONT, 22))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw(),
        )?;
    }
    drawing(figure, area.present())
}
