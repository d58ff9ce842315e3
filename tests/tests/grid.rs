//! Integrity on the real Grid Engine (`scripts/grid-engine.sh`; these tests fail,
//! never skip, when it does not answer): a task that kills its job is found and
//! quarantined while the lost jobs are replaced, checkpointed outputs come
//! back with their data from the jobs that computed them, kept outputs stay in
//! the jobs until taken and go when dropped, a gather fit's rows go from job to
//! job, a fit bigger than the jobs' memory
//! fails before its inputs are sent, and a job whose id
//! was never read (or that sits in `Eqw`) is still deleted at close.

use gridpipe_estimators::Pipeline;
use gridpipe_runtime::actors::scheduler::ListWorkers;
use gridpipe_runtime::{Bag, Checkpoint, Partitioning, Step, DATA};
use gridpipe_sge::{ClusterOptions, JobState, QueueSpec, QueueSpecs, SgeCluster, SgeCommands};
use gridpipe_tests::grid::{
    self, accounted_queue, close_cluster as close, grid, listed_named, work_dir,
};
use gridpipe_tests::*;
use ndarray::ArrayD;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WORKER: &str = env!("CARGO_BIN_EXE_gridpipe-test-worker");

/// A cluster of two jobs in q_1day whose workers run the test worker binary.
fn cluster(test: &str) -> SgeCluster {
    cluster_of(test, QueueSpec::new("q_1day"))
}

/// A cluster of two jobs of `spec` whose workers run the test worker binary.
fn cluster_of(test: &str, spec: QueueSpec) -> SgeCluster {
    grid::cluster_of(WORKER, test, spec)
}

fn one_sample_tasks(n: usize) -> Bag {
    let keys: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    Bag::from_rows(
        keys,
        ArrayD::zeros(ndarray::IxDyn(&[n, 1])),
        Partitioning::NPartitions(n),
    )
    .unwrap()
}

#[test]
fn a_task_that_aborts_its_job_is_quarantined_and_the_lost_jobs_are_replaced() {
    let _grid = grid();
    let cluster = cluster("poison");
    let n = 2000;
    let out = Pipeline::new()
        .step(
            Step::new(
                "fragile",
                AbortsOn {
                    poison: "1234".into(),
                    busy_us: 10,
                },
            )
            .transform_extra("key", "key"),
        )
        .transform(cluster.runtime(), one_sample_tasks(n))
        .unwrap();
    let failed = out.bag.failed();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].key, "1234");
    assert!(
        failed[0].reason.contains("quarantined"),
        "{}",
        failed[0].reason
    );
    assert_eq!(out.bag.stack(DATA).unwrap().len(), n - 1);
    let lost = out.report.workers_lost;
    assert!((3..=8).contains(&lost), "{lost} jobs lost");
    // Each lost job was replaced by a new one: two workers again, on jobs that
    // joined after the first two.
    cluster
        .wait_for_workers(2, Duration::from_secs(60))
        .unwrap();
    let workers =
        futures::executor::block_on(cluster.runtime().scheduler().send(ListWorkers)).unwrap();
    let jobs: BTreeSet<String> = workers.iter().filter_map(|w| w.info.job.clone()).collect();
    assert!(
        jobs.len() >= 2 + lost as usize,
        "{lost} lost, jobs {jobs:?}"
    );
    close(cluster, "poison");
}

#[test]
fn kept_outputs_stay_in_the_jobs_until_taken_and_go_when_dropped() {
    use gridpipe_runtime::actors::kept::Placement;
    use gridpipe_runtime::actors::scheduler::KeptOnWorkers;
    let _grid = grid();
    let cluster = cluster("kept");
    let rt = cluster.runtime();
    let p = Pipeline::new().add("plus1", AddOffset(1.0));
    let kept = p
        .transform_kept(rt, one_sample_tasks(40))
        .unwrap()
        .kept
        .unwrap();
    // Every output partition is inside a grid job's worker.
    let workers = futures::executor::block_on(rt.scheduler().send(ListWorkers)).unwrap();
    for place in kept.placement_blocking().unwrap() {
        let Placement::OnWorker(w) = place else {
            panic!("a partition is not on a worker: {place:?}");
        };
        assert!(workers[w as usize].info.job.is_some(), "{place:?}");
    }
    let y = kept.collect().unwrap().stack(DATA).unwrap();
    assert_eq!(y.len(), 40);
    assert!(y.iter().all(|&v| v == 1.0));
    // A kept output dropped: the jobs drop it; the cluster closes holding nothing.
    let kept = p
        .transform_kept(rt, one_sample_tasks(40))
        .unwrap()
        .kept
        .unwrap();
    let held = || futures::executor::block_on(rt.scheduler().send(KeptOnWorkers)).unwrap();
    assert_eq!(held(), 40);
    drop(kept);
    let deadline = Instant::now() + Duration::from_secs(10);
    while held() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} partitions still held",
            held()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    close(cluster, "kept");
}

#[test]
fn a_fit_bigger_than_the_jobs_memory_fails_naming_it_before_its_inputs_are_sent() {
    use gridpipe_runtime::RunError;
    use gridpipe_sge::Memory;
    let _grid = grid();
    let test = "fitmem";
    // Each job asks for (and may use) 1 MiB: its workers say so when they join.
    let cluster = cluster_of(test, QueueSpec::new("q_1day").with_memory(Memory::mib(1)));
    let workers =
        futures::executor::block_on(cluster.runtime().scheduler().send(ListWorkers)).unwrap();
    assert!(workers.iter().all(|w| w.info.memory == Some(1 << 20)));
    // 20,000 x 4 values gathered: 625 KiB, needing about 1.8 MiB.
    let keys: Vec<String> = (0..20_000).map(|i| i.to_string()).collect();
    let x = ArrayD::from_shape_fn(ndarray::IxDyn(&[20_000, 4]), |ix| (ix[0] % 7) as f64);
    let bag = Bag::from_rows(keys, x, Partitioning::NPartitions(4)).unwrap();
    let err = Pipeline::new()
        .add("pca", gridpipe_estimators::Pca::new(2))
        .fit(cluster.runtime(), bag)
        .unwrap_err();
    assert!(
        matches!(&err, RunError::FitTooLarge { step, largest, .. } if step == "pca" && *largest == 1 << 20),
        "{err}"
    );
    close(cluster, test);
}

/// Failing before: the rows came to the scheduler's process and went out again.
#[test]
fn a_gather_fits_rows_go_from_job_to_job_not_through_the_scheduler() {
    use gridpipe_runtime::TaskOp;
    let _grid = grid();
    let test = "rows";
    let (n, dim) = (40_000, 16);
    let input = (n * dim * 8) as u64;
    let bag = || {
        let keys: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        let x = ArrayD::from_shape_fn(ndarray::IxDyn(&[n, dim]), |ix| {
            ((ix[0] * 7 + ix[1] * 13) % 29) as f64 + ((ix[0] * 3 + ix[1] * ix[1]) % 11) as f64
        });
        Bag::from_rows(keys, x, Partitioning::NPartitions(12)).unwrap()
    };
    let pipeline = || {
        Pipeline::new()
            .add("plus1", AddOffset(1.0))
            .add("pca", gridpipe_estimators::Pca::new(2))
    };
    let local = gridpipe_runtime::Runtime::in_process(1).unwrap();
    let near = pipeline().fit_transform(&local, bag()).unwrap();
    let cluster = cluster(test);
    let rt = cluster.runtime();
    let before = rt.wire_traffic().received();
    let far = pipeline().fit_transform(rt, bag()).unwrap();
    let received = rt.wire_traffic().received() - before;
    let (a, b) = (
        far.bag.stack(DATA).unwrap().array,
        near.bag.stack(DATA).unwrap().array,
    );
    assert_eq!(a.shape(), b.shape());
    assert!(a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() < 1e-9));
    // Both jobs made rows, so the fit's job fetched the other's.
    assert_eq!(far.report.workers_of("plus1", TaskOp::Transform).len(), 2);
    assert!(
        received < input / 4,
        "{received} bytes received for {input} of input"
    );
    close(cluster, test);
}

/// A job keeping rows its fit waits for is killed (its worker, as when a node
/// dies): its partitions make their rows again, the fit gathers them, the
/// result is the one threads give, and no job is left behind.
#[test]
fn rows_kept_in_a_killed_job_are_made_again_and_the_result_is_unchanged() {
    use gridpipe_tests::gated::{gated_reference, kill_the_rows_keeper};
    let _grid = grid();
    let test = "rowskill";
    let base = work_dir(&format!("{test}-gate"));
    let reference = gated_reference(&base.join("reference"));
    let cluster = cluster(test);
    kill_the_rows_keeper(cluster.runtime(), &base.join("run"), &reference, |_| {});
    let _ = std::fs::remove_dir_all(&base);
    close(cluster, test);
}

#[test]
fn checkpointed_outputs_come_back_from_the_jobs_with_their_data() {
    let _grid = grid();
    let cluster = cluster("ckpt");
    let dir = work_dir("ckpt-features");
    let p = Pipeline::new()
        .add("plus1", AddOffset(1.0))
        .step(Step::new("plus2", AddOffset(2.0)).checkpoint(Checkpoint::features(&dir)));
    for round in ["computed", "read back"] {
        let out = p
            .transform(cluster.runtime(), one_sample_tasks(40))
            .unwrap();
        // The folder goes (as a scratch folder the scheduler cannot read would):
        // the result needs nothing from it.
        std::fs::rename(&dir, dir.with_extension("moved")).unwrap();
        let y = out.bag.stack(DATA).unwrap();
        assert!(y.left_out.is_empty(), "{round}: {:?}", y.left_out);
        assert_eq!(y.len(), 40, "{round}");
        assert!(y.iter().all(|&v| v == 3.0), "{round}");
        std::fs::rename(dir.with_extension("moved"), &dir).unwrap();
        if round == "read back" {
            assert_eq!(out.report.checkpoints["plus2"].cached, 40);
        }
    }
    gridpipe_tests::remove_features_folder(&dir);
    close(cluster, "ckpt");
}

#[test]
fn plain_work_after_a_tagged_step_runs_on_the_plain_queue() {
    use gridpipe_runtime::TaskOp;
    let _grid = grid();
    let test = "placement";
    let mut options = ClusterOptions::default()
        .work_dir(work_dir(test))
        .job_name(format!("gp-{test}"))
        .worker_program(WORKER)
        .handle_signals(false);
    // Every partition is kept for a peer, however small (the default keeps
    // only those of 1 MiB or more).
    options.runtime.peer_min_bytes = 0;
    // Three queue specs: plain, io (on the same Grid Engine queue) and gpu.
    let specs = QueueSpecs::new(QueueSpec::new("q_1day"))
        .unwrap()
        .with("io", QueueSpec::new("q_1day").with_resource("io", 1))
        .unwrap()
        .with(
            "gpu",
            QueueSpec::new("q_gpu")
                .with_resource_spec("gpu=1")
                .with_resource("gpu", 1),
        )
        .unwrap();
    let cluster = SgeCluster::with_options(specs, options).unwrap();
    for label in ["default", "io", "gpu"] {
        cluster.scale_queue(label, 1).unwrap();
    }
    cluster
        .wait_for_workers(3, Duration::from_secs(60))
        .unwrap();
    let keys: Vec<String> = (0..400).map(|i| i.to_string()).collect();
    let x = ndarray::Array2::from_shape_fn((400, 64), |(i, j)| ((i * 7 + j * 3) % 13) as f64);
    let bag = Bag::from_rows(keys, x.into_dyn(), Partitioning::NPartitions(20)).unwrap();
    let before = cluster.runtime().wire_traffic().received();
    let out = whiten_clip_pca()
        .fit_transform(cluster.runtime(), bag)
        .unwrap();
    // The partitions moved from job to job (plain -> io -> plain) and the fit's
    // rows too: what came back is the output (2 of 64 columns) and the
    // scaler's statistics (2 x 64 per partition), not the data (three times
    // the input, before).
    let received = cluster.runtime().wire_traffic().received() - before;
    let input = 400 * 64 * 8;
    assert!(
        received < input / 2,
        "{received} bytes received for {input} of input"
    );
    let field = |line: &str, key: &str| -> String {
        line.split(' ')
            .find_map(|f| f.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {line}"))
            .to_string()
    };
    let lines = out.report.task_lines();
    let status = cluster.refresh().unwrap();
    let jobs_of = |label: &str| -> BTreeSet<String> {
        let q = &status.queues[label].jobs;
        q.running
            .iter()
            .chain(&q.finished)
            .chain(&q.failed)
            .map(|j| j.to_string())
            .collect()
    };
    let mut pca = 0;
    let mut ran_on = BTreeSet::new();
    for line in &lines {
        let (label, job) = (field(line, "label"), field(line, "job"));
        assert!(
            jobs_of(&label).contains(&job),
            "{line}: job not in {label}: {status:?}"
        );
        let step = field(line, "step");
        ran_on.insert((job.clone(), field(line, "queue")));
        if step == "clip" {
            assert_eq!(label, "io", "{line}");
        } else {
            assert_eq!(label, "default", "plain work on the plain queue: {line}");
        }
        if step == "pca" && field(line, "op") == "transform" {
            pca += 1;
        }
    }
    assert_eq!(pca, 20, "{lines:#?}");
    assert!(out.report.workers_of("pca", TaskOp::Transform).len() == 1);
    close(cluster, test);
    // Grid Engine's accounting (written when a job ends) agrees.
    for (job, queue) in ran_on {
        assert_eq!(accounted_queue(&job), queue, "qacct of job {job}");
    }
}

/// Deletes its Grid Engine jobs when dropped (jobs a test submits by hand).
struct HandJobs(Vec<String>);

impl Drop for HandJobs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("qdel").args(&self.0).output();
    }
}

#[test]
fn jobs_deleted_while_they_start_are_replaced_not_counted_against_the_queue() {
    let _grid = grid();
    let test = "qdel-start";
    // Two jobs of our own take q_1day's two slots, so the cluster's jobs wait.
    let mut blockers = HandJobs(Vec::new());
    for _ in 0..2 {
        let out = std::process::Command::new("qsub")
            .args(["-terse", "-b", "y", "-q", "q_1day", "-N", "gp-blocker"])
            .args(["-o", "/dev/null", "-e", "/dev/null", "sleep", "300"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        blockers
            .0
            .push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let options = ClusterOptions::default()
        .work_dir(work_dir(test))
        .job_name(format!("gp-{test}"))
        .worker_program(WORKER)
        .poll_interval(Duration::from_millis(300))
        .handle_signals(false);
    let specs = QueueSpecs::new(QueueSpec::new("q_1day")).unwrap();
    let cluster = SgeCluster::with_options(specs, options).unwrap();
    cluster.scale(1).unwrap();
    let out = std::thread::scope(|s| {
        let run = s.spawn(|| {
            Pipeline::new()
                .add("plus1", AddOffset(1.0))
                .transform(cluster.runtime(), one_sample_tasks(20))
        });
        // An operator deletes five starting jobs in a row; each is replaced.
        let mut deleted = BTreeSet::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while deleted.len() < 5 {
            assert!(std::time::Instant::now() < deadline, "no job to delete");
            let status = cluster.refresh().unwrap();
            let q = &status.queues["default"];
            assert!(q.given_up.is_none(), "given up: {:?}", q.given_up);
            for id in &q.jobs.pending {
                let id = id.to_string();
                if deleted.insert(id.clone()) {
                    let qdel = std::process::Command::new("qdel")
                        .arg(&id)
                        .output()
                        .unwrap();
                    assert!(qdel.status.success());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // The operator frees the slots: the sixth job starts and the run ends.
        drop(std::mem::replace(&mut blockers, HandJobs(Vec::new())));
        run.join().unwrap()
    });
    let out = out.unwrap();
    assert_eq!(out.bag.stack(DATA).unwrap().len(), 20);
    let status = cluster.refresh().unwrap();
    assert!(
        status.problems.is_empty(),
        "deleted jobs were counted: {:?}",
        status.problems
    );
    close(cluster, test);
}

/// A `qsub` wrapper in a fresh folder: runs the real `qsub` with `options`
/// before the cluster's own (command-line options win over the script's `#$`
/// lines), throws its output away, then runs `then`.
fn qsub_wrapper(test: &str, options: &str, then: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = work_dir(&format!("{test}-tools"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("qsub");
    std::fs::write(
        &path,
        format!("#!/bin/sh\nqsub {options} \"$@\" > /dev/null || exit 1\n{then}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A cluster of q_1day submitting through `qsub`, polling rarely (what is
/// tested is `close`, not the supervisor's clean-up of failed jobs).
fn cluster_with_qsub(test: &str, qsub: &PathBuf, timeout: Duration) -> SgeCluster {
    let options = ClusterOptions::default()
        .work_dir(work_dir(test))
        .job_name(format!("gp-{test}"))
        .worker_program(WORKER)
        .poll_interval(Duration::from_secs(60))
        .handle_signals(false);
    let backend = SgeCommands::new()
        .with_programs(qsub, "qstat", "qdel")
        .with_timeout(timeout);
    let specs = QueueSpecs::new(QueueSpec::new("q_1day")).unwrap();
    SgeCluster::with_backend(specs, options, Arc::new(backend)).unwrap()
}

/// Waits until Grid Engine lists a job whose name starts with `prefix` and
/// whose state `wanted` accepts.
fn wait_for_listed(prefix: &str, wanted: impl Fn(&JobState) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !listed_named(prefix).iter().any(|s| wanted(&s.state)) {
        assert!(
            Instant::now() < deadline,
            "no job {prefix}* listed as wanted: {:?}",
            listed_named(prefix)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `qsub` that submits for real and then prints garbage (so the job's id is
/// never read): the scale is an error, and yet after `close` Grid Engine lists
/// no job of the cluster.
#[test]
fn a_job_whose_qsub_printed_garbage_is_still_deleted_at_close() {
    let _grid = grid();
    let test = "garbled-qsub";
    let qsub = qsub_wrapper(test, "", "echo 'Your job was submitted, probably'");
    let cluster = cluster_with_qsub(test, &qsub, SgeCommands::DEFAULT_TIMEOUT);
    let prefix = cluster.job_prefix().to_string();
    let err = cluster.scale(1).unwrap_err().to_string();
    assert!(err.contains("expected a job id"), "{err}");
    // The job was submitted for real, and the cluster does not know its id.
    wait_for_listed(&prefix, |_| true);
    cluster.close().unwrap();
    let left = listed_named(&prefix);
    assert!(left.is_empty(), "jobs left after close: {left:?}");
}

/// A `qsub` that submits a job Grid Engine holds in `Eqw` and then hangs until
/// it is killed (a timeout): after `close` no job of the cluster is listed,
/// the one in `Eqw` included.
#[test]
fn a_job_in_eqw_whose_qsub_timed_out_is_still_deleted_at_close() {
    let _grid = grid();
    let test = "eqw-qsub";
    // Output to a folder that does not exist: Grid Engine holds the job in Eqw.
    let qsub = qsub_wrapper(
        test,
        "-o /nonexistent-gridpipe/ -e /nonexistent-gridpipe/",
        "exec sleep 30",
    );
    let cluster = cluster_with_qsub(test, &qsub, Duration::from_secs(3));
    let prefix = cluster.job_prefix().to_string();
    let err = cluster.scale(1).unwrap_err().to_string();
    assert!(err.contains("did not finish"), "{err}");
    wait_for_listed(
        &prefix,
        |s| matches!(s, JobState::Failed(code) if code.contains('E')),
    );
    cluster.close().unwrap();
    let left = listed_named(&prefix);
    assert!(left.is_empty(), "jobs left after close: {left:?}");
}

/// A job's worker reaches the scheduler by the cluster's advertised address when
/// that is not loopback (an address of this host on a veth pair the test makes),
/// over a sealed connection, and the run gives the in-process results.
#[test]
fn jobs_reach_the_scheduler_by_a_non_loopback_advertised_address() {
    let _grid = grid();
    let ns = gridpipe_tests::netns::NetNs::create();
    let options = ClusterOptions::default()
        .work_dir(work_dir("far"))
        .job_name("gp-far")
        .worker_program(WORKER)
        .handle_signals(false)
        .bind(format!("{}:0", ns.host_ip));
    let specs = QueueSpecs::new(QueueSpec::new("q_1day")).unwrap();
    let cluster = SgeCluster::with_options(specs, options).unwrap();
    let addr = cluster.runtime().address().unwrap().to_string();
    assert!(addr.starts_with(&format!("{}:", ns.host_ip)), "{addr}");
    cluster.scale(1).unwrap();
    cluster
        .wait_for_workers(1, Duration::from_secs(60))
        .unwrap();
    let bag = || {
        let varied = (0..40)
            .map(|i| {
                let row = ArrayD::from_shape_fn(ndarray::IxDyn(&[3]), |d| {
                    ((i * 7 + d[0] * 3) % 11) as f64
                });
                gridpipe_runtime::Sample::new(i.to_string(), row)
            })
            .collect();
        Bag::from_samples(varied, Partitioning::NPartitions(4)).unwrap()
    };
    let far = affine_then_scaler()
        .fit_transform(cluster.runtime(), bag())
        .unwrap();
    let local = gridpipe_runtime::Runtime::in_process(1).unwrap();
    let near = affine_then_scaler().fit_transform(&local, bag()).unwrap();
    let (far, near) = (far.bag.samples(), near.bag.samples());
    assert_eq!(far.len(), 40);
    for (a, b) in far.iter().zip(&near) {
        assert_eq!((&a.key, &a.data), (&b.key, &b.data));
    }
    close(cluster, "far");
}
