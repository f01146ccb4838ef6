//! Install phases as stacked bars: where each model's install time goes (median of each
//! phase, stacked in the order the model reports them).

use super::{both_formats, drawing, Series, FONT, PALETTE};
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// (model, [(phase, median ms)]).
type Stacks = Vec<(String, Vec<(String, f64)>)>;

/// Phases in the order installs go through them, so stacks read bottom-up in time;
/// a phase not listed here goes on top, by name.
const PHASE_ORDER: [&str; 14] = [
    "fetch", "verify", "hooks", "unpack", "restore", "database", "register", "profile", "loop",
    "squashfs", "overlay", "notify", "triggers", "copy",
];

fn phase_rank(phase: &str) -> usize {
    PHASE_ORDER
        .iter()
        .position(|p| *p == phase)
        .unwrap_or(PHASE_ORDER.len())
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
    both_formats(
        &base,
        |a| draw(a, &base, &title, &data),
        |a| draw(a, &base, &title, &data),
    )
}

fn draw<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    figure: &Path,
    title: &str,
    data: &Stacks,
) -> Result<()> {
    drawing(figure, area.fill(&WHITE))?;
    let ymax = data
        .iter()
        .map(|(_, p)| p.iter().map(|x| x.1).sum::<f64>())
        .fold(0.0f64, f64::max)
        // Headroom for the legend above the tallest stack.
        * 1.45;
    let names: Vec<String> = data.iter().map(|(m, _)| m.clone()).collect();
    let mut phase_names: Vec<String> = Vec::new();
    for (_, phases) in data {
        for (p, _) in phases {
            if !phase_names.contains(p) {
                phase_names.push(p.clone());
            }
        }
    }
    phase_names.sort_by(|a, b| (phase_rank(a), a).cmp(&(phase_rank(b), b)));
    let mut chart = drawing(
        figure,
        ChartBuilder::on(&area)
            .caption(title, (FONT, 30))
            .margin(20)
            .x_label_area_size(60)
            .y_label_area_size(110)
            .build_cartesian_2d(0.0..data.len() as f64, 0.0..ymax.max(1e-3)),
    )?;
    drawing(
        figure,
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(data.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = (*x - 0.5).round();
                if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc("model")
            .y_desc("install time (ms), median per phase")
            .label_style((FONT, 22))
            .axis_desc_style((FONT, 24))
            .draw(),
    )?;
    for (p, phase) in phase_names.iter().enumerate() {
        let colour = PALETTE[p % PALETTE.len()];
        let rects: Vec<Rectangle<(f64, f64)>> = data
            .iter()
            .enumerate()
            .filter_map(|(g, (_, phases))| {
                let below: f64 = phases
                    .iter()
                    .take_while(|(name, _)| name != phase)
                    .map(|x| x.1)
                    .sum();
                let own = phases.iter().find(|(name, _)| name == phase)?.1;
                Some(Rectangle::new(
                    [(g as f64 + 0.2, below), (g as f64 + 0.8, below + own)],
                    colour.filled(),
                ))
            })
            .collect();
        let anno = drawing(figure, chart.draw_series(rects))?;
        anno.label(phase.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 8), (x + 16, y + 8)], colour.filled()));
    }
    drawing(
        figure,
        chart
            .configure_series_labels()
            .label_font((FONT, 22))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw(),
    )?;
    drawing(figure, area.present())
}
