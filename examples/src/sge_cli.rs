//! What the Grid Engine examples share: their cluster options and the seed's
//! pipeline with its fit tagged for the `gpu` resource.

use crate::cli::ViewArgs;
use crate::seed::{seed_samples, MyFitTransformer, MyTransformer};
use gridpipe_estimators::Pipeline;
use gridpipe_runtime::{Bag, DataError, Partitioning, Resources, Step};
use gridpipe_sge::{ClusterOptions, QueueSpecs, SgeCluster};
use std::path::PathBuf;
use std::time::Duration;

/// The queue specs of `examples/queues.toml` (default q_1day io_big, gpu q_gpu gpu=1).
pub const BUILT_IN_SPECS: &str = include_str!("../queues.toml");

/// Command-line options of the Grid Engine examples.
#[derive(clap::Args, Debug, Clone)]
pub struct SgeArgs {
    /// Queue specs (TOML); default: the built-in ones of `examples/queues.toml`.
    #[arg(long)]
    pub specs: Option<PathBuf>,
    /// Number of samples.
    #[arg(long, default_value_t = 10)]
    pub samples: usize,
    /// Number of partitions.
    #[arg(long, default_value_t = 5)]
    pub partitions: usize,
    /// Where the scheduler listens (a grid needs an address its exec hosts reach).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: String,
    /// Root of the work folder (secret file, lease and job logs; shared with the
    /// exec hosts, private to this user); default `$GRIDPIPE_SGE_DIR`, else
    /// `$HOME/.gridpipe/sge`.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Jobs are named `<job-name>-<cluster id>-<queue label>`.
    #[arg(long, default_value = "gridpipe")]
    pub job_name: String,
}

impl SgeArgs {
    /// The seed's samples in as many samples and partitions as these options say.
    pub fn seed_bag(&self) -> Result<Bag, DataError> {
        Bag::from_samples(
            seed_samples(self.samples),
            Partitioning::NPartitions(self.partitions),
        )
    }

    /// Starts the cluster these options describe (with the dashboard `view` asks
    /// for) and prints the dashboard's URL.
    pub fn cluster(&self, view: &ViewArgs) -> Result<SgeCluster, Box<dyn std::error::Error>> {
        let specs = match &self.specs {
            Some(path) => QueueSpecs::from_toml_file(path)?,
            None => QueueSpecs::from_toml_str(BUILT_IN_SPECS)?,
        };
        let mut options = ClusterOptions::default()
            .bind(&self.bind)
            .job_name(&self.job_name);
        options.runtime.dashboard = view.dashboard_setting(true);
        if let Some(dir) = &self.work_dir {
            options = options.work_dir(dir);
        }
        let cluster = SgeCluster::with_options(specs, options)?;
        if let Some(url) = cluster.runtime().dashboard_url() {
            eprintln!("dashboard: {url}");
        }
        Ok(cluster)
    }
}

/// The seed's pipeline (`MyTransformer`, then `MyFitTransformer` whose fit sleeps
/// `fit` and is tagged for one `gpu`).
pub fn seed_gpu_pipeline(fit: Duration) -> Pipeline {
    Pipeline::new()
        .step(Step::new("my_transformer", MyTransformer).transform_extra("metadata", "metadata"))
        .step(
            Step::new("my_fit_transformer", MyFitTransformer::new(fit))
                .fit_resources(Resources::one("gpu", 1)),
        )
}
