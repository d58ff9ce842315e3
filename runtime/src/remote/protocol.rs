//! Messages between the scheduler and a worker process, after the handshake.

use crate::actors::messages::{
    ChainInput, TaskEnvelope, TaskKind, TaskOutcome, TaskPayload, TaskResult,
};
use crate::batch::Batch;
use crate::estimator::Estimator;
use crate::exec::{ChainOutput, Contribution, StageExec};
use crate::resources::Resources;
use crate::step::Step;
use crate::wire::frame::{encode_message, encode_split, Split};
use crate::wire::WireError;
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
    /// Drop the fit inputs kept for peers: of a run, or of one of its stages
    /// (their fit has its model, or the run ended).
    DropInputs(Vec<(u32, Option<u16>)>),
}

/// Worker -> scheduler.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromWorker {
    /// Finished tasks.
    Done(Vec<WireOutcome>),
    /// The worker is alive.
    Heartbeat,
    /// The held partitions asked for by `Release` (`None`: not here).
    Released(Vec<(u32, u32, Option<Arc<Batch>>)>),
    /// A fit running here has fetched every row kept for it: their holders
    /// may be retired while it runs (run and fit).
    InputsFetched(u32, u16),
}

impl FromWorker {
    /// The bytes of data it carries (outputs, contributions, released
    /// partitions); metadata is not counted.
    pub fn data_bytes(&self) -> u64 {
        let batch = |b: &Option<Arc<Batch>>| b.as_ref().map_or(0, |b| b.array_bytes());
        match self {
            FromWorker::Done(outcomes) => outcomes
                .iter()
                .map(|o| match &o.result {
                    WireResult::Chain(c) => {
                        c.batch.array_bytes()
                            + c.contribution.as_ref().map_or(0, Contribution::data_bytes)
                    }
                    WireResult::Fit(_)
                    | WireResult::TooLarge { .. }
                    | WireResult::InputsLost(_) => 0,
                })
                .sum(),
            FromWorker::Released(parts) => parts.iter().map(|(_, _, b)| batch(b)).sum(),
            FromWorker::Heartbeat | FromWorker::InputsFetched(..) => 0,
        }
    }
}

/// One task on the wire (a tiny chain task in its compact form:
/// `remote/compact_tasks.rs`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "Self")]
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
        /// Only when its arrays have at least this many bytes.
        #[serde(default)]
        hold_min_bytes: u64,
        /// Keep the rows for a gather fit on the worker too.
        #[serde(default)]
        keep_fit_input: bool,
    },
    /// A fit.
    Fit {
        /// The step.
        step: Arc<Step>,
        /// The unfitted estimator.
        template: Arc<dyn Estimator>,
        /// Reduce or gather.
        reduce: bool,
        /// The hash of everything upstream of the step.
        upstream: String,
        /// Contributions in partition order.
        parts: Arc<Vec<Contribution>>,
    },
}

/// One finished task on the wire (a tiny chain's result in its compact form:
/// `remote/compact_tasks.rs`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "Self")]
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
    Chain(ChainOutput),
    /// A fitted model, or why the fit failed.
    Fit(Result<Arc<dyn Estimator>, String>),
    /// The result was bigger than a frame may be, so it was not sent.
    TooLarge {
        /// Its encoded size in bytes.
        size: u64,
        /// The frame limit.
        limit: u64,
    },
    /// A fit could not fetch its inputs: per holder, why.
    InputsLost(Vec<(u32, String)>),
}

crate::wire::compact::serde_by_form!(WireTask, WireOutcome);

/// [`FromWorker`] by reference, to encode part of a message without copying it.
/// Its variants mirror [`FromWorker`]'s, in the same order, so the bytes are the
/// same (tested).
#[derive(Serialize)]
#[allow(dead_code)] // Only `Done` and `Released` are built; `Heartbeat` keeps the order.
enum FromWorkerRef<'a> {
    Done(&'a [WireOutcome]),
    Heartbeat,
    Released(&'a [Released]),
}

/// A released partition: `(run, partition, data)`.
pub type Released = (u32, u32, Option<Arc<Batch>>);

/// Encodes a worker's message as messages of at most `max` bytes (each streams
/// in frames): finished tasks and released partitions are split over several
/// messages when they do not fit in one; a task result too big for any message
/// is replaced by [`WireResult::TooLarge`] (its run then fails naming the step
/// and partition), and a released partition too big by `None` (it is rebuilt
/// from its lineage).
pub fn frames_from_worker(msg: FromWorker, max: u64) -> Result<Vec<Vec<u8>>, WireError> {
    match msg {
        FromWorker::Done(mut outcomes) => {
            let enc =
                |some: &[WireOutcome], max: u64| encode_message(&FromWorkerRef::Done(some), max);
            let Split {
                mut frames,
                oversized,
            } = encode_split(&outcomes, max, &enc)?;
            for (i, size) in oversized {
                let o = &mut outcomes[i];
                tracing::warn!(size, run = o.run, task = ?o.task, "a task result is too big to send");
                o.result = WireResult::TooLarge { size, limit: max };
                frames.push(enc(std::slice::from_ref(o), max)?);
            }
            Ok(frames)
        }
        FromWorker::Released(mut parts) => {
            let enc =
                |some: &[Released], max: u64| encode_message(&FromWorkerRef::Released(some), max);
            let Split {
                mut frames,
                oversized,
            } = encode_split(&parts, max, &enc)?;
            for (i, size) in oversized {
                tracing::warn!(
                    size,
                    "a released partition is too big to send; it will be rebuilt"
                );
                parts[i].2 = None;
                frames.push(enc(std::slice::from_ref(&parts[i]), max)?);
            }
            Ok(frames)
        }
        other => Ok(vec![encode_message(&other, max)?]),
    }
}

/// Encodes tasks for a worker as messages of at most `max` bytes (several when
/// they do not fit in one; each streams in frames). Returns the messages and
/// the tasks too big for any message, by index, with their size.
pub fn frames_to_worker(envelopes: &[TaskEnvelope], max: u64) -> Result<Split, WireError> {
    encode_split(envelopes, max, &|some, max| {
        encode_message(&pack(some), max)
    })
}

/// Cuts tasks for one worker into groups of about `target` bytes of data each
/// (a task bigger than that is a group alone), in order: each group is encoded
/// and written before the next is encoded, so the sender holds one group's
/// bytes at a time, not the whole batch's.
pub fn group_by_bytes(tasks: Vec<TaskEnvelope>, target: u64) -> Vec<Vec<TaskEnvelope>> {
    let mut groups = Vec::new();
    let mut group = Vec::new();
    let mut bytes = 0u64;
    for t in tasks {
        let b = data_bytes(&t);
        if !group.is_empty() && bytes + b > target {
            groups.push(std::mem::take(&mut group));
            bytes = 0;
        }
        bytes += b;
        group.push(t);
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

/// The bytes of data a task carries (its input partition, or a fit's gathered
/// inputs); metadata is not counted.
pub fn data_bytes(t: &TaskEnvelope) -> u64 {
    match &t.payload {
        TaskPayload::Chain {
            input: ChainInput::Here(b),
            ..
        } => b.array_bytes(),
        TaskPayload::Chain { .. } => 0,
        TaskPayload::Fit { parts, .. } => parts.iter().map(Contribution::data_bytes).sum(),
    }
}

/// Packs envelopes for the wire, sending each stage once.
pub fn pack(envelopes: &[TaskEnvelope]) -> ToWorker {
    let mut stages: Vec<Arc<StageExec>> = Vec::new();
    let mut tasks = Vec::with_capacity(envelopes.len());
    for e in envelopes {
        let payload = match &e.payload {
            TaskPayload::Chain {
                input,
                stage,
                hold,
                hold_min_bytes,
                keep_fit_input,
            } => {
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
                    hold_min_bytes: *hold_min_bytes,
                    keep_fit_input: *keep_fit_input,
                }
            }
            TaskPayload::Fit {
                step,
                template,
                reduce,
                upstream,
                parts,
            } => WirePayload::Fit {
                step: step.clone(),
                template: template.clone(),
                reduce: *reduce,
                upstream: upstream.clone(),
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
                WirePayload::Chain {
                    input,
                    stage,
                    hold,
                    hold_min_bytes,
                    keep_fit_input,
                } => TaskPayload::Chain {
                    input,
                    hold,
                    hold_min_bytes,
                    keep_fit_input,
                    stage: stages
                        .get(stage as usize)
                        .cloned()
                        .ok_or_else(|| format!("task names stage {stage} of {}", stages.len()))?,
                },
                WirePayload::Fit {
                    step,
                    template,
                    reduce,
                    upstream,
                    parts,
                } => TaskPayload::Fit {
                    step,
                    template,
                    reduce,
                    upstream,
                    parts,
                },
            };
            Ok(TaskEnvelope {
                ready_s: t.ready_s,
                run: t.run,
                task: t.task,
                resources: t.resources,
                payload,
                contribute_to: None,
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
            TaskResult::TooLarge { size, limit } => WireResult::TooLarge { size, limit },
            TaskResult::InputsLost(l) => WireResult::InputsLost(l),
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
            WireResult::TooLarge { size, limit } => TaskResult::TooLarge { size, limit },
            WireResult::InputsLost(l) => TaskResult::InputsLost(l),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::OpStats;

    fn outcome(run: u32) -> WireOutcome {
        WireOutcome {
            run,
            task: TaskKind::Chain {
                stage: 0,
                partition: run,
            },
            resources: Resources::none(),
            ready_s: 0.5,
            run_s: 0.25,
            result: WireResult::Chain(ChainOutput {
                batch: Arc::new(Batch::empty()),
                new_failures: 0,
                first_failed: Vec::new(),
                held: true,
                checkpoints: vec![("s".into(), OpStats::default())],
                contribution: None,
            }),
        }
    }

    /// A chain task on `partition` whose input has `rows` rows of one value.
    fn task_of_rows(partition: u32, rows: usize) -> TaskEnvelope {
        let keys = (0..rows).map(|i| format!("{partition}-{i}")).collect();
        let data = ndarray::ArrayD::zeros(ndarray::IxDyn(&[rows, 1]));
        TaskEnvelope::test_chain(partition, Batch::from_parts(keys, data), false)
    }

    #[test]
    fn tasks_go_in_groups_of_about_the_target_bytes_in_order() {
        // 100 rows of one f64: 800 bytes each; a target of 2,000 bytes takes two.
        let tasks: Vec<_> = (0..5).map(|p| task_of_rows(p, 100)).collect();
        let groups = group_by_bytes(tasks, 2000);
        let parts: Vec<Vec<u32>> = groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|t| match t.task {
                        TaskKind::Chain { partition, .. } => partition,
                        TaskKind::Fit { .. } => unreachable!(),
                    })
                    .collect()
            })
            .collect();
        assert_eq!(parts, vec![vec![0, 1], vec![2, 3], vec![4]]);
        // A task bigger than the target goes alone; nothing is dropped.
        let tasks = vec![
            task_of_rows(0, 10),
            task_of_rows(1, 1000),
            task_of_rows(2, 10),
        ];
        let sizes: Vec<usize> = group_by_bytes(tasks, 2000).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 1, 1]);
    }

    #[test]
    fn the_borrowed_form_encodes_to_the_same_bytes() {
        let done = vec![outcome(1), outcome(2)];
        let by_ref = encode_message(&FromWorkerRef::Done(&done), 1 << 20).unwrap();
        let owned = encode_message(&FromWorker::Done(done), 1 << 20).unwrap();
        assert_eq!(by_ref, owned);
        let released: Vec<Released> = vec![(1, 2, None), (1, 3, Some(Arc::new(Batch::empty())))];
        let by_ref = encode_message(&FromWorkerRef::Released(&released), 1 << 20).unwrap();
        let owned = encode_message(&FromWorker::Released(released), 1 << 20).unwrap();
        assert_eq!(by_ref, owned);
        let frames = frames_from_worker(FromWorker::Done(vec![outcome(7)]), 1 << 20).unwrap();
        assert_eq!(frames.len(), 1);
        match crate::wire::frame::decode::<FromWorker>(&frames[0][4..]).unwrap() {
            FromWorker::Done(o) => assert_eq!(o[0].run, 7),
            other => panic!("{other:?}"),
        }
    }
}
