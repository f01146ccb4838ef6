//! The daemon process: mounts the union, serves it, and takes commands from the
//! harness over its control socket until told to quit or until the harness is gone.
//!
//! Started by [`super::daemon::Daemon::spawn`] as `harness fuse-daemon CONTROL_FD
//! MOUNTPOINT KEY=VALUE...` (the harness binary runs [`main`] for that first word). It
//! is a process of its own, as distri's daemon is, and not a thread of the harness: a
//! SIGKILL of the harness must never find the harness waiting on a FUSE request that
//! its own dying process would have to answer (the kernel waits for such an answer
//! uninterruptibly, so the process could neither die nor let go of its mount).
//!
//! # Control protocol
//! Lines over a Unix stream socket, one reply line per command:
//! - the daemon starts with `ready` once mounted (or `err MESSAGE` and exits 1);
//! - `add NAME<TAB>PATH[<TAB>BACKING]` picks up the image at PATH as package NAME
//!   (BACKING: where the kernel has it mounted, for passthrough opens): the union takes
//!   it, and the kernel is told to forget what it changes (`FUSE_NOTIFY_INVAL_INODE` for
//!   each directory the image shares with the union, `FUSE_NOTIFY_INVAL_ENTRY` for each
//!   of its names there, negative entries included); `ok` or `err MESSAGE`;
//! - `replace OLD_NAME<TAB>NEW_NAME<TAB>PATH[<TAB>BACKING]` (an upgrade) puts the image at PATH, as
//!   package NEW_NAME, in the place of package OLD_NAME's image, which leaves the union
//!   and the mount root; the kernel is told to forget every listing, entry and file that
//!   changed (see `union`'s "Upgrades"); `ok` or `err MESSAGE`;
//! - `forget`: drop the daemon's metadata caches, directory listings and registered
//!   backing files (`reset_caches`);
//! - `stats`: `ok images=N nodes=N metadata_bytes=N reads=N passthrough=STATE` (reads:
//!   `READ` requests answered since the mount; backing_files: registered now; STATE:
//!   `off`, `granted` or `refused`, what the kernel answered at `FUSE_INIT`);
//! - `quit`: unmount and answer `ok`, or `ok held` (below); exit 0 once the session has
//!   ended. End of file (the harness died) does the same without the answer.
//!
//! # Unmount
//! `umount(2)`: the kernel ends the connection, fuser's loops see `ENODEV` and return,
//! and the session thread is joined. If a reader still holds a file, a lazy detach
//! instead: no name shows the mount any more, the kernel keeps the connection for the
//! holder, and the daemon serves it until its last close, then exits. The harness does
//! not wait for that (it reaps the daemon in the background); were the holder never to
//! close, the daemon dies with the harness (its death signal).

use super::fs::{BackingCache, FuseOptions, PassthroughState, UnionFs};
use super::union::{Invalidations, Union};
use anyhow::{anyhow, bail, Context, Result};
use fuser::{Config, INodeNo, MountOption, Notifier, Session, SessionUnmounter};
use nix::mount::{umount2, MntFlags};
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread::JoinHandle;

/// The first word of the harness's command line that runs [`main`].
pub const SUBCOMMAND: &str = "fuse-daemon";

/// The daemon process's entry point; `args` are the words after [`SUBCOMMAND`].
pub fn main(args: &[OsString]) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pkgbench fuse daemon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[OsString]) -> Result<()> {
    let [fd, mountpoint, settings @ ..] = args else {
        bail!("usage: harness {SUBCOMMAND} CONTROL_FD MOUNTPOINT [KEY=VALUE...]");
    };
    let fd: RawFd = fd
        .to_str()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("control descriptor {fd:?} is not a number"))?;
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails on a closed one.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        bail!("control descriptor {fd} is not open");
    }
    // SAFETY: the descriptor is open (checked above) and owned by nothing else in this
    // process: the harness passed it for this use alone.
    let control = unsafe { UnixStream::from_raw_fd(fd) };
    let mut options = FuseOptions::default();
    for word in settings {
        let word = word
            .to_str()
            .with_context(|| format!("setting {word:?} is not UTF-8"))?;
        options.set(word)?;
    }
    let mut reply = control.try_clone().context("cloning the control socket")?;
    let mut mount = match Mount::new(Path::new(mountpoint), options) {
        Ok(m) => m,
        Err(e) => {
            let _ = writeln!(reply, "err {}", one_line(&e));
            return Err(e);
        }
    };
    writeln!(reply, "ready").context("answering on the control socket")?;
    let served = serve(&mount, BufReader::new(control), &mut reply);
    let released = mount.release();
    if let (Ok(true), Ok(held)) = (&served, &released) {
        writeln!(reply, "{}", if *held { "ok held" } else { "ok" }).context("answering quit")?;
    }
    served?;
    released?;
    // With a holder left, the session serves it until its last close, then ends.
    mount.join()
}

/// Answers commands until `quit` (returns true) or end of file (false).
fn serve(mount: &Mount, control: impl BufRead, reply: &mut impl Write) -> Result<bool> {
    for line in control.split(b'\n') {
        let line = line.context("reading the control socket")?;
        let answer = match line.as_slice() {
            b"quit" => return Ok(true),
            b"forget" => {
                mount.union.forget_listings();
                mount.backings.clear();
                Ok(String::new())
            }
            b"stats" => Ok(format!(
                " images={} nodes={} metadata_bytes={} reads={} backing_files={} passthrough={}",
                mount.union.image_count(),
                mount.union.node_count(),
                mount.union.cached_metadata_bytes(),
                mount.reads.load(std::sync::atomic::Ordering::Relaxed),
                mount.backings.len(),
                mount.passthrough.word()
            )),
            _ => {
                if let Some(rest) = line.strip_prefix(b"add ") {
                    add(mount, rest).map(|()| String::new())
                } else if let Some(rest) = line.strip_prefix(b"replace ") {
                    replace(mount, rest).map(|()| String::new())
                } else {
                    Err(anyhow!(
                        "unknown command {:?}",
                        String::from_utf8_lossy(&line)
                    ))
                }
            }
        };
        match answer {
            Ok(extra) => writeln!(reply, "ok{extra}"),
            Err(e) => writeln!(reply, "err {}", one_line(&e)),
        }
        .context("answering on the control socket")?;
    }
    Ok(false)
}

/// `add NAME<TAB>PATH[<TAB>BACKING]`.
fn add(mount: &Mount, rest: &[u8]) -> Result<()> {
    let mut fields = rest.splitn(3, |&b| b == b'\t');
    let (Some(name), Some(path)) = (fields.next(), fields.next()) else {
        bail!("add needs NAME<TAB>PATH[<TAB>BACKING]");
    };
    let name = std::str::from_utf8(name).context("image name is not UTF-8")?;
    let path = Path::new(OsStr::from_bytes(path));
    let backing = fields.next().map(|b| Path::new(OsStr::from_bytes(b)));
    let inval = mount
        .union
        .add_image(path, name, backing)
        .with_context(|| format!("adding image {}", path.display()))?;
    mount.invalidate(&inval)
}

/// `replace OLD_NAME<TAB>NEW_NAME<TAB>PATH[<TAB>BACKING]`.
fn replace(mount: &Mount, rest: &[u8]) -> Result<()> {
    let mut fields = rest.splitn(4, |&b| b == b'\t');
    let (Some(old), Some(new), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
        bail!("replace needs OLD_NAME<TAB>NEW_NAME<TAB>PATH[<TAB>BACKING]");
    };
    let old = std::str::from_utf8(old).context("old image name is not UTF-8")?;
    let new = std::str::from_utf8(new).context("new image name is not UTF-8")?;
    let path = Path::new(OsStr::from_bytes(path));
    let backing = fields.next().map(|b| Path::new(OsStr::from_bytes(b)));
    let inval = mount
        .union
        .replace_image(old, path, new, backing)
        .with_context(|| format!("replacing image {old} with {}", path.display()))?;
    // Before the answer: the installer then releases the old image's kernel mount.
    mount
        .backings
        .retain_served(|image| mount.union.serves(image));
    // The union lock is released: the kernel may wait on a lookup of ours meanwhile.
    mount.invalidate(&inval)
}

/// An error's chain on one line: the protocol is line-based.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

/// A mounted union and its session thread.
struct Mount {
    union: Arc<Union>,
    mountpoint: PathBuf,
    passthrough: Arc<PassthroughState>,
    reads: Arc<std::sync::atomic::AtomicU64>,
    backings: Arc<BackingCache>,
    notifier: Notifier,
    unmounter: SessionUnmounter,
    session: Option<JoinHandle<std::io::Result<()>>>,
}

impl Mount {
    /// Mounts an empty union at `mountpoint` and starts serving it. fuser mounts with
    /// `mount(2)` on an open `/dev/fuse` (as root; no `fusermount3`).
    fn new(mountpoint: &Path, options: FuseOptions) -> Result<Mount> {
        let union = Arc::new(Union::new().with_image_readahead(options.image_readahead));
        let fs = UnionFs::new(union.clone(), options);
        let passthrough = fs.passthrough.clone();
        let reads = fs.reads.clone();
        let backings = fs.backings.clone();
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("pkgbench".into()),
            MountOption::Subtype("pkgbench".into()),
            MountOption::RO,
            MountOption::NoDev,
            MountOption::NoSuid,
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
        let session = std::thread::Builder::new()
            .name("pkgbench-fuse".into())
            // If the spawn fails, the session is dropped with the closure: unmounted.
            .spawn(move || session.run())
            .context("starting the FUSE session thread")?;
        let mut mount = Mount {
            union,
            mountpoint: mountpoint.to_path_buf(),
            passthrough,
            reads,
            backings,
            notifier,
            unmounter,
            session: Some(session),
        };
        if options.passthrough {
            // The first request waits for FUSE_INIT: after it, the kernel has answered.
            let seen = std::fs::metadata(mountpoint);
            if seen.is_err() || !mount.passthrough.granted() {
                let state = mount.passthrough.word();
                let _ = mount.release();
                let _ = mount.join();
                bail!(
                    "the kernel did not grant FUSE_PASSTHROUGH at {} (state {state}; it needs \
                     Linux 6.9 or later built with CONFIG_FUSE_PASSTHROUGH, and CAP_SYS_ADMIN)",
                    mountpoint.display()
                );
            }
        }
        Ok(mount)
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

    /// Unmounts; if a reader still holds a file, detaches instead and returns true: the
    /// kernel keeps the connection for the holder, and the session goes on serving it.
    fn release(&mut self) -> Result<bool> {
        if self.unmounter.unmount().is_ok() {
            return Ok(false);
        }
        umount2(&self.mountpoint, MntFlags::MNT_DETACH)
            .with_context(|| format!("detaching {}", self.mountpoint.display()))?;
        Ok(true)
    }

    /// Waits for the session to end: at once after an unmount, after the last close of a
    /// detached mount's holder.
    fn join(&mut self) -> Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        match session.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e).context("the FUSE session ended with an error"),
            Err(_) => bail!("the FUSE session thread panicked"),
        }
    }
}
