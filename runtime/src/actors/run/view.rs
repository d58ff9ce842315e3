//! The dashboard's view of a run.

use super::{FitBarrier, RunState};
use crate::dashboard::view::{FitPhase, FitView, RunPhase, RunView, TaskCounts};

impl RunState {
    /// The dashboard's view of this run.
    pub(crate) fn view(&self, state: RunPhase) -> RunView {
        let names: Vec<(String, String)> = (0..self.plan.stages.len())
            .map(|s| {
                let l = &self.labels[s];
                (l.step_names(), l.resources.to_string())
            })
            .collect();
        let states: Vec<_> = self.parts.iter().map(|p| p.state()).collect();
        let failed = state == RunPhase::Failed;
        let stages = crate::dashboard::view::stage_views(&names, &states, failed);
        let fits: Vec<FitView> = self
            .plan
            .fits
            .iter()
            .enumerate()
            .map(|(f, node)| FitView {
                step: self.steps[node.step].name.clone(),
                resources: node.resources.to_string(),
                state: match &self.fits[f] {
                    FitBarrier::Done => FitPhase::Done,
                    _ if failed => FitPhase::Failed,
                    FitBarrier::Gathering => FitPhase::Waiting,
                    FitBarrier::Gathered | FitBarrier::Running => FitPhase::Running,
                },
            })
            .collect();
        let mut tasks = TaskCounts::default();
        for st in &stages {
            tasks.add(&st.tasks);
        }
        for f in &fits {
            match f.state {
                FitPhase::Done => tasks.done += 1,
                FitPhase::Running => tasks.running += 1,
                FitPhase::Failed => tasks.failed += 1,
                FitPhase::Waiting => tasks.waiting += 1,
            }
        }
        RunView {
            id: self.id.clone(),
            state,
            wall_s: self.now(),
            partitions: self.parts.len(),
            samples: self.samples,
            tasks,
            stages,
            fits,
            failed_samples: self.first_failed.clone(),
            error: None,
        }
    }
}
