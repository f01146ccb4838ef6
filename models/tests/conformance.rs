//! Every model of the catalog through every check of the conformance suite
//! (`models::conformance`), with `models` alone: the `fuse` model's daemon is this
//! crate's own `pkgbench-fuse-daemon`. A model whose needs this machine does not meet
//! fails when `CI=true` and is skipped with the reason elsewhere.

use models::conformance::testing::in_private_mount_namespace;
use models::conformance::{run_check, Check};
use models::{catalog, ModelOptions};

/// Maintainer scripts (libc6, dpkg, tar), an `ldconfig` trigger, a dependency cycle
/// (libc6, libgcc-s1), and a point release that upgrades some of them.
const SUBSET: &str = "debian-qemu:libc6,libgcc-s1,gcc-12-base,tar,dpkg,libselinux1,libpcre2-8-0,libbz2-1.0,liblzma5,libzstd1,zlib1g,libacl1,libmd0";

/// Runs `check` on the catalog's model `name`, in a private mount namespace.
fn conformance(test: &str, name: &str, check: Check) {
    let info = catalog::find(name).expect("a model of the catalog");
    let missing = models::needs::unmet(info.needs);
    if !missing.is_empty() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "{test}: {} and CI=true: failing instead of skipping",
            missing.join("; ")
        );
        eprintln!("skipping {test}: {}", missing.join("; "));
        return;
    }
    models::fuse::daemon::set_daemon_program(env!("CARGO_BIN_EXE_pkgbench-fuse-daemon").into());
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let make = info.make.expect("a built model");
        let build = || make(&ModelOptions::default());
        if let Err(e) = run_check(check, &build, SUBSET, work.path()) {
            panic!("{e:#}");
        }
    });
}

/// One module per model, one test per check.
macro_rules! model_tests {
    ($($module:ident => $name:literal),* $(,)?) => {$(
        mod $module {
            use super::*;
            #[test]
            fn view_after_install() {
                conformance(concat!(stringify!($module), "::view_after_install"), $name, Check::ViewAfterInstall);
            }
            #[test]
            fn view_after_upgrade() {
                conformance(concat!(stringify!($module), "::view_after_upgrade"), $name, Check::ViewAfterUpgrade);
            }
            #[test]
            fn failed_install_leaves_nothing() {
                conformance(concat!(stringify!($module), "::failed_install_leaves_nothing"), $name, Check::FailedInstallLeavesNothing);
            }
            #[test]
            fn corrupt_upgrade_keeps_the_old_view() {
                conformance(concat!(stringify!($module), "::corrupt_upgrade_keeps_the_old_view"), $name, Check::CorruptUpgradeKeepsTheOldView);
            }
            #[test]
            fn teardown_leaves_nothing() {
                conformance(concat!(stringify!($module), "::teardown_leaves_nothing"), $name, Check::TeardownLeavesNothing);
            }
        }
    )*};
}

model_tests! {
    hooks => "hooks",
    nar => "nar",
    fuse => "fuse",
    overlay => "overlay",
    fuse_passthrough => "fuse-passthrough",
    composefs => "composefs",
    ref_squashfuse => "ref-squashfuse",
    ref_dpkg => "ref-dpkg",
    ref_nix => "ref-nix",
}

#[test]
fn every_model_of_the_catalog_is_tested_here() {
    let source = include_str!("conformance.rs");
    for info in catalog::catalog() {
        assert!(
            source.contains(&format!("=> \"{}\"", info.name)),
            "{} has no conformance tests here",
            info.name
        );
    }
    assert_eq!(
        Check::ALL.len(),
        5,
        "a new check needs its test in model_tests!"
    );
}
