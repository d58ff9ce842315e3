//! A run's stages are built as their models become known; the checkpoint
//! decisions that building needs (folders held and checked, saved models) run on
//! blocking threads, never on the scheduler's event loop. Partitions whose next
//! stage is not built yet wait for it.

use super::Scheduler;
use crate::checkpoint::decide::{decide_stage, StageDecision, StageQuestion};
use crate::checkpoint::CheckpointError;
use crate::error::RunError;
use actix::prelude::*;

/// A stage question of a run, waiting to be sent off the event loop.
pub(super) struct PendingQuestion {
    pub(super) run: u32,
    pub(super) stage: usize,
    pub(super) question: StageQuestion,
}

impl Scheduler {
    /// Builds the stages of `run` whose models are now known: those that touch no
    /// file at once (their waiting partitions go), the others once decided.
    pub(super) fn advance(&mut self, run: u32, ready_s: f64) {
        let Some(state) = self.runs.get_mut(&run) else {
            return;
        };
        match state.build_ready_stages() {
            Ok(progress) => {
                self.questions
                    .extend(progress.questions.into_iter().map(|(stage, question)| {
                        PendingQuestion {
                            run,
                            stage,
                            question,
                        }
                    }));
                for s in progress.built {
                    self.release_stage(run, s, ready_s);
                }
            }
            Err(e) => self.fail_run(run, e),
        }
    }

    /// Stage `s` of `run` is built: the partitions waiting for it are ready.
    fn release_stage(&mut self, run: u32, s: usize, ready_s: f64) {
        let Some(state) = self.runs.get_mut(&run) else {
            return;
        };
        let waiting = std::mem::take(&mut state.waiting[s]);
        let released: Vec<u32> = waiting
            .into_iter()
            .filter(|&p| state.parts[p as usize].release().is_ok())
            .collect();
        for p in released {
            self.enqueue_chain(run, p, s, ready_s);
        }
    }

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

    /// The decision of stage `s` of `run` is back: the stage is built and its
    /// partitions go, or the run fails naming what was wrong. A decision for a
    /// run that is gone is dropped (and with it its holds on folders).
    fn on_decided(&mut self, run: u32, s: usize, decision: Result<StageDecision, CheckpointError>) {
        let Some(state) = self.runs.get_mut(&run) else {
            return;
        };
        let ready_s = state.now();
        let applied = decision
            .map_err(RunError::from)
            .and_then(|d| state.apply_decision(s, d));
        if let Err(e) = applied {
            self.fail_run(run, e);
            return;
        }
        self.release_stage(run, s, ready_s);
        // A saved model may have stood for a fit: later stages may build now.
        self.advance(run, ready_s);
        self.finish_if_done(run);
    }
}
