//! The `overlay` model's upgrade: the upgrade conformance on the model-test subset, with
//! the mounts and loop devices checked between the upgrade and teardown (one overlay,
//! no squashfs mount, loop device or image of a replaced version left); a corrupt new
//! image refused with the old view untouched and nothing of the new one mounted, then
//! a second attempt that succeeds; and nothing left after teardown. Needs root; the
//! mounting runs in a private mount namespace, as in `overlay_model.rs`.

use models::conformance::testing::{eventually, loop_backing_files, PackageBuilder};
use models::conformance::testing::{in_private_mount_namespace, require_root, upgrade_fixture};
use models::conformance::{check_view, digest_of_trees, run_upgrade_conformance};
use models::overlay::OverlayModel;
use models::{Artifact, Durability, Model, PackageTree, PhaseTimes, RunCtx, View};
use std::fs;
use std::path::{Path, PathBuf};

const SUBSET: &str = "debian-qemu:libc6,libgcc-s1,gcc-12-base,tar,zlib1g,libzstd1,liblzma5,libbz2-1.0,libacl1,libselinux1,libpcre2-8-0";

/// (mount point, filesystem type) of every mount under `dir`.
fn mounts_under(dir: &Path) -> Vec<(String, String)> {
    let dir = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (point, kind) = (f.nth(1)?, f.next()?);
            point
                .starts_with(&dir)
                .then(|| (point.to_string(), kind.to_string()))
        })
        .collect()
}

fn image_of(art: &Artifact, target: &Path) -> PathBuf {
    target
        .join("images")
        .join(art.files[0].file_name().unwrap())
}

/// What is mounted and attached right after a successful upgrade.
#[derive(Debug, Default)]
struct AfterUpgrade {
    view: PathBuf,
    mounts: Vec<(String, String)>,
    /// Images of the versions the upgrade replaced, and of the new ones.
    old_images: Vec<PathBuf>,
    new_images: Vec<PathBuf>,
}

/// The overlay model, looked at between its upgrade and its teardown (which
/// `run_upgrade_conformance` calls itself).
struct Inspected {
    inner: OverlayModel,
    after: Option<AfterUpgrade>,
}

impl Model for Inspected {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn format_version(&self) -> u32 {
        self.inner.format_version()
    }
    fn pack(&self, pkg: &PackageTree, mirror: &Path) -> anyhow::Result<Artifact> {
        self.inner.pack(pkg, mirror)
    }
    fn install(&mut self, set: &[Artifact], ctx: &RunCtx) -> anyhow::Result<PhaseTimes> {
        self.inner.install(set, ctx)
    }
    fn upgrade(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> anyhow::Result<PhaseTimes> {
        let times = self.inner.upgrade(installed, to, ctx)?;
        let old_images: Vec<PathBuf> = installed
            .iter()
            .filter(|a| to.iter().any(|n| n.package == a.package))
            .map(|a| image_of(a, &ctx.target))
            .collect();
        // A device still holding a removed image shows it with " (deleted)" appended.
        eventually("loop devices of the replaced images released", || {
            !loop_backing_files().iter().any(|f| {
                old_images
                    .iter()
                    .any(|i| f.starts_with(&*i.to_string_lossy()))
            })
        });
        // What the check above would have seen: every image in use has its device.
        let backing = loop_backing_files();
        for image in installed.iter().chain(to) {
            let image = image_of(image, &ctx.target);
            assert_eq!(
                backing.iter().any(|f| *f == *image.to_string_lossy()),
                !old_images.contains(&image),
                "{} in {backing:?}",
                image.display()
            );
        }
        self.after = Some(AfterUpgrade {
            view: self.inner.view().root,
            mounts: mounts_under(&ctx.target),
            old_images,
            new_images: to.iter().map(|a| image_of(a, &ctx.target)).collect(),
        });
        Ok(times)
    }
    fn view(&self) -> View {
        self.inner.view()
    }
    fn reset_caches(&mut self) -> anyhow::Result<()> {
        self.inner.reset_caches()
    }
    fn teardown(&mut self) -> anyhow::Result<()> {
        self.inner.teardown()
    }
}

#[test]
fn root_overlay_upgrade_passes_conformance_and_releases_the_old_view() {
    let test = "root_overlay_upgrade_passes_conformance_and_releases_the_old_view";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let (old, new) = upgrade_fixture(SUBSET, work.path());
        assert!(!new.is_empty() && new.len() < old.len(), "{}", new.len());
        let mut model = Inspected {
            inner: OverlayModel::new(),
            after: None,
        };
        let times = run_upgrade_conformance(&mut model, &old, &new, work.path()).unwrap();
        for phase in ["fetch", "verify", "loop", "squashfs", "overlay", "release"] {
            assert!(
                times.get(phase).is_some_and(|d| !d.is_zero()),
                "phase {phase} not timed: {times:?}"
            );
        }
        let target = work.path().join("target");
        let after = model.after.take().expect("upgrade recorded");

        // The switch is one mount: one overlay, the new view; the old one is gone.
        assert_eq!(after.view, target.join("view-1"));
        let overlays: Vec<_> = after.mounts.iter().filter(|m| m.1 == "overlay").collect();
        assert_eq!(overlays.len(), 1, "{:?}", after.mounts);
        assert_eq!(Path::new(&overlays[0].0), after.view);
        assert!(!target.join("view").exists(), "the old view's mount point");
        // One squashfs per package, none of them a replaced version's.
        let squashfs: Vec<_> = after.mounts.iter().filter(|m| m.1 == "squashfs").collect();
        assert_eq!(squashfs.len(), old.len(), "{:?}", after.mounts);
        assert_eq!(after.mounts.len(), old.len() + 1, "{:?}", after.mounts);
        for image in &after.old_images {
            assert!(!image.exists(), "{} kept", image.display());
        }
        for image in &after.new_images {
            assert!(image.exists(), "{} missing", image.display());
        }
        // After teardown: nothing of either generation.
        assert!(mounts_under(work.path()).is_empty());
        let prefix = target.to_string_lossy().into_owned();
        eventually("loop devices of the test released", || {
            !loop_backing_files().iter().any(|f| f.starts_with(&prefix))
        });
    });
}

/// Packs `trees` with `model` into `mirror`.
fn pack(model: &OverlayModel, trees: &[PackageTree], mirror: &Path) -> Vec<Artifact> {
    trees
        .iter()
        .map(|t| model.pack(t, mirror).unwrap())
        .collect()
}

#[test]
fn root_overlay_refuses_a_corrupt_new_image_and_keeps_the_old_view() {
    let test = "root_overlay_refuses_a_corrupt_new_image_and_keeps_the_old_view";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let (old, new) = upgrade_fixture(SUBSET, work.path());
        assert!(new.len() >= 2, "a good new image before the corrupt one");
        let mut model = OverlayModel::new();
        let mirror = work.path().join("mirror");
        fs::create_dir_all(&mirror).unwrap();
        let installed = pack(&model, &old, &mirror);
        let to = pack(&model, &new, &mirror);
        let after: Vec<PackageTree> = old
            .iter()
            .map(|o| new.iter().find(|n| n.name == o.name).unwrap_or(o).clone())
            .collect();
        let (before_digest, after_digest) = (
            digest_of_trees(&old).unwrap(),
            digest_of_trees(&after).unwrap(),
        );
        let target = work.path().join("target");
        let ctx = RunCtx {
            target: target.clone(),
            mirror: mirror.clone(),
            durability: Durability::Native,
            jobs: 1,
            http: None,
        };
        model.install(&installed, &ctx).unwrap();
        let old_view = model.view().root;
        assert!(check_view(&model.view(), &before_digest).unwrap().matches);
        let mounted = mounts_under(work.path());

        // The last new image is not SquashFS: its mount fails after the first new
        // layer was mounted, which must then go too.
        let mut to = to;
        let corrupt = to.last_mut().unwrap();
        fs::write(mirror.join(&corrupt.files[0]), vec![0x55u8; 8192]).unwrap();
        // Published as it is: past the hash check, the mount must refuse it.
        models::conformance::testing::republish(corrupt, &mirror);
        let corrupt = to.last().unwrap();
        let err = format!("{:#}", model.upgrade(&installed, &to, &ctx).unwrap_err());
        let name = corrupt.files[0].file_name().unwrap().to_string_lossy();
        assert!(err.contains(&*name), "the image is not named: {err}");
        assert_eq!(model.view().root, old_view);
        let check = check_view(&model.view(), &before_digest).unwrap();
        assert!(check.matches, "{:?}", check.differences);
        assert_eq!(
            mounts_under(work.path()),
            mounted,
            "the new one left mounted"
        );
        for art in &to {
            let image = image_of(art, &target);
            assert!(!image.exists(), "{} kept", image.display());
            let image = image.to_string_lossy().into_owned();
            eventually("loop devices of the new images released", || {
                !loop_backing_files().iter().any(|f| f.starts_with(&image))
            });
        }
        for art in &installed {
            assert!(image_of(art, &target).exists());
        }

        // A second attempt with a sound image succeeds, under names of its own.
        let to = pack(&model, &new, &mirror);
        model.upgrade(&installed, &to, &ctx).unwrap();
        assert_eq!(model.view().root, target.join("view-2"));
        let check = check_view(&model.view(), &after_digest).unwrap();
        assert!(check.matches, "{:?}", check.differences);

        model.teardown().unwrap();
        assert!(mounts_under(work.path()).is_empty());
        let prefix = target.to_string_lossy().into_owned();
        eventually("loop devices of the test released", || {
            !loop_backing_files().iter().any(|f| f.starts_with(&prefix))
        });
    });
}

/// `n` tiny packages at `version`: each has its own file, and with `extra` one more.
fn tiny_packages(root: &Path, n: usize, version: &str, extra: bool) -> Vec<PackageTree> {
    (0..n)
        .map(|i| {
            let doc = format!("usr/share/doc/p{i}");
            let tree = PackageBuilder::new(&format!("p{i}"), version)
                .file(&doc, format!("package {i} {version}\n"));
            let tree = if extra {
                tree.file(&format!("{doc}.new"), "new\n")
            } else {
                tree
            };
            tree.build(root)
        })
        .collect()
}

#[test]
fn root_overlay_upgrades_a_two_level_stack_past_500_layers() {
    let test = "root_overlay_upgrades_a_two_level_stack_past_500_layers";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let work = tempfile::tempdir().unwrap();
        let old = tiny_packages(work.path(), 520, "1", false);
        // The first and last layer of both groups of 260.
        let upgraded = [0, 259, 260, 519];
        let new: Vec<PackageTree> = tiny_packages(work.path(), 520, "2", true)
            .into_iter()
            .enumerate()
            .filter(|(i, _)| upgraded.contains(i))
            .map(|(_, t)| t)
            .collect();
        let mut model = OverlayModel::new();
        let mirror = work.path().join("mirror");
        fs::create_dir_all(&mirror).unwrap();
        let installed = pack(&model, &old, &mirror);
        let to = pack(&model, &new, &mirror);
        let target = work.path().join("target");
        let ctx = RunCtx {
            target: target.clone(),
            mirror,
            durability: Durability::None,
            jobs: 1,
            http: None,
        };
        model.install(&installed, &ctx).unwrap();
        model.upgrade(&installed, &to, &ctx).unwrap();
        let view = model.view().root;
        for i in 0..520 {
            let version = if upgraded.contains(&i) { "2" } else { "1" };
            assert_eq!(
                fs::read_to_string(view.join(format!("usr/share/doc/p{i}"))).unwrap(),
                format!("package {i} {version}\n")
            );
            assert_eq!(
                view.join(format!("usr/share/doc/p{i}.new")).exists(),
                upgraded.contains(&i)
            );
        }
        let mounts = mounts_under(&target);
        let overlays: Vec<&str> = mounts
            .iter()
            .filter(|m| m.1 == "overlay")
            .map(|m| m.0.as_str())
            .collect();
        let t = target.to_string_lossy();
        assert_eq!(
            overlays,
            [
                format!("{t}/groups-1/0"),
                format!("{t}/groups-1/1"),
                format!("{t}/view-1")
            ]
        );
        assert_eq!(mounts.iter().filter(|m| m.1 == "squashfs").count(), 520);
        assert_eq!(model.mount_points().len(), 520 + 2 + 1);
        assert!(!target.join("groups").exists() && !target.join("view").exists());
        model.teardown().unwrap();
        assert!(mounts_under(work.path()).is_empty());
        let prefix = target.to_string_lossy().into_owned();
        eventually("520 loop devices released", || {
            !loop_backing_files().iter().any(|f| f.starts_with(&prefix))
        });
    });
}
