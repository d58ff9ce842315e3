//! [`PartitionSlot`]: one partition's state, owner and lineage in a run.
//!
//! The house plan calls for an actor per partition in flight. An actix actor's life
//! (start, one message, a report back, stop) costs 1.2-1.7 us on this machine kind
//! (`bench_actor_spawn`, 200,000 actors on one arbiter): two to three times the
//! scheduler's whole cost per task (0.55 us in `bench_overhead`). So the scheduler
//! keeps each partition as this small state machine instead and
//! drives it with the same protocol an actor would receive as messages:
//! `dispatch` -> `complete` -> (`release`) -> ... -> done. Illegal transitions are
//! errors, tested below. Memory stays bounded: a slot is a few words plus the
//! partition's data handle, and data is dropped as soon as it has been handed on.
//! A partition whose holder is lost either goes back to its first stage
//! (`rebuild`) or keeps its place and catches up in its next task (`catch_up`).
//! A finished partition may stay on its worker (an output kept in place); after
//! its run it is a [`crate::actors::kept::PartitionActor`].

use crate::batch::Batch;
use std::sync::Arc;

/// Where a partition is in its run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionState {
    /// Its next stage can run; it sits in a ready queue.
    Ready {
        /// The stage to run.
        stage: u16,
    },
    /// A worker is running its stage.
    Running {
        /// The stage being run.
        stage: u16,
        /// The worker running it.
        worker: u32,
    },
    /// Its next stage waits: for a fit to finish, or for the stage's checkpoint
    /// decisions (its folders checked), which run off the scheduler's loop.
    Waiting {
        /// The stage that will run once the fit is done.
        stage: u16,
    },
    /// Every stage ran; its output was handed on.
    Done,
}

/// How to rebuild a partition: its input partition and the stages applied so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lineage {
    /// The input partition it comes from.
    pub source: u32,
    /// How many stages of the plan have been applied.
    pub stages_done: u16,
}

/// A protocol violation: an event that the partition's state does not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("partition {partition}: {event} not allowed in state {state:?}")]
pub struct ProtocolError {
    /// The partition.
    pub partition: u32,
    /// The event.
    pub event: &'static str,
    /// The state it arrived in.
    pub state: PartitionState,
}

/// What follows a finished stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// The next stage can run now.
    Ready,
    /// The next stage waits (for a fit, or for its checkpoint decisions).
    Wait,
    /// That was the last stage.
    Done,
}

/// One partition of a run: state, data handle, owner and lineage.
#[derive(Debug)]
pub struct PartitionSlot {
    index: u32,
    state: PartitionState,
    data: Option<Arc<Batch>>,
    held_by: Option<u32>,
    owner: Option<u32>,
    stages_done: u16,
    /// Its data is its source although its next stage is a later one: that
    /// stage's task runs the earlier stages first (see [`PartitionSlot::catch_up`]).
    catching_up: bool,
}

/// Where a dispatched stage finds its input.
#[derive(Debug)]
pub enum SlotInput {
    /// The data, handed over with the task.
    Here(Arc<Batch>),
    /// The worker running the task already holds it.
    Held,
}

impl PartitionSlot {
    /// A partition whose first stage is ready, holding its input.
    pub fn new(index: u32, input: Arc<Batch>) -> Self {
        Self {
            index,
            state: PartitionState::Ready { stage: 0 },
            data: Some(input),
            held_by: None,
            owner: None,
            stages_done: 0,
            catching_up: false,
        }
    }

    /// The partition's index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The current state.
    pub fn state(&self) -> PartitionState {
        self.state
    }

    /// The worker that produced the current data (`None` for the input).
    pub fn owner(&self) -> Option<u32> {
        self.owner
    }

    /// The data it holds now (the input of its next stage).
    pub fn data(&self) -> Option<&Arc<Batch>> {
        self.data.as_ref()
    }

    /// How to rebuild the current data.
    pub fn lineage(&self) -> Lineage {
        Lineage {
            source: self.index,
            stages_done: self.stages_done,
        }
    }

    fn violation(&self, event: &'static str) -> ProtocolError {
        ProtocolError {
            partition: self.index,
            event,
            state: self.state,
        }
    }

    /// The worker holding the partition's current data, when it stayed there.
    pub fn held_by(&self) -> Option<u32> {
        self.held_by
    }

    /// Hands the ready stage to `worker`; returns the stage and where its input is.
    /// A partition held by a worker runs only there.
    pub fn dispatch_to(&mut self, worker: u32) -> Result<(u16, SlotInput), ProtocolError> {
        match (self.state, self.held_by) {
            (PartitionState::Ready { stage }, Some(w)) if w == worker => {
                self.state = PartitionState::Running { stage, worker };
                Ok((stage, SlotInput::Held))
            }
            (PartitionState::Ready { .. }, Some(_)) => {
                Err(self.violation("dispatch away from its holder"))
            }
            _ => self.dispatch(worker).map(|(s, d)| (s, SlotInput::Here(d))),
        }
    }

    /// Hands the ready stage to `worker` while another worker holds the data:
    /// `worker` fetches it from the holder, which holds it no more. Returns the
    /// stage and the holder.
    pub fn dispatch_from_peer(&mut self, worker: u32) -> Result<(u16, u32), ProtocolError> {
        match (self.state, self.held_by) {
            (PartitionState::Ready { stage }, Some(h)) if h != worker => {
                self.state = PartitionState::Running { stage, worker };
                self.held_by = None;
                Ok((stage, h))
            }
            _ => Err(self.violation("dispatch from a peer")),
        }
    }

    /// The worker holding the partition is gone: start again from `source` at the
    /// first stage (its lineage). Not for a running partition (see `requeue`).
    pub fn rebuild(&mut self, source: Arc<Batch>) -> Result<(), ProtocolError> {
        self.redo_from(source, 0, false)
    }

    /// Starts again from `source` with stage `stage` ready (its task running the
    /// earlier stages first when `catching_up`): what it gave a fit is lost and
    /// must be made again. Not for a running partition.
    pub fn redo_from(
        &mut self,
        source: Arc<Batch>,
        stage: u16,
        catching_up: bool,
    ) -> Result<(), ProtocolError> {
        self.restart_from(source, catching_up, "redo")?;
        self.state = PartitionState::Ready { stage };
        Ok(())
    }

    /// The worker holding the partition is gone, and one worker can run every
    /// stage up to the one it stands at: it keeps its place (ready or waiting for
    /// that stage) with `source` as its data, and that stage's task runs the
    /// earlier stages first, from the nearest checkpoint on the way. Not for a
    /// running partition (see `requeue`).
    pub fn catch_up(&mut self, source: Arc<Batch>) -> Result<(), ProtocolError> {
        self.restart_from(source, true, "catch up")
    }

    /// Makes `source` the data of a partition that is not running (its lineage
    /// starts again), catching up or not.
    fn restart_from(
        &mut self,
        source: Arc<Batch>,
        catching_up: bool,
        event: &'static str,
    ) -> Result<(), ProtocolError> {
        match self.state {
            PartitionState::Ready { .. } | PartitionState::Waiting { .. } => {
                self.data = Some(source);
                self.held_by = None;
                self.stages_done = 0;
                self.catching_up = catching_up;
                Ok(())
            }
            _ => Err(self.violation(event)),
        }
    }

    /// Whether its data is its source and its next stage's task must run the
    /// earlier stages first.
    pub fn catching_up(&self) -> bool {
        self.catching_up
    }

    /// The holder `worker` sent the partition's data back (it is being retired):
    /// the data is here again and the next stage may run anywhere (or, after the
    /// last stage, the kept output is here).
    pub fn hand_back(&mut self, worker: u32, data: Arc<Batch>) -> Result<(), ProtocolError> {
        match (self.state, self.held_by) {
            (
                PartitionState::Ready { .. }
                | PartitionState::Waiting { .. }
                | PartitionState::Done,
                Some(w),
            ) if w == worker => {
                self.data = Some(data);
                self.held_by = None;
                Ok(())
            }
            _ => Err(self.violation("hand back from a worker that does not hold it")),
        }
    }

    /// Records that the stage's output stays on `worker` (not sent back; after
    /// the last stage, an output kept in place).
    pub fn complete_held(&mut self, worker: u32, next: Next) -> Result<(), ProtocolError> {
        self.complete(worker, None, next)?;
        self.held_by = Some(worker);
        Ok(())
    }

    /// The worker holding its finished output was lost: the output is gone (its
    /// run's partition actor rebuilds it from the lineage when it is taken).
    pub fn lose_output(&mut self) -> Result<(), ProtocolError> {
        match (self.state, self.held_by) {
            (PartitionState::Done, Some(_)) => {
                self.held_by = None;
                self.data = None;
                Ok(())
            }
            _ => Err(self.violation("lose a finished output")),
        }
    }

    /// Hands the ready stage to `worker`; returns the stage and the input data.
    pub fn dispatch(&mut self, worker: u32) -> Result<(u16, Arc<Batch>), ProtocolError> {
        match self.state {
            PartitionState::Ready { stage } => {
                // The task takes the data: nothing else holds it while it runs, so
                // steps can work in place. A lost task's input is rebuilt from lineage.
                let data = self
                    .data
                    .take()
                    .ok_or_else(|| self.violation("dispatch without data"))?;
                self.state = PartitionState::Running { stage, worker };
                Ok((stage, data))
            }
            _ => Err(self.violation("dispatch")),
        }
    }

    /// Records the stage's output from `worker`; `output` is `None` when nothing
    /// downstream needs it (it was only handed to a fit, or collected elsewhere).
    pub fn complete(
        &mut self,
        worker: u32,
        output: Option<Arc<Batch>>,
        next: Next,
    ) -> Result<(), ProtocolError> {
        match self.state {
            PartitionState::Running { stage, worker: w } if w == worker => {
                self.stages_done = stage + 1;
                self.owner = Some(worker);
                self.data = output;
                self.held_by = None;
                self.catching_up = false;
                self.state = match next {
                    Next::Ready => PartitionState::Ready { stage: stage + 1 },
                    Next::Wait => PartitionState::Waiting { stage: stage + 1 },
                    Next::Done => PartitionState::Done,
                };
                Ok(())
            }
            _ => Err(self.violation("complete")),
        }
    }

    /// A partition whose first stage waits (for its checkpoint decisions), holding
    /// its input.
    pub fn waiting(index: u32, input: Arc<Batch>) -> Self {
        Self {
            state: PartitionState::Waiting { stage: 0 },
            ..Self::new(index, input)
        }
    }

    /// What it waited for is there (a fit, its stage's decisions): its next stage
    /// is ready.
    pub fn release(&mut self) -> Result<u16, ProtocolError> {
        match self.state {
            PartitionState::Waiting { stage } => {
                self.state = PartitionState::Ready { stage };
                Ok(stage)
            }
            _ => Err(self.violation("release")),
        }
    }

    /// The worker running its stage was lost: the stage is ready again, with its
    /// input rebuilt from the partition's lineage.
    pub fn requeue(&mut self, worker: u32, rebuilt: Arc<Batch>) -> Result<u16, ProtocolError> {
        match self.state {
            PartitionState::Running { stage, worker: w } if w == worker => {
                self.data = Some(rebuilt);
                self.held_by = None;
                self.state = PartitionState::Ready { stage };
                Ok(stage)
            }
            _ => Err(self.violation("requeue")),
        }
    }

    /// Takes the held data (the final output, when the run collects it).
    pub fn take_data(&mut self) -> Option<Arc<Batch>> {
        self.data.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> PartitionSlot {
        PartitionSlot::new(3, Arc::new(Batch::empty()))
    }

    #[test]
    fn walks_through_stages_and_a_fit_barrier() {
        let mut s = slot();
        assert_eq!(s.dispatch(1).unwrap().0, 0);
        s.complete(1, Some(Arc::new(Batch::empty())), Next::Wait)
            .unwrap();
        assert_eq!(s.state(), PartitionState::Waiting { stage: 1 });
        assert_eq!(s.owner(), Some(1));
        assert_eq!(
            s.lineage(),
            Lineage {
                source: 3,
                stages_done: 1
            }
        );
        assert_eq!(s.release().unwrap(), 1);
        assert_eq!(s.dispatch(0).unwrap().0, 1);
        s.complete(0, Some(Arc::new(Batch::empty())), Next::Done)
            .unwrap();
        assert_eq!(s.state(), PartitionState::Done);
        assert!(s.take_data().is_some());
    }

    #[test]
    fn rejects_events_out_of_order() {
        let mut s = slot();
        assert!(s.release().is_err());
        assert!(s.complete(0, None, Next::Done).is_err());
        s.dispatch(2).unwrap();
        assert!(s.dispatch(2).is_err(), "no double dispatch");
        let err = s.complete(1, None, Next::Done).unwrap_err();
        assert_eq!(err.event, "complete", "only the running worker completes");
        assert!(err.to_string().contains("partition 3"));
    }

    #[test]
    fn held_data_goes_to_a_peer_only_by_name_and_is_no_longer_held() {
        let mut s = slot();
        s.dispatch_to(1).unwrap();
        s.complete_held(1, Next::Ready).unwrap();
        assert!(
            s.dispatch_from_peer(1).is_err(),
            "the holder runs it itself"
        );
        assert_eq!(s.dispatch_from_peer(2).unwrap(), (1, 1));
        assert_eq!(
            s.state(),
            PartitionState::Running {
                stage: 1,
                worker: 2
            }
        );
        assert_eq!(s.held_by(), None, "the peer took it");
        assert!(s.dispatch_from_peer(3).is_err(), "taken once");
    }

    #[test]
    fn held_data_runs_only_on_its_holder_and_rebuilds_from_the_source() {
        let mut s = slot();
        s.dispatch_to(1).unwrap();
        s.complete_held(1, Next::Ready).unwrap();
        assert_eq!(s.held_by(), Some(1));
        assert!(
            s.hand_back(0, Arc::new(Batch::empty())).is_err(),
            "only the holder hands back"
        );
        assert!(s.dispatch_to(0).is_err(), "held data runs where it is");
        assert!(matches!(s.dispatch_to(1).unwrap(), (1, SlotInput::Held)));
        s.complete_held(1, Next::Wait).unwrap();
        // Its holder is lost: back to the first stage with the source.
        s.rebuild(Arc::new(Batch::empty())).unwrap();
        assert_eq!(s.state(), PartitionState::Ready { stage: 0 });
        assert_eq!(s.held_by(), None);
        assert!(matches!(s.dispatch_to(0).unwrap(), (0, SlotInput::Here(_))));
        assert!(
            s.rebuild(Arc::new(Batch::empty())).is_err(),
            "not while running"
        );
    }

    #[test]
    fn a_partition_catching_up_keeps_its_stage_with_its_source() {
        let mut s = slot();
        s.dispatch_to(1).unwrap();
        s.complete_held(1, Next::Wait).unwrap();
        s.catch_up(Arc::new(Batch::empty())).unwrap();
        assert_eq!(s.state(), PartitionState::Waiting { stage: 1 });
        assert!(s.catching_up() && s.held_by().is_none() && s.data().is_some());
        assert_eq!(s.lineage().stages_done, 0, "its data is the source");
        assert_eq!(s.release().unwrap(), 1);
        assert!(matches!(s.dispatch_to(0).unwrap(), (1, SlotInput::Here(_))));
        assert!(
            s.catch_up(Arc::new(Batch::empty())).is_err(),
            "not while running"
        );
        s.complete(0, Some(Arc::new(Batch::empty())), Next::Done)
            .unwrap();
        assert!(!s.catching_up());
        assert_eq!(s.lineage().stages_done, 2);
    }

    #[test]
    fn a_partition_waiting_for_its_first_stage_keeps_its_input_until_released() {
        let mut s = PartitionSlot::waiting(2, Arc::new(Batch::empty()));
        assert_eq!(s.state(), PartitionState::Waiting { stage: 0 });
        assert!(s.dispatch(0).is_err(), "not before its stage is built");
        assert!(s.data().is_some());
        assert_eq!(s.release().unwrap(), 0);
        assert_eq!(s.dispatch(0).unwrap().0, 0);
    }

    #[test]
    fn a_lost_worker_requeues_the_stage() {
        let mut s = slot();
        s.dispatch(1).unwrap();
        assert!(s.data().is_none(), "the running task holds the data");
        assert!(s.requeue(0, Arc::new(Batch::empty())).is_err());
        assert_eq!(s.requeue(1, Arc::new(Batch::empty())).unwrap(), 0);
        assert_eq!(s.state(), PartitionState::Ready { stage: 0 });
        assert!(s.dispatch(0).is_ok(), "rebuilt input dispatched again");
    }
}
