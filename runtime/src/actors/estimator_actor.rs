//! [`EstimatorActor`]: one per fitted step of a run; it owns the fit. It gathers
//! what the fit needs from every partition, in partition order, holds those
//! inputs (nothing of them goes to the scheduler), puts them into the fit task
//! when the scheduler has chosen a worker for it, and then holds the fitted
//! model (the one the stages after the fit apply). The fit task saves the model
//! on its worker, off every event loop.

use super::messages::{
    Contribute, FitReady, Fitted, ForgetInputs, GetModel, RunFit, RunTasks, TaskPayload,
};
use crate::estimator::Estimator;
use crate::exec::Contribution;
use actix::prelude::*;
use std::sync::Arc;

/// Where the fit stands, as its actor sees it.
enum FitInputs {
    /// Waiting for contributions, by partition.
    Gathering {
        slots: Vec<Option<Contribution>>,
        missing: usize,
    },
    /// Every input is here, in partition order (kept until the model is known,
    /// so a fit lost with its worker runs again).
    Gathered(Arc<Vec<Contribution>>),
    /// The model is known; the inputs are dropped.
    Fitted,
}

/// Gathers a fit's inputs, sends its task, and holds its model.
pub struct EstimatorActor {
    run: u32,
    fit: u16,
    step: String,
    inputs: FitInputs,
    scheduler: Recipient<FitReady>,
    model: Option<Arc<dyn Estimator>>,
    /// How many times it was told to forget inputs.
    round: u32,
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
            inputs: FitInputs::Gathering {
                slots: (0..partitions).map(|_| None).collect(),
                missing: partitions,
            },
            scheduler,
            model: None,
            round: 0,
        }
    }

    fn maybe_ready(&mut self) {
        let FitInputs::Gathering { slots, missing: 0 } = &mut self.inputs else {
            return;
        };
        let parts = slots
            .drain(..)
            .map(|c| c.expect("all contributed"))
            .collect();
        self.inputs = FitInputs::Gathered(Arc::new(parts));
        tracing::debug!(step = %self.step, "fit inputs complete");
        let input_bytes = match &self.inputs {
            FitInputs::Gathered(parts) => parts.iter().map(Contribution::rows_bytes).sum(),
            _ => 0,
        };
        self.scheduler.do_send(FitReady {
            run: self.run,
            fit: self.fit,
            input_bytes,
            round: self.round,
        });
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

    /// Takes contributions; a partition rebuilt after a worker loss contributes
    /// again (the later one counts), and once every input is here later ones are
    /// dropped.
    fn handle(&mut self, msg: Contribute, _ctx: &mut Context<Self>) {
        let FitInputs::Gathering { slots, missing } = &mut self.inputs else {
            return;
        };
        for (p, c) in msg.parts {
            let slot = &mut slots[p as usize];
            if slot.is_none() {
                *missing -= 1;
            }
            *slot = Some(c);
        }
        self.maybe_ready();
    }
}

impl Handler<ForgetInputs> for EstimatorActor {
    type Result = ();

    /// Forgets the named partitions' inputs (their rows were kept on a worker
    /// process that is gone): gathering again, they come again. A fit with
    /// its model forgets nothing.
    fn handle(&mut self, msg: ForgetInputs, _ctx: &mut Context<Self>) {
        let mut slots = match std::mem::replace(&mut self.inputs, FitInputs::Fitted) {
            FitInputs::Fitted => return,
            FitInputs::Gathering { slots, .. } => slots,
            FitInputs::Gathered(parts) => Arc::try_unwrap(parts)
                .unwrap_or_else(|shared| (*shared).clone())
                .into_iter()
                .map(Some)
                .collect(),
        };
        self.round += 1;
        for p in msg.0 {
            if let Some(slot) = slots.get_mut(p as usize) {
                *slot = None;
            }
        }
        let missing = slots.iter().filter(|s| s.is_none()).count();
        tracing::debug!(step = %self.step, missing, "fit inputs lost; gathering again");
        self.inputs = FitInputs::Gathering { slots, missing };
        self.maybe_ready();
    }
}

impl Handler<RunFit> for EstimatorActor {
    type Result = ();

    fn handle(&mut self, msg: RunFit, _ctx: &mut Context<Self>) {
        let RunFit { mut envelope, to } = msg;
        match (&self.inputs, &mut envelope.payload) {
            (FitInputs::Gathered(inputs), TaskPayload::Fit { parts, .. }) => {
                *parts = inputs.clone();
            }
            // The scheduler asks only after FitReady and before the model is
            // known: were it otherwise, the task still goes (with no inputs its
            // fit fails and names the step), so nothing waits for it forever.
            _ => tracing::error!(step = %self.step, "a fit task asked for without its inputs"),
        }
        to.do_send(RunTasks(vec![envelope]));
    }
}

impl Handler<Fitted> for EstimatorActor {
    type Result = ();

    fn handle(&mut self, msg: Fitted, _ctx: &mut Context<Self>) {
        self.inputs = FitInputs::Fitted;
        self.model = Some(msg.0);
    }
}

impl Handler<GetModel> for EstimatorActor {
    type Result = Option<Arc<dyn Estimator>>;

    fn handle(&mut self, _msg: GetModel, _ctx: &mut Context<Self>) -> Self::Result {
        self.model.clone()
    }
}
