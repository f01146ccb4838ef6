//! `harness hook-costs --check`: the embedded corpus's stand-ins, run by `hooks` under
//! the probe, do the work the committed table says the real scripts did: per class, the
//! same processes (programs run and subshells, counted by strace), and the real script's
//! files plus the one log line each stand-in appends. Times are printed, not asserted
//! (speed belongs to benchmarks).
//!
//! Needs root (the command refuses otherwise; fails when `CI=true`) and strace.

use harness::testing::require_root;
use std::process::Command;

#[test]
fn stand_ins_start_the_processes_and_write_the_files_of_the_real_scripts_needs_root() {
    if !require_root(
        "stand_ins_start_the_processes_and_write_the_files_of_the_real_scripts_needs_root",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("standins.tsv");
    let output = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["hook-costs", "--check", "--runs", "1"])
        .args(["--corpus", "debian-qemu:install-info,libc6,libgcc-s1,gcc-12-base,libibverbs1,libnl-3-200,libnl-route-3-200,adduser,passwd,debconf"])
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shell = stdout
        .lines()
        .find(|l| l.starts_with("shell "))
        .unwrap_or_else(|| panic!("no shell class in {stdout}"));
    let cols: Vec<&str> = shell.split_whitespace().collect();
    let runs: u64 = cols[1].parse().unwrap();
    assert!(runs >= 2, "{shell}");
    // "stand-in/real" pairs: wall ratio, cpu ratio, then processes, files, bytes.
    let pairs: Vec<(u64, u64)> = cols
        .iter()
        .filter_map(|c| c.split_once('/'))
        .filter_map(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .collect();
    let (processes, files) = (pairs[0], pairs[1]);
    assert_eq!(processes.0, processes.1, "{shell}");
    assert!(processes.1 > 0, "{shell}");
    assert_eq!(files.0, files.1 + runs, "{shell}");
    let rows = std::fs::read_to_string(&out).unwrap();
    assert!(
        rows.lines()
            .any(|l| l.starts_with("install-info\tpostinst\tconfigure\tshell\t")),
        "{rows}"
    );
}
