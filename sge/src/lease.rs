//! A cluster's lease: a small file in its work folder saying which process on
//! which host owns the cluster's jobs, renewed while the cluster lives. A later
//! cluster of the same user reads it to tell a dead owner's jobs (which nobody
//! will delete) from a live one's (see [`crate::lease_policy`]).
//!
//! The file, `<cluster folder>/lease`, is `key=value` lines:
//!
//! ```text
//! pid=4242
//! host=vm
//! pid_start=123456        start of the process, in clock ticks since boot
//! started=1764683000      seconds since the Unix epoch
//! renewed=1764683060
//! renew_every_ms=10000
//! job_prefix=gridpipe-1a2b3c4d-
//! ```

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The lease's file name in a cluster's folder.
pub const LEASE_FILE: &str = "lease";
/// What a lease is renamed to once its dead cluster's jobs were deleted.
pub const REAPED_FILE: &str = "lease.reaped";

/// Who owns a cluster's jobs, and since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The owning process.
    pub pid: u32,
    /// The host it runs on.
    pub host: String,
    /// When the process started (clock ticks since boot, from
    /// `/proc/<pid>/stat`), to tell it from a later process given the same pid.
    pub pid_start: Option<u64>,
    /// When the cluster started (seconds since the Unix epoch).
    pub started: u64,
    /// When the lease was last renewed (seconds since the Unix epoch).
    pub renewed: u64,
    /// How often it is renewed.
    pub renew_every: Duration,
    /// Every job of the cluster has a name starting with this.
    pub job_prefix: String,
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// When process `pid` started (clock ticks since boot: field 22 of
/// `/proc/<pid>/stat`), or `None` when there is no such process here.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

impl Lease {
    /// The lease of this process for a cluster whose jobs start with `job_prefix`.
    pub fn of_this_process(host: &str, job_prefix: &str, renew_every: Duration) -> Lease {
        let pid = std::process::id();
        let now = unix_now();
        Lease {
            pid,
            host: host.to_string(),
            pid_start: process_start(pid),
            started: now,
            renewed: now,
            renew_every,
            job_prefix: job_prefix.to_string(),
        }
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut text = format!("pid={}\nhost={}\n", self.pid, self.host);
        if let Some(start) = self.pid_start {
            text.push_str(&format!("pid_start={start}\n"));
        }
        text.push_str(&format!(
            "started={}\nrenewed={}\nrenew_every_ms={}\njob_prefix={}\n",
            self.started,
            self.renewed,
            self.renew_every.as_millis(),
            self.job_prefix
        ));
        text
    }

    /// Reads a lease's text; an error names the missing or bad key. A job
    /// prefix must look like one a cluster makes (at least 10 characters
    /// ending in `-`, no spaces), so that a damaged lease can never select
    /// every job of the user.
    pub fn parse(text: &str) -> Result<Lease, String> {
        let value = |key: &str| -> Result<&str, String> {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::trim)
                .ok_or_else(|| format!("no `{key}=` line"))
        };
        let number = |key: &str| -> Result<u64, String> {
            value(key)?
                .parse()
                .map_err(|_| format!("`{key}` is not a number"))
        };
        let job_prefix = value("job_prefix")?.to_string();
        let sane = job_prefix.len() >= 10
            && job_prefix.ends_with('-')
            && !job_prefix.contains(|c: char| c.is_whitespace() || c == '*' || c == '?');
        if !sane {
            return Err(format!(
                "job_prefix {job_prefix:?} is not one a cluster makes"
            ));
        }
        Ok(Lease {
            pid: u32::try_from(number("pid")?).map_err(|_| "`pid` is out of range")?,
            host: value("host")?.to_string(),
            pid_start: value("pid_start").ok().and_then(|v| v.parse().ok()),
            started: number("started")?,
            renewed: number("renewed")?,
            renew_every: Duration::from_millis(number("renew_every_ms")?),
            job_prefix,
        })
    }

    /// Writes the lease into `dir` (through a temporary file and a rename, so
    /// a reader never sees half of it).
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!("{LEASE_FILE}.tmp"));
        std::fs::write(&tmp, self.to_text())?;
        std::fs::rename(&tmp, dir.join(LEASE_FILE))
    }

    /// Reads the lease of the cluster folder `dir`.
    pub fn read_from(dir: &Path) -> std::io::Result<Result<Lease, String>> {
        let text = std::fs::read_to_string(dir.join(LEASE_FILE))?;
        Ok(Lease::parse(&text))
    }
}

/// Renews a cluster's lease on a thread of its own until dropped or
/// [`LeaseKeeper::release`]d.
pub struct LeaseKeeper {
    dir: PathBuf,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl LeaseKeeper {
    /// Writes `lease` into the cluster folder `dir` now, then renews it every
    /// `lease.renew_every`.
    pub fn start(dir: &Path, mut lease: Lease) -> std::io::Result<LeaseKeeper> {
        lease.write_to(dir)?;
        let (stop, stopped) = channel::<()>();
        let folder = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("gridpipe-lease".into())
            .spawn(move || loop {
                match stopped.recv_timeout(lease.renew_every) {
                    Err(RecvTimeoutError::Timeout) => {
                        lease.renewed = unix_now();
                        if let Err(e) = lease.write_to(&folder) {
                            tracing::warn!(dir = %folder.display(), error = %e, "cannot renew the cluster's lease");
                        }
                    }
                    _ => return,
                }
            })?;
        Ok(LeaseKeeper {
            dir: dir.to_path_buf(),
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Stops renewing and removes the lease: every job is gone, nothing is
    /// left for a later cluster to clean up.
    pub fn release(mut self) {
        self.stop();
        let _ = std::fs::remove_file(self.dir.join(LEASE_FILE));
    }
}

impl Drop for LeaseKeeper {
    /// Stops renewing and keeps the lease: jobs may be left, and a later
    /// cluster deletes them once this process is gone.
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease() -> Lease {
        Lease {
            pid: 4242,
            host: "vm".into(),
            pid_start: Some(123456),
            started: 1_764_683_000,
            renewed: 1_764_683_060,
            renew_every: Duration::from_secs(10),
            job_prefix: "gridpipe-1a2b3c4d-".into(),
        }
    }

    #[test]
    fn a_lease_reads_back_what_it_wrote() {
        assert_eq!(Lease::parse(&lease().to_text()), Ok(lease()));
        let no_start = Lease {
            pid_start: None,
            ..lease()
        };
        assert_eq!(Lease::parse(&no_start.to_text()), Ok(no_start));
    }

    #[test]
    fn a_damaged_lease_is_an_error_and_never_selects_every_job() {
        let text = lease().to_text();
        let without_pid: String = text
            .lines()
            .filter(|l| !l.starts_with("pid="))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(Lease::parse(&without_pid).unwrap_err().contains("pid"));
        for prefix in ["", "-", "gridpipe-", "gp-1a2b3c4d", "gp *-1a2b3c4d-"] {
            let text = text.replace("gridpipe-1a2b3c4d-", prefix);
            assert!(Lease::parse(&text).is_err(), "{prefix:?}");
        }
        let text = text.replace("renewed=1764683060", "renewed=soon");
        assert!(Lease::parse(&text).unwrap_err().contains("renewed"));
    }

    #[test]
    fn this_process_start_is_read_and_a_missing_process_has_none() {
        let me = std::process::id();
        let start = process_start(me).expect("/proc/self/stat");
        assert_eq!(process_start(me), Some(start), "stable");
        assert_eq!(process_start(u32::MAX), None);
    }

    #[test]
    fn the_keeper_renews_and_release_removes_the_lease() {
        let dir = std::env::temp_dir().join(format!("gridpipe-lease-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut first =
            Lease::of_this_process("vm", "gridpipe-1a2b3c4d-", Duration::from_millis(50));
        first.renewed -= 100;
        let keeper = LeaseKeeper::start(&dir, first.clone()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = Lease::read_from(&dir).unwrap().unwrap();
            if now.renewed > first.renewed {
                assert_eq!(now.pid, std::process::id());
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never renewed");
            std::thread::sleep(Duration::from_millis(20));
        }
        keeper.release();
        assert!(!dir.join(LEASE_FILE).exists());
        let keeper = LeaseKeeper::start(&dir, first).unwrap();
        drop(keeper);
        assert!(dir.join(LEASE_FILE).exists(), "kept when dropped");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
