//! Outputs kept in place after their run, as the scheduler sees them: which
//! worker holds each partition, so that its actor can fetch it or have it
//! dropped, and learns when its holder is lost or retired.

use super::super::kept::{
    DiscardKept, FetchKept, HolderLost, KeptArrived, KeptOutput, KeptPart, Lineage, PartitionActor,
};
use super::super::messages::ReleaseHeld;
use super::super::run::RunState;
use super::Scheduler;
use crate::batch::Batch;
use crate::error::RunError;
use crate::run::StepRun;
use actix::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The kept partitions that worker processes hold: `(run, partition)` -> holder
/// and actor (weak: the caller's handles alone keep an actor alive).
#[derive(Default)]
pub(super) struct KeptHolds {
    by_key: HashMap<(u32, u32), (u32, actix::WeakAddr<PartitionActor>)>,
    /// Fetches and drops asked for since the last flush, per worker: they go
    /// in one message per worker and kind (a stream asks for many at once).
    fetch: BTreeMap<u32, Vec<(u32, u32)>>,
    discard: BTreeMap<u32, Vec<(u32, u32)>>,
    /// A flush is due after the messages now in the mailbox.
    flush_due: bool,
}

impl KeptHolds {
    /// Whether worker `w` holds any kept partition.
    pub(super) fn any_on(&self, w: u32) -> bool {
        self.by_key.values().any(|(h, _)| *h == w)
    }

    /// The kept partitions `w` holds.
    pub(super) fn on(&self, w: u32) -> Vec<(u32, u32)> {
        let mut v: Vec<(u32, u32)> = self
            .by_key
            .iter()
            .filter(|(_, (h, _))| *h == w)
            .map(|(k, _)| *k)
            .collect();
        v.sort_unstable();
        v
    }
}

impl Scheduler {
    /// A finished run keeps its outputs: a partition whose data is here is held
    /// by the handle; one on a worker (or lost with it) gets a partition actor.
    pub(super) fn keep_outputs(
        &mut self,
        run: u32,
        state: &mut RunState,
    ) -> Result<KeptOutput, RunError> {
        let me = self
            .me
            .as_ref()
            .and_then(|m| m.upgrade())
            .ok_or(RunError::Shutdown)?;
        let applies = state.keep_in_place.take().unwrap_or_default();
        let steps: Arc<Vec<StepRun>> = Arc::new(
            state
                .steps
                .iter()
                .zip(&state.models)
                .zip(applies)
                .map(|((step, model), apply)| StepRun {
                    step: step.clone(),
                    fitted: model.clone(),
                    fit: false,
                    apply,
                })
                .collect(),
        );
        let mut parts = Vec::with_capacity(state.parts.len());
        for (p, slot) in state.parts.iter_mut().enumerate() {
            let lineage = state.sources[p].clone().map(|source| Lineage {
                source,
                steps: steps.clone(),
            });
            let holder = slot.held_by();
            if let (Some(data), None) = (slot.take_data(), holder) {
                parts.push(KeptPart::here(data));
                continue;
            }
            let addr = PartitionActor::new(run, p as u32, holder, lineage, me.clone()).start();
            if let Some(w) = holder {
                self.kept
                    .by_key
                    .insert((run, p as u32), (w, addr.downgrade()));
            }
            parts.push(KeptPart::Actor(addr));
        }
        Ok(KeptOutput::new(parts))
    }

    /// A worker sent back kept partitions (asked for, or it is being retired).
    /// Returns those that were not kept ones.
    pub(super) fn kept_returned(
        &mut self,
        parts: Vec<(u32, u32, Option<Arc<Batch>>)>,
    ) -> Vec<(u32, u32, Option<Arc<Batch>>)> {
        let mut rest = Vec::new();
        for (run, p, data) in parts {
            match self.kept.by_key.remove(&(run, p)) {
                Some((_, actor)) => {
                    if let Some(a) = actor.upgrade() {
                        a.do_send(KeptArrived(data));
                    }
                }
                None => rest.push((run, p, data)),
            }
        }
        rest
    }

    /// Worker `w` is lost: the actors of the kept partitions it held rebuild them.
    pub(super) fn kept_holder_lost(&mut self, w: u32) {
        let keys = self.kept.on(w);
        self.lose_kept(keys);
    }

    /// The holder of these kept partitions has lost them: their actors hear it.
    fn lose_kept(&mut self, keys: Vec<(u32, u32)>) {
        for key in keys {
            if let Some((_, actor)) = self.kept.by_key.remove(&key) {
                if let Some(a) = actor.upgrade() {
                    a.do_send(HolderLost);
                }
            }
        }
    }

    /// Asks worker `w` for kept partitions, or drops them there (`discard`); a
    /// worker that is gone or cannot answer loses them.
    fn ask_kept(&mut self, w: u32, parts: Vec<(u32, u32)>, discard: bool) {
        let release = self
            .workers
            .get(w as usize)
            .filter(|s| s.alive)
            .and_then(|s| s.release.clone());
        match release {
            Some(r) => r.do_send(ReleaseHeld {
                parts,
                discard,
                ..Default::default()
            }),
            None if discard => {}
            None => self.lose_kept(parts),
        }
    }
}

impl Scheduler {
    /// Sends the fetches and drops gathered since the last flush, after the
    /// messages now in the mailbox (one per worker and kind).
    fn flush_kept_soon(&mut self, ctx: &mut Context<Self>) {
        if !std::mem::replace(&mut self.kept.flush_due, true) {
            ctx.run_later(std::time::Duration::ZERO, |act, _ctx| {
                act.kept.flush_due = false;
                for (w, parts) in std::mem::take(&mut act.kept.discard) {
                    act.ask_kept(w, parts, true);
                    act.check_drained(w);
                }
                for (w, parts) in std::mem::take(&mut act.kept.fetch) {
                    act.ask_kept(w, parts, false);
                }
            });
        }
    }
}

impl Handler<FetchKept> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: FetchKept, ctx: &mut Context<Self>) {
        let key = (msg.run, msg.partition);
        // Its holder may have been lost or retired meanwhile: its actor hears it
        // (or has heard) from there.
        if let Some((w, _)) = self.kept.by_key.get(&key).filter(|(w, _)| *w == msg.worker) {
            self.kept.fetch.entry(*w).or_default().push(key);
            self.flush_kept_soon(ctx);
        }
    }
}

impl Handler<DiscardKept> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: DiscardKept, ctx: &mut Context<Self>) {
        let key = (msg.run, msg.partition);
        if self
            .kept
            .by_key
            .get(&key)
            .is_some_and(|(w, _)| *w == msg.worker)
        {
            self.kept.by_key.remove(&key);
            self.kept.discard.entry(msg.worker).or_default().push(key);
            self.flush_kept_soon(ctx);
        }
    }
}

/// How many kept output partitions of finished runs worker processes hold (each
/// until it is taken or dropped).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct KeptOnWorkers;

impl Handler<KeptOnWorkers> for Scheduler {
    type Result = usize;

    fn handle(&mut self, _msg: KeptOnWorkers, _ctx: &mut Context<Self>) -> usize {
        self.kept.by_key.len()
    }
}
