//! The pkgbench harness: runs packaging models on identical workloads and writes results.
//! The binary (`main.rs`) is glue over these modules.

pub mod caches;
pub mod calibrate;
pub mod chroot;
pub mod cli;
pub mod commands;
pub mod compare;
pub mod conformance;
pub mod filesystems;
pub mod host;
pub mod mirror;
pub mod mock;
pub mod namespace;
pub mod net;
pub mod plot;
pub mod progress;
pub mod report;
pub mod requirements;
pub mod resources;
pub mod results;
pub mod runner;
pub mod schedule;
pub mod stats;
pub mod sweep;
pub mod testing;
pub mod workdir;
