//! Criterion benches of each package format's hot path, on one real-sized package of the
//! default corpus (libc6: 13 MiB in 400 entries, generated as the harness does):
//! - `tar/unpack`: a dpkg data archive (zstd) streamed into an empty directory, no fsync;
//! - `nar/encode`: `nix-store --dump` of the package tree, into a sink;
//! - `nar/restore`: the uncompressed NAR restored into a new path, canonicalised;
//! - `squashfs/build`: the package tree packed into an uncompressed image (the mirror
//!   side of the fuse and overlay models).
//!
//! Reads of an image through the FUSE daemon are measured by the harness's workloads.
//!
//! `cargo bench -p harness --bench formats -- --save-baseline main`, then after a change
//! `cargo bench -p harness --bench formats -- --baseline main` reports each change.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use models::formats::nar::{dump_path, restore, RestoreOptions};
use models::formats::squashfs::{build_image, ImageOptions};
use models::formats::tar::{pack_tree, unpack, Staging, UnpackOptions};
use models::Durability;
use std::path::PathBuf;

/// The package the benches use, generated once into `target/bench-corpus`.
fn package() -> (PathBuf, u64) {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-corpus");
    let corpus = workloads::corpus::open("debian-qemu:libc6", &cache, &|_, _| {})
        .expect("generating the bench corpus");
    let pkg = &corpus.packages[0];
    (pkg.root.clone(), pkg.bytes)
}

fn benches(c: &mut Criterion) {
    let (root, bytes) = package();
    let scratch = tempfile::tempdir().expect("scratch directory");

    let mut tar_zst = Vec::new();
    {
        let mut enc = zstd::Encoder::new(&mut tar_zst, 3).expect("zstd");
        pack_tree(&root, &mut enc).expect("packing tar");
        enc.finish().expect("finishing zstd");
    }
    let mut nar = Vec::new();
    dump_path(&root, &mut nar).expect("dumping NAR");

    let mut group = c.benchmark_group("formats");
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(20);
    let mut n = 0u64;
    let mut fresh = |name: &str| {
        n += 1;
        scratch.path().join(format!("{name}-{n}"))
    };

    group.bench_function("tar/unpack", |b| {
        b.iter_batched(
            || {
                let dest = fresh("tar");
                std::fs::create_dir_all(&dest).expect("dest");
                dest
            },
            |dest| {
                let dec = zstd::Decoder::new(&tar_zst[..]).expect("zstd");
                let opts = UnpackOptions {
                    staging: Staging::DpkgNew,
                    durability: Durability::None,
                    refuse_overwrite: false,
                    keep_setid: false,
                };
                unpack(&dest, dec, &dest, opts).expect("unpack");
                dest
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("nar/encode", |b| {
        b.iter(|| dump_path(&root, &mut std::io::sink()).expect("dump"))
    });
    group.bench_function("nar/restore", |b| {
        b.iter_batched(
            || fresh("nar"),
            |dest| {
                let opts = RestoreOptions {
                    canonical: true,
                    fsync: false,
                };
                restore(&nar[..], &dest, opts).expect("restore");
                dest
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("squashfs/build", |b| {
        b.iter_batched(
            || fresh("img"),
            |out| {
                build_image(&root, &out, &ImageOptions::default()).expect("image");
                out
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(formats, benches);
criterion_main!(formats);
