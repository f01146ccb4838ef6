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
    let order = super::display_order(out.iter().map(|(m, _)| m.clone()).collect());
    out.sort_by_key(|(m, _)| order.iter().position(|o| o == m));
    for (_, phases) in &mut out {
        phases.sort_by_key(|(p, _)| placement(p));
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

/// Where a phase goes in stacks and legends: by stage (as the stage figure orders them),
/// then in install order; a phase no model describes last.
fn placement(phase: &str) -> (usize, usize, String) {
    let stage = stage_of(phase).map_or(usize::MAX, |st| {
        models::catalog::Stage::ALL
            .iter()
            .position(|s| *s == st)
            .unwrap_or(usize::MAX)
    });
    (stage, phase_rank(phase), phase.to_string())
}

/// The stage of `phase` in the first model that has it (models agree on a shared name).
fn stage_of(phase: &str) -> Option<models::catalog::Stage> {
    models::catalog::catalog()
        .iter()
        .find_map(|m| m.stage_of(phase))
}

/// `colour` mixed with white by `step` of `steps` (0: itself, the last: three quarters
/// white): the phases of one stage in shades of the stage's colour.
fn shade(colour: RGBColor, step: usize, steps: usize) -> RGBColor {
    let f = if steps <= 1 {
        0.0
    } else {
        0.75 * step as f64 / (steps - 1) as f64
    };
    let mix = |c: u8| (c as f64 + (255.0 - c as f64) * f).round() as u8;
    RGBColor(mix(colour.0), mix(colour.1), mix(colour.2))
}

/// The legend of a phase figure: every phase that appears, in install order, each in a
/// shade of its stage's colour (`stages`), so a figure has at most as many hues as there
/// are stages, in the same order in every figure. A phase no model describes is grey.
fn phase_legend(data: &Stacks) -> Vec<(String, RGBColor)> {
    let mut phase_names: Vec<String> = Vec::new();
    for (_, phases) in data {
        for (p, _) in phases {
            if !phase_names.contains(p) {
                phase_names.push(p.clone());
            }
        }
    }
    phase_names.sort_by_key(|p| placement(p));
    let stages: Vec<Option<models::catalog::Stage>> =
        phase_names.iter().map(|p| stage_of(p)).collect();
    phase_names
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let stage = stages[i];
            let step = stages[..i].iter().filter(|s| **s == stage).count();
            let steps = stages.iter().filter(|s| **s == stage).count();
            let base = stage.map_or(RGBColor(150, 150, 150), super::stages::colour);
            (p, shade(base, step, steps))
        })
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
