//! The `hooks` model on a real subset of the qemu closure: the conformance suite, the
//! order of hooks and packages, and a failing hook. Needs root (`ldconfig -r` chroots).

use models::conformance::run_conformance;
use models::conformance::testing::{require_root, PackageBuilder};
use models::hooks::{HooksModel, Step};
use models::{Durability, Model, RunCtx};
use std::collections::BTreeMap;
use std::fs;
use workloads::corpus;

/// Packages with preinst and postinst scripts (adduser, passwd, libc6, dpkg, tar), an
/// `ldconfig` trigger (libc6 and the libraries), a file trigger (install-info on
/// /usr/share/info, activated by tar's info pages), and a dependency cycle (libc6 and
/// libgcc-s1).
const SUBSET: &str = "debian-qemu:adduser,passwd,libc6,libgcc-s1,gcc-12-base,install-info,tar,dpkg,libpam0g,libaudit1,libaudit-common,libcap-ng0,libselinux1,libpcre2-8-0,libsemanage2,libsemanage-common,libsepol2,libbz2-1.0,libcrypt1,libmd0,liblzma5,libzstd1,zlib1g,libacl1,libdb5.3,readline-common";

#[test]
fn root_hooks_passes_conformance_with_hooks_in_order() {
    if !require_root("root_hooks_passes_conformance_with_hooks_in_order") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let corpus = corpus::open(SUBSET, work.path(), &|_, _| {}).unwrap();
    let mut model = HooksModel::new();
    model.trace = Some(Vec::new());
    let times = run_conformance(&mut model, &corpus, work.path()).unwrap();
    for phase in ["fetch", "verify", "unpack", "hooks", "database", "triggers"] {
        assert!(
            times.get(phase).is_some_and(|d| !d.is_zero()),
            "phase {phase} not timed: {times:?}"
        );
    }

    // passwd's setuid and setgid programs lose those bits, and the model says so.
    let notes = model.notes();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("passwd: setuid/setgid bits stripped from ")),
        "{notes:?}"
    );

    let trace = model.trace.take().unwrap();
    let n = corpus.packages.len();
    // apt first: every fetch, then every verify; then dpkg; triggers last.
    assert!(
        trace[..n].iter().all(|s| matches!(s, Step::Fetch(_))),
        "{trace:?}"
    );
    assert!(
        trace[n..2 * n].iter().all(|s| matches!(s, Step::Verify(_))),
        "{trace:?}"
    );
    assert_eq!(trace.last(), Some(&Step::Triggers));
    // Strictly one package after another: preinst?, unpack, postinst? of one package
    // before anything of the next.
    let dpkg: Vec<&Step> = trace[2 * n..trace.len() - 1].iter().collect();
    let mut unpacked: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for step in &dpkg {
        match step {
            Step::Preinst(p) => {
                assert_ne!(current.as_ref(), Some(p), "preinst after unpack of {p}");
                current = None;
            }
            Step::Unpack(p) => {
                unpacked.push(p.clone());
                current = Some(p.clone());
            }
            Step::Postinst(p) => assert_eq!(
                current.as_ref(),
                Some(p),
                "postinst of {p} not right after its unpack"
            ),
            other => panic!("unexpected step {other:?}"),
        }
    }
    assert_eq!(unpacked.len(), n);
    for (i, step) in dpkg.iter().enumerate() {
        if let Step::Preinst(p) = step {
            assert_eq!(
                dpkg.get(i + 1),
                Some(&&Step::Unpack(p.clone())),
                "preinst of {p} not right before its unpack"
            );
        }
    }
    // Dependencies first, except within a cycle (libc6 <-> libgcc-s1).
    let pos: BTreeMap<&str, usize> = unpacked
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i))
        .collect();
    for p in &corpus.packages {
        for d in p.depends.iter().chain(&p.pre_depends) {
            let cycle = matches!(
                (p.name.as_str(), d.as_str()),
                ("libc6", "libgcc-s1") | ("libgcc-s1", "libc6")
            );
            if !cycle {
                assert!(
                    pos[d.as_str()] < pos[p.name.as_str()],
                    "{} unpacked before its dependency {d}",
                    p.name
                );
            }
        }
    }

    // The scripts really ran as processes, in this order, with their arguments.
    let log =
        fs::read_to_string(work.path().join("target/var-lib-dpkg/pkgbench-hooks.log")).unwrap();
    let ran: Vec<&str> = log.lines().collect();
    let want: Vec<String> = dpkg
        .iter()
        .filter_map(|s| match s {
            Step::Preinst(p) => Some(format!("{p} preinst install")),
            Step::Postinst(p) => Some(format!("{p} postinst configure ")),
            _ => None,
        })
        .chain(["install-info postinst triggered /usr/share/info".to_string()])
        .collect();
    assert_eq!(ran, want);
    assert!(
        ran.iter().any(|l| l.starts_with("libc6 preinst")),
        "{ran:?}"
    );
    // dpkg's file lists and the ldconfig trigger's cache.
    let list = fs::read_to_string(work.path().join("target/var-lib-dpkg/info/tar.list")).unwrap();
    assert!(list.lines().any(|l| l == "/bin/tar"), "{list}");
    assert!(work.path().join("target/root/etc/ld.so.cache").exists());
}

#[test]
fn root_a_failing_hook_stops_the_install_naming_package_script_and_status() {
    if !require_root("root_a_failing_hook_stops_the_install_naming_package_script_and_status") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let tree = PackageBuilder::new("broken", "1.0")
        .file("usr/share/data", "x")
        .script(
            "postinst",
            "#!/bin/sh\necho 'cannot configure' >&2\nexit 7\n",
        )
        .build(work.path());
    let mut model = HooksModel::new();
    let mirror = work.path().join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    let art = model.pack(&tree, &mirror).unwrap();
    let ctx = RunCtx {
        target: work.path().join("target"),
        mirror,
        durability: Durability::None,
        jobs: 1,
        http: None,
    };
    let err = format!("{:#}", model.install(&[art], &ctx).unwrap_err());
    assert_eq!(
        err,
        "package broken: postinst configure '' failed with exit status 7: cannot configure"
    );
}

/// dpkg's "trying to overwrite": a package may not replace a file another package
/// installed; the second package is rolled back whole and the first stays intact.
#[test]
fn root_a_file_of_another_package_is_not_overwritten() {
    if !require_root("root_a_file_of_another_package_is_not_overwritten") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let tree = |name: &str, extra: &str| {
        let depends: &[&str] = if name == "second" { &["first"] } else { &[] };
        PackageBuilder::new(name, "1")
            .depends(depends)
            .file("usr/bin/tool", name)
            .file(&format!("{extra}/data"), name)
            .build(work.path())
    };
    let mut model = HooksModel::new();
    let mirror = work.path().join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    let arts: Vec<_> = [
        tree("first", "usr/share/first"),
        tree("second", "usr/share/second"),
    ]
    .iter()
    .map(|t| model.pack(t, &mirror).unwrap())
    .collect();
    let ctx = RunCtx {
        target: work.path().join("target"),
        mirror,
        durability: Durability::Native,
        jobs: 1,
        http: None,
    };
    let err = format!("{:#}", model.install(&arts, &ctx).unwrap_err());
    assert!(err.contains("second_1.tar.xz"), "{err}");
    assert!(
        err.contains("\"usr/bin/tool\": trying to overwrite"),
        "{err}"
    );
    let root = work.path().join("target/root");
    assert_eq!(
        fs::read_to_string(root.join("usr/bin/tool")).unwrap(),
        "first"
    );
    assert_eq!(
        fs::read_to_string(root.join("usr/share/first/data")).unwrap(),
        "first"
    );
    assert!(
        !root.join("usr/share/second").exists(),
        "the failed package is partly visible"
    );
    assert!(!root.join("usr/bin/tool.dpkg-new").exists());
}
