//! The cost of keeping plain work off a resource worker. With worker processes,
//! one plain and one offering `io`: `x -> 2x + 1` (plain), then `x / 2` (tagged
//! `io=1`), then `x - 1` (plain). The partitions move from the io worker back to
//! the plain one for the last step; the reference runs the
//! same steps untagged on two plain workers, where every partition stays on its
//! worker. Prints one JSON line: both wall times, their difference, the bytes
//! that moved, and those that went through the scheduler's process
//! (`--peer-min-bytes`: from which size a partition goes worker to worker).

use clap::Parser;
use gridpipe_estimators::{Affine, FunctionTransformer, Pipeline};
use gridpipe_examples::bench::timed;
use gridpipe_examples::failure::Failure;
use gridpipe_runtime::{Bag, Partitioning, Resources, Runtime, RuntimeConfig, Step, TaskOp};
use ndarray::Array2;

/// Placement benchmark.
#[derive(Parser, Debug)]
struct Args {
    /// Number of samples.
    #[arg(long, default_value_t = 1_000_000)]
    samples: usize,
    /// Dimension of each sample.
    #[arg(long, default_value_t = 16)]
    dim: usize,
    /// Number of partitions.
    #[arg(long, default_value_t = 16)]
    partitions: usize,
    /// Keep a partition for the worker that runs its next stage to fetch only
    /// from this many bytes (`RuntimeConfig::peer_min_bytes`; default: the
    /// runtime's).
    #[arg(long)]
    peer_min_bytes: Option<u64>,
}

fn affine(scale: f64, offset: f64) -> FunctionTransformer {
    FunctionTransformer::new(Affine { scale, offset })
}

fn pipeline(tag: Resources) -> Pipeline {
    Pipeline::new()
        .add("first", affine(2.0, 1.0))
        .step(Step::new("tagged", affine(0.5, 0.0)).transform_resources(tag))
        .add("last", affine(1.0, -1.0))
}

fn main() -> Result<(), Failure> {
    gridpipe_runtime::run_if_worker();
    let args = Args::parse();
    let x = Array2::from_shape_fn((args.samples, args.dim), |(i, j)| ((i + j) % 97) as f64);
    let bag = || -> Result<Bag, Failure> {
        let keys = (0..args.samples).map(|i| i.to_string()).collect();
        Ok(Bag::from_rows(
            keys,
            x.clone().into_dyn(),
            Partitioning::NPartitions(args.partitions),
        )?)
    };
    let io = Resources::one("io", 1);
    let mut config = RuntimeConfig::processes(1)
        .with_worker(io.clone())
        .without_dashboard();
    if let Some(bytes) = args.peer_min_bytes {
        config.peer_min_bytes = bytes;
    }
    let peer_min_bytes = config.peer_min_bytes;
    let rt = Runtime::start(config)?;
    let (wall_s, out) = timed(|| pipeline(io).transform(&rt, bag()?).map_err(Failure::from));
    let out = out?;
    let traffic = rt.wire_traffic();
    let bytes_via_scheduler = traffic.sent() + traffic.received();
    let last_on: Vec<String> = out
        .report
        .workers_of("last", TaskOp::Transform)
        .iter()
        .map(|w| w.name.clone())
        .collect();
    if last_on != ["local-0"] {
        return Err(format!(
            "the plain last step ran on {last_on:?}, not only on the plain worker"
        )
        .into());
    }
    drop(rt);
    let reference = Runtime::start(RuntimeConfig::processes(2).without_dashboard())?;
    let (untagged_s, _) = timed(|| {
        pipeline(Resources::none())
            .transform(&reference, bag()?)
            .map_err(Failure::from)
    });
    let moved_mib = (args.samples * args.dim * 8) as f64 / (1 << 20) as f64;
    let line = serde_json::json!({
        "bench": "placement",
        "samples": args.samples,
        "dim": args.dim,
        "partitions": args.partitions,
        "wall_s": wall_s,
        "untagged_wall_s": untagged_s,
        "move_cost_s": wall_s - untagged_s,
        "moved_mib": moved_mib,
        "peer_min_bytes": peer_min_bytes,
        "bytes_via_scheduler": bytes_via_scheduler,
    });
    println!("{line}");
    Ok(())
}
