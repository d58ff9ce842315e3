//! An in-memory [`BatchSystem`] for tests, with controllable job states.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::batch_system::error::SgeError;
use crate::batch_system::job::{JobId, JobState, JobStatus};
use crate::batch_system::BatchSystem;

/// One job submitted to a [`FakeBatchSystem`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeJob {
    /// The id given at submission (`1`, `2`, ...).
    pub id: JobId,
    /// The queue spec label passed to `submit`.
    pub label: String,
    /// The job name, from the script's `#$ -N` line (empty if none).
    pub name: String,
    /// The queue, from the script's `#$ -q` line (reported while running).
    pub queue: Option<String>,
    /// The script as submitted.
    pub script: String,
    /// The current state; new jobs are [`JobState::Pending`].
    pub state: JobState,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    jobs: BTreeMap<u64, FakeJob>,
    submissions: usize,
    failed_submissions: usize,
    fail_next_submits: usize,
    deleted: Vec<JobId>,
    status_calls: usize,
}

/// An in-memory batch system for tests (of this crate and others).
///
/// Jobs get ids `1`, `2`, ... and start [`JobState::Pending`]; tests move
/// them with [`FakeBatchSystem::set_state`] or
/// [`FakeBatchSystem::start_pending`]. Deleted jobs leave the table and, like
/// jobs on a real Grid Engine, are then reported
/// [`JobState::Finished`]; so are ids never submitted. A job set to
/// [`JobState::Finished`] stays in the table (see [`FakeBatchSystem::job`]).
/// Thread-safe: share it with `Arc` (`Arc<FakeBatchSystem>` is a
/// [`BatchSystem`] too).
#[derive(Debug, Default)]
pub struct FakeBatchSystem {
    inner: Mutex<Inner>,
}

impl FakeBatchSystem {
    /// An empty fake with no jobs.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not hide the table from the others.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the state of job `id`; returns `false` (and does nothing) if
    /// the job is not in the table (never submitted, or deleted).
    pub fn set_state(&self, id: &JobId, state: JobState) -> bool {
        let mut inner = self.lock();
        match id
            .as_str()
            .parse::<u64>()
            .ok()
            .and_then(|n| inner.jobs.get_mut(&n))
        {
            Some(job) => {
                job.state = state;
                true
            }
            None => false,
        }
    }

    /// Moves every pending job to running; returns their ids.
    pub fn start_pending(&self) -> Vec<JobId> {
        let mut inner = self.lock();
        inner
            .jobs
            .values_mut()
            .filter(|job| job.state == JobState::Pending)
            .map(|job| {
                job.state = JobState::Running;
                job.id.clone()
            })
            .collect()
    }

    /// How many times `status` was called (one per poll of all queues).
    pub fn status_calls(&self) -> usize {
        self.lock().status_calls
    }

    /// Makes the next `n` calls of `submit` fail with
    /// [`SgeError::CommandFailed`] (replacing any earlier count).
    pub fn fail_next_submits(&self, n: usize) {
        self.lock().fail_next_submits = n;
    }

    /// How many submits succeeded.
    pub fn submissions(&self) -> usize {
        self.lock().submissions
    }

    /// How many submits failed (made to fail by [`Self::fail_next_submits`]).
    pub fn failed_submissions(&self) -> usize {
        self.lock().failed_submissions
    }

    /// How many jobs were deleted (ids that were in the table when deleted).
    pub fn deletions(&self) -> usize {
        self.lock().deleted.len()
    }

    /// The ids of deleted jobs, in deletion order.
    pub fn deleted(&self) -> Vec<JobId> {
        self.lock().deleted.clone()
    }

    /// A copy of job `id`, if it is in the table.
    pub fn job(&self, id: &JobId) -> Option<FakeJob> {
        let n = id.as_str().parse::<u64>().ok()?;
        self.lock().jobs.get(&n).cloned()
    }

    /// Copies of all jobs in the table, in submission order.
    pub fn jobs(&self) -> Vec<FakeJob> {
        self.lock().jobs.values().cloned().collect()
    }

    /// The jobs that are pending or running, in submission order.
    pub fn active_jobs(&self) -> Vec<FakeJob> {
        self.lock()
            .jobs
            .values()
            .filter(|job| job.state.is_active())
            .cloned()
            .collect()
    }
}

/// The value of the first `#$ <option> <value>` line of `script`.
fn directive(script: &str, option: &str) -> Option<String> {
    script.lines().find_map(|line| {
        let rest = line.strip_prefix("#$")?.trim_start();
        let value = rest.strip_prefix(option)?;
        value
            .starts_with(char::is_whitespace)
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

impl BatchSystem for FakeBatchSystem {
    fn submit(&self, label: &str, script: &str) -> Result<JobId, SgeError> {
        let mut inner = self.lock();
        if inner.fail_next_submits > 0 {
            inner.fail_next_submits -= 1;
            inner.failed_submissions += 1;
            return Err(SgeError::CommandFailed {
                command: "qsub -terse (fake)".to_owned(),
                code: Some(1),
                stderr: "Unable to run job: failure injected by FakeBatchSystem".to_owned(),
            });
        }
        inner.next_id += 1;
        inner.submissions += 1;
        let n = inner.next_id;
        let id = JobId::from(n);
        inner.jobs.insert(
            n,
            FakeJob {
                id: id.clone(),
                label: label.to_owned(),
                name: directive(script, "-N").unwrap_or_default(),
                queue: directive(script, "-q"),
                script: script.to_owned(),
                state: JobState::Pending,
            },
        );
        Ok(id)
    }

    fn status(&self, ids: &[JobId]) -> Result<Vec<JobStatus>, SgeError> {
        let mut inner = self.lock();
        inner.status_calls += 1;
        Ok(ids
            .iter()
            .map(|id| {
                let job = id
                    .as_str()
                    .parse::<u64>()
                    .ok()
                    .and_then(|n| inner.jobs.get(&n));
                match job {
                    Some(job) => JobStatus {
                        id: id.clone(),
                        name: job.name.clone(),
                        queue: (job.state == JobState::Running)
                            .then(|| job.queue.clone())
                            .flatten(),
                        state: job.state.clone(),
                    },
                    None => JobStatus::finished(id.clone()),
                }
            })
            .collect())
    }

    fn named(&self, prefix: &str) -> Result<Vec<JobStatus>, SgeError> {
        let inner = self.lock();
        Ok(inner
            .jobs
            .values()
            .filter(|job| job.state != JobState::Finished && job.name.starts_with(prefix))
            .map(|job| JobStatus {
                id: job.id.clone(),
                name: job.name.clone(),
                queue: (job.state == JobState::Running)
                    .then(|| job.queue.clone())
                    .flatten(),
                state: job.state.clone(),
            })
            .collect())
    }

    fn delete(&self, ids: &[JobId]) -> Result<(), SgeError> {
        let mut inner = self.lock();
        for id in ids {
            if let Ok(n) = id.as_str().parse::<u64>() {
                if inner.jobs.remove(&n).is_some() {
                    inner.deleted.push(id.clone());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::batch_system::script::{job_script, JobTemplate};
    use crate::spec::queue_spec::QueueSpec;

    fn script(queue: &str) -> String {
        let t = JobTemplate {
            name: "gridpipe-gpu".into(),
            program: "/bin/worker".into(),
            scheduler_addr: "127.0.0.1:1".into(),
            secret_file: "/tmp/secret".into(),
            log_dir: "/tmp".into(),
            hold: false,
        };
        job_script("gpu", &QueueSpec::new(queue), &t).unwrap()
    }

    #[test]
    fn submit_status_transitions() {
        let fake = FakeBatchSystem::new();
        let a = fake.submit("gpu", &script("q_gpu")).unwrap();
        let b = fake.submit("gpu", &script("q_gpu")).unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("1", "2"));
        assert_eq!(fake.submissions(), 2);

        let s = fake.status(std::slice::from_ref(&a)).unwrap();
        assert_eq!(s[0].state, JobState::Pending);
        assert_eq!(s[0].name, "gridpipe-gpu");
        assert_eq!(s[0].queue, None);

        assert!(fake.set_state(&a, JobState::Running));
        let s = fake.status(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(s[0].state, JobState::Running);
        assert_eq!(s[0].queue.as_deref(), Some("q_gpu"));
        assert_eq!(s[1].state, JobState::Pending);

        assert!(fake.set_state(&b, JobState::Failed("Eqw".into())));
        assert_eq!(
            fake.status(std::slice::from_ref(&b)).unwrap()[0].state,
            JobState::Failed("Eqw".into())
        );
        assert!(!fake.set_state(&JobId::new("99"), JobState::Running));
        assert!(!fake.set_state(&JobId::new("x"), JobState::Running));
        assert_eq!(fake.job(&a).unwrap().label, "gpu");
        assert_eq!(fake.active_jobs().len(), 1);
    }

    #[test]
    fn start_pending_runs_all_waiting_jobs() {
        let fake = FakeBatchSystem::new();
        let ids: Vec<_> = (0..3)
            .map(|_| fake.submit("d", "#$ -q q_1day\n").unwrap())
            .collect();
        fake.set_state(&ids[1], JobState::Finished);
        assert_eq!(fake.start_pending(), [ids[0].clone(), ids[2].clone()]);
        let states: Vec<_> = fake
            .status(&ids)
            .unwrap()
            .into_iter()
            .map(|s| s.state)
            .collect();
        assert_eq!(
            states,
            [JobState::Running, JobState::Finished, JobState::Running]
        );
    }

    #[test]
    fn delete_removes_and_counts_ignoring_unknown_ids() {
        let fake = FakeBatchSystem::new();
        let a = fake.submit("d", "").unwrap();
        let b = fake.submit("d", "").unwrap();
        fake.delete(&[a.clone(), JobId::new("42"), JobId::new("nope")])
            .unwrap();
        assert_eq!(fake.deletions(), 1);
        assert_eq!(fake.deleted(), std::slice::from_ref(&a));
        fake.delete(std::slice::from_ref(&a)).unwrap();
        assert_eq!(fake.deletions(), 1);
        let s = fake
            .status(&[a.clone(), b.clone(), JobId::new("42")])
            .unwrap();
        assert_eq!(s[0], JobStatus::finished(a));
        assert_eq!(s[1].state, JobState::Pending);
        assert_eq!(s[2].state, JobState::Finished);
        assert_eq!(fake.jobs().len(), 1);
    }

    #[test]
    fn injected_submit_failures() {
        let fake = FakeBatchSystem::new();
        fake.fail_next_submits(2);
        for _ in 0..2 {
            let err = fake.submit("gpu", "").unwrap_err();
            assert!(matches!(err, SgeError::CommandFailed { code: Some(1), .. }));
            assert!(err.to_string().contains("qsub"), "{err}");
        }
        assert_eq!(fake.failed_submissions(), 2);
        assert_eq!(fake.submissions(), 0);
        assert_eq!(fake.submit("gpu", "").unwrap(), JobId::new("1"));
        assert_eq!(fake.submissions(), 1);
    }

    #[test]
    fn usable_as_shared_trait_object() {
        let fake = Arc::new(FakeBatchSystem::new());
        let system: Box<dyn BatchSystem> = Box::new(Arc::clone(&fake));
        let id = system.submit("d", "#$ -N w\n").unwrap();
        assert_eq!(fake.job(&id).unwrap().name, "w");
        let handle = {
            let system = Arc::clone(&fake);
            std::thread::spawn(move || system.delete(&[id]).unwrap())
        };
        handle.join().unwrap();
        assert_eq!(fake.deletions(), 1);
    }

    #[test]
    fn jobs_are_found_and_deleted_by_name_prefix_in_any_listed_state() {
        let fake = FakeBatchSystem::new();
        let a = fake.submit("d", "#$ -N gp-1a2b3c4d-default\n").unwrap();
        let b = fake.submit("d", "#$ -N gp-1a2b3c4d-gpu\n").unwrap();
        let other = fake.submit("d", "#$ -N gp-99999999-default\n").unwrap();
        let done = fake.submit("d", "#$ -N gp-1a2b3c4d-default\n").unwrap();
        fake.set_state(&b, JobState::Failed("Eqw".into()));
        fake.set_state(&done, JobState::Finished);
        let named: Vec<JobId> = fake
            .named("gp-1a2b3c4d-")
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(named, [a.clone(), b.clone()]);
        assert_eq!(fake.delete_named("gp-1a2b3c4d-").unwrap(), [a, b]);
        assert!(fake.named("gp-1a2b3c4d-").unwrap().is_empty());
        assert_eq!(fake.active_jobs().len(), 1);
        assert_eq!(fake.active_jobs()[0].id, other);
    }

    #[test]
    fn directives_are_read_from_scripts() {
        let s = script("q_gpu");
        assert_eq!(directive(&s, "-N").as_deref(), Some("gridpipe-gpu"));
        assert_eq!(directive(&s, "-q").as_deref(), Some("q_gpu"));
        assert_eq!(directive(&s, "-x"), None);
        assert_eq!(directive("#$ -Nx\n", "-N"), None);
    }
}
