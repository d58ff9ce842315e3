//! Accepting a run: checking its steps and resources, planning it, queueing its
//! first tasks; and the resources cluster queues offer.

use super::super::estimator_actor::EstimatorActor;
use super::super::messages::*;
use super::super::partition::PartitionSlot;
use super::run_state::RunState;
use super::{Scheduler, TaskRef};
use crate::batch::Batch;
use crate::checkpoint::lineage::upstream_hash;
use crate::checkpoint::model::saved_model_for;
use crate::error::RunError;
use crate::estimator::Estimator;
use crate::plan::{Plan, StepWork};
use crate::report::{TaskLabel, TaskOp};
use crate::resources::Resources;
use crate::run::RunRequest;
use crate::step::Step;
use actix::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

impl Scheduler {
    pub(super) fn submit(
        &mut self,
        request: RunRequest,
        ctx: &mut Context<Self>,
    ) -> Result<u32, RunError> {
        let RunRequest { steps, bag } = request;
        let mut names = std::collections::HashSet::new();
        for s in &steps {
            if s.step.name.is_empty() || !names.insert(s.step.name.clone()) {
                return Err(RunError::InvalidPipeline(format!(
                    "step names must be unique and not empty: {:?}",
                    s.step.name
                )));
            }
        }
        let mut models: Vec<Option<Arc<dyn Estimator>>> = Vec::with_capacity(steps.len());
        let mut work = Vec::with_capacity(steps.len());
        let mut loaded_models = Vec::new();
        for (i, s) in steps.iter().enumerate() {
            let stateless = !s.step.requires_fit();
            let mut fit = s.fit && !stateless;
            let mut model = if stateless {
                Some(s.step.estimator.clone())
            } else {
                s.fitted.clone()
            };
            // A fit whose saved model still holds is no fit: the plan then fuses
            // the steps around it. Known here when every upstream model is;
            // otherwise the run decides once the upstream fits are done.
            let has_model_file = s
                .step
                .checkpoint
                .as_ref()
                .is_some_and(|c| c.model_path.is_some());
            if fit && has_model_file && models.iter().all(Option::is_some) {
                let before = steps[..i]
                    .iter()
                    .zip(&models)
                    .map(|(b, m)| (b.step.as_ref(), m.as_deref().expect("known")));
                if let Some(saved) = saved_model_for(&s.step, &upstream_hash(before))? {
                    fit = false;
                    model = Some(saved);
                    loaded_models.push(s.step.name.clone());
                }
            }
            if s.apply.is_some() && !fit && model.is_none() {
                return Err(RunError::NotFitted {
                    step: s.step.name.clone(),
                });
            }
            models.push(if fit { None } else { model });
            work.push(StepWork {
                name: s.step.name.clone(),
                fit,
                apply: s.apply,
                reduce: s.step.estimator.supports_partial_fit(),
                fit_resources: s.step.fit_resources.clone(),
                transform_resources: s.step.transform_resources.clone(),
            });
        }
        let plan = Plan::build(&work);
        let steps: Vec<Arc<Step>> = steps.into_iter().map(|s| s.step).collect();
        if self.cluster_offers.is_empty() && !self.workers.iter().any(|w| w.alive) {
            return Err(RunError::NoWorker(
                "the runtime has no live worker and no cluster queue".into(),
            ));
        }
        // Every tag must be servable by some worker or attached queue.
        for stage in &plan.stages {
            if let Err((resource, amount)) = self.servable(&stage.resources) {
                return Err(RunError::UnservableResource {
                    step: stage
                        .ops
                        .first()
                        .map(|o| steps[o.step].name.clone())
                        .unwrap_or_default(),
                    op: "transform",
                    resource,
                    amount,
                    offered: self.offered(),
                });
            }
        }
        for fit in &plan.fits {
            if let Err((resource, amount)) = self.servable(&fit.resources) {
                return Err(RunError::UnservableResource {
                    step: steps[fit.step].name.clone(),
                    op: "fit",
                    resource,
                    amount,
                    offered: self.offered(),
                });
            }
        }
        let mut labels: Vec<TaskLabel> = plan
            .stages
            .iter()
            .map(|s| TaskLabel {
                op: TaskOp::Transform,
                steps: s.ops.iter().map(|o| steps[o.step].name.clone()).collect(),
                resources: s.resources.clone(),
                after_fit: s.after_fit,
                feeds_fit: s.feeds_fit,
            })
            .collect();
        labels.extend(plan.fits.iter().map(|f| TaskLabel {
            op: TaskOp::Fit,
            steps: vec![steps[f.step].name.clone()],
            resources: f.resources.clone(),
            after_fit: None,
            feeds_fit: None,
        }));
        let run = self.next_run;
        self.next_run = self.next_run.wrapping_add(1);
        let id = uuid::Uuid::new_v4().to_string();
        let span = tracing::info_span!("run", id = %id, partitions = bag.npartitions());
        let npart = bag.npartitions();
        let samples = bag.len();
        let keep_sources = self.workers.iter().any(|w| w.remote) || !self.cluster_offers.is_empty();
        let arcs = bag.into_arcs();
        let sources: Vec<Option<Arc<Batch>>> = arcs
            .iter()
            .map(|b| keep_sources.then(|| b.clone()))
            .collect();
        let parts: Vec<PartitionSlot> = arcs
            .into_iter()
            .enumerate()
            .map(|(i, b)| PartitionSlot::new(i as u32, b))
            .collect();
        let estimators = plan
            .fits
            .iter()
            .enumerate()
            .map(|(f, node)| {
                EstimatorActor::new(
                    run,
                    f as u16,
                    steps[node.step].name.clone(),
                    npart,
                    ctx.address().recipient(),
                )
                .start()
            })
            .collect();
        let nstages = plan.stages.len();
        let nsteps = steps.len();
        let nfits = plan.fits.len();
        let mut state = RunState {
            id,
            steps,
            models,
            stage_exec: vec![None; nstages],
            labels,
            parts,
            estimators,
            fit_inputs: vec![None; nfits],
            fit_done: vec![false; nfits],
            fit_started: vec![false; nfits],
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
            locks: Vec::new(),
            started: Instant::now(),
            reply: None,
            span,
            plan,
        };
        state.build_ready_stages()?;
        {
            let _e = state.span.enter();
            tracing::info!(
                tasks = state.plan.task_count(npart),
                stages = nstages,
                fits = nfits,
                "run submitted"
            );
        }
        let shape = state.plan.stages[0].resources.clone();
        let q = self.ready.entry(shape).or_default();
        for p in 0..npart as u32 {
            q.push_back(TaskRef {
                run,
                task: TaskKind::Chain {
                    stage: 0,
                    partition: p,
                },
                ready_s: 0.0,
            });
        }
        self.runs.insert(run, state);
        Ok(run)
    }

    /// Fails the runs whose ready tasks no live worker and no cluster queue can ever
    /// run (e.g. after the last worker with a resource was lost), instead of waiting.
    pub(super) fn fail_unservable(&mut self, why: &str) {
        let mut doomed = Vec::new();
        for (shape, q) in self.ready.iter().chain(&self.suspect_ready) {
            if q.is_empty() || self.servable(shape).is_ok() {
                continue;
            }
            for t in q {
                doomed.push((t.run, shape.clone()));
            }
        }
        doomed.sort_by_key(|(r, _)| *r);
        doomed.dedup_by_key(|(r, _)| *r);
        for (run, shape) in doomed {
            let reason = format!("no worker left that can run tasks needing {shape} ({why})");
            self.fail_run(run, RunError::NoWorker(reason));
        }
    }
}

impl Handler<Submit> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: Submit, ctx: &mut Context<Self>) {
        match self.submit(msg.request, ctx) {
            Ok(run) => {
                if let Some(r) = self.runs.get_mut(&run) {
                    r.reply = Some(msg.reply);
                }
                self.finish_if_done(run);
                self.dispatch();
                self.tell_watchers();
            }
            Err(e) => {
                let _ = msg.reply.send(Err(e));
            }
        }
    }
}

/// Declares what attached cluster queues can offer: a task needing such a resource is
/// accepted at submit time and waits in its ready queue for a worker that has it.
/// When the offer shrinks (a queue given up), waiting runs that nothing can serve
/// any more fail with [`RunError::NoWorker`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct OfferResources(pub Vec<Resources>);

impl Handler<OfferResources> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: OfferResources, _ctx: &mut Context<Self>) {
        self.cluster_offers = msg.0;
        self.fail_unservable("no cluster queue offers it any more");
    }
}
