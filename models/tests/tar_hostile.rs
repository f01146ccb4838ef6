//! The tar format end to end: packing and unpacking round trips, and hostile archives
//! that must be refused without writing outside the target or leaving a partial package.
//!
//! Hostile archives are built by hand, header by header, because a well-behaved writer
//! refuses to write ".." or absolute names. Every attack aims at a sentinel directory
//! beside the target (`outside/`), so that a successful attack would be visible there and
//! nothing on the host is at risk.

use models::formats::tar::{pack_tree, unpack, Staging, UnpackOptions, UnpackReport};
use models::Durability;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tar::{EntryType, Header};

const ARCHIVE: &str = "mirror/hostile-pkg.tar";

/// Every staging and durability combination the model can run with.
const ALL_OPTIONS: [UnpackOptions; 4] = [
    UnpackOptions {
        staging: Staging::DpkgNew,
        durability: Durability::Native,
        refuse_overwrite: false,
        keep_setid: false,
    },
    UnpackOptions {
        staging: Staging::DpkgNew,
        durability: Durability::None,
        refuse_overwrite: false,
        keep_setid: false,
    },
    UnpackOptions {
        staging: Staging::Direct,
        durability: Durability::None,
        refuse_overwrite: false,
        keep_setid: false,
    },
    UnpackOptions {
        staging: Staging::Direct,
        durability: Durability::Full,
        refuse_overwrite: false,
        keep_setid: false,
    },
];

// ---------------------------------------------------------------------------------------
// Building archives by hand

/// A tar stream written header by header, names copied verbatim into the header.
struct RawTar(Vec<u8>);

impl RawTar {
    fn new() -> Self {
        RawTar(Vec::new())
    }

    fn header(name: &[u8], kind: EntryType, link: &[u8], mode: u32, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        h
    }

    fn push(mut self, header: &Header, data: &[u8]) -> Self {
        self.0.extend_from_slice(header.as_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
        self
    }

    fn dir(self, name: &str) -> Self {
        let h = Self::header(name.as_bytes(), EntryType::Directory, b"", 0o755, 0);
        self.push(&h, b"")
    }

    fn file(self, name: &str, data: &[u8]) -> Self {
        let h = Self::header(
            name.as_bytes(),
            EntryType::Regular,
            b"",
            0o644,
            data.len() as u64,
        );
        self.push(&h, data)
    }

    fn symlink(self, name: &str, target: &str) -> Self {
        let h = Self::header(
            name.as_bytes(),
            EntryType::Symlink,
            target.as_bytes(),
            0o777,
            0,
        );
        self.push(&h, b"")
    }

    fn hard_link(self, name: &str, target: &str) -> Self {
        let h = Self::header(
            name.as_bytes(),
            EntryType::Link,
            target.as_bytes(),
            0o644,
            0,
        );
        self.push(&h, b"")
    }

    fn special(self, name: &str, kind: EntryType) -> Self {
        let h = Self::header(name.as_bytes(), kind, b"", 0o644, 0);
        self.push(&h, b"")
    }

    /// A few good entries, so a refusal comes after the unpack has created things.
    fn good_start(self) -> Self {
        self.dir("good/")
            .dir("good/sub/")
            .file("good/sub/data", &[7u8; 3000])
            .file("good/empty", b"")
            .symlink("good/link", "sub/data")
            .hard_link("good/hard", "good/sub/data")
    }

    fn end(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0u8; 1024]);
        self.0
    }
}

// ---------------------------------------------------------------------------------------
// Looking at trees

/// What a tree holds: per relative path, its kind, mode and content or target.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for dirent in fs::read_dir(dir).unwrap() {
        let path = dirent.unwrap().path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let meta = fs::symlink_metadata(&path).unwrap();
        let mode = meta.mode() & 0o7777;
        let what = if meta.file_type().is_symlink() {
            format!("symlink -> {}", fs::read_link(&path).unwrap().display())
        } else if meta.is_dir() {
            walk(root, &path, out);
            format!("dir {mode:o}")
        } else {
            let data = fs::read(&path).unwrap();
            format!(
                "file {mode:o} {} bytes, sum {}",
                data.len(),
                data.iter().map(|&b| b as u64).sum::<u64>()
            )
        };
        out.insert(rel, what);
    }
}

/// A scratch area: `dest/` to unpack into and `outside/`, the sentinel beside it.
struct Scratch {
    _tmp: tempfile::TempDir,
    top: PathBuf,
    dest: PathBuf,
    outside: PathBuf,
}

impl Scratch {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().to_path_buf();
        let dest = top.join("dest");
        let outside = top.join("outside");
        fs::create_dir(&dest).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"sentinel").unwrap();
        Scratch {
            _tmp: tmp,
            top,
            dest,
            outside,
        }
    }

    /// Everything outside `dest` that an attack could reach: the sentinel's contents and
    /// the directory holding `dest`.
    fn outside_state(&self) -> (BTreeMap<String, String>, Vec<String>) {
        let mut top: Vec<String> = fs::read_dir(&self.top)
            .unwrap()
            .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        (snapshot(&self.outside), top)
    }

    fn unpack(&self, bytes: &[u8], opts: UnpackOptions) -> anyhow::Result<UnpackReport> {
        unpack(Path::new(ARCHIVE), bytes, &self.dest, opts)
    }
}

/// Unpacks a hostile archive with every option set and checks the refusal: an error
/// naming the archive and `entry`, nothing changed outside, and `dest` exactly as
/// before (no `.dpkg-new`, nothing of the failed archive).
fn assert_refused(bytes: &[u8], entry: &str, prepare: impl Fn(&Scratch)) -> String {
    assert_refused_in(|_| (bytes.to_vec(), entry.to_string()), prepare)
}

/// As [`assert_refused`], for archives that aim at the scratch area's own paths.
fn assert_refused_in(
    build: impl Fn(&Scratch) -> (Vec<u8>, String),
    prepare: impl Fn(&Scratch),
) -> String {
    let mut last = String::new();
    for opts in ALL_OPTIONS {
        let scratch = Scratch::new();
        prepare(&scratch);
        let (bytes, entry) = build(&scratch);
        let outside_before = scratch.outside_state();
        let dest_before = snapshot(&scratch.dest);
        let err = match scratch.unpack(&bytes, opts) {
            Ok(report) => panic!("{opts:?}: hostile archive was unpacked: {:?}", report.paths),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            err.starts_with(&format!("unpacking {ARCHIVE}: ")),
            "{opts:?}: {err}"
        );
        assert!(
            err.contains(&format!("entry {entry:?}")),
            "{opts:?}: expected entry {entry:?}: {err}"
        );
        assert_eq!(
            scratch.outside_state(),
            outside_before,
            "{opts:?}: something was written outside"
        );
        assert_eq!(
            snapshot(&scratch.dest),
            dest_before,
            "{opts:?}: a partial package is left: {err}"
        );
        last = err;
    }
    last
}

fn no_preparation(_: &Scratch) {}

// ---------------------------------------------------------------------------------------
// Round trips

/// A tree with what packages hold: modes including setuid and setgid, empty files and
/// directories, long names, relative and absolute symlinks.
fn sample_tree(root: &Path) {
    let mk = |rel: &str, mode: u32| {
        let p = root.join(rel);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    };
    let file = |rel: &str, data: &[u8], mode: u32| {
        let p = root.join(rel);
        fs::write(&p, data).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    };
    mk("usr/bin", 0o755);
    mk("usr/lib/x86_64-linux-gnu", 0o755);
    mk("usr/share/doc/gcc-12-base", 0o755);
    mk("var/empty", 0o700);
    mk("var/mail", 0o2775);
    mk("tmp", 0o1777);
    file("usr/bin/qemu-system-x86_64", &vec![0xabu8; 300_000], 0o755);
    file("usr/bin/su", b"#!/bin/sh\n", 0o4755);
    file("usr/bin/wall", b"wall", 0o2755);
    file("usr/share/doc/gcc-12-base/copyright", b"GPL", 0o644);
    file("usr/share/doc/gcc-12-base/empty", b"", 0o644);
    file(
        "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        &[1, 2, 3],
        0o755,
    );
    let long_dir = format!("usr/share/{}", "long-directory-name-".repeat(6));
    mk(&long_dir, 0o755);
    file(&format!("{long_dir}/{}", "f".repeat(150)), b"long", 0o644);
    mk("lib64", 0o755);
    symlink(
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        root.join("lib64/ld-linux-x86-64.so.2"),
    )
    .unwrap();
    symlink("gcc-12-base", root.join("usr/share/doc/libgcc-s1")).unwrap();
    symlink(
        format!("../share/{}", "t".repeat(120)),
        root.join("usr/bin/dangling-long"),
    )
    .unwrap();
}

fn pack(src: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    pack_tree(src, &mut out).unwrap();
    out
}

#[test]
fn round_trip_gives_the_same_tree_with_every_option() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let bytes = pack(src.path());
    let expected = snapshot(src.path());
    for opts in ALL_OPTIONS {
        // Kept, so the round trip is exact (stripping is tested below).
        let opts = UnpackOptions {
            keep_setid: true,
            ..opts
        };
        let scratch = Scratch::new();
        let report = scratch.unpack(&bytes, opts).unwrap();
        assert_eq!(snapshot(&scratch.dest), expected, "{opts:?}");
        let listed: Vec<PathBuf> = expected.keys().map(|k| Path::new("/").join(k)).collect();
        let mut sorted = report.paths.clone();
        sorted.sort();
        assert_eq!(sorted, listed, "{opts:?}: every entry is listed once");
        assert_eq!(report.files, 7, "{opts:?}");
        assert_eq!(report.bytes, 300_000 + 10 + 4 + 3 + 3 + 4, "{opts:?}");
    }
}

/// A setuid file, a setgid file, a hard link to the setuid one, a setgid directory and a
/// sticky one, in a hand-made archive.
fn setid_archive() -> Vec<u8> {
    let with_mode = |name: &str, kind: EntryType, mode: u32, size: u64| {
        RawTar::header(name.as_bytes(), kind, b"", mode, size)
    };
    RawTar::new()
        .push(&with_mode("bin/", EntryType::Directory, 0o755, 0), b"")
        .push(&with_mode("bin/su", EntryType::Regular, 0o4755, 2), b"su")
        .push(
            &with_mode("bin/wall", EntryType::Regular, 0o2755, 4),
            b"wall",
        )
        .hard_link("bin/su-again", "bin/su")
        .push(&with_mode("mail/", EntryType::Directory, 0o2775, 0), b"")
        .push(&with_mode("tmp/", EntryType::Directory, 0o1777, 0), b"")
        .end()
}

fn modes(root: &Path) -> Vec<(&'static str, u32)> {
    ["bin/su", "bin/su-again", "bin/wall", "mail", "tmp"]
        .into_iter()
        .map(|p| (p, fs::metadata(root.join(p)).unwrap().mode() & 0o7777))
        .collect()
}

#[test]
fn setuid_and_setgid_bits_are_stripped_by_default_and_counted() {
    for opts in ALL_OPTIONS {
        let scratch = Scratch::new();
        let report = scratch.unpack(&setid_archive(), opts).unwrap();
        assert_eq!(
            modes(&scratch.dest),
            [
                ("bin/su", 0o755),
                ("bin/su-again", 0o755),
                ("bin/wall", 0o755),
                ("mail", 0o775),
                ("tmp", 0o1777),
            ],
            "{opts:?}"
        );
        // su, wall and mail: the hard link shares su's inode and is not counted again.
        assert_eq!(report.setid_stripped, 3, "{opts:?}");
    }
}

#[test]
fn setuid_and_setgid_bits_are_kept_when_asked() {
    for opts in ALL_OPTIONS {
        let opts = UnpackOptions {
            keep_setid: true,
            ..opts
        };
        let scratch = Scratch::new();
        let report = scratch.unpack(&setid_archive(), opts).unwrap();
        assert_eq!(
            modes(&scratch.dest),
            [
                ("bin/su", 0o4755),
                ("bin/su-again", 0o4755),
                ("bin/wall", 0o2755),
                ("mail", 0o2775),
                ("tmp", 0o1777),
            ],
            "{opts:?}"
        );
        assert_eq!(report.setid_stripped, 0, "{opts:?}");
    }
}

#[test]
fn packing_is_deterministic_and_sorted() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    sample_tree(a.path());
    sample_tree(b.path());
    let bytes = pack(a.path());
    assert_eq!(bytes, pack(a.path()), "same tree, same bytes");
    assert_eq!(
        bytes,
        pack(b.path()),
        "an identical tree elsewhere, same bytes"
    );

    let scratch = Scratch::new();
    let report = scratch
        .unpack(
            &bytes,
            UnpackOptions {
                staging: Staging::Direct,
                durability: Durability::None,
                refuse_overwrite: false,
                keep_setid: false,
            },
        )
        .unwrap();
    let names: Vec<_> = report
        .paths
        .iter()
        .map(|p| p.as_os_str().as_encoded_bytes().to_vec())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are in byte order of their path");
    assert_eq!(report.paths[0], Path::new("/lib64"));
}

#[test]
fn packed_names_are_relative_with_directories_ending_in_a_slash() {
    let src = tempfile::tempdir().unwrap();
    fs::create_dir(src.path().join("usr")).unwrap();
    fs::write(src.path().join("usr/x"), b"x").unwrap();
    let bytes = pack(src.path());
    let first = Header::from_byte_slice(&bytes[..512]);
    assert_eq!(&*first.path_bytes(), b"usr/");
    assert_eq!(first.uid().unwrap(), 0);
    assert_eq!(first.mtime().unwrap(), 0);
    assert_eq!(first.username().unwrap(), Some("root"));
    let second = Header::from_byte_slice(&bytes[512..1024]);
    assert_eq!(&*second.path_bytes(), b"usr/x");
}

#[test]
fn packing_a_fifo_is_an_error_naming_it() {
    let src = tempfile::tempdir().unwrap();
    let fifo = src.path().join("pipe");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let err = pack_tree(src.path(), Vec::new()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("\"pipe\"") && msg.contains("fifo"), "{msg}");
}

#[test]
fn dpkg_new_staging_leaves_no_staging_files() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let scratch = Scratch::new();
    scratch
        .unpack(
            &pack(src.path()),
            UnpackOptions {
                staging: Staging::DpkgNew,
                durability: Durability::Native,
                refuse_overwrite: false,
                keep_setid: false,
            },
        )
        .unwrap();
    let leftovers: Vec<_> = snapshot(&scratch.dest)
        .into_keys()
        .filter(|k| k.contains(".dpkg-new"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn existing_files_are_replaced_and_existing_directories_kept() {
    for opts in ALL_OPTIONS {
        let scratch = Scratch::new();
        fs::create_dir_all(scratch.dest.join("usr/bin")).unwrap();
        fs::write(scratch.dest.join("usr/bin/x"), b"old version").unwrap();
        fs::write(scratch.dest.join("usr/bin/x.dpkg-new"), b"stale").unwrap();
        symlink("/old/target", scratch.dest.join("usr/bin/l")).unwrap();
        fs::write(scratch.dest.join("usr/other"), b"not ours").unwrap();
        let bytes = RawTar::new()
            .dir("usr/")
            .dir("usr/bin/")
            .file("usr/bin/x", b"new")
            .symlink("usr/bin/l", "x")
            .end();
        scratch.unpack(&bytes, opts).unwrap();
        assert_eq!(
            fs::read(scratch.dest.join("usr/bin/x")).unwrap(),
            b"new",
            "{opts:?}"
        );
        assert_eq!(
            fs::read_link(scratch.dest.join("usr/bin/l")).unwrap(),
            Path::new("x"),
            "{opts:?}"
        );
        assert_eq!(
            fs::read(scratch.dest.join("usr/other")).unwrap(),
            b"not ours",
            "{opts:?}"
        );
        if opts.staging == Staging::DpkgNew {
            assert!(
                !scratch.dest.join("usr/bin/x.dpkg-new").exists(),
                "stale .dpkg-new removed"
            );
        }
        let backups: Vec<String> = snapshot(&scratch.dest)
            .into_keys()
            .filter(|k| k.ends_with(".pkgbench-old"))
            .collect();
        assert!(backups.is_empty(), "{opts:?}: backups left: {backups:?}");
    }
}

#[test]
fn a_directory_where_a_file_goes_is_an_error() {
    let bytes = RawTar::new().good_start().file("usr/x", b"data").end();
    let err = assert_refused(&bytes, "usr/x", |s| {
        fs::create_dir_all(s.dest.join("usr/x")).unwrap()
    });
    assert!(err.contains("directory is where"), "{err}");
}

#[test]
fn dot_slash_names_and_the_root_entry_are_normalised() {
    let bytes = RawTar::new()
        .dir("./")
        .dir("./usr/")
        .file("./usr//x", b"x")
        .end();
    for opts in ALL_OPTIONS {
        let scratch = Scratch::new();
        let report = scratch.unpack(&bytes, opts).unwrap();
        let expected: Vec<PathBuf> = ["/.", "/usr", "/usr/x"].iter().map(PathBuf::from).collect();
        assert_eq!(report.paths, expected);
        assert_eq!(fs::read(scratch.dest.join("usr/x")).unwrap(), b"x");
    }
}

#[test]
fn old_style_directories_are_marked_by_a_trailing_slash() {
    let dir = RawTar::header(b"old/", EntryType::Regular, b"", 0o750, 0);
    let bytes = RawTar::new().push(&dir, b"").file("old/f", b"f").end();
    let scratch = Scratch::new();
    let opts = UnpackOptions {
        staging: Staging::Direct,
        durability: Durability::None,
        refuse_overwrite: false,
        keep_setid: false,
    };
    scratch.unpack(&bytes, opts).unwrap();
    let meta = fs::metadata(scratch.dest.join("old")).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o7777, 0o750);
}

#[test]
fn hard_links_to_earlier_files_share_the_inode() {
    let bytes = RawTar::new()
        .dir("a/")
        .file("a/f", b"shared")
        .dir("b/")
        .hard_link("b/h", "a/f")
        .end();
    for opts in ALL_OPTIONS {
        let scratch = Scratch::new();
        let report = scratch.unpack(&bytes, opts).unwrap();
        let f = fs::metadata(scratch.dest.join("a/f")).unwrap();
        let h = fs::metadata(scratch.dest.join("b/h")).unwrap();
        assert_eq!(f.ino(), h.ino(), "{opts:?}");
        assert_eq!(report.files, 1);
    }
}

#[test]
fn in_tree_symlinked_directories_are_traversed() {
    let bytes = RawTar::new()
        .dir("usr/")
        .dir("usr/share/")
        .file("usr/share/doc/libgcc-s1/README", b"r")
        .end();
    for opts in ALL_OPTIONS {
        let scratch = Scratch::new();
        fs::create_dir_all(scratch.dest.join("usr/share/doc/gcc-12-base")).unwrap();
        symlink("gcc-12-base", scratch.dest.join("usr/share/doc/libgcc-s1")).unwrap();
        scratch.unpack(&bytes, opts).unwrap();
        assert_eq!(
            fs::read(scratch.dest.join("usr/share/doc/gcc-12-base/README")).unwrap(),
            b"r"
        );
    }
}

#[test]
fn missing_parent_directories_are_created_and_removed_on_failure() {
    let good = RawTar::new().file("deep/er/file", b"x").end();
    let scratch = Scratch::new();
    let opts = UnpackOptions {
        staging: Staging::DpkgNew,
        durability: Durability::None,
        refuse_overwrite: false,
        keep_setid: false,
    };
    scratch.unpack(&good, opts).unwrap();
    assert_eq!(
        fs::metadata(scratch.dest.join("deep/er")).unwrap().mode() & 0o7777,
        0o755
    );

    let bad = RawTar::new()
        .file("new/dirs/file", b"x")
        .file("../x", b"x")
        .end();
    assert_refused(&bad, "../x", no_preparation);
}

// ---------------------------------------------------------------------------------------
// Hostile names

#[test]
fn dot_dot_name_is_refused() {
    let bytes = RawTar::new().good_start().file("../x", b"pwned").end();
    let err = assert_refused(&bytes, "../x", no_preparation);
    assert!(err.contains("\"..\""), "{err}");
}

#[test]
fn absolute_name_is_refused() {
    // Aimed at the sentinel, so that a successful attack would be seen there.
    let err = assert_refused_in(
        |s| {
            let name = format!("{}/pwned", s.outside.display());
            (RawTar::new().good_start().file(&name, b"pwned").end(), name)
        },
        no_preparation,
    );
    assert!(err.contains("absolute"), "{err}");
    let bytes = RawTar::new().good_start().file("/abs", b"pwned").end();
    assert_refused(&bytes, "/abs", no_preparation);
}

#[test]
fn climbing_name_from_a_pax_header_is_refused() {
    // The name in the header is harmless; the pax record replaces it.
    let record = b"24 path=../pax-escape/x\n";
    let pax = RawTar::header(
        b"PaxHeaders/x",
        EntryType::XHeader,
        b"",
        0o644,
        record.len() as u64,
    );
    let file = RawTar::header(b"harmless", EntryType::Regular, b"", 0o644, 5);
    let bytes = RawTar::new()
        .good_start()
        .push(&pax, record)
        .push(&file, b"pwned")
        .end();
    assert_refused(&bytes, "../pax-escape/x", no_preparation);
}

#[test]
fn climbing_name_is_refused() {
    let bytes = RawTar::new()
        .good_start()
        .dir("a/")
        .file("a/../../x", b"pwned")
        .end();
    assert_refused(&bytes, "a/../../x", no_preparation);
}

#[test]
fn empty_name_is_refused() {
    let bytes = RawTar::new().good_start().file("", b"pwned").end();
    let err = assert_refused(&bytes, "", no_preparation);
    assert!(err.contains("empty"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Hostile links

#[test]
fn hard_link_to_an_absolute_path_is_refused() {
    let bytes = RawTar::new()
        .good_start()
        .hard_link("good/passwd", "/etc/passwd")
        .end();
    let err = assert_refused(&bytes, "good/passwd", no_preparation);
    assert!(err.contains("absolute"), "{err}");
}

#[test]
fn hard_link_climbing_out_is_refused() {
    let bytes = RawTar::new()
        .good_start()
        .hard_link("good/h", "../outside/keep")
        .end();
    assert_refused(&bytes, "good/h", no_preparation);
}

#[test]
fn hard_link_to_a_file_not_in_the_archive_is_refused() {
    let bytes = RawTar::new()
        .good_start()
        .hard_link("good/h", "preexisting")
        .end();
    assert_refused(&bytes, "good/h", |s| {
        fs::write(s.dest.join("preexisting"), b"p").unwrap()
    });
}

#[test]
fn symlink_climbing_out_is_refused() {
    let bytes = RawTar::new()
        .good_start()
        .dir("a/")
        .symlink("a/l", "../../outside")
        .file("a/l/pwned", b"x")
        .end();
    let err = assert_refused(&bytes, "a/l", no_preparation);
    assert!(err.contains("climbs above"), "{err}");
}

#[test]
fn writing_through_a_planted_absolute_symlink_is_refused() {
    let err = assert_refused_in(
        |s| {
            let target = s.outside.display().to_string();
            let bytes = RawTar::new()
                .good_start()
                .symlink("evil", &target)
                .file("evil/passwd", b"pwned")
                .end();
            (bytes, "evil/passwd".to_string())
        },
        no_preparation,
    );
    assert!(err.contains("\"evil\""), "{err}");
    // Also with /etc itself, as the attack would be written.
    let bytes = RawTar::new()
        .good_start()
        .symlink("evil", "/etc")
        .file("evil/passwd", b"pwned")
        .end();
    assert_refused(&bytes, "evil/passwd", no_preparation);
}

#[test]
fn writing_through_a_symlink_already_in_the_target_is_refused() {
    let bytes = RawTar::new()
        .good_start()
        .file("evil/passwd", b"pwned")
        .end();
    let err = assert_refused(&bytes, "evil/passwd", |s| {
        symlink(&s.outside, s.dest.join("evil")).unwrap()
    });
    assert!(
        err.contains("outside the target through a symlink"),
        "{err}"
    );

    // A directory entry where the symlink is: the symlink is kept only if it stays inside.
    let bytes = RawTar::new()
        .good_start()
        .dir("evil/")
        .file("evil/passwd", b"pwned")
        .end();
    let err = assert_refused(&bytes, "evil/", |s| {
        symlink(&s.outside, s.dest.join("evil")).unwrap()
    });
    assert!(
        err.contains("outside the target through a symlink"),
        "{err}"
    );

    let bytes = RawTar::new()
        .good_start()
        .file("rel/passwd", b"pwned")
        .end();
    let err = assert_refused(&bytes, "rel/passwd", |s| {
        symlink("../outside", s.dest.join("rel")).unwrap()
    });
    assert!(
        err.contains("outside the target through a symlink"),
        "{err}"
    );

    let bytes = RawTar::new()
        .good_start()
        .file("mid/deeper/passwd", b"pwned")
        .end();
    assert_refused(&bytes, "mid/deeper/passwd", |s| {
        fs::create_dir(s.dest.join("mid")).unwrap();
        symlink(&s.outside, s.dest.join("mid/deeper")).unwrap();
    });
}

#[test]
fn replacing_a_symlink_in_the_final_component_never_follows_it() {
    // dest/keep -> ../outside/keep: the entry "keep" replaces the link, not the sentinel.
    for opts in ALL_OPTIONS {
        let scratch = Scratch::new();
        symlink("../outside/keep", scratch.dest.join("keep")).unwrap();
        let before = scratch.outside_state();
        scratch
            .unpack(&RawTar::new().file("keep", b"new").end(), opts)
            .unwrap();
        assert_eq!(scratch.outside_state(), before, "{opts:?}");
        assert!(fs::symlink_metadata(scratch.dest.join("keep"))
            .unwrap()
            .is_file());
    }
}

// ---------------------------------------------------------------------------------------
// Special files and damaged archives

#[test]
fn character_device_is_refused() {
    let bytes = RawTar::new()
        .good_start()
        .special("good/null", EntryType::Char)
        .end();
    let err = assert_refused(&bytes, "good/null", no_preparation);
    assert!(err.contains("character device"), "{err}");
}

#[test]
fn block_device_is_refused() {
    let bytes = RawTar::new()
        .good_start()
        .special("good/sda", EntryType::Block)
        .end();
    assert_refused(&bytes, "good/sda", no_preparation);
}

#[test]
fn fifo_is_refused() {
    let bytes = RawTar::new()
        .good_start()
        .special("good/pipe", EntryType::Fifo)
        .end();
    assert_refused(&bytes, "good/pipe", no_preparation);
}

#[test]
fn truncated_data_is_refused() {
    let header = RawTar::header(b"good/big", EntryType::Regular, b"", 0o644, 100_000);
    let mut bytes = RawTar::new().good_start().end();
    bytes.truncate(bytes.len() - 1024);
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[1u8; 5000]);
    let err = assert_refused(&bytes, "good/big", no_preparation);
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn archive_cut_at_an_entry_boundary_is_refused() {
    let mut bytes = RawTar::new().good_start().file("good/last", b"x").end();
    bytes.truncate(bytes.len() - 1024);
    let err = assert_refused(&bytes, "good/last", no_preparation);
    assert!(err.contains("end-of-archive"), "{err}");
}

#[test]
fn bad_header_checksum_is_refused() {
    let mut header = RawTar::header(b"good/corrupt", EntryType::Regular, b"", 0o644, 4);
    header.as_mut_bytes()[110] ^= 0x01; // inside the mode field, after the checksum
    let bytes = RawTar::new().good_start().push(&header, b"data").end();
    let err = assert_refused(&bytes, "good/corrupt", no_preparation);
    assert!(err.contains("checksum"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Rollback

#[test]
fn failure_mid_archive_rolls_back_everything_this_unpack_created() {
    let bytes = RawTar::new()
        .dir("usr/")
        .dir("usr/bin/")
        .file("usr/bin/tool", &[5u8; 70_000])
        .symlink("usr/bin/alias", "tool")
        .dir("usr/lib/")
        .dir("usr/lib/deep/")
        .file("usr/lib/deep/lib.so", b"ELF")
        .hard_link("usr/lib/deep/lib.so.1", "usr/lib/deep/lib.so")
        .file("usr/lib/deep/../../../../escape", b"x")
        .end();
    // What was there before stays: a directory of the archive and a file in it.
    assert_refused(&bytes, "usr/lib/deep/../../../../escape", |s| {
        fs::create_dir(s.dest.join("usr")).unwrap();
        fs::write(s.dest.join("usr/preexisting"), b"old").unwrap();
    });
}

/// DEST holds files a and b and a symlink l; the archive replaces a and l, adds c, then
/// turns hostile. Every staging must leave a, b and l as they were and no backup names.
#[test]
fn a_failed_unpack_puts_back_the_files_it_replaced() {
    let prepare = |s: &Scratch| {
        fs::write(s.dest.join("a"), b"old a").unwrap();
        fs::write(s.dest.join("b"), b"old b").unwrap();
        symlink("b", s.dest.join("l")).unwrap();
    };
    let replacing = || {
        RawTar::new()
            .file("a", b"new a, longer than the old")
            .symlink("l", "a")
            .file("c", b"new c")
    };
    let hostile = replacing().file("../escape", b"x").end();
    assert_refused(&hostile, "../escape", prepare);
    let header = RawTar::header(b"d", EntryType::Regular, b"", 0o644, 100_000);
    let mut truncated = replacing().end();
    truncated.truncate(truncated.len() - 1024);
    truncated.extend_from_slice(header.as_bytes());
    truncated.extend_from_slice(&[1u8; 5000]);
    let err = assert_refused(&truncated, "d", prepare);
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn direct_staging_refuses_to_overwrite_a_backup_left_behind() {
    let bytes = RawTar::new().file("a", b"new").end();
    for opts in ALL_OPTIONS.iter().filter(|o| o.staging == Staging::Direct) {
        let scratch = Scratch::new();
        fs::write(scratch.dest.join("a"), b"old").unwrap();
        fs::write(scratch.dest.join(".a.pkgbench-old"), b"older").unwrap();
        let before = snapshot(&scratch.dest);
        let err = format!("{:#}", scratch.unpack(&bytes, *opts).unwrap_err());
        assert!(
            err.contains("entry \"a\"") && err.contains("\".a.pkgbench-old\" is taken"),
            "{opts:?}: {err}"
        );
        assert_eq!(snapshot(&scratch.dest), before, "{opts:?}");
    }
}

#[test]
fn backup_names_in_the_archive_are_refused() {
    let bytes = RawTar::new()
        .good_start()
        .file("good/.x.pkgbench-old", b"x")
        .end();
    let err = assert_refused(&bytes, "good/.x.pkgbench-old", no_preparation);
    assert!(err.contains("reserved for backups"), "{err}");
}

#[test]
fn duplicate_entries_are_refused() {
    let bytes = RawTar::new()
        .good_start()
        .file("good/sub/data", b"again")
        .end();
    let err = assert_refused(&bytes, "good/sub/data", no_preparation);
    assert!(err.contains("twice"), "{err}");
}

#[test]
fn dpkg_new_names_in_the_archive_are_refused() {
    let bytes = RawTar::new()
        .good_start()
        .file("good/x.dpkg-new", b"x")
        .end();
    assert_refused(&bytes, "good/x.dpkg-new", no_preparation);
}
