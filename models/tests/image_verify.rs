//! The image models check what they fetch, as apt and Nix do: an image whose bytes differ
//! from the mirror index's sha256 (one flipped byte) is refused at install and at
//! upgrade by `overlay`, `fuse` and `ref-squashfuse`, with the package and the image
//! named, and nothing of it is left in the image directory, mounted or served. Needs
//! root; every test runs in a private mount namespace.

use models::conformance::testing::{
    in_private_mount_namespace, mounts_under, require_root, tiny_package,
};
use models::fuse::reference::SquashfuseModel;
use models::overlay::OverlayModel;
use models::{Artifact, Durability, Model, PackageTree, RunCtx};
use std::fs;
use std::path::{Path, PathBuf};

/// Three tiny packages, each with a file of its own.
fn packages(work: &Path, version: &str) -> Vec<PackageTree> {
    (0..3)
        .map(|i| {
            tiny_package(
                work,
                &format!("p{i}"),
                version,
                &[(
                    &format!("usr/share/p{i}/data"),
                    &format!("p{i} {version}\n"),
                )],
            )
        })
        .collect()
}

fn pack(model: &dyn Model, trees: &[PackageTree], mirror: &Path) -> Vec<Artifact> {
    fs::create_dir_all(mirror).unwrap();
    trees
        .iter()
        .map(|t| model.pack(t, mirror).unwrap())
        .collect()
}

/// Flips one byte in the middle of `art`'s image on the mirror; the index is unchanged.
fn flip_a_byte(art: &Artifact, mirror: &Path) -> String {
    let image = mirror.join(&art.files[0]);
    let mut bytes = fs::read(&image).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&image, bytes).unwrap();
    art.files[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The image directory's entries.
fn images(target: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(target.join("images"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn ctx(work: &Path) -> RunCtx {
    RunCtx {
        target: work.join("target"),
        mirror: work.join("mirror"),
        durability: Durability::Native,
        jobs: 1,
        http: None,
    }
}

/// The refusal's message names the package, the image and the mismatch.
fn assert_named(err: &str, package: &str, image: &str) {
    assert!(
        err.contains(&format!("package {package}"))
            && err.contains(image)
            && err.contains("hash sum mismatch"),
        "the refusal does not name the package, the image and the mismatch: {err}"
    );
}

/// An install of three packages whose second image has a flipped byte: refused with it
/// named, its image gone from the target; `mounted_after` is what may stay mounted
/// until teardown (the fuse daemon's one mount, serving the first package only).
fn install_refuses(model: &mut dyn Model, work: &Path, mounted_after: usize) -> PathBuf {
    let trees = packages(work, "1");
    let ctx = ctx(work);
    let set = pack(model, &trees, &ctx.mirror);
    let image = flip_a_byte(&set[1], &ctx.mirror);
    let err = format!("{:#}", model.install(&set, &ctx).unwrap_err());
    assert_named(&err, "p1", &image);
    assert!(
        !images(&ctx.target).iter().any(|f| f.contains("p1")),
        "the refused image stayed: {:?}",
        images(&ctx.target)
    );
    assert_eq!(
        mounts_under(work).len(),
        mounted_after,
        "{:?}",
        mounts_under(work)
    );
    let view = model.view().root;
    assert!(
        !view.join("usr/share/p1").exists(),
        "the refused package is served"
    );
    model.teardown().unwrap();
    assert!(mounts_under(work).is_empty(), "{:?}", mounts_under(work));
    view
}

#[test]
fn root_overlay_refuses_an_image_whose_hash_differs_from_the_index() {
    let test = "root_overlay_refuses_an_image_whose_hash_differs_from_the_index";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        // Every image is fetched and checked before the first is mounted.
        install_refuses(&mut OverlayModel::new(), work.path(), 0);
    });
}

#[test]
fn root_fuse_refuses_an_image_whose_hash_differs_from_the_index() {
    let test = "root_fuse_refuses_an_image_whose_hash_differs_from_the_index";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        models::fuse::daemon::set_daemon_program(env!("CARGO_BIN_EXE_pkgbench-fuse-daemon").into());
        let mut model = models::fuse::FuseModel::new();
        // The daemon is mounted and serves p0, fetched before; p1 never reaches it.
        let trees = packages(work.path(), "1");
        let ctx = ctx(work.path());
        let set = pack(&model, &trees, &ctx.mirror);
        let image = flip_a_byte(&set[1], &ctx.mirror);
        let err = format!("{:#}", model.install(&set, &ctx).unwrap_err());
        assert_named(&err, "p1", &image);
        // Every image is fetched and verified before the daemon hears of any (distri
        // scans once after its downloads): the refused transaction leaves the union
        // without any of its packages, and the one verified image waits in place.
        let view = model.view().root;
        assert!(
            !view.join("usr/share/p1").exists(),
            "the refused package is served"
        );
        assert!(
            !view.join("usr/share/p0").exists(),
            "the daemon was told of an image of the refused transaction"
        );
        // The others were fetched at once: each is whole or absent, the refused one gone.
        let left = images(&ctx.target);
        assert!(left.contains(&"p0_1.sqfs".to_string()), "{left:?}");
        assert!(!left.contains(&"p1_1.sqfs".to_string()), "{left:?}");
        assert!(!left.iter().any(|n| n.ends_with(".tmp")), "{left:?}");
        model.teardown().unwrap();
        assert!(mounts_under(work.path()).is_empty());
    });
}

#[test]
fn root_ref_squashfuse_refuses_an_image_whose_hash_differs_from_the_index() {
    let test = "root_ref_squashfuse_refuses_an_image_whose_hash_differs_from_the_index";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        install_refuses(&mut SquashfuseModel::new(), work.path(), 0);
    });
}

/// Installs version 1, then upgrades p0 and p1 to version 2, p1's image with a flipped
/// byte: refused with it named, and both old versions still in the view, because every
/// new image is fetched and checked before the first package is switched.
fn upgrade_refuses(model: &mut dyn Model, work: &Path) {
    let ctx = ctx(work);
    let installed = pack(model, &packages(work, "1"), &ctx.mirror);
    model.install(&installed, &ctx).unwrap();
    let to = pack(model, &packages(work, "2")[0..2], &ctx.mirror);
    let image = flip_a_byte(&to[1], &ctx.mirror);
    let err = format!("{:#}", model.upgrade(&installed, &to, &ctx).unwrap_err());
    assert_named(&err, "p1", &image);
    let view = model.view().root;
    for p in ["p0", "p1"] {
        assert_eq!(
            fs::read_to_string(view.join(format!("usr/share/{p}/data"))).unwrap(),
            format!("{p} 1\n"),
            "{}: the old version of {p} is no longer served",
            model.name()
        );
    }
    assert!(!images(&ctx.target).iter().any(|f| f.contains("p1_2")));
    model.teardown().unwrap();
    assert!(mounts_under(work).is_empty());
}

#[test]
fn root_overlay_and_fuse_refuse_a_new_version_whose_hash_differs_from_the_index() {
    let test = "root_overlay_and_fuse_refuse_a_new_version_whose_hash_differs_from_the_index";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        upgrade_refuses(&mut OverlayModel::new(), &work.path().join("overlay"));
        models::fuse::daemon::set_daemon_program(env!("CARGO_BIN_EXE_pkgbench-fuse-daemon").into());
        upgrade_refuses(
            &mut models::fuse::FuseModel::new(),
            &work.path().join("fuse"),
        );
        upgrade_refuses(
            &mut SquashfuseModel::new(),
            &work.path().join("ref-squashfuse"),
        );
    });
}
