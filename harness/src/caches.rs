//! Cache control: what makes a cold sample cold.
//!
//! Before every cold sample the runner syncs and drops the page cache, dentries and
//! inodes (`echo 3 > /proc/sys/vm/drop_caches`). Without the privilege to do so the cold
//! samples are refused, never recorded warm. The trait lets tests record when the runner
//! drops caches without needing root.

use anyhow::{Context, Result};
use std::fs::OpenOptions;
use std::io::Write;

/// Drops the kernel's caches.
pub trait CacheControl {
    /// Syncs dirty data and drops page cache, dentries and inodes.
    fn drop_caches(&mut self) -> Result<()>;
    /// Whether `drop_caches` can work here; `Err` carries the reason it cannot.
    fn can_drop(&self) -> Result<()>;
}

/// The real thing: `sync; echo 3 > /proc/sys/vm/drop_caches`.
pub struct KernelCaches;

const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";

impl CacheControl for KernelCaches {
    fn drop_caches(&mut self) -> Result<()> {
        // Dirty pages cannot be dropped: sync first, as the kernel documentation says.
        nix::unistd::sync();
        let mut f = OpenOptions::new()
            .write(true)
            .open(DROP_CACHES)
            .with_context(|| format!("opening {DROP_CACHES} (needs root)"))?;
        f.write_all(b"3\n")
            .with_context(|| format!("writing 3 to {DROP_CACHES}"))
    }

    fn can_drop(&self) -> Result<()> {
        OpenOptions::new()
            .write(true)
            .open(DROP_CACHES)
            .map(drop)
            .with_context(|| {
                format!("cannot drop caches: {DROP_CACHES} is not writable (run as root)")
            })
    }
}
