//! Typed errors at the runtime crate's edge: [`RunError`], what a run can end
//! with. Each layer's own errors live in it (`data::error`, `graph::error`,
//! `checkpoint`, `wire`) and never import this upper one; they are re-exported
//! here.

use thiserror::Error;

pub use crate::data::error::{DataError, LoadError};
pub use crate::graph::error::EstimatorError;

/// A run could not be submitted or did not complete.
#[derive(Debug, Error)]
pub enum RunError {
    /// A step needs a resource that no worker and no attached cluster queue can ever offer.
    #[error("step {step:?} ({op}) needs resource {resource}={amount}, but no worker or queue offers it (workers offer: {offered})")]
    UnservableResource {
        /// The step whose task carries the tag.
        step: String,
        /// `fit` or `transform`.
        op: &'static str,
        /// The resource name.
        resource: String,
        /// The amount asked for.
        amount: u32,
        /// What the pool offers, for the message.
        offered: String,
    },
    /// A step must be fitted before it can transform or predict.
    #[error("step {step:?} is not fitted: call fit (or fit_transform) first")]
    NotFitted {
        /// The step.
        step: String,
    },
    /// The input could not be turned into batches, or a step read a missing attribute.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Fitting a step failed; nothing downstream of it can run.
    #[error("fit of step {step:?} failed: {reason}")]
    FitFailed {
        /// The step.
        step: String,
        /// Why.
        reason: String,
    },
    /// The pipeline has no step, or a step name repeats.
    #[error("invalid pipeline: {0}")]
    InvalidPipeline(String),
    /// A checkpoint could not be used (changed configuration, unwritable folder, ...).
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// A task's input, its result or a fit's inputs are bigger than the largest
    /// message between the scheduler and a worker process
    /// ([`crate::RuntimeConfig::max_message`]); found before anything is sent.
    #[error("{task}: a message of {} MiB exceeds the largest message of {} MiB (RuntimeConfig::max_message); use smaller partitions (Partitioning::PartitionSize) or raise the limit", size / (1 << 20), limit / (1 << 20))]
    MessageTooLarge {
        /// Which task: its steps and partition, or the fit and its step.
        task: String,
        /// The message's size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// A gathered fit needs more memory than any worker or queue that could run
    /// it may use; found before its inputs are sent.
    #[error("the fit of step {step:?} gathers {} MiB of inputs and needs about {} MiB on its worker (RuntimeConfig::fit_memory_factor), but the workers and queues that can run it may use at most {} MiB each: give them more memory (the queue spec's memory), or fit on fewer samples", inputs / (1 << 20), need / (1 << 20), largest / (1 << 20))]
    FitTooLarge {
        /// The fitted step.
        step: String,
        /// Bytes of its gathered inputs.
        inputs: u64,
        /// Bytes it needs on its worker.
        need: u64,
        /// The largest memory of a worker or queue that could run it, in bytes.
        largest: u64,
    },
    /// A gather fit could not fetch the rows its inputs' workers kept for it,
    /// again and again (the workers cannot reach each other).
    #[error("the fit of step {step:?} could not fetch its inputs from the workers that keep them, {tries} times; the last time: {reason} (worker processes must reach each other on the address by which they reach the scheduler, or set RuntimeConfig::fit_inputs_on_workers to false)")]
    FitInputsUnreachable {
        /// The fitted step.
        step: String,
        /// How many times it tried.
        tries: u32,
        /// Why the last try failed, per holder.
        reason: String,
    },
    /// Too many workers were lost while they held the run's tasks or data.
    #[error("{lost} workers were lost during this run (the limit is {limit}); tasks suspected of killing them: {suspects}")]
    WorkersLost {
        /// Workers lost.
        lost: u32,
        /// The limit ([`crate::RuntimeConfig::max_workers_lost`]).
        limit: u32,
        /// The suspect tasks, with the deaths they were in and caused.
        suspects: String,
    },
    /// A broken invariant of the runtime (a bug): the run fails loudly instead of
    /// losing a task.
    #[error("internal error (a bug in gridpipe): {0}")]
    Internal(String),
    /// Every worker that could run some task is gone.
    #[error("{0}")]
    NoWorker(String),
    /// A kept output partition was asked for after it had been taken or discarded.
    #[error("partition {partition} of the kept output was taken or discarded already")]
    OutputTaken {
        /// The partition.
        partition: u32,
    },
    /// A kept output has no partition with this index.
    #[error("the kept output has {partitions} partitions; there is no partition {partition}")]
    NoSuchPartition {
        /// The index asked for.
        partition: usize,
        /// How many there are.
        partitions: usize,
    },
    /// A kept output partition's holder was lost and rebuilding it failed.
    #[error("partition {partition} of the kept output was lost with its worker and could not be rebuilt: {reason}")]
    KeptPartitionLost {
        /// The partition.
        partition: u32,
        /// Why the rebuild failed.
        reason: String,
    },
    /// The runtime was shut down before the run finished.
    #[error("the runtime is shut down")]
    Shutdown,
    /// The runtime could not start (thread or actor system).
    #[error("runtime start failed: {0}")]
    Start(String),
}
