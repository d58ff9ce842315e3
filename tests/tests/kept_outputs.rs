//! Outputs kept where they were made (`Outputs::KeepInPlace`): each output
//! partition stays in the worker process that ran its last stage until it is
//! taken, comes in partition order, is rebuilt from its lineage when its holder
//! is lost, comes back when its holder is retired, and is dropped there when
//! nobody can take it any more. On threads the same handle serves data here.

use gridpipe_estimators::Pipeline;
use gridpipe_runtime::actors::kept::Placement;
use gridpipe_runtime::actors::scheduler::{Drain, KeptOnWorkers, ListWorkers};
use gridpipe_runtime::{Bag, Partitioning, RunError, Runtime, RuntimeConfig, Stacked, DATA};
use gridpipe_tests::*;
use ndarray::{Array2, ArrayD};
use std::time::{Duration, Instant};

const WORKER: &str = env!("CARGO_BIN_EXE_gridpipe-test-worker");

fn processes(n: usize) -> Runtime {
    Runtime::start(RuntimeConfig::processes(n).worker_program(WORKER)).unwrap()
}

const ROWS: usize = 3000;
const DIM: usize = 4;
/// The output's size in bytes.
const OUTPUT_BYTES: u64 = (ROWS * DIM * 8) as u64;

fn data() -> Bag {
    let x = Array2::from_shape_fn((ROWS, DIM), |(i, j)| ((i * 31 + j * 17) % 101) as f64);
    let keys = (0..ROWS).map(|i| i.to_string()).collect();
    Bag::from_rows(keys, x.into_dyn(), Partitioning::NPartitions(12)).unwrap()
}

/// The seed's pipeline, fitted on `rt` (its fit reduces statistics: no data
/// comes back from the workers for it).
fn fitted(rt: &Runtime) -> Pipeline {
    let mut p = affine_then_scaler();
    p.fit(rt, data()).unwrap();
    p
}

/// The output collected on one thread: what every kept output must equal.
fn reference() -> ArrayD<f64> {
    let rt = Runtime::in_process(1).unwrap();
    let p = fitted(&rt);
    p.transform(&rt, data())
        .unwrap()
        .bag
        .stack(DATA)
        .unwrap()
        .array
}

fn stacked(parts: Vec<std::sync::Arc<gridpipe_runtime::Batch>>) -> ArrayD<f64> {
    let batches = parts.into_iter().map(std::sync::Arc::unwrap_or_clone);
    let s: Stacked = Bag::from_batches(batches.collect())
        .unwrap()
        .stack(DATA)
        .unwrap();
    assert!(s.left_out.is_empty());
    s.array
}

fn same_bits(a: &ArrayD<f64>, b: &ArrayD<f64>) -> bool {
    a.shape() == b.shape()
        && a.iter()
            .zip(b.iter())
            .all(|(x, y)| x.to_bits() == y.to_bits())
}

fn received(rt: &Runtime) -> u64 {
    rt.wire_traffic().received()
}

#[test]
fn kept_outputs_stay_on_the_workers_until_taken_and_come_in_partition_order() {
    let want = reference();
    let rt = processes(2);
    let p = fitted(&rt);
    let before = received(&rt);
    let out = p.transform_kept(&rt, data()).unwrap();
    let during_run = received(&rt) - before;
    assert_eq!(out.bag.len(), 0, "nothing is collected");
    let kept = out.kept.expect("a kept output");
    assert_eq!(kept.len(), 12);
    let placement = kept.placement_blocking().unwrap();
    assert!(
        placement
            .iter()
            .all(|p| matches!(p, Placement::OnWorker(_))),
        "{placement:?}"
    );
    assert!(
        during_run < OUTPUT_BYTES / 4,
        "only summaries came back during the run: {during_run} bytes"
    );
    let before = received(&rt);
    let parts: Vec<_> = kept.iter(2).collect::<Result<_, _>>().unwrap();
    assert!(
        received(&rt) - before >= OUTPUT_BYTES,
        "taking the partitions brought their data"
    );
    assert!(same_bits(&stacked(parts), &want));
    assert_eq!(
        futures::executor::block_on(rt.scheduler().send(KeptOnWorkers)).unwrap(),
        0,
        "the workers hold nothing once every partition is taken"
    );

    // A partition is taken once; an index out of range is named.
    let kept = p.transform_kept(&rt, data()).unwrap().kept.unwrap();
    let first = kept.take_blocking(0).unwrap();
    assert_eq!(first.len(), ROWS / 12);
    assert!(matches!(
        kept.take_blocking(0),
        Err(RunError::OutputTaken { partition: 0 })
    ));
    assert!(matches!(
        kept.take_blocking(12),
        Err(RunError::NoSuchPartition {
            partition: 12,
            partitions: 12
        })
    ));
    assert_eq!(kept.placement_blocking().unwrap()[0], Placement::Taken);
}

#[test]
fn a_discarded_or_dropped_output_is_dropped_by_its_holders() {
    let rt = processes(2);
    let p = fitted(&rt);
    let count = || futures::executor::block_on(rt.scheduler().send(KeptOnWorkers)).unwrap();

    // Discarded: once that returns, retiring the workers brings none of it back.
    let kept = p.transform_kept(&rt, data()).unwrap().kept.unwrap();
    assert_eq!(count(), 12);
    kept.discard_blocking().unwrap();
    assert_eq!(count(), 0);
    // Dropped: the partition actors stop and their holders drop the data.
    let kept = p.transform_kept(&rt, data()).unwrap().kept.unwrap();
    assert_eq!(count(), 12);
    drop(kept);
    let deadline = Instant::now() + Duration::from_secs(10);
    while count() > 0 {
        assert!(Instant::now() < deadline, "{} still held", count());
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = received(&rt);
    for w in 0..2 {
        futures::executor::block_on(rt.scheduler().send(Drain(w))).unwrap();
    }
    assert!(
        received(&rt) - before < OUTPUT_BYTES / 4,
        "no dropped partition came back: {} bytes",
        received(&rt) - before
    );
}

#[test]
fn a_retired_holder_hands_its_kept_partitions_back() {
    let want = reference();
    let rt = processes(2);
    let p = fitted(&rt);
    let kept = p.transform_kept(&rt, data()).unwrap().kept.unwrap();
    for w in 0..2 {
        futures::executor::block_on(rt.scheduler().send(Drain(w))).unwrap();
    }
    // The drain answered once the workers held nothing: the data is here.
    let placement = kept.placement_blocking().unwrap();
    assert!(
        placement.iter().all(|p| *p == Placement::Here),
        "{placement:?}"
    );
    let parts = kept.iter(4).collect::<Result<Vec<_>, _>>().unwrap();
    assert!(same_bits(&stacked(parts), &want));
}

#[test]
fn kept_partitions_of_a_killed_holder_are_rebuilt_from_their_lineage() {
    let want = reference();
    let rt = processes(2);
    let p = fitted(&rt);
    let kept = p.transform_kept(&rt, data()).unwrap().kept.unwrap();
    let Placement::OnWorker(holder) = kept.placement_blocking().unwrap()[0] else {
        panic!("partition 0 is not on a worker");
    };
    // The holder's process: worker names follow the configuration's order.
    let workers = futures::executor::block_on(rt.scheduler().send(ListWorkers)).unwrap();
    let name = &workers[holder as usize].info.name;
    let index = rt
        .config()
        .workers
        .iter()
        .position(|w| &w.name == name)
        .unwrap();
    kill9(rt.worker_pids()[index]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while kept.placement_blocking().unwrap()[0] != Placement::Lost {
        assert!(Instant::now() < deadline, "the loss was not noticed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let placement = kept.placement_blocking().unwrap();
    let lost = placement.iter().filter(|p| **p == Placement::Lost).count();
    assert!(
        placement
            .iter()
            .all(|p| *p == Placement::Lost || matches!(p, Placement::OnWorker(w) if *w != holder)),
        "{placement:?}"
    );
    let parts = kept.iter(3).collect::<Result<Vec<_>, _>>().unwrap();
    assert!(
        same_bits(&stacked(parts), &want),
        "{lost} lost partitions rebuilt to the same bits"
    );
}

#[test]
fn on_threads_the_kept_output_is_here_and_the_same() {
    let want = reference();
    let rt = Runtime::in_process(2).unwrap();
    let p = fitted(&rt);
    let kept = p.transform_kept(&rt, data()).unwrap().kept.unwrap();
    let placement = kept.placement_blocking().unwrap();
    assert!(placement.iter().all(|p| *p == Placement::Here));
    let bag = kept.collect().unwrap();
    assert!(same_bits(&bag.stack(DATA).unwrap().array, &want));
}
