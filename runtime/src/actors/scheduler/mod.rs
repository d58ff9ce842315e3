//! [`Scheduler`]: owns the task graphs of running runs, the ready queues per resource
//! shape, and the window of tasks handed to each worker.
//!
//! Dispatch follows the measured costs of actix on this machine kind: tasks go to
//! workers in one-way batched messages, results come back the same way, and nothing
//! awaits a reply per task. The scheduler counts its backlog exactly (ready queues
//! plus in-flight windows, per resource shape), since actix exposes no mailbox length.
//!
//! The actor's state lives here; its work is split by job: `run_state` (one
//! run's graph and models), `submit` (accepting a run), `dispatch` (handing ready
//! tasks to workers), `decisions` (building stages, their checkpoint
//! decisions off the event loop), `completion` (results, fits, finished and failed runs),
//! `workers` (workers joining, leaving, draining) and `queries` (backlog,
//! dashboard and progress views).

mod completion;
mod decisions;
mod dispatch;
mod fit_inputs;
mod fit_memory;
mod in_hand;
mod kept;
mod memory;
mod queries;
mod ready_queue;
mod submit;
mod suspects;
mod workers;

pub use fit_inputs::FitInputsFetched;
pub use kept::KeptOnWorkers;
pub use queries::{DashboardView, RunProgress, WatchBacklog};
pub use submit::{Offer, OfferResources};
pub use workers::{AddWorker, Drain, ListWorkers, LiveWorkers, WorkerLost, WorkerState};

use super::messages::*;
use super::run::RunState;
use crate::config::RuntimeConfig;
use crate::dashboard::view::RunView;
use crate::report::WorkerInfo;
use crate::resources::Resources;
use actix::prelude::*;
use in_hand::TasksInHand;
use ready_queue::ReadyQueue;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

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
    /// Its proxy, told when the worker is taken as lost (worker processes).
    forget: Option<Recipient<ForgetWorker>>,
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
    /// Its tasks handed out and not yet reported, per run and label (what it is
    /// working on, for the dashboard).
    in_hand: TasksInHand,
    /// Seconds spent running tasks.
    busy_s: f64,
    /// A worker process (its outputs can stay where they are), not a thread.
    remote: bool,
    /// Ready tasks whose input this worker holds: they run only here.
    pinned: VecDeque<(Resources, TaskRef)>,
    /// Running a suspect task alone: it gets nothing else until that reports.
    isolated: bool,
}

/// The scheduler actor.
pub struct Scheduler {
    config: RuntimeConfig,
    workers: Vec<WorkerSlot>,
    /// Resources that attached cluster queues can offer (set by cluster back-ends).
    cluster_offers: Vec<submit::Offer>,
    runs: HashMap<u32, RunState>,
    next_run: u32,
    ready: BTreeMap<Resources, ReadyQueue>,
    /// Ready tasks suspected of killing a worker: each runs alone on a worker.
    suspect_ready: BTreeMap<Resources, ReadyQueue>,
    in_flight: BTreeMap<Resources, usize>,
    avg_task_s: f64,
    /// Tasks suspected of killing their worker, and the kills known.
    suspects: suspects::Suspects,
    /// Who is told when the backlog or the workers change.
    watchers: Vec<Recipient<BacklogChanged>>,
    /// Whether the watchers were told and have not asked for the backlog since.
    watchers_told: bool,
    /// The dashboard's views of the latest finished runs (newest last).
    finished_views: VecDeque<RunView>,
    /// Failed runs whose tasks are still out on workers: their folder locks are
    /// kept until no such task can write any more.
    lingering: Vec<Lingering>,
    /// Stage questions to send off the event loop (see `decisions`).
    questions: Vec<decisions::PendingQuestion>,
    /// Kept output partitions of finished runs that workers hold.
    kept: kept::KeptHolds,
    /// Its own address, weak (for the partition actors it starts).
    me: Option<actix::WeakAddr<Scheduler>>,
    /// Per worker (by id): where its peers reach it, if it listens for them.
    peer_addrs: Vec<Option<String>>,
}

/// A failed run's folder locks, kept while its tasks are still out on workers.
struct Lingering {
    run: u32,
    /// Tasks of the run per worker, not yet reported.
    out: BTreeMap<u32, u32>,
    /// Held for their `Drop`, which lets the folders go.
    #[allow(dead_code)]
    locks: Vec<crate::checkpoint::lock::FolderLock>,
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
            suspect_ready: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            avg_task_s: avg,
            suspects: Default::default(),
            watchers: Vec::new(),
            watchers_told: false,
            finished_views: VecDeque::new(),
            lingering: Vec::new(),
            questions: Vec::new(),
            kept: Default::default(),
            me: None,
            peer_addrs: Vec::new(),
        }
    }

    /// A task of a run that is gone came back from `worker` (or was lost with it):
    /// the run's folder locks go once none of its tasks is out any more.
    fn gone_run_task_back(&mut self, run: u32, worker: u32) {
        for l in self.lingering.iter_mut().filter(|l| l.run == run) {
            if let Some(n) = l.out.get_mut(&worker) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    l.out.remove(&worker);
                }
            }
        }
        self.lingering.retain(|l| !l.out.is_empty());
    }

    /// `worker` is gone: nothing of any failed run is out there any more.
    fn gone_worker_of_lingering(&mut self, worker: u32) {
        for l in &mut self.lingering {
            l.out.remove(&worker);
        }
        self.lingering.retain(|l| !l.out.is_empty());
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
            .any(|r| r.parts.iter().any(|p| p.held_by() == Some(w)))
            || self.kept.any_on(w)
            || self.runs.values().any(|r| r.keeps_fit_inputs_on(w));
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
        v.extend(
            self.cluster_offers
                .iter()
                .map(|o| format!("queue {}", o.resources)),
        );
        v.dedup();
        v.join(", ")
    }

    fn servable(&self, need: &Resources) -> Result<(), (String, u32)> {
        if self
            .workers
            .iter()
            .any(|w| w.alive && !w.draining && w.info.resources.covers(need))
            || self.cluster_offers.iter().any(|o| o.resources.covers(need))
        {
            return Ok(());
        }
        // Name the resource that nobody covers (or the first one, when only the
        // combination is missing).
        let (name, amount) = need
            .iter()
            .find(|(k, v)| {
                !self.workers.iter().any(|w| w.info.resources.get(k) >= *v)
                    && !self.cluster_offers.iter().any(|o| o.resources.get(k) >= *v)
            })
            .or_else(|| need.iter().next())
            .map(|(k, v)| (k.to_string(), v))
            .unwrap_or_default();
        Err((name, amount))
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.me = Some(ctx.address().downgrade());
    }
}
