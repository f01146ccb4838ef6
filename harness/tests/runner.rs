//! The runner's lifecycle with a mock model and recorded cache drops: the order of steps,
//! caches dropped before every cold sample, the target empty before every install, and a
//! model whose view differs getting no timings.

use harness::mock::{FakeCaches, MockLog, MockModel};
use harness::results::Status;
use harness::runner::{run_model, Event, Plan, ReadSet, Setup, UpgradeSet, Workload};
use models::{Durability, Model, PackageTree};
use std::fs;
use std::path::{Path, PathBuf};
use workloads::reads::miss_list;
use workloads::view::{digest_view, TreeDigest, ViewSpec};

struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
    trees: Vec<PackageTree>,
    expected: TreeDigest,
    /// A new version of `tool` and the view after upgrading to it.
    upgrade: Vec<PackageTree>,
    upgraded: TreeDigest,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let mut trees = Vec::new();
    let mut expected = TreeDigest::default();
    for (name, file) in [("liba", "usr/lib/liba.so"), ("tool", "usr/bin/tool")] {
        let root = base.join("pkgs").join(name);
        fs::create_dir_all(root.join(Path::new(file).parent().unwrap())).unwrap();
        fs::write(root.join(file), name.repeat(1000)).unwrap();
        expected
            .merge_package(digest_view(&ViewSpec::plain(&root)).unwrap(), name)
            .unwrap();
        trees.push(PackageTree {
            name: name.into(),
            version: "1".into(),
            root,
            depends: vec![],
            pre_depends: vec![],
            scripts: Default::default(),
            triggers: vec![],
            control: None,
        });
    }
    let mut new = trees[1].clone();
    new.version = "2".into();
    new.root = base.join("pkgs/tool-2");
    workloads::corpus::upgrade::new_version(&trees[1].root, &new.root, "tool", false).unwrap();
    let mut upgraded = TreeDigest::default();
    for root in [&trees[0].root, &new.root] {
        upgraded
            .merge_package(digest_view(&ViewSpec::plain(root)).unwrap(), "x")
            .unwrap();
    }
    assert_ne!(upgraded, expected, "the new version changes the view");
    Fixture {
        _dir: dir,
        base,
        trees,
        expected,
        upgrade: vec![new],
        upgraded,
    }
}

fn measure(
    model: &mut MockModel,
    caches: &mut FakeCaches,
    f: &Fixture,
) -> (harness::results::ModelResult, Vec<Event>) {
    let mirror = f.base.join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    let artifacts: Vec<_> = f
        .trees
        .iter()
        .map(|t| model.pack(t, &mirror).unwrap())
        .collect();
    let new_versions: Vec<_> = f
        .upgrade
        .iter()
        .map(|t| model.pack(t, &mirror).unwrap())
        .collect();
    let cold = vec!["usr/lib/liba.so".to_string()];
    let misses = miss_list();
    let plan = Plan {
        workloads: Workload::ALL.to_vec(),
        runs: 3,
        warmup: 1,
        durability: Durability::Native,
        jobs: 1,
    };
    let target = f.base.join("target");
    // Leftovers of an earlier run must not survive into the first install.
    fs::create_dir_all(target.join("stale")).unwrap();
    let mut events = Vec::new();
    let setup = Setup {
        artifacts: &artifacts,
        upgrade: Some(UpgradeSet {
            to: &new_versions,
            expected: &f.upgraded,
        }),
        mirror: &mirror,
        target: &target,
        reads: ReadSet {
            expected: &f.expected,
            cold_files: &cold,
            misses: &misses,
            exec: Err("not measured here"),
        },
        plan: &plan,
        link: None,
    };
    let result = run_model(model, "a mock", &setup, caches, &mut events, &|_| {});
    (result, events)
}

#[test]
fn caches_are_dropped_before_every_cold_sample_and_the_target_is_empty_before_every_install() {
    let f = fixture();
    let log = MockLog::default();
    let mut model = MockModel {
        log: log.clone(),
        ..Default::default()
    };
    let mut caches = FakeCaches::default();
    let (result, events) = measure(&mut model, &mut caches, &f);
    assert_eq!(result.status, Status::Ok, "{:?}", result.reason);
    assert_eq!(result.digest_matches, Some(true));

    // One iteration: target emptied, the model's untimed preparation, caches dropped, install, digest, then per read
    // workload: reset the model's caches, drop the kernel's, sample; finally teardown.
    let iteration = vec![
        Event::TargetEmpty(true),
        Event::Prepare,
        Event::DropCaches,
        Event::Install,
        Event::Sync,
        Event::Digest,
        Event::ResetModelCaches,
        Event::DropCaches,
        Event::Sample(Workload::ColdRead),
        Event::ResetModelCaches,
        Event::DropCaches,
        Event::Sample(Workload::ManyFile),
        Event::Sample(Workload::WarmRead),
        Event::DropCaches,
        Event::Sample(Workload::Upgrade),
        Event::Sync,
        Event::Digest,
        Event::Teardown,
    ];
    let want: Vec<Event> = std::iter::repeat_n(iteration, 4).flatten().collect();
    assert_eq!(events, want);
    // The events are emitted next to the real calls: the cache control saw each drop.
    let drop_events = events.iter().filter(|e| **e == Event::DropCaches).count();
    assert_eq!(caches.drops, drop_events);
    // The model itself saw an empty target at every install (warmup included).
    let seen = log.lock().unwrap().clone();
    assert_eq!(
        seen.iter().filter(|s| *s == "install(empty=true)").count(),
        4,
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|s| s == "install(empty=false)"),
        "{seen:?}"
    );

    // Warmup is not recorded: three samples per metric.
    assert_eq!(
        seen.iter().filter(|s| *s == "upgrade(1)").count(),
        4,
        "{seen:?}"
    );
    for w in ["install", "cold-read", "warm-read", "many-file", "upgrade"] {
        let wall = &result.workloads[w].metrics["wall_ns"];
        assert_eq!(wall.samples.len(), 3, "{w}");
        assert!(wall.min > 0.0 && wall.min <= wall.median && wall.median <= wall.max);
    }
    // Install and upgrade carry their time to a durable state: the model's own time plus
    // the timed flush right after it, sample by sample.
    for w in ["install", "upgrade"] {
        let m = &result.workloads[w].metrics;
        let (wall, sync, durable) = (
            &m["wall_ns"].samples,
            &m["sync_ns"].samples,
            &m["durable_wall_ns"].samples,
        );
        for i in 0..3 {
            assert_eq!(durable[i], wall[i] + sync[i], "{w} sample {i}");
            assert!(sync[i] > 0.0, "{w}: the syncfs was not timed");
        }
        assert_eq!(result.workloads[w].caches_dropped, Some(true), "{w}");
    }
    assert_eq!(result.workloads["warm-read"].caches_dropped, Some(false));
    assert!(!result.workloads["cold-read"]
        .metrics
        .contains_key("durable_wall_ns"));
    assert_eq!(
        result.workloads["cold-read"].metrics["read_bytes"].median,
        4000.0
    );
    assert_eq!(
        result.workloads["many-file"].metrics["misses_count"].median,
        500.0
    );
}

#[test]
fn without_the_privilege_to_drop_caches_cold_samples_are_refused_not_recorded_warm() {
    let f = fixture();
    let mut model = MockModel::default();
    let mut caches = FakeCaches {
        refuse: true,
        ..Default::default()
    };
    let (result, events) = measure(&mut model, &mut caches, &f);
    assert_eq!(result.status, Status::Ok);
    assert!(!events.contains(&Event::DropCaches));
    // Only the samples that need no dropped caches: warm-read, and upgrade (timed like
    // the install, which runs either way).
    assert!(events.iter().all(
        |e| !matches!(e, Event::Sample(w) if *w != Workload::WarmRead && *w != Workload::Upgrade)
    ));
    assert!(events.contains(&Event::Sample(Workload::WarmRead)));
    for w in ["cold-read", "many-file"] {
        let r = &result.workloads[w];
        assert_eq!(r.status, Some(Status::Skipped));
        assert!(r.metrics.is_empty());
        assert!(
            r.reason
                .as_deref()
                .unwrap()
                .contains("cold samples refused"),
            "{:?}",
            r.reason
        );
    }
    assert_eq!(
        result.workloads["install"].metrics["wall_ns"].samples.len(),
        3
    );
    // Timed warm, and labelled so: in results.json and in the table.
    for w in ["install", "upgrade"] {
        assert_eq!(result.workloads[w].caches_dropped, Some(false), "{w}");
    }
    let table = harness::results::table::render_table(&harness::mock::results_with(vec![result]));
    let install_line = table
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("install"))
        .unwrap_or_default();
    assert!(
        install_line.contains("warm: caches could not be dropped"),
        "{table}"
    );
}

/// The whole mode counts: a model that drops a write bit or turns a directory
/// group-writable gets no number.
#[test]
fn a_model_that_changes_a_mode_is_refused() {
    let f = fixture();
    for (path, mode) in [("usr/bin/tool", 0o555), ("usr/bin", 0o775)] {
        let mut model = MockModel {
            chmod_path: Some((PathBuf::from(path), mode)),
            ..Default::default()
        };
        let mut caches = FakeCaches::default();
        let (result, _) = measure(&mut model, &mut caches, &f);
        assert_eq!(result.status, Status::Failed, "{path}");
        assert!(result.workloads.is_empty(), "no timings for a changed mode");
        assert!(
            result.view_differences[0].starts_with(&format!("/{path}: want "))
                && result.view_differences[0].contains(&format!("mode {mode:04o}")),
            "{:?}",
            result.view_differences
        );
    }
}

#[test]
fn a_model_whose_view_differs_is_refused_and_the_paths_are_named() {
    let f = fixture();
    let mut model = MockModel {
        drop_path: Some(PathBuf::from("usr/bin/tool")),
        ..Default::default()
    };
    let mut caches = FakeCaches::default();
    let (result, events) = measure(&mut model, &mut caches, &f);
    assert_eq!(result.status, Status::Failed);
    assert_eq!(result.digest_matches, Some(false));
    assert!(
        result.workloads.is_empty(),
        "no timings for a differing view"
    );
    assert!(result
        .reason
        .as_deref()
        .unwrap()
        .contains("differs from the corpus"));
    assert_eq!(result.view_differences.len(), 1);
    assert!(
        result.view_differences[0].starts_with("/usr/bin/tool: missing"),
        "{:?}",
        result.view_differences
    );
    assert!(!events.iter().any(|e| matches!(e, Event::Sample(_))));
    assert_eq!(events.last(), Some(&Event::Teardown));
}

#[test]
fn a_model_that_does_not_model_an_upgrade_has_the_workload_skipped_with_the_reason() {
    let f = fixture();
    let mut model = MockModel {
        no_upgrade: true,
        ..Default::default()
    };
    let (result, _) = measure(&mut model, &mut FakeCaches::default(), &f);
    assert_eq!(result.status, Status::Ok, "{:?}", result.reason);
    let upgrade = &result.workloads["upgrade"];
    assert_eq!(upgrade.status, Some(Status::Skipped));
    assert!(upgrade.metrics.is_empty());
    assert_eq!(
        upgrade.reason.as_deref(),
        Some("mock does not model an upgrade")
    );
    assert_eq!(result.workloads["install"].status, Some(Status::Ok));
}

/// The log the interleaving test's mock models share (a catalog entry builds its model
/// with a plain function, which cannot capture one).
static SHARED_LOG: std::sync::OnceLock<MockLog> = std::sync::OnceLock::new();

fn tagged(tag: &'static str) -> Box<dyn Model> {
    Box::new(MockModel {
        log: SHARED_LOG.get_or_init(MockLog::default).clone(),
        tag,
        ..Default::default()
    })
}

/// By default one iteration of every model, then the next round: drift hits all
/// models alike. Sequential runs each model's iterations in a row.
#[test]
fn models_are_interleaved_round_by_round_unless_sequential() {
    use harness::commands::run::{measure_models, Bench};
    use harness::schedule::Order;
    let work = tempfile::tempdir().unwrap();
    let corpus = workloads::corpus::open(
        "debian-qemu:zlib1g",
        &work.path().join("corpora"),
        &|_, _| {},
    )
    .unwrap();
    let trees = harness::mirror::package_trees(&corpus);
    let cold = corpus.largest_files(2);
    let misses = miss_list();
    let exec = Err("not measured here".to_string());
    let plan = Plan {
        workloads: vec![Workload::Install, Workload::ColdRead],
        runs: 2,
        warmup: 1,
        durability: Durability::Native,
        jobs: 1,
    };
    let calibration = harness::calibrate::Calibration::default();
    let options = models::ModelOptions::default();
    let bench = Bench {
        corpus: &corpus,
        trees: &trees,
        corpus_key: "zlib1g-test",
        work_dir: work.path(),
        targets: &work.path().join("targets"),
        cold_files: &cold,
        misses: &misses,
        exec: &exec,
        upgrade: None,
        plan: &plan,
        options: &options,
        calibration: &calibration,
        link: None,
    };
    let infos = [
        models::ModelInfo::bare("a", "mock a", |_| tagged("a")),
        models::ModelInfo::bare("b", "mock b", |_| tagged("b")),
    ];
    let installs = |order: Order| {
        SHARED_LOG
            .get_or_init(MockLog::default)
            .lock()
            .unwrap()
            .clear();
        let mut writes = 0;
        let results = measure_models(
            &infos,
            &bench,
            &mut FakeCaches::default(),
            order,
            &mut |r| {
                assert_eq!(r.len(), 2);
                writes += 1;
                Ok(())
            },
        )
        .unwrap();
        for r in &results {
            assert_eq!(r.status, Status::Ok, "{:?}", r.reason);
            assert_eq!(r.workloads["install"].metrics["wall_ns"].samples.len(), 2);
        }
        let log = SHARED_LOG.get().unwrap().lock().unwrap().clone();
        let tags: String = log
            .iter()
            .filter(|e| e.ends_with("install(empty=true)"))
            .map(|e| &e[..1])
            .collect();
        (tags, writes)
    };
    // Written once before the first round and after each round.
    assert_eq!(installs(Order::Interleaved), ("ababab".to_string(), 4));
    assert_eq!(installs(Order::Sequential), ("aaabbb".to_string(), 3));
}
