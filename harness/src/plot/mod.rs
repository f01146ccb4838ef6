//! Figures from results files, drawn with plotters as SVG and PNG, one module per figure
//! kind (criterion's `Plotter` layout): grouped bars per workload with interval
//! whiskers (`bars`), install phases as stacked bars (`phases`), install time by
//! stage (`stages`: extraction, hooks, triggers... in one colour each), every workload
//! normalised to a baseline model (`normalised`), and scaling curves
//! of a sweep on log axes (`scaling`).
//!
//! Text is drawn with DejaVu Sans, shipped inside the binary and registered with plotters
//! at start, so PNG figures look the same on every machine: no system font lookup. SVG
//! text names the same family and is drawn by the viewer. Sizes are chosen for a paper's
//! column: 1050 x 700 pixels, text of at least 22 pixels (8 pt at 3.5 inches wide).

pub mod bars;
pub mod normalised;
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

/// Models in the order figures show them: each model (catalog order) followed by the
/// references that stand beside it (`ModelInfo::reference_for`); names the catalog does
/// not know (a test's mock) after them, by name.
pub fn display_order(mut names: Vec<String>) -> Vec<String> {
    let catalog = models::catalog::catalog();
    let rank = |name: &str| -> (usize, usize, String) {
        let Some(pos) = catalog.iter().position(|m| m.name == name) else {
            return (usize::MAX, 0, name.to_string());
        };
        match catalog[pos].reference_for {
            Some(model) => (
                catalog.iter().position(|m| m.name == model).unwrap_or(pos),
                1 + pos,
                String::new(),
            ),
            None => (pos, 0, String::new()),
        }
    };
    names.sort_by_key(|n| rank(n));
    names.dedup();
    names
}

/// Whether `name` is a reference run (drawn in a lighter shade of its model's colour).
pub fn is_reference(name: &str) -> bool {
    models::catalog::find(name).is_some_and(|m| m.reference_for.is_some())
}

/// The colour of `name` among `names` (in display order): one colour per model, its
/// references in a lighter shade of it.
pub fn family_colour(names: &[String], name: &str) -> RGBColor {
    let family = |n: &str| {
        models::catalog::find(n)
            .and_then(|m| m.reference_for)
            .map_or_else(|| n.to_string(), str::to_string)
    };
    let mut families: Vec<String> = names.iter().map(|n| family(n)).collect();
    families.dedup();
    let i = families
        .iter()
        .position(|f| *f == family(name))
        .unwrap_or(0);
    let colour = PALETTE[i % PALETTE.len()];
    if is_reference(name) {
        lighter(colour)
    } else {
        colour
    }
}

/// `colour` mixed half-way with white: the shade of a reference.
pub fn lighter(colour: RGBColor) -> RGBColor {
    let mix = |c: u8| c + (255 - c) / 2;
    RGBColor(mix(colour.0), mix(colour.1), mix(colour.2))
}

/// Size of the slot labels under a chart.
const LABEL_SIZE: u32 = 22;

/// A chart with one slot per name on the x axis and a linear y axis from 0 to `ymax`, as
/// bars and stacks use it. Each name is written under its slot's middle; when one is
/// wider than its slot, the names alternate between two rows, so that they never run
/// into each other (each row's names are two slots apart).
pub fn model_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, plotters::coord::Shift>,
    figure: &Path,
    title: &str,
    names: &[String],
    ymax: f64,
    y_desc: &str,
) -> Result<ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>> {
    slot_chart(area, figure, title, names, "model", ymax, y_desc)
}

/// `model_chart` with another description of the x axis.
pub fn slot_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, plotters::coord::Shift>,
    figure: &Path,
    title: &str,
    names: &[String],
    x_desc: &str,
    ymax: f64,
    y_desc: &str,
) -> Result<ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>> {
    let label_style = TextStyle::from((FONT, LABEL_SIZE).into_font());
    let widest = names
        .iter()
        .map(|n| area.estimate_text_size(n, &label_style).map_or(0, |s| s.0))
        .max()
        .unwrap_or(0);
    let (width, _) = area.dim_in_pixel();
    // The plot's width: the area less the margins and the y axis's labels.
    let slot = (width.saturating_sub(40 + 110) as f64 / names.len().max(1) as f64) as u32;
    let rows: i32 = if widest + 8 > slot { 2 } else { 1 };
    let mut chart = drawing(
        figure,
        ChartBuilder::on(area)
            .caption(title, (FONT, 30))
            .margin(20)
            .x_label_area_size(36 + 28 * rows as u32)
            .y_label_area_size(110)
            .build_cartesian_2d(0.0..names.len() as f64, 0.0..ymax.max(1e-3)),
    )?;
    drawing(
        figure,
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style((FONT, LABEL_SIZE))
            .axis_desc_style((FONT, 24))
            .draw(),
    )?;
    let (x0, y0) = area.get_base_pixel();
    for (i, name) in names.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        let w = area
            .estimate_text_size(name, &label_style)
            .map_or(0, |s| s.0) as i32;
        let row = if rows == 2 { i as i32 % 2 } else { 0 };
        drawing(
            figure,
            area.draw(&Text::new(
                name.clone(),
                (px - x0 - w / 2, py - y0 + 6 + row * 26),
                label_style.clone(),
            )),
        )?;
    }
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

/// Every figure for `series` into `out`: one bar chart per workload, and per series a
/// phase chart, a stage chart and every workload normalised to `baseline` (default: the
/// first model shown). Returns the files written.
pub fn plot_all(series: &[Series], baseline: Option<&str>, out: &Path) -> Result<Vec<PathBuf>> {
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
        written.extend(normalised::plot_normalised(s, i, baseline, out)?);
    }
    Ok(written)
}
