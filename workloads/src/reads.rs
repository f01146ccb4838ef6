//! The read workloads: what a program start and a filesystem walk ask of a view.
//!
//! They see only the view (a directory) and are the same code for every model, so a
//! difference in their timings is a difference in the model's view, not in the workload.
//! - `cold-read` reads named files in full (the large binaries and libraries a program
//!   start touches); the runner drops caches first.
//! - `many-file` walks the view: stat every entry, read every regular file of at most
//!   64 KiB, and look up a fixed list of names that exist nowhere (the misses `ld.so` and
//!   a `$PATH` search make).

use crate::view::{walk, InternalLinks, ViewSpec, WalkKind};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

/// Files up to this size are read by `many-file`.
pub const SMALL_FILE_BYTES: u64 = 64 * 1024;
/// How many of the corpus's largest files `cold-read` reads.
pub const COLD_READ_FILES: usize = 20;
/// How many names that do not exist `many-file` looks up.
pub const MISS_LOOKUPS: usize = 500;

/// What a read workload did: the same counts for every model whose view is right.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCounts {
    pub entries: u64,
    pub files_read: u64,
    pub bytes_read: u64,
    pub misses: u64,
}

/// Reads each of `paths` (relative to the view root) in full.
pub fn cold_read(view_root: &Path, paths: &[String]) -> Result<ReadCounts> {
    let mut buf = vec![0u8; 1 << 20];
    let mut counts = ReadCounts::default();
    for rel in paths {
        let path = view_root.join(rel);
        counts.bytes_read += read_fully(&path, &mut buf)?;
        counts.files_read += 1;
    }
    Ok(counts)
}

/// Walks the view (one stat of every entry; `links` are the view's internal links,
/// found beforehand and untimed by `view::internal_links`), reads every small regular
/// file, then looks up the miss list. A lookup that finds something is an error: the
/// workload is defined as misses, and a hit would make models do different work.
pub fn many_file(spec: &ViewSpec, links: &InternalLinks, misses: &[PathBuf]) -> Result<ReadCounts> {
    let mut buf = vec![0u8; SMALL_FILE_BYTES as usize];
    let mut counts = ReadCounts::default();
    walk(spec, links, &mut |_rel, abs, kind, meta| {
        counts.entries += 1;
        if kind == WalkKind::File && meta.len() <= SMALL_FILE_BYTES {
            counts.bytes_read += read_fully(abs, &mut buf)?;
            counts.files_read += 1;
        }
        Ok(())
    })?;
    for rel in misses {
        let path = spec.root.join(rel);
        match std::fs::symlink_metadata(&path) {
            Err(e)
                if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                counts.misses += 1
            }
            Err(e) => return Err(e).with_context(|| format!("looking up {}", path.display())),
            Ok(_) => bail!(
                "{}: a name of the miss list exists in the view",
                path.display()
            ),
        }
    }
    Ok(counts)
}

fn read_fully(path: &Path, buf: &mut [u8]) -> Result<u64> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut total = 0u64;
    loop {
        match file.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

/// The fixed miss list: names in the places a dynamic loader and a shell search, which no
/// package ships (each carries "pkgbench-miss" in its name). Relative to the view root.
pub fn miss_list() -> Vec<PathBuf> {
    // Where ld.so looks for a library (hwcaps subdirectories first, then the multiarch and
    // plain library directories) and where a shell looks for a command along $PATH.
    const PLACES: [&str; 10] = [
        "usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3",
        "usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v2",
        "usr/lib/x86_64-linux-gnu",
        "lib/x86_64-linux-gnu",
        "usr/lib",
        "usr/local/sbin",
        "usr/local/bin",
        "usr/sbin",
        "usr/bin",
        "bin",
    ];
    let per_place = MISS_LOOKUPS / PLACES.len();
    let mut out = Vec::with_capacity(MISS_LOOKUPS);
    for (p, place) in PLACES.iter().enumerate() {
        for i in 0..per_place {
            let name = if p < 5 {
                format!("libpkgbench-miss{i}.so.{}", i % 3)
            } else {
                format!("pkgbench-miss-cmd{i}")
            };
            out.push(Path::new(place).join(name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn miss_list_is_fixed_and_of_the_documented_size() {
        let list = miss_list();
        assert_eq!(list.len(), MISS_LOOKUPS);
        let unique: std::collections::BTreeSet<_> = list.iter().collect();
        assert_eq!(unique.len(), MISS_LOOKUPS);
        assert_eq!(list, miss_list());
    }

    #[test]
    fn many_file_counts_entries_small_reads_and_misses() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("usr/bin")).unwrap();
        fs::write(dir.path().join("usr/bin/small"), vec![1u8; 100]).unwrap();
        fs::write(
            dir.path().join("usr/big"),
            vec![2u8; SMALL_FILE_BYTES as usize + 1],
        )
        .unwrap();
        let counts = many_file(
            &ViewSpec::plain(dir.path()),
            &InternalLinks::default(),
            &miss_list(),
        )
        .unwrap();
        assert_eq!(
            counts,
            ReadCounts {
                entries: 4,
                files_read: 1,
                bytes_read: 100,
                misses: MISS_LOOKUPS as u64
            }
        );
    }

    #[test]
    fn a_hit_in_the_miss_list_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let hit = &miss_list()[7];
        fs::create_dir_all(dir.path().join(hit.parent().unwrap())).unwrap();
        fs::write(dir.path().join(hit), b"x").unwrap();
        let err = many_file(
            &ViewSpec::plain(dir.path()),
            &InternalLinks::default(),
            &miss_list(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("exists in the view"), "{err}");
    }

    #[test]
    fn cold_read_reads_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), vec![0u8; 3 << 20]).unwrap();
        let c = cold_read(dir.path(), &["a".to_string()]).unwrap();
        assert_eq!((c.files_read, c.bytes_read), (1, 3 << 20));
        assert!(cold_read(dir.path(), &["missing".to_string()]).is_err());
    }
}
