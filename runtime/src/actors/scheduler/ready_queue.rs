//! [`ReadyQueue`]: the ready tasks of one resource shape, first in, first out.
//!
//! A run's first stage makes one ready task per partition at once: a million
//! one-sample partitions would be a million queue entries (24 bytes each, twice
//! that while the queue grows). They are one entry here, a range of partitions
//! that hands out its tasks one by one.

use super::TaskRef;
use crate::actors::messages::TaskKind;
use std::collections::VecDeque;
use std::ops::Range;

/// One entry: a task, or the same stage of consecutive partitions.
#[derive(Clone, Debug)]
enum Entry {
    One(TaskRef),
    Chains {
        run: u32,
        stage: u16,
        partitions: Range<u32>,
        ready_s: f64,
    },
}

impl Entry {
    fn len(&self) -> usize {
        match self {
            Entry::One(_) => 1,
            Entry::Chains { partitions, .. } => partitions.len(),
        }
    }

    /// The entry's first task.
    fn first(&self) -> TaskRef {
        match self {
            Entry::One(t) => *t,
            Entry::Chains {
                run,
                stage,
                partitions,
                ready_s,
            } => chain_task(*run, *stage, partitions.start, *ready_s),
        }
    }
}

/// The task of stage `stage` of `partition`.
fn chain_task(run: u32, stage: u16, partition: u32, ready_s: f64) -> TaskRef {
    TaskRef {
        run,
        task: TaskKind::Chain { stage, partition },
        ready_s,
    }
}

/// Appends the entry of stage `stage` of `partitions` (nothing when empty).
fn push_range(
    entries: &mut VecDeque<Entry>,
    run: u32,
    stage: u16,
    partitions: Range<u32>,
    ready_s: f64,
) {
    if !partitions.is_empty() {
        entries.push_back(Entry::Chains {
            run,
            stage,
            partitions,
            ready_s,
        });
    }
}

/// Ready tasks in the order they became ready.
#[derive(Clone, Debug, Default)]
pub(super) struct ReadyQueue {
    entries: VecDeque<Entry>,
    len: usize,
}

impl ReadyQueue {
    /// Queues one task.
    pub(super) fn push_back(&mut self, t: TaskRef) {
        self.entries.push_back(Entry::One(t));
        self.len += 1;
    }

    /// Queues stage `stage` of each of `partitions` of run `run`, in order.
    pub(super) fn push_chains(
        &mut self,
        run: u32,
        stage: u16,
        partitions: Range<u32>,
        ready_s: f64,
    ) {
        self.len += partitions.len();
        push_range(&mut self.entries, run, stage, partitions, ready_s);
    }

    /// The oldest task, taken out.
    pub(super) fn pop_front(&mut self) -> Option<TaskRef> {
        let entry = self.entries.front_mut()?;
        let t = entry.first();
        match entry {
            Entry::Chains { partitions, .. } if partitions.len() > 1 => partitions.start += 1,
            _ => {
                self.entries.pop_front();
            }
        }
        self.len -= 1;
        Some(t)
    }

    /// How many tasks wait.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Whether no task waits.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps only the tasks `keep` says yes to, in order (a range is cut where
    /// a task of it goes).
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&TaskRef) -> bool) {
        let mut kept = VecDeque::with_capacity(self.entries.len());
        for entry in self.entries.drain(..) {
            let Entry::Chains {
                run,
                stage,
                partitions,
                ready_s,
            } = entry
            else {
                if keep(&entry.first()) {
                    kept.push_back(entry);
                }
                continue;
            };
            let mut start = partitions.start;
            for p in partitions.clone() {
                if !keep(&chain_task(run, stage, p, ready_s)) {
                    push_range(&mut kept, run, stage, start..p, ready_s);
                    start = p + 1;
                }
            }
            push_range(&mut kept, run, stage, start..partitions.end, ready_s);
        }
        self.entries = kept;
        self.len = self.entries.iter().map(Entry::len).sum();
    }

    /// The waiting tasks in groups that share their run, label and ready time:
    /// each group's first task and how many tasks it stands for.
    pub(super) fn groups(&self) -> impl Iterator<Item = (TaskRef, usize)> + '_ {
        self.entries.iter().map(|e| (e.first(), e.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(run: u32, stage: u16, partition: u32) -> TaskRef {
        chain_task(run, stage, partition, 0.0)
    }

    fn order(q: &mut ReadyQueue) -> Vec<(u32, u16, u32)> {
        std::iter::from_fn(|| q.pop_front())
            .map(|t| match t.task {
                TaskKind::Chain { stage, partition } => (t.run, stage, partition),
                TaskKind::Fit { fit } => (t.run, fit, u32::MAX),
            })
            .collect()
    }

    #[test]
    fn a_range_hands_out_its_partitions_in_order_between_single_tasks() {
        let mut q = ReadyQueue::default();
        q.push_back(chain(1, 2, 9));
        q.push_chains(2, 0, 0..3, 0.0);
        q.push_chains(3, 0, 5..5, 0.0);
        q.push_back(chain(1, 2, 10));
        assert_eq!(q.len(), 5);
        assert_eq!(q.groups().map(|(_, n)| n).collect::<Vec<_>>(), [1, 3, 1]);
        assert_eq!(
            order(&mut q),
            [(1, 2, 9), (2, 0, 0), (2, 0, 1), (2, 0, 2), (1, 2, 10)]
        );
        assert!(q.is_empty() && q.pop_front().is_none());
    }

    #[test]
    fn dropping_a_run_keeps_the_others_and_their_count() {
        let mut q = ReadyQueue::default();
        q.push_chains(1, 0, 0..1000, 0.0);
        q.push_back(chain(2, 1, 4));
        q.pop_front();
        q.retain(|t| t.run != 1);
        assert_eq!(q.len(), 1);
        assert_eq!(order(&mut q), [(2, 1, 4)]);
    }

    #[test]
    fn dropping_some_partitions_of_a_range_keeps_the_rest_in_order() {
        let mut q = ReadyQueue::default();
        q.push_chains(1, 0, 0..6, 0.0);
        q.push_back(chain(2, 1, 4));
        let partition = |t: &TaskRef| match t.task {
            TaskKind::Chain { partition, .. } => partition,
            TaskKind::Fit { .. } => u32::MAX,
        };
        q.retain(|t| t.run != 1 || ![0, 2, 3].contains(&partition(t)));
        assert_eq!(q.len(), 4);
        assert_eq!(order(&mut q), [(1, 0, 1), (1, 0, 4), (1, 0, 5), (2, 1, 4)]);
    }

    #[test]
    fn a_million_partitions_are_one_entry() {
        let mut q = ReadyQueue::default();
        q.push_chains(7, 0, 0..1_000_000, 1.5);
        assert_eq!((q.len(), q.entries.len()), (1_000_000, 1));
        let (first, n) = q.groups().next().unwrap();
        assert_eq!((first.run, first.ready_s, n), (7, 1.5, 1_000_000));
    }
}
