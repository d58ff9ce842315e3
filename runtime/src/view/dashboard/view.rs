//! What the dashboard shows, as plain serialisable values, and the pure functions
//! that summarise a run's partitions into them. Everything is aggregated: a stage
//! of a million partitions is drawn as at most [`MAX_CELLS`] cells.

use crate::actors::partition::PartitionState;
use crate::bag::FailedSample;
use serde::Serialize;

/// Most cells drawn per stage; partitions are grouped into this many buckets.
pub const MAX_CELLS: usize = 240;

/// Tasks by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TaskCounts {
    /// Not started (waiting for their input, a fit, or a worker).
    pub waiting: usize,
    /// Handed to a worker.
    pub running: usize,
    /// Finished.
    pub done: usize,
    /// Failed (a failed fit, or a task of a failed run).
    pub failed: usize,
}

impl TaskCounts {
    /// All tasks.
    pub fn total(&self) -> usize {
        self.waiting + self.running + self.done + self.failed
    }

    /// Adds `other`.
    pub fn add(&mut self, other: &TaskCounts) {
        self.waiting += other.waiting;
        self.running += other.running;
        self.done += other.done;
        self.failed += other.failed;
    }
}

/// One stage (fused steps applied to every partition) of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageView {
    /// Its steps, joined with `+`.
    pub name: String,
    /// What its tasks need.
    pub resources: String,
    /// Its tasks by state.
    pub tasks: TaskCounts,
    /// One character per group of partitions: `d` done, `r` running, `q` ready
    /// (queued for a worker), `p` partly done, `w` waiting, `f` failed.
    pub cells: String,
    /// Partitions per cell.
    pub partitions_per_cell: usize,
}

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunPhase {
    /// Its tasks are being run.
    Running,
    /// Every task is done.
    Finished,
    /// It failed (see its error).
    Failed,
}

/// Where a fit is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FitPhase {
    /// Its inputs are not all there yet.
    Waiting,
    /// Its task runs.
    Running,
    /// Its model is there.
    Done,
    /// Its run failed before the model was there.
    Failed,
}

/// What a worker is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerPhase {
    /// It holds no task.
    Idle,
    /// It holds tasks.
    Busy,
    /// It takes no new task and hands its partitions on.
    Draining,
    /// It left (or was lost).
    Gone,
}

/// Where a batch-system job is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobPhase {
    /// Waiting in the batch system's queue.
    #[default]
    Pending,
    /// Running.
    Running,
    /// Held in an error state.
    Failed,
    /// Ended.
    Finished,
}

/// One fit of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FitView {
    /// The fitted step.
    pub step: String,
    /// What the fit task needs.
    pub resources: String,
    /// `waiting`, `running`, `done` or `failed`.
    pub state: FitPhase,
}

/// One run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunView {
    /// The run's id.
    pub id: String,
    /// `running`, `finished` or `failed`.
    pub state: RunPhase,
    /// Seconds since it started (its wall time once over).
    pub wall_s: f64,
    /// Partitions.
    pub partitions: usize,
    /// Samples.
    pub samples: usize,
    /// Its tasks by state.
    pub tasks: TaskCounts,
    /// Its stages in order; fits sit between the stage that feeds them and the
    /// stage that waits for them.
    pub stages: Vec<StageView>,
    /// Its fits.
    pub fits: Vec<FitView>,
    /// Failed samples (the first 100 reported, live while the run goes on), with
    /// the step and the reason.
    pub failed_samples: Vec<FailedSample>,
    /// Why the run failed, if it did.
    pub error: Option<String>,
}

/// A worker.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkerRow {
    /// Its index.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// What it offers.
    pub resources: String,
    /// Its cluster queue.
    pub queue: Option<String>,
    /// Its batch-system job.
    pub job: Option<String>,
    /// `idle`, `busy`, `draining` or `gone`.
    pub state: WorkerPhase,
    /// Tasks handed to it and not yet reported.
    pub tasks_in_hand: usize,
    /// What it is working on: the steps and operation of the tasks in its hands,
    /// with their counts (`scale+pca transform x12`), if busy.
    pub current: Option<String>,
    /// Seconds it spent running tasks.
    pub busy_s: f64,
}

/// A batch-system job of a cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct JobRow {
    /// The queue spec's label.
    pub queue: String,
    /// The batch system's queue.
    pub grid_queue: String,
    /// The job id.
    pub job: String,
    /// `pending`, `running`, `failed` or `finished`.
    pub state: JobPhase,
}

/// A scaling decision of a cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DecisionRow {
    /// Seconds since the cluster started.
    pub at_s: f64,
    /// The queue spec's label.
    pub queue: String,
    /// What was decided.
    pub action: String,
    /// Why.
    pub reason: String,
    /// Its latency, when measured.
    pub latency_s: Option<f64>,
    /// Why its call failed, if it did.
    pub error: Option<String>,
}

/// A cluster's part of the page.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClusterView {
    /// Its jobs.
    pub jobs: Vec<JobRow>,
    /// Its scaling decisions (the latest 200).
    pub decisions: Vec<DecisionRow>,
}

/// The runtime's part of the status.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RuntimeView {
    /// Active runs, then the latest finished ones.
    pub runs: Vec<RunView>,
    /// Every worker that joined.
    pub workers: Vec<WorkerRow>,
}

/// `GET /api/status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Status {
    /// Tasks by state over the runs shown.
    pub tasks: TaskCounts,
    /// Tasks done of all tasks of the runs shown.
    pub progress: Progress,
    /// The runs.
    pub runs: Vec<RunView>,
    /// The workers.
    pub workers: Vec<WorkerRow>,
    /// Cluster jobs.
    pub jobs: Vec<JobRow>,
    /// Cluster scaling decisions.
    pub decisions: Vec<DecisionRow>,
}

/// Done of total.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Progress {
    /// Tasks done.
    pub done: usize,
    /// All tasks.
    pub total: usize,
}

impl Status {
    /// The page's status from the runtime's and the cluster's views.
    pub fn new(runtime: RuntimeView, cluster: ClusterView) -> Self {
        let mut tasks = TaskCounts::default();
        for r in &runtime.runs {
            tasks.add(&r.tasks);
        }
        Status {
            tasks,
            progress: Progress {
                done: tasks.done,
                total: tasks.total(),
            },
            runs: runtime.runs,
            workers: runtime.workers,
            jobs: cluster.jobs,
            decisions: cluster.decisions,
        }
    }
}

/// Where one partition is, as seen by the stage grid.
fn cell_state(state: PartitionState, stage: usize) -> u8 {
    let at = |s: u16| (s as usize).cmp(&stage);
    use std::cmp::Ordering::*;
    match state {
        PartitionState::Done => b'd',
        PartitionState::Running { stage: s, .. } => match at(s) {
            Greater => b'd',
            Equal => b'r',
            Less => b'w',
        },
        PartitionState::Ready { stage: s } => match at(s) {
            Greater => b'd',
            Equal => b'q',
            Less => b'w',
        },
        PartitionState::Waiting { stage: s } => match at(s) {
            Greater => b'd',
            _ => b'w',
        },
    }
}

/// The stage rows of a run: counts per state and a bucketed grid of cells.
/// `failed` marks every unfinished task failed (a failed run).
pub fn stage_views(
    names: &[(String, String)],
    states: &[PartitionState],
    failed: bool,
) -> Vec<StageView> {
    let n = states.len();
    let per_cell = n.div_ceil(MAX_CELLS).max(1);
    names
        .iter()
        .enumerate()
        .map(|(stage, (name, resources))| {
            let mut tasks = TaskCounts::default();
            let mut cells = String::with_capacity(n.div_ceil(per_cell));
            for chunk in states.chunks(per_cell) {
                let (mut done, mut running, mut ready, mut total) = (0, 0, 0, 0);
                for &s in chunk {
                    total += 1;
                    match cell_state(s, stage) {
                        b'd' => done += 1,
                        b'r' => running += 1,
                        b'q' => ready += 1,
                        _ => {}
                    }
                }
                let waiting = total - done - running - ready;
                tasks.done += done;
                tasks.running += running;
                if failed {
                    tasks.failed += ready + waiting;
                } else {
                    tasks.waiting += ready + waiting;
                }
                cells.push(if done == total {
                    'd'
                } else if running > 0 {
                    'r'
                } else if failed {
                    'f'
                } else if ready > 0 {
                    'q'
                } else if done > 0 {
                    'p'
                } else {
                    'w'
                });
            }
            StageView {
                name: name.clone(),
                resources: resources.clone(),
                tasks,
                cells,
                partitions_per_cell: per_cell,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_follow_each_partition_through_the_stages() {
        let states = [
            PartitionState::Done,
            PartitionState::Running {
                stage: 1,
                worker: 0,
            },
            PartitionState::Ready { stage: 0 },
            PartitionState::Waiting { stage: 1 },
        ];
        let names = [
            ("a".to_string(), "{}".to_string()),
            ("b".into(), "{}".into()),
        ];
        let v = stage_views(&names, &states, false);
        assert_eq!(v[0].cells, "ddqd");
        assert_eq!(v[1].cells, "drww");
        assert_eq!(
            v[0].tasks,
            TaskCounts {
                waiting: 1,
                running: 0,
                done: 3,
                failed: 0
            }
        );
        assert_eq!(v[1].tasks.running, 1);
        let failed = stage_views(&names, &states, true);
        assert_eq!(failed[1].cells, "drff");
        assert_eq!(failed[1].tasks.failed, 2);
    }

    #[test]
    fn a_million_partitions_make_at_most_max_cells() {
        let states = vec![PartitionState::Done; 1_000_000];
        let v = stage_views(&[("a".into(), "{}".into())], &states, false);
        assert!(v[0].cells.len() <= MAX_CELLS);
        assert_eq!(v[0].tasks.done, 1_000_000);
        assert!(v[0].cells.chars().all(|c| c == 'd'));
    }
}
