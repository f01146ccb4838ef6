//! The `fuse` model, served by `pkgbench-fuse-daemon`: the conformance suite, 8 threads
//! reading at once, an image picked up without a remount, the rule for two packages
//! providing the same path, and teardown after a failed install (what `harness run`
//! leaves after an exit, a SIGKILL or a Ctrl-C is in harness/tests/fuse_run.rs). Needs
//! root. Every test that mounts runs its mounting part in a private mount namespace
//! (the test binary re-executed under `unshare --mount --propagation private`, as
//! `overlay_model.rs` does), so nothing it mounts can outlive it.

use models::conformance::run_conformance;
use models::conformance::testing::{in_private_mount_namespace, require_root};
use models::fuse::FuseModel;
use models::{Artifact, Durability, Model, PackageTree, PhaseTimes, RunCtx};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use workloads::corpus;

const SUBSET: &str = "debian-qemu:libc6,libgcc-s1,gcc-12-base,tar,zlib1g,libzstd1,liblzma5,libbz2-1.0,libacl1,libselinux1,libpcre2-8-0";

fn mounts_under(mounts: &str, dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    fs::read_to_string(mounts)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(' ').nth(1).is_some_and(|m| m.starts_with(&dir)))
        .map(str::to_string)
        .collect()
}

fn ctx(work: &Path, mirror: PathBuf) -> RunCtx {
    RunCtx {
        target: work.join("target"),
        mirror,
        durability: Durability::None,
        jobs: 1,
        http: None,
    }
}

#[test]
fn root_fuse_passes_conformance() {
    let test = "root_fuse_passes_conformance";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let corpus = corpus::open(SUBSET, &work.path().join("corpora"), &|_, _| {}).unwrap();
        models::fuse::daemon::set_daemon_program(env!("CARGO_BIN_EXE_pkgbench-fuse-daemon").into());
        let mut model = FuseModel::new();
        let times = run_conformance(&mut model, &corpus, work.path()).unwrap();
        for phase in ["mount", "fetch", "verify", "notify"] {
            assert!(
                times.get(phase).is_some_and(|d| !d.is_zero()),
                "phase {phase} not timed: {times:?}"
            );
        }
        assert!(mounts_under("/proc/self/mounts", work.path()).is_empty());
    });
}

/// Every regular file of `trees`: (path relative to the view, absolute source path).
fn files_of(trees: &[PackageTree]) -> Vec<(PathBuf, PathBuf)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, PathBuf)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                walk(root, &entry.path(), out);
            } else if kind.is_file() {
                let rel = entry.path().strip_prefix(root).unwrap().to_path_buf();
                out.push((rel, entry.path()));
            }
        }
    }
    let mut out = Vec::new();
    for tree in trees {
        walk(&tree.root, &tree.root, &mut out);
    }
    out
}

#[test]
fn root_fuse_eight_threads_reading_different_and_the_same_files_get_the_right_bytes() {
    let test = "root_fuse_eight_threads_reading_different_and_the_same_files_get_the_right_bytes";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let corpus = corpus::open(SUBSET, &work.path().join("corpora"), &|_, _| {}).unwrap();
        let trees = models::conformance::package_trees(&corpus);
        models::fuse::daemon::set_daemon_program(env!("CARGO_BIN_EXE_pkgbench-fuse-daemon").into());
        let mut model = FuseModel::new();
        let mirror = work.path().join("mirror");
        fs::create_dir_all(&mirror).unwrap();
        let set: Vec<Artifact> = trees
            .iter()
            .map(|t| model.pack(t, &mirror).unwrap())
            .collect();
        let ctx = ctx(work.path(), mirror);
        model.install(&set, &ctx).unwrap();
        let view = model.view().root;
        let mut files = files_of(&trees);
        files.sort_by_key(|(_, src)| std::cmp::Reverse(fs::metadata(src).unwrap().len()));
        let largest = files[0].clone();
        let files = Arc::new(files);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (files, view, largest) = (files.clone(), view.clone(), largest.clone());
                std::thread::spawn(move || {
                    let mut checked = 0;
                    for round in 0..3 {
                        // The same (largest) file in every thread, in 4 KiB-unaligned
                        // pieces from different offsets, and a different share of the
                        // others in each thread.
                        let want = fs::read(&largest.1).unwrap();
                        let got = fs::read(view.join(&largest.0)).unwrap();
                        assert!(got == want, "{} differs", largest.0.display());
                        for (i, (rel, src)) in files.iter().enumerate() {
                            if (i + t + round) % 8 == 0 {
                                let got = fs::read(view.join(rel)).unwrap();
                                assert!(got == fs::read(src).unwrap(), "{} differs", rel.display());
                                checked += 1;
                            }
                        }
                    }
                    checked
                })
            })
            .collect();
        let checked: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(checked >= files.len() * 3 - 8, "{checked} reads");
        // Reads at odd offsets across a block boundary of the largest file.
        let big = fs::File::open(view.join(&largest.0)).unwrap();
        let want = fs::read(&largest.1).unwrap();
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; 200_000];
        for at in [0u64, 1, 131_071, 131_072, 262_143, want.len() as u64 - 7] {
            let n = big.read_at(&mut buf, at).unwrap();
            let end = (at as usize + n).min(want.len());
            assert_eq!(&buf[..n], &want[at as usize..end], "at {at}");
        }
        // Each package alone under ro/NAME_VERSION.
        let own = model.mountpoint().unwrap().join(format!(
            "{}_{}",
            trees[0].name,
            trees[0].version.replace(':', "%3a")
        ));
        assert!(own.is_dir(), "{} missing", own.display());
        // Teardown with a file still open: the mount is detached at once, and the
        // holder goes on reading until it closes.
        model.teardown().unwrap();
        assert!(mounts_under("/proc/self/mounts", work.path()).is_empty());
        let n = big.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf[..n], &want[..n]);
        drop(big);
    });
}

/// A tiny package with the given files (path, contents); a path ending in `/` is a
/// directory.
fn tiny(root: &Path, name: &str, files: &[(&str, &str)]) -> PackageTree {
    models::conformance::testing::tiny_package(root, name, "1", files)
}

fn pack_all(model: &FuseModel, work: &Path, trees: &[PackageTree]) -> (Vec<Artifact>, RunCtx) {
    let mirror = work.join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    let set = trees
        .iter()
        .map(|t| model.pack(t, &mirror).unwrap())
        .collect();
    (set, ctx(work, mirror))
}

#[test]
fn root_fuse_picks_up_a_new_image_without_remounting() {
    let test = "root_fuse_picks_up_a_new_image_without_remounting";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let trees = vec![
            tiny(
                work.path(),
                "a",
                &[("usr/bin/a", "a\n"), ("usr/lib/liba.so", "A")],
            ),
            tiny(work.path(), "b", &[("usr/bin/b", "b\n")]),
            tiny(
                work.path(),
                "c",
                &[("usr/bin/c", "c\n"), ("usr/share/c/data", "C")],
            ),
        ];
        models::fuse::daemon::set_daemon_program(env!("CARGO_BIN_EXE_pkgbench-fuse-daemon").into());
        let mut model = FuseModel::new();
        let (set, ctx) = pack_all(&model, work.path(), &trees);
        model.install(&set[..2], &ctx).unwrap();
        let view = model.view().root;
        let mounts_before = mounts_under("/proc/self/mounts", work.path());
        let dev = fs::metadata(&view).unwrap().dev();
        // The kernel now holds usr/bin's listing and negative entries for c's names.
        let names = |dir: &Path| {
            let mut v: Vec<_> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&view.join("usr/bin")), ["a", "b"]);
        assert!(!view.join("usr/bin/c").exists());
        assert!(!view.join("usr/share").exists());
        let mut times = PhaseTimes::default();
        model.add(&set[2], &ctx, &mut times).unwrap();
        assert!(times.get("notify").is_some());
        assert_eq!(fs::read_to_string(view.join("usr/bin/c")).unwrap(), "c\n");
        assert_eq!(
            fs::read_to_string(view.join("usr/share/c/data")).unwrap(),
            "C"
        );
        assert_eq!(names(&view.join("usr/bin")), ["a", "b", "c"]);
        assert_eq!(fs::metadata(&view).unwrap().dev(), dev, "remounted");
        assert_eq!(
            mounts_under("/proc/self/mounts", work.path()),
            mounts_before
        );
        let ro = model.mountpoint().unwrap().to_path_buf();
        assert_eq!(names(&ro), ["a_1", "b_1", "c_1", "union"]);
        // A reset of the daemon's caches changes nothing the reader sees.
        model.reset_caches().unwrap();
        assert_eq!(
            fs::read_to_string(view.join("usr/lib/liba.so")).unwrap(),
            "A"
        );
        assert_eq!(names(&view.join("usr/bin")), ["a", "b", "c"]);
        model.teardown().unwrap();
        assert!(mounts_under("/proc/self/mounts", work.path()).is_empty());
    });
}

#[test]
fn root_fuse_two_packages_providing_a_path_merge_directories_and_the_first_wins() {
    let test = "root_fuse_two_packages_providing_a_path_merge_directories_and_the_first_wins";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let first = tiny(
            work.path(),
            "first",
            &[
                ("etc/conf", "first\n"),
                ("usr/share/doc/first", "1"),
                ("x", "a file"),
                ("y/", ""),
            ],
        );
        let second = tiny(
            work.path(),
            "second",
            &[
                ("etc/conf", "second\n"),
                ("usr/share/doc/second", "2"),
                ("x/inside", "hidden"),
                ("y", "hidden too"),
            ],
        );
        models::fuse::daemon::set_daemon_program(env!("CARGO_BIN_EXE_pkgbench-fuse-daemon").into());
        let mut model = FuseModel::new();
        let (set, ctx) = pack_all(&model, work.path(), &[first, second]);
        model.install(&set, &ctx).unwrap();
        let view = model.view().root;
        // Directories merge.
        assert_eq!(
            fs::read_to_string(view.join("usr/share/doc/first")).unwrap(),
            "1"
        );
        assert_eq!(
            fs::read_to_string(view.join("usr/share/doc/second")).unwrap(),
            "2"
        );
        // A file provided twice: the first installed wins.
        assert_eq!(
            fs::read_to_string(view.join("etc/conf")).unwrap(),
            "first\n"
        );
        // A file over a directory, and a directory over a file: the first one's kind.
        assert!(view.join("x").is_file());
        assert!(!view.join("x/inside").exists());
        assert!(view.join("y").is_dir());
        // Each package alone still shows its own version.
        let ro = model.mountpoint().unwrap().to_path_buf();
        // Opens are the kernel's (zero-message open): a write is still refused.
        let write = fs::OpenOptions::new()
            .write(true)
            .open(view.join("etc/conf"));
        assert_eq!(write.unwrap_err().raw_os_error(), Some(libc::EROFS));
        // Package content never grants privileges: the mount is nosuid and nodev.
        let mounts = mounts_under("/proc/self/mounts", &ro);
        assert_eq!(mounts.len(), 1, "{mounts:?}");
        let options = mounts[0].split(' ').nth(3).unwrap_or("");
        for wanted in ["ro", "nosuid", "nodev"] {
            assert!(
                options.split(',').any(|o| o == wanted),
                "no {wanted}: {}",
                mounts[0]
            );
        }
        assert_eq!(
            fs::read_to_string(ro.join("second_1/etc/conf")).unwrap(),
            "second\n"
        );
        assert_eq!(
            fs::read_to_string(ro.join("second_1/x/inside")).unwrap(),
            "hidden"
        );
        model.teardown().unwrap();
    });
}

#[test]
fn root_fuse_a_failed_install_is_torn_down_without_a_mount_left() {
    let test = "root_fuse_a_failed_install_is_torn_down_without_a_mount_left";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let trees: Vec<_> = (0..3)
            .map(|i| {
                tiny(
                    work.path(),
                    &format!("p{i}"),
                    &[(&format!("usr/bin/p{i}"), "x")],
                )
            })
            .collect();
        models::fuse::daemon::set_daemon_program(env!("CARGO_BIN_EXE_pkgbench-fuse-daemon").into());
        let mut model = FuseModel::new();
        let (mut set, ctx) = pack_all(&model, work.path(), &trees);
        // Not a SquashFS image, and the index says so: the daemon must refuse it.
        fs::write(ctx.mirror.join(&set[2].files[0]), vec![0x55u8; 8192]).unwrap();
        models::conformance::testing::republish(&mut set[2], &ctx.mirror);
        let err = format!("{:#}", model.install(&set, &ctx).unwrap_err());
        assert!(
            err.contains("p2_1.sqfs") && err.contains("not a SquashFS image"),
            "{err}"
        );
        assert_eq!(mounts_under("/proc/self/mounts", work.path()).len(), 1);
        assert!(model.view().root.join("usr/bin/p1").is_file());
        model.teardown().unwrap();
        assert!(mounts_under("/proc/self/mounts", work.path()).is_empty());
        // A dropped model unmounts too (a harness that unwinds).
        models::fuse::daemon::set_daemon_program(env!("CARGO_BIN_EXE_pkgbench-fuse-daemon").into());
        let mut model = FuseModel::new();
        fs::remove_dir_all(&ctx.target).unwrap();
        model.install(&set[..2], &ctx).unwrap();
        assert_eq!(mounts_under("/proc/self/mounts", work.path()).len(), 1);
        drop(model);
        assert!(mounts_under("/proc/self/mounts", work.path()).is_empty());
    });
}
