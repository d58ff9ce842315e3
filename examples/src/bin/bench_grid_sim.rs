//! A grid of many jobs, simulated: the real scheduler and cluster controller
//! (`SgeCluster`) on a batch system that keeps its jobs in memory and starts, for
//! each job it runs, a worker inside this process that speaks the real protocol
//! over loopback TCP (handshake, secret file, frames). It measures:
//!
//! - the dispatch rate of N one-sample tasks (a no-op step) over those workers,
//!   and the CPU time of the scheduler's thread for them against the whole
//!   process's (the simulated workers share the same cores);
//! - this process's memory per connected worker (both ends of each connection
//!   live here) and per task;
//! - the time of one adaptive round at that many jobs (gather the backlog, the
//!   workers and every queue's jobs, decide, act), `SgeCluster::adapt_now`;
//! - the time to parse one `qstat -xml` listing that many jobs, in Grid
//!   Engine's format.
//!
//! Prints one JSON line.

use clap::Parser;
use gridpipe_estimators::{FunctionTransformer, Identity, Pipeline};
use gridpipe_examples::bench::{peak_rss_mib, process_cpu_s, rss_mib, thread_cpu_s, timed};
use gridpipe_examples::failure::Failure;
use gridpipe_runtime::remote::worker_process::{parse_resources, serve_worker};
use gridpipe_runtime::wire::auth::Secret;
use gridpipe_runtime::wire::handshake::WorkerIdentity;
use gridpipe_runtime::{Bag, Partitioning};
use gridpipe_sge::{
    parse_qstat_xml, AdaptOptions, BatchSystem, ClusterOptions, FakeBatchSystem, JobId, JobStatus,
    QueueSpec, QueueSpecs, SgeCluster, SgeError,
};
use ndarray::ArrayD;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The thread the scheduler actor runs on.
const SCHEDULER_THREAD: &str = "gridpipe-runtime";
/// The threads of the scheduler's ends of the connections (its arbiters).
const CONNECTION_THREADS: &str = "actix-rt|system";

/// Simulated-grid benchmark.
#[derive(Parser, Debug)]
struct Args {
    /// Jobs (each one worker).
    #[arg(long, default_value_t = 1000)]
    jobs: usize,
    /// One-sample tasks to run over them.
    #[arg(long, default_value_t = 1_000_000)]
    tasks: usize,
    /// Adaptive rounds to time.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
}

/// A batch system whose jobs start at once, each as a worker thread of this
/// process connecting to the scheduler the job script names.
#[derive(Default)]
struct SimulatedGrid {
    jobs: FakeBatchSystem,
}

/// What a job script tells its worker, read from its `export` lines.
struct JobEnv {
    connect: String,
    secret_file: PathBuf,
    resources: String,
}

/// The value of `export NAME='...'` in `script` (bash single quotes undone).
fn exported(script: &str, name: &str) -> Option<String> {
    let prefix = format!("export {name}=");
    let line = script
        .lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))?;
    let quoted = line.strip_prefix('\'')?.strip_suffix('\'')?;
    Some(quoted.replace("'\\''", "'"))
}

fn job_env(script: &str) -> Option<JobEnv> {
    Some(JobEnv {
        connect: exported(script, "GRIDPIPE_WORKER_CONNECT")?,
        secret_file: exported(script, "GRIDPIPE_SECRET_FILE")?.into(),
        resources: exported(script, "GRIDPIPE_WORKER_RESOURCES").unwrap_or_default(),
    })
}

impl BatchSystem for SimulatedGrid {
    fn submit(&self, label: &str, script: &str) -> Result<JobId, SgeError> {
        let id = self.jobs.submit(label, script)?;
        let held = script.lines().any(|l| l.trim() == "#$ -h");
        if held {
            return Ok(id);
        }
        self.jobs.start_pending();
        let env = job_env(script).ok_or_else(|| SgeError::Queue {
            queue: label.to_owned(),
            message: "the job script names no scheduler or secret file".into(),
        })?;
        let me = WorkerIdentity {
            name: format!("sim-{label}-{id}"),
            resources: parse_resources(&env.resources).unwrap_or_default(),
            queue: Some(label.to_owned()),
            job: Some(id.to_string()),
            label: Some(label.to_owned()),
            memory: None,
            peer: None,
        };
        std::thread::Builder::new()
            .name(format!("sim-job-{id}"))
            .stack_size(256 << 10)
            .spawn(move || {
                let secret = Secret::from_file(&env.secret_file)?;
                serve_worker(env.connect, secret, me, Duration::from_secs(30))
            })
            .map_err(|e| SgeError::Queue {
                queue: label.to_owned(),
                message: format!("cannot start a simulated job: {e}"),
            })?;
        Ok(id)
    }

    fn status(&self, ids: &[JobId]) -> Result<Vec<JobStatus>, SgeError> {
        self.jobs.status(ids)
    }

    fn delete(&self, ids: &[JobId]) -> Result<(), SgeError> {
        self.jobs.delete(ids)
    }

    fn named(&self, prefix: &str) -> Result<Vec<JobStatus>, SgeError> {
        self.jobs.named(prefix)
    }
}

/// `qstat -xml` of `n` jobs in Grid Engine's format: half running, half pending.
fn qstat_xml(n: usize) -> String {
    let job = |i: usize, running: bool| {
        let (state, code, time, queue) = if running {
            ("running", "r", "JAT_start_time", "q_1day@node")
        } else {
            ("pending", "qw", "JB_submission_time", "")
        };
        format!(
            "    <job_list state=\"{state}\">\n      <JB_job_number>{}</JB_job_number>\n      \
             <JAT_prio>0.50000</JAT_prio>\n      <JB_name>gridpipe-0a1b2c3d-default</JB_name>\n      \
             <JB_owner>user</JB_owner>\n      <state>{code}</state>\n      \
             <{time}>2026-12-03T10:00:00</{time}>\n      <queue_name>{queue}</queue_name>\n      \
             <slots>1</slots>\n    </job_list>\n",
            1000 + i
        )
    };
    let running: String = (0..n / 2).map(|i| job(i, true)).collect();
    let pending: String = (n / 2..n).map(|i| job(i, false)).collect();
    format!(
        "<?xml version='1.0'?>\n<job_info>\n  <queue_info>\n{running}  </queue_info>\n  \
         <job_info>\n{pending}  </job_info>\n</job_info>\n"
    )
}

/// The median of `samples`.
fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(0.0)
}

fn main() -> Result<(), Failure> {
    gridpipe_runtime::run_if_worker();
    let args = Args::parse();

    // Parsing one listing of every job.
    let xml = qstat_xml(args.jobs);
    let parsed = parse_qstat_xml(&xml)?;
    assert_eq!(parsed.len(), args.jobs, "every job listed");
    let qstat_ms = median(
        (0..50)
            .map(|_| timed(|| parse_qstat_xml(&xml)).0 * 1e3)
            .collect(),
    );

    // A cluster whose jobs are workers of this process.
    let work = std::env::temp_dir().join(format!("gridpipe-grid-sim-{}", std::process::id()));
    let options = ClusterOptions::default()
        .work_dir(&work)
        .poll_interval(Duration::from_secs(1))
        .handle_signals(false);
    let mut options = options;
    options.runtime = options.runtime.without_dashboard();
    options.runtime.progress = false;
    let specs = QueueSpecs::new(QueueSpec::new("q_1day"))?;
    let rss_before = rss_mib();
    let cluster = SgeCluster::with_backend(specs, options, Arc::new(SimulatedGrid::default()))?;
    let (connect_s, connected) = timed(|| {
        cluster.scale_queue("default", args.jobs)?;
        cluster.wait_for_workers(args.jobs, Duration::from_secs(600))
    });
    connected?;
    eprintln!(
        "bench_grid_sim: {} workers connected in {connect_s:.1} s",
        args.jobs
    );
    let per_worker_kib = (rss_mib() - rss_before) * 1024.0 / args.jobs as f64;

    // One adaptive round at that many jobs: bounds that keep them all, so each
    // round gathers and decides over every job and worker and changes nothing.
    let mut adapt = AdaptOptions::new(args.jobs, args.jobs);
    adapt.check_queues = false;
    adapt.tick = Duration::from_secs(3600);
    cluster.adapt(adapt)?;
    cluster.adapt_now()?;
    eprintln!("bench_grid_sim: adaptive scaling started");
    let round_ms = median(
        (0..args.rounds)
            .map(|_| timed(|| cluster.adapt_now()).0 * 1e3)
            .collect(),
    );

    // The tasks: one-sample partitions through a no-op step.
    let keys = (0..args.tasks).map(|i| i.to_string()).collect();
    let data = ArrayD::zeros(ndarray::IxDyn(&[args.tasks, 1]));
    let bag = Bag::from_rows(keys, data, Partitioning::NPartitions(args.tasks))?;
    let rss_idle = rss_mib();
    eprintln!("bench_grid_sim: running {} tasks", args.tasks);
    let pipeline = Pipeline::new().add("noop", FunctionTransformer::new(Identity));
    // The scheduler's own thread (its actor and the connections' ends) against
    // the whole process, whose simulated workers share the same two cores.
    let scheduler_side = || thread_cpu_s(SCHEDULER_THREAD) + thread_cpu_s(CONNECTION_THREADS);
    let (scheduler_cpu_before, cpu_before) = (scheduler_side(), process_cpu_s());
    let started = Instant::now();
    let out = pipeline.transform(cluster.runtime(), bag)?;
    let wall_s = started.elapsed().as_secs_f64();
    let scheduler_cpu_s = scheduler_side() - scheduler_cpu_before;
    let cpu_s = process_cpu_s() - cpu_before;
    assert_eq!(out.bag.len(), args.tasks, "every sample came back");
    let used: std::collections::BTreeSet<u32> = out.report.tasks.iter().map(|t| t.worker).collect();
    let peak = peak_rss_mib();
    drop(out);
    let jobs_seen = cluster.status()?.queues["default"].jobs.active();
    cluster.close()?;
    let _ = std::fs::remove_dir_all(&work);

    let line = serde_json::json!({
        "bench": "grid_sim",
        "jobs": args.jobs,
        "jobs_running": jobs_seen,
        "tasks": args.tasks,
        "workers_used": used.len(),
        "connect_s": connect_s,
        "wall_s": wall_s,
        "tasks_per_s": args.tasks as f64 / wall_s,
        "scheduler_cpu_s": scheduler_cpu_s,
        "scheduler_tasks_per_cpu_s": args.tasks as f64 / scheduler_cpu_s.max(1e-9),
        "process_cpu_s": cpu_s,
        "us_per_task": wall_s * 1e6 / args.tasks.max(1) as f64,
        "kib_per_worker": per_worker_kib,
        "bytes_per_task": (peak - rss_idle).max(0.0) * 1048576.0 / args.tasks.max(1) as f64,
        "peak_rss_mib": peak,
        "adapt_round_ms": round_ms,
        "qstat_parse_ms": qstat_ms,
        "qstat_bytes": xml.len(),
    });
    println!("{line}");
    Ok(())
}
