//! The adaptive scaling policy: a pure function from the cluster's state (the
//! scheduler's backlog per resource shape, each queue's jobs and workers) to
//! decisions (submit, delete pending, retire an idle worker), each with its reason.
//!
//! # What it does
//!
//! 1. **Demand per shape.** Ready tasks of a shape want
//!    `ceil(estimated work / target_duration) + tasks without an estimate` workers,
//!    at most one per task. A stage whose tasks were never measured in the run gets
//!    one worker per task; a stage known to be short gets few.
//! 2. **Which queues serve a shape.** Those whose workers offer everything the shape
//!    needs; a shape that needs nothing goes only to queues that offer nothing (a
//!    CPU task never starts a GPU job) unless no such queue exists or
//!    [`PolicyConfig::plain_on_resource_queues`] allows it. Among them, the queue
//!    offering the fewest kinds of resource first, then by label.
//! 3. **Supply first.** Idle workers and jobs still pending in the batch system
//!    count as supply for the demand; only the rest is submitted, within the
//!    queue's maximum and with at most [`PolicyConfig::max_pending`] jobs pending per
//!    queue.
//! 4. **Down.** Pending jobs no demand needs are deleted; a worker idle for
//!    [`PolicyConfig::idle_timeout`] is retired (longest idle first) while the
//!    queue has more jobs than its minimum and than its busy workers plus the
//!    demand given to it. Busy workers are never retired.
//!
//! # What a bound counts
//!
//! A queue's [`Bounds`] count its jobs that are pending or running in the batch
//! system (not yet deleted), whether or not their worker has connected. The policy
//! never submits above `max` and never deletes or retires below `min`; below `min`
//! it submits up to `min` whatever the demand.

use crate::batch_system::job::JobId;
use gridpipe_runtime::Resources;
use std::collections::BTreeMap;
use std::time::Duration;

/// How many jobs (pending + running) a queue may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Fewest jobs.
    pub min: usize,
    /// Most jobs.
    pub max: usize,
}

impl Bounds {
    /// `min..=max` (a `max` below `min` is raised to `min`).
    pub fn new(min: usize, max: usize) -> Self {
        Self {
            min,
            max: max.max(min),
        }
    }
}

/// The policy's tunables.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    /// Seconds of estimated work one worker should get (default 5 s).
    pub target_duration: Duration,
    /// Most jobs pending at once per queue (default 4).
    pub max_pending: usize,
    /// A worker idle this long is retired (default 60 s).
    pub idle_timeout: Duration,
    /// Whether tasks that need nothing may start jobs of queues offering a
    /// resource when a plain queue exists (default false).
    pub plain_on_resource_queues: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            target_duration: Duration::from_secs(5),
            max_pending: 4,
            idle_timeout: Duration::from_secs(60),
            plain_on_resource_queues: false,
        }
    }
}

/// Ready work of one resource shape.
#[derive(Clone, Debug, PartialEq)]
pub struct ShapeDemand {
    /// What the tasks need.
    pub resources: Resources,
    /// Ready tasks (not yet handed to a worker).
    pub ready: usize,
    /// Estimated seconds of the ready tasks that have an estimate.
    pub ready_work_s: f64,
    /// Ready tasks without an estimate.
    pub ready_unknown: usize,
}

/// A connected worker of a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerView {
    /// Its job.
    pub job: JobId,
    /// Whether it has tasks.
    pub busy: bool,
    /// How long it has had none (zero while busy).
    pub idle_for: Duration,
    /// Whether it is already being retired.
    pub retiring: bool,
}

/// One queue as the policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueView {
    /// The queue spec's label.
    pub label: String,
    /// What its workers offer.
    pub offers: Resources,
    /// Its bounds.
    pub bounds: Bounds,
    /// Jobs pending in the batch system.
    pub pending: usize,
    /// Jobs running in the batch system (with or without a connected worker),
    /// retiring ones included.
    pub running: usize,
    /// Its connected workers.
    pub workers: Vec<WorkerView>,
    /// No submission now (backing off after failures, or given up).
    pub blocked: bool,
    /// Given up for good: it serves no demand, and plain tasks may go to
    /// resource queues when it was the plain one.
    pub given_up: bool,
}

/// Everything the policy looks at.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyInput {
    /// Ready work per shape.
    pub demand: Vec<ShapeDemand>,
    /// The queues.
    pub queues: Vec<QueueView>,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Submit this many jobs.
    Submit(usize),
    /// Delete this many pending jobs (newest first).
    DeletePending(usize),
    /// Drain this idle worker, then delete its job.
    Retire(JobId),
}

/// One decision for one queue, with its reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The queue spec's label.
    pub label: String,
    /// What to do.
    pub action: Action,
    /// Why, in words.
    pub reason: String,
}

/// Per-queue working state of one decision round.
#[derive(Default)]
struct Plan {
    idle_used: usize,
    pending_used: usize,
    submit: usize,
    demand_given: usize,
    why: Vec<String>,
}

/// Workers wanted by ready tasks of one shape.
pub fn workers_wanted(d: &ShapeDemand, target: Duration) -> usize {
    if d.ready == 0 {
        return 0;
    }
    let known = (d.ready_work_s / target.as_secs_f64().max(1e-9)).ceil() as usize;
    (known + d.ready_unknown).clamp(1, d.ready)
}

/// The queues (indices into `queues`) that may serve `shape`, in order of
/// preference.
pub fn candidates(shape: &Resources, queues: &[QueueView], cfg: &PolicyConfig) -> Vec<usize> {
    let any_plain = queues.iter().any(|q| q.offers.is_empty() && !q.given_up);
    let mut c: Vec<usize> = (0..queues.len())
        .filter(|&i| {
            let q = &queues[i];
            !q.given_up
                && q.offers.covers(shape)
                && (!shape.is_empty()
                    || q.offers.is_empty()
                    || !any_plain
                    || cfg.plain_on_resource_queues)
        })
        .collect();
    c.sort_by_key(|&i| (queues[i].offers.iter().count(), queues[i].label.clone()));
    c
}

/// The decisions for one round (see the module docs).
pub fn decide(input: &PolicyInput, cfg: &PolicyConfig) -> Vec<Decision> {
    let queues = &input.queues;
    let mut plans: Vec<Plan> = queues.iter().map(|_| Plan::default()).collect();
    let idle = |q: &QueueView| q.workers.iter().filter(|w| !w.busy && !w.retiring).count();
    let active = |q: &QueueView| q.pending + q.running;
    // Scarce shapes (those needing the most kinds of resource) first.
    let mut shapes: Vec<&ShapeDemand> = input.demand.iter().filter(|d| d.ready > 0).collect();
    shapes.sort_by_key(|d| std::cmp::Reverse(d.resources.iter().count()));
    for d in shapes {
        let wanted = workers_wanted(d, cfg.target_duration);
        let mut left = wanted;
        let order = candidates(&d.resources, queues, cfg);
        // Idle workers and pending jobs first.
        for &i in &order {
            let (q, p) = (&queues[i], &mut plans[i]);
            let from_idle = (idle(q) - p.idle_used).min(left);
            p.idle_used += from_idle;
            left -= from_idle;
            let from_pending = (q.pending - p.pending_used).min(left);
            p.pending_used += from_pending;
            left -= from_pending;
            p.demand_given += from_idle + from_pending;
        }
        let covered = wanted - left;
        for &i in &order {
            if left == 0 {
                break;
            }
            let (q, p) = (&queues[i], &mut plans[i]);
            if q.blocked {
                continue;
            }
            let room_max = q.bounds.max.saturating_sub(active(q) + p.submit);
            let room_pending = cfg.max_pending.saturating_sub(q.pending + p.submit);
            let n = left.min(room_max).min(room_pending);
            if n > 0 {
                p.submit += n;
                p.demand_given += n;
                left -= n;
                p.why.push(format!(
                    "{} ready task(s) needing {} want {wanted} worker(s) ({:.1} s of estimated work, {} task(s) without an estimate); idle workers and pending jobs cover {}",
                    d.ready,
                    d.resources,
                    d.ready_work_s,
                    d.ready_unknown,
                    covered
                ));
            }
        }
    }
    let mut out = Vec::new();
    for (q, p) in queues.iter().zip(plans.iter_mut()) {
        let busy = q.workers.iter().filter(|w| w.busy).count();
        // The minimum first.
        let after_submit = active(q) + p.submit;
        if after_submit < q.bounds.min && !q.blocked {
            let n = q.bounds.min - after_submit;
            p.submit += n;
            p.why.push(format!(
                "below its minimum of {} job(s) ({} pending, {} running)",
                q.bounds.min, q.pending, q.running
            ));
        }
        if p.submit > 0 {
            out.push(Decision {
                label: q.label.clone(),
                action: Action::Submit(p.submit),
                reason: p.why.join("; "),
            });
            continue;
        }
        // Down: pending jobs nobody needs, then idle workers past the timeout.
        let keep = q.bounds.min.max(busy + p.demand_given);
        let unused_pending = q.pending - p.pending_used;
        let removable_pending = active(q).saturating_sub(keep).min(unused_pending);
        if removable_pending > 0 {
            out.push(Decision {
                label: q.label.clone(),
                action: Action::DeletePending(removable_pending),
                reason: format!(
                    "{removable_pending} pending job(s) not needed: {busy} busy worker(s) and demand for {} more; minimum {}",
                    p.demand_given, q.bounds.min
                ),
            });
        }
        let retiring = q.workers.iter().filter(|w| w.retiring).count();
        let mut total = (active(q) - removable_pending).saturating_sub(retiring);
        let mut expired: Vec<&WorkerView> = q
            .workers
            .iter()
            .filter(|w| !w.busy && !w.retiring && w.idle_for >= cfg.idle_timeout)
            .collect();
        expired.sort_by(|a, b| b.idle_for.cmp(&a.idle_for).then(a.job.cmp(&b.job)));
        // Idle workers the demand uses are not retired.
        let spare = idle(q).saturating_sub(p.idle_used);
        for w in expired.into_iter().take(spare) {
            if total <= keep {
                break;
            }
            total -= 1;
            out.push(Decision {
                label: q.label.clone(),
                action: Action::Retire(w.job.clone()),
                reason: format!(
                    "worker of job {} idle for {:.1} s (timeout {:.1} s); queue keeps {keep} job(s): minimum {}, {busy} busy, demand for {}",
                    w.job,
                    w.idle_for.as_secs_f64(),
                    cfg.idle_timeout.as_secs_f64(),
                    q.bounds.min,
                    p.demand_given
                ),
            });
        }
    }
    out
}

/// Applies `decisions` to `input` as if every submission were pending at once and
/// every retirement and deletion took effect: the state the next round would see.
/// For simulations and tests.
pub fn apply(input: &PolicyInput, decisions: &[Decision]) -> PolicyInput {
    let mut next = input.clone();
    let by_label: BTreeMap<String, usize> = next
        .queues
        .iter()
        .enumerate()
        .map(|(i, q)| (q.label.clone(), i))
        .collect();
    for d in decisions {
        let Some(&i) = by_label.get(&d.label) else {
            continue;
        };
        let q = &mut next.queues[i];
        match &d.action {
            Action::Submit(n) => q.pending += n,
            Action::DeletePending(n) => q.pending -= (*n).min(q.pending),
            Action::Retire(job) => {
                q.workers.retain(|w| &w.job != job);
                q.running = q.running.saturating_sub(1);
            }
        }
    }
    next
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
