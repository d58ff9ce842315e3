//! Worker processes: the same results as in-process, models that travel, lost
//! workers and their partitions (`worker_connections.rs` has how workers connect
//! and end with their scheduler).

use gridpipe_estimators::{Pipeline, StandardScaler};
use gridpipe_runtime::actors::scheduler::LiveWorkers;
use gridpipe_runtime::{Bag, Partitioning, Runtime, RuntimeConfig, TaskOp, DATA};
use gridpipe_tests::*;
use ndarray::{Array2, ArrayD};
use std::path::Path;
use std::time::{Duration, Instant};

const WORKER: &str = env!("CARGO_BIN_EXE_gridpipe-test-worker");

fn processes(n: usize) -> Runtime {
    Runtime::start(RuntimeConfig::processes(n).worker_program(WORKER)).unwrap()
}

fn data(n: usize, d: usize) -> Bag {
    let x = Array2::from_shape_fn((n, d), |(i, j)| ((i * 31 + j * 17) % 101) as f64 - 50.0);
    let keys = (0..n).map(|i| i.to_string()).collect();
    Bag::from_rows(keys, x.into_dyn(), Partitioning::NPartitions(12)).unwrap()
}

/// One step, `fragile`, given each batch's keys (it may kill its worker on one).
fn fragile(estimator: impl gridpipe_runtime::Estimator + 'static) -> Pipeline {
    Pipeline::new()
        .step(gridpipe_runtime::Step::new("fragile", estimator).transform_extra("key", "key"))
}

/// `p`'s output on one in-process worker (fitted first when `fit`): the
/// reference a run on worker processes must give.
fn on_one_thread(p: &mut Pipeline, bag: Bag, fit: bool) -> ArrayD<f64> {
    let rt = Runtime::in_process(1).unwrap();
    let out = if fit {
        p.fit_transform(&rt, bag)
    } else {
        p.transform(&rt, bag)
    };
    out.unwrap().bag.stack(DATA).unwrap().array
}

fn pipeline() -> Pipeline {
    affine_then_scaler().add("dummy", DummyWithFit::default())
}

#[test]
fn processes_give_bitwise_the_same_results_as_threads() {
    let local = Runtime::in_process(2).unwrap();
    let remote = processes(2);
    let a = pipeline().fit_transform(&local, data(3000, 4)).unwrap();
    let mut p = pipeline();
    let b = p.fit_transform(&remote, data(3000, 4)).unwrap();
    let (ya, yb): (ArrayD<f64>, ArrayD<f64>) = (
        a.bag.stack(DATA).unwrap().array,
        b.bag.stack(DATA).unwrap().array,
    );
    assert!(ya
        .iter()
        .zip(yb.iter())
        .all(|(x, y)| x.to_bits() == y.to_bits()));
    // Models fitted in a worker process are applied by others and by this process.
    assert_eq!(b.report.fits(), 2);
    let fit_worker = b.report.workers_of("dummy", TaskOp::Fit)[0].name.clone();
    let appliers: Vec<String> = b
        .report
        .workers_of("dummy", TaskOp::Transform)
        .iter()
        .map(|w| w.name.clone())
        .collect();
    assert!(
        appliers.iter().any(|w| *w != fit_worker),
        "fitted in {fit_worker}, applied in {appliers:?}"
    );
    // Data stays put: each partition ran all its stages on one worker, so its data
    // never went back and forth through the scheduler between stages.
    let mut by_partition: std::collections::BTreeMap<u32, std::collections::BTreeSet<u32>> =
        Default::default();
    for t in b.report.tasks.iter().filter(|t| t.partition.is_some()) {
        by_partition
            .entry(t.partition.unwrap())
            .or_default()
            .insert(t.worker);
    }
    assert_eq!(by_partition.len(), 12);
    assert!(
        by_partition.values().all(|w| w.len() == 1),
        "{by_partition:?}"
    );
    let again = p.transform(&local, data(3000, 4)).unwrap();
    assert_eq!(again.bag.stack(DATA).unwrap(), yb);
    // The data went through the scheduler's process: counted on its sockets
    // (3000 x 4 values out and back at least); threads use none.
    let values = 3000 * 4 * 8;
    let traffic = remote.wire_traffic();
    assert!(traffic.sent() > values && traffic.received() > values);
    assert_eq!(
        local.wire_traffic().sent() + local.wire_traffic().received(),
        0
    );
}

#[test]
fn a_worker_killed_mid_run_loses_nothing_ten_times_over() {
    let reference = Pipeline::new()
        .add("slow", Sleepy { ms: 0 })
        .add("scaler", StandardScaler::new())
        .fit_transform(&Runtime::in_process(1).unwrap(), data(2400, 3))
        .unwrap()
        .bag
        .stack(DATA)
        .unwrap()
        .array;
    for round in 0..10 {
        let rt = processes(3);
        let victim = rt.worker_pids()[round % 3];
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(60 + (round as u64 % 4) * 20));
            kill9(victim);
            Instant::now()
        });
        let out = Pipeline::new()
            .add("slow", Sleepy { ms: 50 })
            .add("scaler", StandardScaler::new())
            .fit_transform(&rt, data(2400, 3))
            .unwrap();
        let finished = Instant::now();
        let killed = killer.join().unwrap();
        assert!(
            killed < finished,
            "round {round}: the kill came during the run"
        );
        // The killed worker was noticed and replaced by a new process.
        let mut live = 0;
        for _ in 0..100 {
            live = futures::executor::block_on(rt.scheduler().send(LiveWorkers)).unwrap();
            if rt.worker_restarts() == 1 && live == 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            (rt.worker_restarts(), live),
            (1, 3),
            "round {round}: the killed worker was replaced"
        );
        assert!(!rt.worker_pids().contains(&victim));
        assert!(out.report.workers_lost <= 1);
        let y = out.bag.stack(DATA).unwrap().array;
        assert_eq!(
            y, reference,
            "round {round}: same results after losing a worker"
        );
        assert_eq!(out.report.failed.len(), 0);
        // Every partition ran every stage; a partition that lived on the killed
        // worker ran its stages again from its source (lineage).
        let distinct: std::collections::BTreeSet<(u32, Option<u32>)> = out
            .report
            .tasks
            .iter()
            .filter(|t| out.report.label(t).op == TaskOp::Transform)
            .map(|t| (t.label, t.partition))
            .collect();
        assert_eq!(distinct.len(), 24);
        assert_eq!(y.shape()[0], 2400, "no sample lost or duplicated");
    }
}

#[test]
fn a_task_that_kills_its_workers_is_quarantined_and_the_run_finishes() {
    let rt = processes(4);
    let bag = Bag::from_samples(samples(40, &[2], 0.0), Partitioning::NPartitions(10)).unwrap();
    let out = fragile(KillsWorkerOn {
        poison: "13".into(),
    })
    .transform(&rt, bag)
    .unwrap();
    let failed = out.bag.failed();
    // The poison sample's partition (keys 12..15) is quarantined, with its keys.
    let keys: Vec<&str> = failed.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, vec!["12", "13", "14", "15"]);
    assert!(
        failed[0].reason.contains("killed its worker 3 times"),
        "{}",
        failed[0].reason
    );
    assert_eq!(out.bag.samples().len(), 36, "the rest of the run finished");
    assert!(out
        .bag
        .samples()
        .iter()
        .all(|s| s.data.iter().all(|&v| v == 1.0)));
}

#[test]
fn a_fast_task_that_aborts_its_worker_unannounced_is_found_and_quarantined() {
    // 10,000 one-sample tasks of 10 us: a worker announces none of them (too
    // fast), so its death names no task; the tasks it held run alone until the
    // one that kills is known.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let rt = processes(2);
    let n = 10_000;
    let keys: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let bag = Bag::from_rows(
        keys,
        ArrayD::zeros(ndarray::IxDyn(&[n, 1])),
        Partitioning::NPartitions(n),
    )
    .unwrap();
    let out = fragile(AbortsOn {
        poison: "6789".into(),
        busy_us: 10,
    })
    .transform(&rt, bag)
    .unwrap();
    let failed = out.bag.failed();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].key, "6789");
    assert!(
        failed[0].reason.contains("quarantined"),
        "{}",
        failed[0].reason
    );
    let y = out.bag.stack(DATA).unwrap();
    assert_eq!(y.len(), n - 1, "the other 9,999 finished");
    assert!(y.iter().all(|&v| v == 1.0));
    // One death naming nobody, then one per kill of the isolated task.
    let lost = out.report.workers_lost;
    assert!((2..=8).contains(&lost), "{lost} workers lost");
    let deadline = Instant::now() + Duration::from_secs(10);
    while rt.worker_restarts() < lost && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(rt.worker_restarts(), lost, "each lost process was replaced");
    eprintln!("workers lost and restarted: {lost}");
}

#[test]
fn a_run_that_loses_too_many_workers_fails_naming_its_suspects() {
    let rt = Runtime::start(
        RuntimeConfig {
            max_workers_lost: 2,
            max_task_kills: 10,
            ..RuntimeConfig::processes(2)
        }
        .worker_program(WORKER),
    )
    .unwrap();
    let bag = Bag::from_samples(samples(40, &[2], 0.0), Partitioning::NPartitions(10)).unwrap();
    let err = fragile(KillsWorkerOn {
        poison: "13".into(),
    })
    .transform(&rt, bag)
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            gridpipe_runtime::RunError::WorkersLost {
                lost: 3,
                limit: 2,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("partition 3") && msg.contains("\"12\""),
        "{msg}"
    );
}

/// Retiring (draining) an idle worker process in the middle of a run hands the
/// partitions it holds back: the drain completes while the run goes on, the
/// drained worker gets no task afterwards, and the result is unchanged.
#[test]
fn draining_a_worker_mid_run_hands_its_partitions_on() {
    use gridpipe_estimators::{Affine, FunctionTransformer, Pipeline};
    use gridpipe_runtime::actors::scheduler::{Drain, ListWorkers};
    let pipeline = || {
        Pipeline::new()
            .add(
                "affine",
                FunctionTransformer::new(Affine {
                    scale: 2.0,
                    offset: 1.0,
                }),
            )
            .add(
                "slow",
                SlowFit {
                    ms: 1500,
                    mean: None,
                },
            )
            .add(
                "after",
                FunctionTransformer::new(Affine {
                    scale: 3.0,
                    offset: 0.0,
                }),
            )
    };
    let reference = pipeline()
        .fit_transform(&Runtime::in_process(2).unwrap(), data(2000, 3))
        .unwrap();
    let rt = processes(2);
    let scheduler = rt.scheduler();
    let started = Instant::now();
    let (out, drained_at, drained) = std::thread::scope(|s| {
        let run = s.spawn(|| pipeline().fit_transform(&rt, data(2000, 3)).unwrap());
        // Wait for the fit: one worker busy with it, the other idle and holding
        // the first stage's partitions.
        let deadline = Instant::now() + Duration::from_secs(20);
        let idle = loop {
            let workers = futures::executor::block_on(scheduler.send(ListWorkers)).unwrap();
            if workers.iter().any(|w| w.in_flight == 1) {
                if let Some(w) = workers.iter().find(|w| w.in_flight == 0) {
                    break w.info.id;
                }
            }
            assert!(Instant::now() < deadline, "the fit never started");
            std::thread::sleep(Duration::from_millis(5));
        };
        futures::executor::block_on(scheduler.send(Drain(idle))).unwrap();
        let drained_at = started.elapsed().as_secs_f64();
        let out = run.join().unwrap();
        (out, drained_at, idle)
    });
    let (a, b): (ArrayD<f64>, ArrayD<f64>) = (
        reference.bag.stack(DATA).unwrap().array,
        out.bag.stack(DATA).unwrap().array,
    );
    assert!(a
        .iter()
        .zip(b.iter())
        .all(|(x, y)| x.to_bits() == y.to_bits()));
    assert!(
        drained_at < out.report.wall_s,
        "the drain finished at {drained_at} s, after the run ({} s)",
        out.report.wall_s
    );
    let late: Vec<_> = out
        .report
        .tasks
        .iter()
        .filter(|t| t.worker == drained && t.started_s > drained_at + 0.05)
        .collect();
    assert!(
        late.is_empty(),
        "tasks on the drained worker after the drain: {late:?}"
    );
    assert!(
        out.report
            .tasks
            .iter()
            .any(|t| t.worker == drained && t.partition.is_some()),
        "the drained worker ran (and held) first-stage partitions"
    );
}

/// Tasks whose input a worker process holds wait for that worker: the backlog
/// counts them apart from the ready tasks any worker could take, so a cluster
/// does not start jobs that could not take them.
#[test]
fn tasks_waiting_for_the_worker_holding_their_input_are_not_counted_as_ready() {
    let rt = processes(2);
    let pipeline = Pipeline::new()
        .add("shift", AddOffset(1.0))
        // Slow tasks keep each worker's window at its minimum (2 tasks).
        .add("before", Sleepy { ms: 100 })
        .add("mean", SlowFit { ms: 0, mean: None })
        .add("after", Sleepy { ms: 150 });
    std::thread::scope(|s| {
        let run = s.spawn(|| pipeline.clone().fit_transform(&rt, data(120, 2)).unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen_waiting = 0;
        while !run.is_finished() {
            let backlog = futures::executor::block_on(rt.backlog()).unwrap();
            for shape in &backlog {
                seen_waiting = seen_waiting.max(shape.waiting_for_holder);
                if seen_waiting > 0 {
                    // Every partition stayed on its worker after the first stage,
                    // so nothing after the fit is up for grabs.
                    assert_eq!(shape.ready, 0, "{backlog:?}");
                    assert_eq!(shape.ready_unknown, 0, "{backlog:?}");
                }
            }
            assert!(Instant::now() < deadline, "the run did not finish");
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = run.join().unwrap();
        assert_eq!(out.bag.len(), 120);
        assert!(
            seen_waiting >= 4,
            "the slow stage waited for its holders: {seen_waiting}"
        );
    });
}

#[test]
fn checkpointed_outputs_come_back_with_their_data_and_never_reread_the_folder() {
    use gridpipe_runtime::{Checkpoint, Step};
    let rt = processes(2);
    let dir =
        std::env::temp_dir().join(unique(&format!("gridpipe-proc-ck-{}", std::process::id())));
    let p = Pipeline::new()
        .add("affine", AddOffset(1.0))
        .step(Step::new("plus1", AddOffset(1.0)).checkpoint(Checkpoint::features(&dir)));
    let bag = || data(500, 3);
    let expected = on_one_thread(&mut p.clone(), bag(), false);
    std::fs::remove_dir_all(&dir).unwrap();
    for round in ["computed", "read back"] {
        let out = p.transform(&rt, bag()).unwrap();
        // The folder goes away (as a scratch folder the caller cannot read would
        // be): the result needs nothing from it.
        std::fs::rename(&dir, dir.with_extension("moved")).unwrap();
        let stacked = out.bag.stack(DATA).unwrap();
        assert!(
            stacked.left_out.is_empty(),
            "{round}: {:?}",
            stacked.left_out
        );
        assert_eq!(stacked.array, expected, "{round}");
        std::fs::rename(dir.with_extension("moved"), &dir).unwrap();
    }
    gridpipe_tests::remove_features_folder(&dir);
}

#[test]
fn an_application_with_an_async_main_runs_on_worker_processes_of_itself() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gridpipe-tokio-app"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "rows=12 sum=48", "{stdout}");
}

#[test]
fn plain_work_after_a_tagged_step_moves_to_the_plain_worker() {
    use gridpipe_runtime::Resources;
    // One plain worker process and one offering `io`; every partition is kept
    // for a peer, however small (the default keeps those of 1 MiB or more).
    let mut config = RuntimeConfig::processes(1)
        .with_worker(Resources::one("io", 1))
        .worker_program(WORKER)
        .without_dashboard();
    config.peer_min_bytes = 0;
    let rt = Runtime::start(config).unwrap();
    let mut p = whiten_clip_pca();
    let out = p.fit_transform(&rt, data(2000, 32)).unwrap();
    // Every partition moved between the workers (plain -> io -> plain), and
    // the fit's rows too, worker to worker: what came back is about the
    // output (2 of 32 columns). Failing before: the data came back at every move.
    let received = rt.wire_traffic().received();
    let input = 2000 * 32 * 8;
    assert!(
        received < input / 4,
        "{received} bytes received for {input} of input"
    );
    let names = |step: &str, op: TaskOp| -> Vec<String> {
        out.report
            .workers_of(step, op)
            .iter()
            .map(|w| w.name.clone())
            .collect()
    };
    assert_eq!(names("clip", TaskOp::Transform), vec!["local-1"]);
    assert_eq!(
        names("pca", TaskOp::Transform),
        vec!["local-0"],
        "plain work on the plain worker"
    );
    assert_eq!(names("pca", TaskOp::Fit), vec!["local-0"]);
    assert_eq!(names("whiten", TaskOp::Transform), vec!["local-0"]);
    // The same numbers as with threads.
    let threads =
        Runtime::start(RuntimeConfig::in_process(1).with_worker(Resources::one("io", 1))).unwrap();
    let local = whiten_clip_pca()
        .fit_transform(&threads, data(2000, 32))
        .unwrap();
    assert_eq!(out.bag.stack(DATA).unwrap(), local.bag.stack(DATA).unwrap());
}

/// A worker process holding partitions between stages is killed while they wait
/// for a slow fit: each of its partitions is rebuilt from its input in one task,
/// at the stage it stood at, starting from the nearest checkpoint on its lineage
/// (the slow first stage does not run again), and the results are unchanged.
#[test]
fn a_killed_holders_partitions_are_rebuilt_from_the_nearest_checkpoint_in_one_task() {
    use gridpipe_runtime::{Checkpoint, Step};
    let dir = std::env::temp_dir().join(unique(&format!(
        "gridpipe-proc-catchup-{}",
        std::process::id()
    )));
    let pipeline = |late_ms: u64| {
        Pipeline::new()
            .add("slow", Sleepy { ms: 30 })
            .add("mean", SlowFit { ms: 0, mean: None })
            .step(Step::new("kept", AddOffset(1.0)).checkpoint(Checkpoint::features(&dir)))
            .add(
                "late",
                SlowFit {
                    ms: late_ms,
                    mean: None,
                },
            )
    };
    let reference = on_one_thread(&mut pipeline(0), data(240, 3), true);
    std::fs::remove_dir_all(&dir).unwrap();

    let rt = processes(2);
    let victim = rt.worker_pids()[0];
    let out = std::thread::scope(|s| {
        let run = s.spawn(|| pipeline(2500).fit_transform(&rt, data(240, 3)).unwrap());
        // Every sample's file of `kept` is written: all partitions ran stage 1 and
        // wait, held by their workers, for the 2.5 s fit of `late`.
        let deadline = Instant::now() + Duration::from_secs(30);
        while count_files(&dir) < 240 {
            assert!(Instant::now() < deadline, "stage 1 did not finish");
            std::thread::sleep(Duration::from_millis(10));
        }
        kill9(victim);
        run.join().unwrap()
    });
    gridpipe_tests::remove_features_folder(&dir);

    assert_eq!(out.bag.stack(DATA).unwrap().array, reference);
    assert_eq!(out.report.workers_lost, 1);
    let first_stage = out
        .report
        .tasks
        .iter()
        .filter(|t| out.report.label(t).steps == ["slow"])
        .count();
    assert_eq!(first_stage, 12, "no partition ran its first stage twice");
    let read = out.report.checkpoints["kept"].cached;
    assert!(
        read > 0 && read < 240,
        "the rebuilt partitions started from `kept`'s files: {read} read"
    );
}

/// Regular files under `dir`, at any depth (0 when it does not exist).
fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(t) if t.is_file() && e.path().extension().is_some_and(|x| x == "npy") => 1,
            _ => 0,
        })
        .sum()
}
