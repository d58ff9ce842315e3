//! The peers' pipeline workload: N standard-normal samples of dimension D through
//! `x -> 2x + 1` and a standard scaler fitted on all samples, checked against the
//! same arithmetic on one plain array (the floor). `--fit pca` adds a PCA(8)
//! fitted on every sample's scaled row (a gather fit: all the data goes to one
//! worker) and applied to all. `--keep` leaves the outputs where they are made
//! and takes them as a stream, two partitions ahead, checking each on arrival:
//! the whole result is never in the caller's process. Prints one JSON line, with
//! the peak memory of all processes and of the scheduler's alone (during the
//! run, and what the benchmark itself held when the run started), and the bytes
//! that went through the scheduler's process to and from worker processes.

use clap::Parser;
use gridpipe_estimators::{Affine, FunctionTransformer, Pca, Pipeline, StandardScaler};
use gridpipe_examples::bench::{
    best_of, peak_rss_mib, peak_rss_mib_with, reset_peak_rss, rss_mib, timed,
};
use gridpipe_examples::cli::{Mode, ViewArgs};
use gridpipe_examples::failure::Failure;
use gridpipe_examples::sge_cli::SgeArgs;
use gridpipe_runtime::checkpoint::{npy, store};
use gridpipe_runtime::{Bag, Partitioning, Runtime, DATA};
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
    /// With `--checkpoint`: another process (`dd`) writes this many MiB into
    /// the same folder, without syncing, while the first run writes its
    /// checkpoints (a busy neighbour on the same file system).
    #[arg(long, requires = "checkpoint")]
    noise_mib: Option<u64>,
    /// A further fitted step after the scaler: `pca` (PCA with 8 components, a
    /// gather fit).
    #[arg(long, value_enum)]
    fit: Option<ExtraFit>,
    /// Keep the outputs where they are made and take them as a stream, two
    /// partitions ahead, each checked against the floor as it comes.
    #[arg(long, conflicts_with = "checkpoint")]
    keep: bool,
    /// Run the workers as `--workers` jobs of the local Grid Engine, through
    /// the Grid Engine examples' cluster (queue q_1day; each job asks for four
    /// times the input's memory, at least 1 GiB), instead of `--mode`.
    #[arg(long)]
    grid: bool,
    #[command(flatten)]
    view: ViewArgs,
}

/// A fitted step after the scaler.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ExtraFit {
    /// PCA(8): a gather fit over every sample.
    Pca,
}

/// Components of the PCA step.
const PCA_COMPONENTS: usize = 8;

/// The PCA step fitted and applied to `y` in one call, as the floor of that
/// step (its output, and the seconds taken).
fn pca_floor(y: &Array2<f64>) -> Result<(Array2<f64>, f64), Failure> {
    use gridpipe_runtime::{Estimator, Extra};
    let t = std::time::Instant::now();
    let mut pca = Pca::new(PCA_COMPONENTS);
    let view = y.view().into_dyn();
    pca.fit(view.view(), &Extra::default())
        .map_err(|e| format!("the PCA floor's fit: {e}"))?;
    let out = pca
        .transform(view, &Extra::default())
        .map_err(|e| format!("the PCA floor's transform: {e}"))?;
    let out: Array2<f64> = out.data.into_dimensionality()?;
    Ok((out, t.elapsed().as_secs_f64()))
}

/// The floor's output for the run's input (made again from the seed) and,
/// with `--fit pca`, the PCA step fitted and applied to it (`floor_fit_s`).
fn expected_output(
    args: &Args,
    extra: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<Array2<f64>, Failure> {
    let expected = floor(&normal_matrix(args.samples, args.dim, args.seed));
    if args.fit != Some(ExtraFit::Pca) {
        return Ok(expected);
    }
    let (out, s) = pca_floor(&expected)?;
    extra.insert("floor_fit_s".into(), s.into());
    Ok(out)
}

/// Whether `a` and `b` agree to `tol` up to the sign of each column (a PCA's
/// components are defined up to their sign).
fn agree_up_to_sign(a: &Array2<f64>, b: &Array2<f64>, tol: f64) -> bool {
    a.dim() == b.dim()
        && a.axis_iter(Axis(1))
            .zip(b.axis_iter(Axis(1)))
            .all(|(x, y)| {
                let same = x
                    .iter()
                    .zip(y.iter())
                    .all(|(p, q)| (p - q).abs() <= tol * q.abs().max(1.0));
                let flipped = x
                    .iter()
                    .zip(y.iter())
                    .all(|(p, q)| (p + q).abs() <= tol * q.abs().max(1.0));
                same || flipped
            })
}

/// The raw-file write floor: one file per sample per checkpointed step, the same
/// bytes, written with a temporary file + rename and no sync; seconds taken.
fn file_floor(dir: &Path, steps: &[Array2<f64>]) -> std::io::Result<f64> {
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
    Ok(t.elapsed().as_secs_f64())
}

/// Another process writing into the checkpoint folder's file system.
struct Noise {
    /// Waits for the writer: its exit status and how long it wrote.
    writer: std::thread::JoinHandle<std::io::Result<(std::process::ExitStatus, f64)>>,
    mib: u64,
    file: PathBuf,
}

impl Noise {
    /// Starts `dd` writing `mib` MiB of zeros to `dir/noise` (no sync).
    fn start(dir: &Path, mib: u64) -> Result<Noise, Box<dyn std::error::Error>> {
        std::fs::create_dir_all(dir)?;
        let file = dir.join("noise");
        let started = std::time::Instant::now();
        let mut child = std::process::Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", file.display()))
            .args(["bs=1M", &format!("count={mib}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start dd for --noise-mib: {e}"))?;
        let writer = std::thread::spawn(move || {
            let status = child.wait()?;
            Ok((status, started.elapsed().as_secs_f64()))
        });
        Ok(Noise { writer, mib, file })
    }

    /// Waits for the writer; records its size, its time and whether it was
    /// still writing when the first run ended.
    fn report(
        self,
        extra: &mut serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let busy = !self.writer.is_finished();
        let (status, noise_s) = self
            .writer
            .join()
            .map_err(|_| "the --noise-mib waiter panicked")??;
        if !status.success() {
            return Err(format!("the --noise-mib writer failed: {status}").into());
        }
        let _ = std::fs::remove_file(&self.file);
        extra.insert("noise_mib".into(), self.mib.into());
        extra.insert("noise_s".into(), noise_s.into());
        extra.insert("noise_busy_after_run1".into(), busy.into());
        Ok(())
    }
}

/// The features folder of the pipeline's last checkpointed step.
fn dir_of_last_step(checkpoint: &Option<std::path::PathBuf>) -> std::path::PathBuf {
    checkpoint
        .as_ref()
        .expect("a checkpoint folder")
        .join("features")
        .join("scaler")
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

/// The fused floor: the same two passes (statistics, then the scaled output into
/// a fresh array) over one array, on `threads` threads, as a hand-written
/// program would do it. Timing only (its sums may differ from `floor` in the last
/// bits).
fn fused_floor(x: &Array2<f64>, threads: usize) -> Array2<f64> {
    let (n, d) = x.dim();
    let rows_per = n.div_ceil(threads.max(1)).max(1);
    let chunks: Vec<_> = x.axis_chunks_iter(Axis(0), rows_per).collect();
    // Pass 1: sums and sums of squares of y = 2x + 1, per chunk, then combined.
    let partial: Vec<(Vec<f64>, Vec<f64>)> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|c| {
                s.spawn(move || {
                    let (mut sum, mut sq) = (vec![0.0; d], vec![0.0; d]);
                    for row in c.rows() {
                        for (j, &v) in row.iter().enumerate() {
                            let y = 2.0 * v + 1.0;
                            sum[j] += y;
                            sq[j] += y * y;
                        }
                    }
                    (sum, sq)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("floor thread"))
            .collect()
    });
    let mut mean = vec![0.0; d];
    let mut scale = vec![0.0; d];
    for j in 0..d {
        let sum: f64 = partial.iter().map(|p| p.0[j]).sum();
        let sq: f64 = partial.iter().map(|p| p.1[j]).sum();
        mean[j] = sum / n.max(1) as f64;
        let var = (sq / n.max(1) as f64 - mean[j] * mean[j]).max(0.0);
        scale[j] = if var.sqrt() <= f64::EPSILON {
            1.0
        } else {
            1.0 / var.sqrt()
        };
    }
    // Pass 2: the output, each thread writing its own rows of a fresh array.
    let mut out = Array2::<f64>::zeros((n, d));
    std::thread::scope(|s| {
        for (c, mut o) in chunks
            .iter()
            .zip(out.axis_chunks_iter_mut(Axis(0), rows_per))
        {
            let (mean, scale) = (&mean, &scale);
            s.spawn(move || {
                for (row, mut dst) in c.rows().into_iter().zip(o.rows_mut()) {
                    for j in 0..d {
                        dst[j] = (2.0 * row[j] + 1.0 - mean[j]) * scale[j];
                    }
                }
            });
        }
    });
    out
}

/// Reads every `.npy` file under `dir` (what a resumed run reads); seconds taken.
fn read_all_files(dir: &Path) -> std::io::Result<f64> {
    let t = std::time::Instant::now();
    let mut bytes = 0usize;
    let mut folders = vec![dir.to_path_buf()];
    while let Some(d) = folders.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "npy") {
                bytes += std::fs::read(&path)?.len();
            }
        }
    }
    assert!(bytes > 0, "no checkpoint file under {}", dir.display());
    Ok(t.elapsed().as_secs_f64())
}

/// Takes a kept output as a stream, two partitions ahead, and checks each
/// partition against its rows of `expected` as it arrives (up to the sign of
/// each component after a PCA); every row must come, in order. Returns whether
/// all matched and the seconds spent checking (not the runtime's).
fn stream_matches(
    kept: gridpipe_runtime::run::KeptOutput,
    expected: &Array2<f64>,
    up_to_sign: bool,
) -> Result<(bool, f64), Box<dyn std::error::Error>> {
    let mut row = 0;
    let mut ok = true;
    let mut check_s = 0.0;
    for part in kept.iter(2) {
        let part = part?;
        let (s, matched) = timed(|| -> Result<bool, Box<dyn std::error::Error>> {
            let y = part
                .array(DATA)
                .ok_or("a kept partition has no data column")?
                .view()
                .into_dimensionality::<ndarray::Ix2>()?;
            let n = y.nrows();
            if row + n > expected.nrows() {
                return Ok(false);
            }
            let want = expected.slice(ndarray::s![row..row + n, ..]);
            row += n;
            Ok(if up_to_sign {
                agree_up_to_sign(&y.to_owned(), &want.to_owned(), 1e-6)
            } else {
                y.dim() == want.dim()
                    && y.iter()
                        .zip(want.iter())
                        .all(|(a, b)| (a - b).abs() <= 1e-9 * b.abs().max(1.0))
            })
        });
        check_s += s;
        ok &= matched?;
    }
    Ok((ok && row == expected.nrows(), check_s))
}

/// A cluster of `jobs` jobs in q_1day, started as the Grid Engine examples
/// start theirs, each job asking for four times `input_bytes` of memory (at
/// least 1 GiB): room for a gathered fit over the whole input.
fn grid_cluster(
    jobs: usize,
    input_bytes: u64,
    view: &ViewArgs,
) -> Result<gridpipe_sge::SgeCluster, Box<dyn std::error::Error>> {
    let gib = (4 * input_bytes).div_ceil(1 << 30).max(1);
    let specs_file =
        std::env::temp_dir().join(format!("gridpipe-bench-{}.toml", std::process::id()));
    std::fs::write(
        &specs_file,
        format!("[default]\nqueue = \"q_1day\"\nmemory = \"{gib}GB\"\nmax_jobs = {jobs}\n"),
    )?;
    let sge = SgeArgs {
        specs: Some(specs_file.clone()),
        samples: 0,
        partitions: 0,
        bind: "127.0.0.1:0".into(),
        work_dir: None,
        job_name: "gridpipe-bench".into(),
    };
    let cluster = sge.cluster(view);
    let _ = std::fs::remove_file(&specs_file);
    let cluster = cluster?;
    cluster.scale(jobs)?;
    cluster.wait_for_workers(jobs, std::time::Duration::from_secs(120))?;
    Ok(cluster)
}

fn main() -> Result<(), Failure> {
    gridpipe_runtime::run_if_worker();
    let args = Args::parse();
    let partitions = args.partitions.unwrap_or(4 * args.workers.max(1));
    let x = normal_matrix(args.samples, args.dim, args.seed);
    // The floor first, so that its temporaries are gone before the pipeline runs:
    // both passes fused, on as many threads as the run has workers.
    let floor_threads = args.workers.max(1);
    let floor_s = best_of(3, || fused_floor(&x, floor_threads));
    let mut extra = serde_json::Map::new();
    if args.fit == Some(ExtraFit::Pca) {
        if args.checkpoint.is_some() {
            return Err("--fit pca and --checkpoint do not go together".into());
        }
        extra.insert("fit".into(), "pca".into());
    }

    if let Some(dir) = &args.checkpoint {
        let _ = std::fs::remove_dir_all(dir);
        let y = x.mapv(|v| 2.0 * v + 1.0);
        let w = file_floor(&dir.join("floor"), &[y, floor(&x)])?;
        let _ = std::fs::remove_dir_all(dir.join("floor"));
        // Flush the floor's deferred writes now, untimed, so the first run does not
        // pay for them in its own sync.
        store::sync_file_system_of(dir);
        extra.insert("floor_write_s".into(), w.into());
    }
    // A streamed run is checked as it comes, so it needs the expected output
    // beforehand; otherwise it is made after the run, which then holds only its
    // input and its result.
    let expected_before = match args.keep {
        true => Some(expected_output(&args, &mut extra)?),
        false => None,
    };

    let t = std::time::Instant::now();
    let keys: Vec<String> = (0..args.samples).map(|i| i.to_string()).collect();
    let second_keys = args.checkpoint.as_ref().map(|_| keys.clone());
    let bag = Bag::from_rows(keys, x.into_dyn(), Partitioning::NPartitions(partitions))?;
    let input_bytes = (args.samples * args.dim * 8) as u64;
    let cluster = match args.grid {
        true => Some(grid_cluster(args.workers, input_bytes, &args.view)?),
        false => None,
    };
    let local = match &cluster {
        Some(_) => None,
        None => Some(
            args.mode
                .runtime_with(args.workers, args.view.dashboard_setting(false))?,
        ),
    };
    let rt: &Runtime = match (&cluster, &local) {
        (Some(c), _) => c.runtime(),
        (None, Some(rt)) => rt,
        (None, None) => return Err("no runtime".into()),
    };
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
        let p = match args.fit {
            Some(ExtraFit::Pca) => p.add("pca", Pca::new(PCA_COMPONENTS)),
            None => p,
        };
        match &args.checkpoint {
            Some(dir) => p.checkpoint(dir.join("features"), dir.join("models")),
            None => p,
        }
    };
    let mut pipeline = make();
    let noise = match (&args.checkpoint, args.noise_mib) {
        (Some(dir), Some(mib)) => Some(Noise::start(dir, mib)?),
        _ => None,
    };
    // What the benchmark holds itself (the input, the floor's output); the peak
    // from here on is the run's.
    let base_rss_mib = rss_mib();
    let peak_reset = reset_peak_rss();
    let (wall_s, result) = timed(|| -> Result<_, Box<dyn std::error::Error>> {
        if args.keep {
            let out = pipeline.fit_transform_kept(rt, bag)?;
            let kept = out.kept.ok_or("a kept run gave no kept output")?;
            let expected = expected_before.as_ref().ok_or("no expected output")?;
            let (ok, check_s) = stream_matches(kept, expected, args.fit.is_some())?;
            return Ok((None, ok, check_s, out.report));
        }
        let out = pipeline.fit_transform(rt, bag)?;
        let y: Array2<f64> = out
            .bag
            .into_stack(DATA)?
            .into_array()
            .into_dimensionality()?;
        Ok((Some(y), true, 0.0, out.report))
    });
    // The peaks are the run's: taken before the benchmark makes its expected
    // output (or a checkpointed second run).
    let run_peak_rss_mib = peak_rss_mib();
    let all_peak_rss_mib = peak_rss_mib_with(&rt.worker_pids());
    let (result, stream_ok, check_s, report) = result?;
    // The time the benchmark spent checking the streamed partitions is its own.
    let wall_s = wall_s - check_s;
    if args.keep {
        extra.insert("check_s".into(), check_s.into());
    }
    let expected = match expected_before {
        Some(expected) => expected,
        None => expected_output(&args, &mut extra)?,
    };
    let mut result = result.unwrap_or_else(|| expected.clone());
    if let Some(noise) = noise {
        noise.report(&mut extra)?;
    }
    args.view.write_pictures(&report, None)?;
    if let Some(keys) = second_keys {
        extra.insert("run1_s".into(), wall_s.into());
        let x = normal_matrix(args.samples, args.dim, args.seed);
        let bag = Bag::from_rows(keys, x.into_dyn(), Partitioning::NPartitions(partitions))?;
        let mut again = make();
        let (run2_s, second) = timed(|| -> Result<_, Box<dyn std::error::Error>> {
            let out = again.fit_transform(rt, bag)?;
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
        // The read floor reads exactly the files the second run read: those of
        // the last checkpointed step.
        let read_s = read_all_files(&dir_of_last_step(&args.checkpoint))?;
        extra.insert("floor_read_s".into(), read_s.into());
        extra.insert("run2_computed".into(), computed.into());
        extra.insert("run2_fits".into(), fits.into());
        if second != result {
            // The second run must give the same numbers; an empty result fails `ok`.
            result = Array2::zeros((0, 0));
        }
    }
    let ok = stream_ok
        && match args.fit {
            Some(ExtraFit::Pca) => agree_up_to_sign(&result, &expected, 1e-6),
            None => {
                result.dim() == expected.dim()
                    && result
                        .iter()
                        .zip(expected.iter())
                        .all(|(a, b)| (a - b).abs() <= 1e-9 * b.abs().max(1.0))
            }
        };
    let mut line = serde_json::json!({
        "bench": "pipeline",
        "mode": if args.grid { "grid" } else { args.mode.as_str() },
        "samples": args.samples,
        "dim": args.dim,
        "partitions": partitions,
        "workers": args.workers,
        "setup_s": setup_s,
        "wall_s": wall_s,
        "floor_s": floor_s,
        "floor_threads": floor_threads,
        "peak_rss_mib": all_peak_rss_mib,
        // The scheduler's process alone (the caller's: the runtime is embedded),
        // and the bytes between it and the worker processes.
        "scheduler_peak_rss_mib": run_peak_rss_mib,
        "scheduler_base_rss_mib": base_rss_mib,
        "scheduler_peak_reset": peak_reset,
        "kept": args.keep,
        "bytes_via_scheduler": rt.wire_traffic().sent() + rt.wire_traffic().received(),
        "ok": ok,
    });
    line.as_object_mut().expect("object").extend(extra);
    args.view.linger(rt);
    if let Some(cluster) = cluster {
        cluster.close()?;
    }
    println!("{line}");
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
