//! `harness recover-upgrade` (hidden): what a restarted system shows after a `harness run`
//! was killed during its upgrade. A new harness would empty the target; this instead
//! hands the killed run's target to the model's own recovery (`Model::recover_upgrade`:
//! dpkg's journal and apt's rerun, Nix's profile link, a daemon or a mount set up again
//! from the image directory), digests the view it presents and names the set it holds:
//!
//! - `old`: the corpus, as installed before the upgrade;
//! - `new`: the point release, whole;
//! - `mixed`: the first `upgraded` packages of the release in their new version, each
//!   whole, the rest old: the state a package manager that upgrades one package at a
//!   time leaves when stopped between two (dpkg, distri);
//! - `torn`: none of these, a package half replaced: the failure the trials look for.
//!
//! With `--complete`, a `mixed` or `old` view is then upgraded with the rest of the
//! release, as apt's next `upgrade` would, and must end as the new set. One JSON line on
//! standard output; the exit status is 1 for `torn` or a completion that fails.

use crate::cli::RecoverArgs;
use crate::commands::run::{corpus_key, open_corpus};
use crate::conformance::{mode_rule, view_spec};
use crate::mirror::{package_trees, prepare_mirror, trees_of};
use crate::namespace::{enter_private_mount_namespace, is_root};
use anyhow::{bail, Context, Result};
use models::{catalog, Durability, Model, ModelOptions, RunCtx};
use std::process::ExitCode;
use workloads::corpus::upgrade::{digest_with, point_release};
use workloads::view::{digest_view, TreeDigest};

/// How many differences a torn view reports.
const DIFFERENCES_SHOWN: usize = 10;

pub fn recover_upgrade(args: &RecoverArgs) -> Result<ExitCode> {
    if !is_root() {
        bail!("recover-upgrade: needs root (the models' recovery mounts, as their install)");
    }
    // First, before any thread exists (see namespace.rs): what the recovery mounts goes
    // with this process.
    enter_private_mount_namespace()?;
    let _lock = crate::workdir::claim_work_dir(&args.work_dir)?;
    let info = catalog()
        .into_iter()
        .find(|m| m.name == args.model)
        .with_context(|| format!("no model {:?}", args.model))?;
    let make = info
        .make
        .with_context(|| format!("model {} is not built", info.name))?;
    let corpus = open_corpus(&args.corpus, &args.work_dir)?;
    let release = point_release(&corpus)?;
    let mut model = make(&ModelOptions::default());
    // The killed run's mirror: the corpus and the point release, packed by it.
    let mut trees = package_trees(&corpus);
    trees.extend(trees_of(&release.packages));
    let key = format!("{}+upgrade", corpus_key(&corpus)?);
    let mirror = prepare_mirror(
        model.as_ref(),
        &trees,
        &key,
        &args.work_dir.join("mirrors"),
        &|_, _| {},
    )?;
    let installed_count = corpus.packages.len().min(mirror.artifacts.len());
    let (installed, to) = mirror.artifacts.split_at(installed_count);
    let target = args.work_dir.join("targets").join(info.name);
    if !target.is_dir() {
        bail!("{}: no target a killed run left", target.display());
    }
    let ctx = RunCtx {
        target,
        mirror: mirror.dir.clone(),
        durability: Durability::Native,
        jobs: 16,
        http: None,
    };
    let outcome =
        recover_and_classify(model.as_mut(), installed, to, &ctx, &corpus, &release, args);
    let torn_down = model.teardown();
    let line = outcome?;
    torn_down.context("tearing down after the recovery")?;
    println!("{line}");
    let ok = line["state"] != "torn" && line["completed"] != false;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn recover_and_classify(
    model: &mut dyn Model,
    installed: &[models::Artifact],
    to: &[models::Artifact],
    ctx: &RunCtx,
    corpus: &workloads::corpus::Corpus,
    release: &workloads::corpus::upgrade::PointRelease,
    args: &RecoverArgs,
) -> Result<serde_json::Value> {
    let recovery = model
        .recover_upgrade(installed, to, ctx)
        .with_context(|| format!("{}: recovering the killed upgrade", model.name()))?;
    let (state, upgraded, differences) = classify(model, corpus, release)?;
    let mut line = serde_json::json!({
        "model": model.name(),
        "state": state,
        "upgraded": upgraded.len(),
        "upgraded_packages": upgraded
            .iter()
            .filter_map(|&i| to.get(i).map(|a| a.package.clone()))
            .collect::<Vec<_>>(),
        "of": to.len(),
        "steps": recovery.steps,
        "differences": differences,
    });
    if args.complete && state != "new" && state != "torn" {
        // The rest of the release: what apt's rerun, or distri's next update, fetches.
        let rest: Vec<models::Artifact> = (0..to.len())
            .filter(|i| !upgraded.contains(i))
            .map(|i| to[i].clone())
            .collect();
        model
            .upgrade(installed, &rest, ctx)
            .context("completing the upgrade after the recovery")?;
        let (after, _, differences) = classify(model, corpus, release)?;
        line["completed"] = serde_json::Value::Bool(after == "new");
        if after != "new" {
            line["completion_differences"] = differences.into();
        }
    }
    Ok(line)
}

/// Up to this many packages in a release, every mix of whole packages is tried (2^n
/// digests); above it only the prefixes of the release's order, which is what dpkg
/// leaves.
const MIXES_TRIED_UP_TO: usize = 8;

/// Which set the model's view holds: (state, the places in the release of the packages
/// upgraded, differences from the new set when torn).
fn classify(
    model: &dyn Model,
    corpus: &workloads::corpus::Corpus,
    release: &workloads::corpus::upgrade::PointRelease,
) -> Result<(&'static str, Vec<usize>, Vec<String>)> {
    let view = model.view();
    let actual = digest_view(&view_spec(&view)).context("digesting the recovered view")?;
    let rule = mode_rule(&view);
    let same = |expected: &TreeDigest| expected.as_installed(rule) == actual;
    let n = release.packages.len();
    if same(&corpus.digest) {
        return Ok(("old", Vec::new(), Vec::new()));
    }
    if same(&release.digest) {
        return Ok(("new", (0..n).collect(), Vec::new()));
    }
    for upgraded in mixes(n) {
        if same(&digest_with(corpus, release, &upgraded)?) {
            return Ok(("mixed", upgraded, Vec::new()));
        }
    }
    let differences = release
        .digest
        .as_installed(rule)
        .differences(&actual, DIFFERENCES_SHOWN);
    Ok(("torn", Vec::new(), differences))
}

/// The mixes of whole packages of a release of `n` that are neither the old set nor the
/// new one, as places in the release: the prefixes first (dpkg's), then, up to
/// [`MIXES_TRIED_UP_TO`] packages, every other subset (distri's, whose images arrive in
/// any order).
fn mixes(n: usize) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = (1..n).map(|k| (0..k).collect()).collect();
    if (1..=MIXES_TRIED_UP_TO).contains(&n) {
        for mask in 1u32..(1 << n) - 1 {
            let set: Vec<usize> = (0..n).filter(|i| mask & (1 << i) != 0).collect();
            if !out.contains(&set) {
                out.push(set);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::mixes;

    #[test]
    fn mixes_are_the_prefixes_then_every_other_proper_subset() {
        assert_eq!(mixes(1), Vec::<Vec<usize>>::new());
        assert_eq!(mixes(2), vec![vec![0], vec![1]]);
        let three = mixes(3);
        assert_eq!(&three[..2], &[vec![0], vec![0, 1]]);
        assert_eq!(three.len(), 6, "{three:?}");
        assert!(three.contains(&vec![1, 2]) && three.contains(&vec![2]));
        // Past the bound, the prefixes only.
        assert_eq!(mixes(20).len(), 19);
    }
}
