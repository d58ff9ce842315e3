//! Building a run's stages as their models become known, and the checkpoint
//! decisions that building needs: asked here, answered off the event loop, and
//! applied here when they come back. Partitions whose next stage is not built
//! wait for it.

use super::{FitBarrier, RunOutbox, RunState, StageBuild};
use crate::checkpoint::decide::{decide_stage, Applied, StageDecision, StageQuestion};
use crate::checkpoint::CheckpointError;
use crate::error::RunError;
use crate::exec::{FeedSpec, StageExec};
use std::sync::Arc;

impl RunState {
    /// Starts the run: builds what can be built; its partitions are ready for
    /// the first stage when that is built (`outbox.all_ready`), else they wait
    /// for its decisions.
    pub(crate) fn start(&mut self, outbox: &mut RunOutbox) -> Result<(), RunError> {
        let first_known = self.plan.stages[0]
            .ops
            .iter()
            .all(|op| self.models[op.step].is_some());
        if !first_known {
            // Every model the first stage needs is known at submit: a broken invariant.
            return Err(RunError::Internal(
                "the first stage has a step without a model".into(),
            ));
        }
        let built = self.build_ready_stages(outbox)?;
        if built.contains(&0) {
            for p in &mut self.parts {
                p.release().map_err(|e| RunError::Internal(e.to_string()))?;
            }
            outbox.all_ready = true;
        } else {
            self.waiting[0] = (0..self.parts.len() as u32).collect();
        }
        Ok(())
    }

    /// Builds the stages whose models are now known; the partitions waiting for
    /// those built at once go. A failure goes into the outbox.
    pub(crate) fn advance(&mut self, outbox: &mut RunOutbox) {
        match self.build_ready_stages(outbox) {
            Ok(built) => {
                for s in built {
                    self.release_stage(s, outbox);
                }
            }
            Err(e) => outbox.fail(e),
        }
    }

    /// The decision of stage `s` is back: the stage is built and its partitions
    /// go (and later stages may build: a saved model may stand for a fit), or
    /// the run fails naming what was wrong.
    pub(crate) fn on_decided(
        &mut self,
        s: usize,
        decision: Result<StageDecision, CheckpointError>,
        outbox: &mut RunOutbox,
    ) {
        if !matches!(self.stages[s], StageBuild::Deciding) {
            tracing::error!(stage = s, "a decision for a stage not being decided");
            return;
        }
        let applied = decision
            .map_err(RunError::from)
            .and_then(|d| self.apply_decision(s, d, outbox));
        match applied {
            Ok(()) => {
                self.release_stage(s, outbox);
                self.advance(outbox);
            }
            Err(e) => outbox.fail(e),
        }
    }

    /// Stage `s` is built: the partitions waiting for it are ready.
    fn release_stage(&mut self, s: usize, outbox: &mut RunOutbox) {
        for p in std::mem::take(&mut self.waiting[s]) {
            if self.parts[p as usize].release().is_ok() {
                outbox.ready.push((p, s));
            }
        }
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
    fn apply_decision(
        &mut self,
        s: usize,
        decision: StageDecision,
        outbox: &mut RunOutbox,
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
            outbox.fitted.push((f, model.clone()));
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
    /// file (returned), else its question goes into the outbox, to be answered
    /// off the event loop (the stage is `Deciding` until [`RunState::on_decided`]).
    fn build_ready_stages(&mut self, outbox: &mut RunOutbox) -> Result<Vec<usize>, RunError> {
        let mut built = Vec::new();
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
                outbox.questions.push((s, question));
            } else {
                let decision = decide_stage(&question)?;
                self.apply_decision(s, decision, outbox)?;
                built.push(s);
            }
        }
        Ok(built)
    }

    /// The shared part of stage `s`'s tasks, once built.
    pub(crate) fn stage_exec(&self, s: usize) -> Option<Arc<StageExec>> {
        match &self.stages[s] {
            StageBuild::Built(exec) => Some(exec.clone()),
            _ => None,
        }
    }

    /// Whether a partition rebuilt from its source can run stages `0..=s` in
    /// one task: a worker that runs stage `s` offers what each earlier stage
    /// needs.
    pub(crate) fn can_catch_up(&self, s: usize) -> bool {
        let needs = &self.plan.stages[s].resources;
        self.plan.stages[..s]
            .iter()
            .all(|earlier| needs.covers(&earlier.resources))
    }

    /// Stage `s`'s task for a partition whose data is its source: the ops of
    /// every earlier stage, then stage `s`'s own, feeding what stage `s` feeds.
    /// Fused into one chain, the task starts at the last checkpointed step whose
    /// files hold every row (`exec::run_chain`), so a rebuild starts from the
    /// nearest checkpoint on its lineage, not from the first step. Built once
    /// per stage, when first needed.
    pub(crate) fn catch_up_exec(&mut self, s: usize) -> Option<Arc<StageExec>> {
        if let Some(exec) = &self.catch_ups[s] {
            return Some(exec.clone());
        }
        let own = self.stage_exec(s)?;
        let mut ops = Vec::new();
        for t in 0..s {
            ops.extend(self.stage_exec(t)?.ops.iter().cloned());
        }
        ops.extend(own.ops.iter().cloned());
        let exec = Arc::new(StageExec {
            ops,
            feeds: own.feeds.clone(),
        });
        self.catch_ups[s] = Some(exec.clone());
        Some(exec)
    }
}
