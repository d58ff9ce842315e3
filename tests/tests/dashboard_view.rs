//! The dashboard's view of a run while it goes on, straight from the scheduler:
//! what each worker is working on, and the failed samples as their tasks report
//! them (also when the partitions' data stays in worker processes).

use futures::executor::block_on;
use gridpipe_estimators::Pipeline;
use gridpipe_runtime::actors::scheduler::DashboardView;
use gridpipe_runtime::dashboard::view::{RunPhase, RuntimeView};
use gridpipe_runtime::{Bag, Partitioning, Runtime, RuntimeConfig, Step};
use gridpipe_tests::*;
use std::time::{Duration, Instant};

const WORKER: &str = env!("CARGO_BIN_EXE_gridpipe-test-worker");

fn view(rt: &Runtime) -> RuntimeView {
    block_on(rt.scheduler().send(DashboardView)).expect("the scheduler answers")
}

/// Even keys fail in `half`; then a gathered fit sleeps 1.5 s. While it sleeps,
/// the view must name the fit as the busy worker's only task and list every
/// failed sample with its step and reason.
fn check_the_view_during_the_fit(rt: &Runtime) {
    let mut pipeline = Pipeline::new()
        .step(Step::new("half", FailEvenKeys).transform_extra("key", "key"))
        .add(
            "slow",
            SlowFit {
                ms: 1500,
                mean: None,
            },
        );
    let bag = Bag::from_samples(samples(10, &[2], 0.0), Partitioning::NPartitions(5)).unwrap();
    std::thread::scope(|s| {
        let run = s.spawn(|| pipeline.fit_transform(rt, bag).unwrap());
        let deadline = Instant::now() + Duration::from_secs(20);
        // The first stage is quick; the fit is the one task that takes time.
        let during = loop {
            let v = view(rt);
            if v.workers
                .iter()
                .any(|w| w.current.as_deref() == Some("slow fit x1"))
            {
                break v;
            }
            assert!(
                Instant::now() < deadline,
                "never saw the fit in hand: {v:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let run_view = &during.runs[0];
        assert_eq!(run_view.state, RunPhase::Running, "{during:?}");
        let busy: Vec<_> = during
            .workers
            .iter()
            .filter(|w| w.current.is_some())
            .collect();
        assert_eq!(busy.len(), 1, "only the fit is in hand: {during:?}");
        assert_eq!(busy[0].tasks_in_hand, 1);
        let mut failed: Vec<(String, String, String)> = run_view
            .failed_samples
            .iter()
            .map(|f| (f.key.clone(), f.step.clone(), f.reason.clone()))
            .collect();
        failed.sort();
        let expected: Vec<(String, String, String)> = ["0", "2", "4", "6", "8"]
            .iter()
            .map(|k| {
                (
                    k.to_string(),
                    "half".to_string(),
                    format!("key {k:?} is even"),
                )
            })
            .collect();
        assert_eq!(
            failed, expected,
            "every failed sample, while the run goes on"
        );
        let out = run.join().unwrap();
        assert_eq!(out.bag.failed().len(), 5);
    });
    let after = view(rt);
    assert_eq!(after.runs[0].state, RunPhase::Finished);
    assert_eq!(after.runs[0].failed_samples.len(), 5);
    assert!(
        after.workers.iter().all(|w| w.current.is_none()),
        "{after:?}"
    );
}

#[test]
fn threads_show_tasks_in_hand_and_failed_samples_while_running() {
    let rt = Runtime::start(RuntimeConfig::in_process(2).without_dashboard()).unwrap();
    check_the_view_during_the_fit(&rt);
}

#[test]
fn worker_processes_holding_the_data_show_failed_samples_while_running() {
    let rt = Runtime::start(
        RuntimeConfig::processes(2)
            .worker_program(WORKER)
            .without_dashboard(),
    )
    .unwrap();
    check_the_view_during_the_fit(&rt);
}
