//! Per-task overhead: N one-sample partitions through one stateless no-op step
//! (N tasks). `--keep` keeps the outputs in place and takes them all after the
//! run (one partition actor per task). Prints one JSON line.

use clap::Parser;
use gridpipe_estimators::{FunctionTransformer, Identity, Pipeline};
use gridpipe_examples::bench::{peak_rss_mib_with, timed};
use gridpipe_examples::cli::{Mode, ViewArgs};
use gridpipe_examples::failure::Failure;
use gridpipe_runtime::{Bag, Partitioning};
use ndarray::ArrayD;

/// Empty-task overhead benchmark.
#[derive(Parser, Debug)]
struct Args {
    /// Number of tasks (one-sample partitions).
    #[arg(long, default_value_t = 100_000)]
    tasks: usize,
    /// Number of workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Where the workers run.
    #[arg(long, value_enum, default_value_t = Mode::Inprocess)]
    mode: Mode,
    /// Keep the outputs in place and take them after the run (one partition
    /// actor per task: its whole life is in the figures).
    #[arg(long)]
    keep: bool,
    #[command(flatten)]
    view: ViewArgs,
}

fn main() -> Result<(), Failure> {
    gridpipe_runtime::run_if_worker();
    let args = Args::parse();
    let (setup_s, built) = timed(|| -> Result<_, Box<dyn std::error::Error>> {
        let rt = args
            .mode
            .runtime_with(args.workers, args.view.dashboard_setting(false))?;
        let keys = (0..args.tasks).map(|i| i.to_string()).collect();
        let data = ArrayD::zeros(ndarray::IxDyn(&[args.tasks, 1]));
        let (bag_s, bag) =
            timed(|| Bag::from_rows(keys, data, Partitioning::NPartitions(args.tasks)));
        Ok((rt, bag?, bag_s))
    });
    let (rt, bag, bag_s) = built?;
    let pipeline = Pipeline::new().add("noop", FunctionTransformer::new(Identity));
    let (wall_s, out) = timed(|| -> Result<_, Box<dyn std::error::Error>> {
        if !args.keep {
            return Ok((pipeline.transform(&rt, bag)?, 0.0));
        }
        let mut out = pipeline.transform_kept(&rt, bag)?;
        let kept = out.kept.take().ok_or("a kept run gave no kept output")?;
        let (take_s, taken) = timed(|| -> Result<usize, gridpipe_runtime::RunError> {
            let mut rows = 0;
            for part in kept.iter(256) {
                rows += part?.len();
            }
            Ok(rows)
        });
        assert_eq!(taken?, args.tasks, "every sample was taken");
        Ok((out, take_s))
    });
    let (out, take_s) = out?;
    assert_eq!(out.report.tasks.len(), args.tasks, "one task per partition");
    if !args.keep {
        assert_eq!(out.bag.len(), args.tasks, "every sample came back");
    }
    let line = serde_json::json!({
        "bench": "overhead",
        "mode": args.mode.as_str(),
        "tasks": args.tasks,
        "workers": args.workers,
        "setup_s": setup_s,
        "bag_s": bag_s,
        "wall_s": wall_s,
        "us_per_task": wall_s * 1e6 / args.tasks.max(1) as f64,
        "peak_rss_mib": peak_rss_mib_with(&rt.worker_pids()),
        "kept": args.keep,
        "take_s": take_s,
    });
    args.view.write_pictures(&out.report, None)?;
    args.view.linger(&rt);
    println!("{line}");
    Ok(())
}
