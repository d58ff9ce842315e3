//! Messages between the scheduler, workers and estimator actors.

use crate::batch::Batch;
use crate::error::RunError;
use crate::estimator::Estimator;
use crate::exec::{ChainOutput, Contribution, StageExec};
use crate::resources::Resources;
use crate::run::{RunOutput, RunRequest};
use crate::step::Step;
use actix::prelude::*;
use std::sync::Arc;
use std::time::Instant;

/// Which task of a run: a partition's stage, or a fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum TaskKind {
    /// Stage `stage` of partition `partition`.
    Chain {
        /// The stage.
        stage: u16,
        /// The partition.
        partition: u32,
    },
    /// Fit number `fit` of the plan.
    Fit {
        /// The fit.
        fit: u16,
    },
}

/// What a worker needs to run one task (cloned cheaply: its data is shared).
#[derive(Clone, Debug)]
pub enum TaskPayload {
    /// Run a stage's chain on one partition.
    Chain {
        /// The partition's data (or a note that the worker holds it).
        input: ChainInput,
        /// The stage's steps and models.
        stage: Arc<StageExec>,
        /// Keep the output on the worker (only a summary comes back).
        hold: bool,
        /// Keep it only when its arrays have at least this many bytes (a peer
        /// would fetch it: a smaller one comes back with the summary, which
        /// costs less than a fetch).
        hold_min_bytes: u64,
        /// Keep the rows the stage gives a gather fit on the worker too: the
        /// fit's worker fetches them from there (only where every worker that
        /// may run the fit is a worker process).
        keep_fit_input: bool,
    },
    /// Fit a step from every partition's contribution.
    Fit {
        /// The step (its checkpoint says where the model is saved).
        step: Arc<Step>,
        /// The unfitted estimator.
        template: Arc<dyn Estimator>,
        /// Reduce or gather.
        reduce: bool,
        /// The hash of everything upstream of the step, recorded with a saved
        /// model (empty when the step saves none).
        upstream: String,
        /// Contributions in partition order, put in by the fit's estimator actor,
        /// which holds them (the scheduler sends the envelope without them);
        /// shared: a worker process's proxy keeps them until the fit reports, and
        /// they are never copied to be sent.
        parts: Arc<Vec<Contribution>>,
    },
}

/// Where a chain task's input is.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum ChainInput {
    /// Sent with the task.
    Here(Arc<Batch>),
    /// Already on the worker, from the partition's previous stage.
    Held,
    /// Held by another worker process (worker `holder`, reached at `addr`):
    /// fetched from there, which then holds it no more.
    Peer {
        /// Where the holder listens for its peers.
        addr: String,
        /// The holder's worker id.
        holder: u32,
    },
}

/// One task handed to a worker (cloned cheaply: its data is shared).
#[derive(Clone, Debug)]
pub struct TaskEnvelope {
    /// Seconds from the run's start to the task becoming ready.
    pub ready_s: f64,
    /// The run (scheduler-local id).
    pub run: u32,
    /// The task.
    pub task: TaskKind,
    /// The resources it holds on the worker while queued or running.
    pub resources: Resources,
    /// What to run.
    pub payload: TaskPayload,
    /// For a chain task whose stage feeds a fit: that fit's estimator actor,
    /// where the worker (or the proxy of a worker process) sends the
    /// partition's contribution itself, never through the scheduler.
    pub contribute_to: Option<Recipient<Contribute>>,
}

#[cfg(test)]
impl TaskEnvelope {
    /// A chain task of run 1 on `partition` through an empty stage, with
    /// `input` sent along (tests of the wire and the worker).
    pub(crate) fn test_chain(partition: u32, input: Batch, hold: bool) -> Self {
        TaskEnvelope {
            ready_s: 0.0,
            run: 1,
            task: TaskKind::Chain {
                stage: 0,
                partition,
            },
            resources: Resources::none(),
            payload: TaskPayload::Chain {
                input: ChainInput::Here(Arc::new(input)),
                stage: Arc::new(crate::exec::StageExec {
                    ops: Vec::new(),
                    feeds: None,
                }),
                hold,
                hold_min_bytes: 0,
                keep_fit_input: false,
            },
            contribute_to: None,
        }
    }
}

/// What a task produced.
#[derive(Debug)]
pub enum TaskResult {
    /// A chain's output.
    Chain(ChainOutput),
    /// A fitted model, or why the fit failed.
    Fit(Result<Arc<dyn Estimator>, String>),
    /// The task's input or result was bigger than a frame of the wire may be, so
    /// it could not be sent (its run fails naming the step and partition).
    TooLarge {
        /// The encoded size in bytes.
        size: u64,
        /// The frame limit.
        limit: u64,
    },
    /// A fit could not fetch its inputs from the worker processes keeping
    /// them: per holder (worker id), why.
    InputsLost(Vec<(u32, String)>),
}

/// One finished task.
#[derive(Debug)]
pub struct TaskOutcome {
    /// Seconds from the run's start to the task becoming ready.
    pub ready_s: f64,
    /// The run.
    pub run: u32,
    /// The task.
    pub task: TaskKind,
    /// The resources it held.
    pub resources: Resources,
    /// When the worker started it.
    pub started: Instant,
    /// When it finished.
    pub finished: Instant,
    /// What it produced.
    pub result: TaskResult,
}

impl TaskOutcome {
    /// The outcome of task `env` given here and now, without running it (too
    /// large to send, its inputs unreachable, quarantined).
    pub fn without_running(env: &TaskEnvelope, result: TaskResult) -> Self {
        let now = Instant::now();
        TaskOutcome {
            ready_s: env.ready_s,
            run: env.run,
            task: env.task,
            resources: env.resources.clone(),
            started: now,
            finished: now,
            result,
        }
    }

    /// Names worker `id` as the holder of the fit rows this chain kept on it
    /// (the worker does not know its own id; its proxy does).
    pub fn name_holder(&mut self, id: u32) {
        if let TaskResult::Chain(out) = &mut self.result {
            if let Some(Contribution::Kept(k)) = &mut out.contribution {
                k.holder = id;
            }
        }
    }

    /// Sends a chain's contribution to its fit's estimator actor `to`, taking it
    /// out of the outcome (without `to`, the fit has its inputs: it is dropped).
    pub fn hand_contribution(&mut self, to: Option<&Recipient<Contribute>>) {
        let (TaskKind::Chain { partition, .. }, TaskResult::Chain(out)) =
            (self.task, &mut self.result)
        else {
            return;
        };
        if let (Some(c), Some(to)) = (out.contribution.take(), to) {
            to.do_send(Contribute {
                parts: vec![(partition, c)],
            });
        }
    }
}

/// Scheduler -> worker: a batch of tasks, one way.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct RunTasks(pub Vec<TaskEnvelope>);

/// Worker -> scheduler: finished tasks, one way.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct TasksDone {
    /// The worker's index.
    pub worker: u32,
    /// The outcomes, in completion order.
    pub outcomes: Vec<TaskOutcome>,
}

/// Client -> scheduler: run a graph; the answer comes on `reply`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Submit {
    /// What to run.
    pub request: RunRequest,
    /// Where the result goes.
    pub reply: tokio::sync::oneshot::Sender<Result<RunOutput, RunError>>,
}

/// Scheduler -> estimator actor: partitions' contributions to its fit.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Contribute {
    /// `(partition, contribution)` pairs.
    pub parts: Vec<(u32, Contribution)>,
}

/// Estimator actor -> scheduler: every partition contributed; the fit can run
/// (the actor holds the inputs: none of them comes to the scheduler).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct FitReady {
    /// The run.
    pub run: u32,
    /// The fit.
    pub fit: u16,
    /// Bytes of the gathered inputs' data (what the fit's worker will receive).
    pub input_bytes: u64,
    /// How many times the actor was told to forget inputs before (a notice
    /// from before the latest [`ForgetInputs`] is stale).
    pub round: u32,
}

/// Scheduler -> estimator actor: the rows of these partitions, kept on a
/// worker process, are gone; gather them again.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ForgetInputs(pub Vec<u32>);

/// Scheduler -> estimator actor: run the fit on the worker `to`; the actor puts
/// its inputs into the envelope and sends it there.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RunFit {
    /// The fit task, its inputs left empty.
    pub envelope: TaskEnvelope,
    /// The worker chosen for it.
    pub to: Recipient<RunTasks>,
}

/// Scheduler -> estimator actor: the fit finished.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Fitted(pub Arc<dyn Estimator>);

/// Anyone -> estimator actor: the fitted model, if the fit finished.
#[derive(Message, Debug)]
#[rtype(result = "Option<Arc<dyn Estimator>>")]
pub struct GetModel;

/// Backlog of one resource shape.
#[derive(Clone, Debug, PartialEq)]
pub struct ShapeBacklog {
    /// The shape (what the tasks need).
    pub resources: Resources,
    /// Tasks ready to run and not yet handed to a worker, that any worker
    /// offering the shape can take.
    pub ready: usize,
    /// Tasks ready to run whose input a worker process holds: they wait for that
    /// worker (a new worker would not take them).
    pub waiting_for_holder: usize,
    /// Tasks handed to a worker (queued there or running).
    pub in_flight: usize,
    /// Estimated seconds of work of the ready tasks whose stage (or fit) already
    /// has a measured task in its run (the mean of those).
    pub ready_work_s: f64,
    /// Ready tasks whose stage has no measured task yet.
    pub ready_unknown: usize,
    /// When the oldest ready task became ready.
    pub oldest_ready: Option<Instant>,
}

/// Scheduler -> worker: send back the data of these held partitions
/// (`(run, partition)`) when the worker is being retired, or drop it (`discard`)
/// when their run failed; and drop the fit inputs it keeps for its peers that
/// nobody needs any more.
#[derive(Message, Debug, Default)]
#[rtype(result = "()")]
pub struct ReleaseHeld {
    /// `(run, partition)`.
    pub parts: Vec<(u32, u32)>,
    /// Drop the data instead of sending it back.
    pub discard: bool,
    /// Fit inputs to drop: of a run, or of one of its stages.
    pub drop_inputs: Vec<(u32, Option<u16>)>,
}

/// Scheduler -> a worker process's proxy: the scheduler has taken the worker as
/// lost and sends it nothing more. Until then a lost worker's proxy hands back
/// every task it is given, so no task is dropped on the way to a dead worker.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ForgetWorker;

/// Worker -> scheduler: the data of held partitions it was asked to release
/// (`None` for one it did not have).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct PartitionsReturned {
    /// The worker's index.
    pub worker: u32,
    /// `(run, partition, data)`.
    pub parts: Vec<(u32, u32, Option<Arc<Batch>>)>,
}

/// Scheduler -> subscriber: the backlog or the workers changed since the
/// subscriber last asked for the backlog (one notice per [`GetBacklog`]).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct BacklogChanged;

/// Anyone -> scheduler: the exact backlog per resource shape.
#[derive(Message, Debug)]
#[rtype(result = "Vec<ShapeBacklog>")]
pub struct GetBacklog;
