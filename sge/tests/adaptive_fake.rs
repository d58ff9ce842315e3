//! Adaptive scaling (`SgeCluster::adapt`) end to end on a `FakeBatchSystem`: the
//! queue checks, what the supervisor submits for a waiting run, back-off and giving
//! a queue up, and the decision report. No worker ever connects (the fake starts no
//! processes), so ready tasks stay ready and the supervisor's decisions show.
//!
//! Rounds run when a test asks for one (`SgeCluster::adapt_now`) or the cluster
//! sees a change; the safety-net tick is an hour, and time-driven behaviour
//! (back-off) reads a [`ManualClock`] the test moves on, so nothing sleeps.
//!
//! `SgeCluster`'s API blocks, so these are plain `#[test]`s, never async.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridpipe_estimators::StandardScaler;
use gridpipe_runtime::actors::messages::Submit;
use gridpipe_runtime::{
    Bag, Partitioning, Resources, RunError, RunOutput, RunRequest, Step, StepRun,
};
use gridpipe_sge::{
    Action, AdaptOptions, BatchSystem, ClockHandle, ClusterError, FakeBatchSystem, JobId,
    JobStatus, ManualClock, QueueSpec, QueueSpecs, SgeCluster, SgeError,
};
use tokio::sync::oneshot;

mod common;
use common::{fake_cluster_options, gpu_queue, TempDir};

/// How long to wait for something the cluster does in the background.
const DEADLINE: Duration = Duration::from_secs(10);
/// How often the cluster reads the fake's job states.
const POLL: Duration = Duration::from_millis(50);

type RunReply = oneshot::Receiver<Result<RunOutput, RunError>>;

/// A [`FakeBatchSystem`] that also keeps every submission's label, script and id
/// (the fake forgets deleted jobs).
#[derive(Default)]
struct Recorder {
    fake: FakeBatchSystem,
    submitted: Mutex<Vec<(String, String, JobId)>>,
}

impl BatchSystem for Recorder {
    fn submit(&self, label: &str, script: &str) -> Result<JobId, SgeError> {
        let id = self.fake.submit(label, script)?;
        let entry = (label.to_owned(), script.to_owned(), id.clone());
        self.submitted.lock().unwrap().push(entry);
        Ok(id)
    }

    fn status(&self, ids: &[JobId]) -> Result<Vec<JobStatus>, SgeError> {
        self.fake.status(ids)
    }

    fn delete(&self, ids: &[JobId]) -> Result<(), SgeError> {
        self.fake.delete(ids)
    }

    fn named(&self, prefix: &str) -> Result<Vec<JobStatus>, SgeError> {
        self.fake.named(prefix)
    }
}

/// `default` on `q_1day` and `gpu` on `q_gpu` (offering one gpu).
fn specs() -> QueueSpecs {
    QueueSpecs::new(QueueSpec::new("q_1day"))
        .unwrap()
        .with("gpu", gpu_queue())
        .unwrap()
}

fn start_on(dir: &TempDir, specs: QueueSpecs, backend: Arc<dyn BatchSystem>) -> SgeCluster {
    SgeCluster::with_backend(specs, fake_cluster_options(dir, POLL), backend).unwrap()
}

fn start(dir: &TempDir) -> (SgeCluster, Arc<FakeBatchSystem>) {
    let fake = Arc::new(FakeBatchSystem::new());
    (start_on(dir, specs(), fake.clone()), fake)
}

/// Every queue between 0 and 10 jobs, `gpu` at most 1; a safety-net round only
/// every hour (tests ask for rounds), time read from a manual clock.
fn adapt_options() -> AdaptOptions {
    let mut options = AdaptOptions::new(0, 10).queue("gpu", 0, 1);
    options.tick = Duration::from_secs(3600);
    options.clock = ClockHandle(ManualClock::new());
    options
}

/// Runs `n` rounds, one after the other, each started after the last ended.
fn rounds(cluster: &SgeCluster, n: usize) {
    for _ in 0..n {
        cluster.adapt_now().unwrap();
    }
}

/// Submits, without waiting, a fit of a scaler over 8 partitions (so 8 ready
/// tasks needing nothing), whose fit task needs a gpu when `fit_gpu`.
fn submit_run(cluster: &SgeCluster, fit_gpu: bool) -> RunReply {
    let mut step = Step::new("train", StandardScaler::new());
    if fit_gpu {
        step = step.fit_resources(Resources::one("gpu", 1));
    }
    let data = ndarray::Array2::from_shape_fn((16, 2), |(i, j)| (i * 2 + j) as f64).into_dyn();
    let keys = (0..16).map(|i| format!("s{i}")).collect();
    let bag = Bag::from_rows(keys, data, Partitioning::NPartitions(8)).unwrap();
    let request = RunRequest {
        steps: vec![StepRun {
            step: Arc::new(step),
            fitted: None,
            fit: true,
            apply: None,
        }],
        bag,
        outputs: Default::default(),
    };
    let (reply, rx) = oneshot::channel();
    cluster
        .runtime()
        .scheduler()
        .do_send(Submit { request, reply });
    rx
}

/// How many of the fake's jobs of queue spec `label` are pending or running.
fn active(fake: &FakeBatchSystem, label: &str) -> usize {
    fake.active_jobs()
        .iter()
        .filter(|j| j.label == label)
        .count()
}

/// How many jobs of queue `gpu` the fake was ever given (deleted ones aside).
fn gpu_jobs(fake: &FakeBatchSystem) -> usize {
    fake.jobs().iter().filter(|j| j.label == "gpu").count()
}

/// Polls `f` until it gives a value; panics naming `what` after `deadline`.
fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(what, DEADLINE, || cond().then_some(()))
}

/// Waits until queue `default` is given up; returns why.
fn wait_given_up(cluster: &SgeCluster, deadline: Duration) -> String {
    wait_for("default given up", deadline, || {
        cluster.status().unwrap().queues["default"].given_up.clone()
    })
}

/// Waits (at most 5 s) for a submitted run's result.
fn wait_result(run: &mut RunReply) -> Result<RunOutput, RunError> {
    wait_for("the run's result", Duration::from_secs(5), || {
        run.try_recv().ok()
    })
}

/// Checks `cond` after each of 5 rounds; panics naming `what` when it fails once.
fn holds_for_rounds(what: &str, cluster: &SgeCluster, mut cond: impl FnMut() -> bool) {
    for _ in 0..5 {
        cluster.adapt_now().unwrap();
        assert!(cond(), "{what}");
    }
}

/// Starting adaptive scaling checks every queue with a held submission (`#$ -h`)
/// that is deleted again, leaving no job behind.
#[test]
fn adapt_checks_each_queue_with_a_held_submission_deleted_again() {
    let dir = TempDir::new("sge-adaptive-fake", "check");
    let rec = Arc::new(Recorder::default());
    let cluster = start_on(&dir, specs(), rec.clone());

    cluster.adapt(adapt_options()).unwrap();
    let submitted = rec.submitted.lock().unwrap().clone();
    let labels: Vec<&str> = submitted.iter().map(|(l, _, _)| l.as_str()).collect();
    assert_eq!(labels, ["default", "gpu"], "one check per queue");
    let deleted = rec.fake.deleted();
    for (label, script, id) in &submitted {
        assert!(
            script.lines().any(|l| l.trim() == "#$ -h"),
            "{label} not held: {script}"
        );
        assert!(deleted.contains(id), "{label}'s {id} kept: {deleted:?}");
    }
    assert!(submitted[0].1.contains("q_1day") && submitted[1].1.contains("q_gpu"));
    assert!(rec.fake.active_jobs().is_empty(), "{:?}", rec.fake.jobs());
    assert_eq!(rec.fake.failed_submissions(), 0);

    cluster.close().unwrap();
}

/// A queue whose check submission fails makes `adapt` an error naming the queue.
#[test]
fn a_failing_check_submission_is_an_error_naming_the_queue() {
    let dir = TempDir::new("sge-adaptive-fake", "checkfail");
    let (cluster, fake) = start(&dir);

    fake.fail_next_submits(1);
    let err = cluster.adapt(adapt_options()).unwrap_err();
    match &err {
        ClusterError::QueueGivenUp { label, reason } => {
            assert_eq!(label, "default");
            assert!(reason.contains("check submission"), "{reason}");
        }
        other => panic!("expected QueueGivenUp, got {other:?}"),
    }
    assert!(err.to_string().contains("`default`"), "{err}");
    assert!(cluster.adapt_report().unwrap().decisions.is_empty());
    assert!(fake.active_jobs().is_empty(), "{:?}", fake.jobs());

    cluster.close().unwrap();
}

/// With minimum 0 and nothing to compute, adaptive scaling submits nothing.
#[test]
fn with_minimum_zero_and_no_run_nothing_is_submitted() {
    let dir = TempDir::new("sge-adaptive-fake", "idle");
    let (cluster, fake) = start(&dir);

    cluster.adapt(adapt_options()).unwrap();
    let checks = fake.submissions();
    assert_eq!(checks, 2, "the two queue checks");
    // Rounds run (the first one records each queue's counts) and submit nothing.
    rounds(&cluster, 10);
    assert!(cluster.adapt_report().unwrap().timeline.len() >= 2);
    cluster.refresh().unwrap();
    assert_eq!(fake.submissions(), checks, "{:?}", fake.jobs());
    assert!(fake.active_jobs().is_empty());
    let report = cluster.adapt_report().unwrap();
    assert!(report.decisions.is_empty(), "{:?}", report.decisions);
    assert!(report.timeline.iter().all(|p| p.pending + p.running == 0));

    cluster.close().unwrap();
}

/// A run whose first stage needs nothing gets default jobs only (the gpu fit is
/// not ready yet); pending jobs count as supply, so at most `max_pending` (4) are
/// pending, and the queue's maximum (10) caps the total.
#[test]
fn a_waiting_run_gets_bounded_default_jobs_and_no_gpu_job_before_its_fit_is_ready() {
    let dir = TempDir::new("sge-adaptive-fake", "demand");
    let (cluster, fake) = start(&dir);
    cluster.adapt(adapt_options()).unwrap();
    let _run = submit_run(&cluster, true);

    wait_until("4 pending default jobs", || active(&fake, "default") == 4);
    let submitted = fake.submissions();
    holds_for_rounds(
        "no gpu job, 4 default jobs, nothing more submitted",
        &cluster,
        || gpu_jobs(&fake) == 0 && active(&fake, "default") == 4 && fake.submissions() == submitted,
    );

    // Running jobs whose worker never connects are no supply: up to the maximum.
    fake.start_pending();
    wait_until("8 default jobs", || active(&fake, "default") == 8);
    fake.start_pending();
    wait_until("10 default jobs", || active(&fake, "default") == 10);
    let submitted = fake.submissions();
    holds_for_rounds("the maximum holds, still no gpu job", &cluster, || {
        gpu_jobs(&fake) == 0 && active(&fake, "default") == 10 && fake.submissions() == submitted
    });
    let status = cluster.refresh().unwrap();
    assert_eq!(status.queues["default"].jobs.active(), 10);
    assert_eq!(status.queues["gpu"].jobs.active(), 0);

    cluster.close().unwrap();
    assert!(fake.active_jobs().is_empty(), "close deletes every job");
}

/// Failing submissions back off (100 ms, 200 ms, 400 ms, 800 ms by the manual
/// clock) instead of retrying every round, and the queue is given up after 5 in
/// a row: no attempt before its pause is over, one as soon as it is.
#[test]
fn failing_submissions_back_off_and_the_queue_is_given_up_after_five() {
    let dir = TempDir::new("sge-adaptive-fake", "giveup");
    let (cluster, fake) = start(&dir);
    let clock = ManualClock::new();
    let mut options = adapt_options();
    options.clock = ClockHandle(clock.clone());
    options.submit_backoff_first = Duration::from_millis(100);
    cluster.adapt(options).unwrap();
    fake.fail_next_submits(100);
    // Only `default`'s attempts count: the gpu queue serves no plain task until
    // `default` is given up.
    let default_attempts = |cluster: &SgeCluster| {
        let report = cluster.adapt_report().unwrap();
        report
            .decisions
            .iter()
            .filter(|d| d.label == "default" && matches!(d.action, Action::Submit(_)))
            .count()
    };
    let _run = submit_run(&cluster, false);

    wait_until("a failed submission", || fake.failed_submissions() >= 1);
    rounds(&cluster, 1);
    assert_eq!(default_attempts(&cluster), 1);
    for (failures, pause_ms) in [(1, 100), (2, 200), (3, 400), (4, 800)] {
        // Just before the pause is over: rounds make no attempt.
        clock.advance(Duration::from_millis(pause_ms - 1));
        rounds(&cluster, 3);
        assert_eq!(
            default_attempts(&cluster),
            failures,
            "an attempt {} ms into a {pause_ms} ms pause",
            pause_ms - 1
        );
        // Once it is over: exactly one.
        clock.advance(Duration::from_millis(1));
        rounds(&cluster, 3);
        assert_eq!(
            default_attempts(&cluster),
            failures + 1,
            "after {pause_ms} ms"
        );
    }

    let reason = wait_given_up(&cluster, DEADLINE);
    assert!(reason.contains("5 submissions in a row failed"), "{reason}");
    assert!(reason.contains("failure injected"), "{reason}");
    assert!(fake.failed_submissions() >= 5);
    assert_eq!(fake.submissions(), 2, "only the queue checks succeeded");

    let report = cluster.adapt_report().unwrap();
    let failed = report
        .decisions
        .iter()
        .filter(|d| d.error.is_some() && d.label == "default");
    assert_eq!(failed.clone().count(), 5, "{:?}", report.decisions);
    for d in failed {
        assert!(matches!(d.action, Action::Submit(_)), "{d:?}");
        assert!(d.jobs.is_empty(), "{d:?}");
    }
    // Given up: no more attempts for `default`, however long one waits.
    clock.advance(Duration::from_secs(3600));
    rounds(&cluster, 3);
    assert_eq!(default_attempts(&cluster), 5, "{:?}", report.decisions);

    cluster.close().unwrap();
}

/// A run waiting for the only queue that can serve it fails once that queue is
/// given up (the scheduler is told), instead of waiting forever.
#[test]
fn a_run_waiting_for_a_given_up_queue_fails() {
    let dir = TempDir::new("sge-adaptive-fake", "runfails");
    let fake = Arc::new(FakeBatchSystem::new());
    let only_default = QueueSpecs::new(QueueSpec::new("q_1day")).unwrap();
    let cluster = start_on(&dir, only_default, fake.clone());
    let mut options = adapt_options();
    options.per_queue.clear();
    options.max_submit_failures = 1;
    cluster.adapt(options).unwrap();
    fake.fail_next_submits(100);
    let mut run = submit_run(&cluster, false);

    wait_given_up(&cluster, DEADLINE);
    match wait_result(&mut run) {
        Err(RunError::NoWorker(why)) => assert!(why.contains("no cluster queue"), "{why}"),
        other => panic!("expected the run to fail with NoWorker, got {other:?}"),
    }

    cluster.close().unwrap();
}

/// Same with a gpu queue besides: once `default` is given up, its plain tasks go
/// to the gpu queue (the only queue left that can serve them); when that queue's
/// submissions fail too, it is given up as well and the run fails, never hangs.
#[test]
fn a_run_waiting_for_a_given_up_queue_fails_with_a_gpu_queue_besides() {
    let dir = TempDir::new("sge-adaptive-fake", "runhangs");
    let (cluster, fake) = start(&dir);
    let mut options = adapt_options();
    options.max_submit_failures = 1;
    cluster.adapt(options).unwrap();
    fake.fail_next_submits(100);
    let mut run = submit_run(&cluster, false);

    wait_given_up(&cluster, DEADLINE);
    let result = wait_result(&mut run);
    assert!(result.is_err(), "{result:?}");

    cluster.close().unwrap();
}

/// Every decision in the adapt report has a reason and names an existing queue,
/// and its jobs are that queue's.
#[test]
fn every_decision_has_a_reason_and_an_existing_label() {
    let dir = TempDir::new("sge-adaptive-fake", "report");
    let (cluster, fake) = start(&dir);
    // gpu kept at its minimum of 1: a decision of another kind and queue.
    cluster.adapt(adapt_options().queue("gpu", 1, 1)).unwrap();
    let _run = submit_run(&cluster, true);

    wait_until("default and gpu jobs", || {
        active(&fake, "default") == 4 && active(&fake, "gpu") == 1
    });
    wait_until("every call recorded", || {
        let report = cluster.adapt_report().unwrap();
        let jobs: usize = report.decisions.iter().map(|d| d.jobs.len()).sum();
        jobs == 5 && report.decisions.iter().all(|d| d.done)
    });
    let labels: Vec<String> = cluster.status().unwrap().queues.into_keys().collect();
    let report = cluster.adapt_report().unwrap();
    assert!(report.decisions.iter().any(|d| d.label == "gpu"));
    assert!(report.decisions.iter().any(|d| d.label == "default"));
    for d in &report.decisions {
        assert!(!d.reason.trim().is_empty(), "{d:?}");
        assert!(labels.contains(&d.label), "{d:?}: unknown label");
        assert!(d.error.is_none(), "{d:?}");
        assert!(d.at_s >= 0.0, "{d:?}");
        for id in &d.jobs {
            let job = fake.job(id).unwrap_or_else(|| panic!("job {id} of {d:?}"));
            assert_eq!(job.label, d.label, "{d:?}");
        }
    }
    let gpu = report.decisions.iter().find(|d| d.label == "gpu").unwrap();
    assert!(gpu.reason.contains("minimum"), "{gpu:?}");
    let dflt = report.decisions.iter().find(|d| d.label == "default");
    assert!(dflt.unwrap().reason.contains("ready task"), "{dflt:?}");

    cluster.close().unwrap();
}
