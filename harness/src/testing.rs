//! Helpers for tests: those of `models::conformance::testing` (root or skip, a private
//! mount namespace per test, fixtures), and what only the harness can give (a `fuse`
//! model served by the harness binary).

pub use models::conformance::testing::*;

/// A `fuse` model whose daemon is served by `harness_bin` (a test passes
/// `env!("CARGO_BIN_EXE_harness")`): a test binary is no program that serves daemons.
pub fn fuse_model_served_by(harness_bin: &str) -> models::fuse::FuseModel {
    models::fuse::daemon::set_daemon_program(harness_bin.into());
    models::fuse::FuseModel::new()
}

/// A new work directory that shares the generated corpora of the usual one
/// (`PKGBENCH_WORK_DIR`, default `/var/tmp/pkgbench`) when there are some (the default
/// corpus is 176 MiB), so a test that runs the harness generates none again; its
/// mirrors, targets and results are its own.
pub fn work_dir_sharing_corpora() -> tempfile::TempDir {
    let work = tempfile::tempdir().expect("making a temporary work directory");
    let shared = std::path::PathBuf::from(
        std::env::var("PKGBENCH_WORK_DIR").unwrap_or_else(|_| "/var/tmp/pkgbench".into()),
    )
    .join("corpora");
    if shared.is_dir() {
        std::os::unix::fs::symlink(&shared, work.path().join("corpora"))
            .expect("linking the shared corpora");
    }
    work
}
