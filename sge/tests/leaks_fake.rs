//! No job outlives its cluster, on a `FakeBatchSystem`: jobs named after the
//! cluster but not tracked (a submission whose id was never read, a job in
//! `Eqw`) go at close, and the jobs of a cluster whose program was killed go
//! when the next cluster starts on the same work root.

use std::sync::Arc;
use std::time::Duration;

use gridpipe_sge::{
    BatchSystem, ClusterError, FakeBatchSystem, JobId, JobState, JobStatus, Lease, QueueSpec,
    QueueSpecs, SgeCluster, SgeError, LEASE_FILE, REAPED_FILE,
};

mod common;
use common::{fake_cluster_options, TempDir};

const POLL: Duration = Duration::from_millis(50);

fn specs() -> QueueSpecs {
    QueueSpecs::new(QueueSpec::new("q_1day")).unwrap()
}

fn start(dir: &TempDir, backend: Arc<dyn BatchSystem>) -> Result<SgeCluster, ClusterError> {
    SgeCluster::with_backend(specs(), fake_cluster_options(dir, POLL), backend)
}

/// The jobs the fake still lists (any state but ended) whose name starts with `prefix`.
fn listed(fake: &FakeBatchSystem, prefix: &str) -> Vec<JobId> {
    fake.named(prefix)
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect()
}

#[test]
fn jobs_named_after_the_cluster_go_at_close_tracked_or_not_eqw_included() {
    let dir = TempDir::new("leaks-fake", "named");
    let fake = Arc::new(FakeBatchSystem::new());
    let cluster = start(&dir, fake.clone()).unwrap();
    let tracked = cluster.scale(1).unwrap().submitted;
    let name = format!("{}default", cluster.job_prefix());
    // Jobs the cluster lost track of: submitted, but their id never read.
    let untracked = fake.submit("default", &format!("#$ -N {name}\n")).unwrap();
    let stuck = fake
        .submit("default", &format!("#$ -N {name}\n#$ -h\n"))
        .unwrap();
    fake.set_state(&stuck, JobState::Failed("Eqw".into()));
    let foreign = fake
        .submit("default", "#$ -N gridpipe-0f0f0f0f-default\n")
        .unwrap();
    cluster.close().unwrap();
    let deleted = fake.deleted();
    for id in tracked.iter().chain([&untracked, &stuck]) {
        assert!(deleted.contains(id), "job {id} not deleted: {deleted:?}");
    }
    assert!(listed(&fake, &name).is_empty());
    assert_eq!(
        listed(&fake, "gridpipe-"),
        [foreign],
        "another cluster's job stays"
    );
}

/// Submits for real, then fails to say the job's id (as a `qsub` printing
/// garbage, or timing out after submitting, does).
struct GarbledSubmit(Arc<FakeBatchSystem>);

impl BatchSystem for GarbledSubmit {
    fn submit(&self, label: &str, script: &str) -> Result<JobId, SgeError> {
        let id = self.0.submit(label, script)?;
        Err(SgeError::UnexpectedOutput {
            command: "qsub -terse".into(),
            reason: "expected a job id".into(),
            output: format!("garbage after job {id}"),
        })
    }

    fn status(&self, ids: &[JobId]) -> Result<Vec<JobStatus>, SgeError> {
        self.0.status(ids)
    }

    fn delete(&self, ids: &[JobId]) -> Result<(), SgeError> {
        self.0.delete(ids)
    }

    fn named(&self, prefix: &str) -> Result<Vec<JobStatus>, SgeError> {
        self.0.named(prefix)
    }
}

#[test]
fn a_submission_whose_id_cannot_be_read_leaves_no_job_after_close() {
    let dir = TempDir::new("leaks-fake", "garbled");
    let fake = Arc::new(FakeBatchSystem::new());
    let cluster = start(&dir, Arc::new(GarbledSubmit(fake.clone()))).unwrap();
    let err = cluster.scale(2).unwrap_err();
    assert!(err.to_string().contains("expected a job id"), "{err}");
    assert_eq!(fake.submissions(), 1, "the job was submitted");
    // The job whose id was lost is tracked at once (found by its name): it
    // counts towards the queue's target, so a second scale adds one job, not two.
    let status = cluster.refresh().unwrap();
    assert_eq!(status.queues["default"].jobs.active(), 1, "{status:?}");
    let _ = cluster.scale(2);
    assert_eq!(fake.submissions(), 2, "{:?}", fake.jobs());
    let prefix = cluster.job_prefix().to_string();
    cluster.close().unwrap();
    assert!(listed(&fake, &prefix).is_empty(), "{:?}", fake.jobs());
}

#[test]
fn the_next_cluster_deletes_the_jobs_of_a_killed_program_and_marks_its_folder() {
    let root = TempDir::new("leaks-fake", "killed");
    let fake = Arc::new(FakeBatchSystem::new());
    // What a program killed with `kill -9` leaves: its folder and lease, and
    // jobs named after its cluster.
    let dead = root.0.join("cluster-deadbeef");
    std::fs::create_dir(&dead).unwrap();
    let lease = Lease {
        pid: u32::MAX - 1,
        host: gridpipe_sge::host_name(),
        pid_start: Some(1),
        started: 1,
        renewed: 1,
        renew_every: Duration::from_secs(10),
        job_prefix: "gridpipe-deadbeef-".into(),
    };
    lease.write_to(&dead).unwrap();
    let orphans: Vec<JobId> = (0..3)
        .map(|_| {
            fake.submit("default", "#$ -N gridpipe-deadbeef-default\n")
                .unwrap()
        })
        .collect();
    fake.set_state(&orphans[0], JobState::Running);
    let cluster = start(&root, fake.clone()).unwrap();
    assert!(
        listed(&fake, "gridpipe-deadbeef-").is_empty(),
        "{:?}",
        fake.jobs()
    );
    assert_eq!(fake.deleted(), orphans);
    assert!(!dead.join(LEASE_FILE).exists());
    assert!(dead.join(REAPED_FILE).exists());
    // The new cluster's own lease names this process.
    let own = Lease::read_from(cluster.work_dir()).unwrap().unwrap();
    assert_eq!(own.pid, std::process::id());
    assert_eq!(own.job_prefix, cluster.job_prefix());
    let own_dir = cluster.work_dir().to_path_buf();
    cluster.close().unwrap();
    assert!(!own_dir.join(LEASE_FILE).exists(), "released at close");
}
