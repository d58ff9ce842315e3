//! The seed's Grid Engine example: the pipeline of `pipeline_local` on an SGE
//! cluster of two queues, `default` (q_1day, io_big) and `gpu` (q_gpu, one
//! `gpu` consumable per job, whose worker offers `gpu=1`). `MyFitTransformer`'s
//! fit stands for GPU training: it sleeps `--fit-seconds` and is tagged for the
//! `gpu` resource, so it runs in q_gpu; everything else runs in q_1day. Prints
//! the outputs, one line per task (`task step=.. op=.. partition=.. queue=..
//! job=..`), and deletes every job before it exits.

use clap::Parser;
use gridpipe_examples::cli::{init_tracing, ViewArgs};
use gridpipe_examples::failure::Failure;
use gridpipe_examples::seed::print_run;
use gridpipe_examples::sge_cli::{seed_gpu_pipeline, SgeArgs};
use std::time::Duration;

/// The seed's pipeline on a Grid Engine cluster.
#[derive(Parser, Debug)]
struct Args {
    /// Seconds the fit sleeps (the seed's GPU training took 120).
    #[arg(long, default_value_t = 1.0)]
    fit_seconds: f64,
    /// Jobs in the `default` queue.
    #[arg(long, default_value_t = 2)]
    default_jobs: usize,
    /// Jobs in the `gpu` queue.
    #[arg(long, default_value_t = 1)]
    gpu_jobs: usize,
    #[command(flatten)]
    sge: SgeArgs,
    #[command(flatten)]
    view: ViewArgs,
}

fn main() -> Result<(), Failure> {
    gridpipe_runtime::run_if_worker();
    init_tracing();
    let args = Args::parse();
    let cluster = args.sge.cluster(&args.view)?;
    cluster.scale_queue("gpu", args.gpu_jobs)?;
    cluster.scale(args.default_jobs)?;
    let mut pipeline = seed_gpu_pipeline(Duration::from_secs_f64(args.fit_seconds));
    let bag = args.sge.seed_bag()?;
    let out = pipeline.fit_transform(cluster.runtime(), bag)?;
    print_run(&out, true);
    args.view.write_pictures(&out.report, None)?;
    args.view.linger(cluster.runtime());
    let dir = cluster.work_dir().to_path_buf();
    cluster.close()?;
    println!("closed: every job deleted (logs in {})", dir.display());
    Ok(())
}
