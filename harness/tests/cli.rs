//! The `harness` binary's commands as a user types them: pack and unpack round trip,
//! setuid bits stripped unless `--keep-setid`, a hostile archive refused with a non-zero
//! exit and nothing written outside DEST, `list`, and a bad `--model`.

use std::fs;
use std::path::Path;
use std::process::Command;

fn harness() -> Command {
    Command::new(env!("CARGO_BIN_EXE_harness"))
}

/// A tar holding one file whose name is given raw (the tar crate refuses to build "..").
fn raw_tar(name: &[u8], data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_ustar();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `harness pack --format tar SRC ARCHIVE`, which must succeed.
fn pack_tar(src: &Path, archive: &Path) {
    let st = harness()
        .args(["pack", "--format", "tar"])
        .arg(src)
        .arg(archive)
        .status()
        .unwrap();
    assert!(st.success(), "harness pack --format tar {}", src.display());
}

#[test]
fn pack_then_unpack_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("usr/bin")).unwrap();
    fs::write(src.join("usr/bin/tool"), b"tool").unwrap();
    std::os::unix::fs::symlink("tool", src.join("usr/bin/alias")).unwrap();
    let archive = dir.path().join("pkg.tar");
    pack_tar(&src, &archive);
    let dest = dir.path().join("dest");
    let st = harness()
        .args(["unpack", "--format", "tar"])
        .arg(&archive)
        .arg(&dest)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(fs::read(dest.join("usr/bin/tool")).unwrap(), b"tool");
    assert_eq!(
        fs::read_link(dest.join("usr/bin/alias")).unwrap(),
        Path::new("tool")
    );
}

#[test]
fn unpack_refuses_a_parent_component_and_writes_nothing_outside() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("evil.tar");
    fs::write(&archive, raw_tar(b"../escaped", b"owned")).unwrap();
    let dest = dir.path().join("dest");
    let before = listing(dir.path());
    let out = harness()
        .args(["unpack", "--format", "tar"])
        .arg(&archive)
        .arg(&dest)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("evil.tar") && stderr.contains("../escaped"),
        "{stderr}"
    );
    assert!(!dir.path().join("escaped").exists());
    let mut after = listing(dir.path());
    after.retain(|n| n != "dest");
    assert_eq!(after, before);
}

#[test]
fn unpack_strips_setuid_bits_unless_keep_setid() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("usr/bin")).unwrap();
    fs::write(src.join("usr/bin/su"), b"su").unwrap();
    fs::set_permissions(src.join("usr/bin/su"), fs::Permissions::from_mode(0o4755)).unwrap();
    let archive = dir.path().join("pkg.tar");
    pack_tar(&src, &archive);
    for (flags, mode, said) in [
        (&[][..], 0o755, "setuid/setgid bits stripped from 1 of them"),
        (&["--keep-setid"][..], 0o4755, ""),
    ] {
        let dest = dir.path().join(format!("dest{}", flags.len()));
        let out = harness()
            .args(["unpack", "--format", "tar"])
            .args(flags)
            .arg(&archive)
            .arg(&dest)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains(said), "{flags:?}: {stderr}");
        let got = fs::metadata(dest.join("usr/bin/su"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(got & 0o7777, mode, "{flags:?}");
    }
}

#[test]
fn unknown_model_and_format_are_clear_errors() {
    let out = harness().args(["run", "--model", "snap"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown model \"snap\": known models are hooks, nar, fuse, overlay"),
        "{stderr}"
    );
    let out = harness()
        .args(["pack", "--format", "zip", "/nonexistent", "/tmp/x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn list_names_every_model_and_corpus() {
    let out = harness().arg("list").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "hooks",
        "nar",
        "fuse",
        "overlay",
        "debian-qemu",
        "debian-python3",
        "cold-read",
        "many-file",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
}
