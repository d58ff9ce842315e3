//! Outputs kept in place after their run, as the scheduler sees them: which
//! worker holds each partition, so that its actor can fetch it or have it
//! dropped, and learns when its holder is lost or retired.

use super::super::kept::{
    DiscardKept, FetchKept, HolderLost, KeptArrived, KeptOutput, Lineage, PartitionActor,
};
use super::super::messages::ReleaseHeld;
use super::super::run::RunState;
use super::Scheduler;
use crate::batch::Batch;
use crate::error::RunError;
use crate::run::StepRun;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

/// The kept partitions that worker processes hold: `(run, partition)` -> holder
/// and actor (weak: the caller's handles alone keep an actor alive).
#[derive(Default)]
pub(super) struct KeptHolds {
    by_key: HashMap<(u32, u32), (u32, actix::WeakAddr<PartitionActor>)>,
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
    /// A finished run keeps its outputs: one partition actor per partition, its
    /// data here, on the worker that holds it, or lost with that worker.
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
        let mut actors = Vec::with_capacity(state.parts.len());
        for (p, slot) in state.parts.iter_mut().enumerate() {
            let lineage = state.sources[p].clone().map(|source| Lineage {
                source,
                steps: steps.clone(),
            });
            let holder = slot.held_by();
            let here = slot.take_data();
            let addr =
                PartitionActor::new(run, p as u32, here, holder, lineage, me.clone()).start();
            if let Some(w) = holder {
                self.kept
                    .by_key
                    .insert((run, p as u32), (w, addr.downgrade()));
            }
            actors.push(addr);
        }
        Ok(KeptOutput::new(actors))
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
        for key in self.kept.on(w) {
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
            Some(r) => r.do_send(ReleaseHeld { parts, discard }),
            None if discard => {}
            None => {
                for key in parts {
                    if let Some((_, actor)) = self.kept.by_key.remove(&key) {
                        if let Some(a) = actor.upgrade() {
                            a.do_send(HolderLost);
                        }
                    }
                }
            }
        }
    }
}

impl Handler<FetchKept> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: FetchKept, _ctx: &mut Context<Self>) {
        let key = (msg.run, msg.partition);
        match self.kept.by_key.get(&key) {
            Some((w, _)) if *w == msg.worker => self.ask_kept(msg.worker, vec![key], false),
            // Its holder was lost or retired meanwhile: its actor hears it (or
            // has heard) from there.
            _ => {}
        }
    }
}

impl Handler<DiscardKept> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: DiscardKept, _ctx: &mut Context<Self>) {
        let key = (msg.run, msg.partition);
        if self
            .kept
            .by_key
            .get(&key)
            .is_some_and(|(w, _)| *w == msg.worker)
        {
            self.kept.by_key.remove(&key);
            self.ask_kept(msg.worker, vec![key], true);
        }
        self.check_drained(msg.worker);
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
