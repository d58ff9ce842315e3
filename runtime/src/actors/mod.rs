//! The actors of the runtime: the scheduler, workers and estimator actors, and
//! the run graph each run owns (a reactor the scheduler drives), and the
//! partition actors of outputs kept in place.

pub mod estimator_actor;
pub mod kept;
pub mod messages;
pub mod partition;
pub(crate) mod run;
pub mod scheduler;
pub mod worker;
