//! The dashboard: its JSON API during and after a run, and its page in a real
//! (headless) Chromium.

use gridpipe_estimators::Pipeline;
use gridpipe_examples::seed::{seed_samples, MyFitTransformer, MyTransformer};
use gridpipe_runtime::{Bag, Partitioning, Runtime, RuntimeConfig, Step};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::free_port;

/// A dashboard as its program printed it: `http://ADDR/?token=T`.
struct Dashboard {
    addr: String,
    query: String,
}

impl Dashboard {
    fn from_url(url: &str) -> Dashboard {
        let rest = url.strip_prefix("http://").expect("an http URL");
        let (addr, path) = rest.split_once('/').expect("a path");
        let query = path.strip_prefix('?').unwrap_or_default().to_string();
        assert!(query.starts_with("token="), "no token in {url}");
        Dashboard {
            addr: addr.to_string(),
            query,
        }
    }

    /// `GET path` with the token: the status code and the body.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        common::request(&self.addr, "GET", &format!("{path}?{}", self.query), "")
    }

    fn status(&self) -> serde_json::Value {
        let (code, body) = self.get("/api/status").expect("the dashboard answers");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
    }
}

/// The dashboard URL a program prints on stderr (`dashboard: URL`).
fn printed_url(stderr: impl std::io::Read + Send + 'static) -> String {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let (false, Some(url)) = (sent, line.strip_prefix("dashboard: ")) {
                let url = url.split_whitespace().next().unwrap_or_default();
                let _ = tx.send(url.to_string());
                sent = true;
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the program printed its dashboard URL")
}

/// `/api/status` shows a run while it runs (a fit in progress, tasks left) and
/// after it (every task done, the run finished), with the workers.
#[test]
fn the_json_api_follows_a_run_while_it_runs_and_after() {
    let addr = format!("127.0.0.1:{}", free_port());
    let rt = Runtime::start(RuntimeConfig::in_process(2).dashboard(&addr)).unwrap();
    let url = rt.dashboard_url().unwrap();
    assert!(url.starts_with(&format!("http://{addr}/?token=")), "{url}");
    let board = Dashboard::from_url(url);
    let mut pipeline = Pipeline::new()
        .step(Step::new("my_transformer", MyTransformer).transform_extra("metadata", "metadata"))
        .step(Step::new(
            "my_fit_transformer",
            MyFitTransformer::new(Duration::from_millis(1500)),
        ));
    let bag = Bag::from_samples(seed_samples(10), Partitioning::NPartitions(5)).unwrap();
    std::thread::scope(|s| {
        let run = s.spawn(|| pipeline.fit_transform(&rt, bag).unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        let during = loop {
            let v = board.status();
            let fit_running = v["runs"].as_array().unwrap().iter().any(|r| {
                r["fits"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f["state"] == "running")
            });
            // The chain tasks' contributions reach the fit before their
            // completions reach the scheduler (batched on the worker): wait for
            // that moment to pass, when the fit is all that runs.
            if fit_running && v["tasks"]["running"] == 1 {
                break v;
            }
            assert!(
                Instant::now() < deadline,
                "never saw the fit running alone: {v}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(during["runs"][0]["state"], "running");
        assert_eq!(during["tasks"]["running"], 1, "{during}");
        assert!(
            during["tasks"]["waiting"].as_u64().unwrap() >= 5,
            "{during}"
        );
        assert!(during["progress"]["done"].as_u64() < during["progress"]["total"].as_u64());
        let busy: Vec<_> = during["workers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["state"] == "busy")
            .collect();
        assert_eq!(busy.len(), 1, "{during}");
        assert_eq!(busy[0]["current"], "my_fit_transformer fit x1", "{during}");
        run.join().unwrap();
    });
    let after = board.status();
    assert_eq!(after["runs"][0]["state"], "finished", "{after}");
    assert_eq!(after["tasks"]["done"], 11, "{after}");
    assert_eq!(after["tasks"]["waiting"], 0);
    assert_eq!(after["progress"]["done"], after["progress"]["total"]);
    assert_eq!(after["workers"].as_array().unwrap().len(), 2);
    assert!(after["jobs"].as_array().unwrap().is_empty());
}

/// A port asked for explicitly that is taken is a clear error at start.
#[test]
fn a_taken_dashboard_port_asked_for_is_an_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = Runtime::start(RuntimeConfig::in_process(1).dashboard(&addr))
        .err()
        .expect("start fails");
    assert!(err.to_string().contains(&addr), "{err}");
}

/// `quickstart --dashboard ADDR --linger S` serves the finished run's page: a
/// headless Chromium renders it, showing every task done; a screenshot is kept
/// in `target/test-artifacts/dashboard.png`.
#[test]
fn chromium_shows_the_finished_run_on_the_page() {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .args(["--dashboard", &addr, "--linger", "30"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let url = printed_url(child.stderr.take().unwrap());
    let board = Dashboard::from_url(&url);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, body)) = board.get("/api/status") {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let runs = v["runs"].as_array().unwrap();
            if runs.len() == 2 && runs.iter().all(|r| r["state"] == "finished") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "quickstart's runs never finished"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let done = board.status()["tasks"]["done"].as_u64().unwrap();
    // Inside cargo's build folder, wherever CARGO_TARGET_DIR puts it.
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let chromium = |extra: &[&str]| {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--virtual-time-budget=4000",
                "--window-size=1280,1000",
            ])
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium runs (scripts/test.sh installs Debian's chromium)")
    };
    let dom = chromium(&["--dump-dom"]);
    let text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        text.contains(&format!("<b id=\"tasks-done\">{done}</b>")),
        "the page does not show {done} tasks done:\n{text}\n{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    assert!(
        text.contains(&format!("{done} of {done} tasks done")),
        "{text}"
    );
    assert!(
        text.contains("scaler+pca+classifier"),
        "the graph rows are missing"
    );
    assert!(text.contains("run-state\">finished"), "{text}");
    assert!(text.contains("local-0"), "the workers are missing");
    assert!(text.contains("class=\"c c-d\""), "no done cell drawn");
    let shot_run = chromium(&[&format!("--screenshot={}", shot.display())]);
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&shot_run.stderr)
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// By default the dashboard takes 127.0.0.1:8787, or the next free port when
/// that one is taken, and serves there.
#[test]
fn a_taken_default_port_moves_the_dashboard_to_the_next_free_one() {
    // Hold 8787 (when something else already holds it, the point stands).
    let _held = std::net::TcpListener::bind("127.0.0.1:8787");
    let rt = Runtime::start(RuntimeConfig::in_process(1)).unwrap();
    let url = rt
        .dashboard_url()
        .expect("a dashboard by default")
        .to_string();
    let board = Dashboard::from_url(&url);
    let port: u16 = board
        .addr
        .trim_start_matches("127.0.0.1:")
        .parse()
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert!((8788..8837).contains(&port), "{url}");
    let v = board.status();
    assert_eq!(v["workers"].as_array().unwrap().len(), 1);
}

/// A dashboard asked for on an address beyond this machine is served with a
/// warning that it has no login; one on loopback gets no such warning.
#[test]
fn a_dashboard_beyond_loopback_is_served_with_a_warning() {
    let quickstart = |addr: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_quickstart"))
            .args(["--dashboard", addr])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        stderr
    };
    let open = quickstart(&format!("0.0.0.0:{}", free_port()));
    assert!(
        open.contains("beyond this machine") && open.contains("token crosses the network"),
        "{open}"
    );
    let local = quickstart(&format!("127.0.0.1:{}", free_port()));
    assert!(!local.contains("beyond this machine"), "{local}");
}

/// Without the token of its URL the dashboard shows nothing: the page and every
/// API answer 403, a wrong token too; the page's cookie opens the API; a
/// runtime may turn the token off explicitly.
#[test]
fn without_its_token_the_dashboard_answers_403() {
    let addr = format!("127.0.0.1:{}", free_port());
    let rt = Runtime::start(RuntimeConfig::in_process(1).dashboard(&addr)).unwrap();
    let board = Dashboard::from_url(rt.dashboard_url().unwrap());
    for path in [
        "/",
        "/api/status",
        "/api/events",
        "/?token=0000",
        "/api/status?token=",
    ] {
        let (code, body) = common::request(&addr, "GET", path, "").expect("it answers");
        assert_eq!(code, 403, "{path}: {body}");
        assert!(
            !body.contains("local-0"),
            "{path} leaked the workers: {body}"
        );
    }
    assert_eq!(board.get("/").unwrap().0, 200);
    assert_eq!(board.get("/api/status").unwrap().0, 200);
    // The cookie the page sets opens the API without the token in the URL.
    let head = common::request_head(&addr, &format!("/?{}", board.query)).unwrap();
    let cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or(l.strip_prefix("Set-Cookie: "))
        })
        .expect("the page sets a cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(head.to_lowercase().contains("httponly"), "{head}");
    let (code, _) = common::request_with_cookie(&addr, "/api/status", &cookie).expect("it answers");
    assert_eq!(code, 200);
    let other = format!("{}=wrong", cookie.split('=').next().unwrap());
    let (code, _) = common::request_with_cookie(&addr, "/api/status", &other).unwrap();
    assert_eq!(code, 403);
    // Turned off explicitly: open to anyone who reaches the port.
    let addr = format!("127.0.0.1:{}", free_port());
    let open = Runtime::start(
        RuntimeConfig::in_process(1)
            .dashboard(&addr)
            .dashboard_without_token(),
    )
    .unwrap();
    assert_eq!(
        open.dashboard_url(),
        Some(format!("http://{addr}/").as_str())
    );
    assert_eq!(
        common::request(&addr, "GET", "/api/status", "").unwrap().0,
        200
    );
}
