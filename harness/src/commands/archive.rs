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

pub fn unpack(format: &str, input: &Path, dest: &Path, keep_setid: bool) -> Result<ExitCode> {
    match format {
        "tar" => unpack_tar_into(input, dest, keep_setid),
        // A NAR has no setuid or setgid bits to keep.
        "nar" if keep_setid => {
            bail!("--keep-setid applies to tar only: a NAR cannot carry setuid or setgid bits")
        }
        "nar" => unpack_nar(input, dest),
        other => bail!("unknown format {other:?}: this version unpacks tar and nar"),
    }
}

/// Unpacks as `tar -x` would: entries under their final names (direct staging), no
/// syncs; setuid and setgid bits stripped unless `keep_setid`.
fn unpack_tar_into(input: &Path, dest: &Path, keep_setid: bool) -> Result<ExitCode> {
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
            keep_setid,
        },
    )?;
    let setid = if keep_setid {
        String::new()
    } else {
        format!(
            "; setuid/setgid bits stripped from {} of them (--keep-setid keeps them)",
            report.setid_stripped
        )
    };
    eprintln!(
        "unpacked {} entries ({} files, {} bytes){setid}",
        report.paths.len(),
        report.files,
        report.bytes
    );
    Ok(ExitCode::SUCCESS)
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
