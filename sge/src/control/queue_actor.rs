//! [`QueueActor`]: one per queue spec; submits, tracks and deletes that queue's jobs.
//!
//! Counts are per queue: [`ScaleTo`] sets how many jobs (pending + running) this
//! queue should have, within the spec's `max_jobs`, and never touches another
//! queue's jobs. Batch-system calls block, so they run on tokio's blocking pool,
//! never on the actor's event loop; a message's state change is applied when its
//! call returns (atomically: the next message waits).

use crate::batch_system::deletion::delete_until_none_listed;
use crate::batch_system::error::SgeError;
use crate::batch_system::job::{JobId, JobState, JobStatus};
use crate::batch_system::job_ending::JobEnding;
use crate::batch_system::script::{job_name, job_script, JobTemplate};
use crate::batch_system::BatchSystem;
use crate::spec::queue_spec::QueueSpec;
use actix::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Jobs of one queue, by state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueJobs {
    /// Jobs waiting in the batch system.
    pub pending: Vec<JobId>,
    /// Jobs running.
    pub running: Vec<JobId>,
    /// Jobs held in an error state by the batch system (e.g. `Eqw`); they still
    /// count against the queue until deleted.
    pub failed: Vec<JobId>,
    /// Jobs that ended (or were deleted) since the queue actor started.
    pub finished: Vec<JobId>,
}

impl QueueJobs {
    /// Pending, running and failed: the jobs the batch system still lists.
    pub fn active(&self) -> usize {
        self.pending.len() + self.running.len() + self.failed.len()
    }
}

/// What a [`ScaleTo`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScaleChange {
    /// Jobs submitted.
    pub submitted: Vec<JobId>,
    /// Jobs deleted.
    pub deleted: Vec<JobId>,
}

/// The actor of one queue spec.
pub struct QueueActor {
    label: String,
    spec: QueueSpec,
    backend: Arc<dyn BatchSystem>,
    template: JobTemplate,
    /// Active jobs in submission order, with their last known state.
    jobs: Vec<(JobId, JobState)>,
    /// Jobs gone from the batch system, oldest first.
    finished: Vec<JobId>,
    /// Of those, the ones not yet handed out by [`TakeEnded`].
    unreported: Vec<JobId>,
    close_timeout: Duration,
    /// Closed: no more submissions.
    closed: bool,
    /// The job script, rendered at the first submission and kept (the spec and
    /// the template never change).
    script: Option<Arc<String>>,
}

impl QueueActor {
    /// An actor for queue `label` submitting jobs made from `template`.
    pub fn new(
        label: impl Into<String>,
        spec: QueueSpec,
        backend: Arc<dyn BatchSystem>,
        template: JobTemplate,
    ) -> Self {
        Self {
            label: label.into(),
            spec,
            backend,
            template,
            jobs: Vec::new(),
            finished: Vec::new(),
            unreported: Vec::new(),
            close_timeout: Duration::from_secs(60),
            closed: false,
            script: None,
        }
    }

    /// How long [`Close`] waits for the batch system to list none of the jobs
    /// (default 60 s).
    pub fn with_close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// The queue's job script, rendered once.
    fn rendered_script(&mut self) -> Result<Arc<String>, SgeError> {
        if let Some(s) = &self.script {
            return Ok(s.clone());
        }
        let s = Arc::new(job_script(&self.label, &self.spec, &self.template)?);
        self.script = Some(s.clone());
        Ok(s)
    }

    fn counts(&self) -> QueueJobs {
        let mut q = QueueJobs {
            finished: self.finished.clone(),
            ..QueueJobs::default()
        };
        for (id, s) in &self.jobs {
            match s {
                JobState::Running => q.running.push(id.clone()),
                JobState::Failed(_) => q.failed.push(id.clone()),
                _ => q.pending.push(id.clone()),
            }
        }
        q
    }

    /// Which jobs to delete to come down to `target`: pending ones first (newest
    /// first), then running ones (newest first).
    fn victims(&self, target: usize) -> Vec<JobId> {
        let excess = self.jobs.len().saturating_sub(target);
        let pending = self
            .jobs
            .iter()
            .rev()
            .filter(|(_, s)| *s != JobState::Running);
        let running = self
            .jobs
            .iter()
            .rev()
            .filter(|(_, s)| *s == JobState::Running);
        pending
            .chain(running)
            .take(excess)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Takes in the states of the jobs `queried`: a queried job the batch system
    /// no longer lists has ended; a job submitted since the query keeps its state.
    fn apply_statuses(&mut self, queried: &BTreeSet<JobId>, statuses: Vec<JobStatus>) {
        let by_id: BTreeMap<JobId, JobState> =
            statuses.into_iter().map(|s| (s.id, s.state)).collect();
        let label = self.label.clone();
        let mut ended = Vec::new();
        self.jobs.retain_mut(|(id, state)| match by_id.get(id) {
            None if !queried.contains(id) => true,
            Some(JobState::Failed(code)) => {
                tracing::warn!(queue = %label, job = %id, %code, "job in an error state");
                *state = JobState::Failed(code.clone());
                true
            }
            Some(JobState::Finished) | None => {
                ended.push(id.clone());
                false
            }
            Some(s) => {
                *state = s.clone();
                true
            }
        });
        self.note_ended(ended);
    }

    fn note_ended(&mut self, ended: Vec<JobId>) {
        self.finished.extend(ended.iter().cloned());
        self.unreported.extend(ended);
    }
}

impl Actor for QueueActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // Never leave a job behind: delete what is left, tracked or only named
        // after this queue. The call runs on a thread of its own and is waited
        // for here on purpose: the actor system may end right after this actor
        // (a last resort; `close` deletes first).
        let ids: Vec<JobId> = self.jobs.drain(..).map(|(id, _)| id).collect();
        if self.closed && ids.is_empty() {
            return;
        }
        let backend = self.backend.clone();
        let label = self.label.clone();
        let name = job_name(&self.template.name);
        let _ = std::thread::spawn(move || {
            let named = backend.named(&name).map(|jobs| {
                jobs.into_iter()
                    .filter(|s| s.name == name && !ids.contains(&s.id))
                    .map(|s| s.id)
                    .collect::<Vec<_>>()
            });
            let doomed: Vec<JobId> = ids.into_iter().chain(named.unwrap_or_default()).collect();
            if let Err(e) = backend.delete(&doomed) {
                tracing::error!(queue = %label, error = %e, "could not delete jobs at stop");
            }
        })
        .join();
    }
}

/// Sets the number of this queue's jobs (pending + running); capped by `max_jobs`.
#[derive(Message)]
#[rtype(result = "Result<ScaleChange, SgeError>")]
pub struct ScaleTo(pub usize);

/// Asks the batch system for the state of this queue's jobs.
#[derive(Message)]
#[rtype(result = "Result<QueueJobs, SgeError>")]
pub struct Refresh;

/// This queue's jobs as last seen (no batch-system call).
#[derive(Message)]
#[rtype(result = "QueueJobs")]
pub struct Jobs;

/// The jobs that ended since the last `TakeEnded` (as seen by [`Refresh`]; jobs
/// deleted by [`ScaleTo`] or [`Close`] are not included).
#[derive(Message)]
#[rtype(result = "Vec<JobId>")]
pub struct TakeEnded;

impl Handler<TakeEnded> for QueueActor {
    type Result = MessageResult<TakeEnded>;

    fn handle(&mut self, _msg: TakeEnded, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(std::mem::take(&mut self.unreported))
    }
}

/// Deletes these jobs of this queue (e.g. a retired worker's), now.
#[derive(Message)]
#[rtype(result = "Result<(), SgeError>")]
pub struct DeleteJobs(pub Vec<JobId>);

impl Handler<DeleteJobs> for QueueActor {
    type Result = AtomicResponse<Self, Result<(), SgeError>>;

    fn handle(&mut self, msg: DeleteJobs, _ctx: &mut Context<Self>) -> Self::Result {
        let ids: Vec<JobId> = msg
            .0
            .into_iter()
            .filter(|id| self.jobs.iter().any(|(j, _)| j == id))
            .collect();
        let backend = self.backend.clone();
        let doomed = ids.clone();
        let work = async move {
            if doomed.is_empty() {
                return Ok(());
            }
            blocking(move || backend.delete(&doomed), "delete").await
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(move |res, act, _| {
            if res.is_ok() {
                act.jobs.retain(|(id, _)| !ids.contains(id));
                act.finished.extend(ids);
            }
            res
        })))
    }
}

/// Submits one job of this queue on hold and deletes it again: proves that the
/// batch system accepts the queue's jobs (queue name, resource requests) without
/// running anything. The held job carries the queue's job name, so [`Close`]
/// deletes it even when this delete failed or its id was never read.
#[derive(Message)]
#[rtype(result = "Result<(), SgeError>")]
pub struct CheckSubmit;

impl Handler<CheckSubmit> for QueueActor {
    type Result = ResponseFuture<Result<(), SgeError>>;

    fn handle(&mut self, _msg: CheckSubmit, _ctx: &mut Context<Self>) -> Self::Result {
        let template = JobTemplate {
            hold: true,
            ..self.template.clone()
        };
        let script = job_script(&self.label, &self.spec, &template);
        let (backend, label) = (self.backend.clone(), self.label.clone());
        Box::pin(async move {
            let script = script?;
            blocking(
                move || {
                    let id = backend.submit(&label, &script)?;
                    backend.delete(std::slice::from_ref(&id))
                },
                "check submission",
            )
            .await
        })
    }
}

/// Runs a blocking batch-system call on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, SgeError> + Send + 'static,
    what: &str,
) -> Result<T, SgeError> {
    tokio::task::spawn_blocking(call).await.unwrap_or_else(|e| {
        Err(SgeError::Queue {
            queue: String::new(),
            message: format!("{what} task failed: {e}"),
        })
    })
}

/// How these ended jobs of this queue ended, from the batch system's accounting.
#[derive(Message)]
#[rtype(result = "Vec<(JobId, JobEnding)>")]
pub struct Endings(pub Vec<JobId>);

impl Handler<Endings> for QueueActor {
    type Result = ResponseFuture<Vec<(JobId, JobEnding)>>;

    fn handle(&mut self, msg: Endings, _ctx: &mut Context<Self>) -> Self::Result {
        let backend = self.backend.clone();
        Box::pin(async move {
            let ids = msg.0.clone();
            let found = blocking(
                move || {
                    Ok(ids
                        .iter()
                        .map(|id| (id.clone(), backend.ending(id)))
                        .collect())
                },
                "accounting",
            )
            .await;
            found.unwrap_or_else(|e| {
                msg.0
                    .into_iter()
                    .map(|id| (id, JobEnding::Unknown(e.to_string())))
                    .collect()
            })
        })
    }
}

/// Deletes every job of this queue (the ones it tracks and every job named
/// after it, in any state, `Eqw` included) and waits until the batch system
/// lists none.
#[derive(Message)]
#[rtype(result = "Result<(), SgeError>")]
pub struct Close;

impl Handler<Jobs> for QueueActor {
    type Result = MessageResult<Jobs>;

    fn handle(&mut self, _msg: Jobs, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.counts())
    }
}

impl Handler<ScaleTo> for QueueActor {
    type Result = AtomicResponse<Self, Result<ScaleChange, SgeError>>;

    fn handle(&mut self, msg: ScaleTo, _ctx: &mut Context<Self>) -> Self::Result {
        self.scale(msg.0)
    }
}

/// Changes the number of this queue's jobs by `0` (more, or fewer: pending ones
/// first); capped by `max_jobs`.
#[derive(Message)]
#[rtype(result = "Result<ScaleChange, SgeError>")]
pub struct ScaleBy(pub isize);

impl Handler<ScaleBy> for QueueActor {
    type Result = AtomicResponse<Self, Result<ScaleChange, SgeError>>;

    fn handle(&mut self, msg: ScaleBy, _ctx: &mut Context<Self>) -> Self::Result {
        let target = self.jobs.len().saturating_add_signed(msg.0);
        self.scale(target)
    }
}

impl QueueActor {
    /// Submits or deletes jobs to reach `target` (pending + running). Jobs
    /// submitted before a failing submission are kept and tracked.
    fn scale(&mut self, target: usize) -> AtomicResponse<Self, Result<ScaleChange, SgeError>> {
        let cap = self.spec.max_jobs.map_or(usize::MAX, |m| m as usize);
        // A closed queue submits nothing more (a late top-up must not outlive close).
        let cap = if self.closed { 0 } else { cap };
        let target = target.min(cap);
        let backend = self.backend.clone();
        let (label, have) = (self.label.clone(), self.jobs.len());
        let victims = self.victims(target);
        let script = self.rendered_script();
        let want = target.saturating_sub(have);
        let (name, known): (String, BTreeSet<JobId>) = (
            job_name(&self.template.name),
            self.jobs.iter().map(|(id, _)| id.clone()).collect(),
        );
        let work = async move {
            let script = match script {
                Ok(s) => s,
                Err(e) => return (ScaleChange::default(), Some(e)),
            };
            let call = move || -> Result<(ScaleChange, Option<SgeError>), SgeError> {
                let mut change = ScaleChange::default();
                if !victims.is_empty() {
                    if let Err(e) = backend.delete(&victims) {
                        return Ok((change, Some(e)));
                    }
                    change.deleted = victims;
                }
                for _ in 0..want {
                    match backend.submit(&label, &script) {
                        Ok(id) => change.submitted.push(id),
                        Err(e) => {
                            if submission_may_have_happened(&e) {
                                // Track what the batch system lists under this
                                // queue's name and nobody tracks yet: the job whose
                                // id was lost counts towards the target at once.
                                let tracked: BTreeSet<&JobId> =
                                    known.iter().chain(&change.submitted).collect();
                                let lost: Vec<JobId> = backend
                                    .named(&name)
                                    .unwrap_or_default()
                                    .into_iter()
                                    .filter(|s| s.name == name && !tracked.contains(&s.id))
                                    .map(|s| s.id)
                                    .collect();
                                change.submitted.extend(lost);
                            }
                            return Ok((change, Some(e)));
                        }
                    }
                }
                Ok((change, None))
            };
            match blocking(call, "submit").await {
                Ok(r) => r,
                Err(e) => (ScaleChange::default(), Some(e)),
            }
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(|(change, error), act, _| {
            act.jobs.retain(|(id, _)| !change.deleted.contains(id));
            act.finished.extend(change.deleted.iter().cloned());
            act.jobs.extend(change.submitted.iter().map(|id| (id.clone(), JobState::Pending)));
            if !change.submitted.is_empty() || !change.deleted.is_empty() {
                tracing::info!(queue = %act.label, submitted = change.submitted.len(), deleted = change.deleted.len(), "scaled");
            }
            match error {
                Some(e) => Err(e),
                None => Ok(change),
            }
        })))
    }
}

impl Handler<Refresh> for QueueActor {
    type Result = AtomicResponse<Self, Result<QueueJobs, SgeError>>;

    fn handle(&mut self, _msg: Refresh, _ctx: &mut Context<Self>) -> Self::Result {
        let ids: Vec<JobId> = self.jobs.iter().map(|(id, _)| id.clone()).collect();
        let backend = self.backend.clone();
        let queried: BTreeSet<JobId> = ids.iter().cloned().collect();
        let work = blocking(move || backend.status(&ids), "status");
        AtomicResponse::new(Box::pin(work.into_actor(self).map(move |res, act, _| {
            let statuses = res?;
            act.apply_statuses(&queried, statuses);
            Ok(act.counts())
        })))
    }
}

/// Whether a failed submission may still have created a job: its command ran
/// but its answer could not be read, or it timed out.
fn submission_may_have_happened(e: &SgeError) -> bool {
    matches!(
        e,
        SgeError::UnexpectedOutput { .. } | SgeError::Timeout { .. }
    )
}

/// The ids of this queue's jobs (no batch-system call): what a poll of all queues
/// asks the batch system about in one call.
#[derive(Message)]
#[rtype(result = "Vec<JobId>")]
pub struct TrackedJobs;

impl Handler<TrackedJobs> for QueueActor {
    type Result = Vec<JobId>;

    fn handle(&mut self, _msg: TrackedJobs, _ctx: &mut Context<Self>) -> Vec<JobId> {
        self.jobs.iter().map(|(id, _)| id.clone()).collect()
    }
}

/// The states of the jobs `queried` (read for all queues in one call), or the
/// error of that call; returns this queue's jobs.
#[derive(Message)]
#[rtype(result = "Result<QueueJobs, SgeError>")]
pub struct ApplyStatuses {
    /// The ids that were asked about.
    pub queried: BTreeSet<JobId>,
    /// Their states, or why they could not be read.
    pub statuses: Result<Vec<JobStatus>, String>,
}

impl Handler<ApplyStatuses> for QueueActor {
    type Result = Result<QueueJobs, SgeError>;

    fn handle(&mut self, msg: ApplyStatuses, _ctx: &mut Context<Self>) -> Self::Result {
        let statuses = msg.statuses.map_err(|message| SgeError::Queue {
            queue: self.label.clone(),
            message,
        })?;
        self.apply_statuses(&msg.queried, statuses);
        Ok(self.counts())
    }
}

impl Handler<Close> for QueueActor {
    type Result = AtomicResponse<Self, Result<(), SgeError>>;

    fn handle(&mut self, _msg: Close, _ctx: &mut Context<Self>) -> Self::Result {
        self.closed = true;
        let ids: Vec<JobId> = self.jobs.iter().map(|(id, _)| id.clone()).collect();
        let backend = self.backend.clone();
        let timeout = self.close_timeout;
        let label = self.label.clone();
        let name = job_name(&self.template.name);
        let work = blocking(
            move || delete_until_none_listed(&*backend, &ids, &name, &label, timeout),
            "close",
        );
        AtomicResponse::new(Box::pin(work.into_actor(self).map(|res, act, _| {
            if res.is_ok() {
                let gone: Vec<JobId> = act.jobs.drain(..).map(|(id, _)| id).collect();
                act.finished.extend(gone);
            }
            res
        })))
    }
}

#[cfg(test)]
#[path = "queue_actor_tests.rs"]
mod tests;
