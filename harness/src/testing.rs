//! Helpers for tests that need root or a kernel feature: they fail when `CI=true` and
//! cannot run, and elsewhere skip with a printed reason.

/// True when the test may go on; false (after printing why) when it must skip.
pub fn require_root(test: &str) -> bool {
    if crate::namespace::is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: needs root, and CI=true: failing instead of skipping");
    }
    eprintln!("skipping {test}: needs root");
    false
}
