//! `synthetic:N`: N packages drawn from the Debian shape, for scaling curves.
//!
//! Each package is a whole package of the embedded manifests (the qemu closure, then the
//! python3 closure's packages not already in it: 141 templates), chosen by the
//! generator's own PRNG seeded by the package's index. So `synthetic:N` is the first N
//! packages of `synthetic:M` for every M > N: a curve over N measures growing prefixes of
//! one sequence, not unrelated samples.
//!
//! Package 0 is always a copy of `libc6`, as every real closure holds libc6 at the root
//! of its dependencies: it gives every corpus the `/etc` (`ld.so.conf.d`) that a real
//! root has and that the `ldconfig` trigger of the `hooks` model needs, and the biased
//! dependency draw below makes it what most packages depend on, as in Debian.
//!
//! What is kept from the template, and why:
//! - **Directories**, paths and modes unchanged: packages share `/usr/lib/x86_64-linux-gnu`
//!   and `/usr/share/doc` as real ones do, which is what makes an overlay's merged
//!   directories and a dpkg root's big directories big.
//! - **Files and symlinks** keep their directory, kind, mode, link target and sizes, but
//!   their name gets the prefix `sNNNNN-` (the package index), so two packages never hold
//!   the same non-directory path, even when both copy the same template; a prefixed name
//!   can never be a directory's name, since no template has a directory named like that.
//!   A symlink whose target (resolved lexically) is a file or symlink of the same
//!   template is pointed at the renamed entry; targets elsewhere are kept as they are,
//!   and may dangle, as cross-package symlinks do in a partial Debian install.
//! - **Sizes**: a file of at most [`SIZE_KNEE`] bytes keeps its size; a larger one is
//!   scaled down to `KNEE * sqrt(size / KNEE)` (a 44 MiB qemu binary becomes 3.3 MiB),
//!   its `zstd -3` size by the same factor, so compressibility is kept and large files
//!   stay the largest. That keeps the average package at 1.08 MiB instead of 1.81 MiB:
//!   `synthetic:1000` is about 1 GiB of files rather than 1.8 GiB.
//! - **Maintainer scripts and triggers** come with their template, so they occur with
//!   their real frequencies (27 of the 141 templates have scripts, 106 have triggers)
//!   and with their real combinations.
//! - **Dependencies** are a random DAG toward earlier packages: a package has as many
//!   `Depends` and `Pre-Depends` relations as its template lists (at most the number of
//!   earlier packages), each on an earlier package drawn with a bias toward the first
//!   ones (index `i * u^2`), as real dependencies pile up on a few base libraries.

use super::rng::Xoshiro256;
use super::source;
use crate::manifest::{EntryKind, EntryKindTag, ManifestEntry, Package};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Bumped whenever the drawn packages would differ; part of the cache key (besides
/// `GENERATOR_VERSION`, which covers the bytes written for a package).
pub const SYNTHETIC_VERSION: u32 = 1;

/// The selector's name: `synthetic:N`.
pub const NAME: &str = "synthetic";

/// The largest N: the prefix `sNNNNN-` has five digits.
pub const MAX_PACKAGES: usize = 99_999;

/// Files up to this size keep it; larger ones are scaled down (module doc).
pub const SIZE_KNEE: u64 = 256 * 1024;

/// Package 0 of every synthetic corpus copies this template (module doc).
pub const BASE_TEMPLATE: &str = "libc6";

/// Seeds the draw; changing it changes every package (bump `SYNTHETIC_VERSION`).
const SEED_DOMAIN: &str = "pkgbench/synthetic/1";

/// What `harness list` says about `synthetic:N`.
pub const DESCRIPTION: &str = "N packages drawn from the Debian shape (qemu and python3 \
     closures), names made unique, files over 256 KiB scaled down: for scaling curves";

/// `Some(N)` when `selector` is `synthetic:N`; an error for `synthetic` with a bad count.
pub fn parse_selector(selector: &str) -> Result<Option<usize>> {
    let Some(rest) = selector.strip_prefix(NAME) else {
        return Ok(None);
    };
    let Some(count) = rest.strip_prefix(':') else {
        if rest.is_empty() {
            bail!("corpus {selector:?}: say how many packages, as synthetic:N");
        }
        return Ok(None);
    };
    let n: usize = count
        .trim()
        .parse()
        .with_context(|| format!("corpus {selector:?}: {count:?} is not a number of packages"))?;
    if n == 0 || n > MAX_PACKAGES {
        bail!("corpus {selector:?}: the number of packages must be 1..={MAX_PACKAGES}");
    }
    Ok(Some(n))
}

/// The templates, in order: the qemu closure, then python3's packages not in it.
fn templates() -> Result<(Vec<&'static Package>, String)> {
    let mut out: Vec<&'static Package> = Vec::new();
    let mut seen = HashSet::new();
    let mut identity = Sha256::new();
    identity.update(format!("{SEED_DOMAIN} v{SYNTHETIC_VERSION}\0").as_bytes());
    for name in [source::QEMU, source::PYTHON3] {
        let (manifest, sha) = source::embedded(name)?.manifest()?;
        identity.update(sha.as_bytes());
        for p in &manifest.packages {
            if seen.insert(p.name.as_str()) {
                out.push(p);
            }
        }
    }
    Ok((out, crate::view::hex(&identity.finalize())))
}

/// The N packages of `synthetic:N`, and the identity of what they were drawn from (the
/// embedded manifests and this module's version), which keys the cache.
pub fn packages(n: usize) -> Result<(Vec<Package>, String)> {
    if n == 0 || n > MAX_PACKAGES {
        bail!("synthetic corpora have 1..={MAX_PACKAGES} packages, not {n}");
    }
    let (templates, identity) = templates()?;
    let base = *templates
        .iter()
        .find(|t| t.name == BASE_TEMPLATE)
        .with_context(|| format!("the embedded manifests have no {BASE_TEMPLATE}"))?;
    let mut names: Vec<String> = Vec::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut rng = Xoshiro256::from_key(SEED_DOMAIN, &(i as u64).to_le_bytes());
        let t = if i == 0 {
            base
        } else {
            templates[below(&mut rng, templates.len())]
        };
        let name = format!("s{i:05}-{}", t.name);
        let depends = draw_earlier(&mut rng, i, t.depends.len(), &BTreeSet::new());
        let pre_depends = draw_earlier(&mut rng, i, t.pre_depends.len(), &depends);
        let relations = |set: &BTreeSet<usize>| -> Vec<Vec<String>> {
            set.iter().map(|&j| vec![names[j].clone()]).collect()
        };
        let pkg = Package {
            name: name.clone(),
            version: t.version.clone(),
            arch: t.arch.clone(),
            essential: t.essential,
            deb_size: t.deb_size,
            depends: relations(&depends),
            pre_depends: relations(&pre_depends),
            maintainer_scripts: t.maintainer_scripts.clone(),
            triggers: t.triggers.clone(),
            entries: rename_entries(t, &format!("s{i:05}-"))
                .with_context(|| format!("synthetic package {name} (from {})", t.name))?,
        };
        names.push(name);
        out.push(pkg);
    }
    check_no_shared_non_dirs(&out)?;
    Ok((out, identity))
}

/// A uniform index below `n` (the modulo bias of a 64-bit draw is far below anything
/// a corpus of thousands could show).
fn below(rng: &mut Xoshiro256, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

/// A uniform draw in [0, 1).
fn unit(rng: &mut Xoshiro256) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// `count` distinct indices below `i` not in `taken`, biased toward 0 (module doc).
fn draw_earlier(
    rng: &mut Xoshiro256,
    i: usize,
    count: usize,
    taken: &BTreeSet<usize>,
) -> BTreeSet<usize> {
    let free = i.saturating_sub(taken.len());
    let count = count.min(free);
    let mut out = BTreeSet::new();
    // Rejection with a bound: when nearly every earlier package is wanted the biased draw
    // rarely hits the last free ones, so the rest is filled in order.
    let mut attempts = 0;
    while out.len() < count && attempts < 64 * count {
        let u = unit(rng);
        let j = ((i as f64) * u * u) as usize;
        if j < i && !taken.contains(&j) {
            out.insert(j);
        }
        attempts += 1;
    }
    for j in 0..i {
        if out.len() >= count {
            break;
        }
        if !taken.contains(&j) {
            out.insert(j);
        }
    }
    out
}

/// Scales a file's size and zstd size above the knee (module doc).
pub fn scaled_size(size: u64, zstd3_size: u64) -> (u64, u64) {
    if size <= SIZE_KNEE {
        return (size, zstd3_size);
    }
    let factor = (SIZE_KNEE as f64 / size as f64).sqrt();
    let new_size = (size as f64 * factor).round() as u64;
    let new_zstd = ((zstd3_size as f64 * factor).round() as u64).max(1);
    (new_size, new_zstd)
}

/// The template's entries with non-directory names prefixed and sizes scaled.
fn rename_entries(t: &Package, prefix: &str) -> Result<Vec<ManifestEntry>> {
    let non_dirs: HashSet<&str> = t
        .entries
        .iter()
        .filter(|e| e.kind.tag() != EntryKindTag::Dir)
        .map(|e| e.path.as_str())
        .collect();
    let mut out = Vec::with_capacity(t.entries.len());
    for e in &t.entries {
        let kind = match &e.kind {
            EntryKind::Dir { .. } => {
                out.push(e.clone());
                continue;
            }
            EntryKind::File {
                mode,
                size,
                zstd3_size,
                links,
            } => {
                let (size, zstd3_size) = scaled_size(*size, *zstd3_size);
                EntryKind::File {
                    mode: *mode,
                    size,
                    zstd3_size,
                    links: *links,
                }
            }
            EntryKind::Symlink { target } => EntryKind::Symlink {
                target: retarget(&e.path, target, &non_dirs, prefix),
            },
        };
        out.push(ManifestEntry {
            path: prefixed(&e.path, prefix)?,
            kind,
        });
    }
    Ok(out)
}

/// `/a/b/name` → `/a/b/PREFIXname`.
fn prefixed(path: &str, prefix: &str) -> Result<String> {
    let (dir, base) = path.rsplit_once('/').unwrap_or(("", path));
    if base.len() + prefix.len() > 255 {
        bail!("entry {path}: the name with prefix {prefix} is longer than 255 bytes");
    }
    Ok(format!("{dir}/{prefix}{base}"))
}

/// A symlink's target pointed at the renamed entry when it names a non-directory of the
/// same package; otherwise unchanged.
fn retarget(link: &str, target: &str, non_dirs: &HashSet<&str>, prefix: &str) -> String {
    let base_dir = link.rsplit_once('/').map_or("", |(d, _)| d);
    let joined = if target.starts_with('/') {
        target.to_string()
    } else {
        format!("{base_dir}/{target}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let resolved = format!("/{}", parts.join("/"));
    let (head, last) = match target.rsplit_once('/') {
        Some((head, last)) => (Some(head), last),
        None => (None, target),
    };
    if !non_dirs.contains(resolved.as_str()) || parts.last() != Some(&last) {
        return target.to_string();
    }
    match head {
        Some(head) => format!("{head}/{prefix}{last}"),
        None => format!("{prefix}{last}"),
    }
}

/// Refuses a draw where two packages hold the same non-directory path, or a path is a
/// directory in one and not in another: no model could install both.
fn check_no_shared_non_dirs(packages: &[Package]) -> Result<()> {
    let mut owner: HashMap<&str, (&str, EntryKindTag)> = HashMap::new();
    for p in packages {
        for e in &p.entries {
            let tag = e.kind.tag();
            match owner.insert(&e.path, (&p.name, tag)) {
                None => {}
                Some((_, EntryKindTag::Dir)) if tag == EntryKindTag::Dir => {}
                Some((other, _)) => bail!(
                    "synthetic package {}: path {} is already provided by package {other}",
                    p.name,
                    e.path
                ),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        assert_eq!(parse_selector("synthetic:10").unwrap(), Some(10));
        assert_eq!(parse_selector("debian-qemu").unwrap(), None);
        assert_eq!(parse_selector("synthetics").unwrap(), None);
        for bad in [
            "synthetic",
            "synthetic:",
            "synthetic:0",
            "synthetic:x",
            "synthetic:100000",
        ] {
            assert!(parse_selector(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn symlinks_into_the_package_follow_the_rename() {
        let non_dirs: HashSet<&str> = ["/usr/lib/libz.so.1.2", "/usr/lib/libz.so.1"].into();
        let p = "s00001-";
        assert_eq!(
            retarget("/usr/lib/libz.so.1", "libz.so.1.2", &non_dirs, p),
            "s00001-libz.so.1.2"
        );
        assert_eq!(
            retarget("/usr/bin/z", "../lib/libz.so.1", &non_dirs, p),
            "../lib/s00001-libz.so.1"
        );
        assert_eq!(
            retarget("/usr/bin/z", "/usr/lib/libz.so.1", &non_dirs, p),
            "/usr/lib/s00001-libz.so.1"
        );
        // Elsewhere: kept.
        assert_eq!(retarget("/usr/bin/z", "/etc/x", &non_dirs, p), "/etc/x");
        assert_eq!(retarget("/usr/bin/z", "../lib", &non_dirs, p), "../lib");
    }

    #[test]
    fn large_files_shrink_keeping_their_ratio() {
        assert_eq!(scaled_size(1000, 300), (1000, 300));
        let (s, z) = scaled_size(SIZE_KNEE * 16, SIZE_KNEE * 4);
        assert_eq!(s, SIZE_KNEE * 4);
        assert_eq!(z, SIZE_KNEE);
    }

    #[test]
    fn dependencies_point_to_earlier_packages_only() {
        let (pkgs, _) = packages(60).unwrap();
        for (i, p) in pkgs.iter().enumerate() {
            for rel in p.depends.iter().chain(&p.pre_depends) {
                let j = pkgs.iter().position(|q| q.name == rel[0]).unwrap();
                assert!(j < i, "{} depends on {}", p.name, rel[0]);
            }
        }
    }
}
