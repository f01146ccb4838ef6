//! The `nar` model's packing is a real Nix binary cache: `nix-cache-info`, `HASH.narinfo`
//! named by the store path's hash part, `nar/FILEHASH.nar.zst` named by the compressed
//! file's hash, no `CA:`; and its references form no cycle (Nix refuses one), dropping
//! within a dependency cycle exactly the references to members whose names sort after
//! the referrer's, whatever the order the packages are packed in.

use models::conformance::testing::PackageBuilder;
use models::nar::narinfo::{hash_part, nix32, NarInfo};
use models::nar::{store_path_of, NarModel};
use models::{Artifact, Model, PackageTree};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// Package `name` at version 1.0 with `depends` and one library, `lib/NAME.so`.
fn package(work: &Path, name: &str, depends: &[&str]) -> PackageTree {
    PackageBuilder::new(name, "1.0")
        .depends(depends)
        .file(&format!("lib/{name}.so"), name.repeat(100))
        .build(work)
}

/// A three-package cycle (a → b → c → a), a two-package one (libc6 ⇄ libgcc-s1, as in
/// Debian), a package depending into both, and one outside the set (ignored).
fn trees(work: &Path) -> Vec<PackageTree> {
    vec![
        package(work, "a", &["b"]),
        package(work, "b", &["c"]),
        package(work, "c", &["a", "libc6"]),
        package(work, "libc6", &["libgcc-s1"]),
        package(work, "libgcc-s1", &["libc6"]),
        package(work, "tool", &["a", "libgcc-s1", "not-in-the-set"]),
    ]
}

/// Packs `trees` in `order` into a fresh mirror; returns each package's references as
/// package names, and the mirror's directory (kept alive by the returned tempdir).
fn pack_in_order(
    order: &[usize],
) -> (
    BTreeMap<String, Vec<String>>,
    Vec<Artifact>,
    tempfile::TempDir,
) {
    let work = tempfile::tempdir().unwrap();
    let mirror = work.path().join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    let trees = trees(work.path());
    let model = NarModel::new();
    let artifacts: Vec<Artifact> = order
        .iter()
        .map(|&i| model.pack(&trees[i], &mirror).unwrap())
        .collect();
    let mut refs = BTreeMap::new();
    for art in &artifacts {
        let text = fs::read_to_string(mirror.join(&art.files[1])).unwrap();
        let info = NarInfo::parse(&text).unwrap();
        let names: Vec<String> = info
            .references
            .iter()
            .map(|r| r[33..].to_string())
            .collect();
        refs.insert(art.package.clone(), names);
    }
    (refs, artifacts, work)
}

#[test]
fn cycles_are_broken_by_name_whatever_the_packing_order() {
    let want: BTreeMap<String, Vec<String>> = [
        ("a", vec![]),
        ("b", vec![]),
        ("c", vec!["a", "libc6"]),
        ("libc6", vec![]),
        ("libgcc-s1", vec!["libc6"]),
        ("tool", vec!["a", "libgcc-s1"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    // Sorted by store path, hence the sorted names differ from the sorted bases; compare
    // as sets.
    let sorted = |m: BTreeMap<String, Vec<String>>| -> BTreeMap<String, Vec<String>> {
        m.into_iter()
            .map(|(k, mut v)| {
                v.sort();
                (k, v)
            })
            .collect()
    };
    for order in [
        vec![0, 1, 2, 3, 4, 5],
        vec![5, 4, 3, 2, 1, 0],
        vec![2, 0, 5, 4, 1, 3],
        vec![1, 3, 5, 0, 2, 4],
    ] {
        let (refs, _, _work) = pack_in_order(&order);
        assert_eq!(sorted(refs), want, "packing order {order:?}");
    }
}

#[test]
fn the_mirror_is_laid_out_as_a_nix_binary_cache() {
    let (_, artifacts, work) = pack_in_order(&[0, 1, 2, 3, 4, 5]);
    let mirror = work.path().join("mirror");
    assert_eq!(
        fs::read_to_string(mirror.join("nix-cache-info")).unwrap(),
        "StoreDir: /nix/store\n"
    );
    for art in &artifacts {
        let base = store_path_of(art, &mirror).unwrap();
        assert_eq!(
            art.files[1],
            Path::new(&format!("{}.narinfo", hash_part(&base)))
        );
        let text = fs::read_to_string(mirror.join(&art.files[1])).unwrap();
        assert!(!text.contains("\nCA: "), "{text}");
        let info = NarInfo::parse(&text).unwrap();
        let nar = fs::read(mirror.join(&info.url)).unwrap();
        let file_hash: [u8; 32] = Sha256::digest(&nar).into();
        assert_eq!(info.url, format!("nar/{}.nar.xz", nix32(&file_hash)));
        assert_eq!(art.files[0], Path::new(&info.url));
        assert_eq!(info.file_hash, file_hash);
    }
}
