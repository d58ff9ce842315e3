//! Handing ready tasks to workers in batches, and queueing tasks that became ready.

use super::super::messages::*;
use super::super::partition::{PartitionState, SlotInput};
use super::super::run::{FitBarrier, RunState};
use super::suspects::Suspects;
use super::{Scheduler, TaskRef, WorkerSlot};
use crate::error::RunError;
use crate::resources::Resources;
use std::collections::{BTreeMap, HashMap};

/// What decides where a task's output stays.
#[derive(Clone, Copy, Debug)]
pub(super) struct Placement {
    /// The task is a suspect (its output comes back).
    pub(super) suspect: bool,
    /// A plain worker (or a queue of them) exists.
    pub(super) plain_available: bool,
    /// Rows for a gather fit may stay on the worker process that made them.
    pub(super) rows_may_stay: bool,
    /// The fewest bytes a partition kept for a peer to fetch has.
    pub(super) peer_min_bytes: u64,
}

impl Placement {
    /// Whether `worker` keeps a partition's output for a next stage needing
    /// `next`: it runs that stage itself, or a peer fetches it from there.
    fn keeps_for(&self, worker: &WorkerSlot, next: &Resources, has_peers: bool) -> bool {
        has_peers || Scheduler::runs_next_stage(worker, next, self.plain_available)
    }
}

/// What handing a task to a worker touches, borrowed apart from the workers and
/// the ready queues.
struct Handout<'a> {
    runs: &'a mut HashMap<u32, RunState>,
    in_flight: &'a mut BTreeMap<Resources, usize>,
    suspects: &'a Suspects,
    /// Whether a plain worker (or a queue of them) exists: then workers offering a
    /// resource keep off plain tasks, and hold no data for them.
    plain_available: bool,
    /// Rows for a gather fit may stay on the worker process that made them.
    rows_may_stay: bool,
    /// Per worker: where its peers reach it.
    peer_addrs: &'a [Option<String>],
    /// The fewest bytes a partition kept for a peer to fetch has.
    peer_min_bytes: u64,
    /// Runs whose ready task had lost its inputs (a broken invariant).
    lost: &'a mut Vec<u32>,
}

impl Handout<'_> {
    /// Whether `worker` has the memory for task `t` (a fit's gathered inputs
    /// and working memory; chain tasks always fit).
    fn has_memory_for(&self, worker: &WorkerSlot, t: &TaskRef) -> bool {
        match t.task {
            TaskKind::Fit { fit } => self.runs.get(&t.run).is_none_or(|r| {
                let f = fit as usize;
                !r.fit_waits_for_memory[f]
                    || super::memory::can_take(r.fit_need[f], worker.info.memory)
            }),
            TaskKind::Chain { .. } => true,
        }
    }

    /// Hands one ready task to `worker`, accounting for it: a chain task goes
    /// into `batch`; a fit task goes to its estimator actor, which puts in the
    /// inputs it holds and sends it on. Returns whether the task was handed.
    fn give(
        &mut self,
        worker: &mut WorkerSlot,
        shape: &Resources,
        t: TaskRef,
        batch: &mut Vec<TaskEnvelope>,
    ) -> bool {
        let Some(run) = self.runs.get_mut(&t.run) else {
            return false;
        };
        if let TaskKind::Fit { fit } = t.task {
            if !matches!(run.fits[fit as usize], FitBarrier::Gathered) {
                // Queued before its inputs were lost (it gathers again, and is
                // queued again once it has them).
                return false;
            }
        }
        let suspect = self.suspects.is_suspect(t.run, t.task);
        let placement = Placement {
            suspect,
            plain_available: self.plain_available,
            rows_may_stay: self.rows_may_stay,
            peer_min_bytes: self.peer_min_bytes,
        };
        let Some(payload) = Scheduler::payload(run, t.task, worker, placement, self.peer_addrs)
        else {
            // A ready task whose inputs are missing is a scheduler bug: fail the run
            // loudly rather than lose the task.
            tracing::error!(run = t.run, task = ?t.task, "ready task without its inputs");
            self.lost.push(t.run);
            return false;
        };
        worker.free.take(shape);
        worker.in_flight += 1;
        worker.idle_since = None;
        worker.in_hand.add(t.run, run.label_of(t.task));
        *self.in_flight.entry(shape.clone()).or_insert(0) += 1;
        // A chain's contribution goes straight to its fit's estimator actor.
        let contribute_to = match t.task {
            TaskKind::Chain { stage, .. } => run.plan.stages[stage as usize]
                .feeds_fit
                .filter(|&f| !run.fits[f].has_inputs())
                .map(|f| run.estimators[f].clone().recipient()),
            TaskKind::Fit { .. } => None,
        };
        let envelope = TaskEnvelope {
            ready_s: t.ready_s,
            run: t.run,
            task: t.task,
            resources: shape.clone(),
            payload,
            contribute_to,
        };
        match t.task {
            TaskKind::Fit { fit } => run.estimators[fit as usize].do_send(RunFit {
                envelope,
                to: worker.addr.clone(),
            }),
            TaskKind::Chain { .. } => batch.push(envelope),
        }
        true
    }
}

impl Scheduler {
    /// Hands ready tasks to workers with room, in batches: first the tasks whose
    /// input the worker already holds, then the shared queues.
    pub(super) fn dispatch(&mut self) {
        let pinned: usize = self.workers.iter().map(|w| w.pinned.len()).sum();
        let suspects: usize = self.suspect_ready.values().map(|q| q.len()).sum();
        let total_ready: usize =
            self.ready.values().map(|q| q.len()).sum::<usize>() + pinned + suspects;
        if total_ready == 0 || self.workers.is_empty() {
            return;
        }
        self.place_fits_by_memory();
        let window = self.window();
        let share = total_ready.div_ceil(self.workers.len()).max(1);
        // Workers offering a resource are kept for the tasks that need one, as long
        // as a plain worker (or a cluster queue of them) exists for plain tasks.
        let plain_available = self.plain_available();
        let mut lost = Vec::new();
        let rows_may_stay = self.rows_may_stay();
        let mut out = Handout {
            runs: &mut self.runs,
            in_flight: &mut self.in_flight,
            suspects: &self.suspects,
            plain_available,
            rows_may_stay,
            peer_addrs: &self.peer_addrs,
            peer_min_bytes: self.config.peer_min_bytes,
            lost: &mut lost,
        };
        for w in 0..self.workers.len() {
            let worker = &mut self.workers[w];
            let room = window.saturating_sub(worker.in_flight);
            if room == 0 || !worker.alive || worker.draining || worker.isolated {
                continue;
            }
            // Workers offering a resource keep off plain tasks while plain
            // workers exist.
            let reserved = plain_available && !worker.info.resources.is_empty();
            // A suspect runs alone, on a worker with nothing else in its hands.
            if suspects > 0 && worker.in_flight == 0 {
                let found = self.suspect_ready.iter_mut().rev().find(|(shape, q)| {
                    !q.is_empty() && worker.free.covers(shape) && !(reserved && shape.is_empty())
                });
                if let Some((shape, q)) = found {
                    let t = q.pop_front().expect("non-empty");
                    let mut batch = Vec::with_capacity(1);
                    if out.give(worker, shape, t, &mut batch) {
                        worker.isolated = true;
                        tracing::debug!(worker = w, "a suspect task, alone");
                    }
                    if !batch.is_empty() {
                        worker.addr.do_send(RunTasks(batch));
                    }
                    continue;
                }
            }
            let take = room.min(share.max(worker.pinned.len().min(room)));
            let mut batch = Vec::with_capacity(take);
            while batch.len() < take {
                let Some((shape, _)) = worker.pinned.front() else {
                    break;
                };
                if !worker.free.covers(shape) {
                    break;
                }
                let (shape, t) = worker.pinned.pop_front().expect("non-empty");
                out.give(worker, &shape, t, &mut batch);
            }
            // Shapes that need special resources first, so scarce workers serve them.
            for (shape, q) in self.ready.iter_mut().rev() {
                if reserved && shape.is_empty() {
                    continue;
                }
                while batch.len() < take && !q.is_empty() && worker.free.covers(shape) {
                    let t = q.pop_front().expect("non-empty");
                    if !out.has_memory_for(worker, &t) {
                        // A fit this worker has not the memory for waits for one
                        // that has (one is alive, or a queue starts such workers).
                        q.push_back(t);
                        break;
                    }
                    out.give(worker, shape, t, &mut batch);
                }
            }
            if !batch.is_empty() {
                tracing::debug!(worker = w, tasks = batch.len(), "dispatch");
                worker.addr.do_send(RunTasks(batch));
            }
        }
        for run in lost {
            self.fail_run(
                run,
                RunError::Internal("a ready task lost its inputs".into()),
            );
        }
    }

    /// Whether a plain worker (or a cluster queue of them) exists: then
    /// workers offering a resource keep off plain tasks.
    pub(super) fn plain_available(&self) -> bool {
        self.workers
            .iter()
            .any(|w| w.alive && !w.draining && w.info.resources.is_empty())
            || self.cluster_offers.iter().any(|o| o.resources.is_empty())
    }

    /// Whether `worker` runs a next stage needing `next` itself: it offers
    /// what the stage needs, and is not kept for tagged work (a worker
    /// offering a resource leaves plain stages to plain workers, when any).
    pub(super) fn runs_next_stage(worker: &WorkerSlot, next: &Resources, plain: bool) -> bool {
        let reserved = plain && !worker.info.resources.is_empty();
        worker.info.resources.covers(next) && !(reserved && next.is_empty())
    }

    pub(super) fn payload(
        run: &mut RunState,
        task: TaskKind,
        worker: &WorkerSlot,
        placement: Placement,
        peer_addrs: &[Option<String>],
    ) -> Option<TaskPayload> {
        match task {
            TaskKind::Chain { partition, .. } => {
                let p = partition as usize;
                // A partition rebuilt from its source runs its earlier stages in
                // this task too (from the nearest checkpoint on the way).
                let exec = match run.parts[p].state() {
                    PartitionState::Ready { stage } if run.parts[p].catching_up() => {
                        run.catch_up_exec(stage as usize)?
                    }
                    PartitionState::Ready { stage } => run.stage_exec(stage as usize)?,
                    _ => return None,
                };
                // Data another worker process holds is fetched from there.
                let (stage, input) = match run.parts[p].held_by() {
                    Some(h) if h != worker.info.id => {
                        let addr = peer_addrs.get(h as usize)?.clone()?;
                        let (stage, holder) =
                            run.parts[p].dispatch_from_peer(worker.info.id).ok()?;
                        (stage, ChainInput::Peer { addr, holder })
                    }
                    _ => match run.parts[p].dispatch_to(worker.info.id).ok()? {
                        (stage, SlotInput::Here(b)) => (stage, ChainInput::Here(b)),
                        (stage, SlotInput::Held) => (stage, ChainInput::Held),
                    },
                };
                let s = stage as usize;
                // A worker process keeps the output when the partition can be
                // rebuilt if the worker is lost (a suspect's output comes back:
                // its next stage runs alone anywhere), and either it runs the next
                // stage itself or its peers can fetch it from there: a worker
                // offering a resource never runs a plain next stage while plain
                // workers exist, so the scarce worker never sits on plain work.
                // A run that keeps its outputs in place leaves the last stage's
                // output there too.
                let has_peers = peer_addrs
                    .get(worker.info.id as usize)
                    .is_some_and(Option::is_some);
                let hold = worker.remote
                    && !worker.draining
                    && !placement.suspect
                    && run.sources[p].is_some()
                    && match run.plan.stages.get(s + 1) {
                        Some(next) => placement.keeps_for(worker, &next.resources, has_peers),
                        None => run.keeps_outputs(),
                    };
                // Kept for a peer to fetch: only when big enough to be worth a
                // fetch.
                let hold_min_bytes = match run.plan.stages.get(s + 1) {
                    Some(next)
                        if !Scheduler::runs_next_stage(
                            worker,
                            &next.resources,
                            placement.plain_available,
                        ) =>
                    {
                        placement.peer_min_bytes
                    }
                    _ => 0,
                };
                // The rows it gives a gather fit stay with its output.
                let keep_fit_input = hold && placement.rows_may_stay && run.may_keep_fit_input(s);
                if keep_fit_input {
                    run.keep_fit_input(s, partition, worker.info.id);
                }
                Some(TaskPayload::Chain {
                    input,
                    stage: exec,
                    hold,
                    hold_min_bytes,
                    keep_fit_input,
                })
            }
            TaskKind::Fit { fit } => {
                let (i, reduce) = {
                    let node = &run.plan.fits[fit as usize];
                    (node.step, node.reduce)
                };
                // The lineage hash goes with a saved model only; the stage that
                // feeds such a fit computed it off the event loop (cached here).
                let saves_model = run.steps[i]
                    .checkpoint
                    .as_ref()
                    .is_some_and(|c| c.model_path.is_some());
                let upstream = if saves_model {
                    run.upstream_of(i).ok()?
                } else {
                    String::new()
                };
                let barrier = &mut run.fits[fit as usize];
                if !matches!(barrier, FitBarrier::Gathered) {
                    return None;
                }
                *barrier = FitBarrier::Running;
                Some(TaskPayload::Fit {
                    step: run.steps[i].clone(),
                    template: run.steps[i].estimator.clone(),
                    reduce,
                    upstream,
                    parts: std::sync::Arc::new(Vec::new()),
                })
            }
        }
    }

    /// Queues a partition's ready stage: with its holder when a worker holds its data.
    pub(super) fn enqueue_chain(
        &mut self,
        run_id: u32,
        partition: u32,
        stage: usize,
        ready_s: f64,
    ) {
        let Some(run) = self.runs.get(&run_id) else {
            return;
        };
        let shape = run.plan.stages[stage].resources.clone();
        let t = TaskRef {
            run: run_id,
            task: TaskKind::Chain {
                stage: stage as u16,
                partition,
            },
            ready_s,
        };
        // A holder that runs the stage itself gets it (or one its peers cannot
        // fetch from); otherwise whoever takes it fetches the data from the
        // holder. Only a holder offering a resource asks whether plain workers
        // exist (a walk over every worker, kept off this per-task path).
        match run.parts[partition as usize].held_by() {
            Some(w)
                if self.workers.get(w as usize).is_some_and(|h| {
                    h.alive
                        && (self.peer_addrs.get(w as usize).is_none_or(Option::is_none) || {
                            let plain = !h.info.resources.is_empty() && self.plain_available();
                            Self::runs_next_stage(h, &shape, plain)
                        })
                }) =>
            {
                self.workers[w as usize].pinned.push_back((shape, t));
            }
            _ => self.push_ready(&shape, t),
        }
    }

    pub(super) fn push_ready(&mut self, shape: &Resources, t: TaskRef) {
        let queues = if self.suspects.is_suspect(t.run, t.task) {
            &mut self.suspect_ready
        } else {
            &mut self.ready
        };
        match queues.get_mut(shape) {
            Some(q) => q.push_back(t),
            None => queues.entry(shape.clone()).or_default().push_back(t),
        }
    }
}
