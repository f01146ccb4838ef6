//! Packing a package into the binary cache (untimed): what `nix copy --to file://MIRROR`
//! writes for one store path, in the layout of a real Nix binary cache (as
//! cache.nixos.org serves it, and as Nix 2.8 writes a `file://` cache):
//!
//! - `nix-cache-info`: `StoreDir: /nix/store` (Nix reads it before anything else);
//! - `HASH.narinfo`, HASH being the store path's hash part: Nix looks a path up as
//!   `<cache>/<HASHPART>.narinfo`;
//! - `nar/FILEHASH.nar.zst`, FILEHASH being the Nix base-32 sha256 of the compressed file
//!   (the narinfo's `FileHash`), as Nix names the NARs it writes.
//!
//! One pass over the tree: the NAR is streamed through a sha256 (the NarHash) into zstd
//! (level 3, Nix's default for zstd) and through a second sha256 (the FileHash) into a
//! temporary file, renamed once the file hash is known.
//!
//! References name the store paths of the package's dependencies, which are only known
//! once those are packed. Packages arrive in any order, so a dependency not packed yet is
//! noted in `pack-state/pending/DEP`, and packing DEP later adds itself to the narinfos
//! waiting for it.
//!
//! Nix's references form no cycle (Nix 2.8's `nix copy` sorts the paths it copies
//! topologically and refuses a cycle: "cycle detected in the references of ..."), but
//! Debian's dependencies do (libc6 and libgcc-s1 depend on each other). So within a
//! dependency cycle (a strongly connected component of the packed packages' dependency
//! graph), a package references only the members whose names sort before its own
//! (libgcc-s1 references libc6, libc6 does not reference libgcc-s1); references between
//! components stay. Each pack finds its package's component from the dependencies every
//! packed package recorded in `pack-state/deps/PKG`, and when the component has grown,
//! drops the references that now point up within it. References are only ever dropped
//! from a narinfo written before, never redirected, so packing a new version of a
//! package (an upgrade's) never makes an old narinfo refer to it. Once the whole set is
//! packed, every narinfo lists every dependency in the set but those, whatever the order.

use super::narinfo::{check_store_name, hash_part, nix32, store_path_name, NarInfo, STORE_DIR};
use crate::formats::compression::Compression;
use crate::formats::nar::dump_path;
use crate::{Artifact, PackageTree};
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The binary cache's description, as Nix writes it for a `file://` cache.
pub const CACHE_INFO: &str = "nix-cache-info";

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

/// The narinfo file of the store path `base` (`HASH-NAME`): `HASH.narinfo`.
pub fn narinfo_file(base: &str) -> String {
    format!("{}.narinfo", hash_part(base))
}

/// The package name part of a store path base (`HASH-NAME` → `NAME`).
fn name_of(base: &str) -> &str {
    base.get(33..).unwrap_or("")
}

/// The pack state of one mirror: where packed packages record their store paths,
/// dependencies and the narinfos waiting for them.
struct State {
    mirror: PathBuf,
    names: PathBuf,
    deps: PathBuf,
    pending: PathBuf,
}

impl State {
    fn open(mirror: &Path) -> Result<State> {
        let state = State {
            mirror: mirror.to_path_buf(),
            names: mirror.join("pack-state/names"),
            deps: mirror.join("pack-state/deps"),
            pending: mirror.join("pack-state/pending"),
        };
        for dir in [&state.names, &state.deps, &state.pending] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(state)
    }

    /// The store path base of the packed package `name`, if it is packed.
    fn base(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.names.join(name)).ok()
    }

    /// The recorded dependencies of the packed package `name`.
    fn deps(&self, name: &str) -> Result<BTreeSet<String>> {
        let path = self.deps.join(name);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text.lines().map(str::to_string).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The dependency cycle of the packed package `name`: every packed package it
    /// reaches through dependencies that reaches it back, itself included.
    fn component(&self, name: &str) -> Result<BTreeSet<String>> {
        // Every package on a path back to `name` is reachable from it, so the graph of
        // what `name` reaches is all the second search needs.
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut todo = vec![name.to_string()];
        while let Some(n) = todo.pop() {
            if edges.contains_key(&n) {
                continue;
            }
            let out: BTreeSet<String> = self
                .deps(&n)?
                .into_iter()
                .filter(|d| *d != n && self.names.join(d).exists())
                .collect();
            todo.extend(out.iter().cloned());
            edges.insert(n, out);
        }
        let mut component = BTreeSet::from([name.to_string()]);
        let mut grown = true;
        while grown {
            grown = false;
            for (n, out) in &edges {
                if !component.contains(n) && out.iter().any(|d| component.contains(d)) {
                    component.insert(n.clone());
                    grown = true;
                }
            }
        }
        Ok(component)
    }

    fn read_narinfo(&self, file: &str) -> Result<NarInfo> {
        let path = self.mirror.join(file);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        NarInfo::parse(&text).with_context(|| format!("{}", path.display()))
    }

    fn write_narinfo(&self, info: &NarInfo) -> Result<()> {
        let path = self.mirror.join(narinfo_file(&info.store_path));
        fs::write(&path, info.render()).with_context(|| format!("writing {}", path.display()))
    }
}

/// Whether the package `from` references its dependency `to` (both packed), given the
/// dependency cycle of either (see the module doc).
fn keeps_reference(from: &str, to: &str, cycle: &BTreeSet<String>) -> bool {
    !(cycle.contains(from) && cycle.contains(to) && to > from)
}

/// The narinfo's `Compression:` of a NAR compressed so (Nix's names).
pub fn narinfo_compression(compression: Compression) -> &'static str {
    match compression {
        Compression::None => "none",
        Compression::Gzip(_) => "gzip",
        Compression::Xz(_) => "xz",
        Compression::Zstd(_) => "zstd",
    }
}

/// The compression a narinfo's `Compression:` names, or an error naming it.
pub fn compression_of_narinfo(name: &str) -> Result<Compression> {
    Ok(match name {
        "none" => Compression::None,
        "gzip" => Compression::Gzip(6),
        "xz" => Compression::Xz(6),
        "zstd" => Compression::Zstd(3),
        other => {
            anyhow::bail!("compression {other:?} is not supported (none, gzip, xz and zstd are)")
        }
    })
}

/// Packs `pkg` into `mirror` (see the module doc).
pub fn pack_package(
    pkg: &PackageTree,
    mirror: &Path,
    compression: Compression,
) -> Result<Artifact> {
    check_store_name(&pkg.name)?;
    let nar_dir = mirror.join("nar");
    fs::create_dir_all(&nar_dir).with_context(|| format!("creating {}", nar_dir.display()))?;
    let state = State::open(mirror)?;
    let cache_info = mirror.join(CACHE_INFO);
    if !cache_info.exists() {
        fs::write(&cache_info, format!("StoreDir: {STORE_DIR}\n"))
            .with_context(|| format!("writing {}", cache_info.display()))?;
    }

    let ext = compression.extension();
    let tmp = nar_dir.join(format!(".{}.nar{ext}.tmp", pkg.name));
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let compressed = hashing(BufWriter::new(file));
    let mut nar = hashing(compression.encoder(compressed)?);
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
    let url = format!("nar/{}.nar{ext}", nix32(&file_hash));
    fs::rename(&tmp, mirror.join(&url)).with_context(|| format!("renaming {}", tmp.display()))?;

    let deps: BTreeSet<String> = pkg
        .depends
        .iter()
        .chain(&pkg.pre_depends)
        .filter(|d| **d != pkg.name)
        .cloned()
        .collect();
    let deps_file = state.deps.join(&pkg.name);
    let listed: String = deps.iter().map(|d| format!("{d}\n")).collect();
    fs::write(&deps_file, listed)
        .with_context(|| format!("recording the dependencies of {}", pkg.name))?;
    fs::write(state.names.join(&pkg.name), &base)
        .with_context(|| format!("recording the store path of {}", pkg.name))?;
    let cycle = state.component(&pkg.name)?;

    let narinfo_name = narinfo_file(&base);
    let mut references = BTreeSet::new();
    for dep in &deps {
        match state.base(dep) {
            Some(dep_base) => {
                if keeps_reference(&pkg.name, dep, &cycle) {
                    references.insert(dep_base);
                }
            }
            None => append_line(&state.pending.join(dep), &narinfo_name)?,
        }
    }
    let info = NarInfo {
        store_path: base.clone(),
        url: url.clone(),
        compression: narinfo_compression(compression).into(),
        file_hash,
        file_size,
        nar_hash,
        nar_size,
        references: references.into_iter().collect(),
    };
    state.write_narinfo(&info)?;
    resolve_pending(&state, &pkg.name, &base, &cycle)?;
    break_cycle(&state, &pkg.name, &cycle)?;

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

/// Adds `base`, the store path of the package `name` just packed, to the references of
/// every narinfo waiting for it, unless that would point up its dependency cycle.
fn resolve_pending(state: &State, name: &str, base: &str, cycle: &BTreeSet<String>) -> Result<()> {
    let waiting = state.pending.join(name);
    let Ok(list) = fs::read_to_string(&waiting) else {
        return Ok(());
    };
    for narinfo in list.lines() {
        let mut info = state.read_narinfo(narinfo)?;
        if keeps_reference(name_of(&info.store_path), name, cycle)
            && !info.references.iter().any(|r| r == base)
        {
            info.references.push(base.to_string());
            info.references.sort();
            state.write_narinfo(&info)?;
        }
    }
    fs::remove_file(&waiting).with_context(|| format!("removing {}", waiting.display()))
}

/// Drops, from the narinfos of the other members of `name`'s dependency cycle (which
/// packing `name` may have grown), the references that point up the cycle.
fn break_cycle(state: &State, name: &str, cycle: &BTreeSet<String>) -> Result<()> {
    for member in cycle.iter().filter(|m| *m != name) {
        let Some(base) = state.base(member) else {
            continue;
        };
        let mut info = state.read_narinfo(&narinfo_file(&base))?;
        let before = info.references.len();
        info.references
            .retain(|r| keeps_reference(member, name_of(r), cycle));
        if info.references.len() != before {
            state.write_narinfo(&info)?;
        }
    }
    Ok(())
}
