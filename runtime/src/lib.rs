//! gridpipe-runtime: samples, the object-safe estimator trait, the task graph and the
//! actix runtime that computes scikit-learn-style sample pipelines as partitioned task
//! graphs.
//!
//! - Data: [`Sample`], [`DelayedSample`], [`SampleSet`], cut into a [`Bag`] of
//!   partitions; each partition is one contiguous [`Batch`].
//! - Estimators: the [`Estimator`] trait (`fit`, `transform`, `predict`, `score`,
//!   partial fits for reductions), wired into a pipeline by [`Step`]s that carry
//!   their own resource tags ([`Resources`]).
//! - Runtime: [`Runtime`] starts a scheduler actor, estimator actors and worker
//!   actors; [`Runtime::run`] / [`Runtime::run_async`] compute a [`RunRequest`].
//!
//! Folders by layer: [`data`] (the data model), [`graph`] (estimators, steps,
//! plans), [`exec`] (what a task does), [`checkpoint`], [`actors`], [`wire`] and
//! [`remote`] (worker processes), [`view`] (dashboard, pictures, progress).

#![warn(missing_docs)]

pub mod actors;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod exec;
pub mod graph;
pub mod remote;
pub mod report;
pub mod runtime;
pub mod view;
pub mod wire;

// The modules of each layer, also at the crate's root (their paths before the
// layers had folders).
pub use data::{bag, batch, columns, keys, sample, value};
pub use graph::{estimator, plan, resources, run, step};
pub use view::dashboard;
#[cfg(feature = "view")]
pub use view::{pictures, progress};

pub use bag::{Bag, FailedSample, Partitioning, Stacked};
pub use batch::{Batch, Column, Failure, DATA};
pub use checkpoint::{Checkpoint, OnChange};
pub use config::{RuntimeConfig, WireEncryption, WorkerMode, WorkerSpec};
pub use data::key_list::KeyList;
pub use error::{DataError, EstimatorError, LoadError, RunError};
pub use estimator::{accuracy, Estimator, Extra, PartialFit, Transformed};
pub use plan::OpKind;
pub use remote::run_if_worker;
pub use report::{RunReport, TaskLabel, TaskOp, TaskRecord, WorkerInfo};
pub use resources::Resources;
pub use run::{RunOutput, RunRequest, StepRun};
pub use runtime::Runtime;
pub use sample::{Attributes, DelayedSample, Loader, Sample, SampleSet};
pub use step::Step;
pub use value::Value;

/// Re-exported so user crates can mark estimator impls without naming the dependency.
pub use typetag;
