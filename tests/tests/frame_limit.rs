//! Data bigger than a frame of the wire streams between the scheduler and worker
//! processes, both ways; a message bigger than `RuntimeConfig::max_message` is
//! refused by its sender, the run fails naming the step and the partition (or
//! the fit), and the workers live on.

use gridpipe_estimators::Pipeline;
use gridpipe_runtime::actors::scheduler::LiveWorkers;
use gridpipe_runtime::wire::stream::CHUNK;
use gridpipe_runtime::{Bag, Partitioning, RunError, Runtime, RuntimeConfig, DATA};
use gridpipe_tests::*;
use ndarray::ArrayD;

const WORKER: &str = env!("CARGO_BIN_EXE_gridpipe-test-worker");

/// The largest message in these tests: six frames.
const MAX: u64 = 6 * CHUNK as u64;

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
            assert!(*size > *limit && *limit == MAX, "{err}");
            err.to_string()
        }
        other => panic!("expected a message-too-large error, got {other}"),
    }
}

#[test]
fn data_over_a_frame_streams_and_messages_over_the_limit_fail_their_run_and_no_worker() {
    let mut config = RuntimeConfig::processes(2)
        .worker_program(WORKER)
        .without_dashboard();
    config.max_message = MAX;
    let rt = Runtime::start(config).unwrap();
    let pids = rt.worker_pids();
    let live = || futures::executor::block_on(rt.scheduler().send(LiveWorkers)).unwrap();
    let limit_values = (MAX / 8) as usize;

    // 0. A partition of three frames goes to a worker and comes back whole, and
    // a gathered fit over four frames of inputs runs.
    let values = 3 * CHUNK / 8;
    let out = Pipeline::new()
        .add("plus1", AddOffset(1.0))
        .transform(&rt, bag(1, 1, values))
        .unwrap();
    let data = out.bag.stack(DATA).unwrap().array;
    assert_eq!(data.len(), values);
    assert!(data.iter().all(|&v| v == 2.0));
    let mut p = Pipeline::new()
        .add("plus1", AddOffset(1.0))
        .add("gathered", DummyWithFit::default());
    p.fit(&rt, bag(2, CHUNK / 32, 4)).unwrap();

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

/// A gathered fit whose inputs are over 256 MiB (the one-frame limit of
/// earlier versions, where the worker died of it) runs on a worker process:
/// the inputs stream to it in frames.
#[test]
fn a_gathered_fit_over_256_mib_runs_on_a_worker_process() {
    let rt = Runtime::start(
        RuntimeConfig::processes(1)
            .worker_program(WORKER)
            .without_dashboard(),
    )
    .unwrap();
    // 4 partitions of 2^14 rows of 640 values: 320 MiB of fit inputs (wide rows:
    // few keys, so the time goes to the data, not to a key per row).
    let mut p = Pipeline::new().add("gathered", DummyWithFit::default());
    let out = p.fit(&rt, bag(4, 1 << 14, 640)).unwrap();
    assert_eq!(out.report.samples, 4 << 14);
    let transformed = Pipeline::new()
        .add("plus1", AddOffset(1.0))
        .transform(&rt, bag(1, 4, 10))
        .unwrap();
    assert!(transformed
        .bag
        .stack(DATA)
        .unwrap()
        .iter()
        .all(|&v| v == 2.0));
}
