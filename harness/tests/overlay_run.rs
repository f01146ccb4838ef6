//! The `overlay` model under `harness run`: a SIGKILL of the harness in the middle of an
//! install (squashfs layers mounted, the overlay not yet) leaves no mount and no loop
//! device. Needs root. The model's own tests are in models/tests/overlay_model.rs.

use harness::testing::{eventually, loop_backing_files, require_root, take_turn};
use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the host has mounted of our kinds, and its loop devices: must not change.
fn host_state() -> (Vec<String>, String) {
    let mounts = fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .filter(|l| l.contains(" overlay ") || l.contains(" squashfs "))
        .map(str::to_string)
        .collect();
    let loops = Command::new("losetup").arg("-a").output().unwrap();
    (mounts, String::from_utf8_lossy(&loops.stdout).into_owned())
}

/// Squashfs mounts and whether the view is mounted, in the namespace of process `pid`.
fn mounts_of(pid: u32, work: &str) -> (usize, bool) {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/mounts")) else {
        return (0, false);
    };
    let mut squashfs = 0;
    let mut view = false;
    for line in text.lines() {
        let mut f = line.split(' ');
        let (point, kind) = (f.nth(1).unwrap_or(""), f.next().unwrap_or(""));
        if point.starts_with(work) {
            squashfs += usize::from(kind == "squashfs");
            view |= kind == "overlay";
        }
    }
    (squashfs, view)
}

#[test]
fn root_sigkill_of_the_harness_during_install_leaves_no_mount_and_no_loop_device() {
    if !require_root(
        "root_sigkill_of_the_harness_during_install_leaves_no_mount_and_no_loop_device",
    ) {
        return;
    }
    let _turn = take_turn();
    let before = host_state();
    let work = harness::testing::work_dir_sharing_corpora();
    let prefix = work.path().to_string_lossy().into_owned();
    let mut killed_mid_install = false;
    for attempt in 0..5 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(["run", "--model", "overlay", "--runs", "1", "--warmup", "0"])
            .args(["--workload", "install"])
            .arg("--work-dir")
            .arg(work.path())
            .arg("--out")
            .arg(work.path().join("out"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        // Poll the harness's own mount namespace until layers are mounted but the
        // overlay is not: then it is in the middle of its install.
        let start = Instant::now();
        let mut seen = (0, false);
        while start.elapsed() < Duration::from_secs(600) {
            seen = mounts_of(pid, &prefix);
            if seen.0 > 0 || child.try_wait().unwrap().is_some() {
                break;
            }
        }
        let attached = loop_backing_files()
            .iter()
            .filter(|f| f.starts_with(&prefix))
            .count();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        eprintln!(
            "attempt {attempt}: killed with {} squashfs layers mounted, {attached} loop devices, view mounted: {}",
            seen.0, seen.1
        );
        if seen.0 > 0 && !seen.1 && attached > 0 {
            killed_mid_install = true;
        }
        eventually("loop devices of the killed harness released", || {
            !loop_backing_files().iter().any(|f| f.starts_with(&prefix))
        });
        assert_eq!(host_state(), before, "attempt {attempt}");
        if killed_mid_install {
            break;
        }
    }
    assert!(
        killed_mid_install,
        "never caught the harness between its first layer mount and its overlay mount"
    );
}
