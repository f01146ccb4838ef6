//! The conformance suite every model's tests call (feature `conformance`, the way
//! object_store gates its integration suite): a list of named checks, each of which
//! packs a corpus into a fresh mirror, drives the model through the [`crate::Model`]
//! trait only, and fails with the model's name and what went wrong.
//!
//! - [`Check::ViewAfterInstall`]: the view digest equals the corpus's, and both read
//!   workloads see every file.
//! - [`Check::ViewAfterUpgrade`]: after the corpus's point release, the view digest
//!   equals the upgraded corpus's.
//! - [`Check::FailedInstallLeavesNothing`]: an install with one artifact corrupt on the
//!   mirror fails, naming the package, and none of that package's files is visible.
//! - [`Check::CorruptUpgradeKeepsTheOldView`]: an upgrade whose new artifact is corrupt
//!   fails and the view still holds exactly the old corpus.
//! - [`Check::TeardownLeavesNothing`]: after every check above, no mount below the work
//!   directory, no loop device backed by a file below it, and no FUSE daemon remain.
//!
//! `testing` holds the helpers the tests share: root or skip, a private mount
//! namespace per test, the upgrade fixture.

pub mod testing;
mod view;

pub use view::{
    check_view, digest_of_trees, many_file_of, mode_rule, run_conformance, run_upgrade_conformance,
    view_spec, ViewCheck, DIFFERENCES_SHOWN,
};

use crate::{Artifact, Durability, Model, PackageTree, RunCtx};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The package trees of a corpus, in its order: what every model receives.
pub fn package_trees(corpus: &workloads::corpus::Corpus) -> Vec<PackageTree> {
    trees_of(&corpus.packages)
}

/// The package trees of corpus packages (a corpus's, or a point release's new versions).
pub fn trees_of(packages: &[workloads::corpus::CorpusPackage]) -> Vec<PackageTree> {
    packages
        .iter()
        .map(|p| PackageTree {
            name: p.name.clone(),
            version: p.version.clone(),
            root: p.root.clone(),
            depends: p.depends.clone(),
            pre_depends: p.pre_depends.clone(),
            scripts: p.scripts.clone(),
            triggers: p.triggers.clone(),
            control: p.control.clone(),
        })
        .collect()
}

/// One named check of the suite (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    ViewAfterInstall,
    ViewAfterUpgrade,
    FailedInstallLeavesNothing,
    CorruptUpgradeKeepsTheOldView,
    TeardownLeavesNothing,
}

impl Check {
    /// Every check, in the order a model's tests run them.
    pub const ALL: [Check; 5] = [
        Check::ViewAfterInstall,
        Check::ViewAfterUpgrade,
        Check::FailedInstallLeavesNothing,
        Check::CorruptUpgradeKeepsTheOldView,
        Check::TeardownLeavesNothing,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Check::ViewAfterInstall => "the view digest after install",
            Check::ViewAfterUpgrade => "the view digest after upgrade",
            Check::FailedInstallLeavesNothing => "a failed install leaves nothing",
            Check::CorruptUpgradeKeepsTheOldView => {
                "a corrupt artifact is refused and the old view stays"
            }
            Check::TeardownLeavesNothing => {
                "teardown leaves no mount, loop device, daemon or namespace"
            }
        }
    }
}

/// Runs `check` on a model from `make`, with corpus `corpus` (a name `workloads` opens,
/// such as a subset of debian-qemu) under `work`. Every check but the last also
/// requires what `TeardownLeavesNothing` requires, after its own teardown.
pub fn run_check(
    check: Check,
    make: &dyn Fn() -> Box<dyn Model>,
    corpus: &str,
    work: &Path,
) -> Result<()> {
    let mut model = make();
    let name = model.name();
    let opened = workloads::corpus::open(corpus, &work.join("corpora"), &|_, _| {})
        .with_context(|| format!("opening corpus {corpus}"))?;
    let outcome = match check {
        Check::ViewAfterInstall => {
            run_conformance(model.as_mut(), &opened, &work.join("install")).map(|_| ())
        }
        Check::ViewAfterUpgrade => {
            let (old, new) = upgrade_trees(&opened)?;
            run_upgrade_conformance(model.as_mut(), &old, &new, &work.join("upgrade")).map(|_| ())
        }
        Check::FailedInstallLeavesNothing => {
            failed_install_leaves_nothing(model.as_mut(), &opened, &work.join("failed"))
        }
        Check::CorruptUpgradeKeepsTheOldView => {
            corrupt_upgrade_keeps_the_old_view(model.as_mut(), &opened, &work.join("corrupt"))
        }
        Check::TeardownLeavesNothing => {
            // An install, reads and teardown, then nothing may be left.
            run_conformance(model.as_mut(), &opened, &work.join("teardown")).map(|_| ())
        }
    };
    outcome.with_context(|| format!("{name}: {}", check.name()))?;
    nothing_left_below(work).with_context(|| format!("{name}: {} (after it)", check.name()))
}

/// The corpus's packages and its point release's new versions.
fn upgrade_trees(
    corpus: &workloads::corpus::Corpus,
) -> Result<(Vec<PackageTree>, Vec<PackageTree>)> {
    let release =
        workloads::corpus::upgrade::point_release(corpus).context("building the point release")?;
    Ok((package_trees(corpus), trees_of(&release.packages)))
}

/// A fresh mirror and target below `work`, `trees` packed into the mirror.
fn packed(
    model: &dyn Model,
    trees: &[PackageTree],
    work: &Path,
) -> Result<(Vec<Artifact>, RunCtx)> {
    let mirror = work.join("mirror");
    let target = work.join("target");
    std::fs::create_dir_all(&mirror).with_context(|| format!("creating {}", mirror.display()))?;
    std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
    let artifacts = trees
        .iter()
        .map(|t| model.pack(t, &mirror))
        .collect::<Result<Vec<_>>>()
        .context("pack")?;
    let ctx = RunCtx {
        target,
        mirror,
        durability: Durability::Native,
        jobs: 4,
        http: None,
    };
    Ok((artifacts, ctx))
}

/// Flips one byte in the middle of `art`'s main file on the mirror, leaving the index as
/// published: what a mirror serving a damaged file looks like.
fn corrupt(art: &Artifact, mirror: &Path) -> Result<PathBuf> {
    let file = mirror.join(art.files.first().context("an artifact without a file")?);
    let mut bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    if bytes.is_empty() {
        bail!("{} is empty: nothing to corrupt", file.display());
    }
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&file, &bytes).with_context(|| format!("writing {}", file.display()))?;
    Ok(file)
}

/// The regular files of `tree` that no other of `trees` ships at the same path.
fn own_files(tree: &PackageTree, trees: &[PackageTree]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = tree.root.join(&rel);
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let entry = entry?;
            let path = rel.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file()
                && !trees
                    .iter()
                    .any(|t| t.name != tree.name && t.root.join(&path).exists())
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The package whose artifact the failure checks corrupt: the last in the set that has
/// files of its own (a failure late in the install, after others succeeded).
fn victim(trees: &[PackageTree]) -> Result<(usize, Vec<PathBuf>)> {
    for (i, tree) in trees.iter().enumerate().rev() {
        let own = own_files(tree, trees)?;
        if !own.is_empty() {
            return Ok((i, own));
        }
    }
    bail!("no package of the corpus has a file of its own")
}

fn failed_install_leaves_nothing(
    model: &mut dyn Model,
    corpus: &workloads::corpus::Corpus,
    work: &Path,
) -> Result<()> {
    let trees = package_trees(corpus);
    let (artifacts, ctx) = packed(model, &trees, work)?;
    let (i, own) = victim(&trees)?;
    let package = &artifacts[i].package;
    corrupt(&artifacts[i], &ctx.mirror)?;
    let outcome = (|| -> Result<()> {
        model.prepare(&artifacts, &ctx).context("prepare")?;
        let Err(err) = model.install(&artifacts, &ctx) else {
            bail!("the install of a set with {package}'s artifact corrupt succeeded");
        };
        let err = format!("{err:#}");
        if !err.contains(package.as_str()) {
            bail!("the error does not name the package {package}: {err}");
        }
        let root = model.view().root;
        if !root.as_os_str().is_empty() {
            for path in &own {
                let at = root.join(path);
                if std::fs::symlink_metadata(&at).is_ok() {
                    bail!(
                        "{package}'s {} is visible after the failed install",
                        at.display()
                    );
                }
            }
        }
        Ok(())
    })();
    let teardown = model.teardown().context("teardown");
    outcome?;
    teardown
}

fn corrupt_upgrade_keeps_the_old_view(
    model: &mut dyn Model,
    corpus: &workloads::corpus::Corpus,
    work: &Path,
) -> Result<()> {
    let (old, new) = upgrade_trees(corpus)?;
    let (installed, ctx) = packed(model, &old, work)?;
    let to = new
        .iter()
        .map(|t| model.pack(t, &ctx.mirror))
        .collect::<Result<Vec<_>>>()
        .context("pack the new versions")?;
    let broken = to.first().context("the point release upgrades nothing")?;
    corrupt(broken, &ctx.mirror)?;
    let before = digest_of_trees(&old)?;
    let outcome = (|| -> Result<()> {
        model.prepare(&installed, &ctx).context("prepare")?;
        model.install(&installed, &ctx).context("install")?;
        let Err(err) = model.upgrade(&installed, &to, &ctx) else {
            bail!(
                "an upgrade with {}'s new artifact corrupt succeeded",
                broken.package
            );
        };
        let err = format!("{err:#}");
        if !err.contains(broken.package.as_str()) {
            bail!(
                "the error does not name the package {}: {err}",
                broken.package
            );
        }
        let check = check_view(&model.view(), &before)?;
        if !check.matches {
            bail!(
                "the view changed after the refused upgrade: {}",
                check.differences.join("; ")
            );
        }
        Ok(())
    })();
    let teardown = model.teardown().context("teardown");
    outcome?;
    teardown
}

/// What `TeardownLeavesNothing` requires below `work`: no mount, no loop device backed
/// by a file there, and no FUSE daemon of this process.
pub fn nothing_left_below(work: &Path) -> Result<()> {
    let work = std::fs::canonicalize(work).unwrap_or_else(|_| work.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    let left: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(&work))
        .collect();
    if !left.is_empty() {
        bail!("mounts left: {left:?}");
    }
    let backed: Vec<String> = testing::loop_backing_files()
        .into_iter()
        .filter(|f| Path::new(f.trim_end_matches(" (deleted)")).starts_with(&work))
        .collect();
    if !backed.is_empty() {
        // The kernel releases an autoclear loop device after its last unmount in task
        // work: give it a moment before calling it a leak.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let still: Vec<String> = testing::loop_backing_files()
            .into_iter()
            .filter(|f| Path::new(f.trim_end_matches(" (deleted)")).starts_with(&work))
            .collect();
        if !still.is_empty() {
            bail!("loop devices left: {still:?}");
        }
    }
    let daemons: Vec<String> = testing::fuse_daemons()
        .into_iter()
        .filter(|d| d.contains(&*work.to_string_lossy()))
        .collect();
    if !daemons.is_empty() {
        bail!("FUSE daemons left: {daemons:?}");
    }
    Ok(())
}
