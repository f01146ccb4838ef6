//! results.json and results/SCHEMA.md stay in step: every field the harness writes is
//! documented, and every documented field is written.

use harness::mock::results_with;
use harness::results::bmf::to_bmf;
use harness::results::csv::{to_csv, HEADER};
use harness::results::github_benchmark::to_github_benchmark;
use harness::results::{ModelResult, RunResults, Status, WorkloadResult};
use harness::stats::Summary;
use serde_json::Value;
use std::collections::BTreeSet;

fn sample_results() -> RunResults {
    let mut model = ModelResult::new("hooks", "dpkg", Status::Ok, None);
    let mut w = WorkloadResult {
        status: Some(Status::Ok),
        ..Default::default()
    };
    w.metrics
        .insert("wall_ns".into(), Summary::of(&[3.0, 1.0, 2.0]).unwrap());
    model.workloads.insert("install".into(), w);
    let mut results = results_with(vec![model]);
    // As a run with --link writes it.
    results.config.link = Some(harness::net::link::LinkRecord {
        spec: "100mbit".into(),
        rate_bits_per_s: 100_000_000,
        delay_us: None,
        qdiscs: vec!["pkgb-client: qdisc tbf 1: root".into()],
        routes: vec!["pkgb-client: 10.203.0.1 dev pkgb-client scope link congctl cubic".into()],
        server: "nginx",
        client: "ureq",
        url: "http://10.203.0.1:8080".into(),
    });
    results
}

/// `sample_results` with the reference of its model, so the fidelity table has a row.
fn sample_results_with_reference() -> RunResults {
    let mut models = sample_results().models;
    let mut reference = models[0].clone();
    reference.name = "ref-dpkg".into();
    models.push(reference);
    let mut results = results_with(models);
    results.config.link = sample_results().config.link;
    results
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
                } else if prefix.starts_with("calibration.") {
                    // Every limit has the same fields: documented once as `calibration.*`.
                    format!("calibration.*.{key}")
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
    let json = serde_json::to_value(sample_results_with_reference()).unwrap();
    assert_eq!(json["fidelity"][0]["ratio"], 1.0);
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
    assert_eq!(json["schema_version"], 2);
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

#[test]
fn every_exporter_writes_what_its_consumer_parses() {
    let results = sample_results();
    // Bencher's BMF: benchmark -> measure -> value with bounds.
    let bmf: Value =
        serde_json::from_str(&serde_json::to_string(&to_bmf(&results)).unwrap()).unwrap();
    let m = &bmf["hooks/install"]["wall_ns"];
    assert_eq!(m["value"], 2.0);
    assert!(m["lower_value"].as_f64().unwrap() <= 2.0 && m["upper_value"].as_f64().unwrap() >= 2.0);
    // github-action-benchmark customSmallerIsBetter: a list of name, unit, value.
    let gab: Value =
        serde_json::from_str(&serde_json::to_string(&to_github_benchmark(&results)).unwrap())
            .unwrap();
    let entries = gab.as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["name"], "hooks install wall_ns");
    assert_eq!(entries[0]["unit"], "ns");
    assert_eq!(entries[0]["value"], 2.0);
}

/// The table of models in results/SCHEMA.md, from the models' own descriptions.
fn models_table() -> String {
    let mut out = String::from(
        "| model | stands for | phases (install and upgrade, in order) | compared with | needs |\n|---|---|---|---|---|\n",
    );
    let quoted = |xs: &mut dyn Iterator<Item = String>| -> String {
        let v: Vec<String> = xs.map(|x| format!("`{x}`")).collect();
        if v.is_empty() {
            "-".into()
        } else {
            v.join(", ")
        }
    };
    for info in models::catalog() {
        let pairs = quoted(&mut info.compared_with.iter().map(|p| {
            let kind = match p.kind {
                models::catalog::PairKind::Fidelity => "fidelity",
                models::catalog::PairKind::Readers => "readers",
            };
            format!("{} ({kind})", p.reference)
        }));
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            info.name,
            info.stands_for,
            quoted(&mut info.phases.iter().map(|p| p.to_string())),
            pairs,
            quoted(&mut info.needs.iter().map(|n| n.name())),
        ));
    }
    out
}

#[test]
fn the_schemas_table_of_models_is_the_catalogs() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../results/SCHEMA.md"))
        .unwrap();
    let begin = "<!-- begin models: generated from models::catalog -->\n";
    let start = doc.find(begin).expect("the begin marker") + begin.len();
    let end = doc[start..]
        .find("<!-- end models -->")
        .expect("the end marker")
        + start;
    let expected = models_table();
    assert!(
        doc[start..end] == expected,
        "results/SCHEMA.md's table of models is not the catalog's; replace it with:\n{expected}"
    );
    // Every model's name appears where results name models.
    for info in models::catalog() {
        assert!(
            doc.contains(&format!("`{}`", info.name)),
            "{} missing from SCHEMA.md",
            info.name
        );
    }
}
