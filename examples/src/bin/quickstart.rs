//! Iris through scaler -> PCA -> logistic regression on the embedded runtime:
//! fitted on a train split, scored on the rest.

use clap::Parser;
use gridpipe_estimators::{LogisticRegression, Pca, Pipeline, StandardScaler};
use gridpipe_examples::cli::{init_tracing, Mode, ViewArgs};
use gridpipe_examples::failure::Failure;
use gridpipe_runtime::{Bag, Partitioning, Sample, Step};
use ndarray::Axis;

/// Iris, scaler -> PCA -> logistic regression, on the embedded runtime.
#[derive(Parser, Debug)]
struct Args {
    /// Number of workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Where the workers run.
    #[arg(long, value_enum, default_value_t = Mode::Inprocess)]
    mode: Mode,
    /// Partitions of the train and test bags (default: several per worker).
    #[arg(long)]
    partitions: Option<usize>,
    /// Print one line per task (step, op, partition, worker).
    #[arg(long)]
    tasks: bool,
    #[command(flatten)]
    view: ViewArgs,
}

fn main() -> Result<(), Failure> {
    gridpipe_runtime::run_if_worker();
    init_tracing();
    let args = Args::parse();
    let iris = linfa_datasets::iris();
    let (records, targets) = (iris.records(), iris.targets());
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (i, (x, y)) in records.axis_iter(Axis(0)).zip(targets.iter()).enumerate() {
        let s = Sample::new(format!("iris-{i:03}"), x.to_owned().into_dyn()).with("label", *y);
        // Every fifth flower is held out for scoring (iris is sorted by class, so this
        // stratifies the split).
        if i % 5 == 0 {
            test.push(s);
        } else {
            train.push(s);
        }
    }
    let part = match args.partitions {
        Some(n) => Partitioning::NPartitions(n),
        None => Partitioning::Auto {
            workers: args.workers,
        },
    };
    let rt = args
        .mode
        .runtime_with(args.workers, args.view.dashboard_setting(true))?;
    let mut pipeline = Pipeline::new()
        .add("scaler", StandardScaler::new())
        .add("pca", Pca::new(3))
        .step(Step::new("classifier", LogisticRegression::new()).fit_extra("y", "label"));
    let fit = pipeline.fit(&rt, Bag::from_samples(train, part)?)?;
    let (accuracy, scored) = pipeline.score(&rt, Bag::from_samples(test, part)?, "label")?;
    if args.tasks {
        for line in fit
            .report
            .task_lines()
            .iter()
            .chain(scored.report.task_lines().iter())
        {
            println!("{line}");
        }
    }
    println!("accuracy={accuracy:.4}");
    println!("fit:   {}", fit.report.summary());
    println!("score: {}", scored.report.summary());
    args.view.write_pictures(&fit.report, None)?;
    args.view.linger(&rt);
    Ok(())
}
