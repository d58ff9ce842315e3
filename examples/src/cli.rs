//! Command-line options shared by the examples.

use clap::ValueEnum;
use gridpipe_runtime::dashboard::DashboardSetting;
use gridpipe_runtime::pictures::{self, ClusterTimeline};
use gridpipe_runtime::RunReport;
use gridpipe_runtime::{RunError, Runtime, RuntimeConfig};
use std::path::PathBuf;

/// Where the workers of an example run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Worker threads inside this process (the embedded default).
    Inprocess,
    /// Worker processes of this executable on this machine.
    Processes,
    /// Worker processes, every connection sealed (encrypted and authenticated)
    /// although it stays on loopback: what encryption costs.
    ProcessesSealed,
}

impl Mode {
    /// The name printed in benchmark lines.
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Inprocess => "inprocess",
            Mode::Processes => "processes",
            Mode::ProcessesSealed => "processes-sealed",
        }
    }

    /// Starts a runtime with `workers` workers of this mode, without a dashboard.
    pub fn runtime(&self, workers: usize) -> Result<Runtime, RunError> {
        self.runtime_with(workers, DashboardSetting::Off)
    }

    /// Starts a runtime with `workers` workers of this mode and `dashboard`.
    pub fn runtime_with(
        &self,
        workers: usize,
        dashboard: DashboardSetting,
    ) -> Result<Runtime, RunError> {
        start(self.config(workers, dashboard))
    }

    /// The configuration of a runtime with `workers` workers of this mode and
    /// `dashboard` (to adjust before [`start`]).
    pub fn config(&self, workers: usize, dashboard: DashboardSetting) -> RuntimeConfig {
        let mut config = match self {
            Mode::Inprocess => RuntimeConfig::in_process(workers),
            Mode::Processes => RuntimeConfig::processes(workers),
            Mode::ProcessesSealed => RuntimeConfig::processes(workers).encrypt_always(),
        };
        config.dashboard = dashboard;
        config
    }
}

/// Starts a runtime from `config` and says where its dashboard is (on stderr).
pub fn start(config: RuntimeConfig) -> Result<Runtime, RunError> {
    let rt = Runtime::start(config)?;
    if let Some(url) = rt.dashboard_url() {
        eprintln!("dashboard: {url}");
    }
    Ok(rt)
}

/// What the examples show besides their output: the dashboard, and pictures.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ViewArgs {
    /// Serve the dashboard on ADDR (`off`: none; default: `127.0.0.1:8787` or
    /// the next free port for examples, none for benchmarks).
    #[arg(long, value_name = "ADDR")]
    pub dashboard: Option<String>,
    /// Keep serving the finished run's dashboard this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
    pub linger: f64,
    /// Write the run's task graph to FILE (Graphviz DOT when FILE ends in `.dot`,
    /// else SVG).
    #[arg(long, value_name = "FILE")]
    pub graph: Option<PathBuf>,
    /// Write the run's timeline (tasks per worker over time) to FILE (SVG).
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<PathBuf>,
}

impl ViewArgs {
    /// The dashboard setting: as asked, else on (`default_on`) or off.
    pub fn dashboard_setting(&self, default_on: bool) -> DashboardSetting {
        match self.dashboard.as_deref() {
            Some("off") => DashboardSetting::Off,
            Some(addr) => DashboardSetting::At(addr.to_string()),
            None if default_on => DashboardSetting::Default,
            None => DashboardSetting::Off,
        }
    }

    /// Writes the pictures asked for (`--graph`, `--timeline`) of `report`, with
    /// a cluster's jobs and decisions on the timeline when given.
    pub fn write_pictures(
        &self,
        report: &RunReport,
        cluster: Option<&ClusterTimeline>,
    ) -> Result<(), Box<dyn std::error::Error>> {
        if let Some(path) = &self.graph {
            let text = if path.extension().is_some_and(|e| e == "dot") {
                pictures::graph_dot(report)
            } else {
                pictures::graph_svg(report)
            };
            std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!("graph: {}", path.display());
        }
        if let Some(path) = &self.timeline {
            let svg = pictures::timeline_svg(report, cluster)?;
            std::fs::write(path, svg).map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!("timeline: {}", path.display());
        }
        Ok(())
    }

    /// Keeps the process (and its dashboard) alive `--linger` seconds.
    pub fn linger(&self, rt: &Runtime) {
        if self.linger > 0.0 {
            if let Some(url) = rt.dashboard_url() {
                eprintln!("dashboard: {url} (serving for {} s)", self.linger);
            }
            std::thread::sleep(std::time::Duration::from_secs_f64(self.linger));
        }
    }
}

/// Sets up logging to stderr, filtered by `RUST_LOG` (default `warn`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
