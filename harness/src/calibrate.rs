//! Calibration: the machine's own limits on the work directory, measured at the start of
//! every run, so results from different machines can be read side by side as fractions
//! of what each machine's storage can do.
//!
//! Each limit is measured `REPETITIONS` times and summarised (median, min, max):
//! - sequential read of a 128 MiB file with `O_DIRECT`: the device, whatever the guest
//!   caches;
//! - the same read buffered, after dropping caches: what a cold read through the page
//!   cache gets. When it is clearly faster than the device (`COLD_BELOW_GUEST_FACTOR`),
//!   something below the guest caches (a VM's host): `cold_below_guest` says `suspect`,
//!   and the run warns, since no cold read here is cold all the way down;
//! - sequential write of 128 MiB ending in its fsync;
//! - small-file creates per second with and without an fsync per file (the two regimes
//!   an installer lives in: dpkg's durable unpack and an unsafe one);
//! - random 4 KiB reads per second with `O_DIRECT` (latency: what a walk of small files
//!   waits on).
//!
//! `fractions` divides a sample by the one limit that bounds what that model does in
//! that workload, and writes no fraction where no limit bounds it.

use crate::caches::CacheControl;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

/// Size of the sequential read and write probe.
pub const SEQUENTIAL_BYTES: u64 = 128 << 20;
/// Files of the create probe without fsync, and with it (fewer: each costs a flush).
pub const CREATE_FILES: usize = 1000;
pub const CREATE_FSYNC_FILES: usize = 200;
pub const CREATE_FILE_BYTES: usize = 4096;
/// Random reads of the latency probe.
pub const RANDOM_READS: usize = 2000;
/// Every probe runs this many times.
pub const REPETITIONS: usize = 3;
/// A buffered cold read this much faster than `O_DIRECT` means a cache below the guest.
pub const COLD_BELOW_GUEST_FACTOR: f64 = 1.25;

/// One limit's repeated measurements.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Limit {
    pub samples: Vec<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Limit {
    fn of(samples: Vec<f64>) -> Limit {
        let median = crate::stats::median(&samples).unwrap_or(0.0);
        let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
        let max = samples.iter().copied().fold(0.0, f64::max);
        Limit {
            samples,
            median,
            min: if min.is_finite() { min } else { 0.0 },
            max,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Calibration {
    /// Sequential read with `O_DIRECT`; null where the filesystem refuses it (tmpfs).
    pub seq_read_direct_bytes_per_s: Option<Limit>,
    /// Sequential buffered read after dropping caches; null when caches cannot be dropped.
    pub seq_read_cold_bytes_per_s: Option<Limit>,
    /// Sequential write of a new file, ending with its fsync.
    pub seq_write_fsync_bytes_per_s: Limit,
    /// Creating, writing and closing small files.
    pub creates_per_s: Limit,
    /// The same with an fsync of each file before closing it.
    pub creates_fsync_per_s: Limit,
    /// Random 4 KiB reads with `O_DIRECT`; null where the filesystem refuses it.
    pub random_read_4k_per_s: Option<Limit>,
    /// `suspect` when the buffered cold read beats `O_DIRECT` by
    /// `COLD_BELOW_GUEST_FACTOR` (a cache below the guest), `not seen`, or `unknown`
    /// (one of the two could not be measured).
    pub cold_below_guest: String,
}

/// Measures the limits in a scratch directory below `work_dir`, removed afterwards.
pub fn calibrate(work_dir: &Path, caches: &mut dyn CacheControl) -> Result<Calibration> {
    let scratch = work_dir.join("calibration");
    if scratch.exists() {
        fs::remove_dir_all(&scratch).with_context(|| format!("removing {}", scratch.display()))?;
    }
    fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let outcome = measure(&scratch, caches);
    let _ = fs::remove_dir_all(&scratch);
    outcome
}

fn measure(scratch: &Path, caches: &mut dyn CacheControl) -> Result<Calibration> {
    let big = scratch.join("sequential");
    let mut write = Vec::new();
    let mut direct = Vec::new();
    let mut cold = Vec::new();
    let mut random = Vec::new();
    let mut creates = Vec::new();
    let mut creates_fsync = Vec::new();
    let can_drop = caches.can_drop().is_ok();
    for round in 0..REPETITIONS {
        write.push(write_sequential(&big)?);
        // O_DIRECT skips the guest's page cache of the file, but not one below it (a
        // loop device's backing file): drop caches first where that is allowed.
        if can_drop {
            caches.drop_caches()?;
        }
        if let Some(rate) = read_direct(&big)? {
            direct.push(rate);
        }
        if let Some(rate) = random_reads_direct(&big, round as u64)? {
            random.push(rate);
        }
        if can_drop {
            caches.drop_caches()?;
            cold.push(read_buffered(&big)?);
        }
        fs::remove_file(&big).with_context(|| format!("removing {}", big.display()))?;
        creates.push(creates_per_second(
            &scratch.join(format!("plain{round}")),
            false,
        )?);
        creates_fsync.push(creates_per_second(
            &scratch.join(format!("fsync{round}")),
            true,
        )?);
    }
    let some = |v: Vec<f64>| (!v.is_empty()).then(|| Limit::of(v));
    let (direct, cold) = (some(direct), some(cold));
    let cold_below_guest = match (&direct, &cold) {
        (Some(d), Some(c)) if c.median > d.median * COLD_BELOW_GUEST_FACTOR => "suspect",
        (Some(_), Some(_)) => "not seen",
        _ => "unknown",
    };
    Ok(Calibration {
        seq_read_direct_bytes_per_s: direct,
        seq_read_cold_bytes_per_s: cold,
        seq_write_fsync_bytes_per_s: Limit::of(write),
        creates_per_s: Limit::of(creates),
        creates_fsync_per_s: Limit::of(creates_fsync),
        random_read_4k_per_s: some(random),
        cold_below_guest: cold_below_guest.into(),
    })
}

/// Writes `SEQUENTIAL_BYTES` of incompressible-looking bytes (in case the filesystem
/// compresses) and fsyncs them; bytes per second.
fn write_sequential(path: &Path) -> Result<f64> {
    let block: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let start = Instant::now();
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    for _ in 0..SEQUENTIAL_BYTES / block.len() as u64 {
        f.write_all(&block)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    f.sync_all()
        .with_context(|| format!("fsync of {}", path.display()))?;
    Ok(SEQUENTIAL_BYTES as f64 / start.elapsed().as_secs_f64())
}

/// A buffer of `len` bytes aligned to 4 KiB, as `O_DIRECT` needs: a slice of a larger
/// vector.
struct Aligned {
    bytes: Vec<u8>,
    offset: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let bytes = vec![0u8; len + 4096];
        let offset = (4096 - bytes.as_ptr() as usize % 4096) % 4096;
        Aligned { bytes, offset, len }
    }
    fn slice(&mut self) -> &mut [u8] {
        &mut self.bytes[self.offset..self.offset + self.len]
    }
}

/// Opens `path` for `O_DIRECT` reads; None where the filesystem refuses them.
fn open_direct(path: &Path) -> Result<Option<File>> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("opening {} with O_DIRECT", path.display())),
    }
}

/// Reads `path` whole with `O_DIRECT` in 1 MiB requests; bytes per second.
fn read_direct(path: &Path) -> Result<Option<f64>> {
    let Some(f) = open_direct(path)? else {
        return Ok(None);
    };
    let mut buf = Aligned::new(1 << 20);
    let start = Instant::now();
    let mut offset = 0u64;
    loop {
        let n = match f.read_at(buf.slice(), offset) {
            Ok(n) => n,
            // Some filesystems open with O_DIRECT and refuse the read itself.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && offset == 0 => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if n == 0 {
            break;
        }
        offset += n as u64;
    }
    Ok(Some(offset as f64 / start.elapsed().as_secs_f64()))
}

/// `RANDOM_READS` reads of 4 KiB at random aligned offsets of `path` with `O_DIRECT`
/// (a seeded generator: the same offsets every run); reads per second.
fn random_reads_direct(path: &Path, seed: u64) -> Result<Option<f64>> {
    let Some(f) = open_direct(path)? else {
        return Ok(None);
    };
    let blocks = SEQUENTIAL_BYTES / 4096;
    let mut state = 0x5eed_0000_u64 ^ seed;
    let mut next = || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut buf = Aligned::new(4096);
    let start = Instant::now();
    for _ in 0..RANDOM_READS {
        let offset = (next() % blocks) * 4096;
        match f.read_at(buf.slice(), offset) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    Ok(Some(RANDOM_READS as f64 / start.elapsed().as_secs_f64()))
}

/// Reads `path` whole through the page cache; bytes per second.
fn read_buffered(path: &Path) -> Result<f64> {
    let start = Instant::now();
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

fn creates_per_second(dir: &Path, fsync: bool) -> Result<f64> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let data = vec![0x5au8; CREATE_FILE_BYTES];
    let count = if fsync {
        CREATE_FSYNC_FILES
    } else {
        CREATE_FILES
    };
    let start = Instant::now();
    for i in 0..count {
        let path = dir.join(format!("f{i}"));
        let mut f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        f.write_all(&data)
            .with_context(|| format!("writing {}", path.display()))?;
        if fsync {
            f.sync_all()
                .with_context(|| format!("fsync of {}", path.display()))?;
        }
    }
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

pub use models::catalog::InstallBound;

/// What bounds `model`'s install, as the model describes itself.
pub fn install_bound(model: &str) -> Option<InstallBound> {
    models::catalog::find(model).and_then(|m| m.install_bound)
}

/// Each result as a rate and as a fraction of the limit that bounds what `model` does in
/// `workload`: (metric name, value) pairs to add to a sample's metrics. No fraction where
/// no limit bounds the work (warm reads from memory, upgrades, unknown models).
pub fn fractions(
    cal: &Calibration,
    model: &str,
    workload: &str,
    durability: models::Durability,
    metrics: &std::collections::BTreeMap<String, f64>,
    files_installed: u64,
) -> Vec<(String, f64)> {
    use models::Durability;
    let mut out = Vec::new();
    let Some(&wall_ns) = metrics.get("wall_ns") else {
        return out;
    };
    let secs = wall_ns / 1e9;
    if secs <= 0.0 {
        return out;
    }
    match workload {
        "install" => {
            let rate = files_installed as f64 / secs;
            out.push(("files_per_s".into(), rate));
            let synced = match install_bound(model) {
                Some(InstallBound::CreatesSyncedUnlessNone) => Some(durability != Durability::None),
                Some(InstallBound::CreatesSyncedOnlyWhenFull) => {
                    Some(durability == Durability::Full)
                }
                Some(InstallBound::SequentialWrite) => {
                    let durable = metrics.get("durable_wall_ns").map(|ns| ns / 1e9);
                    if let (Some(bytes), Some(durable)) = (metrics.get("installed_bytes"), durable)
                    {
                        if durable > 0.0 && cal.seq_write_fsync_bytes_per_s.median > 0.0 {
                            let rate = bytes / durable;
                            out.push(("durable_write_bytes_per_s".into(), rate));
                            out.push((
                                "fraction_of_seq_write".into(),
                                rate / cal.seq_write_fsync_bytes_per_s.median,
                            ));
                        }
                    }
                    None
                }
                None => None,
            };
            let limit = match synced {
                Some(true) => Some((&cal.creates_fsync_per_s, "fraction_of_creates_fsync")),
                Some(false) => Some((&cal.creates_per_s, "fraction_of_creates")),
                None => None,
            };
            if let Some((limit, name)) = limit.filter(|(l, _)| l.median > 0.0) {
                out.push((name.into(), rate / limit.median));
            }
        }
        "cold-read" => {
            if let Some(bytes) = metrics.get("read_bytes") {
                let rate = bytes / secs;
                out.push(("read_bytes_per_s".into(), rate));
                // A cold read of large files streams them: the device's sequential rate.
                if let Some(limit) = cal.seq_read_direct_bytes_per_s.as_ref() {
                    out.push(("fraction_of_seq_read".into(), rate / limit.median));
                }
            }
        }
        "many-file" => {
            if let Some(bytes) = metrics.get("read_bytes") {
                out.push(("read_bytes_per_s".into(), bytes / secs));
            }
            // A walk of small files waits on one read after another: latency-bound.
            if let (Some(files), Some(limit)) = (
                metrics.get("files_read_count"),
                cal.random_read_4k_per_s.as_ref(),
            ) {
                let rate = files / secs;
                out.push(("files_read_per_s".into(), rate));
                out.push(("fraction_of_random_reads".into(), rate / limit.median));
            }
        }
        // From memory: no storage limit bounds it, so a rate without a fraction.
        "warm-read" => {
            if let Some(bytes) = metrics.get("read_bytes") {
                out.push(("read_bytes_per_s".into(), bytes / secs));
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::FakeCaches;
    use models::Durability;

    #[test]
    fn limits_are_measured_repeated_and_positive_and_the_scratch_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cal = calibrate(dir.path(), &mut FakeCaches::default()).unwrap();
        assert_eq!(cal.seq_write_fsync_bytes_per_s.samples.len(), REPETITIONS);
        assert!(cal.seq_write_fsync_bytes_per_s.median > 1e6, "{cal:?}");
        let cold = cal.seq_read_cold_bytes_per_s.as_ref().unwrap();
        assert!(cold.min > 1e6 && cold.min <= cold.median && cold.median <= cold.max);
        assert!(
            cal.creates_per_s.median > 0.0 && cal.creates_fsync_per_s.median > 0.0,
            "{cal:?}"
        );
        // The test's directory is on the machine's disk, which takes O_DIRECT.
        if let Some(direct) = &cal.seq_read_direct_bytes_per_s {
            assert!(direct.median > 1e6, "{cal:?}");
            assert!(cal.random_read_4k_per_s.as_ref().unwrap().median > 10.0);
            assert_ne!(cal.cold_below_guest, "unknown");
        }
        assert!(!dir.path().join("calibration").exists());
        let refused = calibrate(
            dir.path(),
            &mut FakeCaches {
                refuse: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(refused.seq_read_cold_bytes_per_s, None);
        assert_eq!(refused.cold_below_guest, "unknown");
    }

    fn limit(v: f64) -> Limit {
        Limit::of(vec![v])
    }

    #[test]
    fn each_result_is_a_fraction_of_the_limit_that_bounds_that_model() {
        let cal = Calibration {
            seq_read_direct_bytes_per_s: Some(limit(100e6)),
            seq_read_cold_bytes_per_s: Some(limit(300e6)),
            seq_write_fsync_bytes_per_s: limit(50e6),
            creates_per_s: limit(10_000.0),
            creates_fsync_per_s: limit(1_000.0),
            random_read_4k_per_s: Some(limit(2_000.0)),
            cold_below_guest: "suspect".into(),
        };
        let m: std::collections::BTreeMap<String, f64> = [
            ("wall_ns".to_string(), 2e9),
            ("durable_wall_ns".to_string(), 4e9),
            ("read_bytes".to_string(), 100e6),
            ("files_read_count".to_string(), 1000.0),
            ("installed_bytes".to_string(), 100e6),
        ]
        .into();
        let get = |v: &[(String, f64)], k: &str| v.iter().find(|(n, _)| n == k).map(|p| p.1);
        let read = fractions(&cal, "fuse", "cold-read", Durability::Native, &m, 0);
        assert_eq!(get(&read, "fraction_of_seq_read"), Some(0.5));
        let walk = fractions(&cal, "fuse", "many-file", Durability::Native, &m, 0);
        assert_eq!(get(&walk, "fraction_of_random_reads"), Some(0.25));
        assert_eq!(get(&walk, "fraction_of_seq_read"), None);
        let hooks = fractions(&cal, "hooks", "install", Durability::Native, &m, 1000);
        assert_eq!(get(&hooks, "fraction_of_creates_fsync"), Some(0.5));
        let unsafe_hooks = fractions(&cal, "hooks", "install", Durability::None, &m, 1000);
        assert_eq!(get(&unsafe_hooks, "fraction_of_creates"), Some(0.05));
        // Nix does not fsync store paths by default.
        let nar = fractions(&cal, "nar", "install", Durability::Native, &m, 1000);
        assert_eq!(get(&nar, "fraction_of_creates"), Some(0.05));
        assert_eq!(get(&nar, "fraction_of_creates_fsync"), None);
        // An image install creates no files: sequential writes to a durable state.
        let images = fractions(&cal, "overlay", "install", Durability::Native, &m, 1000);
        assert_eq!(get(&images, "fraction_of_seq_write"), Some(0.5));
        assert_eq!(get(&images, "fraction_of_creates_fsync"), None);
        let warm = fractions(&cal, "fuse", "warm-read", Durability::Native, &m, 0);
        assert!(warm.iter().all(|(k, _)| !k.starts_with("fraction")));
        assert!(fractions(&cal, "mock", "upgrade", Durability::Native, &m, 0).is_empty());
    }
}
