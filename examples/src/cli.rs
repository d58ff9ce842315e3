//! Command-line options shared by the examples.

use clap::ValueEnum;
use gridpipe_runtime::{RunError, Runtime, RuntimeConfig};

/// Where the workers of an example run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Worker threads inside this process (the embedded default).
    Inprocess,
    /// Worker processes of this executable on this machine.
    Processes,
}

impl Mode {
    /// The name printed in benchmark lines.
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Inprocess => "inprocess",
            Mode::Processes => "processes",
        }
    }

    /// Starts a runtime with `workers` workers of this mode.
    pub fn runtime(&self, workers: usize) -> Result<Runtime, RunError> {
        match self {
            Mode::Inprocess => Runtime::in_process(workers),
            Mode::Processes => Runtime::start(RuntimeConfig::processes(workers)),
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
