//! What comes back from workers: finished tasks and fits, and the end of a run
//! (its output and report, or its error).

use super::super::messages::*;
use super::super::partition::Next;
use super::run_state::FitBarrier;
use super::Scheduler;
use super::TaskRef;
use crate::bag::{Bag, FailedSample};
use crate::batch::Batch;
use crate::dashboard::view::{RunPhase, RunView};
use crate::error::RunError;
use crate::exec::{Contribution, FAILED_SAMPLES_SHOWN};
use crate::report::{RunReport, TaskRecord};
use crate::run::RunOutput;
use actix::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

impl Scheduler {
    pub(super) fn on_done(&mut self, worker: u32, outcomes: Vec<TaskOutcome>) {
        let mut busy = 0.0;
        let n = outcomes.len();
        let mut contributions: Vec<(u32, usize, u32, Contribution)> = Vec::new();
        let mut finished_runs = Vec::new();
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
            let (started_s, finished_s) = (run.since(o.started), run.since(o.finished));
            let label = run.label_of(o.task);
            self.workers[worker as usize].in_hand.remove(o.run, label);
            if let Some(t) = run.label_time.get_mut(label) {
                t.0 += took;
                t.1 += 1;
            }
            match (o.task, o.result) {
                (TaskKind::Chain { stage, partition }, TaskResult::Chain(out)) => {
                    let out = *out;
                    let s = stage as usize;
                    let next_stage = s + 1;
                    let next = if next_stage >= run.plan.stages.len() {
                        Next::Done
                    } else if run.stage_exec(next_stage).is_some() {
                        Next::Ready
                    } else {
                        Next::Wait
                    };
                    let new_failed = out.new_failures;
                    let room = FAILED_SAMPLES_SHOWN.saturating_sub(run.first_failed.len());
                    run.first_failed
                        .extend(out.first_failed.into_iter().take(room));
                    for (step, s) in &out.checkpoints {
                        run.checkpoints.entry(step.clone()).or_default().add(*s);
                    }
                    if let Some(c) = out.contribution {
                        let fit = run.plan.stages[s].feeds_fit.expect("stage feeds a fit");
                        contributions.push((o.run, fit, partition, c));
                    }
                    let keep = next != Next::Done || run.plan.collect;
                    let completed = if out.held {
                        run.parts[partition as usize].complete_held(worker, next)
                    } else {
                        let output = keep.then(|| Arc::new(out.batch));
                        run.parts[partition as usize].complete(worker, output, next)
                    };
                    if let Err(e) = completed {
                        tracing::error!(%e, "partition protocol violation");
                        continue;
                    }
                    run.tasks.push(TaskRecord {
                        label: stage as u32,
                        partition: Some(partition),
                        worker,
                        ready_s: o.ready_s,
                        started_s,
                        finished_s,
                        failed_samples: new_failed as u32,
                        error: None,
                    });
                    match next {
                        Next::Done => run.partitions_left -= 1,
                        Next::Wait => run.waiting[next_stage].push(partition),
                        Next::Ready => self.enqueue_chain(o.run, partition, next_stage, finished_s),
                    }
                }
                (TaskKind::Fit { fit }, TaskResult::Fit(result)) => {
                    let f = fit as usize;
                    let label = run.fit_label(f);
                    let step = run.plan.fits[f].step;
                    let error = result.as_ref().err().cloned();
                    run.tasks.push(TaskRecord {
                        label,
                        partition: None,
                        worker,
                        ready_s: o.ready_s,
                        started_s,
                        finished_s,
                        failed_samples: 0,
                        error: error.clone(),
                    });
                    match result {
                        Ok(model) => {
                            run.models[step] = Some(model.clone());
                            run.estimators[f].do_send(Fitted(model));
                            run.fits[f] = FitBarrier::Done;
                            run.fits_left -= 1;
                            self.advance(o.run, finished_s);
                        }
                        Err(reason) => {
                            let step_name = run.steps[step].name.clone();
                            self.fail_run(
                                o.run,
                                RunError::FitFailed {
                                    step: step_name,
                                    reason,
                                },
                            );
                            continue;
                        }
                    }
                }
                (task, TaskResult::TooLarge { size, limit }) => {
                    let what = run.describe(task);
                    let partition = match task {
                        TaskKind::Chain { partition, .. } => Some(partition),
                        TaskKind::Fit { .. } => None,
                    };
                    let error = RunError::MessageTooLarge {
                        task: what,
                        size,
                        limit,
                    };
                    run.tasks.push(TaskRecord {
                        label: label as u32,
                        partition,
                        worker,
                        ready_s: o.ready_s,
                        started_s,
                        finished_s,
                        failed_samples: 0,
                        error: Some(error.to_string()),
                    });
                    self.fail_run(o.run, error);
                    continue;
                }
                _ => tracing::error!("task result does not match its task"),
            }
            finished_runs.push(o.run);
        }
        if n > 0 {
            let per_task = busy / n as f64;
            self.avg_task_s = 0.7 * self.avg_task_s + 0.3 * per_task;
        }
        // Hand contributions to the estimator actors, grouped per fit.
        contributions.sort_by_key(|(r, f, _, _)| (*r, *f));
        let mut group: Vec<(u32, Contribution)> = Vec::new();
        let mut key: Option<(u32, usize)> = None;
        for (r, f, p, c) in contributions {
            if let Some(k) = key.filter(|k| *k != (r, f)) {
                self.send_contributions(k, std::mem::take(&mut group));
            }
            key = Some((r, f));
            group.push((p, c));
        }
        if let Some(k) = key {
            self.send_contributions(k, group);
        }
        finished_runs.sort_unstable();
        finished_runs.dedup();
        for r in finished_runs {
            self.finish_if_done(r);
        }
    }

    pub(super) fn send_contributions(
        &self,
        (run, fit): (u32, usize),
        parts: Vec<(u32, Contribution)>,
    ) {
        // A partition rebuilt after a worker loss contributes again; a fit that has
        // all its inputs already takes nothing more.
        if let Some(r) = self.runs.get(&run).filter(|r| !r.fits[fit].has_inputs()) {
            r.estimators[fit].do_send(Contribute { parts });
        }
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
        let mut state = self.runs.remove(&run).expect("run present");
        let outputs: Vec<Arc<Batch>> = if state.plan.collect {
            state
                .parts
                .iter_mut()
                .filter_map(|p| p.take_data())
                .collect()
        } else {
            Vec::new()
        };
        let bag = Bag::from_arcs(outputs);
        let failed: Vec<FailedSample> = bag.failed();
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
            let _ = reply.send(Ok(RunOutput {
                bag,
                models: std::mem::take(&mut state.models),
                report,
            }));
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

    fn handle(&mut self, msg: FitReady, _ctx: &mut Context<Self>) {
        let Some(run) = self.runs.get_mut(&msg.run) else {
            return;
        };
        let f = msg.fit as usize;
        if run.fits[f].has_inputs() {
            return;
        }
        run.fits[f] = FitBarrier::Gathered(Arc::new(msg.parts));
        let shape = run.plan.fits[f].resources.clone();
        let ready_s = run.now();
        self.push_ready(
            &shape,
            TaskRef {
                run: msg.run,
                task: TaskKind::Fit { fit: msg.fit },
                ready_s,
            },
        );
        self.dispatch();
        self.tell_watchers();
    }
}
