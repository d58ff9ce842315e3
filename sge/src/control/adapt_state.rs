//! What adaptive scaling is told ([`AdaptOptions`]) and what it keeps between
//! rounds (`AdaptState`, held by the controller). Apart from the rounds
//! themselves (`adaptive.rs`), so the controller can hold the state without
//! depending on the rounds.

use crate::batch_system::job::JobId;
use crate::control::adapt_report::AdaptReport;
use crate::control::clock::ClockHandle;
use crate::policy::{Bounds, PolicyConfig};
use actix::SpawnHandle;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How a cluster adapts (see [`crate::SgeCluster::adapt`]).
#[derive(Clone, Debug, PartialEq)]
pub struct AdaptOptions {
    /// Bounds of every queue without bounds of its own. A bound counts the
    /// queue's jobs that are pending or running (see [`crate::policy`]); the
    /// queue spec's `max_jobs` caps the maximum.
    pub bounds: Bounds,
    /// Bounds per queue label, overriding `bounds`.
    pub per_queue: BTreeMap<String, Bounds>,
    /// The policy's tunables (idle timeout, pending cap, ...).
    pub policy: PolicyConfig,
    /// The safety-net round interval (default 1 s).
    pub tick: Duration,
    /// Check each queue at start with a held submission that is deleted again
    /// (default true).
    pub check_queues: bool,
    /// A queue whose submissions failed this many times in a row is given up
    /// (default 5).
    pub max_submit_failures: u32,
    /// The pause after a queue's first failed submission, doubling after each
    /// further one (default 1 s; see [`submit_backoff`]).
    pub submit_backoff_first: Duration,
    /// The longest pause between failed submissions (default 60 s).
    pub submit_backoff_max: Duration,
    /// Where rounds read the time (default: the real clock; a test's
    /// [`crate::ManualClock`] moves idle timeouts and back-off on without
    /// waiting).
    pub clock: ClockHandle,
}

/// The pause before the next submission to a queue after `failures` failed ones
/// in a row: `first`, doubling with each failure, at most `max`.
pub fn submit_backoff(failures: u32, first: Duration, max: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    first.saturating_mul(1 << doublings).min(max)
}

impl AdaptOptions {
    /// Every queue between `min` and `max` jobs.
    pub fn new(min: usize, max: usize) -> Self {
        Self {
            bounds: Bounds::new(min, max),
            per_queue: BTreeMap::new(),
            policy: PolicyConfig::default(),
            tick: Duration::from_secs(1),
            check_queues: true,
            max_submit_failures: 5,
            submit_backoff_first: Duration::from_secs(1),
            submit_backoff_max: Duration::from_secs(60),
            clock: ClockHandle::default(),
        }
    }

    /// Queue `label` between `min` and `max` jobs.
    pub fn queue(mut self, label: impl Into<String>, min: usize, max: usize) -> Self {
        self.per_queue.insert(label.into(), Bounds::new(min, max));
        self
    }

    /// Retire workers idle this long.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.policy.idle_timeout = timeout;
        self
    }
}

/// The controller's adaptive state.
pub(crate) struct AdaptState {
    pub(crate) options: AdaptOptions,
    pub(crate) report: AdaptReport,
    pub(crate) last_counts: BTreeMap<String, (usize, usize, usize)>,
    pub(crate) round_running: bool,
    pub(crate) round_again: bool,
    /// Who waits for the running round to end ([`crate::SgeCluster::adapt_now`]).
    pub(crate) waiting_this: Vec<tokio::sync::oneshot::Sender<()>>,
    /// Who waits for the next round to end.
    pub(crate) waiting_next: Vec<tokio::sync::oneshot::Sender<()>>,
    /// Jobs being retired (drain, then delete).
    pub(crate) retiring: BTreeSet<JobId>,
    /// Per queue: failures in a row and no submission before this instant.
    pub(crate) backoff: BTreeMap<String, (u32, Instant)>,
    pub(crate) timer: Option<SpawnHandle>,
}

#[cfg(test)]
mod tests {
    use super::submit_backoff;
    use std::time::Duration;

    #[test]
    fn failed_submissions_back_off_doubling_up_to_the_cap() {
        let (first, max) = (Duration::from_secs(1), Duration::from_secs(60));
        let pauses: Vec<u64> = (1..=8)
            .map(|n| submit_backoff(n, first, max).as_secs())
            .collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(submit_backoff(1000, first, max), max, "no overflow");
        let ms = Duration::from_millis(10);
        assert_eq!(submit_backoff(3, ms, max), Duration::from_millis(40));
    }
}
