//! The seed's Grid Engine example: the pipeline of `pipeline_local` on an SGE
//! cluster of two queues, `default` (q_1day, io_big) and `gpu` (q_gpu, one
//! `gpu` consumable per job, whose worker offers `gpu=1`). `MyFitTransformer`'s
//! fit stands for GPU training: it sleeps `--fit-seconds` and is tagged for the
//! `gpu` resource, so it runs in q_gpu; everything else runs in q_1day. Prints
//! the outputs, one line per task (`task step=.. op=.. partition=.. queue=..
//! job=..`), and deletes every job before it exits.

use clap::Parser;
use gridpipe_estimators::Pipeline;
use gridpipe_examples::cli::{init_tracing, ViewArgs};
use gridpipe_examples::seed::{seed_samples, MyFitTransformer, MyTransformer};
use gridpipe_runtime::{Bag, Partitioning, Resources, Step};
use gridpipe_sge::{ClusterOptions, QueueSpecs, SgeCluster};
use std::path::PathBuf;
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
    /// Queue specs (TOML); default: the built-in ones of `examples/queues.toml`.
    #[arg(long)]
    specs: Option<PathBuf>,
    /// Number of samples.
    #[arg(long, default_value_t = 10)]
    samples: usize,
    /// Number of partitions.
    #[arg(long, default_value_t = 5)]
    partitions: usize,
    /// Where the scheduler listens (a grid needs an address its exec hosts reach).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: String,
    /// Shared folder for the secret file and the job logs.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Jobs are named `<job-name>-<queue label>`.
    #[arg(long, default_value = "gridpipe")]
    job_name: String,
    #[command(flatten)]
    view: ViewArgs,
}

const BUILT_IN_SPECS: &str = include_str!("../../queues.toml");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    gridpipe_runtime::run_if_worker();
    init_tracing();
    let args = Args::parse();
    let specs = match &args.specs {
        Some(path) => QueueSpecs::from_toml_file(path)?,
        None => QueueSpecs::from_toml_str(BUILT_IN_SPECS)?,
    };
    let mut options = ClusterOptions::default()
        .bind(&args.bind)
        .job_name(&args.job_name);
    options.runtime.dashboard = args.view.dashboard_setting(true);
    if let Some(dir) = &args.work_dir {
        options = options.work_dir(dir);
    }
    let cluster = SgeCluster::with_options(specs, options)?;
    if let Some(url) = cluster.runtime().dashboard_url() {
        println!("dashboard: {url}");
    }
    cluster.scale_queue("gpu", args.gpu_jobs)?;
    cluster.scale(args.default_jobs)?;
    let mut pipeline = Pipeline::new()
        .step(Step::new("my_transformer", MyTransformer).transform_extra("metadata", "metadata"))
        .step(
            Step::new(
                "my_fit_transformer",
                MyFitTransformer::new(Duration::from_secs_f64(args.fit_seconds)),
            )
            .fit_resources(Resources::one("gpu", 1)),
        );
    let bag = Bag::from_samples(
        seed_samples(args.samples),
        Partitioning::NPartitions(args.partitions),
    )?;
    let out = pipeline.fit_transform(cluster.runtime(), bag)?;
    for s in out.bag.samples() {
        let v: Vec<f64> = s.data.iter().copied().collect();
        println!("key={} data={:?}", s.key, v);
    }
    for line in out.report.task_lines() {
        println!("{line}");
    }
    println!("{}", out.report.summary());
    args.view.write_pictures(&out.report, None)?;
    args.view.linger(cluster.runtime());
    let dir = cluster.work_dir().to_path_buf();
    cluster.close()?;
    println!("closed: every job deleted (logs in {})", dir.display());
    Ok(())
}
