//! Gather fits' rows kept on the worker processes that made them, as the
//! scheduler sees them: whether rows may stay, telling the holders to drop
//! them once their fit has its model or their run ended, and gathering them
//! again when a holder's rows are gone (its worker lost, or the fit's worker
//! could not reach it). Where the rows are, per partition, is the run's
//! (`run::fit_inputs`); the rows themselves are the workers'
//! (`remote::peer`).

use super::super::messages::{ForgetInputs, ReleaseHeld};
use super::super::run::{RowsLost, RunOutbox};
use super::Scheduler;
use actix::prelude::*;

/// A worker process's proxy -> scheduler: the fit running there fetched every
/// row kept for it; their holders may be retired during the fit.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct FitInputsFetched {
    /// The run.
    pub run: u32,
    /// The fit.
    pub fit: u16,
}

impl Handler<FitInputsFetched> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: FitInputsFetched, _ctx: &mut Context<Self>) {
        let f = msg.fit as usize;
        let Some(run) = self.runs.get_mut(&msg.run) else {
            return;
        };
        if f >= run.fits.len() || !run.on_fit_rows_fetched(f) {
            return;
        }
        // Holders being retired need not wait for the fit any more.
        let holders = run.input_holders.clone();
        for h in holders {
            self.check_drained(h);
        }
    }
}

impl Scheduler {
    /// Whether a chain's rows for a gather fit may stay on the worker process
    /// that made them: the setting allows it and every worker is a worker
    /// process (an in-process worker could not fetch them for its fit).
    pub(super) fn rows_may_stay(&self) -> bool {
        self.config.fit_inputs_on_workers && self.workers.iter().all(|w| w.remote || !w.alive)
    }

    /// Tells the workers keeping rows of `run` to drop them: those of fit
    /// `fit`, which has its model, or (`None`: the run ended) all.
    pub(super) fn drop_fit_inputs(&mut self, run: u32, fit: Option<usize>) {
        let Some(state) = self.runs.get_mut(&run) else {
            return;
        };
        if state.input_holders.is_empty() {
            return;
        }
        let (which, holders) = match fit {
            Some(f) => {
                if state.fit_inputs_on[f].is_empty() {
                    return;
                }
                state.forget_fit_inputs(f);
                let stage = state.feeding_stage(f).map(|s| s as u16);
                (stage.map(|s| (run, Some(s))), state.input_holders.clone())
            }
            None => (Some((run, None)), std::mem::take(&mut state.input_holders)),
        };
        let Some(which) = which else {
            return;
        };
        for h in holders {
            self.tell_to_drop(h, vec![which]);
            self.check_drained(h);
        }
    }

    fn tell_to_drop(&self, w: u32, drop_inputs: Vec<(u32, Option<u16>)>) {
        self.tell_holder(
            w,
            ReleaseHeld {
                drop_inputs,
                ..Default::default()
            },
        );
    }

    /// Sends `msg` to worker process `w`, when it is alive.
    pub(super) fn tell_holder(&self, w: u32, msg: ReleaseHeld) {
        if let Some(r) = self
            .workers
            .get(w as usize)
            .filter(|s| s.alive)
            .and_then(|s| s.release.as_ref())
        {
            r.do_send(msg);
        }
    }

    /// The rows kept on worker `w` are gone, or cannot be reached: every fit
    /// still waiting for its model gathers those partitions' rows again (its
    /// estimator actor forgets them, and the partitions make them anew). A
    /// worker still alive drops what it kept of those fits.
    pub(super) fn fit_inputs_lost(&mut self, w: u32) {
        let ids: Vec<u32> = self
            .runs
            .iter()
            .filter(|(_, r)| r.input_holders.contains(&w))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(run) = self.runs.get_mut(&id) else {
                continue;
            };
            let mut outbox = RunOutbox::default();
            let lost = run.on_fit_inputs_lost(w, &mut outbox);
            let mut stale = Vec::new();
            for RowsLost { fit, partitions } in lost {
                tracing::warn!(
                    run = id,
                    fit,
                    partitions = partitions.len(),
                    worker = w,
                    "fit inputs kept on a worker are gone; making them again"
                );
                run.estimators[fit].do_send(ForgetInputs(partitions));
                if let Some(s) = run.feeding_stage(fit) {
                    stale.push((id, Some(s as u16)));
                }
            }
            if !stale.is_empty() {
                self.tell_to_drop(w, stale);
            }
            let ready_s = self.runs.get(&id).map_or(0.0, |r| r.now());
            self.deliver(id, outbox, ready_s);
        }
    }

    /// Fit `f` of `run` goes back to its queue (its worker was lost): rows of
    /// holders gone since it fetched them are made again.
    pub(super) fn regather_if_let_go(&mut self, run: u32, f: usize) {
        let Some(state) = self.runs.get_mut(&run) else {
            return;
        };
        let mut outbox = RunOutbox::default();
        if let Some(RowsLost { fit, partitions }) = state.regather_if_let_go(f, &mut outbox) {
            tracing::warn!(
                run,
                fit,
                partitions = partitions.len(),
                "a fit lost with its worker after holders of its rows left; making those again"
            );
            state.estimators[fit].do_send(ForgetInputs(partitions));
            let ready_s = state.now();
            self.deliver(run, outbox, ready_s);
        }
    }
}
