//! The `nar` model's upgrade (`nix-env --upgrade` after substitution): the upgrade
//! conformance on a subset of the qemu closure with a dependency cycle; afterwards both
//! versions of an upgraded package are valid store paths, the profile has two
//! generations and points at the second, and the first still resolves to the old tree.
//! A corrupt new NAR fails the upgrade naming the file, leaves no trace of the failed
//! path, and the profile still shows the old set. None of this needs root.

use models::conformance::testing::upgrade_fixture;
use models::conformance::{digest_of_trees, run_upgrade_conformance, view_spec};
use models::nar::db::StoreDb;
use models::nar::{store_path_of, NarModel};
use models::{Durability, Model, PackageTree, RunCtx, View};
use std::fs;
use std::path::{Path, PathBuf};
use workloads::view::{digest_view, ModeRule, ViewSpec};

/// libc6 and libgcc-s1 reference each other; gcc-12-base and zlib1g are the packages the
/// point release upgrades (every tenth by name).
const SUBSET: &str = "debian-qemu:libc6,libgcc-s1,gcc-12-base,tar,zlib1g,libzstd1,liblzma5,libbz2-1.0,libacl1,libselinux1,libpcre2-8-0";

fn valid_paths(target: &Path) -> Vec<String> {
    StoreDb::open(&target.join("nix/var/nix/db"))
        .unwrap()
        .valid_paths()
        .unwrap()
}

/// The digest of `trees` as a Nix store shows them (canonical modes): what a profile
/// of them must digest to.
fn in_the_store(trees: &[PackageTree]) -> String {
    digest_of_trees(trees)
        .unwrap()
        .as_installed(ModeRule::NixStore)
        .hex()
}

fn ending_with<'a>(paths: &'a [String], suffix: &str) -> Vec<&'a String> {
    paths.iter().filter(|p| p.ends_with(suffix)).collect()
}

/// The digest of the tree a profile link (`default`, `default-1-link`) resolves to.
fn digest_through(profiles: &Path, link: &str, store: &Path) -> String {
    digest_view(&ViewSpec {
        root: profiles.join(link),
        internal_roots: vec![store.to_path_buf()],
        excluded: Vec::new(),
    })
    .unwrap()
    .hex()
}

#[test]
fn nar_upgrade_passes_conformance_and_keeps_the_old_generation() {
    let work = tempfile::tempdir().unwrap();
    let (old, new) = upgrade_fixture(SUBSET, work.path());
    let upgraded: Vec<&str> = new.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(upgraded, vec!["gcc-12-base", "zlib1g"]);
    let mut model = NarModel::new();
    let times = run_upgrade_conformance(&mut model, &old, &new, work.path()).unwrap();
    for phase in [
        "fetch", "restore", "verify", "register", "profile", "switch",
    ] {
        assert!(
            times.get(phase).is_some_and(|d| !d.is_zero()),
            "phase {phase} not timed: {times:?}"
        );
    }

    // Teardown leaves the store and database in place (it only releases them).
    let target = fs::canonicalize(work.path().join("target")).unwrap();
    let store = target.join("nix/store");
    let profiles = target.join("nix/var/nix/profiles");
    let valid = valid_paths(&target);
    for name in &upgraded {
        let versions = ending_with(&valid, &format!("-{name}"));
        assert_eq!(versions.len(), 2, "{name}: old and new: {valid:?}");
        for v in versions {
            let base = v.strip_prefix("/nix/store/").unwrap();
            assert!(store.join(base).is_dir(), "{v} is not in the store");
        }
    }
    // Packages that stay are not substituted again.
    assert_eq!(ending_with(&valid, "-libc6").len(), 1, "{valid:?}");
    let envs = ending_with(&valid, "-user-environment");
    assert_eq!(envs.len(), 2, "two generations: {valid:?}");
    assert_eq!(valid.len(), old.len() + new.len() + 2, "{valid:?}");

    // Two generations; the profile points at the second.
    let mut links: Vec<String> = fs::read_dir(&profiles)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    links.sort();
    assert_eq!(links, vec!["default", "default-1-link", "default-2-link"]);
    assert_eq!(
        fs::read_link(profiles.join("default")).unwrap(),
        Path::new("default-2-link")
    );
    let generation = |n: u32| fs::read_link(profiles.join(format!("default-{n}-link"))).unwrap();
    assert_ne!(generation(1), generation(2));
    for n in [1, 2] {
        let base = generation(n)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(envs.iter().any(|e| e.ends_with(&base)), "{base} not valid");
    }

    // The first generation is the old tree, untouched; the profile is the new one.
    let after: Vec<PackageTree> = old
        .iter()
        .map(|o| new.iter().find(|n| n.name == o.name).unwrap_or(o).clone())
        .collect();
    assert_eq!(
        digest_through(&profiles, "default-1-link", &store),
        in_the_store(&old)
    );
    assert_eq!(
        digest_through(&profiles, "default", &store),
        in_the_store(&after)
    );
    assert_ne!(in_the_store(&old), in_the_store(&after));
}

#[test]
fn nar_upgrade_with_a_corrupt_new_nar_fails_naming_it_and_keeps_the_old_profile() {
    let work = tempfile::tempdir().unwrap();
    let (old, new) = upgrade_fixture(SUBSET, work.path());
    let mirror = work.path().join("mirror");
    let target = work.path().join("target");
    fs::create_dir_all(&mirror).unwrap();
    let mut model = NarModel::new();
    let pack = |trees: &[PackageTree], model: &NarModel| -> Vec<models::Artifact> {
        trees
            .iter()
            .map(|t| model.pack(t, &mirror).unwrap())
            .collect()
    };
    let installed = pack(&old, &model);
    let to = pack(&new, &model);

    // Truncate the new zlib1g's compressed NAR on the mirror.
    let broken = to.iter().find(|a| a.package == "zlib1g").unwrap();
    let nar: PathBuf = mirror.join(&broken.files[0]);
    assert!(nar.to_string_lossy().ends_with(".nar.xz"), "{nar:?}");
    let bytes = fs::read(&nar).unwrap();
    fs::write(&nar, &bytes[..bytes.len() / 2]).unwrap();
    let new_base = store_path_of(broken, &mirror).unwrap();

    let ctx = RunCtx {
        target: target.clone(),
        mirror: mirror.clone(),
        durability: Durability::Native,
        jobs: 4,
        http: None,
    };
    model.install(&installed, &ctx).unwrap();
    let old_digest = in_the_store(&old);
    let view_digest = |view: &View| digest_view(&view_spec(view)).unwrap().hex();
    assert_eq!(view_digest(&model.view()), old_digest);

    let err = format!("{:#}", model.upgrade(&installed, &to, &ctx).unwrap_err());
    // Where the decoder notices depends on zstd's block boundaries (a first block longer
    // than the half kept decodes to nothing: "not a NAR"); the file is named either way.
    assert!(
        err.contains(&format!(
            "substituting /nix/store/{new_base}: restoring {}",
            nar.display()
        )),
        "{err}"
    );
    // The view still shows the old set, through the first generation.
    assert_eq!(view_digest(&model.view()), old_digest);
    let profiles = target.join("nix/var/nix/profiles");
    assert_eq!(
        fs::read_link(profiles.join("default")).unwrap(),
        Path::new("default-1-link")
    );
    assert!(!profiles.join("default-2-link").exists());
    // Nothing of the failed path: not in the store (nor its .tmp), not valid.
    let store = target.join("nix/store");
    let left: Vec<String> = fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(&new_base) || n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "left in the store: {left:?}");
    let valid = valid_paths(&target);
    assert!(!valid.iter().any(|p| p.ends_with(&new_base)), "{valid:?}");
    assert_eq!(ending_with(&valid, "-user-environment").len(), 1);
    model.teardown().unwrap();
}
