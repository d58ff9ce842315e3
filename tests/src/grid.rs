//! What the tests against the real Grid Engine share: taking the grid (it has few
//! slots, so its tests run one at a time, whether they share a process under
//! `cargo test` or each has its own under nextest), and what `qstat` lists.

use std::fs::File;
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
