//! The daemon's life: mount, pick up images, unmount.
//!
//! The daemon runs inside the harness's process: fuser's session loop on its own thread
//! (and its worker threads), so its CPU time is in the harness's rusage and its memory
//! in its peak RSS. It is mounted by fuser's pure-Rust mount (`mount(2)` with an open
//! `/dev/fuse`, as root; no `fusermount3`).
//!
//! **Notify**: distri's installer asks the running daemon over its control socket to
//! scan for new images; here the installer calls [`Daemon::add_image`] on the shared
//! union directly (the same effect without the socket round trip). The union takes the
//! image at once, and the kernel is told to forget what the image changes
//! (`FUSE_NOTIFY_INVAL_INODE` for each directory the image shares with the union, and
//! `FUSE_NOTIFY_INVAL_ENTRY` for each of its names there, negative entries included).
//! Nothing is remounted.
//!
//! **Unmount**: `umount(2)`; if a reader still holds a file, a lazy detach instead. The
//! kernel then ends the connection, fuser's loops see `ENODEV` and return, and the
//! session thread is joined. If a detached mount is still held after a grace period,
//! the connection is aborted through fusectl when it is mounted; otherwise the session
//! thread is left to serve the holder and ends with its last close.
//! A SIGKILLed process takes its `/dev/fuse` descriptors with it, which aborts the
//! connection; the private mount namespace then drops the mount.

use super::fs::{FuseOptions, UnionFs};
use super::union::{Invalidations, Union};
use anyhow::{bail, Context, Result};
use fuser::{Config, INodeNo, MountOption, Notifier, Session, SessionUnmounter};
use nix::mount::{umount2, MntFlags};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long teardown waits for the session to end after the unmount before aborting.
const GRACE: Duration = Duration::from_secs(1);

/// A mounted union and its session thread.
pub struct Daemon {
    pub union: Arc<Union>,
    pub mountpoint: PathBuf,
    notifier: Notifier,
    unmounter: SessionUnmounter,
    session: Option<JoinHandle<std::io::Result<()>>>,
    /// The fusectl connection number (the minor of the mount's device).
    connection: u32,
}

impl Daemon {
    /// Mounts an empty union at `mountpoint` and starts serving it.
    pub fn mount(mountpoint: &Path, options: FuseOptions) -> Result<Daemon> {
        let union = Arc::new(Union::new());
        let fs = UnionFs {
            union: union.clone(),
            options,
        };
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("pkgbench".into()),
            MountOption::Subtype("pkgbench".into()),
            MountOption::RO,
            MountOption::NoDev,
            MountOption::NoAtime,
            // The kernel checks permissions from the attributes: no ACCESS requests.
            MountOption::DefaultPermissions,
        ];
        config.n_threads = Some(options.threads.max(1));
        config.clone_fd = options.threads > 1;
        let mut session = Session::new(fs, mountpoint, &config)
            .with_context(|| format!("mounting the FUSE union at {}", mountpoint.display()))?;
        let unmounter = session.unmount_callable();
        let notifier = session.notifier();
        let thread = std::thread::Builder::new()
            .name("pkgbench-fuse".into())
            .spawn(move || session.run());
        let session = match thread {
            Ok(t) => t,
            Err(e) => {
                // The session was moved into the failed closure and dropped: unmounted.
                return Err(e).context("starting the FUSE session thread");
            }
        };
        let mut daemon = Daemon {
            union,
            mountpoint: mountpoint.to_path_buf(),
            notifier,
            unmounter,
            session: Some(session),
            connection: 0,
        };
        match std::fs::metadata(mountpoint) {
            Ok(m) => daemon.connection = nix::sys::stat::minor(m.dev()) as u32,
            Err(e) => {
                let _ = daemon.unmount();
                return Err(e).with_context(|| format!("stat of {}", mountpoint.display()));
            }
        }
        Ok(daemon)
    }

    /// Picks up the image at `path` as package directory `name` (the notify step).
    pub fn add_image(&self, path: &Path, name: &str) -> Result<()> {
        let inval = self
            .union
            .add_image(path, name)
            .with_context(|| format!("adding image {}", path.display()))?;
        self.invalidate(&inval)
    }

    fn invalidate(&self, inval: &Invalidations) -> Result<()> {
        for &ino in &inval.inodes {
            self.notifier
                .inval_inode(INodeNo(ino), 0, 0)
                .with_context(|| format!("invalidating node {ino} in the kernel"))?;
        }
        for (parent, name) in &inval.entries {
            self.notifier
                .inval_entry(INodeNo(*parent), OsStr::from_bytes(name))
                .with_context(|| format!("invalidating an entry of node {parent} in the kernel"))?;
        }
        Ok(())
    }

    /// Unmounts and joins the session. Safe to call twice.
    pub fn unmount(&mut self) -> Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        if self.unmounter.unmount().is_err() {
            // Busy (a reader holds a file): detach; the connection ends with its holder.
            umount2(&self.mountpoint, MntFlags::MNT_DETACH)
                .with_context(|| format!("detaching {}", self.mountpoint.display()))?;
        }
        let start = Instant::now();
        while !session.is_finished() && start.elapsed() < GRACE {
            std::thread::sleep(Duration::from_millis(2));
        }
        if !session.is_finished() {
            // A reader still holds a file of the detached mount, and the kernel keeps the
            // connection for it. Abort it through fusectl where that is mounted; else let
            // the session thread serve the holder and end with its last close: no name
            // anywhere shows the mount any more.
            let abort = format!("/sys/fs/fuse/connections/{}/abort", self.connection);
            if std::fs::write(&abort, "1").is_err() {
                eprintln!(
                    "pkgbench fuse: {} is detached but still held open; its session ends with the last close",
                    self.mountpoint.display()
                );
                return Ok(());
            }
        }
        match session.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e).context("the FUSE session ended with an error"),
            Err(_) => bail!("the FUSE session thread panicked"),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            eprintln!(
                "pkgbench fuse: unmounting {}: {e:#}",
                self.mountpoint.display()
            );
        }
    }
}
