//! `harness compare BASE.json NEW.json`: per measurement a verdict, and the models and
//! workloads that stopped being ok; exit 1 when anything regressed (unless
//! --report-only), 2 on unusable input (a different corpus, unless
//! --allow-config-change), with a message, never a panic.

use crate::compare::{compare, markdown, parse_threshold};
use crate::results::read::{load_file, Unusable};
use anyhow::Result;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// The table and whether anything regressed.
fn judge_files(
    base: &Path,
    new: &Path,
    threshold: &str,
    metrics: Option<&str>,
    allow_config_change: bool,
) -> Result<(String, bool)> {
    let threshold = parse_threshold(threshold).map_err(|e| Unusable(format!("{e:#}")))?;
    let metrics: Option<Vec<String>> = metrics.map(|m| m.split(',').map(String::from).collect());
    let comparison = compare(
        &load_file(base)?,
        &load_file(new)?,
        threshold,
        metrics.as_deref(),
        allow_config_change,
    )?;
    Ok((markdown(&comparison, threshold), comparison.regressed()))
}

pub fn compare_files(
    base: &Path,
    new: &Path,
    threshold: &str,
    metrics: Option<&str>,
    report_only: bool,
    allow_config_change: bool,
) -> Result<ExitCode> {
    match judge_files(base, new, threshold, metrics, allow_config_change) {
        Ok((table, regressed)) => {
            print!("{table}");
            // GitHub Actions shows this file on the run's page.
            if let Ok(summary) = std::env::var("GITHUB_STEP_SUMMARY") {
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(summary)
                {
                    let _ = writeln!(f, "{table}");
                }
            }
            Ok(if regressed && !report_only {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Err(e) if e.downcast_ref::<Unusable>().is_some() => {
            eprintln!("harness compare: {e:#}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e),
    }
}
