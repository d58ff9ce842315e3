//! Pieces shared by the tests that run `SgeCluster` on a `FakeBatchSystem`.

#![allow(dead_code)]

use gridpipe_sge::{ClusterOptions, QueueSpec};
use std::path::PathBuf;
use std::time::Duration;

/// A fresh folder for one test (the cluster makes its own sub-folder in it),
/// removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `gridpipe-<suite>-<test>-<pid>` in the temporary folder, emptied.
    pub fn new(suite: &str, test: &str) -> Self {
        let name = format!("gridpipe-{suite}-{test}-{}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Options for a cluster on a fake: its work folder in `dir`, `qstat` polled
/// every `poll`, no signal handling (tests run in parallel in one process).
pub fn fake_cluster_options(dir: &TempDir, poll: Duration) -> ClusterOptions {
    ClusterOptions::default()
        .work_dir(&dir.0)
        .poll_interval(poll)
        .handle_signals(false)
}

/// `q_gpu` asking for and offering one gpu.
pub fn gpu_queue() -> QueueSpec {
    QueueSpec::new("q_gpu")
        .with_resource_spec("gpu=1")
        .with_resource("gpu", 1)
}
