//! The embedded manifests and corpus selectors (`NAME` or `NAME:PKG1,PKG2,...`, and
//! `synthetic:N`, drawn in `synthetic`).
//!
//! The manifests are compiled into the binary (a user has no `../shared`), zstd-compressed
//! as they are in `workloads/data/`, and parsed once per process.

use super::synthetic;
use crate::manifest::{self, Manifest, Package};
use anyhow::{bail, Result};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::OnceLock;

/// One embedded corpus.
pub(crate) struct Embedded {
    pub name: &'static str,
    pub file_name: &'static str,
    bytes: &'static [u8],
    parsed: OnceLock<(Manifest, String)>,
}

pub(crate) const QEMU: &str = "debian-qemu";
pub(crate) const PYTHON3: &str = "debian-python3";
const QEMU_DESCRIPTION: &str =
    "Debian 12 closure of qemu-system-x86: 116 packages, 3048 files, 176 MiB (the default)";
const PYTHON3_DESCRIPTION: &str =
    "Debian 12 closure of python3: 50 packages, 3614 files, 113 MiB, many small files";

pub(crate) static BUILTIN: [(&str, &str); 2] =
    [(QEMU, QEMU_DESCRIPTION), (PYTHON3, PYTHON3_DESCRIPTION)];

static EMBEDDED: [Embedded; 2] = [
    Embedded {
        name: QEMU,
        file_name: "debian-bookworm-qemu-system-x86.json.zst",
        bytes: include_bytes!("../../data/debian-bookworm-qemu-system-x86.json.zst"),
        parsed: OnceLock::new(),
    },
    Embedded {
        name: PYTHON3,
        file_name: "debian-bookworm-python3.json.zst",
        bytes: include_bytes!("../../data/debian-bookworm-python3.json.zst"),
        parsed: OnceLock::new(),
    },
];

impl Embedded {
    /// The parsed manifest and the sha256 of its embedded bytes.
    pub fn manifest(&self) -> Result<(&Manifest, &str)> {
        if self.parsed.get().is_none() {
            let m = manifest::parse(self.bytes, self.file_name)?;
            let sha = crate::view::hex(&Sha256::digest(self.bytes));
            // Another thread may have won the race; both parsed the same bytes.
            let _ = self.parsed.set((m, sha));
        }
        let (m, sha) = self.parsed.get().expect("set just above");
        Ok((m, sha))
    }
}

/// An embedded corpus by name.
pub(crate) fn embedded(name: &str) -> Result<&'static Embedded> {
    match EMBEDDED.iter().find(|e| e.name == name) {
        Some(e) => Ok(e),
        None => {
            let known: Vec<&str> = EMBEDDED.iter().map(|e| e.name).collect();
            bail!(
                "unknown corpus {name:?}; known corpora: {}",
                known.join(", ")
            )
        }
    }
}

/// A parsed selector.
pub(crate) struct Selection {
    /// sha256 of what the packages were drawn from (the manifest, or for `synthetic:N`
    /// the manifests and the synthetic version).
    pub manifest_sha256: String,
    /// Packages in manifest order (drawn ones for `synthetic:N`).
    pub packages: Vec<Cow<'static, Package>>,
    /// The selector with the subset sorted and deduplicated: the cache identity.
    pub canonical: String,
    /// What the cache directory is named after: the canonical selector, with the
    /// synthetic version for `synthetic:N`.
    pub cache_name: String,
}

/// Parses `NAME`, `NAME:PKG1,PKG2,...` (every named package must be in the corpus) or
/// `synthetic:N`.
pub(crate) fn select(selector: &str) -> Result<Selection> {
    if let Some(n) = synthetic::parse_selector(selector)? {
        let (packages, identity) = synthetic::packages(n)?;
        return Ok(Selection {
            manifest_sha256: identity,
            packages: packages.into_iter().map(Cow::Owned).collect(),
            canonical: format!("{}:{n}", synthetic::NAME),
            cache_name: format!("{}-s{}:{n}", synthetic::NAME, synthetic::SYNTHETIC_VERSION),
        });
    }
    let (name, subset) = match selector.split_once(':') {
        Some((name, list)) => (name, Some(list)),
        None => (selector, None),
    };
    let e = embedded(name)?;
    let (manifest, sha) = e.manifest()?;
    let Some(list) = subset else {
        return Ok(Selection {
            manifest_sha256: sha.to_string(),
            packages: manifest.packages.iter().map(Cow::Borrowed).collect(),
            canonical: name.to_string(),
            cache_name: name.to_string(),
        });
    };
    let mut wanted = BTreeSet::new();
    for pkg in list.split(',') {
        let pkg = pkg.trim();
        if pkg.is_empty() {
            bail!("corpus {selector:?}: empty package name in the subset after ':'");
        }
        wanted.insert(pkg);
    }
    let unknown: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| !manifest.packages.iter().any(|p| p.name == *w))
        .collect();
    if !unknown.is_empty() {
        bail!(
            "corpus {name} has no package {} (it has {} packages, the root is {})",
            unknown.join(", "),
            manifest.packages.len(),
            manifest.root_package
        );
    }
    let canonical = format!(
        "{name}:{}",
        wanted.iter().copied().collect::<Vec<_>>().join(",")
    );
    Ok(Selection {
        manifest_sha256: sha.to_string(),
        packages: manifest
            .packages
            .iter()
            .filter(|p| wanted.contains(p.name.as_str()))
            .map(Cow::Borrowed)
            .collect(),
        cache_name: canonical.clone(),
        canonical,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_match_the_manifests() {
        for (name, description) in &BUILTIN {
            let (m, _) = embedded(name).unwrap().manifest().unwrap();
            let (files, bytes) = m
                .packages
                .iter()
                .map(|p| p.file_totals())
                .fold((0, 0), |(f, b), (pf, pb)| (f + pf, b + pb));
            let mib = (bytes as f64 / (1u64 << 20) as f64).round();
            let want = format!("{} packages, {files} files, {mib} MiB", m.packages.len());
            assert!(description.contains(&want), "{name}: want {want:?}");
        }
    }

    #[test]
    fn selectors() {
        let s = select("debian-qemu:zlib1g, libc6,zlib1g").unwrap();
        assert_eq!(s.canonical, "debian-qemu:libc6,zlib1g");
        assert_eq!(s.packages.len(), 2);
        assert_eq!(select("debian-qemu").unwrap().packages.len(), 116);
        let e = select("debian-qemu:libc6,nosuch,other")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("corpus debian-qemu has no package nosuch, other"),
            "{e}"
        );
        let e = select("debian-qemu:").err().unwrap().to_string();
        assert!(e.contains("empty package name"), "{e}");
        let e = select("debian-nope").err().unwrap().to_string();
        assert!(
            e.contains("known corpora: debian-qemu, debian-python3"),
            "{e}"
        );
    }
}
