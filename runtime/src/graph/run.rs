//! What a client submits ([`RunRequest`]) and gets back ([`RunOutput`]).

pub use crate::actors::kept::KeptOutput;
use crate::bag::Bag;
use crate::estimator::Estimator;
use crate::plan::OpKind;
use crate::report::RunReport;
use crate::step::Step;
use std::sync::Arc;

/// One step of a run: its wiring, its model if already fitted, and what to do.
#[derive(Clone, Debug)]
pub struct StepRun {
    /// The step.
    pub step: Arc<Step>,
    /// Its fitted model, when it was fitted before (or is stateless).
    pub fitted: Option<Arc<dyn Estimator>>,
    /// Fit it in this run.
    pub fit: bool,
    /// Apply it to the partitions.
    pub apply: Option<OpKind>,
}

impl StepRun {
    /// Whether the run fits the step (a stateless step is never fitted).
    pub fn fits_here(&self) -> bool {
        self.fit && self.step.requires_fit()
    }

    /// The model known before the run: the estimator itself for a stateless
    /// step, else the fitted one given (if any).
    pub fn known_model(&self) -> Option<Arc<dyn Estimator>> {
        if self.step.requires_fit() {
            self.fitted.clone()
        } else {
            Some(self.step.estimator.clone())
        }
    }
}

/// Where a run's output partitions go when it finishes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Outputs {
    /// Every output partition comes back to the caller in
    /// [`RunOutput::bag`].
    #[default]
    Collect,
    /// Each output partition stays where it was made (inside the worker process
    /// that ran its last stage, or here) and is owned by a partition actor until
    /// it is taken: [`RunOutput::kept`], iterated in partition order with
    /// bounded memory by [`KeptOutput::stream`].
    KeepInPlace,
}

/// A graph to compute: steps and the bag they run on.
#[derive(Clone, Debug)]
pub struct RunRequest {
    /// The steps, in order.
    pub steps: Vec<StepRun>,
    /// The input partitions.
    pub bag: Bag,
    /// Where the output partitions go.
    pub outputs: Outputs,
}

impl RunRequest {
    /// A run of `steps` over `bag` whose outputs are collected.
    pub fn new(steps: Vec<StepRun>, bag: Bag) -> Self {
        Self {
            steps,
            bag,
            outputs: Outputs::Collect,
        }
    }

    /// The same run, its outputs kept where they are made.
    pub fn keep_in_place(mut self) -> Self {
        self.outputs = Outputs::KeepInPlace;
        self
    }
}

/// The result of a run.
#[derive(Debug)]
pub struct RunOutput {
    /// The output partitions (empty for a fit-only run, and for a run that
    /// keeps its outputs in place).
    pub bag: Bag,
    /// The output partitions left where they were made, when the run was asked
    /// to keep them ([`Outputs::KeepInPlace`]) and has an output.
    pub kept: Option<KeptOutput>,
    /// Per step: the model fitted in this run, or the one given.
    pub models: Vec<Option<Arc<dyn Estimator>>>,
    /// What ran where, timings and failures.
    pub report: RunReport,
}
