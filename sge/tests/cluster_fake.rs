//! `SgeCluster` end to end on a `FakeBatchSystem`: per-queue scaling, closing,
//! jobs that end before their worker connects, job states, and waiting for
//! workers. No worker ever connects (the fake starts no processes).
//!
//! `SgeCluster`'s API blocks, so these are plain `#[test]`s, never async.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gridpipe_sge::{
    job_name, job_stderr_path, ClusterError, ClusterStatus, FakeBatchSystem, FakeJob, JobId,
    JobState, QueueSpec, QueueSpecs, SgeCluster,
};

/// How long to wait for something the cluster does in the background.
const DEADLINE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

mod common;
use common::{fake_cluster_options, gpu_queue, TempDir};

/// `default` on `q_1day` (no limit) and `gpu` on `q_gpu` (at most 2 jobs).
fn specs() -> QueueSpecs {
    QueueSpecs::new(QueueSpec::new("q_1day"))
        .unwrap()
        .with("gpu", gpu_queue().with_max_jobs(2))
        .unwrap()
}

/// A cluster of [`specs`] on a new fake, keeping its work folder in `dir`.
fn start(dir: &TempDir) -> (SgeCluster, Arc<FakeBatchSystem>) {
    let fake = Arc::new(FakeBatchSystem::new());
    let cluster =
        SgeCluster::with_backend(specs(), fake_cluster_options(dir, POLL), fake.clone()).unwrap();
    (cluster, fake)
}

/// The fake's pending or running jobs of queue spec `label`.
fn active(fake: &FakeBatchSystem, label: &str) -> Vec<FakeJob> {
    fake.active_jobs()
        .into_iter()
        .filter(|j| j.label == label)
        .collect()
}

fn ids(jobs: &[FakeJob]) -> Vec<JobId> {
    jobs.iter().map(|j| j.id.clone()).collect()
}

/// Polls `cond` until it holds; panics naming `what` after [`DEADLINE`].
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls the cluster (`refresh`) until `cond` holds on the status; returns it.
fn refresh_until(
    cluster: &SgeCluster,
    what: &str,
    mut cond: impl FnMut(&ClusterStatus) -> bool,
) -> ClusterStatus {
    let start = Instant::now();
    loop {
        let status = cluster.refresh().unwrap();
        if cond(&status) {
            return status;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}; status: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Scaling is per queue: each queue gets its own total, shrinking one queue deletes
/// only its jobs (pending before running), and `max_jobs` caps the total.
#[test]
fn scale_queue_sets_a_total_per_queue() {
    let dir = TempDir::new("sge-cluster-fake", "scale");
    let (cluster, fake) = start(&dir);

    let change = cluster.scale_queue("default", 3).unwrap();
    assert_eq!(change.submitted.len(), 3);
    assert!(change.deleted.is_empty());
    let change = cluster.scale_queue("gpu", 1).unwrap();
    assert_eq!(change.submitted.len(), 1);

    let default_jobs = active(&fake, "default");
    let gpu_jobs = active(&fake, "gpu");
    assert_eq!(default_jobs.len(), 3, "{:?}", fake.jobs());
    assert_eq!(gpu_jobs.len(), 1, "{:?}", fake.jobs());
    assert!(default_jobs
        .iter()
        .all(|j| j.queue.as_deref() == Some("q_1day")
            && j.name == format!("{}default", cluster.job_prefix())));
    assert!(cluster.job_prefix().starts_with("gridpipe-"));
    assert!(cluster.job_prefix().contains(cluster.id()));
    assert_eq!(gpu_jobs[0].queue.as_deref(), Some("q_gpu"));
    assert!(
        gpu_jobs[0].script.contains("gpu=1"),
        "{}",
        gpu_jobs[0].script
    );

    // One default job and the gpu job run; the cluster sees it.
    let running = default_jobs[0].id.clone();
    let gpu_job = gpu_jobs[0].id.clone();
    assert!(fake.set_state(&running, JobState::Running));
    assert!(fake.set_state(&gpu_job, JobState::Running));
    refresh_until(&cluster, "the running default job", |s| {
        s.queues["default"].jobs.running == [running.clone()]
    });

    // Down to 1: the two pending default jobs go, the running one and gpu stay.
    let change = cluster.scale_queue("default", 1).unwrap();
    let mut deleted = change.deleted.clone();
    deleted.sort();
    let mut pending = vec![default_jobs[1].id.clone(), default_jobs[2].id.clone()];
    pending.sort();
    assert_eq!(deleted, pending);
    assert!(change.submitted.is_empty());
    assert_eq!(ids(&active(&fake, "default")), vec![running.clone()]);
    assert_eq!(ids(&active(&fake, "gpu")), vec![gpu_job.clone()]);
    assert!(!fake.deleted().contains(&gpu_job));
    assert!(!fake.deleted().contains(&running));

    // gpu is capped at max_jobs = 2.
    let change = cluster.scale_queue("gpu", 5).unwrap();
    assert_eq!(change.submitted.len(), 1);
    assert_eq!(active(&fake, "gpu").len(), 2);
    let status = cluster.refresh().unwrap();
    assert_eq!(status.queues["gpu"].target, 2);
    assert_eq!(status.queues["default"].target, 1);
    // The targets hold over further polls: nothing more is submitted or deleted.
    let submissions = fake.submissions();
    std::thread::sleep(POLL * 4);
    cluster.refresh().unwrap();
    assert_eq!(fake.submissions(), submissions);
    assert_eq!(active(&fake, "default").len(), 1);
    assert_eq!(active(&fake, "gpu").len(), 2);

    cluster.close().unwrap();
}

/// Scaling a label no queue spec has is an error naming the label and the known ones.
#[test]
fn scale_queue_of_an_unknown_label_names_the_known_ones() {
    let dir = TempDir::new("sge-cluster-fake", "unknown");
    let (cluster, fake) = start(&dir);

    let err = cluster.scale_queue("nope", 1).unwrap_err();
    match &err {
        ClusterError::UnknownQueue { label, known } => {
            assert_eq!(label, "nope");
            assert!(
                known.contains("default") && known.contains("gpu"),
                "{known}"
            );
        }
        other => panic!("expected UnknownQueue, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("nope"), "{msg}");
    assert!(msg.contains("default"), "{msg}");
    assert!(msg.contains("gpu"), "{msg}");
    assert_eq!(fake.submissions(), 0);

    cluster.close().unwrap();
}

/// `close` deletes every job the cluster submitted, pending or running, in every queue.
#[test]
fn close_deletes_every_submitted_job() {
    let dir = TempDir::new("sge-cluster-fake", "close");
    let (cluster, fake) = start(&dir);

    let mut submitted = cluster.scale_queue("default", 3).unwrap().submitted;
    submitted.extend(cluster.scale_queue("gpu", 2).unwrap().submitted);
    assert_eq!(submitted.len(), 5);
    assert!(fake.set_state(&submitted[0], JobState::Running));
    assert!(fake.set_state(&submitted[3], JobState::Running));
    cluster.refresh().unwrap();

    cluster.close().unwrap();
    assert!(fake.active_jobs().is_empty(), "{:?}", fake.active_jobs());
    let deleted = fake.deleted();
    for id in &submitted {
        assert!(deleted.contains(id), "job {id} not deleted: {deleted:?}");
    }
    assert_eq!(fake.submissions(), 5, "nothing submitted while closing");
}

/// Dropping a cluster without `close` still deletes every job it submitted.
#[test]
fn dropping_a_cluster_deletes_every_submitted_job() {
    let dir = TempDir::new("sge-cluster-fake", "drop");
    let (cluster, fake) = start(&dir);

    let mut submitted = cluster.scale_queue("default", 2).unwrap().submitted;
    submitted.extend(cluster.scale_queue("gpu", 1).unwrap().submitted);
    assert!(fake.set_state(&submitted[1], JobState::Running));
    drop(cluster);

    assert!(fake.active_jobs().is_empty(), "{:?}", fake.active_jobs());
    let deleted = fake.deleted();
    for id in &submitted {
        assert!(deleted.contains(id), "job {id} not deleted: {deleted:?}");
    }
}

/// A job that ends before its worker connects is reported with its stderr and
/// replaced; after `max_start_failures` in a row the queue is given up (no more
/// submissions, `wait_for_workers` fails naming it) until it is scaled again.
#[test]
fn jobs_ending_before_their_worker_connects_are_reported_then_the_queue_given_up() {
    let dir = TempDir::new("sge-cluster-fake", "startfail");
    let (cluster, fake) = start(&dir);
    let log_dir = cluster.work_dir().join("logs");
    let name = job_name(&format!("{}default", cluster.job_prefix()));

    let mut job = cluster.scale(1).unwrap().submitted;
    assert_eq!(job.len(), 1);
    let mut seen: Vec<JobId> = Vec::new();
    for round in 1..=3 {
        let id = job.pop().unwrap();
        assert_eq!(fake.job(&id).unwrap().name, name, "the job's log file name");
        std::fs::write(
            job_stderr_path(&log_dir, &name, &id),
            format!("loading\nboom: cannot open model (round {round})\n"),
        )
        .unwrap();
        assert!(fake.set_state(&id, JobState::Finished));
        seen.push(id.clone());

        let status = refresh_until(&cluster, "the problem of the ended job", |s| {
            s.problems.iter().any(|p| p.job == id)
        });
        let problem = status.problems.iter().find(|p| p.job == id).unwrap();
        assert_eq!(problem.label, "default");
        assert_eq!(problem.queue, "q_1day");
        assert!(problem.stderr.contains("boom"), "{problem:?}");
        assert!(
            problem.stderr.contains(&format!("round {round}")),
            "{problem:?}"
        );
        assert_eq!(status.queues["default"].target, 1, "the target is kept");
        assert_eq!(
            status.problems.len(),
            round,
            "one problem per ended job: {:?}",
            status.problems
        );

        if round < 3 {
            assert_eq!(status.queues["default"].given_up, None, "round {round}");
            // Topped up again: a new job replaces the ended one.
            wait_until("a replacement job", || {
                let now = active(&fake, "default");
                now.len() == 1 && !seen.contains(&now[0].id)
            });
            job = ids(&active(&fake, "default"));
            assert_eq!(fake.submissions(), round + 1);
        } else {
            let reason = status.queues["default"].given_up.clone();
            let reason = reason.expect("given up after 3 endings in a row");
            assert!(reason.contains("boom"), "{reason}");
            assert!(
                status.describe().contains("given up"),
                "{}",
                status.describe()
            );
        }
    }

    // Given up: no more submissions over several polls.
    std::thread::sleep(POLL * 6);
    cluster.refresh().unwrap();
    assert_eq!(fake.submissions(), 3, "{:?}", fake.jobs());
    assert!(active(&fake, "default").is_empty());
    assert!(active(&fake, "gpu").is_empty(), "other queues untouched");

    // Waiting for workers fails at once, naming the queue.
    let start = Instant::now();
    let err = cluster
        .wait_for_workers(1, Duration::from_secs(5))
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "failed early, not after the timeout"
    );
    match &err {
        ClusterError::QueueGivenUp { label, reason } => {
            assert_eq!(label, "default");
            assert!(reason.contains("boom"), "{reason}");
        }
        other => panic!("expected QueueGivenUp, got {other:?}"),
    }
    assert!(err.to_string().contains("`default`"), "{err}");

    // Scaling again tries the queue again.
    let change = cluster.scale_queue("default", 1).unwrap();
    assert_eq!(change.submitted.len(), 1);
    assert_eq!(fake.submissions(), 4);
    let status = cluster.status().unwrap();
    assert_eq!(status.queues["default"].given_up, None);
    assert_eq!(status.queues["default"].target, 1);
    assert_eq!(ids(&active(&fake, "default")), change.submitted);

    cluster.close().unwrap();
}

/// Job states are read from the batch system: started jobs show as running, jobs in
/// an error state as failed, reported as a problem, deleted and replaced.
#[test]
fn refresh_shows_running_and_failed_jobs() {
    let dir = TempDir::new("sge-cluster-fake", "states");
    let (cluster, fake) = start(&dir);

    let default_ids = cluster.scale_queue("default", 2).unwrap().submitted;
    let gpu_ids = cluster.scale_queue("gpu", 1).unwrap().submitted;
    let status = cluster.refresh().unwrap();
    assert_eq!(status.queues["default"].jobs.pending, default_ids);
    assert!(status.queues["default"].jobs.running.is_empty());
    assert_eq!(status.queues["gpu"].jobs.pending, gpu_ids);

    let started = fake.start_pending();
    assert_eq!(started.len(), 3);
    let status = cluster.refresh().unwrap();
    assert_eq!(status.queues["default"].jobs.running, default_ids);
    assert!(status.queues["default"].jobs.pending.is_empty());
    assert_eq!(status.queues["gpu"].jobs.running, gpu_ids);
    assert_eq!(status.queues["gpu"].queue, "q_gpu");

    assert!(fake.set_state(&default_ids[0], JobState::Failed("Eqw".into())));
    let status = cluster.refresh().unwrap();
    let jobs = &status.queues["default"].jobs;
    assert_eq!(jobs.failed, [default_ids[0].clone()]);
    assert_eq!(jobs.running, [default_ids[1].clone()]);
    assert!(
        status.describe().contains("failed 1"),
        "{}",
        status.describe()
    );
    // A job stuck in an error state never runs: it is reported, deleted, and
    // replaced to keep the queue's count.
    assert_eq!(status.problems.len(), 1, "{:?}", status.problems);
    assert_eq!(status.problems[0].job, default_ids[0]);
    assert!(status.problems[0].stderr.contains("error state"));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while fake.submissions() < 4 || !fake.deleted().contains(&default_ids[0]) {
        assert!(std::time::Instant::now() < deadline, "{:?}", fake.jobs());
        std::thread::sleep(POLL);
    }
    let status = cluster.refresh().unwrap();
    assert!(status.queues["default"].jobs.failed.is_empty());
    assert_eq!(status.queues["default"].jobs.active(), 2);

    cluster.close().unwrap();
}

/// A poll asks the batch system once about the jobs of every queue (one `qstat`
/// per poll, not one per queue), and each queue still sees its own jobs.
#[test]
fn one_poll_is_one_status_call_for_all_queues() {
    let dir = TempDir::new("sge-cluster-fake", "one-call");
    let fake = Arc::new(FakeBatchSystem::new());
    // No background poll during the test: every call counted is the test's.
    let options = fake_cluster_options(&dir, Duration::from_secs(3600));
    let cluster = SgeCluster::with_backend(specs(), options, fake.clone()).unwrap();
    let default_ids = cluster.scale_queue("default", 2).unwrap().submitted;
    let gpu_ids = cluster.scale_queue("gpu", 2).unwrap().submitted;
    fake.start_pending();
    let before = fake.status_calls();
    let status = cluster.refresh().unwrap();
    assert_eq!(fake.status_calls() - before, 1, "one call for both queues");
    assert_eq!(status.queues["default"].jobs.running, default_ids);
    assert_eq!(status.queues["gpu"].jobs.running, gpu_ids);
    cluster.close().unwrap();
}

/// Waiting for workers that never connect times out with the queues' job states.
#[test]
fn wait_for_workers_times_out_with_the_job_states() {
    let dir = TempDir::new("sge-cluster-fake", "timeout");
    let (cluster, fake) = start(&dir);

    cluster.scale_queue("default", 2).unwrap();
    cluster.refresh().unwrap();
    assert_eq!(active(&fake, "default").len(), 2);

    let start = Instant::now();
    let err = cluster
        .wait_for_workers(1, Duration::from_millis(300))
        .unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(start.elapsed() < Duration::from_secs(5));
    match &err {
        ClusterError::WorkersTimeout {
            wanted, live, jobs, ..
        } => {
            assert_eq!((*wanted, *live), (1, 0));
            assert!(jobs.contains("default (q_1day)"), "{jobs}");
            assert!(jobs.contains("pending 2"), "{jobs}");
        }
        other => panic!("expected WorkersTimeout, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("pending 2"), "{msg}");
    assert!(msg.contains("1 workers wanted, 0 connected"), "{msg}");

    cluster.close().unwrap();
}

/// A cluster's workers are its jobs: options whose runtime would start worker
/// processes or threads only are refused, naming the mode, and no job is
/// submitted; the configuration is never rewritten behind the user's back.
#[test]
fn a_cluster_refuses_a_runtime_that_is_not_external() {
    let dir = TempDir::new("sge-cluster-fake", "notexternal");
    let fake = Arc::new(FakeBatchSystem::new());
    for config in [
        gridpipe_runtime::RuntimeConfig::processes(2),
        gridpipe_runtime::RuntimeConfig::in_process(2),
    ] {
        let mut options = fake_cluster_options(&dir, POLL);
        options.runtime = config;
        match SgeCluster::with_backend(specs(), options, fake.clone()) {
            Err(e @ ClusterError::NotExternal { .. }) => {
                let text = e.to_string();
                assert!(text.contains("WorkerMode::External"), "{text}");
                assert!(
                    text.contains("Processes") || text.contains("Threads"),
                    "{text}"
                );
            }
            Err(other) => panic!("expected NotExternal, got {other}"),
            Ok(_) => panic!("a cluster started with a runtime that is not external"),
        }
    }
    assert_eq!(fake.submissions(), 0);
}
