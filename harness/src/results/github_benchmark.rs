//! github-action-benchmark's `customSmallerIsBetter` input: a list of `{name, unit, value,
//! range}`. Counts are left out: fewer files read is not better, it is different work.

use super::RunResults;
use serde_json::{json, Value};

pub fn to_github_benchmark(results: &RunResults) -> Value {
    let mut out = Vec::new();
    for model in &results.models {
        for (workload, w) in &model.workloads {
            for (metric, s) in &w.metrics {
                let unit = if metric.ends_with("_ns") {
                    "ns"
                } else if metric.ends_with("_bytes") {
                    "bytes"
                } else {
                    continue;
                };
                out.push(json!({
                    "name": format!("{} {} {}", model.name, workload, metric),
                    "unit": unit,
                    "value": s.median,
                    "range": format!("{} .. {}", s.ci_low, s.ci_high),
                    "extra": format!("{} samples; corpus {}", s.samples.len(), results.corpus.name),
                }));
            }
        }
    }
    Value::Array(out)
}
