//! Gathered fits and the memory of the workers that could run them: a fit that
//! no worker has the memory for fails its run naming the step before its inputs
//! are sent; one that only some workers have the memory for runs on those.

use gridpipe_estimators::{Pca, Pipeline};
use gridpipe_runtime::{Bag, Partitioning, RunError, Runtime, RuntimeConfig, TaskOp, DATA};
use ndarray::Array2;

const WORKER: &str = env!("CARGO_BIN_EXE_gridpipe-test-worker");

const ROWS: usize = 20_000;
const DIM: usize = 4;
/// The fit's gathered inputs, in bytes (every row goes to it).
const INPUT_BYTES: u64 = (ROWS * DIM * 8) as u64;

fn data() -> Bag {
    let x = Array2::from_shape_fn((ROWS, DIM), |(i, j)| ((i * 7 + j * 13) % 29) as f64);
    let keys = (0..ROWS).map(|i| i.to_string()).collect();
    Bag::from_rows(keys, x.into_dyn(), Partitioning::NPartitions(8)).unwrap()
}

fn pca() -> Pipeline {
    Pipeline::new().add("pca", Pca::new(2))
}

#[test]
fn a_fit_no_worker_has_the_memory_for_fails_naming_it_before_its_inputs_are_sent() {
    // The fit needs 3 x 640 KB; each worker may use 1 MiB.
    let config = RuntimeConfig::processes(2)
        .worker_program(WORKER)
        .worker_memory(1 << 20);
    let rt = Runtime::start(config).unwrap();
    let err = pca().fit(&rt, data()).unwrap_err();
    match &err {
        RunError::FitTooLarge {
            step,
            inputs,
            need,
            largest,
        } => {
            assert_eq!(step, "pca");
            assert_eq!(*inputs, INPUT_BYTES);
            assert_eq!(*need, 3 * INPUT_BYTES);
            assert_eq!(*largest, 1 << 20);
        }
        other => panic!("{other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("\"pca\"") && message.contains("1 MiB"),
        "{message}"
    );
    // The partitions went out once for the stage that feeds the fit; the fit's
    // inputs (as much again) never did.
    let sent = rt.wire_traffic().sent();
    assert!(
        sent > INPUT_BYTES && sent < INPUT_BYTES * 3 / 2,
        "{sent} bytes sent for {INPUT_BYTES} of input"
    );
}

#[test]
fn a_fit_runs_only_on_a_worker_with_the_memory_for_it() {
    let mut config = RuntimeConfig::processes(2).worker_program(WORKER);
    config.workers[0].memory = Some(1 << 20);
    config.workers[1].memory = Some(1 << 30);
    let big = config.workers[1].name.clone();
    let rt = Runtime::start(config).unwrap();
    let reference = {
        let local = Runtime::in_process(1).unwrap();
        let mut p = pca();
        p.fit_transform(&local, data())
            .unwrap()
            .bag
            .stack(DATA)
            .unwrap()
    };
    for round in 0..4 {
        let mut p = pca();
        let out = p.fit_transform(&rt, data()).unwrap();
        let fitters: Vec<String> = out
            .report
            .workers_of("pca", TaskOp::Fit)
            .iter()
            .map(|w| w.name.clone())
            .collect();
        assert_eq!(fitters, std::slice::from_ref(&big), "round {round}");
        let y = out.bag.stack(DATA).unwrap();
        assert_eq!(y.array.shape(), reference.array.shape());
    }
}
