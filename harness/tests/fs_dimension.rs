//! `harness run --fs`: a fresh filesystem of each kind under the work directory, results
//! per filesystem, figures across them, and nothing left mounted or attached afterwards,
//! also after a SIGKILL in the middle. Needs root (mkfs, loop devices, mounts).

use harness::testing::{
    eventually, loop_backing_files, require_root, take_turn, work_dir_sharing_corpora,
};
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn harness_run(work: &Path, fs_list: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_harness"));
    c.args(["run", "--model", "hooks", "--workload", "install"])
        .args(["--runs", "1", "--warmup", "0", "--fs", fs_list])
        .arg("--work-dir")
        .arg(work)
        .arg("--out")
        .arg(work.join("out"));
    c
}

/// Mounts under `dir` in this test's namespace (the harness's own die with it).
fn mounts_under(dir: &str) -> usize {
    fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(1).is_some_and(|m| m.starts_with(dir)))
        .count()
}

#[test]
fn root_a_run_on_ext4_and_tmpfs_writes_results_per_filesystem_and_leaves_nothing() {
    if !require_root(
        "root_a_run_on_ext4_and_tmpfs_writes_results_per_filesystem_and_leaves_nothing",
    ) {
        return;
    }
    let _turn = take_turn();
    let work = work_dir_sharing_corpora();
    let prefix = work.path().to_string_lossy().into_owned();
    let out = harness_run(work.path(), "ext4,tmpfs").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in ["ext4", "tmpfs"] {
        let path = work.path().join("out").join(kind).join("results.json");
        let json: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["config"]["fs"]["kind"], kind, "{path:?}");
        let hooks = &json["models"][0];
        assert_eq!(hooks["status"], "ok", "{kind}: {}", hooks["reason"]);
        assert!(
            hooks["workloads"]["install"]["metrics"]["durable_wall_ns"]["median"]
                .as_f64()
                .is_some_and(|v| v > 0.0)
        );
    }
    let ext4: Value = serde_json::from_str(
        &fs::read_to_string(work.path().join("out/ext4/results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        ext4["config"]["fs"]["mkfs"],
        "mkfs.ext4 -q -F -O verity IMAGE"
    );
    let tmpfs: Value = serde_json::from_str(
        &fs::read_to_string(work.path().join("out/tmpfs/results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(tmpfs["config"]["fs"]["mkfs"], "");
    assert!(tmpfs["config"]["fs"]["mount_options"]
        .as_str()
        .is_some_and(|o| o.contains("size=")));
    // One figure with a bar per filesystem.
    let svg = fs::read_to_string(work.path().join("out/figures/install.svg")).unwrap();
    assert!(
        svg.contains("ext4") && svg.contains("tmpfs"),
        "legend missing"
    );
    assert!(!loop_backing_files().iter().any(|f| f.starts_with(&prefix)));
    assert_eq!(mounts_under(&prefix), 0);
    assert!(
        !work.path().join("fs/ext4.img").exists(),
        "backing file left"
    );
}

#[test]
fn root_sigkill_during_a_run_on_ext4_leaves_no_mount_and_no_loop_device() {
    if !require_root("root_sigkill_during_a_run_on_ext4_leaves_no_mount_and_no_loop_device") {
        return;
    }
    let _turn = take_turn();
    let work = work_dir_sharing_corpora();
    let prefix = work.path().to_string_lossy().into_owned();
    let mut child = harness_run(work.path(), "ext4")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait until the filesystem is mounted in the harness's namespace.
    let start = Instant::now();
    let mut mounted = false;
    while start.elapsed() < Duration::from_secs(300) && child.try_wait().unwrap().is_none() {
        mounted = fs::read_to_string(format!("/proc/{pid}/mounts"))
            .is_ok_and(|m| m.contains(&format!("{prefix}/fs/ext4 ext4")));
        if mounted {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(mounted, "the harness never mounted its ext4");
    assert!(loop_backing_files().iter().any(|f| f.starts_with(&prefix)));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    eventually("the killed harness's loop device released", || {
        !loop_backing_files().iter().any(|f| f.starts_with(&prefix))
    });
    assert_eq!(mounts_under(&prefix), 0);
    // The next run makes the filesystem again over what was left.
    let out = harness_run(work.path(), "ext4").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
