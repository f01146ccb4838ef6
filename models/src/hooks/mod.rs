//! The `hooks` model: classic dpkg/apt.
//!
//! Stands for Debian's dpkg driven by apt (and, in its shape, rpm): every package is a
//! compressed data archive plus maintainer scripts and triggers; apt fetches and verifies
//! all archives, then dpkg installs strictly one package at a time, in dependency order:
//! preinst, unpack (each file written as `PATH.dpkg-new`, synced, renamed), file list,
//! postinst; after all packages the triggers run. The scripts and triggers are why dpkg
//! cannot install in parallel, and the syncs are why it is durable.
//!
//! An upgrade (`upgrade`) is dpkg installing new versions over installed ones, one
//! package at a time: old prerm, new preinst, unpack over the old files, old postrm,
//! obsolete files removed (`obsolete`), database, new postinst, then the triggers once.
//!
//! The mirror's data archives are compressed as Debian 12 publishes them (xz, level 6:
//! dpkg-deb's default) unless `--compression hooks=...` says otherwise; the time spent
//! decompressing is `decompress_ns` of the install.
//!
//! Where it differs from dpkg: the data archive is a compressed tar on its own
//! (no `ar` container, no control.tar), maintainer scripts run on the host with the root
//! in `DPKG_ROOT` (see `scripts`), there are no conffiles, diversions or alternatives,
//! unpack and configure run back to back per package rather than in apt's batches, and
//! setuid and setgid bits are stripped on unpack (the `formats::tar` policy; each
//! package that had some says so in [`Model::notes`]).

pub(crate) mod base;
pub mod database;
pub mod obsolete;
pub mod probe;
mod recover;
pub mod scripts;
pub mod triggers;
mod upgrade;

use crate::formats::compression::{Compression, DecodeClock};
use crate::formats::tar::{self as tarfmt, Staging, UnpackOptions};
use crate::mirror_files::{artifact_for, verify_fetched};
use crate::order::install_order;
use crate::remote::MirrorSource;
use crate::{Artifact, Durability, Model, PackageTree, PhaseTimes, RunCtx, View};
use anyhow::{bail, Context, Result};
use database::DpkgDatabase;
use scripts::{run_maintainer_script, HookEnv};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use triggers::{process_triggers, TriggerPackage};

/// The maintainer scripts the model knows, in the order their names appear on a mirror.
const SCRIPT_NAMES: [&str; 4] = ["preinst", "postinst", "prerm", "postrm"];

/// One step of an install or upgrade, recorded when tracing is on (tests prove the order
/// with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Fetch(String),
    Verify(String),
    /// The old version's prerm, in an upgrade.
    Prerm(String),
    Preinst(String),
    Unpack(String),
    /// The old version's postrm, in an upgrade.
    Postrm(String),
    /// An upgrade removing the old version's obsolete paths.
    Remove(String),
    Postinst(String),
    Triggers,
}

/// The dpkg-like model. See the module doc.
#[derive(Default)]
pub struct HooksModel {
    /// Set by `install`: `TARGET/root`, the view (an upgrade keeps it).
    root: Option<PathBuf>,
    /// When `Some`, every step is appended here.
    pub trace: Option<Vec<Step>>,
    /// Skip maintainer scripts and triggers (for comparing the unpack alone with
    /// `dpkg --unpack`).
    pub skip_hooks: bool,
    /// Real packages: maintainer scripts run chrooted into the root, never on the host
    /// (`scripts`), and what they create is not package content (`view`).
    pub chroot_scripts: bool,
    /// Scripts of the last install (and upgrade) that were skipped or failed in the
    /// chroot, and packages whose setuid or setgid bits were stripped.
    notes: Vec<String>,
    /// Every path the installed packages own (dpkg's file lists), relative to the root.
    owned: std::collections::HashSet<PathBuf>,
    /// Real packages: the base system to install onto (`base`), copied into the target by
    /// `prepare`.
    pub base_root: Option<PathBuf>,
    /// The base as `prepare` put it into the target.
    base: Option<base::BaseState>,
    /// When `Some`, every maintainer script's cost is measured (`harness hook-costs`).
    pub probe: Option<std::sync::Arc<probe::ScriptProbe>>,
    /// The data archives' compression on the mirror (default: xz, as Debian ships).
    pub compression: Compression,
    /// The install's decompression time.
    decode: DecodeClock,
}

impl HooksModel {
    pub fn new() -> Self {
        Self::default()
    }

    fn record(&mut self, step: Step) {
        if let Some(trace) = &mut self.trace {
            trace.push(step);
        }
    }
}

/// The layout of one install: dpkg's root, its database and apt's archive cache are
/// siblings, so the root holds only package content (and ldconfig's cache).
struct Layout {
    root: PathBuf,
    admindir: PathBuf,
    archives: PathBuf,
}

impl Layout {
    /// On a base root (`base`), dpkg's database is the base's own, inside the root, where
    /// the real scripts' `dpkg-query`, `dpkg-trigger` and debconf look for it.
    fn new(target: &Path, base: bool) -> Self {
        let root = target.join("root");
        Layout {
            admindir: if base {
                root.join("var/lib/dpkg")
            } else {
                target.join("var-lib-dpkg")
            },
            root,
            archives: target.join("archives"),
        }
    }
}

/// A mirror file name for a package version: Debian's pool spelling, with the epoch colon
/// escaped as apt does.
fn pool_name(name: &str, version: &str) -> String {
    format!("{name}_{}", version.replace(':', "%3a"))
}

/// The `hooks` model, described for the catalog.
pub const INFO: crate::ModelInfo = crate::ModelInfo {
    name: "hooks",
    stands_for: "dpkg/apt (and rpm): one root, maintainer scripts and triggers, one package at a time, fsync before rename",
    phases: &["fetch", "verify", "hooks", "unpack", "remove", "database", "triggers"],
    stages: &[
        (crate::catalog::Stage::Fetch, &["fetch", "verify"]),
        (crate::catalog::Stage::Extract, &["unpack", "remove"]),
        (crate::catalog::Stage::Hooks, &["hooks"]),
        (crate::catalog::Stage::Triggers, &["triggers"]),
        (crate::catalog::Stage::Record, &["database"]),
    ],
    compared_with: &[crate::catalog::Pair {
        reference: "ref-dpkg",
        kind: crate::catalog::PairKind::Fidelity,
        phases: &[
            crate::catalog::PhaseGroup {
                model: &["fetch", "verify"],
                reference: &["acquire"],
            },
            crate::catalog::PhaseGroup {
                model: &["hooks", "unpack", "database", "remove", "triggers"],
                reference: &["dpkg"],
            },
        ],
    }],
    // `ldconfig -r` chroots into the root.
    reference_for: None,
    needs: &[
        crate::needs::ROOT,
        crate::needs::Need::Program("ldconfig"),
        crate::needs::Need::Program("sh"),
    ],
    install_bound: Some(crate::catalog::InstallBound::CreatesSyncedUnlessNone),
    sweep: crate::catalog::SweepFigures {
        phases: &[],
        layer_lookups: false,
    },
    make: Some(|o| {
        let mut model = HooksModel::new();
        model.skip_hooks = o.skip_maintainer_scripts;
        model.chroot_scripts = o.chroot_maintainer_scripts;
        model.base_root = o.base_root.clone();
        model.compression = o.compression_of(INFO.name, Compression::XZ_DEFAULT);
        Box::new(model)
    }),
};

impl Model for HooksModel {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn format_version(&self) -> u32 {
        1
    }

    fn mirror_variant(&self) -> String {
        format!("-{}", self.compression.name().replace(':', ""))
    }

    fn pack(&self, pkg: &PackageTree, mirror: &Path) -> Result<Artifact> {
        let base = pool_name(&pkg.name, &pkg.version);
        let pool = mirror.join("pool");
        let control = pool.join(format!("{base}.control"));
        fs::create_dir_all(&control).with_context(|| format!("creating {}", control.display()))?;
        let archive_rel =
            PathBuf::from("pool").join(format!("{base}.tar{}", self.compression.extension()));
        let archive = mirror.join(&archive_rel);
        let out =
            File::create(&archive).with_context(|| format!("creating {}", archive.display()))?;
        let mut encoder = self.compression.encoder(BufWriter::new(out))?;
        tarfmt::pack_tree(&pkg.root, &mut encoder)
            .with_context(|| format!("packing {} into {}", pkg.name, archive.display()))?;
        encoder
            .finish()
            .and_then(|mut w| w.flush())
            .with_context(|| format!("writing {}", archive.display()))?;

        let mut files = vec![archive_rel];
        for name in SCRIPT_NAMES {
            if let Some(src) = pkg.scripts.get(name) {
                let rel = PathBuf::from("pool")
                    .join(format!("{base}.control"))
                    .join(name);
                fs::copy(src, mirror.join(&rel))
                    .with_context(|| format!("copying {} of {}", name, pkg.name))?;
                files.push(rel);
            }
        }
        artifact_for(pkg, files, mirror)
    }

    fn prepare(&mut self, _set: &[Artifact], ctx: &RunCtx) -> Result<()> {
        self.base = None;
        if let Some(source) = &self.base_root {
            let root = Layout::new(&ctx.target, true).root;
            self.base = Some(base::BaseState::copy_into(source, &root)?);
        }
        Ok(())
    }

    fn install(&mut self, set: &[Artifact], ctx: &RunCtx) -> Result<PhaseTimes> {
        self.decode.reset();
        if self.base_root.is_some() && self.base.is_none() {
            bail!(
                "hooks: the base root was not prepared in {}",
                ctx.target.display()
            );
        }
        let layout = Layout::new(&ctx.target, self.base.is_some());
        for dir in [&layout.root, &layout.admindir, &layout.archives] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        self.root = Some(layout.root.clone());
        let mut times = PhaseTimes::default();
        // What the base already holds is not installed again, as apt would not.
        let (order, in_base) = match &self.base {
            Some(base) => base.split(set, &install_order(set))?,
            None => (install_order(set), Vec::new()),
        };

        // apt: download every archive, then check every hash, before dpkg starts.
        let mut fetched: Vec<Vec<PathBuf>> = vec![Vec::new(); set.len()];
        for &i in &order {
            let art = &set[i];
            fetched[i] = times.time("fetch", || fetch(art, ctx.source(), &layout.archives))?;
            self.record(Step::Fetch(art.package.clone()));
        }
        for &i in &order {
            let art = &set[i];
            times.time("verify", || verify(art, &fetched[i][0]))?;
            self.record(Step::Verify(art.package.clone()));
        }

        let mut db = if self.base.is_some() {
            DpkgDatabase::open(&layout.admindir)?
        } else {
            DpkgDatabase::new(&layout.admindir)?
        };
        // On a base root dpkg first loads the file database of what is installed, as
        // ref-dpkg's dpkg does; on an empty root there is none.
        let mut base_lists = if self.base.is_some() {
            times.time("database", || db.installed_file_lists())?
        } else {
            std::collections::HashMap::new()
        };
        self.notes.clear();
        let notes = std::cell::RefCell::new(Vec::new());
        let probe = self.probe.clone();
        if !in_base.is_empty() {
            let names: Vec<&str> = in_base.iter().map(|&i| set[i].package.as_str()).collect();
            notes.borrow_mut().push(format!(
                "{} of {} packages are already in the base root at the same version and were not installed again (as apt would not): {}",
                names.len(),
                set.len(),
                names.join(", ")
            ));
        }
        let env = HookEnv {
            root: &layout.root,
            admindir: &layout.admindir,
            chroot: self.chroot_scripts.then_some(&notes),
            probe: probe.as_deref(),
        };
        let mut installed_paths: Vec<Vec<PathBuf>> = vec![Vec::new(); set.len()];
        for &i in &order {
            let art = &set[i];
            let script = |name: &str| {
                fetched[i]
                    .iter()
                    .find(|p| p.file_name().is_some_and(|f| f == name))
                    .cloned()
            };
            if let (Some(preinst), false) = (script("preinst"), self.skip_hooks) {
                times.time("hooks", || -> Result<()> {
                    // On a base root the script runs from inside it, as dpkg runs it from
                    // `tmp.ci/`, so `$0` names a file the chroot can see (debconf re-execs
                    // `$0`).
                    let preinst = match &self.base {
                        Some(_) => base::stage_preinst(&layout.admindir, &preinst)?,
                        None => preinst,
                    };
                    run_maintainer_script(env, &art.package, "preinst", &preinst, &["install"])
                })?;
                self.record(Step::Preinst(art.package.clone()));
            }
            times.time("database", || {
                db.note_status(&art.package, &art.version, "half-installed")
            })?;
            let report = times.time("unpack", || {
                let archive = &fetched[i][0];
                let file = File::open(archive)
                    .with_context(|| format!("opening {}", archive.display()))?;
                let compression = Compression::of_extension(&archive.to_string_lossy());
                let decoder = self
                    .decode
                    .decoder(compression, file)
                    .with_context(|| format!("reading {}", archive.display()))?;
                tarfmt::unpack(
                    archive,
                    decoder,
                    &layout.root,
                    UnpackOptions {
                        staging: Staging::DpkgNew,
                        durability: ctx.durability,
                        refuse_overwrite: true,
                        keep_setid: false,
                    },
                )
            })?;
            if report.setid_stripped > 0 {
                notes
                    .borrow_mut()
                    .push(setid_note(&art.package, report.setid_stripped));
            }
            self.record(Step::Unpack(art.package.clone()));
            times.time("database", || -> Result<()> {
                db.write_file_list(
                    &art.package,
                    &report.paths,
                    ctx.durability != Durability::None,
                )?;
                install_control_scripts(&db.info_dir(), &art.package, &fetched[i][1..])?;
                db.note_status(&art.package, &art.version, "unpacked")?;
                db.note_status(&art.package, &art.version, "half-configured")
            })?;
            if let (Some(_), false) = (script("postinst"), self.skip_hooks) {
                let postinst = db.info_dir().join(format!("{}.postinst", art.package));
                times.time("hooks", || {
                    run_maintainer_script(
                        env,
                        &art.package,
                        "postinst",
                        &postinst,
                        &["configure", ""],
                    )
                })?;
                self.record(Step::Postinst(art.package.clone()));
            }
            times.time("database", || {
                db.note_status(&art.package, &art.version, "installed")
            })?;
            installed_paths[i] = report.paths;
        }
        // The packages the base holds own what its file database says.
        for &i in &in_base {
            installed_paths[i] = base_lists.remove(&set[i].package).with_context(|| {
                format!(
                    "package {}: the base's dpkg database has no file list of it",
                    set[i].package
                )
            })?;
        }
        self.owned = installed_paths
            .iter()
            .flatten()
            .filter_map(|p| p.strip_prefix("/").ok().map(Path::to_path_buf))
            .collect();

        if !self.skip_hooks {
            let info = db.info_dir();
            // The base's packages declared their interests when dpkg installed them.
            let base_interests = match &self.base {
                Some(_) => base::trigger_interests(&layout.admindir)?,
                None => Vec::new(),
            };
            let mut packages: Vec<TriggerPackage> = order
                .iter()
                .map(|&i| TriggerPackage {
                    name: &set[i].package,
                    directives: &set[i].triggers,
                    postinst: Some(info.join(format!("{}.postinst", set[i].package)))
                        .filter(|p| p.exists()),
                    paths: &installed_paths[i],
                })
                .collect();
            packages.extend(base_interests.iter().map(|b| {
                TriggerPackage {
                    name: &b.package,
                    directives: &b.directives,
                    postinst: Some(database::control_path(&info, &b.package, "postinst"))
                        .filter(|p| p.exists()),
                    paths: &[],
                }
            }));
            times.time("triggers", || process_triggers(env, &packages))?;
            self.record(Step::Triggers);
        }
        self.notes = notes.into_inner();
        times.time("database", || db.checkpoint())?;
        Ok(times)
    }

    fn upgrade(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<PhaseTimes> {
        self.upgrade_packages(installed, to, ctx)
    }

    fn recover_upgrade(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<crate::Recovery> {
        self.recover(installed, to, ctx)
    }

    fn view(&self) -> View {
        let root = self.root.clone().unwrap_or_default();
        // What ldconfig writes into the root: the loader's cache, and its auxiliary
        // cache (dpkg's own database lives outside the root).
        let mut excluded = vec![
            PathBuf::from("etc/ld.so.cache"),
            PathBuf::from("var/cache/ldconfig"),
        ];
        if self.chroot_scripts && self.root.is_some() {
            // Real maintainer scripts create files no package owns (python's byte code,
            // alternatives): state beside the packages, as ldconfig's cache is. Files
            // they change inside packages are not excluded: those still differ.
            for p in unowned_paths(&root, &self.owned) {
                if !excluded.contains(&p) {
                    excluded.push(p);
                }
            }
        }
        View {
            root,
            internal_roots: Vec::new(),
            excluded,
            modes: crate::ViewModes::AsPackaged,
        }
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = self.notes.clone();
        notes.push(format!(
            "mirror: data archives compressed {} (Debian 12 ships xz:6)",
            self.compression.name()
        ));
        if let Ok(Some((created, bytes))) = self.created_by_scripts() {
            if !created.is_empty() {
                let shown: Vec<String> = created
                    .iter()
                    .take(CREATED_SHOWN)
                    .map(|p| format!("/{}", p.display()))
                    .collect();
                notes.push(format!(
                    "maintainer scripts and triggers created {} files ({bytes} bytes) no package ships (not in the view digest): {}{}",
                    created.len(),
                    shown.join(", "),
                    if created.len() > CREATED_SHOWN { ", ..." } else { "" }
                ));
            }
        }
        notes
    }

    fn install_counts(&self) -> Result<Vec<(&'static str, f64)>> {
        let mut counts = vec![("decompress_ns", self.decode.nanos() as f64)];
        if let Some((created, bytes)) = self.created_by_scripts()? {
            counts.push(("hook_created_files_count", created.len() as f64));
            counts.push(("hook_created_bytes", bytes as f64));
        }
        Ok(counts)
    }

    fn reset_caches(&mut self) -> Result<()> {
        // dpkg keeps nothing in memory between runs.
        Ok(())
    }

    fn teardown(&mut self) -> Result<()> {
        self.root = None;
        Ok(())
    }
}

/// How many of the files maintainer scripts created a note names.
const CREATED_SHOWN: usize = 8;

impl HooksModel {
    /// Real packages: what the last install's scripts and triggers created that no
    /// package ships (and a base root did not hold), with the bytes of its regular files.
    fn created_by_scripts(&self) -> Result<Option<(Vec<PathBuf>, u64)>> {
        let (Some(root), true) = (&self.root, self.chroot_scripts) else {
            return Ok(None);
        };
        let created = match &self.base {
            Some(base) => base.created(root, &self.owned)?,
            None => base::created_beside(root, &self.owned, &Default::default())?,
        };
        Ok(Some(created))
    }
}

/// The topmost paths below `root` (relative) that no package owns: what maintainer
/// scripts and triggers created. Unreadable directories are skipped: the digest that
/// follows reads them and reports any error.
pub(crate) fn unowned_paths(
    root: &Path,
    owned: &std::collections::HashSet<PathBuf>,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for entry in entries.flatten() {
            let child = rel.join(entry.file_name());
            if !owned.contains(&child) {
                out.push(child);
            } else if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(child);
            }
        }
    }
    out.sort();
    out
}

/// Says that an unpack stripped setuid or setgid bits, which dpkg would have kept.
fn setid_note(package: &str, stripped: u64) -> String {
    format!(
        "{package}: setuid/setgid bits stripped from {stripped} entries on unpack \
         (pkgbench's policy for untrusted packages; dpkg keeps them)"
    )
}

/// apt's download: copies the archive and its control files into the archive cache.
/// The control files (every file after the archive) are made executable, as dpkg
/// extracts maintainer scripts from a package's control member: a download carries no
/// mode, and a local copy's would be the mirror's.
fn fetch(art: &Artifact, mirror: MirrorSource<'_>, archives: &Path) -> Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::with_capacity(art.files.len());
    let dir = archives.join(&art.package);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (i, rel) in art.files.iter().enumerate() {
        let name = rel
            .file_name()
            .with_context(|| format!("mirror entry {} has no file name", rel.display()))?;
        let dst = dir.join(name);
        mirror.fetch_to(rel, &dst)?;
        if i > 0 {
            fs::set_permissions(&dst, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("making {} executable", dst.display()))?;
        }
        out.push(dst);
    }
    Ok(out)
}

/// apt's hash check of a downloaded archive against the repository index.
fn verify(art: &Artifact, archive: &Path) -> Result<()> {
    verify_fetched(art, archive).with_context(|| format!("package {}", art.package))
}

/// dpkg keeps a package's maintainer scripts in `info/PKG.SCRIPT` once it is unpacked.
fn install_control_scripts(info: &Path, package: &str, scripts: &[PathBuf]) -> Result<()> {
    for src in scripts {
        let name = src
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("control file {} has no name", src.display()))?;
        let dst = info.join(format!("{package}.{name}"));
        fs::copy(src, &dst).with_context(|| format!("installing {}", dst.display()))?;
    }
    Ok(())
}
