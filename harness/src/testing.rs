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
