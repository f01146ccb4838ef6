//! Corpora and read workloads for pkgbench.
//!
//! `corpus` builds the package trees every model installs (embedded replays of Debian
//! closures, with deterministic generated contents); `reads` holds the workloads that read
//! a model's view; `view` walks a view and computes its digest. This crate knows nothing
//! about models: it speaks of directories.

pub mod corpus;
pub mod exec;
pub mod manifest;
pub mod reads;
pub mod view;
