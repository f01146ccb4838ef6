//! Whether this machine can run a model, and if not, why: used by `run` to skip a model
//! with its reason and by `doctor` to say so beforehand.

use crate::namespace::is_root;
use models::Requirements;
use std::path::Path;

/// Every reason the machine cannot meet `req`; empty when it can.
pub fn unmet(req: &Requirements) -> Vec<String> {
    let mut out = Vec::new();
    if req.root && !is_root() {
        out.push("needs root (CAP_SYS_ADMIN, CAP_SYS_CHROOT)".to_string());
    }
    if req.fuse && !Path::new("/dev/fuse").exists() {
        out.push("needs /dev/fuse (the fuse kernel module)".to_string());
    }
    if req.loop_devices && !Path::new("/dev/loop-control").exists() {
        out.push("needs loop devices (/dev/loop-control)".to_string());
    }
    if req.overlayfs && !kernel_has_filesystem("overlay") {
        out.push("needs OverlayFS (overlay is not in /proc/filesystems)".to_string());
    }
    for program in &req.programs {
        if find_program(program).is_none() {
            out.push(format!("needs the program {program} in PATH"));
        }
    }
    out
}

/// Whether /proc/filesystems lists `fs` (a module not yet loaded is not listed).
pub fn kernel_has_filesystem(fs: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .map(|s| s.lines().any(|l| l.split_whitespace().last() == Some(fs)))
        .unwrap_or(false)
}

/// The first `program` in PATH (or the sbin directories, which root's PATH has).
pub fn find_program(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file());
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_is_named() {
        let req = Requirements {
            programs: vec!["sh", "pkgbench-no-such-program"],
            ..Default::default()
        };
        assert_eq!(
            unmet(&req),
            vec!["needs the program pkgbench-no-such-program in PATH"]
        );
    }
}
