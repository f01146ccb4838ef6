//! Hostile and broken narinfo files: each bad field is refused by `NarInfo::parse` with
//! an error naming the field and the problem, and through the `nar` model's install
//! (the narinfo on the mirror rewritten) the error names the narinfo file, and nothing of
//! any path is left in the store or registered. Pins the bug where a `StorePath` of
//! `/nix/store/..` or `/nix/store/` was accepted, so that cleaning up a failed install
//! removed `STORE/..` (the whole target) or the whole store.

use models::conformance::testing::PackageBuilder;
use models::nar::db::StoreDb;
use models::nar::narinfo::{nix32, store_path_name, NarInfo};
use models::nar::NarModel;
use models::{Artifact, Durability, Model, PackageTree, RunCtx};
use std::fs;
use std::path::Path;

fn good() -> NarInfo {
    NarInfo {
        store_path: store_path_name(&[7; 32], "libfoo"),
        url: "nar/x.nar.zst".into(),
        compression: "zstd".into(),
        file_hash: [1; 32],
        file_size: 10,
        nar_hash: [7; 32],
        nar_size: 120,
        references: vec![store_path_name(&[3; 32], "libc6")],
    }
}

/// The good narinfo with the line of `key` replaced by `line` (or dropped when empty).
fn with_line(key: &str, line: &str) -> String {
    let text = good().render();
    assert!(text.contains(&format!("\n{key}: ")) || text.starts_with(&format!("{key}: ")));
    text.lines()
        .map(|l| {
            if l.starts_with(&format!("{key}: ")) {
                line
            } else {
                l
            }
        })
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

fn refused(text: &str, want: &[&str]) {
    let err = format!("{:#}", NarInfo::parse(text).expect_err(text));
    for w in want {
        assert!(err.contains(w), "want {w:?} in {err:?}");
    }
}

/// Every bad field the parser must refuse, with what its error must say.
fn hostile_cases() -> Vec<(&'static str, String, Vec<&'static str>)> {
    let short_hash = &nix32(&[7; 32])[1..];
    let hash = nix32(&[7; 32]);
    vec![
        (
            "missing StorePath",
            with_line("StorePath", ""),
            vec!["no StorePath field"],
        ),
        ("missing URL", with_line("URL", ""), vec!["no URL field"]),
        (
            "missing NarHash",
            with_line("NarHash", ""),
            vec!["no NarHash field"],
        ),
        (
            "missing NarSize",
            with_line("NarSize", ""),
            vec!["no NarSize field"],
        ),
        (
            "NarSize not a number",
            with_line("NarSize", "NarSize: 12a"),
            vec!["NarSize \"12a\" is not a number"],
        ),
        (
            "NarSize negative",
            with_line("NarSize", "NarSize: -1"),
            vec!["NarSize \"-1\" is not a number"],
        ),
        (
            "NarSize past u64",
            with_line("NarSize", "NarSize: 18446744073709551616"),
            vec!["is not a number"],
        ),
        (
            "FileSize not a number",
            with_line("FileSize", "FileSize: ten"),
            vec!["FileSize \"ten\" is not a number"],
        ),
        (
            "NarHash one digit short",
            with_line("NarHash", &format!("NarHash: sha256:{short_hash}")),
            vec!["NarHash", "is not a base-32 hash of 32 bytes"],
        ),
        (
            "NarHash one digit long",
            with_line("NarHash", &format!("NarHash: sha256:0{hash}")),
            vec!["NarHash", "is not a base-32 hash of 32 bytes"],
        ),
        (
            "NarHash in hex (64 digits)",
            with_line("NarHash", &format!("NarHash: sha256:{}", "ab".repeat(32))),
            vec!["NarHash", "is not a base-32 hash of 32 bytes"],
        ),
        (
            "NarHash not sha256",
            with_line("NarHash", &format!("NarHash: sha1:{hash}")),
            vec!["NarHash \"sha1:", "is not a sha256 hash"],
        ),
        (
            "NarHash with a digit outside Nix's alphabet",
            with_line("NarHash", &format!("NarHash: sha256:e{}", &hash[1..])),
            vec!["NarHash", "'e' is not a base-32 digit"],
        ),
        (
            "FileHash of the wrong length",
            with_line("FileHash", "FileHash: sha256:0"),
            vec!["FileHash", "is not a base-32 hash of 32 bytes"],
        ),
        (
            "StorePath outside the store",
            with_line("StorePath", "StorePath: /usr/lib/libfoo"),
            vec!["StorePath \"/usr/lib/libfoo\" is not in /nix/store"],
        ),
        (
            "StorePath below a store path",
            with_line(
                "StorePath",
                &format!("StorePath: /nix/store/{}/lib", good().store_path),
            ),
            vec!["is not in /nix/store"],
        ),
        (
            "StorePath ..",
            with_line("StorePath", "StorePath: /nix/store/.."),
            vec!["StorePath \"/nix/store/..\"", "is not a store path name"],
        ),
        (
            "StorePath the store itself",
            with_line("StorePath", "StorePath: /nix/store/"),
            vec!["StorePath \"/nix/store/\"", "is not a store path name"],
        ),
        (
            "StorePath without a hash",
            with_line("StorePath", "StorePath: /nix/store/libfoo"),
            vec!["is not a store path name"],
        ),
        (
            "StorePath with an empty name",
            with_line("StorePath", &format!("StorePath: /nix/store/{hash:.32}-")),
            vec!["cannot be the name of a Nix store path"],
        ),
        (
            "StorePath with a name starting with a dot",
            with_line("StorePath", &format!("StorePath: /nix/store/{hash:.32}-.x")),
            vec!["cannot be the name of a Nix store path"],
        ),
        (
            "a reference ..",
            with_line(
                "References",
                &format!("References: {} ..", good().references[0]),
            ),
            vec!["References \"..\"", "is not a store path name"],
        ),
        (
            "a reference that is a full path",
            with_line(
                "References",
                &format!("References: /nix/store/{}", good().references[0]),
            ),
            vec!["References \"/nix/store/", "is not a store path name"],
        ),
        (
            "a line that is not Key: value",
            format!("{}garbage\n", good().render()),
            vec!["narinfo line \"garbage\" is not \"Key: value\""],
        ),
    ]
}

#[test]
fn every_bad_field_is_refused_naming_the_field() {
    let cases = hostile_cases();
    for (what, text, want) in &cases {
        eprintln!("{what}");
        refused(text, want);
    }
    assert_eq!(NarInfo::parse(&good().render()).unwrap(), good());
    eprintln!("narinfo: {} hostile cases, all refused", cases.len());
}

// ---------------------------------------------------------------------------------------
// Through the model: the narinfo on the mirror rewritten

/// Package `name` at version 1.0 with `depends` and one library, `lib/NAME.so`.
fn package(work: &Path, name: &str, depends: &[&str]) -> PackageTree {
    PackageBuilder::new(name, "1.0")
        .depends(depends)
        .file(&format!("lib/{name}.so"), name.repeat(1000))
        .build(work)
}

/// Packs `libbase` and `libbad` (depending on it), lets `edit` rewrite `libbad`'s
/// narinfo, installs, and returns the error; checks nothing is in the store or the
/// database of either path.
fn install_with_edited_narinfo(edit: impl Fn(&str) -> String) -> String {
    let work = tempfile::tempdir().unwrap();
    let mirror = work.path().join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    let mut model = NarModel::new();
    let artifacts: Vec<Artifact> = [
        package(work.path(), "libbase", &[]),
        package(work.path(), "libbad", &["libbase"]),
    ]
    .iter()
    .map(|t| model.pack(t, &mirror).unwrap())
    .collect();
    let info_file = mirror.join(&artifacts[1].files[1]);
    assert!(info_file.to_string_lossy().ends_with(".narinfo"));
    let text = fs::read_to_string(&info_file).unwrap();
    fs::write(&info_file, edit(&text)).unwrap();
    let target = work.path().join("target");
    let ctx = RunCtx {
        target: target.clone(),
        mirror,
        durability: Durability::Native,
        jobs: 4,
        http: None,
    };
    let err = format!("{:#}", model.install(&artifacts, &ctx).unwrap_err());
    model.teardown().unwrap();
    let store = target.join("nix/store");
    assert!(store.is_dir(), "{err}: the store was removed");
    let left: Vec<_> = fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("-libbad"))
        .collect();
    assert!(left.is_empty(), "{err}: left in the store: {left:?}");
    let db = target.join("nix/var/nix/db");
    if db.join("db.sqlite").exists() {
        let valid = StoreDb::open(&db).unwrap().valid_paths().unwrap();
        assert!(
            !valid.iter().any(|p| p.contains("-libbad")),
            "{err}: {valid:?}"
        );
    }
    err
}

fn replace_line(text: &str, key: &str, line: &str) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with(&format!("{key}: ")) {
                line
            } else {
                l
            }
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn an_unknown_compression_is_refused_by_the_install() {
    let err = install_with_edited_narinfo(|t| replace_line(t, "Compression", "Compression: bzip2"));
    assert!(
        err.contains("-libbad") && err.contains("compression \"bzip2\" is not supported"),
        "{err}"
    );
}

#[test]
fn a_url_leaving_the_mirror_is_refused_by_the_install() {
    let err = install_with_edited_narinfo(|t| replace_line(t, "URL", "URL: ../../../etc/passwd"));
    assert!(
        err.contains("narinfo URL \"../../../etc/passwd\" leaves the mirror"),
        "{err}"
    );
}

#[test]
fn a_store_path_of_dot_dot_is_refused_before_anything_is_removed() {
    let err =
        install_with_edited_narinfo(|t| replace_line(t, "StorePath", "StorePath: /nix/store/.."));
    assert!(
        err.contains(".narinfo") && err.contains("is not a store path name"),
        "{err}"
    );
}

#[test]
fn an_empty_store_path_is_refused_before_anything_is_removed() {
    let err =
        install_with_edited_narinfo(|t| replace_line(t, "StorePath", "StorePath: /nix/store/"));
    assert!(
        err.contains(".narinfo") && err.contains("is not a store path name"),
        "{err}"
    );
}

#[test]
fn a_nar_size_that_is_not_a_number_is_refused_by_the_install() {
    let err = install_with_edited_narinfo(|t| replace_line(t, "NarSize", "NarSize: lots"));
    assert!(
        err.contains(".narinfo") && err.contains("NarSize \"lots\" is not a number"),
        "{err}"
    );
}

#[test]
fn a_wrong_nar_size_is_refused_after_restoring_and_leaves_nothing() {
    let err = install_with_edited_narinfo(|t| replace_line(t, "NarSize", "NarSize: 8"));
    assert!(
        err.contains("-libbad: hash mismatch") && err.contains("and 8 bytes"),
        "{err}"
    );
}
