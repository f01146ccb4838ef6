//! The list of models: what each stands for and whether it is built yet.

use crate::hooks::HooksModel;
use crate::Model;

/// Options a user may set for the models that know them.
#[derive(Debug, Clone, Default)]
pub struct ModelOptions {
    /// hooks: unpack only, no maintainer scripts and no triggers.
    pub skip_maintainer_scripts: bool,
    /// hooks: the packages are real (`debian:`, `debs:`): run maintainer scripts chrooted
    /// into the root, as dpkg does, never on the host.
    pub chroot_maintainer_scripts: bool,
    /// fuse: the daemon's speed settings.
    pub fuse: crate::fuse::FuseOptions,
}

/// Builds a model with the user's options.
pub type MakeModel = fn(&ModelOptions) -> Box<dyn Model>;

/// One entry of the catalog.
#[derive(Clone, Copy)]
pub struct ModelInfo {
    pub name: &'static str,
    pub stands_for: &'static str,
    /// `None` while the model is not built: the harness lists it as not available.
    pub make: Option<MakeModel>,
}

/// Every model the harness knows, in the order runs and tables show them.
pub fn catalog() -> Vec<ModelInfo> {
    vec![
        ModelInfo {
            name: "hooks",
            stands_for: "dpkg/apt (and rpm): one root, maintainer scripts and triggers, one package at a time, fsync before rename",
            make: Some(|o| {
                let mut model = HooksModel::new();
                model.skip_hooks = o.skip_maintainer_scripts;
                model.chroot_scripts = o.chroot_maintainer_scripts;
                Box::new(model)
            }),
        },
        ModelInfo {
            name: "nar",
            stands_for: "Nix substitution: NAR archives restored into a store in parallel, SQLite registration, a profile of symlinks",
            make: Some(|_| Box::new(crate::nar::NarModel::new())),
        },
        ModelInfo {
            name: "fuse",
            stands_for: "distri: one SquashFS image per package, served as one union tree by a FUSE daemon",
            make: Some(|o| {
                let mut model = crate::fuse::FuseModel::new();
                model.options = o.fuse;
                Box::new(model)
            }),
        },
        ModelInfo {
            name: "overlay",
            stands_for: "the same images loop-mounted by the kernel and combined with OverlayFS",
            make: Some(|_| Box::new(crate::overlay::OverlayModel::new())),
        },
        ModelInfo {
            name: "ref-squashfuse",
            stands_for: "reference: the fuse model's images served by squashfuse_ll (one FUSE mount per package) under OverlayFS",
            make: Some(|_| Box::new(crate::fuse::reference::SquashfuseModel::new())),
        },
        ModelInfo {
            name: "ref-dpkg",
            stands_for: "reference: the real dpkg unpacking and configuring .debs of the same trees, for hooks",
            make: Some(|o| {
                let mut model = crate::refs::dpkg::DpkgModel::new();
                model.real_packages = o.chroot_maintainer_scripts;
                Box::new(model)
            }),
        },
        ModelInfo {
            name: "ref-nix",
            stands_for: "reference: nix-store --restore of the nar model's NARs, then the same profile, for nar",
            make: Some(|_| Box::new(crate::refs::nix::NixStoreModel::new())),
        },
    ]
}
