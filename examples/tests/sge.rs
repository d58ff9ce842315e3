//! Tests against the real Grid Engine of `scripts/grid-engine.sh` (which
//! `scripts/test.sh` sets up and starts). They fail, never skip, when it is not
//! running. They share the grid's few slots, so they run one at a time.

use gridpipe_estimators::Pipeline;
use gridpipe_examples::seed::{seed_samples, MyFitTransformer};
use gridpipe_runtime::{
    Bag, Partitioning, Resources, Runtime, RuntimeConfig, Sample, Step, TaskOp,
};
use gridpipe_sge::JobState;
use gridpipe_sge::{ClusterError, ClusterOptions, QueueSpec, QueueSpecs, SgeCluster};
use gridpipe_tests::grid::{accounted_queue, grid, listed_jobs, listed_named};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn work_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gridpipe-sge-test-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn options(test: &str) -> ClusterOptions {
    ClusterOptions::default()
        .work_dir(work_dir(test))
        .job_name(format!("gp-{test}"))
        .worker_program(env!("CARGO_BIN_EXE_pipeline_sge"))
        .handle_signals(false)
}

fn seed_specs() -> QueueSpecs {
    QueueSpecs::new(QueueSpec::new("q_1day").with_io_big(true))
        .unwrap()
        .with(
            "gpu",
            QueueSpec::new("q_gpu")
                .with_resource_spec("gpu=1")
                .with_resource("gpu", 1)
                .with_max_jobs(1),
        )
        .unwrap()
}

fn seed_pipeline(fit: Duration) -> Pipeline {
    gridpipe_examples::sge_cli::seed_gpu_pipeline(fit)
}

/// Runs an example binary; its stdout after checking that it succeeded and
/// printed the seed's ten outputs.
fn run_seed_example(program: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .expect("the example starts");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data: Vec<&str> = stdout.lines().filter(|l| l.starts_with("key=")).collect();
    assert_eq!(data.len(), 10, "{stdout}");
    assert!(
        data.iter()
            .all(|l| l.ends_with("data=[4.0, 6.0, 4.0, 6.0]")),
        "{stdout}"
    );
    stdout
}

fn outputs(samples: &[Sample]) -> Vec<(String, Vec<f64>)> {
    samples
        .iter()
        .map(|s| (s.key.clone(), s.data.iter().copied().collect()))
        .collect()
}

/// The seed's example: the fit (tagged gpu) runs in q_gpu and every transform
/// in q_1day, as the report says and Grid Engine's accounting confirms; no job
/// is left afterwards.
#[test]
fn pipeline_sge_runs_the_fit_in_q_gpu_and_every_transform_in_q_1day() {
    let _grid = grid();
    let dir = work_dir("example");
    let stdout = run_seed_example(
        env!("CARGO_BIN_EXE_pipeline_sge"),
        &[
            "--fit-seconds".as_ref(),
            "0.5".as_ref(),
            "--job-name".as_ref(),
            "gp-example".as_ref(),
            "--work-dir".as_ref(),
            dir.as_os_str(),
        ],
    );
    let tasks: Vec<&str> = stdout.lines().filter(|l| l.starts_with("task ")).collect();
    assert_eq!(tasks.len(), 11, "{stdout}");
    let field = |line: &str, key: &str| -> String {
        line.split(' ')
            .find_map(|f| f.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {line}"))
            .to_string()
    };
    let mut jobs = BTreeSet::new();
    for line in &tasks {
        let (queue, job) = (field(line, "queue"), field(line, "job"));
        // Each line names the Grid Engine queue and the queue spec's label.
        if field(line, "op") == "fit" {
            assert_eq!(
                (queue.as_str(), field(line, "label").as_str()),
                ("q_gpu", "gpu"),
                "{line}"
            );
        } else {
            assert_eq!(
                (queue.as_str(), field(line, "label").as_str()),
                ("q_1day", "default"),
                "{line}"
            );
        }
        assert_eq!(accounted_queue(&job), queue, "qacct disagrees with {line}");
        jobs.insert(job);
    }
    let left: Vec<_> = listed_jobs()
        .into_iter()
        .filter(|(id, name)| jobs.contains(id) || name.starts_with("gp-example-"))
        .collect();
    assert!(left.is_empty(), "jobs left after the example: {left:?}");
}

/// Killing worker jobs with `qdel` in the middle of a run (the gpu job during
/// the fit, and a default job holding partitions) does not change the result:
/// lost tasks run again on replacement jobs; `close` leaves no job listed.
#[test]
fn deleting_running_worker_jobs_mid_run_gives_identical_results() {
    let _grid = grid();
    let bag = || Bag::from_samples(seed_samples(20), Partitioning::NPartitions(8)).unwrap();
    let reference = {
        let config = RuntimeConfig::in_process(1).with_worker(Resources::one("gpu", 1));
        let rt = Runtime::start(config).unwrap();
        let out = seed_pipeline(Duration::ZERO)
            .fit_transform(&rt, bag())
            .unwrap();
        outputs(&out.bag.samples())
    };
    let cluster = SgeCluster::with_options(seed_specs(), options("qdel")).unwrap();
    cluster.scale_queue("gpu", 1).unwrap();
    cluster.scale(2).unwrap();
    cluster
        .wait_for_workers(3, Duration::from_secs(60))
        .unwrap();
    let status = cluster.refresh().unwrap();
    let gpu_job = status.queues["gpu"].jobs.running[0].to_string();
    let default_job = status.queues["default"].jobs.running[0].to_string();
    let mut all_jobs: BTreeSet<String> = status
        .queues
        .values()
        .flat_map(|q| {
            q.jobs
                .running
                .iter()
                .chain(&q.jobs.pending)
                .map(|j| j.to_string())
        })
        .collect();
    let out = std::thread::scope(|s| {
        let run = s.spawn(|| {
            seed_pipeline(Duration::from_secs(4))
                .fit_transform(cluster.runtime(), bag())
                .unwrap()
        });
        std::thread::sleep(Duration::from_millis(1500));
        let qdel = Command::new("qdel")
            .args([&gpu_job, &default_job])
            .output()
            .unwrap();
        assert!(
            qdel.status.success(),
            "{}",
            String::from_utf8_lossy(&qdel.stderr)
        );
        run.join().unwrap()
    });
    assert_eq!(outputs(&out.bag.samples()), reference);
    let fit = out
        .report
        .tasks
        .iter()
        .find(|t| out.report.label(t).op == TaskOp::Fit)
        .unwrap();
    let fit_worker = out.report.worker(fit);
    assert_eq!(fit_worker.queue.as_deref(), Some("q_gpu"));
    assert_ne!(
        fit_worker.job.as_deref(),
        Some(gpu_job.as_str()),
        "the fit ran again on a new gpu job"
    );
    for w in &out.report.workers {
        if let Some(j) = &w.job {
            all_jobs.insert(j.clone());
        }
    }
    for q in cluster.status().unwrap().queues.values() {
        all_jobs.extend(q.jobs.finished.iter().map(|j| j.to_string()));
    }
    cluster.close().unwrap();
    let left: Vec<_> = listed_jobs()
        .into_iter()
        .filter(|(id, _)| all_jobs.contains(id))
        .collect();
    assert!(left.is_empty(), "jobs left after close: {left:?}");
}

/// A queue spec naming a Grid Engine queue that does not exist gives an error
/// that names the queue.
#[test]
fn a_queue_that_does_not_exist_is_an_error_naming_it() {
    let _grid = grid();
    let specs = QueueSpecs::new(QueueSpec::new("q_does_not_exist")).unwrap();
    let cluster = SgeCluster::with_options(specs, options("noqueue")).unwrap();
    let err = cluster.scale(1).unwrap_err().to_string();
    assert!(
        err.contains("queue spec `default`") && err.contains("q_does_not_exist"),
        "{err}"
    );
    assert!(!err.contains("Exiting."), "{err}");
    cluster.close().unwrap();
}

/// A job whose worker dies before connecting is reported with its stderr, and
/// after a few such jobs the queue is given up with that stderr in the error.
#[test]
fn a_job_that_dies_before_its_worker_connects_is_reported_with_its_stderr() {
    let _grid = grid();
    let dir = work_dir("broken-program");
    std::fs::create_dir_all(&dir).unwrap();
    let program = dir.join("broken-worker.sh");
    std::fs::write(
        &program,
        "#!/bin/sh\necho 'boom: the model file is missing' >&2\nexit 3\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let specs = QueueSpecs::new(QueueSpec::new("q_1day")).unwrap();
    let options = options("broken").worker_program(&program);
    let cluster = SgeCluster::with_options(specs, options).unwrap();
    cluster.scale(1).unwrap();
    let err = cluster
        .wait_for_workers(1, Duration::from_secs(90))
        .unwrap_err();
    assert!(matches!(err, ClusterError::QueueGivenUp { .. }), "{err}");
    assert!(
        err.to_string().contains("boom: the model file is missing"),
        "{err}"
    );
    let problems = cluster.status().unwrap().problems;
    assert!(problems.len() >= 3, "{problems:?}");
    cluster.close().unwrap();
}

/// Ctrl-C while a run waits on the grid deletes every job of the program
/// before it exits.
#[test]
fn ctrl_c_deletes_every_job_before_exiting() {
    let _grid = grid();
    let name = format!("gp-sigint-{}", std::process::id());
    let mut child = Command::new(env!("CARGO_BIN_EXE_pipeline_sge"))
        .args(["--fit-seconds", "120", "--job-name", &name, "--work-dir"])
        .arg(work_dir("sigint"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while listed_jobs()
        .iter()
        .filter(|(_, n)| n.starts_with(&name))
        .count()
        < 3
    {
        assert!(
            Instant::now() < deadline,
            "the example's jobs never appeared"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "exit status {status:?}");
    let left: Vec<_> = listed_jobs()
        .into_iter()
        .filter(|(_, n)| n.starts_with(&name))
        .collect();
    assert!(left.is_empty(), "jobs left after Ctrl-C: {left:?}");
}

/// `kill -9` of `pipeline_sge` while its jobs run and wait leaves them behind
/// only until the next cluster starts on the same work root: within 5 s of
/// that start, Grid Engine lists no job of the killed run.
#[test]
fn the_next_start_deletes_the_jobs_of_a_program_killed_with_kill_9() {
    let _grid = grid();
    let name = format!("gp-kill9-{}", std::process::id());
    let prefix = format!("{name}-");
    let root = work_dir("kill9");
    // Four default jobs for q_1day's two slots and one gpu job: some run, some wait.
    let mut child = Command::new(env!("CARGO_BIN_EXE_pipeline_sge"))
        .args([
            "--fit-seconds",
            "120",
            "--default-jobs",
            "4",
            "--job-name",
            &name,
        ])
        .arg("--work-dir")
        .arg(&root)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = listed_named(&prefix);
        let running = jobs.iter().filter(|s| s.state == JobState::Running).count();
        let pending = jobs.iter().filter(|s| s.state == JobState::Pending).count();
        if running >= 3 && pending >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the example's jobs never ran: {jobs:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap(); // SIGKILL: no handler runs, nothing is deleted
    child.wait().unwrap();
    // Nothing deletes them now: the pending jobs would start later and wait
    // up to 30 s each for a scheduler that is gone.
    let orphans = listed_named(&prefix);
    assert!(!orphans.is_empty(), "the killed run left no job to delete");
    let start = Instant::now();
    let cluster =
        SgeCluster::with_options(seed_specs(), options("kill9-next").work_dir(&root)).unwrap();
    loop {
        let left = listed_named(&prefix);
        if left.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "jobs of the killed run still listed {:?} after the next start: {left:?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "the killed run's {} jobs were gone {:.2} s after the next start",
        orphans.len(),
        start.elapsed().as_secs_f64()
    );
    cluster.close().unwrap();
}

/// A step tagged for a resource that no queue spec offers is refused when the
/// graph is submitted, naming the step and the resource, instead of waiting in
/// `qw` forever.
#[test]
fn a_resource_no_queue_offers_is_an_error_at_submit() {
    let cluster = SgeCluster::with_options(seed_specs(), options("tpu")).unwrap();
    let mut pipeline = Pipeline::new().step(
        Step::new("trainer", MyFitTransformer::new(Duration::ZERO))
            .fit_resources(Resources::one("tpu", 1)),
    );
    let bag = Bag::from_samples(seed_samples(4), Partitioning::NPartitions(2)).unwrap();
    let err = pipeline.fit(cluster.runtime(), bag).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("trainer") && text.contains("tpu"), "{text}");
    cluster.close().unwrap();
}

/// The seed's adaptive example on the real grid: the gpu job is submitted only
/// once the fit is ready, the default queue falls to its minimum during the fit,
/// and no job is left afterwards; the results are the seed's.
#[test]
fn pipeline_sge_adaptive_asks_for_the_gpu_only_when_the_fit_is_ready() {
    let _grid = grid();
    let timeline_path =
        std::env::temp_dir().join(format!("gp-adaptive-timeline-{}.svg", std::process::id()));
    let adaptive_dir = work_dir("adaptive");
    let stdout = run_seed_example(
        env!("CARGO_BIN_EXE_pipeline_sge_adaptive"),
        &[
            "--fit-seconds".as_ref(),
            "8".as_ref(),
            "--idle-timeout".as_ref(),
            "2".as_ref(),
            "--job-name".as_ref(),
            "gp-adaptive".as_ref(),
            "--timeline".as_ref(),
            timeline_path.as_os_str(),
            "--work-dir".as_ref(),
            adaptive_dir.as_os_str(),
        ],
    );
    let fit = stdout
        .lines()
        .find(|l| l.starts_with("task ") && l.contains(" op=fit "))
        .expect("a fit task line");
    assert!(fit.contains("queue=q_gpu"), "{fit}");
    let json: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a last line")).expect("JSON last line");
    assert_eq!(json["bench"], "adaptive");
    assert_eq!(json["gpu_submitted_after_fit_ready"], true, "{stdout}");
    assert_eq!(json["default_running_min_during_fit"], 1, "{stdout}");
    assert_eq!(json["jobs_left"], 0, "{stdout}");
    for key in ["up_latency_s", "slot_s_held", "slot_s_busy"] {
        assert!(
            json[key].as_f64().is_some_and(|v| v >= 0.0),
            "{key}: {stdout}"
        );
    }
    // A retirement is timed; when every extra default job was still pending (and
    // so deleted) there is none to time.
    let retired = stdout.lines().any(|l| l.contains("action=Retire"));
    assert_eq!(
        json["down_latency_s"].as_f64().is_some(),
        retired,
        "{stdout}"
    );
    let timeline = std::fs::read_to_string(&timeline_path).unwrap();
    assert!(timeline.contains("cluster jobs per queue") && timeline.contains("gpu running"));
    assert!(timeline.contains("gpu +1"), "the gpu submission is marked");
    let left: Vec<_> = listed_jobs()
        .into_iter()
        .filter(|(_, name)| name.starts_with("gp-adaptive-"))
        .collect();
    assert!(left.is_empty(), "jobs left: {left:?}");
}
