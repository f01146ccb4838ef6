//! Fuzzing narinfo parsing as property tests (cargo-fuzz needs nightly; this toolchain is
//! stable). Proves: `NarInfo::parse` never panics on arbitrary text; every narinfo the
//! packer can write (the seed corpus, random fields) parses back to itself; and a
//! rendered narinfo with lines dropped, duplicated, cut or given hostile values either is
//! refused or parses to a narinfo whose store path and references are real store path
//! names (nothing that could leave the store: `..`, empty, a slash) and which renders and
//! parses back to itself.
//!
//! Runs 64 cases per property by default; `PROPTEST_CASES=100000 cargo test --release -p
//! models --test prop_narinfo` fuzzes longer.

use models::nar::narinfo::{check_store_path_base, store_path_name, NarInfo};
use proptest::prelude::*;
use proptest::test_runner::Config;

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

fn store_name() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9+._-]{0,20}"
}

fn narinfo() -> impl Strategy<Value = NarInfo> {
    (
        any::<[u8; 32]>(),
        store_name(),
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<u64>(),
        prop::collection::btree_set((any::<[u8; 32]>(), store_name()), 0..5),
    )
        .prop_map(|(nar_hash, name, file_hash, file_size, nar_size, refs)| {
            let store_path = store_path_name(&nar_hash, &name);
            NarInfo {
                url: format!("nar/{store_path}.nar.zst"),
                store_path,
                compression: "zstd".into(),
                file_hash,
                file_size,
                nar_hash,
                nar_size,
                references: {
                    let mut r: Vec<String> =
                        refs.iter().map(|(h, n)| store_path_name(h, n)).collect();
                    r.sort();
                    r
                },
            }
        })
}

/// Values a hostile mirror might put in a field.
fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/nix/store/..".to_string()),
        Just("/nix/store/".to_string()),
        Just("/nix/store/.".to_string()),
        Just("/nix/store/a/b".to_string()),
        Just("/nix/store/00000000000000000000000000000000-".to_string()),
        Just("/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x".to_string()),
        Just("sha256:".to_string()),
        Just("sha256:0".to_string()),
        Just("md5:00000000000000000000000000".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551616".to_string()),
        Just("../../x".to_string()),
        Just("xz".to_string()),
        Just("é".to_string()),
        ".{0,60}",
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Drop(usize),
    Duplicate(usize),
    Cut(usize),
    Replace(usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Drop),
        any::<usize>().prop_map(Mutation::Duplicate),
        any::<usize>().prop_map(Mutation::Cut),
        (any::<usize>(), hostile_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for m in mutations {
        if lines.is_empty() {
            break;
        }
        let len = lines.len();
        match m {
            Mutation::Drop(i) => {
                lines.remove(i % len);
            }
            Mutation::Duplicate(i) => {
                let l = lines[i % len].clone();
                lines.insert(i % len, l);
            }
            Mutation::Cut(i) => {
                let l = &mut lines[i % len];
                let at = (0..=l.len())
                    .rev()
                    .find(|&n| n <= i % (l.len() + 1) && l.is_char_boundary(n))
                    .unwrap_or(0);
                l.truncate(at);
            }
            Mutation::Replace(i, v) => {
                let l = &mut lines[i % len];
                let key = l.split(": ").next().unwrap_or("").to_string();
                // A reference list gets the value as one more reference.
                *l = if key == "References" {
                    format!("{l} {v}")
                } else {
                    format!("{key}: {v}")
                };
            }
        }
    }
    lines.join("\n")
}

/// An accepted narinfo names only real store paths and survives render and parse.
fn check_accepted(info: &NarInfo) -> Result<(), TestCaseError> {
    prop_assert!(
        check_store_path_base(&info.store_path).is_ok(),
        "{:?}",
        info.store_path
    );
    for r in &info.references {
        prop_assert!(check_store_path_base(r).is_ok(), "reference {:?}", r);
    }
    let again = NarInfo::parse(&info.render());
    prop_assert!(again.is_ok(), "{:?}", again);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn narinfos_the_packer_writes_parse_back_to_themselves(info in narinfo()) {
        let parsed = NarInfo::parse(&info.render());
        prop_assert_eq!(parsed.ok(), Some(info));
    }

    #[test]
    fn mutated_narinfos_are_refused_or_name_only_real_store_paths(
        info in narinfo(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        if let Ok(parsed) = NarInfo::parse(&mutate(&info.render(), &mutations)) {
            check_accepted(&parsed)?;
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "(?s).{0,400}") {
        if let Ok(parsed) = NarInfo::parse(&text) {
            check_accepted(&parsed)?;
        }
    }

    #[test]
    fn arbitrary_key_value_lines_never_panic(
        lines in prop::collection::vec(
            (
                prop::sample::select(vec![
                    "StorePath", "URL", "Compression", "FileHash", "FileSize", "NarHash",
                    "NarSize", "References", "CA", "Sig", "Deriver",
                ]),
                hostile_value(),
            ),
            0..12,
        ),
    ) {
        let text: String = lines.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
        if let Ok(parsed) = NarInfo::parse(&text) {
            check_accepted(&parsed)?;
        }
    }
}
