//! Every workload at a glance: each model's median divided by the baseline model's, one
//! group of bars per workload in lifecycle order (the matrix's columns), on a log axis
//! so that 2x faster and 2x slower are the same distance from the line at 1. Answers
//! "which model wins where" in one figure.

use super::{both_formats, display_order, drawing, family_colour, is_reference, Series, FONT};
use crate::results::matrix::COLUMNS;
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// (column heading, [(model, ratio)]).
type Ratios = Vec<(&'static str, Vec<(String, f64)>)>;

/// Pixels kept on the right for the legend.
const LEGEND_WIDTH: u32 = 190;

/// The ratios of `series` to `baseline` (default: the first model in display order that
/// has the first column), per column with any model besides the baseline.
fn ratios(series: &Series, baseline: Option<&str>) -> Option<(String, Ratios)> {
    let models = display_order(series.measured.keys().map(|k| k.0.clone()).collect());
    let base = match baseline {
        Some(b) => models.iter().find(|m| *m == b)?.clone(),
        None => models.first()?.clone(),
    };
    let median = |model: &str, workload: &str, metric: &str| {
        series
            .measured
            .get(&(model.to_string(), workload.to_string(), metric.to_string()))
            .map(|m| m.median)
    };
    let mut out: Ratios = Vec::new();
    for (heading, workload, metric) in COLUMNS {
        let Some(b) = median(&base, workload, metric).filter(|b| *b > 0.0) else {
            continue;
        };
        let bars: Vec<(String, f64)> = models
            .iter()
            .filter_map(|m| Some((m.clone(), median(m, workload, metric)? / b)))
            .filter(|(_, r)| *r > 0.0)
            .collect();
        if bars.len() > 1 {
            out.push((heading, bars));
        }
    }
    (!out.is_empty()).then_some((base, out))
}

pub fn plot_normalised(
    series: &Series,
    index: usize,
    baseline: Option<&str>,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let Some((base, data)) = ratios(series, baseline) else {
        return Ok(Vec::new());
    };
    let file = out.join(if index == 0 {
        "normalised".to_string()
    } else {
        format!("normalised-{index}")
    });
    let title = format!("every workload, median / {base}'s ({})", series.label);
    both_formats(
        &file,
        |a| draw(a, &file, &title, &base, &data),
        |a| draw(a, &file, &title, &base, &data),
    )
}

fn draw<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    figure: &Path,
    title: &str,
    base: &str,
    data: &Ratios,
) -> Result<()> {
    drawing(figure, area.fill(&WHITE))?;
    let all = data.iter().flat_map(|(_, bars)| bars.iter().map(|b| b.1));
    let (lo, hi) = all.fold((1.0f64, 1.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
    // Symmetric about 1, so that faster and slower get the same room.
    let reach = (hi.max(1.0 / lo) * 1.3).max(1.5);
    let (lo, hi) = (1.0 / reach, reach);
    let mut models: Vec<String> = Vec::new();
    for (_, bars) in data {
        for (m, _) in bars {
            if !models.contains(m) {
                models.push(m.clone());
            }
        }
    }
    let models = display_order(models);
    let (plot_area, legend_area) = area.split_horizontally(super::SIZE.0 - LEGEND_WIDTH);
    let mut chart = drawing(
        figure,
        ChartBuilder::on(&plot_area)
            .caption(title, (FONT, 30))
            .margin(20)
            .x_label_area_size(70)
            .y_label_area_size(110)
            .build_cartesian_2d(0.0..data.len() as f64, (lo..hi).log_scale()),
    )?;
    let headings: Vec<&str> = data.iter().map(|(h, _)| *h).collect();
    drawing(
        figure,
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(data.len() * 2 + 1)
            .x_label_formatter(&|x| {
                // Only the slots' middles (0.5, 1.5, ...) carry a workload.
                let i = (*x - 0.5).round();
                if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                    headings
                        .get(i as usize)
                        .map_or_else(String::new, |h| h.to_string())
                } else {
                    String::new()
                }
            })
            // plotters' log axis has no key points below 1: the ticks are drawn below.
            .y_labels(0)
            .y_label_formatter(&|_| String::new())
            .disable_y_mesh()
            .x_desc("workload (lifecycle order)")
            .y_desc(format!("median / {base}'s median (log)"))
            .label_style((FONT, 22))
            .axis_desc_style((FONT, 24))
            .draw(),
    )?;
    // Ticks at powers of two either side of 1, each a grid line and a label.
    let (x0, y0) = plot_area.get_base_pixel();
    for k in -6i32..=6 {
        let r = 2f64.powi(k);
        if r < lo || r > hi {
            continue;
        }
        drawing(
            figure,
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(0.0, r), (data.len() as f64, r)],
                RGBColor(220, 220, 220).stroke_width(1),
            ))),
        )?;
        let label = if k >= 0 {
            format!("{}x", 1u32 << k)
        } else {
            format!("1/{}", 1u32 << -k)
        };
        let (px, py) = chart.backend_coord(&(0.0, r));
        drawing(
            figure,
            plot_area.draw(&Text::new(label, (px - x0 - 60, py - y0 - 11), (FONT, 22))),
        )?;
    }
    let width = 0.8 / models.len().max(1) as f64;
    for (g, (_, bars)) in data.iter().enumerate() {
        for (m, model) in models.iter().enumerate() {
            let Some((_, ratio)) = bars.iter().find(|(name, _)| name == model) else {
                continue;
            };
            let x0 = g as f64 + 0.1 + m as f64 * width;
            let colour = family_colour(&models, model);
            // Bars grow from the line at 1 (the baseline), up when slower, down when faster.
            drawing(
                figure,
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x0, 1.0), (x0 + width * 0.9, *ratio)],
                    colour.filled(),
                ))),
            )?;
        }
    }
    drawing(
        figure,
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 1.0), (data.len() as f64, 1.0)],
            BLACK.stroke_width(2),
        ))),
    )?;
    for (i, model) in models.iter().enumerate() {
        let y = 80 + i as i32 * 30;
        let colour = family_colour(&models, model);
        drawing(
            figure,
            legend_area.draw(&Rectangle::new([(10, y), (30, y + 20)], colour.filled())),
        )?;
        drawing(
            figure,
            legend_area.draw(&Text::new(model.clone(), (40, y - 1), (FONT, 22))),
        )?;
    }
    if models.iter().any(|m| is_reference(m)) {
        let y = 80 + models.len() as i32 * 30 + 10;
        for (i, line) in ["lighter:", "reference", "runs"].iter().enumerate() {
            drawing(
                figure,
                legend_area.draw(&Text::new(*line, (10, y + i as i32 * 26), (FONT, 22))),
            )?;
        }
    }
    drawing(figure, area.present())
}
