//! The `nar` model and its codec against the real thing: the encoder's bytes equal
//! `nix-store --dump` (Debian's nix-bin, which scripts/setup installs) for every package
//! of both embedded corpora and for a tree of odd entries; `nix-store --restore` and the
//! decoder agree; and the conformance suite on a subset of the qemu closure. None of
//! this needs root. (`harness pack/unpack --format nar` is tested in the harness.)

use models::conformance::run_conformance;
use models::formats::nar::{dump_path, restore, RestoreOptions};
use models::nar::NarModel;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use workloads::corpus;

/// Libraries with a dependency cycle (libc6 and libgcc-s1), shared directories, symlinks
/// to directories (`usr/share/doc/libgcc-s1 -> gcc-12-base`) and executables.
const SUBSET: &str = "debian-qemu:libc6,libgcc-s1,gcc-12-base,tar,dpkg,libacl1,libselinux1,libpcre2-8-0,libbz2-1.0,liblzma5,libzstd1,zlib1g,libmd0,libcap2,libgmp10,libssl3,libglib2.0-0,libpixman-1-0";

fn nix_store_dump(path: &Path) -> Vec<u8> {
    let out = Command::new("nix-store")
        .arg("--dump")
        .arg(path)
        .output()
        .expect("nix-store (Debian package nix-bin, installed by scripts/setup) must be on PATH");
    assert!(
        out.status.success(),
        "nix-store --dump {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn our_dump(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    dump_path(path, &mut out).unwrap();
    out
}

fn identical_on_corpus(name: &str) {
    let cache = tempfile::tempdir().unwrap();
    let corpus = corpus::open(name, cache.path(), &|_, _| {}).unwrap();
    assert!(
        corpus.packages.len() >= 50,
        "{name}: {}",
        corpus.packages.len()
    );
    for pkg in &corpus.packages {
        let want = nix_store_dump(&pkg.root);
        let got = our_dump(&pkg.root);
        assert!(
            want == got,
            "{name}: package {} differs from nix-store --dump ({} vs {} bytes)",
            pkg.name,
            got.len(),
            want.len()
        );
    }
}

#[test]
fn dump_is_byte_identical_to_nix_store_on_debian_qemu() {
    identical_on_corpus("debian-qemu");
}

#[test]
fn dump_is_byte_identical_to_nix_store_on_debian_python3() {
    identical_on_corpus("debian-python3");
}

/// Empty files and directories, executables, symlinks to directories, non-ASCII names,
/// names of 255 bytes.
fn odd_tree(root: &Path) {
    let long = "x".repeat(255);
    let long_utf8 = "é".repeat(127) + "a"; // 255 bytes of UTF-8
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join(&long).join(&long)).unwrap();
    fs::write(root.join("empty-file"), b"").unwrap();
    fs::write(root.join("bin/run"), b"#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(root.join("bin/run"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("bin/empty-exec"), b"").unwrap();
    fs::set_permissions(
        root.join("bin/empty-exec"),
        fs::Permissions::from_mode(0o711),
    )
    .unwrap();
    fs::write(root.join("bin/seven"), b"1234567").unwrap();
    fs::write(root.join("bin/eight"), b"12345678").unwrap();
    symlink("bin", root.join("link-to-dir")).unwrap();
    symlink("/usr/lib/x86_64-linux-gnu", root.join("abs-link")).unwrap();
    fs::write(root.join("größe-日本語"), "ü".repeat(1000)).unwrap();
    fs::write(root.join(&long_utf8), b"long").unwrap();
    fs::write(root.join(&long).join(&long).join(&long), b"deep").unwrap();
    // Byte order, not locale order: "B" < "a" < "b" < "ä".
    for n in ["a", "B", "b", "ä"] {
        fs::write(root.join("empty-dir").with_file_name(n), n).unwrap();
    }
}

#[test]
fn dump_is_byte_identical_to_nix_store_on_odd_entries_and_restores_agree() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    odd_tree(&src);
    let nar = nix_store_dump(&src);
    assert_eq!(our_dump(&src), nar);

    // Our restore of Nix's archive dumps back to the same bytes, and so does Nix's.
    let ours = work.path().join("ours");
    restore(&nar[..], &ours, RestoreOptions::default()).unwrap();
    assert_eq!(nix_store_dump(&ours), nar);
    let theirs = work.path().join("theirs");
    let mut child = Command::new("nix-store")
        .arg("--restore")
        .arg(&theirs)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&nar).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(our_dump(&theirs), nar);
}

#[test]
fn nar_passes_conformance_on_a_subset_with_a_dependency_cycle() {
    let work = tempfile::tempdir().unwrap();
    let corpus = corpus::open(SUBSET, &work.path().join("corpora"), &|_, _| {}).unwrap();
    assert!(corpus.packages.len() >= 15, "{}", corpus.packages.len());
    let mut model = NarModel::new();
    let times = run_conformance(&mut model, &corpus, work.path()).unwrap();
    for phase in ["fetch", "restore", "verify", "register", "profile"] {
        assert!(
            times.get(phase).is_some_and(|d| !d.is_zero()),
            "phase {phase} not timed: {times:?}"
        );
    }
    // Every package and the profile are valid paths.
    let db = models::nar::db::StoreDb::open(&work.path().join("target/nix/var/nix/db")).unwrap();
    assert_eq!(db.valid_paths().unwrap().len(), corpus.packages.len() + 1);
    assert!(db.reference_count().unwrap() > corpus.packages.len() as u64);
}
