//! results.json and results/SCHEMA.md stay in step: every field the harness writes is
//! documented, and every documented field is written.

use harness::host::host_facts;
use harness::results::csv::{to_csv, HEADER};
use harness::results::{
    CorpusRecord, ModelResult, RunConfigRecord, RunResults, Status, ToolFacts, WorkloadResult,
    SCHEMA_VERSION,
};
use harness::stats::Summary;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn sample_results() -> RunResults {
    let mut model = ModelResult::new("hooks", "dpkg", Status::Ok, None);
    let mut w = WorkloadResult {
        status: Some(Status::Ok),
        ..Default::default()
    };
    w.metrics
        .insert("wall_ns".into(), Summary::of(&[3.0, 1.0, 2.0]).unwrap());
    model.workloads.insert("install".into(), w);
    RunResults {
        schema_version: SCHEMA_VERSION,
        tool: ToolFacts {
            name: "pkgbench",
            version: "0",
            git_commit: "x".into(),
        },
        started_utc: "t".into(),
        finished_utc: None,
        host: host_facts(Path::new("/")),
        config: RunConfigRecord {
            models: vec!["hooks".into()],
            workloads: vec!["install".into()],
            corpus: "c".into(),
            runs: 3,
            warmup: 1,
            durability: "native".into(),
            jobs: 16,
            work_dir: "/w".into(),
            private_mount_namespace: true,
            caches_dropped: true,
        },
        corpus: CorpusRecord {
            name: "c".into(),
            generator_version: 1,
            packages: 1,
            files: 1,
            dirs: 1,
            symlinks: 0,
            file_bytes: 1,
            digest: "d".into(),
        },
        models: vec![model],
    }
}

fn field_paths(value: &Value, prefix: &str, parent_key: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = match parent_key {
                    "workloads" => "{name}",
                    "metrics" => "{metric}",
                    _ => k.as_str(),
                };
                let path = if prefix.is_empty() {
                    key.to_string()
                } else {
                    format!("{prefix}.{key}")
                };
                out.insert(path.clone());
                field_paths(v, &path, k, out);
            }
        }
        Value::Array(items) => {
            for item in items.iter().filter(|i| i.is_object()) {
                field_paths(item, &format!("{prefix}[]"), "", out);
            }
        }
        _ => {}
    }
}

fn documented_fields() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../results/SCHEMA.md"))
        .unwrap();
    let table = doc.split("## Metrics").next().unwrap();
    table
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(f, _)| f.to_string()))
        .collect()
}

#[test]
fn every_written_field_is_documented_and_every_documented_field_is_written() {
    let json = serde_json::to_value(sample_results()).unwrap();
    let mut written = BTreeSet::new();
    field_paths(&json, "", "", &mut written);
    let documented = documented_fields();
    let undocumented: Vec<_> = written.difference(&documented).collect();
    let unwritten: Vec<_> = documented.difference(&written).collect();
    assert!(
        undocumented.is_empty(),
        "fields missing from results/SCHEMA.md: {undocumented:?}"
    );
    assert!(
        unwritten.is_empty(),
        "documented fields the harness does not write: {unwritten:?}"
    );
    assert_eq!(json["schema_version"], 1);
}

#[test]
fn csv_has_one_row_per_sample() {
    let csv = to_csv(&sample_results());
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], HEADER);
    assert_eq!(
        &lines[1..],
        [
            "hooks,install,wall_ns,0,3",
            "hooks,install,wall_ns,1,1",
            "hooks,install,wall_ns,2,2"
        ]
    );
}
