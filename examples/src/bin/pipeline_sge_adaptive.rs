//! The seed's adaptive Grid Engine example: `pipeline_sge`'s pipeline on a cluster
//! that scales itself, `adapt(minimum=1, maximum=10)` with the `default` queue
//! between 1 and 10 jobs and the `gpu` queue between 0 and 1. The fit (tagged
//! `gpu`) sleeps `--fit-seconds`; the gpu job is requested only once the fit is
//! ready to run; while it runs, idle default workers are retired down to the
//! minimum; the transforms after the fit ask for default jobs again.
//!
//! Prints the task lines, the jobs per queue over time, every scaling decision
//! with its reason, and last one JSON line:
//! `{"bench":"adaptive","up_latency_s":..,"down_latency_s":..,"slot_s_held":..,
//! "slot_s_busy":..,"gpu_submitted_after_fit_ready":..,
//! "default_running_min_during_fit":..,"jobs_left":..}`.

use clap::Parser;
use gridpipe_examples::cli::{init_tracing, ViewArgs};
use gridpipe_examples::failure::Failure;
use gridpipe_examples::seed::print_run;
use gridpipe_examples::sge_cli::{seed_gpu_pipeline, SgeArgs};
use gridpipe_runtime::TaskOp;
use gridpipe_sge::policy::Action;
use gridpipe_sge::AdaptOptions;
use std::process::Command;
use std::time::{Duration, Instant};

/// The seed's pipeline on an adaptive Grid Engine cluster.
#[derive(Parser, Debug)]
struct Args {
    /// Seconds the fit sleeps (the seed's GPU training took 120).
    #[arg(long, default_value_t = 20.0)]
    fit_seconds: f64,
    /// Seconds a worker may stay idle before it is retired.
    #[arg(long, default_value_t = 3.0)]
    idle_timeout: f64,
    /// Fewest jobs of the default queue.
    #[arg(long, default_value_t = 1)]
    min: usize,
    /// Most jobs of the default queue.
    #[arg(long, default_value_t = 10)]
    max: usize,
    /// Most jobs of the gpu queue.
    #[arg(long, default_value_t = 1)]
    gpu_max: usize,
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
    cluster.adapt(
        AdaptOptions::new(1, 10)
            .queue("default", args.min, args.max)
            .queue("gpu", 0, args.gpu_max)
            .idle_timeout(Duration::from_secs_f64(args.idle_timeout)),
    )?;
    let mut pipeline = seed_gpu_pipeline(Duration::from_secs_f64(args.fit_seconds));
    let bag = args.sge.seed_bag()?;
    let origin = cluster.started_at();
    let submitted = Instant::now();
    let out = pipeline.fit_transform(cluster.runtime(), bag)?;
    print_run(&out, true);
    let usage = cluster.usage()?;
    let report = cluster.adapt_report()?;
    let run_start_s = submitted.duration_since(origin).as_secs_f64();
    args.view
        .write_pictures(&out.report, Some(&report.cluster_timeline(run_start_s)))?;
    args.view.linger(cluster.runtime());
    let job_name = args.sge.job_name.clone();
    let dir = cluster.work_dir().to_path_buf();
    cluster.close()?;

    // The fit's window, in seconds since the cluster started.
    let base = submitted.duration_since(origin).as_secs_f64();
    let fit = out
        .report
        .tasks
        .iter()
        .find(|t| out.report.label(t).op == TaskOp::Fit)
        .ok_or("the run had no fit")?;
    let (fit_ready, fit_start, fit_end) = (
        base + fit.ready_s,
        base + fit.started_s,
        base + fit.finished_s,
    );
    for p in &report.timeline {
        println!(
            "timeline t={:.3}s queue={} pending={} running={}",
            p.at_ms as f64 / 1000.0,
            p.label,
            p.pending,
            p.running
        );
    }
    for d in &report.decisions {
        println!(
            "decision t={:.3}s queue={} action={:?} jobs={} latency_s={} reason={}{}",
            d.at_s,
            d.label,
            d.action,
            if d.done {
                d.jobs
                    .iter()
                    .map(|j| j.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            } else {
                "(call in progress)".to_string()
            },
            d.latency_s.map_or("-".into(), |l| format!("{l:.3}")),
            d.reason,
            d.error
                .as_deref()
                .map(|e| format!(" error={e}"))
                .unwrap_or_default()
        );
    }
    for (label, u) in &usage {
        println!(
            "usage queue={label} workers={} slot_s_held={:.2} slot_s_busy={:.2}",
            u.workers, u.held_s, u.busy_s
        );
    }
    println!(
        "fit ready at {fit_ready:.3}s, ran {fit_start:.3}s..{fit_end:.3}s; logs in {}",
        dir.display()
    );

    let gpu_submits: Vec<_> = report
        .decisions
        .iter()
        .filter(|d| d.label == "gpu" && matches!(d.action, Action::Submit(_)))
        .collect();
    let gpu_after_fit_ready =
        !gpu_submits.is_empty() && gpu_submits.iter().all(|d| d.at_s + 1e-3 >= fit_ready);
    let up_latency = gpu_submits.first().and_then(|d| d.latency_s);
    let down_latency = report
        .decisions
        .iter()
        .filter(|d| matches!(d.action, Action::Retire(_)))
        .filter_map(|d| d.latency_s)
        .fold(None, |m: Option<f64>, l| Some(m.map_or(l, |m| m.max(l))));
    let default_min_during_fit = running_min(&report.timeline, "default", fit_start, fit_end);
    let jobs_left = jobs_named(&job_name)?;
    let json = serde_json::json!({
        "bench": "adaptive",
        "up_latency_s": up_latency,
        "down_latency_s": down_latency,
        "slot_s_held": usage.values().map(|u| u.held_s).sum::<f64>(),
        "slot_s_busy": usage.values().map(|u| u.busy_s).sum::<f64>(),
        "gpu_submitted_after_fit_ready": gpu_after_fit_ready,
        "default_running_min_during_fit": default_min_during_fit,
        "jobs_left": jobs_left,
    });
    println!("{json}");
    Ok(())
}

/// The fewest running jobs of queue `label` between `from` and `to` seconds
/// (the state at `from` included).
fn running_min(
    timeline: &[gridpipe_sge::TimelinePoint],
    label: &str,
    from: f64,
    to: f64,
) -> Option<usize> {
    let points: Vec<(f64, usize)> = timeline
        .iter()
        .filter(|p| p.label == label)
        .map(|p| (p.at_ms as f64 / 1000.0, p.running))
        .collect();
    let at_start = points.iter().rev().find(|(t, _)| *t <= from).map(|p| p.1);
    points
        .iter()
        .filter(|(t, _)| *t > from && *t <= to)
        .map(|p| p.1)
        .chain(at_start)
        .min()
}

/// How many jobs named `<prefix>-...` Grid Engine still lists.
fn jobs_named(prefix: &str) -> Result<usize, Box<dyn std::error::Error>> {
    let out = Command::new("qstat").args(["-u", "*", "-xml"]).output()?;
    let jobs = gridpipe_sge::parse_qstat_xml(&String::from_utf8_lossy(&out.stdout))?;
    Ok(jobs
        .iter()
        .filter(|j| j.name.starts_with(&format!("{prefix}-")))
        .count())
}
