//! Package formats: how a package tree travels from a mirror to a target.
//! `tar` is dpkg's data.tar (here compressed with zstd); `nar` and `squashfs` come with
//! their models.

pub mod beneath;
pub mod compression;
pub mod nar;
pub mod squashfs;
pub mod tar;
