//! How the `overlay` model's mounts scale with the number of layers: installs of 1, 100,
//! 500 and 1000 synthetic one-file packages (small images), printing the time of the
//! loop, squashfs and overlay phases. A measurement, not a check of speed, so it is
//! ignored by default: `cargo test --release -p harness --test overlay_scaling --
//! --ignored --nocapture`. Needs root; runs in a private mount namespace.

use harness::testing::require_root;
use models::overlay::OverlayModel;
use models::{Durability, Model, PackageTree, RunCtx};
use std::collections::BTreeMap;
use std::fs;
use std::process::Command;

const IN_NAMESPACE: &str = "PKGBENCH_TEST_IN_NAMESPACE";

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn root_overlay_mount_time_at_1_100_500_1000_layers() {
    let test = "root_overlay_mount_time_at_1_100_500_1000_layers";
    if !require_root(test) {
        return;
    }
    let Some(marker) = std::env::var_os(IN_NAMESPACE) else {
        let marker = tempfile::NamedTempFile::new().unwrap();
        let status = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--ignored"])
            .env(IN_NAMESPACE, marker.path())
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(fs::read_to_string(marker.path()).unwrap(), test);
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let mut model = OverlayModel::new();
    let mirror = work.path().join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    let set: Vec<_> = (0..1000)
        .map(|i| {
            let root = work.path().join(format!("src/p{i}"));
            fs::create_dir_all(root.join("usr/share/doc")).unwrap();
            fs::write(root.join(format!("usr/share/doc/p{i}")), b"x").unwrap();
            let tree = PackageTree {
                name: format!("p{i}"),
                version: "1".into(),
                root,
                depends: vec![],
                pre_depends: vec![],
                scripts: BTreeMap::new(),
                triggers: vec![],
                control: None,
            };
            model.pack(&tree, &mirror).unwrap()
        })
        .collect();
    println!("layers  loop_ms  squashfs_ms  overlay_ms");
    for n in [1usize, 100, 500, 1000] {
        let ctx = RunCtx {
            target: work.path().join(format!("target-{n}")),
            mirror: mirror.clone(),
            durability: Durability::None,
            jobs: 1,
            http: None,
        };
        let times = model.install(&set[..n], &ctx).unwrap();
        let ms = |p: &str| times.get(p).unwrap().as_secs_f64() * 1e3;
        println!(
            "{n:>6}  {:>7.1}  {:>11.1}  {:>10.2}",
            ms("loop"),
            ms("squashfs"),
            ms("overlay")
        );
        let view = model.view().root;
        assert!(view.join(format!("usr/share/doc/p{}", n - 1)).is_file());
        model.teardown().unwrap();
    }
    fs::write(marker, test).unwrap();
}
