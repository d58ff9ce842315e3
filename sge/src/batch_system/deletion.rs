//! Deleting a queue's jobs for good: delete, then ask again until the batch
//! system lists none of them (a late submission that shows up meanwhile goes
//! too). Blocking calls; the queue actor runs them on a blocking thread.

use crate::batch_system::error::SgeError;
use crate::batch_system::job::{JobId, JobState};
use crate::batch_system::BatchSystem;
use std::time::{Duration, Instant};

/// The jobs the batch system still lists of `ids` (in any state but ended,
/// error states included) and of the jobs named exactly `name` (tracked or not).
fn still_listed(
    backend: &dyn BatchSystem,
    ids: &[JobId],
    name: &str,
) -> Result<Vec<JobId>, SgeError> {
    let mut left: Vec<JobId> = backend
        .status(ids)?
        .into_iter()
        .filter(|s| s.state != JobState::Finished)
        .map(|s| s.id)
        .collect();
    for s in backend.named(name)? {
        if s.name == name && !left.contains(&s.id) {
            left.push(s.id);
        }
    }
    Ok(left)
}

/// Deletes the jobs `ids` and every job named `name` (so jobs the queue lost
/// track of go too, `Eqw` ones included), and waits until the batch system
/// lists none of them; a job that shows up meanwhile (a late submission) is
/// deleted as well. An error after `timeout` names the jobs still listed.
pub(crate) fn delete_until_none_listed(
    backend: &dyn BatchSystem,
    ids: &[JobId],
    name: &str,
    label: &str,
    timeout: Duration,
) -> Result<(), SgeError> {
    let start = Instant::now();
    let mut deleted: Vec<JobId> = Vec::new();
    loop {
        let left = still_listed(backend, ids, name)?;
        if left.is_empty() {
            return Ok(());
        }
        let fresh: Vec<JobId> = left
            .iter()
            .filter(|id| !deleted.contains(id))
            .cloned()
            .collect();
        if !fresh.is_empty() {
            let untracked = fresh.iter().filter(|id| !ids.contains(id)).count();
            if untracked > 0 {
                tracing::warn!(queue = %label, jobs = untracked, "deleting jobs of this queue it had lost track of");
            }
            backend.delete(&fresh)?;
            deleted.extend(fresh);
        }
        if start.elapsed() > timeout {
            let left: Vec<String> = left.iter().map(|id| id.to_string()).collect();
            return Err(SgeError::Queue {
                queue: label.to_string(),
                message: format!(
                    "jobs still listed {timeout:?} after deletion: {}",
                    left.join(", ")
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
