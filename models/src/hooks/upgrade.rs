//! The upgrade, as dpkg installs a new version over an installed one (apt driving a
//! point release: `dpkg --unpack` and `--configure` of each new version).
//!
//! apt fetches and verifies every new archive first. dpkg then loads its database (the
//! status and every package's file list) and takes the packages one at a time, in the
//! order given (install order):
//!
//! 1. the old version's `prerm upgrade NEW_VERSION`;
//! 2. the new version's `preinst upgrade OLD_VERSION`;
//! 3. the new archive unpacked over the installed files exactly as an install unpacks
//!    (`.dpkg-new`, synced per durability, renamed over the old file): a file of the
//!    package's own old version (or of no package) is replaced, one of any other
//!    package is refused ("trying to overwrite", naming the owner);
//! 4. the old version's `postrm upgrade NEW_VERSION`;
//! 5. the old version's paths the new one lacks removed ([`obsolete`](super::obsolete));
//! 6. the new file list and maintainer scripts into the database, every status change
//!    journalled and synced as in an install;
//! 7. the new version's `postinst configure OLD_VERSION`.
//!
//! After all packages the triggers run once: those the new versions activate (`ldconfig`
//! runs the real `ldconfig -r`), and the file triggers of any installed package
//! interested in a path an upgrade changed or removed.
//!
//! Steps 4 and 5 are in dpkg's order: `process_archive` runs the old postrm before it
//! deletes the obsolete files. When the unpack fails, dpkg's error unwinding runs: the
//! new `postrm abort-upgrade OLD NEW`, the old `postinst abort-upgrade NEW`, and the
//! package is recorded as installed in its old version again, whose files the failed
//! unpack never touched (it removes only its own `.dpkg-new` files). Failures of other
//! steps stop the upgrade with the package and script or file named, without unwinding.

use super::database::{self, DpkgDatabase};
use super::obsolete::remove_obsolete;
use super::scripts::{run_maintainer_script, HookEnv};
use super::triggers::{parse_directive, process_triggers, Directive, TriggerPackage};
use super::{
    fetch, install_control_scripts, setid_note, verify, HooksModel, Layout, Step, SCRIPT_NAMES,
};
use crate::formats::compression::Compression;
use crate::formats::tar::{self as tarfmt, Owners, Staging, UnpackOptions, UnpackReport};
use crate::order::install_order;
use crate::{Artifact, Durability, PhaseTimes, RunCtx};
use anyhow::{bail, Context, Result};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// dpkg's file database in memory: every installed package's file list (on a base root
/// the base's packages too, whose files the set may not take), and for each path its
/// owner and how many packages list it.
struct FileDb {
    lists: HashMap<String, Vec<PathBuf>>,
    owner: HashMap<PathBuf, String>,
    listed: HashMap<PathBuf, u32>,
}

impl FileDb {
    fn load(db: &DpkgDatabase, installed: &[Artifact]) -> Result<Self> {
        let mut files = FileDb {
            lists: HashMap::new(),
            owner: HashMap::new(),
            listed: HashMap::new(),
        };
        // The set's lists whatever state a killed run left them in (a half-installed
        // package's reinstall needs its old list), then every other installed package's.
        for art in installed {
            let list = db.read_file_list(&art.package)?;
            files.add(&art.package, list);
        }
        for package in db.installed_packages() {
            if !files.lists.contains_key(package) {
                let list = db.read_file_list(package)?;
                files.add(package, list);
            }
        }
        Ok(files)
    }

    fn add(&mut self, package: &str, list: Vec<PathBuf>) {
        for path in &list {
            self.owner
                .entry(path.clone())
                .or_insert_with(|| package.to_string());
            *self.listed.entry(path.clone()).or_default() += 1;
        }
        self.lists.insert(package.to_string(), list);
    }

    /// Replaces `package`'s list with the new version's.
    fn replace(&mut self, package: &str, list: Vec<PathBuf>) {
        for path in self.lists.remove(package).unwrap_or_default() {
            if self.owner.get(&path).is_some_and(|o| o == package) {
                self.owner.remove(&path);
            }
            if let Some(n) = self.listed.get_mut(&path) {
                *n -= 1;
                if *n == 0 {
                    self.listed.remove(&path);
                }
            }
        }
        self.add(package, list);
    }

    /// Whether a package other than the one whose list holds `path` lists it too.
    fn listed_by_others(&self, path: &Path) -> bool {
        self.listed.get(path).is_some_and(|&n| n > 1)
    }
}

impl HooksModel {
    /// `Model::upgrade` for the hooks model: see the module doc.
    pub(super) fn upgrade_packages(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<PhaseTimes> {
        let layout = Layout::new(&ctx.target, self.base.is_some());
        if self.root.as_deref() != Some(layout.root.as_path()) {
            bail!(
                "upgrading in {}: no install of this model is there to upgrade",
                ctx.target.display()
            );
        }
        for art in to {
            if !installed.iter().any(|i| i.package == art.package) {
                bail!(
                    "package {}: not installed, so it cannot be upgraded",
                    art.package
                );
            }
        }
        let mut times = PhaseTimes::default();

        // apt: download every new archive, then check every hash, before dpkg starts.
        let mut fetched: Vec<Vec<PathBuf>> = Vec::with_capacity(to.len());
        for art in to {
            fetched.push(times.time("fetch", || fetch(art, ctx.source(), &layout.archives))?);
            self.record(Step::Fetch(art.package.clone()));
        }
        for (art, files) in to.iter().zip(&fetched) {
            times.time("verify", || verify(art, &files[0]))?;
            self.record(Step::Verify(art.package.clone()));
        }

        // dpkg loads its status and every file list before it unpacks anything.
        let (mut db, mut files) = times.time("database", || -> Result<_> {
            let db = DpkgDatabase::open(&layout.admindir)?;
            let files = FileDb::load(&db, installed)?;
            Ok((db, files))
        })?;
        let info = db.info_dir();
        let notes = RefCell::new(Vec::new());
        let probe = self.probe.clone();
        let env = HookEnv {
            root: &layout.root,
            admindir: &layout.admindir,
            chroot: self.chroot_scripts.then_some(&notes),
            probe: probe.as_deref(),
        };
        let hooks = !self.skip_hooks;
        let sync_list = ctx.durability != Durability::None;
        // Per package of `to`: what its upgrade changed (new paths and removed ones).
        let mut changed: Vec<Vec<PathBuf>> = vec![Vec::new(); to.len()];

        for (i, new) in to.iter().enumerate() {
            let pkg = new.package.as_str();
            let new_version = new.version.as_str();
            let old_version = db
                .version(pkg)
                .with_context(|| format!("package {pkg}: the dpkg status does not list it"))?
                .to_string();
            let old_script = |name: &str| {
                Some(database::control_path(&info, pkg, name)).filter(|p| hooks && p.exists())
            };
            let new_script = |name: &str| {
                fetched[i][1..]
                    .iter()
                    .find(|p| p.file_name().is_some_and(|f| f == name))
                    .filter(|_| hooks)
                    .cloned()
            };

            times.time("database", || {
                db.note_status(pkg, &old_version, "half-configured")
            })?;
            if let Some(prerm) = old_script("prerm") {
                times.time("hooks", || {
                    run_maintainer_script(env, pkg, "prerm", &prerm, &["upgrade", new_version])
                })?;
                self.record(Step::Prerm(pkg.to_string()));
            }
            times.time("database", || -> Result<()> {
                db.note_status(pkg, &old_version, "unpacked")?;
                db.note_status(pkg, &old_version, "half-installed")
            })?;
            if let Some(preinst) = new_script("preinst") {
                times.time("hooks", || {
                    run_maintainer_script(env, pkg, "preinst", &preinst, &["upgrade", &old_version])
                })?;
                self.record(Step::Preinst(pkg.to_string()));
            }
            let owners = Owners {
                package: pkg,
                by_path: &files.owner,
            };
            let unpacked = times.time("unpack", || {
                unpack_over(&fetched[i][0], &layout.root, ctx.durability, owners)
            });
            let report = match unpacked {
                Ok(report) => report,
                Err(failure) => {
                    let unwound = abort_upgrade(
                        env,
                        &mut db,
                        pkg,
                        (&old_version, new_version),
                        new_script("postrm"),
                        old_script("postinst"),
                    );
                    self.notes.extend(notes.borrow_mut().drain(..));
                    let kept = match unwound {
                        Ok(()) => format!("version {old_version} stays installed"),
                        Err(e) => format!("unwinding failed too: {e:#}"),
                    };
                    return Err(failure.context(format!(
                        "package {pkg}: upgrading from {old_version} to {new_version} ({kept})"
                    )));
                }
            };
            if report.setid_stripped > 0 {
                notes
                    .borrow_mut()
                    .push(setid_note(pkg, report.setid_stripped));
            }
            self.record(Step::Unpack(pkg.to_string()));
            if let Some(postrm) = old_script("postrm") {
                times.time("hooks", || {
                    run_maintainer_script(env, pkg, "postrm", &postrm, &["upgrade", new_version])
                })?;
                self.record(Step::Postrm(pkg.to_string()));
            }
            let old_list = files.lists.get(pkg).map(Vec::as_slice).unwrap_or_default();
            let removed = times.time("remove", || {
                remove_obsolete(
                    &layout.root,
                    pkg,
                    old_list,
                    &report.paths,
                    &|p| files.listed_by_others(p),
                    ctx.durability == Durability::Full,
                )
            })?;
            self.record(Step::Remove(pkg.to_string()));
            times.time("database", || -> Result<()> {
                db.write_file_list(pkg, &report.paths, sync_list)?;
                replace_control_scripts(&info, pkg, &fetched[i][1..])?;
                db.note_status(pkg, new_version, "unpacked")?;
                db.note_status(pkg, new_version, "half-configured")
            })?;
            if new_script("postinst").is_some() {
                let postinst = info.join(format!("{pkg}.postinst"));
                times.time("hooks", || {
                    run_maintainer_script(
                        env,
                        pkg,
                        "postinst",
                        &postinst,
                        &["configure", &old_version],
                    )
                })?;
                self.record(Step::Postinst(pkg.to_string()));
            }
            times.time("database", || db.note_status(pkg, new_version, "installed"))?;
            changed[i] = report.paths.iter().cloned().chain(removed).collect();
            files.replace(pkg, report.paths);
        }

        if hooks {
            times.time("triggers", || {
                upgrade_triggers(env, &info, installed, to, &changed)
            })?;
            self.record(Step::Triggers);
        }
        self.notes.extend(notes.borrow_mut().drain(..));
        times.time("database", || db.checkpoint())?;
        // What the set owns, not the base's other packages (the view's boundary).
        self.owned = installed
            .iter()
            .filter_map(|art| files.lists.get(&art.package))
            .flatten()
            .filter_map(|p| p.strip_prefix("/").ok().map(Path::to_path_buf))
            .collect();
        Ok(times)
    }
}

/// The triggers an upgrade runs once at its end: every installed package's interests,
/// but only the new versions' activations and paths (`changed[j]`: what the upgrade of
/// `to[j]` wrote or removed): the packages left alone changed nothing.
pub(super) fn upgrade_triggers(
    env: HookEnv<'_>,
    info: &Path,
    installed: &[Artifact],
    to: &[Artifact],
    changed: &[Vec<PathBuf>],
) -> Result<()> {
    let order = install_order(installed);
    let mut directives: Vec<Vec<String>> = Vec::with_capacity(installed.len());
    let mut upgraded: Vec<Option<usize>> = Vec::with_capacity(installed.len());
    for art in installed {
        let position = to.iter().position(|n| n.package == art.package);
        directives.push(match position {
            Some(j) => to[j].triggers.clone(),
            None => interests_only(art)?,
        });
        upgraded.push(position);
    }
    let packages: Vec<TriggerPackage> = order
        .iter()
        .map(|&k| TriggerPackage {
            name: &installed[k].package,
            directives: &directives[k],
            postinst: Some(database::control_path(
                info,
                &installed[k].package,
                "postinst",
            ))
            .filter(|p| p.exists()),
            paths: upgraded[k].map_or(&[][..], |j| &changed[j]),
        })
        .collect();
    process_triggers(env, &packages).map(drop)
}

/// Unpacks a new version's archive over the installed files, as an install unpacks.
fn unpack_over(
    archive: &Path,
    root: &Path,
    durability: Durability,
    owners: Owners<'_>,
) -> Result<UnpackReport> {
    let file = File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let decoder = Compression::of_extension(&archive.to_string_lossy())
        .decoder(file)
        .with_context(|| format!("reading {}", archive.display()))?;
    tarfmt::unpack_upgrade(
        archive,
        decoder,
        root,
        UnpackOptions {
            staging: Staging::DpkgNew,
            durability,
            refuse_overwrite: true,
            keep_setid: false,
        },
        owners,
    )
}

/// dpkg's unwinding of a failed unpack during an upgrade: the new postrm and the old
/// postinst are told to abort, and the old version is installed again.
fn abort_upgrade(
    env: HookEnv<'_>,
    db: &mut DpkgDatabase,
    pkg: &str,
    (old_version, new_version): (&str, &str),
    new_postrm: Option<PathBuf>,
    old_postinst: Option<PathBuf>,
) -> Result<()> {
    if let Some(postrm) = new_postrm {
        let args = ["abort-upgrade", old_version, new_version];
        run_maintainer_script(env, pkg, "postrm", &postrm, &args)?;
    }
    if let Some(postinst) = old_postinst {
        run_maintainer_script(
            env,
            pkg,
            "postinst",
            &postinst,
            &["abort-upgrade", new_version],
        )?;
    }
    db.note_status(pkg, old_version, "installed")?;
    db.checkpoint()
}

/// A package's trigger directives without its activations: what a package that is not
/// upgraded still contributes (its interests).
fn interests_only(art: &Artifact) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for line in &art.triggers {
        if let Directive::Interest(_) = parse_directive(&art.package, line)? {
            out.push(line.clone());
        }
    }
    Ok(out)
}

/// dpkg's `pkg_infodb_update`: the new version's maintainer scripts replace the old
/// ones, and an old script the new version lacks is removed.
fn replace_control_scripts(info: &Path, package: &str, scripts: &[PathBuf]) -> Result<()> {
    install_control_scripts(info, package, scripts)?;
    for name in SCRIPT_NAMES {
        let shipped = scripts
            .iter()
            .any(|s| s.file_name().is_some_and(|f| f == name));
        let path = info.join(format!("{package}.{name}"));
        if !shipped {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", path.display()));
                }
                _ => {}
            }
        }
    }
    Ok(())
}
