//! Messages bigger than a frame of the wire (256 MiB) with worker processes: the
//! sender refuses them, the run fails naming the step and the partition (or the
//! fit), and the workers live on.

use gridpipe_estimators::Pipeline;
use gridpipe_runtime::actors::scheduler::LiveWorkers;
use gridpipe_runtime::wire::frame::DEFAULT_MAX_FRAME;
use gridpipe_runtime::{Bag, Partitioning, RunError, Runtime, RuntimeConfig, DATA};
use gridpipe_tests::*;
use ndarray::ArrayD;

const WORKER: &str = env!("CARGO_BIN_EXE_gridpipe-test-worker");

/// `parts` partitions of `rows` samples of `width` values each.
fn bag(parts: usize, rows: usize, width: usize) -> Bag {
    let n = parts * rows;
    let keys = (0..n).map(|i| i.to_string()).collect();
    let data = ArrayD::from_elem(ndarray::IxDyn(&[n, width]), 1.0);
    Bag::from_rows(keys, data, Partitioning::NPartitions(parts)).unwrap()
}

fn too_large(err: RunError) -> String {
    match &err {
        RunError::MessageTooLarge { size, limit, .. } => {
            assert!(*size > *limit && *limit == DEFAULT_MAX_FRAME, "{err}");
            err.to_string()
        }
        other => panic!("expected a message-too-large error, got {other}"),
    }
}

#[test]
fn oversized_inputs_results_and_fit_inputs_fail_their_run_and_no_worker() {
    let rt = Runtime::start(
        RuntimeConfig::processes(2)
            .worker_program(WORKER)
            .without_dashboard(),
    )
    .unwrap();
    let pids = rt.worker_pids();
    let live = || futures::executor::block_on(rt.scheduler().send(LiveWorkers)).unwrap();
    let limit_values = (DEFAULT_MAX_FRAME / 8) as usize;

    // 1. An input partition over the limit: refused by the scheduler.
    let p = Pipeline::new().add("plus1", AddOffset(1.0));
    let msg = too_large(
        p.transform(&rt, bag(1, 2, limit_values / 2 + 1000))
            .unwrap_err(),
    );
    assert!(
        msg.contains("plus1") && msg.contains("partition 0"),
        "{msg}"
    );

    // 2. A result over the limit: refused by the worker, which lives on.
    let p = Pipeline::new()
        .add("plus1", AddOffset(1.0))
        .add("grow", Repeat { times: 64 });
    let msg = too_large(
        p.transform(&rt, bag(2, 1, limit_values / 64 + 1000))
            .unwrap_err(),
    );
    assert!(msg.contains("plus1+grow"), "{msg}");

    // 3. A gathered fit whose inputs are over the limit together, though each
    // partition is under it: refused before the fit is sent.
    let mut p = Pipeline::new()
        .add("plus1", AddOffset(1.0))
        .add("gathered", DummyWithFit::default());
    let msg = too_large(p.fit(&rt, bag(3, 1, limit_values / 3 + 1000)).unwrap_err());
    assert!(msg.contains("fit of step \"gathered\""), "{msg}");

    // The same workers serve the next run.
    assert_eq!(live(), 2);
    assert_eq!(rt.worker_pids(), pids);
    let out = Pipeline::new()
        .add("plus1", AddOffset(1.0))
        .transform(&rt, bag(4, 10, 3))
        .unwrap();
    assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == 2.0));
}
