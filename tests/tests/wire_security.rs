//! The wire against strangers: connections beyond loopback are sealed (a second
//! host in a network namespace, a relay on the path that records and tampers),
//! handshakes are capped and timed out, and a scheduler out of file descriptors
//! backs off instead of spinning.

use gridpipe_estimators::{Affine, FunctionTransformer, Pipeline};
use gridpipe_runtime::actors::scheduler::{LiveWorkers, OfferResources};
use gridpipe_runtime::wire::auth::SECRET_ENV;
use gridpipe_runtime::{Bag, Partitioning, Resources, Runtime, RuntimeConfig, Sample, WorkerMode};
use gridpipe_tests::netns::NetNs;
use ndarray::{ArrayD, IxDyn};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WORKER: &str = env!("CARGO_BIN_EXE_gridpipe-test-worker");
const LISTENER: &str = env!("CARGO_BIN_EXE_gridpipe-test-listener");
/// A value no other byte pattern of the run is likely to share.
const SAMPLE_VALUE: f64 = 4_242.424_242_5;
/// A key that marks the samples of the run.
const KEY_MARK: &str = "face-of-subject";

/// A scheduler listening on `bind` for workers of the test worker binary.
fn scheduler_at(bind: &str) -> Runtime {
    let mut config = RuntimeConfig::external(bind).without_dashboard();
    config.mode = WorkerMode::External {
        program: Some(WORKER.into()),
    };
    let rt = Runtime::start(config).unwrap();
    // Runs wait for workers to come, as on a cluster.
    futures::executor::block_on(
        rt.scheduler()
            .send(OfferResources(vec![Resources::none().into()])),
    )
    .unwrap();
    rt
}

fn live_workers(rt: &Runtime) -> usize {
    futures::executor::block_on(rt.scheduler().send(LiveWorkers)).unwrap()
}

fn wait_for_workers(rt: &Runtime, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while live_workers(rt) < n {
        assert!(Instant::now() < deadline, "{n} workers never connected");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn marked_bag(n: usize) -> Bag {
    let samples = (0..n)
        .map(|i| {
            Sample::new(
                format!("{KEY_MARK}-{i:04}"),
                ArrayD::from_elem(IxDyn(&[8]), SAMPLE_VALUE),
            )
        })
        .collect();
    Bag::from_samples(samples, Partitioning::NPartitions(4)).unwrap()
}

fn doubling() -> Pipeline {
    Pipeline::new().add(
        "affine",
        FunctionTransformer::new(Affine {
            scale: 2.0,
            offset: 1.0,
        }),
    )
}

/// What a relay on the path does to the scheduler's bytes on their way to the
/// worker.
#[derive(Clone, Copy, PartialEq)]
enum Path {
    /// Records them.
    Listen,
    /// Records them, and flips a bit of the first sample value it sees.
    Tamper,
}

/// A relay between one worker and the scheduler that records every byte both
/// ways: someone on the path.
struct Relay {
    addr: SocketAddr,
    heard: Arc<Mutex<Vec<u8>>>,
}

impl Relay {
    fn start(bind_ip: std::net::Ipv4Addr, upstream: &str, path: Path) -> Relay {
        let listener = TcpListener::bind((bind_ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let (h, upstream) = (heard.clone(), upstream.to_string());
        std::thread::spawn(move || {
            let (down, _) = listener.accept().unwrap();
            let up = TcpStream::connect(&upstream).unwrap();
            let (down2, up2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
            let h2 = h.clone();
            std::thread::spawn(move || pump(down2, up2, &h2, Path::Listen));
            pump(up, down, &h, path);
        });
        Relay { addr, heard }
    }

    fn heard(&self) -> Vec<u8> {
        self.heard.lock().unwrap().clone()
    }
}

/// Copies `from` to `to`, recording, and (when tampering) flipping the sign of
/// the first sample value that passes.
fn pump(mut from: TcpStream, mut to: TcpStream, heard: &Mutex<Vec<u8>>, path: Path) {
    let needle = SAMPLE_VALUE.to_le_bytes();
    let mut tampered = false;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &mut buf[..n];
        heard.lock().unwrap().extend_from_slice(chunk);
        if path == Path::Tamper && !tampered {
            if let Some(at) = chunk.windows(8).position(|w| w == needle) {
                chunk[at + 7] ^= 0x80;
                tampered = true;
            } else if chunk.len() > 200 {
                // Sealed traffic hides the value: change a byte of a bulky frame.
                chunk[n / 2] ^= 0x80;
                tampered = true;
            }
        }
        if to.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A worker inside the namespace connecting to `addr`.
fn worker_in(ns: &NetNs, addr: &str, rt: &Runtime) -> Child {
    ns.command(WORKER)
        .env("GRIDPIPE_WORKER_CONNECT", addr)
        .env(SECRET_ENV, rt.secret().unwrap().to_hex())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn beyond_loopback_the_path_sees_no_key_and_no_value() {
    let ns = NetNs::create();
    let rt = scheduler_at(&format!("{}:0", ns.host_ip));
    let relay = Relay::start(ns.host_ip, rt.address().unwrap(), Path::Listen);
    let mut worker = worker_in(&ns, &relay.addr.to_string(), &rt);
    wait_for_workers(&rt, 1);
    let out = doubling().transform(&rt, marked_bag(64)).unwrap();
    let result = out.bag.samples();
    assert_eq!(result.len(), 64);
    assert!(result
        .iter()
        .all(|s| s.data.iter().all(|&v| v == 2.0 * SAMPLE_VALUE + 1.0)));
    let heard = relay.heard();
    assert!(
        heard.len() > 64 * 8 * 8,
        "the relay carried the run ({} bytes)",
        heard.len()
    );
    assert!(
        !contains(&heard, KEY_MARK.as_bytes()),
        "a sample key crossed in clear"
    );
    assert!(
        !contains(&heard, &SAMPLE_VALUE.to_le_bytes()),
        "an input value crossed in clear"
    );
    assert!(
        !contains(&heard, &(2.0 * SAMPLE_VALUE + 1.0).to_le_bytes()),
        "a result crossed in clear"
    );
    drop(rt);
    let _ = worker.kill();
    let _ = worker.wait();
}

#[test]
fn a_frame_changed_on_the_path_closes_the_connection_and_never_changes_a_result() {
    let ns = NetNs::create();
    let rt = scheduler_at(&format!("{}:0", ns.host_ip));
    let relay = Relay::start(ns.host_ip, rt.address().unwrap(), Path::Tamper);
    let mut fooled = worker_in(&ns, &relay.addr.to_string(), &rt);
    wait_for_workers(&rt, 1);
    let mut stderr = fooled.stderr.take().unwrap();
    let fooled_said = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    // Once the worker on the tampered path is gone, an honest one, straight to
    // the scheduler, takes over its tasks.
    let mut honest = ns.command(WORKER);
    honest
        .env("GRIDPIPE_WORKER_CONNECT", rt.address().unwrap())
        .env(SECRET_ENV, rt.secret().unwrap().to_hex())
        .stderr(Stdio::null());
    let follow = std::thread::spawn(move || {
        let status = fooled.wait().unwrap();
        (status, honest.spawn().unwrap())
    });
    let out = doubling().transform(&rt, marked_bag(64)).unwrap();
    let result = out.bag.samples();
    assert_eq!(result.len(), 64, "every sample came back");
    assert!(
        result
            .iter()
            .all(|s| s.data.iter().all(|&v| v == 2.0 * SAMPLE_VALUE + 1.0)),
        "a value changed on the path reached a result"
    );
    let (status, mut honest) = follow.join().unwrap();
    assert!(
        !status.success(),
        "the worker on the tampered path ended with an error"
    );
    let said = fooled_said.join().unwrap();
    assert!(said.contains("failed its authentication"), "{said}");
    drop(rt);
    let _ = honest.kill();
    let _ = honest.wait();
}

#[test]
fn sealed_loopback_connections_give_the_same_results() {
    let plain = Runtime::start(
        RuntimeConfig::processes(2)
            .worker_program(WORKER)
            .without_dashboard(),
    )
    .unwrap();
    let sealed = Runtime::start(
        RuntimeConfig::processes(2)
            .worker_program(WORKER)
            .encrypt_always()
            .without_dashboard(),
    )
    .unwrap();
    let a = doubling().transform(&plain, marked_bag(500)).unwrap();
    let b = doubling().transform(&sealed, marked_bag(500)).unwrap();
    let (a, b) = (a.bag.samples(), b.bag.samples());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.key, y.key);
        assert_eq!(x.data, y.data);
    }
}

/// Opens `n` connections that never say a word.
fn silent_connections(addr: &str, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect()
}

/// Whether the scheduler closed the connection (a read sees its end).
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 16];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn silent_peers_hold_at_most_the_handshake_cap_and_only_until_the_timeout() {
    let mut config = RuntimeConfig::external("127.0.0.1:0")
        .with_worker(Resources::none())
        .without_dashboard();
    config.handshake_timeout = Duration::from_secs(2);
    config.max_pending_handshakes = 16;
    let rt = Runtime::start(config).unwrap();
    let addr = rt.address().unwrap().to_string();
    let mut conns = silent_connections(&addr, 60);
    std::thread::sleep(Duration::from_millis(500));
    let early = conns.iter_mut().map(closed).filter(|c| *c).count();
    assert!(
        early >= 60 - 16,
        "only {early} of 60 silent connections were closed at once; at most 16 may wait"
    );
    // The scheduler serves runs meanwhile.
    let out = doubling().transform(&rt, marked_bag(32)).unwrap();
    assert_eq!(out.bag.samples().len(), 32);
    std::thread::sleep(Duration::from_millis(2500));
    let late = conns.iter_mut().map(closed).filter(|c| *c).count();
    assert_eq!(
        late, 60,
        "the waiting ones were closed at the handshake timeout"
    );
}

/// CPU seconds (user + system) the process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn a_scheduler_out_of_file_descriptors_backs_off_instead_of_spinning() {
    let mut child = std::process::Command::new(LISTENER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().to_string();
    let pid = child.id();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let limit = format!("{}", open + 4);
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .unwrap();
    assert!(status.success(), "prlimit could not lower the limit");
    // More connections than descriptors left: accept fails while they wait.
    let _conns: Vec<TcpStream> = (0..16)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(pid) - before;
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        used < 0.3,
        "the scheduler burnt {used:.2} s of CPU in 2 s while accept failed"
    );
}
