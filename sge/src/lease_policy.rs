//! Is a cluster's lease dead? A pure decision over what the lease says and
//! what this host sees now.
//!
//! - On the lease's own host, the owner is dead when its pid is gone, or when
//!   the pid now belongs to a process that started at another time (a reused
//!   pid). A live owner is alive however old its lease: a stopped or busy
//!   program must not lose its jobs.
//! - On another host, the process cannot be seen: the lease is dead when it
//!   was not renewed for [`MISSED_RENEWALS`] renewal intervals plus
//!   [`CLOCK_SLACK`] (clocks of two hosts may differ a little).

use crate::lease::Lease;
use std::time::Duration;

/// How many renewals a lease on another host may miss before it is dead.
pub const MISSED_RENEWALS: u32 = 3;
/// Added to the missed renewals for clocks that differ between hosts.
pub const CLOCK_SLACK: Duration = Duration::from_secs(30);

/// What this host sees of the lease's process (only asked on the lease's host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessSeen {
    /// No process has that pid.
    Gone,
    /// A process has that pid; when it started, if readable.
    Running {
        /// Its start (clock ticks since boot).
        start: Option<u64>,
    },
}

/// Whether a lease's owner still lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseVerdict {
    /// The owner lives (or may): leave its jobs alone.
    Alive,
    /// The owner is dead; why.
    Dead(String),
}

/// The verdict on `lease`, read on host `host` at `now` (seconds since the
/// Unix epoch), where `seen` is what this host sees of the lease's pid.
pub fn lease_verdict(lease: &Lease, host: &str, now: u64, seen: ProcessSeen) -> LeaseVerdict {
    if lease.host == host {
        return match seen {
            ProcessSeen::Gone => {
                LeaseVerdict::Dead(format!("process {} on {host} is gone", lease.pid))
            }
            ProcessSeen::Running { start: Some(start) }
                if lease.pid_start.is_some_and(|s| s != start) =>
            {
                LeaseVerdict::Dead(format!(
                    "pid {} on {host} now belongs to another process",
                    lease.pid
                ))
            }
            ProcessSeen::Running { .. } => LeaseVerdict::Alive,
        };
    }
    let age = Duration::from_secs(now.saturating_sub(lease.renewed));
    let limit = lease.renew_every * MISSED_RENEWALS + CLOCK_SLACK;
    if age > limit {
        LeaseVerdict::Dead(format!(
            "not renewed for {} s (renewed every {} s) by process {} on {}",
            age.as_secs(),
            lease.renew_every.as_secs_f64(),
            lease.pid,
            lease.host
        ))
    } else {
        LeaseVerdict::Alive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease() -> Lease {
        Lease {
            pid: 4242,
            host: "vm".into(),
            pid_start: Some(500),
            started: 1000,
            renewed: 2000,
            renew_every: Duration::from_secs(10),
            job_prefix: "gridpipe-1a2b3c4d-".into(),
        }
    }

    fn dead(v: LeaseVerdict) -> String {
        match v {
            LeaseVerdict::Dead(why) => why,
            LeaseVerdict::Alive => panic!("alive"),
        }
    }

    #[test]
    fn on_its_host_a_gone_pid_is_dead() {
        let why = dead(lease_verdict(&lease(), "vm", 2001, ProcessSeen::Gone));
        assert!(why.contains("4242") && why.contains("gone"), "{why}");
    }

    #[test]
    fn on_its_host_a_reused_pid_is_dead() {
        let seen = ProcessSeen::Running { start: Some(900) };
        let why = dead(lease_verdict(&lease(), "vm", 2001, seen));
        assert!(why.contains("another process"), "{why}");
    }

    #[test]
    fn on_its_host_a_live_owner_is_alive_however_old_its_lease() {
        let seen = ProcessSeen::Running { start: Some(500) };
        assert_eq!(
            lease_verdict(&lease(), "vm", 2001, seen),
            LeaseVerdict::Alive
        );
        assert_eq!(
            lease_verdict(&lease(), "vm", 99_999, seen),
            LeaseVerdict::Alive
        );
        // A start time that cannot be read (on either side) is not proof of reuse.
        let unknown = ProcessSeen::Running { start: None };
        assert_eq!(
            lease_verdict(&lease(), "vm", 2001, unknown),
            LeaseVerdict::Alive
        );
        let no_start = Lease {
            pid_start: None,
            ..lease()
        };
        let other = ProcessSeen::Running { start: Some(900) };
        assert_eq!(
            lease_verdict(&no_start, "vm", 2001, other),
            LeaseVerdict::Alive
        );
    }

    #[test]
    fn on_another_host_only_a_stale_lease_is_dead() {
        // 3 renewals of 10 s + 30 s slack = 60 s.
        let fresh = 2000 + 60;
        for seen in [ProcessSeen::Gone, ProcessSeen::Running { start: Some(1) }] {
            assert_eq!(
                lease_verdict(&lease(), "node7", fresh, seen),
                LeaseVerdict::Alive
            );
            let why = dead(lease_verdict(&lease(), "node7", fresh + 1, seen));
            assert!(
                why.contains("not renewed for 61 s") && why.contains("vm"),
                "{why}"
            );
        }
        // A clock behind the lease's is not staleness.
        assert_eq!(
            lease_verdict(&lease(), "node7", 10, ProcessSeen::Gone),
            LeaseVerdict::Alive
        );
    }
}
