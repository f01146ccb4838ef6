//! The `ref-dpkg` reference run: the real dpkg installing real `.deb` files of the same
//! package trees, the reference for `hooks`.
//!
//! Pack (untimed): one `.deb` per package, `pool/NAME_VERSION_all.deb`, built with
//! `dpkg-deb --root-owner-group -Zzstd -z3 --build` (zstd level 3, as the `hooks`
//! mirror's archives) from the package tree plus `DEBIAN/control` (Package, Version,
//! Architecture `all`, Maintainer, Description, Depends and Pre-Depends from the tree's
//! dependencies), the maintainer scripts and the `triggers` file.
//!
//! Install: **unpack**: one `dpkg --unpack` of every `.deb`, in dependency order
//! (`crate::order`), straight from the mirror (no apt fetch or verify); **configure**:
//! `dpkg --configure -a`, which runs the postinsts and the triggers. Both with
//! `--root=TARGET/root --admindir=TARGET/admin --force-depends`. The admin directory lies
//! outside the root because the corpora themselves ship directories under
//! `/var/lib/dpkg` (dpkg's package does), which dpkg's own database would fill. Durability
//! `none` adds `--force-unsafe-io`; `native` and `full` are dpkg's default (fsync of every
//! file before its rename).
//!
//! Maintainer scripts: on replayed corpora they are generated shell scripts that log
//! their call; they run on the host with `--force-script-chrootless` (as `hooks` runs
//! them, with the root in `DPKG_ROOT`). On real corpora (`debian:PKG`, `debs:DIR`) the
//! `.debs` are built without scripts and triggers: dpkg would run them chrooted into a
//! root that has no `/bin/sh` until dash's postinst creates it (the reason `hooks` skips
//! them there), and real scripts must never run on the host. The install says so in its
//! notes.
//!
//! Upgrade: the same two commands with the new versions' `.deb`s: dpkg's own upgrade
//! (old prerm, new preinst, files replaced, vanished files removed, old postrm, then new
//! postinst and triggers), the reference for `hooks`'s upgrade.

use super::run_quiet;
use crate::mirror_files::artifact_for;
use crate::order::install_order;
use crate::{Artifact, Durability, Model, PackageTree, PhaseTimes, RunCtx, View};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const SCRIPT_NAMES: [&str; 4] = ["preinst", "postinst", "prerm", "postrm"];

/// The dpkg reference model. See the module doc.
#[derive(Default)]
pub struct DpkgModel {
    /// Real packages: build the `.debs` without maintainer scripts and triggers.
    pub real_packages: bool,
    root: Option<PathBuf>,
}

impl DpkgModel {
    /// `dpkg` with the target's root and admin directory and the run's durability.
    fn dpkg(&self, ctx: &RunCtx) -> Command {
        let mut c = Command::new("dpkg");
        let mut r = std::ffi::OsString::from("--root=");
        r.push(ctx.target.join("root"));
        let mut a = std::ffi::OsString::from("--admindir=");
        a.push(ctx.target.join("admin"));
        // --admindir after --root: dpkg's database outside the root (module doc).
        c.arg(r).arg(a).arg("--force-depends");
        if ctx.durability == Durability::None {
            c.arg("--force-unsafe-io");
        }
        if !self.real_packages {
            c.arg("--force-script-chrootless");
        }
        c
    }

    /// One `dpkg --unpack` of `debs` in the order given, then `dpkg --configure -a`.
    fn unpack_and_configure(&self, debs: &[&Artifact], ctx: &RunCtx) -> Result<PhaseTimes> {
        let mut times = PhaseTimes::default();
        let mut unpack = self.dpkg(ctx);
        unpack.arg("--unpack");
        for art in debs {
            let deb = art
                .files
                .first()
                .with_context(|| format!("package {} has no .deb", art.package))?;
            unpack.arg(ctx.mirror.join(deb));
        }
        times.time("unpack", || run_quiet(&mut unpack, "dpkg --unpack"))?;
        let mut configure = self.dpkg(ctx);
        configure.args(["--configure", "-a"]);
        times.time("configure", || {
            run_quiet(&mut configure, "dpkg --configure -a")
        })?;
        Ok(times)
    }

    pub fn new() -> Self {
        Self::default()
    }
}

/// The `DEBIAN/control` file of `pkg`.
pub fn control_file(pkg: &PackageTree) -> String {
    let mut c = String::new();
    let _ = writeln!(c, "Package: {}", pkg.name);
    let _ = writeln!(c, "Version: {}", pkg.version);
    let _ = writeln!(c, "Architecture: all");
    let _ = writeln!(c, "Maintainer: pkgbench <pkgbench@localhost>");
    if !pkg.pre_depends.is_empty() {
        let _ = writeln!(c, "Pre-Depends: {}", pkg.pre_depends.join(", "));
    }
    if !pkg.depends.is_empty() {
        let _ = writeln!(c, "Depends: {}", pkg.depends.join(", "));
    }
    let _ = writeln!(c, "Description: {} as pkgbench's corpus holds it", pkg.name);
    c
}

/// The `ref-dpkg` reference, described for the catalog.
pub const INFO: crate::ModelInfo = crate::ModelInfo {
    name: "ref-dpkg",
    stands_for:
        "reference: the real dpkg unpacking and configuring .debs of the same trees, for hooks",
    phases: &["acquire", "dpkg"],
    compared_with: &[],
    needs: &[
        crate::needs::ROOT,
        crate::needs::Need::Program("dpkg"),
        crate::needs::Need::Program("dpkg-deb"),
    ],
    install_bound: Some(crate::catalog::InstallBound::CreatesSyncedUnlessNone),
    sweep: crate::catalog::SweepFigures {
        phases: &[],
        layer_lookups: false,
    },
    make: Some(|o| {
        let mut model = DpkgModel::new();
        model.real_packages = o.chroot_maintainer_scripts;
        Box::new(model)
    }),
};

impl Model for DpkgModel {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn format_version(&self) -> u32 {
        1
    }

    fn pack(&self, pkg: &PackageTree, mirror: &Path) -> Result<Artifact> {
        let pool = mirror.join("pool");
        fs::create_dir_all(&pool).with_context(|| format!("creating {}", pool.display()))?;
        let base = format!("{}_{}_all", pkg.name, pkg.version.replace(':', "%3a"));
        let stage = mirror.join(format!(".stage-{base}"));
        if stage.exists() {
            fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
        }
        fs::create_dir_all(&stage).with_context(|| format!("creating {}", stage.display()))?;
        let built = (|| -> Result<PathBuf> {
            let mut src = pkg.root.clone().into_os_string();
            src.push("/.");
            run_quiet(
                Command::new("cp").arg("-a").arg(&src).arg(&stage),
                &format!("copying {} into {}", pkg.root.display(), stage.display()),
            )?;
            let debian = stage.join("DEBIAN");
            fs::create_dir(&debian).with_context(|| format!("creating {}", debian.display()))?;
            fs::set_permissions(&debian, fs::Permissions::from_mode(0o755))?;
            fs::write(debian.join("control"), control_file(pkg))
                .with_context(|| format!("writing the control file of {}", pkg.name))?;
            if !self.real_packages {
                for name in SCRIPT_NAMES {
                    if let Some(script) = pkg.scripts.get(name) {
                        let dst = debian.join(name);
                        fs::copy(script, &dst)
                            .with_context(|| format!("copying {name} of {}", pkg.name))?;
                        fs::set_permissions(&dst, fs::Permissions::from_mode(0o755))?;
                    }
                }
                if !pkg.triggers.is_empty() {
                    let mut t = pkg.triggers.join("\n");
                    t.push('\n');
                    fs::write(debian.join("triggers"), t)
                        .with_context(|| format!("writing the triggers of {}", pkg.name))?;
                }
            }
            let rel = PathBuf::from("pool").join(format!("{base}.deb"));
            run_quiet(
                Command::new("dpkg-deb")
                    .args(["--root-owner-group", "-Zzstd", "-z3", "--build"])
                    .arg(&stage)
                    .arg(mirror.join(&rel)),
                &format!("dpkg-deb --build of {}", pkg.name),
            )?;
            Ok(rel)
        })();
        let _ = fs::remove_dir_all(&stage);
        let rel = built?;
        artifact_for(pkg, vec![rel], mirror)
    }

    fn install(&mut self, set: &[Artifact], ctx: &RunCtx) -> Result<PhaseTimes> {
        if self.root.is_some() {
            bail!("ref-dpkg: install called twice without teardown");
        }
        let root = ctx.target.join("root");
        let admin = ctx.target.join("admin");
        for dir in [&root, &admin.join("info"), &admin.join("updates")] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        fs::write(admin.join("status"), "")
            .with_context(|| format!("creating {}/status", admin.display()))?;
        self.root = Some(root);
        let order: Vec<&Artifact> = install_order(set).into_iter().map(|i| &set[i]).collect();
        self.unpack_and_configure(&order, ctx)
    }

    /// A real dpkg upgrade: `dpkg --unpack` of the new versions (dpkg runs old prerm,
    /// new preinst, replaces the files, removes the vanished ones, runs old postrm), then
    /// `dpkg --configure -a` (new postinst, triggers).
    fn upgrade(
        &mut self,
        _installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<PhaseTimes> {
        if self.root.is_none() {
            bail!("ref-dpkg: upgrade before install");
        }
        let order: Vec<&Artifact> = to.iter().collect();
        self.unpack_and_configure(&order, ctx)
    }

    fn view(&self) -> View {
        View {
            root: self.root.clone().unwrap_or_default(),
            ..View::default()
        }
    }

    fn notes(&self) -> Vec<String> {
        if self.real_packages {
            vec!["real packages: the .debs hold no maintainer scripts or triggers: dpkg would run them chrooted into a root without /bin/sh until dash's postinst creates it, and real scripts never run on the host".into()]
        } else {
            Vec::new()
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn control_file_names_dependencies() {
        let pkg = PackageTree {
            name: "libfoo1".into(),
            version: "1:2.0-1".into(),
            root: PathBuf::from("/nonexistent"),
            depends: vec!["libc6".into(), "zlib1g".into()],
            pre_depends: vec!["dpkg".into()],
            scripts: BTreeMap::new(),
            triggers: Vec::new(),
        };
        let c = control_file(&pkg);
        assert!(c.starts_with("Package: libfoo1\nVersion: 1:2.0-1\n"), "{c}");
        assert!(c.contains("\nDepends: libc6, zlib1g\n"), "{c}");
        assert!(c.contains("\nPre-Depends: dpkg\n"), "{c}");
    }
}
