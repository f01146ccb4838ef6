//! The `fuse` model under `harness run`: no mount and no daemon left after a normal
//! run, a SIGKILL of the harness with its union mounted, and a Ctrl-C (SIGINT to its
//! whole process group); the daemon is measured as the model's service process. Needs
//! root. The model's own tests are in models/tests/fuse_model.rs.

use harness::testing::{require_root, take_turn};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SUBSET: &str = "debian-qemu:libc6,libgcc-s1,gcc-12-base,tar,zlib1g,libzstd1,liblzma5,libbz2-1.0,libacl1,libselinux1,libpcre2-8-0";

/// The host's FUSE, squashfs and overlay mounts: must not change.
fn host_mounts() -> Vec<String> {
    fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .filter(|l| {
            let kind = l.split(' ').nth(2).unwrap_or("");
            kind.starts_with("fuse") || kind == "squashfs" || kind == "overlay"
        })
        .map(str::to_string)
        .collect()
}

fn mounts_under(mounts: &str, dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    fs::read_to_string(mounts)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(' ').nth(1).is_some_and(|m| m.starts_with(&dir)))
        .map(str::to_string)
        .collect()
}

fn harness_run(work: &Path, corpus: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_harness"));
    command
        .args(["run", "--model", "fuse", "--runs", "1", "--warmup", "0"])
        .args(["--corpus", corpus])
        .arg("--work-dir")
        .arg(work)
        .arg("--out")
        .arg(work.join("out"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Daemon processes (`harness fuse-daemon ...`) serving a mount under `prefix`, after
/// waiting up to 5 s for them to go.
fn daemons_left(prefix: &Path) -> Vec<String> {
    let prefix = prefix.to_string_lossy().into_owned();
    let start = Instant::now();
    loop {
        let mut left = harness::testing::fuse_daemons();
        left.retain(|cmdline| cmdline.contains(&prefix));
        if left.is_empty() || start.elapsed() > Duration::from_secs(5) {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `harness run --model fuse` in a process group of its own (as a shell starts a
/// job), waits until its union is mounted, and sends `signal`: to the harness alone, or
/// to its whole group as a terminal's Ctrl-C does. True if the union was mounted then.
fn signal_while_mounted(work: &Path, signal: i32, to_group: bool) -> bool {
    use std::os::unix::process::CommandExt;
    let mut child = harness_run(work, SUBSET).process_group(0).spawn().unwrap();
    let pid = child.id() as i32;
    // Poll the harness's own mount namespace until the union is mounted.
    let start = Instant::now();
    let mut seen = 0;
    while start.elapsed() < Duration::from_secs(300) {
        seen = mounts_under(&format!("/proc/{pid}/mounts"), work)
            .iter()
            .filter(|l| l.split(' ').nth(2).is_some_and(|k| k.starts_with("fuse")))
            .count();
        if seen > 0 || child.try_wait().unwrap().is_some() {
            break;
        }
    }
    // SAFETY: kill only sends a signal to the harness we started (or its group).
    let sent = unsafe {
        if to_group {
            libc::kill(-pid, signal)
        } else {
            libc::kill(pid, signal)
        }
    };
    assert_eq!(sent, 0, "sending signal {signal}");
    let status = child.wait().unwrap();
    eprintln!("signal {signal}: the harness ended with {status} after {seen} FUSE mounts");
    seen > 0
}

#[test]
fn root_fuse_harness_run_leaves_no_mount_after_a_normal_exit_and_after_sigkill() {
    let test = "root_fuse_harness_run_leaves_no_mount_after_a_normal_exit_and_after_sigkill";
    if !require_root(test) {
        return;
    }
    let _turn = take_turn();
    let before = host_mounts();
    let work = tempfile::tempdir().unwrap();
    let status = harness_run(work.path(), SUBSET).status().unwrap();
    assert!(
        status.success(),
        "harness run --model fuse on {SUBSET}: {status}"
    );
    assert_eq!(host_mounts(), before, "after a normal exit");
    assert_eq!(
        daemons_left(work.path()),
        Vec::<String>::new(),
        "after a normal exit"
    );
    // The daemon is a process of its own: its memory is measured as the model's service
    // process in every sample, and its settings are in the notes.
    let results: serde_json::Value =
        serde_json::from_slice(&fs::read(work.path().join("out/results.json")).unwrap()).unwrap();
    let fuse = &results["models"][0];
    assert_eq!(fuse["name"], "fuse");
    for workload in ["install", "cold-read", "warm-read", "many-file"] {
        let peak = fuse["workloads"][workload]["metrics"]["service_peak_rss_bytes"]["median"]
            .as_f64()
            .unwrap_or(0.0);
        assert!(peak > 1e6, "{workload}: daemon peak memory {peak}");
    }
    let notes = fuse["notes"].to_string();
    assert!(notes.contains("daemon settings: threads=4"), "{notes}");

    let mut killed_mounted = false;
    for attempt in 0..5 {
        killed_mounted = signal_while_mounted(work.path(), libc::SIGKILL, false);
        assert_eq!(host_mounts(), before, "attempt {attempt}");
        // The daemon process dies with the harness (its death signal).
        assert_eq!(
            daemons_left(work.path()),
            Vec::<String>::new(),
            "attempt {attempt}"
        );
        if killed_mounted {
            break;
        }
    }
    assert!(
        killed_mounted,
        "never caught the harness with its union mounted"
    );
    let ours = format!("{}", work.path().display());
    assert!(
        !fs::read_to_string("/proc/mounts").unwrap().contains(&ours),
        "a mount under {ours} is left"
    );
}

#[test]
fn root_fuse_harness_run_leaves_no_mount_and_no_daemon_after_ctrl_c() {
    let test = "root_fuse_harness_run_leaves_no_mount_and_no_daemon_after_ctrl_c";
    if !require_root(test) {
        return;
    }
    let _turn = take_turn();
    let before = host_mounts();
    let work = tempfile::tempdir().unwrap();
    let mut interrupted_mounted = false;
    for attempt in 0..5 {
        // Ctrl-C: SIGINT to the whole foreground group, the daemon included.
        interrupted_mounted = signal_while_mounted(work.path(), libc::SIGINT, true);
        assert_eq!(host_mounts(), before, "attempt {attempt}");
        assert_eq!(
            daemons_left(work.path()),
            Vec::<String>::new(),
            "attempt {attempt}"
        );
        if interrupted_mounted {
            break;
        }
    }
    assert!(
        interrupted_mounted,
        "never caught the harness with its union mounted"
    );
    // The next run on the same work directory cleans up and completes.
    let status = harness_run(work.path(), SUBSET).status().unwrap();
    assert!(status.success(), "the run after Ctrl-C: {status}");
    assert_eq!(host_mounts(), before, "after the run that followed Ctrl-C");
}
