//! The `hooks` model's upgrade: the upgrade conformance on a real subset of the qemu
//! closure, dpkg's order of maintainer scripts with their version arguments, the files
//! and file lists afterwards, and a new version that claims another package's file.
//! Needs root (`ldconfig -r` chroots); runs in a private mount namespace.

use models::conformance::run_upgrade_conformance;
use models::conformance::testing::{
    in_private_mount_namespace, require_root, upgrade_fixture, PackageBuilder,
};
use models::hooks::{HooksModel, Step};
use models::{Artifact, Durability, Model, PackageTree, RunCtx};
use std::fs;
use std::path::{Path, PathBuf};
use workloads::corpus::upgrade::NEWS_DIR;

/// The subset the model tests use: its point release upgrades gcc-12-base and zlib1g
/// (zlib1g activates the `ldconfig` trigger; neither has maintainer scripts).
const SUBSET: &str = "debian-qemu:libc6,libgcc-s1,gcc-12-base,tar,zlib1g,libzstd1,liblzma5,libbz2-1.0,libacl1,libselinux1,libpcre2-8-0";
/// The same with libaudit1 and passwd: sorted by name passwd is then eleventh, so the
/// point release upgrades it, and passwd has all four maintainer scripts.
const SCRIPTED_SUBSET: &str = "debian-qemu:libc6,libgcc-s1,gcc-12-base,tar,zlib1g,libzstd1,liblzma5,libbz2-1.0,libacl1,libselinux1,libpcre2-8-0,libaudit1,passwd";

/// Every regular file below `root`, relative to it.
fn regular_files(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(root.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let rel = rel.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            regular_files(root, &rel, out);
        } else if kind.is_file() {
            out.push(rel);
        }
    }
}

/// Upgrades `subset` through the conformance check, then checks what each upgraded
/// package left: its removed file gone, its new file there, both reflected in dpkg's file
/// list, its new version in the status. Returns the model, the work directory and the
/// (old, new) trees of the upgraded packages.
fn upgrade_and_check(
    subset: &str,
) -> (
    HooksModel,
    tempfile::TempDir,
    Vec<(PackageTree, PackageTree)>,
) {
    let work = tempfile::tempdir().unwrap();
    let (old, new) = upgrade_fixture(subset, work.path());
    assert!(!new.is_empty());
    let mut model = HooksModel::new();
    model.trace = Some(Vec::new());
    let times = run_upgrade_conformance(&mut model, &old, &new, work.path()).unwrap();
    for phase in [
        "fetch", "verify", "unpack", "remove", "database", "triggers",
    ] {
        assert!(
            times.get(phase).is_some_and(|d| !d.is_zero()),
            "phase {phase} not timed: {times:?}"
        );
    }

    let target = work.path().join("target");
    let root = target.join("root");
    let status = fs::read_to_string(target.join("var-lib-dpkg/status")).unwrap();
    let mut pairs = Vec::new();
    for n in &new {
        let o = old.iter().find(|o| o.name == n.name).unwrap();
        let (mut before, mut after) = (Vec::new(), Vec::new());
        regular_files(&o.root, Path::new(""), &mut before);
        regular_files(&n.root, Path::new(""), &mut after);
        let removed: Vec<&PathBuf> = before.iter().filter(|p| !after.contains(p)).collect();
        assert_eq!(removed.len(), 1, "{}: {removed:?}", n.name);
        let removed = removed[0];
        let added = Path::new(NEWS_DIR).join(&n.name);
        assert!(
            !root.join(removed).exists(),
            "{}: {removed:?} is still there",
            n.name
        );
        assert!(
            root.join(&added).is_file(),
            "{}: {added:?} is missing",
            n.name
        );

        let list =
            fs::read_to_string(target.join(format!("var-lib-dpkg/info/{}.list", n.name))).unwrap();
        let listed: Vec<&str> = list.lines().collect();
        let abs = |p: &Path| format!("/{}", p.display());
        assert!(listed.contains(&abs(&added).as_str()), "{}: {list}", n.name);
        assert!(
            !listed.contains(&abs(removed).as_str()),
            "{}: {list}",
            n.name
        );

        let stanza = format!(
            "Package: {}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {}\n",
            n.name, n.version
        );
        assert!(status.contains(&stanza), "{status}");
        pairs.push((o.clone(), n.clone()));
    }
    // No staged file is left anywhere.
    let mut all = Vec::new();
    regular_files(&root, Path::new(""), &mut all);
    assert!(
        !all.iter()
            .any(|p| p.to_string_lossy().ends_with(".dpkg-new")),
        "a .dpkg-new is left"
    );
    (model, work, pairs)
}

#[test]
fn root_hooks_upgrade_passes_conformance_and_replaces_removes_and_adds_files() {
    let test = "root_hooks_upgrade_passes_conformance_and_replaces_removes_and_adds_files";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let (mut model, work, pairs) = upgrade_and_check(SUBSET);
        let names: Vec<&str> = pairs.iter().map(|(o, _)| o.name.as_str()).collect();
        assert_eq!(names, ["gcc-12-base", "zlib1g"]);
        // zlib1g activates ldconfig: the trigger ran after both packages.
        let trace = model.trace.take().unwrap();
        assert_eq!(trace.last(), Some(&Step::Triggers));
        assert!(work.path().join("target/root/etc/ld.so.cache").exists());
    });
}

#[test]
fn root_hooks_upgrade_runs_prerm_preinst_postrm_postinst_with_versions() {
    let test = "root_hooks_upgrade_runs_prerm_preinst_postrm_postinst_with_versions";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let (mut model, work, pairs) = upgrade_and_check(SCRIPTED_SUBSET);
        let (old, new) = pairs
            .iter()
            .find(|(o, _)| o.name == "passwd")
            .expect("the point release upgrades passwd");
        for script in ["prerm", "preinst", "postrm", "postinst"] {
            assert!(old.scripts.contains_key(script), "passwd has no {script}");
        }
        let (v1, v2) = (&old.version, &new.version);

        // The scripts' own log: each appends "PACKAGE SCRIPT ARGS...". The upgrade's
        // lines come last, after everything the install ran.
        let log =
            fs::read_to_string(work.path().join("target/var-lib-dpkg/pkgbench-hooks.log")).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        let want = [
            format!("passwd prerm upgrade {v2}"),
            format!("passwd preinst upgrade {v1}"),
            format!("passwd postrm upgrade {v2}"),
            format!("passwd postinst configure {v1}"),
        ];
        assert!(lines.len() > want.len(), "{log}");
        assert_eq!(lines[lines.len() - want.len()..], want, "{log}");
        let passwd: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("passwd "))
            .collect();
        assert_eq!(
            passwd[..2],
            ["passwd preinst install", "passwd postinst configure "],
            "{log}"
        );
        assert_eq!(passwd.len(), 2 + want.len(), "{log}");

        // The model's own trace agrees, and removes the old files between postrm and
        // the database update that precedes postinst.
        let trace = model.trace.take().unwrap();
        let steps: Vec<&Step> = trace
            .iter()
            .filter(|s| match s {
                Step::Prerm(p)
                | Step::Preinst(p)
                | Step::Unpack(p)
                | Step::Postrm(p)
                | Step::Remove(p)
                | Step::Postinst(p) => p == "passwd",
                _ => false,
            })
            .collect();
        let p = || "passwd".to_string();
        let upgrade_steps = [
            Step::Prerm(p()),
            Step::Preinst(p()),
            Step::Unpack(p()),
            Step::Postrm(p()),
            Step::Remove(p()),
            Step::Postinst(p()),
        ];
        assert_eq!(
            steps[steps.len() - 6..],
            upgrade_steps.iter().collect::<Vec<_>>()[..]
        );
    });
}

/// A package tree under `dir` with `files` (path, content) and the generated
/// maintainer-script stand-ins, which log their calls.
fn tree(dir: &Path, name: &str, version: &str, files: &[(&str, &str)]) -> PackageTree {
    ["preinst", "postinst", "prerm", "postrm"]
        .iter()
        .fold(
            PackageBuilder::new(name, version).files(files),
            |builder, script| {
                builder.script(script, workloads::corpus::script::maintainer_script(0))
            },
        )
        .build(dir)
}

/// `installed` and `to` packed into a mirror under `work`, and the context of a target
/// beside it (durability native, one job).
fn packed(
    model: &mut HooksModel,
    work: &Path,
    installed: &[&PackageTree],
    to: &[&PackageTree],
) -> (Vec<Artifact>, Vec<Artifact>, RunCtx) {
    let mirror = work.join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    let pack = |trees: &[&PackageTree]| -> Vec<Artifact> {
        trees
            .iter()
            .map(|t| model.pack(t, &mirror).unwrap())
            .collect()
    };
    let (installed, to) = (pack(installed), pack(to));
    let ctx = RunCtx {
        target: work.join("target"),
        mirror,
        durability: Durability::Native,
        jobs: 1,
        http: None,
    };
    (installed, to, ctx)
}

/// dpkg's "trying to overwrite" holds in an upgrade too: a new version may replace its
/// own files but not another package's. The upgrade fails naming both packages and the
/// file, dpkg's unwinding scripts run, and the installed version stays as it was.
#[test]
fn root_hooks_upgrade_refuses_a_file_of_another_package_and_keeps_the_old_version() {
    let test = "root_hooks_upgrade_refuses_a_file_of_another_package_and_keeps_the_old_version";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let trees = work.path().join("trees");
        let first = tree(&trees, "first", "1", &[("usr/bin/first-tool", "first")]);
        let second = tree(
            &trees,
            "second",
            "1",
            &[
                ("usr/share/second/data", "v1"),
                ("usr/share/second/old", "v1"),
            ],
        );
        let second_v2 = tree(
            &trees,
            "second",
            "2",
            &[
                ("usr/share/second/data", "v2"),
                ("usr/bin/first-tool", "second"),
            ],
        );
        let mut model = HooksModel::new();
        let (installed, to, ctx) =
            packed(&mut model, work.path(), &[&first, &second], &[&second_v2]);
        let target = ctx.target.clone();
        model.install(&installed, &ctx).unwrap();
        let admin = target.join("var-lib-dpkg");
        let list_before = fs::read_to_string(admin.join("info/second.list")).unwrap();

        let err = format!("{:#}", model.upgrade(&installed, &to, &ctx).unwrap_err());
        assert!(
            err.starts_with("package second: upgrading from 1 to 2 (version 1 stays installed)"),
            "{err}"
        );
        assert!(
            err.contains("\"usr/bin/first-tool\": trying to overwrite a file of package first"),
            "{err}"
        );

        let root = target.join("root");
        let read = |p: &str| fs::read_to_string(root.join(p)).unwrap();
        assert_eq!(read("usr/bin/first-tool"), "first");
        assert_eq!(read("usr/share/second/data"), "v1");
        assert_eq!(read("usr/share/second/old"), "v1");
        assert!(!root.join("usr/share/second/data.dpkg-new").exists());
        assert!(!root.join("usr/bin/first-tool.dpkg-new").exists());
        assert_eq!(
            fs::read_to_string(admin.join("info/second.list")).unwrap(),
            list_before
        );
        let status = fs::read_to_string(admin.join("status")).unwrap();
        assert!(
            status.contains(
                "Package: second\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\n"
            ),
            "{status}"
        );
        let log = fs::read_to_string(admin.join("pkgbench-hooks.log")).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(
            lines[lines.len() - 4..],
            [
                "second prerm upgrade 2",
                "second preinst upgrade 1",
                "second postrm abort-upgrade 1 2",
                "second postinst abort-upgrade 2",
            ],
            "{log}"
        );
        model.teardown().unwrap();
    });
}

/// A file no package owns where the new version puts one is replaced, as dpkg replaces
/// it: the reinstall of a half-installed package (after a killed upgrade) meets exactly
/// that, the new files its cut unpack had already renamed into place.
#[test]
fn root_hooks_upgrade_replaces_a_file_no_package_owns() {
    let test = "root_hooks_upgrade_replaces_a_file_no_package_owns";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let trees = work.path().join("trees");
        let v1 = tree(&trees, "solo", "1", &[("usr/share/solo/data", "v1")]);
        let v2 = tree(
            &trees,
            "solo",
            "2",
            &[("usr/share/solo/data", "v2"), ("usr/share/solo/new", "v2")],
        );
        let mut model = HooksModel::new();
        let (installed, to, ctx) = packed(&mut model, work.path(), &[&v1], &[&v2]);
        let target = ctx.target.clone();
        model.install(&installed, &ctx).unwrap();
        let root = target.join("root");
        fs::write(root.join("usr/share/solo/new"), "left by a killed unpack").unwrap();

        model.upgrade(&installed, &to, &ctx).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("usr/share/solo/new")).unwrap(),
            "v2"
        );
        let list = fs::read_to_string(target.join("var-lib-dpkg/info/solo.list")).unwrap();
        assert!(list.lines().any(|l| l == "/usr/share/solo/new"), "{list}");
        model.teardown().unwrap();
    });
}
