//! What comes back from workers: finished tasks and fits, and the end of a run
//! (its output and report, or its error).

use super::super::messages::*;
use super::super::run::{RunOutbox, TaskTimes};
use super::decisions::PendingQuestion;
use super::Scheduler;
use super::TaskRef;
use crate::bag::{Bag, FailedSample};
use crate::batch::Batch;
use crate::dashboard::view::{RunPhase, RunView};
use crate::error::RunError;
use crate::exec::FAILED_SAMPLES_SHOWN;
use crate::report::RunReport;
use crate::run::RunOutput;
use actix::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

impl Scheduler {
    /// Tasks came back from `worker`: the worker's accounting here, each run's
    /// graph moves on in its reactor, and its outbox is delivered.
    pub(super) fn on_done(&mut self, worker: u32, outcomes: Vec<TaskOutcome>) {
        let mut busy = 0.0;
        let n = outcomes.len();
        let mut finished_runs = Vec::new();
        // Contributions are sent per fit, once per batch of outcomes.
        let mut outbox_of: Vec<(u32, RunOutbox)> = Vec::new();
        // Workers whose kept fit rows a fit's worker could not fetch.
        let mut unreachable = Vec::new();
        for o in outcomes {
            let took = o.finished.duration_since(o.started).as_secs_f64();
            busy += took;
            {
                let w = &mut self.workers[worker as usize];
                w.in_flight -= 1;
                w.busy_s += took;
                if w.in_flight == 0 {
                    w.idle_since = Some(o.finished.max(Instant::now()));
                    w.isolated = false;
                }
                let total = w.info.resources.clone();
                w.free.give_back(&o.resources, &total);
            }
            if let Some(c) = self.in_flight.get_mut(&o.resources) {
                *c -= 1;
            }
            let Some(run) = self.runs.get_mut(&o.run) else {
                self.gone_run_task_back(o.run, worker);
                continue;
            };
            let times = TaskTimes {
                ready_s: o.ready_s,
                started_s: run.since(o.started),
                finished_s: run.since(o.finished),
            };
            let label = run.label_of(o.task);
            self.workers[worker as usize].in_hand.remove(o.run, label);
            if let Some(t) = run.label_time.get_mut(label) {
                t.0 += took;
                t.1 += 1;
            }
            let outbox = match outbox_of.last_mut() {
                Some((r, outbox)) if *r == o.run => outbox,
                _ => {
                    outbox_of.push((o.run, RunOutbox::default()));
                    &mut outbox_of.last_mut().expect("pushed").1
                }
            };
            match (o.task, o.result) {
                (TaskKind::Chain { stage, partition }, TaskResult::Chain(out)) => {
                    if let Err(e) = run.on_chain_done(worker, stage, partition, out, times, outbox)
                    {
                        tracing::error!(%e, "partition protocol violation");
                        continue;
                    }
                }
                (TaskKind::Fit { fit }, TaskResult::Fit(result)) => {
                    run.on_fit_done(worker, fit, result, times, outbox);
                }
                (task, TaskResult::TooLarge { size, limit }) => {
                    run.on_too_large(worker, task, (size, limit), times, outbox);
                }
                (TaskKind::Chain { stage, partition }, TaskResult::InputsLost(lost)) => {
                    tracing::warn!(partition, ?lost, "a task could not fetch its input");
                    run.on_chain_input_lost(worker, (stage, partition), &lost, times, outbox);
                }
                (TaskKind::Fit { fit }, TaskResult::InputsLost(lost)) => {
                    tracing::warn!(fit, ?lost, "a fit could not fetch its inputs");
                    run.on_fit_fetch_failed(worker, fit, &lost, times, outbox);
                    unreachable.extend(lost.into_iter().map(|(h, _)| h));
                }
                _ => tracing::error!("task result does not match its task"),
            }
            finished_runs.push(o.run);
        }
        if n > 0 {
            let per_task = busy / n as f64;
            self.avg_task_s = 0.7 * self.avg_task_s + 0.3 * per_task;
        }
        for (run, outbox) in outbox_of {
            let ready_s = self.runs.get(&run).map_or(0.0, |r| r.now());
            self.deliver(run, outbox, ready_s);
        }
        unreachable.sort_unstable();
        unreachable.dedup();
        for h in unreachable {
            self.fit_inputs_lost(h);
        }
        finished_runs.sort_unstable();
        finished_runs.dedup();
        for r in finished_runs {
            self.finish_if_done(r);
        }
    }

    /// Does what a run's reactor asked: fails the run, or hands models to its
    /// estimator actors, queues its ready tasks, and keeps its stage questions
    /// to send off the event loop.
    pub(super) fn deliver(&mut self, run: u32, outbox: RunOutbox, ready_s: f64) {
        let RunOutbox {
            all_ready: _,
            ready,
            ready_fits,
            fitted,
            questions,
            discard,
            failed,
        } = outbox;
        if let Some(error) = failed {
            self.fail_run(run, error);
            return;
        }
        let Some(state) = self.runs.get(&run) else {
            return;
        };
        let mut models_known = Vec::with_capacity(fitted.len());
        for (f, model) in fitted {
            state.estimators[f].do_send(Fitted(model));
            models_known.push(f);
        }
        for (w, p) in discard {
            self.tell_holder(
                w,
                ReleaseHeld {
                    parts: vec![(run, p)],
                    discard: true,
                    ..Default::default()
                },
            );
        }
        for f in models_known {
            self.drop_fit_inputs(run, Some(f));
        }
        let Some(state) = self.runs.get(&run) else {
            return;
        };
        for (f, shape) in ready_fits
            .into_iter()
            .map(|f| (f, state.plan.fits[f].resources.clone()))
            .collect::<Vec<_>>()
        {
            let t = TaskRef {
                run,
                task: TaskKind::Fit { fit: f as u16 },
                ready_s,
            };
            self.push_ready(&shape, t);
        }
        for (partition, stage) in ready {
            self.enqueue_chain(run, partition, stage, ready_s);
        }
        self.questions.extend(
            questions
                .into_iter()
                .map(|(stage, question)| PendingQuestion {
                    run,
                    stage,
                    question,
                }),
        );
    }

    pub(super) fn finish_if_done(&mut self, run: u32) {
        let done = self
            .runs
            .get(&run)
            .is_some_and(|r| r.partitions_left == 0 && r.fits_left == 0);
        if !done {
            return;
        }
        let view = self
            .runs
            .get(&run)
            .expect("run present")
            .view(RunPhase::Finished);
        self.keep_view(view);
        self.suspects.forget_run(run);
        self.drop_fit_inputs(run, None);
        let mut state = self.runs.remove(&run).expect("run present");
        let kept = if state.keeps_outputs() {
            Some(self.keep_outputs(run, &mut state))
        } else {
            None
        };
        let outputs: Vec<Arc<Batch>> = if state.plan.collect && kept.is_none() {
            state
                .parts
                .iter_mut()
                .filter_map(|p| p.take_data())
                .collect()
        } else {
            Vec::new()
        };
        let bag = Bag::from_arcs(outputs);
        // A kept output's failures travel with its partitions; the report lists
        // the first ones its tasks reported.
        let failed: Vec<FailedSample> = if kept.is_some() {
            state.first_failed.clone()
        } else {
            bag.failed()
        };
        // The output's failures in partition order (with any the input carried);
        // runs that keep no output show those their tasks reported.
        if let Some(v) = self
            .finished_views
            .back_mut()
            .filter(|_| !failed.is_empty())
        {
            v.failed_samples = failed.iter().take(FAILED_SAMPLES_SHOWN).cloned().collect();
        }
        let report = RunReport {
            run_id: state.id.clone(),
            labels: std::mem::take(&mut state.labels),
            tasks: std::mem::take(&mut state.tasks),
            workers: self.workers.iter().map(|w| w.info.clone()).collect(),
            partitions: state.parts.len(),
            samples: state.samples,
            failed,
            checkpoints: std::mem::take(&mut state.checkpoints),
            loaded_models: std::mem::take(&mut state.loaded_models),
            workers_lost: state.workers_lost,
            wall_s: state.now(),
        };
        {
            let _e = state.span.enter();
            tracing::info!(summary = %report.summary(), "run finished");
        }
        // The run's folders are free before its caller hears it is done, so a
        // run started right after it never finds them held.
        drop(std::mem::take(&mut state.locks));
        if let Some(reply) = state.reply.take() {
            let _ = reply.send(match kept.transpose() {
                Ok(kept) => Ok(RunOutput {
                    bag,
                    kept,
                    models: std::mem::take(&mut state.models),
                    report,
                }),
                Err(e) => Err(e),
            });
        }
    }

    /// Tells worker processes to drop the partitions of `run` they hold (its run
    /// failed: nothing will ask for them).
    pub(super) fn discard_held(&mut self, run: u32) {
        let Some(state) = self.runs.get(&run) else {
            return;
        };
        let mut by_worker: BTreeMap<u32, Vec<(u32, u32)>> = BTreeMap::new();
        for (p, slot) in state.parts.iter().enumerate() {
            if let Some(w) = slot.held_by() {
                by_worker.entry(w).or_default().push((run, p as u32));
            }
        }
        for (w, parts) in by_worker {
            if let Some(r) = self
                .workers
                .get(w as usize)
                .and_then(|s| s.release.as_ref())
            {
                r.do_send(ReleaseHeld {
                    parts,
                    discard: true,
                    ..Default::default()
                });
            }
        }
    }

    /// Keeps a finished run's view for the dashboard (the latest 8).
    pub(super) fn keep_view(&mut self, view: RunView) {
        if self.finished_views.len() == 8 {
            self.finished_views.pop_front();
        }
        self.finished_views.push_back(view);
    }

    pub(super) fn fail_run(&mut self, run: u32, error: RunError) {
        self.discard_held(run);
        self.drop_fit_inputs(run, None);
        let mut out = BTreeMap::new();
        for (i, w) in self.workers.iter_mut().enumerate() {
            let n = w.in_hand.of_run(run);
            if n > 0 && w.alive {
                out.insert(i as u32, n);
            }
            w.in_hand.forget_run(run);
        }
        if let Some(state) = self.runs.get_mut(&run).filter(|_| !out.is_empty()) {
            // Its tasks still out may write the folders: keep them locked.
            let locks = std::mem::take(&mut state.locks);
            if !locks.is_empty() {
                self.lingering.push(super::Lingering { run, out, locks });
            }
        }
        if let Some(run_state) = self.runs.get(&run) {
            let mut view = run_state.view(RunPhase::Failed);
            view.error = Some(error.to_string());
            self.keep_view(view);
        }
        if let Some(mut state) = self.runs.remove(&run) {
            {
                let _e = state.span.enter();
                tracing::warn!(%error, "run failed");
            }
            for q in self
                .ready
                .values_mut()
                .chain(self.suspect_ready.values_mut())
            {
                q.retain(|t| t.run != run);
            }
            self.suspects.forget_run(run);
            // Folders no task of the run can still write are free before the
            // caller hears of the failure.
            drop(std::mem::take(&mut state.locks));
            if let Some(reply) = state.reply.take() {
                let _ = reply.send(Err(error));
            }
        }
    }
}

impl Handler<TasksDone> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: TasksDone, ctx: &mut Context<Self>) {
        self.on_done(msg.worker, msg.outcomes);
        self.start_decisions(ctx);
        self.dispatch();
        self.check_drained(msg.worker);
        self.tell_watchers();
    }
}

impl Handler<FitReady> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: FitReady, ctx: &mut Context<Self>) {
        let stale = self
            .runs
            .get(&msg.run)
            .is_some_and(|r| r.fit_round.get(msg.fit as usize) != Some(&msg.round));
        if stale {
            // Sent before its actor forgot rows that were lost since.
            return;
        }
        if let Err(e) = self.check_fit_memory(msg.run, msg.fit as usize, msg.input_bytes) {
            self.fail_run(msg.run, e);
            self.dispatch();
            self.tell_watchers();
            return;
        }
        let Some(run) = self.runs.get_mut(&msg.run) else {
            return;
        };
        let mut outbox = RunOutbox::default();
        run.on_fit_inputs(msg.fit as usize, &mut outbox);
        let ready_s = run.now();
        self.deliver(msg.run, outbox, ready_s);
        self.start_decisions(ctx);
        self.dispatch();
        self.tell_watchers();
    }
}
