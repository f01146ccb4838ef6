//! The `nar` model: Nix's binary substitution into a local store, and a profile.
//!
//! Stands for `nix-env -i` / `nix profile install` of paths a binary cache has: for every
//! store path, Nix reads its narinfo, then substitutes up to `max-substitution-jobs`
//! (default 16, here `--jobs`) paths at once, each one stream from the cache file through
//! zstd and sha256 into the store (see `substitute`), a path only after the paths it
//! references are valid (see `schedule`); it registers each path in its SQLite database
//! (see `db`), then builds a profile, a tree of symlinks into the store (see `profile`),
//! which is the view.
//!
//! Layout under the target: `nix/store/HASH-NAME` (the store), `nix/var/nix/db/` (the
//! database), `nix/var/nix/profiles/default -> default-1-link -> STORE/HASH-user-environment`.
//! Store paths are named after `/nix/store` (their names and the database say
//! `/nix/store/...`) but lie in the target's store; the profile's links point to where
//! they really are.
//!
//! Where it differs from Nix: no daemon, no store locks or GC roots (one installer owns the
//! target); the binary cache is a local directory read directly (like `file://`); paths
//! are restored as `HASH-NAME.tmp` and renamed, with canonical metadata applied while
//! restoring rather than by a second walk; Debian's dependency cycles are registered as one
//! group; the profile's store path name is derived from its members rather than from a
//! derivation, and it holds no `manifest.nix`.
//!
//! Phases: `fetch` (narinfos, and reading the compressed NARs), `restore` (decompressing
//! and writing the trees), `verify` (hashing and checking NarHash and NarSize), `register`
//! (the database), `profile`. Substitutions run in parallel, so their phases are the wall
//! time of the parallel part divided in proportion to the thread time each phase took.

pub mod db;
pub mod generations;
pub mod narinfo;
pub mod pack;
pub mod profile;
pub mod schedule;
pub mod substitute;

use crate::formats::nar::{dump_path, make_dirs_writable, remove_restored};
use crate::{Artifact, Model, PackageTree, PhaseTimes, Requirements, RunCtx, View};
use anyhow::{anyhow, Context, Result};
use db::{StoreDb, ValidPath};
use narinfo::{nix32, store_path_name_for, NarInfo, STORE_DIR};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use substitute::{nar_file, substitute, StreamTimes};

/// Where things live below a target.
#[derive(Debug, Clone)]
pub struct Layout {
    pub store: PathBuf,
    pub db_dir: PathBuf,
    pub profiles: PathBuf,
}

impl Layout {
    /// The view of an install into this layout: the profile, seeing through its links
    /// into the store.
    pub fn view(&self) -> View {
        View {
            root: self.profiles.join("default"),
            internal_roots: vec![self.store.clone()],
            excluded: Vec::new(),
        }
    }

    /// Gives the target back: the store is read-only (mode 0555 directories); without
    /// root the caller could not remove it, so it is made writable again, as Nix's
    /// garbage collector does.
    pub fn release(self) -> Result<()> {
        if !rustix::process::geteuid().is_root() && self.store.exists() {
            make_dirs_writable(&self.store)
                .with_context(|| format!("making {} writable", self.store.display()))?;
        }
        Ok(())
    }

    /// `target` should be absolute: profile links point into `store`.
    pub fn new(target: &Path) -> Layout {
        Layout {
            store: target.join("nix/store"),
            db_dir: target.join("nix/var/nix/db"),
            profiles: target.join("nix/var/nix/profiles"),
        }
    }
}

/// The Nix-like model. See the module doc.
#[derive(Default)]
pub struct NarModel {
    layout: Option<Layout>,
}

impl NarModel {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Model for NarModel {
    fn name(&self) -> &'static str {
        "nar"
    }

    fn requirements(&self) -> Requirements {
        // A store below a target needs no privilege; only cold caches do (the harness).
        Requirements::default()
    }

    fn format_version(&self) -> u32 {
        1
    }

    fn pack(&self, pkg: &PackageTree, mirror: &Path) -> Result<Artifact> {
        pack::pack_package(pkg, mirror)
    }

    fn install(&mut self, set: &[Artifact], ctx: &RunCtx) -> Result<PhaseTimes> {
        fs::create_dir_all(&ctx.target)
            .with_context(|| format!("creating {}", ctx.target.display()))?;
        let target = fs::canonicalize(&ctx.target)
            .with_context(|| format!("resolving {}", ctx.target.display()))?;
        let layout = Layout::new(&target);
        for dir in [&layout.store, &layout.profiles] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        self.layout = Some(layout.clone());
        let mut times = PhaseTimes::default();

        let infos = times.time("fetch", || read_narinfos(set, &ctx.mirror))?;
        let refs = resolve_references(&infos)?;
        let nar_files = infos
            .iter()
            .map(|i| nar_file(&ctx.mirror, i))
            .collect::<Result<Vec<_>>>()?;
        let db = times.time("register", || {
            StoreDb::create(&layout.db_dir, ctx.durability)
        })?;
        let db = Mutex::new(db);

        let plan = schedule::Plan::new(&refs);
        let registered: Vec<AtomicBool> = infos.iter().map(|_| AtomicBool::new(false)).collect();
        let register_time = Mutex::new(Duration::ZERO);
        let start = Instant::now();
        let outcome = schedule::run(
            &plan,
            ctx.jobs,
            &|i| substitute(&infos[i], &nar_files[i], &layout.store, ctx.durability),
            &|members| {
                let paths: Vec<ValidPath> = members
                    .iter()
                    .map(|&m| valid_path(&infos[m], &refs[m], &infos))
                    .collect();
                let mut db = db
                    .lock()
                    .map_err(|_| anyhow!("the store database lock is poisoned"))?;
                // Only the time holding the database counts as registering: waiting for it
                // is queueing, which the proportional split spreads over every phase.
                let begin = Instant::now();
                let result = db.register(&paths);
                *register_time.lock().unwrap_or_else(|p| p.into_inner()) += begin.elapsed();
                drop(db);
                if result.is_ok() {
                    for &m in members {
                        registered[m].store(true, Ordering::SeqCst);
                    }
                }
                result
            },
        );
        let wall = start.elapsed();
        let streams = match outcome {
            Ok(s) => s,
            Err(e) => {
                // Nothing that is not valid may stay: paths of an unregistered group, and
                // any `.tmp` (a failing stream removes its own).
                for (info, done) in infos.iter().zip(&registered) {
                    if !done.load(Ordering::SeqCst) {
                        let _ = remove_restored(&layout.store.join(&info.store_path));
                    }
                }
                return Err(e);
            }
        };
        let register = register_time
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        attribute_parallel_phases(&mut times, wall, &streams, register);

        let mut db = db.into_inner().unwrap_or_else(|p| p.into_inner());
        times.time("profile", || {
            make_profile(&layout, set, &infos, Some(&mut db))
        })?;
        Ok(times)
    }

    fn view(&self) -> View {
        self.layout.as_ref().map(Layout::view).unwrap_or_default()
    }

    fn reset_caches(&mut self) -> Result<()> {
        // Nix keeps nothing in memory between commands.
        Ok(())
    }

    fn teardown(&mut self) -> Result<()> {
        match self.layout.take() {
            Some(l) => l.release(),
            None => Ok(()),
        }
    }
}

pub(crate) fn read_narinfos(set: &[Artifact], mirror: &Path) -> Result<Vec<NarInfo>> {
    set.iter()
        .map(|a| {
            let rel = a
                .files
                .iter()
                .find(|f| f.extension().is_some_and(|e| e == "narinfo"))
                .with_context(|| format!("package {} has no narinfo on the mirror", a.package))?;
            let path = mirror.join(rel);
            let text = fs::read_to_string(&path)
                .with_context(|| format!("fetching {}", path.display()))?;
            NarInfo::parse(&text).with_context(|| format!("reading {}", path.display()))
        })
        .collect()
}

/// Each path's references as indices into `infos`. A reference outside the set would be
/// substituted first by Nix; here the set must be closed.
fn resolve_references(infos: &[NarInfo]) -> Result<Vec<Vec<usize>>> {
    let by_name: HashMap<&str, usize> = infos
        .iter()
        .enumerate()
        .map(|(i, info)| (info.store_path.as_str(), i))
        .collect();
    infos
        .iter()
        .map(|info| {
            info.references
                .iter()
                .map(|r| {
                    by_name.get(r.as_str()).copied().with_context(|| {
                        format!(
                            "{} references {STORE_DIR}/{r}, which is not in the set",
                            info.full_path()
                        )
                    })
                })
                .collect()
        })
        .collect()
}

fn valid_path(info: &NarInfo, refs: &[usize], infos: &[NarInfo]) -> ValidPath {
    ValidPath {
        path: info.full_path(),
        nar_hash: info.nar_hash,
        nar_size: info.nar_size,
        references: refs.iter().map(|&r| infos[r].full_path()).collect(),
        ca: Some(format!("fixed:r:sha256:{}", nix32(&info.nar_hash))),
    }
}

/// Splits the wall time of the parallel substitutions among its phases in proportion to
/// the thread time each took (module doc).
fn attribute_parallel_phases(
    times: &mut PhaseTimes,
    wall: Duration,
    streams: &[StreamTimes],
    register: Duration,
) {
    let sum = |f: fn(&StreamTimes) -> Duration| streams.iter().map(f).sum::<Duration>();
    let phases = [
        ("fetch", sum(|s| s.fetch)),
        ("restore", sum(|s| s.restore)),
        ("verify", sum(|s| s.verify)),
        ("register", register),
    ];
    let total: f64 = phases.iter().map(|(_, d)| d.as_secs_f64()).sum();
    for (name, d) in phases {
        let share = if total > 0.0 {
            d.as_secs_f64() / total
        } else {
            0.0
        };
        times.add(name, wall.mul_f64(share));
    }
}

/// Builds the user environment in the store, registers it (when there is a database), and
/// points the profile at it.
pub(crate) fn make_profile(
    layout: &Layout,
    set: &[Artifact],
    infos: &[NarInfo],
    db: Option<&mut StoreDb>,
) -> Result<()> {
    let members: Vec<profile::Member> = set
        .iter()
        .zip(infos)
        .map(|(a, i)| profile::Member {
            package: a.package.clone(),
            store_path: i.store_path.clone(),
        })
        .collect();
    let mut bases: Vec<&str> = infos.iter().map(|i| i.store_path.as_str()).collect();
    bases.sort_unstable();
    let base = store_path_name_for(
        &format!("pkgbench-profile:{}", bases.join(":")),
        "user-environment",
    );
    let tmp = layout.store.join(format!("{base}.tmp"));
    let built = profile::build_profile(&layout.store, &members, &tmp).and_then(|_| {
        let mut hashing = HashingSink::default();
        let nar_size = dump_path(&tmp, &mut hashing)?;
        let nar_hash: [u8; 32] = hashing.0.finalize().into();
        let final_path = layout.store.join(&base);
        fs::rename(&tmp, &final_path)
            .with_context(|| format!("renaming {} into place", tmp.display()))?;
        if let Some(db) = db {
            db.register(&[ValidPath {
                path: format!("{STORE_DIR}/{base}"),
                nar_hash,
                nar_size,
                references: infos.iter().map(NarInfo::full_path).collect(),
                ca: None,
            }])?;
        }
        let link = layout.profiles.join("default-1-link");
        std::os::unix::fs::symlink(&final_path, &link)
            .with_context(|| format!("creating {}", link.display()))?;
        let default = layout.profiles.join("default");
        std::os::unix::fs::symlink("default-1-link", &default)
            .with_context(|| format!("creating {}", default.display()))
    });
    if built.is_err() {
        let _ = remove_restored(&tmp);
    }
    built
}

/// Hashes what is written to it: the profile's NAR hash, as Nix computes it after a build.
#[derive(Default)]
struct HashingSink(Sha256);

impl std::io::Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
