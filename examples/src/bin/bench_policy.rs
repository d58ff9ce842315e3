//! How long one adaptive scaling decision takes at scale: 3 queues (plain, gpu,
//! io), 10,000 waiting tasks over their shapes, at most 200 jobs per queue, 200
//! connected workers (some busy, some idle). Prints one JSON line.

use clap::Parser;
use gridpipe_runtime::Resources;
use gridpipe_sge::policy::{
    decide, Bounds, PolicyConfig, PolicyInput, QueueView, ShapeDemand, WorkerView,
};
use gridpipe_sge::JobId;
use std::time::{Duration, Instant};

/// Times the scaling policy.
#[derive(Parser, Debug)]
struct Args {
    /// Waiting tasks in all.
    #[arg(long, default_value_t = 10_000)]
    tasks: usize,
    /// Most jobs per queue.
    #[arg(long, default_value_t = 200)]
    max_jobs: usize,
    /// Decisions to time.
    #[arg(long, default_value_t = 2_000)]
    rounds: usize,
}

fn main() {
    let args = Args::parse();
    let shapes = [
        Resources::none(),
        Resources::one("gpu", 1),
        Resources::one("io_big", 1),
    ];
    let demand = shapes
        .iter()
        .enumerate()
        .map(|(i, r)| ShapeDemand {
            resources: r.clone(),
            ready: args.tasks / 3 + usize::from(i == 0) * (args.tasks % 3),
            ready_work_s: 1_000.0,
            ready_unknown: 100,
        })
        .collect();
    let queues = ["default", "gpu", "io"]
        .iter()
        .zip(&shapes)
        .map(|(label, r)| {
            let workers: Vec<WorkerView> = (0..args.max_jobs / 3)
                .map(|j| WorkerView {
                    job: JobId::new(format!("{label}{j}")),
                    busy: j % 2 == 0,
                    idle_for: Duration::from_secs((j % 7) as u64 * 20),
                    retiring: false,
                })
                .collect();
            QueueView {
                label: label.to_string(),
                offers: r.clone(),
                bounds: Bounds::new(1, args.max_jobs),
                pending: 3,
                running: workers.len(),
                workers,
                blocked: false,
                given_up: false,
            }
        })
        .collect();
    let input = PolicyInput { demand, queues };
    let config = PolicyConfig::default();
    let mut worst = Duration::ZERO;
    let mut decisions = 0;
    let start = Instant::now();
    for _ in 0..args.rounds {
        let t = Instant::now();
        decisions = std::hint::black_box(decide(std::hint::black_box(&input), &config)).len();
        worst = worst.max(t.elapsed());
    }
    let mean = start.elapsed() / args.rounds as u32;
    println!(
        "{}",
        serde_json::json!({
            "bench": "policy",
            "queues": 3,
            "ready_tasks": args.tasks,
            "max_jobs_per_queue": args.max_jobs,
            "decisions_per_round": decisions,
            "decide_us_mean": mean.as_secs_f64() * 1e6,
            "decide_us_max": worst.as_secs_f64() * 1e6,
        })
    );
}
