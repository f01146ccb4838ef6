//! `results.csv`: long format, one row per sample, for R, pandas and spreadsheets.

use super::RunResults;
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

pub const HEADER: &str = "model,workload,metric,sample,value";

pub fn to_csv(results: &RunResults) -> String {
    let mut out = String::from(HEADER);
    out.push('\n');
    for model in &results.models {
        for (workload, w) in &model.workloads {
            for (metric, summary) in &w.metrics {
                for (i, v) in summary.samples.iter().enumerate() {
                    let _ = writeln!(out, "{},{},{},{},{}", model.name, workload, metric, i, v);
                }
            }
        }
    }
    out
}

pub fn write_csv(results: &RunResults, path: &Path) -> Result<()> {
    fs::write(path, to_csv(results)).with_context(|| format!("writing {}", path.display()))
}
