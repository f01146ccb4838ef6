//! Measurements for the `fuse` model's note, not checks: ignored by default.
//!
//! `cargo test --release -p harness --test fuse_bench -- --ignored --nocapture` prints,
//! on the default corpus and in a private mount namespace:
//! - warm read (the 20 largest files read twice, the second read timed) of `fuse`,
//!   `overlay` (the kernel's squashfs) and `ref-squashfuse`;
//! - cold read and many-file of `fuse` with every speed knob on, and with each turned
//!   off in turn (its measured effect);
//! - the daemon process's peak memory (VmHWM) after reading the whole view, with the 116
//!   images and with 1044 (each image added 9 times under other names); `harness run
//!   --model fuse --corpus synthetic:1000` reports it for 1000 distinct packages as
//!   `service_peak_rss_bytes`.

use harness::caches::{CacheControl, KernelCaches};
use harness::testing::require_root;
use models::fuse::reference::SquashfuseModel;
use models::fuse::FuseOptions;
use models::overlay::OverlayModel;
use models::{Artifact, Durability, Model, PhaseTimes, RunCtx};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use workloads::reads::{cold_read, COLD_READ_FILES};

const IN_NAMESPACE: &str = "PKGBENCH_TEST_IN_NAMESPACE";
const SAMPLES: usize = 3;

fn in_private_mount_namespace(test: &str, body: impl FnOnce()) {
    if std::env::var_os(IN_NAMESPACE).is_some() {
        return body();
    }
    let status = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            test,
            "--nocapture",
            "--ignored",
            "--test-threads=1",
        ])
        .env(IN_NAMESPACE, "1")
        .status()
        .expect("unshare (util-linux) must be installed");
    assert!(status.success());
}

fn work_dir() -> PathBuf {
    PathBuf::from(std::env::var("PKGBENCH_WORK_DIR").unwrap_or_else(|_| "/var/tmp/pkgbench".into()))
}

/// A field of `/proc/PID/status` in KiB.
fn vm_kib(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Bench {
    corpus: workloads::corpus::Corpus,
    set: Vec<Artifact>,
    mirror: PathBuf,
    largest: Vec<String>,
    scratch: tempfile::TempDir,
}

impl Bench {
    fn new() -> Bench {
        let corpus =
            workloads::corpus::open("debian-qemu", &work_dir().join("corpora"), &|_, _| {})
                .unwrap();
        let scratch = tempfile::tempdir_in(work_dir()).unwrap();
        let mirror = scratch.path().join("mirror");
        fs::create_dir_all(&mirror).unwrap();
        let packer = harness::testing::fuse_model_served_by(env!("CARGO_BIN_EXE_harness"));
        let set = harness::mirror::package_trees(&corpus)
            .iter()
            .map(|t| packer.pack(t, &mirror).unwrap())
            .collect();
        let largest = corpus.largest_files(COLD_READ_FILES);
        Bench {
            corpus,
            set,
            mirror,
            largest,
            scratch,
        }
    }

    fn ctx(&self) -> RunCtx {
        let target = self.scratch.path().join("target");
        let _ = fs::remove_dir_all(&target);
        fs::create_dir_all(&target).unwrap();
        RunCtx {
            target,
            mirror: self.mirror.clone(),
            durability: Durability::None,
            jobs: 4,
            http: None,
        }
    }

    /// (cold read, many-file, warm read) medians of `model`.
    fn measure(&self, model: &mut dyn Model) -> (Duration, Duration, Duration) {
        let (mut cold, mut many, mut warm) = (Vec::new(), Vec::new(), Vec::new());
        let mut caches = KernelCaches;
        for _ in 0..SAMPLES {
            model.install(&self.set, &self.ctx()).unwrap();
            let view = model.view();
            caches.drop_caches().unwrap();
            model.reset_caches().unwrap();
            let t = Instant::now();
            cold_read(&view.root, &self.largest).unwrap();
            cold.push(t.elapsed());
            caches.drop_caches().unwrap();
            model.reset_caches().unwrap();
            let t = Instant::now();
            harness::conformance::many_file_of(&view).unwrap();
            many.push(t.elapsed());
            cold_read(&view.root, &self.largest).unwrap();
            let t = Instant::now();
            cold_read(&view.root, &self.largest).unwrap();
            warm.push(t.elapsed());
            model.teardown().unwrap();
        }
        (median(cold), median(many), median(warm))
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[test]
#[ignore]
fn root_fuse_bench_reads_and_knobs() {
    let test = "root_fuse_bench_reads_and_knobs";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let bench = Bench::new();
        let _ = &bench.corpus;
        let mut rows: Vec<(String, (Duration, Duration, Duration))> = Vec::new();
        rows.push((
            "overlay (kernel squashfs)".into(),
            bench.measure(&mut OverlayModel::new()),
        ));
        rows.push((
            "ref-squashfuse".into(),
            bench.measure(&mut SquashfuseModel::new()),
        ));
        let all = FuseOptions::default();
        let knobs: Vec<(&str, FuseOptions)> = vec![
            ("fuse (all knobs on)", all),
            ("fuse threads=1", FuseOptions { threads: 1, ..all }),
            (
                "fuse timeouts 0",
                FuseOptions {
                    entry_timeout: Duration::ZERO,
                    ..all
                },
            ),
            (
                "fuse no negative entries",
                FuseOptions {
                    negative_entries: false,
                    ..all
                },
            ),
            (
                "fuse no keep_cache/cache_dir",
                FuseOptions {
                    keep_cache: false,
                    ..all
                },
            ),
            (
                "fuse OPEN requests (no zero-message open)",
                FuseOptions {
                    zero_message_open: false,
                    ..all
                },
            ),
            (
                "fuse readahead 128 KiB",
                FuseOptions {
                    max_readahead: 128 * 1024,
                    ..all
                },
            ),
            (
                "fuse no readdirplus",
                FuseOptions {
                    readdirplus: false,
                    ..all
                },
            ),
        ];
        for (name, options) in knobs {
            let mut model = harness::testing::fuse_model_served_by(env!("CARGO_BIN_EXE_harness"));
            model.options = options;
            rows.push((name.into(), bench.measure(&mut model)));
        }
        println!("| model | cold-read ms | many-file ms | warm read ms |\n|---|---|---|---|");
        for (name, (c, m, w)) in &rows {
            println!("| {name} | {:.1} | {:.1} | {:.2} |", ms(*c), ms(*m), ms(*w));
        }
    });
}

/// Adds each image `copies` times (as NAME-k), reads the whole view, and returns the
/// daemon process's peak resident memory (VmHWM, KiB) and the number of images.
fn daemon_peak(bench: &Bench, copies: usize) -> (u64, usize) {
    let ctx = bench.ctx();
    let mut model = harness::testing::fuse_model_served_by(env!("CARGO_BIN_EXE_harness"));
    model.install(&[], &ctx).unwrap();
    let mut times = PhaseTimes::default();
    let mut images = 0;
    for k in 0..copies {
        for art in &bench.set {
            let mut art = art.clone();
            if k > 0 {
                let rel = &art.files[0];
                let renamed = rel.with_file_name(format!(
                    "{}-{k}.sqfs",
                    rel.file_stem().unwrap().to_string_lossy()
                ));
                let src = bench.mirror.join(rel);
                let dst = bench.mirror.join(&renamed);
                if !dst.exists() {
                    fs::hard_link(&src, &dst).unwrap();
                }
                art.files[0] = renamed;
            }
            model.add(&art, &ctx, &mut times).unwrap();
            images += 1;
        }
    }
    let view = model.view();
    harness::conformance::many_file_of(&view).unwrap();
    cold_read(&view.root, &bench.largest).unwrap();
    // Each package's own directory as well, for the copies.
    let ro: &Path = model.mountpoint().unwrap();
    for entry in fs::read_dir(ro).unwrap() {
        let _ = fs::metadata(entry.unwrap().path());
    }
    let pid = model.service_pids()[0];
    let peak = vm_kib(pid, "VmHWM:");
    model.teardown().unwrap();
    (peak, images)
}

#[test]
#[ignore]
fn root_fuse_bench_daemon_memory() {
    let test = "root_fuse_bench_daemon_memory";
    if !require_root(test) {
        return;
    }
    in_private_mount_namespace(test, || {
        let bench = Bench::new();
        for copies in [1, 9] {
            let (kib, images) = daemon_peak(&bench, copies);
            println!(
                "daemon peak RSS with {images} images: {:.1} MiB",
                kib as f64 / 1024.0
            );
        }
    });
}
