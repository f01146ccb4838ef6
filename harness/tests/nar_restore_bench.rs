//! Restore throughput of the NAR decoder against `nix-store --restore`, on the same
//! uncompressed NARs of the default corpus, on the same filesystem, page cache warm.
//! A measurement, not a check: ignored by default; run it with
//!
//! ```sh
//! cargo test --release -p harness --test nar_restore_bench -- --ignored --nocapture
//! ```
//!
//! It restores one NAR holding every package of `debian-qemu` (one process, so
//! `nix-store`'s start-up is paid once) and the 116 per-package NARs (one `nix-store`
//! process each, as a substitution would not pay), alternating the two tools, `sync`ing
//! before each sample so earlier writeback does not land in the next one, and prints
//! medians and the ratio.

use models::formats::nar::{dump_path, restore, RestoreOptions};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 7;

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s);
    out.resize(out.len() + (8 - s.len() % 8) % 8, 0);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn sync() {
    let _ = Command::new("sync").status();
}

fn nix_restore(nar: &Path, dest: &Path) {
    let status = Command::new("nix-store")
        .arg("--restore")
        .arg(dest)
        .stdin(Stdio::from(File::open(nar).unwrap()))
        .status()
        .expect("nix-store (nix-bin) on PATH");
    assert!(status.success());
}

fn our_restore(nar: &Path, dest: &Path, opts: RestoreOptions) {
    restore(File::open(nar).unwrap(), dest, opts).unwrap();
}

fn sample(dests: &Path, f: &dyn Fn(&Path)) -> Duration {
    if dests.exists() {
        models::formats::nar::remove_restored(dests).unwrap();
    }
    fs::create_dir(dests).unwrap();
    sync();
    let start = Instant::now();
    f(dests);
    start.elapsed()
}

#[test]
#[ignore = "a measurement; run with --ignored --nocapture"]
fn restore_throughput_against_nix_store() {
    let work_root = std::env::var_os("PKGBENCH_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let work = tempfile::tempdir_in(work_root).unwrap();
    let corpus =
        workloads::corpus::open("debian-qemu", &work.path().join("corpora"), &|_, _| {}).unwrap();
    let nars = work.path().join("nars");
    fs::create_dir(&nars).unwrap();
    // Per-package NARs, and one NAR with every package as a top-level entry.
    let mut packages: Vec<_> = corpus.packages.iter().collect();
    packages.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let mut all = Vec::new();
    string(&mut all, b"nix-archive-1");
    for s in [&b"("[..], b"type", b"directory"] {
        string(&mut all, s);
    }
    let mut files = Vec::new();
    for p in &packages {
        let mut one = Vec::new();
        dump_path(&p.root, &mut one).unwrap();
        for s in [&b"entry"[..], b"(", b"name", p.name.as_bytes(), b"node"] {
            string(&mut all, s);
        }
        all.extend(&one[24..]); // without the magic
        string(&mut all, b")");
        let f = nars.join(format!("{}.nar", p.name));
        fs::write(&f, &one).unwrap();
        files.push(f);
    }
    string(&mut all, b")");
    let big = nars.join("all.nar");
    fs::write(&big, &all).unwrap();
    let mb = all.len() as f64 / 1e6;

    let dests = work.path().join("dests");
    let plain = RestoreOptions::default();
    let canonical = RestoreOptions {
        canonical: true,
        fsync: false,
    };
    let (mut ours, mut theirs, mut ours_canon) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ours_each, mut theirs_each) = (Vec::new(), Vec::new());
    // One warm-up of each, so the NARs are in the page cache for both.
    sample(&dests, &|d| our_restore(&big, &d.join("x"), plain));
    sample(&dests, &|d| nix_restore(&big, &d.join("x")));
    for _ in 0..RUNS {
        theirs.push(sample(&dests, &|d| nix_restore(&big, &d.join("x"))));
        ours.push(sample(&dests, &|d| our_restore(&big, &d.join("x"), plain)));
        ours_canon.push(sample(&dests, &|d| {
            our_restore(&big, &d.join("x"), canonical)
        }));
        theirs_each.push(sample(&dests, &|d| {
            for (i, f) in files.iter().enumerate() {
                nix_restore(f, &d.join(i.to_string()));
            }
        }));
        ours_each.push(sample(&dests, &|d| {
            for (i, f) in files.iter().enumerate() {
                our_restore(f, &d.join(i.to_string()), plain);
            }
        }));
    }
    let report = |what: &str, d: Duration| {
        println!(
            "{what:<44} median {:>8.1} ms  {:>7.0} MB/s",
            d.as_secs_f64() * 1e3,
            mb / d.as_secs_f64()
        );
    };
    println!(
        "{} packages, {:.1} MB of NAR, {RUNS} runs each",
        packages.len(),
        mb
    );
    let (o, t) = (median(ours), median(theirs));
    report("one NAR: nix-store --restore", t);
    report("one NAR: pkgbench restore", o);
    report(
        "one NAR: pkgbench restore, canonical metadata",
        median(ours_canon),
    );
    let (oe, te) = (median(ours_each), median(theirs_each));
    report("116 NARs: nix-store --restore (a process each)", te);
    report("116 NARs: pkgbench restore", oe);
    println!(
        "ratio nix-store time / pkgbench time: one NAR {:.2}, per package {:.2}",
        t.as_secs_f64() / o.as_secs_f64(),
        te.as_secs_f64() / oe.as_secs_f64()
    );
    assert!(o > Duration::ZERO && t > Duration::ZERO);
}
