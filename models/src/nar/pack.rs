//! Packing a package into the binary cache (untimed): what `nix copy --to file://MIRROR`
//! writes for one store path.
//!
//! One pass over the tree: the NAR is streamed through a sha256 (the NarHash) into zstd
//! (level 3, Nix's default for zstd) and through a second sha256 (the FileHash) into a
//! temporary file, renamed to `nar/HASH-NAME.nar.zst` once the NAR hash, and so the store
//! path name, is known. The narinfo sits beside it as `HASH-NAME.narinfo`.
//!
//! References name the store paths of the package's dependencies, which are only known
//! once those are packed. Packages arrive in any order, so a dependency not packed yet is
//! noted in `pack-state/pending/DEP`, and packing DEP later adds itself to the narinfos
//! waiting for it. Once the whole set is packed, every narinfo lists every dependency in
//! the set, whatever the order.

use super::narinfo::{check_store_name, store_path_name, NarInfo};
use crate::formats::nar::dump_path;
use crate::{Artifact, PackageTree};
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// zstd level Nix uses when `compression-level` is left at its default.
const ZSTD_LEVEL: i32 = 3;

/// A writer that hashes and counts what passes through.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn hashing<W>(inner: W) -> Hashing<W> {
    Hashing {
        inner,
        hasher: Sha256::new(),
        bytes: 0,
    }
}

/// Packs `pkg` into `mirror` (see the module doc).
pub fn pack_package(pkg: &PackageTree, mirror: &Path) -> Result<Artifact> {
    check_store_name(&pkg.name)?;
    let nar_dir = mirror.join("nar");
    let names = mirror.join("pack-state/names");
    let pending = mirror.join("pack-state/pending");
    for dir in [&nar_dir, &names, &pending] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }

    let tmp = nar_dir.join(format!(".{}.nar.zst.tmp", pkg.name));
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let compressed = hashing(BufWriter::new(file));
    let mut nar = hashing(zstd::Encoder::new(compressed, ZSTD_LEVEL)?);
    dump_path(&pkg.root, &mut nar).with_context(|| format!("dumping {}", pkg.root.display()))?;
    let nar_hash: [u8; 32] = nar.hasher.finalize().into();
    let nar_size = nar.bytes;
    let mut compressed = nar
        .inner
        .finish()
        .with_context(|| format!("compressing into {}", tmp.display()))?;
    compressed
        .flush()
        .with_context(|| format!("writing {}", tmp.display()))?;
    let file_hash: [u8; 32] = compressed.hasher.finalize().into();
    let file_size = compressed.bytes;

    let base = store_path_name(&nar_hash, &pkg.name);
    let url = format!("nar/{base}.nar.zst");
    fs::rename(&tmp, mirror.join(&url)).with_context(|| format!("renaming {}", tmp.display()))?;

    let mut references = BTreeSet::new();
    let deps: BTreeSet<&String> = pkg.depends.iter().chain(&pkg.pre_depends).collect();
    let narinfo_name = format!("{base}.narinfo");
    for dep in deps.into_iter().filter(|d| **d != pkg.name) {
        match fs::read_to_string(names.join(dep)) {
            Ok(dep_base) => {
                references.insert(dep_base);
            }
            Err(_) => append_line(&pending.join(dep), &narinfo_name)?,
        }
    }
    let info = NarInfo {
        store_path: base.clone(),
        url: url.clone(),
        compression: "zstd".into(),
        file_hash,
        file_size,
        nar_hash,
        nar_size,
        references: references.into_iter().collect(),
    };
    let info_path = mirror.join(&narinfo_name);
    fs::write(&info_path, info.render())
        .with_context(|| format!("writing {}", info_path.display()))?;
    fs::write(names.join(&pkg.name), &base)
        .with_context(|| format!("recording the store path of {}", pkg.name))?;
    resolve_pending(mirror, &pending.join(&pkg.name), &base)?;

    Ok(Artifact {
        package: pkg.name.clone(),
        version: pkg.version.clone(),
        files: vec![PathBuf::from(url), PathBuf::from(narinfo_name)],
        sha256: super::narinfo::hex(&file_hash),
        size_bytes: file_size,
        depends: pkg.depends.clone(),
        pre_depends: pkg.pre_depends.clone(),
        triggers: pkg.triggers.clone(),
    })
}

fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(f, "{line}").with_context(|| format!("writing {}", path.display()))
}

/// Adds `base` to the references of every narinfo waiting for it.
fn resolve_pending(mirror: &Path, waiting: &Path, base: &str) -> Result<()> {
    let Ok(list) = fs::read_to_string(waiting) else {
        return Ok(());
    };
    for narinfo in list.lines() {
        let path = mirror.join(narinfo);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut info = NarInfo::parse(&text).with_context(|| format!("{}", path.display()))?;
        if !info.references.iter().any(|r| r == base) {
            info.references.push(base.to_string());
            info.references.sort();
        }
        fs::write(&path, info.render()).with_context(|| format!("writing {}", path.display()))?;
    }
    fs::remove_file(waiting).with_context(|| format!("removing {}", waiting.display()))
}
