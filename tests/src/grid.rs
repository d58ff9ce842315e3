//! What the tests against the real Grid Engine share: taking the grid (it has few
//! slots, so its tests run one at a time, whether they share a process under
//! `cargo test` or each has its own under nextest), and what `qstat` lists.

use gridpipe_sge::{ClusterOptions, QueueSpec, QueueSpecs, SgeCluster};
use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static GRID: Mutex<()> = Mutex::new(());

/// The grid, taken by one test: by the threads of this process and, through an
/// exclusive lock on a file, by every other test process.
pub struct GridTaken {
    _file: File,
    _guard: MutexGuard<'static, ()>,
}

/// Takes the grid for one test, after checking that Grid Engine answers; fails
/// (never skips) when it does not.
pub fn grid() -> GridTaken {
    let guard = GRID.lock().unwrap_or_else(|e| e.into_inner());
    let path = std::env::temp_dir().join("gridpipe-tests-grid.lock");
    let file = File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
    let guard = GridTaken {
        _file: file,
        _guard: guard,
    };
    let out = Command::new("qstat").args(["-u", "*"]).output();
    match out {
        Ok(o) if o.status.success() => guard,
        Ok(o) => panic!(
            "Grid Engine does not answer (run `bash scripts/grid-engine.sh setup && bash scripts/grid-engine.sh start` as root): {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "qstat cannot run, Grid Engine is not installed (run `bash scripts/grid-engine.sh setup` as root): {e}"
        ),
    }
}

/// Every job Grid Engine lists, of every user: (id, name).
pub fn listed_jobs() -> Vec<(String, String)> {
    listed_statuses()
        .into_iter()
        .map(|s| (s.id.to_string(), s.name))
        .collect()
}

/// Every job Grid Engine lists, of every user, with its state.
pub fn listed_statuses() -> Vec<gridpipe_sge::JobStatus> {
    let out = Command::new("qstat")
        .args(["-u", "*", "-xml"])
        .output()
        .expect("qstat runs");
    assert!(out.status.success(), "qstat failed");
    gridpipe_sge::parse_qstat_xml(&String::from_utf8_lossy(&out.stdout)).expect("qstat xml parses")
}

/// The jobs Grid Engine lists (of every user) whose name starts with `prefix`.
pub fn listed_named(prefix: &str) -> Vec<gridpipe_sge::JobStatus> {
    listed_statuses()
        .into_iter()
        .filter(|s| s.name.starts_with(prefix))
        .collect()
}

/// The queue `qacct` recorded for job `id` (accounting lags a second or so).
pub fn accounted_queue(id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("qacct")
            .args(["-j", id])
            .output()
            .expect("qacct runs");
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(q) = text
            .lines()
            .find_map(|l| l.strip_prefix("qname"))
            .map(|q| q.trim().to_string())
        {
            return q;
        }
        assert!(Instant::now() < deadline, "qacct never listed job {id}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A fresh working folder for the test `test`'s cluster.
pub fn work_dir(test: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("gridpipe-grid-test-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A cluster of two jobs of `spec` whose workers run `worker`, its jobs named
/// after `test`.
pub fn cluster_of(worker: &str, test: &str, spec: QueueSpec) -> SgeCluster {
    let options = ClusterOptions::default()
        .work_dir(work_dir(test))
        .job_name(format!("gp-{test}"))
        .worker_program(worker)
        .handle_signals(false);
    let specs = QueueSpecs::new(spec).unwrap();
    let cluster = SgeCluster::with_options(specs, options).unwrap();
    cluster.scale(2).unwrap();
    cluster
        .wait_for_workers(2, Duration::from_secs(60))
        .unwrap();
    cluster
}

/// Closes the cluster and checks that Grid Engine lists none of its jobs.
pub fn close_cluster(cluster: SgeCluster, test: &str) {
    cluster.close().unwrap();
    let prefix = format!("gp-{test}");
    let left: Vec<_> = listed_jobs()
        .into_iter()
        .filter(|(_, name)| name.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "jobs left after close: {left:?}");
}
