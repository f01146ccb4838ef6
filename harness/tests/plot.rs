//! `harness plot` writes readable figures: SVG and PNG for every workload and the
//! install phases and the install by stage, with units on the axes, from a results file.

use harness::mock::results_with;
use harness::results::json::write_json;
use harness::results::{ModelResult, Status, WorkloadResult};
use harness::stats::Summary;
use std::process::Command;

#[test]
fn plot_writes_svg_and_png_with_units_on_the_axes() {
    let dir = tempfile::tempdir().unwrap();
    let mut models = Vec::new();
    for (name, scale) in [("hooks", 1.0), ("overlay", 0.5)] {
        let mut m = ModelResult::new(name, "x", Status::Ok, None);
        for workload in ["install", "cold-read"] {
            let mut w = WorkloadResult::default();
            let s = |v: f64| Summary::of(&[v * 0.9, v, v * 1.1]).unwrap();
            w.metrics.insert("wall_ns".into(), s(1e9 * scale));
            if workload == "install" {
                w.metrics.insert("phase_fetch_ns".into(), s(2e8 * scale));
                w.metrics.insert("phase_unpack_ns".into(), s(8e8 * scale));
            }
            m.workloads.insert(workload.into(), w);
        }
        models.push(m);
    }
    let run = dir.path().join("run-1");
    std::fs::create_dir_all(&run).unwrap();
    write_json(&results_with(models), &run.join("results.json")).unwrap();
    let out = dir.path().join("figures");
    let status = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["plot"])
        .arg(run.join("results.json"))
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    for name in ["install", "cold-read", "install-phases", "install-stages"] {
        let png = std::fs::read(out.join(format!("{name}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{name}.png is not a PNG"
        );
        assert!(png.len() > 10_000, "{name}.png is nearly empty");
        let svg = std::fs::read_to_string(out.join(format!("{name}.svg"))).unwrap();
        assert!(svg.contains("(ms)"), "{name}.svg has no unit on its axis");
        assert!(
            svg.contains("hooks") && svg.contains("overlay"),
            "{name}.svg lacks a model"
        );
    }
    // hooks's phases by the stages its description gives them.
    let stages = std::fs::read_to_string(out.join("install-stages.svg")).unwrap();
    for stage in ["fetch+verify", "extract", "other"] {
        assert!(stages.contains(stage), "install-stages.svg lacks {stage}");
    }
    // Every workload normalised to the first model shown (hooks): overlay's install is
    // half of hooks's, drawn on a log axis with its ticks.
    let normalised = std::fs::read_to_string(out.join("normalised.svg")).unwrap();
    for text in ["median / hooks", "overlay", "install", "cold-read", "1/2"] {
        assert!(normalised.contains(text), "normalised.svg lacks {text}");
    }
    // Unusable input is refused with exit 2, as compare does.
    let status = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["plot", "/nonexistent/results.json", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}
