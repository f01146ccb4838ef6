//! Fuzzing the corpus manifest reader (`workloads::manifest::parse`) as property tests
//! (cargo-fuzz needs nightly; this toolchain is stable). Proves: on arbitrary bytes,
//! plain or behind a zstd magic, and on valid manifests (the seed corpus, generated in the
//! test) with their JSON mutated (values replaced with hostile paths, modes, kinds and
//! sizes, bytes flipped or cut, zstd-compressed and cut), `parse` never panics, every
//! refusal starts with the source name, and every manifest it accepts holds its
//! promises: absolute, checked paths, each parent a directory listed earlier in the same
//! package, no path listed twice in a package. Valid manifests are accepted whole.
//!
//! Runs 64 cases per property by default; `PROPTEST_CASES=100000 cargo test --release -p
//! workloads --test prop_manifest` fuzzes longer.

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Value};
use std::collections::HashSet;
use workloads::manifest::{self, EntryKind, Manifest};

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

/// A valid manifest: `n` packages, each with its own directory tree under /usr/share.
fn valid_manifest(files: &[(u8, u64, bool)]) -> Value {
    let packages: Vec<Value> = files
        .chunks(3)
        .enumerate()
        .map(|(p, chunk)| {
            let name = format!("pkg{p}");
            let mut entries = vec![
                json!({"kind": "dir", "path": "/usr", "mode": "0o755"}),
                json!({"kind": "dir", "path": "/usr/share", "mode": "0o755"}),
                json!({"kind": "dir", "path": format!("/usr/share/{name}"), "mode": "0o755"}),
            ];
            for (i, (mode, size, link)) in chunk.iter().enumerate() {
                let path = format!("/usr/share/{name}/f{i}");
                entries.push(if *link {
                    json!({"kind": "symlink", "path": path, "target": "../x"})
                } else {
                    json!({"kind": "file", "path": path,
                           "mode": format!("0o{:o}", 0o600 | (u32::from(*mode) & 0o177)),
                           "size": size, "zstd3_size": size / 3 + 13})
                });
            }
            json!({
                "name": name, "version": "1.0", "arch": "amd64",
                "depends": if p > 0 { "pkg0".to_string() } else { String::new() },
                "maintainer_scripts": {"postinst": 120},
                "triggers": ["activate-noawait ldconfig"],
                "files": entries,
            })
        })
        .collect();
    json!({
        "schema": manifest::SCHEMA,
        "source": "generated in prop_manifest.rs",
        "root_package": "pkg0",
        "packages": packages,
    })
}

fn seed() -> impl Strategy<Value = Value> {
    prop::collection::vec((any::<u8>(), 0u64..1 << 20, any::<bool>()), 1..10)
        .prop_map(|f| valid_manifest(&f))
}

/// Every leaf of a JSON value, as a path of keys and indices.
fn leaves(v: &Value, at: Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let mut p = at.clone();
                p.push(json!(k));
                leaves(c, p, out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                let mut p = at.clone();
                p.push(json!(i));
                leaves(c, p, out);
            }
        }
        _ => out.push(at),
    }
}

fn leaf_mut<'a>(v: &'a mut Value, path: &[Value]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match k {
        Value::String(s) => &mut v[s.as_str()],
        Value::Number(n) => &mut v[n.as_u64().unwrap() as usize],
        _ => unreachable!(),
    })
}

fn hostile() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        json!("/usr/../etc/passwd"),
        json!("usr/relative"),
        json!("/"),
        json!(""),
        json!("/usr//double"),
        json!("/usr/./dot"),
        json!("/usr/share/pkg0/f0/below-a-file"),
        json!("/usr/share/pkg1"),
        json!("/a\u{0}nul"),
        json!("/usr/share/pkg0"),
        json!("0o7777"),
        json!("0o17777"),
        json!("07777"),
        json!("0x755"),
        json!("-1"),
        json!("99999999999"),
        json!("fifo"),
        json!("hardlink"),
        json!("dir"),
        json!("symlink"),
        json!("deb-manifest/2"),
        json!("pkg0 (>= 1) | pkg9, pkg1"),
        json!("Pkg_Upper"),
        json!("../../up"),
        json!(u64::MAX),
        json!(-1),
        json!(0),
        json!(1.5),
        json!(null),
        json!(true),
        json!([]),
        json!({}),
        json!("x".repeat(5000)),
    ])
}

/// The promises an accepted manifest keeps.
fn check_accepted(m: &Manifest) -> Result<(), TestCaseError> {
    let names: HashSet<&str> = m.packages.iter().map(|p| p.name.as_str()).collect();
    prop_assert!(names.contains(m.root_package.as_str()));
    prop_assert_eq!(names.len(), m.packages.len());
    for p in &m.packages {
        let mut dirs = HashSet::new();
        let mut seen = HashSet::new();
        for e in &p.entries {
            prop_assert!(manifest::check_path(&e.path).is_ok(), "{}", e.path);
            prop_assert!(
                e.path.starts_with('/') && !e.path.contains("/../"),
                "{}",
                e.path
            );
            prop_assert!(seen.insert(e.path.clone()), "{} twice", e.path);
            let parent = &e.path[..e.path.rfind('/').unwrap()];
            prop_assert!(parent.is_empty() || dirs.contains(parent), "{}", e.path);
            match &e.kind {
                EntryKind::Dir { .. } => {
                    dirs.insert(e.path.clone());
                }
                EntryKind::Symlink { target } => {
                    prop_assert!(!target.is_empty() && target.len() <= 4095);
                }
                EntryKind::File { links, .. } => prop_assert!(*links >= 1),
            }
        }
    }
    Ok(())
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    match manifest::parse(bytes, "fuzz.json") {
        Ok(m) => check_accepted(&m),
        Err(e) => {
            let message = format!("{e:#}");
            prop_assert!(message.starts_with("manifest fuzz.json: "), "{}", message);
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn valid_manifests_are_accepted_whole(m in seed()) {
        let bytes = serde_json::to_vec(&m).unwrap();
        let parsed = manifest::parse(&bytes, "fuzz.json");
        prop_assert!(parsed.is_ok(), "{:?}", parsed.err());
        let parsed = parsed.unwrap();
        prop_assert_eq!(parsed.packages.len(), m["packages"].as_array().unwrap().len());
        check_accepted(&parsed)?;
        // The same, compressed, as the embedded manifests are.
        let z = zstd::encode_all(&bytes[..], 3).unwrap();
        prop_assert!(manifest::parse(&z, "fuzz.json").is_ok());
    }

    #[test]
    fn manifests_with_hostile_values_are_refused_or_keep_their_promises(
        m in seed(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), hostile()), 1..4),
    ) {
        let mut m = m;
        for (index, value) in edits {
            let mut all = Vec::new();
            leaves(&m, Vec::new(), &mut all);
            let path = index.get(&all).clone();
            *leaf_mut(&mut m, &path) = value;
        }
        check(&serde_json::to_vec(&m).unwrap())?;
    }

    #[test]
    fn manifests_with_bytes_flipped_or_cut_never_panic(
        m in seed(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
        cut in any::<prop::sample::Index>(),
        compress in any::<bool>(),
    ) {
        let mut bytes = serde_json::to_vec(&m).unwrap();
        if compress {
            bytes = zstd::encode_all(&bytes[..], 3).unwrap();
        }
        for (at, mask) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        let keep = cut.index(bytes.len() + 1);
        bytes.truncate(keep.max(bytes.len() * 9 / 10));
        check(&bytes)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        zstd_magic in any::<bool>(),
        tail in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = if zstd_magic { vec![0x28, 0xb5, 0x2f, 0xfd] } else { Vec::new() };
        bytes.extend_from_slice(&tail);
        check(&bytes)?;
    }
}
