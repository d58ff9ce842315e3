//! [`ClusterController`]: the cluster's actor over its queue actors (the
//! supervisor actor of the design, named for what it does: it controls how many
//! jobs each queue has; it restarts nothing itself).
//!
//! It keeps each queue at its target number of jobs, reads job states from the
//! batch system every poll interval, replaces jobs that ended, notices jobs that
//! ended before their worker connected (their stderr goes to the log and to
//! [`ClusterStatus::problems`]), gives a queue up after repeated such failures
//! (the scheduler is told, so runs that only that queue could serve fail instead
//! of waiting), and deletes every job on [`CloseAll`].

use crate::batch_system::error::SgeError;
use crate::batch_system::job::JobId;
use crate::batch_system::job_ending::{start_verdict, JobEnding, StartVerdict};
use crate::batch_system::job_log::{job_stderr_path, job_stderr_tail};
use crate::batch_system::BatchSystem;
use crate::cluster_error::ClusterError;
pub use crate::control::cluster_status::{ClusterStatus, JobProblem, QueueStatus};
use crate::control::queue_actor::{
    ApplyStatuses, Close, DeleteJobs, Endings, QueueActor, QueueJobs, ScaleChange, ScaleTo,
    TakeEnded, TrackedJobs,
};
use crate::spec::queue_spec::QueueSpec;
use actix::prelude::*;
use gridpipe_runtime::actors::scheduler::{
    ListWorkers, Offer, OfferResources, Scheduler, WorkerState,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// One queue as the controller keeps it.
pub(crate) struct WatchedQueue {
    pub(crate) addr: Addr<QueueActor>,
    pub(crate) spec: QueueSpec,
    pub(crate) job_name: String,
    pub(crate) target: usize,
    pub(crate) failures_in_a_row: u32,
    pub(crate) given_up: Option<String>,
    /// Jobs seen in an error state (reported and deleted once).
    pub(crate) stuck: BTreeSet<JobId>,
    pub(crate) last: QueueJobs,
}

/// The cluster's supervising actor (see the module docs).
pub struct ClusterController {
    pub(crate) queues: BTreeMap<String, WatchedQueue>,
    pub(crate) scheduler: Addr<Scheduler>,
    pub(crate) log_dir: PathBuf,
    pub(crate) max_start_failures: u32,
    pub(crate) poll_interval: Duration,
    pub(crate) problems: Vec<JobProblem>,
    pub(crate) closing: bool,
    /// When the cluster started (decision and timeline times count from here).
    pub(crate) origin: std::time::Instant,
    /// Adaptive scaling, once started.
    pub(crate) adapt: Option<crate::control::adapt_state::AdaptState>,
    /// Jobs that ended before their worker connected, whose accounting is not
    /// written yet: (label, job, when first seen gone).
    pub(crate) awaiting: Vec<(String, JobId, std::time::Instant)>,
    /// The batch system, asked once per poll about every queue's jobs.
    pub(crate) backend: Arc<dyn BatchSystem>,
}

/// A queue handed to [`ClusterController::new`].
pub struct WatchedQueueSpec {
    /// The queue spec's label.
    pub label: String,
    /// Its spec.
    pub spec: QueueSpec,
    /// Its queue actor.
    pub addr: Addr<QueueActor>,
    /// The (sanitised) job name its jobs get, to find their log files.
    pub job_name: String,
}

impl ClusterController {
    /// A watch over `queues` (whose jobs `backend` runs), reporting to `scheduler`.
    pub fn new(
        queues: Vec<WatchedQueueSpec>,
        scheduler: Addr<Scheduler>,
        log_dir: PathBuf,
        max_start_failures: u32,
        poll_interval: Duration,
        backend: Arc<dyn BatchSystem>,
    ) -> Self {
        let queues = queues
            .into_iter()
            .map(|q| {
                (
                    q.label,
                    WatchedQueue {
                        addr: q.addr,
                        spec: q.spec,
                        job_name: q.job_name,
                        target: 0,
                        failures_in_a_row: 0,
                        given_up: None,
                        stuck: BTreeSet::new(),
                        last: QueueJobs::default(),
                    },
                )
            })
            .collect();
        Self {
            queues,
            scheduler,
            log_dir,
            max_start_failures: max_start_failures.max(1),
            poll_interval,
            problems: Vec::new(),
            closing: false,
            origin: std::time::Instant::now(),
            adapt: None,
            awaiting: Vec::new(),
            backend,
        }
    }

    /// What the queues not given up offer to the scheduler.
    pub fn offers(&self) -> Vec<Offer> {
        self.queues
            .values()
            .filter(|q| q.given_up.is_none())
            .map(|q| Offer {
                resources: q.spec.worker_resources(),
                memory: q.spec.memory.map(|m| m.bytes()),
            })
            .collect()
    }

    fn status(&self) -> ClusterStatus {
        ClusterStatus {
            queues: self
                .queues
                .iter()
                .map(|(label, q)| {
                    (
                        label.clone(),
                        QueueStatus {
                            queue: q.spec.queue.clone(),
                            target: q.target,
                            jobs: q.last.clone(),
                            given_up: q.given_up.clone(),
                        },
                    )
                })
                .collect(),
            problems: self.problems.clone(),
        }
    }

    /// Takes in one round of job states: records jobs that ended before their
    /// worker connected, gives up queues, and tops queues up to their target.
    fn absorb(&mut self, round: Vec<PolledQueue>, workers: &[WorkerState]) {
        let connected: BTreeSet<&str> = workers
            .iter()
            .filter_map(|w| w.info.job.as_deref())
            .collect();
        let mut offers_changed = false;
        let manual = self.adapt.is_none();
        for polled in round {
            let Some(q) = self.queues.get_mut(&polled.label) else {
                continue;
            };
            match polled.jobs {
                Ok(jobs) => q.last = jobs,
                Err(e) => {
                    tracing::warn!(queue = %polled.label, error = %e, "cannot read job states")
                }
            }
            // A job the batch system holds in an error state (e.g. `Eqw`) never
            // runs: report it (with what it wrote), count it as a failed start,
            // delete it, and let the queue be topped up again.
            let stuck: Vec<JobId> = q
                .last
                .failed
                .iter()
                .filter(|id| !q.stuck.contains(*id))
                .cloned()
                .collect();
            if !stuck.is_empty() {
                for id in &stuck {
                    let stderr = format!(
                        "held by the batch system in an error state, deleted; {}",
                        polled.stderr.get(id).map_or("", String::as_str)
                    );
                    record_failed_start(&mut self.problems, q, &polled.label, id, stderr);
                    q.stuck.insert(id.clone());
                }
                let (addr, label) = (q.addr.clone(), polled.label.clone());
                actix::spawn(async move {
                    if let Ok(Err(e)) = addr.send(DeleteJobs(stuck)).await {
                        tracing::warn!(queue = %label, error = %e, "cannot delete jobs in an error state");
                    }
                });
            }
            let now = std::time::Instant::now();
            let mut unconnected = Vec::new();
            for id in polled.ended {
                if connected.contains(id.as_str()) {
                    q.failures_in_a_row = 0;
                    tracing::info!(queue = %polled.label, job = %id, "worker job ended");
                    continue;
                }
                unconnected.push((id, now));
            }
            // Only a job that ran and failed on its own counts against the queue;
            // one deleted or killed while it started is replaced, not counted.
            for (id, since) in polled.awaiting.into_iter().chain(unconnected) {
                let (ran, ending) = polled
                    .endings
                    .get(&id)
                    .cloned()
                    .unwrap_or((true, JobEnding::NoRecord));
                match start_verdict(ran, &ending, now.duration_since(since)) {
                    StartVerdict::Failed => {
                        let stderr = polled.stderr.get(&id).cloned().unwrap_or_default();
                        let stderr = match ending {
                            JobEnding::Exited { exit_status, .. } => {
                                format!("exit status {exit_status}; {stderr}")
                            }
                            _ => stderr,
                        };
                        record_failed_start(&mut self.problems, q, &polled.label, &id, stderr);
                    }
                    StartVerdict::Deleted => {
                        tracing::warn!(queue = %polled.label, job = %id, ran, "job deleted or killed before its worker connected: replaced, not counted against the queue");
                    }
                    StartVerdict::Wait => self.awaiting.push((polled.label.clone(), id, since)),
                }
            }
            if q.given_up.is_none() && q.failures_in_a_row >= self.max_start_failures {
                let last = self
                    .problems
                    .last()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                let reason = format!(
                    "{} jobs in a row ended (or stuck in an error state) before their worker connected; the last: {last}",
                    q.failures_in_a_row
                );
                tracing::error!(queue = %polled.label, "queue given up: {reason}");
                q.given_up = Some(reason);
                offers_changed = true;
            }
            if manual && !self.closing && q.given_up.is_none() && q.last.active() < q.target {
                let (label, target) = (polled.label.clone(), q.target);
                tracing::info!(queue = %label, have = q.last.active(), target, "topping up the queue");
                let addr = q.addr.clone();
                actix::spawn(async move {
                    match addr.send(ScaleTo(target)).await {
                        Ok(Err(e)) => tracing::error!(queue = %label, error = %e, "cannot submit"),
                        Err(_) => tracing::warn!(queue = %label, "queue actor gone"),
                        Ok(Ok(_)) => {}
                    }
                });
            }
        }
        if offers_changed {
            self.scheduler.do_send(OfferResources(self.offers()));
        }
    }
}

/// One queue's part of a poll.
struct PolledQueue {
    label: String,
    jobs: Result<QueueJobs, SgeError>,
    ended: Vec<JobId>,
    /// The stderr tails of the jobs that failed to start a worker (read off the
    /// actor's event loop).
    stderr: BTreeMap<JobId, String>,
    /// Of the jobs that ended before their worker connected (now or at an
    /// earlier poll): whether they ran (wrote a stderr file) and how they ended.
    endings: BTreeMap<JobId, (bool, JobEnding)>,
    /// Jobs of this queue still awaiting their accounting, when first seen gone.
    awaiting: Vec<(JobId, std::time::Instant)>,
}

impl PolledQueue {
    /// Jobs that ended without a connected worker, and jobs held in an error
    /// state: the ones whose stderr is worth reading.
    fn failed_starts<'a>(
        &'a self,
        connected: &'a BTreeSet<String>,
    ) -> impl Iterator<Item = &'a JobId> {
        let stuck = self
            .jobs
            .as_ref()
            .map(|j| j.failed.as_slice())
            .unwrap_or(&[]);
        self.ended
            .iter()
            .filter(|id| !connected.contains(id.as_str()))
            .chain(stuck)
    }
}

/// Records a job that failed to start a worker: logged, kept, and counted
/// towards giving its queue up.
fn record_failed_start(
    problems: &mut Vec<JobProblem>,
    q: &mut WatchedQueue,
    label: &str,
    id: &JobId,
    stderr: String,
) {
    let problem = JobProblem {
        label: label.to_string(),
        queue: q.spec.queue.clone(),
        job: id.clone(),
        stderr,
    };
    tracing::error!("{problem}");
    problems.push(problem);
    q.failures_in_a_row += 1;
}

impl Actor for ClusterController {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.poll_interval, |act, ctx| {
            if !act.closing {
                ctx.notify(Poll);
            }
        });
    }
}

/// Reads every queue's job states now, acts on them and returns the status.
#[derive(Message)]
#[rtype(result = "ClusterStatus")]
pub struct Poll;

impl Handler<Poll> for ClusterController {
    type Result = AtomicResponse<Self, ClusterStatus>;

    fn handle(&mut self, _msg: Poll, _ctx: &mut Context<Self>) -> Self::Result {
        let addrs: Vec<(String, Addr<QueueActor>)> = self
            .queues
            .iter()
            .map(|(l, q)| (l.clone(), q.addr.clone()))
            .collect();
        let scheduler = self.scheduler.clone();
        let log_dir = self.log_dir.clone();
        let mut awaiting = std::mem::take(&mut self.awaiting);
        let queue_addrs: BTreeMap<String, Addr<QueueActor>> = self
            .queues
            .iter()
            .map(|(l, q)| (l.clone(), q.addr.clone()))
            .collect();
        let job_names: BTreeMap<String, String> = self
            .queues
            .iter()
            .map(|(l, q)| (l.clone(), q.job_name.clone()))
            .collect();
        let backend = self.backend.clone();
        let work = async move {
            // One batch-system call for the jobs of every queue.
            let mut tracked = Vec::with_capacity(addrs.len());
            for (_, addr) in &addrs {
                tracked.push(addr.send(TrackedJobs).await.unwrap_or_default());
            }
            let all: Vec<JobId> = tracked.iter().flatten().cloned().collect();
            let statuses = tokio::task::spawn_blocking(move || backend.status(&all))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            let mut round = Vec::new();
            for ((label, addr), ids) in addrs.into_iter().zip(tracked) {
                let queried: BTreeSet<JobId> = ids.into_iter().collect();
                // Each queue is handed the states of its own jobs only.
                let own = statuses.as_ref().map(|all| {
                    all.iter()
                        .filter(|s| queried.contains(&s.id))
                        .cloned()
                        .collect()
                });
                let apply = ApplyStatuses {
                    queried,
                    statuses: own.map_err(Clone::clone),
                };
                let jobs = addr.send(apply).await.unwrap_or_else(|_| {
                    Err(SgeError::Queue {
                        queue: label.clone(),
                        message: "queue actor gone".into(),
                    })
                });
                let ended = addr.send(TakeEnded).await.unwrap_or_default();
                let (mine, others): (Vec<_>, Vec<_>) =
                    awaiting.into_iter().partition(|(l, _, _)| *l == label);
                awaiting = others;
                round.push(PolledQueue {
                    label,
                    jobs,
                    ended,
                    stderr: BTreeMap::new(),
                    endings: BTreeMap::new(),
                    awaiting: mine.into_iter().map(|(_, id, t)| (id, t)).collect(),
                });
            }
            let workers = scheduler.send(ListWorkers).await.unwrap_or_default();
            let connected: BTreeSet<String> =
                workers.iter().filter_map(|w| w.info.job.clone()).collect();
            let wanted: Vec<(usize, String, JobId)> = round
                .iter()
                .enumerate()
                .flat_map(|(i, p)| {
                    let name = job_names.get(&p.label).cloned().unwrap_or_default();
                    p.failed_starts(&connected)
                        .map(move |id| (i, name.clone(), id.clone()))
                        .collect::<Vec<_>>()
                })
                .collect();
            // Jobs that ended before their worker connected: did they run (a
            // stderr file), and what does the accounting say?
            let mut judged: Vec<(usize, String, JobId)> = Vec::new();
            for (i, p) in round.iter().enumerate() {
                let name = job_names.get(&p.label).cloned().unwrap_or_default();
                let ended = p.ended.iter().filter(|id| !connected.contains(id.as_str()));
                for id in ended.chain(p.awaiting.iter().map(|(id, _)| id)) {
                    judged.push((i, name.clone(), id.clone()));
                }
            }
            let wanted: Vec<(usize, String, JobId)> =
                wanted.into_iter().chain(judged.iter().cloned()).collect();
            if !wanted.is_empty() {
                let tails = tokio::task::spawn_blocking(move || {
                    wanted
                        .into_iter()
                        .map(|(i, name, id)| {
                            let tail = job_stderr_tail(&log_dir, &name, &id, 4096);
                            let ran = job_stderr_path(&log_dir, &name, &id).exists();
                            (i, id, tail, ran)
                        })
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
                let mut ran_of = BTreeMap::new();
                for (i, id, tail, ran) in tails {
                    ran_of.insert((i, id.clone()), ran);
                    round[i].stderr.insert(id, tail);
                }
                for (i, p) in round.iter_mut().enumerate() {
                    let ids: Vec<JobId> = judged
                        .iter()
                        .filter(|(j, _, _)| *j == i)
                        .map(|(_, _, id)| id.clone())
                        .collect();
                    if ids.is_empty() {
                        continue;
                    }
                    let Some(addr) = queue_addrs.get(&p.label) else {
                        continue;
                    };
                    for (id, ending) in addr.send(Endings(ids)).await.unwrap_or_default() {
                        let ran = ran_of.get(&(i, id.clone())).copied().unwrap_or(true);
                        p.endings.insert(id, (ran, ending));
                    }
                }
            }
            (round, workers)
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            |(round, workers), act, ctx| {
                act.absorb(round, &workers);
                act.request_round(ctx);
                act.status()
            },
        )))
    }
}

/// The status as last read (no batch-system call).
#[derive(Message)]
#[rtype(result = "ClusterStatus")]
pub struct Status;

impl Handler<Status> for ClusterController {
    type Result = MessageResult<Status>;

    fn handle(&mut self, _msg: Status, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

/// Sets how many jobs (pending + running) queue `label` should have; a queue
/// that was given up is tried again.
#[derive(Message)]
#[rtype(result = "Result<ScaleChange, ClusterError>")]
pub struct SetTarget {
    /// The queue spec's label.
    pub label: String,
    /// Jobs wanted (capped by the spec's `max_jobs`).
    pub jobs: usize,
}

impl Handler<SetTarget> for ClusterController {
    type Result = ResponseFuture<Result<ScaleChange, ClusterError>>;

    fn handle(&mut self, msg: SetTarget, _ctx: &mut Context<Self>) -> Self::Result {
        let known = self.queues.keys().cloned().collect::<Vec<_>>().join(", ");
        let Some(q) = self.queues.get_mut(&msg.label) else {
            let label = msg.label;
            return Box::pin(async move { Err(ClusterError::UnknownQueue { label, known }) });
        };
        let cap = q.spec.max_jobs.map_or(usize::MAX, |m| m as usize);
        q.target = msg.jobs.min(cap);
        if self.adapt.take().is_some() {
            tracing::info!(queue = %msg.label, "scaled by hand: adaptive scaling stopped");
        }
        if q.given_up.take().is_some() {
            q.failures_in_a_row = 0;
            self.scheduler.do_send(OfferResources(self.offers()));
        }
        let q = &self.queues[&msg.label];
        let (addr, target) = (q.addr.clone(), q.target);
        let (label, queue) = (msg.label, q.spec.queue.clone());
        Box::pin(async move {
            addr.send(ScaleTo(target))
                .await
                .map_err(|_| ClusterError::Stopped)?
                .map_err(|source| ClusterError::Queue {
                    label,
                    queue,
                    source,
                })
        })
    }
}

/// Deletes every job of every queue and waits until the batch system lists none
/// of them; stops topping queues up.
#[derive(Message)]
#[rtype(result = "Result<(), ClusterError>")]
pub struct CloseAll;

impl Handler<CloseAll> for ClusterController {
    type Result = ResponseFuture<Result<(), ClusterError>>;

    fn handle(&mut self, _msg: CloseAll, _ctx: &mut Context<Self>) -> Self::Result {
        self.closing = true;
        for q in self.queues.values_mut() {
            q.target = 0;
        }
        let addrs: Vec<Addr<QueueActor>> = self.queues.values().map(|q| q.addr.clone()).collect();
        Box::pin(async move {
            let results = futures::future::join_all(addrs.iter().map(|a| a.send(Close))).await;
            for r in results {
                r.map_err(|_| ClusterError::Stopped)??;
            }
            Ok(())
        })
    }
}
