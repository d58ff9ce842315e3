//! How a job ended, from the batch system's accounting, and whether a job that
//! ended before its worker connected counts against its queue.
//!
//! Only a job that ran and failed on its own says something about the queue (a
//! wrong program, a missing library). A job deleted before it ran, or killed by
//! the batch system while it started (an operator's `qdel`, a preemption), says
//! nothing: it is replaced and not counted, so deleting starting jobs never gets
//! a queue given up.

use std::time::Duration;

/// What the batch system's accounting says of an ended job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobEnding {
    /// No record (yet): accounting is written some time after a job ends, and a
    /// job deleted before it ran never gets one.
    NoRecord,
    /// The batch system killed it (`qacct`: `failed 100 : assumedly after job`,
    /// what `qdel` of a running job gives).
    Killed,
    /// It ended by itself (`failed` is Grid Engine's failure code, 0 when the
    /// job's program ran and exited with `exit_status`).
    Exited {
        /// Grid Engine's failure code.
        failed: u32,
        /// The exit status.
        exit_status: i32,
    },
    /// The accounting could not be read (no `qacct`, no accounting file).
    Unknown(String),
}

/// Parses `qacct -j <id>` output; `None` when it holds no `failed` line.
pub fn parse_qacct(text: &str) -> Option<JobEnding> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?;
            rest.split_whitespace().next().map(str::to_string)
        })
    };
    let failed: u32 = field("failed")?.parse().ok()?;
    let exit_status: i32 = field("exit_status")
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1);
    Some(if failed == 100 {
        JobEnding::Killed
    } else {
        JobEnding::Exited {
            failed,
            exit_status,
        }
    })
}

/// What a job that ended before its worker connected means for its queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartVerdict {
    /// It ran and failed on its own: counts towards giving the queue up.
    Failed,
    /// Deleted before it ran, or killed by the batch system: replaced, not counted.
    Deleted,
    /// Its accounting is not written yet: ask again at the next poll.
    Wait,
}

/// How long to wait for an ended job's accounting before counting it anyway
/// (Grid Engine writes accounting every `flush_time`, 15 s by default).
pub const ACCOUNTING_GRACE: Duration = Duration::from_secs(30);

/// The verdict on a job that ended before its worker connected: `ran` says
/// whether it started (Grid Engine created its stderr file), `waited` how long
/// since it was seen gone.
pub fn start_verdict(ran: bool, ending: &JobEnding, waited: Duration) -> StartVerdict {
    match ending {
        JobEnding::Killed => StartVerdict::Deleted,
        JobEnding::Exited { .. } => StartVerdict::Failed,
        // Never started, so never accounted: deleted while pending.
        JobEnding::NoRecord if !ran => StartVerdict::Deleted,
        JobEnding::NoRecord if waited < ACCOUNTING_GRACE => StartVerdict::Wait,
        // No accounting to tell: count it, so a broken queue is still given up.
        JobEnding::NoRecord | JobEnding::Unknown(_) => StartVerdict::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qacct_says_killed_or_exited() {
        let killed = "qname        q_1day\nfailed       100 : assumedly after job\nexit_status  137                  (Killed)\n";
        assert_eq!(parse_qacct(killed), Some(JobEnding::Killed));
        let exited = "failed       0    \nexit_status  3                   \n";
        assert_eq!(
            parse_qacct(exited),
            Some(JobEnding::Exited {
                failed: 0,
                exit_status: 3
            })
        );
        assert_eq!(parse_qacct("error: job id 230 not found"), None);
    }

    #[test]
    fn only_a_job_that_ran_and_failed_on_its_own_counts() {
        let soon = Duration::from_secs(1);
        let late = ACCOUNTING_GRACE + soon;
        let exited = JobEnding::Exited {
            failed: 0,
            exit_status: 1,
        };
        assert_eq!(
            start_verdict(false, &JobEnding::NoRecord, soon),
            StartVerdict::Deleted
        );
        assert_eq!(
            start_verdict(true, &JobEnding::Killed, soon),
            StartVerdict::Deleted
        );
        assert_eq!(start_verdict(true, &exited, soon), StartVerdict::Failed);
        assert_eq!(
            start_verdict(true, &JobEnding::NoRecord, soon),
            StartVerdict::Wait
        );
        assert_eq!(
            start_verdict(true, &JobEnding::NoRecord, late),
            StartVerdict::Failed
        );
        let unknown = JobEnding::Unknown("no qacct".into());
        assert_eq!(start_verdict(true, &unknown, soon), StartVerdict::Failed);
    }
}
