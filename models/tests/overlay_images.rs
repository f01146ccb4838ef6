//! The SquashFS images of the `overlay` model mount with the kernel's squashfs (through
//! the model's own loop device code) and with `squashfuse`, with every compression, and
//! show exactly the tree they were built from (the view digest of the mount equals that
//! of the source). Needs root; the mounting runs in a private mount namespace.

use models::conformance::testing::{in_private_mount_namespace, require_root};
use models::formats::squashfs::{build_image, Compression, ImageOptions};
use models::overlay::loopdev;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use workloads::view::{digest_view, ViewSpec};

fn source_tree(root: &Path) {
    fs::create_dir_all(root.join("usr/lib/x86_64-linux-gnu")).unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    let big: Vec<u8> = (0..700_000u32)
        .map(|i| (i % 251) as u8 ^ (i >> 11) as u8)
        .collect();
    fs::write(root.join("usr/lib/x86_64-linux-gnu/libbig.so.1"), big).unwrap();
    fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("usr/lib/empty"), b"").unwrap();
    symlink(
        "libbig.so.1",
        root.join("usr/lib/x86_64-linux-gnu/libbig.so"),
    )
    .unwrap();
    symlink("/usr/bin/tool", root.join("usr/bin/abs")).unwrap();
}

fn digest(root: &Path) -> String {
    digest_view(&ViewSpec::plain(root)).unwrap().hex()
}

#[test]
fn root_images_mount_with_kernel_squashfs_and_squashfuse_showing_the_source_tree() {
    let test = "root_images_mount_with_kernel_squashfs_and_squashfuse_showing_the_source_tree";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let src = work.path().join("src");
        source_tree(&src);
        let want = digest(&src);
        let point = work.path().join("mnt");
        fs::create_dir(&point).unwrap();
        for compression in [
            Compression::None,
            Compression::Zstd,
            Compression::Lz4,
            Compression::Xz,
        ] {
            let image = work.path().join(format!("{}.sqfs", compression.as_str()));
            let opts = ImageOptions {
                compression,
                ..ImageOptions::default()
            };
            build_image(&src, &image, &opts).unwrap();
            for direct_io in [false, true] {
                let device = loopdev::attach(&image, direct_io).unwrap();
                mount(
                    Some(&device.path),
                    &point,
                    Some("squashfs"),
                    MsFlags::MS_RDONLY,
                    None::<&str>,
                )
                .unwrap();
                drop(device);
                assert_eq!(
                    digest(&point),
                    want,
                    "kernel, {compression:?}, dio {direct_io}"
                );
                umount2(&point, MntFlags::empty()).unwrap();
            }

            let mut fuse = Command::new("squashfuse")
                .arg("-f")
                .arg(&image)
                .arg(&point)
                .stderr(Stdio::inherit())
                .spawn()
                .expect("squashfuse must be installed");
            let start = Instant::now();
            while !fs::read_to_string("/proc/self/mounts")
                .unwrap()
                .contains(&format!(" {} fuse.squashfuse ", point.display()))
            {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "squashfuse did not mount"
                );
                assert!(fuse.try_wait().unwrap().is_none(), "squashfuse exited");
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(digest(&point), want, "squashfuse, {compression:?}");
            umount2(&point, MntFlags::empty()).unwrap();
            assert!(fuse.wait().unwrap().success());
        }
    });
}
