//! Actor-level protocol tests: the scheduler (exact backlog, windows, waiting for a
//! resource), the worker actor, and the estimator actor.

use actix::prelude::*;
use gridpipe_runtime::actors::estimator_actor::EstimatorActor;
use gridpipe_runtime::actors::messages::*;
use gridpipe_runtime::actors::scheduler::{AddWorker, OfferResources, Scheduler};
use gridpipe_runtime::actors::worker::{execute, WorkerActor};
use gridpipe_runtime::exec::{ChainOp, Contribution, FeedSpec, StageExec};
use gridpipe_runtime::{
    Bag, Batch, OpKind, PartialFit, Partitioning, Resources, RunError, RunOutput, RunRequest,
    RuntimeConfig, Step, StepRun, DATA,
};
use gridpipe_tests::*;
use ndarray::{ArrayD, IxDyn};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A worker that holds its tasks until the test runs them.
struct Holding(Arc<Mutex<Vec<TaskEnvelope>>>);
impl Actor for Holding {
    type Context = Context<Self>;
}
impl Handler<RunTasks> for Holding {
    type Result = ();
    fn handle(&mut self, msg: RunTasks, _: &mut Context<Self>) {
        self.0.lock().unwrap().extend(msg.0);
    }
}

/// A worker that runs its tasks at once and reports to the scheduler.
struct Inline {
    id: u32,
    scheduler: Recipient<TasksDone>,
}
impl Actor for Inline {
    type Context = Context<Self>;
}
impl Handler<RunTasks> for Inline {
    type Result = ();
    fn handle(&mut self, msg: RunTasks, _: &mut Context<Self>) {
        let outcomes = msg.0.into_iter().map(execute).collect();
        self.scheduler.do_send(TasksDone {
            worker: self.id,
            outcomes,
        });
    }
}

fn fixed_window(n: usize) -> RuntimeConfig {
    let mut c = RuntimeConfig::in_process(0);
    c.min_window = n;
    c.max_window = n;
    c
}

fn step_runs(steps: Vec<(Step, bool)>) -> Vec<StepRun> {
    steps
        .into_iter()
        .map(|(s, fit)| StepRun {
            fitted: None,
            fit,
            apply: Some(OpKind::Transform),
            step: Arc::new(s),
        })
        .collect()
}

fn submit(
    scheduler: &Addr<Scheduler>,
    request: RunRequest,
) -> tokio::sync::oneshot::Receiver<Result<RunOutput, RunError>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    scheduler.do_send(Submit { request, reply: tx });
    rx
}

#[actix::test]
async fn scheduler_counts_backlog_exactly_and_fills_windows() {
    let scheduler = Scheduler::new(fixed_window(50)).start();
    let held = Arc::new(Mutex::new(Vec::new()));
    let worker = Holding(held.clone()).start();
    scheduler
        .send(AddWorker {
            name: "held".into(),
            resources: Resources::none(),
            addr: worker.recipient(),
            queue: None,
            job: None,
            label: None,
            remote: false,
            release: None,
            peer: None,
            forget: None,
            memory: None,
        })
        .await
        .unwrap();
    let bag = Bag::from_samples(samples(200, &[1], 0.0), Partitioning::NPartitions(200)).unwrap();
    let mut rx = submit(
        &scheduler,
        RunRequest {
            steps: step_runs(vec![(Step::new("plus1", AddOffset(1.0)), false)]),
            bag,
            outputs: Default::default(),
        },
    );
    let mut done_total = 0;
    loop {
        let backlog = scheduler.send(GetBacklog).await.unwrap();
        let expected_in_flight = 50.min(200 - done_total);
        if done_total == 200 {
            assert!(backlog.is_empty(), "{backlog:?}");
            break;
        }
        assert_eq!(backlog.len(), 1, "one shape: {backlog:?}");
        assert_eq!(backlog[0].resources, Resources::none());
        assert_eq!(
            backlog[0].in_flight, expected_in_flight,
            "the window is full"
        );
        assert_eq!(
            backlog[0].ready,
            200 - done_total - expected_in_flight,
            "the rest is ready"
        );
        let batch: Vec<TaskEnvelope> = std::mem::take(&mut *held.lock().unwrap());
        assert_eq!(
            batch.len(),
            expected_in_flight,
            "tasks were handed over one way"
        );
        done_total += batch.len();
        let outcomes = batch.into_iter().map(execute).collect();
        scheduler.do_send(TasksDone {
            worker: 0,
            outcomes,
        });
    }
    let out = rx
        .try_recv()
        .unwrap_or_else(|_| panic!("run finished"))
        .unwrap();
    assert_eq!(out.report.tasks.len(), 200);
    assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == 1.0));
}

#[actix::test]
async fn a_gpu_tagged_fit_waits_for_a_gpu_worker_and_runs_only_there() {
    let scheduler = Scheduler::new(RuntimeConfig::in_process(0)).start();
    let cpu = Inline {
        id: 0,
        scheduler: scheduler.clone().recipient(),
    }
    .start();
    scheduler
        .send(AddWorker {
            name: "cpu".into(),
            resources: Resources::none(),
            addr: cpu.recipient(),
            queue: None,
            job: None,
            label: None,
            remote: false,
            release: None,
            peer: None,
            forget: None,
            memory: None,
        })
        .await
        .unwrap();
    // A cluster queue could offer a GPU: the run is accepted and the fit waits.
    scheduler
        .send(OfferResources(vec![Resources::one("gpu", 1).into()]))
        .await
        .unwrap();
    let bag = Bag::from_samples(samples(12, &[2], 1.0), Partitioning::NPartitions(4)).unwrap();
    let mut rx = submit(
        &scheduler,
        RunRequest {
            steps: step_runs(vec![
                (Step::new("plus1", AddOffset(1.0)), false),
                (
                    Step::new("trainer", DummyWithFit::default())
                        .fit_resources(Resources::one("gpu", 1)),
                    true,
                ),
            ]),
            bag,
            outputs: Default::default(),
        },
    );
    let mut waited = false;
    for _ in 0..200 {
        let backlog = scheduler.send(GetBacklog).await.unwrap();
        if backlog
            .iter()
            .any(|b| b.resources == Resources::one("gpu", 1) && b.ready == 1 && b.in_flight == 0)
        {
            waited = true;
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(waited, "the fit is ready and waits for a gpu worker");
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    assert!(
        rx.try_recv().is_err(),
        "no result while no gpu worker exists"
    );
    let gpu = Inline {
        id: 1,
        scheduler: scheduler.clone().recipient(),
    }
    .start();
    let gpu_id = scheduler
        .send(AddWorker {
            name: "gpu".into(),
            resources: Resources::one("gpu", 1),
            addr: gpu.recipient(),
            queue: None,
            job: None,
            label: None,
            remote: false,
            release: None,
            peer: None,
            forget: None,
            memory: None,
        })
        .await
        .unwrap();
    let out = rx.await.unwrap().unwrap();
    let fits: Vec<_> = out
        .report
        .tasks
        .iter()
        .filter(|t| out.report.label(t).op == gridpipe_runtime::TaskOp::Fit)
        .collect();
    assert_eq!(fits.len(), 1);
    assert_eq!(fits[0].worker, gpu_id, "the fit ran on the gpu worker");
    assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == 4.0));
}

/// Collects what a worker or estimator actor reports.
#[derive(Default)]
struct Collector {
    done: Arc<Mutex<Vec<TasksDone>>>,
    fits: Arc<Mutex<Vec<FitReady>>>,
    tasks: Arc<Mutex<Vec<TaskEnvelope>>>,
    contributions: Arc<Mutex<Vec<(u32, Contribution)>>>,
}
impl Actor for Collector {
    type Context = Context<Self>;
}
impl Handler<TasksDone> for Collector {
    type Result = ();
    fn handle(&mut self, msg: TasksDone, _: &mut Context<Self>) {
        self.done.lock().unwrap().push(msg);
    }
}
impl Handler<FitReady> for Collector {
    type Result = ();
    fn handle(&mut self, msg: FitReady, _: &mut Context<Self>) {
        self.fits.lock().unwrap().push(msg);
    }
}
impl Handler<Contribute> for Collector {
    type Result = ();
    fn handle(&mut self, msg: Contribute, _: &mut Context<Self>) {
        self.contributions.lock().unwrap().extend(msg.parts);
    }
}
impl Handler<RunTasks> for Collector {
    type Result = ();
    fn handle(&mut self, msg: RunTasks, _: &mut Context<Self>) {
        self.tasks.lock().unwrap().extend(msg.0);
    }
}

async fn wait_until(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached");
}

/// Stage 0 of partitions `0..n` of run 3, each two samples of one value.
fn chain_tasks(
    stage: &Arc<StageExec>,
    n: u32,
    contribute_to: Option<Recipient<Contribute>>,
) -> Vec<TaskEnvelope> {
    (0..n)
        .map(|p| TaskEnvelope {
            ready_s: 0.0,
            run: 3,
            task: TaskKind::Chain {
                stage: 0,
                partition: p,
            },
            resources: Resources::none(),
            payload: TaskPayload::Chain {
                input: ChainInput::Here(Arc::new(
                    Batch::from_samples(samples(2, &[1], p as f64)).unwrap(),
                )),
                stage: stage.clone(),
                hold: false,
                hold_min_bytes: 0,
                keep_fit_input: false,
            },
            contribute_to: contribute_to.clone(),
        })
        .collect()
}

#[actix::test]
async fn worker_actor_runs_batches_off_the_event_loop_and_reports_in_groups() {
    let collector = Collector::default();
    let done = collector.done.clone();
    let results = collector.start().recipient();
    // flush_max = 2: five tasks come back as 2 + 2 + 1.
    let worker = SyncArbiter::start(1, move || {
        WorkerActor::new(7, results.clone(), Duration::from_secs(60), 2)
    });
    let stage = Arc::new(StageExec {
        ops: vec![ChainOp {
            step: Arc::new(Step::new("plus1", AddOffset(1.0))),
            model: Arc::new(AddOffset(1.0)),
            kind: OpKind::Transform,
            force: false,
        }],
        feeds: None,
    });
    let envelopes = chain_tasks(&stage, 5, None);
    worker.do_send(RunTasks(envelopes));
    wait_until(|| {
        done.lock()
            .unwrap()
            .iter()
            .map(|d| d.outcomes.len())
            .sum::<usize>()
            == 5
    })
    .await;
    let done = done.lock().unwrap();
    assert_eq!(
        done.iter().map(|d| d.outcomes.len()).collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
    let mut p = 0;
    for d in done.iter() {
        assert_eq!(d.worker, 7);
        for o in &d.outcomes {
            assert_eq!(
                o.task,
                TaskKind::Chain {
                    stage: 0,
                    partition: p
                }
            );
            let TaskResult::Chain(out) = &o.result else {
                panic!("chain result")
            };
            assert!(out
                .batch
                .array(DATA)
                .unwrap()
                .iter()
                .all(|&v| v == p as f64 + 1.0));
            assert!(o.started <= o.finished);
            p += 1;
        }
    }
}

#[actix::test]
async fn estimator_actor_owns_its_fit_inputs_in_partition_order_and_its_model() {
    let collector = Collector::default();
    let (fits, tasks) = (collector.fits.clone(), collector.tasks.clone());
    let collector = collector.start();
    let est = EstimatorActor::new(9, 1, "scaler".into(), 3, collector.clone().recipient()).start();
    let part = |v: f64| {
        Contribution::Partial(PartialFit {
            rows: 1,
            stats: vec![ArrayD::from_elem(IxDyn(&[1]), v)],
        })
    };
    est.do_send(Contribute {
        parts: vec![(2, part(2.0)), (0, part(0.0))],
    });
    actix_rt::time::sleep(Duration::from_millis(20)).await;
    assert!(fits.lock().unwrap().is_empty(), "waits for every partition");
    est.do_send(Contribute {
        parts: vec![(1, part(1.0))],
    });
    wait_until(|| fits.lock().unwrap().len() == 1).await;
    {
        let f = &fits.lock().unwrap()[0];
        assert_eq!(
            (f.run, f.fit),
            (9, 1),
            "the scheduler hears the fit is ready"
        );
    }
    // The scheduler chooses a worker; the actor sends it the task with its inputs.
    let envelope = TaskEnvelope {
        ready_s: 0.0,
        run: 9,
        task: TaskKind::Fit { fit: 1 },
        resources: Resources::none(),
        payload: TaskPayload::Fit {
            step: Arc::new(Step::new("scaler", AddOffset(0.0))),
            template: Arc::new(AddOffset(0.0)),
            reduce: true,
            upstream: String::new(),
            parts: Arc::new(Vec::new()),
        },
        contribute_to: None,
    };
    est.do_send(RunFit {
        envelope,
        to: collector.recipient(),
    });
    wait_until(|| tasks.lock().unwrap().len() == 1).await;
    {
        let t = &tasks.lock().unwrap()[0];
        let TaskPayload::Fit { parts, .. } = &t.payload else {
            panic!("a fit task");
        };
        let order: Vec<f64> = parts
            .iter()
            .map(|c| match c {
                Contribution::Partial(p) => p.stats[0][[0]],
                _ => f64::NAN,
            })
            .collect();
        assert_eq!(order, vec![0.0, 1.0, 2.0]);
    }
    assert!(est.send(GetModel).await.unwrap().is_none());
    est.send(Fitted(Arc::new(AddOffset(5.0)))).await.unwrap();
    let model = est.send(GetModel).await.unwrap().expect("model held");
    assert!(format!("{model:?}").contains("5.0"));
}

/// A stage feeding a fit: each partition's contribution goes from the worker
/// straight to the fit's estimator actor (here a collector standing for it);
/// what reaches the scheduler carries none.
#[actix::test]
async fn a_worker_hands_contributions_to_the_estimator_actor_not_the_scheduler() {
    let scheduler = Collector::default();
    let done = scheduler.done.clone();
    let results = scheduler.start().recipient();
    let estimator = Collector::default();
    let contributions = estimator.contributions.clone();
    let estimator = estimator.start();
    let worker = SyncArbiter::start(1, move || {
        WorkerActor::new(1, results.clone(), Duration::from_millis(1), 512)
    });
    let step = Arc::new(Step::new("scaler", AddOffset(0.0)));
    let stage = Arc::new(StageExec {
        ops: Vec::new(),
        feeds: Some(FeedSpec {
            template: step.estimator.clone(),
            step,
            reduce: false,
        }),
    });
    let envelopes = chain_tasks(&stage, 3, Some(estimator.clone().recipient()));
    worker.do_send(RunTasks(envelopes));
    wait_until(|| {
        let reported: usize = done.lock().unwrap().iter().map(|d| d.outcomes.len()).sum();
        reported == 3 && contributions.lock().unwrap().len() == 3
    })
    .await;
    let mut parts: Vec<u32> = contributions
        .lock()
        .unwrap()
        .iter()
        .map(|(p, _)| *p)
        .collect();
    parts.sort_unstable();
    assert_eq!(parts, vec![0, 1, 2]);
    for d in done.lock().unwrap().iter() {
        for o in &d.outcomes {
            let TaskResult::Chain(out) = &o.result else {
                panic!("chain result")
            };
            assert!(out.contribution.is_none(), "no fit data for the scheduler");
        }
    }
}
