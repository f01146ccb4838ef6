//! A private mount namespace for the whole run, so nothing the models mount can outlive
//! the harness: when the last process of the namespace exits, the kernel unmounts all.

use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Moves this process into a new mount namespace whose mounts do not propagate back.
/// Must be called before any thread is started: `unshare` affects the calling thread,
/// and threads started later inherit it.
pub fn enter_private_mount_namespace() -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS)
        .context("unshare(CLONE_NEWNS): a private mount namespace needs root")?;
    // Without this, mounts made here would still propagate to the shared parent tree.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making / private (mount --make-rprivate /)")
}

/// True when this process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
