//! dpkg triggers, processed once after all packages are unpacked and configured.
//!
//! Two kinds, as in deb-triggers(5): an *explicit* trigger is activated by name
//! (`activate-noawait ldconfig`, declared by 93 packages of the qemu closure); a *file*
//! trigger is a package's interest in a path (`interest-noawait /usr/share/info`),
//! activated when any package installs something below it. Each interested package's
//! postinst then runs once as `postinst triggered "NAMES"`. The `ldconfig` trigger
//! belongs to libc-bin, which is not part of the replayed closures; there it runs what
//! libc-bin's postinst runs: the real `ldconfig`, on the root (`ldconfig -r ROOT`). On a
//! base root (real packages) libc-bin is installed, and its own postinst runs, chrooted.

use super::scripts::{run_maintainer_script, HookEnv};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One trigger directive of a package's `triggers` control file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    Activate(String),
    Interest(String),
}

/// Parses a directive such as "interest-noawait /usr/share/info".
pub fn parse_directive(package: &str, line: &str) -> Result<Directive> {
    let mut words = line.split_whitespace();
    let (Some(verb), Some(name), None) = (words.next(), words.next(), words.next()) else {
        bail!("package {package}: trigger directive {line:?} is not \"VERB NAME\"");
    };
    match verb {
        "activate" | "activate-await" | "activate-noawait" => {
            Ok(Directive::Activate(name.to_string()))
        }
        "interest" | "interest-await" | "interest-noawait" => {
            Ok(Directive::Interest(name.to_string()))
        }
        other => bail!("package {package}: unknown trigger directive {other:?}"),
    }
}

/// A package as trigger processing needs it.
pub struct TriggerPackage<'a> {
    pub name: &'a str,
    pub directives: &'a [String],
    /// Its postinst, if it has one.
    pub postinst: Option<PathBuf>,
    /// What it installed (dpkg's file list).
    pub paths: &'a [PathBuf],
}

/// What trigger processing ran.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TriggerReport {
    /// Runs of the real `ldconfig`.
    pub ldconfig_runs: u32,
    /// (package, triggers) whose postinst ran as `triggered`.
    pub postinst_runs: Vec<(String, String)>,
}

/// Runs every activated trigger once, in package order.
pub fn process_triggers(
    env: HookEnv<'_>,
    packages: &[TriggerPackage<'_>],
) -> Result<TriggerReport> {
    let mut activated: Vec<String> = Vec::new();
    let mut interests: Vec<(usize, String)> = Vec::new();
    for (i, pkg) in packages.iter().enumerate() {
        for line in pkg.directives {
            match parse_directive(pkg.name, line)? {
                Directive::Activate(name) => {
                    if !activated.contains(&name) {
                        activated.push(name)
                    }
                }
                Directive::Interest(name) => interests.push((i, name)),
            }
        }
    }
    let mut report = TriggerReport::default();
    // On a base root libc-bin is installed and waits for `ldconfig` itself: its postinst
    // runs as `triggered` below. Only where no package is interested does the model run
    // what that postinst would.
    let ldconfig_has_owner = interests.iter().any(|(_, name)| name == "ldconfig");
    if activated.iter().any(|t| t == "ldconfig") && !ldconfig_has_owner {
        run_ldconfig(env.root)?;
        report.ldconfig_runs += 1;
    }
    // Pending triggers per interested package, in package order.
    let mut pending: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (i, name) in &interests {
        let hit = if name.starts_with('/') {
            let dir = Path::new(name);
            packages.iter().any(|p| {
                p.paths
                    .iter()
                    .any(|path| path != dir && path.starts_with(dir))
            })
        } else {
            activated.contains(name)
        };
        if hit {
            pending.entry(*i).or_default().push(name.clone());
        }
    }
    for (i, names) in pending {
        let pkg = &packages[i];
        let names = names.join(" ");
        if let Some(postinst) = &pkg.postinst {
            run_maintainer_script(env, pkg.name, "postinst", postinst, &["triggered", &names])?;
            report.postinst_runs.push((pkg.name.to_string(), names));
        }
    }
    Ok(report)
}

/// Rebuilds the root's `ld.so.cache` with the real `ldconfig`, as libc-bin's trigger does.
/// `-r` makes ldconfig chroot into the root, which needs root privileges.
pub fn run_ldconfig(root: &Path) -> Result<()> {
    let output = Command::new("ldconfig")
        .arg("-r")
        .arg(root)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("starting ldconfig (package libc-bin)")?;
    if !output.status.success() {
        bail!(
            "trigger ldconfig: `ldconfig -r {}` failed with {}: {}",
            root.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_directive("p", "activate-noawait ldconfig").unwrap(),
            Directive::Activate("ldconfig".into())
        );
        assert_eq!(
            parse_directive("p", "interest-await /usr/share/glib-2.0/schemas").unwrap(),
            Directive::Interest("/usr/share/glib-2.0/schemas".into())
        );
        let err = parse_directive("p", "frobnicate x")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("package p: unknown trigger directive"),
            "{err}"
        );
        assert!(parse_directive("p", "activate").is_err());
    }
}
