//! Adaptive scaling: the [`ClusterController`]'s rounds of gather -> [`decide`] -> act.
//!
//! A round starts when the scheduler says the backlog or the workers changed, when
//! an idle worker's timeout expires (each idle worker's expiry is a timer), after
//! each poll of the batch system, and on a tick (1 s by default) as a safety net.
//! Rounds never overlap; a request during a round runs one more round after it.
//! Submissions that fail back off (1 s, 2 s, 4 s, ... up to 60 s) and a queue whose
//! submissions failed 5 times in a row is given up with the last error. Retiring a
//! worker drains it first (no new task; the partitions it holds are sent back),
//! then deletes its job. Every decision is logged with its reason and kept, with
//! its timing, in [`AdaptReport`].

use crate::batch_system::job::JobId;
use crate::cluster_error::ClusterError;
pub use crate::control::adapt_report::{AdaptReport, DecisionRecord, TimelinePoint};
pub use crate::control::adapt_state::AdaptOptions;
use crate::control::adapt_state::{submit_backoff, AdaptState};
use crate::control::controller::ClusterController;
use crate::control::queue_actor::{CheckSubmit, DeleteJobs, Jobs, QueueJobs, ScaleBy};
use crate::policy::{decide, Action, Bounds, PolicyInput, QueueView, ShapeDemand, WorkerView};
use actix::prelude::*;
use gridpipe_runtime::actors::messages::{BacklogChanged, GetBacklog, ShapeBacklog};
use gridpipe_runtime::actors::scheduler::{
    Drain, ListWorkers, OfferResources, WatchBacklog, WorkerState,
};
use gridpipe_runtime::Resources;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Starts adaptive scaling (checks the queues first).
#[derive(Message)]
#[rtype(result = "Result<(), ClusterError>")]
pub struct StartAdapt(pub AdaptOptions);

/// What adaptive scaling did so far.
#[derive(Message)]
#[rtype(result = "AdaptReport")]
pub struct GetAdaptReport;

/// Runs a decision round now (after the running one, if any) and answers with
/// the report once that round's submissions and deletions are done.
#[derive(Message)]
#[rtype(result = "Result<AdaptReport, ClusterError>")]
pub struct AdaptNow;

/// What one round gathered.
struct Gathered {
    backlog: Vec<ShapeBacklog>,
    workers: Vec<WorkerState>,
    jobs: BTreeMap<String, QueueJobs>,
}

impl ClusterController {
    fn bounds_of(&self, options: &AdaptOptions, label: &str) -> Bounds {
        let b = options
            .per_queue
            .get(label)
            .copied()
            .unwrap_or(options.bounds);
        let cap = self.queues[label]
            .spec
            .max_jobs
            .map_or(usize::MAX, |m| m as usize);
        Bounds::new(b.min.min(cap), b.max.min(cap))
    }

    /// The policy's view of the cluster.
    fn policy_input(&self, g: &Gathered, now: Instant) -> PolicyInput {
        let a = self.adapt.as_ref().expect("adaptive");
        let demand = g
            .backlog
            .iter()
            .map(|b| ShapeDemand {
                resources: b.resources.clone(),
                ready: b.ready,
                ready_work_s: b.ready_work_s,
                ready_unknown: b.ready_unknown,
            })
            .collect();
        let queues = self
            .queues
            .iter()
            .map(|(label, q)| {
                let jobs = g.jobs.get(label).cloned().unwrap_or_default();
                let mine: BTreeSet<&str> = jobs
                    .pending
                    .iter()
                    .chain(&jobs.running)
                    .chain(&jobs.failed)
                    .map(|j| j.as_str())
                    .collect();
                let workers: Vec<&WorkerState> = g
                    .workers
                    .iter()
                    .filter(|w| w.alive && w.info.job.as_deref().is_some_and(|j| mine.contains(j)))
                    .collect();
                let connected: BTreeSet<&str> = workers
                    .iter()
                    .filter_map(|w| w.info.job.as_deref())
                    .collect();
                let pending_connected = jobs
                    .pending
                    .iter()
                    .filter(|j| connected.contains(j.as_str()))
                    .count();
                QueueView {
                    label: label.clone(),
                    offers: q.spec.worker_resources(),
                    bounds: self.bounds_of(&a.options, label),
                    pending: jobs.pending.len() - pending_connected,
                    running: jobs.running.len() + jobs.failed.len() + pending_connected,
                    workers: workers
                        .iter()
                        .map(|w| WorkerView {
                            job: JobId::new(w.info.job.clone().unwrap_or_default()),
                            busy: w.in_flight > 0,
                            idle_for: w
                                .idle_since
                                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t)),
                            retiring: w.draining
                                || a.retiring
                                    .contains(&JobId::new(w.info.job.clone().unwrap_or_default())),
                        })
                        .collect(),
                    blocked: q.given_up.is_some()
                        || a.backoff.get(label).is_some_and(|(_, until)| *until > now),
                    given_up: q.given_up.is_some(),
                }
            })
            .collect();
        PolicyInput { demand, queues }
    }

    /// Asks for a decision round (now, or right after the running one).
    pub(crate) fn request_round(&mut self, ctx: &mut Context<Self>) {
        let Some(a) = self.adapt.as_mut() else {
            return;
        };
        if self.closing {
            // Nobody waits for a round that will not run.
            a.waiting_next.clear();
            return;
        }
        if a.round_running {
            a.round_again = true;
            return;
        }
        a.round_running = true;
        a.waiting_this = std::mem::take(&mut a.waiting_next);
        let scheduler = self.scheduler.clone();
        let queues: Vec<(String, Addr<crate::control::queue_actor::QueueActor>)> = self
            .queues
            .iter()
            .map(|(l, q)| (l.clone(), q.addr.clone()))
            .collect();
        let gather = async move {
            let backlog = scheduler.send(GetBacklog).await.unwrap_or_default();
            let workers = scheduler.send(ListWorkers).await.unwrap_or_default();
            let mut jobs = BTreeMap::new();
            for (label, addr) in queues {
                jobs.insert(label, addr.send(Jobs).await.unwrap_or_default());
            }
            Gathered {
                backlog,
                workers,
                jobs,
            }
        };
        ctx.spawn(gather.into_actor(self).then(|g, act, ctx| {
            let work = act.act_on(g, ctx);
            work.map(|_, act, ctx| {
                let again = act.adapt.as_mut().is_some_and(|a| {
                    a.round_running = false;
                    a.report.rounds += 1;
                    for waiter in a.waiting_this.drain(..) {
                        let _ = waiter.send(());
                    }
                    std::mem::take(&mut a.round_again)
                });
                if again {
                    act.request_round(ctx);
                }
            })
        }));
    }

    /// Decides on what was gathered and starts acting; returns when the
    /// submissions and pending deletions are done (retirements go on alone).
    fn act_on(&mut self, g: Gathered, ctx: &mut Context<Self>) -> ResponseActFuture<Self, ()> {
        let Some(now) = self.adapt.as_ref().map(|a| a.options.clock.now()) else {
            return Box::pin(fut::ready(()));
        };
        if self.closing {
            return Box::pin(fut::ready(()));
        }
        let input = self.policy_input(&g, now);
        self.record_timeline(&input);
        self.set_idle_timer(&input, ctx);
        let a = self.adapt.as_ref().expect("adaptive");
        let decisions = decide(&input, &a.options.policy);
        let idle_timeout = a.options.policy.idle_timeout;
        let at_s = now.saturating_duration_since(self.origin).as_secs_f64();
        let mut calls = Vec::new();
        let clock = a.options.clock.clone();
        for d in decisions {
            tracing::info!(queue = %d.label, action = ?d.action, reason = %d.reason, "scaling decision");
            let idx = self.note_decision(&d, at_s);
            let q = &self.queues[&d.label];
            match &d.action {
                Action::Submit(_) | Action::DeletePending(_) => {
                    let (delta, cause) = match d.action {
                        Action::Submit(n) => {
                            (n as isize, unserved_since(&g, &q.spec.worker_resources()))
                        }
                        Action::DeletePending(n) => (-(n as isize), None),
                        Action::Retire(_) => unreachable!("matched above"),
                    };
                    let call = q.addr.send(ScaleBy(delta));
                    let clock = clock.clone();
                    calls.push(async move {
                        let r = call.await;
                        (idx, d, r, cause, clock.now())
                    });
                }
                Action::Retire(job) => {
                    let worker = g
                        .workers
                        .iter()
                        .find(|w| w.alive && w.info.job.as_deref() == Some(job.as_str()));
                    let expiry = worker.and_then(|w| w.idle_since).map(|t| t + idle_timeout);
                    let worker = worker.map(|w| w.info.id);
                    self.retire(idx, d.clone(), worker, expiry, ctx);
                }
            }
        }
        let work = async move { futures::future::join_all(calls).await };
        Box::pin(work.into_actor(self).map(move |results, act, _ctx| {
            for (idx, d, r, cause, done) in results {
                act.record_call(idx, d, r, cause, done);
            }
        }))
    }

    /// Keeps a decision in the report as soon as it is taken; its outcome is
    /// filled in when its call returns.
    fn note_decision(&mut self, d: &crate::policy::Decision, at_s: f64) -> usize {
        let a = self.adapt.as_mut().expect("adaptive");
        a.report.decisions.push(DecisionRecord {
            at_s,
            label: d.label.clone(),
            action: d.action.clone(),
            reason: d.reason.clone(),
            latency_s: None,
            jobs: Vec::new(),
            error: None,
            done: false,
        });
        a.report.decisions.len() - 1
    }

    fn record_call(
        &mut self,
        idx: usize,
        d: crate::policy::Decision,
        r: Result<Result<crate::control::queue_actor::ScaleChange, crate::SgeError>, MailboxError>,
        cause: Option<Instant>,
        done: Instant,
    ) {
        let r = r.unwrap_or_else(|e| {
            Err(crate::SgeError::Queue {
                queue: d.label.clone(),
                message: e.to_string(),
            })
        });
        let max_fail = self
            .adapt
            .as_ref()
            .map_or(5, |a| a.options.max_submit_failures);
        let mut give_up = None;
        let (jobs, error) = match &r {
            Ok(change) => (
                change
                    .submitted
                    .iter()
                    .chain(&change.deleted)
                    .cloned()
                    .collect(),
                None,
            ),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        if let Some(a) = self.adapt.as_mut() {
            if matches!(d.action, Action::Submit(_)) {
                match &error {
                    None => {
                        a.backoff.remove(&d.label);
                    }
                    Some(e) => {
                        let entry = a.backoff.entry(d.label.clone()).or_insert((0, done));
                        entry.0 += 1;
                        let wait = submit_backoff(
                            entry.0,
                            a.options.submit_backoff_first,
                            a.options.submit_backoff_max,
                        );
                        entry.1 = done + wait;
                        tracing::warn!(queue = %d.label, error = %e, failures = entry.0, retry_in_s = wait.as_secs_f64(), "submission failed; backing off");
                        if entry.0 >= max_fail {
                            give_up = Some(format!(
                                "{} submissions in a row failed; the last: {e}",
                                entry.0
                            ));
                        }
                    }
                }
            }
            let latency_s = match (&d.action, &error) {
                (Action::Submit(_), None) => {
                    cause.map(|c| done.saturating_duration_since(c).as_secs_f64())
                }
                _ => None,
            };
            if let Some(rec) = a.report.decisions.get_mut(idx) {
                rec.latency_s = latency_s;
                rec.jobs = jobs;
                rec.error = error;
                rec.done = true;
            }
        }
        if let Some(reason) = give_up {
            tracing::error!(queue = %d.label, "queue given up: {reason}");
            if let Some(q) = self.queues.get_mut(&d.label) {
                q.given_up = Some(reason);
            }
            self.scheduler.do_send(OfferResources(self.offers()));
        }
    }

    /// Drains the worker of a job, then deletes the job.
    fn retire(
        &mut self,
        idx: usize,
        d: crate::policy::Decision,
        worker: Option<u32>,
        expiry: Option<Instant>,
        ctx: &mut Context<Self>,
    ) {
        let Action::Retire(job) = d.action.clone() else {
            return;
        };
        if let Some(a) = self.adapt.as_mut() {
            a.retiring.insert(job.clone());
        }
        let scheduler = self.scheduler.clone();
        let queue = self.queues[&d.label].addr.clone();
        let j = job.clone();
        let clock = self.adapt.as_ref().map(|a| a.options.clock.clone());
        let work = async move {
            if let Some(w) = worker {
                let _ = scheduler.send(Drain(w)).await;
            }
            let r = queue.send(DeleteJobs(vec![j])).await;
            (r, clock.map_or_else(Instant::now, |c| c.now()))
        };
        ctx.spawn(work.into_actor(self).map(move |(r, done), act, ctx| {
            let error = match r {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(e) = &error {
                tracing::warn!(queue = %d.label, job = %job, error = %e, "cannot delete a retired worker's job");
            }
            if let Some(a) = act.adapt.as_mut() {
                a.retiring.remove(&job);
                if let Some(rec) = a.report.decisions.get_mut(idx) {
                    rec.latency_s = expiry.map(|e| done.saturating_duration_since(e).as_secs_f64());
                    rec.jobs = vec![job.clone()];
                    rec.error = error;
                    rec.done = true;
                }
            }
            act.request_round(ctx);
        }));
    }

    fn record_timeline(&mut self, input: &PolicyInput) {
        let Some(a) = self.adapt.as_mut() else {
            return;
        };
        let at_ms = a
            .options
            .clock
            .now()
            .saturating_duration_since(self.origin)
            .as_millis() as u64;
        let mut demand = vec![0; input.queues.len()];
        for d in &input.demand {
            for i in crate::policy::candidates(&d.resources, &input.queues, &a.options.policy) {
                demand[i] += d.ready;
            }
        }
        for (q, demand) in input.queues.iter().zip(demand) {
            let counts = (q.pending, q.running, demand);
            if a.last_counts.get(&q.label) != Some(&counts) {
                a.last_counts.insert(q.label.clone(), counts);
                a.report.timeline.push(TimelinePoint {
                    at_ms,
                    label: q.label.clone(),
                    pending: q.pending,
                    running: q.running,
                    demand,
                });
            }
        }
    }

    /// A round when the next idle worker's timeout expires.
    fn set_idle_timer(&mut self, input: &PolicyInput, ctx: &mut Context<Self>) {
        let Some(a) = self.adapt.as_mut() else {
            return;
        };
        let timeout = a.options.policy.idle_timeout;
        let next = input
            .queues
            .iter()
            .filter(|q| q.pending + q.running > q.bounds.min)
            .flat_map(|q| q.workers.iter())
            .filter(|w| !w.busy && !w.retiring && w.idle_for < timeout)
            .map(|w| timeout - w.idle_for)
            .min();
        if let Some(h) = a.timer.take() {
            ctx.cancel_future(h);
        }
        if let Some(wait) = next {
            a.timer = Some(ctx.run_later(wait + Duration::from_millis(1), |act, ctx| {
                act.request_round(ctx)
            }));
        }
    }
}

/// When the oldest ready task that a queue offering `offers` could serve, and no
/// live worker can, became ready.
fn unserved_since(g: &Gathered, offers: &Resources) -> Option<Instant> {
    g.backlog
        .iter()
        .filter(|b| b.ready > 0 && offers.covers(&b.resources))
        .filter(|b| {
            !g.workers
                .iter()
                .any(|w| w.alive && !w.draining && w.info.resources.covers(&b.resources))
        })
        .filter_map(|b| b.oldest_ready)
        .min()
}

impl Handler<BacklogChanged> for ClusterController {
    type Result = ();

    fn handle(&mut self, _msg: BacklogChanged, ctx: &mut Context<Self>) {
        self.request_round(ctx);
    }
}

impl Handler<StartAdapt> for ClusterController {
    type Result = ResponseActFuture<Self, Result<(), ClusterError>>;

    fn handle(&mut self, msg: StartAdapt, _ctx: &mut Context<Self>) -> Self::Result {
        let options = msg.0;
        let known = self.queues.keys().cloned().collect::<Vec<_>>().join(", ");
        if let Some(label) = options
            .per_queue
            .keys()
            .find(|l| !self.queues.contains_key(*l))
        {
            let err = ClusterError::UnknownQueue {
                label: label.clone(),
                known,
            };
            return Box::pin(fut::ready(Err(err)));
        }
        let checks: Vec<(String, Addr<crate::control::queue_actor::QueueActor>)> =
            if options.check_queues {
                self.queues
                    .iter()
                    .map(|(l, q)| (l.clone(), q.addr.clone()))
                    .collect()
            } else {
                Vec::new()
            };
        let work = async move {
            for (label, addr) in checks {
                match addr.send(CheckSubmit).await {
                    Ok(Ok(())) => tracing::info!(queue = %label, "queue accepts held submissions"),
                    Ok(Err(e)) => {
                        return Err(ClusterError::QueueGivenUp {
                            label,
                            reason: format!("the check submission failed: {e}"),
                        })
                    }
                    Err(_) => return Err(ClusterError::Stopped),
                }
            }
            Ok(())
        };
        Box::pin(work.into_actor(self).map(move |checked, act, ctx| {
            checked?;
            let tick = options.tick;
            act.adapt = Some(AdaptState {
                options,
                report: AdaptReport::default(),
                last_counts: BTreeMap::new(),
                round_running: false,
                round_again: false,
                waiting_this: Vec::new(),
                waiting_next: Vec::new(),
                retiring: BTreeSet::new(),
                backoff: BTreeMap::new(),
                timer: None,
            });
            act.scheduler
                .do_send(WatchBacklog(ctx.address().recipient()));
            ctx.run_interval(tick, |act, ctx| act.request_round(ctx));
            act.request_round(ctx);
            Ok(())
        }))
    }
}

impl Handler<GetAdaptReport> for ClusterController {
    type Result = MessageResult<GetAdaptReport>;

    fn handle(&mut self, _msg: GetAdaptReport, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.adapt
                .as_ref()
                .map(|a| a.report.clone())
                .unwrap_or_default(),
        )
    }
}

impl Handler<AdaptNow> for ClusterController {
    type Result = ResponseActFuture<Self, Result<AdaptReport, ClusterError>>;

    fn handle(&mut self, _msg: AdaptNow, ctx: &mut Context<Self>) -> Self::Result {
        let Some(a) = self.adapt.as_mut() else {
            return Box::pin(fut::ready(Err(ClusterError::NotAdapting)));
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        a.waiting_next.push(tx);
        self.request_round(ctx);
        Box::pin(rx.into_actor(self).map(|done, act, _ctx| {
            done.map_err(|_| ClusterError::Stopped)?;
            act.adapt
                .as_ref()
                .map(|a| a.report.clone())
                .ok_or(ClusterError::Stopped)
        }))
    }
}
