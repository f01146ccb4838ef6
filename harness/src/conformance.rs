//! The view check and conformance suites, which live in `models` (feature
//! `conformance`) beside the models they check; re-exported for the runner and the
//! harness's own tests.

pub use models::conformance::*;
