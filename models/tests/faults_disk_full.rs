//! Disk full: each model installs two packages into a target on a 2 MiB tmpfs, where the
//! second (a 4 MiB file of zeros, a tiny archive on the mirror) cannot fit. Proves, per
//! model: the install fails with an error saying "No space left on device" and naming the
//! path it was writing; no partial package is visible (`hooks`: none of the failing
//! package's files under its final name in the root, and no `.dpkg-new` left; `nar`: no
//! store path or `.tmp` of it, and it is not registered; `overlay`: no image of it, final
//! or `.tmp`, nothing mounted, no loop device; `fuse`: no image of it, final or `.tmp`,
//! none of its files in the union view, and nothing mounted after teardown); and
//! the package installed before it is intact. Needs root: the tmpfs is mounted in a
//! private mount namespace (the test binary re-executed under `unshare --mount
//! --propagation private`, as overlay_model.rs does), so it cannot outlive the test.

use models::conformance::testing::{in_private_mount_namespace, require_root};
use models::conformance::testing::{loop_backing_files, PackageBuilder};
use models::hooks::HooksModel;
use models::nar::db::StoreDb;
use models::nar::NarModel;
use models::overlay::OverlayModel;
use models::{Artifact, Durability, Model, PackageTree, RunCtx};
use nix::mount::{mount, MsFlags};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `small` fits; `huge` (depending on it, so installed after it) does not. Its 4 MiB are
/// zeros (a tiny tar or NAR, so the disk fills while unpacking) or, for SquashFS images,
/// which store zero blocks as holes, pseudo-random bytes (so it fills while fetching).
fn packages(work: &Path, random: bool) -> Vec<PackageTree> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let big: Vec<u8> = (0..4 << 20)
        .map(|_| {
            if !random {
                return 0;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    vec![
        PackageBuilder::new("small", "1")
            .file("usr/share/small/readme", "fits\n")
            .build(work),
        PackageBuilder::new("huge", "1")
            .depends(&["small"])
            .file("usr/share/huge/a-first", "written before the disk fills\n")
            .file("usr/share/huge/zeros", big)
            .build(work),
    ]
}

/// Mounts a 2 MiB tmpfs at `WORK/tiny`, packs the packages into `WORK/mirror` (on the
/// real disk) and installs them into `WORK/tiny/target`; returns the error and the target.
fn install_on_tiny_tmpfs(
    model: &mut dyn Model,
    work: &Path,
    random: bool,
) -> (String, PathBuf, Vec<Artifact>) {
    let tiny = work.join("tiny");
    fs::create_dir(&tiny).unwrap();
    mount(
        Some("tmpfs"),
        &tiny,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=2m,mode=0755"),
    )
    .unwrap();
    let mirror = work.join("mirror");
    fs::create_dir(&mirror).unwrap();
    let set: Vec<Artifact> = packages(work, random)
        .iter()
        .map(|t| model.pack(t, &mirror).unwrap())
        .collect();
    let ctx = RunCtx {
        target: tiny.join("target"),
        mirror,
        durability: Durability::Native,
        jobs: 1,
        http: None,
    };
    let err = match model.install(&set, &ctx) {
        Ok(_) => panic!("{}: the install fitted on 2 MiB", model.name()),
        Err(e) => format!("{e:#}"),
    };
    eprintln!("{}: {err}", model.name());
    assert!(err.contains("No space left on device"), "{err}");
    (err, ctx.target, set)
}

/// Every path below `root`, relative.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out.sort();
    out
}

#[test]
fn root_hooks_disk_full_names_the_path_and_leaves_no_partial_package() {
    let test = "root_hooks_disk_full_names_the_path_and_leaves_no_partial_package";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let mut model = HooksModel::new();
        let (err, target, _) = install_on_tiny_tmpfs(&mut model, work.path(), false);
        assert!(
            err.contains("huge") && err.contains("usr/share/huge/zeros"),
            "{err}"
        );
        let root = target.join("root");
        let files = tree(&root);
        assert!(
            !files.iter().any(|f| f.starts_with("usr/share/huge/")),
            "partial package in the root: {files:?}"
        );
        assert!(!files.iter().any(|f| f.ends_with(".dpkg-new")), "{files:?}");
        assert_eq!(
            fs::read_to_string(root.join("usr/share/small/readme")).unwrap(),
            "fits\n"
        );
        model.teardown().unwrap();
    });
}

#[test]
fn root_nar_disk_full_names_the_path_and_leaves_no_store_path_without_registration() {
    let test = "root_nar_disk_full_names_the_path_and_leaves_no_store_path_without_registration";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let mut model = NarModel::new();
        let (err, target, _) = install_on_tiny_tmpfs(&mut model, work.path(), false);
        assert!(err.contains("-huge") && err.contains("zeros"), "{err}");
        let store: Vec<String> = fs::read_dir(target.join("nix/store"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!store.iter().any(|n| n.contains("-huge")), "{store:?}");
        let valid = StoreDb::open(&target.join("nix/var/nix/db"))
            .unwrap()
            .valid_paths()
            .unwrap();
        assert!(!valid.iter().any(|p| p.ends_with("-huge")), "{valid:?}");
        // The path installed first is valid and in place: every store path is registered.
        assert!(valid.iter().any(|p| p.ends_with("-small")), "{valid:?}");
        for name in &store {
            assert!(
                valid.iter().any(|p| p.ends_with(name.as_str())),
                "{name} is in the store but not registered"
            );
        }
        model.teardown().unwrap();
    });
}

/// The file name of the image of `art` (the first file of its artifact).
fn image_name(art: &Artifact) -> String {
    art.files[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The error says it was fetching the image of `art`, and where to: the image directory
/// in `target` that ran out of space.
fn assert_names_the_image_being_written(err: &str, target: &Path, art: &Artifact) {
    let images = target.join("images");
    assert!(
        err.contains("fetching")
            && err.contains(&image_name(art))
            && err.contains(&*images.to_string_lossy()),
        "{err}"
    );
}

/// Nothing but the test's own tmpfs is mounted below `work`.
fn assert_nothing_mounted_below(work: &Path) {
    let prefix = work.to_string_lossy().into_owned();
    let mounts: Vec<String> = fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&prefix) && !l.starts_with("tmpfs "))
        .map(str::to_string)
        .collect();
    assert!(mounts.is_empty(), "{mounts:?}");
}

#[test]
fn root_overlay_disk_full_names_the_path_and_leaves_no_image_mount_or_loop_device() {
    let test = "root_overlay_disk_full_names_the_path_and_leaves_no_image_mount_or_loop_device";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let mut model = OverlayModel::new();
        let (err, target, set) = install_on_tiny_tmpfs(&mut model, work.path(), true);
        assert_names_the_image_being_written(&err, &target, &set[1]);
        model.teardown().unwrap();
        let images = tree(&target.join("images"));
        assert!(!images.contains(&image_name(&set[1])), "{images:?}");
        assert!(
            !images.iter().any(|name| name.ends_with(".tmp")),
            "a partial image is left: {images:?}"
        );
        assert_nothing_mounted_below(work.path());
        let prefix = work.path().to_string_lossy().into_owned();
        let start = Instant::now();
        while loop_backing_files().iter().any(|f| f.starts_with(&prefix)) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "loop devices left"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

#[test]
fn root_fuse_disk_full_names_the_path_and_leaves_no_image_in_the_union_or_mount() {
    let test = "root_fuse_disk_full_names_the_path_and_leaves_no_image_in_the_union_or_mount";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        models::fuse::daemon::set_daemon_program(env!("CARGO_BIN_EXE_pkgbench-fuse-daemon").into());
        let mut model = models::fuse::FuseModel::new();
        // Random bytes: the image is as large as its contents, so fetching it fills the disk.
        let (err, target, set) = install_on_tiny_tmpfs(&mut model, work.path(), true);
        assert_names_the_image_being_written(&err, &target, &set[1]);
        let huge_image = image_name(&set[1]);
        // Every image is fetched before the daemon hears of any (as distri scans once
        // after its downloads): a failed fetch leaves the union empty, and the small
        // image that was fetched waits in the image directory, whole.
        let union = model.view().root;
        assert!(union.is_dir(), "the daemon stopped serving");
        assert!(
            !union.join("usr/share/huge").exists(),
            "huge is in the union"
        );
        assert!(
            !union.join("usr/share/small").exists(),
            "the daemon was told of an image of the failed transaction"
        );
        let images = tree(&target.join("images"));
        assert!(!images.contains(&huge_image), "{images:?}");
        assert!(
            !images.iter().any(|name| name.ends_with(".tmp")),
            "a partial image is left: {images:?}"
        );
        assert!(images.contains(&image_name(&set[0])), "{images:?}");
        model.teardown().unwrap();
        assert_nothing_mounted_below(work.path());
    });
}
