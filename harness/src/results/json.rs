//! `results.json`: the whole run, versioned (see results/SCHEMA.md).

use super::RunResults;
use anyhow::{Context, Result};
use std::fs;
use std::path::Path;

/// Writes `results.json` atomically, so a reader never sees half a file.
pub fn write_json(results: &RunResults, path: &Path) -> Result<()> {
    write_value(
        &serde_json::to_value(results).context("serialising results")?,
        path,
    )
}

/// Writes any JSON value atomically.
pub fn write_value(value: &serde_json::Value, path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("serialising results")?;
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, text + "\n").with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {}", path.display()))
}
