//! What adaptive scaling did: every decision with its reason and timing, and the
//! jobs per queue over time ([`AdaptReport`]), also as a picture's timeline.

use crate::batch_system::job::JobId;
use crate::policy::Action;

/// One decision as taken.
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionRecord {
    /// Seconds since the cluster started, when decided.
    pub at_s: f64,
    /// The queue spec's label.
    pub label: String,
    /// What was decided.
    pub action: Action,
    /// Why.
    pub reason: String,
    /// Seconds from when the batch-system call returned back to its cause: for
    /// a submission serving tasks no worker could take, from the oldest such task
    /// becoming ready; for a retirement, from the worker's idle timeout expiring.
    pub latency_s: Option<f64>,
    /// Jobs submitted or deleted.
    pub jobs: Vec<JobId>,
    /// Why the call failed, if it did.
    pub error: Option<String>,
    /// Whether its batch-system call (for a retirement: the drain, then the
    /// delete) has returned; until then `jobs` and `latency_s` are not known.
    pub done: bool,
}

/// One queue's jobs at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelinePoint {
    /// Milliseconds since the cluster started.
    pub at_ms: u64,
    /// The queue spec's label.
    pub label: String,
    /// Jobs pending.
    pub pending: usize,
    /// Jobs running (with a connected worker or seen running).
    pub running: usize,
    /// Ready tasks this queue could serve.
    pub demand: usize,
}

/// What adaptive scaling did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdaptReport {
    /// Every decision, in order.
    pub decisions: Vec<DecisionRecord>,
    /// Jobs per queue whenever they changed.
    pub timeline: Vec<TimelinePoint>,
    /// Decision rounds finished so far.
    pub rounds: u64,
}

impl AdaptReport {
    /// The jobs and decisions as a picture's cluster timeline, in seconds since
    /// the instant `run_start_s` seconds after the cluster started.
    pub fn cluster_timeline(
        &self,
        run_start_s: f64,
    ) -> gridpipe_runtime::pictures::ClusterTimeline {
        use gridpipe_runtime::pictures::{ClusterTimeline, DecisionMark, QueuePoint, QueueSeries};
        let mut queues: Vec<QueueSeries> = Vec::new();
        for p in &self.timeline {
            let point = QueuePoint {
                at_s: p.at_ms as f64 / 1000.0 - run_start_s,
                pending: p.pending,
                running: p.running,
                demand: p.demand,
            };
            match queues.iter_mut().find(|q| q.label == p.label) {
                Some(q) => q.points.push(point),
                None => queues.push(QueueSeries {
                    label: p.label.clone(),
                    points: vec![point],
                }),
            }
        }
        let decisions = self
            .decisions
            .iter()
            .map(|d| DecisionMark {
                at_s: d.at_s - run_start_s,
                label: d.label.clone(),
                text: match &d.action {
                    Action::Submit(n) => format!("+{n}"),
                    Action::DeletePending(n) => format!("-{n} pending"),
                    Action::Retire(j) => format!("retire {j}"),
                },
            })
            .collect();
        ClusterTimeline { queues, decisions }
    }
}
