//! The peers' pipeline workload: N standard-normal samples of dimension D through
//! `x -> 2x + 1` and a standard scaler fitted on all samples, checked against the
//! same arithmetic on one plain array (the floor). Prints one JSON line.

use clap::Parser;
use gridpipe_estimators::{Affine, FunctionTransformer, Pipeline, StandardScaler};
use gridpipe_examples::bench::{best_of, peak_rss_mib_with, timed};
use gridpipe_examples::cli::{Mode, ViewArgs};
use gridpipe_examples::failure::Failure;
use gridpipe_runtime::checkpoint::{npy, store};
use gridpipe_runtime::{Bag, Partitioning, DATA};
use ndarray::{Array2, Axis};
use std::path::{Path, PathBuf};

/// Pipeline benchmark against the plain-array floor.
#[derive(Parser, Debug)]
struct Args {
    /// Number of samples.
    #[arg(long, default_value_t = 100_000)]
    samples: usize,
    /// Dimension of each sample.
    #[arg(long, default_value_t = 16)]
    dim: usize,
    /// Number of partitions (default: 4 per worker).
    #[arg(long)]
    partitions: Option<usize>,
    /// Number of workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Where the workers run.
    #[arg(long, value_enum, default_value_t = Mode::Inprocess)]
    mode: Mode,
    /// Seed of the random input.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Checkpoint both steps under this folder (emptied first) and time a first run
    /// that writes everything and a second one that loads everything.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    #[command(flatten)]
    view: ViewArgs,
}

/// The raw-file floor: one file per sample per checkpointed step, the same bytes,
/// written with a temporary file + rename and no sync, then read back.
fn file_floor(dir: &Path, steps: &[Array2<f64>]) -> std::io::Result<(f64, f64)> {
    let t = std::time::Instant::now();
    for (s, y) in steps.iter().enumerate() {
        let d = dir.join(format!("step{s}"));
        std::fs::create_dir_all(&d)?;
        for (i, row) in y.axis_iter(Axis(0)).enumerate() {
            let bytes = npy::encode(&row.to_owned().into_dyn());
            let tmp = d.join(format!(".{i}.tmp"));
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, d.join(format!("{i}.npy")))?;
        }
    }
    let write_s = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let mut total = 0usize;
    for (s, y) in steps.iter().enumerate() {
        let d = dir.join(format!("step{s}"));
        for i in 0..y.nrows() {
            total += std::fs::read(d.join(format!("{i}.npy")))?.len();
        }
    }
    assert!(total > 0);
    Ok((write_s, t.elapsed().as_secs_f64()))
}

/// A small deterministic standard-normal generator (xorshift + Box-Muller).
fn normal_matrix(n: usize, d: usize, seed: u64) -> Array2<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let mut v = Vec::with_capacity(n * d);
    while v.len() < n * d {
        let (u1, u2) = (uniform(), uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        v.push(r * (2.0 * std::f64::consts::PI * u2).cos());
        v.push(r * (2.0 * std::f64::consts::PI * u2).sin());
    }
    v.truncate(n * d);
    Array2::from_shape_vec((n, d), v).expect("shape")
}

/// The same arithmetic on one array: `y = 2x + 1`, then standardise columns.
fn floor(x: &Array2<f64>) -> Array2<f64> {
    let y = x.mapv(|v| 2.0 * v + 1.0);
    let mean = y.mean_axis(Axis(0)).expect("rows");
    let std = y.std_axis(Axis(0), 0.0);
    let scale = std.mapv(|s| {
        if s.abs() <= f64::EPSILON {
            1.0
        } else {
            1.0 / s
        }
    });
    (y - &mean) * &scale
}

fn main() -> Result<(), Failure> {
    gridpipe_runtime::run_if_worker();
    let args = Args::parse();
    let partitions = args.partitions.unwrap_or(4 * args.workers.max(1));
    let x = normal_matrix(args.samples, args.dim, args.seed);
    // The floor first, so that its temporaries are gone before the pipeline runs.
    let floor_s = best_of(3, || floor(&x));
    let expected = floor(&x);

    let mut extra = serde_json::Map::new();
    if let Some(dir) = &args.checkpoint {
        let _ = std::fs::remove_dir_all(dir);
        let y = x.mapv(|v| 2.0 * v + 1.0);
        let (w, r) = file_floor(&dir.join("floor"), &[y, expected.clone()])?;
        let _ = std::fs::remove_dir_all(dir.join("floor"));
        // Flush the floor's deferred writes now, untimed, so the first run does not
        // pay for them in its own sync.
        store::sync_file_system_of(dir);
        extra.insert("floor_write_s".into(), w.into());
        extra.insert("floor_read_s".into(), r.into());
    }

    let t = std::time::Instant::now();
    let keys: Vec<String> = (0..args.samples).map(|i| i.to_string()).collect();
    let second_input = args.checkpoint.as_ref().map(|_| (keys.clone(), x.clone()));
    let bag = Bag::from_rows(keys, x.into_dyn(), Partitioning::NPartitions(partitions))?;
    let rt = args
        .mode
        .runtime_with(args.workers, args.view.dashboard_setting(false))?;
    let setup_s = t.elapsed().as_secs_f64();

    let make = || {
        let p = Pipeline::new()
            .add(
                "affine",
                FunctionTransformer::new(Affine {
                    scale: 2.0,
                    offset: 1.0,
                }),
            )
            .add("scaler", StandardScaler::new());
        match &args.checkpoint {
            Some(dir) => p.checkpoint(dir.join("features"), dir.join("models")),
            None => p,
        }
    };
    let mut pipeline = make();
    let (wall_s, result) = timed(|| -> Result<_, Box<dyn std::error::Error>> {
        let out = pipeline.fit_transform(&rt, bag)?;
        let y: Array2<f64> = out
            .bag
            .into_stack(DATA)?
            .into_array()
            .into_dimensionality()?;
        Ok((y, out.report))
    });
    let (mut result, report) = result?;
    args.view.write_pictures(&report, None)?;
    if let Some((keys, x)) = second_input {
        extra.insert("run1_s".into(), wall_s.into());
        let bag = Bag::from_rows(keys, x.into_dyn(), Partitioning::NPartitions(partitions))?;
        let mut again = make();
        let (run2_s, second) = timed(|| -> Result<_, Box<dyn std::error::Error>> {
            let out = again.fit_transform(&rt, bag)?;
            let computed = out.report.checkpoint_computed();
            let fits = out.report.fits();
            let y = out
                .bag
                .into_stack(DATA)?
                .into_array()
                .into_dimensionality::<ndarray::Ix2>()?;
            Ok((y, computed, fits))
        });
        let (second, computed, fits) = second?;
        extra.insert("run2_s".into(), run2_s.into());
        extra.insert("run2_computed".into(), computed.into());
        extra.insert("run2_fits".into(), fits.into());
        if second != result {
            // The second run must give the same numbers; an empty result fails `ok`.
            result = Array2::zeros((0, 0));
        }
    }
    let ok = result.dim() == expected.dim()
        && result
            .iter()
            .zip(expected.iter())
            .all(|(a, b)| (a - b).abs() <= 1e-9 * b.abs().max(1.0));
    let mut line = serde_json::json!({
        "bench": "pipeline",
        "mode": args.mode.as_str(),
        "samples": args.samples,
        "dim": args.dim,
        "partitions": partitions,
        "workers": args.workers,
        "setup_s": setup_s,
        "wall_s": wall_s,
        "floor_s": floor_s,
        "peak_rss_mib": peak_rss_mib_with(&rt.worker_pids()),
        "ok": ok,
    });
    line.as_object_mut().expect("object").extend(extra);
    args.view.linger(&rt);
    println!("{line}");
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
