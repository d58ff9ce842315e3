//! [`RuntimeConfig`]: every tunable of a runtime in one place.

pub use crate::dashboard::DashboardSetting;
use crate::resources::Resources;
pub use crate::wire::session::WireEncryption;
use std::time::Duration;

/// One worker of a runtime's pool.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerSpec {
    /// The worker's name in reports.
    pub name: String,
    /// What it offers (e.g. `{gpu: 1}`).
    pub resources: Resources,
    /// The memory a worker process may use, in bytes, against which gathered
    /// fits are checked (`None`: its host's; threads need none).
    pub memory: Option<u64>,
}

/// The tunables of a runtime.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// The runtime's own workers: OS threads of this process
    /// ([`WorkerMode::Threads`] and, beside the workers that connect,
    /// [`WorkerMode::External`]) or local worker processes
    /// ([`WorkerMode::Processes`]).
    pub workers: Vec<WorkerSpec>,
    /// How much work (in estimated seconds) the scheduler keeps queued per worker:
    /// enough that a worker never waits for the scheduler, little enough that a
    /// slow task does not hold back work another worker could do. Default 4 ms.
    pub window_target: Duration,
    /// Fewest tasks handed to a worker ahead (default 2: one running, one queued).
    pub min_window: usize,
    /// Most tasks handed to a worker ahead (default 1024).
    pub max_window: usize,
    /// A worker reports finished tasks at least this often (default 1 ms).
    pub flush_interval: Duration,
    /// ... or whenever this many results are waiting (default 512).
    pub flush_max: usize,
    /// The first guess of a task's duration, before any was measured (default 50 us).
    pub initial_task_estimate: Duration,
    /// Where the workers run: threads of this process, or worker processes.
    pub mode: WorkerMode,
    /// A task whose worker died this many times while running it is quarantined
    /// (its samples fail with the reason; default 3).
    pub max_task_kills: u32,
    /// A run fails once this many workers were lost while they held its tasks or
    /// its data, naming the tasks suspected of killing them (default 50): a run
    /// never makes workers (or grid jobs) die and restart without end.
    pub max_workers_lost: u32,
    /// A worker (or scheduler) silent this long is considered gone (default
    /// 10 s). A long transfer is not silence: every frame of it counts.
    pub heartbeat_timeout: Duration,
    /// The largest message between the scheduler and a worker process: a task's
    /// input, its result, or a fit's inputs (default 16 GiB). Messages stream in
    /// frames of 4 MiB, so no frame limit applies to data; a task whose message
    /// would be larger fails its run, naming the task, before anything is sent.
    pub max_message: u64,
    /// A gathered fit needs this many times its inputs' bytes on its worker
    /// (the inputs received and decoded, and the fit's working memory; default
    /// 3). A fit that no worker or queue that could run it has the memory for
    /// fails its run naming the step, before its inputs are sent; one that some
    /// have it for goes only to those. A worker's memory is its grid job's
    /// request (the queue spec's), else its host's.
    pub fit_memory_factor: f64,
    /// A gather fit's rows stay on the worker processes that made them, and
    /// the fit's worker fetches them from there, never through the
    /// scheduler's process (default true; only where every worker is a
    /// worker process: in-process workers cannot fetch them).
    pub fit_inputs_on_workers: bool,
    /// A worker process keeps a partition for a peer to fetch (its next stage
    /// runs on another worker) only when its arrays have at least this many
    /// bytes (default 64 KiB); a smaller one comes back with its task's
    /// summary and goes out with the next task, which costs less than a
    /// fetch's round trip.
    pub peer_min_bytes: u64,
    /// Tasks for a worker process go out in messages of about this many bytes
    /// of data (default 16 MiB; a bigger task goes alone): each is encoded once
    /// the one before it is written, so the scheduler's process holds one such
    /// message per worker, not a whole batch of inputs.
    pub send_group_bytes: u64,
    /// The address the scheduler listens on for worker processes (default
    /// `127.0.0.1:0`, loopback and any free port; a grid needs an address its exec
    /// hosts reach).
    pub bind: String,
    /// Which worker connections are sealed (encrypted and authenticated) after
    /// the handshake (default: every one that is not on loopback).
    pub wire_encryption: WireEncryption,
    /// Most connections that may wait in their handshake at once (default 64);
    /// further ones are closed unanswered until a place frees up, so
    /// unauthenticated peers cannot hold more than this many buffers.
    pub max_pending_handshakes: usize,
    /// Threads that serve the scheduler's ends of the worker connections (default:
    /// one per core). Connections share them, so a thousand workers cost a few
    /// threads rather than a thousand, and a message to a worker wakes a thread
    /// that is usually awake already.
    pub connection_threads: usize,
    /// A connection that has not finished its handshake in this time is closed
    /// (default 10 s).
    pub handshake_timeout: Duration,
    /// Where the dashboard listens (default: `127.0.0.1:8787`, or the next free
    /// port; `GRIDPIPE_DASHBOARD=off|ADDR` overrides it).
    pub dashboard: DashboardSetting,
    /// The dashboard answers only requests carrying the random token of its URL
    /// ([`crate::Runtime::dashboard_url`]), so other users of a shared host see
    /// nothing (default true).
    pub dashboard_token: bool,
    /// Show a progress bar (tasks done of total, rate, ETA) on stderr while a
    /// run is awaited (blocking or async), when stderr is a terminal (default true).
    pub progress: bool,
}

/// Where a runtime's workers run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerMode {
    /// OS threads of this process (the embedded default).
    Threads,
    /// Worker processes of `program` (default: this executable, which must call
    /// `run_if_worker` first in `main`) on this machine.
    Processes {
        /// The worker executable.
        program: Option<std::path::PathBuf>,
    },
    /// Worker processes of `program` (default: this executable) started
    /// elsewhere, e.g. by a batch system or by hand on other hosts, connect to
    /// [`RuntimeConfig::bind`] with the runtime's secret; the runtime's own
    /// `workers` (none by [`RuntimeConfig::external`]) run as threads beside them.
    External {
        /// The worker executable the connecting workers run.
        program: Option<std::path::PathBuf>,
    },
}

impl RuntimeConfig {
    /// `n` in-process workers offering no special resource.
    pub fn in_process(n: usize) -> Self {
        let mut c = Self {
            workers: Vec::new(),
            window_target: Duration::from_millis(4),
            min_window: 2,
            max_window: 1024,
            flush_interval: Duration::from_millis(1),
            flush_max: 512,
            initial_task_estimate: Duration::from_micros(50),
            mode: WorkerMode::Threads,
            max_task_kills: 3,
            max_workers_lost: 50,
            heartbeat_timeout: Duration::from_secs(10),
            max_message: crate::wire::stream::DEFAULT_MAX_MESSAGE,
            send_group_bytes: 16 << 20,
            fit_memory_factor: 3.0,
            fit_inputs_on_workers: true,
            peer_min_bytes: 64 << 10,
            bind: "127.0.0.1:0".to_string(),
            wire_encryption: WireEncryption::BeyondLoopback,
            max_pending_handshakes: 64,
            connection_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            handshake_timeout: Duration::from_secs(10),
            dashboard: DashboardSetting::Default,
            dashboard_token: true,
            progress: true,
        };
        for _ in 0..n {
            c = c.with_worker(Resources::none());
        }
        c
    }

    /// `n` worker processes of this executable on this machine.
    pub fn processes(n: usize) -> Self {
        let mut c = Self::in_process(n);
        c.mode = WorkerMode::Processes { program: None };
        c
    }

    /// No workers of its own; workers started elsewhere connect to `bind`.
    pub fn external(bind: impl Into<String>) -> Self {
        let mut c = Self::in_process(0);
        c.mode = WorkerMode::External { program: None };
        c.bind = bind.into();
        c
    }

    /// Uses `program` as the worker executable (processes mode).
    pub fn worker_program(mut self, program: impl Into<std::path::PathBuf>) -> Self {
        self.mode = WorkerMode::Processes {
            program: Some(program.into()),
        };
        self
    }

    /// Seals every worker connection, loopback included (by default only
    /// those beyond loopback are sealed).
    pub fn encrypt_always(mut self) -> Self {
        self.wire_encryption = WireEncryption::Always;
        self
    }

    /// Serves the dashboard to anyone who reaches its port, without a token
    /// (only where every user of the host may see the runs).
    pub fn dashboard_without_token(mut self) -> Self {
        self.dashboard_token = false;
        self
    }

    /// Serves the dashboard on exactly `addr` (an error at start when taken).
    pub fn dashboard(mut self, addr: impl Into<String>) -> Self {
        self.dashboard = DashboardSetting::At(addr.into());
        self
    }

    /// No dashboard.
    pub fn without_dashboard(mut self) -> Self {
        self.dashboard = DashboardSetting::Off;
        self
    }

    /// Adds one worker offering `resources`. On a machine without the resource a
    /// pipeline is tagged for (a laptop without a GPU), this runs the same tagged
    /// pipeline unchanged: one worker thread stands for the GPU, so the `{gpu: 1}`
    /// tasks run on it, one at a time, and plain tasks on the others.
    ///
    /// ```
    /// use gridpipe_runtime::{Resources, RuntimeConfig};
    /// let laptop = RuntimeConfig::in_process(2).with_worker(Resources::one("gpu", 1));
    /// assert_eq!(laptop.workers.len(), 3);
    /// ```
    pub fn with_worker(mut self, resources: Resources) -> Self {
        let name = format!("local-{}", self.workers.len());
        self.workers.push(WorkerSpec {
            name,
            resources,
            memory: None,
        });
        self
    }

    /// Every worker process of this configuration may use `bytes` of memory
    /// (default: its host's): a gathered fit that needs more goes elsewhere,
    /// or fails its run before its inputs are sent (see `fit_memory_factor`).
    pub fn worker_memory(mut self, bytes: u64) -> Self {
        for w in &mut self.workers {
            w.memory = Some(bytes);
        }
        self
    }
}

impl Default for RuntimeConfig {
    /// One worker per core.
    fn default() -> Self {
        Self::in_process(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }
}
