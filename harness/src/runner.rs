//! The measurement lifecycle of one model: for warmup + N runs, empty the target, drop
//! caches, time the install, check the view, drop caches, time the reads, tear down.
//!
//! Every step is reported to an optional event log, so tests can prove the order (caches
//! dropped before every cold sample, the target empty before every install) without root.

use crate::caches::CacheControl;
use crate::conformance::{check_view, view_spec};
use crate::resources::{disk_usage, peak_rss_bytes, reset_peak_rss, BlockDevice, Counters};
use crate::results::{ModelResult, Status, WorkloadResult};
use crate::stats::Summary;
use anyhow::{bail, Context, Result};
use models::{Artifact, Durability, Model, RunCtx};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;
use workloads::exec::{exec_in_chroot, ExecCommand};
use workloads::reads::{cold_read, many_file};
use workloads::view::TreeDigest;

/// A workload of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    Install,
    ColdRead,
    /// The cold-read files read again with every cache warm (one untimed pass first).
    WarmRead,
    ManyFile,
    /// A real program started chrooted into the view, cold and warm (`workloads::exec`).
    Exec,
    /// The corpus's point release installed over it (`workloads::corpus::upgrade`).
    Upgrade,
}

impl Workload {
    /// What `all` means on replayed corpora, whose generated contents hold no program
    /// that runs.
    pub const ALL: [Workload; 5] = [
        Workload::Install,
        Workload::ColdRead,
        Workload::WarmRead,
        Workload::ManyFile,
        Workload::Upgrade,
    ];
    /// Every workload by name; `all` adds `exec` on real corpora (`debian:`, `debs:`).
    pub const KNOWN: [Workload; 6] = [
        Workload::Install,
        Workload::ColdRead,
        Workload::WarmRead,
        Workload::ManyFile,
        Workload::Exec,
        Workload::Upgrade,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Install => "install",
            Workload::ColdRead => "cold-read",
            Workload::WarmRead => "warm-read",
            Workload::ManyFile => "many-file",
            Workload::Exec => "exec",
            Workload::Upgrade => "upgrade",
        }
    }

    /// Parses `--workload`; `real_corpus` makes `all` include `exec`.
    pub fn parse_list(s: &str, real_corpus: bool) -> Result<Vec<Workload>> {
        if s == "all" {
            let mut all = Self::ALL.to_vec();
            if real_corpus {
                all.push(Workload::Exec);
            }
            return Ok(all);
        }
        let mut out = Vec::new();
        for name in s.split(',') {
            match Self::KNOWN.iter().find(|w| w.name() == name) {
                Some(w) if !out.contains(w) => out.push(*w),
                Some(_) => {}
                None => {
                    bail!("unknown workload {name:?}: use all, install, cold-read, warm-read, many-file, exec, upgrade")
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Whether a sample of this workload must start from dropped caches.
    pub fn is_cold(self) -> bool {
        matches!(
            self,
            Workload::ColdRead | Workload::ManyFile | Workload::Exec
        )
    }
}

/// What the runner does, in order; recorded for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The target was emptied; carries whether it was found empty afterwards.
    TargetEmpty(bool),
    /// The model's untimed preparation of the empty target (`Model::prepare`).
    Prepare,
    DropCaches,
    ResetModelCaches,
    Install,
    /// The timed `syncfs` after an install or upgrade (`durable_wall_ns`).
    Sync,
    Digest,
    Sample(Workload),
    Teardown,
}

/// How to measure.
#[derive(Debug, Clone)]
pub struct Plan {
    pub workloads: Vec<Workload>,
    pub runs: usize,
    pub warmup: usize,
    pub durability: Durability,
    pub jobs: usize,
}

/// What the reads look at: the same for every model.
pub struct ReadSet<'a> {
    pub expected: &'a TreeDigest,
    pub cold_files: &'a [String],
    pub misses: &'a [PathBuf],
    /// The `exec` workload's program for this corpus, or why it has none.
    pub exec: std::result::Result<&'a ExecCommand, &'a str>,
}

/// The point release the `upgrade` workload installs, on the model's mirror.
pub struct UpgradeSet<'a> {
    /// The new versions, in install order.
    pub to: &'a [Artifact],
    /// What the view must hold after the upgrade.
    pub expected: &'a TreeDigest,
}

/// Everything one model's measurement works on.
pub struct Setup<'a> {
    /// The packed corpus on the model's mirror.
    pub artifacts: &'a [Artifact],
    /// The point release on the same mirror, when the plan has `upgrade`.
    pub upgrade: Option<UpgradeSet<'a>>,
    pub mirror: &'a Path,
    /// The directory the model installs into; emptied before every install.
    pub target: &'a Path,
    pub reads: ReadSet<'a>,
    pub plan: &'a Plan,
    /// The link the fetch phases cross (`--link`), and the mirror's URL on it; `None`:
    /// they copy from `mirror`.
    pub link: Option<OverLink<'a>>,
}

/// A mirror served on the run's link.
#[derive(Clone, Copy)]
pub struct OverLink<'a> {
    pub link: &'a crate::net::link::Link,
    pub url: &'a str,
}

impl OverLink<'_> {
    /// A new client of the mirror: every install and upgrade starts with no open
    /// connection, as a new apt, nix or distri process does.
    fn client(&self) -> Result<std::sync::Arc<models::remote::HttpMirror>> {
        Ok(std::sync::Arc::new(models::remote::HttpMirror::new(
            self.url,
        )?))
    }
}

/// The bytes the link has delivered to the harness so far (0 without a link).
fn received(link: Option<OverLink<'_>>) -> Result<u64> {
    link.map_or(Ok(0), |l| l.link.rx_bytes())
}

/// Measures one model, all its iterations in a row. Never fails: a failure is recorded
/// in the result's status with its reason, and everything set up is torn down.
pub fn run_model(
    model: &mut dyn Model,
    stands_for: &str,
    setup: &Setup<'_>,
    caches: &mut dyn CacheControl,
    events: &mut Vec<Event>,
    progress: &dyn Fn(&str),
) -> ModelResult {
    let mut run = ModelRun::new(model.name(), stands_for, setup.plan, &*caches);
    while !run.is_done() {
        run.step(model, setup, caches, events, progress);
    }
    run.result(setup)
}

/// One model's measurement, an iteration at a time, so a run can interleave models
/// (one iteration of each, then the next round: drift of the machine hits all alike).
/// It holds only what the iterations produced; the model and its setup are passed to
/// each step.
pub struct ModelRun {
    /// The result so far: status and reason once it failed.
    result: ModelResult,
    notes: Vec<String>,
    /// Why cold samples are refused, when caches cannot be dropped.
    cold_refusal: Option<String>,
    samples: BTreeMap<Workload, BTreeMap<String, Vec<f64>>>,
    upgrade_skipped: Option<String>,
    /// The installed view's digest and mode rule, once one matched.
    installed_view: Option<(String, workloads::view::ModeRule)>,
    next_iteration: usize,
    warmup: usize,
    runs: usize,
    done: bool,
}

impl ModelRun {
    pub fn new(name: &str, stands_for: &str, plan: &Plan, caches: &dyn CacheControl) -> Self {
        ModelRun {
            result: ModelResult::new(name, stands_for, Status::Ok, None),
            notes: Vec::new(),
            cold_refusal: caches.can_drop().err().map(|e| format!("{e:#}")),
            samples: BTreeMap::new(),
            upgrade_skipped: None,
            installed_view: None,
            next_iteration: 0,
            warmup: plan.warmup,
            runs: plan.runs,
            done: plan.warmup + plan.runs == 0,
        }
    }

    /// Whether every iteration ran, or the model failed.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The recorded iterations so far.
    pub fn recorded(&self) -> usize {
        self.next_iteration.saturating_sub(self.warmup)
    }

    /// Runs the next iteration of `model` on `setup` (warmup first): install, digest,
    /// reads, upgrade, teardown. A failure ends the model's run with its reason.
    pub fn step(
        &mut self,
        model: &mut dyn Model,
        setup: &Setup<'_>,
        caches: &mut dyn CacheControl,
        events: &mut Vec<Event>,
        progress: &dyn Fn(&str),
    ) {
        if self.done {
            return;
        }
        let iteration = self.next_iteration;
        self.next_iteration += 1;
        let recorded = iteration >= self.warmup;
        let label = if recorded {
            format!("run {}/{}", iteration - self.warmup + 1, self.runs)
        } else {
            format!("warmup {}/{}", iteration + 1, self.warmup)
        };
        let outcome = one_iteration(
            model,
            setup,
            caches,
            self.cold_refusal.is_none(),
            events,
            &|step| progress(&format!("{label}: {step}")),
        );
        // Taken before teardown, which may forget them; the last iteration's are kept.
        self.notes = model.notes();
        // Whatever happened, nothing the install set up may outlive the iteration.
        events.push(Event::Teardown);
        let teardown = model.teardown().context("teardown");
        let result = &mut self.result;
        match (outcome, teardown) {
            (Ok(IterationOutcome::Measured(measured)), Ok(())) => {
                if let Some(reason) = &measured.upgrade_skipped {
                    self.upgrade_skipped = Some(reason.clone());
                }
                self.installed_view = Some((measured.view_digest.clone(), measured.mode_rule));
                if recorded {
                    for (workload, metrics) in measured.samples {
                        let per = self.samples.entry(workload).or_default();
                        for (k, v) in metrics {
                            per.entry(k).or_default().push(v);
                        }
                    }
                }
                if self.next_iteration == self.warmup + self.runs {
                    self.done = true;
                    let _ = fs::remove_dir_all(setup.target);
                }
            }
            (Ok(IterationOutcome::ViewDiffers(check, stage)), _) => {
                self.done = true;
                result.status = Status::Failed;
                let expected = &check.expected;
                result.mode_rule = Some(check.rule);
                result.reason = Some(format!(
                    "the view differs from the corpus{} (digest {} instead of {expected}): no timings are reported",
                    if stage == Stage::Upgrade { " after the upgrade" } else { "" },
                    check.digest,
                ));
                result.view_digest = Some(check.digest);
                result.digest_matches = Some(false);
                result.view_differences = check.differences;
            }
            (Err(e), _) | (Ok(_), Err(e)) => {
                self.done = true;
                result.status = Status::Failed;
                result.reason = Some(format!("{e:#}"));
            }
        }
    }

    /// The result so far: a failure as recorded, or the summaries of the recorded
    /// samples (all of them once `is_done`), with every workload's status.
    pub fn result(&self, setup: &Setup<'_>) -> ModelResult {
        let (plan, reads) = (setup.plan, &setup.reads);
        let mut result = self.result.clone();
        if result.status != Status::Ok {
            return result;
        }
        result.notes = self.notes.clone();
        if let Some((digest, rule)) = &self.installed_view {
            result.view_digest = Some(digest.clone());
            result.mode_rule = Some(*rule);
            result.digest_matches = Some(true);
        }
        for workload in &plan.workloads {
            let mut w = WorkloadResult::default();
            if workload.is_cold() {
                if let Some(reason) = &self.cold_refusal {
                    w.status = Some(Status::Skipped);
                    w.reason = Some(format!("cold samples refused: {reason}"));
                    result.workloads.insert(workload.name().into(), w);
                    continue;
                }
            }
            if let (Workload::Exec, Err(reason)) = (workload, reads.exec) {
                w.status = Some(Status::Skipped);
                w.reason = Some(reason.to_string());
                result.workloads.insert(workload.name().into(), w);
                continue;
            }
            if *workload == Workload::Upgrade {
                let reason = match (&setup.upgrade, &self.upgrade_skipped) {
                    (None, _) => Some("no point release was prepared".to_string()),
                    (_, Some(reason)) => Some(reason.clone()),
                    _ => None,
                };
                if let Some(reason) = reason {
                    w.status = Some(Status::Skipped);
                    w.reason = Some(reason);
                    result.workloads.insert(workload.name().into(), w);
                    continue;
                }
            }
            w.status = Some(Status::Ok);
            // warm-read is warm by definition; every other sample starts from dropped
            // caches when the run may drop them (the cold reads are refused otherwise).
            w.caches_dropped = Some(*workload != Workload::WarmRead && self.cold_refusal.is_none());
            if let Some(metrics) = self.samples.get(workload) {
                for (k, v) in metrics {
                    if let Some(s) = Summary::of(v) {
                        w.metrics.insert(k.clone(), s);
                    }
                }
            }
            result.workloads.insert(workload.name().into(), w);
        }
        result
    }
}

/// The samples of one iteration, and why its upgrade was skipped, if it was.
struct Measured {
    samples: BTreeMap<Workload, BTreeMap<String, f64>>,
    upgrade_skipped: Option<String>,
    /// The installed view's digest (it matched) and its mode rule.
    view_digest: String,
    mode_rule: workloads::view::ModeRule,
}

/// Which view was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Install,
    Upgrade,
}

enum IterationOutcome {
    Measured(Measured),
    ViewDiffers(crate::conformance::ViewCheck, Stage),
}

fn one_iteration(
    model: &mut dyn Model,
    setup: &Setup<'_>,
    caches: &mut dyn CacheControl,
    can_drop: bool,
    events: &mut Vec<Event>,
    progress: &dyn Fn(&str),
) -> Result<IterationOutcome> {
    let (plan, reads, target) = (setup.plan, &setup.reads, setup.target);
    let mut measured: BTreeMap<Workload, BTreeMap<String, f64>> = BTreeMap::new();
    progress("emptying target");
    empty_dir(target)?;
    events.push(Event::TargetEmpty(is_empty_dir(target)?));
    let ctx = RunCtx {
        target: target.to_path_buf(),
        mirror: setup.mirror.to_path_buf(),
        durability: plan.durability,
        jobs: plan.jobs,
        http: setup.link.map(|l| l.client()).transpose()?,
    };
    progress("preparing the target");
    model
        .prepare(setup.artifacts, &ctx)
        .context("preparing the target")?;
    events.push(Event::Prepare);
    if can_drop {
        caches.drop_caches()?;
        events.push(Event::DropCaches);
    }
    progress("install");
    let rx_before = received(setup.link)?;
    let sample = SampleClock::start(&model.service_pids(), target);
    let phases = model.install(setup.artifacts, &ctx).context("install")?;
    let metrics = measured.entry(Workload::Install).or_default();
    sample.stop(metrics, &model.service_pids());
    if setup.link.is_some() {
        let rx = received(setup.link)?.saturating_sub(rx_before);
        metrics.insert("net_rx_bytes".into(), rx as f64);
    }
    events.push(Event::Install);
    record_durable(metrics, target, events)?;
    for (phase, d) in &phases.phases {
        metrics.insert(format!("phase_{phase}_ns"), d.as_nanos() as f64);
    }

    progress("checking the view digest");
    let view = model.view();
    let check = check_view(&view, reads.expected).context("digesting the view")?;
    events.push(Event::Digest);
    if !check.matches {
        return Ok(IterationOutcome::ViewDiffers(check, Stage::Install));
    }
    let installed = disk_usage(target).context("measuring the installed state")?;
    let install_metrics = measured.entry(Workload::Install).or_default();
    install_metrics.insert("installed_bytes".into(), installed as f64);
    for (name, value) in model
        .install_counts()
        .context("counting what the install left")?
    {
        install_metrics.insert(name.into(), value);
    }

    let spec = view_spec(&view);
    // Untimed: which links are the model's own, so the timed walk makes the same calls
    // per entry for every model (workloads::view).
    let links = workloads::view::internal_links(&spec).context("finding the view's own links")?;
    for workload in [Workload::ColdRead, Workload::ManyFile] {
        if !can_drop || !plan.workloads.contains(&workload) {
            continue;
        }
        // The model's caches first (a remount reads superblocks and tables), then the
        // kernel's, so nothing the reset read is still cached.
        model
            .reset_caches()
            .context("resetting the model's caches")?;
        events.push(Event::ResetModelCaches);
        caches.drop_caches()?;
        events.push(Event::DropCaches);
        progress(workload.name());
        let services = model.service_pids();
        let sample = SampleClock::start(&services, target);
        let counts = match workload {
            Workload::ColdRead => cold_read(&view.root, reads.cold_files),
            _ => many_file(&spec, &links, reads.misses),
        }
        .with_context(|| workload.name().to_string())?;
        let m = measured.entry(workload).or_default();
        sample.stop(m, &services);
        events.push(Event::Sample(workload));
        m.insert("read_bytes".into(), counts.bytes_read as f64);
        m.insert("files_read_count".into(), counts.files_read as f64);
        if workload == Workload::ManyFile {
            m.insert("entries_count".into(), counts.entries as f64);
            m.insert("misses_count".into(), counts.misses as f64);
        }
    }
    if plan.workloads.contains(&Workload::WarmRead) {
        // Every cache warm: the kernel's (page cache, dentries) and the model's own. The
        // untimed pass brings the files in; the timed one reads them from memory, which
        // is what a filesystem costs on top of a memcpy.
        progress(Workload::WarmRead.name());
        cold_read(&view.root, reads.cold_files).context("warm-read (warming pass)")?;
        let services = model.service_pids();
        let sample = SampleClock::start(&services, target);
        let counts = cold_read(&view.root, reads.cold_files).context("warm-read")?;
        let m = measured.entry(Workload::WarmRead).or_default();
        sample.stop(m, &services);
        events.push(Event::Sample(Workload::WarmRead));
        m.insert("read_bytes".into(), counts.bytes_read as f64);
        m.insert("files_read_count".into(), counts.files_read as f64);
    }
    if can_drop {
        if let (true, Ok(cmd)) = (plan.workloads.contains(&Workload::Exec), reads.exec) {
            let m = exec_sample(model, &view, cmd, setup, caches, events, progress)?;
            measured.insert(Workload::Exec, m);
        }
    }
    let mut upgrade_skipped = None;
    if let (true, Some(upgrade)) = (plan.workloads.contains(&Workload::Upgrade), &setup.upgrade) {
        // Last: it changes the view. From dropped caches, as the install.
        if can_drop {
            caches.drop_caches()?;
            events.push(Event::DropCaches);
        }
        progress(Workload::Upgrade.name());
        let ctx = RunCtx {
            http: setup.link.map(|l| l.client()).transpose()?,
            ..ctx.clone()
        };
        let rx_before = received(setup.link)?;
        let sample = SampleClock::start(&model.service_pids(), target);
        match model.upgrade(setup.artifacts, upgrade.to, &ctx) {
            Ok(phases) => {
                let m = measured.entry(Workload::Upgrade).or_default();
                sample.stop(m, &model.service_pids());
                if setup.link.is_some() {
                    let rx = received(setup.link)?.saturating_sub(rx_before);
                    m.insert("net_rx_bytes".into(), rx as f64);
                }
                events.push(Event::Sample(Workload::Upgrade));
                record_durable(m, target, events)?;
                for (phase, d) in &phases.phases {
                    m.insert(format!("phase_{phase}_ns"), d.as_nanos() as f64);
                }
                progress("checking the upgraded view's digest");
                let check = check_view(&model.view(), upgrade.expected)
                    .context("digesting the upgraded view")?;
                events.push(Event::Digest);
                if !check.matches {
                    return Ok(IterationOutcome::ViewDiffers(check, Stage::Upgrade));
                }
            }
            Err(e) => match e.downcast_ref::<models::UpgradeUnsupported>() {
                Some(unsupported) => upgrade_skipped = Some(unsupported.to_string()),
                None => return Err(e.context("upgrade")),
            },
        }
    }
    Ok(IterationOutcome::Measured(Measured {
        samples: measured,
        upgrade_skipped,
        view_digest: check.digest,
        mode_rule: check.rule,
    }))
}

/// One sample of `exec`: the program started cold (the model's caches reset, then the
/// kernel's dropped) and then once more warm; `wall_ns` and the resource counters are
/// the cold start's, `warm_wall_ns` the warm one's. The chroot's root is assembled
/// after the model's reset (which may mount the view again) and before the caches are
/// dropped, so its bind mounts cost nothing in the timed start.
fn exec_sample(
    model: &mut dyn Model,
    view: &models::View,
    cmd: &ExecCommand,
    setup: &Setup<'_>,
    caches: &mut dyn CacheControl,
    events: &mut Vec<Event>,
    progress: &dyn Fn(&str),
) -> Result<BTreeMap<String, f64>> {
    let scratch = setup.target.with_file_name(format!(
        ".{}-exec-root",
        setup
            .target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    model
        .reset_caches()
        .context("resetting the model's caches")?;
    events.push(Event::ResetModelCaches);
    let root = crate::chroot::ExecRoot::for_view(view, &scratch)
        .context("exec: assembling the chroot's root")?;
    caches.drop_caches()?;
    events.push(Event::DropCaches);
    progress("exec");
    let mut m = BTreeMap::new();
    let services = model.service_pids();
    let sample = SampleClock::start(&services, setup.target);
    exec_in_chroot(&root.path, cmd)?;
    sample.stop(&mut m, &services);
    events.push(Event::Sample(Workload::Exec));
    let warm = Instant::now();
    exec_in_chroot(&root.path, cmd)?;
    m.insert("warm_wall_ns".into(), warm.elapsed().as_nanos() as f64);
    Ok(m)
}

/// Times the flush of what an install or upgrade left dirty, right after it returned and
/// before anything else can sync (the digest only reads): `sync_ns` is one `syncfs` of
/// the target's filesystem, which holds everything a model writes (root, store, images,
/// databases), and `durable_wall_ns` the model's own time plus that flush: the time
/// until the state would survive a power cut. A model that syncs as it goes (dpkg) has
/// little left to flush; one that leaves dirty pages (Nix's store paths) pays here.
fn record_durable(
    metrics: &mut BTreeMap<String, f64>,
    target: &Path,
    events: &mut Vec<Event>,
) -> Result<()> {
    let flushed = sync_filesystem_of(target)?;
    events.push(Event::Sync);
    let wall = metrics.get("wall_ns").copied().unwrap_or_default();
    metrics.insert("sync_ns".into(), flushed.as_nanos() as f64);
    metrics.insert("durable_wall_ns".into(), wall + flushed.as_nanos() as f64);
    Ok(())
}

/// One timed `syncfs` of the filesystem holding `dir`.
pub fn sync_filesystem_of(dir: &Path) -> Result<std::time::Duration> {
    let fd =
        fs::File::open(dir).with_context(|| format!("opening {} to sync it", dir.display()))?;
    let start = Instant::now();
    rustix::fs::syncfs(&fd).with_context(|| format!("syncfs of {}", dir.display()))?;
    Ok(start.elapsed())
}

/// Wall time and resource counters of one sample.
struct SampleClock {
    start: Instant,
    counters: Counters,
    /// The target's block device and its read counters at the start.
    device: Option<(BlockDevice, (u64, u64))>,
}

impl SampleClock {
    /// Starts a sample; `services` are the model's service processes running now,
    /// `target` the model's target directory, whose block device's reads are counted.
    fn start(services: &[u32], target: &Path) -> Self {
        reset_peak_rss("self");
        for pid in services {
            reset_peak_rss(&pid.to_string());
        }
        let device = BlockDevice::of(target).and_then(|d| d.reads().map(|r| (d, r)));
        SampleClock {
            counters: Counters::now(services),
            device,
            start: Instant::now(),
        }
    }

    /// Records `wall_ns`, CPU, I/O and peak memory of the sample into `metrics`;
    /// `services` are the model's service processes running at the end (an install may
    /// have started them).
    fn stop(self, metrics: &mut BTreeMap<String, f64>, services: &[u32]) {
        let wall = self.start.elapsed();
        let after = Counters::now(services);
        metrics.insert("wall_ns".into(), wall.as_nanos() as f64);
        if let Some((device, (requests, bytes))) = &self.device {
            if let Some((requests_now, bytes_now)) = device.reads() {
                let requests = requests_now.saturating_sub(*requests);
                metrics.insert("device_read_requests".into(), requests as f64);
                let bytes = bytes_now.saturating_sub(*bytes);
                metrics.insert("device_read_bytes".into(), bytes as f64);
            }
        }
        for (k, v) in self.counters.metrics_until(&after) {
            metrics.insert(k.into(), v);
        }
        metrics.insert("peak_rss_bytes".into(), peak_rss_bytes("self") as f64);
        if !services.is_empty() {
            let peak: u64 = services
                .iter()
                .map(|pid| peak_rss_bytes(&pid.to_string()))
                .sum();
            metrics.insert("service_peak_rss_bytes".into(), peak as f64);
        }
    }
}

/// Removes everything below `dir` and leaves it an empty directory.
pub fn empty_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn is_empty_dir(dir: &Path) -> Result<bool> {
    Ok(fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .next()
        .is_none())
}
