//! The `fuse` model's in-process SquashFS reader against the image builder: every
//! directory, file (full blocks, fragment tails, empty, sparse-looking zeros) and
//! symlink of a tree reads back as it was, from uncompressed images (the pread fast
//! path) and zstd images (the slow path), at every offset that crosses a block.
//! No root needed.

use models::formats::squashfs::{build_image, Compression, ImageOptions};
use models::fuse::image::{Body, Image, InodeRef, Kind};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Path → what it is, as read from the image.
#[derive(Debug, PartialEq)]
enum Entry {
    Dir(u16),
    File(u16, Vec<u8>),
    Symlink(Vec<u8>),
}

fn read_image(image: &Image) -> BTreeMap<String, Entry> {
    fn walk(image: &Image, at: InodeRef, prefix: &str, out: &mut BTreeMap<String, Entry>) {
        let inode = image.inode(at).unwrap();
        let entry = match &inode.body {
            Body::Dir(loc) => {
                for child in image.read_dir(loc).unwrap() {
                    let name = String::from_utf8(child.name.clone()).unwrap();
                    let child_inode = image.inode(child.inode).unwrap();
                    assert_eq!(child.kind, child_inode.kind, "{prefix}/{name}");
                    walk(image, child.inode, &format!("{prefix}/{name}"), out);
                }
                Entry::Dir(inode.mode)
            }
            Body::File(loc) => {
                let mut data = vec![0u8; loc.size as usize];
                assert_eq!(image.read_file(loc, 0, &mut data).unwrap(), data.len());
                Entry::File(inode.mode, data)
            }
            Body::Symlink(target) => Entry::Symlink(target.clone()),
        };
        out.insert(prefix.to_string(), entry);
    }
    let mut out = BTreeMap::new();
    walk(image, image.root, "", &mut out);
    out
}

fn read_tree(root: &Path) -> BTreeMap<String, Entry> {
    fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Entry>) {
        let meta = fs::symlink_metadata(dir).unwrap();
        let mode = (meta.permissions().mode() & 0o7777) as u16;
        let entry = if meta.file_type().is_symlink() {
            Entry::Symlink(
                fs::read_link(dir)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
            )
        } else if meta.is_dir() {
            for child in fs::read_dir(dir).unwrap() {
                let child = child.unwrap();
                let name = child.file_name().into_string().unwrap();
                walk(&child.path(), &format!("{prefix}/{name}"), out);
            }
            Entry::Dir(mode)
        } else {
            Entry::File(mode, fs::read(dir).unwrap())
        };
        out.insert(prefix.to_string(), entry);
    }
    let mut out = BTreeMap::new();
    walk(root, "", &mut out);
    out
}

/// Deterministic bytes that do not compress away entirely.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 3 == 0 {
                b'a'
            } else {
                x as u8
            }
        })
        .collect()
}

fn sample_tree(root: &Path) {
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("usr/lib/x86_64-linux-gnu")).unwrap();
    fs::create_dir_all(root.join("usr/share/empty")).unwrap();
    fs::write(root.join("usr/bin/tool"), bytes(300_001, 1)).unwrap();
    fs::set_permissions(root.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        root.join("usr/lib/x86_64-linux-gnu/libx.so.1"),
        bytes(131_072 * 2, 2),
    )
    .unwrap();
    fs::write(root.join("usr/lib/zeros"), vec![0u8; 400_000]).unwrap();
    fs::write(root.join("usr/share/small"), b"hello\n").unwrap();
    fs::write(root.join("usr/share/empty-file"), b"").unwrap();
    std::os::unix::fs::symlink("x86_64-linux-gnu/libx.so.1", root.join("usr/lib/libx.so")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/tool", root.join("usr/bin/abs")).unwrap();
    // Enough entries that a listing spans several metadata blocks.
    for i in 0..600 {
        fs::write(
            root.join(format!("usr/share/f{i:04}-with-a-long-name")),
            bytes(i * 7, i as u64),
        )
        .unwrap();
    }
}

fn round_trip(compression: Compression) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    sample_tree(&src);
    let out = dir.path().join("img.sqfs");
    let opts = ImageOptions {
        compression,
        ..ImageOptions::default()
    };
    build_image(&src, &out, &opts).unwrap();
    let image = Image::open(&out).unwrap();
    let got = read_image(&image);
    let want = read_tree(&src);
    assert_eq!(got.len(), want.len());
    for (path, entry) in &want {
        let mine = got.get(path).unwrap_or_else(|| panic!("{path} missing"));
        if path.is_empty() {
            continue; // the root's mode is the builder's choice
        }
        assert!(mine == entry, "{path} differs");
    }
    // Partial reads across block and fragment boundaries.
    let tool = fs::read(src.join("usr/bin/tool")).unwrap();
    let root = image.inode(image.root).unwrap();
    let Body::Dir(root_dir) = root.body else {
        panic!("root is no dir")
    };
    let usr = image.read_dir(&root_dir).unwrap();
    let usr = image.inode(usr[0].inode).unwrap();
    let Body::Dir(usr_dir) = usr.body else {
        panic!()
    };
    let bin = image
        .read_dir(&usr_dir)
        .unwrap()
        .into_iter()
        .find(|e| e.name == b"bin")
        .unwrap();
    let Body::Dir(bin_dir) = image.inode(bin.inode).unwrap().body else {
        panic!()
    };
    let tool_entry = image
        .read_dir(&bin_dir)
        .unwrap()
        .into_iter()
        .find(|e| e.name == b"tool")
        .unwrap();
    assert_eq!(tool_entry.kind, Kind::File);
    let Body::File(loc) = image.inode(tool_entry.inode).unwrap().body else {
        panic!()
    };
    assert_eq!(loc.contiguous, compression == Compression::None);
    for at in [
        0usize, 1, 4095, 131_071, 131_072, 262_143, 262_144, 299_990, 300_000,
    ] {
        for len in [1usize, 10, 4096, 131_072, 200_000] {
            let mut buf = vec![0u8; len];
            let n = image.read_file(&loc, at as u64, &mut buf).unwrap();
            let end = (at + len).min(tool.len());
            assert_eq!(&buf[..n], &tool[at..end], "at {at} len {len}");
        }
    }
    assert!(image.cached_metadata_bytes() > 0);
    image.forget_metadata();
    assert_eq!(image.cached_metadata_bytes(), 0);
}

#[test]
fn uncompressed_images_read_back_through_the_pread_fast_path() {
    round_trip(Compression::None);
}

#[test]
fn zstd_images_read_back_through_the_slow_path() {
    round_trip(Compression::Zstd);
}

#[test]
fn a_file_that_is_no_image_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bogus.sqfs");
    fs::write(&path, vec![0x55u8; 8192]).unwrap();
    let err = format!("{:#}", Image::open(&path).unwrap_err());
    assert!(
        err.contains("bogus.sqfs") && err.contains("not a SquashFS image"),
        "{err}"
    );
    fs::write(&path, b"short").unwrap();
    assert!(Image::open(&path).is_err());
}
