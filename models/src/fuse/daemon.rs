//! The harness's side of the daemon: start the daemon process, tell it about new
//! images, stop it.
//!
//! The daemon is a process of its own (see `server` for why and for the protocol): a
//! program that links `models` ([`daemon_program`]: the harness, or `models`'s own
//! `pkgbench-fuse-daemon`) run as `PROGRAM fuse-daemon CONTROL_FD MOUNTPOINT KEY=VALUE...`,
//! with one end of a Unix socket pair as its control descriptor. It inherits the
//! harness's private mount namespace, so its mount is the harness's. It gets
//! `PR_SET_PDEATHSIG(SIGKILL)`: when the thread that started it dies (with the harness,
//! or a test's thread), it is killed, its `/dev/fuse` descriptors close, the connection
//! is aborted, and the namespace drops the mount once its last process is gone. Its CPU
//! time, I/O and memory are read from `/proc/PID` ([`Daemon::pid`], the model's service
//! processes), since a running child is not in the harness's rusage.
//!
//! **Notify** (distri's installer asks the running daemon over its control socket to
//! scan for new images; here the installer names the image it just placed): one `add`
//! command and its answer; the daemon has told the kernel what to forget before it
//! answers. Nothing is remounted.
//!
//! **Upgrade** (distri installs the new version's image beside the old, and its exchange
//! directories serve the newest): one `replace` command per new image, naming the old
//! version's package directory; the daemon has told the kernel what to forget before it
//! answers.

use super::fs::FuseOptions;
use super::server::SUBCOMMAND;
use anyhow::{bail, Context, Result};
use nix::mount::{umount2, MntFlags};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The environment variable naming the program that serves the daemon, when the
/// program starting it has not said (`set_daemon_program`).
pub const DAEMON_PROGRAM_ENV: &str = "PKGBENCH_FUSE_DAEMON";

/// The descriptor number the control socket has in the daemon.
const CONTROL_FD: i32 = 3;

/// How long the daemon may take to exit after it answered `quit` (its session ends at
/// once after an unmount) before it is killed.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// The running daemon process and its control socket.
pub struct Daemon {
    pub mountpoint: PathBuf,
    child: Option<Child>,
    control: UnixStream,
    answers: BufReader<UnixStream>,
}

/// What the daemon says of itself (`stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonStats {
    pub images: usize,
    pub nodes: usize,
    pub metadata_bytes: usize,
    /// `READ` requests the daemon answered since its mount.
    pub reads: usize,
    /// Backing files registered with the kernel now (passthrough).
    pub backing_files: usize,
    /// What the kernel answered to `FUSE_PASSTHROUGH`: `off`, `granted` or `refused`.
    pub passthrough: String,
}

/// The program that serves the daemon: any program that links `models` and hands the
/// `fuse-daemon` command line to [`super::server::main`]: the harness (its `main` names
/// itself), or `models`'s own `pkgbench-fuse-daemon` binary (what `models`'s tests
/// use, so the model runs without a harness built).
static DAEMON_PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// Names the program that serves daemons for this process (the first call wins).
pub fn set_daemon_program(path: PathBuf) {
    let _ = DAEMON_PROGRAM.set(path);
}

/// The program that runs the daemon: the one named by [`set_daemon_program`], else
/// `$PKGBENCH_FUSE_DAEMON`; no name is guessed.
pub fn daemon_program() -> Result<PathBuf> {
    if let Some(path) = DAEMON_PROGRAM.get() {
        return Ok(path.clone());
    }
    if let Some(bin) = std::env::var_os(DAEMON_PROGRAM_ENV) {
        return Ok(PathBuf::from(bin));
    }
    bail!(
        "no program serves the fuse daemon: name one with models::fuse::daemon::set_daemon_program \
         (the harness names itself; tests name env!(\"CARGO_BIN_EXE_pkgbench-fuse-daemon\") or \
         the harness), or set {DAEMON_PROGRAM_ENV}"
    )
}

impl Daemon {
    /// Starts the daemon with an empty union mounted at `mountpoint` and waits until it
    /// serves it.
    pub fn spawn(mountpoint: &Path, options: FuseOptions) -> Result<Daemon> {
        let program = daemon_program()?;
        let (control, theirs) = UnixStream::pair().context("creating the control socket")?;
        let mut command = Command::new(&program);
        command
            .arg(SUBCOMMAND)
            .arg(CONTROL_FD.to_string())
            .arg(mountpoint)
            .args(options.to_words())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let theirs_fd = theirs.as_raw_fd();
        let parent = std::process::id();
        // SAFETY: only async-signal-safe calls between fork and exec: prctl, getppid and
        // dup2 (which also clears close-on-exec on the new descriptor).
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the death signal was armed.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                if libc::dup2(theirs_fd, CONTROL_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting the fuse daemon ({})", program.display()))?;
        drop(theirs);
        let answers = BufReader::new(control.try_clone().context("cloning the control socket")?);
        let mut daemon = Daemon {
            mountpoint: mountpoint.to_path_buf(),
            child: Some(child),
            control,
            answers,
        };
        match daemon.answer() {
            Ok(line) if line == "ready" => Ok(daemon),
            Ok(line) => {
                let _ = daemon.stop();
                bail!("fuse daemon at {}: {line}", mountpoint.display())
            }
            Err(e) => {
                let _ = daemon.stop();
                Err(e).with_context(|| {
                    format!("starting the fuse daemon at {}", mountpoint.display())
                })
            }
        }
    }

    /// The daemon's process id: its CPU, I/O and memory are read from `/proc`.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Picks up the image at `path` as package directory `name` (the notify step);
    /// `backing` is where the kernel has it mounted, for passthrough opens.
    pub fn add_image(&mut self, path: &Path, name: &str, backing: Option<&Path>) -> Result<()> {
        let line = control_line(&format!("add {name}"), &[], path, backing)?;
        self.command(&line)
            .with_context(|| format!("fuse daemon: adding {}", path.display()))?;
        Ok(())
    }

    /// Puts the image at `path`, as package directory `new_name`, in the place of
    /// package directory `old_name` (an upgrade's notify step).
    pub fn replace_image(
        &mut self,
        old_name: &str,
        path: &Path,
        new_name: &str,
        backing: Option<&Path>,
    ) -> Result<()> {
        let line = control_line(&format!("replace {old_name}"), &[new_name], path, backing)?;
        self.command(&line).with_context(|| {
            format!("fuse daemon: replacing {old_name} with {}", path.display())
        })?;
        Ok(())
    }

    /// Empties the daemon's metadata caches and directory listings.
    pub fn forget_listings(&mut self) -> Result<()> {
        self.command(b"forget").map(drop)
    }

    /// The daemon's counts of images, nodes and cached metadata.
    pub fn stats(&mut self) -> Result<DaemonStats> {
        let line = self.command(b"stats")?;
        let field = |key: &str| -> Result<usize> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("fuse daemon stats {line:?} have no {key}"))
        };
        Ok(DaemonStats {
            images: field("images")?,
            nodes: field("nodes")?,
            metadata_bytes: field("metadata_bytes")?,
            reads: field("reads")?,
            backing_files: field("backing_files")?,
            passthrough: line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("passthrough="))
                .unwrap_or("off")
                .to_string(),
        })
    }

    /// Sends one command; the answer's text after `ok`, or the daemon's error.
    fn command(&mut self, line: &[u8]) -> Result<String> {
        let mut message = line.to_vec();
        message.push(b'\n');
        self.control
            .write_all(&message)
            .context("writing to the fuse daemon (has it died?)")?;
        let answer = self.answer()?;
        if let Some(rest) = answer.strip_prefix("ok") {
            return Ok(rest.trim().to_string());
        }
        match answer.strip_prefix("err ") {
            Some(message) => bail!("{message}"),
            None => bail!("unexpected answer from the fuse daemon: {answer:?}"),
        }
    }

    fn answer(&mut self) -> Result<String> {
        let mut line = String::new();
        let n = self
            .answers
            .read_line(&mut line)
            .context("reading the fuse daemon's answer")?;
        if n == 0 {
            let status = self
                .child
                .as_mut()
                .and_then(|c| c.wait().ok())
                .map_or("unknown".to_string(), |s| s.to_string());
            bail!("the fuse daemon exited ({status}) without answering; its error is on stderr");
        }
        Ok(line.trim_end_matches('\n').to_string())
    }

    /// Unmounts and stops the daemon. Safe to call twice.
    pub fn unmount(&mut self) -> Result<()> {
        if self.child.is_none() {
            return Ok(());
        }
        match self.command(b"quit") {
            Ok(held) if held == "held" => {
                // Detached, and a reader still holds a file: the daemon serves it until
                // its last close and exits then; reap it in the background.
                if let Some(mut child) = self.child.take() {
                    let reaper = std::thread::Builder::new()
                        .name("pkgbench-fuse-reaper".into())
                        .spawn(move || child.wait());
                    if let Err(e) = reaper {
                        eprintln!("pkgbench fuse: cannot reap the detached daemon: {e}");
                    }
                }
                Ok(())
            }
            Ok(_) => self.stop(),
            Err(e) => {
                let _ = self.stop();
                Err(e)
            }
        }
    }

    /// Waits for the daemon to exit; kills it if it does not in time. A daemon that had
    /// to be killed may have left its mount (aborted): it is detached here.
    fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = self.control.shutdown(std::net::Shutdown::Write);
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if start.elapsed() < EXIT_WAIT => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                _ => break None,
            }
        };
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            let _ = umount2(&self.mountpoint, MntFlags::MNT_DETACH);
            bail!(
                "the fuse daemon at {} did not exit within {EXIT_WAIT:?}: killed",
                self.mountpoint.display()
            );
        };
        if !status.success() {
            let _ = umount2(&self.mountpoint, MntFlags::MNT_DETACH);
            bail!(
                "the fuse daemon at {} exited with {status}",
                self.mountpoint.display()
            );
        }
        Ok(())
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

/// One command line: `HEAD<TAB>NAMES...<TAB>PATH[<TAB>BACKING]`, refused when a field
/// holds the separators (tab, newline) the protocol splits on.
fn control_line(
    head: &str,
    names: &[&str],
    path: &Path,
    backing: Option<&Path>,
) -> Result<Vec<u8>> {
    let bytes = |p: &Path| p.as_os_str().as_bytes().to_vec();
    let paths: Vec<Vec<u8>> = std::iter::once(path).chain(backing).map(bytes).collect();
    if std::iter::once(head)
        .chain(names.iter().copied())
        .any(|n| n.contains(['\t', '\n']))
        || paths
            .iter()
            .any(|p| p.contains(&b'\t') || p.contains(&b'\n'))
    {
        bail!(
            "image {} cannot be named on the control socket",
            path.display()
        );
    }
    let mut line = head.as_bytes().to_vec();
    for name in names {
        line.push(b'\t');
        line.extend_from_slice(name.as_bytes());
    }
    for p in paths {
        line.push(b'\t');
        line.extend_from_slice(&p);
    }
    Ok(line)
}
