//! Worker processes and their connection to the scheduler: a worker exits when
//! its scheduler goes away or falls silent, the scheduler keeps serving after
//! garbage and strangers, and workers beyond the handshake limit try again.

use gridpipe_estimators::Pipeline;
use gridpipe_runtime::actors::scheduler::LiveWorkers;
use gridpipe_runtime::wire::auth::{build_identity_of, Secret, SECRET_ENV};
use gridpipe_runtime::wire::handshake::scheduler_side;
use gridpipe_runtime::{Bag, Partitioning, Runtime, RuntimeConfig, DATA};
use gridpipe_tests::*;
use std::path::Path;
use std::time::{Duration, Instant};

const WORKER: &str = env!("CARGO_BIN_EXE_gridpipe-test-worker");

fn processes(n: usize) -> Runtime {
    Runtime::start(RuntimeConfig::processes(n).worker_program(WORKER)).unwrap()
}

fn spawn_worker(addr: &str, secret: &Secret, extra: &[(&str, &str)]) -> std::process::Child {
    let mut c = std::process::Command::new(WORKER);
    c.env("GRIDPIPE_WORKER_CONNECT", addr)
        .env(SECRET_ENV, secret.to_hex());
    for (k, v) in extra {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

fn wait_exit(
    child: &mut std::process::Child,
    within: Duration,
) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn a_worker_exits_when_its_scheduler_goes_away_or_falls_silent() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let secret = Secret::generate();
    let build = build_identity_of(Path::new(WORKER)).unwrap();
    // 1. The scheduler closes the connection: the worker ends at once.
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Accepts the next worker and admits it as worker `id`; its connection.
    let admit = |id: u32| {
        rt.block_on(async {
            let (mut s, _) = listener.accept().await.unwrap();
            scheduler_side(
                &mut s,
                &secret,
                &build,
                id,
                false,
                gridpipe_runtime::wire::stream::DEFAULT_MAX_MESSAGE,
            )
            .await
            .unwrap();
            s
        })
    };
    let mut child = spawn_worker(&addr, &secret, &[]);
    drop(admit(0));
    assert!(
        wait_exit(&mut child, Duration::from_secs(5)).is_some(),
        "worker outlived its scheduler"
    );
    // 2. The scheduler stays connected but silent: the heartbeat timeout ends it.
    let mut child = spawn_worker(&addr, &secret, &[("GRIDPIPE_HEARTBEAT_TIMEOUT_MS", "500")]);
    let _held = admit(1);
    let status = wait_exit(&mut child, Duration::from_secs(5)).expect("silent scheduler detected");
    assert!(!status.success(), "a lost scheduler is an error exit");
    // 3. A wrong secret: the worker refuses and ends.
    let mut child = spawn_worker(&addr, &Secret::generate(), &[]);
    rt.block_on(async {
        let (mut s, _) = listener.accept().await.unwrap();
        assert!(scheduler_side(
            &mut s,
            &secret,
            &build,
            2,
            false,
            gridpipe_runtime::wire::stream::DEFAULT_MAX_MESSAGE
        )
        .await
        .is_err());
    });
    assert!(!wait_exit(&mut child, Duration::from_secs(5))
        .expect("ends")
        .success());
}

#[test]
fn the_scheduler_keeps_serving_after_garbage_and_strangers() {
    use std::io::Write;
    let rt = processes(1);
    let addr = rt.address().unwrap().to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    drop(s);
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(&u32::MAX.to_le_bytes()).unwrap();
    drop(s);
    let mut stranger = spawn_worker(&addr, &Secret::generate(), &[]);
    assert!(!wait_exit(&mut stranger, Duration::from_secs(5))
        .expect("refused")
        .success());
    let out = Pipeline::new()
        .add("plus1", AddOffset(1.0))
        .transform(
            &rt,
            Bag::from_samples(samples(10, &[2], 0.0), Partitioning::NPartitions(2)).unwrap(),
        )
        .unwrap();
    assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == 1.0));
    assert_eq!(out.report.workers.len(), 1, "no stranger was admitted");
}

/// More workers start at once than the scheduler takes handshakes at a time
/// (a thousand grid jobs starting together): those it closes unanswered try
/// again after a pause, and every one joins.
#[test]
fn workers_beyond_the_handshake_limit_try_again_and_all_join() {
    let mut config = RuntimeConfig::processes(6).worker_program(WORKER);
    config.max_pending_handshakes = 1;
    let rt = Runtime::start(config).expect("every worker joins");
    let live = futures::executor::block_on(rt.scheduler().send(LiveWorkers)).unwrap();
    assert_eq!(live, 6);
    assert_eq!(rt.worker_restarts(), 0, "none died and was replaced");
    let bag = Bag::from_samples(samples(600, &[2], 0.0), Partitioning::NPartitions(12)).unwrap();
    let out = Pipeline::new()
        .add("plus1", AddOffset(1.0))
        .transform(&rt, bag)
        .unwrap();
    assert_eq!(out.bag.len(), 600);
}
