//! [`Runtime`]: the embedded actor runtime a pipeline is computed on.
//!
//! A runtime runs its own actix system on its own thread, so it starts from a plain
//! `fn main`, inside a tokio application or inside an existing actix system alike,
//! and two runtimes in one process never share state. Workers are OS threads
//! (`SyncArbiter`), each offering its configured resources.

use crate::actors::messages::{GetBacklog, ShapeBacklog, Submit, TasksDone};
use crate::actors::scheduler::{AddWorker, LiveWorkers, Scheduler};
use crate::actors::worker::WorkerActor;
use crate::bag::{Bag, Partitioning};
use crate::config::{RuntimeConfig, WorkerMode, WorkerSpec};
#[cfg(feature = "view")]
use crate::dashboard::access::Access;
#[cfg(feature = "view")]
use crate::dashboard::server;
use crate::dashboard::{ClusterPanel, DashboardSetting, SharedPanel};
use crate::error::{DataError, RunError};
use crate::remote::launcher::{accept_workers, Admission, LocalWorkers};
use crate::run::{RunOutput, RunRequest};
use crate::sample::Sample;
use crate::wire::auth::{build_identity, Secret};
use crate::wire::traffic::Traffic;
use actix::prelude::*;
use std::sync::Arc;
use std::thread::JoinHandle;

/// A running runtime: a scheduler and its workers on a dedicated actor system.
pub struct Runtime {
    scheduler: Addr<Scheduler>,
    system: System,
    thread: Option<JoinHandle<()>>,
    workers: usize,
    config: RuntimeConfig,
    processes: Option<LocalWorkers>,
    address: Option<String>,
    secret: Option<Secret>,
    #[cfg(feature = "view")]
    dashboard: Option<(String, actix_web::dev::ServerHandle)>,
    panel: SharedPanel,
    /// Bytes between the scheduler and its worker processes.
    traffic: Arc<Traffic>,
    /// The progress bar of awaited runs (when enabled and stderr is a terminal).
    #[cfg(feature = "view")]
    progress: Option<Arc<crate::progress::ProgressWatch>>,
}

impl Runtime {
    /// Starts a runtime with `config`'s worker pool (and its dashboard).
    pub fn start(config: RuntimeConfig) -> Result<Runtime, RunError> {
        let setting = DashboardSetting::from_env().unwrap_or_else(|| config.dashboard.clone());
        let mut rt = Self::start_pool(config)?;
        rt.start_dashboard(&setting)?;
        Ok(rt)
    }

    /// Without the `view` feature there is no dashboard to start.
    #[cfg(not(feature = "view"))]
    fn start_dashboard(&mut self, setting: &DashboardSetting) -> Result<(), RunError> {
        if *setting != DashboardSetting::Off && *setting != DashboardSetting::Default {
            tracing::warn!("built without the `view` feature: no dashboard");
        }
        Ok(())
    }

    #[cfg(feature = "view")]
    fn start_dashboard(&mut self, setting: &DashboardSetting) -> Result<(), RunError> {
        let listener = match server::bind(setting) {
            Ok(Some(l)) => l,
            Ok(None) => return Ok(()),
            Err(e) if *setting == DashboardSetting::Default => {
                tracing::warn!("{e}; no dashboard");
                return Ok(());
            }
            Err(e) => return Err(RunError::Start(e)),
        };
        let access = if self.config.dashboard_token {
            Access::fresh_token()
        } else {
            Access::Open
        };
        let url = listener
            .local_addr()
            .map(|a| access.url(&a))
            .map_err(|e| RunError::Start(e.to_string()))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let (scheduler, panel) = (self.scheduler.clone(), self.panel.clone());
        self.system.arbiter().spawn(async move {
            match server::serve(listener, scheduler, panel, access) {
                Ok(srv) => {
                    let _ = tx.send(Ok(srv.handle()));
                    let _ = srv.await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                }
            }
        });
        let handle = rx
            .recv()
            .map_err(|_| RunError::Start("the dashboard did not start".into()))?
            .map_err(|e| RunError::Start(format!("the dashboard did not start: {e}")))?;
        tracing::info!(%url, "dashboard");
        self.dashboard = Some((url, handle));
        Ok(())
    }

    /// The dashboard's address, when it runs: `http://127.0.0.1:8787/?token=...`
    /// (the token opens it; without it the page and the API answer 403), or
    /// `http://127.0.0.1:8787/` when the token was turned off.
    pub fn dashboard_url(&self) -> Option<&str> {
        #[cfg(feature = "view")]
        return self.dashboard.as_ref().map(|(u, _)| u.as_str());
        #[cfg(not(feature = "view"))]
        None
    }

    /// Shows a cluster's jobs and scaling decisions on the dashboard.
    pub fn set_cluster_panel(&self, panel: Arc<dyn ClusterPanel>) {
        if let Ok(mut p) = self.panel.lock() {
            *p = Some(panel);
        }
    }

    fn start_pool(config: RuntimeConfig) -> Result<Runtime, RunError> {
        match &config.mode {
            WorkerMode::Threads => {
                let threads = config.workers.clone();
                Self::start_threads(config, &threads)
            }
            WorkerMode::Processes { program } => {
                let program = worker_program(program.as_deref())?;
                Self::start_processes(config.clone(), &program)
            }
            WorkerMode::External { program } => {
                // Its own workers (if any) are threads beside the ones that connect.
                let build = build_identity_for(&worker_program(program.as_deref())?)?;
                let threads = config.workers.clone();
                let mut rt = Self::start_threads(config, &threads)?;
                rt.listen(build)?;
                Ok(rt)
            }
        }
    }

    /// Listens on the configured address for worker processes whose executable has
    /// build identity `build`, with a fresh secret; returns the bound address.
    fn listen(&mut self, build: String) -> Result<String, RunError> {
        let secret = Secret::generate();
        let (tx, rx) = std::sync::mpsc::channel();
        let (bind, scheduler) = (self.config.bind.clone(), self.scheduler.clone());
        let admission = Admission {
            secret: secret.clone(),
            build,
            encryption: self.config.wire_encryption,
            max_pending: self.config.max_pending_handshakes,
            timeout: self.config.handshake_timeout,
            heartbeat_timeout: self.config.heartbeat_timeout,
            max_message: self.config.max_message,
            traffic: self.traffic.clone(),
            send_group_bytes: self.config.send_group_bytes,
            connection_threads: self.config.connection_threads,
        };
        // The listener and the handshakes run on an arbiter of their own, never
        // on the scheduler's.
        self.system.arbiter().spawn(async move {
            Arbiter::new().spawn(listen_on(bind, scheduler, admission, tx));
        });
        let addr = rx
            .recv()
            .map_err(|_| RunError::Start("listener did not start".into()))?
            .map_err(RunError::Start)?;
        tracing::info!(%addr, "listening for worker processes");
        self.address = Some(addr.clone());
        self.secret = Some(secret);
        Ok(addr)
    }

    fn start_processes(
        config: RuntimeConfig,
        program: &std::path::Path,
    ) -> Result<Runtime, RunError> {
        // The pool is worker processes: the scheduler starts no thread of its own.
        let specs = config.workers.clone();
        let mut rt = Self::start_threads(config, &[])?;
        rt.workers = specs.len();
        let addr = rt.listen(build_identity_for(program)?)?;
        let secret = rt.secret.clone().expect("listen sets the secret");
        let mut procs = LocalWorkers::spawn(program, &addr, &secret, &specs)
            .map_err(|e| RunError::Start(format!("cannot start {}: {e}", program.display())))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let live = futures::executor::block_on(rt.scheduler.send(LiveWorkers)).unwrap_or(0);
            if live >= specs.len() {
                break;
            }
            let exited = procs.exited();
            if !exited.is_empty() || std::time::Instant::now() > deadline {
                return Err(RunError::Start(format!(
                    "{live} of {} worker processes of {} connected; ended: [{}] (does its main call gridpipe_runtime::run_if_worker() first?)",
                    specs.len(),
                    program.display(),
                    exited.join(", ")
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        tracing::info!(workers = specs.len(), %addr, "worker processes connected");
        procs.supervise(rt.scheduler.clone());
        rt.processes = Some(procs);
        Ok(rt)
    }

    /// The bytes the scheduler sent to and received from worker processes so
    /// far (every frame, on the sockets): what passed through this process.
    pub fn wire_traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// How many worker processes were started to replace ones that died
    /// (processes mode).
    pub fn worker_restarts(&self) -> u32 {
        self.processes.as_ref().map_or(0, |p| p.restarts())
    }

    /// The address worker processes connect to (processes and external modes),
    /// e.g. to start workers elsewhere by hand.
    ///
    /// ```no_run
    /// use gridpipe_runtime::{Runtime, RuntimeConfig};
    /// let rt = Runtime::start(RuntimeConfig::external("0.0.0.0:8786"))?;
    /// println!("workers connect to {}", rt.address().unwrap_or("-"));
    /// # Ok::<(), gridpipe_runtime::RunError>(())
    /// ```
    pub fn address(&self) -> Option<&str> {
        self.address.as_deref()
    }

    /// The secret worker processes must prove they know (processes and external
    /// modes); give it to workers as a mode-0600 file ([`Secret::write_file`]).
    pub fn secret(&self) -> Option<&Secret> {
        self.secret.as_ref()
    }

    /// The runtime's actor system, to start companion actors on (e.g. a cluster's
    /// queue actors) so they live and stop with it.
    pub fn arbiter(&self) -> ArbiterHandle {
        self.system.arbiter().clone()
    }

    /// Process ids of this runtime's worker processes (processes mode).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.processes
            .as_ref()
            .map(|p| p.pids())
            .unwrap_or_default()
    }

    /// Starts the scheduler with one worker thread per entry of `threads`.
    fn start_threads(config: RuntimeConfig, threads: &[WorkerSpec]) -> Result<Runtime, RunError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let cfg = config.clone();
        let thread_count = threads.len();
        let threads = threads.to_vec();
        let thread = std::thread::Builder::new()
            .name("gridpipe-runtime".into())
            .spawn(move || {
                let sys = System::new();
                sys.block_on(async move {
                    let scheduler = Scheduler::new(cfg.clone()).start();
                    for (i, w) in threads.iter().enumerate() {
                        let results: Recipient<TasksDone> = scheduler.clone().recipient();
                        let (interval, max) = (cfg.flush_interval, cfg.flush_max);
                        let addr = SyncArbiter::start(1, move || {
                            WorkerActor::new(i as u32, results.clone(), interval, max)
                        });
                        let _ = scheduler
                            .send(AddWorker {
                                name: w.name.clone(),
                                resources: w.resources.clone(),
                                addr: addr.recipient(),
                                queue: None,
                                job: None,
                                label: None,
                                remote: false,
                                release: None,
                                forget: None,
                                memory: None,
                                peer: None,
                            })
                            .await;
                    }
                    let _ = tx.send((scheduler, System::current()));
                });
                let _ = sys.run();
            })
            .map_err(|e| RunError::Start(e.to_string()))?;
        let (scheduler, system) = rx
            .recv()
            .map_err(|_| RunError::Start("runtime thread ended during start".into()))?;
        tracing::info!(threads = thread_count, "runtime started");
        #[cfg(feature = "view")]
        let progress = (config.progress && std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .then(|| crate::progress::ProgressWatch::new(scheduler.clone()));
        Ok(Runtime {
            #[cfg(feature = "view")]
            progress,
            scheduler,
            system,
            thread: Some(thread),
            workers: thread_count,
            config,
            processes: None,
            address: None,
            secret: None,
            #[cfg(feature = "view")]
            dashboard: None,
            panel: SharedPanel::default(),
            traffic: Arc::default(),
        })
    }

    /// Starts a runtime with `n` in-process workers.
    pub fn in_process(n: usize) -> Result<Runtime, RunError> {
        Self::start(RuntimeConfig::in_process(n))
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Cuts samples into a bag with several partitions per worker of this runtime.
    pub fn bag(&self, samples: Vec<Sample>) -> Result<Bag, DataError> {
        Bag::from_samples(
            samples,
            Partitioning::Auto {
                workers: self.workers,
            },
        )
    }

    /// Computes a graph, waiting for the result. Use [`Runtime::run_async`] from
    /// async code (this call blocks the thread).
    pub fn run(&self, request: RunRequest) -> Result<RunOutput, RunError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.scheduler.do_send(Submit { request, reply: tx });
        #[cfg(feature = "view")]
        let _bar = self.progress.as_ref().map(|p| p.watch());
        rx.blocking_recv().map_err(|_| RunError::Shutdown)?
    }

    /// Computes a graph from async code (any executor: tokio, actix, futures).
    pub async fn run_async(&self, request: RunRequest) -> Result<RunOutput, RunError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.scheduler.do_send(Submit { request, reply: tx });
        #[cfg(feature = "view")]
        let _bar = self.progress.as_ref().map(|p| p.watch());
        rx.await.map_err(|_| RunError::Shutdown)?
    }

    /// The scheduler's exact backlog per resource shape.
    pub async fn backlog(&self) -> Result<Vec<ShapeBacklog>, RunError> {
        self.scheduler
            .send(GetBacklog)
            .await
            .map_err(|_| RunError::Shutdown)
    }

    /// The scheduler's address, for advanced embedding (e.g. a dashboard).
    pub fn scheduler(&self) -> Addr<Scheduler> {
        self.scheduler.clone()
    }

    /// Stops the actor system and waits for its thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        #[cfg(feature = "view")]
        if let Some((_, handle)) = self.dashboard.take() {
            futures::executor::block_on(handle.stop(false));
        }
        self.system.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Workers see their scheduler gone and exit; any left are killed.
        self.processes = None;
    }
}

/// The worker executable: `program`, or this executable.
pub fn worker_program(program: Option<&std::path::Path>) -> Result<std::path::PathBuf, RunError> {
    match program {
        Some(p) => Ok(p.to_path_buf()),
        None => std::env::current_exe().map_err(|e| RunError::Start(e.to_string())),
    }
}

fn build_identity_for(program: &std::path::Path) -> Result<String, RunError> {
    if std::env::current_exe().ok().as_deref() == Some(program) {
        Ok(build_identity().to_string())
    } else {
        crate::wire::auth::build_identity_of(program).map_err(RunError::Start)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds `bind` and accepts workers on it for as long as the runtime lives; the
/// bound address (or why not) goes to `bound`.
async fn listen_on(
    bind: String,
    scheduler: Addr<Scheduler>,
    admission: Admission,
    bound: std::sync::mpsc::Sender<Result<String, String>>,
) {
    match tokio::net::TcpListener::bind(&bind).await {
        Ok(l) => {
            let _ = bound.send(
                l.local_addr()
                    .map(|a| a.to_string())
                    .map_err(|e| e.to_string()),
            );
            accept_workers(l, scheduler, admission).await;
        }
        Err(e) => {
            let _ = bound.send(Err(format!("cannot listen on {bind}: {e}")));
        }
    }
}
