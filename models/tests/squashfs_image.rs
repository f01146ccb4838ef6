//! The SquashFS image builder without mounting anything: the same tree gives the same
//! bytes with every compression, `unsquashfs -lln` lists the tree that was packed (with
//! owner 0, time 0 and the modes on disk), libsquashfs (through `squashfs-ng`) reads back
//! every file's content, and bad input is refused with the path. Mounting the images
//! (kernel squashfs and squashfuse) needs root: `overlay_images.rs`.

use models::formats::squashfs::{build_image, Compression, ImageOptions, DEFAULT_BLOCK_SIZE};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

const ALL: [Compression; 4] = [
    Compression::None,
    Compression::Zstd,
    Compression::Lz4,
    Compression::Xz,
];

/// A package-shaped tree: nested directories, a file larger than two blocks (with a
/// tail), an empty file, executables, setuid, absolute and relative symlinks, a name
/// with a space and one with a non-UTF-8 byte.
fn package_tree(root: &Path) {
    for dir in [
        "usr/bin",
        "usr/lib/x86_64-linux-gnu/qemu",
        "usr/share/doc/pkg",
        "etc",
    ] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(root.join("usr/lib/x86_64-linux-gnu/libbig.so.1"), &big).unwrap();
    fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    fs::set_permissions(root.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("usr/bin/suid"), b"suid").unwrap();
    fs::set_permissions(
        root.join("usr/bin/suid"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fs::write(root.join("usr/share/doc/pkg/empty"), b"").unwrap();
    fs::write(root.join("usr/share/doc/pkg/with space"), b"a b").unwrap();
    fs::write(root.join("etc/conf"), vec![b'x'; 5000]).unwrap();
    let odd: &std::ffi::OsStr = std::os::unix::ffi::OsStrExt::from_bytes(b"etc/caf\xe9");
    fs::write(root.join(odd), b"cafe").unwrap();
    symlink(
        "libbig.so.1",
        root.join("usr/lib/x86_64-linux-gnu/libbig.so"),
    )
    .unwrap();
    symlink("/usr/bin/tool", root.join("usr/bin/tool-abs")).unwrap();
    symlink(
        "../../bin/tool",
        root.join("usr/lib/x86_64-linux-gnu/qemu/rel"),
    )
    .unwrap();
    fs::set_permissions(root.join("etc"), fs::Permissions::from_mode(0o700)).unwrap();
}

fn opts(compression: Compression) -> ImageOptions {
    ImageOptions {
        compression,
        block_size: DEFAULT_BLOCK_SIZE,
        strip_setid: false,
    }
}

#[test]
fn the_same_tree_gives_the_same_bytes_with_every_compression() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    package_tree(&a);
    package_tree(&b);
    // Different times and a different creation order must not matter.
    fs::write(b.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    let mut sizes = BTreeMap::new();
    for c in ALL {
        let ia = work.path().join(format!("a-{}.sqfs", c.as_str()));
        let ib = work.path().join(format!("b-{}.sqfs", c.as_str()));
        let ra = build_image(&a, &ia, &opts(c)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let rb = build_image(&b, &ib, &opts(c)).unwrap();
        assert_eq!(ra, rb);
        assert_eq!(fs::read(&ia).unwrap(), fs::read(&ib).unwrap(), "{c:?}");
        assert_eq!(ra.size_bytes % 4096, 0);
        assert_eq!(fs::metadata(&ia).unwrap().len(), ra.size_bytes);
        sizes.insert(c.as_str(), ra.size_bytes);
    }
    // 300 kB of poorly compressible bytes dominate: uncompressed is the largest.
    assert!(
        sizes["none"] > sizes["zstd"] && sizes["none"] > sizes["xz"],
        "{sizes:?}"
    );
}

#[test]
fn uncompressed_images_hold_file_bytes_verbatim() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    // Highly compressible: any compression at all would shrink it below its size.
    let text = "the quick brown fox jumps over the lazy dog\n".repeat(4000);
    fs::write(src.join("text"), &text).unwrap();
    let img = work.path().join("img.sqfs");
    let report = build_image(&src, &img, &ImageOptions::default()).unwrap();
    let bytes = fs::read(&img).unwrap();
    assert!(report.bytes_used > text.len() as u64, "{report:?}");
    assert!(
        bytes.windows(text.len()).any(|w| w == text.as_bytes()),
        "file data is not stored verbatim"
    );
    let zstd = work.path().join("zstd.sqfs");
    assert!(
        build_image(&src, &zstd, &opts(Compression::Zstd))
            .unwrap()
            .bytes_used
            < 4096
    );
}

/// `unsquashfs -lln`: "MODE UID/GID SIZE DATE TIME squashfs-root/PATH[ -> TARGET]".
fn unsquashfs_listing(img: &Path) -> BTreeMap<String, String> {
    let out = Command::new("unsquashfs")
        .args(["-lln", "-no-progress"])
        .arg(img)
        .output()
        .expect("unsquashfs (squashfs-tools) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut listing = BTreeMap::new();
    for line in text.lines().filter(|l| l.contains("squashfs-root")) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (_, rest) = line.split_once("squashfs-root").unwrap();
        let (path, target) = match rest.split_once(" -> ") {
            Some((p, t)) => (p, format!(" -> {t}")),
            None => (rest, String::new()),
        };
        // A directory's size is unsquashfs's own count: compare the rest.
        let size = if f[0].starts_with('d') { "DIR" } else { f[2] };
        listing.insert(
            path.trim_start_matches('/').to_string(),
            format!("{} {} {size}{target}", f[0], f[1]),
        );
    }
    listing
}

/// The same listing computed from the source tree.
fn expected_listing(src: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let meta = fs::symlink_metadata(dir).unwrap();
        let rel = dir
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        out.insert(rel.clone(), line(dir, &meta));
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_string_lossy().into_owned(),
                    line(&p, &m),
                );
            }
        }
    }
    fn line(p: &Path, m: &fs::Metadata) -> String {
        let kind = if m.is_dir() {
            'd'
        } else if m.is_symlink() {
            'l'
        } else {
            '-'
        };
        let mode = m.mode();
        let bit = |b: u32, c: char| if mode & b != 0 { c } else { '-' };
        let ux = match (mode & 0o100 != 0, mode & 0o4000 != 0) {
            (true, true) => 's',
            (false, true) => 'S',
            (true, false) => 'x',
            _ => '-',
        };
        let perms: String = [
            kind,
            bit(0o400, 'r'),
            bit(0o200, 'w'),
            ux,
            bit(0o40, 'r'),
            bit(0o20, 'w'),
            bit(0o10, 'x'),
            bit(0o4, 'r'),
            bit(0o2, 'w'),
            bit(0o1, 'x'),
        ]
        .iter()
        .collect();
        let (size, target) = if m.is_symlink() {
            let t = fs::read_link(p).unwrap().to_string_lossy().into_owned();
            (t.len() as u64, format!(" -> {t}"))
        } else if m.is_dir() {
            return format!("{perms} 0/0 DIR");
        } else {
            (m.len(), String::new())
        };
        format!("{perms} 0/0 {size}{target}")
    }
    let mut out = BTreeMap::new();
    walk(src, src, &mut out);
    out
}

/// The models' packers strip setuid and setgid from files; everything else stays.
#[test]
fn strip_setid_clears_only_the_setuid_and_setgid_bits_of_files() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    package_tree(&src);
    let img = work.path().join("stripped.sqfs");
    let stripped = ImageOptions {
        strip_setid: true,
        ..opts(Compression::None)
    };
    build_image(&src, &img, &stripped).unwrap();
    let mut expected = expected_listing(&src);
    let suid = expected.get_mut("usr/bin/suid").unwrap();
    assert!(suid.starts_with("-rws"), "{suid}");
    *suid = suid.replacen("-rws", "-rwx", 1);
    assert_eq!(unsquashfs_listing(&img), expected);
}

#[test]
fn unsquashfs_lists_the_packed_tree_with_owner_0_and_time_0() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    package_tree(&src);
    let expected = expected_listing(&src);
    for c in ALL {
        let img = work.path().join(format!("{}.sqfs", c.as_str()));
        build_image(&src, &img, &opts(c)).unwrap();
        let listing = unsquashfs_listing(&img);
        assert_eq!(listing, expected, "{c:?}");
        let all = Command::new("unsquashfs")
            .args(["-lln", "-no-progress"])
            .arg(&img)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&all.stdout);
        assert!(
            text.lines()
                .filter(|l| l.contains("squashfs-root"))
                .all(|l| l.contains(" 1970-01-01 00:00 ")),
            "{text}"
        );
    }
}

#[test]
fn libsquashfs_reads_back_every_file_and_symlink() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    package_tree(&src);
    for c in ALL {
        let img = work.path().join(format!("{}.sqfs", c.as_str()));
        build_image(&src, &img, &opts(c)).unwrap();
        let archive = squashfs_ng::read::Archive::open(&img).unwrap();
        let mut checked = 0;
        for rel in [
            "usr/lib/x86_64-linux-gnu/libbig.so.1",
            "usr/bin/tool",
            "usr/share/doc/pkg/empty",
            "usr/share/doc/pkg/with space",
            "etc/conf",
        ] {
            let node = archive.get(format!("/{rel}")).unwrap().unwrap();
            let bytes = node.as_file().unwrap().to_bytes().unwrap();
            assert_eq!(bytes, fs::read(src.join(rel)).unwrap(), "{c:?} {rel}");
            assert_eq!(node.uid().unwrap(), 0);
            assert_eq!(node.mtime(), 0);
            checked += 1;
        }
        let link = archive.get("/usr/bin/tool-abs").unwrap().unwrap();
        match link.data().unwrap() {
            squashfs_ng::read::Data::Symlink(t) => assert_eq!(t, Path::new("/usr/bin/tool")),
            other => panic!("{c:?}: /usr/bin/tool-abs is {}", other.name()),
        }
        assert_eq!(checked, 5);
    }
}

#[test]
fn a_fifo_or_a_bad_block_size_is_refused_and_leaves_no_image() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let fifo = src.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let img = work.path().join("img.sqfs");
    let err = format!(
        "{:#}",
        build_image(&src, &img, &ImageOptions::default()).unwrap_err()
    );
    assert!(
        err.contains("fifo: only directories, regular files and symlinks"),
        "{err}"
    );
    assert!(!img.exists());
    fs::remove_file(&fifo).unwrap();
    let bad = ImageOptions {
        block_size: 100_000,
        ..Default::default()
    };
    let err = format!("{:#}", build_image(&src, &img, &bad).unwrap_err());
    assert!(err.contains("block size 100000"), "{err}");
    let err = format!(
        "{:#}",
        build_image(&src.join("missing"), &img, &ImageOptions::default()).unwrap_err()
    );
    assert!(err.contains("missing"), "{err}");
    assert!(!img.exists());
    assert!(Compression::parse("gzip").is_err());
}
