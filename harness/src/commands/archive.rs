//! `harness pack` and `harness unpack`: a package format on its own, for inspection and
//! for hostile-input checks.

use anyhow::{bail, Context, Result};
use models::formats::squashfs::{build_image, Compression, ImageOptions};
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
        // `nix-store --dump SRC > OUT`: an uncompressed NAR.
        "nar" => pack_nar(src, out),
        // `squashfs` is uncompressed (distri's choice); `squashfs:zstd|lz4|xz` compress.
        squashfs if squashfs == "squashfs" || squashfs.starts_with("squashfs:") => {
            let compression = match squashfs.strip_prefix("squashfs:") {
                Some(c) => Compression::parse(c)?,
                None => Compression::None,
            };
            let opts = ImageOptions {
                compression,
                ..ImageOptions::default()
            };
            let report = build_image(src, out, &opts)?;
            eprintln!(
                "packed {} inodes into {} bytes ({} compression, {} KiB blocks)",
                report.inodes,
                report.size_bytes,
                compression.as_str(),
                opts.block_size / 1024
            );
            Ok(ExitCode::SUCCESS)
        }
        other => bail!(
            "unknown format {other:?}: this version packs tar, nar and squashfs (squashfs:zstd, squashfs:lz4, squashfs:xz to compress)"
        ),
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
                    refuse_overwrite: false,
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
        "nar" => unpack_nar(input, dest),
        other => bail!("unknown format {other:?}: this version unpacks tar and nar"),
    }
}

fn pack_nar(src: &Path, out: &Path) -> Result<ExitCode> {
    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = BufWriter::new(file);
    let size = models::formats::nar::dump_path(src, &mut w)
        .with_context(|| format!("packing {}", src.display()))?;
    w.flush()
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!("packed {size} bytes");
    Ok(ExitCode::SUCCESS)
}

/// `nix-store --restore DEST < IN`: DEST must not exist, and is removed again when the
/// archive is refused.
fn unpack_nar(input: &Path, dest: &Path) -> Result<ExitCode> {
    use models::formats::nar::{restore, RestoreOptions};
    if fs::symlink_metadata(dest).is_ok() {
        bail!(
            "{}: already exists (a NAR is restored as a new path)",
            dest.display()
        );
    }
    let file = File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let report = restore(file, dest, RestoreOptions::default())
        .map_err(anyhow::Error::new)
        .with_context(|| format!("unpacking {}", input.display()))?;
    eprintln!(
        "unpacked {} files ({} bytes), {} directories, {} symlinks",
        report.files, report.file_bytes, report.directories, report.symlinks
    );
    Ok(ExitCode::SUCCESS)
}
