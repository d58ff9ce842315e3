//! The seed's checkpoint example: `MyTransformer` checkpointed in `checkpoint_1`,
//! `MyFitTransformer` in `checkpoint_2` with a model file; the pipeline runs twice
//! in one program, and the second run computes nothing and fits nothing.

use clap::Parser;
use gridpipe_estimators::Pipeline;
use gridpipe_examples::cli::{init_tracing, Mode, ViewArgs};
use gridpipe_examples::failure::Failure;
use gridpipe_examples::seed::{print_samples, seed_samples, MyFitTransformer, MyTransformer};
use gridpipe_runtime::{Bag, Checkpoint, Partitioning, Step, DATA};
use std::path::PathBuf;
use std::time::Duration;

/// Checkpointed seed pipeline, run several times.
#[derive(Parser, Debug)]
struct Args {
    /// Folder for `checkpoint_1/` and `checkpoint_2/` (kept between invocations, so a
    /// killed run resumes).
    #[arg(long, default_value = "checkpoint-example")]
    dir: PathBuf,
    /// Start from an empty folder.
    #[arg(long)]
    fresh: bool,
    /// Number of samples.
    #[arg(long, default_value_t = 10)]
    samples: usize,
    /// Number of partitions.
    #[arg(long, default_value_t = 5)]
    partitions: usize,
    /// How many times to run the pipeline.
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// Number of workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Where the workers run.
    #[arg(long, value_enum, default_value_t = Mode::Inprocess)]
    mode: Mode,
    /// Print the samples' outputs.
    #[arg(long)]
    print: bool,
    #[command(flatten)]
    view: ViewArgs,
}

fn main() -> Result<(), Failure> {
    gridpipe_runtime::run_if_worker();
    init_tracing();
    let args = Args::parse();
    if args.fresh {
        let _ = std::fs::remove_dir_all(&args.dir);
    }
    let rt = args
        .mode
        .runtime_with(args.workers, args.view.dashboard_setting(true))?;
    for run in 1..=args.runs {
        let mut pipeline = Pipeline::new()
            .step(
                Step::new("my_transformer", MyTransformer)
                    .transform_extra("metadata", "metadata")
                    .checkpoint(Checkpoint::features(args.dir.join("checkpoint_1"))),
            )
            .step(
                Step::new("my_fit_transformer", MyFitTransformer::new(Duration::ZERO)).checkpoint(
                    Checkpoint::features(args.dir.join("checkpoint_2"))
                        .model(args.dir.join("checkpoint_2").join("model.msgpack")),
                ),
            );
        let bag = Bag::from_samples(
            seed_samples(args.samples),
            Partitioning::NPartitions(args.partitions),
        )?;
        let out = pipeline.fit_transform(&rt, bag)?;
        let r = &out.report;
        let counts: Vec<String> = r
            .checkpoints
            .iter()
            .map(|(s, c)| format!("{s}:computed={},cached={}", c.computed, c.cached))
            .collect();
        let result = out.bag.stack(DATA)?;
        let digest: f64 = result
            .iter()
            .enumerate()
            .map(|(i, v)| v * (1.0 + (i % 7) as f64))
            .sum();
        println!(
            "run {run}: samples_computed={} fits={} steps=[{}] failed={} digest={digest}",
            r.checkpoint_computed(),
            r.fits(),
            counts.join(" "),
            r.failed.len()
        );
        args.view.write_pictures(&out.report, None)?;
        if args.print {
            print_samples(&out.bag);
        }
    }
    args.view.linger(&rt);
    Ok(())
}
