//! `harness sweep` end to end, as a user types it: sweep.json holds exactly the fields
//! results/SCHEMA.md documents (section "sweep.json"), a row per model and N, each N's
//! results.json, and the scaling figures. Needs root (cold caches, `ldconfig -r`, loop
//! devices and mounts for `overlay`).

use harness::testing::require_root;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Objects documented as "as in results.json", and summaries, are not descended into.
const OPAQUE: [&str; 6] = [
    "tool",
    "host",
    "calibration",
    "corpora[].corpus",
    "rows[].lookup.{name}.cold_ns",
    "rows[].lookup.{name}.warm_ns",
];

fn field_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = match prefix {
                    "rows[].install_phases_ns" => "{phase}",
                    _ => k.as_str(),
                };
                let path = if prefix.is_empty() {
                    key.to_string()
                } else {
                    format!("{prefix}.{key}")
                };
                out.insert(path.clone());
                // The three looked-up names share one documented shape.
                let below = if prefix == "rows[].lookup" && v.is_object() {
                    "rows[].lookup.{name}".to_string()
                } else {
                    path
                };
                if !OPAQUE.contains(&below.as_str()) {
                    field_paths(v, &below, out);
                }
            }
        }
        Value::Array(items) => {
            for item in items.iter().filter(|i| i.is_object()) {
                field_paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

fn documented_fields() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../results/SCHEMA.md"))
        .unwrap();
    let section = doc
        .split("## sweep.json")
        .nth(1)
        .expect("SCHEMA.md has a sweep.json section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(f, _)| f.to_string()))
        .collect()
}

fn sweep(models: &str, dir: &Path) -> Value {
    let out = dir.join("out");
    let status = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "sweep",
            "--model",
            models,
            "--packages",
            "5,1",
            "--runs",
            "1",
        ])
        .args(["--lookup-samples", "2"])
        .arg("--work-dir")
        .arg(dir.join("work"))
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(out.join("sweep.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn assert_rows_and_files(v: &Value, dir: &Path, models: &[&str]) {
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["kind"], "sweep");
    assert_eq!(v["config"]["packages"], serde_json::json!([1, 5]));
    assert_eq!(v["config"]["private_mount_namespace"], true);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * models.len());
    for r in rows {
        assert_eq!(r["status"], "ok", "{:?}", r["reason"]);
        let n = r["packages"].as_f64().unwrap();
        let wall = r["install_wall_ns"].as_f64().unwrap();
        assert!(wall > 0.0);
        assert_eq!(r["install_per_package_ns"].as_f64().unwrap(), wall / n);
        assert!(r["cold_read_wall_ns"].as_f64().unwrap() > 0.0);
        assert!(r["many_file_wall_ns"].as_f64().unwrap() > 0.0);
        assert!(!r["install_phases_ns"].as_object().unwrap().is_empty());
    }
    let out = dir.join("out");
    for n in [1, 5] {
        let point: Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(format!("n{n}/results.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(point["corpus"]["name"], format!("synthetic:{n}"));
        assert_eq!(point["corpus"]["packages"], n);
    }
    for ext in ["svg", "png"] {
        let f = out.join("figures").join(format!("scaling-install.{ext}"));
        assert!(
            std::fs::metadata(&f).unwrap().len() > 1000,
            "{}",
            f.display()
        );
    }
    // The sweep's report: its table, each N's matrix, the scaling figures inline.
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        report.contains("data-figure=\"scaling-install\""),
        "{}",
        out.display()
    );
    assert!(
        report.contains("<table class=\"matrix\">"),
        "{}",
        out.display()
    );
}

#[test]
fn root_sweep_of_hooks_writes_documented_sweep_json_and_figures() {
    if !require_root("root_sweep_of_hooks_writes_documented_sweep_json_and_figures") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let v = sweep("hooks", dir.path());
    assert_rows_and_files(&v, dir.path(), &["hooks"]);
    let mut written = BTreeSet::new();
    field_paths(&v, "", &mut written);
    let documented = documented_fields();
    let undocumented: Vec<_> = written.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "not in SCHEMA.md: {undocumented:?}"
    );
    // Lookups are written for overlay only.
    let missing: Vec<_> = documented
        .difference(&written)
        .filter(|f| !f.starts_with("rows[].lookup.") && *f != "rows[].install_phases_ns.{phase}")
        .collect();
    assert!(missing.is_empty(), "documented, not written: {missing:?}");
    assert!(v["rows"][0]["lookup"].is_null());
}

#[test]
fn root_sweep_of_overlay_measures_lookups_and_leaves_no_mount() {
    if !require_root("root_sweep_of_overlay_measures_lookups_and_leaves_no_mount") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let v = sweep("overlay", dir.path());
    assert_rows_and_files(&v, dir.path(), &["overlay"]);
    let mut written = BTreeSet::new();
    field_paths(&v, "", &mut written);
    let documented = documented_fields();
    assert_eq!(
        written
            .symmetric_difference(&documented)
            .collect::<Vec<_>>(),
        Vec::<&String>::new()
    );
    for r in v["rows"].as_array().unwrap() {
        let l = &r["lookup"];
        assert!(l["error"].is_null(), "{}", l["error"]);
        assert_eq!(l["layers"], r["packages"]);
        for name in ["first_layer", "last_layer", "missing"] {
            assert_eq!(l[name]["cold_ns"]["samples"].as_array().unwrap().len(), 2);
            assert!(l[name]["warm_ns"]["median"].as_f64().unwrap() > 0.0);
        }
        assert!(l["first_layer"]["package"]
            .as_str()
            .unwrap()
            .starts_with("s00000-"));
    }
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(
        rows[1]["lookup"]["last_layer"]["package"]
            .as_str()
            .unwrap()
            .get(..7),
        Some("s00004-")
    );
    for ext in ["svg", "png"] {
        let f = dir
            .path()
            .join("out/figures")
            .join(format!("scaling-overlay-lookup.{ext}"));
        assert!(f.exists(), "{}", f.display());
    }
    // The sweep's mounts lived in its private namespace: none is visible here, and no
    // loop device is left on one of its images.
    let here = dir.path().to_string_lossy().into_owned();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(&here), "{mountinfo}");
    for dev in std::fs::read_dir("/sys/block").unwrap() {
        let backing = dev.unwrap().path().join("loop/backing_file");
        if let Ok(file) = std::fs::read_to_string(backing) {
            assert!(!file.contains(&here), "loop device left on {file}");
        }
    }
}
