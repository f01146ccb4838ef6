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
//! Upgrade (`nix-env --upgrade` / `nix profile upgrade`, see `upgrade`): the new versions
//! are new store paths, substituted beside the old ones exactly as the install
//! substitutes; then a new user environment of the whole new set becomes the profile's
//! next generation (see `generations`), switched to by an atomic rename. Old paths and
//! the old generation stay (no garbage collection).
//!
//! Layout under the target: `nix/store/HASH-NAME` (the store), `nix/var/nix/db/` (the
//! database), `nix/var/nix/profiles/default -> default-N-link -> STORE/HASH-user-environment`
//! (generation 1 after the install, 2 after an upgrade).
//! Store paths are named after `/nix/store` (their names and the database say
//! `/nix/store/...`) but lie in the target's store; the profile's links point to where
//! they really are.
//!
//! The binary cache is laid out as a real one (see `pack`): `nix-cache-info`, whose
//! `StoreDir` is checked first, as Nix does; `HASH.narinfo`, whose `StorePath` must have
//! that hash part, as Nix's lookup by hash part requires; `nar/FILEHASH.nar.zst`. The
//! packer breaks Debian's dependency cycles, so its references form none, as Nix's must.
//!
//! Where it differs from Nix: no daemon, no store locks or GC roots (one installer owns the
//! target); the binary cache is a local directory read directly (like `file://`); paths
//! are restored as `HASH-NAME.tmp` and renamed, with canonical metadata applied while
//! restoring rather than by a second walk; references that do form a cycle (a narinfo not
//! of this packer) are registered as one group where Nix would refuse them; the profile's
//! store path name is derived from its members rather than from a derivation, and it
//! holds no `manifest.nix`.
//!
//! Phases: `fetch` (narinfos, and reading the compressed NARs), `restore` (decompressing
//! and writing the trees), `verify` (hashing and checking NarHash and NarSize), `register`
//! (the database), `profile`; an upgrade adds `switch` (the new generation link and the
//! profile's rename). Substitutions run in parallel, so their phases are the wall
//! time of the parallel part divided in proportion to the thread time each phase took.

pub mod db;
pub mod generations;
pub mod narinfo;
pub mod pack;
pub mod profile;
pub mod schedule;
pub mod substitute;
mod upgrade;

use crate::formats::compression::{Compression, DecodeClock};
use crate::formats::nar::{dump_path, make_dirs_writable, remove_restored};
use crate::remote::MirrorSource;
use crate::{Artifact, Model, PackageTree, PhaseTimes, RunCtx, View};
use anyhow::{anyhow, bail, Context, Result};
use db::{StoreDb, ValidPath};
use narinfo::{store_path_name_for, NarInfo, STORE_DIR};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use substitute::{nar_file, substitute, StreamTimes};

/// The profile's name in `nix/var/nix/profiles` (Nix's system-wide default profile).
pub const PROFILE: &str = "default";

/// Where things live below a target.
#[derive(Debug, Clone)]
pub struct Layout {
    pub store: PathBuf,
    pub db_dir: PathBuf,
    pub profiles: PathBuf,
}

impl Layout {
    /// Creates the store and profiles directories below `target` (made absolute and
    /// resolved, since store paths are absolute): the first step of an install.
    pub fn create(target: &Path) -> Result<Layout> {
        fs::create_dir_all(target).with_context(|| format!("creating {}", target.display()))?;
        let target =
            fs::canonicalize(target).with_context(|| format!("resolving {}", target.display()))?;
        let layout = Layout::new(&target);
        for dir in [&layout.store, &layout.profiles] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(layout)
    }

    /// The view of an install into this layout: the profile, seeing through its links
    /// into the store.
    pub fn view(&self) -> View {
        View {
            root: self.profiles.join(PROFILE),
            internal_roots: vec![self.store.clone()],
            excluded: Vec::new(),
            // Store paths are canonicalised: 0444/0555 files, 0555 directories.
            modes: crate::ViewModes::NixStore,
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
    /// The NARs' compression on the mirror (default: xz, as cache.nixos.org serves).
    pub compression: Compression,
    /// The install's decompression time.
    decode: DecodeClock,
}

impl NarModel {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The `nar` model, described for the catalog.
pub const INFO: crate::ModelInfo = crate::ModelInfo {
    name: "nar",
    stands_for: "Nix substitution: NAR archives restored into a store in parallel, SQLite registration, a profile of symlinks",
    phases: &["fetch", "restore", "verify", "register", "profile", "switch"],
    stages: &[
        (crate::catalog::Stage::Fetch, &["fetch", "verify"]),
        (crate::catalog::Stage::Extract, &["restore"]),
        (crate::catalog::Stage::Record, &["register"]),
        (crate::catalog::Stage::Activate, &["profile", "switch"]),
    ],
    compared_with: &[crate::catalog::Pair {
        reference: "ref-nix",
        kind: crate::catalog::PairKind::Fidelity,
        phases: &[
            crate::catalog::PhaseGroup {
                model: &["fetch", "restore", "verify", "register"],
                reference: &["substitute"],
            },
            crate::catalog::PhaseGroup {
                model: &["profile", "switch"],
                reference: &["profile", "switch"],
            },
        ],
    }],
    // A store below a target needs no privilege; only cold caches do (the harness).
    reference_for: None,
    needs: &[],
    install_bound: Some(crate::catalog::InstallBound::CreatesSyncedOnlyWhenFull),
    sweep: crate::catalog::SweepFigures {
        phases: &[],
        layer_lookups: false,
    },
    make: Some(|o| {
        let mut model = NarModel::new();
        model.compression = o.compression_of(INFO.name, Compression::XZ_DEFAULT);
        Box::new(model)
    }),
};

impl Model for NarModel {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn format_version(&self) -> u32 {
        // 2: a real binary cache (HASH.narinfo, nar/FILEHASH.nar.zst, nix-cache-info), no
        // CA, references without cycles.
        2
    }

    fn mirror_variant(&self) -> String {
        format!("-{}", self.compression.name().replace(':', ""))
    }

    fn install_counts(&self) -> Result<Vec<(&'static str, f64)>> {
        Ok(vec![("decompress_ns", self.decode.nanos() as f64)])
    }

    fn notes(&self) -> Vec<String> {
        vec![format!(
            "mirror: NARs compressed {} (cache.nixos.org serves xz)",
            self.compression.name()
        )]
    }

    fn pack(&self, pkg: &PackageTree, mirror: &Path) -> Result<Artifact> {
        pack::pack_package(pkg, mirror, self.compression)
    }

    fn install(&mut self, set: &[Artifact], ctx: &RunCtx) -> Result<PhaseTimes> {
        let layout = Layout::create(&ctx.target)?;
        self.layout = Some(layout.clone());
        let mut times = PhaseTimes::default();

        let infos = times.time("fetch", || {
            check_cache_info(ctx.source())?;
            read_narinfos(set, ctx.source())
        })?;
        let db = times.time("register", || {
            StoreDb::create(&layout.db_dir, ctx.durability)
        })?;
        self.decode.reset();
        let mut db = substitute_paths(&layout, &infos, ctx, &self.decode, db, &mut times)?;
        times.time("profile", || {
            make_profile(&layout, set, &infos, Some(&mut db))
        })?;
        Ok(times)
    }

    fn upgrade(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<PhaseTimes> {
        let layout = match &self.layout {
            Some(layout) => layout.clone(),
            None => {
                let target = fs::canonicalize(&ctx.target)
                    .with_context(|| format!("resolving {}", ctx.target.display()))?;
                Layout::new(&target)
            }
        };
        self.layout = Some(layout.clone());
        upgrade::upgrade(&layout, installed, to, ctx)
    }

    /// Nix's next command after a kill: the profile link is the only commit (the new
    /// generation's link is made under a temporary name and renamed over `default`), so
    /// it names the old generation or the new one, each of valid paths only. Store paths
    /// the kill left half restored (`.tmp`) or unregistered are outside every
    /// generation; Nix deletes them on its next substitution or garbage collection, and
    /// the view, the profile, never reaches them.
    fn recover_upgrade(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<crate::Recovery> {
        let _ = (installed, to);
        let target = fs::canonicalize(&ctx.target)
            .with_context(|| format!("resolving {}", ctx.target.display()))?;
        let layout = Layout::new(&target);
        let current = generations::current(&layout.profiles, PROFILE)
            .context("nar: the profile the killed upgrade left")?;
        let generations = generations::list(&layout.profiles, PROFILE)?;
        let mut steps = vec![format!(
            "profile {PROFILE} -> {} ({} generations)",
            current.display(),
            generations.len()
        )];
        // What Nix's next substitution does first: a store entry that is no valid path
        // (a restore or a user environment the kill cut short) is deleted, or building
        // it again would find it in the way.
        let db = StoreDb::create(&layout.db_dir, ctx.durability)?;
        let store = &layout.store;
        for entry in fs::read_dir(store).with_context(|| format!("reading {}", store.display()))? {
            let entry = entry.with_context(|| format!("reading {}", store.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !db.is_valid(&format!("{STORE_DIR}/{name}"))? {
                remove_restored(&entry.path())
                    .with_context(|| format!("deleting {}", entry.path().display()))?;
                steps.push(format!("{name}: not a valid path: deleted"));
            }
        }
        self.layout = Some(layout);
        Ok(crate::Recovery { steps })
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

/// Reads `nix-cache-info`, as Nix does before it looks anything up in a binary cache, and
/// refuses a cache for another store directory (Nix: "binary cache ... is for Nix stores
/// with prefix ...").
pub(crate) fn check_cache_info(mirror: MirrorSource<'_>) -> Result<()> {
    let rel = Path::new(pack::CACHE_INFO);
    let path = mirror.describe(rel);
    let text = mirror.read_to_string(rel)?;
    let store_dir = text
        .lines()
        .find_map(|l| l.strip_prefix("StoreDir: "))
        .with_context(|| format!("{path} has no StoreDir"))?;
    if store_dir != STORE_DIR {
        bail!(
            "{path}: the binary cache is for Nix stores with prefix {store_dir:?}, not {STORE_DIR:?}"
        );
    }
    Ok(())
}

/// The narinfos of `set`, each from its `HASH.narinfo` on the mirror; a narinfo for
/// another path than its name says is refused, as Nix refuses one.
pub(crate) fn read_narinfos(set: &[Artifact], mirror: MirrorSource<'_>) -> Result<Vec<NarInfo>> {
    set.iter()
        .map(|a| {
            let rel = a
                .files
                .iter()
                .find(|f| f.extension().is_some_and(|e| e == "narinfo"))
                .with_context(|| format!("package {} has no narinfo on the mirror", a.package))?;
            let path = mirror.describe(rel);
            let text = mirror.read_to_string(rel)?;
            let info = NarInfo::parse(&text).with_context(|| format!("reading {path}"))?;
            let stem = rel.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if stem != narinfo::hash_part(&info.store_path) {
                bail!(
                    "{path}: its StorePath {} has another hash part than its name",
                    info.full_path()
                );
            }
            Ok(info)
        })
        .collect()
}

/// The store path base (`HASH-NAME`) of a packed artifact, from its narinfo on `mirror`.
pub fn store_path_of(artifact: &Artifact, mirror: &Path) -> Result<String> {
    read_narinfos(std::slice::from_ref(artifact), MirrorSource::local(mirror))?
        .pop()
        .map(|info| info.store_path)
        .with_context(|| format!("package {} has no narinfo", artifact.package))
}

/// Substitutes every path of `infos` into the store, `ctx.jobs` at a time, each once the
/// paths it references are valid, and registers it in `db` (see `schedule`); adds the
/// time of each phase to `times`. A reference outside `infos` must be valid already.
/// On error, no path of `infos` that is not registered is left in the store.
pub(crate) fn substitute_paths(
    layout: &Layout,
    infos: &[NarInfo],
    ctx: &RunCtx,
    decode: &DecodeClock,
    db: StoreDb,
    times: &mut PhaseTimes,
) -> Result<StoreDb> {
    let refs = resolve_references(infos, &db)?;
    let nar_files = infos.iter().map(nar_file).collect::<Result<Vec<_>>>()?;
    let db = Mutex::new(db);
    let plan = schedule::Plan::new(&refs);
    let registered: Vec<AtomicBool> = infos.iter().map(|_| AtomicBool::new(false)).collect();
    let register_time = Mutex::new(Duration::ZERO);
    let start = Instant::now();
    let outcome = schedule::run(
        &plan,
        ctx.jobs,
        &|i| {
            substitute(
                &infos[i],
                decode,
                ctx.source(),
                &nar_files[i],
                &layout.store,
                ctx.durability,
            )
        },
        &|members| {
            let paths: Vec<ValidPath> = members.iter().map(|&m| valid_path(&infos[m])).collect();
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
    attribute_parallel_phases(times, wall, &streams, register);
    Ok(db.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// Each path's references as indices into `infos`. A reference outside the set must be
/// valid in `db` (an install's references are all in its set; an upgrade's new versions
/// refer to the packages that stay); Nix would substitute it first.
fn resolve_references(infos: &[NarInfo], db: &StoreDb) -> Result<Vec<Vec<usize>>> {
    let by_name: HashMap<&str, usize> = infos
        .iter()
        .enumerate()
        .map(|(i, info)| (info.store_path.as_str(), i))
        .collect();
    infos
        .iter()
        .map(|info| {
            let mut refs = Vec::new();
            for r in &info.references {
                match by_name.get(r.as_str()) {
                    Some(&i) => refs.push(i),
                    None if db.is_valid(&format!("{STORE_DIR}/{r}"))? => {}
                    None => bail!(
                        "{} references {STORE_DIR}/{r}, which is neither in the set nor valid",
                        info.full_path()
                    ),
                }
            }
            Ok(refs)
        })
        .collect()
}

fn valid_path(info: &NarInfo) -> ValidPath {
    ValidPath {
        path: info.full_path(),
        nar_hash: info.nar_hash,
        nar_size: info.nar_size,
        references: info
            .references
            .iter()
            .map(|r| format!("{STORE_DIR}/{r}"))
            .collect(),
        // The narinfo carries no CA (see `narinfo`), so Nix registers none either.
        ca: None,
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

/// Builds the user environment of `set` (whose store paths `infos` describe) in the
/// store, registers it (when there is a database), and makes it the profile's first
/// generation.
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
    let env = build_user_environment(layout, &members, db)?;
    generations::switch_to_new(&layout.profiles, PROFILE, &env)?;
    Ok(())
}

/// Builds the user environment of `members` as a store path, registered in `db` (when
/// there is one) with every member as a reference; returns where it lies on disk. Its
/// name follows from the members, so the same set gives the same path, which is reused
/// when it is valid already (Nix's `buildEnv` derivation is not rebuilt either). On error
/// nothing of it is left in the store.
pub(crate) fn build_user_environment(
    layout: &Layout,
    members: &[profile::Member],
    db: Option<&mut StoreDb>,
) -> Result<PathBuf> {
    let mut bases: Vec<&str> = members.iter().map(|m| m.store_path.as_str()).collect();
    bases.sort_unstable();
    let base = store_path_name_for(
        &format!("pkgbench-profile:{}", bases.join(":")),
        "user-environment",
    );
    let full = format!("{STORE_DIR}/{base}");
    let final_path = layout.store.join(&base);
    if let Some(db) = &db {
        if db.is_valid(&full)? {
            return Ok(final_path);
        }
    }
    let tmp = layout.store.join(format!("{base}.tmp"));
    let mut renamed = false;
    let built = (|| {
        profile::build_profile(&layout.store, members, &tmp)?;
        let mut hashing = HashingSink::default();
        let nar_size = dump_path(&tmp, &mut hashing)?;
        let nar_hash: [u8; 32] = hashing.0.finalize().into();
        fs::rename(&tmp, &final_path)
            .with_context(|| format!("renaming {} into place", tmp.display()))?;
        renamed = true;
        if let Some(db) = db {
            db.register(&[ValidPath {
                path: full.clone(),
                nar_hash,
                nar_size,
                references: members
                    .iter()
                    .map(|m| format!("{STORE_DIR}/{}", m.store_path))
                    .collect(),
                ca: None,
            }])?;
        }
        Ok(())
    })();
    if let Err(e) = built {
        let _ = remove_restored(&tmp);
        if renamed {
            // In place but not registered: not a valid path, so it may not stay.
            let _ = remove_restored(&final_path);
        }
        return Err(e);
    }
    Ok(final_path)
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
