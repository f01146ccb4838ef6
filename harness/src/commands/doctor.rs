//! `harness doctor`: what this machine can run, and for each thing it cannot, why.

use crate::caches::{CacheControl, KernelCaches};
use crate::cli::DoctorArgs;
use crate::host::mount_facts;
use crate::namespace::is_root;
use crate::requirements::{find_program, kernel_has_filesystem, unmet};
use anyhow::Result;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

fn line(ok: bool, what: &str, detail: &str) {
    println!(
        "[{}] {what}{}",
        if ok { " ok " } else { "FAIL" },
        if detail.is_empty() {
            String::new()
        } else {
            format!(": {detail}")
        }
    );
}

pub fn doctor(args: &DoctorArgs) -> Result<ExitCode> {
    println!("machine:");
    line(
        is_root(),
        "running as root",
        if is_root() {
            ""
        } else {
            "cold caches, mounts, loop devices and ldconfig -r need root"
        },
    );
    let drop = KernelCaches.can_drop();
    line(
        drop.is_ok(),
        "can drop caches",
        &drop.err().map(|e| format!("{e:#}")).unwrap_or_default(),
    );
    let ns = Command::new("unshare")
        .args(["--mount", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    line(
        ns,
        "private mount namespace (unshare --mount)",
        if ns {
            ""
        } else {
            "needs root and util-linux's unshare"
        },
    );
    for (dev, why) in [
        ("/dev/fuse", "the fuse model needs it"),
        ("/dev/loop-control", "the overlay model needs loop devices"),
    ] {
        let ok = Path::new(dev).exists();
        line(ok, dev, if ok { "" } else { why });
    }
    for fs in ["overlay", "squashfs", "fuse", "erofs"] {
        let ok = kernel_has_filesystem(fs);
        line(
            ok,
            &format!("kernel filesystem {fs}"),
            if ok {
                ""
            } else {
                "not in /proc/filesystems (module not loaded or not built)"
            },
        );
    }
    // Optional: no model needs it, so its absence is "no", not a failure.
    let verity = models::needs::fs_verity();
    println!(
        "[{}] fs-verity (optional: composefs enforces its objects' digests at read with it){}",
        if verity.is_ok() { " ok " } else { " no " },
        verity.err().map(|e| format!(": {e}")).unwrap_or_default()
    );
    println!("programs:");
    for (program, package, used_by) in [
        ("sh", "dash", "hooks: maintainer scripts"),
        ("ldconfig", "libc-bin", "hooks: the ldconfig trigger"),
        ("dpkg-deb", "dpkg", "reference runs of dpkg"),
        (
            "nix",
            "nix-bin",
            "ref-nix: nix copy; tests: nix-store --dump",
        ),
        ("mksquashfs", "squashfs-tools", "image checks"),
        ("unsquashfs", "squashfs-tools", "image checks"),
        ("squashfuse", "squashfuse", "fuse: reference runs"),
        ("zstd", "zstd", "checks of corpus compressibility"),
    ] {
        match find_program(program) {
            Some(p) => line(true, program, &p.display().to_string()),
            None => line(
                false,
                program,
                &format!("missing (Debian package {package}); used by {used_by}"),
            ),
        }
    }
    let m = mount_facts(&args.work_dir);
    println!(
        "work directory {}: {} on {} ({}) options {}",
        m.path, m.filesystem, m.mount_point, m.source, m.mount_options
    );
    println!("models:");
    for info in models::catalog() {
        match info.make {
            None => line(
                false,
                info.name,
                "not built yet in this version of pkgbench",
            ),
            Some(_) => {
                let missing = unmet(info.needs);
                let needs: Vec<String> = info.needs.iter().map(|n| n.name()).collect();
                let detail = if missing.is_empty() {
                    format!("needs {}", needs.join(", "))
                } else {
                    missing.join("; ")
                };
                line(missing.is_empty(), info.name, &detail);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
