//! `harness plot RESULTS.json... --out DIR`: every figure for one or more runs.

use crate::plot::{plot_all, Series};
use crate::results::read::{load, Unusable};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The label of a results file in legends: its run directory's name.
pub fn series_label(path: &Path) -> String {
    path.parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

pub fn plot(inputs: &[PathBuf], baseline: Option<&str>, out: &Path) -> Result<ExitCode> {
    let mut series = Vec::new();
    for input in inputs {
        match load(input) {
            Ok(measured) => series.push(Series {
                label: series_label(input),
                measured,
            }),
            Err(e) if e.downcast_ref::<Unusable>().is_some() => {
                eprintln!("harness plot: {e:#}");
                return Ok(ExitCode::from(2));
            }
            Err(e) => return Err(e),
        }
    }
    let written = plot_all(&series, baseline, out)?;
    for f in &written {
        println!("{}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}
