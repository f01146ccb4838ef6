//! Reading results files back (for `compare` and `plot`): as JSON values, so a file
//! written by a newer harness with more fields still reads, and every problem is an
//! `Unusable` error naming the file, never a panic. Schema version 1 (a "ci95" interval)
//! and 2 (an interval with its stated level) both read.

use anyhow::Result;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// Where a result's measurement lives: (model, workload, metric).
pub type Key = (String, String, String);

/// One measurement's summary as compare and plot need it.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub median: f64,
    /// The interval of the median and its confidence (`stats`).
    pub low: f64,
    pub high: f64,
    pub level: f64,
    /// The raw samples, in run order.
    pub samples: Vec<f64>,
}

/// An unusable input: the harness exits 2 with this message.
#[derive(Debug)]
pub struct Unusable(pub String);

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unusable {}

/// Everything `compare` reads of a results file.
#[derive(Debug, Clone, Default)]
pub struct ResultsFile {
    /// Measurements of models and workloads that ran with status ok.
    pub measured: BTreeMap<Key, Measured>,
    /// Each model's status, and each of its workloads' (`(model, "")` for the model).
    pub statuses: BTreeMap<(String, String), String>,
    /// What was measured: the facts two files must share to be compared, by name
    /// (corpus digest, durability, workloads, filesystem, kernel).
    pub config: BTreeMap<&'static str, String>,
}

/// Reads a results file: schema version 1 or 2; measurements of models that ran.
pub fn load(path: &Path) -> Result<BTreeMap<Key, Measured>> {
    Ok(load_file(path)?.measured)
}

/// Reads a results file whole (see `ResultsFile`).
pub fn load_file(path: &Path) -> Result<ResultsFile> {
    let unusable = |msg: String| anyhow::Error::new(Unusable(format!("{}: {msg}", path.display())));
    let text = std::fs::read_to_string(path).map_err(|e| unusable(format!("cannot read: {e}")))?;
    let json: Value =
        serde_json::from_str(&text).map_err(|e| unusable(format!("not JSON: {e}")))?;
    of_json(&json).map_err(unusable)
}

/// The measurements of a results file already read as JSON.
pub fn measured_of(json: &Value) -> std::result::Result<BTreeMap<Key, Measured>, String> {
    Ok(of_json(json)?.measured)
}

/// A results file's JSON as `ResultsFile`; the error says what is wrong with it.
fn of_json(json: &Value) -> std::result::Result<ResultsFile, String> {
    let unusable = |msg: String| msg;
    let version = match json.get("schema_version").and_then(Value::as_u64) {
        Some(v @ 1..=2) => v,
        Some(v) => {
            return Err(unusable(format!(
                "schema version {v}, this harness reads 1 and 2"
            )))
        }
        None => {
            return Err(unusable(
                "no schema_version: not a pkgbench results file".into(),
            ))
        }
    };
    let models = json
        .get("models")
        .and_then(Value::as_array)
        .ok_or_else(|| unusable("no models array".into()))?;
    let mut out = ResultsFile::default();
    let text_of = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "?".to_string(),
    };
    let at = |p: &str| json.pointer(p);
    out.config
        .insert("corpus digest", text_of(at("/corpus/digest")));
    out.config
        .insert("durability", text_of(at("/config/durability")));
    out.config
        .insert("workloads", text_of(at("/config/workloads")));
    out.config
        .insert("filesystem", text_of(at("/host/work_dir/filesystem")));
    out.config.insert("kernel", text_of(at("/host/kernel")));
    for model in models {
        let name = model.get("name").and_then(Value::as_str).unwrap_or("?");
        let status = model.get("status").and_then(Value::as_str).unwrap_or("?");
        out.statuses
            .insert((name.to_string(), String::new()), status.to_string());
        let Some(workloads) = model.get("workloads").and_then(Value::as_object) else {
            continue;
        };
        for (workload, w) in workloads {
            let wstatus = w.get("status").and_then(Value::as_str).unwrap_or(status);
            out.statuses
                .insert((name.to_string(), workload.clone()), wstatus.to_string());
            if status != "ok" {
                continue;
            }
            let Some(metrics) = w.get("metrics").and_then(Value::as_object) else {
                continue;
            };
            for (metric, s) in metrics {
                let num = |k: &str| s.get(k).and_then(Value::as_f64);
                let (Some(median), Some(min), Some(max)) = (num("median"), num("min"), num("max"))
                else {
                    return Err(unusable(format!(
                        "{name}/{workload}/{metric}: no median, min and max"
                    )));
                };
                let samples: Vec<f64> = s
                    .get("samples")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default();
                // Version 1 called its interval a bootstrap 95%: read it, with the level
                // its sample count really gives.
                let (low, high, level) = if version == 1 {
                    let mut sorted = samples.clone();
                    sorted.sort_by(f64::total_cmp);
                    let level = if sorted.is_empty() {
                        0.0
                    } else {
                        crate::stats::median_interval(&sorted).level
                    };
                    (
                        num("ci95_low").unwrap_or(min),
                        num("ci95_high").unwrap_or(max),
                        level,
                    )
                } else {
                    (
                        num("ci_low").unwrap_or(min),
                        num("ci_high").unwrap_or(max),
                        num("ci_level").unwrap_or(0.0),
                    )
                };
                out.measured.insert(
                    (name.to_string(), workload.clone(), metric.clone()),
                    Measured {
                        median,
                        low,
                        high,
                        level,
                        samples,
                    },
                );
            }
        }
    }
    Ok(out)
}
