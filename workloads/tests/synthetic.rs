//! `synthetic:N` corpora: drawn deterministically, prefixes of one another, never two
//! packages on one non-directory path, about 1 GiB at N=1000, and generated on disk like
//! the embedded corpora.

use std::collections::HashMap;
use std::path::Path;
use workloads::corpus::{self, synthetic, Corpus};
use workloads::manifest::{EntryKind, EntryKindTag};

fn open(name: &str, cache: &Path) -> Corpus {
    corpus::open(name, cache, &|_, _| {}).unwrap()
}

#[test]
fn the_draw_is_deterministic_and_smaller_corpora_are_prefixes() {
    let (a, ida) = synthetic::packages(200).unwrap();
    let (b, idb) = synthetic::packages(200).unwrap();
    assert_eq!(ida, idb);
    let (small, _) = synthetic::packages(20).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.name, y.name);
        assert_eq!(x.entries, y.entries);
        assert_eq!(x.depends, y.depends);
    }
    for (x, y) in small.iter().zip(&a) {
        assert_eq!(x.name, y.name);
        assert_eq!(x.entries, y.entries);
        assert_eq!(x.pre_depends, y.pre_depends);
    }
    // Not one template over and over.
    let templates: std::collections::BTreeSet<&str> = a.iter().map(|p| &p.name[7..]).collect();
    assert!(templates.len() > 60, "{} templates in 200", templates.len());
}

#[test]
fn no_non_directory_path_is_in_two_packages_at_n_2000() {
    let (pkgs, _) = synthetic::packages(2000).unwrap();
    let mut owner: HashMap<&str, (&str, EntryKindTag)> = HashMap::new();
    for p in &pkgs {
        for e in &p.entries {
            let tag = e.kind.tag();
            if let Some((other, t)) = owner.insert(&e.path, (&p.name, tag)) {
                assert!(
                    t == EntryKindTag::Dir && tag == EntryKindTag::Dir,
                    "{} in {} and {other}",
                    e.path,
                    p.name
                );
            }
        }
    }
}

#[test]
fn n_1000_stays_near_one_gib_with_scripts_and_triggers_at_real_rates() {
    let (pkgs, _) = synthetic::packages(1000).unwrap();
    let bytes: u64 = pkgs.iter().map(|p| p.file_totals().1).sum();
    assert!(
        (700 << 20..1536 << 20).contains(&bytes),
        "{} MiB",
        bytes >> 20
    );
    let largest = pkgs
        .iter()
        .flat_map(|p| &p.entries)
        .filter_map(|e| match e.kind {
            EntryKind::File { size, .. } => Some(size),
            _ => None,
        })
        .max()
        .unwrap();
    assert!(largest < 4 << 20, "{largest}");
    // 27 of 141 templates have maintainer scripts, 106 triggers.
    let scripts = pkgs
        .iter()
        .filter(|p| !p.maintainer_scripts.is_empty())
        .count();
    let triggers = pkgs.iter().filter(|p| !p.triggers.is_empty()).count();
    assert!((120..270).contains(&scripts), "{scripts} with scripts");
    assert!((650..850).contains(&triggers), "{triggers} with triggers");
}

#[test]
fn n_1_and_n_50_generate_the_same_in_two_caches() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = open("synthetic:1", a.path());
    assert_eq!(one.packages.len(), 1);
    assert!(one.packages[0].name.starts_with("s00000-"));
    let ca = open("synthetic:50", a.path());
    let cb = open("synthetic:50", b.path());
    assert_eq!(ca.name, "synthetic:50");
    assert_eq!(ca.packages.len(), 50);
    assert_eq!(ca.digest.hex(), cb.digest.hex());
    assert_eq!(ca.digest.files() as u64, ca.files());
    // Dependencies name packages of the corpus, and earlier ones.
    for (i, p) in ca.packages.iter().enumerate() {
        for d in p.depends.iter().chain(&p.pre_depends) {
            let j = ca.packages.iter().position(|q| &q.name == d).unwrap();
            assert!(j < i);
        }
        for s in p.scripts.values() {
            assert!(s.is_file(), "{}", s.display());
        }
    }
    // The first package is the same in both corpora, byte for byte.
    let first = |c: &Corpus| {
        c.digest
            .entries
            .iter()
            .filter(|(path, _)| path.contains("/s00000-"))
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(first(&one), first(&ca));
    // Cached: opening again does not generate.
    let again = corpus::open("synthetic:50", a.path(), &|_, _| panic!("generated twice")).unwrap();
    assert_eq!(again.digest.hex(), ca.digest.hex());
}

#[test]
fn package_0_is_libc6_so_every_corpus_has_etc() {
    let (pkgs, _) = synthetic::packages(3).unwrap();
    assert_eq!(pkgs[0].name, format!("s00000-{}", synthetic::BASE_TEMPLATE));
    assert!(pkgs[0].entries.iter().any(|e| e.path == "/etc"));
}
