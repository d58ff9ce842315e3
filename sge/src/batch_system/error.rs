//! Errors of job submission, status queries and deletion.

use std::time::Duration;

use thiserror::Error;

/// Why a Grid Engine command (`qsub`, `qstat`, `qdel`) or its output failed.
///
/// Every variant that comes from running a command names the command, so a
/// log line says which step broke.
#[derive(Debug, Error)]
pub enum SgeError {
    /// The command could not be started (not installed, not on `PATH`, ...).
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line that was being started.
        command: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The command did not finish in time and was killed.
    ///
    /// For `qsub` this does not prove that no job was submitted.
    #[error("`{command}` did not finish within {timeout:?} and was killed")]
    Timeout {
        /// The command line.
        command: String,
        /// The time limit that was exceeded.
        timeout: Duration,
    },
    /// The command exited unsuccessfully.
    #[error(
        "`{command}` failed ({}): {}",
        match code { Some(code) => format!("exit code {code}"), None => "killed by a signal".to_owned() },
        if stderr.trim().is_empty() { "no error output" } else { stderr.trim() }
    )]
    CommandFailed {
        /// The command line.
        command: String,
        /// The exit code (`None` when killed by a signal).
        code: Option<i32>,
        /// What the command wrote to standard error.
        stderr: String,
    },
    /// The command succeeded but printed something that could not be understood.
    #[error("`{command}` printed unexpected output ({reason}): {output:?}")]
    UnexpectedOutput {
        /// The command line.
        command: String,
        /// What was expected.
        reason: String,
        /// The output (standard output) that was rejected.
        output: String,
    },
    /// `qstat -xml` output is not well-formed or lacks required elements.
    #[error("cannot parse `qstat -xml` output at byte {position}: {message}")]
    QstatXml {
        /// Byte offset in the output near which the problem was found.
        position: u64,
        /// What was wrong.
        message: String,
    },
    /// A [`crate::JobTemplate`] holds a value that cannot be put in a job script.
    #[error("invalid job template: {0}")]
    InvalidTemplate(String),
    /// A queue's jobs could not be managed (e.g. still listed after deletion).
    #[error("queue {queue}: {message}")]
    Queue {
        /// The queue's label.
        queue: String,
        /// What went wrong.
        message: String,
    },
}

impl SgeError {
    /// The command line this error is about, if it came from running a command.
    pub fn command(&self) -> Option<&str> {
        match self {
            Self::Spawn { command, .. }
            | Self::Timeout { command, .. }
            | Self::CommandFailed { command, .. }
            | Self::UnexpectedOutput { command, .. } => Some(command),
            Self::QstatXml { .. } | Self::InvalidTemplate(_) | Self::Queue { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_failed_names_command_code_and_stderr() {
        let err = SgeError::CommandFailed {
            command: "qsub -terse".into(),
            code: Some(1),
            stderr: "Unable to run job: no suitable queues\n".into(),
        };
        assert_eq!(
            err.to_string(),
            "`qsub -terse` failed (exit code 1): Unable to run job: no suitable queues"
        );
        assert_eq!(err.command(), Some("qsub -terse"));
        let err = SgeError::CommandFailed {
            command: "qdel 1".into(),
            code: None,
            stderr: String::new(),
        };
        assert_eq!(
            err.to_string(),
            "`qdel 1` failed (killed by a signal): no error output"
        );
    }

    #[test]
    fn timeout_and_xml_messages() {
        let err = SgeError::Timeout {
            command: "qstat -xml".into(),
            timeout: Duration::from_secs(30),
        };
        assert_eq!(
            err.to_string(),
            "`qstat -xml` did not finish within 30s and was killed"
        );
        let err = SgeError::QstatXml {
            position: 7,
            message: "bad".into(),
        };
        assert!(err.to_string().contains("byte 7"));
        assert_eq!(err.command(), None);
    }
}
