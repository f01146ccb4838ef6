//! Two `harness run`s on one work directory at once: the second is refused at once with
//! a message naming the directory, before it writes anything, and the first goes on to
//! the right digest (neither corrupts the other's corpus, mirror or target). Needs root
//! (`hooks` drops caches and runs `ldconfig -r`).

use harness::testing::require_root;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SUBSET: &str = "debian-qemu:libc6,libgcc-s1,gcc-12-base,tar,libacl1,libselinux1,libpcre2-8-0";

fn run(work: &std::path::Path, out: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_harness"));
    c.args(["run", "--model", "hooks", "--corpus", SUBSET])
        .args(["--runs", "3", "--warmup", "0", "--workload", "install"])
        .arg("--work-dir")
        .arg(work)
        .arg("--out")
        .arg(out);
    c
}

/// Whether someone holds `WORK_DIR/lock` (our own try would block).
fn locked(work: &std::path::Path) -> bool {
    let Ok(f) = std::fs::OpenOptions::new()
        .write(true)
        .open(work.join("lock"))
    else {
        return false;
    };
    let held = rustix::fs::flock(
        f.as_fd(),
        rustix::fs::FlockOperation::NonBlockingLockExclusive,
    )
    .is_err();
    held
}

#[test]
fn root_a_second_run_on_a_busy_work_dir_is_refused_and_the_first_is_unharmed() {
    if !require_root("root_a_second_run_on_a_busy_work_dir_is_refused_and_the_first_is_unharmed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let mut first = run(&work, &dir.path().join("out-1"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !locked(&work) {
        assert!(
            first.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(60),
            "the first run never held the work directory"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let second_out = dir.path().join("out-2");
    let second = run(&work, &second_out).output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second run was not refused");
    assert!(
        stderr.contains(&format!(
            "work directory {} is in use by another harness run",
            work.display()
        )),
        "{stderr}"
    );
    assert!(
        !second_out.exists(),
        "the refused run wrote its results directory"
    );
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("out-1/results.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["models"][0]["status"], "ok");
    assert_eq!(json["models"][0]["digest_matches"], true);
}
