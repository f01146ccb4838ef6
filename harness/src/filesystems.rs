//! The filesystem as a dimension (`harness run --fs ext4,xfs,btrfs,tmpfs`): for each
//! kind, a fresh filesystem the models' targets live on. fsync, create and lookup costs
//! differ by an order of magnitude between filesystems, so a conclusion should be shown
//! to survive the change.
//!
//! ext4, xfs and btrfs are made with their `mkfs` on a sparse file of `SIZE_BYTES` under
//! the work directory (the command line is recorded), attached to a loop device
//! read-write with autoclear and mounted in the run's private mount namespace; tmpfs is
//! mounted with `size=`. Everything a model writes (its target: root, store, images,
//! databases) and the calibration live there; the corpus and the mirrors, which models
//! only read from, stay in the work directory. When the filesystem is dropped, or the
//! harness dies (even by SIGKILL), its mount goes with the namespace and the loop device
//! detaches itself; the backing file is removed on drop and replaced by the next run.

use crate::host::mount_facts;
use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Size of each filesystem: room for every model's target of the default corpus, their
/// upgrades and the calibration's 128 MiB, with space to spare.
pub const SIZE_BYTES: u64 = 8 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    Ext4,
    Xfs,
    Btrfs,
    Tmpfs,
}

impl FsKind {
    pub const ALL: [FsKind; 4] = [FsKind::Ext4, FsKind::Xfs, FsKind::Btrfs, FsKind::Tmpfs];

    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ext4 => "ext4",
            FsKind::Xfs => "xfs",
            FsKind::Btrfs => "btrfs",
            FsKind::Tmpfs => "tmpfs",
        }
    }

    /// The mkfs command line (program and arguments before the image), or None for
    /// tmpfs. Quiet and forced (the image is new), otherwise each tool's defaults (and
    /// ext4's verity feature).
    fn mkfs(self) -> Option<(&'static str, &'static [&'static str])> {
        match self {
            // With the verity feature, as composefs's hosts make ext4 (a kernel with
            // fs-verity then enforces the store's digests); it changes nothing for a
            // file that does not enable verity, which is every other model's.
            FsKind::Ext4 => Some(("mkfs.ext4", &["-q", "-F", "-O", "verity"])),
            FsKind::Xfs => Some(("mkfs.xfs", &["-q", "-f"])),
            FsKind::Btrfs => Some(("mkfs.btrfs", &["-q", "-f"])),
            FsKind::Tmpfs => None,
        }
    }

    /// Parses `--fs`: a comma-separated list of kinds, each once.
    pub fn parse_list(s: &str) -> Result<Vec<FsKind>> {
        let mut out = Vec::new();
        for word in s.split(',') {
            let Some(kind) = FsKind::ALL.iter().find(|k| k.name() == word) else {
                bail!(
                    "unknown filesystem {word:?}: use ext4, xfs, btrfs or tmpfs, comma-separated"
                );
            };
            if !out.contains(kind) {
                out.push(*kind);
            }
        }
        Ok(out)
    }
}

/// What results.json records of the filesystem a run measured on.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FsRecord {
    pub kind: String,
    /// The mkfs command that made it (empty for tmpfs).
    pub mkfs: String,
    pub size_bytes: u64,
    /// Per-mount and superblock options, as in `/proc/self/mountinfo`.
    pub mount_options: String,
}

/// A filesystem made for a run, mounted at `mount_point`; unmounted on drop.
pub struct TestFs {
    pub kind: FsKind,
    pub mount_point: PathBuf,
    image: Option<PathBuf>,
    pub record: FsRecord,
}

impl TestFs {
    /// Makes and mounts a filesystem of `kind` at `WORK_DIR/fs/KIND` (see the module
    /// doc). Needs root and a private mount namespace.
    pub fn create(kind: FsKind, work_dir: &Path) -> Result<TestFs> {
        let root = work_dir.join("fs");
        let mount_point = root.join(kind.name());
        // A mount point left by an earlier run is only a directory: its mount died with
        // that run's namespace.
        if mount_point.exists() {
            fs::remove_dir_all(&mount_point)
                .with_context(|| format!("removing {}", mount_point.display()))?;
        }
        fs::create_dir_all(&mount_point)
            .with_context(|| format!("creating {}", mount_point.display()))?;
        let (image, mkfs) = match kind.mkfs() {
            None => {
                mount(
                    Some("tmpfs"),
                    &mount_point,
                    Some("tmpfs"),
                    MsFlags::empty(),
                    Some(format!("size={SIZE_BYTES}").as_str()),
                )
                .with_context(|| format!("mounting a tmpfs at {}", mount_point.display()))?;
                (None, String::new())
            }
            Some((program, args)) => {
                let image = root.join(format!("{}.img", kind.name()));
                let file = fs::File::create(&image)
                    .with_context(|| format!("creating {}", image.display()))?;
                file.set_len(SIZE_BYTES)
                    .with_context(|| format!("sizing {}", image.display()))?;
                drop(file);
                let out = Command::new(program)
                    .args(args)
                    .arg(&image)
                    .output()
                    .with_context(|| format!("starting {program} (is it installed?)"))?;
                if !out.status.success() {
                    let _ = fs::remove_file(&image);
                    bail!(
                        "{program} {} failed ({}): {}",
                        image.display(),
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                let device = models::overlay::loopdev::attach_read_write(&image)?;
                mount(
                    Some(&device.path),
                    &mount_point,
                    Some(kind.name()),
                    MsFlags::empty(),
                    None::<&str>,
                )
                .with_context(|| {
                    format!(
                        "mounting {} ({}) at {}",
                        device.path.display(),
                        image.display(),
                        mount_point.display()
                    )
                })?;
                // The mount holds the device now; closing ours arms autoclear.
                drop(device);
                let command = format!("{program} {} IMAGE", args.join(" "));
                (Some(image), command)
            }
        };
        let facts = mount_facts(&mount_point);
        let record = FsRecord {
            kind: kind.name().into(),
            mkfs,
            size_bytes: SIZE_BYTES,
            mount_options: facts.mount_options,
        };
        if facts.filesystem != kind.name() {
            let _ = umount2(&mount_point, MntFlags::MNT_DETACH);
            bail!(
                "{}: mounted a {} filesystem, found {:?}",
                mount_point.display(),
                kind.name(),
                facts.filesystem
            );
        }
        Ok(TestFs {
            kind,
            mount_point,
            image,
            record,
        })
    }
}

impl Drop for TestFs {
    fn drop(&mut self) {
        // Lazy: a reader still inside keeps only a detached tree alive.
        let _ = umount2(&self.mount_point, MntFlags::MNT_DETACH);
        let _ = fs::remove_dir(&self.mount_point);
        if let Some(image) = &self.image {
            let _ = fs::remove_file(image);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_once_each_and_unknown_ones_are_named() {
        assert_eq!(
            FsKind::parse_list("xfs,ext4,xfs").unwrap(),
            vec![FsKind::Xfs, FsKind::Ext4]
        );
        let err = FsKind::parse_list("ext4,zfs").unwrap_err().to_string();
        assert!(err.contains("\"zfs\""), "{err}");
    }
}
