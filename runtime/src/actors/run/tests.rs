//! The run's protocol, event by event, without actix and without sleeps: each
//! test drives a run's reactor as the scheduler would and reads its outbox.

use super::*;
use crate::actors::partition::PartitionState;
use crate::checkpoint::decide::StageDecision;
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::estimator::Extra;
use crate::exec::{ChainOutput, Contribution};
use crate::graph::test_estimators::{Center, Shift};
use crate::plan::{OpKind, StepWork};
use crate::resources::Resources;

/// A run of `steps` (each fitted when it must be, then applied) over
/// `partitions` empty partitions, started.
fn started(steps: Vec<Step>, partitions: usize, keep_sources: bool) -> (RunState, RunOutbox) {
    let work: Vec<StepWork> = steps
        .iter()
        .map(|s| StepWork {
            name: s.name.clone(),
            fit: s.requires_fit(),
            apply: Some(OpKind::Transform),
            reduce: false,
            fit_resources: s.fit_resources.clone(),
            transform_resources: s.transform_resources.clone(),
        })
        .collect();
    let plan = Plan::build(&work);
    let steps: Vec<Arc<Step>> = steps.into_iter().map(Arc::new).collect();
    let models = steps
        .iter()
        .map(|s| (!s.requires_fit()).then(|| s.estimator.clone()))
        .collect();
    let labels = TaskLabel::all_of(&plan, |i| steps[i].name.clone());
    let new = NewRun {
        id: "test".into(),
        plan,
        steps,
        models,
        labels,
        estimators: Vec::new(),
        loaded_models: Vec::new(),
        samples: 0,
        span: tracing::Span::none(),
    };
    let inputs = (0..partitions).map(|_| Arc::new(Batch::empty())).collect();
    let mut run = RunState::new(new, inputs, keep_sources);
    let mut outbox = RunOutbox::default();
    run.start(&mut outbox).unwrap();
    (run, outbox)
}

fn output(contribution: Option<Contribution>, held: bool) -> ChainOutput {
    ChainOutput {
        batch: Arc::new(Batch::empty()),
        new_failures: 0,
        first_failed: Vec::new(),
        held,
        checkpoints: Vec::new(),
        contribution,
    }
}

fn rows() -> Contribution {
    Contribution::Data {
        x: ndarray::ArrayD::zeros(vec![1, 2]).into(),
        extra: Extra::default(),
    }
}

/// Runs stage `stage` of partition `p` on `worker` and reports it done.
fn run_stage(
    run: &mut RunState,
    p: u32,
    stage: u16,
    worker: u32,
    out: ChainOutput,
    outbox: &mut RunOutbox,
) {
    assert_eq!(run.parts[p as usize].dispatch_to(worker).unwrap().0, stage);
    run.on_chain_done(worker, stage, p, out, TaskTimes::default(), outbox)
        .unwrap();
}

#[test]
fn a_fit_barrier_holds_every_partition_until_the_fit_is_done() {
    let (mut run, outbox) = started(
        vec![Step::new("center", Center), Step::new("shift", Shift(1.0))],
        3,
        false,
    );
    assert!(outbox.all_ready, "the stage feeding the fit needs no model");
    let mut outbox = RunOutbox::default();
    for p in 0..3 {
        run_stage(&mut run, p, 0, 0, output(Some(rows()), false), &mut outbox);
        assert_eq!(
            run.parts[p as usize].state(),
            PartitionState::Waiting { stage: 1 }
        );
    }
    assert!(outbox.ready.is_empty(), "nothing passes the barrier");

    let mut outbox = RunOutbox::default();
    run.on_fit_inputs(0, &mut outbox);
    run.on_fit_inputs(0, &mut outbox);
    assert_eq!(outbox.ready_fits, vec![0], "the fit is queued once");

    let mut outbox = RunOutbox::default();
    let model: Arc<dyn Estimator> = Arc::new(Center);
    run.on_fit_done(1, 0, Ok(model), TaskTimes::default(), &mut outbox);
    assert_eq!(
        outbox.fitted.len(),
        1,
        "the model goes to the estimator actor"
    );
    assert_eq!(outbox.ready, vec![(0, 1), (1, 1), (2, 1)]);
    assert!(run.stage_exec(1).is_some());
    assert_eq!(run.fits_left, 0);

    let mut outbox = RunOutbox::default();
    for p in 0..3 {
        run_stage(&mut run, p, 1, 0, output(None, false), &mut outbox);
    }
    assert_eq!(run.partitions_left, 0);
    assert_eq!(run.tasks.len(), 7, "3 + 1 fit + 3");
}

#[test]
fn reports_the_state_does_not_allow_change_nothing() {
    let (mut run, _) = started(
        vec![Step::new("center", Center), Step::new("shift", Shift(1.0))],
        2,
        false,
    );
    let mut outbox = RunOutbox::default();
    run.parts[0].dispatch_to(4).unwrap();
    let stale = run.on_chain_done(
        5,
        0,
        0,
        output(Some(rows()), false),
        TaskTimes::default(),
        &mut outbox,
    );
    assert!(stale.is_err(), "only the worker running it reports it");
    assert!(run.tasks.is_empty() && outbox.ready.is_empty());

    let model: Arc<dyn Estimator> = Arc::new(Center);
    run.on_fit_done(1, 0, Ok(model.clone()), TaskTimes::default(), &mut outbox);
    run.on_fit_done(1, 0, Ok(model), TaskTimes::default(), &mut outbox);
    assert_eq!(run.fits_left, 0);
    assert_eq!(run.tasks.len(), 1, "a fit reported twice counts once");
}

#[test]
fn a_failed_fit_fails_the_run_naming_its_step() {
    let (mut run, _) = started(vec![Step::new("center", Center)], 1, false);
    let mut outbox = RunOutbox::default();
    run.on_fit_done(
        0,
        0,
        Err("singular".into()),
        TaskTimes::default(),
        &mut outbox,
    );
    let err = outbox.failed.expect("the run fails").to_string();
    assert!(err.contains("center") && err.contains("singular"), "{err}");
    assert_eq!(run.tasks[0].error.as_deref(), Some("singular"));
}

#[test]
fn a_stage_being_decided_holds_its_partitions_until_its_decision_is_back() {
    let dir = std::env::temp_dir().join("gridpipe-never-written");
    let checkpointed = || Step::new("shift", Shift(1.0)).checkpoint(Checkpoint::features(&dir));
    let (mut run, outbox) = started(vec![checkpointed()], 2, false);
    assert!(!outbox.all_ready);
    assert_eq!(outbox.questions.len(), 1);
    assert!(outbox.questions[0].1.touches_files());
    assert_eq!(run.parts[1].state(), PartitionState::Waiting { stage: 0 });

    let mut outbox = RunOutbox::default();
    let decision = StageDecision {
        force: vec![false],
        ..StageDecision::default()
    };
    run.on_decided(0, Ok(decision), &mut outbox);
    assert_eq!(outbox.ready, vec![(0, 0), (1, 0)]);
    let mut again = RunOutbox::default();
    run.on_decided(0, Ok(StageDecision::default()), &mut again);
    assert!(again.ready.is_empty(), "a stage is decided once");

    let (mut run, _) = started(vec![checkpointed()], 2, false);
    let mut outbox = RunOutbox::default();
    let taken = CheckpointError::Locked {
        step: "shift".into(),
        dir: dir.display().to_string(),
        holders: "host h, pid 1".into(),
    };
    run.on_decided(0, Err(taken), &mut outbox);
    let err = outbox.failed.expect("the run fails").to_string();
    assert!(err.contains("in use") && err.contains("shift"), "{err}");
    assert!(outbox.ready.is_empty());
    assert!(!dir.exists());
}

#[test]
fn partitions_held_by_a_lost_worker_catch_up_from_their_source_in_one_task() {
    let gpu = Resources::one("gpu", 1);
    let (mut run, _) = started(
        vec![
            Step::new("a", Shift(1.0)),
            Step::new("b", Shift(2.0)).transform_resources(gpu),
        ],
        2,
        true,
    );
    let mut outbox = RunOutbox::default();
    run_stage(&mut run, 0, 0, 3, output(None, true), &mut outbox);
    run_stage(&mut run, 1, 0, 4, output(None, true), &mut outbox);
    assert_eq!(outbox.ready, vec![(0, 1), (1, 1)]);
    assert_eq!(run.parts[0].held_by(), Some(3));

    let mut outbox = RunOutbox::default();
    assert_eq!(run.on_holder_lost(3, &mut outbox), 1);
    // A gpu worker runs plain steps too: the partition keeps its place, and its
    // stage-1 task runs stage 0's step first, from its input.
    assert_eq!(outbox.ready, vec![(0, 1)], "at the stage it stood at");
    assert_eq!(run.parts[0].state(), PartitionState::Ready { stage: 1 });
    assert!(run.parts[0].catching_up());
    assert_eq!(run.parts[1].held_by(), Some(4), "the other holder's stays");
    let exec = run.catch_up_exec(1).expect("both stages are built");
    let names: Vec<&str> = exec.ops.iter().map(|op| op.step.name.as_str()).collect();
    assert_eq!(names, ["a", "b"], "stage 0's steps, then stage 1's");
    assert_eq!(
        run.stage_exec(1).unwrap().ops.len(),
        1,
        "the stage itself is unchanged"
    );
    // Done, it is an ordinary partition again.
    run_stage(&mut run, 0, 1, 5, output(None, false), &mut outbox);
    assert!(!run.parts[0].catching_up());
}

#[test]
fn a_partition_goes_back_to_the_first_stage_when_no_worker_runs_every_stage() {
    let gpu = Resources::one("gpu", 1);
    let (mut run, _) = started(
        vec![
            Step::new("a", Shift(1.0)).transform_resources(gpu),
            Step::new("b", Shift(2.0)),
        ],
        1,
        true,
    );
    let mut outbox = RunOutbox::default();
    run_stage(&mut run, 0, 0, 3, output(None, true), &mut outbox);
    let mut outbox = RunOutbox::default();
    assert_eq!(run.on_holder_lost(3, &mut outbox), 1);
    // Stage 1 is plain: a plain worker could not run stage 0's gpu step.
    assert_eq!(
        outbox.ready,
        vec![(0, 0)],
        "from its input, at the first stage"
    );
    assert_eq!(run.parts[0].state(), PartitionState::Ready { stage: 0 });
    assert!(!run.parts[0].catching_up());
}

#[test]
fn a_partition_waiting_for_a_fit_catches_up_once_the_fit_is_done() {
    let (mut run, _) = started(
        vec![Step::new("a", Shift(1.0)), Step::new("center", Center)],
        1,
        true,
    );
    let mut outbox = RunOutbox::default();
    run_stage(&mut run, 0, 0, 3, output(Some(rows()), true), &mut outbox);
    assert!(outbox.ready.is_empty(), "the fit is not done");
    let mut outbox = RunOutbox::default();
    assert_eq!(run.on_holder_lost(3, &mut outbox), 1);
    assert!(outbox.ready.is_empty(), "it still waits for the fit");
    assert_eq!(run.parts[0].state(), PartitionState::Waiting { stage: 1 });
    let mut outbox = RunOutbox::default();
    run.on_fit_inputs(0, &mut outbox);
    let model: Arc<dyn Estimator> = Arc::new(Center);
    run.on_fit_done(0, 0, Ok(model), TaskTimes::default(), &mut outbox);
    assert_eq!(outbox.ready, vec![(0, 1)]);
    assert!(run.parts[0].catching_up());
    let exec = run.catch_up_exec(1).unwrap();
    let names: Vec<&str> = exec.ops.iter().map(|op| op.step.name.as_str()).collect();
    assert_eq!(names, ["a", "center"]);
    assert!(
        exec.feeds.is_none(),
        "stage 0's feed to the done fit is not run again"
    );
}

#[test]
fn a_task_over_the_largest_message_fails_the_run_naming_it() {
    let (mut run, _) = started(vec![Step::new("a", Shift(1.0))], 3, false);
    let mut outbox = RunOutbox::default();
    let task = TaskKind::Chain {
        stage: 0,
        partition: 2,
    };
    run.on_too_large(0, task, (300, 256), TaskTimes::default(), &mut outbox);
    let err = outbox.failed.expect("the run fails").to_string();
    assert!(
        err.contains("of partition 2") && err.contains("max_message"),
        "{err}"
    );
    assert_eq!(run.tasks[0].partition, Some(2));
}

fn kept_rows(holder: u32, partition: u32) -> Contribution {
    Contribution::Kept(crate::exec::KeptInput {
        holder,
        addr: "127.0.0.1:1".into(),
        key: crate::remote::peer::InputKey {
            run: 1,
            stage: 0,
            partition,
        },
        bytes: 16,
    })
}

/// A run of `center` (a gather fit) then `shift` whose partition `p` ran its
/// first stage on worker `holders[p]`, which keeps its output and rows; the
/// fit has every input.
fn rows_kept_on(holders: &[u32]) -> RunState {
    let (mut run, _) = started(
        vec![Step::new("center", Center), Step::new("shift", Shift(1.0))],
        holders.len(),
        true,
    );
    let mut outbox = RunOutbox::default();
    for (p, &w) in holders.iter().enumerate() {
        let p = p as u32;
        assert!(run.may_keep_fit_input(0));
        run.keep_fit_input(0, p, w);
        let rows = output(Some(kept_rows(w, p)), true);
        run_stage(&mut run, p, 0, w, rows, &mut outbox);
    }
    run.on_fit_inputs(0, &mut outbox);
    run
}

#[test]
fn rows_kept_on_a_lost_worker_are_made_again_and_the_fit_gathers_again() {
    // Partitions 0 and 1 keep their output and rows on worker 5, 2 on worker 6.
    let mut run = rows_kept_on(&[5, 5, 6]);
    assert!(!run.may_keep_fit_input(0), "the fit has its rows");
    assert!(run.keeps_fit_inputs_on(5) && run.keeps_fit_inputs_on(6));

    let mut outbox = RunOutbox::default();
    assert!(run.on_fit_inputs_lost(7, &mut outbox).is_empty());
    let lost = run.on_fit_inputs_lost(5, &mut outbox);
    assert_eq!(
        lost,
        vec![RowsLost {
            fit: 0,
            partitions: vec![0, 1]
        }]
    );
    assert!(matches!(run.fits[0], FitBarrier::Gathering));
    assert_eq!(run.fit_round[0], 1, "a FitReady sent before is stale");
    assert_eq!(
        outbox.ready,
        vec![(0, 0), (1, 0)],
        "they run their stage again"
    );
    assert_eq!(outbox.discard, vec![(5, 0), (5, 1)]);
    assert_eq!(run.parts[2].state(), PartitionState::Waiting { stage: 1 });
    assert!(!run.keeps_fit_inputs_on(5) && run.keeps_fit_inputs_on(6));
    assert!(run.may_keep_fit_input(0), "gathering again, rows may stay");

    // Once the fit has its model nothing is made again.
    run.forget_fit_inputs(0);
    assert!(run
        .on_fit_inputs_lost(6, &mut RunOutbox::default())
        .is_empty());
}

#[test]
fn a_fit_that_cannot_fetch_its_rows_is_tried_again_then_fails_the_run_naming_it() {
    let (mut run, _) = started(
        vec![Step::new("center", Center), Step::new("shift", Shift(1.0))],
        2,
        true,
    );
    let lost = vec![(5, "connection refused".to_string())];
    for attempt in 1..fit_inputs::FETCH_TRIES {
        run.fits[0] = FitBarrier::Running;
        let mut outbox = RunOutbox::default();
        run.on_fit_fetch_failed(1, 0, &lost, TaskTimes::default(), &mut outbox);
        assert_eq!(
            outbox.ready_fits,
            vec![0],
            "attempt {attempt}: queued again"
        );
        assert!(outbox.failed.is_none());
    }
    // A failure after the holder's loss was known counts for nothing.
    run.fits[0] = FitBarrier::Gathering;
    let mut outbox = RunOutbox::default();
    run.on_fit_fetch_failed(1, 0, &lost, TaskTimes::default(), &mut outbox);
    assert!(outbox.failed.is_none() && outbox.ready_fits.is_empty());

    run.fits[0] = FitBarrier::Running;
    let mut outbox = RunOutbox::default();
    run.on_fit_fetch_failed(1, 0, &lost, TaskTimes::default(), &mut outbox);
    let err = outbox.failed.expect("the run fails").to_string();
    assert!(
        err.contains("\"center\"") && err.contains("connection refused"),
        "{err}"
    );
}

#[test]
fn rows_of_holders_gone_after_the_fetch_are_made_again_only_if_the_fit_is_lost() {
    let mut run = rows_kept_on(&[5, 6]);
    assert!(!run.on_fit_rows_fetched(0), "not running yet");
    run.fits[0] = FitBarrier::Running;
    assert!(run.on_fit_rows_fetched(0));
    // The holders may go: losing one makes nothing again while the fit runs.
    assert!(!run.keeps_fit_inputs_on(5));
    let mut outbox = RunOutbox::default();
    assert!(run.on_fit_inputs_lost(5, &mut outbox).is_empty());
    assert!(outbox.ready.is_empty());
    // The fit itself is lost: the gone holder's partition makes its rows again.
    run.fits[0] = FitBarrier::Gathered;
    let lost = run.regather_if_let_go(0, &mut outbox).expect("made again");
    assert_eq!(
        lost.partitions,
        vec![0],
        "worker 6 still keeps partition 1's"
    );
    assert_eq!(outbox.ready, vec![(0, 0)]);
    assert!(matches!(run.fits[0], FitBarrier::Gathering));
    assert!(run.regather_if_let_go(0, &mut outbox).is_none(), "once");
}

#[test]
fn a_partition_whose_input_a_peer_could_not_give_starts_again_from_its_source() {
    let (mut run, _) = started(
        vec![Step::new("shift", Shift(1.0)), Step::new("center", Center)],
        1,
        true,
    );
    let mut outbox = RunOutbox::default();
    // Stage 0 held on worker 5; stage 1 taken by worker 6 from it, whose fetch fails.
    run_stage(&mut run, 0, 0, 5, output(Some(rows()), true), &mut outbox);
    let mut outbox = RunOutbox::default();
    run.on_fit_inputs(0, &mut outbox);
    let model: Arc<dyn Estimator> = Arc::new(Center);
    run.on_fit_done(1, 0, Ok(model), TaskTimes::default(), &mut outbox);
    assert_eq!(run.parts[0].dispatch_from_peer(6).unwrap(), (1, 5));
    let mut outbox = RunOutbox::default();
    let lost = vec![(5, "connection refused".to_string())];
    run.on_chain_input_lost(6, (1, 0), &lost, TaskTimes::default(), &mut outbox);
    assert_eq!(outbox.ready, vec![(0, 1)], "its stage again, catching up");
    assert!(run.parts[0].catching_up());
    assert_eq!(
        outbox.discard,
        vec![(5, 0)],
        "the holder drops what is left"
    );
    assert!(outbox.failed.is_none());
    let last = run.tasks.last().unwrap();
    assert_eq!(last.error.as_deref(), Some("connection refused"));
}
