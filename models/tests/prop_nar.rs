//! Fuzzing the NAR decoder as property tests (the toolchain is stable, so cargo-fuzz, which
//! needs nightly's sanitizer flags, cannot build here). Proves, for arbitrary bytes, for
//! valid NARs of random trees (the seed corpus, built in the test) and for those NARs
//! mutated (bytes flipped, cut, spliced, lengths overwritten with hostile values):
//! `restore` never panics, and either refuses with an error, leaving nothing in the
//! directory it restored into, or restores a tree whose `dump_path` is exactly the input.
//!
//! Runs 64 cases per property by default; `PROPTEST_CASES=100000 cargo test --release -p
//! models --test prop_nar` fuzzes longer.

use models::formats::nar::{dump_path, restore, RestoreOptions, MAGIC};
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::fs;

/// `PROPTEST_CASES` or 64, so the suite stays fast and CI can still run longer.
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

/// A tree as a NAR describes it.
#[derive(Debug, Clone)]
enum Node {
    File { executable: bool, contents: Vec<u8> },
    Symlink(Vec<u8>),
    Dir(Vec<(Vec<u8>, Node)>),
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    // Short names from a small alphabet, so siblings collide and sorting matters.
    prop::collection::vec(prop::sample::select(b"ab.-_Z\xc3\xa9".to_vec()), 1..6)
        .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        (any::<bool>(), prop::collection::vec(any::<u8>(), 0..300)).prop_map(
            |(executable, contents)| Node::File {
                executable,
                contents
            }
        ),
        prop::collection::vec(prop::sample::select(b"ab./-".to_vec()), 1..40)
            .prop_map(Node::Symlink),
    ];
    leaf.prop_recursive(5, 40, 6, |inner| {
        prop::collection::btree_map(name(), inner, 0..6)
            .prop_map(|m| Node::Dir(m.into_iter().collect()))
    })
}

/// The NAR of `node`, written independently of the codec under test.
fn encode(node: &Node) -> Vec<u8> {
    fn s(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
        out.resize(out.len().div_ceil(8) * 8, 0);
    }
    fn n(out: &mut Vec<u8>, node: &Node) {
        s(out, b"(");
        s(out, b"type");
        match node {
            Node::File {
                executable,
                contents,
            } => {
                s(out, b"regular");
                if *executable {
                    s(out, b"executable");
                    s(out, b"");
                }
                s(out, b"contents");
                s(out, contents);
            }
            Node::Symlink(target) => {
                s(out, b"symlink");
                s(out, b"target");
                s(out, target);
            }
            Node::Dir(entries) => {
                s(out, b"directory");
                for (name, child) in entries {
                    for token in [&b"entry"[..], b"(", b"name", name, b"node"] {
                        s(out, token);
                    }
                    n(out, child);
                    s(out, b")");
                }
            }
        }
        s(out, b")");
    }
    let mut out = Vec::new();
    s(&mut out, MAGIC);
    n(&mut out, node);
    out
}

/// A change to a valid NAR.
#[derive(Debug, Clone)]
enum Mutation {
    Flip {
        at: usize,
        mask: u8,
    },
    Truncate {
        at: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        at: usize,
        len: usize,
    },
    /// Overwrites an 8-aligned word (a length, most of the time) with a hostile value.
    Length {
        word: usize,
        value: u64,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let hostile = prop_oneof![
        Just(0u64),
        Just(1u64),
        Just(255),
        Just(256),
        Just(4095),
        Just(4096),
        Just(u64::MAX),
        Just(u64::MAX / 2),
        Just(1 << 40),
        0u64..64,
    ];
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..24))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), hostile).prop_map(|(word, value)| Mutation::Length { word, value }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::Flip { at, mask } => bytes[at % len] ^= mask,
        Mutation::Truncate { at } => bytes.truncate(at % len),
        Mutation::Insert { at, bytes: new } => {
            let at = at % (len + 1);
            bytes.splice(at..at, new.iter().copied());
        }
        Mutation::Delete { at, len: n } => {
            let at = at % len;
            bytes.drain(at..(at + n).min(len));
        }
        Mutation::Length { word, value } => {
            let at = (word % (len / 8)) * 8;
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
    }
}

/// Restores `bytes` into a fresh directory beside a sentinel file; checks the contract.
/// Returns whether the archive was accepted.
fn check_restore(bytes: &[u8]) -> Result<bool, TestCaseError> {
    let work = tempfile::tempdir().unwrap();
    fs::write(work.path().join("sentinel"), b"keep").unwrap();
    let dest = work.path().join("out");
    let listing = || -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(work.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let canonical = RestoreOptions {
        canonical: true,
        fsync: false,
    };
    match restore(bytes, &dest, canonical) {
        Err(e) => {
            let message = e.to_string();
            prop_assert!(message.contains("at byte"), "no offset in {message:?}");
            prop_assert_eq!(listing(), vec!["sentinel".to_string()], "{}", message);
            Ok(false)
        }
        Ok(report) => {
            prop_assert_eq!(report.nar_bytes, bytes.len() as u64);
            let mut again = Vec::new();
            dump_path(&dest, &mut again).unwrap();
            prop_assert!(again == bytes, "re-dump differs from the accepted input");
            prop_assert_eq!(listing(), vec!["out".to_string(), "sentinel".to_string()]);
            let _ = models::formats::nar::remove_restored(&dest);
            Ok(true)
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn valid_nars_of_random_trees_restore_and_dump_to_the_same_bytes(tree in node()) {
        let bytes = encode(&tree);
        prop_assert!(check_restore(&bytes)?, "a valid NAR was refused");
    }

    #[test]
    fn mutated_nars_are_refused_or_round_trip(
        tree in node(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut bytes = encode(&tree);
        for m in &mutations {
            if bytes.len() < 8 {
                break;
            }
            apply(&mut bytes, m);
        }
        check_restore(&bytes)?;
    }

    #[test]
    fn arbitrary_bytes_are_refused_or_round_trip(
        magic in any::<bool>(),
        tail in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = Vec::new();
        if magic {
            bytes.extend_from_slice(&13u64.to_le_bytes());
            bytes.extend_from_slice(MAGIC);
            bytes.extend_from_slice(&[0; 3]);
        }
        bytes.extend_from_slice(&tail);
        check_restore(&bytes)?;
    }

    /// Arbitrary sequences of grammar tokens: well-formed strings, so the decoder gets
    /// past framing and must judge the structure.
    #[test]
    fn arbitrary_token_streams_are_refused_or_round_trip(
        tokens in prop::collection::vec(
            prop::sample::select(vec![
                &b"("[..], b")", b"type", b"regular", b"symlink", b"directory",
                b"contents", b"executable", b"", b"target", b"entry", b"name",
                b"node", b"a", b"b", b"..", b"/", b"x",
            ]),
            0..40,
        ),
    ) {
        let mut bytes = Vec::new();
        for t in std::iter::once(MAGIC).chain(tokens) {
            bytes.extend_from_slice(&(t.len() as u64).to_le_bytes());
            bytes.extend_from_slice(t);
            bytes.resize(bytes.len().div_ceil(8) * 8, 0);
        }
        check_restore(&bytes)?;
    }
}
