//! [`RunReport`]: what ran where, when, and what failed.

use crate::bag::FailedSample;
use crate::resources::Resources;
use serde::{Deserialize, Serialize};

/// Whether a task fitted a step or transformed partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskOp {
    /// A fit task.
    Fit,
    /// A per-partition chain of transforms (or predictions).
    Transform,
}

impl TaskOp {
    /// `fit` or `transform`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskOp::Fit => "fit",
            TaskOp::Transform => "transform",
        }
    }
}

/// What a group of tasks does: shared by all tasks of one stage or one fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskLabel {
    /// Fit or transform.
    pub op: TaskOp,
    /// The steps the task runs (one for a fit; the fused chain for a transform; empty
    /// for a stage that only feeds a fit).
    pub steps: Vec<String>,
    /// The resources the task needs.
    pub resources: Resources,
    /// For a stage: the fit (index among the fits) it waits for.
    pub after_fit: Option<usize>,
    /// For a stage: the fit (index among the fits) its outputs feed.
    pub feeds_fit: Option<usize>,
}

impl TaskLabel {
    /// The labels of a plan's tasks: each stage's, then each fit's; `name` gives
    /// a step's name by its index.
    pub fn all_of(plan: &crate::plan::Plan, name: impl Fn(usize) -> String) -> Vec<TaskLabel> {
        let stages = plan.stages.iter().map(|s| TaskLabel {
            op: TaskOp::Transform,
            steps: s.ops.iter().map(|o| name(o.step)).collect(),
            resources: s.resources.clone(),
            after_fit: s.after_fit,
            feeds_fit: s.feeds_fit,
        });
        let fits = plan.fits.iter().map(|f| TaskLabel {
            op: TaskOp::Fit,
            steps: vec![name(f.step)],
            resources: f.resources.clone(),
            after_fit: None,
            feeds_fit: None,
        });
        stages.chain(fits).collect()
    }
}

impl TaskLabel {
    /// The steps joined with `+` (`-` when none).
    pub fn step_names(&self) -> String {
        if self.steps.is_empty() {
            "-".to_string()
        } else {
            self.steps.join("+")
        }
    }
}

/// A worker as the report names it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Index of the worker in the runtime.
    pub id: u32,
    /// Its name (e.g. `local-0`).
    pub name: String,
    /// What it offers.
    pub resources: Resources,
    /// The cluster queue it belongs to, if any.
    pub queue: Option<String>,
    /// Its batch-system job id, if any.
    pub job: Option<String>,
    /// The label of its queue spec (`default`, `gpu`), on a cluster.
    #[serde(default)]
    pub label: Option<String>,
    /// The memory it may use, in bytes (`None`: unknown, or a thread of the
    /// scheduler's process).
    #[serde(default)]
    pub memory: Option<u64>,
}

/// One executed task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Index into [`RunReport::labels`].
    pub label: u32,
    /// The partition, for transform tasks.
    pub partition: Option<u32>,
    /// Index into [`RunReport::workers`].
    pub worker: u32,
    /// Seconds from the run's start to the task becoming ready.
    pub ready_s: f64,
    /// Seconds from the run's start to the task starting on its worker.
    pub started_s: f64,
    /// Seconds from the run's start to the task finishing.
    pub finished_s: f64,
    /// Samples that failed in this task.
    pub failed_samples: u32,
    /// The task's own error (a failed fit). Boxed text: a run of a million
    /// tasks keeps a million records.
    pub error: Option<Box<str>>,
}

/// The report of one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The run's id.
    pub run_id: String,
    /// Task labels, referenced by [`TaskRecord::label`].
    pub labels: Vec<TaskLabel>,
    /// Every task, in completion order.
    pub tasks: Vec<TaskRecord>,
    /// The runtime's workers.
    pub workers: Vec<WorkerInfo>,
    /// Number of partitions.
    pub partitions: usize,
    /// Number of samples in the input.
    pub samples: usize,
    /// Samples that failed, with step and reason.
    pub failed: Vec<FailedSample>,
    /// Per checkpointed step: samples computed and samples taken from valid files.
    pub checkpoints: std::collections::BTreeMap<String, crate::exec::OpStats>,
    /// Workers lost while they held this run's tasks or data (each replaced: a
    /// local worker process is restarted, a grid job resubmitted).
    #[serde(default)]
    pub workers_lost: u32,
    /// Steps whose fit was replaced by their saved model (its provenance matched).
    #[serde(default)]
    pub loaded_models: Vec<String>,
    /// Wall time of the run, seconds.
    pub wall_s: f64,
}

impl RunReport {
    /// The label of a task.
    pub fn label(&self, t: &TaskRecord) -> &TaskLabel {
        &self.labels[t.label as usize]
    }

    /// The worker of a task.
    pub fn worker(&self, t: &TaskRecord) -> &WorkerInfo {
        &self.workers[t.worker as usize]
    }

    /// Number of tasks whose label needs the named resource.
    pub fn tasks_needing(&self, resource: &str) -> usize {
        self.tasks
            .iter()
            .filter(|t| self.label(t).resources.get(resource) > 0)
            .count()
    }

    /// The distinct workers that ran tasks of `op` over `step`.
    pub fn workers_of(&self, step: &str, op: TaskOp) -> Vec<&WorkerInfo> {
        let mut ids: Vec<u32> = self
            .tasks
            .iter()
            .filter(|t| {
                let l = self.label(t);
                l.op == op && l.steps.iter().any(|s| s == step)
            })
            .map(|t| t.worker)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter().map(|i| &self.workers[i as usize]).collect()
    }

    /// One line per task:
    /// `task step=<steps> op=<fit|transform> partition=<i|-> queue=<queue|-> label=<label|-> job=<id|->`
    /// (the worker of each task is in [`RunReport::tasks`]).
    pub fn task_lines(&self) -> Vec<String> {
        self.tasks
            .iter()
            .map(|t| {
                let l = self.label(t);
                let w = self.worker(t);
                format!(
                    "task step={} op={} partition={} queue={} label={} job={}",
                    l.step_names(),
                    l.op.as_str(),
                    t.partition.map_or("-".to_string(), |p| p.to_string()),
                    w.queue.as_deref().unwrap_or("-"),
                    w.label.as_deref().unwrap_or("-"),
                    w.job.as_deref().unwrap_or("-"),
                )
            })
            .collect()
    }

    /// Samples computed by checkpointed steps, summed over the steps.
    pub fn checkpoint_computed(&self) -> usize {
        self.checkpoints.values().map(|s| s.computed).sum()
    }

    /// Number of fit tasks that ran.
    pub fn fits(&self) -> usize {
        self.tasks
            .iter()
            .filter(|t| self.label(t).op == TaskOp::Fit)
            .count()
    }

    /// A one-line summary: tasks, partitions, workers, failed samples, wall time.
    pub fn summary(&self) -> String {
        let used = {
            let mut w: Vec<u32> = self.tasks.iter().map(|t| t.worker).collect();
            w.sort_unstable();
            w.dedup();
            w.len()
        };
        format!(
            "run {}: tasks={} partitions={} samples={} workers={} (used {}) failed_samples={} wall={:.3}s",
            self.run_id,
            self.tasks.len(),
            self.partitions,
            self.samples,
            self.workers.len(),
            used,
            self.failed.len(),
            self.wall_s
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_record_takes_64_bytes() {
        // A run keeps one record per task: a million tasks, 61 MiB of records.
        assert_eq!(std::mem::size_of::<TaskRecord>(), 64);
    }
}
