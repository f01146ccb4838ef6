//! What a sample cost besides wall time: CPU time of the harness with its threads, of
//! the child processes it waited for (hooks, ldconfig), and of the service processes a
//! model keeps running (a FUSE daemon: running children are in no rusage, so they are
//! read from `/proc/PID`); storage I/O of all of them; peak memory of the harness and of
//! the services; the read requests of the block device under the target; and the disk
//! footprint of a model's state.

use anyhow::{Context, Result};
use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Counters that only grow, read before and after a sample.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    user_ns: u128,
    system_ns: u128,
    io_read_bytes: u64,
    io_write_bytes: u64,
    /// The same counters of each service process, by pid.
    services: Vec<(u32, Service)>,
}

/// CPU and I/O counters of one service process.
#[derive(Debug, Clone, Copy, Default)]
struct Service {
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

/// `/proc/PID/io` (`self` for the harness): bytes the process (all threads, and children
/// once reaped) made the storage layer read and write: the block-layer traffic it caused.
fn proc_io(pid: &str) -> (u64, u64) {
    let text = fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("read_bytes:"), field("write_bytes:"))
}

/// User and system CPU of a running process from `/proc/PID/stat` (fields 14 and 15,
/// in clock ticks: 10 ms resolution).
fn proc_cpu_ns(pid: u32) -> (u128, u128) {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let Some((_, rest)) = text.rsplit_once(") ") else {
        return (0, 0);
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf only reads a constant of the system.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u128;
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u128>().ok())
            .unwrap_or(0)
    };
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    (
        ticks(11) * 1_000_000_000 / tick,
        ticks(12) * 1_000_000_000 / tick,
    )
}

impl Service {
    fn read(pid: u32) -> Service {
        let (user_ns, system_ns) = proc_cpu_ns(pid);
        let (io_read_bytes, io_write_bytes) = proc_io(&pid.to_string());
        Service {
            user_ns,
            system_ns,
            io_read_bytes,
            io_write_bytes,
        }
    }
}

impl Counters {
    /// The harness's counters and those of the service processes `services`.
    pub fn now(services: &[u32]) -> Counters {
        let (su, ss) = rusage_ns(libc::RUSAGE_SELF);
        let (cu, cs) = rusage_ns(libc::RUSAGE_CHILDREN);
        let (r, w) = proc_io("self");
        Counters {
            user_ns: su + cu,
            system_ns: ss + cs,
            io_read_bytes: r,
            io_write_bytes: w,
            services: services.iter().map(|&p| (p, Service::read(p))).collect(),
        }
    }

    /// The metrics of the interval from `self` to `later`, with units in their names. A
    /// service in `later` but not in `self` started during the interval: all of its
    /// counters belong to it.
    pub fn metrics_until(&self, later: &Counters) -> Vec<(&'static str, f64)> {
        let mut total = Service {
            user_ns: later.user_ns.saturating_sub(self.user_ns),
            system_ns: later.system_ns.saturating_sub(self.system_ns),
            io_read_bytes: later.io_read_bytes.saturating_sub(self.io_read_bytes),
            io_write_bytes: later.io_write_bytes.saturating_sub(self.io_write_bytes),
        };
        for (pid, end) in &later.services {
            let start = self
                .services
                .iter()
                .find(|(p, _)| p == pid)
                .map(|(_, s)| *s)
                .unwrap_or_default();
            total.user_ns += end.user_ns.saturating_sub(start.user_ns);
            total.system_ns += end.system_ns.saturating_sub(start.system_ns);
            total.io_read_bytes += end.io_read_bytes.saturating_sub(start.io_read_bytes);
            total.io_write_bytes += end.io_write_bytes.saturating_sub(start.io_write_bytes);
        }
        vec![
            ("cpu_user_ns", total.user_ns as f64),
            ("cpu_system_ns", total.system_ns as f64),
            ("io_read_bytes", total.io_read_bytes as f64),
            ("io_write_bytes", total.io_write_bytes as f64),
        ]
    }
}

/// Resets the peak resident set size of the harness (`"self"`) or of a process id, so
/// the next reading is this sample's peak ("5" to clear_refs resets VmHWM, see proc(5)).
/// Best effort: without it the peak is the process's lifetime peak, still an upper bound.
pub fn reset_peak_rss(pid: &str) {
    let _ = fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// VmHWM of the harness (`"self"`) or of a process id, in bytes (threads included,
/// children not); 0 if the process is gone.
pub fn peak_rss_bytes(pid: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// The block device a directory's filesystem is on, for its request counters: every
/// read the device completed, whoever asked (the model, its daemon, a loop device over
/// an image, the kernel's readahead), which `/proc/PID/io` cannot attribute to a
/// process once a loop device's worker or a flusher did it.
#[derive(Debug, Clone)]
pub struct BlockDevice {
    /// `/sys/dev/block/MAJOR:MINOR/stat` (block/stat.rst: field 1 reads completed,
    /// field 3 sectors read, in 512-byte units whatever the device's sector size).
    stat: std::path::PathBuf,
}

impl BlockDevice {
    /// The device of `dir`'s filesystem, or None when it is on no block device of its
    /// own (tmpfs; btrfs, whose files report an anonymous device).
    pub fn of(dir: &Path) -> Option<BlockDevice> {
        let dev = fs::metadata(dir).ok()?.dev();
        let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
        let stat = std::path::PathBuf::from(format!("/sys/dev/block/{major}:{minor}/stat"));
        stat.is_file().then_some(BlockDevice { stat })
    }

    /// (read requests completed, bytes read) so far; None if the counters are unreadable.
    pub fn reads(&self) -> Option<(u64, u64)> {
        let text = fs::read_to_string(&self.stat).ok()?;
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
        let requests = fields.next()??;
        let sectors = fields.nth(1)??;
        Some((requests, sectors * 512))
    }
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
    fn device_reads_are_fields_one_and_three_of_sysfs_stat() {
        let dir = tempfile::tempdir().unwrap();
        let stat = dir.path().join("stat");
        // block/stat.rst's layout: reads, merges, sectors, ticks, then the writes.
        fs::write(
            &stat,
            "    1207      31    92344     380     5 0 40 1 0 390 381\n",
        )
        .unwrap();
        let device = BlockDevice { stat };
        assert_eq!(device.reads(), Some((1207, 92344 * 512)));
        // /proc is on no block device.
        assert!(BlockDevice::of(Path::new("/proc")).is_none());
    }

    #[test]
    fn counters_see_cpu_spent_in_a_child_process() {
        let before = Counters::now(&[]);
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let m = before.metrics_until(&Counters::now(&[]));
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
        reset_peak_rss("self");
        assert!(peak_rss_bytes("self") > 0);
    }

    #[test]
    fn counters_see_cpu_and_memory_of_a_running_service_process() {
        // A busy child that is still running at the end: in no rusage, only in /proc.
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .unwrap();
        let pid = child.id();
        let before = Counters::now(&[]);
        let mut user = 0.0;
        for _ in 0..200 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let m = before.metrics_until(&Counters::now(&[pid]));
            user = m.iter().find(|(k, _)| *k == "cpu_user_ns").unwrap().1;
            if user > 1e8 {
                break;
            }
        }
        let peak = peak_rss_bytes(&pid.to_string());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            user > 1e8,
            "the running service's CPU must count: {user} ns"
        );
        assert!(peak > 0, "the service's peak memory must be readable");
    }
}
