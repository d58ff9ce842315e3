//! Outputs kept where they were made ([`crate::run::Outputs::KeepInPlace`]):
//! one [`PartitionActor`] per output partition, and [`KeptOutput`], the
//! caller's handle on them.
//!
//! Inside a run, a partition is a slot of the run's reactor (`partition.rs`:
//! an actor's life would cost more than the scheduler's whole work per task).
//! A partition that outlives its run is an actor: it owns its data where it
//! lives, answers `Take` once, rebuilds from its lineage when its holder is
//! lost, and has its holder drop the data when every handle on it is gone.

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
use std::sync::Arc;

/// The output partitions of a run that kept them in place, in partition order.
/// Dropping it (or a partition's last handle) lets the workers drop what they
/// still hold.
///
/// The blocking methods (`take_blocking`, `iter`, `collect`) are for threads
/// outside the runtime, like [`crate::Runtime::run`]; async code uses the others.
pub struct KeptOutput {
    parts: Vec<Addr<PartitionActor>>,
}

impl std::fmt::Debug for KeptOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptOutput")
            .field("partitions", &self.parts.len())
            .finish()
    }
}

impl KeptOutput {
    /// The handle on a run's partition actors, in partition order.
    pub fn new(parts: Vec<Addr<PartitionActor>>) -> Self {
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
        let actor = self
            .parts
            .get(p)
            .cloned()
            .ok_or(RunError::NoSuchPartition {
                partition: p,
                partitions: self.parts.len(),
            })?;
        take(actor).await
    }

    /// [`KeptOutput::take`], blocking the thread.
    pub fn take_blocking(&self, p: usize) -> Result<Arc<Batch>, RunError> {
        futures::executor::block_on(self.take(p))
    }

    /// Where each partition is now.
    pub async fn placement(&self) -> Result<Vec<Placement>, RunError> {
        let mut out = Vec::with_capacity(self.parts.len());
        for a in &self.parts {
            out.push(a.send(Locate).await.map_err(|_| RunError::Shutdown)?);
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
        futures::stream::iter(self.parts)
            .map(take)
            .buffered(ahead.max(1))
    }

    /// [`KeptOutput::stream`] as a blocking iterator.
    pub fn iter(self, ahead: usize) -> impl Iterator<Item = Result<Arc<Batch>, RunError>> {
        futures::executor::block_on_stream(Box::pin(self.stream(ahead)))
    }

    /// Drops every partition not taken yet: their holders drop the data. When it
    /// returns, the scheduler knows (a later `Drain` brings none of it back).
    pub async fn discard(self) -> Result<(), RunError> {
        for a in &self.parts {
            a.send(Discard).await.map_err(|_| RunError::Shutdown)?;
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

/// Takes one partition from its actor (the handle goes when the answer is in).
async fn take(actor: Addr<PartitionActor>) -> Result<Arc<Batch>, RunError> {
    actor.send(Take).await.map_err(|_| RunError::Shutdown)?
}
