//! Figures from results files, drawn with plotters as SVG and PNG, one module per figure
//! kind (criterion's `Plotter` layout): grouped bars per workload with interval
//! whiskers (`bars`), install phases as stacked bars (`phases`), install time by
//! stage (`stages`: extraction, hooks, triggers... in one colour each), and scaling curves
//! of a sweep on log axes (`scaling`).
//!
//! Text is drawn with DejaVu Sans, shipped inside the binary and registered with plotters
//! at start, so PNG figures look the same on every machine: no system font lookup. SVG
//! text names the same family and is drawn by the viewer. Sizes are chosen for a paper's
//! column: 1050 x 700 pixels, text of at least 22 pixels (8 pt at 3.5 inches wide).

pub mod bars;
pub mod phases;
pub mod scaling;
pub mod stages;

use crate::results::read::{Key, Measured};
use anyhow::{anyhow, Context, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

pub const SIZE: (u32, u32) = (1050, 700);
pub const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Registers the shipped font as plotters' "sans-serif", once per process.
pub fn register_shipped_font() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut outcome = Ok(());
    ONCE.call_once(|| {
        outcome = register_font(FONT, FontStyle::Normal, FONT_BYTES)
            .map_err(|_| anyhow!("the shipped font DejaVuSans.ttf does not parse"));
    });
    outcome
}

/// One results file's measurements with the label its bars carry.
pub struct Series {
    pub label: String,
    pub measured: BTreeMap<Key, Measured>,
}

/// Distinguishable colours (Okabe and Ito's palette, safe for colour blindness).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

/// Turns a plotters error into an anyhow error naming the figure.
pub fn drawing<T, E: std::fmt::Debug>(figure: &Path, r: Result<T, E>) -> Result<T> {
    r.map_err(|e| anyhow!("drawing {}: {e:?}", figure.display()))
}

/// A chart with one slot per model on the x axis (labelled with the model's name under
/// the slot's middle) and a linear y axis from 0 to `ymax`, as bars and phases use it.
pub fn model_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, plotters::coord::Shift>,
    figure: &Path,
    title: &str,
    names: &[String],
    ymax: f64,
    y_desc: &str,
) -> Result<ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>> {
    let mut chart = drawing(
        figure,
        ChartBuilder::on(area)
            .caption(title, (FONT, 30))
            .margin(20)
            .x_label_area_size(60)
            .y_label_area_size(110)
            .build_cartesian_2d(0.0..names.len() as f64, 0.0..ymax.max(1e-3)),
    )?;
    drawing(
        figure,
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(names.len() * 2 + 1)
            .x_label_formatter(&|x| {
                // Only the slots' middles (0.5, 1.5, ...) carry a name.
                let i = (*x - 0.5).round();
                if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc("model")
            .y_desc(y_desc)
            .label_style((FONT, 22))
            .axis_desc_style((FONT, 24))
            .draw(),
    )?;
    Ok(chart)
}

/// Draws one figure as `BASE.svg` and `BASE.png` with the same drawing code.
pub fn both_formats(
    base: &Path,
    draw_svg: impl FnOnce(DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<()>,
    draw_png: impl FnOnce(DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<Vec<PathBuf>> {
    let svg = base.with_extension("svg");
    let png = base.with_extension("png");
    {
        let area = SVGBackend::new(&svg, SIZE).into_drawing_area();
        draw_svg(area)?;
    }
    {
        let area = BitMapBackend::new(&png, SIZE).into_drawing_area();
        draw_png(area)?;
    }
    Ok(vec![svg, png])
}

/// Every figure for `series` into `out`: one bar chart per workload, one phase chart
/// and one stage chart per series. Returns the files written.
pub fn plot_all(series: &[Series], out: &Path) -> Result<Vec<PathBuf>> {
    register_shipped_font()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();
    let mut workloads: Vec<&str> = series
        .iter()
        .flat_map(|s| s.measured.keys().map(|k| k.1.as_str()))
        .collect();
    workloads.sort();
    workloads.dedup();
    for workload in workloads {
        written.extend(bars::plot_workload(series, workload, out)?);
    }
    for (i, s) in series.iter().enumerate() {
        written.extend(phases::plot_phases(s, i, out)?);
        written.extend(stages::plot_stages(s, i, out)?);
    }
    Ok(written)
}
