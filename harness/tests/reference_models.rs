//! The reference runs of the real tools (`ref-dpkg`, `ref-nix`, `ref-squashfuse`) on a
//! small real subset of the qemu closure: the conformance suite (the view equals the
//! corpus), the upgrade conformance (the view equals the upgraded corpus), and their
//! phases.

use harness::conformance::{run_conformance, run_upgrade_conformance};
use harness::testing::{in_private_mount_namespace, require_root, upgrade_fixture};
use models::fuse::reference::SquashfuseModel;
use models::refs::dpkg::DpkgModel;
use models::refs::nix::NixStoreModel;
use models::Model;
use workloads::corpus;

/// Maintainer scripts (libc6, dpkg, tar), an `ldconfig` trigger, a dependency cycle
/// (libc6 and libgcc-s1), and dpkg's own `/var/lib/dpkg` directories in the corpus.
const SUBSET: &str = "debian-qemu:libc6,libgcc-s1,gcc-12-base,tar,dpkg,libselinux1,libpcre2-8-0,libbz2-1.0,liblzma5,libzstd1,zlib1g,libacl1,libmd0";

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

#[test]
fn root_ref_dpkg_passes_conformance() {
    if !require_root("root_ref_dpkg_passes_conformance") {
        return;
    }
    assert!(on_path("dpkg") && on_path("dpkg-deb"), "dpkg is missing");
    let work = tempfile::tempdir().unwrap();
    let corpus = corpus::open(SUBSET, work.path(), &|_, _| {}).unwrap();
    let mut model = DpkgModel::new();
    let times = run_conformance(&mut model, &corpus, work.path()).unwrap();
    for phase in ["unpack", "configure"] {
        assert!(
            times.get(phase).is_some_and(|d| !d.is_zero()),
            "phase {phase} not timed: {times:?}"
        );
    }
}

#[test]
fn ref_nix_passes_conformance() {
    if !on_path("nix-store") || !on_path("zstd") {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "nix-store or zstd is missing, and CI=true: failing instead of skipping"
        );
        eprintln!("skipping ref_nix_passes_conformance: nix-store or zstd is missing");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let corpus = corpus::open(SUBSET, work.path(), &|_, _| {}).unwrap();
    let mut model = NixStoreModel::new();
    let times = run_conformance(&mut model, &corpus, work.path()).unwrap();
    for phase in ["restore", "profile"] {
        assert!(
            times.get(phase).is_some_and(|d| !d.is_zero()),
            "phase {phase} not timed: {times:?}"
        );
    }
}

/// The upgrade conformance of `model` on SUBSET's point release in `work`, with
/// `phases` timed.
fn upgrade_passes(model: &mut dyn Model, work: &std::path::Path, phases: &[&str]) {
    let (old, new) = upgrade_fixture(SUBSET, work);
    assert!(!new.is_empty(), "the point release upgrades something");
    let times = run_upgrade_conformance(model, &old, &new, work).unwrap();
    for phase in phases {
        assert!(
            times.get(phase).is_some_and(|d| !d.is_zero()),
            "{}: upgrade phase {phase} not timed: {times:?}",
            model.name()
        );
    }
}

#[test]
fn root_ref_dpkg_upgrades_with_dpkg() {
    if !require_root("root_ref_dpkg_upgrades_with_dpkg") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    upgrade_passes(&mut DpkgModel::new(), work.path(), &["unpack", "configure"]);
}

#[test]
fn ref_nix_upgrades_with_nix_store() {
    if !on_path("nix-store") || !on_path("zstd") {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "nix-store or zstd is missing, and CI=true: failing instead of skipping"
        );
        eprintln!("skipping ref_nix_upgrades_with_nix_store: nix-store or zstd is missing");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    upgrade_passes(
        &mut NixStoreModel::new(),
        work.path(),
        &["restore", "profile"],
    );
}

#[test]
fn root_ref_squashfuse_upgrades_with_new_layers_under_a_new_overlay() {
    let test = "root_ref_squashfuse_upgrades_with_new_layers_under_a_new_overlay";
    if !require_root(test) {
        return;
    }
    assert!(on_path("squashfuse_ll"), "squashfuse_ll is missing");
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        upgrade_passes(
            &mut SquashfuseModel::new(),
            work.path(),
            &["fetch", "squashfuse", "overlay", "release"],
        );
        let ours = work.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(
            !mounts.contains(&ours),
            "mounts under {ours} left after teardown:\n{mounts}"
        );
    });
}
