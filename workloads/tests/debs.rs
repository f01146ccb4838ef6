//! `debs:DIR` corpora from hand-made `.deb` files (built with `dpkg-deb --build`): what a
//! package tree holds after conversion, hard links materialised, and refusals (a broken
//! `.deb`, a path in two packages) that leave nothing in the cache.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use workloads::corpus;
use workloads::view::Entry;

/// Builds `OUT/NAME.deb` from a control stanza, data files and a postinst.
fn build_deb(out: &Path, name: &str, depends: &str, files: &[(&str, &str)], postinst: bool) {
    let src = out.join(format!("src-{name}"));
    fs::create_dir_all(src.join("DEBIAN")).unwrap();
    let depends = if depends.is_empty() {
        String::new()
    } else {
        format!("Depends: {depends}\n")
    };
    fs::write(
        src.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: t <t@example.org>\n{depends}Description: test\n test package\n"
        ),
    )
    .unwrap();
    fs::write(
        src.join("DEBIAN/triggers"),
        "# comment\nactivate-noawait ldconfig\n",
    )
    .unwrap();
    if postinst {
        fs::write(src.join("DEBIAN/postinst"), "#!/bin/sh\nexit 0\n").unwrap();
        fs::set_permissions(
            src.join("DEBIAN/postinst"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    for (path, body) in files {
        let p = src.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, body).unwrap();
    }
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&src)
        .arg(out.join(format!("{name}.deb")))
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    fs::remove_dir_all(&src).unwrap();
}

fn leftovers(cache: &Path) -> Vec<String> {
    match fs::read_dir(cache.join("corpora")) {
        Ok(d) => d
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_folder_of_debs_becomes_a_corpus_with_scripts_triggers_and_no_hard_links() {
    let tmp = tempfile::tempdir().unwrap();
    let debs = tmp.path().join("debs");
    fs::create_dir(&debs).unwrap();
    build_deb(&debs, "pkg-base", "", &[("usr/lib/base.so", "base")], true);
    // pkg-app by hand: a hard link (dpkg-deb --build keeps it as a tar hard link) and a
    // symlink.
    let src = tmp.path().join("app");
    fs::create_dir_all(src.join("DEBIAN")).unwrap();
    fs::create_dir_all(src.join("usr/bin")).unwrap();
    fs::write(
        src.join("DEBIAN/control"),
        "Package: pkg-app\nVersion: 2\nArchitecture: all\nMaintainer: t <t@example.org>\nDepends: pkg-base (>= 1), missing-pkg | pkg-base\nDescription: x\n",
    )
    .unwrap();
    fs::write(src.join("usr/bin/app"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(src.join("usr/bin/app"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::hard_link(src.join("usr/bin/app"), src.join("usr/bin/app2")).unwrap();
    symlink("app", src.join("usr/bin/app-link")).unwrap();
    let out = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&src)
        .arg(debs.join("pkg-app.deb"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let cache = tmp.path().join("cache");
    let selector = format!("debs:{}", debs.display());
    let c = corpus::open(&selector, &cache, &|_, _| {}).unwrap();
    assert_eq!(c.packages.len(), 2);
    let app = c.package("pkg-app").unwrap();
    assert_eq!(app.version, "2");
    assert_eq!(app.depends, vec!["pkg-base".to_string()]);
    let base = c.package("pkg-base").unwrap();
    assert!(base.scripts.contains_key("postinst"));
    assert_eq!(base.triggers, vec!["activate-noawait ldconfig".to_string()]);
    let a = fs::metadata(app.root.join("usr/bin/app")).unwrap();
    let b = fs::metadata(app.root.join("usr/bin/app2")).unwrap();
    assert_eq!(a.nlink(), 1, "hard links must be materialised");
    assert_ne!(a.ino(), b.ino());
    assert!(matches!(
        c.digest.entries.get("usr/bin/app2"),
        Some(Entry::File { mode: 0o755, .. })
    ));
    assert_eq!(
        c.digest.entries.get("usr/bin/app-link"),
        Some(&Entry::Symlink {
            target: "app".into()
        })
    );
    // Opened again: from the cache, same digest.
    let again = corpus::open(&selector, &cache, &|_, _| {}).unwrap();
    assert_eq!(again.digest, c.digest);
}

#[test]
fn a_broken_deb_is_refused_by_name_and_leaves_nothing_in_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let debs = tmp.path().join("debs");
    fs::create_dir(&debs).unwrap();
    build_deb(&debs, "pkg-good", "", &[("usr/share/good", "x")], false);
    let deb = fs::read(debs.join("pkg-good.deb")).unwrap();
    fs::write(debs.join("pkg-broken.deb"), &deb[..deb.len() / 2]).unwrap();
    let cache = tmp.path().join("cache");
    let err = corpus::open(&format!("debs:{}", debs.display()), &cache, &|_, _| {}).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("pkg-broken.deb"), "{msg}");
    assert!(msg.contains("dpkg-deb"), "{msg}");
    assert_eq!(leftovers(&cache), Vec::<String>::new());
}

#[test]
fn a_path_in_two_packages_names_both() {
    let tmp = tempfile::tempdir().unwrap();
    let debs = tmp.path().join("debs");
    fs::create_dir(&debs).unwrap();
    build_deb(&debs, "pkg-one", "", &[("etc/shared.conf", "1")], false);
    build_deb(&debs, "pkg-two", "", &[("etc/shared.conf", "2")], false);
    let cache = tmp.path().join("cache");
    let err = corpus::open(&format!("debs:{}", debs.display()), &cache, &|_, _| {}).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("path /etc/shared.conf is in two packages, pkg-one and pkg-two")
            || msg.contains("path /etc/shared.conf is in two packages, pkg-two and pkg-one"),
        "{msg}"
    );
    assert_eq!(leftovers(&cache), Vec::<String>::new());
}

#[test]
fn an_empty_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let err = corpus::open(
        &format!("debs:{}", tmp.path().display()),
        &tmp.path().join("cache"),
        &|_, _| {},
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("holds no .deb files"),
        "{err:#}"
    );
}
