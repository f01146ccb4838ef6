//! The `overlay` model: the conformance suite with the new mount API and with the legacy
//! mount(2) fallback, one layer, a two-level stack past 500 layers, teardown after a
//! failed install, and after a SIGKILL of the harness in the middle of an install.
//! Needs root. Every test that mounts runs its mounting part in a private mount
//! namespace (the test binary re-executed under `unshare --mount --propagation
//! private`), so nothing it mounts can outlive it.

use harness::conformance::run_conformance;
use harness::testing::{eventually, loop_backing_files};
use harness::testing::{in_private_mount_namespace, require_root, take_turn};
use models::overlay::stack::MountApi;
use models::overlay::OverlayModel;
use models::{Durability, Model, PackageTree, RunCtx};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use workloads::corpus;

const SUBSET: &str = "debian-qemu:libc6,libgcc-s1,gcc-12-base,tar,zlib1g,libzstd1,liblzma5,libbz2-1.0,libacl1,libselinux1,libpcre2-8-0";

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

fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(1).is_some_and(|m| m.starts_with(&dir)))
        .map(str::to_string)
        .collect()
}

fn conformance(test: &str, legacy: bool) {
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let corpus = corpus::open(SUBSET, &work.path().join("corpora"), &|_, _| {}).unwrap();
        let mut model = OverlayModel::new();
        model.force_legacy_mount = legacy;
        let times = run_conformance(&mut model, &corpus, work.path()).unwrap();
        for phase in ["fetch", "verify", "loop", "squashfs", "overlay"] {
            assert!(
                times.get(phase).is_some_and(|d| !d.is_zero()),
                "phase {phase} not timed: {times:?}"
            );
        }
        assert!(mounts_under(work.path()).is_empty());
        let target = work.path().join("target").to_string_lossy().into_owned();
        eventually("loop devices of the test released", || {
            !loop_backing_files().iter().any(|f| f.starts_with(&target))
        });
    });
}

#[test]
fn root_overlay_passes_conformance_with_the_new_mount_api() {
    if !require_root("root_overlay_passes_conformance_with_the_new_mount_api") {
        return;
    }
    conformance(
        "root_overlay_passes_conformance_with_the_new_mount_api",
        false,
    );
}

#[test]
fn root_overlay_passes_conformance_with_the_legacy_mount_fallback() {
    if !require_root("root_overlay_passes_conformance_with_the_legacy_mount_fallback") {
        return;
    }
    conformance(
        "root_overlay_passes_conformance_with_the_legacy_mount_fallback",
        true,
    );
}

/// `n` tiny packages: each has its own file and its own executable, and all share
/// `usr/share/doc` and `usr/bin`.
fn tiny_packages(root: &Path, n: usize) -> Vec<PackageTree> {
    (0..n)
        .map(|i| {
            let pkg = root.join(format!("src/p{i}"));
            fs::create_dir_all(pkg.join("usr/share/doc")).unwrap();
            fs::create_dir_all(pkg.join("usr/bin")).unwrap();
            fs::write(
                pkg.join(format!("usr/share/doc/p{i}")),
                format!("package {i}\n"),
            )
            .unwrap();
            fs::write(pkg.join(format!("usr/bin/p{i}")), b"#!/bin/sh\n").unwrap();
            PackageTree {
                name: format!("p{i}"),
                version: "1".into(),
                root: pkg,
                depends: vec![],
                pre_depends: vec![],
                scripts: BTreeMap::new(),
                triggers: vec![],
            }
        })
        .collect()
}

/// Packs and installs `n` tiny packages; checks every package shows in the view.
fn install_tiny(work: &Path, n: usize) -> (OverlayModel, RunCtx) {
    let trees = tiny_packages(work, n);
    let mut model = OverlayModel::new();
    let mirror = work.join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    let set: Vec<_> = trees
        .iter()
        .map(|t| model.pack(t, &mirror).unwrap())
        .collect();
    let ctx = RunCtx {
        target: work.join("target"),
        mirror,
        durability: Durability::None,
        jobs: 1,
    };
    model.install(&set, &ctx).unwrap();
    let view = model.view().root;
    for i in 0..n {
        assert_eq!(
            fs::read_to_string(view.join(format!("usr/share/doc/p{i}"))).unwrap(),
            format!("package {i}\n")
        );
    }
    assert_eq!(fs::read_dir(view.join("usr/bin")).unwrap().count(), n);
    assert!(!view.join("usr/bin/p-none").exists());
    (model, ctx)
}

#[test]
fn root_overlay_mounts_one_layer_and_a_two_level_stack_past_500_layers() {
    let test = "root_overlay_mounts_one_layer_and_a_two_level_stack_past_500_layers";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        // One layer: an overlay needs two, so an empty one goes beneath.
        let one = work.path().join("one");
        let (mut model, _) = install_tiny(&one, 1);
        assert_eq!(model.mount_points().len(), 2);
        assert_eq!(model.mount_api(), Some(MountApi::New));
        // Package content never grants privileges: every mount is nosuid and nodev.
        let mounts = mounts_under(&one);
        assert!(mounts.len() >= 2, "{mounts:?}");
        for line in &mounts {
            let options = line.split(' ').nth(3).unwrap_or("");
            assert!(
                options.split(',').any(|o| o == "nosuid")
                    && options.split(',').any(|o| o == "nodev"),
                "not nosuid,nodev: {line}"
            );
        }
        model.teardown().unwrap();
        assert!(mounts_under(&one).is_empty());

        // 520 layers: two groups of 260, each an overlay, under a top overlay.
        let many = work.path().join("many");
        let (mut model, ctx) = install_tiny(&many, 520);
        let points = model.mount_points();
        assert_eq!(points.len(), 520 + 2 + 1, "layers, groups, view");
        assert!(points[520].ends_with("groups/0") && points[521].ends_with("groups/1"));
        let overlays = mounts_under(&many)
            .iter()
            .filter(|l| l.split(' ').nth(2) == Some("overlay"))
            .count();
        assert_eq!(overlays, 3);
        model.teardown().unwrap();
        assert!(mounts_under(&many).is_empty());
        let target = ctx.target.to_string_lossy().into_owned();
        eventually("520 loop devices released", || {
            !loop_backing_files().iter().any(|f| f.starts_with(&target))
        });
    });
}

#[test]
fn root_a_failed_install_is_torn_down_without_a_mount_or_loop_device_left() {
    let test = "root_a_failed_install_is_torn_down_without_a_mount_or_loop_device_left";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let trees = tiny_packages(work.path(), 3);
        let mut model = OverlayModel::new();
        let mirror = work.path().join("mirror");
        fs::create_dir_all(&mirror).unwrap();
        let mut set: Vec<_> = trees
            .iter()
            .map(|t| model.pack(t, &mirror).unwrap())
            .collect();
        // The third image is not a SquashFS image (and the index says so): its mount
        // fails after two succeeded.
        fs::write(mirror.join(&set[2].files[0]), vec![0x55u8; 8192]).unwrap();
        harness::testing::republish(&mut set[2], &mirror);
        let ctx = RunCtx {
            target: work.path().join("target"),
            mirror,
            durability: Durability::Native,
            jobs: 1,
        };
        let err = format!("{:#}", model.install(&set, &ctx).unwrap_err());
        assert!(
            err.contains("of p2) at") && err.contains("layers/2"),
            "{err}"
        );
        assert_eq!(mounts_under(work.path()).len(), 2);
        model.teardown().unwrap();
        assert!(mounts_under(work.path()).is_empty());
        let target = ctx.target.to_string_lossy().into_owned();
        eventually("loop devices of the failed install released", || {
            !loop_backing_files().iter().any(|f| f.starts_with(&target))
        });
        fs::remove_dir_all(&ctx.target).unwrap();
    });
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
    let work = tempfile::tempdir().unwrap();
    // Share the generated corpus with other runs when there is one (it is 176 MiB).
    let shared = PathBuf::from(
        std::env::var("PKGBENCH_WORK_DIR").unwrap_or_else(|_| "/var/tmp/pkgbench".into()),
    )
    .join("corpora");
    if shared.is_dir() {
        std::os::unix::fs::symlink(&shared, work.path().join("corpora")).unwrap();
    }
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
