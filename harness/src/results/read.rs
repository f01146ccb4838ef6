//! Reading results files back (for `compare` and `plot`): as JSON values, so a file
//! written by a newer harness with more fields still reads, and every problem is an
//! `Unusable` error naming the file, never a panic.

use anyhow::Result;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// Where a result's measurement lives: (model, workload, metric).
pub type Key = (String, String, String);

/// One measurement's summary as compare needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    pub median: f64,
    pub low: f64,
    pub high: f64,
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

/// Reads a results file: schema version 1 and its measurements of models that ran.
pub fn load(path: &Path) -> Result<BTreeMap<Key, Measured>> {
    let unusable = |msg: String| anyhow::Error::new(Unusable(format!("{}: {msg}", path.display())));
    let text = std::fs::read_to_string(path).map_err(|e| unusable(format!("cannot read: {e}")))?;
    let json: Value =
        serde_json::from_str(&text).map_err(|e| unusable(format!("not JSON: {e}")))?;
    match json.get("schema_version").and_then(Value::as_u64) {
        Some(1) => {}
        Some(v) => {
            return Err(unusable(format!(
                "schema version {v}, this harness reads 1"
            )))
        }
        None => {
            return Err(unusable(
                "no schema_version: not a pkgbench results file".into(),
            ))
        }
    }
    let models = json
        .get("models")
        .and_then(Value::as_array)
        .ok_or_else(|| unusable("no models array".into()))?;
    let mut out = BTreeMap::new();
    for model in models {
        let name = model.get("name").and_then(Value::as_str).unwrap_or("?");
        if model.get("status").and_then(Value::as_str) != Some("ok") {
            continue;
        }
        let Some(workloads) = model.get("workloads").and_then(Value::as_object) else {
            continue;
        };
        for (workload, w) in workloads {
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
                // Files without intervals fall back to the sample range.
                let low = num("ci95_low").unwrap_or(min);
                let high = num("ci95_high").unwrap_or(max);
                out.insert(
                    (name.to_string(), workload.clone(), metric.clone()),
                    Measured { median, low, high },
                );
            }
        }
    }
    Ok(out)
}
