//! [`WorkerActor`]: an in-process worker on its own OS thread.
//!
//! It is a `SyncActor`: its handler runs on a dedicated thread, not on an event loop,
//! so CPU-heavy estimator work never blocks an actor system. It receives batches of
//! tasks one way and reports finished tasks one way, grouped by time and count.

use super::messages::{
    ChainInput, RunTasks, TaskEnvelope, TaskOutcome, TaskPayload, TaskResult, TasksDone,
};
use crate::checkpoint::lineage::ModelProvenance;
use crate::exec::{run_chain, run_fit};
use actix::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An in-process worker.
pub struct WorkerActor {
    index: u32,
    results: Recipient<TasksDone>,
    flush_interval: Duration,
    flush_max: usize,
}

impl WorkerActor {
    /// A worker with index `index` reporting to `results`.
    pub fn new(
        index: u32,
        results: Recipient<TasksDone>,
        flush_interval: Duration,
        flush_max: usize,
    ) -> Self {
        Self {
            index,
            results,
            flush_interval,
            flush_max,
        }
    }
}

impl Actor for WorkerActor {
    type Context = SyncContext<Self>;
}

/// Runs one task to its outcome. A chain's contribution to a fit goes to the
/// envelope's `contribute_to` (the fit's estimator actor) at once; without one
/// (in a worker process) it stays in the outcome, for the proxy to hand on.
pub fn execute(env: TaskEnvelope) -> TaskOutcome {
    let _span = tracing::debug_span!("task", run = env.run, task = ?env.task).entered();
    let contribute_to = env.contribute_to;
    let started = Instant::now();
    let result = match env.payload {
        TaskPayload::Chain {
            input: ChainInput::Here(input),
            stage,
            ..
        } => TaskResult::Chain(run_chain(input, &stage)),
        TaskPayload::Chain {
            input: ChainInput::Held | ChainInput::Peer { .. },
            ..
        } => unreachable!("held inputs are resolved by the worker process before execution"),
        TaskPayload::Fit {
            step,
            template,
            reduce,
            upstream,
            parts,
        } => TaskResult::Fit(
            run_fit(
                template.as_ref(),
                reduce,
                Arc::try_unwrap(parts).unwrap_or_else(|shared| (*shared).clone()),
            )
            .and_then(|model| {
                // Save the model where it was fitted, at once: a long fit is never lost
                // to a later failure of the run.
                if let Some(path) = step.checkpoint.as_ref().and_then(|c| c.model_path.as_ref()) {
                    let provenance = ModelProvenance::of(&step, &upstream);
                    crate::checkpoint::model::save_model(path, model.as_ref(), &provenance)
                        .map_err(|e| format!("saving the model: {e}"))?;
                }
                Ok(model)
            }),
        ),
    };
    let mut outcome = TaskOutcome {
        ready_s: env.ready_s,
        run: env.run,
        task: env.task,
        resources: env.resources,
        started,
        finished: Instant::now(),
        result,
    };
    if contribute_to.is_some() {
        outcome.hand_contribution(contribute_to.as_ref());
    }
    outcome
}

impl Handler<RunTasks> for WorkerActor {
    type Result = ();

    fn handle(&mut self, msg: RunTasks, _ctx: &mut SyncContext<Self>) {
        let _span =
            tracing::debug_span!("worker", index = self.index, tasks = msg.0.len()).entered();
        let total = msg.0.len();
        let mut done = Vec::with_capacity(total.min(self.flush_max));
        let mut last_flush = Instant::now();
        for (i, env) in msg.0.into_iter().enumerate() {
            done.push(execute(env));
            let last = i + 1 == total;
            if last || done.len() >= self.flush_max || last_flush.elapsed() >= self.flush_interval {
                let outcomes = std::mem::take(&mut done);
                self.results.do_send(TasksDone {
                    worker: self.index,
                    outcomes,
                });
                last_flush = Instant::now();
            }
        }
    }
}
