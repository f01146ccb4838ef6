//! The `nar` model on small hand-made packages: a whole install (store, database,
//! profile), and the failures that must leave nothing of the failed path behind: a
//! truncated and a garbled `.nar.zst`, a narinfo whose NarHash does not match, and two
//! packages providing the same file.

use models::conformance::testing::PackageBuilder;
use models::nar::db::StoreDb;
use models::nar::{store_path_of, NarModel};
use models::{Artifact, Durability, Model, PackageTree, RunCtx};
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Package `name` at version 1.0 with `depends` and `files` (path, contents).
fn package(work: &Path, name: &str, depends: &[&str], files: &[(&str, &[u8])]) -> PackageTree {
    PackageBuilder::new(name, "1.0")
        .depends(depends)
        .files(files)
        .build(work)
}

struct Setup {
    work: tempfile::TempDir,
    model: NarModel,
    artifacts: Vec<Artifact>,
}

impl Setup {
    fn new(trees: impl FnOnce(&Path) -> Vec<PackageTree>) -> Setup {
        let work = tempfile::tempdir().unwrap();
        let model = NarModel::new();
        let mirror = work.path().join("mirror");
        fs::create_dir_all(&mirror).unwrap();
        let artifacts = trees(work.path())
            .iter()
            .map(|t| model.pack(t, &mirror).unwrap())
            .collect();
        Setup {
            work,
            model,
            artifacts,
        }
    }

    fn mirror(&self) -> PathBuf {
        self.work.path().join("mirror")
    }

    fn store(&self) -> PathBuf {
        self.work.path().join("target/nix/store")
    }

    fn install(&mut self, jobs: usize) -> anyhow::Result<models::PhaseTimes> {
        let ctx = RunCtx {
            target: self.work.path().join("target"),
            mirror: self.mirror(),
            durability: Durability::Native,
            jobs,
            http: None,
        };
        self.model.install(&self.artifacts, &ctx)
    }

    fn artifact(&self, name: &str) -> &Artifact {
        self.artifacts.iter().find(|a| a.package == name).unwrap()
    }

    /// Names in the store that belong to `package` (the path or its `.tmp`).
    fn store_entries_of(&self, package: &str) -> Vec<String> {
        let suffix = format!("-{package}");
        fs::read_dir(self.store())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.trim_end_matches(".tmp").ends_with(&suffix))
            .collect()
    }

    fn valid_paths(&self) -> Vec<String> {
        StoreDb::open(&self.work.path().join("target/nix/var/nix/db"))
            .unwrap()
            .valid_paths()
            .unwrap()
    }
}

fn two_packages(work: &Path) -> Vec<PackageTree> {
    let big: Vec<u8> = (0..400_000u32)
        .flat_map(|i| (i * 7919).to_le_bytes())
        .collect();
    vec![
        package(
            work,
            "libgood",
            &[],
            &[
                ("usr/lib/libgood.so", b"good"),
                ("usr/share/doc/libgood/copyright", b"c"),
            ],
        ),
        package(
            work,
            "bad",
            &["libgood"],
            &[("usr/bin/bad", &big), ("usr/share/doc/bad/copyright", b"c")],
        ),
    ]
}

#[test]
fn install_fills_store_database_and_profile() {
    let mut setup = Setup::new(|work| {
        let mut trees = two_packages(work);
        let root = &trees[1].root;
        fs::set_permissions(root.join("usr/bin/bad"), fs::Permissions::from_mode(0o755)).unwrap();
        symlink("bad", root.join("usr/bin/alias")).unwrap();
        fs::create_dir_all(root.join("usr/share/empty")).unwrap();
        trees.push(package(
            work,
            "extra",
            &["bad"],
            &[("etc/extra.conf", b"x")],
        ));
        trees
    });
    // Narinfo references follow dependencies, whatever the packing order.
    let narinfo = fs::read_to_string(setup.mirror().join(&setup.artifact("bad").files[1])).unwrap();
    let good = store_path_of(setup.artifact("libgood"), &setup.mirror()).unwrap();
    assert!(
        narinfo.contains(&format!("References: {good}\n")),
        "{narinfo}"
    );
    // As Nix's public binary cache serves them: xz, the mirrors' default.
    assert!(narinfo.contains("Compression: xz\n"), "{narinfo}");

    let times = setup.install(2).unwrap();
    for phase in ["fetch", "restore", "verify", "register", "profile"] {
        assert!(
            times.get(phase).is_some_and(|d| !d.is_zero()),
            "{phase}: {times:?}"
        );
    }
    let valid = setup.valid_paths();
    assert_eq!(valid.len(), 4, "three packages and the profile: {valid:?}");
    assert!(
        valid.iter().any(|p| p.ends_with("-user-environment")),
        "{valid:?}"
    );

    let view = setup.model.view();
    let profile = &view.root;
    let store = fs::canonicalize(setup.store()).unwrap();
    assert_eq!(view.internal_roots, vec![store.clone()]);
    // Directories of one package are one link; shared ones are real directories.
    let link = |p: &str| fs::read_link(profile.join(p)).unwrap();
    assert!(link("etc").starts_with(&store), "{:?}", link("etc"));
    assert!(link("usr/bin").ends_with("usr/bin"));
    assert!(link("usr/share/doc/bad").ends_with("usr/share/doc/bad"));
    assert!(fs::symlink_metadata(profile.join("usr/share"))
        .unwrap()
        .is_dir());
    assert!(fs::symlink_metadata(profile.join("usr/share/doc"))
        .unwrap()
        .is_dir());
    assert_eq!(
        fs::read_link(profile.join("usr/bin/alias")).unwrap(),
        Path::new("bad")
    );
    // Canonical store metadata.
    let bad = fs::read_link(profile.join("usr/bin")).unwrap().join("bad");
    let meta = fs::metadata(&bad).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.mtime()), (0o555, 1));
    setup.model.teardown().unwrap();
}

#[test]
fn a_truncated_nar_zst_is_refused_and_leaves_nothing() {
    let mut setup = Setup::new(two_packages);
    let file = setup.mirror().join(&setup.artifact("bad").files[0]);
    let bytes = fs::read(&file).unwrap();
    fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let err = format!("{:#}", setup.install(4).unwrap_err());
    assert!(err.contains("-bad: restoring"), "{err}");
    assert!(err.contains("archive is truncated"), "{err}");
    assert_eq!(setup.store_entries_of("bad"), Vec::<String>::new());
    assert!(!setup.valid_paths().iter().any(|p| p.ends_with("-bad")));
}

#[test]
fn a_garbled_nar_zst_is_refused_and_leaves_nothing() {
    let mut setup = Setup::new(two_packages);
    let file = setup.mirror().join(&setup.artifact("bad").files[0]);
    let mut bytes = fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0x5a;
    }
    fs::write(&file, &bytes).unwrap();
    let err = format!("{:#}", setup.install(1).unwrap_err());
    // zstd frames carry no checksum by default, so garbled literals may decode silently
    // into a well-formed NAR: then the NarHash check refuses it; garbled framing is a
    // decoding error at a byte of the NAR.
    let refused_by_hash = err.contains("-bad: hash mismatch");
    let refused_by_decoder = err.contains("-bad: restoring") && err.contains("at byte");
    assert!(refused_by_hash || refused_by_decoder, "{err}");
    assert_eq!(setup.store_entries_of("bad"), Vec::<String>::new());
    assert!(!setup.valid_paths().iter().any(|p| p.ends_with("-bad")));
}

#[test]
fn a_narinfo_whose_nar_hash_does_not_match_is_refused_and_leaves_nothing() {
    let mut setup = Setup::new(two_packages);
    let info_path = setup.mirror().join(&setup.artifact("bad").files[1]);
    let good_info =
        fs::read_to_string(setup.mirror().join(&setup.artifact("libgood").files[1])).unwrap();
    let other_hash = good_info
        .lines()
        .find(|l| l.starts_with("NarHash: "))
        .unwrap();
    let text = fs::read_to_string(&info_path).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("NarHash: ") {
                other_hash
            } else {
                l
            }
        })
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&info_path, text).unwrap();
    let err = format!("{:#}", setup.install(2).unwrap_err());
    assert!(
        err.contains("-bad: hash mismatch: the narinfo says sha256:"),
        "{err}"
    );
    assert_eq!(setup.store_entries_of("bad"), Vec::<String>::new());
    assert!(!setup.valid_paths().iter().any(|p| p.ends_with("-bad")));
    // The path that did not fail is valid and in place.
    assert_eq!(setup.store_entries_of("libgood").len(), 1);
    assert!(setup.valid_paths().iter().any(|p| p.ends_with("-libgood")));
}

#[test]
fn two_packages_providing_the_same_file_is_an_error_naming_both() {
    let mut setup = Setup::new(|work| {
        vec![
            package(
                work,
                "one",
                &[],
                &[("usr/bin/same", b"1"), ("usr/bin/one", b"1")],
            ),
            package(work, "two", &[], &[("usr/bin/same", b"2")]),
        ]
    });
    let err = format!("{:#}", setup.install(2).unwrap_err());
    assert!(
        err.contains("collision: /usr/bin/same is provided by both package one (/nix/store/")
            && err.contains(") and package two (/nix/store/"),
        "{err}"
    );
}
