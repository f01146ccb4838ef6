//! The `fuse-passthrough` model: reads of files pass through to the kernel (the daemon
//! answers no `READ` for them), every file reads back its package's bytes, mmap works,
//! the `passthrough_min_bytes` setting sends small files back to the daemon, an upgrade
//! releases the old version's kernel mount, and teardown leaves no mount or loop device.
//! The conformance suite runs it too (`conformance.rs`). Needs root and a kernel with
//! FUSE passthrough; every mounting part runs in a private mount namespace.

use models::conformance::testing::{in_private_mount_namespace, mounts_under, require_root};
use models::fuse::FuseOptions;
use models::fuse_passthrough::FusePassthroughModel;
use models::{Artifact, Durability, Model, PackageTree, RunCtx};
use std::fs;
use std::path::{Path, PathBuf};
use workloads::corpus;

const SUBSET: &str = "debian-qemu:libc6,libgcc-s1,gcc-12-base,zlib1g,libzstd1";

fn ctx(work: &Path, mirror: PathBuf) -> RunCtx {
    RunCtx {
        target: work.join("target"),
        mirror,
        durability: Durability::None,
        jobs: 1,
        http: None,
    }
}

/// Every regular file of `trees`, relative to the view, with its source and size.
fn files_of(trees: &[PackageTree]) -> Vec<(PathBuf, PathBuf, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, PathBuf, u64)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                walk(root, &entry.path(), out);
            } else if kind.is_file() {
                let rel = entry.path().strip_prefix(root).unwrap().to_path_buf();
                out.push((rel, entry.path(), entry.metadata().unwrap().len()));
            }
        }
    }
    let mut out = Vec::new();
    for tree in trees {
        walk(&tree.root, &tree.root, &mut out);
    }
    out
}

/// Installs SUBSET with `options`, reads every file through the view (checked against
/// its source), and returns (READ requests the daemon answered during the reads, bytes
/// of files at least `passthrough_min_bytes` long, bytes of the smaller ones).
fn reads_of_a_full_read(work: &Path, options: FuseOptions) -> (usize, u64, u64) {
    let corpus = corpus::open(SUBSET, &work.join("corpora"), &|_, _| {}).unwrap();
    let trees = models::conformance::package_trees(&corpus);
    models::fuse::daemon::set_daemon_program(env!("CARGO_BIN_EXE_pkgbench-fuse-daemon").into());
    let mut model = FusePassthroughModel::new(options);
    let mirror = work.join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    let set: Vec<Artifact> = trees
        .iter()
        .map(|t| model.pack(t, &mirror).unwrap())
        .collect();
    let ctx = ctx(work, mirror);
    let times = model.install(&set, &ctx).unwrap();
    for phase in ["fetch", "verify", "mount", "loop", "squashfs", "notify"] {
        assert!(
            times.get(phase).is_some_and(|d| !d.is_zero()),
            "phase {phase} not timed: {times:?}"
        );
    }
    // One kernel mount per image, beside the FUSE mount.
    let backing = mounts_under(&ctx.target.join("backing"));
    assert_eq!(backing.len(), set.len(), "{backing:?}");
    let view = model.view().root;
    let daemon = model.fuse().daemon().unwrap();
    assert_eq!(daemon.stats().unwrap().passthrough, "granted");
    let before = daemon.stats().unwrap().reads;
    let (mut large, mut small) = (0, 0);
    for (rel, src, size) in files_of(&trees) {
        let got = fs::read(view.join(&rel)).unwrap();
        assert!(got == fs::read(&src).unwrap(), "{} differs", rel.display());
        if size >= options.passthrough_min_bytes {
            large += size;
        } else {
            small += size;
        }
    }
    let stats = model.fuse().daemon().unwrap().stats().unwrap();
    let reads = stats.reads - before;
    if options.passthrough_min_bytes == 0 {
        assert!(
            stats.backing_files > 0,
            "no backing file registered: {stats:?}"
        );
    }
    // Emptying the caches closes every backing file and mounts the images again; the
    // view still reads.
    model.reset_caches().unwrap();
    let stats = model.fuse().daemon().unwrap().stats().unwrap();
    assert_eq!(stats.backing_files, 0, "{stats:?}");
    assert_eq!(mounts_under(&ctx.target.join("backing")).len(), set.len());
    let (rel, src, _) = files_of(&trees).pop().unwrap();
    assert!(fs::read(view.join(&rel)).unwrap() == fs::read(src).unwrap());
    model.teardown().unwrap();
    assert!(mounts_under(work).is_empty(), "{:?}", mounts_under(work));
    (reads, large, small)
}

#[test]
fn root_fuse_passthrough_reads_never_reach_the_daemon() {
    let test = "root_fuse_passthrough_reads_never_reach_the_daemon";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let (reads, large, _) = reads_of_a_full_read(work.path(), FuseOptions::default());
        assert!(large > 1 << 20, "the subset has {large} bytes of files");
        assert_eq!(
            reads, 0,
            "every file passed through, yet the daemon answered {reads} reads"
        );
    });
}

#[test]
fn root_fuse_passthrough_small_files_below_the_setting_are_read_by_the_daemon() {
    let test = "root_fuse_passthrough_small_files_below_the_setting_are_read_by_the_daemon";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let options = FuseOptions {
            passthrough_min_bytes: 1 << 30,
            ..FuseOptions::default()
        };
        let (reads, large, small) = reads_of_a_full_read(work.path(), options);
        assert_eq!(large, 0, "no file of the subset is 1 GiB");
        assert!(small > 0);
        // At most 1 MiB per request: at least one read per file with bytes.
        assert!(
            reads > 0,
            "{small} bytes read, but the daemon answered no read"
        );
    });
}

#[test]
fn root_fuse_passthrough_mmap_and_upgrade_release_the_old_mount() {
    let test = "root_fuse_passthrough_mmap_and_upgrade_release_the_old_mount";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let (trees, new_versions) =
            models::conformance::testing::upgrade_fixture(SUBSET, work.path());
        assert!(
            !new_versions.is_empty(),
            "the point release upgrades something"
        );
        models::fuse::daemon::set_daemon_program(env!("CARGO_BIN_EXE_pkgbench-fuse-daemon").into());
        let mut model = FusePassthroughModel::default();
        let mirror = work.path().join("mirror");
        fs::create_dir_all(&mirror).unwrap();
        let set: Vec<Artifact> = trees
            .iter()
            .map(|t| model.pack(t, &mirror).unwrap())
            .collect();
        let ctx = ctx(work.path(), mirror.clone());
        model.install(&set, &ctx).unwrap();
        // mmap through the passthrough file: the bytes of the largest file.
        let mut files = files_of(&trees);
        files.sort_by_key(|f| std::cmp::Reverse(f.2));
        let (rel, src, size) = files[0].clone();
        let file = fs::File::open(model.view().root.join(&rel)).unwrap();
        let len = usize::try_from(size).unwrap();
        // SAFETY: a private read-only mapping of an open file, unmapped below.
        let mapped = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        assert_ne!(mapped, libc::MAP_FAILED, "mmap of {}", rel.display());
        // SAFETY: the mapping is `len` readable bytes.
        let bytes = unsafe { std::slice::from_raw_parts(mapped.cast::<u8>(), len) };
        assert!(
            bytes == fs::read(&src).unwrap().as_slice(),
            "{} mapped differs",
            rel.display()
        );
        // SAFETY: unmapping what was mapped above.
        unsafe { libc::munmap(mapped, len) };
        drop(file);
        // Every file opened once: each registers its backing file, which holds its
        // image's mount.
        for (rel, _, _) in &files {
            fs::read(model.view().root.join(rel)).unwrap();
        }
        // An upgrade of one package: its new image gets a mount, the old one's goes.
        let to: Vec<Artifact> = new_versions
            .iter()
            .map(|t| model.pack(t, &mirror).unwrap())
            .collect();
        let times = model.upgrade(&set, &to, &ctx).unwrap();
        assert!(times.get("release").is_some(), "{times:?}");
        let backing = mounts_under(&ctx.target.join("backing"));
        assert_eq!(
            backing.len(),
            set.len(),
            "one kernel mount per package after the upgrade: {backing:?}"
        );
        // The replaced images' loop devices detach: no backing file still holds them.
        let target = ctx.target.to_string_lossy().into_owned();
        models::conformance::testing::eventually(
            "the replaced images' loop devices detach",
            || {
                models::conformance::testing::loop_backing_files()
                    .iter()
                    .all(|f| !(f.starts_with(&target) && f.ends_with(" (deleted)")))
            },
        );
        model.teardown().unwrap();
        assert!(mounts_under(work.path()).is_empty());
    });
}
