//! [`EstimatorActor`]: one per fitted step of a run; gathers what the fit needs from
//! every partition, in partition order, and holds the fitted model.

use super::messages::{Contribute, FitReady, Fitted, GetModel};
use crate::estimator::Estimator;
use crate::exec::Contribution;
use actix::prelude::*;
use std::sync::Arc;

/// Gathers a fit's contributions and holds its model.
pub struct EstimatorActor {
    run: u32,
    fit: u16,
    step: String,
    slots: Vec<Option<Contribution>>,
    missing: usize,
    scheduler: Recipient<FitReady>,
    model: Option<Arc<dyn Estimator>>,
}

impl EstimatorActor {
    /// An actor waiting for `partitions` contributions to fit `step`.
    pub fn new(
        run: u32,
        fit: u16,
        step: String,
        partitions: usize,
        scheduler: Recipient<FitReady>,
    ) -> Self {
        Self {
            run,
            fit,
            step,
            slots: (0..partitions).map(|_| None).collect(),
            missing: partitions,
            scheduler,
            model: None,
        }
    }

    fn maybe_ready(&mut self) {
        if self.missing == 0 {
            let parts = self
                .slots
                .drain(..)
                .map(|c| c.expect("all contributed"))
                .collect();
            self.missing = usize::MAX; // fire once
            tracing::debug!(step = %self.step, "fit inputs complete");
            self.scheduler.do_send(FitReady {
                run: self.run,
                fit: self.fit,
                parts,
            });
        }
    }
}

impl Actor for EstimatorActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        self.maybe_ready();
    }
}

impl Handler<Contribute> for EstimatorActor {
    type Result = ();

    fn handle(&mut self, msg: Contribute, _ctx: &mut Context<Self>) {
        if self.missing == usize::MAX {
            return; // the fit already has every input
        }
        for (p, c) in msg.parts {
            let slot = &mut self.slots[p as usize];
            if slot.is_none() {
                self.missing -= 1;
            }
            *slot = Some(c);
        }
        self.maybe_ready();
    }
}

impl Handler<Fitted> for EstimatorActor {
    type Result = ();

    fn handle(&mut self, msg: Fitted, _ctx: &mut Context<Self>) {
        self.model = Some(msg.0);
    }
}

impl Handler<GetModel> for EstimatorActor {
    type Result = Option<Arc<dyn Estimator>>;

    fn handle(&mut self, _msg: GetModel, _ctx: &mut Context<Self>) -> Self::Result {
        self.model.clone()
    }
}
