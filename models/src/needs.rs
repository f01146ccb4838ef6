//! What a model needs from the machine, as named checks.
//!
//! A model lists its needs in its description (`crate::catalog::ModelInfo::needs`); the
//! harness runs every check before the model and skips it with the failures as the
//! reason, and `harness doctor` prints them. A new kind of need is a new constant or
//! function here, never a new field the harness must learn about.

use std::path::{Path, PathBuf};

/// One need: its name (for `doctor`) and the check, which says what is missing.
#[derive(Clone, Copy)]
pub enum Need {
    /// A property of the machine; `Err` says what is missing.
    Check {
        name: &'static str,
        check: fn() -> Result<(), String>,
    },
    /// A program the model runs, looked up in `PATH` and the sbin directories.
    Program(&'static str),
}

impl std::fmt::Debug for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl Need {
    /// What is needed, in a few words.
    pub fn name(&self) -> String {
        match self {
            Need::Check { name, .. } => (*name).to_string(),
            Need::Program(p) => format!("the program {p}"),
        }
    }

    /// Whether this machine meets the need; `Err` says what is missing.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Need::Check { check, .. } => check(),
            Need::Program(p) => find_program(p)
                .map(|_| ())
                .ok_or_else(|| format!("needs the program {p} in PATH")),
        }
    }
}

/// Root: mounts, chroots, loop devices.
pub const ROOT: Need = Need::Check {
    name: "root",
    check: || {
        if rustix::process::geteuid().is_root() {
            Ok(())
        } else {
            Err("needs root (CAP_SYS_ADMIN, CAP_SYS_CHROOT)".into())
        }
    },
};

/// `/dev/fuse`: the fuse kernel module.
pub const FUSE_DEVICE: Need = Need::Check {
    name: "/dev/fuse",
    check: || device("/dev/fuse", "needs /dev/fuse (the fuse kernel module)"),
};

/// FUSE passthrough (`FUSE_PASSTHROUGH`): Linux 6.9 or later. Whether the kernel was
/// built with it (`CONFIG_FUSE_PASSTHROUGH`) only its answer at `FUSE_INIT` tells; a
/// daemon that is refused it fails its mount naming that.
pub const FUSE_PASSTHROUGH: Need = Need::Check {
    name: "FUSE passthrough (Linux 6.9)",
    check: || kernel_at_least((6, 9), "FUSE passthrough"),
};

/// What the `composefs` crate's mount needs of the kernel: EROFS mounted from a file
/// without a loop device (6.12), overlay's data-only layers (`datadir+`, 6.5) and
/// detached mounts as overlay layers (6.15; the crate's `pre-6.15` feature, a loop
/// device and a temporary mount point instead, is not built).
pub const COMPOSEFS_MOUNTS: Need = Need::Check {
    name: "composefs mounts (Linux 6.15)",
    check: || {
        kernel_at_least(
            (6, 15),
            "composefs mounts (file-backed EROFS, overlay data-only layers, detached layers)",
        )
    },
};

/// EROFS in the kernel.
pub const EROFS: Need = Need::Check {
    name: "EROFS",
    check: || kernel_filesystem("erofs"),
};

/// Whether the running kernel is `wanted` or later; `Err` names `what` needs it.
fn kernel_at_least(wanted: (u32, u32), what: &str) -> Result<(), String> {
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let (major, minor) = wanted;
    match kernel_version(&release) {
        Some(v) if v >= wanted => Ok(()),
        Some((have_major, have_minor)) => Err(format!(
            "needs {what} (Linux {major}.{minor} or later); this kernel is {have_major}.{have_minor}"
        )),
        None => Err(format!(
            "needs {what} (Linux {major}.{minor} or later); cannot read the kernel version {release:?}"
        )),
    }
}

/// `(major, minor)` of a kernel release string such as `6.18.44-fc-v1272`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether the kernel has fs-verity (`CONFIG_FS_VERITY`). No file in /proc says so, but
/// ext4 lists a `verity` feature in `/sys/fs/ext4/features` only when it is built in, so
/// that is the test. Not a need of any model: composefs uses it where it is and says so.
pub fn fs_verity() -> Result<(), String> {
    if Path::new("/sys/fs/ext4/features/verity").exists() {
        Ok(())
    } else {
        Err("this kernel has no fs-verity (CONFIG_FS_VERITY: /sys/fs/ext4/features lists no verity)".into())
    }
}

/// Loop devices.
pub const LOOP_DEVICES: Need = Need::Check {
    name: "loop devices",
    check: || {
        device(
            "/dev/loop-control",
            "needs loop devices (/dev/loop-control)",
        )
    },
};

/// OverlayFS in the kernel.
pub const OVERLAYFS: Need = Need::Check {
    name: "OverlayFS",
    check: || kernel_filesystem("overlay"),
};

/// SquashFS in the kernel.
pub const SQUASHFS: Need = Need::Check {
    name: "SquashFS",
    check: || kernel_filesystem("squashfs"),
};

/// Whether the device node `path` exists; `missing` says what is missing otherwise.
fn device(path: &str, missing: &str) -> Result<(), String> {
    if Path::new(path).exists() {
        Ok(())
    } else {
        Err(missing.to_string())
    }
}

fn kernel_filesystem(fs: &str) -> Result<(), String> {
    if kernel_has_filesystem(fs) {
        Ok(())
    } else {
        Err(format!(
            "needs {fs} in the kernel ({fs} is not in /proc/filesystems)"
        ))
    }
}

/// Whether /proc/filesystems lists `fs` (a module not yet loaded is not listed).
pub fn kernel_has_filesystem(fs: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .map(|s| s.lines().any(|l| l.split_whitespace().last() == Some(fs)))
        .unwrap_or(false)
}

/// The first `program` in PATH (or the sbin directories, which root's PATH has).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file());
    found
}

/// Every reason the machine cannot meet `needs`; empty when it can.
pub fn unmet(needs: &[Need]) -> Vec<String> {
    needs.iter().filter_map(|n| n.check().err()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_is_named_and_a_present_one_passes() {
        let needs = [
            Need::Program("sh"),
            Need::Program("pkgbench-no-such-program"),
        ];
        assert_eq!(
            unmet(&needs),
            vec!["needs the program pkgbench-no-such-program in PATH"]
        );
    }

    #[test]
    fn kernel_versions_are_read_from_release_strings() {
        assert_eq!(kernel_version("6.18.44-fc-v1272"), Some((6, 18)));
        assert_eq!(kernel_version("6.9.0"), Some((6, 9)));
        assert_eq!(kernel_version("5.10-rc1"), Some((5, 10)));
        assert_eq!(kernel_version("linux"), None);
        assert!(
            (6, 9) > (5, 15) && (6, 18) > (6, 9),
            "tuples order by major first"
        );
    }

    #[test]
    fn a_filesystem_the_kernel_lacks_is_named() {
        let err = kernel_filesystem("pkgbench-no-such-fs").unwrap_err();
        assert!(
            err.contains("pkgbench-no-such-fs is not in /proc/filesystems"),
            "{err}"
        );
        // proc itself is always there.
        assert!(kernel_filesystem("proc").is_ok());
    }
}
