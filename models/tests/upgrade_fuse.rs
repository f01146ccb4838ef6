//! The `fuse` model's upgrade: the upgrade conformance check, the kernel's caches of
//! the mount (pages, positive and negative entries) forgotten for exactly what the
//! upgrade changed, all without a remount, and the "first image wins" rule and changes
//! of kind across an upgrade. Needs root; every mounting part runs in a private mount
//! namespace (see `fuse_model.rs`), so nothing it mounts can outlive it.

use models::conformance::run_upgrade_conformance;
use models::conformance::testing::{
    in_private_mount_namespace, mounts_under, require_root, tiny_package, upgrade_fixture,
};
use models::fuse::FuseModel;
use models::{Artifact, Durability, Model, PackageTree, RunCtx};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const SUBSET: &str = "debian-qemu:libc6,libgcc-s1,gcc-12-base,tar,zlib1g,libzstd1,liblzma5,libbz2-1.0,libacl1,libselinux1,libpcre2-8-0";

fn pack_all(model: &FuseModel, mirror: &Path, trees: &[PackageTree]) -> Vec<Artifact> {
    fs::create_dir_all(mirror).unwrap();
    trees
        .iter()
        .map(|t| model.pack(t, mirror).unwrap())
        .collect()
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

/// The regular files of a package tree, relative to its root.
fn regular_files(root: &Path) -> BTreeMap<PathBuf, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, u64>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                walk(root, &entry.path(), out);
            } else if meta.is_file() {
                let rel = entry.path().strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, meta.len());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Pages of `path` in the page cache (mincore over a private mapping of it).
fn resident_pages(path: &Path) -> usize {
    use std::os::fd::AsRawFd;
    let file = fs::File::open(path).unwrap();
    let len = file.metadata().unwrap().len() as usize;
    let page = 4096;
    let pages = len.div_ceil(page);
    // SAFETY: a read-only private mapping of an open file of `len` bytes, unmapped
    // below; mincore writes one byte per page into a vector of that many.
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(map, libc::MAP_FAILED, "mmap {}", path.display());
        let mut vec = vec![0u8; pages];
        let rc = libc::mincore(map, len, vec.as_mut_ptr());
        libc::munmap(map, len);
        assert_eq!(rc, 0, "mincore {}", path.display());
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }
}

#[test]
fn root_fuse_upgrade_passes_conformance() {
    let test = "root_fuse_upgrade_passes_conformance";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let (old, new) = upgrade_fixture(SUBSET, work.path());
        assert!(!new.is_empty(), "the point release upgrades nothing");
        models::fuse::daemon::set_daemon_program(env!("CARGO_BIN_EXE_pkgbench-fuse-daemon").into());
        let mut model = FuseModel::new();
        let times = run_upgrade_conformance(&mut model, &old, &new, work.path()).unwrap();
        for phase in ["fetch", "verify", "notify"] {
            assert!(
                times.get(phase).is_some_and(|d| !d.is_zero()),
                "phase {phase} not timed: {times:?}"
            );
        }
        assert!(mounts_under(work.path()).is_empty());
    });
}

#[test]
fn root_fuse_upgrade_replaces_what_the_kernel_cached_without_remounting() {
    let test = "root_fuse_upgrade_replaces_what_the_kernel_cached_without_remounting";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let (old, new) = upgrade_fixture(SUBSET, work.path());
        models::fuse::daemon::set_daemon_program(env!("CARGO_BIN_EXE_pkgbench-fuse-daemon").into());
        let mut model = FuseModel::new();
        let ctx = ctx(work.path());
        let installed = pack_all(&model, &ctx.mirror, &old);
        let to = pack_all(&model, &ctx.mirror, &new);
        model.install(&installed, &ctx).unwrap();
        let view = model.view().root;
        let ro = model.mountpoint().unwrap().to_path_buf();

        // An upgraded package whose largest changed file and removed file the view
        // shows (no earlier package provides them).
        let shows = |rel: &Path, root: &Path| {
            fs::read(view.join(rel)).ok() == Some(fs::read(root.join(rel)).unwrap())
        };
        let (pkg, changed, removed, added) = new
            .iter()
            .find_map(|n| {
                let o = old.iter().find(|o| o.name == n.name).unwrap();
                let (before, after) = (regular_files(&o.root), regular_files(&n.root));
                let changed = before
                    .iter()
                    .filter(|(rel, size)| **size > 4096 && after.contains_key(*rel))
                    .filter(|(rel, _)| shows(rel, &o.root))
                    .max_by_key(|(_, size)| **size)?
                    .0
                    .clone();
                let removed = before
                    .keys()
                    .find(|rel| !after.contains_key(*rel) && shows(rel, &o.root))?
                    .clone();
                let added = after.keys().find(|rel| !before.contains_key(*rel))?.clone();
                Some((n.name.clone(), changed, removed, added))
            })
            .expect("an upgraded package with a changed, a removed and an added file");
        let (o, n) = (
            old.iter().find(|t| t.name == pkg).unwrap(),
            new.iter().find(|t| t.name == pkg).unwrap(),
        );
        let old_bytes = fs::read(o.root.join(&changed)).unwrap();
        let new_bytes = fs::read(n.root.join(&changed)).unwrap();
        assert_ne!(old_bytes, new_bytes, "{} did not change", changed.display());

        // What the kernel now holds: the changed file's pages, entry and attributes, a
        // positive entry of the removed file, a negative one on the added file's way,
        // and the listings of their directories.
        assert_eq!(fs::read(view.join(&changed)).unwrap(), old_bytes);
        assert!(
            resident_pages(&view.join(&changed)) > 0,
            "the kernel does not cache {}",
            changed.display()
        );
        let changed_ino = fs::metadata(view.join(&changed)).unwrap().ino();
        assert!(fs::symlink_metadata(view.join(&removed)).is_ok());
        fs::read(view.join(&removed)).unwrap();
        assert!(fs::symlink_metadata(view.join(&added)).is_err());
        let removed_dir = view.join(removed.parent().unwrap());
        let removed_name = removed.file_name().unwrap().to_string_lossy().into_owned();
        assert!(names(&removed_dir).contains(&removed_name));
        let dev = fs::metadata(&view).unwrap().dev();
        let mounts_before = mounts_under(work.path());
        let image_dir = |set: &[Artifact]| {
            let art = set.iter().find(|a| a.package == pkg).unwrap();
            let stem = art.files[0].file_stem().unwrap();
            stem.to_string_lossy().into_owned()
        };
        let (old_dir, new_dir) = (image_dir(&installed), image_dir(&to));
        assert!(names(&ro).contains(&old_dir));

        let times = model.upgrade(&installed, &to, &ctx).unwrap();
        assert!(times.get("notify").is_some(), "{times:?}");

        let got = fs::read(view.join(&changed)).unwrap();
        assert!(got == new_bytes, "{}: the old bytes", changed.display());
        let meta = fs::metadata(view.join(&changed)).unwrap();
        assert_eq!(
            meta.ino(),
            changed_ino,
            "a persisting file changed its node"
        );
        assert_eq!(meta.len(), new_bytes.len() as u64);
        let gone = fs::symlink_metadata(view.join(&removed));
        assert_eq!(
            gone.map(|_| ()).unwrap_err().kind(),
            std::io::ErrorKind::NotFound,
            "{} is still there",
            removed.display()
        );
        assert!(!names(&removed_dir).contains(&removed_name));
        assert_eq!(
            fs::read(view.join(&added)).unwrap(),
            fs::read(n.root.join(&added)).unwrap(),
            "{}",
            added.display()
        );
        let added_dir = added.parent().unwrap();
        let added_name = added.file_name().unwrap().to_string_lossy().into_owned();
        assert!(names(&view.join(added_dir)).contains(&added_name));

        // The same mount: no remount, no mount more or less.
        assert_eq!(fs::metadata(&view).unwrap().dev(), dev, "remounted");
        assert_eq!(mounts_under(work.path()), mounts_before);
        // The old version left `ro/` and the image directory; the new one is there.
        let listed = names(&ro);
        assert!(!listed.contains(&old_dir), "{listed:?}");
        assert!(listed.contains(&new_dir), "{listed:?}");
        let images = names(&ctx.target.join("images"));
        assert_eq!(images.len(), old.len(), "{images:?}");
        assert!(!images.contains(&format!("{old_dir}.sqfs")), "{images:?}");
        // A reset of the daemon's caches changes nothing the reader sees.
        model.reset_caches().unwrap();
        assert!(fs::read(view.join(&changed)).unwrap() == new_bytes);
        assert!(!view.join(&removed).exists());
        model.teardown().unwrap();
        assert!(mounts_under(work.path()).is_empty());
    });
}

#[test]
fn root_fuse_upgrade_keeps_the_first_wins_order_and_changes_kinds() {
    let test = "root_fuse_upgrade_keeps_the_first_wins_order_and_changes_kinds";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        let old = vec![
            tiny_package(
                w,
                "a",
                "1",
                &[
                    ("etc/conf", "a1\n"),
                    ("etc/other", "a\n"),
                    ("x", "a file"),
                    ("y/in", "inside"),
                ],
            ),
            tiny_package(
                w,
                "b",
                "1",
                &[
                    ("etc/conf", "b\n"),
                    ("etc/other", "b\n"),
                    ("x/hidden", "b's"),
                ],
            ),
        ];
        let new = vec![tiny_package(
            w,
            "a",
            "2",
            &[
                ("etc/conf", "a2, longer\n"),
                ("x/inside", "now a directory"),
                ("y", "now a file"),
            ],
        )];
        models::fuse::daemon::set_daemon_program(env!("CARGO_BIN_EXE_pkgbench-fuse-daemon").into());
        let mut model = FuseModel::new();
        let ctx = ctx(w);
        let installed = pack_all(&model, &ctx.mirror, &old);
        let to = pack_all(&model, &ctx.mirror, &new);
        model.install(&installed, &ctx).unwrap();
        let view = model.view().root;
        let read = |rel: &str| fs::read_to_string(view.join(rel)).unwrap();
        // Everything the kernel may cache, cached.
        assert_eq!(read("etc/conf"), "a1\n");
        assert_eq!(read("etc/other"), "a\n");
        assert!(view.join("x").is_file());
        assert!(!view.join("x/inside").exists());
        assert_eq!(read("y/in"), "inside");
        assert_eq!(names(&view.join("etc")), ["conf", "other"]);
        let conf_ino = fs::metadata(view.join("etc/conf")).unwrap().ino();
        let other_ino = fs::metadata(view.join("etc/other")).unwrap().ino();

        model.upgrade(&installed, &to, &ctx).unwrap();
        // a is still first: its new conf wins over b's, in the same node.
        assert_eq!(read("etc/conf"), "a2, longer\n");
        assert_eq!(fs::metadata(view.join("etc/conf")).unwrap().ino(), conf_ino);
        // a no longer has `other`: b's shows through, in the same node.
        assert_eq!(read("etc/other"), "b\n");
        assert_eq!(
            fs::metadata(view.join("etc/other")).unwrap().ino(),
            other_ino
        );
        // A file became a directory (merged with b's) and a directory a file.
        assert!(view.join("x").is_dir());
        assert_eq!(names(&view.join("x")), ["hidden", "inside"]);
        assert_eq!(read("x/inside"), "now a directory");
        assert_eq!(read("y"), "now a file");
        assert!(!view.join("y/in").exists());
        let ro = model.mountpoint().unwrap().to_path_buf();
        assert_eq!(names(&ro), ["a_2", "b_1", "union"]);
        // Upgrading what is not installed is refused by name.
        let mut stray = to[0].clone();
        stray.package = "c".into();
        let e = format!(
            "{:#}",
            model.upgrade(&installed, &[stray], &ctx).unwrap_err()
        );
        assert!(e.contains("c is not in the installed set"), "{e}");
        model.teardown().unwrap();
        assert!(mounts_under(w).is_empty());
    });
}
