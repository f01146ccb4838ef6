//! Recovery from an upgrade killed at any moment, as dpkg and apt recover: dpkg's
//! database says how far each package got (its journal in `updates/`, replayed by
//! [`DpkgDatabase::open`]), and the next run goes on from there.
//!
//! Per upgraded package, by its state in the database:
//! - `installed` (in the old or the new version): nothing to do;
//! - `unpacked` or `half-configured`: its files are whole (the unpack and the removal of
//!   obsolete paths finished before the state was recorded), only its `postinst
//!   configure` is owed: `dpkg --configure -a` runs it and records it installed;
//! - `half-installed`: the unpack was cut anywhere, so the package's files are a mix of
//!   both versions with `.dpkg-new` leftovers, which dpkg cannot configure. apt's next
//!   run reinstalls it: the upgrade of that one package again from its archive (old
//!   prerm, new preinst, unpack over what is there, the stale `.dpkg-new` files
//!   replaced, obsolete paths removed, new file list, postinst, its triggers).
//!
//! The packages the killed run had not reached stay in their old version: dpkg upgrades
//! one package at a time and nothing makes a set of them atomic, so a kill between two
//! packages leaves some upgraded and some not, each whole. That is dpkg's own state
//! after such a crash; apt's next `upgrade` finishes it (the harness's recovery check
//! does that too, and the view is then the new set).
//!
//! Then the pending triggers, as `dpkg --configure -a` runs them. dpkg records them in
//! `status` (`Triggers-Pending`); this model's database does not, so the triggers of the
//! upgrade's end run again for every package in its new version (a superset of what was
//! pending: ldconfig's cache is rewritten, file triggers see the packages' whole lists).

use super::database::{self, DpkgDatabase};
use super::scripts::{run_maintainer_script, HookEnv};
use super::upgrade::upgrade_triggers;
use super::{HooksModel, Layout};
use crate::{Artifact, Recovery, RunCtx};
use anyhow::{bail, Context, Result};

impl HooksModel {
    /// `Model::recover_upgrade` for the hooks model: see the module doc.
    pub(super) fn recover(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<Recovery> {
        if self.base_root.is_some() || self.chroot_scripts {
            bail!("hooks: recovery of real packages on a base root is not modelled");
        }
        let layout = Layout::new(&ctx.target, false);
        let mut db = DpkgDatabase::open(&layout.admindir)
            .context("hooks: loading the database the killed upgrade left")?;
        let info = db.info_dir();
        let env = HookEnv {
            root: &layout.root,
            admindir: &layout.admindir,
            chroot: None,
            probe: None,
        };
        let mut recovery = Recovery::default();
        let mut reinstall = Vec::new();
        for new in to {
            let pkg = new.package.as_str();
            let old = installed
                .iter()
                .find(|a| a.package == new.package)
                .with_context(|| format!("hooks: {pkg} is upgraded but was not installed"))?;
            let version = db
                .version(pkg)
                .with_context(|| format!("package {pkg}: the dpkg status does not list it"))?
                .to_string();
            let state = db.state(pkg).unwrap_or_default().to_string();
            match state.as_str() {
                "installed" => {}
                "unpacked" | "half-configured" => {
                    // dpkg --configure -a: postinst configure with the version last
                    // configured, the old one.
                    let postinst = database::control_path(&info, pkg, "postinst");
                    if !self.skip_hooks && postinst.exists() {
                        run_maintainer_script(
                            env,
                            pkg,
                            "postinst",
                            &postinst,
                            &["configure", &old.version],
                        )?;
                    }
                    db.note_status(pkg, &version, "installed")?;
                    recovery
                        .steps
                        .push(format!("{pkg}: {state} {version}: configured"));
                }
                "half-installed" => {
                    reinstall.push(new.clone());
                    recovery.steps.push(format!(
                        "{pkg}: half-installed {version}: reinstalled as {}",
                        new.version
                    ));
                }
                other => bail!("package {pkg}: state {other:?} in the dpkg status"),
            }
        }
        db.checkpoint()?;
        // The packages now in their new version: their triggers may be pending.
        let upgraded: Vec<Artifact> = to
            .iter()
            .filter(|a| db.version(&a.package) == Some(a.version.as_str()))
            .cloned()
            .collect();
        drop(db);
        self.root = Some(layout.root.clone());
        if !reinstall.is_empty() {
            self.upgrade_packages(installed, &reinstall, ctx)
                .context("hooks: reinstalling the half-installed packages")?;
        }
        if !self.skip_hooks && !upgraded.is_empty() {
            // dpkg --configure -a runs the pending triggers. This database does not record
            // which are pending, so the upgrade's end runs again for every upgraded
            // package, its paths all those of its file list: a superset, and harmless
            // (ldconfig rewrites its cache; a kill inside it leaves `ld.so.cache~`, which
            // its rerun renames into place).
            let db = DpkgDatabase::open(&layout.admindir)?;
            let changed = upgraded
                .iter()
                .map(|a| db.read_file_list(&a.package))
                .collect::<Result<Vec<_>>>()?;
            upgrade_triggers(env, &info, installed, &upgraded, &changed)
                .context("hooks: the upgrade's triggers, run again")?;
            recovery.steps.push(format!(
                "triggers of {} upgraded packages run again",
                upgraded.len()
            ));
        }
        Ok(recovery)
    }
}
