//! The `composefs` model: file contents in a content-addressed object store, one EROFS
//! image of metadata for the whole installed set, mounted by OverlayFS with the store
//! as a data-only lower layer.
//!
//! Stands for composefs (containers/composefs, as ostree, bootc and podman use it),
//! built on the `composefs` crate (containers/composefs-rs): its `Repository` is the
//! store (`TARGET/repo`: `objects/XX/REST` named by fs-verity sha256 digest,
//! `images/`, `images/refs/`), its EROFS writer makes the image, and its mount is the
//! view: `fsopen("erofs")` on the image file (no loop device), then an overlay with the
//! image as `lowerdir+`, the objects directory as `datadir+`, `metacopy=on`,
//! `redirect_dir=on`, read-only, and `verity=require` when the store has fs-verity. One
//! mount for the whole set, whatever its size: no 500-layer limit, and a lookup is one
//! EROFS directory, never a search through layers.
//!
//! The mirror is fetched as ostree pulls an archive repository (see `manifest`): per
//! package a manifest, and only the objects the store does not hold yet.
//!
//! Install, timed in phases:
//! 1. **fetch**: every package's manifest, 8 at a time (ostree's limit of outstanding
//!    requests); **verify**: each manifest's sha256 and size against the mirror's index,
//!    and its entries checked (a relative path, a mode, contents that fit the size);
//! 2. **objects**: every object the set needs that the store does not hold, once, 8 at a
//!    time: fetched, decompressed and written into the store by the crate
//!    (`ensure_object_from_reader`), which computes its fs-verity digest while it
//!    writes (in the kernel, with `FS_IOC_ENABLE_VERITY`, on a filesystem with
//!    fs-verity; in user space otherwise); a digest other than the manifest's fails the
//!    install naming the package and the file, and the object is removed. So the
//!    verification of contents is inside this phase, as ostree checks each object while
//!    it stages it. Objects the set shares, or the store already had, are counted as
//!    deduplicated (`objects_deduplicated`);
//! 3. **image**: the EROFS image of the set (`image`), written into the store under the
//!    ref `pkgbench-0`;
//! 4. **sync**: `syncfs` of the store, as ostree syncs a pull's objects before it writes
//!    the ref that names them (durability `none` skips it);
//! 5. **mount**: the composefs mount at `TARGET/view`.
//!
//! fs-verity: `prepare` makes the store as `cfsctl init` does, with fs-verity, and where
//! the filesystem lacks it (ext4 without `-O verity`, tmpfs, most of this harness's
//! targets), without: the digests are then sha256 fs-verity digests computed in user
//! space, checked at install but not enforced at read time. The run's notes say which.
//!
//! Upgrade, as `overlay`'s snap-like refresh but with one image: the new versions'
//! manifests (**fetch**, **verify**), the objects the store lacks (**objects**), a new
//! image of the whole new set (**image**, ref `pkgbench-G`), **sync**, and its mount at
//! `TARGET/view-G` (**mount**), which is the switch. Then **release**: the old view is
//! unmounted and its ref removed, and the store's garbage collection (`Repository::gc`)
//! deletes the old image and every object no image refers to any more. A failure before
//! the switch removes the new ref; the old view stays.
//!
//! Where it differs from composefs as deployed: the store is per target (a system's is
//! `/sysroot/composefs` or `/var/lib/containers`); manifests are JSON, not ostree's
//! GVariant commits and dirtrees, and unsigned; objects are fetched by HTTP from a
//! plain mirror as ostree does, not unpacked from OCI layer tarballs as `cfsctl oci
//! pull` does; no xattrs are carried.

pub mod image;
pub mod manifest;

use crate::mirror_files::artifact_for;
use crate::overlay::unmount_all;
use crate::parallel::in_parallel;
use crate::{upgraded_set, Artifact, Durability, Model, PackageTree, PhaseTimes, RunCtx, View};
use anyhow::{bail, Context, Result};
use composefs::fsverity::{Algorithm, FsVerityHashValue, Sha256HashValue};
use composefs::mount::MountOptions;
use composefs::repository::{Repository, RepositoryConfig};
use manifest::Manifest;
use nix::mount::{umount2, MntFlags};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

type Store = Repository<Sha256HashValue>;

/// Requests in flight at once: ostree's `_OSTREE_MAX_OUTSTANDING_FETCHER_REQUESTS`.
const PARALLEL_FETCHES: usize = 8;

/// The composefs model. See the module doc.
#[derive(Default)]
pub struct ComposefsModel {
    /// The store `prepare` made, until `install` takes it.
    prepared: Option<(Store, PathBuf)>,
    state: Option<Installed>,
    counts: Counts,
}

impl std::fmt::Debug for ComposefsModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComposefsModel")
            .field("view", &self.state.as_ref().map(|s| &s.view))
            .field("counts", &self.counts)
            .finish()
    }
}

struct Installed {
    store: Store,
    store_dir: PathBuf,
    view: PathBuf,
    /// The mounted image: its ref and its object's hex digest (what the mount opens).
    image_ref: String,
    image_id: String,
    /// Mounted now, in mount order.
    mounts: Vec<PathBuf>,
    /// The installed set's manifests, in install order.
    manifests: Vec<Manifest>,
    generation: usize,
}

/// What the last install or upgrade did with objects.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    fetched: u64,
    deduplicated: u64,
    image_bytes: u64,
    verity: bool,
    /// The install's (fetched, deduplicated), kept through upgrades for the notes.
    install: (u64, u64),
    /// The last upgrade's, if there was one.
    upgrade: Option<(u64, u64)>,
}

impl ComposefsModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the store has fs-verity (set once a store is made).
    pub fn verity(&self) -> bool {
        self.counts.verity
    }

    /// The store's directory, once installed.
    pub fn store_dir(&self) -> Option<&Path> {
        self.state.as_ref().map(|s| s.store_dir.as_path())
    }

    /// Objects the last install or upgrade fetched and found already there.
    pub fn object_counts(&self) -> (u64, u64) {
        (self.counts.fetched, self.counts.deduplicated)
    }
}

/// The `composefs` model, described for the catalog.
pub const INFO: crate::ModelInfo = crate::ModelInfo {
    name: "composefs",
    stands_for: "composefs: contents in a content-addressed store, one EROFS metadata image of the set, mounted by OverlayFS with the store as data-only layer",
    phases: &["fetch", "verify", "objects", "image", "sync", "mount", "release"],
    stages: &[
        (crate::catalog::Stage::Fetch, &["fetch", "verify"]),
        (crate::catalog::Stage::Extract, &["objects"]),
        (crate::catalog::Stage::Record, &["image", "sync"]),
        (crate::catalog::Stage::Activate, &["mount", "release"]),
    ],
    // Its question: the kernel's reads (overlay) with one mount, and installs that write
    // only what the store lacks.
    compared_with: &[
        crate::catalog::Pair {
            reference: "overlay",
            kind: crate::catalog::PairKind::Readers,
            phases: &[],
        },
        crate::catalog::Pair {
            reference: "fuse",
            kind: crate::catalog::PairKind::Readers,
            phases: &[],
        },
    ],
    reference_for: None,
    needs: &[
        crate::needs::ROOT,
        crate::needs::EROFS,
        crate::needs::OVERLAYFS,
        crate::needs::COMPOSEFS_MOUNTS,
    ],
    install_bound: Some(crate::catalog::InstallBound::CreatesSyncedOnlyWhenFull),
    sweep: crate::catalog::SweepFigures {
        phases: &["fetch", "objects", "image", "mount"],
        layer_lookups: false,
    },
    make: Some(|_| Box::new(ComposefsModel::new())),
};

/// Makes the store at `dir` as `cfsctl init` does: with fs-verity where the filesystem
/// has it, without otherwise. Returns it and whether it has fs-verity.
fn make_store(dir: &Path) -> Result<(Store, bool)> {
    let algorithm = Algorithm::for_hash::<Sha256HashValue>();
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    if let Ok((store, _)) = Store::init_path(rustix::fs::CWD, dir, RepositoryConfig::new(algorithm))
    {
        if !store.is_insecure() {
            return Ok((store, true));
        }
    }
    // What the refused attempt left (a meta.json without verity) goes.
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let (store, _) = Store::init_path(
        rustix::fs::CWD,
        dir,
        RepositoryConfig::new(algorithm).set_insecure(),
    )
    .with_context(|| format!("making the composefs store {}", dir.display()))?;
    Ok((store, false))
}

/// Fetches and checks the manifests of `set`, in its order.
fn fetch_manifests(
    set: &[Artifact],
    ctx: &RunCtx,
    times: &mut PhaseTimes,
) -> Result<Vec<Manifest>> {
    let fetched = times.time("fetch", || {
        in_parallel(set, PARALLEL_FETCHES, |art| -> Result<Vec<u8>> {
            let rel = art
                .files
                .first()
                .with_context(|| format!("{}: artifact lists no manifest", art.package))?;
            let mut bytes = Vec::new();
            ctx.source()
                .open(rel)
                .and_then(|mut r| {
                    r.read_to_end(&mut bytes)
                        .with_context(|| format!("reading {}", ctx.source().describe(rel)))
                })
                .with_context(|| format!("package {}: fetching its manifest", art.package))?;
            Ok(bytes)
        })
    })?;
    times.time("verify", || {
        set.iter()
            .zip(fetched)
            .map(|(art, bytes)| {
                let rel = &art.files[0];
                let sha256: String = Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                if sha256 != art.sha256 || bytes.len() as u64 != art.size_bytes {
                    bail!(
                        "package {}: manifest {}: hash sum mismatch (want sha256 {} and {} bytes, \
                         got {sha256} and {} bytes)",
                        art.package,
                        rel.display(),
                        art.sha256,
                        art.size_bytes,
                        bytes.len()
                    );
                }
                manifest::parse(&bytes, &art.package, &rel.display().to_string())
                    .with_context(|| format!("package {}", art.package))
            })
            .collect()
    })
}

/// An object the set needs: its digest, and the first file (package, path) naming it.
struct Needed {
    id: Sha256HashValue,
    size: u64,
    package: String,
    path: String,
}

/// The objects of `manifests` the store at `store_dir` lacks, each once; and how many
/// references to objects needed nothing fetched (shared in the set, or already held).
fn objects_needed(manifests: &[&Manifest], store_dir: &Path) -> Result<(Vec<Needed>, u64)> {
    let mut seen = HashSet::new();
    let mut needed = Vec::new();
    let mut deduplicated = 0;
    for m in manifests {
        for entry in &m.entries {
            let Some(id) = entry.object_id()? else {
                continue;
            };
            let held = store_dir
                .join("objects")
                .join(id.to_object_pathname())
                .exists();
            if !seen.insert(id.clone()) || held {
                deduplicated += 1;
                continue;
            }
            needed.push(Needed {
                id,
                size: entry.size,
                package: m.package.clone(),
                path: entry.path.clone(),
            });
        }
    }
    Ok((needed, deduplicated))
}

/// Fetches every needed object into the store, checking each one's digest.
fn fetch_objects(needed: &[Needed], store: &Store, store_dir: &Path, ctx: &RunCtx) -> Result<()> {
    in_parallel(needed, PARALLEL_FETCHES, |n| -> Result<()> {
        let rel = manifest::object_path(&n.id);
        let what = || {
            format!(
                "package {}: /{} (object {})",
                n.package,
                n.path,
                rel.display()
            )
        };
        let source = ctx.source().open(&rel).with_context(what)?;
        let got = store
            .ensure_object_from_reader(flate2::read::ZlibDecoder::new(source), n.size)
            .with_context(what)?;
        if got != n.id {
            // Content-addressed under what it is, not what was asked for: it goes.
            let _ = fs::remove_file(store_dir.join("objects").join(got.to_object_pathname()));
            bail!(
                "{}: fs-verity digest mismatch (want {}, got {})",
                what(),
                n.id.to_hex(),
                got.to_hex()
            );
        }
        Ok(())
    })
    .map(drop)
}

impl ComposefsModel {
    /// Steps 2 to 4 of an install or upgrade: the objects `manifests` need, their image
    /// under `image_ref`, the sync. Returns the image's hex digest.
    fn write_set(
        &mut self,
        store: &Store,
        store_dir: &Path,
        manifests: &[&Manifest],
        image_ref: &str,
        ctx: &RunCtx,
        times: &mut PhaseTimes,
    ) -> Result<String> {
        let (needed, deduplicated) = objects_needed(manifests, store_dir)?;
        times.time("objects", || fetch_objects(&needed, store, store_dir, ctx))?;
        self.counts.fetched = needed.len() as u64;
        self.counts.deduplicated = deduplicated;
        let id = times.time("image", || -> Result<String> {
            let data = image::build(manifests)?;
            self.counts.image_bytes = data.len() as u64;
            let id = store
                .write_image(Some(image_ref), &data)
                .with_context(|| format!("writing the image {image_ref}"))?;
            Ok(id.to_hex())
        })?;
        if ctx.durability != Durability::None {
            times.time("sync", || store.sync())?;
        }
        Ok(id)
    }
}

/// Mounts the image `image_id` of `store` at `view`.
fn mount_image(store: &Store, image_id: &str, view: &Path) -> Result<()> {
    store
        .mount_at(image_id, view, &MountOptions::default())
        .with_context(|| {
            format!(
                "mounting the composefs image {image_id} at {}",
                view.display()
            )
        })
}

fn image_ref(generation: usize) -> String {
    format!("pkgbench-{generation}")
}

fn view_of(target: &Path, generation: usize) -> PathBuf {
    match generation {
        0 => target.join("view"),
        g => target.join(format!("view-{g}")),
    }
}

impl Model for ComposefsModel {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn format_version(&self) -> u32 {
        1
    }

    fn pack(&self, pkg: &PackageTree, mirror: &Path) -> Result<Artifact> {
        let files = manifest::pack(pkg, mirror)?;
        artifact_for(pkg, files, mirror)
    }

    /// The empty store a composefs system has before anything is pulled into it.
    fn prepare(&mut self, _set: &[Artifact], ctx: &RunCtx) -> Result<()> {
        let dir = ctx.target.join("repo");
        let (store, verity) = make_store(&dir)?;
        self.counts.verity = verity;
        self.prepared = Some((store, dir));
        Ok(())
    }

    fn install(&mut self, set: &[Artifact], ctx: &RunCtx) -> Result<PhaseTimes> {
        if self.state.is_some() {
            bail!("composefs: install called twice without teardown");
        }
        let (store, store_dir) = match self.prepared.take() {
            Some(prepared) => prepared,
            None => {
                let dir = ctx.target.join("repo");
                let (store, verity) = make_store(&dir)?;
                self.counts.verity = verity;
                (store, dir)
            }
        };
        let mut times = PhaseTimes::default();
        let manifests = fetch_manifests(set, ctx, &mut times)?;
        let refs: Vec<&Manifest> = manifests.iter().collect();
        let image_ref = image_ref(0);
        let image_id = self.write_set(&store, &store_dir, &refs, &image_ref, ctx, &mut times)?;
        self.counts.install = (self.counts.fetched, self.counts.deduplicated);
        self.counts.upgrade = None;
        let view = view_of(&ctx.target, 0);
        times.time("mount", || -> Result<()> {
            fs::create_dir_all(&view).with_context(|| format!("creating {}", view.display()))?;
            mount_image(&store, &image_id, &view)
        })?;
        self.state = Some(Installed {
            store,
            store_dir,
            view: view.clone(),
            image_ref,
            image_id,
            mounts: vec![view],
            manifests,
            generation: 0,
        });
        Ok(times)
    }

    fn upgrade(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<PhaseTimes> {
        let Some(mut state) = self.state.take() else {
            bail!("composefs: upgrade without an install");
        };
        let outcome = self.upgrade_state(&mut state, installed, to, ctx);
        self.state = Some(state);
        outcome
    }

    /// composefs after a kill: every mount went with the killed namespace; the store is
    /// what is left. The upgrade writes its image's ref only after every object it
    /// needs is in the store (the crate writes each object and the ref whole, by
    /// rename or link), and removes the old ref only after its switch: so the newest
    /// `pkgbench-G` ref is a whole set, the new one if the upgrade got that far. It is
    /// mounted, every other ref removed, and the garbage collection deletes what only
    /// they, or an unfinished upgrade's objects, held: one whole set, never a mix.
    fn recover_upgrade(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<crate::Recovery> {
        if self.state.is_some() {
            bail!("composefs: recovery on a model that has a view mounted");
        }
        let store_dir = ctx.target.join("repo");
        let store = Store::open_path(rustix::fs::CWD, &store_dir)
            .map_err(|e| anyhow::anyhow!("opening the store {}: {e}", store_dir.display()))?;
        self.counts.verity = !store.is_insecure();
        let refs_dir = store_dir.join("images/refs");
        let mut generations = Vec::new();
        for entry in
            fs::read_dir(&refs_dir).with_context(|| format!("reading {}", refs_dir.display()))?
        {
            let name = entry
                .with_context(|| format!("reading {}", refs_dir.display()))?
                .file_name();
            if let Some(g) = name
                .to_str()
                .and_then(|n| n.strip_prefix("pkgbench-"))
                .and_then(|g| g.parse::<usize>().ok())
            {
                generations.push(g);
            }
        }
        let generation = generations
            .iter()
            .copied()
            .max()
            .with_context(|| format!("{}: no image of an install", refs_dir.display()))?;
        let mut steps = Vec::new();
        for &g in generations.iter().filter(|&&g| g != generation) {
            fs::remove_file(refs_dir.join(image_ref(g)))
                .with_context(|| format!("removing the ref {}", image_ref(g)))?;
            steps.push(format!("removed the image {}", image_ref(g)));
        }
        let gc = store.gc(&[]).context("the store's garbage collection")?;
        steps.push(format!(
            "garbage collection: {} objects removed",
            gc.objects_removed
        ));
        let set = if generation == 0 {
            installed.to_vec()
        } else {
            upgraded_set(installed, to)
        };
        let manifests = fetch_manifests(&set, ctx, &mut PhaseTimes::default())?;
        let image_ref = image_ref(generation);
        let image_id = fs::read_link(refs_dir.join(&image_ref))
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
            .with_context(|| format!("reading the ref {image_ref}"))?;
        let view = view_of(&ctx.target, generation);
        fs::create_dir_all(&view).with_context(|| format!("creating {}", view.display()))?;
        mount_image(&store, &image_id, &view)?;
        steps.push(format!(
            "mounted {image_ref} ({})",
            if generation == 0 {
                "the installed set"
            } else {
                "the upgraded set"
            }
        ));
        self.state = Some(Installed {
            store,
            store_dir,
            view: view.clone(),
            image_ref,
            image_id,
            mounts: vec![view],
            manifests,
            generation,
        });
        Ok(crate::Recovery { steps })
    }

    fn view(&self) -> View {
        View {
            root: self
                .state
                .as_ref()
                .map(|s| s.view.clone())
                .unwrap_or_default(),
            internal_roots: Vec::new(),
            excluded: Vec::new(),
            modes: crate::ViewModes::AsPackaged,
        }
    }

    /// Mounts the image again: a new EROFS superblock and overlay start with none of
    /// the old one's state. Untimed, before the harness drops the kernel's caches.
    fn reset_caches(&mut self) -> Result<()> {
        let Some(state) = self.state.as_mut() else {
            return Ok(());
        };
        unmount_all(&state.mounts)?;
        state.mounts.clear();
        mount_image(&state.store, &state.image_id, &state.view)?;
        state.mounts.push(state.view.clone());
        Ok(())
    }

    fn teardown(&mut self) -> Result<()> {
        self.prepared = None;
        let Some(state) = self.state.take() else {
            return Ok(());
        };
        unmount_all(&state.mounts)
    }

    fn notes(&self) -> Vec<String> {
        vec![
            if self.counts.verity {
                "composefs: the store has fs-verity: the kernel computed every object's digest and OverlayFS checks it at every open (verity=require)".to_string()
            } else {
                format!(
                    "composefs: the store has no fs-verity ({}): objects' fs-verity sha256 digests were computed in user space and checked at install, not enforced at read",
                    crate::needs::fs_verity()
                        .err()
                        .unwrap_or_else(|| "the target's filesystem refused it".into())
                )
            },
            format!(
                "composefs: the install fetched {} objects and found {} references to objects already fetched or held{}",
                self.counts.install.0,
                self.counts.install.1,
                self.counts
                    .upgrade
                    .map(|(f, d)| format!("; the last upgrade fetched {f} and found {d}"))
                    .unwrap_or_default()
            ),
        ]
    }

    fn install_counts(&self) -> Result<Vec<(&'static str, f64)>> {
        Ok(vec![
            ("objects_fetched", self.counts.fetched as f64),
            ("objects_deduplicated", self.counts.deduplicated as f64),
            ("image_bytes", self.counts.image_bytes as f64),
        ])
    }
}

impl ComposefsModel {
    fn upgrade_state(
        &mut self,
        state: &mut Installed,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<PhaseTimes> {
        let names: Vec<&str> = installed.iter().map(|a| a.package.as_str()).collect();
        let held: Vec<&str> = state.manifests.iter().map(|m| m.package.as_str()).collect();
        if names != held {
            bail!(
                "composefs: upgrade from a set of {} packages that is not the installed one ({})",
                installed.len(),
                held.len()
            );
        }
        let mut replaced = Vec::with_capacity(to.len());
        for art in to {
            let index = held
                .iter()
                .position(|p| *p == art.package)
                .with_context(|| {
                    format!(
                        "composefs: upgrade to {} {}: not installed",
                        art.package, art.version
                    )
                })?;
            if replaced.contains(&index) {
                bail!(
                    "composefs: {} is upgraded twice in one upgrade",
                    art.package
                );
            }
            replaced.push(index);
        }
        state.generation += 1;
        let generation = state.generation;
        let mut times = PhaseTimes::default();
        let new_ref = image_ref(generation);
        let new_view = view_of(&ctx.target, generation);
        let outcome = (|| -> Result<(Vec<Manifest>, String)> {
            let fetched = fetch_manifests(to, ctx, &mut times)?;
            let mut manifests = state.manifests.clone();
            for (m, &index) in fetched.into_iter().zip(&replaced) {
                manifests[index] = m;
            }
            let refs: Vec<&Manifest> = manifests.iter().collect();
            let id = self.write_set(
                &state.store,
                &state.store_dir,
                &refs,
                &new_ref,
                ctx,
                &mut times,
            )?;
            self.counts.upgrade = Some((self.counts.fetched, self.counts.deduplicated));
            // The switch: once this mount is there, it is the view.
            times.time("mount", || -> Result<()> {
                fs::create_dir_all(&new_view)
                    .with_context(|| format!("creating {}", new_view.display()))?;
                mount_image(&state.store, &id, &new_view)
            })?;
            Ok((manifests, id))
        })();
        let (manifests, image_id) = match outcome {
            Ok(done) => done,
            Err(e) => {
                // The old view was never touched; the new ref goes, the objects stay for
                // the next attempt (ostree keeps what a failed pull fetched too).
                let _ = fs::remove_file(state.store_dir.join("images/refs").join(&new_ref));
                let _ = fs::remove_dir(&new_view);
                return Err(e);
            }
        };
        let old_view = std::mem::replace(&mut state.view, new_view.clone());
        let old_ref = std::mem::replace(&mut state.image_ref, new_ref);
        state.image_id = image_id;
        state.manifests = manifests;
        state.mounts.push(new_view);
        times.time("release", || -> Result<()> {
            umount2(&old_view, MntFlags::MNT_DETACH)
                .with_context(|| format!("unmounting the old view {}", old_view.display()))?;
            state.mounts.retain(|m| *m != old_view);
            // An old path now fails loudly instead of showing an empty directory.
            fs::remove_dir(&old_view)
                .with_context(|| format!("removing {}", old_view.display()))?;
            let old = state.store_dir.join("images/refs").join(&old_ref);
            fs::remove_file(&old).with_context(|| format!("removing {}", old.display()))?;
            state
                .store
                .gc(&[])
                .context("the store's garbage collection")?;
            Ok(())
        })?;
        Ok(times)
    }
}
