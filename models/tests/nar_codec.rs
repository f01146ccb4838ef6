//! The NAR decoder on hand-made bytes: every refusal class of Nix's grammar is refused with
//! its message, the entry's path and the byte offset, and leaves nothing behind; what is
//! at the limits is accepted; and encoder and decoder round-trip a tree.

use models::formats::nar::{dump_path, restore, RestoreOptions};
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

/// One NAR string: length, bytes, zero padding.
fn s(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(bytes);
    out.resize(out.len() + (8 - bytes.len() % 8) % 8, 0);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn file(contents: &[u8]) -> Vec<u8> {
    cat(&[
        &s(b"("),
        &s(b"type"),
        &s(b"regular"),
        &s(b"contents"),
        &s(contents),
        &s(b")"),
    ])
}

fn symlink_node(target: &[u8]) -> Vec<u8> {
    cat(&[
        &s(b"("),
        &s(b"type"),
        &s(b"symlink"),
        &s(b"target"),
        &s(target),
        &s(b")"),
    ])
}

fn dir(entries: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
    let mut out = cat(&[&s(b"("), &s(b"type"), &s(b"directory")]);
    for (name, node) in entries {
        out.extend(cat(&[
            &s(b"entry"),
            &s(b"("),
            &s(b"name"),
            &s(name),
            &s(b"node"),
            node,
            &s(b")"),
        ]));
    }
    out.extend(s(b")"));
    out
}

fn nar(node: &[u8]) -> Vec<u8> {
    cat(&[&s(b"nix-archive-1"), node])
}

/// Where `needle` first occurs in `hay`.
fn offset_of(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle in archive")
}

/// Restores `bytes` into a fresh directory; asserts refusal with a message holding `want`,
/// naming `path` and `offset`, and that nothing was left.
fn refused(bytes: &[u8], want: &str, path: &str, offset: usize) {
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("out");
    let err = restore(
        bytes,
        &dest,
        RestoreOptions {
            canonical: true,
            fsync: false,
        },
    )
    .expect_err("archive must be refused")
    .to_string();
    let prefix = format!("entry {path:?} at byte {offset}: ");
    assert!(err.starts_with(&prefix), "want {prefix:?}..., got {err:?}");
    assert!(err.contains(want), "want {want:?} in {err:?}");
    assert!(!dest.exists(), "{err}: {} left behind", dest.display());
    assert_eq!(fs::read_dir(work.path()).unwrap().count(), 0);
}

fn accepted(bytes: &[u8]) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    restore(bytes, &work.path().join("out"), RestoreOptions::default()).unwrap();
    work
}

#[test]
fn names_out_of_order_are_refused() {
    let bytes = nar(&dir(&[(b"b", file(b"1")), (b"a", file(b"2"))]));
    let at = offset_of(&bytes, &s(b"a"));
    refused(
        &bytes,
        "names are not in ascending order: \"a\" comes after \"b\"",
        "/a",
        at,
    );
}

#[test]
fn duplicate_names_are_refused() {
    let bytes = nar(&dir(&[(b"same", file(b"1")), (b"same", file(b"2"))]));
    let second = offset_of(&bytes[offset_of(&bytes, &s(b"same")) + 1..], &s(b"same"))
        + offset_of(&bytes, &s(b"same"))
        + 1;
    refused(&bytes, "name \"same\" appears twice", "/same", second);
}

#[test]
fn bad_names_are_refused() {
    let cases: [(&[u8], &str, &str); 5] = [
        (b"", "name is empty", "/sub/"),
        (b".", "name may not be \".\"", "/sub/."),
        (b"..", "name may not be \"..\"", "/sub/.."),
        (b"a/b", "name contains \"/\"", "/sub/a/b"),
        (b"a\0b", "name contains a NUL byte", "/sub/a\0b"),
    ];
    for (name, want, path) in cases {
        let bytes = nar(&dir(&[(b"sub", dir(&[(name, file(b"x"))]))]));
        // The bad name is the string after the second "name" keyword.
        let sub = offset_of(&bytes, &s(b"sub"));
        let at = sub + offset_of(&bytes[sub..], &s(b"name")) + 16;
        refused(&bytes, want, path, at);
    }
}

#[test]
fn names_longer_than_255_bytes_are_refused_and_255_is_accepted() {
    let long = vec![b'n'; 256];
    let bytes = nar(&dir(&[(&long, file(b""))]));
    refused(
        &bytes,
        "name of 256 bytes is longer than 255 bytes",
        "/",
        offset_of(&bytes, &s(&long)),
    );
    let ok = vec![b'n'; 255];
    let work = accepted(&nar(&dir(&[(&ok, file(b""))])));
    assert!(work
        .path()
        .join("out")
        .join(String::from_utf8(ok).unwrap())
        .is_file());
}

#[test]
fn symlink_targets_must_have_1_to_4095_bytes() {
    let bytes = nar(&dir(&[(b"l", symlink_node(b""))]));
    refused(
        &bytes,
        "symlink target is empty",
        "/l",
        offset_of(&bytes, &s(b"target")) + 16,
    );
    let long = vec![b't'; 4096];
    let bytes = nar(&dir(&[(b"l", symlink_node(&long))]));
    refused(
        &bytes,
        "symlink target of 4096 bytes is longer than 4095 bytes",
        "/l",
        offset_of(&bytes, &s(b"target")) + 16,
    );
    let ok = vec![b't'; 4095];
    let work = accepted(&nar(&dir(&[(b"l", symlink_node(&ok))])));
    assert_eq!(
        fs::read_link(work.path().join("out/l"))
            .unwrap()
            .as_os_str()
            .len(),
        4095
    );
}

fn nested(levels: usize) -> Vec<u8> {
    let mut node = file(b"deep");
    for _ in 0..levels {
        node = dir(&[(b"d", node)]);
    }
    nar(&node)
}

#[test]
fn nesting_deeper_than_64_is_refused_and_64_is_accepted() {
    // The root and 64 directories below it; the 65th level (the file) is too deep.
    let bytes = nested(65);
    let names: Vec<usize> = bytes
        .windows(16)
        .enumerate()
        .filter(|(_, w)| *w == &s(b"name")[..])
        .map(|(i, _)| i + 16)
        .collect();
    assert_eq!(names.len(), 65);
    let path = format!("/{}d", "d/".repeat(64));
    refused(
        &bytes,
        "directories are nested deeper than 64",
        &path,
        names[64],
    );
    let work = accepted(&nested(64));
    let deepest = work.path().join("out").join("d/".repeat(63) + "d");
    assert_eq!(fs::read(deepest).unwrap(), b"deep");
}

#[test]
fn non_zero_padding_is_refused() {
    let mut bytes = nar(&dir(&[(b"abc", file(b"x"))]));
    let at = offset_of(&bytes, &s(b"abc"));
    bytes[at + 8 + 3] = 1;
    refused(&bytes, "padding bytes are not zero", "/", at);
}

#[test]
fn a_non_empty_executable_marker_is_refused() {
    let node = cat(&[
        &s(b"("),
        &s(b"type"),
        &s(b"regular"),
        &s(b"executable"),
        &s(b"yes"),
        &s(b"contents"),
        &s(b""),
        &s(b")"),
    ]);
    let bytes = nar(&dir(&[(b"x", node)]));
    refused(
        &bytes,
        "executable marker is not empty",
        "/x",
        offset_of(&bytes, &s(b"yes")),
    );
}

#[test]
fn data_after_the_end_is_refused() {
    let mut bytes = nar(&dir(&[(b"f", file(b"data"))]));
    let end = bytes.len();
    bytes.extend(s(b"("));
    refused(&bytes, "data after the end of the archive", "/", end);
}

#[test]
fn truncated_archives_are_refused() {
    let bytes = nar(&dir(&[(b"f", file(&[7u8; 1000]))]));
    let contents = offset_of(&bytes, &s(b"contents")) + 16;
    refused(
        &bytes[..contents + 8 + 500],
        "archive is truncated",
        "/f",
        contents,
    );
    let cut = bytes.len() - 4;
    refused(&bytes[..cut], "archive is truncated", "/", bytes.len() - 16);
}

#[test]
fn bad_magic_is_refused() {
    refused(
        &cat(&[&s(b"nix-archive-2"), &file(b"")]),
        "not a NAR",
        "/",
        0,
    );
    refused(b"", "not a NAR", "/", 0);
    refused(&cat(&[&s(b"tar"), &file(b"")]), "not a NAR", "/", 0);
}

#[test]
fn unknown_tokens_are_refused() {
    let node = cat(&[&s(b"("), &s(b"type"), &s(b"fifo"), &s(b")")]);
    let bytes = nar(&node);
    refused(
        &bytes,
        "expected \"regular\", \"symlink\" or \"directory\", found \"fifo\"",
        "/",
        offset_of(&bytes, &s(b"fifo")),
    );
    // A hostile length where a keyword belongs is refused before anything is allocated.
    let mut huge = s(b"nix-archive-1");
    huge.extend(u64::MAX.to_le_bytes());
    refused(&huge, "string of 18446744073709551615 bytes", "/", 24);
}

/// A tree with every kind of entry the format knows.
fn sample_tree(root: &Path) {
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("usr/share/empty")).unwrap();
    fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("usr/share/empty-file"), b"").unwrap();
    fs::write(root.join("usr/share/größe"), vec![3u8; 300_000]).unwrap();
    symlink("bin", root.join("usr/sbin")).unwrap();
    symlink("/usr/bin/tool", root.join("usr/share/abs")).unwrap();
}

#[test]
fn restore_then_dump_gives_the_same_archive_and_canonical_metadata() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    sample_tree(&src);
    let mut first = Vec::new();
    let size = dump_path(&src, &mut first).unwrap();
    assert_eq!(size, first.len() as u64);
    let out = work.path().join("out");
    let report = restore(
        &first[..],
        &out,
        RestoreOptions {
            canonical: true,
            fsync: true,
        },
    )
    .unwrap();
    assert_eq!(
        (report.files, report.directories, report.symlinks),
        (3, 5, 2)
    );
    assert_eq!(report.nar_bytes, size);
    let mut second = Vec::new();
    dump_path(&out, &mut second).unwrap();
    assert_eq!(first, second);
    let mode = |p: &str| fs::symlink_metadata(out.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("usr/bin/tool"), 0o555);
    assert_eq!(mode("usr/share/empty-file"), 0o444);
    assert_eq!(mode("usr/share/empty"), 0o555);
    assert_eq!(mode(""), 0o555);
    for p in ["", "usr/bin/tool", "usr/share/empty", "usr/sbin"] {
        assert_eq!(fs::symlink_metadata(out.join(p)).unwrap().mtime(), 1, "{p}");
    }
    // The store is read-only; removing it needs the directories made writable.
    models::formats::nar::remove_restored(&out).unwrap();
    assert!(!out.exists());
}

#[test]
fn an_existing_destination_is_not_touched() {
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("out");
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("keep"), b"mine").unwrap();
    let err = restore(&nar(&dir(&[]))[..], &dest, RestoreOptions::default()).unwrap_err();
    assert!(err.to_string().contains("exists"), "{err}");
    assert_eq!(fs::read(dest.join("keep")).unwrap(), b"mine");
}
