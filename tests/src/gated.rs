//! A gathered fit whose input stage holds one partition behind a gate (a file):
//! the other worker finishes its share meanwhile and keeps the rows for the
//! fit, so a test can lose or retire it while its rows wait. Shared by the
//! worker-process and the real Grid Engine tests.

use crate::{kill9, Gate, SlowFit};
use gridpipe_estimators::Pipeline;
use gridpipe_runtime::{Bag, Partitioning, Runtime, Step, DATA};
use ndarray::{Array2, ArrayD};
use std::path::Path;
use std::time::{Duration, Instant};

/// `rows` x `dim` values in 12 partitions, keyed "0".."rows-1".
pub fn data(rows: usize, dim: usize) -> Bag {
    let x = Array2::from_shape_fn((rows, dim), |(i, j)| {
        (i as f64 * 0.37 + j as f64 * 1.3).sin() * (j + 1) as f64 + ((i * 7 + j * 13) % 29) as f64
    });
    let keys = (0..rows).map(|i| i.to_string()).collect();
    Bag::from_rows(keys, x.into_dyn(), Partitioning::NPartitions(12)).unwrap()
}

/// Whether two arrays have one shape and equal values (to 1e-9).
pub fn close(a: &ArrayD<f64>, b: &ArrayD<f64>) -> bool {
    a.shape() == b.shape() && a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() < 1e-9)
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

/// The process ids that left marks in `dir` (named `<pid>-<key>`).
fn marking_pids(dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.split_once('-')?.0.parse().ok()
                })
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Opens the gate of a [`gated`] pipeline (the file `open` in its folder) when
/// dropped, unless already open: a test that fails while the gated partition
/// waits fails instead of waiting for it forever (a panic inside
/// `std::thread::scope` waits for the run's thread before it unwinds).
pub struct GateOpener(std::path::PathBuf);

impl GateOpener {
    /// The opener of the gate of the pipeline [`gated`] made for `dir`.
    pub fn new(dir: &Path) -> Self {
        Self(dir.join("open"))
    }

    /// Opens the gate now.
    pub fn open(&self) {
        std::fs::write(&self.0, "").unwrap();
    }
}

impl Drop for GateOpener {
    fn drop(&mut self) {
        if !self.0.exists() {
            let _ = std::fs::write(&self.0, "");
        }
    }
}

/// `gate` (holding the partition of key "0" until the file `open` exists in
/// `dir`) then `mean`, a gathered fit.
pub fn gated(dir: &Path) -> Pipeline {
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
pub fn gated_reference(dir: &Path) -> ArrayD<f64> {
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

/// Waits until the gated partition runs on one worker and another worker has
/// finished its share, keeping its rows; returns that worker's process id and
/// how many partitions it ran.
pub fn other_worker_done(dir: &Path) -> (u32, usize) {
    let marked = dir.join("marks");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marked.join("held").exists() {
        assert!(Instant::now() < deadline, "the gated partition never ran");
        std::thread::sleep(Duration::from_millis(5));
    }
    let held_by: u32 = std::fs::read_to_string(marked.join("held"))
        .unwrap()
        .parse()
        .unwrap();
    // Its share is done once its marks stop coming.
    let mut done = (0, 0, Instant::now());
    while done.1 == 0 || done.2.elapsed() < Duration::from_millis(300) {
        assert!(Instant::now() < deadline, "no other worker ran anything");
        if let Some(other) = marking_pids(&marked).into_iter().find(|&p| p != held_by) {
            let n = marks(&marked, &format!("{other}-"));
            if (other, n) != (done.0, done.1) {
                done = (other, n, Instant::now());
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (done.0, done.1)
}

/// Tasks of the step `gate` in a run's report.
pub fn gate_tasks(out: &gridpipe_runtime::RunOutput) -> usize {
    out.report
        .tasks
        .iter()
        .filter(|t| out.report.label(t).steps == ["gate"])
        .count()
}

/// Runs the gated pipeline on `rt` (marks in `dir`), kills the worker that
/// finished its share and keeps its rows (`may_kill` checks its process id
/// first), then opens the gate. Checks that the result is the one threads
/// give (`reference`), that one worker was lost, and that exactly its
/// partitions made their rows again.
pub fn kill_the_rows_keeper(
    rt: &Runtime,
    dir: &Path,
    reference: &ArrayD<f64>,
    may_kill: impl Fn(u32),
) {
    let mut p = gated(dir);
    let (out, victims_share) = std::thread::scope(|s| {
        let gate = GateOpener::new(dir);
        let run = s.spawn(|| p.fit_transform(rt, data(240, 3)).unwrap());
        let (victim, share) = other_worker_done(dir);
        may_kill(victim);
        kill9(victim);
        std::thread::sleep(Duration::from_millis(300));
        gate.open();
        (run.join().unwrap(), share)
    });
    assert!(close(&out.bag.stack(DATA).unwrap().array, reference));
    assert_eq!(out.report.workers_lost, 1);
    assert_eq!(
        gate_tasks(&out),
        12 + victims_share,
        "each of the killed worker's {victims_share} partitions made its rows again"
    );
}
