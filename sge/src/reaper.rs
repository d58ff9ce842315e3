//! At a cluster's start: finds the clusters of the same work root whose lease
//! is dead (their program was killed, or its host went down) and deletes
//! their jobs by name, so that no job outlives its program for longer than
//! the next start.

use crate::batch_system::BatchSystem;
use crate::lease::{process_start, Lease, LEASE_FILE, REAPED_FILE};
use crate::lease_policy::{lease_verdict, LeaseVerdict, ProcessSeen};
use std::path::{Path, PathBuf};

/// One dead cluster found at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reaped {
    /// The dead cluster's folder.
    pub dir: PathBuf,
    /// Why its lease is dead.
    pub reason: String,
    /// How many of its jobs were deleted (`None`: the deletion failed, the
    /// lease is kept for the next start).
    pub deleted: Option<usize>,
}

/// What this host sees of process `pid` now.
pub fn process_seen(pid: u32) -> ProcessSeen {
    if Path::new(&format!("/proc/{pid}")).exists() {
        ProcessSeen::Running {
            start: process_start(pid),
        }
    } else {
        ProcessSeen::Gone
    }
}

/// Scans `root`'s `cluster-*` folders for dead leases (as seen from `host` at
/// `now`) and deletes each dead cluster's jobs by name through `backend`,
/// logging how many. A reaped folder keeps its logs; its lease becomes
/// `lease.reaped` (with the reason) and its secret file is removed. A lease
/// that cannot be read is logged and left alone.
pub fn reap_dead_clusters(
    root: &Path,
    host: &str,
    now: u64,
    backend: &dyn BatchSystem,
) -> Vec<Reaped> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut folders: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("cluster-"))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    folders.sort();
    let mut reaped = Vec::new();
    for dir in folders {
        let lease = match Lease::read_from(&dir) {
            Ok(Ok(lease)) => lease,
            Ok(Err(problem)) => {
                tracing::warn!(lease = %dir.join(LEASE_FILE).display(), %problem, "cannot read a cluster's lease; its jobs are left alone");
                continue;
            }
            Err(_) => continue, // no lease: closed cleanly, or reaped already
        };
        let LeaseVerdict::Dead(reason) = lease_verdict(&lease, host, now, process_seen(lease.pid))
        else {
            continue;
        };
        let deleted = match backend.delete_named(&lease.job_prefix) {
            Ok(ids) => {
                tracing::info!(dir = %dir.display(), %reason, jobs = ids.len(), prefix = %lease.job_prefix, "deleted the jobs of a dead cluster");
                mark_reaped(&dir, &reason);
                Some(ids.len())
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), %reason, error = %e, "cannot delete the jobs of a dead cluster; trying again at the next start");
                None
            }
        };
        reaped.push(Reaped {
            dir,
            reason,
            deleted,
        });
    }
    reaped
}

fn mark_reaped(dir: &Path, reason: &str) {
    let lease = dir.join(LEASE_FILE);
    let text = std::fs::read_to_string(&lease).unwrap_or_default();
    let marked = format!(
        "{text}reaped={}\nreason={reason}\n",
        crate::lease::unix_now()
    );
    if std::fs::write(dir.join(REAPED_FILE), marked).is_ok() {
        let _ = std::fs::remove_file(&lease);
    }
    let _ = std::fs::remove_file(dir.join("secret"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch_system::fake::FakeBatchSystem;
    use crate::lease::unix_now;
    use std::time::Duration;

    fn root(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("gridpipe-reaper-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A cluster folder in `root` with a lease of `pid` and jobs named `prefix`.
    fn cluster(root: &Path, id: &str, pid: u32, start: Option<u64>) -> (PathBuf, String) {
        let dir = root.join(format!("cluster-{id}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("secret"), "x").unwrap();
        let prefix = format!("gridpipe-{id}-");
        let lease = Lease {
            pid,
            host: "vm".into(),
            pid_start: start,
            started: unix_now(),
            renewed: unix_now(),
            renew_every: Duration::from_secs(10),
            job_prefix: prefix.clone(),
        };
        lease.write_to(&dir).unwrap();
        (dir, prefix)
    }

    #[test]
    fn the_jobs_of_a_dead_cluster_are_deleted_and_a_live_ones_kept() {
        let root = root("dead");
        let fake = FakeBatchSystem::new();
        // A pid that is no process: the cluster's program was killed.
        let (dead_dir, dead) = cluster(&root, "deadbeef", u32::MAX - 1, Some(1));
        let me = std::process::id();
        let (live_dir, live) = cluster(&root, "a1a1a1a1", me, process_start(me));
        let mut doomed = Vec::new();
        for _ in 0..3 {
            doomed.push(
                fake.submit("default", &format!("#$ -N {dead}default\n"))
                    .unwrap(),
            );
        }
        fake.set_state(&doomed[0], crate::JobState::Running);
        fake.set_state(&doomed[1], crate::JobState::Failed("Eqw".into()));
        let kept = fake
            .submit("default", &format!("#$ -N {live}default\n"))
            .unwrap();
        let reaped = reap_dead_clusters(&root, "vm", unix_now(), &fake);
        assert_eq!(reaped.len(), 1, "{reaped:?}");
        assert_eq!(reaped[0].dir, dead_dir);
        assert_eq!(reaped[0].deleted, Some(3));
        assert!(reaped[0].reason.contains("gone"), "{}", reaped[0].reason);
        assert_eq!(fake.deleted(), doomed);
        assert_eq!(fake.active_jobs().len(), 1);
        assert_eq!(fake.active_jobs()[0].id, kept);
        assert!(!dead_dir.join(LEASE_FILE).exists());
        assert!(!dead_dir.join("secret").exists());
        let mark = std::fs::read_to_string(dead_dir.join(REAPED_FILE)).unwrap();
        assert!(mark.contains("reason=process"), "{mark}");
        assert!(live_dir.join(LEASE_FILE).exists());
        // Reaped once: the next start finds nothing more to do.
        assert!(reap_dead_clusters(&root, "vm", unix_now(), &fake).is_empty());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_reused_pid_does_not_keep_a_dead_cluster_alive() {
        let root = root("reused");
        let fake = FakeBatchSystem::new();
        let me = std::process::id();
        let start = process_start(me).unwrap();
        let (_, prefix) = cluster(&root, "b2b2b2b2", me, Some(start + 1));
        fake.submit("default", &format!("#$ -N {prefix}default\n"))
            .unwrap();
        let reaped = reap_dead_clusters(&root, "vm", unix_now(), &fake);
        assert_eq!(reaped.len(), 1);
        assert!(
            reaped[0].reason.contains("another process"),
            "{}",
            reaped[0].reason
        );
        assert!(fake.active_jobs().is_empty());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_damaged_lease_leaves_every_job_alone() {
        let root = root("damaged");
        let fake = FakeBatchSystem::new();
        let dir = root.join("cluster-c3c3c3c3");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(LEASE_FILE), "pid=1\nhost=vm\njob_prefix=\n").unwrap();
        fake.submit("default", "#$ -N anything\n").unwrap();
        assert!(reap_dead_clusters(&root, "vm", unix_now(), &fake).is_empty());
        assert_eq!(fake.active_jobs().len(), 1);
        let _ = std::fs::remove_dir_all(&root);
    }
}
