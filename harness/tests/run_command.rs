//! `harness run` end to end, as a user types it, on a small subset of the default corpus:
//! exit 0, results.json with samples of every workload for `hooks` whose view digest equals
//! the corpus digest, the models not built listed as not available, results.csv, and
//! beside them summary.md (the matrix, with ratios to hooks) and report.html.
//! Needs root (cold caches, `ldconfig -r`).

use harness::testing::require_root;
use serde_json::Value;
use std::process::Command;

#[test]
fn root_run_writes_results_for_hooks_into_out_dir() {
    if !require_root("root_run_writes_results_for_hooks_into_out_dir") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let status = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run", "--model", "all", "--runs", "2", "--warmup", "0"])
        .args([
            "--corpus",
            "debian-qemu:libc6,libgcc-s1,gcc-12-base,tar,libacl1,libselinux1,libpcre2-8-0",
        ])
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .arg("--out")
        .arg(&out_dir)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(out_dir.join("results.json")).unwrap();
    let r: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["schema_version"], 2);
    assert_eq!(r["config"]["caches_dropped"], true);
    assert_eq!(r["config"]["private_mount_namespace"], true);
    let models = r["models"].as_array().unwrap();
    assert_eq!(models[0]["name"], "hooks");
    assert_eq!(models[0]["status"], "ok", "{:?}", models[0]["reason"]);
    // Every model either ran with the corpus's digest and a sample of each workload per
    // run, or says why not; none is faked.
    for m in models {
        match m["status"].as_str().unwrap() {
            "ok" => {
                // A Nix store cannot hold the packages' modes: its view is compared under
                // the nix-store rule, every other view with the corpus's own digest.
                match m["mode_rule"].as_str().unwrap() {
                    "as-packaged" => {
                        assert_eq!(m["view_digest"], r["corpus"]["digest"], "{}", m["name"])
                    }
                    "nix-store" => {
                        assert_ne!(m["view_digest"], r["corpus"]["digest"], "{}", m["name"])
                    }
                    other => panic!("{}: mode rule {other}", m["name"]),
                }
                assert_eq!(m["digest_matches"], true, "{}", m["name"]);
                for w in ["install", "cold-read", "many-file"] {
                    let samples = m["workloads"][w]["metrics"]["wall_ns"]["samples"]
                        .as_array()
                        .unwrap();
                    assert_eq!(samples.len(), 2, "{} {w}", m["name"]);
                    assert!(samples.iter().all(|s| s.as_f64().unwrap() > 0.0), "{w}");
                }
            }
            "not_available" | "skipped" => {
                assert!(!m["reason"].as_str().unwrap().is_empty());
                assert!(m["workloads"].as_object().unwrap().is_empty());
            }
            other => panic!("{}: status {other}: {:?}", m["name"], m["reason"]),
        }
    }
    let csv = std::fs::read_to_string(out_dir.join("results.csv")).unwrap();
    assert!(
        csv.lines()
            .any(|l| l.starts_with("hooks,many-file,wall_ns,1,")),
        "{csv}"
    );
    let summary = std::fs::read_to_string(out_dir.join("summary.md")).unwrap();
    assert!(summary.contains("ratio to hooks"), "{summary}");
    assert!(summary.contains("install by stage"), "{summary}");
    let report = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(
        report.contains("data-model=\"hooks\""),
        "no hooks row in report.html"
    );
    assert!(
        report.contains("data-figure=\"install\""),
        "no install figure in report.html"
    );
}
