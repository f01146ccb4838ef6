//! `harness pack --format nar` and `harness unpack --format nar`: the CLI writes the
//! codec's bytes (which `models/tests/nar_against_nix.rs` holds equal to `nix-store
//! --dump`), unpacks them back to the same tree, and refuses a hostile archive with the
//! file, the entry and the byte offset named, writing nothing.

use models::conformance::testing::PackageBuilder;
use models::formats::nar::dump_path;
use std::fs;
use std::path::Path;
use std::process::Command;

fn our_dump(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    dump_path(path, &mut out).unwrap();
    out
}

fn harness_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_harness"))
}

#[test]
fn harness_pack_and_unpack_nar() {
    let work = tempfile::tempdir().unwrap();
    let src = PackageBuilder::new("tree", "1")
        .file("bin/run", "#!/bin/sh\nexit 0\n")
        .file("empty-dir/", "")
        .file("share/doc/tree/copyright", "none")
        .build(work.path())
        .root;
    let out = work.path().join("tree.nar");
    let status = harness_bin()
        .args(["pack", "--format", "nar"])
        .arg(&src)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(fs::read(&out).unwrap(), our_dump(&src));

    let dest = work.path().join("dest");
    let status = harness_bin()
        .args(["unpack", "--format", "nar"])
        .arg(&out)
        .arg(&dest)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(our_dump(&dest), fs::read(&out).unwrap());

    // A hostile archive: an entry named "..". Refused, named, nothing written.
    let mut bad = fs::read(&out).unwrap();
    let name = b"\x03\0\0\0\0\0\0\0bin";
    let at = bad.windows(name.len()).position(|w| w == name).unwrap();
    bad[at] = 2;
    bad[at + 8..at + 11].copy_from_slice(b"..\0");
    let bad_file = work.path().join("bad.nar");
    fs::write(&bad_file, &bad).unwrap();
    let refused = work.path().join("refused");
    let output = harness_bin()
        .args(["unpack", "--format", "nar"])
        .arg(&bad_file)
        .arg(&refused)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "unpacking {}: entry \"/..\" at byte {at}: name may not be \"..\"",
            bad_file.display()
        )),
        "{stderr}"
    );
    assert!(!refused.exists());
}
