//! Helpers for the tests of models: root or skip (fail when `CI=true` and a test cannot
//! run, elsewhere skip with a printed reason), a private mount namespace per test,
//! fixtures (the upgrade fixture, small package trees: [`PackageBuilder`]), and what the
//! machine holds (loop devices, FUSE daemons).

/// True when the test may go on; false (after printing why) when it must skip.
pub fn require_root(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: needs root, and CI=true: failing instead of skipping");
    }
    eprintln!("skipping {test}: needs root");
    false
}

/// The lines of `/proc/self/mounts` whose mount point lies under `dir`: what a test
/// left mounted there. Panics if the table cannot be read, so "nothing left" is never
/// the answer of an unreadable file.
pub fn mounts_under(dir: &std::path::Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mounts")
        .expect("reading /proc/self/mounts")
        .lines()
        .filter(|l| l.split(' ').nth(1).is_some_and(|m| m.starts_with(&dir)))
        .map(str::to_string)
        .collect()
}

/// Set in the environment of a test re-run inside its private mount namespace; holds
/// the path of the marker file the inner run writes when its body finished.
pub const IN_NAMESPACE: &str = "PKGBENCH_TEST_IN_NAMESPACE";

/// Loop devices and mounts are global to the machine: tests that attach or mount take
/// turns, so a before-and-after comparison of `losetup -a` sees only their own.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Waits for this test binary's turn to mount (see `TURN`).
pub fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `body` in a private mount namespace, so nothing it mounts can outlive it: the
/// test binary runs this one test again under `unshare --mount --propagation private`,
/// and the outer test passes only if the inner run got to the end of `body`.
pub fn in_private_mount_namespace(test: &str, body: impl FnOnce()) {
    use std::process::Command;
    if let Some(marker) = std::env::var_os(IN_NAMESPACE) {
        body();
        std::fs::write(marker, test).expect("writing the namespace marker");
        return;
    }
    let _turn = take_turn();
    let marker = std::env::temp_dir().join(format!(
        "pkgbench-ns-{}-{}",
        std::process::id(),
        test.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    ));
    let _ = std::fs::remove_file(&marker);
    let status = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(std::env::current_exe().expect("the test binary's path"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(IN_NAMESPACE, &marker)
        .status()
        .expect("unshare (util-linux) must be installed");
    let ran = std::fs::read_to_string(&marker).unwrap_or_default();
    let _ = std::fs::remove_file(&marker);
    assert!(
        status.success(),
        "{test} failed in its private mount namespace"
    );
    assert_eq!(
        ran, test,
        "{test} did not finish in its private mount namespace"
    );
}

/// The packages of corpus `name` (opened under `work`) and the new versions its point
/// release brings (`workloads::corpus::upgrade`): the input of
/// `conformance::run_upgrade_conformance`.
pub fn upgrade_fixture(
    name: &str,
    work: &std::path::Path,
) -> (Vec<crate::PackageTree>, Vec<crate::PackageTree>) {
    let corpus = workloads::corpus::open(name, &work.join("corpora"), &|_, _| {})
        .expect("opening the corpus");
    let release =
        workloads::corpus::upgrade::point_release(&corpus).expect("building the point release");
    (
        super::package_trees(&corpus),
        super::trees_of(&release.packages),
    )
}

/// Backing files of every attached loop device (`/sys/block/loop*/loop/backing_file`; a
/// removed file ends in " (deleted)").
pub fn loop_backing_files() -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/sys/block") else {
        return out;
    };
    for entry in dir.flatten() {
        if let Ok(file) = std::fs::read_to_string(entry.path().join("loop/backing_file")) {
            out.push(file.trim().to_string());
        }
    }
    out
}

/// Waits up to 10 s for `done`, failing the test with `what` after that: the kernel
/// releases a loop device after its last mount goes in task work, not within the
/// unmount call or the process exit.
pub fn eventually(what: &str, done: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "timed out: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A tiny package tree at `work/src/NAME_VERSION` with the given files (path, contents);
/// a path ending in `/` is a directory. No dependencies, scripts or triggers: a
/// shorthand for [`PackageBuilder`].
pub fn tiny_package(
    work: &std::path::Path,
    name: &str,
    version: &str,
    files: &[(&str, &str)],
) -> crate::PackageTree {
    PackageBuilder::new(name, version).files(files).build(work)
}

/// A small package tree for a test, described step by step and written by
/// [`build`](PackageBuilder::build):
///
/// ```ignore
/// let tree = PackageBuilder::new("huge", "1")
///     .depends(&["small"])
///     .file("usr/share/huge/zeros", vec![0; 4 << 20])
///     .file("usr/share/empty/", "")
///     .script("postinst", "#!/bin/sh\nexit 0\n")
///     .build(work);
/// ```
///
/// Every step panics on a failure to write: it is for tests.
#[derive(Debug, Clone)]
#[must_use = "a package builder writes nothing until `build`"]
pub struct PackageBuilder {
    name: String,
    version: String,
    depends: Vec<String>,
    pre_depends: Vec<String>,
    files: Vec<(String, Vec<u8>)>,
    scripts: Vec<(String, Vec<u8>)>,
}

impl PackageBuilder {
    /// A package `name` at `version` with no files, dependencies or scripts.
    pub fn new(name: &str, version: &str) -> PackageBuilder {
        PackageBuilder {
            name: name.into(),
            version: version.into(),
            depends: Vec::new(),
            pre_depends: Vec::new(),
            files: Vec::new(),
            scripts: Vec::new(),
        }
    }

    /// Adds `names` to the packages this one depends on.
    pub fn depends(mut self, names: &[&str]) -> PackageBuilder {
        self.depends.extend(names.iter().map(|n| n.to_string()));
        self
    }

    /// Adds `names` to the packages that must be installed before this one is unpacked.
    pub fn pre_depends(mut self, names: &[&str]) -> PackageBuilder {
        self.pre_depends.extend(names.iter().map(|n| n.to_string()));
        self
    }

    /// Adds a file at `path` (relative to the package's root) holding `contents`; a
    /// `path` ending in `/` is a directory (its `contents` are ignored).
    pub fn file(mut self, path: &str, contents: impl AsRef<[u8]>) -> PackageBuilder {
        self.files.push((path.into(), contents.as_ref().to_vec()));
        self
    }

    /// Adds every (path, contents) of `files`, as [`file`](PackageBuilder::file) does.
    pub fn files<C: AsRef<[u8]>>(self, files: &[(&str, C)]) -> PackageBuilder {
        files.iter().fold(self, |builder, (path, contents)| {
            builder.file(path, contents)
        })
    }

    /// Adds the maintainer script `name` (`preinst`, `postinst`, `prerm`, `postrm`),
    /// written executable beside the package's root.
    pub fn script(mut self, name: &str, body: impl AsRef<[u8]>) -> PackageBuilder {
        self.scripts.push((name.into(), body.as_ref().to_vec()));
        self
    }

    /// Writes the tree at `work/src/NAME_VERSION` (files already there stay) and its
    /// scripts at `work/src/NAME_VERSION.SCRIPT`, and returns it.
    pub fn build(self, work: &std::path::Path) -> crate::PackageTree {
        use std::os::unix::fs::PermissionsExt;
        let src = work.join("src");
        let base = format!("{}_{}", self.name, self.version);
        let root = src.join(&base);
        std::fs::create_dir_all(&root).expect("creating a test package's root");
        for (path, contents) in &self.files {
            let p = root.join(path);
            if path.ends_with('/') {
                std::fs::create_dir_all(&p).expect("creating a test package's directory");
            } else {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).expect("creating a test package's directory");
                }
                std::fs::write(&p, contents).expect("writing a test package's file");
            }
        }
        let mut scripts = std::collections::BTreeMap::new();
        for (name, body) in &self.scripts {
            let p = src.join(format!("{base}.{name}"));
            std::fs::write(&p, body).expect("writing a test package's script");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                .expect("making a test package's script executable");
            scripts.insert(name.clone(), p);
        }
        crate::PackageTree {
            name: self.name,
            version: self.version,
            root,
            depends: self.depends,
            pre_depends: self.pre_depends,
            scripts,
            triggers: vec![],
            control: None,
        }
    }
}

/// Command lines of the running fuse daemons (`harness fuse-daemon ...`), arguments
/// joined by spaces.
pub fn fuse_daemons() -> Vec<String> {
    let Ok(proc) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc.filter_map(|e| {
        let cmdline = std::fs::read(e.ok()?.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        cmdline
            .contains(crate::fuse::server::SUBCOMMAND)
            .then_some(cmdline)
    })
    .collect()
}

/// Makes the mirror's index publish the file `art` names as it now is (its sha256 and
/// size), as a publisher of a broken image would: for tests of what happens past the
/// fetch's hash check, such as the kernel's refusal of a corrupt SquashFS image.
pub fn republish(art: &mut crate::Artifact, mirror: &std::path::Path) {
    let file = mirror.join(art.files.first().expect("an artifact with a file"));
    let (sha256, size) =
        crate::mirror_files::sha256_and_size(&file).expect("hashing a republished file");
    art.sha256 = sha256;
    art.size_bytes = size;
}
