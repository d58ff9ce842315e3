//! Workers from anywhere: two workers started by hand on a second "host" (a
//! network namespace the test makes, joined by a veth pair) with `--scheduler
//! ADDR --secret-file FILE --resources ..`, run the seed's pipeline for a
//! scheduler that listens on an address of the first, over sealed connections.

use gridpipe_estimators::Pipeline;
use gridpipe_examples::seed::{seed_samples, MyFitTransformer, MyTransformer};
use gridpipe_runtime::actors::scheduler::{ListWorkers, OfferResources};
use gridpipe_runtime::{Bag, Partitioning, Resources, Runtime, RuntimeConfig, Step, WorkerMode};
use gridpipe_tests::netns::NetNs;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const WORKER: &str = env!("CARGO_BIN_EXE_pipeline_local");

fn hand_started_worker(ns: &NetNs, scheduler: &str, secret_file: &str, extra: &[&str]) -> Child {
    ns.command(WORKER)
        .args(["--scheduler", scheduler, "--secret-file", secret_file])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn workers_started_by_hand_on_another_host_run_the_seed_pipeline() {
    let ns = NetNs::create();
    let mut config = RuntimeConfig::external(format!("{}:0", ns.host_ip)).without_dashboard();
    config.mode = WorkerMode::External {
        program: Some(WORKER.into()),
    };
    let rt = Runtime::start(config).unwrap();
    futures::executor::block_on(
        rt.scheduler()
            .send(OfferResources(vec![Resources::none().into()])),
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("gridpipe-hosts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret_file = dir.join("secret");
    let _ = std::fs::remove_file(&secret_file);
    rt.secret().unwrap().write_file(&secret_file).unwrap();
    let (addr, file) = (
        rt.address().unwrap().to_string(),
        secret_file.display().to_string(),
    );
    // A bad option is an error naming it, before any connection.
    let bad = ns
        .command(WORKER)
        .args(["--scheduler", &addr, "--secret", &file])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown worker option \"--secret\""));
    let mut workers = vec![
        hand_started_worker(&ns, &addr, &file, &["--name", "far-0"]),
        hand_started_worker(
            &ns,
            &addr,
            &file,
            &["--name", "far-1", "--resources", "gpu=1"],
        ),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed = futures::executor::block_on(rt.scheduler().send(ListWorkers)).unwrap();
        if listed.len() == 2 {
            break listed;
        }
        assert!(
            Instant::now() < deadline,
            "the workers never joined: {listed:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut names: Vec<String> = listed.iter().map(|w| w.info.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["far-0", "far-1"]);
    assert!(listed
        .iter()
        .any(|w| w.info.name == "far-1" && w.info.resources == Resources::one("gpu", 1)));
    let mut pipeline = Pipeline::new()
        .step(Step::new("my_transformer", MyTransformer).transform_extra("metadata", "metadata"))
        .step(
            Step::new(
                "my_fit_transformer",
                MyFitTransformer::new(Duration::from_millis(10)),
            )
            .fit_resources(Resources::one("gpu", 1)),
        );
    let bag = Bag::from_samples(seed_samples(10), Partitioning::NPartitions(5)).unwrap();
    let out = pipeline.fit_transform(&rt, bag).unwrap();
    let samples = out.bag.samples();
    assert_eq!(samples.len(), 10);
    for s in &samples {
        // (0 + metadata 1) @ [[1, 2], [3, 4]] = [[4, 6], [4, 6]].
        assert_eq!(
            s.data.iter().copied().collect::<Vec<f64>>(),
            [4.0, 6.0, 4.0, 6.0]
        );
    }
    let fit_on: Vec<String> = out
        .report
        .workers_of("my_fit_transformer", gridpipe_runtime::TaskOp::Fit)
        .iter()
        .map(|w| w.name.clone())
        .collect();
    assert_eq!(fit_on, ["far-1"], "the gpu fit ran on the gpu worker");
    drop(rt);
    for w in &mut workers {
        let status = w.wait().unwrap();
        assert!(status.success(), "a worker ends cleanly with its scheduler");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
