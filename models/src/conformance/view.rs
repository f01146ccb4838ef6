//! The view check every model must pass, its view holds exactly the corpus, and the
//! suites of install and upgrade built on it. The harness's runner calls `check_view`
//! after every install; a model whose view differs gets no timings, and the paths that
//! differ are reported.

use crate::{View, ViewModes};
use anyhow::Result;
use workloads::view::{digest_view, InternalLinks, ModeRule, TreeDigest, ViewSpec};

/// How many differing paths are reported.
pub const DIFFERENCES_SHOWN: usize = 20;

/// The outcome of digesting a view.
#[derive(Debug, Clone)]
pub struct ViewCheck {
    /// The view's digest.
    pub digest: String,
    /// The digest it must have: the corpus's under the view's mode rule.
    pub expected: String,
    /// The view's mode rule.
    pub rule: ModeRule,
    pub matches: bool,
    pub differences: Vec<String>,
}

pub fn view_spec(view: &View) -> ViewSpec {
    ViewSpec {
        root: view.root.clone(),
        internal_roots: view.internal_roots.clone(),
        excluded: view.excluded.clone(),
    }
}

/// The many-file workload on `view`, its internal links found first (untimed).
pub fn many_file_of(view: &View) -> Result<workloads::reads::ReadCounts> {
    let spec = view_spec(view);
    let links: InternalLinks = workloads::view::internal_links(&spec)?;
    workloads::reads::many_file(&spec, &links, &workloads::reads::miss_list())
}

/// The mode rule of `view` in the digest's terms.
pub fn mode_rule(view: &View) -> ModeRule {
    match view.modes {
        ViewModes::AsPackaged => ModeRule::AsPackaged,
        ViewModes::NixStore => ModeRule::NixStore,
    }
}

/// Digests `view` and compares it with the corpus (`expected`, the packages' trees as
/// shipped) as the view's mode rule installs it.
pub fn check_view(view: &View, expected: &TreeDigest) -> Result<ViewCheck> {
    let actual = digest_view(&view_spec(view))?;
    let expected = expected.as_installed(mode_rule(view));
    let digest = actual.hex();
    let matches = actual == expected;
    let differences = if matches {
        Vec::new()
    } else {
        expected.differences(&actual, DIFFERENCES_SHOWN)
    };
    Ok(ViewCheck {
        digest,
        expected: expected.hex(),
        rule: mode_rule(view),
        matches,
        differences,
    })
}

/// The conformance suite every model's tests call: pack `corpus` into a fresh mirror,
/// install it into an empty target, require the view digest to equal the corpus digest,
/// read through the view with both read workloads, and tear down. Returns the model's
/// phase times of the install.
pub fn run_conformance(
    model: &mut dyn crate::Model,
    corpus: &workloads::corpus::Corpus,
    work: &std::path::Path,
) -> Result<crate::PhaseTimes> {
    use anyhow::{bail, Context};
    let mirror = work.join("mirror");
    let target = work.join("target");
    std::fs::create_dir_all(&mirror)?;
    std::fs::create_dir_all(&target)?;
    let artifacts = super::package_trees(corpus)
        .iter()
        .map(|tree| model.pack(tree, &mirror))
        .collect::<Result<Vec<_>>>()
        .context("pack")?;
    let ctx = crate::RunCtx {
        target,
        mirror,
        durability: crate::Durability::Native,
        jobs: 4,
        http: None,
    };
    let outcome = (|| {
        model.prepare(&artifacts, &ctx).context("prepare")?;
        let times = model.install(&artifacts, &ctx).context("install")?;
        let view = model.view();
        let check = check_view(&view, &corpus.digest)?;
        if !check.matches {
            bail!(
                "model {}: view differs from the corpus: {}",
                model.name(),
                check.differences.join("; ")
            );
        }
        let cold = workloads::reads::cold_read(&view.root, &corpus.largest_files(5))?;
        let many = many_file_of(&view)?;
        if cold.files_read != 5.min(corpus.digest.files() as u64)
            || many.entries as usize != corpus.digest.entries.len()
        {
            bail!("model {}: reads saw {cold:?} and {many:?}", model.name());
        }
        Ok(times)
    })();
    model.teardown().context("teardown")?;
    outcome
}

/// The digest of the union of `trees`: what a view of exactly these packages holds.
pub fn digest_of_trees(trees: &[crate::PackageTree]) -> Result<TreeDigest> {
    let mut union = TreeDigest::default();
    for tree in trees {
        union.merge_package(digest_view(&ViewSpec::plain(&tree.root))?, &tree.name)?;
    }
    Ok(union)
}

/// The upgrade conformance every model that models an upgrade passes: pack `old` and
/// `new` (new versions of some of `old`'s packages) into a fresh mirror, install `old`,
/// require its digest, upgrade to `new`, require the digest of `old` with `new` in
/// place of the packages it upgrades, read through the view, and tear down. Returns the
/// upgrade's phase times.
pub fn run_upgrade_conformance(
    model: &mut dyn crate::Model,
    old: &[crate::PackageTree],
    new: &[crate::PackageTree],
    work: &std::path::Path,
) -> Result<crate::PhaseTimes> {
    use anyhow::{bail, Context};
    let mirror = work.join("mirror");
    let target = work.join("target");
    std::fs::create_dir_all(&mirror)?;
    std::fs::create_dir_all(&target)?;
    let pack = |trees: &[crate::PackageTree], model: &dyn crate::Model| {
        trees
            .iter()
            .map(|tree| model.pack(tree, &mirror))
            .collect::<Result<Vec<_>>>()
            .context("pack")
    };
    let installed = pack(old, model)?;
    let to = pack(new, model)?;
    let after: Vec<crate::PackageTree> = old
        .iter()
        .map(|o| new.iter().find(|n| n.name == o.name).unwrap_or(o).clone())
        .collect();
    let (before_digest, after_digest) = (digest_of_trees(old)?, digest_of_trees(&after)?);
    let ctx = crate::RunCtx {
        target,
        mirror,
        durability: crate::Durability::Native,
        jobs: 4,
        http: None,
    };
    let outcome = (|| {
        model.prepare(&installed, &ctx).context("prepare")?;
        model.install(&installed, &ctx).context("install")?;
        let check = check_view(&model.view(), &before_digest)?;
        if !check.matches {
            bail!(
                "model {}: view differs before the upgrade: {}",
                model.name(),
                check.differences.join("; ")
            );
        }
        let times = model.upgrade(&installed, &to, &ctx).context("upgrade")?;
        let view = model.view();
        let check = check_view(&view, &after_digest)?;
        if !check.matches {
            bail!(
                "model {}: view differs after the upgrade: {}",
                model.name(),
                check.differences.join("; ")
            );
        }
        let many = many_file_of(&view)?;
        if many.entries as usize != after_digest.entries.len() {
            bail!(
                "model {}: many-file saw {many:?} after the upgrade",
                model.name()
            );
        }
        Ok(times)
    })();
    model.teardown().context("teardown")?;
    outcome
}
