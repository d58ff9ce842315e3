//! Two runs never mix in one features folder: a run holds the folder while it may
//! write it; another run of the same configuration shares it, one of another
//! configuration fails naming the holder (host and pid), in another process or in
//! this one; what a killed run left behind is swept by the next run.

use gridpipe_estimators::Pipeline;
use gridpipe_runtime::checkpoint::lock::HOLDERS_DIR;
use gridpipe_runtime::checkpoint::CheckpointError;
use gridpipe_runtime::{Bag, Checkpoint, OnChange, Partitioning, RunError, Runtime, Step, DATA};
use gridpipe_tests::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const HOLD_ENV: &str = "GRIDPIPE_TEST_HOLD_FOLDER";

fn bag() -> Bag {
    Bag::from_samples(samples(8, &[2], 1.0), Partitioning::NPartitions(2)).unwrap()
}

/// `plus(offset)` checkpointed in `dir`, then a slow `+1` step (the run holds
/// `dir` meanwhile): ones become `offset + 2`.
fn pipeline(dir: &Path, offset: f64, slow_ms: u64, on: OnChange) -> Pipeline {
    Pipeline::new()
        .step(
            Step::new("plus", AddOffset(offset))
                .checkpoint(Checkpoint::features(dir).on_change(on)),
        )
        .add("slow", Sleepy { ms: slow_ms })
}

/// The child's side: holds the folder named by the environment for a few seconds.
#[test]
#[ignore = "not a test of its own: the child process that a_run_of_another_configuration_fails_naming_the_holder_in_another_process and what_a_killed_run_left_is_swept_by_the_next_run start (with GRIDPIPE_TEST_HOLD_FOLDER set), which CI runs"]
fn child_holds_a_folder() {
    let Ok(dir) = std::env::var(HOLD_ENV) else {
        return;
    };
    let rt = Runtime::in_process(2).unwrap();
    pipeline(Path::new(&dir), 1.0, 3000, OnChange::Refuse)
        .transform(&rt, bag())
        .unwrap();
}

fn spawn_holder(dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_holds_a_folder",
            "--ignored",
            "--nocapture",
        ])
        .env(HOLD_ENV, dir)
        .spawn()
        .unwrap()
}

fn records(dir: &Path) -> usize {
    fs::read_dir(dir.join(HOLDERS_DIR))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(unique(&format!(
        "gridpipe-lock-{name}-{}",
        std::process::id()
    )));
    remove_features_folder(&d);
    d
}

fn locked(err: RunError) -> String {
    match &err {
        RunError::Checkpoint(CheckpointError::Locked { .. }) => err.to_string(),
        other => panic!("expected a locked folder, got {other}"),
    }
}

#[test]
fn a_run_of_another_configuration_fails_naming_the_holder_in_another_process() {
    let rt = Runtime::in_process(2).unwrap();
    let d = tmp("two-processes");
    let mut child = spawn_holder(&d);
    wait_for("the child to hold the folder", || records(&d) == 1);
    // Another configuration, even with Recompute, cannot take the folder from
    // under the child's run: it fails naming the child.
    let msg = locked(
        pipeline(&d, 2.0, 0, OnChange::Recompute)
            .transform(&rt, bag())
            .unwrap_err(),
    );
    assert!(msg.contains(&format!("pid {}", child.id())), "{msg}");
    assert!(msg.contains("\"plus\""), "{msg}");
    // The same configuration shares it.
    let out = pipeline(&d, 1.0, 0, OnChange::Refuse)
        .transform(&rt, bag())
        .unwrap();
    assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == 3.0));
    assert!(child.wait().unwrap().success());
    assert_eq!(records(&d), 0, "a run that ends leaves no record");
    // Once it is gone, the new configuration takes over.
    let out = pipeline(&d, 2.0, 0, OnChange::Recompute)
        .transform(&rt, bag())
        .unwrap();
    assert_eq!(out.report.checkpoints["plus"].computed, 8);
    assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == 4.0));
    remove_features_folder(&d);
}

#[test]
fn runs_of_one_process_are_kept_apart_too() {
    let rt = std::sync::Arc::new(Runtime::in_process(2).unwrap());
    let d = tmp("one-process");
    let holder = {
        let (rt, d) = (rt.clone(), d.clone());
        std::thread::spawn(move || {
            pipeline(&d, 1.0, 1500, OnChange::Refuse)
                .transform(&rt, bag())
                .unwrap()
        })
    };
    wait_for("the first run to hold the folder", || records(&d) == 1);
    let msg = locked(
        pipeline(&d, 2.0, 0, OnChange::Recompute)
            .transform(&rt, bag())
            .unwrap_err(),
    );
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    holder.join().unwrap();
    remove_features_folder(&d);
}

#[test]
fn what_a_killed_run_left_is_swept_by_the_next_run() {
    let rt = Runtime::in_process(2).unwrap();
    let d = tmp("killed");
    let mut child = spawn_holder(&d);
    wait_for("the child to hold the folder", || records(&d) == 1);
    kill9(child.id());
    let _ = child.wait();
    // What a group commit interrupted by the kill leaves: temporaries.
    fs::write(d.join(".gridpipe-tmp-99999-1"), b"half a file").unwrap();
    fs::create_dir_all(d.join("sub")).unwrap();
    fs::write(d.join("sub/.gridpipe-tmp-99999-2"), b"half a file").unwrap();
    let out = pipeline(&d, 1.0, 0, OnChange::Refuse)
        .transform(&rt, bag())
        .unwrap();
    assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == 3.0));
    assert!(!d.join(".gridpipe-tmp-99999-1").exists());
    assert!(!d.join("sub/.gridpipe-tmp-99999-2").exists());
    assert_eq!(records(&d), 0, "the killed run's record is gone too");
    remove_features_folder(&d);
}

/// Another program changes the folder (it holds the lock file exclusively): the run
/// that waits for the folder holds up nothing else in the runtime, since checkpoint
/// decisions run off the scheduler's event loop, and it goes on once the folder is
/// free.
#[test]
fn a_run_waiting_for_its_folder_holds_up_no_other_run() {
    use gridpipe_runtime::actors::scheduler::DashboardView;
    use gridpipe_runtime::checkpoint::lock::lock_path;
    use gridpipe_runtime::dashboard::view::RunPhase;
    let rt = std::sync::Arc::new(Runtime::in_process(2).unwrap());
    let d = tmp("waiting");
    let lock = lock_path(&d);
    fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let other_program = fs::File::create(&lock).unwrap();
    other_program.lock().unwrap();
    let waiting = {
        let (rt, d) = (rt.clone(), d.clone());
        std::thread::spawn(move || pipeline(&d, 1.0, 0, OnChange::Refuse).transform(&rt, bag()))
    };
    wait_for("the waiting run to show as running", || {
        futures::executor::block_on(rt.scheduler().send(DashboardView))
            .unwrap()
            .runs
            .iter()
            .any(|r| r.state == RunPhase::Running)
    });
    // A run that needs no folder goes through meanwhile.
    let other = Pipeline::new()
        .add("plus", AddOffset(5.0))
        .transform(&rt, bag())
        .unwrap();
    assert!(other.bag.stack(DATA).unwrap().iter().all(|&v| v == 6.0));
    assert!(!waiting.is_finished(), "the folder is still taken");
    other_program.unlock().unwrap();
    let out = waiting.join().unwrap().unwrap();
    assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == 3.0));
    remove_features_folder(&d);
}
