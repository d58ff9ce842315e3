//! The seed's local example: 10 samples of a 2x2 zero matrix (keys "0".."9",
//! metadata=1) through `MyTransformer` (x + metadata) and `MyFitTransformer`
//! (`x @ [[1,2],[3,4]]`), in 5 partitions, on the embedded runtime.

use clap::Parser;
use gridpipe_estimators::Pipeline;
use gridpipe_examples::cli::{init_tracing, Mode, ViewArgs};
use gridpipe_examples::failure::Failure;
use gridpipe_examples::seed::{print_run, seed_samples, MyFitTransformer, MyTransformer};
use gridpipe_runtime::{Bag, Partitioning, Step};
use std::time::Duration;

/// The seed's local pipeline example.
#[derive(Parser, Debug)]
struct Args {
    /// Number of workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Where the workers run.
    #[arg(long, value_enum, default_value_t = Mode::Inprocess)]
    mode: Mode,
    /// Number of partitions.
    #[arg(long, default_value_t = 5)]
    partitions: usize,
    /// Print one line per task.
    #[arg(long)]
    tasks: bool,
    #[command(flatten)]
    view: ViewArgs,
}

fn main() -> Result<(), Failure> {
    gridpipe_runtime::run_if_worker();
    init_tracing();
    let args = Args::parse();
    let rt = args
        .mode
        .runtime_with(args.workers, args.view.dashboard_setting(true))?;
    let mut pipeline = Pipeline::new()
        .step(Step::new("my_transformer", MyTransformer).transform_extra("metadata", "metadata"))
        .step(Step::new(
            "my_fit_transformer",
            MyFitTransformer::new(Duration::ZERO),
        ));
    let bag = Bag::from_samples(seed_samples(10), Partitioning::NPartitions(args.partitions))?;
    let out = pipeline.fit_transform(&rt, bag)?;
    print_run(&out, args.tasks);
    args.view.write_pictures(&out.report, None)?;
    args.view.linger(&rt);
    Ok(())
}
