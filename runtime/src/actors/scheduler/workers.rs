//! Workers joining, leaving (their tasks and held partitions come back), being
//! drained for retirement, and listed.

use super::super::messages::*;
use super::{Scheduler, TaskRef, WorkerSlot};
use crate::error::RunError;
use crate::report::WorkerInfo;
use crate::resources::Resources;
use actix::prelude::*;
use std::collections::VecDeque;
use std::time::Instant;

/// Adds an in-process worker (its address and what it offers).
#[derive(Message)]
#[rtype(result = "u32")]
pub struct AddWorker {
    /// The worker's name in reports.
    pub name: String,
    /// What it offers.
    pub resources: Resources,
    /// Where its tasks go.
    pub addr: Recipient<RunTasks>,
    /// Its cluster queue, if any.
    pub queue: Option<String>,
    /// Its batch-system job id, if any.
    pub job: Option<String>,
    /// The label of its queue spec, on a cluster.
    pub label: Option<String>,
    /// Whether it is a worker process (whose outputs can stay where they are).
    pub remote: bool,
    /// Where to ask a worker process for its held partitions back.
    pub release: Option<Recipient<ReleaseHeld>>,
    /// Whom to tell that a lost worker process is forgotten (its proxy).
    pub forget: Option<Recipient<ForgetWorker>>,
    /// The memory it may use, in bytes, when known.
    pub memory: Option<u64>,
    /// Where its peers reach it (a worker process listening for them).
    pub peer: Option<String>,
}

impl Handler<AddWorker> for Scheduler {
    type Result = u32;

    fn handle(&mut self, msg: AddWorker, _ctx: &mut Context<Self>) -> u32 {
        let id = self.workers.len() as u32;
        self.peer_addrs.push(msg.peer.clone());
        tracing::info!(worker = %msg.name, resources = %msg.resources, "worker added");
        self.workers.push(WorkerSlot {
            info: WorkerInfo {
                id,
                name: msg.name,
                resources: msg.resources.clone(),
                queue: msg.queue,
                job: msg.job,
                label: msg.label,
                memory: msg.memory,
            },
            addr: msg.addr,
            release: msg.release,
            forget: msg.forget,
            free: msg.resources,
            in_flight: 0,
            alive: true,
            draining: false,
            drain_waiters: Vec::new(),
            joined: Instant::now(),
            left: None,
            idle_since: Some(Instant::now()),
            in_hand: Default::default(),
            busy_s: 0.0,
            remote: msg.remote,
            pinned: VecDeque::new(),
            isolated: false,
        });
        self.dispatch();
        self.tell_watchers();
        id
    }
}

/// A worker is gone: its unfinished tasks come back to run elsewhere.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WorkerLost {
    /// The worker.
    pub worker: u32,
    /// The tasks it held and never reported.
    pub unfinished: Vec<TaskEnvelope>,
    /// Whether the tasks reached the worker (`false`: they were handed to it
    /// after it was lost, never ran there, and blame nobody).
    pub ran: bool,
    /// Why it is gone.
    pub reason: String,
}

impl Handler<WorkerLost> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: WorkerLost, ctx: &mut Context<Self>) {
        let w = msg.worker;
        if let Some(slot) = self.workers.get_mut(w as usize) {
            if let Some(f) = slot.forget.take() {
                // Everything sent to it was sent before this notice.
                f.do_send(ForgetWorker);
            }
            slot.alive = false;
            slot.left.get_or_insert_with(Instant::now);
            slot.pinned.clear();
            slot.in_hand.clear();
            if msg.unfinished.is_empty() && (self.runs.is_empty() || slot.draining) {
                tracing::info!(worker = %slot.info.name, reason = %msg.reason, "idle or retired worker left");
            } else {
                tracing::warn!(worker = %slot.info.name, reason = %msg.reason, requeued = msg.unfinished.len(), "worker lost: requeueing its tasks");
            }
        }
        // Blame the only task it had; with several, each becomes a suspect and
        // runs alone from now on.
        let keys: Vec<(u32, TaskKind)> = msg.unfinished.iter().map(|e| (e.run, e.task)).collect();
        let certain = super::suspects::culprit(&keys);
        // Every run that had tasks or data on it counts the loss.
        let mut hit: std::collections::BTreeSet<u32> = keys.iter().map(|(r, _)| *r).collect();
        hit.extend(
            self.runs
                .iter()
                .filter(|(_, r)| r.parts.iter().any(|p| p.held_by() == Some(w)))
                .map(|(id, _)| *id),
        );
        // Counted first: requeueing may finish a run (a quarantine) or fail it.
        if msg.ran {
            self.count_lost_worker(&hit);
        }
        let certain = certain.filter(|_| msg.ran);
        if msg.ran && certain.is_none() && keys.len() > 1 {
            tracing::warn!(
                tasks = keys.len(),
                "a worker died holding several tasks: each will run alone"
            );
        }
        // Rows it kept for fits still waiting for them are made again (before
        // its fit tasks go back: a fit that lost rows gathers again).
        self.fit_inputs_lost(w);
        for env in msg.unfinished {
            let key = (env.run, env.task);
            if msg.ran && certain.is_none() {
                self.suspects.suspect(env.run, env.task);
            }
            self.requeue_lost(w, env, certain == Some(key));
        }
        self.gone_worker_of_lingering(w);
        self.kept_holder_lost(w);
        // Ready tasks of partitions it held that were waiting for another
        // worker to fetch them: their partitions are rebuilt and queued again.
        let runs = &self.runs;
        for q in self
            .ready
            .values_mut()
            .chain(self.suspect_ready.values_mut())
        {
            q.retain(|t| match t.task {
                TaskKind::Chain { partition, .. } => runs
                    .get(&t.run)
                    .and_then(|r| r.parts.get(partition as usize))
                    .is_none_or(|p| p.held_by() != Some(w)),
                TaskKind::Fit { .. } => true,
            });
        }
        // Partitions whose data lived on the lost worker start again from their
        // source: their lineage is the input plus the stages, which run again
        // (in one task where one worker can run them all).
        let ids: Vec<u32> = self.runs.keys().copied().collect();
        let mut rebuilt = 0;
        for id in ids {
            let Some(run) = self.runs.get_mut(&id) else {
                continue;
            };
            let mut outbox = super::super::run::RunOutbox::default();
            rebuilt += run.on_holder_lost(w, &mut outbox);
            let ready_s = run.now();
            self.deliver(id, outbox, ready_s);
        }
        if rebuilt > 0 {
            tracing::warn!(
                partitions = rebuilt,
                "rebuilding partitions held by the lost worker"
            );
        }
        self.fail_unservable(&format!("the last one was lost: {}", msg.reason));
        self.start_decisions(ctx);
        self.dispatch();
        self.check_drained(w);
        self.tell_watchers();
    }
}

impl Scheduler {
    /// Counts a lost worker against the budget of each run it held work of; a run
    /// over the budget fails naming its suspect tasks.
    fn count_lost_worker(&mut self, runs: &std::collections::BTreeSet<u32>) {
        let limit = self.config.max_workers_lost;
        let mut over = Vec::new();
        for id in runs {
            let Some(run) = self.runs.get_mut(id) else {
                continue;
            };
            run.workers_lost += 1;
            if run.workers_lost > limit {
                let suspects: Vec<String> = self
                    .suspects
                    .of_run(*id)
                    .into_iter()
                    .take(10)
                    .map(|(s, deaths, kills)| {
                        let task = match s {
                            super::suspects::Suspect::Partition(p) => {
                                format!("partition {p} ({})", run.parts_keys(p as usize))
                            }
                            super::suspects::Suspect::Fit(f) => {
                                run.describe(TaskKind::Fit { fit: f })
                            }
                        };
                        format!("{task}: in {deaths} deaths, caused {kills}")
                    })
                    .collect();
                let suspects = if suspects.is_empty() {
                    "none known".to_string()
                } else {
                    suspects.join("; ")
                };
                over.push((*id, run.workers_lost, suspects));
            }
        }
        for (id, lost, suspects) in over {
            self.fail_run(
                id,
                RunError::WorkersLost {
                    lost,
                    limit,
                    suspects,
                },
            );
        }
    }

    /// Puts back one task a lost worker never reported; a task that killed its
    /// worker `max_task_kills` times is quarantined instead.
    pub(super) fn requeue_lost(&mut self, w: u32, env: TaskEnvelope, culprit: bool) {
        if let Some(slot) = self.workers.get_mut(w as usize) {
            slot.in_flight = slot.in_flight.saturating_sub(1);
        }
        if let Some(c) = self.in_flight.get_mut(&env.resources) {
            *c = c.saturating_sub(1);
        }
        let kills = if culprit {
            self.suspects.killed(env.run, env.task)
        } else {
            0
        };
        let limit = self.config.max_task_kills;
        // The task as it goes back into a ready queue.
        let again = TaskRef {
            run: env.run,
            task: env.task,
            ready_s: env.ready_s,
        };
        let Some(run) = self.runs.get_mut(&env.run) else {
            return;
        };
        match (env.task, env.payload) {
            (TaskKind::Chain { partition, .. }, TaskPayload::Chain { input, .. }) => {
                let p = partition as usize;
                // The input: the one sent, or (when the worker held it) the source.
                let (input, from_source) = match input {
                    ChainInput::Here(b) => (Some(b), false),
                    ChainInput::Held | ChainInput::Peer { .. } => (run.sources[p].clone(), true),
                };
                let Some(input) = input else {
                    self.fail_run(
                        env.run,
                        RunError::Internal(
                            "a lost partition has no source to rebuild it from".into(),
                        ),
                    );
                    return;
                };
                if kills >= limit {
                    // Quarantine: the partition's samples fail with the reason, and
                    // the rest of the run goes on.
                    let reason = format!("task killed its worker {kills} times; quarantined");
                    tracing::error!(keys = %input.keys().join(", "), %reason, "poison task");
                    let failed = input.with_all_failed("-", &reason);
                    let first_failed = input
                        .keys()
                        .iter()
                        .take(crate::exec::FAILED_SAMPLES_SHOWN)
                        .map(|key| crate::bag::FailedSample {
                            key: key.to_string(),
                            step: "-".into(),
                            reason: reason.clone(),
                        })
                        .collect();
                    let _ = run.parts[p].requeue(w, input);
                    let _ = run.parts[p].dispatch(w);
                    if let Some(slot) = self.workers.get_mut(w as usize) {
                        slot.in_flight += 1;
                    }
                    *self.in_flight.entry(env.resources.clone()).or_insert(0) += 1;
                    let now = Instant::now();
                    let outcome = TaskOutcome {
                        ready_s: env.ready_s,
                        run: env.run,
                        task: env.task,
                        resources: env.resources,
                        started: now,
                        finished: now,
                        result: TaskResult::Chain(crate::exec::ChainOutput {
                            held: false,
                            new_failures: failed.len(),
                            first_failed,
                            batch: std::sync::Arc::new(failed),
                            contribution: None,
                            checkpoints: Vec::new(),
                        }),
                    };
                    self.on_done(w, vec![outcome]);
                    return;
                }
                if run.parts[p].requeue(w, input).is_err() {
                    return;
                }
                if from_source {
                    if let Some(Some(stage)) = run.rebuild_lost(p) {
                        self.enqueue_chain(env.run, partition, stage, env.ready_s);
                    }
                } else {
                    self.push_ready(&env.resources, again);
                }
            }
            (TaskKind::Fit { fit }, TaskPayload::Fit { .. }) => {
                if kills >= limit {
                    let step = run.steps[run.plan.fits[fit as usize].step].name.clone();
                    let reason = format!("the fit killed its worker {kills} times");
                    self.fail_run(env.run, RunError::FitFailed { step, reason });
                    return;
                }
                // Its estimator actor still holds the inputs (or where they are
                // kept), unless rows were lost with their holders: then it
                // gathers them again, and is queued once it has them.
                if matches!(
                    run.fits[fit as usize],
                    super::super::run::FitBarrier::Running
                ) {
                    run.fits[fit as usize] = super::super::run::FitBarrier::Gathered;
                    self.push_ready(&env.resources, again);
                }
                self.regather_if_let_go(env.run, fit as usize);
            }
            _ => tracing::error!("lost task with a mismatched payload"),
        }
    }
}

/// The number of workers currently connected and alive.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct LiveWorkers;

impl Handler<LiveWorkers> for Scheduler {
    type Result = usize;

    fn handle(&mut self, _msg: LiveWorkers, _ctx: &mut Context<Self>) -> usize {
        self.workers.iter().filter(|w| w.alive).count()
    }
}

/// Retires worker `0`: it gets no new task, its held partitions are sent back
/// (so the rest of the run goes on elsewhere), and the reply comes once it has no
/// task and holds nothing (or is gone). Delete its job after that.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain(pub u32);

impl Handler<Drain> for Scheduler {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Drain, _ctx: &mut Context<Self>) -> Self::Result {
        let w = msg.0;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let Some(slot) = self.workers.get_mut(w as usize) else {
            return Box::pin(async {});
        };
        slot.draining = true;
        slot.drain_waiters.push(tx);
        let held: Vec<(u32, u32)> = self
            .runs
            .iter()
            .flat_map(|(id, r)| {
                r.parts
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.held_by() == Some(w))
                    .map(move |(i, _)| (*id, i as u32))
            })
            .chain(self.kept.on(w))
            .collect();
        let slot = &self.workers[w as usize];
        tracing::info!(worker = %slot.info.name, held = held.len(), in_flight = slot.in_flight, "draining worker");
        if !held.is_empty() {
            match &slot.release {
                Some(r) => r.do_send(ReleaseHeld {
                    parts: held,
                    discard: false,
                    ..Default::default()
                }),
                None => {
                    tracing::error!(worker = %slot.info.name, "a worker holds partitions but cannot release them")
                }
            }
        }
        self.check_drained(w);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<PartitionsReturned> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: PartitionsReturned, _ctx: &mut Context<Self>) {
        let w = msg.worker;
        let mut back = std::collections::HashSet::new();
        let parts = self.kept_returned(msg.parts);
        for (run_id, p, data) in parts {
            let Some(run) = self.runs.get_mut(&run_id) else {
                continue;
            };
            let Some(slot) = run.parts.get_mut(p as usize) else {
                continue;
            };
            let ok = match data {
                Some(b) => slot.hand_back(w, b).is_ok(),
                None => match run.sources[p as usize].clone() {
                    Some(source) => slot.rebuild(source).is_ok(),
                    None => false,
                },
            };
            if ok {
                back.insert((run_id, p));
            } else {
                tracing::error!(
                    run = run_id,
                    partition = p,
                    "a returned partition does not fit its state"
                );
            }
        }
        // Tasks pinned to the worker for those partitions may now run anywhere.
        if let Some(slot) = self.workers.get_mut(w as usize) {
            let pinned = std::mem::take(&mut slot.pinned);
            let (free, keep): (Vec<_>, Vec<_>) = pinned.into_iter().partition(|(_, t)| {
                matches!(t.task, TaskKind::Chain { partition, .. } if back.contains(&(t.run, partition)))
            });
            self.workers[w as usize].pinned = keep.into_iter().collect();
            for (shape, t) in free {
                self.push_ready(&shape, t);
            }
        }
        self.dispatch();
        self.check_drained(w);
        self.tell_watchers();
    }
}

/// A worker as the scheduler sees it.
#[derive(Clone, Debug)]
pub struct WorkerState {
    /// Who and where it is.
    pub info: WorkerInfo,
    /// Whether it is connected and alive.
    pub alive: bool,
    /// Tasks handed to it and not yet reported.
    pub in_flight: usize,
    /// Being retired (no new tasks).
    pub draining: bool,
    /// When it joined.
    pub joined: Instant,
    /// When it was lost or left, if it did.
    pub left: Option<Instant>,
    /// Since when it has had no task (None while it has some or is gone).
    pub idle_since: Option<Instant>,
    /// Seconds it spent running tasks.
    pub busy_s: f64,
}

/// Every worker that ever joined, alive or not, in joining order.
#[derive(Message)]
#[rtype(result = "Vec<WorkerState>")]
pub struct ListWorkers;

impl Handler<ListWorkers> for Scheduler {
    type Result = MessageResult<ListWorkers>;

    fn handle(&mut self, _msg: ListWorkers, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.workers
                .iter()
                .map(|w| WorkerState {
                    info: w.info.clone(),
                    alive: w.alive,
                    in_flight: w.in_flight,
                    draining: w.draining,
                    joined: w.joined,
                    left: w.left,
                    idle_since: w.idle_since.filter(|_| w.alive),
                    busy_s: w.busy_s,
                })
                .collect(),
        )
    }
}
