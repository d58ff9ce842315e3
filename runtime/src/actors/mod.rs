//! The actors of the runtime: the scheduler, workers and estimator actors, and
//! the run graph each run owns (a reactor the scheduler drives).

pub mod estimator_actor;
pub mod messages;
pub mod partition;
pub(crate) mod run;
pub mod scheduler;
pub mod worker;
