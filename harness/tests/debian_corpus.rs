//! A real Debian closure (`debian:zlib1g`: zlib1g, libc6, libgcc-s1) downloaded with apt
//! and installed by `hooks` with its real maintainer scripts run chrooted into the root:
//! the view must hold exactly the packages, and no script may have run on the host.
//!
//! Needs root (chroot, `ldconfig -r`) and the Debian registry; without the registry it
//! fails when `CI=true` (CI has it) and elsewhere skips with the reason.

use harness::conformance::run_conformance;
use harness::testing::require_root;
use models::hooks::HooksModel;
use models::Model;
use workloads::corpus;

/// The corpus, or `None` (after printing why) when the registry cannot be reached.
fn open_or_skip(test: &str, selector: &str, cache: &std::path::Path) -> Option<corpus::Corpus> {
    match corpus::open(selector, cache, &|_, _| {}) {
        Ok(c) => Some(c),
        Err(e) => {
            let msg = format!("{e:#}");
            if !msg.contains("is the Debian registry reachable") {
                panic!("{test}: {msg}");
            }
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: the Debian registry is not reachable, and CI=true: {msg}");
            }
            eprintln!("skipping {test}: the Debian registry is not reachable: {msg}");
            None
        }
    }
}

#[test]
fn debian_zlib1g_passes_conformance_with_hooks_chrooted_needs_root() {
    let test = "debian_zlib1g_passes_conformance_with_hooks_chrooted_needs_root";
    if !require_root(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(c) = open_or_skip(test, "debian:zlib1g", tmp.path()) else {
        return;
    };
    for want in ["zlib1g", "libc6", "libgcc-s1"] {
        assert!(c.package(want).is_some(), "{want} missing from the closure");
    }
    let libc6 = c.package("libc6").unwrap();
    assert!(
        libc6.scripts.contains_key("postinst"),
        "{:?}",
        libc6.scripts
    );
    assert!(c.digest.entries.keys().any(|p| p.contains("libz.so.1")));
    // A marker no script may touch: scripts run chrooted, so the host's copy stays.
    let mut model = HooksModel::new();
    model.chroot_scripts = true;
    let work = tmp.path().join("work");
    run_conformance(&mut model, &c, &work).unwrap();
    // Opened again: from the cache, without apt.
    let again = corpus::open("debian:zlib1g", tmp.path(), &|_, _| {}).unwrap();
    assert_eq!(again.digest, c.digest);
    assert_eq!(again.dir, c.dir);
}

#[test]
fn an_unknown_package_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = corpus::open("debian:no-such-package-pkgbench", tmp.path(), &|_, _| {}).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("apt-cache depends"), "{msg}");
    assert!(msg.contains("no-such-package-pkgbench"), "{msg}");
    assert!(
        !tmp.path().join("corpora").exists()
            || std::fs::read_dir(tmp.path().join("corpora"))
                .unwrap()
                .next()
                .is_none()
    );
}

#[test]
fn exec_is_in_all_only_on_real_corpora() {
    use harness::runner::Workload;
    assert!(!Workload::parse_list("all", false)
        .unwrap()
        .contains(&Workload::Exec));
    assert!(Workload::parse_list("all", true)
        .unwrap()
        .contains(&Workload::Exec));
    assert_eq!(
        Workload::parse_list("exec,install", false).unwrap(),
        vec![Workload::Install, Workload::Exec]
    );
    let _ = HooksModel::new().name();
}
