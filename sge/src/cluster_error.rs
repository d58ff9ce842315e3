//! [`ClusterError`]: what can go wrong with an [`crate::SgeCluster`].

use crate::batch_system::error::SgeError;
use gridpipe_runtime::RunError;
use std::path::PathBuf;
use thiserror::Error;

/// Why a cluster call failed.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// A label that no queue spec has.
    #[error("no queue spec labelled `{label}` (the specs have: {known})")]
    UnknownQueue {
        /// The label asked for.
        label: String,
        /// The labels the specs have, comma-separated.
        known: String,
    },
    /// A batch-system command failed.
    #[error(transparent)]
    Sge(#[from] SgeError),
    /// A batch-system command for one queue spec failed.
    #[error("queue spec `{label}` (Grid Engine queue `{queue}`): {source}")]
    Queue {
        /// The queue spec's label.
        label: String,
        /// The Grid Engine queue it submits to.
        queue: String,
        /// What failed.
        source: SgeError,
    },
    /// The cluster's runtime could not start.
    #[error("cannot start the cluster's runtime: {0}")]
    Start(#[from] RunError),
    /// A file of the cluster's work folder could not be written or removed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The work folder (or a folder in it) is not safe to keep the secret in.
    #[error("work folder {path} {problem}")]
    WorkDir {
        /// The folder.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// No work folder was given and none can be chosen.
    #[error("no work folder: neither GRIDPIPE_SGE_DIR nor HOME is set; set one, or give ClusterOptions::work_dir")]
    NoWorkDir,
    /// A queue was given up after its jobs kept ending before their worker
    /// connected.
    #[error("queue `{label}` was given up: {reason}")]
    QueueGivenUp {
        /// The queue spec's label.
        label: String,
        /// What happened, with the last job's stderr.
        reason: String,
    },
    /// Workers did not connect in time.
    #[error("{wanted} workers wanted, {live} connected after {waited_s:.1} s; jobs: {jobs}")]
    WorkersTimeout {
        /// Workers waited for.
        wanted: usize,
        /// Workers connected.
        live: usize,
        /// Seconds waited.
        waited_s: f64,
        /// The queues' job states.
        jobs: String,
    },
    /// The cluster's actors are gone (it was closed).
    #[error("the cluster has stopped")]
    Stopped,
    /// A call that needs adaptive scaling before [`crate::SgeCluster::adapt`].
    #[error("adaptive scaling has not been started (call SgeCluster::adapt first)")]
    NotAdapting,
    /// `ClusterOptions::runtime` asks for workers a cluster does not start.
    #[error("ClusterOptions::runtime.mode is {mode}: a cluster's workers are its grid jobs, so its runtime must be WorkerMode::External (as ClusterOptions::default() makes it)")]
    NotExternal {
        /// The mode that was given.
        mode: String,
    },
}
