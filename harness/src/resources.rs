//! What a sample cost besides wall time: CPU time of the harness with its threads (an
//! in-process FUSE daemon included) and of the child processes it waited for (hooks,
//! ldconfig), storage I/O, and peak memory; and the disk footprint of a model's state.

use anyhow::{Context, Result};
use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Counters that only grow, read before and after a sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    user_ns: u128,
    system_ns: u128,
    io_read_bytes: u64,
    io_write_bytes: u64,
}

fn rusage_ns(who: libc::c_int) -> (u128, u128) {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return (0, 0);
    }
    let ns = |tv: libc::timeval| tv.tv_sec as u128 * 1_000_000_000 + tv.tv_usec as u128 * 1_000;
    (ns(ru.ru_utime), ns(ru.ru_stime))
}

/// `/proc/self/io`: bytes this process (all threads, and children once reaped) made the
/// storage layer read and write: the block-layer traffic it caused.
fn proc_io() -> (u64, u64) {
    let text = fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("read_bytes:"), field("write_bytes:"))
}

impl Counters {
    pub fn now() -> Counters {
        let (su, ss) = rusage_ns(libc::RUSAGE_SELF);
        let (cu, cs) = rusage_ns(libc::RUSAGE_CHILDREN);
        let (r, w) = proc_io();
        Counters {
            user_ns: su + cu,
            system_ns: ss + cs,
            io_read_bytes: r,
            io_write_bytes: w,
        }
    }

    /// The metrics of the interval from `self` to `later`, with units in their names.
    pub fn metrics_until(&self, later: &Counters) -> Vec<(&'static str, f64)> {
        vec![
            (
                "cpu_user_ns",
                later.user_ns.saturating_sub(self.user_ns) as f64,
            ),
            (
                "cpu_system_ns",
                later.system_ns.saturating_sub(self.system_ns) as f64,
            ),
            (
                "io_read_bytes",
                later.io_read_bytes.saturating_sub(self.io_read_bytes) as f64,
            ),
            (
                "io_write_bytes",
                later.io_write_bytes.saturating_sub(self.io_write_bytes) as f64,
            ),
        ]
    }
}

/// Resets the process's peak resident set size, so the next reading is this sample's
/// peak ("5" to clear_refs resets VmHWM, see proc(5)). Best effort: without it the peak
/// is the process's lifetime peak, which is still an upper bound.
pub fn reset_peak_rss() {
    let _ = fs::write("/proc/self/clear_refs", "5");
}

/// VmHWM of this process, in bytes (threads included, children not).
pub fn peak_rss_bytes() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// Bytes allocated on disk below `dir`, counting each inode once and staying on the
/// filesystem of `dir` (so a mounted view is not counted as the model's state twice).
pub fn disk_usage(dir: &Path) -> Result<u64> {
    let root_dev = fs::symlink_metadata(dir)
        .with_context(|| format!("stat {}", dir.display()))?
        .dev();
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta =
            fs::symlink_metadata(&path).with_context(|| format!("stat {}", path.display()))?;
        if meta.dev() != root_dev || !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total += meta.blocks() * 512;
        if meta.is_dir() {
            for entry in
                fs::read_dir(&path).with_context(|| format!("reading {}", path.display()))?
            {
                stack.push(entry?.path());
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_see_cpu_spent_in_a_child_process() {
        let before = Counters::now();
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let m = before.metrics_until(&Counters::now());
        let user = m.iter().find(|(k, _)| *k == "cpu_user_ns").unwrap().1;
        assert!(user > 1e6, "a busy child must show up in CPU time: {m:?}");
    }

    #[test]
    fn disk_usage_counts_hard_links_once() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), vec![1u8; 64 * 1024]).unwrap();
        let one = disk_usage(dir.path()).unwrap();
        fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        assert_eq!(disk_usage(dir.path()).unwrap(), one);
        assert!(one >= 64 * 1024);
        reset_peak_rss();
        assert!(peak_rss_bytes() > 0);
    }
}
