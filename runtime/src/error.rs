//! Typed errors at the runtime crate's edge.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A lazily loaded value could not be loaded.
#[derive(Clone, Debug, Error, PartialEq, Serialize, Deserialize)]
#[error("load failed: {0}")]
pub struct LoadError(pub String);

impl LoadError {
    /// A load error with a message that names what failed.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// An estimator refused or failed an operation.
#[derive(Clone, Debug, Error, PartialEq, Serialize, Deserialize)]
pub enum EstimatorError {
    /// The input does not fit what the estimator expects (shape, missing argument, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// `transform` or `predict` was called before `fit`.
    #[error("estimator is not fitted")]
    NotFitted,
    /// The estimator does not offer this operation (e.g. `predict` on a scaler).
    #[error("operation `{0}` is not supported by this estimator")]
    Unsupported(&'static str),
    /// The computation itself failed.
    #[error("{0}")]
    Failed(String),
}

/// Building or reading a batch of samples failed.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum DataError {
    /// Samples of one partition must share one data shape so they form a contiguous batch.
    #[error("sample {key:?} has {what} shape {found:?}, but the partition's first sample has {expected:?}")]
    ShapeMismatch {
        /// The offending sample.
        key: String,
        /// Which array (`data` or an attribute name).
        what: String,
        /// The shape seen first in the partition.
        expected: Vec<usize>,
        /// The shape of the offending sample.
        found: Vec<usize>,
    },
    /// Samples of one partition must have the same attribute names.
    #[error(
        "sample {key:?} lacks attribute {attribute:?} that other samples of its partition have"
    )]
    MissingAttribute {
        /// The offending sample.
        key: String,
        /// The attribute it lacks.
        attribute: String,
    },
    /// A step asked for an attribute that the samples do not have.
    #[error("step {step:?}: samples have no attribute {attribute:?} (known: {known})")]
    UnknownAttribute {
        /// The step that asked.
        step: String,
        /// The attribute it asked for.
        attribute: String,
        /// The attributes the samples do have.
        known: String,
    },
    /// An attribute mixes arrays and scalars, or has a type the consumer cannot use.
    #[error("attribute {attribute:?}: {message}")]
    BadAttribute {
        /// The attribute.
        attribute: String,
        /// What is wrong with it.
        message: String,
    },
    /// A lazy value failed to load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Two samples of one bag (or of one sample set) have the same key: keys name
    /// checkpoint files and result rows, so one would silently take the other's place.
    #[error("sample key {key:?} appears twice: at {first} and at {second}")]
    DuplicateKey {
        /// The key.
        key: String,
        /// Where it appears first (`sample 3`, `row 17`, `set 2 ("t1") sample 0`).
        first: String,
        /// Where it appears again.
        second: String,
    },
}

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
    /// A task's input or result is bigger than one frame of the wire between the
    /// scheduler and worker processes may be (until transfers stream).
    #[error("{task}: a message of {} MiB exceeds the wire's frame limit of {} MiB; use smaller partitions (Partitioning::PartitionSize)", size / (1 << 20), limit / (1 << 20))]
    MessageTooLarge {
        /// Which task: its steps and partition, or the fit and its step.
        task: String,
        /// The message's size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
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
    /// The runtime was shut down before the run finished.
    #[error("the runtime is shut down")]
    Shutdown,
    /// The runtime could not start (thread or actor system).
    #[error("runtime start failed: {0}")]
    Start(String),
}
