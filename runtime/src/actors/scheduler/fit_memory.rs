//! The scheduler's side of fit memory budgets: a fit's need checked when its
//! inputs are gathered, and whether its task waits for a worker with that
//! memory (the rules are `memory`'s pure functions).

use super::super::run::FitBarrier;
use super::{memory, Scheduler};
use crate::error::RunError;

impl Scheduler {
    /// A fit's inputs are gathered: what it needs on its worker, checked against
    /// the memory of every worker and queue that could run it, and kept so that
    /// only those with enough get it.
    pub(super) fn check_fit_memory(
        &mut self,
        run: u32,
        f: usize,
        input_bytes: u64,
    ) -> Result<(), RunError> {
        let need = memory::fit_need(input_bytes, self.config.fit_memory_factor);
        let Some(state) = self.runs.get_mut(&run) else {
            return Ok(());
        };
        let Some(node) = state.plan.fits.get(f) else {
            return Ok(());
        };
        let shape = &node.resources;
        let budgets = self
            .workers
            .iter()
            .filter(|w| w.alive && !w.draining && w.info.resources.covers(shape))
            .map(|w| w.info.memory)
            .chain(
                self.cluster_offers
                    .iter()
                    .filter(|o| o.resources.covers(shape))
                    .map(|o| o.memory),
            );
        match memory::check(need, budgets) {
            Ok(()) => {
                state.fit_need[f] = need;
                Ok(())
            }
            Err(largest) => Err(RunError::FitTooLarge {
                step: state.steps[node.step].name.clone(),
                inputs: input_bytes,
                need,
                largest,
            }),
        }
    }
}

impl Scheduler {
    /// Decides, for every fit whose task waits for a worker, whether it waits
    /// for one with the memory it needs: when such a worker is alive, or a
    /// queue is known to start them. Otherwise any worker that can run it takes
    /// it (a queue whose memory is unknown is not waited for).
    pub(super) fn place_fits_by_memory(&mut self) {
        for run in self.runs.values_mut() {
            for (f, barrier) in run.fits.iter().enumerate() {
                let need = run.fit_need[f];
                if need == 0 || !matches!(barrier, FitBarrier::Gathered) {
                    continue;
                }
                let shape = &run.plan.fits[f].resources;
                let alive = self.workers.iter().any(|w| {
                    w.alive
                        && !w.draining
                        && w.info.resources.covers(shape)
                        && memory::can_take(need, w.info.memory)
                });
                let queued = self
                    .cluster_offers
                    .iter()
                    .any(|o| o.resources.covers(shape) && o.memory.is_some_and(|m| need <= m));
                run.fit_waits_for_memory[f] = alive || queued;
            }
        }
    }
}
