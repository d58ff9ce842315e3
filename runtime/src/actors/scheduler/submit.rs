//! Accepting a run: checking its steps and resources, planning it, queueing its
//! first tasks; and the resources cluster queues offer.

use super::super::estimator_actor::EstimatorActor;
use super::super::messages::*;
use super::super::run::{NewRun, RunOutbox, RunState};
use super::Scheduler;
use crate::checkpoint::decide::{plan_touches_files, resolve_saved_fits};
use crate::error::RunError;
use crate::estimator::Estimator;
use crate::plan::{Plan, StepWork};
use crate::report::TaskLabel;
use crate::resources::Resources;
use crate::run::{Outputs, RunRequest};
use crate::step::Step;
use actix::prelude::*;
use std::sync::Arc;

impl Scheduler {
    /// Plans a run and queues its first tasks; `loaded_models` names the fits
    /// that saved models stand for (decided before, off the event loop).
    pub(super) fn submit(
        &mut self,
        request: RunRequest,
        loaded_models: Vec<String>,
        ctx: &mut Context<Self>,
    ) -> Result<u32, RunError> {
        let RunRequest {
            steps,
            bag,
            outputs,
        } = request;
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
        for s in &steps {
            let (fit, model) = (s.fits_here(), s.known_model());
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
        let applies: Vec<_> = steps.iter().map(|s| s.apply).collect();
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
        let labels = TaskLabel::all_of(&plan, |i| steps[i].name.clone());
        let run = self.next_run;
        self.next_run = self.next_run.wrapping_add(1);
        let id = uuid::Uuid::new_v4().to_string();
        let span = tracing::info_span!("run", id = %id, partitions = bag.npartitions());
        let npart = bag.npartitions();
        let samples = bag.len();
        let keep_sources = self.workers.iter().any(|w| w.remote) || !self.cluster_offers.is_empty();
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
        let new = NewRun {
            id,
            plan,
            steps,
            models,
            labels,
            estimators,
            loaded_models,
            samples,
            span,
        };
        let mut state = RunState::new(new, bag.into_arcs(), keep_sources);
        if outputs == Outputs::KeepInPlace {
            state.keep_in_place = Some(applies);
        }
        let mut outbox = RunOutbox::default();
        state.start(&mut outbox)?;
        {
            let _e = state.span.enter();
            tracing::info!(
                tasks = state.plan.task_count(npart),
                stages = state.plan.stages.len(),
                fits = state.plan.fits.len(),
                deciding = outbox.questions.len(),
                "run submitted"
            );
        }
        // The partitions go as soon as the first stage is built; while its
        // checkpoint decisions run, they wait for it.
        if std::mem::take(&mut outbox.all_ready) {
            let shape = state.plan.stages[0].resources.clone();
            self.ready
                .entry(shape)
                .or_default()
                .push_chains(run, 0, 0..npart as u32, 0.0);
        }
        self.runs.insert(run, state);
        self.deliver(run, outbox, 0.0);
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
            for (t, _) in q.groups() {
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

impl Scheduler {
    /// Takes a run whose saved models are decided: plans it and queues its work,
    /// or answers its caller with why not.
    fn accept(
        &mut self,
        request: RunRequest,
        loaded_models: Vec<String>,
        reply: tokio::sync::oneshot::Sender<Result<crate::run::RunOutput, RunError>>,
        ctx: &mut Context<Self>,
    ) {
        match self.submit(request, loaded_models, ctx) {
            Ok(run) => {
                if let Some(r) = self.runs.get_mut(&run) {
                    r.reply = Some(reply);
                }
                self.finish_if_done(run);
                self.start_decisions(ctx);
                self.dispatch();
                self.tell_watchers();
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }
}

impl Handler<Submit> for Scheduler {
    type Result = ();

    /// A run whose fits may be replaced by saved models has those files read
    /// off the event loop first.
    fn handle(&mut self, msg: Submit, ctx: &mut Context<Self>) {
        let Submit { mut request, reply } = msg;
        if !plan_touches_files(&request.steps) {
            self.accept(request, Vec::new(), reply, ctx);
            return;
        }
        let answer = tokio::task::spawn_blocking(move || {
            let loaded = resolve_saved_fits(&mut request.steps);
            (request, loaded)
        });
        ctx.spawn(
            answer
                .into_actor(self)
                .map(move |answer, act, ctx| match answer {
                    Ok((request, Ok(loaded))) => act.accept(request, loaded, reply, ctx),
                    Ok((_, Err(e))) => {
                        let _ = reply.send(Err(e.into()));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(RunError::Internal(format!(
                            "deciding the saved models failed: {e}"
                        ))));
                    }
                }),
        );
    }
}

/// Declares what attached cluster queues can offer: a task needing such a resource is
/// accepted at submit time and waits in its ready queue for a worker that has it.
/// When the offer shrinks (a queue given up), waiting runs that nothing can serve
/// any more fail with [`RunError::NoWorker`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct OfferResources(pub Vec<Offer>);

/// What the workers of one cluster queue will offer.
#[derive(Clone, Debug, PartialEq)]
pub struct Offer {
    /// Their resources.
    pub resources: Resources,
    /// The memory each may use, in bytes (its job's request), when known.
    pub memory: Option<u64>,
}

impl From<Resources> for Offer {
    fn from(resources: Resources) -> Self {
        Self {
            resources,
            memory: None,
        }
    }
}

impl Handler<OfferResources> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: OfferResources, _ctx: &mut Context<Self>) {
        self.cluster_offers = msg.0;
        self.fail_unservable("no cluster queue offers it any more");
    }
}
