//! [`SgeCluster`]: a gridpipe runtime whose workers are Grid Engine jobs.

use crate::batch_system::grid_engine::SgeCommands;
use crate::batch_system::script::{job_name, job_script, JobTemplate};
use crate::batch_system::BatchSystem;
use crate::cluster_error::ClusterError;
use crate::cluster_options::{advertised_address, host_memory_bytes, host_name, ClusterOptions};
use crate::control::adaptive::{AdaptNow, AdaptOptions, AdaptReport, GetAdaptReport, StartAdapt};
use crate::control::controller::{
    CloseAll, ClusterController, ClusterStatus, Poll, SetTarget, Status, WatchedQueueSpec,
};
use crate::control::interrupt;
use crate::control::panel::ControllerPanel;
use crate::control::queue_actor::{QueueActor, ScaleChange};
use crate::lease::{unix_now, Lease, LeaseKeeper, LEASE_FILE};
use crate::reaper::reap_dead_clusters;
use crate::spec::queue_specs::QueueSpecs;
use crate::work_folder::{make_cluster_dir, work_root_from_env};
use actix::prelude::*;
use gridpipe_runtime::actors::scheduler::{ListWorkers, LiveWorkers, OfferResources};
use gridpipe_runtime::runtime::worker_program;
use gridpipe_runtime::{Runtime, WorkerMode};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A gridpipe runtime whose workers are Grid Engine jobs, one queue actor per
/// queue spec.
///
/// Compute on it with the same calls as in-process, through
/// [`SgeCluster::runtime`]. Scaling is **per queue**: [`SgeCluster::scale_queue`]
/// sets how many jobs (pending + running) one queue spec should have, within
/// its `max_jobs`, and never touches another queue's jobs; [`SgeCluster::scale`]
/// does so for the `default` spec. A job that ends (or is deleted) is replaced
/// to keep the count. Every job is named after the cluster
/// ([`SgeCluster::job_prefix`]). [`SgeCluster::close`] deletes every job it
/// submitted and every job named after it (one whose id was never read, a held
/// check job, a job in `Eqw`), and returns when the batch system lists none of
/// them; dropping the cluster, or Ctrl-C / SIGTERM while it lives, does the
/// same. While it lives, the cluster renews a lease in its work folder; when
/// its program is killed (`kill -9`), the next cluster started on the same
/// work root deletes its jobs.
pub struct SgeCluster {
    runtime: Option<Runtime>,
    watch: Addr<ClusterController>,
    lease: Option<LeaseKeeper>,
    id: String,
    job_prefix: String,
    dir: PathBuf,
    secret_file: PathBuf,
    signal_ticket: Option<u64>,
    closed: bool,
    origin: Instant,
}

impl SgeCluster {
    /// A cluster of `specs` on the real Grid Engine (`qsub`, `qstat`, `qdel`),
    /// with default options.
    pub fn new(specs: QueueSpecs) -> Result<SgeCluster, ClusterError> {
        Self::with_options(specs, ClusterOptions::default())
    }

    /// A cluster of `specs` on the real Grid Engine with `options`.
    pub fn with_options(
        specs: QueueSpecs,
        options: ClusterOptions,
    ) -> Result<SgeCluster, ClusterError> {
        Self::with_backend(specs, options, Arc::new(SgeCommands::new()))
    }

    /// A cluster of `specs` submitting through `backend` (e.g. a
    /// [`crate::FakeBatchSystem`] in tests).
    pub fn with_backend(
        specs: QueueSpecs,
        options: ClusterOptions,
        backend: Arc<dyn BatchSystem>,
    ) -> Result<SgeCluster, ClusterError> {
        if let Some(bytes) = host_memory_bytes() {
            for warning in specs.warnings_above_host(bytes) {
                tracing::warn!("{warning}");
            }
        }
        let config = options.runtime.clone();
        let program = match &config.mode {
            WorkerMode::External { program } => worker_program(program.as_deref())?,
            other => {
                return Err(ClusterError::NotExternal {
                    mode: format!("{other:?}"),
                })
            }
        };
        let root = match &options.work_dir {
            Some(root) => root.clone(),
            None => work_root_from_env()?,
        };
        let (dir, id) = make_cluster_dir(&root)?;
        let log_dir = dir.join("logs");
        // Jobs of earlier clusters whose program died go first.
        let host = host_name();
        reap_dead_clusters(&root, &host, unix_now(), &*backend);
        let job_prefix = format!("{}-{id}-", job_name(&options.job_name));
        let lease = Lease::of_this_process(&host, &job_prefix, options.lease_renewal);
        let lease = LeaseKeeper::start(&dir, lease).map_err(|source| ClusterError::Io {
            path: dir.join(LEASE_FILE),
            source,
        })?;
        let runtime = Runtime::start(config)?;
        let bound = runtime.address().unwrap_or_default().to_string();
        let scheduler_addr = advertised_address(&bound, options.advertise.as_deref(), &host_name());
        let secret_file = dir.join("secret");
        runtime
            .secret()
            .ok_or(ClusterError::Stopped)?
            .write_file(&secret_file)
            .map_err(|source| ClusterError::Io {
                path: secret_file.clone(),
                source,
            })?;
        let arbiter = runtime.arbiter();
        let mut queues = Vec::new();
        for (label, spec) in specs.iter() {
            let template = JobTemplate {
                name: format!("{job_prefix}{label}"),
                program: program.clone(),
                scheduler_addr: scheduler_addr.clone(),
                secret_file: secret_file.clone(),
                log_dir: log_dir.clone(),
                hold: false,
            };
            job_script(label, spec, &template)?;
            let (l, s, b, t) = (
                label.to_string(),
                spec.clone(),
                backend.clone(),
                template.clone(),
            );
            let close_timeout = options.close_timeout;
            let addr = QueueActor::start_in_arbiter(&arbiter, move |_| {
                QueueActor::new(l, s, b, t).with_close_timeout(close_timeout)
            });
            queues.push(WatchedQueueSpec {
                label: label.to_string(),
                spec: spec.clone(),
                addr,
                job_name: job_name(&template.name),
            });
        }
        let (sched, max_fail, poll) = (
            runtime.scheduler(),
            options.max_start_failures,
            options.poll_interval,
        );
        let mut watch =
            ClusterController::new(queues, sched, log_dir, max_fail, poll, backend.clone());
        let origin = Instant::now();
        watch.origin = origin;
        // The scheduler knows what the queues offer before any graph is submitted.
        futures::executor::block_on(runtime.scheduler().send(OfferResources(watch.offers())))
            .map_err(|_| ClusterError::Stopped)?;
        let watch = ClusterController::start_in_arbiter(&arbiter, move |_| watch);
        runtime.set_cluster_panel(Arc::new(ControllerPanel(watch.clone())));
        let signal_ticket = options
            .handle_signals
            .then(|| interrupt::register(watch.clone()));
        tracing::info!(%bound, %scheduler_addr, dir = %dir.display(), %job_prefix, "cluster started");
        Ok(SgeCluster {
            runtime: Some(runtime),
            watch,
            lease: Some(lease),
            id,
            job_prefix,
            dir,
            secret_file,
            signal_ticket,
            closed: false,
            origin,
        })
    }

    /// The runtime to compute on (the same API as in-process).
    pub fn runtime(&self) -> &Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime lives until close")
    }

    /// When the cluster started: the times of [`AdaptReport`] count from here.
    pub fn started_at(&self) -> Instant {
        self.origin
    }

    /// The cluster's id: 8 random hex digits, in its folder's and its jobs' names.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What every job name of the cluster starts with:
    /// `<job_name>-<id>-` (a job of queue spec `label` is `<prefix><label>`).
    pub fn job_prefix(&self) -> &str {
        &self.job_prefix
    }

    /// The cluster's own work folder, `<root>/cluster-<id>` (mode 0700: secret
    /// file and `logs/`).
    pub fn work_dir(&self) -> &Path {
        &self.dir
    }

    /// Sets the `default` queue's jobs (pending + running) to `jobs`.
    pub fn scale(&self, jobs: usize) -> Result<ScaleChange, ClusterError> {
        self.scale_queue("default", jobs)
    }

    /// Sets queue `label`'s jobs (pending + running) to `jobs`, within its
    /// `max_jobs`; other queues keep theirs. A queue that was given up is tried
    /// again.
    pub fn scale_queue(&self, label: &str, jobs: usize) -> Result<ScaleChange, ClusterError> {
        let msg = SetTarget {
            label: label.to_string(),
            jobs,
        };
        futures::executor::block_on(self.watch.send(msg)).map_err(|_| ClusterError::Stopped)?
    }

    /// Reads every job's state from the batch system now.
    pub fn refresh(&self) -> Result<ClusterStatus, ClusterError> {
        futures::executor::block_on(self.watch.send(Poll)).map_err(|_| ClusterError::Stopped)
    }

    /// The queues' job states as last read (every poll interval).
    pub fn status(&self) -> Result<ClusterStatus, ClusterError> {
        futures::executor::block_on(self.watch.send(Status)).map_err(|_| ClusterError::Stopped)
    }

    /// Starts adaptive scaling: from now on the cluster controller grows and shrinks each
    /// queue's jobs from the scheduler's backlog per resource shape, within
    /// `options`' bounds (see [`crate::policy`] for what it decides and what a
    /// bound counts). Each queue is first checked with a held submission that is
    /// deleted again; a queue that fails the check is an error naming it. A later
    /// [`SgeCluster::scale_queue`] stops adaptive scaling.
    pub fn adapt(&self, options: AdaptOptions) -> Result<(), ClusterError> {
        futures::executor::block_on(self.watch.send(StartAdapt(options)))
            .map_err(|_| ClusterError::Stopped)?
    }

    /// Runs an adaptive round now (after the running one, if any), without
    /// waiting for the next trigger, and returns the report once that round's
    /// submissions and deletions are done (e.g. right after submitting a batch
    /// of runs, or in a test that moves a [`crate::ManualClock`] on).
    pub fn adapt_now(&self) -> Result<AdaptReport, ClusterError> {
        futures::executor::block_on(self.watch.send(AdaptNow)).map_err(|_| ClusterError::Stopped)?
    }

    /// The decisions adaptive scaling took, with reasons and timings, and the
    /// jobs per queue over time.
    pub fn adapt_report(&self) -> Result<AdaptReport, ClusterError> {
        futures::executor::block_on(self.watch.send(GetAdaptReport))
            .map_err(|_| ClusterError::Stopped)
    }

    /// Per queue label: the slot-seconds its workers held (connected) and spent
    /// running tasks, so far.
    pub fn usage(&self) -> Result<BTreeMap<String, QueueUsage>, ClusterError> {
        let status = self.status()?;
        let workers = futures::executor::block_on(self.runtime().scheduler().send(ListWorkers))
            .map_err(|_| ClusterError::Stopped)?;
        let now = Instant::now();
        let mut usage = BTreeMap::new();
        for (label, q) in &status.queues {
            let ids: std::collections::BTreeSet<&str> = q
                .jobs
                .pending
                .iter()
                .chain(&q.jobs.running)
                .chain(&q.jobs.failed)
                .chain(&q.jobs.finished)
                .map(|j| j.as_str())
                .collect();
            let mut u = QueueUsage::default();
            for w in workers
                .iter()
                .filter(|w| w.info.job.as_deref().is_some_and(|j| ids.contains(j)))
            {
                u.workers += 1;
                u.held_s += w.left.unwrap_or(now).duration_since(w.joined).as_secs_f64();
                u.busy_s += w.busy_s;
            }
            usage.insert(label.clone(), u);
        }
        Ok(usage)
    }

    /// Waits until at least `workers` workers are connected. Fails early when a
    /// queue is given up, and after `timeout` with the queues' job states.
    pub fn wait_for_workers(&self, workers: usize, timeout: Duration) -> Result<(), ClusterError> {
        let start = Instant::now();
        let scheduler = self.runtime().scheduler();
        loop {
            let live = futures::executor::block_on(scheduler.send(LiveWorkers))
                .map_err(|_| ClusterError::Stopped)?;
            if live >= workers {
                return Ok(());
            }
            let status = self.status()?;
            if let Some((label, q)) = status.queues.iter().find(|(_, q)| q.given_up.is_some()) {
                return Err(ClusterError::QueueGivenUp {
                    label: label.clone(),
                    reason: q.given_up.clone().unwrap_or_default(),
                });
            }
            if start.elapsed() > timeout {
                return Err(ClusterError::WorkersTimeout {
                    wanted: workers,
                    live,
                    waited_s: start.elapsed().as_secs_f64(),
                    jobs: status.describe(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Deletes every job the cluster submitted, waits until the batch system
    /// lists none of them, and stops the runtime.
    pub fn close(mut self) -> Result<(), ClusterError> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> Result<(), ClusterError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let result = futures::executor::block_on(self.watch.send(CloseAll))
            .map_err(|_| ClusterError::Stopped);
        if let Some(t) = self.signal_ticket.take() {
            interrupt::unregister(t);
        }
        let _ = std::fs::remove_file(&self.secret_file);
        if let Some(rt) = self.runtime.take() {
            rt.shutdown();
        }
        let result = result?;
        if result.is_ok() {
            // Every job is gone: nothing is left for a later cluster to clean up.
            if let Some(lease) = self.lease.take() {
                lease.release();
            }
            tracing::info!(dir = %self.dir.display(), "cluster closed; every job deleted");
        }
        result
    }
}

impl Drop for SgeCluster {
    fn drop(&mut self) {
        if let Err(e) = self.close_inner() {
            tracing::error!(error = %e, "closing the cluster on drop");
        }
    }
}

/// What one queue's workers used.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct QueueUsage {
    /// Workers that connected.
    pub workers: usize,
    /// Seconds they were connected (slot-seconds held).
    pub held_s: f64,
    /// Seconds they spent running tasks (slot-seconds busy).
    pub busy_s: f64,
}
