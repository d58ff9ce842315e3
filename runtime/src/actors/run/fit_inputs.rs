//! A run's gather-fit inputs kept on worker processes: which worker keeps each
//! partition's rows until the fit has its model, and what happens to the run
//! when a holder's rows are gone (its worker lost, or its peers cannot reach
//! it): each fit still waiting for its model gathers those partitions' rows
//! again, made anew from their sources.

use super::{FitBarrier, RunOutbox, RunState};
use crate::actors::partition::PartitionState;

/// No worker keeps the partition's rows.
const NOBODY: u32 = u32::MAX;
/// The worker that kept the partition's rows is gone after the fit fetched
/// them (they are made again only if the fit must run again).
const GONE: u32 = u32::MAX - 1;

/// What the scheduler must do once a holder's rows are gone, for one fit.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct RowsLost {
    /// The fit.
    pub(crate) fit: usize,
    /// The partitions whose rows it must gather again (its estimator actor
    /// forgets them).
    pub(crate) partitions: Vec<u32>,
}

impl RunState {
    /// The stage that feeds fit `f`.
    pub(crate) fn feeding_stage(&self, f: usize) -> Option<usize> {
        self.plan.stages.iter().position(|s| s.feeds_fit == Some(f))
    }

    /// Whether stage `s`'s rows for the fit it feeds may stay on the worker
    /// that runs it: the fit gathers rows (it is not a reduction), still
    /// waits for them, and a stage follows it (the partition waits there).
    pub(crate) fn may_keep_fit_input(&self, s: usize) -> bool {
        let Some(f) = self.plan.stages[s].feeds_fit else {
            return false;
        };
        !self.plan.fits[f].reduce && !self.fits[f].has_inputs() && s + 1 < self.plan.stages.len()
    }

    /// Records that partition `p`'s rows for the fit stage `s` feeds stay on
    /// worker `w`.
    pub(crate) fn keep_fit_input(&mut self, s: usize, p: u32, w: u32) {
        let Some(f) = self.plan.stages[s].feeds_fit else {
            return;
        };
        let n = self.parts.len();
        let on = &mut self.fit_inputs_on[f];
        if on.is_empty() {
            on.resize(n, NOBODY);
        }
        on[p as usize] = w;
        self.input_holders.insert(w);
    }

    /// Partition `p`'s output did not stay on its worker after stage `s` (too
    /// small to be kept for a peer): nor did its rows.
    pub(crate) fn rows_came_back(&mut self, s: usize, p: u32) {
        if let Some(f) = self.plan.stages[s].feeds_fit {
            if let Some(h) = self.fit_inputs_on[f].get_mut(p as usize) {
                *h = NOBODY;
            }
        }
    }

    /// Whether worker `w` keeps rows a fit may still fetch (its fit waits for
    /// its model and has not fetched them).
    pub(crate) fn keeps_fit_inputs_on(&self, w: u32) -> bool {
        self.fit_inputs_on
            .iter()
            .enumerate()
            .any(|(f, on)| !self.fits[f].is_done() && !self.fit_rows_fetched[f] && on.contains(&w))
    }

    /// Fit `f` has its model: nobody needs its kept rows any more.
    pub(crate) fn forget_fit_inputs(&mut self, f: usize) {
        self.fit_inputs_on[f] = Vec::new();
        self.fit_rows_fetched[f] = false;
    }

    /// Fit `f`'s worker fetched every row kept for it: their holders keep them
    /// until the fit has its model, but may be retired meanwhile (should the
    /// fit run again, the rows of holders gone are made again). Returns
    /// whether any worker keeps rows of it.
    pub(crate) fn on_fit_rows_fetched(&mut self, f: usize) -> bool {
        if !matches!(self.fits[f], FitBarrier::Running) || self.fit_inputs_on[f].is_empty() {
            return false;
        }
        self.fit_rows_fetched[f] = true;
        true
    }

    /// Fit `f` goes back to its queue after its worker was lost: the rows of
    /// holders gone since it fetched them are made again (it gathers them
    /// anew); the others are still where they were.
    pub(crate) fn regather_if_let_go(
        &mut self,
        f: usize,
        outbox: &mut RunOutbox,
    ) -> Option<RowsLost> {
        if !std::mem::take(&mut self.fit_rows_fetched[f]) {
            return None;
        }
        let partitions: Vec<u32> = (0..self.fit_inputs_on[f].len() as u32)
            .filter(|&p| self.fit_inputs_on[f][p as usize] == GONE)
            .collect();
        (!partitions.is_empty()).then(|| self.lose_rows(f, partitions, outbox))
    }

    /// The rows of `partitions` for fit `f` are gone: each partition makes
    /// them again, and the fit gathers again.
    fn lose_rows(&mut self, f: usize, partitions: Vec<u32>, outbox: &mut RunOutbox) -> RowsLost {
        let s = self.feeding_stage(f).unwrap_or(0);
        for &p in &partitions {
            self.fit_inputs_on[f][p as usize] = NOBODY;
            if let Err(e) = self.give_rows_again(p as usize, s, outbox) {
                outbox.fail(e);
            }
        }
        // A fit queued or running with those rows waits for them again (a
        // running one that fetched them already may still report its model,
        // which counts).
        self.fits[f] = FitBarrier::Gathering;
        self.fit_round[f] += 1;
        RowsLost { fit: f, partitions }
    }

    /// The rows kept on worker `w` are gone. Each fit still waiting for its
    /// model forgets them and goes back to gathering, and each of those
    /// partitions starts again from its source at the stage that feeds the
    /// fit (that stage's task runs the earlier ones too, where one worker can
    /// run them all; else from the first stage). A partition whose stage runs
    /// or waits to run gives its rows again anyway. Returns, per fit, the
    /// partitions it gathers again; a partition that cannot start again (no
    /// source kept) fails the run.
    pub(crate) fn on_fit_inputs_lost(&mut self, w: u32, outbox: &mut RunOutbox) -> Vec<RowsLost> {
        let mut lost = Vec::new();
        for f in 0..self.fit_inputs_on.len() {
            if self.fits[f].is_done() || !self.fit_inputs_on[f].contains(&w) {
                continue;
            }
            let on = &mut self.fit_inputs_on[f];
            if self.fit_rows_fetched[f] {
                // The fit has them: they are made again only if it runs again.
                on.iter_mut().filter(|h| **h == w).for_each(|h| *h = GONE);
                continue;
            }
            let partitions: Vec<u32> = (0..on.len() as u32)
                .filter(|&p| on[p as usize] == w)
                .collect();
            lost.push(self.lose_rows(f, partitions, outbox));
        }
        lost
    }

    /// Partition `p` makes its rows for the fit stage `s` feeds again.
    fn give_rows_again(
        &mut self,
        p: usize,
        s: usize,
        outbox: &mut RunOutbox,
    ) -> Result<(), crate::error::RunError> {
        match self.parts[p].state() {
            // Past the feeding stage, waiting for the fit: start again.
            PartitionState::Waiting { stage } if stage as usize > s => {}
            // Its feeding stage is still to run or running: it gives its rows then.
            PartitionState::Ready { .. }
            | PartitionState::Running { .. }
            | PartitionState::Waiting { .. } => return Ok(()),
            PartitionState::Done => {
                return Err(crate::error::RunError::Internal(format!(
                    "partition {p} finished while its fit waited for its rows"
                )))
            }
        }
        let source = self.sources[p].clone().ok_or_else(|| {
            crate::error::RunError::Internal(format!(
                "partition {p}'s fit rows are lost and it has no source to make them from"
            ))
        })?;
        if let Some(x) = self.parts[p].held_by() {
            outbox.discard.push((x, p as u32));
        }
        let (stage, catching_up) = if s > 0 && self.can_catch_up(s) {
            (s, true)
        } else {
            (0, false)
        };
        self.parts[p]
            .redo_from(source, stage as u16, catching_up)
            .map_err(|e| crate::error::RunError::Internal(e.to_string()))?;
        outbox.ready.push((p as u32, stage));
        Ok(())
    }
}

/// How many times a run's fits may fail to fetch their kept rows before the
/// run fails (each time, the unreachable holders' rows are made again).
pub(crate) const FETCH_TRIES: u32 = 3;

impl RunState {
    /// Fit `fit` could not fetch its rows from some holders (`lost`: holder
    /// and why), on `worker`. The try is recorded; the scheduler makes those
    /// holders' rows again. Past [`FETCH_TRIES`] the run fails naming the step
    /// and the reason.
    pub(crate) fn on_fit_fetch_failed(
        &mut self,
        worker: u32,
        fit: u16,
        lost: &[(u32, String)],
        times: super::TaskTimes,
        outbox: &mut RunOutbox,
    ) {
        let f = fit as usize;
        let reason = lost
            .iter()
            .map(|(_, why)| why.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        let label = self.fit_label(f);
        self.record(label, None, worker, times, 0, Some(reason.clone()));
        if !matches!(self.fits[f], FitBarrier::Running) {
            // Done, or gathering again: the holders' loss is known already.
            return;
        }
        self.fit_fetch_failures += 1;
        if self.fit_fetch_failures >= FETCH_TRIES {
            outbox.fail(crate::error::RunError::FitInputsUnreachable {
                step: self.steps[self.plan.fits[f].step].name.clone(),
                tries: self.fit_fetch_failures,
                reason,
            });
        } else {
            // Its inputs are thought whole until the holders' rows are
            // forgotten (then it gathers again).
            self.fits[f] = FitBarrier::Gathered;
            outbox.ready_fits.push(f);
        }
    }
}
