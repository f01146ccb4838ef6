//! The `exec` workload: start a real program chrooted into a model's view and check what
//! it prints.
//!
//! Only real packages (`debian:PKG`) hold programs that run; which program proves a view
//! usable is per corpus (`command_for`). The program runs with a clean environment and no
//! `/proc` or `/dev` in the chroot, the same for every model, so the time is the loader,
//! the libraries and the program's own start, read through the view.

use anyhow::{bail, Context, Result};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// A program to start in the chroot and the text its standard output must contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCommand {
    /// Absolute path inside the view, then arguments.
    pub argv: Vec<String>,
    pub expect: String,
}

/// The command table: the corpus's root package to the program that proves its view
/// works. `Err` is the reason the workload is skipped for this corpus.
pub fn command_for(corpus: &str) -> std::result::Result<ExecCommand, String> {
    let cmd = |argv: &[&str], expect: &str| ExecCommand {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        expect: expect.to_string(),
    };
    match corpus.strip_prefix("debian:") {
        Some("python3") => Ok(cmd(
            &[
                "/usr/bin/python3",
                "-c",
                "import json, email, http.client, sqlite3; print('ok')",
            ],
            "ok",
        )),
        Some("qemu-system-x86") => Ok(cmd(
            &["/usr/bin/qemu-system-x86_64", "--version"],
            "QEMU emulator version",
        )),
        _ => Err(format!(
            "corpus {corpus} has no program in the exec table (debian:python3, debian:qemu-system-x86)"
        )),
    }
}

/// Runs `cmd` chrooted into `root` and checks its output. Needs root (chroot(2)).
pub fn exec_in_chroot(root: &Path, cmd: &ExecCommand) -> Result<()> {
    let Some((program, args)) = cmd.argv.split_first() else {
        bail!("exec: empty command");
    };
    let root_c = std::ffi::CString::new(root.as_os_str().as_bytes())
        .with_context(|| format!("chroot path {} holds a NUL", root.display()))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("HOME", "/")
        // Debian ships no byte code (postinsts compile it), and a program must not write
        // into the view: on a writable view (hooks' root, nar's store as root) Python
        // would cache byte code on the cold start and every later start would read it,
        // while the read-only views compile every time. Without writes all do the same.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe calls: chroot(2) and chdir(2)
    // on memory allocated before the fork. The program path is absolute, so it is looked up
    // inside the chroot by execve.
    unsafe {
        command.pre_exec(move || {
            if libc::chroot(root_c.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = command
        .output()
        .with_context(|| format!("exec: starting {program} chrooted into {}", root.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !stdout.contains(&cmd.expect) {
        bail!(
            "exec: {} in the chroot {} ended with {} and printed {:?} (want {:?}); stderr: {}",
            cmd.argv.join(" "),
            root.display(),
            out.status,
            stdout.trim(),
            cmd.expect,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_knows_the_two_closures_and_names_the_others() {
        assert_eq!(command_for("debian:python3").unwrap().expect, "ok");
        assert!(command_for("debian:qemu-system-x86").is_ok());
        let why = command_for("debian-qemu").unwrap_err();
        assert!(why.contains("no program in the exec table"), "{why}");
    }
}
