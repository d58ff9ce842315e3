//! [`PartitionActor`]: one output partition of a run that kept its outputs in
//! place. It owns the partition where its data lives (here, or inside the worker
//! process that ran its last stage), hands it over once when taken, has the
//! worker drop it when nobody can take it any more, and rebuilds it from its
//! lineage when its holder is lost.

use crate::actors::messages::Submit;
use crate::actors::scheduler::Scheduler;
use crate::bag::Bag;
use crate::batch::Batch;
use crate::error::RunError;
use crate::run::{RunRequest, StepRun};
use actix::prelude::*;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Where a kept partition is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// In this process (a thread worker made it, or it came back).
    Here,
    /// Inside the worker process with this index ([`crate::WorkerInfo::id`]).
    OnWorker(u32),
    /// Its holder was lost; it is rebuilt from its lineage when taken.
    Lost,
    /// Being brought here (from its holder, or by a rebuild).
    Coming,
    /// Taken (or discarded) already.
    Taken,
}

/// How to make a kept partition again: its input and every step as the run
/// applied it, with the models the run ended with.
#[derive(Clone, Debug)]
pub struct Lineage {
    /// The input partition.
    pub source: Arc<Batch>,
    /// The run's steps, fitted, with what each applies (shared by the run's
    /// partitions).
    pub steps: Arc<Vec<StepRun>>,
}

/// What the actor knows of its data.
#[derive(Debug)]
enum Data {
    Here(Arc<Batch>),
    OnWorker(u32),
    /// Asked from its holder.
    Fetching(u32),
    Lost,
    Rebuilding,
    Taken,
}

type Waiter = oneshot::Sender<Result<Arc<Batch>, RunError>>;

/// One kept output partition (see the module's doc).
pub struct PartitionActor {
    run: u32,
    partition: u32,
    data: Data,
    lineage: Option<Lineage>,
    scheduler: Addr<Scheduler>,
    /// Who asked for the data while it was on its way.
    waiters: Vec<Waiter>,
}

impl PartitionActor {
    /// A kept partition: its data on worker `holder`, or lost with its holder
    /// (`None`: rebuilt from `lineage` when taken).
    pub fn new(
        run: u32,
        partition: u32,
        holder: Option<u32>,
        lineage: Option<Lineage>,
        scheduler: Addr<Scheduler>,
    ) -> Self {
        let data = match holder {
            Some(w) => Data::OnWorker(w),
            None => Data::Lost,
        };
        Self {
            run,
            partition,
            data,
            lineage,
            scheduler,
            waiters: Vec::new(),
        }
    }

    /// The data is here: the first waiter gets it; any other learns it was taken.
    fn arrived(&mut self, batch: Arc<Batch>) {
        let mut waiters = std::mem::take(&mut self.waiters).into_iter();
        match waiters.next() {
            Some(first) => {
                self.data = Data::Taken;
                if let Err(Ok(batch)) = first.send(Ok(batch)) {
                    // The one who asked is gone: keep the data for the next one.
                    self.data = Data::Here(batch);
                }
            }
            None => self.data = Data::Here(batch),
        }
        for w in waiters {
            let _ = w.send(self.take_now());
        }
    }

    /// The answer to a take when the data is here or gone.
    fn take_now(&mut self) -> Result<Arc<Batch>, RunError> {
        match std::mem::replace(&mut self.data, Data::Taken) {
            Data::Here(b) => Ok(b),
            other => {
                self.data = other;
                Err(RunError::OutputTaken {
                    partition: self.partition,
                })
            }
        }
    }

    /// Runs the partition's lineage again (one partition, its fitted steps), for
    /// those waiting.
    fn rebuild(&mut self, ctx: &mut Context<Self>) {
        let Some(lineage) = self.lineage.clone() else {
            self.fail_waiters(RunError::Internal(format!(
                "kept partition {} was lost and has no lineage to rebuild it from",
                self.partition
            )));
            self.data = Data::Lost;
            return;
        };
        tracing::warn!(
            run = self.run,
            partition = self.partition,
            "rebuilding a kept partition whose holder was lost"
        );
        self.data = Data::Rebuilding;
        let (reply, rx) = oneshot::channel();
        let request = RunRequest::new(
            lineage.steps.as_ref().clone(),
            Bag::from_arcs(vec![lineage.source]),
        );
        self.scheduler.do_send(Submit { request, reply });
        ctx.spawn(rx.into_actor(self).map(|answer, act, _ctx| {
            let batch = answer
                .map_err(|_| RunError::Shutdown)
                .and_then(|r| r)
                .and_then(|out| {
                    out.bag
                        .into_arcs()
                        .into_iter()
                        .next()
                        .ok_or_else(|| RunError::Internal("a rebuild gave no partition".into()))
                });
            match batch {
                Ok(b) => act.arrived(b),
                Err(e) => {
                    act.data = Data::Lost;
                    act.fail_waiters(e);
                }
            }
        }));
    }

    /// Tells the scheduler that the worker holding the data may drop it.
    fn let_holder_drop(&self) {
        if let Data::OnWorker(w) | Data::Fetching(w) = self.data {
            self.scheduler.do_send(DiscardKept {
                run: self.run,
                partition: self.partition,
                worker: w,
            });
        }
    }

    fn fail_waiters(&mut self, e: RunError) {
        let reason = e.to_string();
        for w in self.waiters.drain(..) {
            let _ = w.send(Err(RunError::KeptPartitionLost {
                partition: self.partition,
                reason: reason.clone(),
            }));
        }
    }
}

impl Actor for PartitionActor {
    type Context = Context<Self>;

    /// Nobody can take the partition any more: its holder drops it.
    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.let_holder_drop();
    }
}

/// Caller -> partition actor: hand the data over (once).
#[derive(Message)]
#[rtype(result = "Result<Arc<Batch>, RunError>")]
pub struct Take;

impl Handler<Take> for PartitionActor {
    type Result = ResponseFuture<Result<Arc<Batch>, RunError>>;

    fn handle(&mut self, _msg: Take, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        match self.data {
            Data::Here(_) | Data::Taken => {
                let _ = tx.send(self.take_now());
            }
            Data::OnWorker(w) => {
                self.data = Data::Fetching(w);
                self.waiters.push(tx);
                self.scheduler.do_send(FetchKept {
                    run: self.run,
                    partition: self.partition,
                    worker: w,
                });
            }
            Data::Fetching(_) | Data::Rebuilding => self.waiters.push(tx),
            Data::Lost => {
                self.waiters.push(tx);
                self.rebuild(ctx);
            }
        }
        Box::pin(async move { rx.await.map_err(|_| RunError::Shutdown)? })
    }
}

/// Caller -> partition actor: nobody will take the partition; its holder drops
/// it. The answer comes once the scheduler has been told.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Discard;

impl Handler<Discard> for PartitionActor {
    type Result = ();

    fn handle(&mut self, _msg: Discard, _ctx: &mut Context<Self>) {
        self.let_holder_drop();
        self.data = Data::Taken;
        self.fail_waiters(RunError::OutputTaken {
            partition: self.partition,
        });
    }
}

/// Caller -> partition actor: where the partition is.
#[derive(Message)]
#[rtype(result = "Placement")]
pub struct Locate;

impl Handler<Locate> for PartitionActor {
    type Result = MessageResult<Locate>;

    fn handle(&mut self, _msg: Locate, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(match self.data {
            Data::Here(_) => Placement::Here,
            Data::OnWorker(w) => Placement::OnWorker(w),
            Data::Fetching(_) | Data::Rebuilding => Placement::Coming,
            Data::Lost => Placement::Lost,
            Data::Taken => Placement::Taken,
        })
    }
}

/// Scheduler -> partition actor: the holder sent the data back (`None`: it did
/// not have it, or it was too big to send; the partition is rebuilt).
#[derive(Message)]
#[rtype(result = "()")]
pub struct KeptArrived(pub Option<Arc<Batch>>);

impl Handler<KeptArrived> for PartitionActor {
    type Result = ();

    fn handle(&mut self, msg: KeptArrived, ctx: &mut Context<Self>) {
        match (msg.0, &self.data) {
            (Some(b), Data::OnWorker(_) | Data::Fetching(_)) => self.arrived(b),
            (None, Data::OnWorker(_) | Data::Fetching(_)) => self.lost(ctx),
            _ => {}
        }
    }
}

/// Scheduler -> partition actor: the worker holding the data is lost.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HolderLost;

impl Handler<HolderLost> for PartitionActor {
    type Result = ();

    fn handle(&mut self, _msg: HolderLost, ctx: &mut Context<Self>) {
        if matches!(self.data, Data::OnWorker(_) | Data::Fetching(_)) {
            self.lost(ctx);
        }
    }
}

impl PartitionActor {
    /// The data is gone from its holder: rebuilt now if someone waits, else
    /// when it is taken.
    fn lost(&mut self, ctx: &mut Context<Self>) {
        self.data = Data::Lost;
        if !self.waiters.is_empty() {
            self.rebuild(ctx);
        }
    }
}

/// Partition actor -> scheduler: ask `worker` for a kept partition's data.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct FetchKept {
    /// The run.
    pub run: u32,
    /// The partition.
    pub partition: u32,
    /// Its holder.
    pub worker: u32,
}

/// Partition actor -> scheduler: `worker` may drop a kept partition.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct DiscardKept {
    /// The run.
    pub run: u32,
    /// The partition.
    pub partition: u32,
    /// Its holder.
    pub worker: u32,
}
