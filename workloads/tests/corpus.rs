//! Whole-corpus tests: generation is deterministic, cached, faithful to the manifest
//! (paths, kinds, modes, symlink targets, sizes, scripts) and compresses like Debian's
//! files did.

use rayon::prelude::*;
use std::cell::Cell;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use workloads::corpus::{self, Corpus, GENERATOR_VERSION};
use workloads::manifest::{self, EntryKind};

/// A few MiB with what the full corpora have: setuid and setgid files, symlinks,
/// maintainer scripts, triggers and relations with alternatives.
const SMALL: &str = "debian-qemu:adduser,debconf,install-info,libpam-modules-bin,libpam0g,\
                     passwd,readline-common";

fn open(name: &str, cache: &Path) -> Corpus {
    corpus::open(name, cache, &|_, _| {}).unwrap()
}

fn zstd3(data: &[u8]) -> u64 {
    // As `zstd -3` writes it: the frame carries the content size and a checksum.
    let mut c = zstd::bulk::Compressor::new(3).unwrap();
    c.include_checksum(true).unwrap();
    c.include_contentsize(true).unwrap();
    c.compress(data).unwrap().len() as u64
}

#[test]
fn same_subset_gives_the_same_digest_in_two_caches() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ca = open(SMALL, a.path());
    let cb = open(SMALL, b.path());
    assert_eq!(ca.digest.hex(), cb.digest.hex());
    assert_eq!(ca.digest, cb.digest);
    assert_eq!(ca.digest.files() as u64, ca.files());
    assert_eq!(ca.packages.len(), 7);
}

/// Checks every entry of `c` against its manifest: kind, exact mode (setuid and setgid
/// included), size, symlink target; scripts' sizes and modes; nothing more than listed.
/// Returns how many setuid or setgid files it saw.
fn assert_tree_matches_manifest(c: &Corpus, m: &manifest::Manifest) -> usize {
    let mut setid = 0;
    let mut listed = std::collections::BTreeSet::new();
    for p in &c.packages {
        let want = m.packages.iter().find(|w| w.name == p.name).unwrap();
        for e in &want.entries {
            listed.insert(e.path.as_str());
            let path = p.root.join(e.rel_path());
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            match &e.kind {
                EntryKind::Dir { mode: want } => {
                    assert!(meta.is_dir(), "{}", e.path);
                    assert_eq!(mode, *want, "{}", e.path);
                }
                EntryKind::File {
                    mode: want, size, ..
                } => {
                    assert!(meta.is_file(), "{}", e.path);
                    assert_eq!(mode, *want, "{} mode {mode:o}", e.path);
                    assert_eq!(meta.len(), *size, "{}", e.path);
                    setid += usize::from(want & 0o6000 != 0);
                }
                EntryKind::Symlink { target } => {
                    assert!(meta.file_type().is_symlink(), "{}", e.path);
                    assert_eq!(
                        fs::read_link(&path).unwrap().to_str(),
                        Some(target.as_str())
                    );
                }
            }
        }
        assert_eq!(p.scripts.len(), want.maintainer_scripts.len(), "{}", p.name);
        let table = corpus::hook_costs::table().unwrap();
        for (name, path) in &p.scripts {
            let size = want.maintainer_scripts[name];
            let meta = fs::metadata(path).unwrap();
            // The real script's size, or the stand-in's when its replay of the measured
            // cost does not fit; exactly what `script` makes of the table's rows.
            let costs: Vec<_> = table
                .iter()
                .filter(|c| c.package == p.name && c.script == *name)
                .collect();
            assert!(
                meta.len() >= size.max(corpus::script::minimal_size()),
                "{name}"
            );
            assert_eq!(
                fs::read(path).unwrap(),
                corpus::script::calibrated_script(size, &costs),
                "{name}"
            );
            assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
            assert!(
                !path.starts_with(&p.root),
                "scripts live outside the package root"
            );
        }
        assert_eq!(p.triggers, want.triggers);
    }
    // Entries are exactly the manifest's: nothing more (no implicit directories).
    assert_eq!(c.digest.entries.len(), listed.len());
    setid
}

#[test]
fn trees_and_scripts_match_the_manifest_exactly() {
    let cache = tempfile::tempdir().unwrap();
    let c = open(SMALL, cache.path());
    let setid = assert_tree_matches_manifest(&c, corpus::manifest(SMALL).unwrap());
    // passwd's chfn, chsh, passwd... are setuid, chage and expiry setgid.
    assert_eq!(setid, 7);

    // A generated script is a real program that leaves its trace.
    let passwd = c.package("passwd").unwrap();
    let admindir = tempfile::tempdir().unwrap();
    let status = Command::new(&passwd.scripts["postinst"])
        .arg("configure")
        .env("DPKG_MAINTSCRIPT_PACKAGE", "passwd")
        .env("DPKG_MAINTSCRIPT_NAME", "postinst")
        .env("DPKG_ADMINDIR", admindir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let log = fs::read_to_string(admindir.path().join("pkgbench-hooks.log")).unwrap();
    assert_eq!(log, "passwd postinst configure\n");
}

#[test]
fn hard_linked_files_are_separate_files_with_the_same_contents() {
    let cache = tempfile::tempdir().unwrap();
    let c = open("debian-python3:perl", cache.path());
    let root = &c.package("perl").unwrap().root;
    let (a, b) = (
        root.join("usr/bin/perlbug"),
        root.join("usr/bin/perlthanks"),
    );
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    use std::os::unix::fs::MetadataExt;
    let (ma, mb) = (fs::metadata(&a).unwrap(), fs::metadata(&b).unwrap());
    assert_ne!(ma.ino(), mb.ino());
    assert_eq!(ma.nlink(), 1);
}

#[test]
fn subset_relations_resolve_within_the_subset() {
    let cache = tempfile::tempdir().unwrap();
    let c = open(SMALL, cache.path());
    let deps = |name: &str| c.package(name).unwrap().depends.clone();
    // "dpkg (>= 1.15.4) | install-info": dpkg is not in the subset.
    assert_eq!(deps("readline-common"), vec!["install-info"]);
    // "debconf (>= 0.5) | debconf-2.0" after libaudit1, libc6: outside the subset.
    assert_eq!(deps("libpam0g"), vec!["debconf"]);
    assert_eq!(deps("passwd"), vec!["libpam0g"]);
    assert_eq!(deps("adduser"), vec!["passwd"]);
    assert!(deps("install-info").is_empty());
    // In the full corpus the same relations keep their other packages.
    let full = corpus::manifest("debian-qemu").unwrap();
    let libpam0g = full.packages.iter().find(|p| p.name == "libpam0g").unwrap();
    let present = |n: &str| full.packages.iter().any(|p| p.name == n);
    assert_eq!(
        manifest::resolve(&libpam0g.depends, &present),
        vec!["libaudit1", "libc6", "debconf"]
    );
}

#[test]
fn bad_selectors_are_refused_with_the_names_that_exist() {
    let cache = tempfile::tempdir().unwrap();
    let err = |name: &str| {
        format!(
            "{:#}",
            corpus::open(name, cache.path(), &|_, _| {}).unwrap_err()
        )
    };
    let e = err("debian-nope");
    assert!(e.contains("unknown corpus \"debian-nope\""), "{e}");
    assert!(e.contains("debian-qemu, debian-python3"), "{e}");
    let e = err("debian-python3:python3,no-such-pkg");
    assert!(
        e.contains("corpus debian-python3 has no package no-such-pkg"),
        "{e}"
    );
    assert!(
        !cache.path().join("corpora").exists(),
        "nothing is generated for a bad name"
    );
    let names: Vec<&str> = corpus::builtin().iter().map(|(n, _)| *n).collect();
    assert_eq!(names, vec!["debian-qemu", "debian-python3"]);
    assert_eq!(corpus::DEFAULT, "debian-qemu");
}

#[test]
fn bad_manifest_input_names_the_source() {
    let embedded = include_bytes!("../data/debian-bookworm-python3.json.zst");
    let cut = &embedded[..embedded.len() / 2];
    let e = format!("{:#}", manifest::parse(cut, "cut.json.zst").unwrap_err());
    assert!(
        e.starts_with("manifest cut.json.zst: decompressing zstd"),
        "{e}"
    );

    let text = zstd::decode_all(&embedded[..]).unwrap();
    let text = String::from_utf8(text).unwrap();
    let bad = text.replacen("\"0o755\"", "\"0o7x5\"", 1);
    let e = format!(
        "{:#}",
        manifest::parse(bad.as_bytes(), "bad.json").unwrap_err()
    );
    assert!(
        e.starts_with("manifest bad.json: package dpkg: entry \"/etc\""),
        "{e}"
    );
    assert!(e.contains("not octal"), "{e}");
}

#[test]
fn second_open_reuses_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let name = "debian-python3:libc6,zlib1g";
    let calls = Cell::new(0u64);
    let last = Cell::new((0u64, 0u64));
    let first = corpus::open(name, cache.path(), &|done, total| {
        calls.set(calls.get() + 1);
        last.set((done, total));
    })
    .unwrap();
    assert_eq!(calls.get(), first.files(), "one progress call per file");
    assert_eq!(last.get(), (first.bytes(), first.bytes()));
    let dir = cache.path().join(format!(
        "corpora/debian-python3_libc6_zlib1g-g{GENERATOR_VERSION}"
    ));
    assert_eq!(first.dir, dir);
    let stamp = fs::metadata(dir.join("corpus.json"))
        .unwrap()
        .modified()
        .unwrap();

    calls.set(0);
    let again = corpus::open("debian-python3:zlib1g,libc6", cache.path(), &|_, _| {
        calls.set(calls.get() + 1)
    })
    .unwrap();
    assert_eq!(calls.get(), 0, "the cached corpus was generated again");
    assert_eq!(
        fs::metadata(dir.join("corpus.json"))
            .unwrap()
            .modified()
            .unwrap(),
        stamp
    );
    assert_eq!(again.digest, first.digest);
    assert_eq!(again.dir, first.dir);
}

#[test]
fn stale_temporary_directory_is_removed() {
    let cache = tempfile::tempdir().unwrap();
    let corpora = cache.path().join("corpora");
    let tmp = corpora.join(format!(".debian-qemu_debconf-g{GENERATOR_VERSION}.tmp"));
    fs::create_dir_all(tmp.join("pkgs/half-written")).unwrap();
    let c = open("debian-qemu:debconf", cache.path());
    assert!(!tmp.exists());
    assert!(!c.dir.join("pkgs/half-written").exists());
    assert_eq!(c.packages.len(), 1);
}

#[test]
fn largest_files_by_size_then_path() {
    let cache = tempfile::tempdir().unwrap();
    let c = open(SMALL, cache.path());
    let m = corpus::manifest(SMALL).unwrap();
    let mut want: Vec<(u64, String)> = m
        .packages
        .iter()
        .filter(|p| c.package(&p.name).is_some())
        .flat_map(|p| p.entries.iter())
        .filter_map(|e| match e.kind {
            EntryKind::File { size, .. } => Some((size, e.rel_path().to_string())),
            _ => None,
        })
        .collect();
    want.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let want: Vec<String> = want.into_iter().take(12).map(|(_, p)| p).collect();
    assert_eq!(c.largest_files(12), want);
    assert!(!want[0].starts_with('/'));
    assert_eq!(c.largest_files(100_000).len() as u64, c.files());
}

/// Every file of both full corpora: compressibility against the manifest's measured
/// `zstd -3` size, and the corpus sums. Prints the worst deviation per corpus.
#[test]
fn full_corpora_compress_like_debian() {
    let cache = tempfile::tempdir().unwrap();
    for name in ["debian-qemu", "debian-python3"] {
        let started = std::time::Instant::now();
        let c = open(name, cache.path());
        let generated_in = started.elapsed();
        let m = corpus::manifest(name).unwrap();
        let files: Vec<(&Path, String, u64)> = c
            .packages
            .iter()
            .zip(&m.packages)
            .flat_map(|(p, w)| {
                assert_eq!(p.name, w.name);
                w.entries.iter().filter_map(|e| match e.kind {
                    EntryKind::File { zstd3_size, .. } => {
                        Some((p.root.as_path(), e.rel_path().to_string(), zstd3_size))
                    }
                    _ => None,
                })
            })
            .collect();
        assert_eq!(files.len() as u64, c.files());
        assert_tree_matches_manifest(&c, m);
        // (deviation as a fraction of the allowance, relative deviation or NaN for files
        // under 4 KiB, path, got, want)
        let mut checked: Vec<(f64, f64, String, u64, u64)> = files
            .par_iter()
            .map(|(root, rel, want)| {
                let data = fs::read(root.join(rel)).unwrap();
                let got = zstd3(&data);
                let allowance = if data.len() < 4096 {
                    256.0
                } else {
                    *want as f64 * 0.15
                };
                let off = got as f64 - *want as f64;
                let relative = if data.len() < 4096 {
                    f64::NAN
                } else {
                    off / *want as f64
                };
                (off / allowance, relative, rel.clone(), got, *want)
            })
            .collect();
        checked.sort_by(|a, b| a.0.abs().total_cmp(&b.0.abs()));
        let worst = checked.last().unwrap();
        let worst_large = checked
            .iter()
            .filter(|c| !c.1.is_nan())
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap();
        let total_want: u64 = checked.iter().map(|c| c.4).sum();
        let total_got: u64 = checked.iter().map(|c| c.3).sum();
        println!(
            "{name}: generated in {generated_in:.2?}; {} files, {} bytes; zstd -3 total {total_got} (manifest {total_want}); \
             worst file {:.1}% of its allowance ({}: {} vs {}); worst relative deviation of a \
             file of 4 KiB or more {:+.2}% ({})",
            c.files(),
            c.bytes(),
            worst.0 * 100.0,
            worst.2,
            worst.3,
            worst.4,
            worst_large.1 * 100.0,
            worst_large.2
        );
        for (frac, _, rel, got, want) in &checked {
            assert!(
                frac.abs() <= 1.0,
                "{name}: /{rel}: zstd -3 gives {got}, manifest {want}"
            );
        }
        let sum = manifest_totals(m);
        assert_eq!((c.files(), c.bytes()), sum);
    }
}

fn manifest_totals(m: &manifest::Manifest) -> (u64, u64) {
    m.packages
        .iter()
        .map(|p| p.file_totals())
        .fold((0, 0), |(f, b), (pf, pb)| (f + pf, b + pb))
}
