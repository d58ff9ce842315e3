//! Worker mode of the application's own binary.
//!
//! `main` calls [`run_if_worker`] first. Started by the runtime (or by a batch
//! system) with `GRIDPIPE_WORKER_CONNECT` set, or by hand on any host with
//! `--scheduler ADDR --secret-file FILE [--resources gpu=1] [--name NAME]` as its
//! first arguments (see [`super::worker_args`]), the process becomes a worker and
//! never returns into the application's code; otherwise the call returns at once. Every estimator type linked into the binary is known to its workers.
//!
//! Environment of a worker: `GRIDPIPE_WORKER_CONNECT` (scheduler address),
//! `GRIDPIPE_SECRET_FILE` (a mode-0600 file) or `GRIDPIPE_SECRET`, and optionally
//! `GRIDPIPE_WORKER_NAME`, `GRIDPIPE_WORKER_RESOURCES` (`gpu=1,io_big=1`),
//! `GRIDPIPE_WORKER_QUEUE` (or Grid Engine's `QUEUE`), `GRIDPIPE_WORKER_JOB` (or `JOB_ID`),
//! `GRIDPIPE_WORKER_LABEL` (the queue spec's label), `GRIDPIPE_WORKER_MEMORY`
//! (bytes it may use for a fit; default its host's) and
//! `GRIDPIPE_HEARTBEAT_TIMEOUT_MS` (default 10000).

use super::peer_fit::{bind_for_peers, PeerListener, Peers};
use super::protocol::{outcome_to_wire, unpack, FromWorker, ToWorker};
use super::sending::send_results;
use super::worker_args::{parse_worker_args, WorkerArgs};
use crate::actors::messages::{ChainInput, TaskEnvelope, TaskKind, TaskPayload, TaskResult};
use crate::actors::worker::execute;
use crate::batch::Batch;
use crate::resources::Resources;
use crate::wire::auth::{build_identity, Secret};
use crate::wire::handshake::{worker_side, Channel, WorkerIdentity};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Set to the scheduler's address to start a process in worker mode.
pub const CONNECT_ENV: &str = "GRIDPIPE_WORKER_CONNECT";

/// Becomes a worker when started as one (see the module docs); returns otherwise.
/// Call it first in `main`, before logging set-up, a dashboard or binding a port;
/// `main` may be plain or async (`#[tokio::main]`, `#[actix_web::main]`): the worker
/// runs its own event loop on a thread of its own.
pub fn run_if_worker() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = match parse_worker_args(&args) {
        Some(Ok(a)) => Some(a),
        Some(Err(e)) => {
            eprintln!("gridpipe worker: {e}");
            std::process::exit(2);
        }
        None => std::env::var(CONNECT_ENV).ok().map(|scheduler| WorkerArgs {
            scheduler,
            secret_file: None,
            resources: None,
            name: None,
        }),
    };
    let Some(settings) = settings else {
        return;
    };
    let code = match worker_main(settings) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("gridpipe worker: {e}");
            1
        }
    };
    std::process::exit(code);
}

/// Parses `gpu=1,io_big=1`.
pub fn parse_resources(text: &str) -> Result<Resources, String> {
    let mut r = Resources::none();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("resource {part:?} is not name=amount"))?;
        let v: u32 = v
            .trim()
            .parse()
            .map_err(|_| format!("resource {part:?}: amount is not a whole number"))?;
        r = r.with(k.trim(), v);
    }
    Ok(r)
}

fn identity() -> Result<WorkerIdentity, String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Ok(WorkerIdentity {
        name: var("GRIDPIPE_WORKER_NAME")
            .unwrap_or_else(|| format!("worker-{}", std::process::id())),
        resources: parse_resources(&var("GRIDPIPE_WORKER_RESOURCES").unwrap_or_default())?,
        queue: var("GRIDPIPE_WORKER_QUEUE").or_else(|| var("QUEUE")),
        job: var("GRIDPIPE_WORKER_JOB").or_else(|| var("JOB_ID")),
        label: var("GRIDPIPE_WORKER_LABEL"),
        memory: match var("GRIDPIPE_WORKER_MEMORY") {
            Some(v) => {
                Some(v.parse().map_err(|_| {
                    format!("GRIDPIPE_WORKER_MEMORY={v:?} is not a number of bytes")
                })?)
            }
            None => host_memory(),
        },
        peer: None,
    })
}

/// The host's memory in bytes (`MemTotal` of `/proc/meminfo`), when readable.
pub(crate) fn host_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn worker_main(settings: WorkerArgs) -> Result<(), String> {
    let secret = match &settings.secret_file {
        Some(path) => Secret::from_file(path)?,
        None => Secret::from_env()?,
    };
    let mut me = identity()?;
    if let Some(resources) = settings.resources {
        me.resources = resources;
    }
    if let Some(name) = settings.name {
        me.name = name;
    }
    let addr = settings.scheduler;
    let timeout = std::env::var("GRIDPIPE_HEARTBEAT_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis);
    // The worker's own event loop runs on a thread of its own: `main` may already
    // be inside an async runtime (`#[tokio::main]`, `#[actix_web::main]`), where
    // starting another on the same thread is not allowed.
    std::thread::Builder::new()
        .name("gridpipe-worker".into())
        .spawn(move || serve_worker(addr, secret, me, timeout))
        .map_err(|e| e.to_string())?
        .join()
        .map_err(|_| "the worker thread panicked".to_string())?
}

/// Serves as worker `me` of the scheduler at `addr` on the calling thread (its
/// own event loop; estimators on a thread of their own) until the scheduler
/// ends it or falls silent for `timeout`. What a worker process runs; called
/// directly, it makes a worker inside another program (e.g. a simulated grid
/// job). The thread must not be inside an async runtime.
pub fn serve_worker(
    addr: String,
    secret: Secret,
    me: WorkerIdentity,
    timeout: Duration,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(serve(addr, secret, me, timeout))
}

/// Connects and passes the handshake. A scheduler that closes the connection
/// before answering (it has as many handshakes in progress as it takes: many
/// jobs started at once) or takes too long is tried again, after a pause that
/// grows from 50 ms to 1 s, for up to a minute; a refusal (wrong secret, build or
/// version) is final.
async fn admitted(
    addr: &str,
    secret: &Secret,
    me: &mut WorkerIdentity,
    listener: &mut Option<PeerListener>,
    timeout: Duration,
) -> Result<(tokio::net::TcpStream, Channel), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pause = Duration::from_millis(50);
    loop {
        let mut stream = connect(addr).await?;
        if listener.is_none() {
            // Peers reach it where it reaches the scheduler; it says where.
            *listener = bind_for_peers(&stream).await;
            me.peer = listener.as_ref().map(|l| l.addr.clone());
        }
        let peer = stream.peer_addr().map_err(|e| e.to_string())?.ip();
        let handshake = worker_side(&mut stream, peer, secret, build_identity(), me.clone());
        let why = match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok((_, channel))) => return Ok((stream, channel)),
            Ok(Err(e @ crate::wire::WireError::Refused(_))) => return Err(e.to_string()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the scheduler did not finish the handshake".to_string(),
        };
        if Instant::now() + pause > deadline {
            return Err(format!("no handshake with the scheduler at {addr}: {why}"));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

async fn connect(addr: &str) -> Result<tokio::net::TcpStream, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) if Instant::now() > deadline => {
                return Err(format!("cannot reach the scheduler at {addr}: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn serve(
    addr: String,
    secret: Secret,
    me: WorkerIdentity,
    timeout: Duration,
) -> Result<(), String> {
    let mut me = me;
    let mut listener = None;
    let (stream, channel) = admitted(&addr, &secret, &mut me, &mut listener, timeout).await?;
    let Channel {
        mut outbound,
        mut inbound,
        max_message,
    } = channel;
    let peers = Peers::start(listener, &secret, max_message, outbound.is_sealed());
    let (mut rd, mut wr) = stream.into_split();
    let (task_tx, task_rx) = std::sync::mpsc::channel::<ExecItem>();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<FromWorker>();
    // Estimator work runs on its own thread, never on the connection's event loop.
    let exec_tx = out_tx.clone();
    std::thread::Builder::new()
        .name("gridpipe-executor".into())
        .spawn(move || executor(task_rx, exec_tx, peers))
        .map_err(|e| e.to_string())?;
    let writer = tokio::spawn(async move {
        let mut beat = tokio::time::interval(Duration::from_secs(1));
        loop {
            let msg = tokio::select! {
                m = out_rx.recv() => match m { Some(m) => m, None => break },
                _ = beat.tick() => FromWorker::Heartbeat,
            };
            // Results are encoded on a blocking thread straight into their
            // frames, with heartbeats until the first: a large result is never
            // silence, nor a second copy of itself here. Results that do not
            // fit in one message go in several; one too big for any goes back
            // as `TooLarge`, never as a message the scheduler would refuse.
            let ok = match send_results(&mut outbound, &mut wr, msg, max_message, &mut beat).await {
                Ok(()) => true,
                Err(e) => {
                    eprintln!("gridpipe worker: cannot send a message: {e}");
                    false
                }
            };
            if !ok || wr.flush().await.is_err() {
                break;
            }
        }
    });
    let result = loop {
        // Anything from the scheduler, heartbeats and each frame of a long
        // message included, proves it alive.
        let read = inbound
            .read_msg_with::<_, ToWorker>(&mut rd, max_message, Some(timeout), &mut || {})
            .await;
        let msg = match read {
            Err(crate::wire::WireError::Timeout) => {
                break Err(format!(
                    "no word from the scheduler for {timeout:?}: exiting"
                ))
            }
            // The scheduler closing the connection is the normal end of a worker.
            Err(crate::wire::WireError::Closed) => break Ok(()),
            Err(e) => break Err(format!("scheduler connection lost: {e}")),
            Ok(m) => m,
        };
        match msg {
            ToWorker::Run { stages, tasks } => match unpack(&stages, tasks) {
                Ok(envs) => {
                    if task_tx.send(ExecItem::Tasks(envs)).is_err() {
                        break Err("executor stopped".into());
                    }
                }
                Err(e) => break Err(format!("bad task message: {e}")),
            },
            ToWorker::Heartbeat => {}
            ToWorker::Shutdown => break Ok(()),
            ToWorker::Release(parts) => {
                if task_tx.send(ExecItem::Release(parts)).is_err() {
                    break Err("executor stopped".into());
                }
            }
            ToWorker::Discard(parts) => {
                if task_tx.send(ExecItem::Discard(parts)).is_err() {
                    break Err("executor stopped".into());
                }
            }
            ToWorker::DropInputs(which) => {
                if task_tx.send(ExecItem::DropInputs(which)).is_err() {
                    break Err("executor stopped".into());
                }
            }
        }
    };
    drop(task_tx);
    writer.abort();
    result
}

/// What the executor thread is given, in order.
enum ExecItem {
    /// Tasks to run.
    Tasks(Vec<TaskEnvelope>),
    /// Held partitions to send back.
    Release(Vec<(u32, u32)>),
    /// Held partitions to drop.
    Discard(Vec<(u32, u32)>),
    /// Fit inputs kept for peers to drop: of a run, or of one of its stages.
    DropInputs(Vec<(u32, Option<u16>)>),
}

/// Partitions this worker keeps between stages, by (run, partition).
type Held = super::peer::HeldPartitions;

/// Gives a task its held input; `false` when the worker does not have it.
fn resolve_held(env: &mut TaskEnvelope, held: &Held) -> bool {
    let (TaskKind::Chain { partition, .. }, TaskPayload::Chain { input, .. }) =
        (env.task, &mut env.payload)
    else {
        return true;
    };
    if let ChainInput::Held = input {
        match held.take(&(env.run, partition)) {
            Some(b) => *input = ChainInput::Here(b),
            None => return false,
        }
    }
    true
}

/// Keeps a chain's output here when the scheduler asked for it; only a summary
/// (failures, checkpoint counts, the fit contribution) goes back.
fn keep_output(
    o: &mut crate::actors::messages::TaskOutcome,
    (hold, min_bytes): (bool, u64),
    held: &Held,
) {
    if let (true, TaskKind::Chain { partition, .. }, TaskResult::Chain(c)) =
        (hold, o.task, &mut o.result)
    {
        if c.batch.array_bytes() < min_bytes {
            return;
        }
        let b = std::mem::replace(&mut c.batch, Arc::new(Batch::empty()));
        held.put((o.run, partition), b);
        c.held = true;
    }
}

fn executor(
    items: std::sync::mpsc::Receiver<ExecItem>,
    out: tokio::sync::mpsc::UnboundedSender<FromWorker>,
    peers: Peers,
) {
    let held = peers.stores.held.clone();
    for item in items {
        let batch = match item {
            ExecItem::Tasks(batch) => batch,
            ExecItem::Release(parts) => {
                let back = parts
                    .into_iter()
                    .map(|(run, p)| (run, p, held.take(&(run, p))))
                    .collect();
                if out.send(FromWorker::Released(back)).is_err() {
                    return;
                }
                continue;
            }
            ExecItem::Discard(parts) => {
                for key in parts {
                    held.take(&key);
                }
                continue;
            }
            ExecItem::DropInputs(which) => {
                for (run, stage) in which {
                    peers.stores.rows.drop_run(run, stage);
                }
                continue;
            }
        };
        let total = batch.len();
        let mut done = Vec::new();
        let mut last_flush = Instant::now();
        for (i, mut env) in batch.into_iter().enumerate() {
            if !resolve_held(&mut env, &held) {
                // Should never happen; the scheduler rebuilds what a lost worker held.
                eprintln!(
                    "gridpipe worker: a partition this worker should hold is missing; exiting"
                );
                std::process::exit(3);
            }
            let hold = match env.payload {
                TaskPayload::Chain {
                    hold,
                    hold_min_bytes,
                    ..
                } => (hold, hold_min_bytes),
                TaskPayload::Fit { .. } => (false, 0),
            };
            let keep_rows = matches!(
                env.payload,
                TaskPayload::Chain {
                    keep_fit_input: true,
                    ..
                }
            );
            let fetched = peers
                .fetch_partition(&mut env)
                .and_then(|()| peers.fetch_fit_inputs(&mut env));
            let mut o = match fetched {
                Ok(false) => execute(env),
                Ok(true) => {
                    // Their holders may let the rows go while the fit runs.
                    if let TaskKind::Fit { fit } = env.task {
                        let _ = out.send(FromWorker::InputsFetched(env.run, fit));
                    }
                    execute(env)
                }
                Err(lost) => super::peer_fit::inputs_lost(env, lost),
            };
            keep_output(&mut o, hold, &held);
            // Rows stay only beside an output that stayed.
            if keep_rows && matches!(&o.result, TaskResult::Chain(c) if c.held) {
                peers.keep_fit_input(&mut o);
            }
            done.push(outcome_to_wire(o));
            if i + 1 == total
                || done.len() >= 512
                || last_flush.elapsed() >= Duration::from_millis(1)
            {
                if out
                    .send(FromWorker::Done(std::mem::take(&mut done)))
                    .is_err()
                {
                    return;
                }
                last_flush = Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain task on `partition` of run 1 through an empty stage, its output
    /// kept on the worker.
    fn held_task(partition: u32) -> TaskEnvelope {
        TaskEnvelope::test_chain(partition, Batch::empty(), true)
    }

    /// Runs the executor over `items`; every message it sent.
    fn run_executor(items: Vec<ExecItem>) -> Vec<FromWorker> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel();
        for item in items {
            tx.send(item).unwrap();
        }
        drop(tx);
        executor(rx, out_tx, Peers::none());
        let mut out = Vec::new();
        while let Ok(m) = out_rx.try_recv() {
            out.push(m);
        }
        out
    }

    fn released(out: &[FromWorker]) -> Vec<(u32, u32, bool)> {
        out.iter()
            .filter_map(|m| match m {
                FromWorker::Released(parts) => Some(parts),
                _ => None,
            })
            .flatten()
            .map(|(r, p, data)| (*r, *p, data.is_some()))
            .collect()
    }

    #[test]
    fn held_partitions_are_released_on_request_and_dropped_when_discarded() {
        let out = run_executor(vec![
            ExecItem::Tasks(vec![held_task(3), held_task(4)]),
            ExecItem::Release(vec![(1, 3), (1, 5)]),
        ]);
        assert_eq!(released(&out), vec![(1, 3, true), (1, 5, false)]);
        let out = run_executor(vec![
            ExecItem::Tasks(vec![held_task(3), held_task(4)]),
            ExecItem::Discard(vec![(1, 3)]),
            ExecItem::Release(vec![(1, 3), (1, 4)]),
        ]);
        assert_eq!(released(&out), vec![(1, 3, false), (1, 4, true)]);
    }

    #[test]
    fn an_output_kept_for_a_peer_only_when_big_enough_else_it_comes_back() {
        let mut small = held_task(3);
        if let TaskPayload::Chain { hold_min_bytes, .. } = &mut small.payload {
            *hold_min_bytes = 1;
        }
        let out = run_executor(vec![
            ExecItem::Tasks(vec![small]),
            ExecItem::Release(vec![(1, 3)]),
        ]);
        let held: Vec<bool> = out
            .iter()
            .filter_map(|m| match m {
                FromWorker::Done(o) => Some(o),
                _ => None,
            })
            .flatten()
            .map(|o| matches!(&o.result, super::super::protocol::WireResult::Chain(c) if c.held))
            .collect();
        assert_eq!(
            held,
            [false],
            "an empty output is under one byte: it came back"
        );
        assert_eq!(released(&out), vec![(1, 3, false)]);
    }

    #[test]
    fn resources_parse_with_clear_errors() {
        assert_eq!(
            parse_resources("gpu=1, io_big=2").unwrap(),
            Resources::one("gpu", 1).with("io_big", 2)
        );
        assert!(parse_resources("").unwrap().is_empty());
        assert!(parse_resources("gpu").unwrap_err().contains("name=amount"));
        assert!(parse_resources("gpu=x")
            .unwrap_err()
            .contains("whole number"));
    }
}
