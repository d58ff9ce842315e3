//! [`ClusterOptions`]: every tunable of an [`crate::SgeCluster`] in one place.

use gridpipe_runtime::{RuntimeConfig, WorkerMode};
use std::path::PathBuf;
use std::time::Duration;

/// How an [`crate::SgeCluster`] runs.
///
/// On a real grid (more than one host) the scheduler must listen on an address
/// the exec hosts reach ([`ClusterOptions::bind`], e.g. `0.0.0.0:8786`), and the
/// worker executable, the work folder (secret file and job logs) and any
/// checkpoint folders must be on paths every exec host shares.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// The runtime's tunables. Its mode must be [`WorkerMode::External`]
    /// (workers come from the batch system; another mode is an error at start,
    /// never rewritten), its `bind` is where the scheduler listens (default
    /// `127.0.0.1:0`: this host only, any free port), and its `workers` (none by
    /// default) are threads of this process beside the grid's workers.
    pub runtime: RuntimeConfig,
    /// The address written into job scripts for workers to connect to. Default:
    /// the bound address; when bound to `0.0.0.0` or `::`, this host's name and
    /// the bound port.
    pub advertise: Option<String>,
    /// The root of the cluster's work folder: each cluster makes a private
    /// sub-folder `cluster-<id>` (mode 0700) there for its secret file (mode
    /// 0600), its lease and the jobs' log files. Must be on a path the exec
    /// hosts share, and this user's alone: an existing root that others can
    /// write to, or that another user owns, is refused. `None` (the default):
    /// `$GRIDPIPE_SGE_DIR` if set, else `$HOME/.gridpipe/sge`.
    pub work_dir: Option<PathBuf>,
    /// Jobs are named `<job_name>-<cluster id>-<label>` (default `gridpipe`;
    /// the cluster id is 8 random hex digits), so that every job of a cluster
    /// can be found by name, tracked or not.
    pub job_name: String,
    /// How often job states are read from the batch system (default 1 s).
    pub poll_interval: Duration,
    /// A queue whose jobs end this many times in a row before their worker
    /// connects is given up (no more submissions; runs that only it could serve
    /// fail with the jobs' stderr in the log) (default 3).
    pub max_start_failures: u32,
    /// How long `close` waits for the batch system to list none of the jobs
    /// (default 60 s).
    pub close_timeout: Duration,
    /// Delete every job on Ctrl-C (SIGINT) or SIGTERM, then exit (default true).
    pub handle_signals: bool,
    /// How often the cluster renews its lease in its work folder (default
    /// 10 s). A later cluster deletes the jobs of a cluster whose program is
    /// gone from its host, or (seen from another host) whose lease was not
    /// renewed for 3 intervals plus 30 s.
    pub lease_renewal: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            runtime: RuntimeConfig::external("127.0.0.1:0"),
            advertise: None,
            work_dir: None,
            job_name: "gridpipe".into(),
            poll_interval: Duration::from_secs(1),
            max_start_failures: 3,
            close_timeout: Duration::from_secs(60),
            handle_signals: true,
            lease_renewal: Duration::from_secs(10),
        }
    }
}

impl ClusterOptions {
    /// The address the scheduler listens on (e.g. `0.0.0.0:8786` on a grid).
    pub fn bind(mut self, addr: impl Into<String>) -> Self {
        self.runtime.bind = addr.into();
        self
    }

    /// The address workers are told to connect to.
    pub fn advertise(mut self, addr: impl Into<String>) -> Self {
        self.advertise = Some(addr.into());
        self
    }

    /// The root of the work folder (shared with the exec hosts, private to
    /// this user).
    pub fn work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_dir = Some(dir.into());
        self
    }

    /// The prefix of job names.
    pub fn job_name(mut self, name: impl Into<String>) -> Self {
        self.job_name = name.into();
        self
    }

    /// The worker executable jobs run (default: this executable, whose `main`
    /// calls `gridpipe_runtime::run_if_worker()` first).
    pub fn worker_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.runtime.mode = WorkerMode::External {
            program: Some(program.into()),
        };
        self
    }

    /// How often job states are read.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// How often the cluster's lease is renewed.
    pub fn lease_renewal(mut self, every: Duration) -> Self {
        self.lease_renewal = every;
        self
    }

    /// Whether Ctrl-C and SIGTERM delete the jobs and exit.
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.handle_signals = on;
        self
    }
}

/// The address workers connect to: `advertise` if given; else `bound`, with an
/// unspecified IP (`0.0.0.0`, `[::]`) replaced by `host`.
pub fn advertised_address(bound: &str, advertise: Option<&str>, host: &str) -> String {
    if let Some(a) = advertise {
        return a.to_string();
    }
    match bound.parse::<std::net::SocketAddr>() {
        Ok(sa) if sa.ip().is_unspecified() => format!("{host}:{}", sa.port()),
        _ => bound.to_string(),
    }
}

/// This host's name (from the kernel), or `localhost`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// This host's total memory in bytes (`MemTotal` of `/proc/meminfo`), if known.
pub fn host_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_address_names_a_reachable_host() {
        assert_eq!(
            advertised_address("127.0.0.1:4000", None, "vm"),
            "127.0.0.1:4000"
        );
        assert_eq!(advertised_address("0.0.0.0:4000", None, "vm"), "vm:4000");
        assert_eq!(advertised_address("[::]:4000", None, "node7"), "node7:4000");
        assert_eq!(
            advertised_address("0.0.0.0:4000", Some("10.1.2.3:4000"), "vm"),
            "10.1.2.3:4000"
        );
    }

    #[test]
    fn host_memory_is_read() {
        let bytes = host_memory_bytes().expect("/proc/meminfo has MemTotal");
        assert!(bytes > 64 << 20, "{bytes}");
    }

    #[test]
    fn options_keep_the_runtime_external() {
        let o = ClusterOptions::default()
            .bind("0.0.0.0:0")
            .worker_program("/shared/bin/app");
        assert_eq!(o.runtime.bind, "0.0.0.0:0");
        assert_eq!(
            o.runtime.mode,
            WorkerMode::External {
                program: Some("/shared/bin/app".into())
            }
        );
        assert!(o.runtime.workers.is_empty());
    }
}
