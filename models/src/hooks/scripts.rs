//! Running maintainer scripts as dpkg does: real processes, one at a time, with a clean
//! environment that names the root and the package.
//!
//! dpkg runs a script chrooted into `--root` unless told otherwise; the replayed corpora
//! hold generated contents (no working `/bin/sh` inside the root), so scripts run on the
//! host with the root in `DPKG_ROOT`, as dpkg's `--force-script-chrootless` does.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};

/// The directories a hook runs with: the root it installs into and dpkg's database.
#[derive(Debug, Clone, Copy)]
pub struct HookEnv<'a> {
    pub root: &'a Path,
    pub admindir: &'a Path,
}

/// Runs one maintainer script `script` of `package` as `NAME ARGS...`, e.g. `postinst
/// configure`. A script that fails stops the install with its package, name and status.
pub fn run_maintainer_script(
    env: HookEnv<'_>,
    package: &str,
    name: &str,
    script: &Path,
    args: &[&str],
) -> Result<()> {
    let output = Command::new(script)
        .args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("DPKG_ROOT", env.root)
        .env("DPKG_ADMINDIR", env.admindir)
        .env("DPKG_MAINTSCRIPT_PACKAGE", package)
        .env("DPKG_MAINTSCRIPT_NAME", name)
        .env("DPKG_MAINTSCRIPT_ARCH", "amd64")
        .env("DPKG_RUNNING_VERSION", "1.21.22")
        .current_dir(env.root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("package {package}: starting {name} ({})", script.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let status = match output.status.code() {
            Some(code) => format!("exit status {code}"),
            None => format!("{}", output.status),
        };
        bail!(
            "package {package}: {name} {} failed with {status}{}",
            shell_words(args),
            if stderr.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", stderr.trim())
            }
        );
    }
    Ok(())
}

/// Arguments as a shell would need them typed: an empty one shows as ''.
fn shell_words(args: &[&str]) -> String {
    let words: Vec<&str> = args
        .iter()
        .map(|a| if a.is_empty() { "''" } else { a })
        .collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, body: &str) -> std::path::PathBuf {
        let path = dir.join("postinst");
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn a_hook_sees_a_clean_environment_naming_root_and_package() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env");
        let body = format!("env | sort > {}", out.display());
        let s = script(dir.path(), &body);
        std::env::set_var("PKGBENCH_LEAK_CHECK", "1");
        let env = HookEnv {
            root: dir.path(),
            admindir: dir.path(),
        };
        run_maintainer_script(env, "libfoo", "postinst", &s, &["configure"]).unwrap();
        let seen = fs::read_to_string(out).unwrap();
        assert!(seen.contains("DPKG_MAINTSCRIPT_PACKAGE=libfoo"), "{seen}");
        assert!(
            seen.contains(&format!("DPKG_ROOT={}", dir.path().display())),
            "{seen}"
        );
        assert!(!seen.contains("PKGBENCH_LEAK_CHECK"), "{seen}");
    }

    #[test]
    fn a_failing_hook_names_package_script_and_status() {
        let dir = tempfile::tempdir().unwrap();
        let s = script(dir.path(), "echo broken >&2; exit 3");
        let env = HookEnv {
            root: dir.path(),
            admindir: dir.path(),
        };
        let err = run_maintainer_script(env, "libfoo", "postinst", &s, &["configure"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "package libfoo: postinst configure failed with exit status 3: broken"
        );
    }
}
