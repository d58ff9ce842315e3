//! The example programs, run as a user runs them.

use std::process::Command;

fn run(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .output()
        .expect("example starts");
    assert!(
        out.status.success(),
        "{bin} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The one line a benchmark prints on stdout, as JSON (notices go to stderr).
fn json_line(out: &str) -> serde_json::Value {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stdout: {out}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn quickstart_prints_an_accuracy_of_at_least_0_9_and_a_summary() {
    let out = run(env!("CARGO_BIN_EXE_quickstart"), &[]);
    let acc: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("accuracy="))
        .expect("accuracy line")
        .parse()
        .unwrap();
    assert!(acc >= 0.9, "accuracy {acc}");
    assert!(out.contains("tasks=") && out.contains("partitions=") && out.contains("workers="));
    assert!(out.contains("wall="));
}

#[test]
fn pipeline_local_reproduces_the_seed_outputs() {
    let out = run(env!("CARGO_BIN_EXE_pipeline_local"), &["--tasks"]);
    let data: Vec<&str> = out.lines().filter(|l| l.starts_with("key=")).collect();
    assert_eq!(data.len(), 10);
    for (i, l) in data.iter().enumerate() {
        // (0 + metadata 1) @ [[1, 2], [3, 4]] = [[4, 6], [4, 6]].
        assert_eq!(*l, format!("key={i} data=[4.0, 6.0, 4.0, 6.0]"));
    }
    let tasks: Vec<&str> = out.lines().filter(|l| l.starts_with("task ")).collect();
    assert_eq!(
        tasks.len(),
        5 + 1 + 5,
        "5 partitions, one fit, 5 partitions"
    );
    assert_eq!(
        tasks
            .iter()
            .filter(|l| l.contains("op=fit") && l.contains("partition=-"))
            .count(),
        1
    );
}

/// Asked for a dashboard and a picture, a benchmark still prints only its JSON
/// line on stdout: the URL and the file name are notices on stderr.
#[test]
fn a_benchmark_with_a_dashboard_and_a_graph_keeps_stdout_to_its_json_line() {
    let dir = std::env::temp_dir().join(format!("gridpipe-bench-notices-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let graph = dir.join("g.dot");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = Command::new(env!("CARGO_BIN_EXE_bench_pipeline"))
        .args(["--samples", "2000", "--dim", "4", "--dashboard", &addr])
        .args(["--graph", graph.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_line(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(v["bench"], "pipeline");
    let notices = String::from_utf8(out.stderr).unwrap();
    assert!(
        notices.contains(&format!("dashboard: http://{addr}/")),
        "{notices}"
    );
    assert!(notices.contains("graph: "), "{notices}");
    assert!(std::fs::read_to_string(&graph)
        .unwrap()
        .starts_with("digraph run {"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_overhead_prints_one_json_line() {
    let v = json_line(&run(
        env!("CARGO_BIN_EXE_bench_overhead"),
        &["--tasks", "2000", "--workers", "2"],
    ));
    assert_eq!(v["bench"], "overhead");
    assert_eq!(v["mode"], "inprocess");
    assert_eq!(v["tasks"], 2000);
    assert!(v["us_per_task"].as_f64().unwrap() > 0.0);
    assert!(v["peak_rss_mib"].as_f64().unwrap() > 0.0);
}

/// `--graph` and `--timeline` write pictures a person can read: the stages, the
/// fits as barriers and the partitions; the tasks per worker over time.
#[test]
fn quickstart_writes_its_graph_and_timeline() {
    let dir = std::env::temp_dir().join(format!("gridpipe-pictures-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (g, t, d) = (dir.join("g.svg"), dir.join("t.svg"), dir.join("g.dot"));
    run(
        env!("CARGO_BIN_EXE_quickstart"),
        &[
            "--dashboard",
            "off",
            "--graph",
            g.to_str().unwrap(),
            "--timeline",
            t.to_str().unwrap(),
        ],
    );
    let graph = std::fs::read_to_string(&g).unwrap();
    assert!(
        graph.starts_with("<svg") && graph.contains("fit scaler"),
        "{graph}"
    );
    assert!(graph.contains("fit classifier") && graph.contains("partition 7"));
    let timeline = std::fs::read_to_string(&t).unwrap();
    assert!(timeline.contains("tasks per worker") && timeline.contains("local-0"));
    assert!(
        timeline.contains("fit classifier"),
        "the legend names the fits"
    );
    run(
        env!("CARGO_BIN_EXE_quickstart"),
        &["--dashboard", "off", "--graph", d.to_str().unwrap()],
    );
    let dot = std::fs::read_to_string(&d).unwrap();
    assert!(
        dot.starts_with("digraph run {") && dot.contains("-> fit0;"),
        "{dot}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A blocking run draws a progress bar (tasks done of total) when stderr is a
/// terminal, and none when it is not.
#[test]
fn the_progress_bar_shows_on_a_terminal_only() {
    let bin = env!("CARGO_BIN_EXE_bench_pipeline");
    let args = "--samples 120000 --dim 16 --partitions 3000";
    let piped = std::process::Command::new(bin)
        .args(args.split(' '))
        .output()
        .unwrap();
    assert!(piped.status.success());
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("tasks ("));
    // `script` gives the program a pseudo-terminal.
    let tty = std::process::Command::new("script")
        .args(["-qec", &format!("{bin} {args}"), "/dev/null"])
        .output()
        .expect("script (util-linux) runs");
    let text = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{text}");
    assert!(
        text.contains("/6001 tasks ("),
        "no progress bar on a terminal: {text}"
    );
}

#[test]
fn bench_policy_prints_one_json_line_with_a_decision_per_queue() {
    let v = json_line(&run(
        env!("CARGO_BIN_EXE_bench_policy"),
        &["--tasks", "10000", "--max-jobs", "200", "--rounds", "50"],
    ));
    assert_eq!(v["bench"], "policy");
    assert_eq!(v["ready_tasks"], 10000);
    // Every queue has demand it cannot cover yet: one submission each.
    assert_eq!(v["decisions_per_round"], 3);
    assert!(v["decide_us_mean"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_pipeline_checks_its_result_against_the_floor() {
    let v = json_line(&run(
        env!("CARGO_BIN_EXE_bench_pipeline"),
        &["--samples", "5000", "--dim", "8", "--workers", "2"],
    ));
    assert_eq!(v["bench"], "pipeline");
    assert_eq!(v["ok"], true);
    assert_eq!(v["samples"], 5000);
    assert_eq!(v["partitions"], 8);
    for k in ["wall_s", "floor_s", "setup_s", "peak_rss_mib"] {
        assert!(v[k].as_f64().unwrap() > 0.0, "{k}");
    }
}

#[test]
fn examples_give_the_same_output_with_worker_processes() {
    let lines = |out: String| -> Vec<String> {
        out.lines()
            .filter(|l| l.starts_with("key=") || l.starts_with("accuracy="))
            .map(str::to_string)
            .collect()
    };
    for bin in [
        env!("CARGO_BIN_EXE_pipeline_local"),
        env!("CARGO_BIN_EXE_quickstart"),
    ] {
        let threads = lines(run(bin, &["--mode", "inprocess"]));
        let procs = lines(run(bin, &["--mode", "processes"]));
        assert!(!threads.is_empty());
        assert_eq!(threads, procs, "{bin}");
    }
    let v = json_line(&run(
        env!("CARGO_BIN_EXE_bench_pipeline"),
        &[
            "--samples",
            "5000",
            "--dim",
            "8",
            "--workers",
            "2",
            "--mode",
            "processes",
        ],
    ));
    assert_eq!(v["mode"], "processes");
    assert_eq!(v["ok"], true);
    let v = json_line(&run(
        env!("CARGO_BIN_EXE_bench_overhead"),
        &["--tasks", "2000", "--workers", "2", "--mode", "processes"],
    ));
    assert_eq!(v["mode"], "processes");
    assert_eq!(v["tasks"], 2000);
}

/// A bad queue-spec file stops `pipeline_sge` before anything is submitted, with
/// a message naming the file, the label and the key (not a debug dump).
#[test]
fn a_bad_queue_spec_file_is_a_clear_error_naming_file_label_and_key() {
    let path = std::env::temp_dir().join(format!("gridpipe-bad-specs-{}.toml", std::process::id()));
    std::fs::write(&path, "[default]\nqueue = \"q_1day\"\nmemroy = \"4G\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline_sge"))
        .args(["--specs", path.to_str().unwrap(), "--dashboard", "off"])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "Error: queue specs file `{}`: queue spec [default]: unknown key `memroy`",
        path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!stderr.contains("UnknownKey {"), "no debug dump: {stderr}");
}
