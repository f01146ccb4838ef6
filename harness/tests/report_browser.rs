//! `harness report` writes one self-contained page that renders in a real browser:
//! headless Chromium (Debian's chromium-headless-shell, which scripts/setup installs)
//! opens `report.html` from disk with the network off, runs the page's own check, and
//! the test reads from the DOM that every model and workload appears, every figure was
//! laid out with a size, and nothing is fetched from elsewhere. Without Chromium the test
//! fails when CI=true and skips elsewhere.

use harness::mock::results_with;
use harness::results::json::write_json;
use harness::results::{ModelResult, Status, WorkloadResult};
use harness::stats::Summary;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The browser: chromium-headless-shell, or chromium in headless mode.
fn browser() -> Option<(PathBuf, &'static [&'static str])> {
    let candidates: [(&str, &[&str]); 2] = [
        ("/usr/bin/chromium-headless-shell", &[]),
        ("/usr/bin/chromium", &["--headless"]),
    ];
    candidates
        .into_iter()
        .find(|(p, _)| Path::new(p).exists())
        .map(|(p, extra)| (PathBuf::from(p), extra))
}

/// The DOM after the page's scripts ran, as Chromium serialises it.
fn dump_dom(page: &Path, profile: &Path) -> String {
    let (exe, extra) = browser().expect("checked by the caller");
    let out = Command::new(exe)
        .args(extra)
        .args([
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            // No request may leave the page: any would fail, and the figures would not load.
            "--proxy-server=127.0.0.1:9",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("starting chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn attribute<'a>(dom: &'a str, name: &str) -> Option<&'a str> {
    let body = &dom[dom.find("<body")?..];
    let body = &body[..body.find('>')?];
    let at = body.find(&format!("{name}=\""))? + name.len() + 2;
    Some(&body[at..at + body[at..].find('"')?])
}

#[test]
fn report_html_renders_every_model_workload_and_figure_in_chromium() {
    if browser().is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("needs chromium-headless-shell (scripts/setup installs it), and CI=true");
        }
        eprintln!("skipping: needs chromium-headless-shell or chromium");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let workloads = ["install", "cold-read", "many-file"];
    let mut models = Vec::new();
    for (name, scale) in [("hooks", 1.0), ("nar", 0.5), ("ref-dpkg", 3.0)] {
        let mut m = ModelResult::new(name, "x", Status::Ok, None);
        for workload in workloads {
            let mut w = WorkloadResult::default();
            let s = |v: f64| Summary::of(&[v * 0.9, v, v * 1.1, v * 1.05, v * 0.95]).unwrap();
            w.metrics.insert("wall_ns".into(), s(1e8 * scale));
            if workload == "install" {
                w.metrics.insert("phase_fetch_ns".into(), s(2e7 * scale));
            }
            m.workloads.insert(workload.into(), w);
        }
        models.push(m);
    }
    models.push(ModelResult::new(
        "overlay",
        "x",
        Status::Skipped,
        Some("needs loop devices".into()),
    ));
    let run = dir.path().join("run-1");
    std::fs::create_dir_all(&run).unwrap();
    write_json(&results_with(models), &run.join("results.json")).unwrap();
    let out = dir.path().join("report");
    let status = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("report")
        .arg(run.join("results.json"))
        .arg("--out")
        .arg(&out)
        .args(["--compare"])
        .arg(run.join("results.json"))
        .status()
        .unwrap();
    assert!(status.success());
    let page = out.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: no reference to anything outside the page.
    for outside in ["src=\"http", "href=\"http", "<img", "<link"] {
        assert!(!html.contains(outside), "the page loads {outside}...");
    }
    let dom = dump_dom(&page, &dir.path().join("profile"));
    assert_eq!(
        attribute(&dom, "data-checked"),
        Some("yes"),
        "the page's check did not run"
    );
    let figures: usize = attribute(&dom, "data-figures").unwrap().parse().unwrap();
    let rendered: usize = attribute(&dom, "data-figures-rendered")
        .unwrap()
        .parse()
        .unwrap();
    assert!(figures >= 5, "only {figures} figures in the page");
    assert_eq!(rendered, figures, "figures without a size in the browser");
    for model in ["hooks", "nar", "ref-dpkg", "overlay"] {
        assert!(
            dom.contains(&format!("data-model=\"{model}\"")),
            "no row for {model}"
        );
    }
    assert!(dom.contains("skipped: needs loop devices"));
    for workload in workloads {
        assert!(
            dom.contains(&format!("<th>{workload}</th>")),
            "no column {workload}"
        );
        assert!(
            dom.contains(&format!("data-figure=\"{workload}\"")),
            "no figure {workload}"
        );
    }
    // The reference sits in the references' rows, and compare's verdicts are there.
    assert!(dom.contains("class=\"reference\" data-model=\"ref-dpkg\""));
    assert!(dom.contains("Compared with"), "no compare section");
}
