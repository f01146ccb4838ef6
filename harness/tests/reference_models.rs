//! The reference runs of the real tools (`ref-dpkg`, `ref-nix`, `ref-squashfuse`) on a
//! small real subset of the qemu closure: the conformance suite (the view equals the
//! corpus), the upgrade conformance (the view equals the upgraded corpus), and their
//! phases.

use harness::conformance::{check_view, run_conformance, run_upgrade_conformance};
use harness::testing::{in_private_mount_namespace, require_root, upgrade_fixture};
use models::formats::compression::Compression;
use models::fuse::reference::SquashfuseModel;
use models::nar::db::StoreDb;
use models::nar::store_path_of;
use models::refs::dpkg::DpkgModel;
use models::refs::nix::NixStoreModel;
use models::{Artifact, Durability, Model, RunCtx};
use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use workloads::corpus;

/// Maintainer scripts (libc6, dpkg, tar), an `ldconfig` trigger, a dependency cycle
/// (libc6 and libgcc-s1), and dpkg's own `/var/lib/dpkg` directories in the corpus.
const SUBSET: &str = "debian-qemu:libc6,libgcc-s1,gcc-12-base,tar,dpkg,libselinux1,libpcre2-8-0,libbz2-1.0,liblzma5,libzstd1,zlib1g,libacl1,libmd0";

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

#[test]
fn root_ref_dpkg_passes_conformance() {
    if !require_root("root_ref_dpkg_passes_conformance") {
        return;
    }
    assert!(on_path("dpkg") && on_path("dpkg-deb"), "dpkg is missing");
    let work = tempfile::tempdir().unwrap();
    let corpus = corpus::open(SUBSET, work.path(), &|_, _| {}).unwrap();
    let mut model = DpkgModel::new();
    let times = run_conformance(&mut model, &corpus, work.path()).unwrap();
    let phases: Vec<&str> = times.phases.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(phases, vec!["acquire", "dpkg"], "{times:?}");
    for phase in phases {
        assert!(
            times.get(phase).is_some_and(|d| !d.is_zero()),
            "phase {phase} not timed: {times:?}"
        );
    }
    // The notes name the command that ran, apt's and dpkg's versions, and what is
    // checked.
    let notes = model.notes().join("\n");
    assert!(
        notes.contains("ran: APT_CONFIG=")
            && notes.contains(" apt-get -o Dir=")
            && notes.contains(" install --no-install-recommends ")
            && notes.contains(" libc6=2.")
            && notes.contains("(apt 2.")
            && notes.contains("; dpkg 1."),
        "{notes}"
    );
    assert!(notes.contains("signatures not checked"), "{notes}");
}

/// Whether the Nix reference can run here; if not, fails when `CI=true` and otherwise
/// says why the test is skipped.
fn nix_available(test: &str) -> bool {
    if on_path("nix") {
        return true;
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "nix is missing, and CI=true: failing instead of skipping"
    );
    eprintln!("skipping {test}: nix is missing (scripts/setup installs nix-bin)");
    false
}

#[test]
fn ref_nix_passes_conformance() {
    if !nix_available("ref_nix_passes_conformance") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let corpus = corpus::open(SUBSET, work.path(), &|_, _| {}).unwrap();
    let mut model = NixStoreModel::new();
    let times = run_conformance(&mut model, &corpus, work.path()).unwrap();
    let phases: Vec<&str> = times.phases.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(phases, vec!["substitute", "profile"], "{times:?}");
    for phase in phases {
        assert!(
            times.get(phase).is_some_and(|d| !d.is_zero()),
            "phase {phase} not timed: {times:?}"
        );
    }
    // Nix registered every package's path, with its references, in its own database.
    let db = StoreDb::open(&work.path().join("target/nix/var/nix/db")).unwrap();
    let valid = db.valid_paths().unwrap();
    assert_eq!(valid.len(), corpus.packages.len(), "{valid:?}");
    let libgcc = valid.iter().find(|p| p.ends_with("-libgcc-s1")).unwrap();
    let refs = db.references(libgcc).unwrap();
    assert!(refs.iter().any(|r| r.ends_with("-libc6")), "{refs:?}");
    // The notes name the command that ran and Nix's version.
    let notes = model.notes().join("\n");
    assert!(
        notes.contains("ran: nix --extra-experimental-features nix-command")
            && notes.contains(" copy --from file:///")
            && notes.contains("--no-check-sigs /nix/store/")
            && notes.contains("(nix (Nix) "),
        "{notes}"
    );
    assert!(notes.contains("one path at a time"), "{notes}");
}

/// The upgrade conformance of `model` on SUBSET's point release in `work`, with
/// `phases` timed; returns the packages it upgraded.
fn upgrade_passes(
    model: &mut dyn Model,
    work: &std::path::Path,
    phases: &[&str],
) -> Vec<models::PackageTree> {
    let (old, new) = upgrade_fixture(SUBSET, work);
    assert!(!new.is_empty(), "the point release upgrades something");
    let times = run_upgrade_conformance(model, &old, &new, work).unwrap();
    for phase in phases {
        assert!(
            times.get(phase).is_some_and(|d| !d.is_zero()),
            "{}: upgrade phase {phase} not timed: {times:?}",
            model.name()
        );
    }
    new
}

#[test]
fn root_ref_dpkg_upgrades_with_apt_and_dpkg() {
    if !require_root("root_ref_dpkg_upgrades_with_apt_and_dpkg") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    upgrade_passes(&mut DpkgModel::new(), work.path(), &["acquire", "dpkg"]);
}

#[test]
fn ref_nix_upgrades_with_nix_copy() {
    if !nix_available("ref_nix_upgrades_with_nix_copy") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let new = upgrade_passes(
        &mut NixStoreModel::new(),
        work.path(),
        &["substitute", "profile", "switch"],
    );
    // Both versions of every upgraded package are valid in Nix's database.
    let db = StoreDb::open(&work.path().join("target/nix/var/nix/db")).unwrap();
    let valid = db.valid_paths().unwrap();
    for pkg in &new {
        let versions = valid
            .iter()
            .filter(|p| p.ends_with(&format!("-{}", pkg.name)))
            .count();
        assert_eq!(versions, 2, "{}: {valid:?}", pkg.name);
    }
}

#[test]
fn root_ref_squashfuse_upgrades_with_new_layers_under_a_new_overlay() {
    let test = "root_ref_squashfuse_upgrades_with_new_layers_under_a_new_overlay";
    if !require_root(test) {
        return;
    }
    assert!(on_path("squashfuse_ll"), "squashfuse_ll is missing");
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        upgrade_passes(
            &mut SquashfuseModel::new(),
            work.path(),
            &["fetch", "squashfuse", "overlay", "release"],
        );
        let ours = work.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(
            !mounts.contains(&ours),
            "mounts under {ours} left after teardown:\n{mounts}"
        );
    });
}

/// SUBSET packed for ref-nix into `work/mirror`, and the context of an install into
/// `work/target`.
fn packed_for_nix(work: &Path) -> (Vec<Artifact>, RunCtx) {
    let corpus = corpus::open(SUBSET, &work.join("corpora"), &|_, _| {}).unwrap();
    let mirror = work.join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    let model = NixStoreModel::new();
    let artifacts = harness::mirror::package_trees(&corpus)
        .iter()
        .map(|t| model.pack(t, &mirror).unwrap())
        .collect();
    let ctx = RunCtx {
        target: work.join("target"),
        mirror,
        durability: Durability::Native,
        jobs: 4,
        http: None,
    };
    (artifacts, ctx)
}

/// The position of the first byte of a regular file's contents in `nar`: after the
/// `contents` token and the 8-byte length of a non-empty file.
fn first_contents_byte(nar: &[u8]) -> usize {
    let mut token = 8u64.to_le_bytes().to_vec();
    token.extend_from_slice(b"contents");
    let mut from = 0;
    loop {
        let at = nar[from..]
            .windows(token.len())
            .position(|w| w == token.as_slice())
            .map(|i| from + i + token.len())
            .expect("a NAR with a non-empty regular file");
        let len = u64::from_le_bytes(nar[at..at + 8].try_into().unwrap());
        if len > 0 {
            return at + 8;
        }
        from = at;
    }
}

#[test]
fn ref_nix_refuses_a_nar_with_a_flipped_byte_and_leaves_nothing_of_it() {
    if !nix_available("ref_nix_refuses_a_nar_with_a_flipped_byte_and_leaves_nothing_of_it") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (artifacts, ctx) = packed_for_nix(work.path());
    // One byte of zlib1g's contents flipped, recompressed as the mirror's NARs are: a
    // well-formed NAR whose hash is not the narinfo's (a byte flipped in the compressed
    // file may instead break the compressor's framing, another error).
    let broken = artifacts.iter().find(|a| a.package == "zlib1g").unwrap();
    let base = store_path_of(broken, &ctx.mirror).unwrap();
    let file = ctx.mirror.join(&broken.files[0]);
    let compression = Compression::of_extension(&file.to_string_lossy());
    let mut nar = Vec::new();
    compression
        .decoder(fs::File::open(&file).unwrap())
        .unwrap()
        .read_to_end(&mut nar)
        .unwrap();
    let at = first_contents_byte(&nar);
    nar[at] ^= 0x01;
    let mut encoder = compression.encoder(Vec::new()).unwrap();
    encoder.write_all(&nar).unwrap();
    fs::write(&file, encoder.finish().unwrap()).unwrap();

    let mut model = NixStoreModel::new();
    model.prepare(&artifacts, &ctx).unwrap();
    let err = format!("{:#}", model.install(&artifacts, &ctx).unwrap_err());
    model.teardown().unwrap();
    // Nix's own message, and ours naming the path and the package.
    assert!(
        err.contains(&format!("hash mismatch importing path '/nix/store/{base}'")),
        "{err}"
    );
    assert!(
        err.contains(&format!("/nix/store/{base} (package zlib1g)")),
        "{err}"
    );
    // Not valid in Nix's database, nothing of it in the store.
    let target = fs::canonicalize(&ctx.target).unwrap();
    let db = StoreDb::open(&target.join("nix/var/nix/db")).unwrap();
    let valid = db.valid_paths().unwrap();
    assert!(!valid.is_empty(), "paths before it were copied: {err}");
    assert!(!valid.iter().any(|p| p.contains(&base)), "{valid:?}");
    let left: Vec<String> = fs::read_dir(target.join("nix/store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(&base))
        .collect();
    assert!(left.is_empty(), "left in the store: {left:?}");
}

/// The paths a `strace -f -y -e trace=%file` log line `line` writes (creates, opens for
/// writing, renames, removes, changes the metadata of), resolved against the descriptor
/// or `cwd`; none for a failed call or a read.
fn written_paths(line: &str, cwd: &Path) -> Vec<PathBuf> {
    const WRITES: [&str; 24] = [
        "open",
        "openat",
        "creat",
        "mkdir",
        "mkdirat",
        "rename",
        "renameat",
        "renameat2",
        "unlink",
        "unlinkat",
        "rmdir",
        "symlink",
        "symlinkat",
        "link",
        "linkat",
        "chmod",
        "fchmodat",
        "chown",
        "lchown",
        "fchownat",
        "utimensat",
        "truncate",
        "mknod",
        "mknodat",
    ];
    let Some((call, rest)) = line.split_once('(') else {
        return Vec::new();
    };
    let failed = rest
        .rsplit_once(" = ")
        .is_none_or(|(_, r)| r.starts_with('-'));
    if failed || !WRITES.contains(&call) {
        return Vec::new();
    }
    if call.starts_with("open")
        && !["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"]
            .iter()
            .any(|f| rest.contains(f))
    {
        return Vec::new();
    }
    // Arguments: `3</dir>` descriptors and "quoted" paths, in order.
    let mut paths = Vec::new();
    let mut dir = cwd.to_path_buf();
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '<' => {
                let end = rest[i + 1..].find('>').map_or(rest.len(), |e| i + 1 + e);
                dir = PathBuf::from(&rest[i + 1..end]);
            }
            '"' => {
                let end = rest[i + 1..].find('"').map_or(rest.len(), |e| i + 1 + e);
                let p = &rest[i + 1..end];
                paths.push(if p.starts_with('/') {
                    PathBuf::from(p)
                } else {
                    dir.join(p)
                });
                while chars.peek().is_some_and(|&(j, _)| j <= end) {
                    chars.next();
                }
            }
            _ => {}
        }
    }
    // A link's first argument is what it points to (or an existing name), not written.
    if ["symlink", "symlinkat", "link", "linkat"].contains(&call) && paths.len() > 1 {
        paths.drain(..paths.len() - 1);
    }
    paths
}

#[test]
fn ref_nix_install_writes_nothing_outside_the_target_and_the_mirror() {
    let test = "ref_nix_install_writes_nothing_outside_the_target_and_the_mirror";
    if !nix_available(test) {
        return;
    }
    if !on_path("strace") {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "strace is missing, and CI=true: failing instead of skipping"
        );
        eprintln!("skipping {test}: strace is missing (scripts/setup installs it)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let work = fs::canonicalize(work.path()).unwrap();
    let (artifacts, ctx) = packed_for_nix(&work);
    // `nix copy` under strace, one log per process, descriptors shown as paths.
    let logs = work.join("strace");
    fs::create_dir_all(&logs).unwrap();
    let wrapper = work.join("traced-nix");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec strace -f -ff -y -qq -e trace=%file -o {}/log nix \"$@\"\n",
            logs.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let nix_existed = Path::new("/nix").exists();

    let mut model = NixStoreModel::with_program(&wrapper);
    model.prepare(&artifacts, &ctx).unwrap();
    model.install(&artifacts, &ctx).unwrap();
    let check = check_view(&model.view(), &corpus_digest(&work)).unwrap();
    assert!(check.matches, "{:?}", check.differences);
    model.teardown().unwrap();

    let target = fs::canonicalize(&ctx.target).unwrap();
    let mirror = fs::canonicalize(&ctx.mirror).unwrap();
    let cwd = std::env::current_dir().unwrap();
    let mut outside = Vec::new();
    let mut in_target = 0;
    for log in fs::read_dir(&logs).unwrap() {
        let text = fs::read_to_string(log.unwrap().path()).unwrap();
        for line in text.lines() {
            for path in written_paths(line, &cwd) {
                if path.starts_with(&target) {
                    in_target += 1;
                } else if !path.starts_with(&mirror) && path != Path::new("/dev/null") {
                    outside.push(format!("{} ({line})", path.display()));
                }
            }
        }
    }
    assert!(in_target > 100, "the trace saw the store being written");
    assert!(outside.is_empty(), "written outside: {outside:#?}");
    assert_eq!(Path::new("/nix").exists(), nix_existed, "/nix appeared");
    assert!(target.join(".ref-nix-home").is_dir());
}

/// The digest of SUBSET's corpus as packed in `work`.
fn corpus_digest(work: &Path) -> workloads::view::TreeDigest {
    corpus::open(SUBSET, &work.join("corpora"), &|_, _| {})
        .unwrap()
        .digest
}

/// SUBSET packed for ref-dpkg into `work/mirror` (its repository published), and the
/// context of an install into `work/target`.
fn packed_for_dpkg(work: &Path) -> (Vec<Artifact>, RunCtx) {
    let corpus = corpus::open(SUBSET, &work.join("corpora"), &|_, _| {}).unwrap();
    let mirror = work.join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    let model = DpkgModel::new();
    let artifacts = harness::mirror::package_trees(&corpus)
        .iter()
        .map(|t| model.pack(t, &mirror).unwrap())
        .collect();
    let ctx = RunCtx {
        target: work.join("target"),
        mirror,
        durability: Durability::Native,
        jobs: 4,
        http: None,
    };
    (artifacts, ctx)
}

/// The `Package` names dpkg's database `status` lists, with their `Status`.
fn dpkg_status(status: &Path) -> Vec<(String, String)> {
    fs::read_to_string(status)
        .unwrap()
        .split("\n\n")
        .filter_map(|stanza| {
            let field = |f: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(f))
                    .map(|v| v.trim().to_string())
            };
            Some((field("Package:")?, field("Status:")?))
        })
        .collect()
}

#[test]
fn root_ref_dpkg_refuses_a_deb_with_a_flipped_byte_and_installs_nothing_of_it() {
    if !require_root("root_ref_dpkg_refuses_a_deb_with_a_flipped_byte_and_installs_nothing_of_it") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (artifacts, ctx) = packed_for_dpkg(work.path());
    // One byte flipped in the middle of zlib1g's .deb after Packages and Release were
    // published: the index's size holds, its hashes do not.
    let broken = artifacts.iter().find(|a| a.package == "zlib1g").unwrap();
    let deb = ctx.mirror.join(&broken.files[0]);
    let index = fs::read_to_string(ctx.mirror.join("Packages")).unwrap();
    assert!(index.contains("Package: zlib1g\n"), "{index}");
    assert!(ctx.mirror.join("Release").is_file());
    let mut bytes = fs::read(&deb).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    fs::write(&deb, &bytes).unwrap();

    let mut model = DpkgModel::new();
    model.prepare(&artifacts, &ctx).unwrap();
    let err = format!("{:#}", model.install(&artifacts, &ctx).unwrap_err());
    let root = model.view().root;
    model.teardown().unwrap();
    // apt's own words, and ours naming the package and its file.
    assert!(err.contains("Hash Sum mismatch"), "{err}");
    let file = broken.files[0].file_name().unwrap().to_string_lossy();
    assert!(
        err.contains(&format!("apt named the .deb of: zlib1g ({file})")),
        "{err}"
    );
    // apt fetches every .deb before dpkg runs: dpkg's database lists none of them as
    // installed, and none of zlib1g's files is in the root.
    let status = dpkg_status(&ctx.target.join("admin/status"));
    assert!(
        !status
            .iter()
            .any(|(p, s)| p == "zlib1g" && s.ends_with(" installed")),
        "{status:?}"
    );
    assert!(status.is_empty(), "{status:?}");
    let corpus = corpus::open(SUBSET, &work.path().join("corpora"), &|_, _| {}).unwrap();
    let tree = corpus.packages.iter().find(|p| p.name == "zlib1g").unwrap();
    let mut files = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(tree.root.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let path = rel.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else if entry.file_type().unwrap().is_file() {
                files += 1;
                let at = root.join(&path);
                assert!(
                    fs::symlink_metadata(&at).is_err(),
                    "{} installed",
                    at.display()
                );
            }
        }
    }
    assert!(files > 0, "zlib1g ships files");
}

#[test]
fn root_ref_dpkg_install_writes_nothing_outside_the_target() {
    let test = "root_ref_dpkg_install_writes_nothing_outside_the_target";
    if !require_root(test) {
        return;
    }
    if !on_path("strace") {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "strace is missing, and CI=true: failing instead of skipping"
        );
        eprintln!("skipping {test}: strace is missing (scripts/setup installs it)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let work = fs::canonicalize(work.path()).unwrap();
    let (artifacts, ctx) = packed_for_dpkg(&work);
    // `apt-get` (update and install) under strace, with dpkg, the copy method and the
    // maintainer scripts it starts, one log per process, descriptors shown as paths.
    let logs = work.join("strace");
    fs::create_dir_all(&logs).unwrap();
    let wrapper = work.join("traced-apt-get");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec strace -f -ff -y -qq -e trace=%file -o {}/log apt-get \"$@\"\n",
            logs.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let dpkg_log = fs::metadata("/var/log/dpkg.log").ok().map(|m| m.len());

    let mut model = DpkgModel::with_program(&wrapper);
    model.prepare(&artifacts, &ctx).unwrap();
    model.install(&artifacts, &ctx).unwrap();
    let check = check_view(&model.view(), &corpus_digest(&work)).unwrap();
    assert!(check.matches, "{:?}", check.differences);
    model.teardown().unwrap();

    let target = fs::canonicalize(&ctx.target).unwrap();
    let cwd = std::env::current_dir().unwrap();
    let mut outside = Vec::new();
    let (mut in_target, mut processes) = (0, 0);
    for log in fs::read_dir(&logs).unwrap() {
        let text = fs::read_to_string(log.unwrap().path()).unwrap();
        processes += 1;
        for line in text.lines() {
            for path in written_paths(line, &cwd) {
                if path.starts_with(&target) {
                    in_target += 1;
                } else if path != Path::new("/dev/null") {
                    outside.push(format!("{} ({line})", path.display()));
                }
            }
        }
    }
    // apt-get twice, the copy method, dpkg, the scripts: many processes were traced.
    assert!(processes > 10, "only {processes} processes traced");
    assert!(in_target > 100, "the trace saw the root being written");
    assert!(outside.is_empty(), "written outside: {outside:#?}");
    // The host's dpkg log did not grow; apt's lists, archives and logs are the target's.
    assert_eq!(
        fs::metadata("/var/log/dpkg.log").ok().map(|m| m.len()),
        dpkg_log
    );
    for own in [
        "apt/state/lists",
        "apt/cache/archives",
        "apt/log/history.log",
        "apt/log/dpkg.log",
        "admin/status",
    ] {
        assert!(target.join(own).exists(), "{own} is not in the target");
    }
}
