//! The `overlay` model: the conformance suite with the new mount API and with the legacy
//! mount(2) fallback, one layer, a two-level stack past 500 layers, and teardown after a
//! failed install (a SIGKILL of the harness in the middle of an install is in
//! harness/tests/overlay_run.rs). Needs root. Every test that mounts runs its mounting
//! part in a private mount namespace (the test binary re-executed under `unshare
//! --mount --propagation private`), so nothing it mounts can outlive it.

use models::conformance::run_conformance;
use models::conformance::testing::{eventually, loop_backing_files, mounts_under, PackageBuilder};
use models::conformance::testing::{in_private_mount_namespace, require_root};
use models::overlay::stack::MountApi;
use models::overlay::OverlayModel;
use models::{Durability, Model, PackageTree, RunCtx};
use std::fs;
use std::path::Path;
use workloads::corpus;

const SUBSET: &str = "debian-qemu:libc6,libgcc-s1,gcc-12-base,tar,zlib1g,libzstd1,liblzma5,libbz2-1.0,libacl1,libselinux1,libpcre2-8-0";

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
            PackageBuilder::new(&format!("p{i}"), "1")
                .file(&format!("usr/share/doc/p{i}"), format!("package {i}\n"))
                .file(&format!("usr/bin/p{i}"), "#!/bin/sh\n")
                .build(root)
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
        http: None,
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
        models::conformance::testing::republish(&mut set[2], &mirror);
        let ctx = RunCtx {
            target: work.path().join("target"),
            mirror,
            durability: Durability::Native,
            jobs: 1,
            http: None,
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
