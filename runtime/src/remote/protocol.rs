//! Messages between the scheduler and a worker process, after the handshake.

use crate::actors::messages::{
    ChainInput, TaskEnvelope, TaskKind, TaskOutcome, TaskPayload, TaskResult,
};
use crate::batch::Batch;
use crate::estimator::Estimator;
use crate::exec::{ChainOutput, Contribution, StageExec};
use crate::resources::Resources;
use crate::step::Step;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Scheduler -> worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToWorker {
    /// Run these tasks; chain tasks name their stage by index into `stages`.
    Run {
        /// The stages the tasks use, each sent once per message.
        stages: Vec<Arc<StageExec>>,
        /// The tasks.
        tasks: Vec<WireTask>,
    },
    /// The scheduler is alive.
    Heartbeat,
    /// Finish and exit.
    Shutdown,
    /// Send back the data of these held partitions (`(run, partition)`), after
    /// the tasks already sent.
    Release(Vec<(u32, u32)>),
    /// Drop these held partitions (their run failed), after the tasks already sent.
    Discard(Vec<(u32, u32)>),
}

/// Worker -> scheduler.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromWorker {
    /// Finished tasks.
    Done(Vec<WireOutcome>),
    /// The worker started this task (so a task that kills its worker is known).
    Running {
        /// The run.
        run: u32,
        /// The task.
        task: TaskKind,
    },
    /// The worker is alive.
    Heartbeat,
    /// The held partitions asked for by `Release` (`None`: not here).
    Released(Vec<(u32, u32, Option<Arc<Batch>>)>),
}

/// One task on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireTask {
    /// The run.
    pub run: u32,
    /// The task.
    pub task: TaskKind,
    /// What it holds on the worker.
    pub resources: Resources,
    /// When it became ready.
    pub ready_s: f64,
    /// What to run.
    pub payload: WirePayload,
}

/// What a wire task runs.
#[derive(Debug, Serialize, Deserialize)]
pub enum WirePayload {
    /// A chain over one partition.
    Chain {
        /// The partition, or a note that the worker holds it.
        input: ChainInput,
        /// Index into the message's stages.
        stage: u32,
        /// Keep the output on the worker.
        hold: bool,
    },
    /// A fit.
    Fit {
        /// The step.
        step: Arc<Step>,
        /// The unfitted estimator.
        template: Arc<dyn Estimator>,
        /// Reduce or gather.
        reduce: bool,
        /// Contributions in partition order.
        parts: Vec<Contribution>,
    },
}

/// One finished task on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireOutcome {
    /// The run.
    pub run: u32,
    /// The task.
    pub task: TaskKind,
    /// What it held.
    pub resources: Resources,
    /// When it became ready.
    pub ready_s: f64,
    /// How long it ran on the worker, seconds.
    pub run_s: f64,
    /// What it produced.
    pub result: WireResult,
}

/// A task's result on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub enum WireResult {
    /// A chain's output.
    Chain(Box<ChainOutput>),
    /// A fitted model, or why the fit failed.
    Fit(Result<Arc<dyn Estimator>, String>),
}

/// Packs envelopes for the wire, sending each stage once.
pub fn pack(envelopes: &[TaskEnvelope]) -> ToWorker {
    let mut stages: Vec<Arc<StageExec>> = Vec::new();
    let mut tasks = Vec::with_capacity(envelopes.len());
    for e in envelopes {
        let payload = match &e.payload {
            TaskPayload::Chain { input, stage, hold } => {
                let idx = match stages.iter().position(|s| Arc::ptr_eq(s, stage)) {
                    Some(i) => i,
                    None => {
                        stages.push(stage.clone());
                        stages.len() - 1
                    }
                };
                WirePayload::Chain {
                    input: input.clone(),
                    stage: idx as u32,
                    hold: *hold,
                }
            }
            TaskPayload::Fit {
                step,
                template,
                reduce,
                parts,
            } => WirePayload::Fit {
                step: step.clone(),
                template: template.clone(),
                reduce: *reduce,
                parts: parts.clone(),
            },
        };
        tasks.push(WireTask {
            run: e.run,
            task: e.task,
            resources: e.resources.clone(),
            ready_s: e.ready_s,
            payload,
        });
    }
    ToWorker::Run { stages, tasks }
}

/// Unpacks wire tasks into envelopes on the worker.
pub fn unpack(
    stages: &[Arc<StageExec>],
    tasks: Vec<WireTask>,
) -> Result<Vec<TaskEnvelope>, String> {
    tasks
        .into_iter()
        .map(|t| {
            let payload = match t.payload {
                WirePayload::Chain { input, stage, hold } => TaskPayload::Chain {
                    input,
                    hold,
                    stage: stages
                        .get(stage as usize)
                        .cloned()
                        .ok_or_else(|| format!("task names stage {stage} of {}", stages.len()))?,
                },
                WirePayload::Fit {
                    step,
                    template,
                    reduce,
                    parts,
                } => TaskPayload::Fit {
                    step,
                    template,
                    reduce,
                    parts,
                },
            };
            Ok(TaskEnvelope {
                ready_s: t.ready_s,
                run: t.run,
                task: t.task,
                resources: t.resources,
                payload,
            })
        })
        .collect()
}

/// A finished task for the wire.
pub fn outcome_to_wire(o: TaskOutcome) -> WireOutcome {
    WireOutcome {
        run: o.run,
        task: o.task,
        resources: o.resources,
        ready_s: o.ready_s,
        run_s: o.finished.duration_since(o.started).as_secs_f64(),
        result: match o.result {
            TaskResult::Chain(c) => WireResult::Chain(c),
            TaskResult::Fit(f) => WireResult::Fit(f),
        },
    }
}

/// A finished task from the wire, timed as if it just finished here.
pub fn outcome_from_wire(o: WireOutcome) -> TaskOutcome {
    let finished = Instant::now();
    let started = finished
        .checked_sub(Duration::from_secs_f64(o.run_s.max(0.0)))
        .unwrap_or(finished);
    TaskOutcome {
        ready_s: o.ready_s,
        run: o.run,
        task: o.task,
        resources: o.resources,
        started,
        finished,
        result: match o.result {
            WireResult::Chain(c) => TaskResult::Chain(c),
            WireResult::Fit(f) => TaskResult::Fit(f),
        },
    }
}
