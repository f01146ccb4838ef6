//! Cold means cold for every model: `drop_caches` empties the page cache, dentries and
//! inodes, but not the caches a filesystem keeps of its own, such as squashfs's
//! per-mount caches of decompressed metadata and fragment blocks or a `squashfuse_ll`
//! process's block cache. So `overlay` and `ref-squashfuse` mount their view again in
//! `reset_caches`, and these tests measure that it matters: the storage bytes a
//! many-file walk reads after only `drop_caches` are fewer than after a fresh mount,
//! and after the reset they are those of a fresh mount again. Also: the block device's
//! read counters every sample records see a cold read and not a warm one. Needs root.

use harness::caches::{CacheControl, KernelCaches};
use harness::conformance::many_file_of;
use harness::testing::{in_private_mount_namespace, require_root};
use models::fuse::reference::SquashfuseModel;
use models::overlay::OverlayModel;
use models::{Durability, Model, RunCtx};
use std::fs;
use std::path::Path;
use workloads::corpus;

const SUBSET: &str = "debian-qemu:libc6,libgcc-s1,gcc-12-base,tar,zlib1g,libzstd1,liblzma5,libbz2-1.0,libacl1,libselinux1,libpcre2-8-0,dpkg,libmd0";

/// Storage bytes read by this process and the model's service processes (`read_bytes`
/// of `/proc/PID/io`).
fn storage_read_bytes(pids: &[u32]) -> u64 {
    let read = |pid: &str| -> u64 {
        fs::read_to_string(format!("/proc/{pid}/io"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("read_bytes: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    read("self") + pids.iter().map(|p| read(&p.to_string())).sum::<u64>()
}

/// Storage bytes of one many-file walk, after the model's reset (when `reset`) and the
/// kernel's cache drop, in the runner's order.
fn walk_bytes(model: &mut dyn Model, reset: bool) -> u64 {
    if reset {
        model.reset_caches().unwrap();
    }
    KernelCaches.drop_caches().unwrap();
    let pids = model.service_pids();
    let before = storage_read_bytes(&pids);
    let counts = many_file_of(&model.view()).unwrap();
    assert!(counts.files_read > 0);
    storage_read_bytes(&pids) - before
}

/// Installs the subset with `model`, then compares the storage bytes of a walk from a
/// fresh mount, after `drop_caches` alone, and after `reset_caches` + `drop_caches`.
fn remount_matters(model: &mut dyn Model, work: &Path) {
    let corpus = corpus::open(SUBSET, &work.join("corpora"), &|_, _| {}).unwrap();
    let mirror = work.join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    let set: Vec<_> = harness::mirror::package_trees(&corpus)
        .iter()
        .map(|t| model.pack(t, &mirror).unwrap())
        .collect();
    let ctx = RunCtx {
        target: work.join("target"),
        mirror,
        durability: Durability::Native,
        jobs: 1,
        http: None,
    };
    model.install(&set, &ctx).unwrap();
    let fresh = walk_bytes(model, true);
    let dropped_only = walk_bytes(model, false);
    let reset = walk_bytes(model, true);
    eprintln!(
        "{}: many-file storage bytes: fresh mount {fresh}, drop_caches only {dropped_only}, reset + drop_caches {reset}",
        model.name()
    );
    assert!(
        dropped_only < fresh,
        "{}: drop_caches alone read as much as a fresh mount ({dropped_only} >= {fresh}): \
         the filesystem's own caches no longer outlive it, and the remount is not needed",
        model.name()
    );
    assert!(
        reset as f64 >= fresh as f64 * 0.98,
        "{}: after reset_caches the walk read {reset} bytes, a fresh mount {fresh}: not as cold",
        model.name()
    );
    let check = harness::conformance::check_view(&model.view(), &corpus.digest).unwrap();
    assert!(check.matches, "{:?}", check.differences);
    model.teardown().unwrap();
}

#[test]
fn root_overlay_reset_empties_the_squashfs_caches_drop_caches_keeps() {
    let test = "root_overlay_reset_empties_the_squashfs_caches_drop_caches_keeps";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        remount_matters(&mut OverlayModel::new(), work.path());
    });
}

#[test]
fn root_ref_squashfuse_reset_empties_the_caches_drop_caches_keeps() {
    let test = "root_ref_squashfuse_reset_empties_the_caches_drop_caches_keeps";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        remount_matters(&mut SquashfuseModel::new(), work.path());
    });
}

/// The block device's counters (`device_read_requests`, `device_read_bytes`) see a cold
/// read of a file and not a warm one: a 16 MiB file read after a cache drop costs the
/// device at least its size and some requests; read again at once, nothing like it.
#[test]
fn root_the_device_counters_see_a_cold_read_and_not_a_warm_one() {
    let test = "root_the_device_counters_see_a_cold_read_and_not_a_warm_one";
    if !require_root(test) {
        return;
    }
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let Some(device) = harness::resources::BlockDevice::of(work.path()) else {
        panic!("{test}: /var/tmp is on no block device of its own; this test needs one");
    };
    let file = work.path().join("data");
    let size: u64 = 16 << 20;
    let bytes: Vec<u8> = (0..size).map(|i| ((i * 2654435761) >> 13) as u8).collect();
    fs::write(&file, &bytes).unwrap();
    fs::File::open(&file).unwrap().sync_all().unwrap();
    let read_once = || {
        let (requests, read) = device.reads().unwrap();
        assert_eq!(fs::read(&file).unwrap().len() as u64, size);
        let (requests_after, read_after) = device.reads().unwrap();
        (requests_after - requests, read_after - read)
    };
    KernelCaches.drop_caches().unwrap();
    let (cold_requests, cold_bytes) = read_once();
    assert!(
        cold_bytes >= size,
        "a cold read of {size} bytes read {cold_bytes} from the device"
    );
    assert!(cold_requests >= 1);
    let (_, warm_bytes) = read_once();
    // The machine may read something else meanwhile, but not the file again.
    assert!(
        warm_bytes < size / 2,
        "a warm read read {warm_bytes} bytes from the device"
    );
}
