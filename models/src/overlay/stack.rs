//! One read-only OverlayFS over many layers, as the kernel allows it.
//!
//! The new mount API (Linux 6.8 for `lowerdir+`): `fsopen("overlay")`, one
//! `fsconfig(FSCONFIG_SET_STRING, "lowerdir+", LAYER)` per layer, `FSCONFIG_CMD_CREATE`,
//! `fsmount` and `move_mount` onto the mount point. Each layer is its own call, so there
//! is no option string to outgrow and no escaping of `:` or `,` in paths. Where the
//! kernel lacks it (`fsopen` gives ENOSYS, or `lowerdir+` EINVAL), the legacy `mount(2)`
//! with `lowerdir=A:B:...` is used, whose option string may not exceed one page.
//!
//! Limits (from the kernel's `fs/overlayfs`): at most 500 lower layers per overlay
//! (`OVL_MAX_STACK`), and overlays nest at most twice (`FILESYSTEM_MAX_STACK_DEPTH`,
//! counting the squashfs layers' own depth of 0). So past 500 layers the stack has two
//! levels: groups of at most 500 layers, each its own overlay, combined by a top overlay
//! of at most 500 groups: 250 000 layers, and a refusal beyond.
//!
//! Without an upper directory an overlay is read-only and needs at least two lower
//! layers; one layer alone gets an empty directory beneath it.
//! Order: the first lower layer is the top. A name present in several layers is taken
//! from the first that has it; directories are merged (their mode and times from the
//! first). Packages never share a non-directory path in these corpora, so the order
//! changes nothing but whose directory attributes show.

use anyhow::{bail, Context, Result};
use rustix::fd::{AsFd, OwnedFd};
use rustix::io::Errno;
use rustix::mount::{
    fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount, FsMountFlags, FsOpenFlags,
    MountAttrFlags, MoveMountFlags,
};
use std::path::{Path, PathBuf};

/// `OVL_MAX_STACK`: lower layers of one overlay.
pub const MAX_LOWER_LAYERS: usize = 500;
/// Two levels of overlays over the layers.
pub const MAX_LAYERS: usize = MAX_LOWER_LAYERS * MAX_LOWER_LAYERS;
/// The legacy option string is copied into one page (`copy_mount_options`).
const LEGACY_OPTIONS_MAX: usize = 4095;

/// How an overlay was mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountApi {
    /// fsopen/fsconfig `lowerdir+`/fsmount/move_mount.
    New,
    /// mount(2) with a `lowerdir=` option string.
    Legacy,
}

/// Mounts a read-only overlay of `lowers` (top first) on `target`. With `api` `New`,
/// falls back to `Legacy` when the kernel lacks the new API; returns the API used.
pub fn mount_overlay(lowers: &[PathBuf], target: &Path, api: MountApi) -> Result<MountApi> {
    if lowers.len() < 2 {
        bail!("an overlay without upper directory needs at least two lower layers");
    }
    if lowers.len() > MAX_LOWER_LAYERS {
        bail!(
            "{} lower layers: OverlayFS takes at most {MAX_LOWER_LAYERS} (OVL_MAX_STACK)",
            lowers.len()
        );
    }
    if api == MountApi::New {
        match mount_overlay_new_api(lowers, target) {
            Ok(()) => return Ok(MountApi::New),
            Err(NewApiError::Unsupported) => {}
            Err(NewApiError::Failed(e)) => return Err(e),
        }
    }
    mount_overlay_legacy(lowers, target)?;
    Ok(MountApi::Legacy)
}

enum NewApiError {
    /// The kernel has no fsopen (ENOSYS) or no `lowerdir+` (EINVAL on the first layer).
    Unsupported,
    Failed(anyhow::Error),
}

fn mount_overlay_new_api(lowers: &[PathBuf], target: &Path) -> Result<(), NewApiError> {
    let fs = match fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) {
        Ok(fd) => fd,
        Err(Errno::NOSYS) => return Err(NewApiError::Unsupported),
        Err(e) => {
            return Err(NewApiError::Failed(
                anyhow::Error::new(e).context("fsopen(\"overlay\")"),
            ))
        }
    };
    for (i, layer) in lowers.iter().enumerate() {
        match fsconfig_set_string(fs.as_fd(), "lowerdir+", layer) {
            Ok(()) => {}
            Err(Errno::INVAL) if i == 0 => return Err(NewApiError::Unsupported),
            Err(e) => {
                return Err(NewApiError::Failed(anyhow::anyhow!(
                    "fsconfig lowerdir+ {} (layer {} of {}): {e}{}",
                    layer.display(),
                    i + 1,
                    lowers.len(),
                    context_log(&fs)
                )))
            }
        }
    }
    let fail = |what: &str, e: Errno| {
        NewApiError::Failed(anyhow::anyhow!(
            "{what} of an overlay of {} layers on {}: {e}{}",
            lowers.len(),
            target.display(),
            context_log(&fs)
        ))
    };
    fsconfig_create(fs.as_fd()).map_err(|e| fail("fsconfig create", e))?;
    let mnt = fsmount(
        fs.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_RDONLY
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOSUID,
    )
    .map_err(|e| fail("fsmount", e))?;
    move_mount(
        mnt.as_fd(),
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| fail("move_mount", e))?;
    Ok(())
}

/// The messages the kernel left in a filesystem context ("e overlayfs: ..."), which say
/// far more than the errno.
fn context_log(fs: &OwnedFd) -> String {
    let mut out = String::new();
    let mut buf = [0u8; 1024];
    // Each read returns one message; ENODATA when there are no more.
    for _ in 0..16 {
        match rustix::io::read(fs, &mut buf) {
            Ok(n) if n > 0 => {
                out.push_str(": ");
                out.push_str(String::from_utf8_lossy(&buf[..n]).trim_end());
            }
            _ => break,
        }
    }
    out
}

fn mount_overlay_legacy(lowers: &[PathBuf], target: &Path) -> Result<()> {
    let mut options = String::from("lowerdir=");
    for (i, layer) in lowers.iter().enumerate() {
        let s = layer
            .to_str()
            .with_context(|| format!("{}: not UTF-8", layer.display()))?;
        if s.contains([':', ',', '\\']) {
            bail!("{s}: ':' ',' '\\' cannot go into a legacy lowerdir= option");
        }
        if i > 0 {
            options.push(':');
        }
        options.push_str(s);
    }
    if options.len() > LEGACY_OPTIONS_MAX {
        bail!(
            "the legacy mount(2) option string for {} layers is {} bytes, more than one page \
             ({LEGACY_OPTIONS_MAX}); this kernel lacks fsconfig lowerdir+ (Linux 6.8)",
            lowers.len(),
            options.len()
        );
    }
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOSUID,
        Some(options.as_str()),
    )
    .with_context(|| {
        format!(
            "mount(2) of an overlay of {} layers on {}",
            lowers.len(),
            target.display()
        )
    })
}

/// How `layers` are stacked: one overlay, or groups under a top overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Single,
    /// Layer index ranges of each group, in order.
    TwoLevel(Vec<std::ops::Range<usize>>),
}

/// Plans the stack for `layers` layers; refuses what the kernel cannot mount.
pub fn plan(layers: usize) -> Result<Plan> {
    if layers == 0 {
        bail!("nothing to mount: no layers");
    }
    if layers <= MAX_LOWER_LAYERS {
        return Ok(Plan::Single);
    }
    if layers > MAX_LAYERS {
        bail!(
            "{layers} layers: OverlayFS stacks at most {MAX_LOWER_LAYERS} lower layers per \
             overlay and nests overlays at most twice, so at most {MAX_LAYERS} layers"
        );
    }
    // Groups of (nearly) equal size, not 500s and a remainder: a group of one layer
    // alone could not be an overlay.
    let groups = layers.div_ceil(MAX_LOWER_LAYERS);
    let (base, extra) = (layers / groups, layers % groups);
    let mut start = 0;
    Ok(Plan::TwoLevel(
        (0..groups)
            .map(|g| {
                let len = base + usize::from(g < extra);
                start += len;
                start - len..start
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_are_one_level_up_to_500_then_two_then_refused() {
        assert_eq!(plan(1).unwrap(), Plan::Single);
        assert_eq!(plan(500).unwrap(), Plan::Single);
        assert_eq!(plan(501).unwrap(), Plan::TwoLevel(vec![0..251, 251..501]));
        let Plan::TwoLevel(groups) = plan(1000).unwrap() else {
            panic!("1000 layers in one overlay")
        };
        assert_eq!(groups, vec![0..500, 500..1000]);
        for n in [1001, 249_501, MAX_LAYERS] {
            let Plan::TwoLevel(groups) = plan(n).unwrap() else {
                panic!("{n} layers in one overlay")
            };
            assert!(groups.len() <= 500, "{n}");
            assert!(groups.iter().all(|g| (2..=500).contains(&g.len())), "{n}");
            assert_eq!(groups.iter().map(|g| g.len()).sum::<usize>(), n);
            assert!(groups.windows(2).all(|w| w[0].end == w[1].start));
        }
        let err = plan(MAX_LAYERS + 1).unwrap_err().to_string();
        assert!(err.contains("at most 250000 layers"), "{err}");
        assert!(plan(0).is_err());
    }
}
