//! Real packages on a base system: the base root copied into the target before the clock
//! starts, what of the set it already holds, the trigger interests its packages declared,
//! and what the maintainer scripts created beside the packages' files.
//!
//! The base root itself is built by `workloads::corpus::base_root` (mmdebstrap, minbase);
//! here it is input: its dpkg status says which packages it holds, its
//! `var/lib/dpkg/triggers/` which of them wait for which triggers.

use super::database::control_path;
use crate::Artifact;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The base as `prepare` put it into a target.
#[derive(Debug)]
pub struct BaseState {
    /// Where it was copied from (named in errors).
    source: PathBuf,
    /// Package name to version, of every package the base's dpkg says is installed.
    versions: HashMap<String, String>,
    /// Every path in the root right after the copy, relative to it.
    present: HashSet<PathBuf>,
}

impl BaseState {
    /// Copies the base root `source` into `root` (untimed; `cp -a`, reflinked where the
    /// filesystem can) and reads what it holds.
    pub fn copy_into(source: &Path, root: &Path) -> Result<Self> {
        let status_path = source.join("var/lib/dpkg/status");
        let status = fs::read_to_string(&status_path)
            .with_context(|| format!("base root: reading {}", status_path.display()))?;
        let versions = installed_versions(&status)
            .with_context(|| format!("base root: {}", status_path.display()))?;
        fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let output = Command::new("cp")
            .arg("-a")
            .arg("--reflink=auto")
            .arg(source.join("."))
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .context("starting cp")?;
        if !output.status.success() {
            bail!(
                "copying the base root {} into {}: cp failed with {}: {}",
                source.display(),
                root.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let mut present = HashSet::new();
        walk(root, &mut |rel, _| {
            present.insert(rel.to_path_buf());
        })?;
        Ok(BaseState {
            source: source.to_path_buf(),
            versions,
            present,
        })
    }

    /// Splits an install order into the packages to install and those the base holds at
    /// the same version (indices into `set`, both in install order). A package the base
    /// holds at another version is an error: installing it would be an upgrade of the
    /// base, not the install being measured.
    pub fn split(&self, set: &[Artifact], order: &[usize]) -> Result<(Vec<usize>, Vec<usize>)> {
        let (mut install, mut held) = (Vec::new(), Vec::new());
        for &i in order {
            let art = &set[i];
            match self.versions.get(&art.package) {
                None => install.push(i),
                Some(v) if *v == art.version => held.push(i),
                Some(v) => bail!(
                    "package {}: the base root {} holds version {v}, the corpus {}: delete the base root to rebuild it from the current apt sources",
                    art.package,
                    self.source.display(),
                    art.version
                ),
            }
        }
        Ok((install, held))
    }

    /// What the install's scripts and triggers created that no package ships and the base
    /// did not hold: every entry but directories, relative to `root`, with the bytes of
    /// the regular files among them, sorted.
    pub fn created(&self, root: &Path, owned: &HashSet<PathBuf>) -> Result<(Vec<PathBuf>, u64)> {
        created_beside(root, owned, &self.present)
    }
}

/// What dpkg itself keeps in a base root's database (status, journal, file lists, the
/// packages' control files, the unpacked control archive): the model's bookkeeping, not
/// a script's doing. What scripts keep there (`alternatives/`, `triggers/`) still counts.
const DPKG_OWN: [&str; 5] = [
    "var/lib/dpkg/status",
    "var/lib/dpkg/status-new",
    "var/lib/dpkg/updates",
    "var/lib/dpkg/info",
    "var/lib/dpkg/tmp.ci",
];

/// Entries under `root` (not directories) that are neither `owned` nor `present` nor
/// dpkg's own database, and the bytes of the regular files among them.
pub fn created_beside(
    root: &Path,
    owned: &HashSet<PathBuf>,
    present: &HashSet<PathBuf>,
) -> Result<(Vec<PathBuf>, u64)> {
    let mut out = Vec::new();
    let mut bytes = 0;
    walk(root, &mut |rel, meta| {
        let dpkg_own = DPKG_OWN.iter().any(|d| rel.starts_with(d));
        if !meta.is_dir() && !dpkg_own && !owned.contains(rel) && !present.contains(rel) {
            if meta.is_file() {
                bytes += meta.size();
            }
            out.push(rel.to_path_buf());
        }
    })?;
    out.sort();
    Ok((out, bytes))
}

/// Calls `each` with every entry below `root` (relative path, lstat metadata).
fn walk(root: &Path, each: &mut dyn FnMut(&Path, &fs::Metadata)) -> Result<()> {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let child = rel.join(entry.file_name());
            let meta = entry
                .metadata()
                .with_context(|| format!("reading {}", root.join(&child).display()))?;
            each(&child, &meta);
            if meta.is_dir() {
                stack.push(child);
            }
        }
    }
    Ok(())
}

/// Versions of the packages a dpkg `status` file lists as `install ok installed`, by
/// name (the architecture qualifier is not part of dpkg's `Package` field).
pub(crate) fn installed_versions(status: &str) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for stanza in status.split("\n\n").filter(|s| !s.trim().is_empty()) {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
        };
        let package = field("Package").context("a stanza has no Package field")?;
        if field("Status").is_some_and(|s| s.trim() == "install ok installed") {
            let version = field("Version")
                .with_context(|| format!("package {package} has no Version field"))?;
            out.insert(package.to_string(), version.trim().to_string());
        }
    }
    Ok(out)
}

/// dpkg runs a new package's preinst from `ADMINDIR/tmp.ci/`, where it extracted the
/// control archive: the script is copied there, inside the root.
pub fn stage_preinst(admindir: &Path, preinst: &Path) -> Result<PathBuf> {
    let dir = admindir.join("tmp.ci");
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let staged = dir.join("preinst");
    fs::copy(preinst, &staged)
        .with_context(|| format!("copying {} to {}", preinst.display(), staged.display()))?;
    Ok(staged)
}

/// A package of the base that waits for triggers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interest {
    pub package: String,
    /// As `triggers` control files say them: `interest NAME` or `interest /PATH`.
    pub directives: Vec<String>,
}

/// The interests dpkg recorded under `ADMINDIR/triggers/`: `File` (a path and a package
/// per line) and one file per explicit trigger (a package per line); a `/noawait`
/// suffix is how dpkg marks the kind and does not change who is interested. Packages
/// whose postinst is not there are kept: the caller drops them.
pub fn trigger_interests(admindir: &Path) -> Result<Vec<Interest>> {
    let dir = admindir.join("triggers");
    let mut by_package: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !matches!(n.as_str(), "Lock" | "Unincorp") && !n.starts_with('.'))
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (trigger, who) = if name == "File" {
                let Some((p, who)) = line.trim().rsplit_once(' ') else {
                    bail!("{}: line {line:?} is not \"PATH PACKAGE\"", path.display());
                };
                (p.to_string(), who)
            } else {
                (name.clone(), line.trim())
            };
            let package = who.split('/').next().unwrap_or(who);
            let package = package.split(':').next().unwrap_or(package);
            by_package
                .entry(package.to_string())
                .or_default()
                .push(format!("interest {trigger}"));
        }
    }
    Ok(by_package
        .into_iter()
        .filter(|(p, _)| control_path(&admindir.join("info"), p, "postinst").exists())
        .map(|(package, directives)| Interest {
            package,
            directives,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_installed_packages_count_and_their_versions_are_read() {
        let status =
            "Package: libc6\nStatus: install ok installed\nMulti-Arch: same\nVersion: 2.36-9\n\n\
                      Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n";
        let v = installed_versions(status).unwrap();
        assert_eq!(v.get("libc6").map(String::as_str), Some("2.36-9"));
        assert!(!v.contains_key("gone"));
        assert!(installed_versions("Status: install ok installed\n").is_err());
    }

    #[test]
    fn interests_come_from_dpkg_trigger_files_and_need_a_postinst() {
        let dir = tempfile::tempdir().unwrap();
        let admin = dir.path();
        fs::create_dir_all(admin.join("triggers")).unwrap();
        fs::create_dir_all(admin.join("info")).unwrap();
        fs::write(
            admin.join("triggers/File"),
            "/usr/share/debianutils/shells.d debianutils/noawait\n/usr/lib/x nopostinst\n",
        )
        .unwrap();
        fs::write(admin.join("triggers/ldconfig"), "libc-bin/noawait\n").unwrap();
        fs::write(admin.join("triggers/Unincorp"), "whatever\n").unwrap();
        fs::write(admin.join("info/debianutils.postinst"), "#!/bin/sh\n").unwrap();
        fs::write(admin.join("info/libc-bin.postinst"), "#!/bin/sh\n").unwrap();
        let got = trigger_interests(admin).unwrap();
        assert_eq!(
            got,
            vec![
                Interest {
                    package: "debianutils".into(),
                    directives: vec!["interest /usr/share/debianutils/shells.d".into()],
                },
                Interest {
                    package: "libc-bin".into(),
                    directives: vec!["interest ldconfig".into()],
                },
            ]
        );
    }

    #[test]
    fn created_lists_what_neither_a_package_nor_the_base_holds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/lib/__pycache__")).unwrap();
        fs::write(root.join("usr/lib/a.py"), "x").unwrap();
        fs::write(root.join("usr/lib/__pycache__/a.pyc"), "12345").unwrap();
        fs::write(root.join("etc-base"), "b").unwrap();
        let owned: HashSet<PathBuf> = ["usr", "usr/lib", "usr/lib/a.py"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let present: HashSet<PathBuf> = [PathBuf::from("etc-base")].into_iter().collect();
        let (created, bytes) = created_beside(root, &owned, &present).unwrap();
        assert_eq!(created, vec![PathBuf::from("usr/lib/__pycache__/a.pyc")]);
        assert_eq!(bytes, 5);
    }
}
