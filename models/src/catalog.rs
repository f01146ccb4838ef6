//! The list of models, each described by its own module (`INFO`): its name, what it
//! stands for, its phases in order, what it is compared with and how, what it needs
//! from the machine, what bounds its install, and what its sweep figures show.
//!
//! The harness learns about models only from here: its phase order, fidelity pairs,
//! `doctor`, `list`, plots and sweep figures derive from these descriptions. Adding a
//! model is its module (with its `INFO`) and one line in `catalog()`; the tests below
//! fail when a model is missing from the catalog or described twice.

use crate::needs::Need;
use crate::Model;

/// Options a user may set for the models that know them.
#[derive(Debug, Clone, Default)]
pub struct ModelOptions {
    /// hooks: unpack only, no maintainer scripts and no triggers.
    pub skip_maintainer_scripts: bool,
    /// hooks: the packages are real (`debian:`, `debs:`): run maintainer scripts chrooted
    /// into the root, as dpkg does, never on the host.
    pub chroot_maintainer_scripts: bool,
    /// hooks: real packages install onto this base system (a minimal root of the suite,
    /// `workloads::corpus::base_root`), copied into the target before the clock starts.
    pub base_root: Option<std::path::PathBuf>,
    /// fuse: the daemon's speed settings.
    pub fuse: crate::fuse::FuseOptions,
    /// hooks and nar (and their references): the mirror's stream compression by model
    /// name (`--compression MODEL=...`); a model not named ships its system's default.
    pub compression: std::collections::BTreeMap<String, crate::formats::compression::Compression>,
}

impl ModelOptions {
    /// The compression `model`'s mirror uses: the user's, or `shipped`.
    pub fn compression_of(
        &self,
        model: &str,
        shipped: crate::formats::compression::Compression,
    ) -> crate::formats::compression::Compression {
        self.compression.get(model).copied().unwrap_or(shipped)
    }
}

/// Builds a model with the user's options.
pub type MakeModel = fn(&ModelOptions) -> Box<dyn Model>;

/// What a pair compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairKind {
    /// A model and the real tool doing its work.
    Fidelity,
    /// Two readers of the same images: read workloads only.
    Readers,
}

/// Phases one side sums to compare with phases of the other.
#[derive(Debug)]
pub struct PhaseGroup {
    pub model: &'static [&'static str],
    pub reference: &'static [&'static str],
}

/// A model compared with another, and what of their work is the same.
#[derive(Debug)]
pub struct Pair {
    pub reference: &'static str,
    pub kind: PairKind,
    /// Phase groups of install and upgrade that both sides do (fidelity pairs).
    pub phases: &'static [PhaseGroup],
}

/// What bounds a model's install: creating files (with an fsync each, or not), or
/// writing its images sequentially. The calibration's fraction of an install uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallBound {
    /// Extracting files, each fsynced before its rename unless durability is `none`
    /// (dpkg).
    CreatesSyncedUnlessNone,
    /// Extracting files, fsynced only at durability `full` (Nix's store paths).
    CreatesSyncedOnlyWhenFull,
    /// Copying whole images: bounded by sequential writes, judged on the time to a
    /// durable state (which includes their flush).
    SequentialWrite,
}

/// What a phase of an install is, across models: so that one figure can put dpkg's
/// serial hooks and triggers next to models that have none (the argument this project
/// starts from), whatever each model calls its phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Getting the package's bytes and checking them (fetch, verify, acquire).
    Fetch,
    /// Writing package contents into place (unpack, restore, removing obsolete files).
    Extract,
    /// Maintainer scripts.
    Hooks,
    /// Triggers (ldconfig and the like), once per install.
    Triggers,
    /// Recording what is installed (dpkg's database, Nix's SQLite).
    Record,
    /// Making the new state visible: mounts, a union's layers, a profile's switch.
    Activate,
    /// A real tool's phase that does several stages at once and cannot be split from
    /// outside (dpkg's run, `nix copy`).
    Unsplit,
}

impl Stage {
    /// Every stage, in the order an install goes through them.
    pub const ALL: [Stage; 7] = [
        Stage::Fetch,
        Stage::Extract,
        Stage::Hooks,
        Stage::Triggers,
        Stage::Record,
        Stage::Activate,
        Stage::Unsplit,
    ];

    /// The stage's name in tables and figures.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Fetch => "fetch+verify",
            Stage::Extract => "extract",
            Stage::Hooks => "hooks",
            Stage::Triggers => "triggers",
            Stage::Record => "record",
            Stage::Activate => "activate",
            Stage::Unsplit => "unsplit",
        }
    }
}

/// What a sweep (`harness sweep`) draws for the model besides every model's curves.
#[derive(Debug, Clone, Copy, Default)]
pub struct SweepFigures {
    /// Install phases drawn against the package count (`scaling-NAME-phases`).
    pub phases: &'static [&'static str],
    /// The view is a stack of one layer per package: the lookup of a name in the first
    /// layer, the last and none is measured at every count (`scaling-NAME-lookup`).
    pub layer_lookups: bool,
}

/// One model, described by its own module.
#[derive(Clone, Copy)]
pub struct ModelInfo {
    pub name: &'static str,
    pub stands_for: &'static str,
    /// Every phase its install and upgrade report, in the order they happen.
    pub phases: &'static [&'static str],
    /// The stage of each of its phases (every phase exactly once).
    pub stages: &'static [(Stage, &'static [&'static str])],
    /// The models it is compared with (it is the `model` side of these pairs).
    pub compared_with: &'static [Pair],
    /// A reference run (a real tool, or another design measured for comparison): the
    /// model it stands beside in tables and figures. `None` for a model.
    pub reference_for: Option<&'static str>,
    /// What it needs from the machine.
    pub needs: &'static [Need],
    /// What bounds its install, for the calibration's fractions; None: nothing known.
    pub install_bound: Option<InstallBound>,
    pub sweep: SweepFigures,
    /// `None` while the model is not built: the harness lists it as not available.
    pub make: Option<MakeModel>,
}

impl ModelInfo {
    /// A description with only a name, a line and a builder: no phases, pairs, needs,
    /// bound or sweep figures (a test's mock model).
    pub const fn bare(name: &'static str, stands_for: &'static str, make: MakeModel) -> Self {
        ModelInfo {
            name,
            stands_for,
            phases: &[],
            stages: &[],
            compared_with: &[],
            reference_for: None,
            needs: &[],
            install_bound: None,
            sweep: SweepFigures {
                phases: &[],
                layer_lookups: false,
            },
            make: Some(make),
        }
    }
}

impl std::fmt::Debug for ModelInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelInfo")
            .field("name", &self.name)
            .field("phases", &self.phases)
            .finish_non_exhaustive()
    }
}

/// Every model the harness knows, in the order runs and tables show them.
pub fn catalog() -> Vec<ModelInfo> {
    vec![
        crate::hooks::INFO,
        crate::nar::INFO,
        crate::fuse::INFO,
        crate::overlay::INFO,
        crate::fuse_passthrough::INFO,
        crate::composefs::INFO,
        crate::fuse::reference::INFO,
        crate::refs::dpkg::INFO,
        crate::refs::nix::INFO,
    ]
}

/// The catalog's entry named `name`.
pub fn find(name: &str) -> Option<ModelInfo> {
    catalog().into_iter().find(|m| m.name == name)
}

impl ModelInfo {
    /// The stage of `phase` in this model's description.
    pub fn stage_of(&self, phase: &str) -> Option<Stage> {
        self.stages
            .iter()
            .find(|(_, phases)| phases.contains(&phase))
            .map(|(stage, _)| *stage)
    }
}

/// Every pair, as (model, pair), in catalog order.
pub fn pairs() -> Vec<(&'static str, &'static Pair)> {
    catalog()
        .into_iter()
        .flat_map(|m| m.compared_with.iter().map(move |p| (m.name, p)))
        .collect()
}

/// Every phase of every model, each once, in an order that keeps each model's own: a
/// topological order of "comes right before" in some model's list, ties broken by which
/// phase the catalog names first. A stack of any model's phases reads in its own order.
pub fn phase_order() -> Vec<&'static str> {
    let catalog = catalog();
    let mut names: Vec<&'static str> = Vec::new();
    for phase in catalog.iter().flat_map(|m| m.phases.iter()) {
        if !names.contains(phase) {
            names.push(phase);
        }
    }
    let index = |p: &str| names.iter().position(|n| *n == p).unwrap_or(0);
    let mut before = vec![Vec::new(); names.len()];
    for model in &catalog {
        for w in model.phases.windows(2) {
            before[index(w[1])].push(index(w[0]));
        }
    }
    let mut placed = vec![false; names.len()];
    let mut order = Vec::with_capacity(names.len());
    while order.len() < names.len() {
        // The first phase all of whose predecessors are placed; if the models disagree
        // on an order (a cycle), the first unplaced phase, so every phase still appears.
        let ready = (0..names.len())
            .find(|&i| !placed[i] && before[i].iter().all(|&b| placed[b]))
            .or_else(|| (0..names.len()).find(|&i| !placed[i]));
        let Some(i) = ready else { break };
        placed[i] = true;
        order.push(names[i]);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The type names after `impl Model for` / `impl crate::Model for` in `dir`'s sources.
    fn model_impls(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                model_impls(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for marker in ["impl Model for ", "impl crate::Model for "] {
                    for (i, _) in text.match_indices(marker) {
                        let rest = &text[i + marker.len()..];
                        let name: String = rest
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        // (This test's own markers, in strings, name no type.)
                        if !name.is_empty() {
                            out.push(format!("{}: {name}", path.display()));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_model_is_in_the_catalog_once_and_builds_under_its_own_name() {
        let catalog = catalog();
        let mut names: Vec<&str> = catalog.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), catalog.len(), "a model is described twice");
        for info in &catalog {
            let make = info.make.expect("every model is built");
            assert_eq!(make(&ModelOptions::default()).name(), info.name);
        }
        let mut impls = Vec::new();
        model_impls(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut impls,
        );
        assert_eq!(
            impls.len(),
            catalog.len(),
            "every implementation of Model is one catalog entry: {impls:#?}"
        );
    }

    #[test]
    fn descriptions_hold_together() {
        let catalog = catalog();
        for info in &catalog {
            let mut phases = info.phases.to_vec();
            phases.sort_unstable();
            phases.dedup();
            assert_eq!(
                phases.len(),
                info.phases.len(),
                "{}: a phase twice",
                info.name
            );
            for pair in info.compared_with {
                let reference = find(pair.reference)
                    .unwrap_or_else(|| panic!("{}: no model {}", info.name, pair.reference));
                for group in pair.phases {
                    for p in group.model {
                        assert!(info.phases.contains(p), "{}: no phase {p}", info.name);
                    }
                    for p in group.reference {
                        assert!(
                            reference.phases.contains(p),
                            "{}: no phase {p}",
                            reference.name
                        );
                    }
                }
                assert_eq!(
                    pair.kind == PairKind::Readers,
                    pair.phases.is_empty(),
                    "readers compare no phases; fidelity pairs do"
                );
            }
            for p in info.sweep.phases {
                assert!(info.phases.contains(p), "{}: sweep phase {p}", info.name);
            }
            // A reference stands beside a model that is not itself a reference, and is
            // that model's reference in one of its pairs.
            if let Some(model) = info.reference_for {
                let beside = find(model)
                    .unwrap_or_else(|| panic!("{}: stands beside no model {model}", info.name));
                assert!(
                    beside.reference_for.is_none(),
                    "{}: beside a reference",
                    info.name
                );
                assert!(
                    beside
                        .compared_with
                        .iter()
                        .any(|p| p.reference == info.name),
                    "{}: {model} is not compared with it",
                    info.name
                );
            }
            // Every phase has exactly one stage, and a stage names only phases.
            for p in info.phases {
                let n = info
                    .stages
                    .iter()
                    .filter(|(_, phases)| phases.contains(p))
                    .count();
                assert_eq!(n, 1, "{}: phase {p} is in {n} stages", info.name);
            }
            for (stage, phases) in info.stages {
                for p in *phases {
                    assert!(
                        info.phases.contains(p),
                        "{}: stage {} names no phase {p}",
                        info.name,
                        stage.name()
                    );
                }
            }
        }
    }

    #[test]
    fn the_phase_order_keeps_every_models_own_order() {
        let order = phase_order();
        for info in catalog() {
            let ranks: Vec<usize> = info
                .phases
                .iter()
                .map(|p| order.iter().position(|o| o == p).unwrap())
                .collect();
            assert!(
                ranks.windows(2).all(|w| w[0] < w[1]),
                "{}: {:?} in {order:?}",
                info.name,
                info.phases
            );
        }
    }
}
