//! The root the `exec` workload chroots into.
//!
//! For a model whose view is one self-contained tree (`hooks`' root, the `fuse` and
//! `overlay` mounts) that is the view itself. A Nix profile is not self-contained: its
//! symlinks are absolute and point into the store, which must be reachable inside the
//! chroot at the same absolute path, as `/nix/store` is on NixOS. `ExecRoot::assemble`
//! builds such a root on a tmpfs, inside the harness's private mount namespace: every
//! top-level entry of the view is bind-mounted (directories, files) or copied (symlinks),
//! except along the store's path, where directories are made and the step repeats one
//! level down, and the store itself is bind-mounted at its absolute path (a profile
//! symlink on that path, such as `var` when one package provides it, becomes a directory
//! with the same entries: the one difference the program could see). Nothing is
//! written into the view, and reads through the bind mounts are native reads of the
//! profile and the store, so the model pays no extra layer. Dropping the root detaches
//! the tmpfs with everything below it.

use anyhow::{bail, Context, Result};
use models::View;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::ffi::OsString;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// A root to chroot into; unmounted when dropped if it was assembled.
pub struct ExecRoot {
    pub path: PathBuf,
    assembled: bool,
}

impl ExecRoot {
    /// The view itself, or for a view with internal roots an assembled root at `scratch`
    /// (an absent or empty directory).
    pub fn for_view(view: &View, scratch: &Path) -> Result<ExecRoot> {
        if view.internal_roots.is_empty() {
            return Ok(ExecRoot {
                path: view.root.clone(),
                assembled: false,
            });
        }
        fs::create_dir_all(scratch).with_context(|| format!("creating {}", scratch.display()))?;
        mount(
            Some("pkgbench-exec"),
            scratch,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("mode=0755"),
        )
        .with_context(|| format!("mounting a tmpfs on {}", scratch.display()))?;
        let root = ExecRoot {
            path: scratch.to_path_buf(),
            assembled: true,
        };
        for store in &view.internal_roots {
            let parts: Vec<OsString> = store
                .components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n.to_os_string()),
                    _ => None,
                })
                .collect();
            if !store.is_absolute() || parts.is_empty() {
                bail!("internal root {} is not an absolute path", store.display());
            }
            replicate(Some(&view.root), scratch, &parts, store)?;
        }
        Ok(root)
    }
}

impl Drop for ExecRoot {
    fn drop(&mut self) {
        if self.assembled {
            // A lazy unmount detaches the tmpfs and every bind mount below it at once.
            let _ = umount2(&self.path, MntFlags::MNT_DETACH);
            let _ = fs::remove_dir(&self.path);
        }
    }
}

/// Fills `dst` with the entries of `src` (bind mounts, symlink copies), except `rest[0]`,
/// which becomes a directory filled the same way one level down; at the end of `rest`,
/// `store` is bind-mounted.
fn replicate(src: Option<&Path>, dst: &Path, rest: &[OsString], store: &Path) -> Result<()> {
    let Some((next, deeper)) = rest.split_first() else {
        if let Some(src) = src {
            if fs::read_dir(src)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
            {
                bail!(
                    "the view holds entries at {}, where the store must be mounted",
                    src.display()
                );
            }
        }
        return bind(store, dst);
    };
    let mut child_src = None;
    if let Some(src) = src {
        for entry in fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
            let entry = entry.with_context(|| format!("reading {}", src.display()))?;
            let (from, to) = (entry.path(), dst.join(entry.file_name()));
            let kind = entry
                .file_type()
                .with_context(|| format!("lstat {}", from.display()))?;
            if entry.file_name() == *next {
                // A profile entry one package provides is a symlink to that package's
                // directory (buildEnv's rule): it is replicated as a directory with the
                // same entries, so the store can be mounted below it.
                if !from.is_dir() {
                    bail!(
                        "the view's {} is not a directory, so the store {} cannot be reached inside the chroot",
                        from.display(),
                        store.display()
                    );
                }
                child_src = Some(from);
                continue;
            }
            if kind.is_symlink() {
                let target =
                    fs::read_link(&from).with_context(|| format!("readlink {}", from.display()))?;
                std::os::unix::fs::symlink(target, &to)
                    .with_context(|| format!("symlink {}", to.display()))?;
            } else if kind.is_dir() {
                fs::create_dir(&to).with_context(|| format!("mkdir {}", to.display()))?;
                bind(&from, &to)?;
            } else {
                fs::File::create(&to).with_context(|| format!("creating {}", to.display()))?;
                bind(&from, &to)?;
            }
        }
    }
    let child = dst.join(next);
    fs::create_dir(&child).with_context(|| format!("mkdir {}", child.display()))?;
    replicate(child_src.as_deref(), &child, deeper, store)
}

fn bind(from: &Path, to: &Path) -> Result<()> {
    mount(
        Some(from),
        to,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("bind-mounting {} on {}", from.display(), to.display()))
}
