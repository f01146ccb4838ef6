//! `harness pack` and `harness unpack`: a package format on its own, for inspection and
//! for hostile-input checks.

use anyhow::{bail, Context, Result};
use models::formats::tar::{pack_tree, unpack as unpack_tar, Staging, UnpackOptions};
use models::Durability;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

pub fn pack(format: &str, src: &Path, out: &Path) -> Result<ExitCode> {
    match format {
        "tar" => {
            if !src.is_dir() {
                bail!("{}: not a directory", src.display());
            }
            let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
            let mut w = BufWriter::new(file);
            pack_tree(src, &mut w).with_context(|| format!("packing {}", src.display()))?;
            w.flush()
                .with_context(|| format!("writing {}", out.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unknown format {other:?}: this version packs tar"),
    }
}

pub fn unpack(format: &str, input: &Path, dest: &Path) -> Result<ExitCode> {
    match format {
        "tar" => {
            let file = File::open(input).with_context(|| format!("opening {}", input.display()))?;
            fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
            let report = unpack_tar(
                input,
                BufReader::new(file),
                dest,
                UnpackOptions {
                    staging: Staging::Direct,
                    durability: Durability::None,
                },
            )?;
            eprintln!(
                "unpacked {} entries ({} files, {} bytes)",
                report.paths.len(),
                report.files,
                report.bytes
            );
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unknown format {other:?}: this version unpacks tar"),
    }
}
