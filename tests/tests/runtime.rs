//! The runtime end to end: resource tags, determinism, reports, embedding.

use gridpipe_estimators::Pipeline;
use gridpipe_runtime::{
    Bag, Partitioning, Resources, RunError, Runtime, RuntimeConfig, Step, TaskOp, DATA,
};
use gridpipe_tests::*;
use ndarray::{Array2, ArrayD};

fn normal_like(n: usize, d: usize) -> Array2<f64> {
    // Deterministic, irregular values with varied magnitudes.
    Array2::from_shape_fn((n, d), |(i, j)| {
        let x = ((i * 2654435761 + j * 40503) % 10007) as f64 / 10007.0;
        (x - 0.5) * (1.0 + j as f64) * 1e3 + (i % 7) as f64
    })
}

fn rows_bag(x: &Array2<f64>, parts: usize) -> Bag {
    let keys = (0..x.nrows()).map(|i| format!("s{i}")).collect();
    Bag::from_rows(keys, x.clone().into_dyn(), Partitioning::NPartitions(parts)).unwrap()
}

fn scaler_pipeline() -> Pipeline {
    affine_then_scaler()
}

#[test]
fn results_are_bitwise_identical_whatever_the_number_of_workers() {
    let x = normal_like(997, 5);
    let mut reference: Option<ArrayD<f64>> = None;
    for workers in [1, 2, 3] {
        let rt = Runtime::in_process(workers).unwrap();
        let out = scaler_pipeline()
            .fit_transform(&rt, rows_bag(&x, 13))
            .unwrap();
        let y = out.bag.stack(DATA).unwrap().array;
        match &reference {
            None => reference = Some(y),
            Some(r) => assert!(
                r.iter()
                    .zip(y.iter())
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{workers} workers differ"
            ),
        }
    }
}

#[test]
fn results_agree_within_1e_12_across_partitionings() {
    let x = normal_like(1000, 4);
    let rt = Runtime::in_process(2).unwrap();
    let base = scaler_pipeline()
        .fit_transform(&rt, rows_bag(&x, 1))
        .unwrap()
        .bag
        .stack(DATA)
        .unwrap();
    for parts in [2, 7, 64, 1000] {
        let y = scaler_pipeline()
            .fit_transform(&rt, rows_bag(&x, parts))
            .unwrap()
            .bag
            .stack(DATA)
            .unwrap();
        for (a, b) in base.iter().zip(y.iter()) {
            assert!(
                (a - b).abs() <= 1e-12 * a.abs().max(1.0),
                "{parts} partitions: {a} vs {b}"
            );
        }
    }
}

#[test]
fn a_reduction_merges_partials_in_partition_order() {
    let rt = Runtime::in_process(3).unwrap();
    // Row i holds the value i, so each partition's first value names it.
    let x = Array2::from_shape_fn((40, 1), |(i, _)| i as f64);
    let mut p = Pipeline::new().add("probe", OrderProbe::default());
    p.fit(&rt, rows_bag(&x, 8)).unwrap();
    let dbg = format!("{:?}", p.model("probe").unwrap());
    assert!(
        dbg.contains("[0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0]"),
        "{dbg}"
    );
}

#[test]
fn fit_tags_land_on_the_fit_task_only_and_run_on_a_worker_that_has_them() {
    let rt =
        Runtime::start(RuntimeConfig::in_process(2).with_worker(Resources::one("gpu", 1))).unwrap();
    let mut p = Pipeline::new().add("plus1", AddOffset(1.0)).step(
        Step::new("trainer", DummyWithFit::default()).fit_resources(Resources::one("gpu", 1)),
    );
    let out = p
        .fit_transform(
            &rt,
            Bag::from_samples(samples(20, &[2], 1.0), Partitioning::NPartitions(5)).unwrap(),
        )
        .unwrap();
    let r = &out.report;
    assert_eq!(r.tasks_needing("gpu"), 1, "only the fit carries the tag");
    let fit_workers = r.workers_of("trainer", TaskOp::Fit);
    assert_eq!(fit_workers.len(), 1);
    assert_eq!(fit_workers[0].resources, Resources::one("gpu", 1));
    assert_eq!(r.tasks.len(), 5 + 1 + 5);
}

/// Tasks that need nothing keep off a worker offering a resource while a plain
/// worker exists (a GPU worker never sits on CPU work), and use it when it is the
/// only worker.
#[test]
fn plain_tasks_keep_off_resource_workers_while_plain_ones_exist() {
    let run = |config: RuntimeConfig| {
        let rt = Runtime::start(config.without_dashboard()).unwrap();
        let p = Pipeline::new().add("slow", Sleepy { ms: 5 });
        let bag = Bag::from_samples(samples(40, &[2], 1.0), Partitioning::NPartitions(20)).unwrap();
        p.transform(&rt, bag).unwrap().report
    };
    let mixed = run(RuntimeConfig::in_process(1).with_worker(Resources::one("gpu", 1)));
    let used: std::collections::BTreeSet<u32> = mixed.tasks.iter().map(|t| t.worker).collect();
    assert_eq!(used.len(), 1, "{used:?}");
    let worker = &mixed.workers[*used.iter().next().unwrap() as usize];
    assert!(worker.resources.is_empty(), "plain work ran on {worker:?}");
    let gpu_only = run(RuntimeConfig::in_process(0).with_worker(Resources::one("gpu", 1)));
    assert_eq!(
        gpu_only.tasks.len(),
        20,
        "served by the gpu worker when it is the only one"
    );
}

#[test]
fn transform_tags_land_on_that_steps_tasks_only() {
    let rt =
        Runtime::start(RuntimeConfig::in_process(2).with_worker(Resources::one("gpu", 1))).unwrap();
    let p = Pipeline::new()
        .add("before", AddOffset(1.0))
        .step(Step::new("on_gpu", AddOffset(1.0)).transform_resources(Resources::one("gpu", 1)))
        .add("after", AddOffset(1.0));
    let out = p
        .transform(
            &rt,
            Bag::from_samples(samples(12, &[2], 0.0), Partitioning::NPartitions(4)).unwrap(),
        )
        .unwrap();
    let r = &out.report;
    assert_eq!(r.tasks_needing("gpu"), 4);
    for w in r.workers_of("on_gpu", TaskOp::Transform) {
        assert_eq!(w.resources.get("gpu"), 1, "gpu step ran on {}", w.name);
    }
    for t in &r.tasks {
        let l = r.label(t);
        if l.steps.iter().any(|s| s == "before" || s == "after") {
            assert!(
                l.resources.is_empty(),
                "untagged steps are not fused with the tagged one"
            );
        }
    }
    // Consumable: the one {gpu: 1} worker never ran two gpu tasks at once.
    let mut gpu: Vec<(f64, f64)> = r
        .tasks
        .iter()
        .filter(|t| r.label(t).resources.get("gpu") > 0)
        .map(|t| (t.started_s, t.finished_s))
        .collect();
    gpu.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(gpu.windows(2).all(|w| w[0].1 <= w[1].0));
    assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == 3.0));
}

#[test]
fn a_resource_nobody_offers_is_an_error_at_submit_naming_step_and_resource() {
    let rt =
        Runtime::start(RuntimeConfig::in_process(1).with_worker(Resources::one("gpu", 1))).unwrap();
    let mut p = Pipeline::new().add("plus1", AddOffset(1.0)).step(
        Step::new("trainer", DummyWithFit::default()).fit_resources(Resources::one("GPU", 1)),
    );
    let err = p
        .fit(
            &rt,
            Bag::from_samples(samples(4, &[2], 1.0), Partitioning::NPartitions(2)).unwrap(),
        )
        .unwrap_err();
    match &err {
        RunError::UnservableResource {
            step, resource, op, ..
        } => {
            assert_eq!(step, "trainer");
            assert_eq!(resource, "GPU", "names are case-sensitive");
            assert_eq!(*op, "fit");
        }
        e => panic!("unexpected {e}"),
    }
    assert!(err.to_string().contains("trainer") && err.to_string().contains("GPU"));
}

#[test]
fn the_report_names_a_worker_and_ordered_times_for_every_task() {
    let rt = Runtime::in_process(2).unwrap();
    let mut p = scaler_pipeline();
    let out = p
        .fit_transform(&rt, rows_bag(&normal_like(100, 3), 6))
        .unwrap();
    let r = &out.report;
    assert_eq!(r.tasks.len(), 6 + 1 + 6);
    assert_eq!(r.partitions, 6);
    assert_eq!(r.samples, 100);
    for t in &r.tasks {
        assert!((t.worker as usize) < r.workers.len());
        assert!(t.ready_s <= t.started_s + 1e-3 && t.started_s <= t.finished_s);
        assert!(t.finished_s <= r.wall_s + 1e-3);
    }
    assert!(r.summary().contains("tasks=13"));
    assert_eq!(r.task_lines().len(), 13);
    assert!(r.task_lines()[0].starts_with("task step="));
}

#[test]
fn many_runs_share_one_runtime_concurrently() {
    let rt = std::sync::Arc::new(Runtime::in_process(2).unwrap());
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let rt = rt.clone();
            std::thread::spawn(move || {
                let p = Pipeline::new().add("plus", AddOffset(i as f64));
                let out = p
                    .transform(
                        &rt,
                        Bag::from_samples(samples(50, &[3], 0.0), Partitioning::NPartitions(5))
                            .unwrap(),
                    )
                    .unwrap();
                assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == i as f64));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn embeds_in_an_existing_actix_system() {
    let sys = actix::System::new();
    sys.block_on(async {
        // The application's own actors keep working beside the runtime.
        let rt = Runtime::in_process(2).unwrap();
        let mut p = scaler_pipeline();
        let out = p
            .fit_transform_async(&rt, rows_bag(&normal_like(50, 2), 4))
            .await
            .unwrap();
        assert_eq!(out.bag.len(), 50);
        let backlog = rt.backlog().await.unwrap();
        assert!(backlog.is_empty(), "nothing left: {backlog:?}");
    });
}

#[test]
fn embeds_in_a_tokio_application() {
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    tokio_rt.block_on(async {
        let rt = Runtime::in_process(2).unwrap();
        let out = Pipeline::new()
            .add("plus1", AddOffset(1.0))
            .transform_async(
                &rt,
                Bag::from_samples(samples(10, &[2], 0.0), Partitioning::NPartitions(2)).unwrap(),
            )
            .await
            .unwrap();
        assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == 1.0));
    });
}

#[test]
fn two_runtimes_in_one_process_do_not_interfere() {
    let a = Runtime::in_process(1).unwrap();
    let b = Runtime::start(RuntimeConfig::in_process(3)).unwrap();
    let ta = std::thread::spawn(move || {
        let out = Pipeline::new()
            .add("a", AddOffset(1.0))
            .transform(
                &a,
                Bag::from_samples(samples(40, &[2], 0.0), Partitioning::NPartitions(8)).unwrap(),
            )
            .unwrap();
        assert_eq!(out.report.workers.len(), 1);
        out.bag.stack(DATA).unwrap()
    });
    let out_b = Pipeline::new()
        .add("b", AddOffset(2.0))
        .transform(
            &b,
            Bag::from_samples(samples(40, &[2], 0.0), Partitioning::NPartitions(8)).unwrap(),
        )
        .unwrap();
    assert_eq!(out_b.report.workers.len(), 3);
    assert!(out_b.bag.stack(DATA).unwrap().iter().all(|&v| v == 2.0));
    assert!(ta.join().unwrap().iter().all(|&v| v == 1.0));
    drop(b);
}

#[test]
fn a_fit_only_run_returns_no_samples_and_keeps_models() {
    let rt = Runtime::in_process(2).unwrap();
    let mut p = scaler_pipeline();
    let out = p.fit(&rt, rows_bag(&normal_like(30, 2), 3)).unwrap();
    assert!(out.bag.is_empty());
    assert!(p.is_fitted());
    let y = p
        .transform(&rt, rows_bag(&normal_like(30, 2), 3))
        .unwrap()
        .bag
        .stack(DATA)
        .unwrap();
    let mean: f64 = y.iter().sum::<f64>() / y.len() as f64;
    assert!(mean.abs() < 1e-12);
}
