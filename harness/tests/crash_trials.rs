//! Crash safety of every built model: `harness run --workload install` is killed with
//! SIGKILL at a random moment of its install (a delay drawn from a seeded PRNG over the
//! install time measured by a first, complete run), then the same command is run again
//! to completion. Proves, per trial: the rerun finds the leftovers of the killed one,
//! cleans them, exits 0 with `digest_matches: true` (the view is exactly the corpus), and
//! no mount and no loop device of the trial is left on the host (`/proc/mounts`,
//! `losetup -a`, `/sys/block/loop*/loop/backing_file`).
//!
//! Needs root. 5 trials per model by default; `scripts/crash-trials [MODEL] [TRIALS]`
//! runs more (at least 20) through the environment: `PKGBENCH_CRASH_TRIALS`,
//! `PKGBENCH_CRASH_MODELS` (comma-separated), `PKGBENCH_CRASH_SEED`,
//! `PKGBENCH_CRASH_CORPUS`.

use harness::testing::loop_backing_files;
use harness::testing::require_root;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The closure of `tar` and a few more: every model's install takes tens to hundreds of
/// milliseconds on it, long enough to be killed at many different points.
const SUBSET: &str = "debian-qemu:libc6,libgcc-s1,gcc-12-base,tar,zlib1g,libzstd1,liblzma5,libbz2-1.0,libacl1,libselinux1,libpcre2-8-0";
/// The models a default run kills: every built model. (`fuse` was left out while its
/// FUSE server was a thread of the harness: a SIGKILL landing while the harness's main
/// thread waited on a request its own server thread had taken left the process
/// unkillable. Its daemon is a process of its own now.)
const MODELS: [&str; 6] = [
    "hooks",
    "nar",
    "fuse",
    "overlay",
    "fuse-passthrough",
    "composefs",
];

/// splitmix64: a seeded PRNG, so a trial's kill moment can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, max)`.
    fn below(&mut self, max: Duration) -> Duration {
        let nanos = max.as_nanos().max(1) as u64;
        Duration::from_nanos(self.next() % nanos)
    }
}

/// Whether `PKGBENCH_CRASH_WORKLOAD` (install, upgrade or all, the default) asks for
/// the trials of `workload`.
fn workload_chosen(workload: &str) -> bool {
    let chosen = std::env::var("PKGBENCH_CRASH_WORKLOAD").unwrap_or_else(|_| "all".into());
    let yes = chosen == "all" || chosen == workload;
    if !yes {
        eprintln!("{workload} crash trials not chosen (PKGBENCH_CRASH_WORKLOAD={chosen})");
    }
    yes
}

/// Trials per model, the seed, and the built models chosen, from the environment.
fn chosen() -> (usize, u64, Vec<String>) {
    let trials_per_model: usize = env_or("PKGBENCH_CRASH_TRIALS", 5);
    let seed: u64 = env_or("PKGBENCH_CRASH_SEED", 0x5eed_c0de);
    let chosen: Vec<String> = match std::env::var("PKGBENCH_CRASH_MODELS") {
        Ok(list) if list != "all" => list.split(',').map(str::to_string).collect(),
        _ => MODELS.iter().map(|m| m.to_string()).collect(),
    };
    // Every chosen model that the catalog has built.
    let built: Vec<String> = models::catalog()
        .into_iter()
        .filter(|m| m.make.is_some() && chosen.iter().any(|c| c == m.name))
        .map(|m| m.name.to_string())
        .collect();
    assert!(!built.is_empty(), "none of {chosen:?} is built");
    (trials_per_model, seed, built)
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Our mounts, loop devices and daemons as the host sees them: squashfs, overlay and
/// fuse mounts, and running `harness fuse-daemon` processes (in the first list), and
/// `losetup -a`.
fn host_state() -> (Vec<String>, Vec<String>) {
    let mut mounts: Vec<String> = fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .filter(|l| {
            [" fuse", " squashfs ", " overlay "]
                .iter()
                .any(|k| l.contains(k))
        })
        .map(str::to_string)
        .collect();
    mounts.extend(
        harness::testing::fuse_daemons()
            .into_iter()
            .map(|cmdline| format!("process: {cmdline}")),
    );
    let loops = Command::new("losetup").arg("-a").output().unwrap();
    let loops = String::from_utf8_lossy(&loops.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    (mounts, loops)
}

/// What the host still holds of the trial's work directory: mounts and loop devices.
fn leaked(work: &str) -> Vec<String> {
    let (mounts, _) = host_state();
    let mut out: Vec<String> = mounts.into_iter().filter(|l| l.contains(work)).collect();
    out.extend(
        loop_backing_files()
            .into_iter()
            .filter(|f| f.starts_with(work))
            .map(|f| format!("loop device backed by {f}")),
    );
    out
}

/// Waits up to 10 s for the trial's loop devices to go: the kernel releases them after
/// the last mount of the dead namespace goes, in task work, not within the exit.
fn nothing_leaked(work: &str) -> Vec<String> {
    let start = Instant::now();
    loop {
        let left = leaked(work);
        if left.is_empty() || start.elapsed() > Duration::from_secs(10) {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Trials {
    work: tempfile::TempDir,
    prefix: String,
    corpus: String,
}

impl Trials {
    fn new() -> Trials {
        let work = tempfile::Builder::new()
            .prefix("pkgbench-crash-")
            .tempdir_in("/var/tmp")
            .unwrap();
        // Share the generated corpus with other runs when there is one.
        let shared = PathBuf::from(
            std::env::var("PKGBENCH_WORK_DIR").unwrap_or_else(|_| "/var/tmp/pkgbench".into()),
        )
        .join("corpora");
        if shared.is_dir() {
            std::os::unix::fs::symlink(&shared, work.path().join("corpora")).unwrap();
        }
        let prefix = work.path().to_string_lossy().into_owned();
        Trials {
            work,
            prefix,
            corpus: std::env::var("PKGBENCH_CRASH_CORPUS").unwrap_or_else(|_| SUBSET.into()),
        }
    }

    fn out(&self, model: &str) -> PathBuf {
        self.work.path().join("out").join(model)
    }

    fn target(&self, model: &str) -> PathBuf {
        self.work.path().join("targets").join(model)
    }

    fn spawn(&self, model: &str, workload: &str) -> Child {
        Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(["run", "--model", model, "--corpus", &self.corpus])
            .args(["--runs", "1", "--warmup", "0", "--workload", workload])
            .arg("--work-dir")
            .arg(self.work.path())
            .arg("--out")
            .arg(self.out(model))
            .env("PKGBENCH_LOG_STEPS", "1")
            // Its own process group: the kill takes the maintainer scripts and daemons
            // the harness started with it, as a crash of the machine's session would.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Runs `install` to completion; asserts exit 0, status ok and the right view
    /// digest. Returns the install's wall time.
    fn complete(&self, model: &str, what: &str) -> Duration {
        self.complete_workloads(model, "install", what)
    }

    /// Runs `workloads` (`install` or `install,upgrade`) to completion; asserts exit 0,
    /// status ok and the right view digests. Returns the last workload's wall time.
    fn complete_workloads(&self, model: &str, workloads: &str, what: &str) -> Duration {
        let _ = fs::remove_file(self.out(model).join("results.json"));
        let output = self.spawn(model, workloads).wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{model} {what}: exit {}: {stderr}",
            output.status
        );
        let text = fs::read_to_string(self.out(model).join("results.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let result = &json["models"][0];
        assert_eq!(result["name"], model, "{what}");
        assert_eq!(
            result["status"], "ok",
            "{model} {what}: {}",
            result["reason"]
        );
        assert_eq!(result["digest_matches"], true, "{model} {what}: {result}");
        let last = workloads.rsplit(',').next().unwrap_or(workloads);
        assert_eq!(
            result["workloads"][last]["status"], "ok",
            "{model} {what}: {result}"
        );
        let wall = result["workloads"][last]["metrics"]["wall_ns"]["median"]
            .as_f64()
            .unwrap();
        Duration::from_nanos(wall as u64)
    }

    /// Starts the harness and kills it `delay` after its install began (the moment its
    /// target, emptied of the last trial's leftovers, gets its first entry). Returns
    /// whether the harness was still running when killed.
    fn kill_during_install(&self, model: &str, delay: Duration) -> bool {
        let target = self.target(model);
        // The run first removes the leftovers' directory, then creates the target again
        // and installs into it: the install has begun once the old directory is unlinked
        // (seen through a handle kept open on it) and the new one holds something.
        let old = fs::File::open(&target).ok();
        let began = |t: &Path| {
            let unlinked = match &old {
                None => true,
                Some(d) => d.metadata().is_ok_and(|m| m.nlink() == 0),
            };
            unlinked && fs::read_dir(t).is_ok_and(|mut d| d.next().is_some())
        };
        let mut child = self.spawn(model, "install");
        let start = Instant::now();
        while !began(&target) {
            if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(600) {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(delay);
        let running = child.try_wait().unwrap().is_none();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        running
    }

    /// Starts `install,upgrade` and kills its whole process group (the harness, its
    /// maintainer scripts, its FUSE daemon) `delay` after the harness announced the
    /// upgrade on stderr, right before the upgrade's clock starts. Returns whether the
    /// harness was still running when killed, and, if its upgrade had already returned
    /// by then (it announced the next step), how long the upgrade took as stderr showed
    /// it: a trial's upgrade can be shorter than the first run's that `delay` was drawn
    /// from, and a run that ends removes its target, so what such a kill leaves is no
    /// upgrade's state.
    fn kill_during_upgrade(&self, model: &str, delay: Duration) -> (bool, Option<Duration>) {
        let mut child = self.spawn(model, "install,upgrade");
        let stderr = child.stderr.take().unwrap();
        let (began_tx, began_rx) = std::sync::mpsc::channel();
        // "harness: step: MODEL: run 1/1: upgrade"
        let marker = format!("harness: step: {model}: ");
        let reader = std::thread::spawn(move || {
            let mut log = String::new();
            let (mut began, mut returned) = (None, None);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.starts_with(&marker) && line.ends_with(": upgrade") {
                    began = Some(Instant::now());
                    let _ = began_tx.send(());
                }
                if line.starts_with(&marker) && line.ends_with(UPGRADE_RETURNED_STEP) {
                    returned = began.map(|b: Instant| b.elapsed());
                }
                log.push_str(&line);
                log.push('\n');
            }
            (log, returned)
        });
        let began = began_rx.recv_timeout(Duration::from_secs(600)).is_ok();
        if began {
            std::thread::sleep(delay);
        }
        let running = child.try_wait().unwrap().is_none();
        // SAFETY: kill(2) of the process group the child leads (process_group(0)).
        let killed = unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
        assert!(
            killed == 0 || !running,
            "{model}: kill of the process group failed: {}",
            std::io::Error::last_os_error()
        );
        child.wait().unwrap();
        // The pipe closes once every process of the group is gone.
        let (log, returned) = reader.join().unwrap();
        assert!(began, "{model}: the run never reached its upgrade:\n{log}");
        (running, returned)
    }

    /// `harness recover-upgrade --complete` on what the killed run left: its JSON line.
    fn recover(&self, model: &str) -> serde_json::Value {
        let output = Command::new(env!("CARGO_BIN_EXE_harness"))
            .args([
                "recover-upgrade",
                "--model",
                model,
                "--corpus",
                &self.corpus,
            ])
            .arg("--complete")
            .arg("--work-dir")
            .arg(self.work.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "{model}: recover-upgrade: exit {}: {e}: stdout {stdout:?}, stderr {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        })
    }

    /// Entries the killed run left in its target, for the next run to clean.
    fn leftovers(&self, model: &str) -> usize {
        fn count(dir: &Path) -> usize {
            fs::read_dir(dir).map_or(0, |d| {
                d.flatten()
                    .map(|e| match e.file_type() {
                        Ok(t) if t.is_dir() => 1 + count(&e.path()),
                        _ => 1,
                    })
                    .sum()
            })
        }
        count(&self.target(model))
    }
}

#[test]
fn root_install_killed_at_random_moments_recovers_with_the_right_digest_and_leaks_nothing() {
    let test =
        "root_install_killed_at_random_moments_recovers_with_the_right_digest_and_leaks_nothing";
    if !require_root(test) {
        return;
    }
    if !workload_chosen("install") {
        return;
    }
    let (trials_per_model, seed, built) = chosen();
    let before = host_state();
    let trials = Trials::new();
    let mut rng = Rng(seed);
    eprintln!("crash trials: seed {seed:#x}, {trials_per_model} per model, models {built:?}");
    let mut summary = Vec::new();
    for model in &built {
        // A first complete run packs the mirror and measures the install.
        let install = trials.complete(model, "first run");
        let (mut killed_mid_install, mut recovered) = (0, 0);
        for trial in 0..trials_per_model {
            let delay = rng.below(install);
            let killed = trials.kill_during_install(model, delay);
            let left = trials.leftovers(model);
            assert_eq!(
                nothing_leaked(&trials.prefix),
                Vec::<String>::new(),
                "{model} trial {trial}: after the kill"
            );
            trials.complete(
                model,
                &format!("trial {trial}: rerun after a kill at +{delay:?}"),
            );
            assert_eq!(
                nothing_leaked(&trials.prefix),
                Vec::<String>::new(),
                "{model} trial {trial}: after the rerun"
            );
            killed_mid_install += usize::from(killed);
            recovered += 1;
            eprintln!(
                "{model} trial {trial}: killed {delay:?} into an install of {install:?}{}, {left} entries left; rerun ok, digest matches",
                if killed { "" } else { " (it had already exited)" }
            );
        }
        assert!(
            killed_mid_install * 2 >= trials_per_model,
            "{model}: only {killed_mid_install} of {trials_per_model} kills came before the harness exited"
        );
        summary.push(format!(
            "{model}: {trials_per_model} trials, {killed_mid_install} killed mid-run, {recovered} recovered"
        ));
    }
    let after = host_state();
    if after != before {
        // Other processes (tests running in parallel) may mount; ours are checked above.
        eprintln!("note: the host's mounts or loop devices changed during the trials (not ours): {before:?} -> {after:?}");
    }
    eprintln!(
        "crash trials: {}; leaked mounts and loop devices: 0",
        summary.join("; ")
    );
}

/// The models whose real system upgrades one package at a time, with nothing making the
/// set atomic: dpkg (apt's unpack and configure of each package) and distri (each
/// package's image replaced on its own). A kill between two packages leaves some
/// upgraded and some not, each whole: the real tool's own state, counted as `mixed`.
/// `nar` (one profile switch), `overlay` (one overlay mount) and `composefs` (one image
/// mount) commit the whole set;
/// `fuse-passthrough` upgrades as `fuse` does.
const PER_PACKAGE: [&str; 3] = ["hooks", "fuse", "fuse-passthrough"];

/// The step the harness announces once a model's upgrade has returned (runner.rs).
const UPGRADE_RETURNED_STEP: &str = ": checking the upgraded view's digest";

#[test]
fn root_upgrade_killed_at_random_moments_recovers_to_the_old_or_the_new_set_and_leaks_nothing() {
    let test = "root_upgrade_killed_at_random_moments_recovers_to_the_old_or_the_new_set_and_leaks_nothing";
    if !require_root(test) || !workload_chosen("upgrade") {
        return;
    }
    let (trials_per_model, seed, built) = chosen();
    let trials = Trials::new();
    // Another sequence than the install trials', replayable from the same seed.
    let mut rng = Rng(seed ^ 0x0bad_cafe);
    eprintln!(
        "upgrade crash trials: seed {seed:#x}, {trials_per_model} per model, models {built:?}"
    );
    let mut table = vec![format!(
        "{:<8} {:>6} {:>8} {:>6} {:>8} {:>8} {:>6}",
        "model", "trials", "killed", "late", "old", "new", "mixed"
    )];
    for model in &built {
        // A first complete run packs the mirror and measures the upgrade.
        let upgrade = trials.complete_workloads(model, "install,upgrade", "first run");
        let mut bound = upgrade;
        let (mut killed_mid_run, mut late, mut old, mut new, mut mixed) = (0, 0, 0, 0, 0);
        for trial in 0..trials_per_model {
            // A kill after the upgrade returned is tried again, drawn below the
            // shortest upgrade seen (a noisy first run can take several times longer).
            let (mut delay, mut killed);
            let mut attempts = 0;
            loop {
                delay = rng.below(bound);
                let returned;
                (killed, returned) = trials.kill_during_upgrade(model, delay);
                assert_eq!(
                    nothing_leaked(&trials.prefix),
                    Vec::<String>::new(),
                    "{model} trial {trial}: after the kill"
                );
                let Some(took) = returned else { break };
                // The kill fell after the upgrade, in the run's digest check or its
                // removal of the target: nothing of an upgrade to recover.
                late += 1;
                attempts += 1;
                bound = bound.min(took);
                eprintln!(
                    "{model} trial {trial}: killed {delay:?} after the upgrade had returned (in {took:?}): not an upgrade's kill, not recovered; drawing again below {bound:?}"
                );
                if attempts == 3 {
                    break;
                }
            }
            if attempts == 3 {
                continue;
            }
            let line = trials.recover(model);
            assert_eq!(
                nothing_leaked(&trials.prefix),
                Vec::<String>::new(),
                "{model} trial {trial}: after the recovery"
            );
            let what = format!(
                "{model} trial {trial}, killed {delay:?} into an upgrade of {upgrade:?}: {line}"
            );
            match line["state"].as_str() {
                Some("old") => old += 1,
                Some("new") => new += 1,
                Some("mixed") => {
                    assert!(
                        PER_PACKAGE.contains(&model.as_str()),
                        "{what}: a mix of the two sets from a model that commits the set at once"
                    );
                    mixed += 1;
                }
                _ => panic!("{what}: the recovered view is neither set"),
            }
            if line["state"] != "new" {
                // The rest of the upgrade run again (apt's next upgrade) ends at the new set.
                assert_eq!(line["completed"], true, "{what}");
            }
            killed_mid_run += usize::from(killed);
            eprintln!(
                "{model} trial {trial}: killed {delay:?} into an upgrade of {upgrade:?}: recovered {} ({}/{} upgraded; {}){}",
                line["state"],
                line["upgraded"],
                line["of"],
                line["steps"],
                if line["completed"] == true { "; the rest upgraded: new set" } else { "" }
            );
        }
        assert!(
            killed_mid_run * 2 >= trials_per_model,
            "{model}: only {killed_mid_run} of {trials_per_model} kills came inside the upgrade ({late} after it)"
        );
        table.push(format!(
            "{model:<8} {trials_per_model:>6} {killed_mid_run:>8} {late:>6} {old:>8} {new:>8} {mixed:>6}"
        ));
    }
    eprintln!(
        "upgrade crash trials (recovered to old, to new, mixed: whole packages, some upgraded):\n{}\nleaked mounts, loop devices and FUSE daemons: 0",
        table.join("\n")
    );
}
