//! Sending a run's stage questions (its checkpoint decisions) to blocking
//! threads, never the scheduler's event loop, and delivering the answers to the
//! run when they come back.

use super::super::run::RunOutbox;
use super::Scheduler;
use crate::checkpoint::decide::{decide_stage, StageDecision, StageQuestion};
use crate::checkpoint::CheckpointError;
use actix::prelude::*;

/// A stage question of a run, waiting to be sent off the event loop.
pub(super) struct PendingQuestion {
    pub(super) run: u32,
    pub(super) stage: usize,
    pub(super) question: StageQuestion,
}

impl Scheduler {
    /// Sends the pending stage questions to blocking threads; each answer comes
    /// back to [`Scheduler::on_decided`] on the event loop.
    pub(super) fn start_decisions(&mut self, ctx: &mut Context<Self>) {
        for PendingQuestion {
            run,
            stage,
            question,
        } in std::mem::take(&mut self.questions)
        {
            let answer = tokio::task::spawn_blocking(move || decide_stage(&question));
            ctx.spawn(answer.into_actor(self).map(move |answer, act, ctx| {
                let decision = answer.unwrap_or_else(|e| {
                    Err(CheckpointError::Decision {
                        reason: e.to_string(),
                    })
                });
                act.on_decided(run, stage, decision);
                act.start_decisions(ctx);
                act.dispatch();
                act.tell_watchers();
            }));
        }
    }

    /// The decision of stage `s` of `run` is back: the run applies it. A
    /// decision for a run that is gone is dropped (and with it its holds on
    /// folders).
    fn on_decided(&mut self, run: u32, s: usize, decision: Result<StageDecision, CheckpointError>) {
        let Some(state) = self.runs.get_mut(&run) else {
            return;
        };
        let mut outbox = RunOutbox::default();
        state.on_decided(s, decision, &mut outbox);
        let ready_s = state.now();
        self.deliver(run, outbox, ready_s);
        self.finish_if_done(run);
    }
}
