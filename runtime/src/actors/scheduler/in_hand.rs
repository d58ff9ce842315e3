//! What a worker is working on: its tasks handed out and not yet reported, counted
//! per run and task label (a handful of entries, so a short list beats a map).

/// Tasks in a worker's hands, per (run, label).
#[derive(Clone, Debug, Default)]
pub(super) struct TasksInHand {
    entries: Vec<(u32, usize, u32)>,
}

impl TasksInHand {
    /// One more task of `label` of `run`.
    pub(super) fn add(&mut self, run: u32, label: usize) {
        match self
            .entries
            .iter_mut()
            .find(|(r, l, _)| (*r, *l) == (run, label))
        {
            Some(e) => e.2 += 1,
            None => self.entries.push((run, label, 1)),
        }
    }

    /// One task of `label` of `run` reported (a report of a task never added is
    /// ignored).
    pub(super) fn remove(&mut self, run: u32, label: usize) {
        if let Some(i) = self
            .entries
            .iter()
            .position(|(r, l, _)| (*r, *l) == (run, label))
        {
            self.entries[i].2 -= 1;
            if self.entries[i].2 == 0 {
                self.entries.remove(i);
            }
        }
    }

    /// How many tasks of `run` are in these hands.
    pub(super) fn of_run(&self, run: u32) -> u32 {
        self.entries
            .iter()
            .filter(|(r, _, _)| *r == run)
            .map(|(_, _, n)| n)
            .sum()
    }

    /// Forgets the tasks of `run` (it failed: what comes back of it is ignored).
    pub(super) fn forget_run(&mut self, run: u32) {
        self.entries.retain(|(r, _, _)| *r != run);
    }

    /// Forgets everything (the worker is gone).
    pub(super) fn clear(&mut self) {
        self.entries.clear();
    }

    /// (run, label, tasks) in the order they were first handed out.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, usize, u32)> + '_ {
        self.entries.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::TasksInHand;

    #[test]
    fn counts_per_run_and_label_and_forgets_finished_labels() {
        let mut h = TasksInHand::default();
        h.add(1, 0);
        h.add(1, 0);
        h.add(1, 3);
        h.add(2, 0);
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [(1, 0, 2), (1, 3, 1), (2, 0, 1)]
        );
        h.remove(1, 0);
        h.remove(1, 3);
        assert_eq!(h.iter().collect::<Vec<_>>(), [(1, 0, 1), (2, 0, 1)]);
        h.remove(1, 0);
        h.remove(2, 0);
        assert_eq!(h.iter().count(), 0);
    }

    #[test]
    fn reports_of_tasks_never_handed_out_or_of_forgotten_runs_change_nothing() {
        let mut h = TasksInHand::default();
        h.add(1, 0);
        h.remove(9, 9);
        h.remove(1, 1);
        assert_eq!(h.iter().collect::<Vec<_>>(), [(1, 0, 1)]);
        h.add(2, 0);
        h.forget_run(1);
        assert_eq!(h.iter().collect::<Vec<_>>(), [(2, 0, 1)]);
        h.remove(1, 0);
        assert_eq!(h.iter().collect::<Vec<_>>(), [(2, 0, 1)]);
        h.clear();
        assert_eq!(h.iter().count(), 0);
    }
}
