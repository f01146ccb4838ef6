//! `harness compare` proves itself on a mock model with known timings: a rerun of the
//! same model is not flagged, the same model slowed by a set factor is, and unusable
//! input exits 2 with a message.

use harness::mock::{results_with, FakeCaches, MockModel, Slowed};
use harness::results::json::write_json;
use harness::results::ModelResult;
use harness::runner::{run_model, Plan, ReadSet, Setup, Workload};
use models::{Durability, Model, PackageTree};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use workloads::view::{digest_view, TreeDigest, ViewSpec};

fn measure(model: &mut dyn Model, dir: &Path) -> ModelResult {
    let root = dir.join("pkg");
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::write(root.join("usr/bin/tool"), b"tool").unwrap();
    let mut expected = TreeDigest::default();
    expected
        .merge_package(digest_view(&ViewSpec::plain(&root)).unwrap(), "pkg")
        .unwrap();
    let tree = PackageTree {
        name: "pkg".into(),
        version: "1".into(),
        root,
        depends: vec![],
        pre_depends: vec![],
        scripts: Default::default(),
        triggers: vec![],
        control: None,
    };
    let mirror = dir.join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    let artifacts = vec![model.pack(&tree, &mirror).unwrap()];
    let plan = Plan {
        workloads: vec![Workload::Install],
        runs: 7,
        warmup: 1,
        durability: Durability::Native,
        jobs: 1,
    };
    let setup = Setup {
        artifacts: &artifacts,
        upgrade: None,
        mirror: &mirror,
        target: &dir.join("target"),
        reads: ReadSet {
            expected: &expected,
            cold_files: &[],
            misses: &[],
            exec: Err("not measured here"),
        },
        plan: &plan,
        link: None,
    };
    run_model(
        model,
        "mock",
        &setup,
        &mut FakeCaches::default(),
        &mut Vec::new(),
        &|_| {},
    )
}

fn mock() -> MockModel {
    MockModel {
        install_delay: Duration::from_millis(60),
        ..Default::default()
    }
}

fn write(dir: &Path, name: &str, model: ModelResult) -> std::path::PathBuf {
    let path = dir.join(name);
    write_json(&results_with(vec![model]), &path).unwrap();
    path
}

fn compare(base: &Path, new: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("compare")
        .arg(base)
        .arg(new)
        .args(["--metrics", "wall_ns"])
        .args(extra)
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .unwrap()
}

#[test]
fn the_slowed_model_is_caught_and_a_rerun_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let base = write(
        dir.path(),
        "base.json",
        measure(&mut mock(), &dir.path().join("a")),
    );
    let rerun = write(
        dir.path(),
        "rerun.json",
        measure(&mut mock(), &dir.path().join("b")),
    );
    let mut slowed = Slowed {
        inner: mock(),
        factor: 1.5,
    };
    let slow = write(
        dir.path(),
        "slow.json",
        measure(&mut slowed, &dir.path().join("c")),
    );

    let out = compare(&base, &rerun, &[]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}");
    assert!(
        table.contains("| mock | install | wall_ns |") && table.contains("| unchanged |"),
        "{table}"
    );

    let out = compare(&base, &slow, &[]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    assert!(table.contains("**regressed**"), "{table}");
    assert!(
        table.starts_with("pkgbench compare: 1 regressed"),
        "{table}"
    );

    // Report mode prints the same verdict and does not fail.
    let out = compare(&base, &slow, &["--report-only"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("**regressed**"));
    // And the other way round, the slowed run's base shows an improvement.
    let out = compare(&slow, &base, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("| improved |"));
}

#[test]
fn unusable_input_exits_2_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "good.json",
        measure(&mut mock(), &dir.path().join("a")),
    );
    let missing = dir.path().join("missing.json");
    let garbage = dir.path().join("garbage.json");
    fs::write(&garbage, "{not json").unwrap();
    let newer = dir.path().join("newer.json");
    fs::write(&newer, r#"{"schema_version": 3, "models": []}"#).unwrap();
    let empty = dir.path().join("empty.json");
    fs::write(&empty, r#"{"schema_version": 2, "models": []}"#).unwrap();
    for (input, message) in [
        (&missing, "cannot read"),
        (&garbage, "not JSON"),
        (&newer, "schema version 3, this harness reads 1 and 2"),
    ] {
        let out = compare(&good, input, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{input:?}: {stderr}");
        assert!(stderr.contains(message), "{input:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Nothing at all in common is unusable; a model missing from NEW is a regression.
    let out = compare(&empty, &empty, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no measurement in common"));
    let out = compare(&good, &empty, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("- model mock: ok in base, missing in new")
    );
    let out = compare(&good, &good, &["--threshold", "lots"]);
    assert_eq!(out.status.code(), Some(2));
}

/// A model that was ok in BASE and failed in NEW is a regression, named, even with no
/// time to compare; a change of durability is said above the table.
#[test]
fn a_model_that_stopped_being_ok_is_a_regression_and_config_changes_are_said() {
    let dir = tempfile::tempdir().unwrap();
    let ok = measure(&mut mock(), &dir.path().join("a"));
    let base = write(dir.path(), "base.json", ok.clone());
    let mut failed = ok.clone();
    failed.status = harness::results::Status::Failed;
    failed.reason = Some("the view differs".into());
    let new = write(dir.path(), "failed.json", failed);
    let out = compare(&base, &new, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("- model mock: ok in base, failed in new"),
        "{text}"
    );

    // A workload that is skipped now.
    let mut skipped = ok.clone();
    let w = skipped.workloads.get_mut("install").unwrap();
    w.status = Some(harness::results::Status::Skipped);
    let new = write(dir.path(), "skipped.json", skipped);
    let out = compare(&base, &new, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("- mock install: ok in base, skipped in new"),
        "{text}"
    );

    // The same samples measured at another durability: unchanged, but said.
    let mut results = results_with(vec![ok.clone()]);
    results.config.durability = "none".into();
    let other = dir.path().join("other-durability.json");
    write_json(&results, &other).unwrap();
    let out = compare(&base, &other, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("did not measure the same thing")
            && text.contains("- durability: native (base) vs none (new)"),
        "{text}"
    );

    // Another corpus is unusable unless allowed.
    let mut results = results_with(vec![ok]);
    results.corpus.digest = "1".repeat(64);
    let other = dir.path().join("other-corpus.json");
    write_json(&results, &other).unwrap();
    let out = compare(&base, &other, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("different corpora"));
    let out = compare(&base, &other, &["--allow-config-change"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("- corpus digest: "));
}
