//! The `composefs` model: one composefs mount (an overlay over an EROFS image, the
//! store as data-only layer) serves the set; contents two packages share are fetched
//! and stored once; a corrupt object fails the install naming the package and the file
//! and is not left in the store; an upgrade fetches only the objects that changed, and
//! its release leaves one image and no object nothing refers to; recovery after a
//! killed upgrade mounts one whole set; teardown leaves no mount. The conformance suite
//! runs it too (`conformance.rs`). Needs root; every mounting part runs in a private
//! mount namespace.

use models::composefs::ComposefsModel;
use models::conformance::testing::{
    in_private_mount_namespace, mounts_under, require_root, PackageBuilder,
};
use models::{Artifact, Durability, Model, RunCtx};
use std::fs;
use std::path::{Path, PathBuf};

fn ctx(work: &Path) -> RunCtx {
    RunCtx {
        target: work.join("target"),
        mirror: work.join("mirror"),
        durability: Durability::Native,
        jobs: 1,
        http: None,
    }
}

/// Regular files in the store's objects directory.
fn objects_in(store: &Path) -> usize {
    fn count(dir: &Path) -> usize {
        fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| {
                        let kind = e.file_type().unwrap();
                        if kind.is_dir() {
                            count(&e.path())
                        } else {
                            usize::from(kind.is_file())
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    count(&store.join("objects"))
}

/// Contents above composefs's inline limit (64 bytes), distinct per `tag`.
fn big(tag: &str) -> Vec<u8> {
    tag.as_bytes()
        .iter()
        .cycle()
        .take(10_000)
        .copied()
        .collect()
}

/// Two packages: `a` and `b` ship the same bytes at different paths (one object), and
/// each one file of its own, plus one small file each (inline, no object).
fn two_packages(work: &Path) -> Vec<Artifact> {
    let mirror = work.join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    let model = ComposefsModel::new();
    let a = PackageBuilder::new("a", "1")
        .file("usr/share/a/shared", big("shared"))
        .file("usr/share/a/own", big("a-own"))
        .file("usr/share/a/small", "tiny")
        .build(work);
    let b = PackageBuilder::new("b", "1")
        .file("usr/share/b/shared", big("shared"))
        .file("usr/share/b/own", big("b-own"))
        .file("usr/share/b/small", "also tiny")
        .build(work);
    [a, b]
        .iter()
        .map(|t| model.pack(t, &mirror).unwrap())
        .collect()
}

#[test]
fn root_composefs_one_mount_serves_the_set_and_shared_contents_are_stored_once() {
    let test = "root_composefs_one_mount_serves_the_set_and_shared_contents_are_stored_once";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path();
        let set = two_packages(work);
        let ctx = ctx(work);
        let mut model = ComposefsModel::new();
        model.prepare(&set, &ctx).unwrap();
        let times = model.install(&set, &ctx).unwrap();
        for phase in ["fetch", "verify", "objects", "image", "sync", "mount"] {
            assert!(
                times.get(phase).is_some_and(|d| !d.is_zero()),
                "phase {phase} not timed: {times:?}"
            );
        }
        // Three distinct large contents; the shared one referenced twice.
        assert_eq!(model.object_counts(), (3, 1));
        let store = model.store_dir().unwrap().to_path_buf();
        // Three objects and the image (an object of the store too).
        assert_eq!(objects_in(&store), 4);
        let view = model.view().root;
        assert_eq!(
            fs::read(view.join("usr/share/b/shared")).unwrap(),
            big("shared")
        );
        assert_eq!(
            fs::read(view.join("usr/share/a/own")).unwrap(),
            big("a-own")
        );
        assert_eq!(
            fs::read(view.join("usr/share/b/small")).unwrap(),
            b"also tiny"
        );
        // One mount for the whole set: an overlay whose source names composefs.
        let mounts = mounts_under(&ctx.target);
        assert_eq!(mounts.len(), 1, "{mounts:?}");
        assert!(
            mounts[0].starts_with("composefs:") && mounts[0].contains(" overlay "),
            "{mounts:?}"
        );
        // Emptying the caches mounts the image again; the view still reads.
        model.reset_caches().unwrap();
        assert_eq!(mounts_under(&ctx.target).len(), 1);
        assert_eq!(
            fs::read(view.join("usr/share/a/shared")).unwrap(),
            big("shared")
        );
        let notes = model.notes().join("\n");
        assert!(notes.contains("fs-verity"), "{notes}");
        model.teardown().unwrap();
        assert!(mounts_under(work).is_empty(), "{:?}", mounts_under(work));
    });
}

#[test]
fn root_composefs_a_corrupt_object_is_refused_naming_package_and_file() {
    let test = "root_composefs_a_corrupt_object_is_refused_naming_package_and_file";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path();
        let set = two_packages(work);
        let ctx = ctx(work);
        // b's own object, recompressed with one byte changed: a valid stream of the
        // wrong contents, which only the digest check can catch.
        let own: PathBuf = set[1]
            .files
            .iter()
            .skip(1)
            .find(|f| {
                let mut d = flate2::read::ZlibDecoder::new(
                    fs::File::open(work.join("mirror").join(f)).unwrap(),
                );
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut d, &mut bytes).unwrap();
                bytes == big("b-own")
            })
            .expect("b's own object")
            .clone();
        let mut wrong = big("b-own");
        wrong[5000] ^= 1;
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
        std::io::Write::write_all(&mut encoder, &wrong).unwrap();
        fs::write(work.join("mirror").join(&own), encoder.finish().unwrap()).unwrap();

        let mut model = ComposefsModel::new();
        model.prepare(&set, &ctx).unwrap();
        let err = format!("{:#}", model.install(&set, &ctx).unwrap_err());
        assert!(
            err.contains("package b")
                && err.contains("usr/share/b/own")
                && err.contains("digest mismatch"),
            "{err}"
        );
        // Nothing mounted; the wrong contents are not in the store under any name.
        assert!(mounts_under(work).is_empty(), "{:?}", mounts_under(work));
        use composefs::fsverity::{compute_verity, FsVerityHashValue, Sha256HashValue};
        let wrong_id: Sha256HashValue = compute_verity(&wrong);
        let store = ctx.target.join("repo");
        assert!(
            !store
                .join("objects")
                .join(wrong_id.to_object_pathname())
                .exists(),
            "the wrong contents stayed in the store"
        );
        assert!(objects_in(&store) <= 2, "{} objects", objects_in(&store));
        model.teardown().unwrap();
    });
}

#[test]
fn root_composefs_an_upgrade_fetches_what_changed_and_releases_the_rest() {
    let test = "root_composefs_an_upgrade_fetches_what_changed_and_releases_the_rest";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path();
        let set = two_packages(work);
        let ctx = ctx(work);
        let mut model = ComposefsModel::new();
        model.prepare(&set, &ctx).unwrap();
        model.install(&set, &ctx).unwrap();
        // a 2: the shared file unchanged, its own file changed, a new file.
        let a2 = PackageBuilder::new("a", "2")
            .file("usr/share/a/shared", big("shared"))
            .file("usr/share/a/own", big("a-own, version 2"))
            .file("usr/share/a/new", big("a-new"))
            .build(work);
        let to = vec![model.pack(&a2, &ctx.mirror).unwrap()];
        let times = model.upgrade(&set, &to, &ctx).unwrap();
        assert!(
            times.get("release").is_some_and(|d| !d.is_zero()),
            "{times:?}"
        );
        assert_eq!(
            model.object_counts().0,
            2,
            "only the changed and the new file"
        );
        let view = model.view().root;
        assert_eq!(
            fs::read(view.join("usr/share/a/own")).unwrap(),
            big("a-own, version 2")
        );
        assert_eq!(
            fs::read(view.join("usr/share/a/new")).unwrap(),
            big("a-new")
        );
        assert_eq!(
            fs::read(view.join("usr/share/b/own")).unwrap(),
            big("b-own")
        );
        // One mount, one image ref; a 1's own object and the old image collected:
        // shared, a-own 2, a-new, b-own and the new image.
        assert_eq!(
            mounts_under(&ctx.target).len(),
            1,
            "{:?}",
            mounts_under(&ctx.target)
        );
        let store = model.store_dir().unwrap().to_path_buf();
        let refs: Vec<_> = fs::read_dir(store.join("images/refs"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(refs.len(), 1);
        assert_eq!(objects_in(&store), 5);
        assert!(
            !ctx.target.join("view").exists(),
            "the old view's mount point stays"
        );
        model.teardown().unwrap();

        // As after a kill between the new image's ref and the switch: both refs there,
        // nothing mounted. Recovery mounts the newest whole set and drops the other.
        let mut recovered = ComposefsModel::new();
        let old_ref = store.join("images/refs/pkgbench-0");
        let new_ref = store.join("images/refs/pkgbench-1");
        std::os::unix::fs::symlink(fs::read_link(&new_ref).unwrap(), &old_ref).unwrap();
        let recovery = recovered.recover_upgrade(&set, &to, &ctx).unwrap();
        assert!(!old_ref.exists(), "{:?}", recovery.steps);
        assert_eq!(
            fs::read(recovered.view().root.join("usr/share/a/new")).unwrap(),
            big("a-new")
        );
        recovered.teardown().unwrap();
        assert!(mounts_under(work).is_empty(), "{:?}", mounts_under(work));
    });
}
