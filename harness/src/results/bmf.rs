//! Bencher's Metric Format (BMF): `{"MODEL/WORKLOAD": {"METRIC": {"value", "lower_value",
//! "upper_value"}}}`, the median with its interval (order statistics, level in results.json), for `bencher run --adapter json`.

use super::RunResults;
use serde_json::{json, Map, Value};

pub fn to_bmf(results: &RunResults) -> Value {
    let mut out = Map::new();
    for model in &results.models {
        for (workload, w) in &model.workloads {
            let mut measures = Map::new();
            for (metric, s) in &w.metrics {
                measures.insert(
                    metric.clone(),
                    json!({"value": s.median, "lower_value": s.ci_low, "upper_value": s.ci_high}),
                );
            }
            if !measures.is_empty() {
                out.insert(
                    format!("{}/{}", model.name, workload),
                    Value::Object(measures),
                );
            }
        }
    }
    Value::Object(out)
}
