//! Install phases as stacked bars: where each model's install time goes (median of each
//! phase, stacked in the order the model reports them).

use super::{both_formats, drawing, model_chart, Series, FONT, SIZE};
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// (model, [(phase, median ms)]).
pub type Stacks = Vec<(String, Vec<(String, f64)>)>;

/// Pixels kept on the right for the legend.
const LEGEND_WIDTH: u32 = 190;

/// Sixteen distinguishable colours (Tableau 20's saturated and light halves), one per
/// phase name in a figure (a figure shows at most sixteen phases before colours repeat).
const PHASE_COLOURS: [RGBColor; 16] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(174, 199, 232),
    RGBColor(255, 187, 120),
    RGBColor(152, 223, 138),
    RGBColor(255, 152, 150),
    RGBColor(197, 176, 213),
    RGBColor(219, 219, 141),
];

/// A phase's place in the order the models describe (`models::catalog::phase_order`),
/// so stacks read bottom-up in time; a phase no model describes goes on top, by name.
fn phase_rank(phase: &str) -> usize {
    let order = models::catalog::phase_order();
    order
        .iter()
        .position(|p| *p == phase)
        .unwrap_or(order.len())
}

fn stacks(series: &Series) -> Stacks {
    let mut out: Stacks = Vec::new();
    for ((model, workload, metric), m) in &series.measured {
        let Some(phase) = metric
            .strip_prefix("phase_")
            .and_then(|p| p.strip_suffix("_ns"))
        else {
            continue;
        };
        if workload != "install" {
            continue;
        }
        match out.iter_mut().find(|(name, _)| name == model) {
            Some((_, phases)) => phases.push((phase.to_string(), m.median / 1e6)),
            None => out.push((model.clone(), vec![(phase.to_string(), m.median / 1e6)])),
        }
    }
    for (_, phases) in &mut out {
        phases.sort_by(|a, b| (phase_rank(&a.0), &a.0).cmp(&(phase_rank(&b.0), &b.0)));
    }
    out
}

pub fn plot_phases(series: &Series, index: usize, out: &Path) -> Result<Vec<PathBuf>> {
    let data = stacks(series);
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let base = out.join(if index == 0 {
        "install-phases".to_string()
    } else {
        format!("install-phases-{index}")
    });
    let title = format!("install phases ({})", series.label);
    let legend = phase_legend(&data);
    let y_desc = "install time (ms), median per phase";
    both_formats(
        &base,
        |a| draw_stacks(a, &base, &title, y_desc, &data, &legend),
        |a| draw_stacks(a, &base, &title, y_desc, &data, &legend),
    )
}

/// The legend of a phase figure: every phase that appears, in install order, each with
/// its colour.
fn phase_legend(data: &Stacks) -> Vec<(String, RGBColor)> {
    let mut phase_names: Vec<String> = Vec::new();
    for (_, phases) in data {
        for (p, _) in phases {
            if !phase_names.contains(p) {
                phase_names.push(p.clone());
            }
        }
    }
    phase_names.sort_by(|a, b| (phase_rank(a), a).cmp(&(phase_rank(b), b)));
    phase_names
        .into_iter()
        .enumerate()
        .map(|(i, p)| (p, PHASE_COLOURS[i % PHASE_COLOURS.len()]))
        .collect()
}

/// Stacked bars, one per model: each of its parts (named as in `legend`, stacked in the
/// order the model lists them) in the legend's colour, the legend in a column on the right.
pub fn draw_stacks<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    figure: &Path,
    title: &str,
    y_desc: &str,
    data: &Stacks,
    legend: &[(String, RGBColor)],
) -> Result<()> {
    drawing(figure, area.fill(&WHITE))?;
    let ymax = data
        .iter()
        .map(|(_, p)| p.iter().map(|x| x.1).sum::<f64>())
        .fold(0.0f64, f64::max)
        * 1.1;
    let names: Vec<String> = data.iter().map(|(m, _)| m.clone()).collect();
    // The legend gets its own column on the right, so it never hides a stack.
    let (plot_area, legend_area) = area.split_horizontally(SIZE.0 - LEGEND_WIDTH);
    let mut chart = model_chart(&plot_area, figure, title, &names, ymax, y_desc)?;
    for (p, (part, colour)) in legend.iter().enumerate() {
        let rects: Vec<Rectangle<(f64, f64)>> = data
            .iter()
            .enumerate()
            .filter_map(|(g, (_, parts))| {
                let below: f64 = parts
                    .iter()
                    .take_while(|(name, _)| name != part)
                    .map(|x| x.1)
                    .sum();
                let own = parts.iter().find(|(name, _)| name == part)?.1;
                Some(Rectangle::new(
                    [(g as f64 + 0.2, below), (g as f64 + 0.8, below + own)],
                    colour.filled(),
                ))
            })
            .collect();
        drawing(figure, chart.draw_series(rects))?;
        // Legend entries top to bottom in install order, beside the plot.
        let y = 80 + p as i32 * 30;
        drawing(
            figure,
            legend_area.draw(&Rectangle::new([(10, y), (30, y + 20)], colour.filled())),
        )?;
        drawing(
            figure,
            legend_area.draw(&Text::new(part.clone(), (40, y - 1), (FONT, 22))),
        )?;
    }
    drawing(figure, area.present())
}
