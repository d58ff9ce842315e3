//! The batch system: the interface (submit, query and delete jobs; here) and
//! what serves it: Grid Engine's commands ([`grid_engine`], run through
//! [`command`], `qstat -xml` read by [`qstat`]), the in-memory fake ([`fake`]),
//! job scripts ([`script`]), job ids and states ([`job`]), how a job ended
//! ([`job_ending`]), its log files ([`job_log`]), deleting jobs for good
//! ([`deletion`]) and the errors ([`error`]).

pub(crate) mod command;
pub(crate) mod deletion;
pub(crate) mod error;
pub(crate) mod fake;
pub(crate) mod grid_engine;
pub(crate) mod job;
pub(crate) mod job_ending;
pub(crate) mod job_log;
pub(crate) mod qstat;
pub(crate) mod script;

use std::sync::Arc;

use crate::batch_system::error::SgeError;
use crate::batch_system::job::{JobId, JobStatus};
use crate::batch_system::job_ending::JobEnding;

/// Submits, queries and deletes worker jobs.
///
/// All calls block (they may run external commands for seconds): call them
/// from a blocking thread, never on an async executor's thread. Implemented
/// by [`crate::SgeCommands`] (real `qsub`/`qstat`/`qdel`) and
/// [`crate::FakeBatchSystem`] (in memory, for tests).
pub trait BatchSystem: Send + Sync {
    /// Submits a job running `script` (see [`crate::job_script`]) for the
    /// queue spec `label`, and returns its id.
    fn submit(&self, label: &str, script: &str) -> Result<JobId, SgeError>;

    /// The status of each job in `ids`, in the same order. A job the batch
    /// system no longer knows is reported [`crate::JobState::Finished`].
    fn status(&self, ids: &[JobId]) -> Result<Vec<JobStatus>, SgeError>;

    /// Deletes the jobs in `ids` (running ones are killed). An id that no
    /// longer exists is not an error.
    fn delete(&self, ids: &[JobId]) -> Result<(), SgeError>;

    /// Every job of this user that the batch system lists (pending, running,
    /// held or in an error state such as `Eqw`) whose name starts with
    /// `prefix`. A cluster names all its jobs after itself, so this finds the
    /// jobs it lost track of (a submission whose id was never read, a held
    /// check job whose delete failed, the jobs of a program that died).
    fn named(&self, prefix: &str) -> Result<Vec<JobStatus>, SgeError>;

    /// Deletes every job [`BatchSystem::named`] lists for `prefix`; returns
    /// their ids.
    fn delete_named(&self, prefix: &str) -> Result<Vec<JobId>, SgeError> {
        let ids: Vec<JobId> = self.named(prefix)?.into_iter().map(|s| s.id).collect();
        self.delete(&ids)?;
        Ok(ids)
    }

    /// How job `id` ended, from the batch system's accounting (a batch system
    /// without accounting says [`JobEnding::Unknown`]).
    fn ending(&self, id: &JobId) -> JobEnding {
        let _ = id;
        JobEnding::Unknown("this batch system keeps no accounting".into())
    }
}

impl<T: BatchSystem + ?Sized> BatchSystem for Arc<T> {
    fn submit(&self, label: &str, script: &str) -> Result<JobId, SgeError> {
        (**self).submit(label, script)
    }

    fn status(&self, ids: &[JobId]) -> Result<Vec<JobStatus>, SgeError> {
        (**self).status(ids)
    }

    fn delete(&self, ids: &[JobId]) -> Result<(), SgeError> {
        (**self).delete(ids)
    }

    fn named(&self, prefix: &str) -> Result<Vec<JobStatus>, SgeError> {
        (**self).named(prefix)
    }

    fn delete_named(&self, prefix: &str) -> Result<Vec<JobId>, SgeError> {
        (**self).delete_named(prefix)
    }

    fn ending(&self, id: &JobId) -> JobEnding {
        (**self).ending(id)
    }
}
