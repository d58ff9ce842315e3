//! [`Scheduler`]: owns the task graphs of running runs, the ready queues per resource
//! shape, and the window of tasks handed to each worker.
//!
//! Dispatch follows the measured costs of actix on this machine kind: tasks go to
//! workers in one-way batched messages, results come back the same way, and nothing
//! awaits a reply per task. The scheduler counts its backlog exactly (ready queues
//! plus in-flight windows, per resource shape), since actix exposes no mailbox length.

use super::estimator_actor::EstimatorActor;
use super::messages::*;
use super::partition::{Next, PartitionSlot, SlotInput};
use crate::bag::Bag;
use crate::bag::FailedSample;
use crate::batch::Batch;
use crate::config::RuntimeConfig;
use crate::dashboard::view::{FitView, RunView, RuntimeView, TaskCounts, WorkerRow};
use crate::error::RunError;
use crate::estimator::Estimator;
use crate::exec::{Contribution, FeedSpec, StageExec};
use crate::plan::{Plan, StepWork};
use crate::report::{RunReport, TaskLabel, TaskOp, TaskRecord, WorkerInfo};
use crate::resources::Resources;
use crate::run::{RunOutput, RunRequest};
use crate::step::Step;
use actix::prelude::*;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A task waiting in a ready queue.
#[derive(Clone, Copy, Debug)]
struct TaskRef {
    run: u32,
    task: TaskKind,
    ready_s: f64,
}

struct WorkerSlot {
    info: WorkerInfo,
    addr: Recipient<RunTasks>,
    /// Where to ask for held partitions back (worker processes).
    release: Option<Recipient<ReleaseHeld>>,
    free: Resources,
    in_flight: usize,
    alive: bool,
    /// Being retired: no new tasks; held partitions are being sent back.
    draining: bool,
    drain_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
    joined: Instant,
    left: Option<Instant>,
    /// Since when it has had no task (None while it has some).
    idle_since: Option<Instant>,
    /// The steps of the task it was given last (for the dashboard).
    current: Option<String>,
    /// Seconds spent running tasks.
    busy_s: f64,
    /// A worker process (its outputs can stay where they are), not a thread.
    remote: bool,
    /// Ready tasks whose input this worker holds: they run only here.
    pinned: VecDeque<(Resources, TaskRef)>,
}

struct RunState {
    id: String,
    plan: Plan,
    steps: Vec<Arc<Step>>,
    models: Vec<Option<Arc<dyn Estimator>>>,
    stage_exec: Vec<Option<Arc<StageExec>>>,
    labels: Vec<TaskLabel>,
    parts: Vec<PartitionSlot>,
    estimators: Vec<Addr<EstimatorActor>>,
    fit_inputs: Vec<Option<Vec<Contribution>>>,
    fit_done: Vec<bool>,
    /// Whether a fit's inputs were all gathered (later contributions are dropped).
    fit_started: Vec<bool>,
    /// The input partitions, kept while worker processes may hold partitions, to
    /// rebuild those of a lost worker (their lineage starts here).
    sources: Vec<Option<Arc<Batch>>>,
    waiting: Vec<Vec<u32>>,
    /// Per task label (stages, then fits): seconds measured and tasks measured.
    label_time: Vec<(f64, u32)>,
    partitions_left: usize,
    fits_left: usize,
    tasks: Vec<TaskRecord>,
    samples: usize,
    checkpoints: BTreeMap<String, crate::exec::OpStats>,
    started: Instant,
    reply: Option<tokio::sync::oneshot::Sender<Result<RunOutput, RunError>>>,
    span: tracing::Span,
}

impl RunState {
    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn since(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.started).as_secs_f64()
    }

    /// Builds the shared part of a stage's tasks once its models exist.
    fn build_stage(&mut self, s: usize) -> Result<(), RunError> {
        let stage = &self.plan.stages[s];
        let mut ops = Vec::with_capacity(stage.ops.len());
        for op in &stage.ops {
            let model = self.models[op.step]
                .clone()
                .ok_or_else(|| RunError::NotFitted {
                    step: self.steps[op.step].name.clone(),
                })?;
            let step = self.steps[op.step].clone();
            let force = match (step.features_dir(), &step.checkpoint) {
                (Some(dir), Some(ck)) => {
                    let wanted = crate::checkpoint::manifest::Manifest::of(&step, model.as_ref());
                    crate::checkpoint::manifest::ensure(dir, &wanted, ck.on_change)?
                }
                _ => false,
            };
            ops.push(crate::exec::ChainOp {
                step,
                model,
                kind: op.kind,
                force,
            });
        }
        let feeds = stage.feeds_fit.map(|f| {
            let node = &self.plan.fits[f];
            let step = self.steps[node.step].clone();
            FeedSpec {
                template: step.estimator.clone(),
                step,
                reduce: node.reduce,
            }
        });
        self.stage_exec[s] = Some(Arc::new(StageExec { ops, feeds }));
        Ok(())
    }

    /// Builds every stage whose models all exist (stages split by resource tags
    /// have no fit of their own, so they are built as soon as their models are known).
    fn build_ready_stages(&mut self) -> Result<(), RunError> {
        for s in 0..self.plan.stages.len() {
            let built = self.stage_exec[s].is_some();
            let models_known = self.plan.stages[s]
                .ops
                .iter()
                .all(|op| self.models[op.step].is_some());
            let fit_done = self.plan.stages[s]
                .after_fit
                .is_none_or(|f| self.fit_done[f]);
            if !built && models_known && fit_done {
                self.build_stage(s)?;
            }
        }
        if self.stage_exec[0].is_none() {
            return Err(RunError::InvalidPipeline(
                "the first stage has a step without a model".into(),
            ));
        }
        Ok(())
    }

    /// The dashboard's view of this run.
    fn view(&self, state: &str) -> RunView {
        let names: Vec<(String, String)> = (0..self.plan.stages.len())
            .map(|s| {
                let l = &self.labels[s];
                (l.step_names(), l.resources.to_string())
            })
            .collect();
        let states: Vec<_> = self.parts.iter().map(|p| p.state()).collect();
        let failed = state == "failed";
        let stages = crate::dashboard::view::stage_views(&names, &states, failed);
        let fits: Vec<FitView> = self
            .plan
            .fits
            .iter()
            .enumerate()
            .map(|(f, node)| FitView {
                step: self.steps[node.step].name.clone(),
                resources: node.resources.to_string(),
                state: if self.fit_done[f] {
                    "done"
                } else if failed {
                    "failed"
                } else if self.fit_started[f] {
                    "running"
                } else {
                    "waiting"
                }
                .to_string(),
            })
            .collect();
        let mut tasks = TaskCounts::default();
        for st in &stages {
            tasks.add(&st.tasks);
        }
        for f in &fits {
            match f.state.as_str() {
                "done" => tasks.done += 1,
                "running" => tasks.running += 1,
                "failed" => tasks.failed += 1,
                _ => tasks.waiting += 1,
            }
        }
        RunView {
            id: self.id.clone(),
            state: state.to_string(),
            wall_s: self.now(),
            partitions: self.parts.len(),
            samples: self.samples,
            tasks,
            stages,
            fits,
            failed_samples: Vec::new(),
            error: None,
        }
    }

    fn fit_label(&self, fit: usize) -> u32 {
        (self.plan.stages.len() + fit) as u32
    }

    /// The index of a task's label: its stage, or its fit after the stages.
    fn label_of(&self, task: TaskKind) -> usize {
        match task {
            TaskKind::Chain { stage, .. } => stage as usize,
            TaskKind::Fit { fit } => self.fit_label(fit as usize) as usize,
        }
    }
}

/// The scheduler actor.
pub struct Scheduler {
    config: RuntimeConfig,
    workers: Vec<WorkerSlot>,
    /// Resources that attached cluster queues can offer (set by cluster back-ends).
    cluster_offers: Vec<Resources>,
    runs: HashMap<u32, RunState>,
    next_run: u32,
    ready: BTreeMap<Resources, VecDeque<TaskRef>>,
    in_flight: BTreeMap<Resources, usize>,
    avg_task_s: f64,
    /// How many workers each task has been running on when they died.
    kills: HashMap<(u32, TaskKind), u32>,
    /// Who is told when the backlog or the workers change.
    watchers: Vec<Recipient<BacklogChanged>>,
    /// Whether the watchers were told and have not asked for the backlog since.
    watchers_told: bool,
    /// The dashboard's views of the latest finished runs (newest last).
    finished_views: VecDeque<RunView>,
}

impl Scheduler {
    /// A scheduler with no worker yet.
    pub fn new(config: RuntimeConfig) -> Self {
        let avg = config.initial_task_estimate.as_secs_f64();
        Self {
            config,
            workers: Vec::new(),
            cluster_offers: Vec::new(),
            runs: HashMap::new(),
            next_run: 0,
            ready: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            avg_task_s: avg,
            kills: HashMap::new(),
            watchers: Vec::new(),
            watchers_told: false,
            finished_views: VecDeque::new(),
        }
    }

    /// Tells the watchers that the backlog or the workers changed (once until they
    /// next ask for the backlog).
    fn tell_watchers(&mut self) {
        if self.watchers_told || self.watchers.is_empty() {
            return;
        }
        self.watchers_told = true;
        self.watchers.retain(|w| w.try_send(BacklogChanged).is_ok());
    }

    /// Answers the drain waiters of worker `w` once it has no task and holds no
    /// partition (or is gone).
    fn check_drained(&mut self, w: u32) {
        let Some(slot) = self.workers.get(w as usize) else {
            return;
        };
        if slot.drain_waiters.is_empty() {
            return;
        }
        let holds = self
            .runs
            .values()
            .any(|r| r.parts.iter().any(|p| p.held_by() == Some(w)));
        if !slot.alive || (slot.in_flight == 0 && !holds) {
            for tx in self.workers[w as usize].drain_waiters.drain(..) {
                let _ = tx.send(());
            }
        }
    }

    fn window(&self) -> usize {
        let w = self.config.window_target.as_secs_f64() / self.avg_task_s.max(1e-9);
        (w as usize).clamp(self.config.min_window, self.config.max_window)
    }

    fn offered(&self) -> String {
        let mut v: Vec<String> = self
            .workers
            .iter()
            .map(|w| w.info.resources.to_string())
            .collect();
        v.extend(self.cluster_offers.iter().map(|r| format!("queue {r}")));
        v.dedup();
        v.join(", ")
    }

    fn servable(&self, need: &Resources) -> Result<(), (String, u32)> {
        if self
            .workers
            .iter()
            .any(|w| w.alive && !w.draining && w.info.resources.covers(need))
            || self.cluster_offers.iter().any(|r| r.covers(need))
        {
            return Ok(());
        }
        // Name the resource that nobody covers (or the first one, when only the
        // combination is missing).
        let (name, amount) = need
            .iter()
            .find(|(k, v)| {
                !self.workers.iter().any(|w| w.info.resources.get(k) >= *v)
                    && !self.cluster_offers.iter().any(|r| r.get(k) >= *v)
            })
            .or_else(|| need.iter().next())
            .map(|(k, v)| (k.to_string(), v))
            .unwrap_or_default();
        Err((name, amount))
    }

    fn submit(&mut self, request: RunRequest, ctx: &mut Context<Self>) -> Result<u32, RunError> {
        let RunRequest { steps, bag } = request;
        let mut names = std::collections::HashSet::new();
        for s in &steps {
            if s.step.name.is_empty() || !names.insert(s.step.name.clone()) {
                return Err(RunError::InvalidPipeline(format!(
                    "step names must be unique and not empty: {:?}",
                    s.step.name
                )));
            }
        }
        let mut models = Vec::with_capacity(steps.len());
        let mut work = Vec::with_capacity(steps.len());
        for s in &steps {
            let stateless = !s.step.requires_fit();
            let fit = s.fit && !stateless;
            let model = if stateless {
                Some(s.step.estimator.clone())
            } else {
                s.fitted.clone()
            };
            if s.apply.is_some() && !fit && model.is_none() {
                return Err(RunError::NotFitted {
                    step: s.step.name.clone(),
                });
            }
            models.push(if fit { None } else { model });
            work.push(StepWork {
                name: s.step.name.clone(),
                fit,
                apply: s.apply,
                reduce: s.step.estimator.supports_partial_fit(),
                fit_resources: s.step.fit_resources.clone(),
                transform_resources: s.step.transform_resources.clone(),
            });
        }
        let plan = Plan::build(&work);
        let steps: Vec<Arc<Step>> = steps.into_iter().map(|s| s.step).collect();
        if self.cluster_offers.is_empty() && !self.workers.iter().any(|w| w.alive) {
            return Err(RunError::NoWorker(
                "the runtime has no live worker and no cluster queue".into(),
            ));
        }
        // Every tag must be servable by some worker or attached queue.
        for stage in &plan.stages {
            if let Err((resource, amount)) = self.servable(&stage.resources) {
                return Err(RunError::UnservableResource {
                    step: stage
                        .ops
                        .first()
                        .map(|o| steps[o.step].name.clone())
                        .unwrap_or_default(),
                    op: "transform",
                    resource,
                    amount,
                    offered: self.offered(),
                });
            }
        }
        for fit in &plan.fits {
            if let Err((resource, amount)) = self.servable(&fit.resources) {
                return Err(RunError::UnservableResource {
                    step: steps[fit.step].name.clone(),
                    op: "fit",
                    resource,
                    amount,
                    offered: self.offered(),
                });
            }
        }
        let mut labels: Vec<TaskLabel> = plan
            .stages
            .iter()
            .map(|s| TaskLabel {
                op: TaskOp::Transform,
                steps: s.ops.iter().map(|o| steps[o.step].name.clone()).collect(),
                resources: s.resources.clone(),
                after_fit: s.after_fit,
                feeds_fit: s.feeds_fit,
            })
            .collect();
        labels.extend(plan.fits.iter().map(|f| TaskLabel {
            op: TaskOp::Fit,
            steps: vec![steps[f.step].name.clone()],
            resources: f.resources.clone(),
            after_fit: None,
            feeds_fit: None,
        }));
        let run = self.next_run;
        self.next_run = self.next_run.wrapping_add(1);
        let id = uuid::Uuid::new_v4().to_string();
        let span = tracing::info_span!("run", id = %id, partitions = bag.npartitions());
        let npart = bag.npartitions();
        let samples = bag.len();
        let keep_sources = self.workers.iter().any(|w| w.remote) || !self.cluster_offers.is_empty();
        let arcs = bag.into_arcs();
        let sources: Vec<Option<Arc<Batch>>> = arcs
            .iter()
            .map(|b| keep_sources.then(|| b.clone()))
            .collect();
        let parts: Vec<PartitionSlot> = arcs
            .into_iter()
            .enumerate()
            .map(|(i, b)| PartitionSlot::new(i as u32, b))
            .collect();
        let estimators = plan
            .fits
            .iter()
            .enumerate()
            .map(|(f, node)| {
                EstimatorActor::new(
                    run,
                    f as u16,
                    steps[node.step].name.clone(),
                    npart,
                    ctx.address().recipient(),
                )
                .start()
            })
            .collect();
        let nstages = plan.stages.len();
        let nfits = plan.fits.len();
        let mut state = RunState {
            id,
            steps,
            models,
            stage_exec: vec![None; nstages],
            labels,
            parts,
            estimators,
            fit_inputs: vec![None; nfits],
            fit_done: vec![false; nfits],
            fit_started: vec![false; nfits],
            sources,
            waiting: vec![Vec::new(); nstages],
            label_time: vec![(0.0, 0); nstages + nfits],
            partitions_left: npart,
            fits_left: nfits,
            tasks: Vec::with_capacity(plan.task_count(npart)),
            samples,
            checkpoints: BTreeMap::new(),
            started: Instant::now(),
            reply: None,
            span,
            plan,
        };
        state.build_ready_stages()?;
        {
            let _e = state.span.enter();
            tracing::info!(
                tasks = state.plan.task_count(npart),
                stages = nstages,
                fits = nfits,
                "run submitted"
            );
        }
        let shape = state.plan.stages[0].resources.clone();
        let q = self.ready.entry(shape).or_default();
        for p in 0..npart as u32 {
            q.push_back(TaskRef {
                run,
                task: TaskKind::Chain {
                    stage: 0,
                    partition: p,
                },
                ready_s: 0.0,
            });
        }
        self.runs.insert(run, state);
        Ok(run)
    }

    /// Hands ready tasks to workers with room, in batches: first the tasks whose
    /// input the worker already holds, then the shared queues.
    fn dispatch(&mut self) {
        let pinned: usize = self.workers.iter().map(|w| w.pinned.len()).sum();
        let total_ready: usize = self.ready.values().map(|q| q.len()).sum::<usize>() + pinned;
        if total_ready == 0 || self.workers.is_empty() {
            return;
        }
        let window = self.window();
        let share = total_ready.div_ceil(self.workers.len()).max(1);
        // Workers offering a resource are kept for the tasks that need one, as long
        // as a plain worker (or a cluster queue of them) exists for plain tasks.
        let plain_available = self
            .workers
            .iter()
            .any(|w| w.alive && !w.draining && w.info.resources.is_empty())
            || self.cluster_offers.iter().any(|r| r.is_empty());
        let mut lost = Vec::new();
        for w in 0..self.workers.len() {
            let worker = &mut self.workers[w];
            let room = window.saturating_sub(worker.in_flight);
            if room == 0 || !worker.alive || worker.draining {
                continue;
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
                Self::hand_over(
                    &mut self.runs,
                    &mut self.in_flight,
                    worker,
                    &shape,
                    t,
                    &mut batch,
                    &mut lost,
                );
            }
            // Shapes that need special resources first, so scarce workers serve them.
            let reserved = plain_available && !worker.info.resources.is_empty();
            for (shape, q) in self.ready.iter_mut().rev() {
                if reserved && shape.is_empty() {
                    continue;
                }
                while batch.len() < take && !q.is_empty() && worker.free.covers(shape) {
                    let t = q.pop_front().expect("non-empty");
                    Self::hand_over(
                        &mut self.runs,
                        &mut self.in_flight,
                        worker,
                        shape,
                        t,
                        &mut batch,
                        &mut lost,
                    );
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
                RunError::InvalidPipeline("internal error: a ready task lost its inputs".into()),
            );
        }
    }

    /// Moves one ready task into `batch` for `worker`, accounting for it.
    fn hand_over(
        runs: &mut HashMap<u32, RunState>,
        in_flight: &mut BTreeMap<Resources, usize>,
        worker: &mut WorkerSlot,
        shape: &Resources,
        t: TaskRef,
        batch: &mut Vec<TaskEnvelope>,
        lost: &mut Vec<u32>,
    ) {
        let Some(run) = runs.get_mut(&t.run) else {
            return;
        };
        let Some(payload) = Self::payload(run, t.task, worker) else {
            // A ready task whose inputs are missing is a scheduler bug: fail the run
            // loudly rather than lose the task.
            tracing::error!(run = t.run, task = ?t.task, "ready task without its inputs");
            lost.push(t.run);
            return;
        };
        worker.free.take(shape);
        worker.in_flight += 1;
        worker.idle_since = None;
        if worker.current.is_none() {
            let label = run.label_of(t.task);
            worker.current = run
                .labels
                .get(label)
                .map(|l| format!("{} {}", l.step_names(), l.op.as_str()));
        }
        *in_flight.entry(shape.clone()).or_insert(0) += 1;
        batch.push(TaskEnvelope {
            ready_s: t.ready_s,
            run: t.run,
            task: t.task,
            resources: shape.clone(),
            payload,
        });
    }

    fn payload(run: &mut RunState, task: TaskKind, worker: &WorkerSlot) -> Option<TaskPayload> {
        match task {
            TaskKind::Chain { partition, .. } => {
                let p = partition as usize;
                let (stage, input) = run.parts[p].dispatch_to(worker.info.id).ok()?;
                let s = stage as usize;
                // A worker process keeps the output when it can run the next stage
                // too and the partition can be rebuilt if the worker is lost.
                let hold = worker.remote
                    && !worker.draining
                    && run.sources[p].is_some()
                    && run
                        .plan
                        .stages
                        .get(s + 1)
                        .is_some_and(|next| worker.info.resources.covers(&next.resources));
                Some(TaskPayload::Chain {
                    input: match input {
                        SlotInput::Here(b) => ChainInput::Here(b),
                        SlotInput::Held => ChainInput::Held,
                    },
                    stage: run.stage_exec[s].clone()?,
                    hold,
                })
            }
            TaskKind::Fit { fit } => {
                let parts = run.fit_inputs[fit as usize].take()?;
                let node = &run.plan.fits[fit as usize];
                Some(TaskPayload::Fit {
                    step: run.steps[node.step].clone(),
                    template: run.steps[node.step].estimator.clone(),
                    reduce: node.reduce,
                    parts,
                })
            }
        }
    }

    /// Queues a partition's ready stage: with its holder when a worker holds its data.
    fn enqueue_chain(&mut self, run_id: u32, partition: u32, stage: usize, ready_s: f64) {
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
        match run.parts[partition as usize].held_by() {
            Some(w) if self.workers.get(w as usize).is_some_and(|w| w.alive) => {
                self.workers[w as usize].pinned.push_back((shape, t));
            }
            _ => self.push_ready(&shape, t),
        }
    }

    fn push_ready(&mut self, shape: &Resources, t: TaskRef) {
        match self.ready.get_mut(shape) {
            Some(q) => q.push_back(t),
            None => {
                self.ready.insert(shape.clone(), VecDeque::from([t]));
            }
        }
    }

    fn on_done(&mut self, worker: u32, outcomes: Vec<TaskOutcome>) {
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
                    w.current = None;
                }
                let total = w.info.resources.clone();
                w.free.give_back(&o.resources, &total);
            }
            if let Some(c) = self.in_flight.get_mut(&o.resources) {
                *c -= 1;
            }
            let Some(run) = self.runs.get_mut(&o.run) else {
                continue;
            };
            let (started_s, finished_s) = (run.since(o.started), run.since(o.finished));
            let label = run.label_of(o.task);
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
                    } else {
                        match run.plan.stages[next_stage].after_fit {
                            Some(f) if !run.fit_done[f] => Next::WaitForFit,
                            _ => Next::Ready,
                        }
                    };
                    let new_failed = out.new_failures;
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
                        Next::WaitForFit => run.waiting[next_stage].push(partition),
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
                            run.fit_done[f] = true;
                            run.fits_left -= 1;
                            if let Err(e) = run.build_ready_stages() {
                                self.fail_run(o.run, e);
                                continue;
                            }
                            if let Some(s) =
                                run.plan.stages.iter().position(|s| s.after_fit == Some(f))
                            {
                                let waiting = std::mem::take(&mut run.waiting[s]);
                                let released: Vec<u32> = waiting
                                    .into_iter()
                                    .filter(|&p| run.parts[p as usize].release().is_ok())
                                    .collect();
                                for p in released {
                                    self.enqueue_chain(o.run, p, s, finished_s);
                                }
                            }
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

    fn send_contributions(&self, (run, fit): (u32, usize), parts: Vec<(u32, Contribution)>) {
        // A partition rebuilt after a worker loss contributes again; a fit that has
        // all its inputs already takes nothing more.
        if let Some(r) = self.runs.get(&run).filter(|r| !r.fit_started[fit]) {
            r.estimators[fit].do_send(Contribute { parts });
        }
    }

    fn finish_if_done(&mut self, run: u32) {
        let done = self
            .runs
            .get(&run)
            .is_some_and(|r| r.partitions_left == 0 && r.fits_left == 0);
        if !done {
            return;
        }
        let view = self.runs.get(&run).expect("run present").view("finished");
        self.keep_view(view);
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
        if let Some(v) = self.finished_views.back_mut() {
            v.failed_samples = failed.iter().take(100).cloned().collect();
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
            wall_s: state.now(),
        };
        {
            let _e = state.span.enter();
            tracing::info!(summary = %report.summary(), "run finished");
        }
        if let Some(reply) = state.reply.take() {
            let _ = reply.send(Ok(RunOutput {
                bag,
                models: std::mem::take(&mut state.models),
                report,
            }));
        }
    }

    /// Fails the runs whose ready tasks no live worker and no cluster queue can ever
    /// run (e.g. after the last worker with a resource was lost), instead of waiting.
    fn fail_unservable(&mut self, why: &str) {
        let mut doomed = Vec::new();
        for (shape, q) in &self.ready {
            if q.is_empty() || self.servable(shape).is_ok() {
                continue;
            }
            for t in q {
                doomed.push((t.run, shape.clone()));
            }
        }
        doomed.sort_by_key(|(r, _)| *r);
        doomed.dedup_by_key(|(r, _)| *r);
        for (run, shape) in doomed {
            let reason = format!("no worker left that can run tasks needing {shape} ({why})");
            self.fail_run(run, RunError::NoWorker(reason));
        }
    }

    /// Tells worker processes to drop the partitions of `run` they hold (its run
    /// failed: nothing will ask for them).
    fn discard_held(&mut self, run: u32) {
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
    fn keep_view(&mut self, view: RunView) {
        if self.finished_views.len() == 8 {
            self.finished_views.pop_front();
        }
        self.finished_views.push_back(view);
    }

    fn fail_run(&mut self, run: u32, error: RunError) {
        self.discard_held(run);
        if let Some(run_state) = self.runs.get(&run) {
            let mut view = run_state.view("failed");
            view.error = Some(error.to_string());
            self.keep_view(view);
        }
        if let Some(mut state) = self.runs.remove(&run) {
            {
                let _e = state.span.enter();
                tracing::warn!(%error, "run failed");
            }
            for q in self.ready.values_mut() {
                q.retain(|t| t.run != run);
            }
            if let Some(reply) = state.reply.take() {
                let _ = reply.send(Err(error));
            }
        }
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;
}

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
    /// Whether it is a worker process (whose outputs can stay where they are).
    pub remote: bool,
    /// Where to ask a worker process for its held partitions back.
    pub release: Option<Recipient<ReleaseHeld>>,
}

impl Handler<AddWorker> for Scheduler {
    type Result = u32;

    fn handle(&mut self, msg: AddWorker, _ctx: &mut Context<Self>) -> u32 {
        let id = self.workers.len() as u32;
        tracing::info!(worker = %msg.name, resources = %msg.resources, "worker added");
        self.workers.push(WorkerSlot {
            info: WorkerInfo {
                id,
                name: msg.name,
                resources: msg.resources.clone(),
                queue: msg.queue,
                job: msg.job,
            },
            addr: msg.addr,
            release: msg.release,
            free: msg.resources,
            in_flight: 0,
            alive: true,
            draining: false,
            drain_waiters: Vec::new(),
            joined: Instant::now(),
            left: None,
            idle_since: Some(Instant::now()),
            current: None,
            busy_s: 0.0,
            remote: msg.remote,
            pinned: VecDeque::new(),
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
    /// The task it said it was running, if any.
    pub culprit: Option<(u32, TaskKind)>,
    /// Why it is gone.
    pub reason: String,
}

impl Handler<WorkerLost> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: WorkerLost, _ctx: &mut Context<Self>) {
        let w = msg.worker;
        if let Some(slot) = self.workers.get_mut(w as usize) {
            slot.alive = false;
            slot.left.get_or_insert_with(Instant::now);
            slot.pinned.clear();
            if msg.unfinished.is_empty() && (self.runs.is_empty() || slot.draining) {
                tracing::info!(worker = %slot.info.name, reason = %msg.reason, "idle or retired worker left");
            } else {
                tracing::warn!(worker = %slot.info.name, reason = %msg.reason, requeued = msg.unfinished.len(), "worker lost: requeueing its tasks");
            }
        }
        for env in msg.unfinished {
            self.requeue_lost(w, env, msg.culprit);
        }
        // Partitions whose data lived on the lost worker start again from their
        // source: their lineage is the input plus the stages, which run again.
        let mut rebuilt = Vec::new();
        for (run_id, run) in self.runs.iter_mut() {
            for p in 0..run.parts.len() {
                if run.parts[p].held_by() != Some(w) {
                    continue;
                }
                if let Some(source) = run.sources[p].clone() {
                    if run.parts[p].rebuild(source).is_ok() {
                        rebuilt.push((*run_id, p as u32));
                    }
                }
            }
        }
        if !rebuilt.is_empty() {
            tracing::warn!(
                partitions = rebuilt.len(),
                "rebuilding partitions held by the lost worker"
            );
        }
        for (run, p) in rebuilt {
            self.enqueue_chain(run, p, 0, 0.0);
        }
        self.fail_unservable(&format!("the last one was lost: {}", msg.reason));
        self.dispatch();
        self.check_drained(w);
        self.tell_watchers();
    }
}

impl Scheduler {
    /// Puts back one task a lost worker never reported; a task that killed its
    /// worker `max_task_kills` times is quarantined instead.
    fn requeue_lost(&mut self, w: u32, env: TaskEnvelope, culprit: Option<(u32, TaskKind)>) {
        if let Some(slot) = self.workers.get_mut(w as usize) {
            slot.in_flight = slot.in_flight.saturating_sub(1);
        }
        if let Some(c) = self.in_flight.get_mut(&env.resources) {
            *c = c.saturating_sub(1);
        }
        let key = (env.run, env.task);
        let kills = if culprit == Some(key) {
            let k = self.kills.entry(key).or_insert(0);
            *k += 1;
            *k
        } else {
            0
        };
        let limit = self.config.max_task_kills;
        let Some(run) = self.runs.get_mut(&env.run) else {
            return;
        };
        match (env.task, env.payload) {
            (TaskKind::Chain { partition, .. }, TaskPayload::Chain { input, .. }) => {
                let p = partition as usize;
                // The input: the one sent, or (when the worker held it) the source.
                let (input, from_source) = match input {
                    ChainInput::Here(b) => (Some(b), false),
                    ChainInput::Held => (run.sources[p].clone(), true),
                };
                let Some(input) = input else {
                    self.fail_run(
                        env.run,
                        RunError::InvalidPipeline(
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
                        result: TaskResult::Chain(Box::new(crate::exec::ChainOutput {
                            held: false,
                            new_failures: failed.len(),
                            batch: failed,
                            contribution: None,
                            checkpoints: Vec::new(),
                        })),
                    };
                    self.on_done(w, vec![outcome]);
                    return;
                }
                if run.parts[p].requeue(w, input).is_err() {
                    return;
                }
                if from_source {
                    let _ = run.parts[p].rebuild(run.sources[p].clone().expect("source"));
                    self.enqueue_chain(env.run, partition, 0, env.ready_s);
                } else {
                    self.push_ready(
                        &env.resources,
                        TaskRef {
                            run: env.run,
                            task: env.task,
                            ready_s: env.ready_s,
                        },
                    );
                }
            }
            (TaskKind::Fit { fit }, TaskPayload::Fit { parts, .. }) => {
                if kills >= limit {
                    let step = run.steps[run.plan.fits[fit as usize].step].name.clone();
                    let reason = format!("the fit killed its worker {kills} times");
                    self.fail_run(env.run, RunError::FitFailed { step, reason });
                    return;
                }
                run.fit_inputs[fit as usize] = Some(parts);
                self.push_ready(
                    &env.resources,
                    TaskRef {
                        run: env.run,
                        task: env.task,
                        ready_s: env.ready_s,
                    },
                );
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

/// Tells `0` whenever the backlog or the workers change (at most once between two
/// [`GetBacklog`]s), e.g. a cluster's supervisor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WatchBacklog(pub Recipient<BacklogChanged>);

impl Handler<WatchBacklog> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: WatchBacklog, _ctx: &mut Context<Self>) {
        self.watchers.push(msg.0);
        self.watchers_told = false;
        self.tell_watchers();
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
            .collect();
        let slot = &self.workers[w as usize];
        tracing::info!(worker = %slot.info.name, held = held.len(), in_flight = slot.in_flight, "draining worker");
        if !held.is_empty() {
            match &slot.release {
                Some(r) => r.do_send(ReleaseHeld {
                    parts: held,
                    discard: false,
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
        for (run_id, p, data) in msg.parts {
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

/// The dashboard's view of the runtime: active runs, the latest finished ones, and
/// every worker.
#[derive(Message)]
#[rtype(result = "RuntimeView")]
pub struct DashboardView;

impl Handler<DashboardView> for Scheduler {
    type Result = MessageResult<DashboardView>;

    fn handle(&mut self, _msg: DashboardView, _ctx: &mut Context<Self>) -> Self::Result {
        let mut active: Vec<(&u32, &RunState)> = self.runs.iter().collect();
        active.sort_by_key(|(id, _)| **id);
        let mut runs: Vec<RunView> = active.iter().map(|(_, r)| r.view("running")).collect();
        runs.extend(self.finished_views.iter().rev().cloned());
        let workers = self
            .workers
            .iter()
            .map(|w| WorkerRow {
                id: w.info.id,
                name: w.info.name.clone(),
                resources: w.info.resources.to_string(),
                queue: w.info.queue.clone(),
                job: w.info.job.clone(),
                state: if !w.alive {
                    "gone"
                } else if w.draining {
                    "draining"
                } else if w.in_flight > 0 {
                    "busy"
                } else {
                    "idle"
                }
                .to_string(),
                tasks_in_hand: w.in_flight,
                current: w.current.clone().filter(|_| w.in_flight > 0),
                busy_s: w.busy_s,
            })
            .collect();
        MessageResult(RuntimeView { runs, workers })
    }
}

/// Tasks done and tasks in all over the active runs (for progress bars).
#[derive(Message)]
#[rtype(result = "(usize, usize)")]
pub struct RunProgress;

impl Handler<RunProgress> for Scheduler {
    type Result = MessageResult<RunProgress>;

    fn handle(&mut self, _msg: RunProgress, _ctx: &mut Context<Self>) -> Self::Result {
        let (mut done, mut total) = (0, 0);
        for r in self.runs.values() {
            done += r.tasks.len();
            total += r.plan.task_count(r.parts.len());
        }
        MessageResult((done, total))
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

/// Declares what attached cluster queues can offer: a task needing such a resource is
/// accepted at submit time and waits in its ready queue for a worker that has it.
/// When the offer shrinks (a queue given up), waiting runs that nothing can serve
/// any more fail with [`RunError::NoWorker`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct OfferResources(pub Vec<Resources>);

impl Handler<OfferResources> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: OfferResources, _ctx: &mut Context<Self>) {
        self.cluster_offers = msg.0;
        self.fail_unservable("no cluster queue offers it any more");
    }
}

impl Handler<Submit> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: Submit, ctx: &mut Context<Self>) {
        match self.submit(msg.request, ctx) {
            Ok(run) => {
                if let Some(r) = self.runs.get_mut(&run) {
                    r.reply = Some(msg.reply);
                }
                self.finish_if_done(run);
                self.dispatch();
                self.tell_watchers();
            }
            Err(e) => {
                let _ = msg.reply.send(Err(e));
            }
        }
    }
}

impl Handler<TasksDone> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: TasksDone, _ctx: &mut Context<Self>) {
        self.on_done(msg.worker, msg.outcomes);
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
        if run.fit_started[f] {
            return;
        }
        run.fit_started[f] = true;
        run.fit_inputs[f] = Some(msg.parts);
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

impl Handler<GetBacklog> for Scheduler {
    type Result = MessageResult<GetBacklog>;

    fn handle(&mut self, _msg: GetBacklog, _ctx: &mut Context<Self>) -> Self::Result {
        self.watchers_told = false;
        let mut shapes: BTreeMap<Resources, ShapeBacklog> = BTreeMap::new();
        let counts = self
            .ready
            .iter()
            .map(|(shape, q)| (shape, q.len(), 0))
            .chain(
                self.workers
                    .iter()
                    .flat_map(|w| w.pinned.iter().map(|(shape, _)| (shape, 1, 0))),
            )
            .chain(self.in_flight.iter().map(|(shape, n)| (shape, 0, *n)));
        for (shape, ready, in_flight) in counts {
            let e = shapes.entry(shape.clone()).or_insert_with(|| ShapeBacklog {
                resources: shape.clone(),
                ready: 0,
                in_flight: 0,
                ready_work_s: 0.0,
                ready_unknown: 0,
                oldest_ready: None,
            });
            e.ready += ready;
            e.in_flight += in_flight;
        }
        let ready_tasks = self
            .ready
            .iter()
            .flat_map(|(shape, q)| q.iter().map(move |t| (shape, t)));
        let pinned_tasks = self
            .workers
            .iter()
            .flat_map(|w| w.pinned.iter().map(|(shape, t)| (shape, t)));
        for (shape, t) in ready_tasks.chain(pinned_tasks) {
            let (Some(e), Some(run)) = (shapes.get_mut(shape), self.runs.get(&t.run)) else {
                continue;
            };
            let label = run.label_of(t.task);
            match run.label_time.get(label) {
                Some(&(sum, n)) if n > 0 => e.ready_work_s += sum / n as f64,
                _ => e.ready_unknown += 1,
            }
            let at = run.started + Duration::from_secs_f64(t.ready_s.max(0.0));
            e.oldest_ready = Some(e.oldest_ready.map_or(at, |o| o.min(at)));
        }
        MessageResult(
            shapes
                .into_values()
                .filter(|s| s.ready + s.in_flight > 0)
                .collect(),
        )
    }
}
