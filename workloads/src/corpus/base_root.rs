//! The base system real packages install onto: a minimal root of the host's Debian suite,
//! built once per work directory and copied into each `hooks` target before its clock
//! starts.
//!
//! Real maintainer scripts need a system under them: `/bin/sh`, `dpkg-query`, debconf,
//! `update-alternatives`, `ldconfig`. The closure of `python3` alone does not hold a shell
//! (dash is Essential, so nothing depends on it), so its scripts cannot run in a root
//! made of the closure only. Two ways to get that system were open: unpack the closure's
//! Essential set first, or build a real minimal root. pkgbench builds the real one,
//! `mmdebstrap --variant=minbase` (Debian's Essential and Priority: required packages,
//! installed and configured by apt and dpkg themselves), because unpacking Essential
//! packages by hand would skip their own maintainer scripts, and the scripts under
//! measurement would then run on a system no Debian install ever has.
//!
//! The root is not /usr-merged (mmdebstrap's `no-merged-usr` hook; the suite still
//! supports it): bookworm's packages ship paths under `/lib` and `/bin`, every model's
//! view is compared on those paths as the packages ship them, and the `hooks` model, like
//! every model here, never writes through a symlink it finds in the target (the policy
//! against hostile packages). On a merged root `/lib` is such a symlink.
//!
//! The root comes from the host's own apt sources (`/etc/apt/sources.list` and
//! `/etc/apt/sources.list.d/*.list|*.sources`) and suite (`VERSION_CODENAME` of
//! `/etc/os-release`), the same sources `debian:PKG` downloads from, so the base and the
//! closure hold the same versions. A `policy-rc.d` that refuses every service start is
//! put in, as in any chroot install (invoke-rc.d(8)): a benchmark starts no daemons.
//!
//! The root is built into a private directory and renamed into place only when complete,
//! so a crash leaves no half-built base. Delete `<work>/base/` to rebuild it (after a
//! point release, when the closure's versions move on).

use anyhow::{bail, Context, Result};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The variant: Essential and Priority: required, plus apt.
const VARIANT: &str = "minbase";

/// invoke-rc.d asks this program whether to start a service; 101 is "action forbidden".
const POLICY_RC_D: &str =
    "#!/bin/sh\n# pkgbench: a benchmark starts no services (invoke-rc.d(8))\nexit 101\n";

/// A built base root.
#[derive(Debug, Clone)]
pub struct BaseRoot {
    /// The root directory (holds `usr/`, `var/lib/dpkg/`, ...).
    pub root: PathBuf,
    /// The suite it was built from ("bookworm").
    pub suite: String,
}

/// The base root under `cache_root/base/`, built with mmdebstrap if it is not there yet
/// (`progress` is told when a build starts). Needs root and the apt sources' network.
pub fn ensure(cache_root: &Path, progress: &dyn Fn(&str)) -> Result<BaseRoot> {
    let suite = host_suite(Path::new("/etc/os-release"))?;
    let dir = cache_root.join("base");
    let root = dir.join(format!("{suite}-{VARIANT}"));
    if root.join("var/lib/dpkg/status").is_file() {
        return Ok(BaseRoot { root, suite });
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let building = dir.join(format!(".building-{suite}-{}", std::process::id()));
    if building.exists() {
        fs::remove_dir_all(&building)
            .with_context(|| format!("removing {}", building.display()))?;
    }
    progress(&format!(
        "building the base root ({suite}, mmdebstrap --variant={VARIANT}) into {}",
        root.display()
    ));
    let result = build(&building, &suite);
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&building);
        return Err(e);
    }
    fs::rename(&building, &root)
        .with_context(|| format!("renaming {} to {}", building.display(), root.display()))?;
    Ok(BaseRoot { root, suite })
}

fn build(into: &Path, suite: &str) -> Result<()> {
    let sources = host_sources()?;
    let mut command = Command::new("mmdebstrap");
    command
        .arg(format!("--variant={VARIANT}"))
        .arg("--mode=root")
        .arg("--quiet")
        // Package paths as shipped (/lib/x86_64-linux-gnu/...): see the module doc.
        .arg("--hook-dir=/usr/share/mmdebstrap/hooks/no-merged-usr")
        .arg(suite)
        .arg(into)
        .args(&sources)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let output = match command.output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("building the base root: mmdebstrap is not installed (scripts/setup installs it)")
        }
        other => other.context("starting mmdebstrap")?,
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.trim().lines().rev().take(5).collect();
        bail!(
            "building the base root into {}: mmdebstrap failed with {}: {}",
            into.display(),
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    let policy = into.join("usr/sbin/policy-rc.d");
    fs::write(&policy, POLICY_RC_D).with_context(|| format!("writing {}", policy.display()))?;
    fs::set_permissions(&policy, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", policy.display()))?;
    if !into.join("var/lib/dpkg/status").is_file() {
        bail!(
            "building the base root into {}: mmdebstrap left no dpkg status",
            into.display()
        );
    }
    Ok(())
}

/// The host's suite, from `VERSION_CODENAME` of os-release(5).
fn host_suite(os_release: &Path) -> Result<String> {
    let text = fs::read_to_string(os_release).with_context(|| {
        format!(
            "reading {} (the suite of the base root)",
            os_release.display()
        )
    })?;
    parse_codename(&text).with_context(|| {
        format!(
            "{}: no VERSION_CODENAME: the base root needs a Debian suite",
            os_release.display()
        )
    })
}

fn parse_codename(os_release: &str) -> Option<String> {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

/// The host's apt source files, as mmdebstrap takes them (a path per mirror argument).
fn host_sources() -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let list = PathBuf::from("/etc/apt/sources.list");
    if fs::read_to_string(&list).is_ok_and(|t| {
        t.lines()
            .any(|l| l.trim_start().starts_with("deb ") || l.trim_start().starts_with("deb-src"))
    }) {
        out.push(list);
    }
    let dir = Path::new("/etc/apt/sources.list.d");
    if let Ok(entries) = fs::read_dir(dir) {
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
            .collect();
        files.sort();
        out.extend(files);
    }
    if out.is_empty() {
        bail!("building the base root: the host has no apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/)");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codename_is_read_and_odd_values_refused() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";
        assert_eq!(parse_codename(text).as_deref(), Some("bookworm"));
        assert_eq!(
            parse_codename("VERSION_CODENAME=\"trixie\"\n").as_deref(),
            Some("trixie")
        );
        assert_eq!(parse_codename("ID=arch\n"), None);
        assert_eq!(parse_codename("VERSION_CODENAME=../x\n"), None);
    }
}
