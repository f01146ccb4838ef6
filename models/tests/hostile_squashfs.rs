//! Corrupt SquashFS images on the mirror, installed by the `overlay` model after a good
//! one: truncated images, an empty file, and superblocks with a flipped magic, a bad
//! block size, and tables or a size pointing past the end of the image. Proves each is
//! refused by the install with an error naming the package and its mount point, that
//! the good image mounted before it is torn down with it, and that no mount and no loop
//! device of the test is left. Needs root; runs in a private mount namespace (the test
//! binary re-executed under `unshare --mount --propagation private`, as
//! overlay_model.rs does), so nothing it mounts can outlive it.

use models::conformance::testing::{in_private_mount_namespace, require_root};
use models::conformance::testing::{loop_backing_files, PackageBuilder};
use models::overlay::OverlayModel;
use models::{Durability, Model, PackageTree, RunCtx};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// Package `name` with one 300 kB library, `usr/lib/NAME.so`.
fn package(work: &Path, name: &str) -> PackageTree {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    PackageBuilder::new(name, "1")
        .file(&format!("usr/lib/{name}.so"), data)
        .build(work)
}

/// Writes `value` little-endian at `at` (SquashFS superblock fields are little-endian).
fn put(image: &mut [u8], at: usize, value: &[u8]) {
    image[at..at + value.len()].copy_from_slice(value);
}

/// Changes a good image into a corrupt one.
type Corruption = fn(&mut Vec<u8>);

/// Each corruption of a good image, by name.
fn corruptions() -> Vec<(&'static str, Corruption)> {
    vec![
        ("empty file", |i| i.clear()),
        ("cut inside the superblock", |i| i.truncate(50)),
        ("cut to half", |i| i.truncate(i.len() / 2)),
        ("cut before the last 4 KiB", |i| i.truncate(i.len() - 4096)),
        ("magic flipped", |i| i[0] ^= 0xff),
        ("block size not a power of two", |i| {
            put(i, 12, &(131_072u32 + 4096).to_le_bytes())
        }),
        ("block_log disagreeing with the block size", |i| {
            put(i, 22, &9u16.to_le_bytes())
        }),
        ("major version 3", |i| put(i, 28, &3u16.to_le_bytes())),
        ("bytes_used past the end of the image", |i| {
            put(i, 40, &(1u64 << 40).to_le_bytes())
        }),
        ("inode table past the end", |i| {
            put(i, 64, &(1u64 << 40).to_le_bytes())
        }),
        ("directory table past the end", |i| {
            put(i, 72, &(1u64 << 40).to_le_bytes())
        }),
    ]
}

fn mounts_under(dir: &str) -> Vec<String> {
    fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(1).is_some_and(|m| m.starts_with(dir)))
        .map(str::to_string)
        .collect()
}

#[test]
fn root_corrupt_squashfs_images_are_refused_by_the_overlay_install_and_leave_no_mount() {
    let test = "root_corrupt_squashfs_images_are_refused_by_the_overlay_install_and_leave_no_mount";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let prefix = work.path().to_string_lossy().into_owned();
        let mirror = work.path().join("mirror");
        fs::create_dir(&mirror).unwrap();
        let mut model = OverlayModel::new();
        let mut set = vec![
            model.pack(&package(work.path(), "good"), &mirror).unwrap(),
            model.pack(&package(work.path(), "bad"), &mirror).unwrap(),
        ];
        let bad_image = mirror.join(&set[1].files[0]);
        let pristine = fs::read(&bad_image).unwrap();
        let cases = corruptions();
        for (i, (what, corrupt)) in cases.iter().enumerate() {
            let mut image = pristine.clone();
            corrupt(&mut image);
            fs::write(&bad_image, &image).unwrap();
            // The index publishes the corrupt image: past the fetch's hash check, the
            // kernel's mount is what must refuse it.
            models::conformance::testing::republish(&mut set[1], &mirror);
            let ctx = RunCtx {
                target: work.path().join(format!("target-{i}")),
                mirror: mirror.clone(),
                durability: Durability::None,
                jobs: 1,
                http: None,
            };
            let outcome = model.install(&set, &ctx);
            model.teardown().unwrap();
            let err = match outcome {
                Ok(_) => panic!("{what}: the corrupt image was mounted"),
                Err(e) => format!("{e:#}"),
            };
            eprintln!("{what}: {err}");
            assert!(
                err.contains("mounting") && err.contains("of bad) at") && err.contains("layers/1"),
                "{what}: {err}"
            );
            assert_eq!(mounts_under(&prefix), Vec::<String>::new(), "{what}");
        }
        let start = Instant::now();
        while loop_backing_files().iter().any(|f| f.starts_with(&prefix)) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "loop devices left"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("squashfs: {} corrupt images, all refused", cases.len());
    });
}
