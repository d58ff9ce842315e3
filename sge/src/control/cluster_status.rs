//! What a cluster looks like from outside: each queue's jobs, and the jobs that
//! ended before their worker connected ([`ClusterStatus`]).

use crate::batch_system::job::JobId;
use crate::control::queue_actor::QueueJobs;
use std::collections::BTreeMap;

/// A job that ended before its worker connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobProblem {
    /// The queue spec's label.
    pub label: String,
    /// The Grid Engine queue.
    pub queue: String,
    /// The job.
    pub job: JobId,
    /// The end of the job's stderr.
    pub stderr: String,
}

impl std::fmt::Display for JobProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "job {} of queue `{}` ({}) ended before its worker connected; stderr: {}",
            self.job, self.label, self.queue, self.stderr
        )
    }
}

/// One queue as the cluster sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueStatus {
    /// The Grid Engine queue (`qsub -q`).
    pub queue: String,
    /// How many jobs (pending + running) the queue should have.
    pub target: usize,
    /// Its jobs by state, as last read from the batch system.
    pub jobs: QueueJobs,
    /// Why the queue was given up, if it was.
    pub given_up: Option<String>,
}

/// The cluster's queues and problems.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterStatus {
    /// Per queue-spec label.
    pub queues: BTreeMap<String, QueueStatus>,
    /// Jobs that ended before their worker connected, oldest first.
    pub problems: Vec<JobProblem>,
}

impl ClusterStatus {
    /// One line per queue: `label (queue): target T, pending P, running R, failed F`.
    pub fn describe(&self) -> String {
        self.queues
            .iter()
            .map(|(label, q)| {
                format!(
                    "{label} ({}): target {}, pending {}, running {}, failed {}{}",
                    q.queue,
                    q.target,
                    q.jobs.pending.len(),
                    q.jobs.running.len(),
                    q.jobs.failed.len(),
                    q.given_up
                        .as_deref()
                        .map(|r| format!(", given up: {r}"))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}
