//! Job identifiers, states and statuses as reported by Grid Engine.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A Grid Engine job id, such as `"123"`.
///
/// Kept as text: Grid Engine ids are numbers, but array-task ids (`123.4`)
/// and other batch systems' ids are not.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// A job id from its text form.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as text, as passed to `qdel` and shown by `qstat`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<u64> for JobId {
    fn from(id: u64) -> Self {
        Self(id.to_string())
    }
}

impl From<&str> for JobId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

impl From<String> for JobId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

/// Where a job is in its life, simplified from Grid Engine's state codes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobState {
    /// Waiting to be scheduled: queued (`qw`), held (`hqw`, `hRwq`, ...).
    Pending,
    /// Started: running (`r`), being transferred to its host (`t`),
    /// restarted (`Rr`, `Rt`), or suspended while running (`s`, `S`, `T`).
    Running,
    /// No longer known to Grid Engine (done, deleted, or never existed).
    Finished,
    /// In an error state (`Eqw`, ...) and will not run until cleared with
    /// `qmod -cj`; holds the state code (or, for other sources, a reason).
    Failed(String),
}

impl JobState {
    /// Maps a Grid Engine state code (the `<state>` of `qstat -xml`, e.g.
    /// `qw`, `r`, `Eqw`) to a [`JobState`].
    ///
    /// Rules, in order: any `E` (error) gives [`JobState::Failed`] holding
    /// the code; any of `r`, `t`, `s`, `S`, `T` (running, transferring,
    /// suspended) gives [`JobState::Running`]; any of `q`, `w`, `h`
    /// (queued, waiting, held) gives [`JobState::Pending`]. A leading `d`
    /// (deletion requested) and `R` (restarted) do not change the outcome.
    /// An empty or unknown code gives [`JobState::Failed`] naming it, so it
    /// is seen rather than silently waited on.
    pub fn from_sge_code(code: &str) -> Self {
        let code = code.trim();
        let has = |letters: &str| code.chars().any(|c| letters.contains(c));
        if has("E") {
            Self::Failed(code.to_owned())
        } else if has("rtsST") {
            Self::Running
        } else if has("qwh") {
            Self::Pending
        } else {
            Self::Failed(format!("unknown Grid Engine state `{code}`"))
        }
    }

    /// Whether the job is waiting or running (it still occupies a place in
    /// the queue and may still start a worker).
    pub fn is_active(&self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pending => f.write_str("pending"),
            Self::Running => f.write_str("running"),
            Self::Finished => f.write_str("finished"),
            Self::Failed(reason) => write!(f, "failed ({reason})"),
        }
    }
}

/// One job as reported by the batch system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job id.
    pub id: JobId,
    /// The job name (`qsub -N`); empty when unknown (e.g. a finished job).
    pub name: String,
    /// The simplified state.
    pub state: JobState,
    /// The queue the job runs in, without the host (`q_gpu` for
    /// `q_gpu@vm`); `None` while pending or when unknown.
    pub queue: Option<String>,
}

impl JobStatus {
    /// The status of a job the batch system no longer knows: [`JobState::Finished`],
    /// no name, no queue.
    pub fn finished(id: JobId) -> Self {
        Self {
            id,
            name: String::new(),
            state: JobState::Finished,
            queue: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_codes() {
        for code in ["qw", "hqw", "hRwq", "Rq", "dqw", " qw "] {
            assert_eq!(JobState::from_sge_code(code), JobState::Pending, "{code}");
        }
    }

    #[test]
    fn running_codes() {
        for code in ["r", "t", "Rr", "Rt", "dr", "dt", "s", "S", "T", "hr"] {
            assert_eq!(JobState::from_sge_code(code), JobState::Running, "{code}");
        }
    }

    #[test]
    fn error_codes_name_the_state() {
        for code in ["Eqw", "Ehqw", "dEqw", "Er"] {
            assert_eq!(
                JobState::from_sge_code(code),
                JobState::Failed(code.to_owned())
            );
        }
        assert_eq!(JobState::from_sge_code("Eqw").to_string(), "failed (Eqw)");
    }

    #[test]
    fn unknown_codes_fail_visibly() {
        for code in ["", "x", "d"] {
            match JobState::from_sge_code(code) {
                JobState::Failed(reason) => assert!(reason.contains("unknown"), "{reason}"),
                other => panic!("{code}: {other:?}"),
            }
        }
    }

    #[test]
    fn active_and_display() {
        assert!(JobState::Pending.is_active());
        assert!(JobState::Running.is_active());
        assert!(!JobState::Finished.is_active());
        assert!(!JobState::Failed("Eqw".into()).is_active());
        assert_eq!(JobState::Pending.to_string(), "pending");
        assert_eq!(JobState::Finished.to_string(), "finished");
    }

    #[test]
    fn job_id_conversions() {
        assert_eq!(JobId::from(42u64), JobId::new("42"));
        assert_eq!(JobId::from("42").as_str(), "42");
        assert_eq!(JobId::from(String::from("7")).to_string(), "7");
        let status = JobStatus::finished(JobId::from(3u64));
        assert_eq!(status.state, JobState::Finished);
        assert_eq!(status.queue, None);
        assert_eq!(serde_json_like(&JobId::from(5u64)), "\"5\"");
    }

    /// Serializes through TOML's value model to check `#[serde(transparent)]`.
    fn serde_json_like(id: &JobId) -> String {
        toml::Value::try_from(id).unwrap().to_string()
    }
}
