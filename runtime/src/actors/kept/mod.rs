//! Outputs kept where they were made ([`crate::run::Outputs::KeepInPlace`]):
//! one [`PartitionActor`] per output partition, and [`KeptOutput`], the
//! caller's handle on them.
//!
//! Inside a run, a partition is a slot of the run's reactor (`partition.rs`:
//! an actor's life would cost more than the scheduler's whole work per task).
//! A partition that outlives its run with its data elsewhere (inside a worker
//! process, or lost with one) is an actor: it owns its data where it lives,
//! answers `Take` once, rebuilds from its lineage when its holder is lost, and
//! has its holder drop the data when every handle on it is gone. One whose data
//! is here already needs none of that: the handle holds its data itself.

mod partition_actor;

pub use partition_actor::{
    Discard, DiscardKept, FetchKept, HolderLost, KeptArrived, Lineage, Locate, PartitionActor,
    Placement, Take,
};

use crate::bag::Bag;
use crate::batch::Batch;
use crate::error::RunError;
use actix::Addr;
use futures::stream::{Stream, StreamExt};
use std::sync::{Arc, Mutex};

/// The output partitions of a run that kept them in place, in partition order.
/// Dropping it (or a partition's last handle) lets the workers drop what they
/// still hold.
///
/// The blocking methods (`take_blocking`, `iter`, `collect`) are for threads
/// outside the runtime, like [`crate::Runtime::run`]; async code uses the others.
pub struct KeptOutput {
    parts: Vec<KeptPart>,
}

/// One partition of a kept output.
pub enum KeptPart {
    /// Its data is here (taken: `None`).
    Here(Mutex<Option<Arc<Batch>>>),
    /// Its data is elsewhere: its actor owns it.
    Actor(Addr<PartitionActor>),
}

impl KeptPart {
    /// A partition whose data is here.
    pub fn here(data: Arc<Batch>) -> Self {
        KeptPart::Here(Mutex::new(Some(data)))
    }
}

impl std::fmt::Debug for KeptOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptOutput")
            .field("partitions", &self.parts.len())
            .finish()
    }
}

impl KeptOutput {
    /// The handle on a run's output partitions, in partition order.
    pub fn new(parts: Vec<KeptPart>) -> Self {
        Self { parts }
    }

    /// How many partitions.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Brings partition `p` here; its holder forgets it. A partition is taken once.
    pub async fn take(&self, p: usize) -> Result<Arc<Batch>, RunError> {
        let part = self.parts.get(p).ok_or(RunError::NoSuchPartition {
            partition: p,
            partitions: self.parts.len(),
        })?;
        take(part, p).await
    }

    /// [`KeptOutput::take`], blocking the thread.
    pub fn take_blocking(&self, p: usize) -> Result<Arc<Batch>, RunError> {
        futures::executor::block_on(self.take(p))
    }

    /// Where each partition is now.
    pub async fn placement(&self) -> Result<Vec<Placement>, RunError> {
        let mut out = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            out.push(match part {
                KeptPart::Here(data) => match lock(data).is_some() {
                    true => Placement::Here,
                    false => Placement::Taken,
                },
                KeptPart::Actor(a) => a.send(Locate).await.map_err(|_| RunError::Shutdown)?,
            });
        }
        Ok(out)
    }

    /// [`KeptOutput::placement`], blocking the thread.
    pub fn placement_blocking(&self) -> Result<Vec<Placement>, RunError> {
        futures::executor::block_on(self.placement())
    }

    /// Takes every partition in partition order, at most `ahead` (at least 1)
    /// on their way at once: memory holds the partitions the caller keeps plus
    /// `ahead`. Each partition's actor stops once it is taken.
    pub fn stream(self, ahead: usize) -> impl Stream<Item = Result<Arc<Batch>, RunError>> {
        futures::stream::iter(self.parts.into_iter().enumerate())
            .map(|(p, part)| async move { take(&part, p).await })
            .buffered(ahead.max(1))
    }

    /// [`KeptOutput::stream`] as a blocking iterator.
    pub fn iter(self, ahead: usize) -> impl Iterator<Item = Result<Arc<Batch>, RunError>> {
        futures::executor::block_on_stream(Box::pin(self.stream(ahead)))
    }

    /// Drops every partition not taken yet: their holders drop the data. When it
    /// returns, the scheduler knows (a later `Drain` brings none of it back).
    pub async fn discard(self) -> Result<(), RunError> {
        for part in &self.parts {
            match part {
                KeptPart::Here(data) => drop(lock(data).take()),
                KeptPart::Actor(a) => a.send(Discard).await.map_err(|_| RunError::Shutdown)?,
            }
        }
        Ok(())
    }

    /// [`KeptOutput::discard`], blocking the thread.
    pub fn discard_blocking(self) -> Result<(), RunError> {
        futures::executor::block_on(self.discard())
    }

    /// Takes every partition into one bag (the output a collecting run gives).
    pub async fn collect_async(self) -> Result<Bag, RunError> {
        let n = self.parts.len();
        let mut stream = Box::pin(self.stream(n.max(1)));
        let mut parts = Vec::with_capacity(n);
        while let Some(b) = stream.next().await {
            parts.push(b?);
        }
        Ok(Bag::from_arcs(parts))
    }

    /// [`KeptOutput::collect_async`], blocking the thread.
    pub fn collect(self) -> Result<Bag, RunError> {
        futures::executor::block_on(self.collect_async())
    }
}

/// Takes partition `p`: from here, or from its actor (a handle moved into the
/// stream goes once the answer is in).
async fn take(part: &KeptPart, p: usize) -> Result<Arc<Batch>, RunError> {
    match part {
        KeptPart::Here(data) => lock(data).take().ok_or(RunError::OutputTaken {
            partition: p as u32,
        }),
        KeptPart::Actor(a) => a.send(Take).await.map_err(|_| RunError::Shutdown)?,
    }
}

/// The data of a partition here (a poisoned lock still holds good data: the
/// holder only moved an `Arc` in or out).
fn lock(data: &Mutex<Option<Arc<Batch>>>) -> std::sync::MutexGuard<'_, Option<Arc<Batch>>> {
    data.lock().unwrap_or_else(|e| e.into_inner())
}
