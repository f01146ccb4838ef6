//! Install time by stage as stacked bars (`results::stages`): every model's install in
//! the same colours for the same kind of work, so dpkg's hooks and triggers, Nix's
//! restore and registration and an image model's activation read side by side.

use super::phases::{draw_stacks, Stacks};
use super::{both_formats, Series, PALETTE};
use crate::results::stages::install_stages;
use anyhow::Result;
use models::catalog::Stage;
use plotters::style::RGBColor;
use std::path::{Path, PathBuf};

/// A stage's colour: the same in every figure (the phase figure shades it per phase).
pub fn colour(stage: Stage) -> RGBColor {
    let i = Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0);
    PALETTE[i % PALETTE.len()]
}

/// The time no phase covers, drawn light grey on top.
const OTHER: RGBColor = RGBColor(200, 200, 200);

pub fn plot_stages(series: &Series, index: usize, out: &Path) -> Result<Vec<PathBuf>> {
    let mut splits = install_stages(&series.measured);
    let order = super::display_order(splits.iter().map(|s| s.model.clone()).collect());
    splits.sort_by_key(|s| order.iter().position(|o| *o == s.model));
    if splits.iter().all(|s| s.stages.is_empty()) {
        return Ok(Vec::new());
    }
    let data: Stacks = splits
        .iter()
        .map(|s| {
            let mut parts: Vec<(String, f64)> = s
                .stages
                .iter()
                .map(|(stage, ns)| (stage.name().to_string(), ns / 1e6))
                .collect();
            parts.push(("other".to_string(), s.other_ns / 1e6));
            (s.model.clone(), parts)
        })
        .collect();
    let mut legend: Vec<(String, RGBColor)> = Stage::ALL
        .into_iter()
        .filter(|st| splits.iter().any(|s| s.stages.iter().any(|x| x.0 == *st)))
        .map(|st| (st.name().to_string(), colour(st)))
        .collect();
    legend.push(("other".to_string(), OTHER));
    let base = out.join(if index == 0 {
        "install-stages".to_string()
    } else {
        format!("install-stages-{index}")
    });
    let title = format!("install by stage ({})", series.label);
    let y_desc = "install time (ms), median per stage";
    both_formats(
        &base,
        |a| draw_stacks(a, &base, &title, y_desc, &data, &legend),
        |a| draw_stacks(a, &base, &title, y_desc, &data, &legend),
    )
}
