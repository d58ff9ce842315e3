//! Grid Engine (Sun / Son of Grid Engine) support for gridpipe.
//!
//! This crate holds:
//!
//! - the *queue specs* ([`QueueSpec`], [`QueueSpecs`]): named descriptions
//!   of how jobs are submitted with `qsub` and what the workers they start
//!   offer;
//! - job scripts ([`job_script`], [`JobTemplate`]): the text given to `qsub`
//!   to start one worker (queue, `-l` requests, log folder, and the worker's
//!   environment; the secret only as a file path);
//! - the [`BatchSystem`] trait (submit, status, delete) with the real
//!   implementation [`SgeCommands`] (`qsub -terse`, `qstat -xml`, `qdel`,
//!   each with a time limit) and the in-memory [`FakeBatchSystem`] for tests;
//! - job ids and states ([`JobId`], [`JobState`], [`JobStatus`]) and the
//!   `qstat -xml` parser ([`parse_qstat_xml`]); errors are [`SgeError`].
//!
//! - the cluster ([`SgeCluster`]): a gridpipe runtime whose workers are Grid
//!   Engine jobs, with a [`QueueActor`] per queue spec and a [`ClusterController`] that
//!   keeps each queue at its target, replaces ended jobs, surfaces the stderr of
//!   jobs that end before their worker connects, and deletes every job on close,
//!   drop, Ctrl-C or SIGTERM (by id and by the cluster's job names). Tunables
//!   are in [`ClusterOptions`].
//! - the work folder (private, per user) and the cluster's lease in it: the
//!   next cluster deletes the jobs of one whose program died ([`Lease`],
//!   [`lease_policy`], [`reap_dead_clusters`]).
//!
//! Queue specs are loaded from TOML, one table per label, and a `default`
//! label is required:
//!
//! ```toml
//! [default]
//! queue = "q_1day"
//! memory = "8GB"
//! io_big = true
//! max_jobs = 10
//!
//! [gpu]
//! queue = "q_gpu"
//! memory = "12GB"
//! resource_spec = ["gpu=1"]
//! resources = { gpu = 1 }
//! max_jobs = 1
//! ```
//!
//! # How a queue spec maps to Grid Engine
//!
//! - `queue` → `qsub -q <queue>`.
//! - `memory` → `qsub -l mem_free=<memory>` (e.g. `"8GB"` → `mem_free=8G`).
//!   `mem_free` is a load value that the scheduler checks against each
//!   host's currently free memory; it is not a limit on the job. **A
//!   `mem_free` above what any host offers waits in `qw` forever**, with no
//!   error: check requests with [`Memory::warn_if_above_host`] or
//!   [`QueueSpecs::warnings_above_host`].
//! - `io_big = true` → `qsub -l io_big=TRUE`.
//! - `resource_spec` → one extra `qsub -l <entry>` per `name=value` entry,
//!   e.g. `-l gpu=1`.
//! - `resources` → not passed to Grid Engine: what the job's worker
//!   advertises to the gridpipe runtime (e.g. `{ gpu = 1 }`), so that tasks
//!   needing a resource are sent to workers of a label that offers it (see
//!   [`QueueSpecs::offering`]).
//! - `max_jobs` → not passed to Grid Engine: at most this many jobs of the
//!   label run at once.
//!
//! [`QueueSpec::qsub_resource_requests`] returns the `-l` requests in a
//! fixed order: `mem_free`, then `io_big`, then the `resource_spec` entries.
//!
//! # Validation
//!
//! [`QueueSpecs::from_toml_str`] and [`QueueSpecs::from_toml_file`] reject
//! unknown keys, wrongly typed values, an empty `queue`, bad memory strings,
//! `resource_spec` entries not of the form `name=value`, a `max_jobs` of 0,
//! `resources` amounts of 0, labels that are empty or use characters other
//! than `[A-Za-z0-9_-]`, and a missing `default` label. Errors are
//! [`QueueSpecError`]s whose messages name the label and the key (and the
//! file, when loaded from one).

#![warn(missing_docs)]

mod batch_system;
mod cluster;
mod cluster_error;
mod cluster_options;
mod control;
mod lease;
pub mod lease_policy;
mod reaper;
mod spec;
mod work_folder;

pub use control::policy;

pub use batch_system::error::SgeError;
pub use batch_system::fake::{FakeBatchSystem, FakeJob};
pub use batch_system::grid_engine::{parse_qsub_output, SgeCommands};
pub use batch_system::job::{JobId, JobState, JobStatus};
pub use batch_system::job_ending::{
    parse_qacct, start_verdict, JobEnding, StartVerdict, ACCOUNTING_GRACE,
};
pub use batch_system::job_log::{job_stderr_path, job_stderr_tail};
pub use batch_system::qstat::parse_qstat_xml;
pub use batch_system::script::{bash_quote, job_name, job_script, JobTemplate};
pub use batch_system::BatchSystem;
pub use cluster::{QueueUsage, SgeCluster};
pub use cluster_error::ClusterError;
pub use cluster_options::{advertised_address, host_name, ClusterOptions};
pub use control::adapt_state::submit_backoff;
pub use control::adaptive::{
    AdaptNow, AdaptOptions, AdaptReport, DecisionRecord, GetAdaptReport, StartAdapt, TimelinePoint,
};
pub use control::clock::{Clock, ClockHandle, ManualClock, SystemClock};
pub use control::controller::{
    CloseAll, ClusterController, ClusterStatus, JobProblem, Poll, QueueStatus, SetTarget, Status,
    WatchedQueueSpec,
};
pub use control::panel::ControllerPanel;
pub use control::queue_actor::{
    ApplyStatuses, CheckSubmit, Close, DeleteJobs, Jobs, QueueActor, QueueJobs, Refresh, ScaleBy,
    ScaleChange, ScaleTo, TakeEnded, TrackedJobs,
};
pub use lease::{process_start, Lease, LeaseKeeper, LEASE_FILE, REAPED_FILE};
pub use policy::{
    apply, decide, workers_wanted, Action, Bounds, Decision, PolicyConfig, PolicyInput, QueueView,
    ShapeDemand, WorkerView,
};
pub use reaper::{reap_dead_clusters, Reaped};
pub use spec::error::{MemoryError, QueueSpecError};
pub use spec::memory::Memory;
pub use spec::queue_spec::QueueSpec;
pub use spec::queue_specs::QueueSpecs;
pub use work_folder::{default_work_root, folder_problem, FolderFacts, FolderRole, WORK_DIR_ENV};
