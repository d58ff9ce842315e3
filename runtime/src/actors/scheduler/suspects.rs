//! Which task killed a worker: the only one in its hands. When a worker dies
//! holding several tasks, every one of them becomes a suspect: from then on each
//! suspect runs alone on a worker (nothing else in that worker's hands), so the
//! next death names its task with certainty. A task that killed its worker
//! `max_task_kills` times is quarantined.
//!
//! A worker's own word on what it was running is not used: its last message may
//! not leave before the process dies, and a task it announced may have finished
//! before another, unannounced one killed it. Only the count of tasks in its hands
//! when it died is certain.
//!
//! Why one at a time rather than halves: a suspect alone costs one round trip,
//! a death costs a worker restart (a process start, or a grid job's submission and
//! scheduling: seconds to minutes); halving a window of `w` suspects costs about
//! `log2(w)` deaths where running them alone costs one per kill.

use super::super::messages::TaskKind;
use std::collections::HashMap;

/// What a suspicion is about: a partition (whichever of its stages ran, since a
/// partition rebuilt after a loss runs its stages again) or a fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Suspect {
    /// A partition of the run.
    Partition(u32),
    /// A fit of the run.
    Fit(u16),
}

impl Suspect {
    /// The suspect a task belongs to.
    pub(super) fn of(task: TaskKind) -> Self {
        match task {
            TaskKind::Chain { partition, .. } => Suspect::Partition(partition),
            TaskKind::Fit { fit } => Suspect::Fit(fit),
        }
    }
}

/// Who a worker's death is blamed on: the only task in its hands; `None` when
/// several were (or none).
pub(super) fn culprit(unfinished: &[(u32, TaskKind)]) -> Option<(u32, TaskKind)> {
    match unfinished {
        [only] => Some(*only),
        _ => None,
    }
}

/// Deaths and kills per suspect, per run.
#[derive(Debug, Default)]
pub(super) struct Suspects {
    /// (run, suspect) -> (deaths it was in the hands of, deaths it certainly caused).
    counts: HashMap<(u32, Suspect), (u32, u32)>,
}

impl Suspects {
    /// Whether the task's partition (or fit) is under suspicion: it runs alone.
    pub(super) fn is_suspect(&self, run: u32, task: TaskKind) -> bool {
        !self.counts.is_empty() && self.counts.contains_key(&(run, Suspect::of(task)))
    }

    /// The task was in the hands of a worker that died naming nobody.
    pub(super) fn suspect(&mut self, run: u32, task: TaskKind) {
        self.counts.entry((run, Suspect::of(task))).or_default().0 += 1;
    }

    /// The task killed its worker; returns how many times it has.
    pub(super) fn killed(&mut self, run: u32, task: TaskKind) -> u32 {
        let c = self.counts.entry((run, Suspect::of(task))).or_default();
        c.0 += 1;
        c.1 += 1;
        c.1
    }

    /// The run ended: its suspicions go.
    pub(super) fn forget_run(&mut self, run: u32) {
        if !self.counts.is_empty() {
            self.counts.retain(|(r, _), _| *r != run);
        }
    }

    /// The run's suspects with their deaths and kills, most deaths first.
    pub(super) fn of_run(&self, run: u32) -> Vec<(Suspect, u32, u32)> {
        let mut v: Vec<(Suspect, u32, u32)> = self
            .counts
            .iter()
            .filter(|((r, _), _)| *r == run)
            .map(|((_, s), (d, k))| (*s, *d, *k))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(stage: u16, partition: u32) -> TaskKind {
        TaskKind::Chain { stage, partition }
    }

    #[test]
    fn the_culprit_is_the_only_task_in_hand() {
        let a = (1, chain(0, 3));
        let b = (1, chain(0, 4));
        assert_eq!(culprit(&[a]), Some(a));
        assert_eq!(culprit(&[a, b]), None, "several: suspects");
        assert_eq!(culprit(&[]), None);
    }

    #[test]
    fn a_partition_stays_suspect_whichever_stage_runs_and_kills_are_counted() {
        let mut s = Suspects::default();
        assert!(!s.is_suspect(1, chain(2, 7)));
        s.suspect(1, chain(2, 7));
        assert!(s.is_suspect(1, chain(0, 7)), "rebuilt from its first stage");
        assert!(!s.is_suspect(2, chain(0, 7)), "per run");
        assert_eq!(s.killed(1, chain(0, 7)), 1);
        assert_eq!(s.killed(1, chain(1, 7)), 2);
        s.suspect(1, TaskKind::Fit { fit: 0 });
        assert_eq!(
            s.of_run(1),
            vec![(Suspect::Partition(7), 3, 2), (Suspect::Fit(0), 1, 0)]
        );
        s.forget_run(1);
        assert!(s.of_run(1).is_empty() && !s.is_suspect(1, chain(0, 7)));
    }
}
