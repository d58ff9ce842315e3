//! One run's state inside the scheduler: its plan, models, partitions and timings.

use super::super::estimator_actor::EstimatorActor;
use super::super::messages::{Fitted, TaskKind};
use super::super::partition::PartitionSlot;
use crate::bag::FailedSample;
use crate::batch::Batch;
use crate::checkpoint::lineage::upstream_hash;
use crate::checkpoint::manifest::Manifest;
use crate::checkpoint::model::saved_model_for;
use crate::dashboard::view::{FitPhase, FitView, RunPhase, RunView, TaskCounts};
use crate::error::RunError;
use crate::estimator::Estimator;
use crate::exec::{Contribution, FeedSpec, StageExec};
use crate::plan::Plan;
use crate::report::{TaskLabel, TaskRecord};
use crate::run::RunOutput;
use crate::step::Step;
use actix::Addr;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

pub(super) struct RunState {
    pub(super) id: String,
    pub(super) plan: Plan,
    pub(super) steps: Vec<Arc<Step>>,
    pub(super) models: Vec<Option<Arc<dyn Estimator>>>,
    pub(super) stage_exec: Vec<Option<Arc<StageExec>>>,
    pub(super) labels: Vec<TaskLabel>,
    pub(super) parts: Vec<PartitionSlot>,
    pub(super) estimators: Vec<Addr<EstimatorActor>>,
    pub(super) fit_inputs: Vec<Option<Arc<Vec<Contribution>>>>,
    pub(super) fit_done: Vec<bool>,
    /// Whether a fit's inputs were all gathered (later contributions are dropped).
    pub(super) fit_started: Vec<bool>,
    /// The input partitions, kept while worker processes may hold partitions, to
    /// rebuild those of a lost worker (their lineage starts here).
    pub(super) sources: Vec<Option<Arc<Batch>>>,
    pub(super) waiting: Vec<Vec<u32>>,
    /// Per task label (stages, then fits): seconds measured and tasks measured.
    pub(super) label_time: Vec<(f64, u32)>,
    pub(super) partitions_left: usize,
    pub(super) fits_left: usize,
    pub(super) tasks: Vec<TaskRecord>,
    /// The first failed samples reported by its tasks (for the dashboard).
    pub(super) first_failed: Vec<FailedSample>,
    pub(super) samples: usize,
    pub(super) checkpoints: BTreeMap<String, crate::exec::OpStats>,
    /// Workers lost while they held this run's tasks or data.
    pub(super) workers_lost: u32,
    /// Steps whose fit was replaced by their saved model.
    pub(super) loaded_models: Vec<String>,
    /// Per step, once known: the hash of everything upstream of it.
    pub(super) upstream: Vec<Option<String>>,
    /// Its holds on the features folders it writes (let go when no task of the
    /// run can write any more).
    pub(super) locks: Vec<crate::checkpoint::lock::FolderLock>,
    pub(super) started: Instant,
    pub(super) reply: Option<tokio::sync::oneshot::Sender<Result<RunOutput, RunError>>>,
    pub(super) span: tracing::Span,
}

impl RunState {
    pub(super) fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub(super) fn since(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.started).as_secs_f64()
    }

    /// The hash of everything upstream of step `i` (the steps before it with
    /// their models), computed once per step and run.
    pub(super) fn upstream_of(&mut self, i: usize) -> Result<String, RunError> {
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

    /// Replaces fit `f` by its step's saved model when the file's provenance
    /// (parameters, wiring, upstream) matches the step now; a model saved as
    /// another configuration is refused naming what differs (`Refuse`) or fitted
    /// again (`Recompute`). Called once the fit's upstream models are known.
    fn resolve_fit_from_file(&mut self, f: usize) -> Result<(), RunError> {
        let i = self.plan.fits[f].step;
        let step = self.steps[i].clone();
        if step
            .checkpoint
            .as_ref()
            .and_then(|c| c.model_path.as_ref())
            .is_none()
        {
            return Ok(());
        }
        let upstream = self.upstream_of(i)?;
        let Some(model) = saved_model_for(&step, &upstream)? else {
            return Ok(());
        };
        self.estimators[f].do_send(Fitted(model.clone()));
        self.models[i] = Some(model);
        self.fit_done[f] = true;
        self.fit_started[f] = true;
        self.fits_left -= 1;
        self.loaded_models.push(step.name.clone());
        Ok(())
    }

    /// Builds the shared part of a stage's tasks once its models exist: checks (or
    /// writes) the manifest of each checkpointed step, and replaces the fit the
    /// stage feeds by its saved model when that is still valid.
    pub(super) fn build_stage(&mut self, s: usize) -> Result<(), RunError> {
        let feeds = self.plan.stages[s].feeds_fit;
        if let Some(f) = feeds.filter(|&f| !self.fit_done[f]) {
            self.resolve_fit_from_file(f)?;
        }
        let stage_ops = self.plan.stages[s].ops.clone();
        let mut ops = Vec::with_capacity(stage_ops.len());
        for op in &stage_ops {
            let model = self.models[op.step]
                .clone()
                .ok_or_else(|| RunError::NotFitted {
                    step: self.steps[op.step].name.clone(),
                })?;
            let step = self.steps[op.step].clone();
            let force = match (step.features_dir(), &step.checkpoint) {
                (Some(dir), Some(ck)) => {
                    let upstream = self.upstream_of(op.step)?;
                    let wanted = Manifest::of(&step, model.as_ref(), op.kind, &upstream);
                    let (lock, force) =
                        crate::checkpoint::lock::acquire(dir, &wanted, ck.on_change)?;
                    self.locks.push(lock);
                    force
                }
                _ => false,
            };
            ops.push(crate::exec::ChainOp {
                step,
                model,
                kind: op.kind,
                force,
            });
        }
        let feeds = feeds.filter(|&f| !self.fit_done[f]).map(|f| {
            let node = &self.plan.fits[f];
            let step = self.steps[node.step].clone();
            FeedSpec {
                template: step.estimator.clone(),
                step,
                reduce: node.reduce,
            }
        });
        self.stage_exec[s] = Some(Arc::new(StageExec { ops, feeds }));
        Ok(())
    }

    /// Builds every stage whose models all exist (stages split by resource tags
    /// have no fit of their own, so they are built as soon as their models are known).
    pub(super) fn build_ready_stages(&mut self) -> Result<(), RunError> {
        for s in 0..self.plan.stages.len() {
            let built = self.stage_exec[s].is_some();
            let models_known = self.plan.stages[s]
                .ops
                .iter()
                .all(|op| self.models[op.step].is_some());
            let fit_done = self.plan.stages[s]
                .after_fit
                .is_none_or(|f| self.fit_done[f]);
            if !built && models_known && fit_done {
                self.build_stage(s)?;
            }
        }
        if self.stage_exec[0].is_none() {
            // Submit resolves every model the first stage needs: a broken invariant.
            return Err(RunError::Internal(
                "the first stage has a step without a model".into(),
            ));
        }
        Ok(())
    }

    /// The dashboard's view of this run.
    pub(super) fn view(&self, state: RunPhase) -> RunView {
        let names: Vec<(String, String)> = (0..self.plan.stages.len())
            .map(|s| {
                let l = &self.labels[s];
                (l.step_names(), l.resources.to_string())
            })
            .collect();
        let states: Vec<_> = self.parts.iter().map(|p| p.state()).collect();
        let failed = state == RunPhase::Failed;
        let stages = crate::dashboard::view::stage_views(&names, &states, failed);
        let fits: Vec<FitView> = self
            .plan
            .fits
            .iter()
            .enumerate()
            .map(|(f, node)| FitView {
                step: self.steps[node.step].name.clone(),
                resources: node.resources.to_string(),
                state: if self.fit_done[f] {
                    FitPhase::Done
                } else if failed {
                    FitPhase::Failed
                } else if self.fit_started[f] {
                    FitPhase::Running
                } else {
                    FitPhase::Waiting
                },
            })
            .collect();
        let mut tasks = TaskCounts::default();
        for st in &stages {
            tasks.add(&st.tasks);
        }
        for f in &fits {
            match f.state {
                FitPhase::Done => tasks.done += 1,
                FitPhase::Running => tasks.running += 1,
                FitPhase::Failed => tasks.failed += 1,
                FitPhase::Waiting => tasks.waiting += 1,
            }
        }
        RunView {
            id: self.id.clone(),
            state,
            wall_s: self.now(),
            partitions: self.parts.len(),
            samples: self.samples,
            tasks,
            stages,
            fits,
            failed_samples: self.first_failed.clone(),
            error: None,
        }
    }

    /// The first keys of a partition's input, for messages (`"a", "b", ...`).
    pub(super) fn parts_keys(&self, p: usize) -> String {
        let keys = self
            .sources
            .get(p)
            .and_then(|s| s.as_ref())
            .map(|b| b.keys());
        match keys {
            Some(k) if k.len() > 3 => format!("keys {:?}, {:?}, {:?}, ...", k[0], k[1], k[2]),
            Some(k) => format!("keys {k:?}"),
            None => "keys unknown".to_string(),
        }
    }

    /// A task as an error names it: its steps and partition, or its fit's step.
    pub(super) fn describe(&self, task: TaskKind) -> String {
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

    pub(super) fn fit_label(&self, fit: usize) -> u32 {
        (self.plan.stages.len() + fit) as u32
    }

    /// The index of a task's label: its stage, or its fit after the stages.
    pub(super) fn label_of(&self, task: TaskKind) -> usize {
        match task {
            TaskKind::Chain { stage, .. } => stage as usize,
            TaskKind::Fit { fit } => self.fit_label(fit as usize) as usize,
        }
    }
}
