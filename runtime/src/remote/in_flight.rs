//! [`InFlight`]: the tasks a worker process has been handed and not yet
//! reported, in the order they were sent.
//!
//! A worker runs its tasks in the order they arrive and reports them in that
//! order, so the task a report names is almost always the oldest one: kept in
//! a queue, finding it costs one look at the front, where a hash map cost a
//! hash and a probe into a table of a thousand entries (at a thousand workers
//! each holding a thousand tiny tasks, the largest cost on the connections'
//! threads). A report out of order is still found, by a search from the front.

use crate::actors::messages::{TaskEnvelope, TaskKind};
use std::collections::VecDeque;

/// Tasks handed to one worker and not yet reported, oldest first.
#[derive(Default)]
pub(crate) struct InFlight(VecDeque<TaskEnvelope>);

impl InFlight {
    /// Records a task as sent.
    pub(crate) fn push(&mut self, task: TaskEnvelope) {
        self.0.push_back(task);
    }

    /// Takes the task `(run, task)` out, if it is still here (a report of a task
    /// already reported, or never sent, finds nothing).
    pub(crate) fn take(&mut self, run: u32, task: TaskKind) -> Option<TaskEnvelope> {
        let is_it = |e: &TaskEnvelope| e.run == run && e.task == task;
        if self.0.front().is_some_and(is_it) {
            return self.0.pop_front();
        }
        let at = self.0.iter().position(is_it)?;
        self.0.remove(at)
    }

    /// How many tasks are in flight.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Takes every task out, oldest first.
    pub(crate) fn take_all(&mut self) -> Vec<TaskEnvelope> {
        self.0.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Batch;

    fn task(partition: u32) -> TaskEnvelope {
        TaskEnvelope::test_chain(partition, Batch::empty(), false)
    }

    fn chain(partition: u32) -> TaskKind {
        TaskKind::Chain {
            stage: 0,
            partition,
        }
    }

    fn partitions(tasks: &[TaskEnvelope]) -> Vec<u32> {
        tasks
            .iter()
            .map(|e| match e.task {
                TaskKind::Chain { partition, .. } => partition,
                TaskKind::Fit { .. } => u32::MAX,
            })
            .collect()
    }

    #[test]
    fn reports_in_order_and_out_of_order_each_find_their_task_once() {
        let mut f = InFlight::default();
        (0..5).for_each(|p| f.push(task(p)));
        assert!(f.take(1, chain(0)).is_some());
        assert!(f.take(1, chain(3)).is_some(), "out of order");
        assert!(f.take(1, chain(3)).is_none(), "a second report of it");
        assert!(f.take(2, chain(1)).is_none(), "another run's task");
        assert!(f.take(1, chain(9)).is_none(), "never sent");
        assert_eq!(f.len(), 3);
        assert_eq!(partitions(&f.take_all()), vec![1, 2, 4], "oldest first");
        assert!(f.is_empty());
    }
}
