//! The reference runs of the real tools (`ref-dpkg`, `ref-nix`) on a small real subset of
//! the qemu closure: the conformance suite (the view equals the corpus) and their phases.

use harness::conformance::run_conformance;
use harness::testing::require_root;
use models::refs::dpkg::DpkgModel;
use models::refs::nix::NixStoreModel;
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
