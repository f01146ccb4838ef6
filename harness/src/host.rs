//! Facts about the machine and the work directory, recorded with every result so numbers
//! from different machines can be told apart.

use serde::Serialize;
use std::fs;
use std::path::Path;
use std::process::Command;

#[derive(Debug, Clone, Serialize)]
pub struct HostFacts {
    pub hostname: String,
    pub kernel: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub memory_bytes: u64,
    pub work_dir: MountFacts,
}

/// The filesystem a directory lives on, from /proc/self/mountinfo.
#[derive(Debug, Clone, Serialize, Default)]
pub struct MountFacts {
    pub path: String,
    pub mount_point: String,
    pub filesystem: String,
    pub source: String,
    pub mount_options: String,
}

pub fn host_facts(work_dir: &Path) -> HostFacts {
    let uname = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uname
            .as_ref()
            .map(|u| f(u).to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    HostFacts {
        hostname: field(|u| u.nodename()),
        kernel: format!("{} {}", field(|u| u.release()), field(|u| u.version())),
        cpu_model: cpu_model(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_bytes: memory_bytes(),
        work_dir: mount_facts(work_dir),
    }
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn memory_bytes() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|kib| kib.parse::<u64>().ok())
                })
        })
        .map_or(0, |kib| kib * 1024)
}

/// The mount holding `path`: the mountinfo entry with the longest mount point that is a
/// prefix of the canonical path.
pub fn mount_facts(path: &Path) -> MountFacts {
    let canonical = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut best = MountFacts {
        path: canonical.display().to_string(),
        ..Default::default()
    };
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return best;
    };
    for line in info.lines() {
        // id parent major:minor root mount_point options [optional...] - fstype source super_options
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 6 || r.len() < 3 {
            continue;
        }
        let mount_point = unescape_mountinfo(l[4]);
        if canonical.starts_with(&mount_point) && mount_point.len() >= best.mount_point.len() {
            best.mount_point = mount_point;
            best.filesystem = r[0].to_string();
            best.source = r[1].to_string();
            best.mount_options = format!("{},{}", l[5], r[2]);
        }
    }
    best
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\134", "\\")
}

/// The commit of the source tree the harness was built from, with "-dirty" when it had
/// uncommitted changes at run time; "unknown" outside a git checkout.
pub fn git_commit() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let run = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "HEAD"]) {
        Some(commit) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            }
        }
        None => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_filesystem_is_found() {
        let m = mount_facts(Path::new("/proc/self"));
        assert_eq!(m.mount_point, "/proc");
        assert_eq!(m.filesystem, "proc");
        let facts = host_facts(Path::new("/"));
        assert!(facts.cpus >= 1 && facts.memory_bytes > 0, "{facts:?}");
    }
}
