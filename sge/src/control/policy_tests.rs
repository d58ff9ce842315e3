//! Tests of the adaptive policy: examples, then properties.

use super::*;
use proptest::prelude::*;

fn gpu() -> Resources {
    Resources::one("gpu", 1)
}

fn queue(label: &str, offers: Resources, min: usize, max: usize) -> QueueView {
    QueueView {
        label: label.into(),
        offers,
        bounds: Bounds::new(min, max),
        pending: 0,
        running: 0,
        workers: Vec::new(),
        blocked: false,
        given_up: false,
    }
}

fn worker(job: &str, busy: bool, idle_s: u64) -> WorkerView {
    WorkerView {
        job: JobId::new(job),
        busy,
        idle_for: Duration::from_secs(if busy { 0 } else { idle_s }),
        retiring: false,
    }
}

fn with_workers(mut q: QueueView, workers: Vec<WorkerView>) -> QueueView {
    q.running = workers.len();
    q.workers = workers;
    q
}

fn demand(resources: Resources, ready: usize, unknown: usize, work_s: f64) -> ShapeDemand {
    ShapeDemand {
        resources,
        ready,
        ready_work_s: work_s,
        ready_unknown: unknown,
    }
}

fn cfg() -> PolicyConfig {
    PolicyConfig {
        idle_timeout: Duration::from_secs(3),
        ..PolicyConfig::default()
    }
}

fn submits(ds: &[Decision], label: &str) -> usize {
    ds.iter()
        .filter(|d| d.label == label)
        .map(|d| match d.action {
            Action::Submit(n) => n,
            _ => 0,
        })
        .sum()
}

fn retires(ds: &[Decision], label: &str) -> Vec<String> {
    ds.iter()
        .filter(|d| d.label == label)
        .filter_map(|d| match &d.action {
            Action::Retire(j) => Some(j.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_ready_gpu_task_submits_one_gpu_job_and_says_why() {
    let input = PolicyInput {
        demand: vec![demand(gpu(), 1, 1, 0.0)],
        queues: vec![
            with_workers(
                queue("default", Resources::none(), 1, 10),
                vec![worker("1", false, 0)],
            ),
            queue("gpu", gpu(), 0, 1),
        ],
    };
    let ds = decide(&input, &cfg());
    assert_eq!(submits(&ds, "gpu"), 1);
    assert_eq!(submits(&ds, "default"), 0);
    let reason = &ds.iter().find(|d| d.label == "gpu").unwrap().reason;
    assert!(
        reason.contains("gpu") && reason.contains("ready"),
        "{reason}"
    );
}

#[test]
fn cpu_demand_never_starts_a_gpu_job_while_a_plain_queue_exists() {
    let input = PolicyInput {
        demand: vec![demand(Resources::none(), 50, 50, 0.0)],
        queues: vec![
            queue("default", Resources::none(), 0, 2),
            queue("gpu", gpu(), 0, 5),
        ],
    };
    let ds = decide(&input, &cfg());
    assert_eq!(submits(&ds, "default"), 2, "{ds:?}");
    assert_eq!(submits(&ds, "gpu"), 0, "{ds:?}");
    // Allowed by configuration, the rest may go there.
    let allow = PolicyConfig {
        plain_on_resource_queues: true,
        ..cfg()
    };
    assert_eq!(submits(&decide(&input, &allow), "gpu"), 4);
}

#[test]
fn pending_jobs_count_as_supply() {
    let mut gpu_q = queue("gpu", gpu(), 0, 3);
    gpu_q.pending = 1;
    let input = PolicyInput {
        demand: vec![demand(gpu(), 1, 1, 0.0)],
        queues: vec![gpu_q],
    };
    assert!(decide(&input, &cfg()).is_empty());
}

#[test]
fn short_known_work_wants_few_workers_and_unknown_work_one_each() {
    let known = demand(Resources::none(), 100, 0, 2.0);
    assert_eq!(workers_wanted(&known, Duration::from_secs(5)), 1);
    let long = demand(Resources::none(), 100, 0, 60.0);
    assert_eq!(workers_wanted(&long, Duration::from_secs(5)), 12);
    let unknown = demand(Resources::none(), 7, 7, 0.0);
    assert_eq!(workers_wanted(&unknown, Duration::from_secs(5)), 7);
}

#[test]
fn idle_workers_past_the_timeout_are_retired_down_to_the_minimum() {
    let input = PolicyInput {
        demand: vec![demand(gpu(), 0, 0, 0.0)],
        queues: vec![with_workers(
            queue("default", Resources::none(), 1, 10),
            vec![
                worker("1", false, 10),
                worker("2", false, 5),
                worker("3", false, 1),
            ],
        )],
    };
    let ds = decide(&input, &cfg());
    // 3 jobs, minimum 1: the two idle past the timeout go, longest idle first;
    // job 3 (idle 1 s of 3) stays.
    assert_eq!(retires(&ds, "default"), vec!["1", "2"]);
}

#[test]
fn busy_workers_are_never_retired_and_the_minimum_is_kept() {
    let input = PolicyInput {
        demand: vec![],
        queues: vec![with_workers(
            queue("default", Resources::none(), 2, 10),
            vec![
                worker("1", true, 0),
                worker("2", false, 100),
                worker("3", false, 100),
            ],
        )],
    };
    let ds = decide(&input, &cfg());
    assert_eq!(retires(&ds, "default").len(), 1, "{ds:?}");
}

#[test]
fn the_pending_cap_limits_each_round() {
    let input = PolicyInput {
        demand: vec![demand(Resources::none(), 100, 100, 0.0)],
        queues: vec![queue("default", Resources::none(), 0, 50)],
    };
    assert_eq!(
        submits(&decide(&input, &cfg()), "default"),
        cfg().max_pending
    );
}

#[test]
fn a_blocked_queue_submits_nothing() {
    let mut q = queue("gpu", gpu(), 1, 2);
    q.blocked = true;
    let input = PolicyInput {
        demand: vec![demand(gpu(), 3, 3, 0.0)],
        queues: vec![q],
    };
    assert!(decide(&input, &cfg()).is_empty());
}

#[test]
fn unneeded_pending_jobs_are_deleted() {
    let mut q = queue("default", Resources::none(), 1, 10);
    q.pending = 3;
    let input = PolicyInput {
        demand: vec![],
        queues: vec![q],
    };
    let ds = decide(&input, &cfg());
    assert_eq!(
        ds.iter().map(|d| d.action.clone()).collect::<Vec<_>>(),
        vec![Action::DeletePending(2)]
    );
}

/// A random cluster: a plain queue, a gpu queue and an io queue, with workers,
/// pending jobs and ready work.
fn arb_input() -> impl Strategy<Value = PolicyInput> {
    let q = |label: &'static str, offers: Resources| {
        (
            0usize..3,
            0usize..8,
            0usize..5,
            proptest::collection::vec((any::<bool>(), 0u64..10), 0..8),
            any::<bool>(),
        )
            .prop_map(move |(min, extra, pending, ws, blocked)| {
                let workers: Vec<WorkerView> = ws
                    .iter()
                    .enumerate()
                    .map(|(i, (busy, idle))| worker(&format!("{label}{i}"), *busy, *idle))
                    .collect();
                let mut v = with_workers(queue(label, offers.clone(), min, min + extra), workers);
                v.pending = pending;
                v.blocked = blocked;
                v
            })
    };
    let d = |r: Resources| {
        (0usize..40, 0usize..40, 0.0f64..100.0).prop_map(move |(ready, unknown, work)| {
            demand(r.clone(), ready, unknown.min(ready), work)
        })
    };
    (
        q("default", Resources::none()),
        q("gpu", gpu()),
        q("io", Resources::one("io", 1)),
        d(Resources::none()),
        d(gpu()),
        d(Resources::one("io", 1)),
    )
        .prop_map(|(a, b, c, x, y, z)| PolicyInput {
            demand: vec![x, y, z],
            queues: vec![a, b, c],
        })
}

proptest! {
    #[test]
    fn never_above_the_maximum_nor_below_the_minimum(input in arb_input()) {
        let ds = decide(&input, &cfg());
        let next = apply(&input, &ds);
        for (before, after) in input.queues.iter().zip(&next.queues) {
            let (b, a) = (before.pending + before.running, after.pending + after.running);
            if a > b {
                // Growth only up to the maximum (or up to the minimum).
                prop_assert!(a <= before.bounds.max.max(before.bounds.min), "{} grew to {a}", before.label);
            }
            if a < b {
                prop_assert!(a >= before.bounds.min, "{} shrank to {a} below its minimum", before.label);
            }
            if before.blocked {
                prop_assert!(a <= b, "blocked queue {} submitted", before.label);
            }
            // Busy workers are never retired.
            for w in before.workers.iter().filter(|w| w.busy) {
                prop_assert!(after.workers.contains(w));
            }
        }
    }

    #[test]
    fn cpu_only_demand_never_grows_the_gpu_queue_beyond_its_minimum(input in arb_input()) {
        let mut input = input;
        input.demand.retain(|d| d.resources.is_empty());
        let ds = decide(&input, &cfg());
        let gpu_q = &input.queues[1];
        let grown = submits(&ds, "gpu");
        prop_assert!(grown <= gpu_q.bounds.min.saturating_sub(gpu_q.pending + gpu_q.running));
    }

    #[test]
    fn steady_load_converges_without_oscillating(input in arb_input()) {
        // The demand stays; pending jobs start as busy-less workers each round.
        let mut state = input;
        for q in &mut state.queues {
            q.blocked = false;
        }
        let mut directions: BTreeMap<String, Vec<i8>> = BTreeMap::new();
        let mut quiet = false;
        for _ in 0..30 {
            let ds = decide(&state, &cfg());
            if ds.is_empty() {
                quiet = true;
                break;
            }
            for d in &ds {
                let dir = match d.action { Action::Submit(_) => 1, _ => -1 };
                directions.entry(d.label.clone()).or_default().push(dir);
            }
            state = apply(&state, &ds);
        }
        prop_assert!(quiet, "no fixed point in 30 rounds");
        for (label, dirs) in directions {
            // Up then down (or down then up) for one queue under one demand is
            // oscillation.
            let changes = dirs.windows(2).filter(|w| w[0] != w[1]).count();
            prop_assert!(changes <= 1, "{label} went {dirs:?}");
        }
    }

    #[test]
    fn idle_and_no_demand_scales_down_to_the_minimum(input in arb_input()) {
        let mut state = input;
        state.demand.clear();
        for q in &mut state.queues {
            for w in &mut q.workers {
                w.busy = false;
                w.idle_for = Duration::from_secs(100);
            }
            // Only connected workers remain running.
            q.running = q.workers.len();
        }
        for _ in 0..5 {
            let ds = decide(&state, &cfg());
            state = apply(&state, &ds);
        }
        for q in &state.queues {
            let total = q.pending + q.running;
            if q.blocked {
                prop_assert!(total <= q.bounds.min.max(q.workers.len() + q.pending));
            } else {
                prop_assert_eq!(total, q.bounds.min, "{}", q.label);
            }
        }
    }
}
