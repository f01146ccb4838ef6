//! `harness run --link`: every model that fetches over the link installs the corpus's
//! view through it, the bytes it received are recorded, no install beats its bytes over
//! the link's rate, and the host's network namespaces, links and qdiscs are as before,
//! after the run and after a SIGKILL of it. Needs root (namespaces, veth, tc) and
//! Debian's nginx-light and iproute2 (`scripts/setup`).

use harness::testing::{eventually, require_root, take_turn, work_dir_sharing_corpora};
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A small closure of the default corpus: its mirrors pack in seconds.
const CORPUS: &str = "debian-qemu:libc6,libgcc-s1,gcc-12-base,tar,zlib1g,libzstd1,liblzma5,libbz2-1.0,libacl1,libselinux1,libpcre2-8-0";
/// The rate of the tests' link, and its tbf bucket (`LinkSpec::burst_bytes`).
const RATE_BITS: f64 = 20e6;
const BURST_BYTES: f64 = 64.0 * 1024.0;

fn harness_run(work: &Path, workloads: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_harness"));
    c.args(["run", "--model", "all"])
        .args(["--workload", workloads, "--corpus", CORPUS])
        .args(["--runs", "1", "--warmup", "0", "--link", "20mbit"])
        .arg("--work-dir")
        .arg(work)
        .arg("--out")
        .arg(work.join("out"));
    c
}

/// What the host's network looks like to `ip` and `tc`: it must be the same after.
fn host_network() -> String {
    let mut out = String::new();
    for args in [
        &["netns", "list"][..],
        &["-o", "link", "show"][..],
        &["-o", "addr", "show"][..],
    ] {
        let o = Command::new("ip").args(args).output().unwrap();
        out.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    let o = Command::new("tc").args(["qdisc", "show"]).output().unwrap();
    out.push_str(&String::from_utf8_lossy(&o.stdout));
    out
}

fn nginx_pids() -> Vec<String> {
    let o = Command::new("pgrep")
        .args(["-x", "nginx"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn root_every_model_fetches_over_the_link_no_faster_than_its_rate() {
    if !require_root("root_every_model_fetches_over_the_link_no_faster_than_its_rate") {
        return;
    }
    let _turn = take_turn();
    let before = host_network();
    let servers_before = nginx_pids();
    let work = work_dir_sharing_corpora();
    let out = harness_run(work.path(), "install,upgrade")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let json: Value =
        serde_json::from_str(&fs::read_to_string(work.path().join("out/results.json")).unwrap())
            .unwrap();
    let link = &json["config"]["link"];
    assert_eq!(link["rate_bits_per_s"], 20_000_000, "{link}");
    assert!(
        link["qdiscs"].as_array().is_some_and(|q| q.len() >= 2
            && q.iter()
                .all(|l| l.as_str().is_some_and(|l| l.contains("tbf")))),
        "both ends shaped: {link}"
    );
    assert!(
        link["routes"].as_array().is_some_and(|r| r.len() == 2
            && r.iter()
                .all(|l| l.as_str().is_some_and(|l| l.contains("congctl cubic")))),
        "both ends' routes set TCP cubic: {link}"
    );
    for model in json["models"].as_array().unwrap() {
        let name = model["name"].as_str().unwrap();
        assert_eq!(model["status"], "ok", "{name}: {}", model["reason"]);
        assert_eq!(model["digest_matches"], true, "{name}");
        let mirror = model["mirror_bytes"].as_f64().unwrap();
        for workload in ["install", "upgrade"] {
            let m = &model["workloads"][workload]["metrics"];
            let rx = m["net_rx_bytes"]["median"].as_f64().unwrap();
            let wall = m["wall_ns"]["median"].as_f64().unwrap() / 1e9;
            assert!(rx > 0.0, "{name} {workload}: nothing crossed the link");
            if workload == "install" {
                // Everything it installs crossed the link: at least the corpus's share
                // of the mirror (which also holds the point release).
                assert!(
                    rx > mirror * 0.3,
                    "{name}: {rx} bytes of a {mirror}-byte mirror"
                );
            }
            // Physics: the link moves RATE, plus one bucket ahead of it.
            let least = (rx - BURST_BYTES) * 8.0 / RATE_BITS;
            assert!(
                wall >= least,
                "{name} {workload}: {rx} bytes in {wall:.3} s, faster than {RATE_BITS} bit/s allows ({least:.3} s)"
            );
        }
    }
    assert_eq!(host_network(), before, "the host's network changed");
    assert_eq!(
        nginx_pids(),
        servers_before,
        "a mirror server outlived the run"
    );
}

#[test]
fn root_sigkill_during_a_link_run_leaves_the_host_network_as_it_was() {
    if !require_root("root_sigkill_during_a_link_run_leaves_the_host_network_as_it_was") {
        return;
    }
    let _turn = take_turn();
    let before = host_network();
    let servers_before = nginx_pids();
    let work = work_dir_sharing_corpora();
    let mut child = harness_run(work.path(), "install")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The harness says so once the link is up; then its server runs.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("fetching over") {
                let _ = tx.send(());
            }
        }
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(300)).is_ok(),
        "the harness never brought its link up"
    );
    let start = Instant::now();
    while nginx_pids().len() <= servers_before.len() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        nginx_pids().len() > servers_before.len(),
        "no mirror server running"
    );
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    eventually("the killed harness's mirror server gone", || {
        nginx_pids() == servers_before
    });
    assert_eq!(host_network(), before, "the host's network changed");
}

#[test]
fn root_a_list_of_links_runs_over_each_and_sums_up_install_time_against_the_rate() {
    if !require_root(
        "root_a_list_of_links_runs_over_each_and_sums_up_install_time_against_the_rate",
    ) {
        return;
    }
    let _turn = take_turn();
    let before = host_network();
    let work = work_dir_sharing_corpora();
    let out_dir = work.path().join("out");
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run", "--model", "nar,fuse", "--workload", "install"])
        .args(["--corpus", CORPUS, "--runs", "1", "--warmup", "0"])
        .args(["--link", "20mbit,40mbit,none"])
        .arg("--work-dir")
        .arg(work.path())
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary = fs::read_to_string(out_dir.join("summary.md")).unwrap();
    // Two links one after the other: the first's pair is gone before the second's.
    for (dir, rate) in [
        ("20mbit", Some(20_000_000)),
        ("40mbit", Some(40_000_000)),
        ("local", None),
    ] {
        let json: Value = serde_json::from_str(
            &fs::read_to_string(out_dir.join(dir).join("results.json")).unwrap(),
        )
        .unwrap();
        let link = &json["config"]["link"];
        match rate {
            Some(r) => assert_eq!(link["rate_bits_per_s"], r, "{dir}: {link}"),
            None => assert!(link.is_null(), "{dir}: {link}"),
        }
        // The summary's row holds this run's medians, in the table's model order.
        let row = summary
            .lines()
            .find(|l| l.starts_with(&format!("| {dir} |")))
            .unwrap_or_else(|| panic!("no row {dir} in:\n{summary}"));
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        for (i, model) in ["nar", "fuse"].iter().enumerate() {
            let m = json["models"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == *model)
                .unwrap();
            assert_eq!(m["status"], "ok", "{dir} {model}: {}", m["reason"]);
            let ms = m["workloads"]["install"]["metrics"]["wall_ns"]["median"]
                .as_f64()
                .unwrap()
                / 1e6;
            assert_eq!(cells[i + 1], format!("{ms:.0}"), "{dir} {model}: {row}");
        }
    }
    assert!(
        summary.contains("## Crossovers"),
        "no crossover section:\n{summary}"
    );
    assert!(out_dir.join("figures/install-vs-link.svg").is_file());
    assert!(out_dir.join("figures/install-vs-link.png").is_file());
    assert_eq!(host_network(), before, "the host's network changed");
}
