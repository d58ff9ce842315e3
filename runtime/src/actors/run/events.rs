//! What happens to a run's graph when one of its tasks comes back, when a fit's
//! inputs are gathered, and when a worker holding its data is lost: each event
//! changes the run's state and writes what the scheduler must do into a
//! [`RunOutbox`].

use super::{FitBarrier, RunState};
use crate::actors::messages::TaskKind;
use crate::actors::partition::{Next, PartitionState, ProtocolError};
use crate::checkpoint::decide::StageQuestion;
use crate::error::RunError;
use crate::estimator::Estimator;
use crate::exec::{ChainOutput, FAILED_SAMPLES_SHOWN};
use crate::report::TaskRecord;
use std::sync::Arc;

/// What the scheduler must do after a run's events.
#[derive(Default)]
pub(crate) struct RunOutbox {
    /// Every partition's first stage is ready (a run just started).
    pub(crate) all_ready: bool,
    /// Partitions whose next stage is ready: partition and stage.
    pub(crate) ready: Vec<(u32, usize)>,
    /// Fits whose inputs are all here: their tasks are ready.
    pub(crate) ready_fits: Vec<usize>,
    /// Models for the fits' estimator actors: fit and model.
    pub(crate) fitted: Vec<(usize, Arc<dyn Estimator>)>,
    /// Stage questions to answer off the event loop: stage and question.
    pub(crate) questions: Vec<(usize, StageQuestion)>,
    /// Partitions whose data a worker holds and nobody needs any more: worker
    /// and partition.
    pub(crate) discard: Vec<(u32, u32)>,
    /// The run fails (the first reason given).
    pub(crate) failed: Option<RunError>,
}

impl RunOutbox {
    /// The run fails with `error` (unless it failed already).
    pub(crate) fn fail(&mut self, error: RunError) {
        self.failed.get_or_insert(error);
    }
}

/// When a task became ready, started and finished, in seconds since its run
/// started.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TaskTimes {
    /// Became ready.
    pub(crate) ready_s: f64,
    /// Started on its worker.
    pub(crate) started_s: f64,
    /// Finished on its worker.
    pub(crate) finished_s: f64,
}

impl RunState {
    pub(super) fn record(
        &mut self,
        label: u32,
        partition: Option<u32>,
        worker: u32,
        times: TaskTimes,
        failed_samples: u32,
        error: Option<String>,
    ) {
        self.tasks.push(TaskRecord {
            label,
            partition,
            worker,
            ready_s: times.ready_s,
            started_s: times.started_s,
            finished_s: times.finished_s,
            failed_samples,
            error: error.map(String::into_boxed_str),
        });
    }

    /// Stage `stage` of `partition` came back from `worker`: the partition moves
    /// on (its next stage ready, waiting, or done). A report the partition's state does not allow (a stale or foreign
    /// one) changes nothing.
    pub(crate) fn on_chain_done(
        &mut self,
        worker: u32,
        stage: u16,
        partition: u32,
        out: ChainOutput,
        times: TaskTimes,
        outbox: &mut RunOutbox,
    ) -> Result<(), ProtocolError> {
        let ChainOutput {
            batch,
            new_failures,
            first_failed,
            held,
            checkpoints,
            contribution,
        } = out;
        let s = stage as usize;
        let next_stage = s + 1;
        let next = if next_stage >= self.plan.stages.len() {
            Next::Done
        } else if self.stage_exec(next_stage).is_some() {
            Next::Ready
        } else {
            Next::Wait
        };
        if !held {
            self.rows_came_back(s, partition);
        }
        let slot = &mut self.parts[partition as usize];
        if held {
            slot.complete_held(worker, next)?;
        } else {
            let keep = next != Next::Done || self.plan.collect;
            slot.complete(worker, keep.then_some(batch), next)?;
        }
        let room = FAILED_SAMPLES_SHOWN.saturating_sub(self.first_failed.len());
        self.first_failed
            .extend(first_failed.into_iter().take(room));
        for (step, stats) in &checkpoints {
            self.checkpoints
                .entry(step.clone())
                .or_default()
                .add(*stats);
        }
        // Contributions go from the worker to the fit's estimator actor; one
        // still here is for a fit that has its inputs (a rebuilt partition's).
        drop(contribution);
        self.record(
            stage as u32,
            Some(partition),
            worker,
            times,
            new_failures as u32,
            None,
        );
        match next {
            Next::Done => self.partitions_left -= 1,
            Next::Wait => self.waiting[next_stage].push(partition),
            Next::Ready => outbox.ready.push((partition, next_stage)),
        }
        Ok(())
    }

    /// Every input of fit `f` is with its estimator actor: its task is ready
    /// (once).
    pub(crate) fn on_fit_inputs(&mut self, f: usize, outbox: &mut RunOutbox) {
        if self.fits[f].has_inputs() {
            return;
        }
        self.fits[f] = FitBarrier::Gathered;
        outbox.ready_fits.push(f);
    }

    /// Fit `fit` came back from `worker`: its model goes to the stages after it
    /// (which build, and release their partitions), or the run fails naming
    /// the step. A fit reported twice counts once.
    pub(crate) fn on_fit_done(
        &mut self,
        worker: u32,
        fit: u16,
        result: Result<Arc<dyn Estimator>, String>,
        times: TaskTimes,
        outbox: &mut RunOutbox,
    ) {
        let f = fit as usize;
        if self.fits[f].is_done() {
            tracing::error!(fit = f, "a fit reported after its model was known");
            return;
        }
        let label = self.fit_label(f);
        let step = self.plan.fits[f].step;
        self.record(
            label,
            None,
            worker,
            times,
            0,
            result.as_ref().err().cloned(),
        );
        match result {
            Ok(model) => {
                self.models[step] = Some(model.clone());
                outbox.fitted.push((f, model));
                self.fits[f] = FitBarrier::Done;
                self.fits_left -= 1;
                self.advance(outbox);
            }
            Err(reason) => outbox.fail(RunError::FitFailed {
                step: self.steps[step].name.clone(),
                reason,
            }),
        }
    }

    /// A task's input or result did not fit a frame: the run fails naming the
    /// task.
    pub(crate) fn on_too_large(
        &mut self,
        worker: u32,
        task: TaskKind,
        (size, limit): (u64, u64),
        times: TaskTimes,
        outbox: &mut RunOutbox,
    ) {
        let error = RunError::MessageTooLarge {
            task: self.describe(task),
            size,
            limit,
        };
        let partition = match task {
            TaskKind::Chain { partition, .. } => Some(partition),
            TaskKind::Fit { .. } => None,
        };
        let label = self.label_of(task) as u32;
        self.record(label, partition, worker, times, 0, Some(error.to_string()));
        outbox.fail(error);
    }

    /// Stage `stage` of `partition` could not fetch its input from the worker
    /// process holding it (`lost`: holder and why), on `worker`: the partition
    /// starts again from its source (its lineage), catching up where it can,
    /// and the holder drops whatever it still holds of it.
    pub(crate) fn on_chain_input_lost(
        &mut self,
        worker: u32,
        (stage, partition): (u16, u32),
        lost: &[(u32, String)],
        times: TaskTimes,
        outbox: &mut RunOutbox,
    ) {
        let reason = lost
            .iter()
            .map(|(_, why)| why.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        self.record(
            stage as u32,
            Some(partition),
            worker,
            times,
            0,
            Some(reason),
        );
        let p = partition as usize;
        let Some(source) = self.sources[p].clone() else {
            outbox.fail(RunError::Internal(format!(
                "partition {partition}'s input was lost on its way and it has no source"
            )));
            return;
        };
        if self.parts[p].requeue(worker, source).is_err() {
            return;
        }
        outbox
            .discard
            .extend(lost.iter().map(|(h, _)| (*h, partition)));
        if let Some(Some(stage)) = self.rebuild_lost(p) {
            outbox.ready.push((partition, stage));
        }
    }

    /// `worker`, which held the data of some partitions between stages, is
    /// lost: each is rebuilt from its input ([`RunState::rebuild_lost`]).
    /// Returns how many.
    pub(crate) fn on_holder_lost(&mut self, worker: u32, outbox: &mut RunOutbox) -> usize {
        let held: Vec<usize> = (0..self.parts.len())
            .filter(|&p| self.parts[p].held_by() == Some(worker))
            .collect();
        let mut n = 0;
        for p in held {
            if self.parts[p].state() == PartitionState::Done {
                // A kept output: its partition actor rebuilds it when taken.
                let _ = self.parts[p].lose_output();
                continue;
            }
            if let Some(ready) = self.rebuild_lost(p) {
                n += 1;
                if let Some(stage) = ready {
                    outbox.ready.push((p as u32, stage));
                }
            }
        }
        n
    }

    /// Partition `p`'s data is gone with its worker: it starts again from its
    /// input (its lineage). Where one worker can run every stage up to the one
    /// it stood at, it keeps its place and that stage's task catches up (the
    /// earlier stages run in it, from the nearest checkpoint on the way);
    /// otherwise it goes back to the first stage. Returns `None` when it cannot
    /// be rebuilt (no input kept, or running), else the stage now ready, if any
    /// (a partition waiting for a fit stays waiting).
    pub(crate) fn rebuild_lost(&mut self, p: usize) -> Option<Option<usize>> {
        let source = self.sources[p].clone()?;
        let stage = match self.parts[p].state() {
            PartitionState::Ready { stage } | PartitionState::Waiting { stage } => stage as usize,
            _ => return None,
        };
        if stage > 0 && self.can_catch_up(stage) {
            let slot = &mut self.parts[p];
            slot.catch_up(source).ok()?;
            let ready = matches!(slot.state(), PartitionState::Ready { .. });
            Some(ready.then_some(stage))
        } else {
            self.parts[p].rebuild(source).ok()?;
            Some(Some(0))
        }
    }
}
