//! The actors of the runtime: the scheduler, workers and estimator actors.

pub mod estimator_actor;
pub mod messages;
pub mod partition;
pub mod scheduler;
pub mod worker;
