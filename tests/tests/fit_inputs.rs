//! A gather fit's rows on worker processes: they stay on the worker that made
//! them and the fit's worker fetches them from there (the scheduler's process
//! sees where they are, never the rows); a worker lost with rows its fit still
//! waits for has them made again, and the results are unchanged.

use gridpipe_estimators::{Pca, Pipeline};
use gridpipe_runtime::{Runtime, RuntimeConfig, DATA};
use gridpipe_tests::gated::{
    close, data, gate_tasks, gated, gated_reference, kill_the_rows_keeper, other_worker_done,
    GateOpener,
};
use gridpipe_tests::unique;
use std::time::Duration;

const WORKER: &str = env!("CARGO_BIN_EXE_gridpipe-test-worker");

fn processes(n: usize) -> Runtime {
    Runtime::start(RuntimeConfig::processes(n).worker_program(WORKER)).unwrap()
}

/// Failing before: the rows went to the scheduler's process and out again to
/// the fit's worker (about twice the input received and sent on top).
#[test]
fn a_gather_fits_rows_go_from_worker_to_worker_not_through_the_scheduler() {
    const ROWS: usize = 40_000;
    const DIM: usize = 16;
    let input = (ROWS * DIM * 8) as u64;
    let pca = || Pipeline::new().add("pca", Pca::new(2));
    let reference = {
        let local = Runtime::in_process(1).unwrap();
        pca().fit_transform(&local, data(ROWS, DIM)).unwrap()
    };
    let rt = processes(2);
    let out = pca().fit_transform(&rt, data(ROWS, DIM)).unwrap();
    assert!(close(
        &out.bag.stack(DATA).unwrap().array,
        &reference.bag.stack(DATA).unwrap().array
    ));
    // In: the outputs (2 of 16 columns) and summaries; out: the input once.
    let (received, sent) = (rt.wire_traffic().received(), rt.wire_traffic().sent());
    assert!(
        received < input / 4,
        "{received} bytes received for {input} of input"
    );
    assert!(
        sent < input * 5 / 4,
        "{sent} bytes sent for {input} of input"
    );
}

/// One partition is held at the stage feeding a gathered fit while the other
/// worker finishes its share and keeps their rows; that worker is killed: its
/// partitions make their rows again (each runs the stage once more), the fit
/// gathers them, and the result is the one threads give.
#[test]
fn rows_kept_on_a_killed_worker_are_made_again_and_the_result_is_unchanged() {
    let base = std::env::temp_dir().join(unique(&format!("gridpipe-rows-{}", std::process::id())));
    let reference = gated_reference(&base.join("reference"));
    let rt = processes(2);
    let pids = rt.worker_pids();
    kill_the_rows_keeper(&rt, &base.join("run"), &reference, |victim| {
        assert!(pids.contains(&victim), "{victim} is one of {pids:?}")
    });
    let _ = std::fs::remove_dir_all(&base);
}

/// A worker keeping rows its fit has not fetched yet is retired: the
/// retirement waits until the fit has fetched them (nothing is made again),
/// then completes, and the result is the one threads give.
#[test]
fn retiring_a_worker_waits_until_the_fit_has_fetched_its_rows() {
    use gridpipe_runtime::actors::scheduler::{Drain, ListWorkers};
    let base = std::env::temp_dir().join(unique(&format!("gridpipe-drain-{}", std::process::id())));
    let reference = gated_reference(&base.join("reference"));
    let dir = base.join("run");
    let mut p = gated(&dir);
    let rt = processes(2);
    let pids = rt.worker_pids();
    let out = std::thread::scope(|s| {
        // Opens the gate if anything below fails, so the test fails, not hangs.
        let _gate = GateOpener::new(&dir);
        let run = s.spawn(|| p.fit_transform(&rt, data(240, 3)).unwrap());
        let (keeper, _) = other_worker_done(&dir);
        let name = format!("local-{}", pids.iter().position(|&p| p == keeper).unwrap());
        let workers = futures::executor::block_on(rt.scheduler().send(ListWorkers)).unwrap();
        let id = workers
            .iter()
            .find(|w| w.info.name == name)
            .unwrap()
            .info
            .id;
        let drained = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|d| {
            let gate = GateOpener::new(&dir);
            d.spawn(|| {
                futures::executor::block_on(rt.scheduler().send(Drain(id))).unwrap();
                drained.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(500));
            assert!(
                !drained.load(std::sync::atomic::Ordering::SeqCst),
                "retired while its rows were still to be fetched"
            );
            gate.open();
        });
        assert!(drained.load(std::sync::atomic::Ordering::SeqCst));
        run.join().unwrap()
    });
    let _ = std::fs::remove_dir_all(&base);
    assert!(close(&out.bag.stack(DATA).unwrap().array, &reference));
    assert_eq!(gate_tasks(&out), 12, "no rows were made again");
}

/// Failing before (it hung, and so, once in a few dozen runs, did the two tests
/// above, when a check failed while the gated partition waited): a check that
/// fails while the gate is shut fails its test, because the gate opens as the
/// failure unwinds and the run's thread, which the scope waits for, ends.
#[test]
fn a_check_failing_while_the_gate_is_shut_fails_the_test_instead_of_hanging_it() {
    let dir = std::env::temp_dir().join(unique(&format!("gridpipe-gate-{}", std::process::id())));
    let (tx, rx) = std::sync::mpsc::channel();
    let test_dir = dir.clone();
    std::thread::spawn(move || {
        let dir = test_dir;
        let mut p = gated(&dir);
        let rt = Runtime::in_process(2).unwrap();
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::thread::scope(|s| {
                let _gate = GateOpener::new(&dir);
                s.spawn(|| p.fit_transform(&rt, data(240, 3)).unwrap());
                while !dir.join("marks").join("held").exists() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                panic!("a check failed while the gated partition waited");
            })
        }));
        let _ = tx.send(failed.is_err());
    });
    let ended = rx.recv_timeout(Duration::from_secs(60));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(ended, Ok(true), "the failing test hung instead of failing");
}
