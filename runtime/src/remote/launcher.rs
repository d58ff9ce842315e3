//! Accepting worker connections, and starting worker processes on this machine.

use super::proxy::RemoteWorker;
use super::worker_process::CONNECT_ENV;
use crate::actors::scheduler::{Offer, OfferResources, Scheduler};
use crate::config::WorkerSpec;
use crate::wire::auth::{Secret, SECRET_ENV};
use crate::wire::handshake::{scheduler_side, Admitted};
use crate::wire::session::{must_seal, WireEncryption};
use actix::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the listener admits workers: the cluster's secret, the workers' build,
/// which connections are sealed, and the limits on handshakes.
#[derive(Clone, Debug)]
pub struct Admission {
    /// The cluster's secret.
    pub secret: Secret,
    /// The build identity the workers' executable must have.
    pub build: String,
    /// Which connections are sealed.
    pub encryption: WireEncryption,
    /// Most handshakes in progress at once.
    pub max_pending: usize,
    /// The time a handshake may take.
    pub timeout: Duration,
    /// The time an admitted worker may stay silent.
    pub heartbeat_timeout: Duration,
    /// The largest message between the scheduler and a worker.
    pub max_message: u64,
    /// Where the admitted connections count their bytes.
    pub traffic: std::sync::Arc<crate::wire::traffic::Traffic>,
    /// Bytes of data per message of tasks (`RuntimeConfig::send_group_bytes`).
    pub send_group_bytes: u64,
    /// Threads the admitted connections share (`RuntimeConfig::connection_threads`).
    pub connection_threads: usize,
}

/// Accepts worker connections on `listener` forever (on the listener's own
/// arbiter, never the scheduler's): each one is admitted by the handshake (a
/// refused or broken one is logged and closed; the others go on) and gets its
/// own [`RemoteWorker`], on one of `connection_threads` arbiters that the
/// connections share in turn. At most `max_pending` handshakes run
/// at once (further connections are closed unanswered); a failing `accept` (out
/// of file descriptors, say) backs off instead of spinning, logged once per burst.
pub async fn accept_workers(
    listener: tokio::net::TcpListener,
    scheduler: Addr<Scheduler>,
    admission: Admission,
) {
    let counter = Arc::new(AtomicU32::new(0));
    let arbiters = ConnectionArbiters::new(admission.connection_threads);
    let pending = Arc::new(tokio::sync::Semaphore::new(admission.max_pending));
    let mut backoff = AcceptBackoff::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => {
                backoff.succeeded();
                c
            }
            Err(e) => {
                let (pause, log) = backoff.failed();
                if log {
                    tracing::warn!(%e, pause_ms = pause.as_millis() as u64, "accepting worker connections fails; backing off");
                }
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = admission.max_pending, "too many handshakes in progress; connection closed");
            drop(stream);
            continue;
        };
        let (scheduler, admission, counter, arbiters) = (
            scheduler.clone(),
            admission.clone(),
            counter.clone(),
            arbiters.clone(),
        );
        actix_rt::spawn(async move {
            let admitted = admit(stream, peer, &admission, &counter).await;
            drop(permit);
            let Some((admitted, std_stream)) = admitted else {
                return;
            };
            tracing::info!(%peer, worker = %admitted.identity.name, sealed = admitted.channel.outbound.is_sealed(), "worker admitted");
            let arbiter = arbiters.next();
            let heartbeat_timeout = admission.heartbeat_timeout;
            let traffic = admission.traffic.clone();
            let group = admission.send_group_bytes;
            let proxy = move || {
                RemoteWorker::new(admitted, std_stream, scheduler, heartbeat_timeout)
                    .counting_into(traffic)
                    .sending_groups_of(group)
            };
            RemoteWorker::start_in_arbiter(&arbiter, |_| proxy());
        });
    }
}

/// The arbiters (threads) that the scheduler's ends of the worker connections
/// share, handed out in turn; they stop with the runtime's system.
#[derive(Clone)]
struct ConnectionArbiters {
    handles: Arc<Vec<ArbiterHandle>>,
    next: Arc<AtomicU32>,
}

impl ConnectionArbiters {
    fn new(threads: usize) -> Self {
        let handles = (0..threads.max(1))
            .map(|_| Arbiter::new().handle())
            .collect();
        Self {
            handles: Arc::new(handles),
            next: Arc::new(AtomicU32::new(0)),
        }
    }

    /// The arbiter for the next connection.
    fn next(&self) -> ArbiterHandle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        self.handles[i % self.handles.len()].clone()
    }
}

/// Runs the handshake on one connection; the admitted worker and its socket, or
/// `None` (logged) when it was refused, broke or took too long.
async fn admit(
    mut stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    admission: &Admission,
    counter: &AtomicU32,
) -> Option<(Admitted, std::net::TcpStream)> {
    let sealed = match stream.local_addr() {
        Ok(local) => must_seal(admission.encryption, local.ip()),
        Err(_) => true,
    };
    let n = counter.fetch_add(1, Ordering::Relaxed);
    let handshake = scheduler_side(
        &mut stream,
        &admission.secret,
        &admission.build,
        n,
        sealed,
        admission.max_message,
    );
    let admitted = match tokio::time::timeout(admission.timeout, handshake).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "worker connection refused");
            return None;
        }
        Err(_) => {
            tracing::warn!(%peer, "worker handshake timed out");
            return None;
        }
    };
    let _ = stream.set_nodelay(true);
    match stream.into_std() {
        Ok(s) => Some((admitted, s)),
        Err(e) => {
            tracing::warn!(%e, "cannot hand the connection over");
            None
        }
    }
}

/// The accept loop's pause after failures: 10 ms doubling to 1 s, reset by a
/// success; a warning at the first failure of a burst and then once a minute.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    failures: u32,
    last_log: Option<Instant>,
}

impl AcceptBackoff {
    /// The next pause after a failure, and whether to log it.
    pub fn failed(&mut self) -> (Duration, bool) {
        let pause =
            Duration::from_millis(10u64 << self.failures.min(7)).min(Duration::from_secs(1));
        self.failures += 1;
        let log = self
            .last_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
        if log {
            self.last_log = Some(Instant::now());
        }
        (pause, log)
    }

    /// An accept succeeded: the next failure starts a new burst.
    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            self.failures = 0;
            self.last_log = None;
        }
    }
}

/// Worker processes started on this machine, replaced when they die (as a
/// process supervisor would), killed when dropped.
#[derive(Debug)]
pub struct LocalWorkers {
    shared: Arc<Mutex<Supervised>>,
    stop: Arc<AtomicBool>,
    restarts: Arc<AtomicU32>,
    monitor: Option<std::thread::JoinHandle<()>>,
}

/// What the supervisor keeps: how to start a worker, and the workers.
#[derive(Debug)]
struct Supervised {
    program: PathBuf,
    addr: String,
    secret: Secret,
    slots: Vec<Slot>,
}

/// One worker of the pool and its current process.
#[derive(Debug)]
struct Slot {
    spec: WorkerSpec,
    child: Child,
    started: Instant,
    /// How many processes this slot has had.
    generation: u32,
    /// Deaths in a row within [`QUICK_DEATH`] of their start.
    quick_deaths: u32,
    /// Given up after [`MAX_QUICK_DEATHS`] quick deaths in a row.
    given_up: bool,
}

/// A process that dies this soon after its start counts as a failed start.
const QUICK_DEATH: Duration = Duration::from_secs(2);
/// Failed starts in a row after which a slot is not restarted any more.
const MAX_QUICK_DEATHS: u32 = 5;

impl Supervised {
    /// Starts one process for `spec`, connecting to the scheduler. The secret goes
    /// through the environment, never the command line.
    fn spawn(&self, spec: &WorkerSpec, generation: u32) -> std::io::Result<Child> {
        let resources: Vec<String> = spec
            .resources
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let name = if generation == 0 {
            spec.name.clone()
        } else {
            format!("{}.{generation}", spec.name)
        };
        let mut command = Command::new(&self.program);
        command
            .env(CONNECT_ENV, &self.addr)
            .env(SECRET_ENV, self.secret.to_hex())
            .env("GRIDPIPE_WORKER_NAME", name)
            .env("GRIDPIPE_WORKER_RESOURCES", resources.join(","))
            .stdin(Stdio::null());
        if let Some(bytes) = spec.memory {
            command.env("GRIDPIPE_WORKER_MEMORY", bytes.to_string());
        }
        command.spawn()
    }

    /// Replaces the processes that ended; returns how many were replaced.
    fn replace_the_dead(&mut self) -> u32 {
        let mut replaced = 0;
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            if slot.given_up {
                continue;
            }
            let Ok(Some(status)) = slot.child.try_wait() else {
                continue;
            };
            slot.quick_deaths = if slot.started.elapsed() < QUICK_DEATH {
                slot.quick_deaths + 1
            } else {
                0
            };
            if slot.quick_deaths >= MAX_QUICK_DEATHS {
                slot.given_up = true;
                tracing::error!(worker = %slot.spec.name, %status, "worker process keeps dying as it starts: not restarted any more");
                continue;
            }
            let (spec, generation) = (slot.spec.clone(), slot.generation + 1);
            match self.spawn(&spec, generation) {
                Ok(child) => {
                    tracing::warn!(worker = %spec.name, %status, pid = child.id(), "worker process ended: started a new one");
                    let slot = &mut self.slots[i];
                    slot.child = child;
                    slot.started = Instant::now();
                    slot.generation = generation;
                    replaced += 1;
                }
                Err(e) => {
                    tracing::error!(worker = %spec.name, %e, "cannot start a new worker process");
                    self.slots[i].given_up = true;
                }
            }
        }
        replaced
    }
}

impl LocalWorkers {
    /// Starts one process of `program` per spec, connecting to `addr`. The secret
    /// goes through the environment, never the command line. Dead processes are
    /// not replaced until [`LocalWorkers::supervise`].
    pub fn spawn(
        program: &Path,
        addr: &str,
        secret: &Secret,
        specs: &[WorkerSpec],
    ) -> std::io::Result<Self> {
        let mut sup = Supervised {
            program: program.to_path_buf(),
            addr: addr.to_string(),
            secret: secret.clone(),
            slots: Vec::with_capacity(specs.len()),
        };
        for spec in specs {
            let child = sup.spawn(spec, 0)?;
            sup.slots.push(Slot {
                spec: spec.clone(),
                child,
                started: Instant::now(),
                generation: 0,
                quick_deaths: 0,
                given_up: false,
            });
        }
        Ok(Self {
            shared: Arc::new(Mutex::new(sup)),
            stop: Arc::new(AtomicBool::new(false)),
            restarts: Arc::new(AtomicU32::new(0)),
            monitor: None,
        })
    }

    /// From now on, a process that ends is replaced by a new one (checked every
    /// 20 ms); a slot whose processes keep dying as they start is given up. The
    /// scheduler is told what the pool can offer (so a run waits for a replacement
    /// rather than failing for want of a worker), and again when a slot is given up.
    pub fn supervise(&mut self, scheduler: Addr<Scheduler>) {
        if self.monitor.is_some() {
            return;
        }
        let (shared, stop, restarts) = (
            self.shared.clone(),
            self.stop.clone(),
            self.restarts.clone(),
        );
        let offers = |sup: &Supervised| {
            let live = sup.slots.iter().filter(|s| !s.given_up);
            OfferResources(
                live.map(|s| Offer {
                    resources: s.spec.resources.clone(),
                    memory: s.spec.memory.or_else(super::worker_process::host_memory),
                })
                .collect(),
            )
        };
        if let Ok(sup) = shared.lock() {
            scheduler.do_send(offers(&sup));
        }
        self.monitor = std::thread::Builder::new()
            .name("gridpipe-worker-supervisor".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(mut sup) = shared.lock() {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let given_up = sup.slots.iter().filter(|s| s.given_up).count();
                        let n = sup.replace_the_dead();
                        restarts.fetch_add(n, Ordering::Relaxed);
                        if sup.slots.iter().filter(|s| s.given_up).count() != given_up {
                            scheduler.do_send(offers(&sup));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
            .ok();
    }

    /// Process ids of the workers now.
    pub fn pids(&self) -> Vec<u32> {
        self.shared
            .lock()
            .map(|s| s.slots.iter().map(|c| c.child.id()).collect())
            .unwrap_or_default()
    }

    /// How many processes were started to replace ones that ended.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Exit statuses of workers that already ended (for error messages).
    pub fn exited(&mut self) -> Vec<String> {
        let Ok(mut sup) = self.shared.lock() else {
            return Vec::new();
        };
        sup.slots
            .iter_mut()
            .filter_map(|c| {
                c.child
                    .try_wait()
                    .ok()
                    .flatten()
                    .map(|s| format!("pid {}: {s}", c.child.id()))
            })
            .collect()
    }
}

impl Drop for LocalWorkers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(m) = self.monitor.take() {
            let _ = m.join();
        }
        if let Ok(mut sup) = self.shared.lock() {
            for c in &mut sup.slots {
                let _ = c.child.kill();
            }
            for c in &mut sup.slots {
                let _ = c.child.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AcceptBackoff;
    use std::time::Duration;

    #[test]
    fn accept_failures_back_off_to_a_second_and_log_once_per_burst() {
        let mut b = AcceptBackoff::default();
        let first = b.failed();
        assert_eq!(first, (Duration::from_millis(10), true));
        let pauses: Vec<Duration> = (0..10)
            .map(|_| b.failed())
            .map(|(p, log)| {
                assert!(!log, "one warning per burst");
                p
            })
            .collect();
        assert_eq!(pauses[0], Duration::from_millis(20));
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]), "{pauses:?}");
        assert_eq!(
            *pauses.last().unwrap(),
            Duration::from_secs(1),
            "capped at a second"
        );
        b.succeeded();
        assert_eq!(b.failed(), (Duration::from_millis(10), true), "a new burst");
    }
}
