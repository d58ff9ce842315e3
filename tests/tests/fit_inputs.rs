//! A gather fit's rows on worker processes: they stay on the worker that made
//! them and the fit's worker fetches them from there (the scheduler's process
//! sees where they are, never the rows); a worker lost with rows its fit still
//! waits for has them made again, and the results are unchanged.

use gridpipe_estimators::{Pca, Pipeline};
use gridpipe_runtime::{Bag, Partitioning, Runtime, RuntimeConfig, Step, DATA};
use gridpipe_tests::{kill9, unique, Gate, SlowFit};
use ndarray::{Array2, ArrayD};
use std::path::Path;
use std::time::{Duration, Instant};

const WORKER: &str = env!("CARGO_BIN_EXE_gridpipe-test-worker");

fn data(rows: usize, dim: usize) -> Bag {
    let x = Array2::from_shape_fn((rows, dim), |(i, j)| {
        (i as f64 * 0.37 + j as f64 * 1.3).sin() * (j + 1) as f64 + ((i * 7 + j * 13) % 29) as f64
    });
    let keys = (0..rows).map(|i| i.to_string()).collect();
    Bag::from_rows(keys, x.into_dyn(), Partitioning::NPartitions(12)).unwrap()
}

fn processes(n: usize) -> Runtime {
    Runtime::start(RuntimeConfig::processes(n).worker_program(WORKER)).unwrap()
}

fn close(a: &ArrayD<f64>, b: &ArrayD<f64>) -> bool {
    a.shape() == b.shape() && a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() < 1e-9)
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

/// Files in `dir` whose name starts with `prefix`.
fn marks(dir: &Path, prefix: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .count()
        })
        .unwrap_or(0)
}

/// `gate` (holding the partition of key "0" until the file `open` exists in
/// `dir`) then `mean`, a gathered fit.
fn gated(dir: &Path) -> Pipeline {
    std::fs::create_dir_all(dir.join("marks")).unwrap();
    Pipeline::new()
        .step(
            Step::new(
                "gate",
                Gate {
                    key: "0".into(),
                    gate: dir.join("open"),
                    marks: dir.join("marks"),
                },
            )
            .transform_extra("key", "key"),
        )
        .add("mean", SlowFit { ms: 0, mean: None })
}

/// The gated pipeline's output on one thread, the gate open.
fn gated_reference(dir: &Path) -> ArrayD<f64> {
    let mut p = gated(dir);
    std::fs::write(dir.join("open"), "").unwrap();
    let local = Runtime::in_process(1).unwrap();
    p.fit_transform(&local, data(240, 3))
        .unwrap()
        .bag
        .stack(DATA)
        .unwrap()
        .array
}

/// Waits until the gated partition runs on one worker and the other worker
/// (of `pids`) has finished its share, keeping its rows; returns the other
/// worker's process id and how many partitions it ran.
fn other_worker_done(dir: &Path, pids: &[u32]) -> (u32, usize) {
    let marked = dir.join("marks");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !marked.join("held").exists() {
        assert!(Instant::now() < deadline, "the gated partition never ran");
        std::thread::sleep(Duration::from_millis(5));
    }
    let held_by: u32 = std::fs::read_to_string(marked.join("held"))
        .unwrap()
        .parse()
        .unwrap();
    let other = *pids.iter().find(|&&p| p != held_by).unwrap();
    // Its share is done once its marks stop coming.
    let mut done = (0, Instant::now());
    while done.0 == 0 || done.1.elapsed() < Duration::from_millis(300) {
        assert!(Instant::now() < deadline, "the other worker ran nothing");
        let n = marks(&marked, &format!("{other}-"));
        if n != done.0 {
            done = (n, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (other, done.0)
}

/// Tasks of the step `gate` in a run's report.
fn gate_tasks(out: &gridpipe_runtime::RunOutput) -> usize {
    out.report
        .tasks
        .iter()
        .filter(|t| out.report.label(t).steps == ["gate"])
        .count()
}

/// One partition is held at the stage feeding a gathered fit while the other
/// worker finishes its share and keeps their rows; that worker is killed: its
/// partitions make their rows again (each runs the stage once more), the fit
/// gathers them, and the result is the one threads give.
#[test]
fn rows_kept_on_a_killed_worker_are_made_again_and_the_result_is_unchanged() {
    let base = std::env::temp_dir().join(unique(&format!("gridpipe-rows-{}", std::process::id())));
    let reference = gated_reference(&base.join("reference"));
    let dir = base.join("run");
    let mut p = gated(&dir);
    let rt = processes(2);
    let pids = rt.worker_pids();
    let (out, victims_share) = std::thread::scope(|s| {
        let run = s.spawn(|| p.fit_transform(&rt, data(240, 3)).unwrap());
        let (victim, share) = other_worker_done(&dir, &pids);
        kill9(victim);
        std::thread::sleep(Duration::from_millis(200));
        std::fs::write(dir.join("open"), "").unwrap();
        (run.join().unwrap(), share)
    });
    let _ = std::fs::remove_dir_all(&base);
    assert!(close(&out.bag.stack(DATA).unwrap().array, &reference));
    assert_eq!(out.report.workers_lost, 1);
    assert_eq!(
        gate_tasks(&out),
        12 + victims_share,
        "each of the killed worker's {victims_share} partitions made its rows again"
    );
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
        let run = s.spawn(|| p.fit_transform(&rt, data(240, 3)).unwrap());
        let (keeper, _) = other_worker_done(&dir, &pids);
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
            d.spawn(|| {
                futures::executor::block_on(rt.scheduler().send(Drain(id))).unwrap();
                drained.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(500));
            assert!(
                !drained.load(std::sync::atomic::Ordering::SeqCst),
                "retired while its rows were still to be fetched"
            );
            std::fs::write(dir.join("open"), "").unwrap();
        });
        assert!(drained.load(std::sync::atomic::Ordering::SeqCst));
        run.join().unwrap()
    });
    let _ = std::fs::remove_dir_all(&base);
    assert!(close(&out.bag.stack(DATA).unwrap().array, &reference));
    assert_eq!(gate_tasks(&out), 12, "no rows were made again");
}
