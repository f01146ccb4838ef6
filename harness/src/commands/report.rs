//! `harness report RESULTS.json... --out DIR [--baseline MODEL] [--compare BASE.json]`:
//! the figures of the files into `DIR/figures` and one self-contained `DIR/report.html`
//! (`crate::report`), with `compare`'s verdicts against BASE when given. Unusable input
//! exits 2 with a message, as `plot` and `compare` do.

use crate::commands::plot::series_label;
use crate::plot::{plot_all, Series};
use crate::report::{svg_figures, write, Page, Section};
use crate::results::read::{load, load_file, Unusable};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn report(
    inputs: &[PathBuf],
    baseline: Option<&str>,
    compare_with: Option<&Path>,
    out: &Path,
) -> Result<ExitCode> {
    match build(inputs, baseline, compare_with, out) {
        Ok(path) => {
            println!("{}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.downcast_ref::<Unusable>().is_some() => {
            eprintln!("harness report: {e:#}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e),
    }
}

fn build(
    inputs: &[PathBuf],
    baseline: Option<&str>,
    compare_with: Option<&Path>,
    out: &Path,
) -> Result<PathBuf> {
    let mut series = Vec::new();
    let mut jsons = Vec::new();
    for input in inputs {
        series.push(Series {
            label: series_label(input),
            measured: load(input)?,
        });
        let text = std::fs::read_to_string(input)
            .with_context(|| format!("reading {}", input.display()))?;
        jsons.push(
            serde_json::from_str::<serde_json::Value>(&text)
                .map_err(|e| Unusable(format!("{}: not JSON: {e}", input.display())))?,
        );
    }
    let figures = out.join("figures");
    plot_all(&series, baseline, &figures)?;
    let compare = match (compare_with, inputs.last()) {
        (Some(base), Some(new)) => {
            let comparison =
                crate::compare::compare(&load_file(base)?, &load_file(new)?, 0.05, None, true)?;
            Some((
                base.display().to_string(),
                crate::compare::markdown(&comparison, 0.05),
            ))
        }
        _ => None,
    };
    let page = Page {
        title: format!(
            "pkgbench report: {}",
            series
                .iter()
                .map(|s| s.label.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        sections: jsons
            .iter()
            .zip(&series)
            .map(|(results, s)| Section {
                results,
                label: s.label.clone(),
                baseline,
            })
            .collect(),
        texts: Vec::new(),
        figures: svg_figures(&figures),
        compare,
    };
    write(&page, out)
}
