//! Calibration: the machine's own limits on the work directory, measured at the start of
//! every run, so results from different machines can be read side by side as fractions
//! of what each machine's storage can do.
//!
//! Four limits: sequential read from a cold cache, sequential write ending in fsync, and
//! small-file creates per second with and without an fsync per file (the two regimes an
//! installer lives in: dpkg's durable unpack and an unsafe one).

use crate::caches::CacheControl;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

/// Size of the sequential read and write probe.
pub const SEQUENTIAL_BYTES: u64 = 128 << 20;
/// Files of the create probes, and their size.
pub const CREATE_FILES: usize = 1000;
pub const CREATE_FILE_BYTES: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Calibration {
    /// Sequential read of a file after dropping caches; null when caches cannot be dropped.
    pub seq_read_cold_bytes_per_s: Option<f64>,
    /// Sequential write of a new file, ending with its fsync.
    pub seq_write_fsync_bytes_per_s: f64,
    /// Creating, writing and closing small files.
    pub creates_per_s: f64,
    /// The same with an fsync of each file before closing it.
    pub creates_fsync_per_s: f64,
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
    // Incompressible-looking bytes, in case the filesystem compresses.
    let block: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let start = Instant::now();
    let mut f = File::create(&big).with_context(|| format!("creating {}", big.display()))?;
    for _ in 0..SEQUENTIAL_BYTES / block.len() as u64 {
        f.write_all(&block)?;
    }
    f.sync_all().context("fsync of the calibration file")?;
    drop(f);
    let seq_write = SEQUENTIAL_BYTES as f64 / start.elapsed().as_secs_f64();

    let seq_read = if caches.can_drop().is_ok() {
        caches.drop_caches()?;
        let start = Instant::now();
        let mut f = File::open(&big)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        Some(total as f64 / start.elapsed().as_secs_f64())
    } else {
        None
    };
    fs::remove_file(&big)?;

    let creates = creates_per_second(&scratch.join("plain"), false)?;
    let creates_fsync = creates_per_second(&scratch.join("fsync"), true)?;
    Ok(Calibration {
        seq_read_cold_bytes_per_s: seq_read,
        seq_write_fsync_bytes_per_s: seq_write,
        creates_per_s: creates,
        creates_fsync_per_s: creates_fsync,
    })
}

fn creates_per_second(dir: &Path, fsync: bool) -> Result<f64> {
    fs::create_dir_all(dir)?;
    let data = vec![0x5au8; CREATE_FILE_BYTES];
    let start = Instant::now();
    for i in 0..CREATE_FILES {
        let path = dir.join(format!("f{i}"));
        let mut f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        f.write_all(&data)?;
        if fsync {
            f.sync_all()?;
        }
    }
    Ok(CREATE_FILES as f64 / start.elapsed().as_secs_f64())
}

/// The limits that bound each workload, and each result as a fraction of its limit:
/// (metric name, value) pairs to add to a sample's metrics.
pub fn fractions(
    cal: &Calibration,
    workload: &str,
    durable: bool,
    metrics: &std::collections::BTreeMap<String, f64>,
    files_installed: u64,
) -> Vec<(String, f64)> {
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
            // An installer's floor is creating the corpus's files at the storage's rate.
            let (limit, name) = if durable {
                (cal.creates_fsync_per_s, "fraction_of_creates_fsync")
            } else {
                (cal.creates_per_s, "fraction_of_creates")
            };
            let rate = files_installed as f64 / secs;
            out.push(("files_per_s".into(), rate));
            out.push((name.into(), rate / limit));
        }
        "cold-read" | "many-file" => {
            if let (Some(bytes), Some(limit)) =
                (metrics.get("read_bytes"), cal.seq_read_cold_bytes_per_s)
            {
                let rate = bytes / secs;
                out.push(("read_bytes_per_s".into(), rate));
                out.push(("fraction_of_seq_read".into(), rate / limit));
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

    #[test]
    fn limits_are_measured_and_positive_and_the_scratch_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cal = calibrate(dir.path(), &mut FakeCaches::default()).unwrap();
        assert!(cal.seq_write_fsync_bytes_per_s > 1e6, "{cal:?}");
        assert!(cal.seq_read_cold_bytes_per_s.unwrap() > 1e6, "{cal:?}");
        assert!(
            cal.creates_per_s > 0.0 && cal.creates_fsync_per_s > 0.0,
            "{cal:?}"
        );
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
    }

    #[test]
    fn results_are_fractions_of_the_limit_that_bounds_them() {
        let cal = Calibration {
            seq_read_cold_bytes_per_s: Some(100e6),
            seq_write_fsync_bytes_per_s: 50e6,
            creates_per_s: 10_000.0,
            creates_fsync_per_s: 1_000.0,
        };
        let m: std::collections::BTreeMap<String, f64> = [
            ("wall_ns".to_string(), 2e9),
            ("read_bytes".to_string(), 100e6),
        ]
        .into();
        let read = fractions(&cal, "cold-read", true, &m, 0);
        assert_eq!(
            read,
            vec![
                ("read_bytes_per_s".into(), 50e6),
                ("fraction_of_seq_read".into(), 0.5)
            ]
        );
        let install = fractions(&cal, "install", true, &m, 1000);
        assert_eq!(
            install,
            vec![
                ("files_per_s".into(), 500.0),
                ("fraction_of_creates_fsync".into(), 0.5)
            ]
        );
        let unsafe_install = fractions(&cal, "install", false, &m, 1000);
        assert_eq!(unsafe_install[1], ("fraction_of_creates".into(), 0.05));
    }
}
