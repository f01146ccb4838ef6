//! Writing a corpus: each package's tree and maintainer scripts, then the digest of what
//! was written.
//!
//! Each package's directories and symlinks are made in manifest order (parents come
//! first), packages in parallel; then regular files, nearly all the bytes, are generated
//! and written in parallel, largest first so the cores finish together. Modes are set
//! with an explicit chmod after writing: the umask must not decide them, and writing
//! clears setuid bits. Directory modes are applied last, deepest first, so a read-only
//! directory could still be filled.
//!
//! Hard links (`links > 1`, e.g. `/usr/bin/perl` and `/usr/bin/perl5.36.0`): the manifest
//! gives link counts but not groups, so files of one package with `links > 1` and the
//! same size, zstd size and mode are taken as one group, and every member gets the
//! contents of the group's first path (byte order). They are written as separate regular
//! files, not hard links: NAR has no hard links, and the view digest compares contents,
//! not inodes, so every model can hold the same tree.

use super::cache::PackageMeta;
use super::content::write_content;
use super::hook_costs::{self, ScriptCost};
use super::script::calibrated_script;
use crate::manifest::{resolve, EntryKind, Package};
use crate::view::{digest_view, Entry, TreeDigest, ViewSpec};
use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, Permissions};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// A regular file to generate.
struct FileJob {
    path: PathBuf,
    /// The path whose seed gives the contents (the file's own, or its link group's).
    seed: String,
    mode: u32,
    size: u64,
    zstd3_size: u64,
}

/// Generates `packages` into `dir` (`pkgs/NAME/root`, `pkgs/NAME/control/SCRIPT`) and
/// returns their metadata and the digest of their union. Relations resolve within
/// `packages` only. `progress(done, total)` counts bytes of regular files and is called on
/// this thread after each file.
pub(crate) fn generate(
    dir: &Path,
    packages: &[&Package],
    progress: &dyn Fn(u64, u64),
) -> Result<(Vec<PackageMeta>, TreeDigest)> {
    let names: HashSet<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    let present = |n: &str| names.contains(n);
    // Package trees are independent, and thousands of mkdir and symlink calls cost as much
    // as writing the bytes, so packages are laid out in parallel too.
    let laid: Vec<LaidOut> = packages
        .par_iter()
        .map(|p| lay_out(dir, p, &present))
        .collect::<Result<_>>()?;
    write_files(laid.iter().flat_map(|l| &l.files).collect(), progress)?;
    laid.par_iter().try_for_each(|l| {
        for (path, mode) in l.dirs.iter().rev() {
            fs::set_permissions(path, Permissions::from_mode(*mode))
                .with_context(|| format!("chmod {:o} {}", mode, path.display()))?;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    let metas: Vec<PackageMeta> = laid.into_iter().map(|l| l.meta).collect();
    let digest = digest_packages(dir, packages, &metas)?;
    Ok((metas, digest))
}

/// A package with its directories, symlinks and scripts written: what is left to do.
struct LaidOut {
    meta: PackageMeta,
    files: Vec<FileJob>,
    /// Directories and their modes, parents first.
    dirs: Vec<(PathBuf, u32)>,
}

fn lay_out(dir: &Path, p: &Package, present: &dyn Fn(&str) -> bool) -> Result<LaidOut> {
    let base = format!("pkgs/{}", p.name);
    let root = dir.join(&base).join("root");
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let seeds = link_group_seeds(p);
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for e in &p.entries {
        let path = root.join(e.rel_path());
        match &e.kind {
            EntryKind::Dir { mode } => {
                fs::create_dir(&path)
                    .with_context(|| format!("creating directory {}", path.display()))?;
                dirs.push((path, *mode));
            }
            EntryKind::Symlink { target } => symlink(target, &path)
                .with_context(|| format!("creating symlink {}", path.display()))?,
            EntryKind::File {
                mode,
                size,
                zstd3_size,
                ..
            } => files.push(FileJob {
                path,
                seed: seeds
                    .get(e.path.as_str())
                    .copied()
                    .unwrap_or(&e.path)
                    .to_string(),
                mode: *mode,
                size: *size,
                zstd3_size: *zstd3_size,
            }),
        }
    }
    let scripts = write_scripts(dir, &base, p)?;
    let (file_count, bytes) = p.file_totals();
    let meta = PackageMeta {
        name: p.name.clone(),
        version: p.version.clone(),
        arch: p.arch.clone(),
        essential: p.essential,
        depends: resolve(&p.depends, present),
        pre_depends: resolve(&p.pre_depends, present),
        scripts,
        triggers: p.triggers.clone(),
        root: format!("{base}/root"),
        files: file_count,
        bytes,
        setid_cleared: 0,
    };
    Ok(LaidOut { meta, files, dirs })
}

/// Link-group members mapped to the path whose contents they share (module doc).
fn link_group_seeds(p: &Package) -> HashMap<&str, &str> {
    let mut groups: BTreeMap<(u64, u64, u32), Vec<&str>> = BTreeMap::new();
    for e in &p.entries {
        if let EntryKind::File {
            mode,
            size,
            zstd3_size,
            links,
        } = e.kind
        {
            if links > 1 {
                groups
                    .entry((size, zstd3_size, mode))
                    .or_default()
                    .push(&e.path);
            }
        }
    }
    let mut seeds = HashMap::new();
    for members in groups.values() {
        if let Some(first) = members.iter().min() {
            for m in members {
                seeds.insert(*m, *first);
            }
        }
    }
    seeds
}

/// The cost table the stand-ins replay, parsed once.
fn cost_table() -> Result<&'static [ScriptCost]> {
    static TABLE: std::sync::OnceLock<Result<Vec<ScriptCost>, String>> = std::sync::OnceLock::new();
    TABLE
        .get_or_init(|| hook_costs::table().map_err(|e| format!("{e:#}")))
        .as_deref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Writes the package's maintainer scripts (executable), stand-ins calibrated from the
/// real scripts' measured cost (`script`), and returns name → path relative to `dir`.
fn write_scripts(dir: &Path, base: &str, p: &Package) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    if p.maintainer_scripts.is_empty() {
        return Ok(out);
    }
    let control = dir.join(base).join("control");
    fs::create_dir(&control).with_context(|| format!("creating {}", control.display()))?;
    let table = cost_table()?;
    for (name, size) in &p.maintainer_scripts {
        let path = control.join(name);
        let costs: Vec<&ScriptCost> = table
            .iter()
            .filter(|c| c.package == p.name && c.script == *name)
            .collect();
        fs::write(&path, calibrated_script(*size, &costs))
            .with_context(|| format!("writing {}", path.display()))?;
        fs::set_permissions(&path, Permissions::from_mode(0o755))
            .with_context(|| format!("chmod 755 {}", path.display()))?;
        out.insert(name.clone(), format!("{base}/control/{name}"));
    }
    Ok(out)
}

/// Generates the files on the rayon pool while this thread reports progress, so the
/// callback need not be `Sync`.
fn write_files(mut jobs: Vec<&FileJob>, progress: &dyn Fn(u64, u64)) -> Result<()> {
    jobs.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
    let total: u64 = jobs.iter().map(|j| j.size).sum();
    let (tx, rx) = mpsc::channel::<u64>();
    std::thread::scope(|s| {
        let worker = s.spawn(move || {
            jobs.par_iter().try_for_each_with(tx, |tx, job| {
                write_file(job)?;
                // The receiver lives until all senders are gone; a send cannot fail.
                let _ = tx.send(job.size);
                Ok::<(), anyhow::Error>(())
            })
        });
        let mut done = 0;
        for n in rx {
            done += n;
            progress(done, total);
        }
        worker
            .join()
            .map_err(|_| anyhow!("a corpus generator thread panicked"))?
    })
}

fn write_file(job: &FileJob) -> Result<()> {
    let mut file =
        File::create(&job.path).with_context(|| format!("creating {}", job.path.display()))?;
    write_content(&job.seed, job.size, job.zstd3_size, &mut file)
        .with_context(|| format!("writing {}", job.path.display()))?;
    file.set_permissions(Permissions::from_mode(job.mode))
        .with_context(|| format!("chmod {:o} {}", job.mode, job.path.display()))
}

/// Digests each package root with the code that digests model views, checks it against
/// the manifest, and merges them into the corpus digest.
fn digest_packages(dir: &Path, packages: &[&Package], metas: &[PackageMeta]) -> Result<TreeDigest> {
    let digests: Vec<TreeDigest> = packages
        .par_iter()
        .zip(metas)
        .map(|(p, m)| {
            let d = digest_view(&ViewSpec::plain(dir.join(&m.root)))
                .with_context(|| format!("digesting package {}", p.name))?;
            check_against_manifest(p, &d)?;
            Ok(d)
        })
        .collect::<Result<_>>()?;
    let mut union = TreeDigest::default();
    for (p, d) in packages.iter().zip(digests) {
        union.merge_package(d, &p.name)?;
    }
    Ok(union)
}

/// Refuses a written tree that is not what the manifest says (a filesystem that dropped
/// a mode bit or mangled a name would otherwise become the reference every model is
/// judged against).
fn check_against_manifest(p: &Package, d: &TreeDigest) -> Result<()> {
    let mut problems = Vec::new();
    for e in &p.entries {
        let got = d.entries.get(e.rel_path());
        let ok = match (&e.kind, got) {
            (EntryKind::Dir { mode }, Some(Entry::Dir { mode: m })) => m == mode,
            (EntryKind::Symlink { target }, Some(Entry::Symlink { target: t })) => t == target,
            (
                EntryKind::File { mode, size, .. },
                Some(Entry::File {
                    mode: m, size: s, ..
                }),
            ) => *s == *size && m == mode,
            _ => false,
        };
        if !ok {
            problems.push(format!("{}: want {:?}, wrote {:?}", e.path, e.kind, got));
        }
    }
    if d.entries.len() != p.entries.len() {
        problems.push(format!(
            "{} entries written, manifest lists {}",
            d.entries.len(),
            p.entries.len()
        ));
    }
    if !problems.is_empty() {
        problems.truncate(5);
        bail!(
            "generated package {} differs from its manifest: {}",
            p.name,
            problems.join("; ")
        );
    }
    Ok(())
}
