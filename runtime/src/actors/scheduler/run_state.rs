//! One run's state inside the scheduler: its plan, models, partitions and timings.

use super::super::estimator_actor::EstimatorActor;
use super::super::messages::{Fitted, TaskKind};
use super::super::partition::PartitionSlot;
use crate::bag::FailedSample;
use crate::batch::Batch;
use crate::checkpoint::decide::{decide_stage, Applied, StageDecision, StageQuestion};
use crate::checkpoint::lineage::upstream_hash;
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

/// Where a stage's build stands.
#[derive(Clone, Debug)]
pub(super) enum StageBuild {
    /// Some of its models are not known yet.
    Unbuilt,
    /// Its checkpoint decisions run off the event loop.
    Deciding,
    /// Built: the shared part of its tasks.
    Built(Arc<StageExec>),
}

/// Stages built at once and questions to answer off the event loop.
#[derive(Default)]
pub(super) struct StageProgress {
    /// Stages built now (their waiting partitions can go).
    pub(super) built: Vec<usize>,
    /// Stages to decide off the event loop.
    pub(super) questions: Vec<(usize, StageQuestion)>,
}

/// Where a fit stands: gathering its inputs, gathered (its task queued, holding
/// them), running, or done.
#[derive(Clone, Debug, Default)]
pub(super) enum FitBarrier {
    /// Waiting for contributions.
    #[default]
    Gathering,
    /// Every input is here; its task waits for a worker.
    Gathered(Arc<Vec<Contribution>>),
    /// Its task is out on a worker.
    Running,
    /// Its model is known.
    Done,
}

impl FitBarrier {
    /// Whether its model is known.
    pub(super) fn is_done(&self) -> bool {
        matches!(self, FitBarrier::Done)
    }

    /// Whether its inputs were all gathered (later contributions are dropped).
    pub(super) fn has_inputs(&self) -> bool {
        !matches!(self, FitBarrier::Gathering)
    }
}

pub(super) struct RunState {
    pub(super) id: String,
    pub(super) plan: Plan,
    pub(super) steps: Vec<Arc<Step>>,
    pub(super) models: Vec<Option<Arc<dyn Estimator>>>,
    /// Per stage: built, being decided, or waiting for its models.
    pub(super) stages: Vec<StageBuild>,
    pub(super) labels: Vec<TaskLabel>,
    pub(super) parts: Vec<PartitionSlot>,
    pub(super) estimators: Vec<Addr<EstimatorActor>>,
    /// Per fit: where its barrier stands.
    pub(super) fits: Vec<FitBarrier>,
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

    /// The question that decides stage `s` (its models are all known).
    fn question(&self, s: usize) -> Result<StageQuestion, RunError> {
        let known: Vec<Applied> = self
            .steps
            .iter()
            .zip(&self.models)
            .map_while(|(step, model)| Some((step.clone(), model.clone()?)))
            .collect();
        let stage = &self.plan.stages[s];
        let mut ops = Vec::with_capacity(stage.ops.len());
        for op in &stage.ops {
            let model = self.models[op.step]
                .clone()
                .ok_or_else(|| RunError::NotFitted {
                    step: self.steps[op.step].name.clone(),
                })?;
            ops.push((op.step, (self.steps[op.step].clone(), model), op.kind));
        }
        let fed_fit = stage
            .feeds_fit
            .filter(|&f| !self.fits[f].is_done())
            .map(|f| {
                let i = self.plan.fits[f].step;
                (i, self.steps[i].clone())
            });
        Ok(StageQuestion {
            known,
            ops,
            fed_fit,
        })
    }

    /// Builds stage `s` from its decision: the folders it holds, whether each is
    /// recomputed, and the saved model that stands for the fit it feeds.
    pub(super) fn apply_decision(
        &mut self,
        s: usize,
        decision: StageDecision,
    ) -> Result<(), RunError> {
        let StageDecision {
            force,
            locks,
            saved_model,
            upstream,
        } = decision;
        for (i, hash) in upstream {
            self.upstream[i] = Some(hash);
        }
        self.locks.extend(locks);
        let feeds = self.plan.stages[s].feeds_fit;
        if let (Some(f), Some(model)) = (feeds, saved_model) {
            let i = self.plan.fits[f].step;
            self.estimators[f].do_send(Fitted(model.clone()));
            self.models[i] = Some(model);
            self.fits[f] = FitBarrier::Done;
            self.fits_left -= 1;
            self.loaded_models.push(self.steps[i].name.clone());
        }
        let mut ops = Vec::with_capacity(force.len());
        for (op, force) in self.plan.stages[s].ops.iter().zip(force) {
            let model = self.models[op.step]
                .clone()
                .ok_or_else(|| RunError::NotFitted {
                    step: self.steps[op.step].name.clone(),
                })?;
            ops.push(crate::exec::ChainOp {
                step: self.steps[op.step].clone(),
                model,
                kind: op.kind,
                force,
            });
        }
        let feeds = feeds.filter(|&f| !self.fits[f].is_done()).map(|f| {
            let node = &self.plan.fits[f];
            let step = self.steps[node.step].clone();
            FeedSpec {
                template: step.estimator.clone(),
                step,
                reduce: node.reduce,
            }
        });
        self.stages[s] = StageBuild::Built(Arc::new(StageExec { ops, feeds }));
        Ok(())
    }

    /// Builds every stage whose models all exist: at once when that touches no
    /// file, else it asks a question that is answered off the event loop (the
    /// stage is `Deciding` until [`RunState::apply_decision`]).
    pub(super) fn build_ready_stages(&mut self) -> Result<StageProgress, RunError> {
        let mut progress = StageProgress::default();
        for s in 0..self.plan.stages.len() {
            let models_known = self.plan.stages[s]
                .ops
                .iter()
                .all(|op| self.models[op.step].is_some());
            let fit_done = self.plan.stages[s]
                .after_fit
                .is_none_or(|f| self.fits[f].is_done());
            if !matches!(self.stages[s], StageBuild::Unbuilt) || !models_known || !fit_done {
                continue;
            }
            let question = self.question(s)?;
            if question.touches_files() {
                self.stages[s] = StageBuild::Deciding;
                progress.questions.push((s, question));
            } else {
                let decision = decide_stage(&question)?;
                self.apply_decision(s, decision)?;
                progress.built.push(s);
            }
        }
        Ok(progress)
    }

    /// The shared part of stage `s`'s tasks, once built.
    pub(super) fn stage_exec(&self, s: usize) -> Option<Arc<StageExec>> {
        match &self.stages[s] {
            StageBuild::Built(exec) => Some(exec.clone()),
            _ => None,
        }
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
                state: match &self.fits[f] {
                    FitBarrier::Done => FitPhase::Done,
                    _ if failed => FitPhase::Failed,
                    FitBarrier::Gathering => FitPhase::Waiting,
                    FitBarrier::Gathered(_) | FitBarrier::Running => FitPhase::Running,
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
