//! What others ask of the scheduler: the backlog per resource shape (and notices
//! when it changes), the dashboard's view and the progress of active runs.

use super::super::messages::*;
use super::super::run::RunState;
use super::{Scheduler, WorkerSlot};
use crate::dashboard::view::{RunPhase, RunView, RuntimeView, WorkerPhase, WorkerRow};
use crate::resources::Resources;
use actix::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// Tells `0` whenever the backlog or the workers change (at most once between two
/// [`GetBacklog`]s), e.g. a cluster's supervisor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WatchBacklog(pub Recipient<BacklogChanged>);

impl Handler<WatchBacklog> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: WatchBacklog, _ctx: &mut Context<Self>) {
        self.watchers.push(msg.0);
        self.watchers_told = false;
        self.tell_watchers();
    }
}

impl Handler<GetBacklog> for Scheduler {
    type Result = MessageResult<GetBacklog>;

    fn handle(&mut self, _msg: GetBacklog, _ctx: &mut Context<Self>) -> Self::Result {
        self.watchers_told = false;
        let mut shapes: BTreeMap<Resources, ShapeBacklog> = BTreeMap::new();
        // Tasks pinned to the worker process holding their input wait for that
        // worker: counted apart, since another worker could not take them.
        let counts = self
            .ready
            .iter()
            .chain(&self.suspect_ready)
            .map(|(shape, q)| (shape, q.len(), 0, 0))
            .chain(
                self.workers
                    .iter()
                    .flat_map(|w| w.pinned.iter().map(|(shape, _)| (shape, 0, 1, 0))),
            )
            .chain(self.in_flight.iter().map(|(shape, n)| (shape, 0, 0, *n)));
        for (shape, ready, held, in_flight) in counts {
            let e = shapes.entry(shape.clone()).or_insert_with(|| ShapeBacklog {
                resources: shape.clone(),
                ready: 0,
                waiting_for_holder: 0,
                in_flight: 0,
                ready_work_s: 0.0,
                ready_unknown: 0,
                oldest_ready: None,
            });
            e.ready += ready;
            e.waiting_for_holder += held;
            e.in_flight += in_flight;
        }
        let ready_groups = self
            .ready
            .iter()
            .chain(&self.suspect_ready)
            .flat_map(|(shape, q)| q.groups().map(move |g| (shape, g)));
        for (shape, (t, n)) in ready_groups {
            let (Some(e), Some(run)) = (shapes.get_mut(shape), self.runs.get(&t.run)) else {
                continue;
            };
            let label = run.label_of(t.task);
            match run.label_time.get(label) {
                Some(&(sum, count)) if count > 0 => e.ready_work_s += n as f64 * sum / count as f64,
                _ => e.ready_unknown += n,
            }
            let at = run.started + Duration::from_secs_f64(t.ready_s.max(0.0));
            e.oldest_ready = Some(e.oldest_ready.map_or(at, |o| o.min(at)));
        }
        MessageResult(
            shapes
                .into_values()
                .filter(|s| s.ready + s.waiting_for_holder + s.in_flight > 0)
                .collect(),
        )
    }
}

/// The dashboard's view of the runtime: active runs, the latest finished ones, and
/// every worker.
#[derive(Message)]
#[rtype(result = "RuntimeView")]
pub struct DashboardView;

impl Handler<DashboardView> for Scheduler {
    type Result = MessageResult<DashboardView>;

    fn handle(&mut self, _msg: DashboardView, _ctx: &mut Context<Self>) -> Self::Result {
        let mut active: Vec<(&u32, &RunState)> = self.runs.iter().collect();
        active.sort_by_key(|(id, _)| **id);
        let mut runs: Vec<RunView> = active
            .iter()
            .map(|(_, r)| r.view(RunPhase::Running))
            .collect();
        runs.extend(self.finished_views.iter().rev().cloned());
        let workers = self
            .workers
            .iter()
            .map(|w| WorkerRow {
                id: w.info.id,
                name: w.info.name.clone(),
                resources: w.info.resources.to_string(),
                queue: w.info.queue.clone(),
                job: w.info.job.clone(),
                state: if !w.alive {
                    WorkerPhase::Gone
                } else if w.draining {
                    WorkerPhase::Draining
                } else if w.in_flight > 0 {
                    WorkerPhase::Busy
                } else {
                    WorkerPhase::Idle
                },
                tasks_in_hand: w.in_flight,
                current: self.working_on(w),
                busy_s: w.busy_s,
            })
            .collect();
        MessageResult(RuntimeView { runs, workers })
    }
}

impl Scheduler {
    /// What `worker` is working on: the steps and operation of the tasks in its
    /// hands, with their counts, e.g. `scale+pca transform x12, clf fit x1`.
    fn working_on(&self, worker: &WorkerSlot) -> Option<String> {
        let parts: Vec<String> = worker
            .in_hand
            .iter()
            .filter_map(|(run, label, n)| {
                let l = self.runs.get(&run)?.labels.get(label)?;
                Some(format!("{} {} x{n}", l.step_names(), l.op.as_str()))
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// Tasks done and tasks in all over the active runs (for progress bars).
#[derive(Message)]
#[rtype(result = "(usize, usize)")]
pub struct RunProgress;

impl Handler<RunProgress> for Scheduler {
    type Result = MessageResult<RunProgress>;

    fn handle(&mut self, _msg: RunProgress, _ctx: &mut Context<Self>) -> Self::Result {
        let (mut done, mut total) = (0, 0);
        for r in self.runs.values() {
            done += r.tasks.len();
            total += r.plan.task_count(r.parts.len());
        }
        MessageResult((done, total))
    }
}
