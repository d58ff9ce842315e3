//! Worker processes: the application's own binary in worker mode, connected to the
//! scheduler over the authenticated wire, and the scheduler-side proxy of each.

pub(crate) mod compact_tasks;
pub(crate) mod in_flight;
pub mod launcher;
pub mod peer;
pub(crate) mod peer_fit;
pub mod peer_pool;
pub mod protocol;
pub mod proxy;
pub(crate) mod sending;
pub mod worker_args;
pub mod worker_process;

pub use worker_process::run_if_worker;
