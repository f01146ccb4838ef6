//! Fuzzing tar ingestion as property tests (cargo-fuzz needs nightly; this toolchain is
//! stable). Proves, with every staging and durability the `hooks` model uses, for
//! archives of random entries with hostile names, link targets and kinds, for valid
//! archives of random trees (the seed corpus, packed in the test) and for those archives
//! mutated (bytes flipped, cut, or header fields rewritten with a correct checksum), and
//! for arbitrary bytes: `unpack` never panics, never writes outside its destination
//! (a sentinel directory beside it, and the directory holding both, stay as they were,
//! even with symlinks leading out planted in the destination first), and a refused
//! archive leaves the destination as it was. Valid archives unpack to the packed tree.
//!
//! Runs 64 cases per property by default; `PROPTEST_CASES=100000 cargo test --release -p
//! models --test prop_tar` fuzzes longer.

use models::formats::tar::{pack_tree, unpack, Staging, UnpackOptions};
use models::Durability;
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tar::{EntryType, Header};

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Setuid and setgid bits kept, so that a valid archive unpacks to exactly its tree;
/// stripping them has its own test in `tar_hostile.rs`.
const OPTIONS: [UnpackOptions; 3] = [
    UnpackOptions {
        staging: Staging::DpkgNew,
        durability: Durability::None,
        refuse_overwrite: false,
        keep_setid: true,
    },
    UnpackOptions {
        staging: Staging::DpkgNew,
        durability: Durability::Native,
        refuse_overwrite: false,
        keep_setid: true,
    },
    UnpackOptions {
        staging: Staging::Direct,
        durability: Durability::None,
        refuse_overwrite: false,
        keep_setid: true,
    },
];

/// Kind, mode, and content or target of every path below `root`.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for dirent in fs::read_dir(dir).unwrap() {
            let path = dirent.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("symlink {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                walk(root, &path, out);
                format!("dir {:o}", meta.mode() & 0o7777)
            } else {
                format!(
                    "file {:o} {:?}",
                    meta.mode() & 0o7777,
                    fs::read(&path).unwrap()
                )
            };
            out.insert(rel, what);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// `top/outside/keep` (the sentinel), `top/box/dest` (the destination) and planted
/// symlinks in it that lead out: relative, and absolute to the sentinel.
struct Scratch {
    _tmp: tempfile::TempDir,
    top: PathBuf,
    dest: PathBuf,
}

impl Scratch {
    fn new(plant: bool) -> Scratch {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().to_path_buf();
        let dest = top.join("box/dest");
        fs::create_dir_all(&dest).unwrap();
        fs::create_dir(top.join("outside")).unwrap();
        fs::write(top.join("outside/keep"), b"sentinel").unwrap();
        if plant {
            symlink("../../outside", dest.join("up")).unwrap();
            symlink(top.join("outside"), dest.join("abs")).unwrap();
        }
        Scratch {
            _tmp: tmp,
            top,
            dest,
        }
    }

    /// Everything outside `dest` an escape could touch (names climb at most two levels).
    fn outside(&self) -> (Vec<String>, Vec<String>, BTreeMap<String, String>) {
        let names = |d: &Path| -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        (
            names(&self.top),
            names(&self.top.join("box")),
            snapshot(&self.top.join("outside")),
        )
    }
}

/// Unpacks `bytes` with every option set into a fresh scratch area and checks the
/// contract; returns the unpacked tree when every option accepted the archive.
fn check_unpack(
    bytes: &[u8],
    plant: bool,
) -> Result<Option<BTreeMap<String, String>>, TestCaseError> {
    let mut accepted = None;
    for opts in OPTIONS {
        let scratch = Scratch::new(plant);
        let outside = scratch.outside();
        let before = snapshot(&scratch.dest);
        let outcome = unpack(Path::new("mirror/fuzz.tar"), bytes, &scratch.dest, opts);
        prop_assert_eq!(
            scratch.outside(),
            outside.clone(),
            "{:?}: written outside dest",
            opts
        );
        match outcome {
            Err(e) => {
                let message = format!("{e:#}");
                prop_assert!(
                    message.starts_with("unpacking mirror/fuzz.tar: "),
                    "{}",
                    message
                );
                // Both stagings leave dest exactly as before: Direct puts back what it
                // replaced (the planted symlinks, when an entry has their name).
                let after = snapshot(&scratch.dest);
                prop_assert_eq!(after, before, "{:?}: partial package: {}", opts, message);
            }
            Ok(_) => {
                // No entry may be a device, fifo or socket.
                for (path, what) in snapshot(&scratch.dest) {
                    prop_assert!(
                        ["dir", "file", "symlink"]
                            .iter()
                            .any(|k| what.starts_with(k)),
                        "{path}: {what}"
                    );
                }
                if !plant {
                    accepted = Some(snapshot(&scratch.dest));
                }
            }
        }
    }
    Ok(accepted)
}

// ---------------------------------------------------------------------------------------
// Archives of random hostile entries

#[derive(Debug, Clone)]
enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink,
    HardLink,
    Char,
    Block,
    Fifo,
}

#[derive(Debug, Clone)]
struct RawEntry {
    name: String,
    link: String,
    kind: Kind,
    mode: u32,
}

fn component() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "a",
        "b",
        "up",
        "abs",
        "..",
        ".",
        "",
        "keep",
        "x.dpkg-new",
        "outside",
    ])
}

fn path_name() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(component(), 1..4),
    )
        .prop_map(|(absolute, dot_slash, parts)| {
            let mut name = parts.join("/");
            // At most two "..", so an escape lands in the scratch area, never beyond it.
            while name.matches("..").count() > 2 {
                name = name.replacen("..", "a", 1);
            }
            if absolute {
                name.insert(0, '/');
            } else if dot_slash {
                name.insert_str(0, "./");
            }
            name
        })
}

fn entry() -> impl Strategy<Value = RawEntry> {
    let kind = prop_oneof![
        3 => Just(Kind::Dir),
        4 => prop::collection::vec(any::<u8>(), 0..700).prop_map(Kind::File),
        3 => Just(Kind::Symlink),
        2 => Just(Kind::HardLink),
        1 => Just(Kind::Char),
        1 => Just(Kind::Block),
        1 => Just(Kind::Fifo),
    ];
    let mode = prop::sample::select(vec![0o755u32, 0o644, 0o4755, 0o2755, 0o1777, 0o000]);
    (path_name(), path_name(), kind, mode).prop_map(|(name, link, kind, mode)| RawEntry {
        name,
        link,
        kind,
        mode,
    })
}

fn header_for(e: &RawEntry) -> (Header, &[u8]) {
    let mut h = Header::new_gnu();
    let (kind, data): (EntryType, &[u8]) = match &e.kind {
        Kind::Dir => (EntryType::Directory, b""),
        Kind::File(d) => (EntryType::Regular, d),
        Kind::Symlink => (EntryType::Symlink, b""),
        Kind::HardLink => (EntryType::Link, b""),
        Kind::Char => (EntryType::Char, b""),
        Kind::Block => (EntryType::Block, b""),
        Kind::Fifo => (EntryType::Fifo, b""),
    };
    let name = e.name.as_bytes();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    if matches!(e.kind, Kind::Symlink | Kind::HardLink) {
        let link = e.link.as_bytes();
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(kind);
    h.set_mode(e.mode);
    h.set_size(data.len() as u64);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    (h, data)
}

fn raw_archive(entries: &[RawEntry], end: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let (h, data) = header_for(e);
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    if end {
        out.extend_from_slice(&[0u8; 1024]);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Valid archives of random trees, and mutations of them

#[derive(Debug, Clone)]
enum Tree {
    File(Vec<u8>, u32),
    Symlink(String),
    Dir(BTreeMap<String, Tree>),
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = prop_oneof![
        (
            prop::collection::vec(any::<u8>(), 0..2000),
            prop::sample::select(vec![0o644u32, 0o755, 0o600, 0o4755])
        )
            .prop_map(|(d, m)| Tree::File(d, m)),
        prop::sample::select(vec!["a", "./b", "/usr/lib/x", "c/d"])
            .prop_map(|t| Tree::Symlink(t.to_string())),
    ];
    leaf.prop_recursive(4, 30, 5, |inner| {
        prop::collection::btree_map(
            prop::sample::select(vec!["lib", "bin", "x", "long-name-of-a-file.so.1"])
                .prop_map(str::to_string),
            inner,
            0..5,
        )
        .prop_map(Tree::Dir)
    })
}

fn write_tree(path: &Path, t: &Tree) {
    match t {
        Tree::File(d, m) => {
            fs::write(path, d).unwrap();
            fs::set_permissions(path, fs::Permissions::from_mode(*m)).unwrap();
        }
        Tree::Symlink(target) => symlink(target, path).unwrap(),
        Tree::Dir(children) => {
            fs::create_dir(path).unwrap();
            for (name, child) in children {
                write_tree(&path.join(name), child);
            }
        }
    }
}

/// The archive of a random tree, and the tree as unpacked.
fn packed(t: &Tree) -> (Vec<u8>, BTreeMap<String, String>) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let children = match t {
        Tree::Dir(c) => c.clone(),
        other => BTreeMap::from([("only".to_string(), other.clone())]),
    };
    write_tree(&src, &Tree::Dir(children));
    let mut bytes = Vec::new();
    pack_tree(&src, &mut bytes).unwrap();
    (bytes, snapshot(&src))
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip {
        at: usize,
        mask: u8,
    },
    Truncate {
        at: usize,
    },
    /// Rewrites one header field of one entry and fixes the checksum, so the change
    /// passes the checksum and reaches the unpacker's own checks.
    Field {
        entry: usize,
        field: Field,
    },
}

#[derive(Debug, Clone)]
enum Field {
    Name(String),
    Link(String),
    Kind(u8),
    Size(u64),
    Mode(u32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let field = prop_oneof![
        path_name().prop_map(Field::Name),
        path_name().prop_map(Field::Link),
        prop::sample::select(b"0123456 7LKxgSDM".to_vec()).prop_map(Field::Kind),
        prop_oneof![
            Just(0u64),
            Just(1),
            Just(511),
            Just(512),
            Just(1 << 33),
            0u64..5000
        ]
        .prop_map(Field::Size),
        prop::sample::select(vec![0o7777u32, 0o4755, 0]).prop_map(Field::Mode),
    ];
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), field).prop_map(|(entry, field)| Mutation::Field { entry, field }),
    ]
}

/// Offsets of the headers of `bytes`, walking sizes as the unpacker would.
fn header_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= bytes.len() && bytes[at..at + 512].iter().any(|&b| b != 0) {
        out.push(at);
        let h = Header::from_byte_slice(&bytes[at..at + 512]);
        let size = h.entry_size().unwrap_or(0) as usize;
        at += 512 + size.div_ceil(512) * 512;
    }
    out
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Flip { at, mask } => {
            let len = bytes.len();
            bytes[at % len] ^= mask;
        }
        Mutation::Truncate { at } => {
            let at = at % bytes.len();
            bytes.truncate(at);
        }
        Mutation::Field { entry, field } => {
            let offsets = header_offsets(bytes);
            if offsets.is_empty() {
                return;
            }
            let at = offsets[entry % offsets.len()];
            let mut h = Header::from_byte_slice(&bytes[at..at + 512]).clone();
            let fill = |slot: &mut [u8], s: &str| {
                slot.fill(0);
                let n = s.len().min(slot.len());
                slot[..n].copy_from_slice(&s.as_bytes()[..n]);
            };
            match field {
                Field::Name(n) => fill(&mut h.as_old_mut().name, n),
                Field::Link(l) => fill(&mut h.as_old_mut().linkname, l),
                Field::Kind(k) => h.as_old_mut().linkflag[0] = *k,
                Field::Size(s) => h.set_size(*s),
                Field::Mode(m) => h.set_mode(*m),
            }
            h.set_cksum();
            bytes[at..at + 512].copy_from_slice(h.as_bytes());
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn valid_archives_of_random_trees_unpack_to_the_tree(t in tree()) {
        let (bytes, want) = packed(&t);
        let got = check_unpack(&bytes, false)?;
        prop_assert_eq!(got.as_ref(), Some(&want));
    }

    #[test]
    fn archives_of_hostile_entries_never_escape_and_leave_nothing_when_refused(
        entries in prop::collection::vec(entry(), 1..8),
        end in any::<bool>(),
        plant in any::<bool>(),
    ) {
        check_unpack(&raw_archive(&entries, end), plant)?;
    }

    #[test]
    fn mutated_valid_archives_never_escape(
        t in tree(),
        mutations in prop::collection::vec(mutation(), 1..4),
        plant in any::<bool>(),
    ) {
        let (mut bytes, _) = packed(&t);
        for m in &mutations {
            if bytes.is_empty() {
                break;
            }
            apply(&mut bytes, m);
        }
        check_unpack(&bytes, plant)?;
    }

    #[test]
    fn arbitrary_bytes_are_refused_without_a_trace(
        bytes in prop::collection::vec(any::<u8>(), 0..3000),
    ) {
        check_unpack(&bytes, true)?;
    }
}
