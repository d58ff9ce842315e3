//! [`RunState`]: one run's graph, which it owns: its plan and models, the state
//! and lineage of each partition, its fit barriers and stage builds, its report.
//!
//! The run is a reactor: plain functions over its state (`events`, `stages`)
//! take what happened (a task came back, a fit's inputs are gathered, a
//! decision is back, a worker holding its data was lost) and write what the
//! scheduler must do into a [`RunOutbox`]. The scheduler owns only workers, ready
//! queues and windows; it delivers the outbox. No actor and no clock take part,
//! so the protocol is tested directly (`tests`), without actix and without
//! sleeps. Why a reactor owned by the scheduler, not an actor per run: every
//! completion would cost a mailbox hop more, for no state the scheduler shares.

mod events;
pub(crate) mod fit_inputs;
mod stages;
#[cfg(test)]
mod tests;
mod view;

pub(crate) use events::{RunOutbox, TaskTimes};
pub(crate) use fit_inputs::RowsLost;

use super::estimator_actor::EstimatorActor;
use super::messages::TaskKind;
use super::partition::PartitionSlot;
use crate::bag::FailedSample;
use crate::batch::Batch;
use crate::checkpoint::lineage::upstream_hash;
use crate::error::RunError;
use crate::estimator::Estimator;
use crate::exec::StageExec;
use crate::plan::Plan;
use crate::report::{TaskLabel, TaskRecord};
use crate::run::RunOutput;
use crate::step::Step;
use actix::Addr;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Where a stage's build stands.
#[derive(Clone, Debug)]
pub(crate) enum StageBuild {
    /// Some of its models are not known yet.
    Unbuilt,
    /// Its checkpoint decisions run off the event loop.
    Deciding,
    /// Built: the shared part of its tasks.
    Built(Arc<StageExec>),
}

/// Where a fit stands: gathering its inputs, gathered (its task queued; its
/// estimator actor holds the inputs), running, or done.
#[derive(Clone, Debug, Default)]
pub(crate) enum FitBarrier {
    /// Waiting for contributions.
    #[default]
    Gathering,
    /// Every input is here (with its estimator actor); its task waits for a
    /// worker.
    Gathered,
    /// Its task is out on a worker.
    Running,
    /// Its model is known.
    Done,
}

impl FitBarrier {
    /// Whether its model is known.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self, FitBarrier::Done)
    }

    /// Whether its inputs were all gathered (later contributions are dropped).
    pub(crate) fn has_inputs(&self) -> bool {
        !matches!(self, FitBarrier::Gathering)
    }
}

/// What a new run is made of (see [`RunState::new`]).
pub(crate) struct NewRun {
    /// Its id (a uuid).
    pub(crate) id: String,
    /// Its plan.
    pub(crate) plan: Plan,
    /// Its steps.
    pub(crate) steps: Vec<Arc<Step>>,
    /// Per step: the model known at submit (given, stateless or saved).
    pub(crate) models: Vec<Option<Arc<dyn Estimator>>>,
    /// Per stage, then per fit: what its tasks are called.
    pub(crate) labels: Vec<TaskLabel>,
    /// Its fits' estimator actors.
    pub(crate) estimators: Vec<Addr<EstimatorActor>>,
    /// The steps whose fit a saved model stands for.
    pub(crate) loaded_models: Vec<String>,
    /// Samples in its input.
    pub(crate) samples: usize,
    /// Its tracing span.
    pub(crate) span: tracing::Span,
}

/// One run's graph and report (see the module's doc).
pub(crate) struct RunState {
    pub(crate) id: String,
    pub(crate) plan: Plan,
    pub(crate) steps: Vec<Arc<Step>>,
    pub(crate) models: Vec<Option<Arc<dyn Estimator>>>,
    /// Per stage: built, being decided, or waiting for its models.
    pub(crate) stages: Vec<StageBuild>,
    /// Per stage, once a rebuilt partition needed it: the stage's task with
    /// every earlier stage fused in front (see `catch_up_exec`).
    pub(crate) catch_ups: Vec<Option<Arc<StageExec>>>,
    pub(crate) labels: Vec<TaskLabel>,
    pub(crate) parts: Vec<PartitionSlot>,
    pub(crate) estimators: Vec<Addr<EstimatorActor>>,
    /// Per fit: where its barrier stands.
    pub(crate) fits: Vec<FitBarrier>,
    /// Per fit, once its inputs are gathered: the memory it needs on its worker.
    pub(crate) fit_need: Vec<u64>,
    /// Per fit: it waits for a worker with that memory (one is alive, or a queue
    /// is known to start such workers); else any worker that can run it takes it.
    pub(crate) fit_waits_for_memory: Vec<bool>,
    /// The input partitions, kept while worker processes may hold partitions, to
    /// rebuild those of a lost worker (their lineage starts here).
    pub(crate) sources: Vec<Option<Arc<Batch>>>,
    pub(crate) waiting: Vec<Vec<u32>>,
    /// Per task label (stages, then fits): seconds measured and tasks measured.
    pub(crate) label_time: Vec<(f64, u32)>,
    pub(crate) partitions_left: usize,
    pub(crate) fits_left: usize,
    pub(crate) tasks: Vec<TaskRecord>,
    /// The first failed samples reported by its tasks (for the dashboard).
    pub(crate) first_failed: Vec<FailedSample>,
    pub(crate) samples: usize,
    pub(crate) checkpoints: BTreeMap<String, crate::exec::OpStats>,
    /// Workers lost while they held this run's tasks or data.
    pub(crate) workers_lost: u32,
    /// Steps whose fit was replaced by their saved model.
    pub(crate) loaded_models: Vec<String>,
    /// Per step, once known: the hash of everything upstream of it.
    pub(crate) upstream: Vec<Option<String>>,
    /// Per fit: which worker keeps each partition's rows for it (empty until a
    /// worker keeps some; see `fit_inputs`).
    pub(crate) fit_inputs_on: Vec<Vec<u32>>,
    /// Every worker told to keep rows of this run's fits.
    pub(crate) input_holders: std::collections::BTreeSet<u32>,
    /// Per fit: how many times its estimator actor was told to forget rows (a
    /// `FitReady` of an earlier round is stale).
    pub(crate) fit_round: Vec<u32>,
    /// Per fit: its worker fetched every kept row (their holders may be retired).
    pub(crate) fit_rows_fetched: Vec<bool>,
    /// Fits that could not fetch their kept rows, so far.
    pub(crate) fit_fetch_failures: u32,
    /// Its holds on the features folders it writes (let go when no task of the
    /// run can write any more).
    pub(crate) locks: Vec<crate::checkpoint::lock::FolderLock>,
    pub(crate) started: Instant,
    pub(crate) reply: Option<tokio::sync::oneshot::Sender<Result<RunOutput, RunError>>>,
    /// When the run keeps its outputs where they are made: what each step
    /// applies, the lineage a lost output partition is rebuilt from (`None`:
    /// the outputs are collected).
    pub(crate) keep_in_place: Option<Vec<Option<crate::plan::OpKind>>>,
    pub(crate) span: tracing::Span,
}

impl RunState {
    /// A run of `inputs` (one per partition); `keep_sources` keeps each input
    /// to rebuild a partition from when a worker holding its data is lost. Its
    /// partitions are placed by [`RunState::start`].
    pub(crate) fn new(run: NewRun, inputs: Vec<Arc<Batch>>, keep_sources: bool) -> Self {
        let NewRun {
            id,
            plan,
            steps,
            models,
            labels,
            estimators,
            loaded_models,
            samples,
            span,
        } = run;
        let (nstages, nfits, nsteps, npart) = (
            plan.stages.len(),
            plan.fits.len(),
            steps.len(),
            inputs.len(),
        );
        let sources = inputs
            .iter()
            .map(|b| keep_sources.then(|| b.clone()))
            .collect();
        let parts = inputs
            .into_iter()
            .enumerate()
            .map(|(i, b)| PartitionSlot::waiting(i as u32, b))
            .collect();
        Self {
            id,
            steps,
            models,
            stages: vec![StageBuild::Unbuilt; nstages],
            catch_ups: vec![None; nstages],
            labels,
            parts,
            estimators,
            fits: vec![FitBarrier::Gathering; nfits],
            fit_need: vec![0; nfits],
            fit_waits_for_memory: vec![false; nfits],
            sources,
            waiting: vec![Vec::new(); nstages],
            label_time: vec![(0.0, 0); nstages + nfits],
            partitions_left: npart,
            fits_left: nfits,
            tasks: Vec::with_capacity(plan.task_count(npart)),
            first_failed: Vec::new(),
            samples,
            checkpoints: BTreeMap::new(),
            loaded_models,
            workers_lost: 0,
            upstream: vec![None; nsteps],
            fit_inputs_on: vec![Vec::new(); nfits],
            input_holders: Default::default(),
            fit_round: vec![0; nfits],
            fit_rows_fetched: vec![false; nfits],
            fit_fetch_failures: 0,
            locks: Vec::new(),
            started: Instant::now(),
            reply: None,
            keep_in_place: None,
            span,
            plan,
        }
    }

    /// Whether the last stage's outputs stay where they are made.
    pub(crate) fn keeps_outputs(&self) -> bool {
        self.keep_in_place.is_some() && self.plan.collect
    }

    /// Seconds since the run started.
    pub(crate) fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Seconds from the run's start to `t`.
    pub(crate) fn since(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.started).as_secs_f64()
    }

    /// The hash of everything upstream of step `i` (the steps before it with
    /// their models), computed once per step and run.
    pub(crate) fn upstream_of(&mut self, i: usize) -> Result<String, RunError> {
        if let Some(h) = &self.upstream[i] {
            return Ok(h.clone());
        }
        let mut before = Vec::with_capacity(i);
        for j in 0..i {
            let model = self.models[j].as_deref().ok_or_else(|| {
                RunError::Internal(format!(
                    "step {:?} has no model while a later step is built",
                    self.steps[j].name
                ))
            })?;
            before.push((self.steps[j].as_ref(), model));
        }
        let h = upstream_hash(before);
        self.upstream[i] = Some(h.clone());
        Ok(h)
    }

    /// The first keys of a partition's input, for messages (`"a", "b", ...`).
    pub(crate) fn parts_keys(&self, p: usize) -> String {
        let keys = self
            .sources
            .get(p)
            .and_then(|s| s.as_ref())
            .map(|b| b.keys());
        match keys {
            Some(k) if k.len() > 3 => format!("keys {:?}, {:?}, {:?}, ...", &k[0], &k[1], &k[2]),
            Some(k) => format!("keys {k:?}"),
            None => "keys unknown".to_string(),
        }
    }

    /// A task as an error names it: its steps and partition, or its fit's step.
    pub(crate) fn describe(&self, task: TaskKind) -> String {
        match task {
            TaskKind::Chain { stage, partition } => format!(
                "steps {} ({}) of partition {partition}",
                self.labels[stage as usize].step_names(),
                self.labels[stage as usize].op.as_str()
            ),
            TaskKind::Fit { fit } => format!(
                "the fit of step {:?}",
                self.steps[self.plan.fits[fit as usize].step].name
            ),
        }
    }

    /// The index of a fit's label (after the stages').
    pub(crate) fn fit_label(&self, fit: usize) -> u32 {
        (self.plan.stages.len() + fit) as u32
    }

    /// The index of a task's label: its stage, or its fit after the stages.
    pub(crate) fn label_of(&self, task: TaskKind) -> usize {
        match task {
            TaskKind::Chain { stage, .. } => stage as usize,
            TaskKind::Fit { fit } => self.fit_label(fit as usize) as usize,
        }
    }
}
