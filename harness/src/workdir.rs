//! The work directory (corpora, mirrors, install targets) belongs to one run at a time:
//! two runs would empty and mount each other's targets. A run holds an exclusive lock on
//! `WORK_DIR/lock` until it exits (the kernel drops it even after SIGKILL).

use anyhow::{bail, Context, Result};
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsFd;
use std::path::Path;

/// Creates the work directory and locks it; keep the returned file open for the run.
pub fn claim_work_dir(dir: &Path) -> Result<File> {
    fs::create_dir_all(dir)
        .with_context(|| format!("creating work directory {}", dir.display()))?;
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match rustix::fs::flock(file.as_fd(), rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => bail!(
            "work directory {} is in use by another harness run: wait for it, or give this run its own --work-dir",
            dir.display()
        ),
        Err(e) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_refused_while_the_first_holds() {
        let dir = tempfile::tempdir().unwrap();
        let first = claim_work_dir(dir.path()).unwrap();
        let err = claim_work_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("in use by another harness run"), "{err}");
        drop(first);
        assert!(claim_work_dir(dir.path()).is_ok());
    }
}
