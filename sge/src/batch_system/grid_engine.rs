//! The real [`BatchSystem`]: Grid Engine's `qsub`, `qstat -xml` and `qdel`.

use crate::batch_system::job_ending::{parse_qacct, JobEnding};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::batch_system::command::{command_line, run, Output};
use crate::batch_system::error::SgeError;
use crate::batch_system::job::{JobId, JobStatus};
use crate::batch_system::qstat::parse_qstat_xml;
use crate::batch_system::BatchSystem;

/// Runs Grid Engine's command-line tools.
///
/// - submit: `qsub -terse` with the job script on standard input (the
///   script's `#$` lines carry every option, so nothing secret or
///   script-specific is on the command line);
/// - status: `qstat -xml` (the calling user's jobs), filtered to the ids
///   asked for; an id absent from the listing is
///   [`crate::JobState::Finished`];
/// - delete: `qdel <id>...`; ids that no longer exist are not an error;
/// - jobs by name: `qstat -xml` (it lists the calling user's jobs only, in
///   every state, `Eqw` included), filtered by the start of the job name.
///
/// Every command is killed after [`SgeCommands::timeout`] (30 s by default)
/// and gives [`SgeError::Timeout`]; a failing command gives
/// [`SgeError::CommandFailed`] with its exit code and standard error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgeCommands {
    /// The `qsub` program (default: `qsub`, looked up on `PATH`).
    pub qsub: PathBuf,
    /// The `qstat` program (default: `qstat`).
    pub qstat: PathBuf,
    /// The `qdel` program (default: `qdel`).
    pub qdel: PathBuf,
    /// The `qacct` program (default: `qacct`).
    pub qacct: PathBuf,
    /// How long one command may run before it is killed.
    pub timeout: Duration,
}

impl Default for SgeCommands {
    fn default() -> Self {
        Self {
            qsub: "qsub".into(),
            qstat: "qstat".into(),
            qdel: "qdel".into(),
            qacct: "qacct".into(),
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

impl SgeCommands {
    /// The default time limit of one command.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// Uses `qsub`, `qstat` and `qdel` from `PATH` with the default timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the time limit of one command.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Uses the given programs instead of `qsub`, `qstat` and `qdel` on `PATH`.
    pub fn with_programs(
        mut self,
        qsub: impl Into<PathBuf>,
        qstat: impl Into<PathBuf>,
        qdel: impl Into<PathBuf>,
    ) -> Self {
        self.qsub = qsub.into();
        self.qstat = qstat.into();
        self.qdel = qdel.into();
        self
    }
}

impl SgeCommands {
    /// Every job of the calling user that `qstat -xml` lists.
    fn listed(&self) -> Result<Vec<JobStatus>, SgeError> {
        let args = vec!["-xml".to_owned()];
        let out = run(&self.qstat, &args, None, self.timeout)?;
        let out = succeeded(command_line(&self.qstat, &args), out)?;
        parse_qstat_xml(&out.stdout)
    }
}

impl BatchSystem for SgeCommands {
    fn submit(&self, _label: &str, script: &str) -> Result<JobId, SgeError> {
        let args = vec!["-terse".to_owned()];
        let out = run(&self.qsub, &args, Some(script), self.timeout)?;
        let command = command_line(&self.qsub, &args);
        let out = succeeded(command.clone(), out)?;
        parse_qsub_output(&out.stdout).ok_or_else(|| SgeError::UnexpectedOutput {
            command,
            reason: "expected a job id".to_owned(),
            output: out.stdout,
        })
    }

    fn status(&self, ids: &[JobId]) -> Result<Vec<JobStatus>, SgeError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut listed: HashMap<JobId, JobStatus> = self
            .listed()?
            .into_iter()
            .map(|status| (status.id.clone(), status))
            .collect();
        Ok(ids
            .iter()
            .map(|id| {
                listed
                    .remove(id)
                    .unwrap_or_else(|| JobStatus::finished(id.clone()))
            })
            .collect())
    }

    fn named(&self, prefix: &str) -> Result<Vec<JobStatus>, SgeError> {
        Ok(self
            .listed()?
            .into_iter()
            .filter(|s| s.name.starts_with(prefix))
            .collect())
    }

    fn delete(&self, ids: &[JobId]) -> Result<(), SgeError> {
        if ids.is_empty() {
            return Ok(());
        }
        let args: Vec<String> = ids.iter().map(|id| id.as_str().to_owned()).collect();
        let out = run(&self.qdel, &args, None, self.timeout)?;
        if out.success() || only_missing_jobs(&out) {
            Ok(())
        } else {
            Err(failed(command_line(&self.qdel, &args), out))
        }
    }

    fn ending(&self, id: &JobId) -> JobEnding {
        let args = vec!["-j".to_owned(), id.as_str().to_owned()];
        match run(&self.qacct, &args, None, self.timeout) {
            Ok(out) if out.success() => parse_qacct(&out.stdout)
                .unwrap_or_else(|| JobEnding::Unknown("qacct printed no `failed` line".into())),
            Ok(out) if format!("{}{}", out.stdout, out.stderr).contains("not found") => {
                JobEnding::NoRecord
            }
            Ok(out) => {
                JobEnding::Unknown(failed(command_line(&self.qacct, &args), out).to_string())
            }
            Err(e) => JobEnding::Unknown(e.to_string()),
        }
    }
}

fn succeeded(command: String, out: Output) -> Result<Output, SgeError> {
    if out.success() {
        Ok(out)
    } else {
        Err(failed(command, out))
    }
}

fn failed(command: String, out: Output) -> SgeError {
    let text = if out.stderr.trim().is_empty() {
        out.stdout
    } else {
        out.stderr
    };
    // Grid Engine's tools end a refusal with a line `Exiting.`, which says nothing.
    let stderr = text
        .lines()
        .filter(|l| l.trim() != "Exiting.")
        .collect::<Vec<_>>()
        .join("\n");
    SgeError::CommandFailed {
        command,
        code: out.code,
        stderr,
    }
}

/// Whether a failed `qdel` only complained about jobs that no longer exist:
/// every line is either such a complaint (`denied: job "9" does not exist`)
/// or a success line (`root has deleted job 2`, `... has registered the job
/// 3 for deletion`, `job 4 is already in deletion`).
fn only_missing_jobs(out: &Output) -> bool {
    let mut missing = false;
    for line in out.stdout.lines().chain(out.stderr.lines()) {
        let line = line.trim();
        if line.contains("does not exist") {
            missing = true;
        } else if !(line.is_empty()
            || line.contains("has deleted job")
            || line.contains("for deletion")
            || line.contains("already in deletion"))
        {
            return false;
        }
    }
    missing && out.code.is_some()
}

/// The job id in `qsub` output: `qsub -terse` prints just the id (`123`, or
/// `123.1-10:1` for an array job, whose id is `123`); without `-terse` it
/// prints `Your job 123 ("name") has been submitted`. Both are accepted.
pub fn parse_qsub_output(stdout: &str) -> Option<JobId> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    for line in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let first = line.split('.').next().unwrap_or_default();
        if digits(first) {
            return Some(JobId::new(first));
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["Your", "job" | "job-array", id, ..] = words.as_slice() {
            let id = id.split('.').next().unwrap_or_default();
            if digits(id) {
                return Some(JobId::new(id));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;
    use crate::batch_system::job::JobState;

    #[test]
    fn parses_terse_and_verbose_qsub_output() {
        assert_eq!(parse_qsub_output("123\n"), Some(JobId::new("123")));
        assert_eq!(parse_qsub_output("  42  "), Some(JobId::new("42")));
        assert_eq!(parse_qsub_output("7.1-10:1\n"), Some(JobId::new("7")));
        assert_eq!(
            parse_qsub_output("Your job 15 (\"gpujob\") has been submitted\n"),
            Some(JobId::new("15"))
        );
        assert_eq!(
            parse_qsub_output("Your job-array 16.1-4:1 (\"arr\") has been submitted\n"),
            Some(JobId::new("16"))
        );
        for bad in [
            "",
            "\n",
            "Unable to run job",
            "12a",
            "Your job x has been submitted",
        ] {
            assert_eq!(parse_qsub_output(bad), None, "{bad:?}");
        }
    }

    /// A directory of fake `qsub`/`qstat`/`qdel` shell scripts.
    struct FakeTools {
        dir: PathBuf,
    }

    impl FakeTools {
        fn new(test: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "gridpipe-sge-{test}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Self { dir }
        }

        fn tool(&self, name: &str, body: &str) -> PathBuf {
            let path = self.dir.join(name);
            fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
            path
        }

        fn commands(&self, qsub: &str, qstat: &str, qdel: &str) -> SgeCommands {
            SgeCommands::new().with_programs(
                self.tool("qsub", qsub),
                self.tool("qstat", qstat),
                self.tool("qdel", qdel),
            )
        }

        fn file(&self, name: &str) -> String {
            fs::read_to_string(self.dir.join(name)).unwrap_or_default()
        }
    }

    impl Drop for FakeTools {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    fn ids(ids: &[&str]) -> Vec<JobId> {
        ids.iter().map(|id| JobId::new(*id)).collect()
    }

    #[test]
    fn submit_passes_script_on_stdin_and_parses_terse_id() {
        let tools = FakeTools::new("submit");
        let dir = tools.dir.display().to_string();
        let sge = tools.commands(
            &format!("echo \"$@\" > '{dir}/args'; cat > '{dir}/script'; echo 77"),
            "",
            "",
        );
        let id = sge.submit("default", "#!/bin/bash\necho hi\n").unwrap();
        assert_eq!(id, JobId::new("77"));
        assert_eq!(tools.file("args"), "-terse\n");
        assert_eq!(tools.file("script"), "#!/bin/bash\necho hi\n");
    }

    #[test]
    fn submit_failure_names_command_code_and_stderr() {
        let tools = FakeTools::new("submit-fail");
        let sge = tools.commands(
            "cat >/dev/null; echo 'Unable to run job: no suitable queues.' >&2; echo Exiting. >&2; exit 1",
            "",
            "",
        );
        match sge.submit("gpu", "x") {
            Err(SgeError::CommandFailed {
                command,
                code,
                stderr,
            }) => {
                assert!(command.ends_with("qsub -terse"), "{command}");
                assert_eq!(code, Some(1));
                assert!(stderr.contains("no suitable queues"), "{stderr}");
                assert!(!stderr.contains("Exiting"), "{stderr}");
            }
            other => panic!("{other:?}"),
        }
        let sge = tools.commands("cat >/dev/null; echo garbage", "", "");
        assert!(matches!(
            sge.submit("gpu", "x"),
            Err(SgeError::UnexpectedOutput { .. })
        ));
    }

    #[test]
    fn status_filters_and_reports_absent_as_finished() {
        let tools = FakeTools::new("status");
        let xml = "<job_info><queue_info><job_list><JB_job_number>5</JB_job_number>\
            <JB_name>w</JB_name><state>r</state><queue_name>q_gpu@vm</queue_name>\
            </job_list></queue_info><job_info><job_list><JB_job_number>6</JB_job_number>\
            <JB_name>w</JB_name><state>Eqw</state><queue_name/></job_list>\
            </job_info></job_info>";
        let sge = tools.commands("", &format!("echo '{xml}'"), "");
        let statuses = sge.status(&ids(&["6", "9", "5"])).unwrap();
        let states: Vec<_> = statuses.iter().map(|s| s.state.clone()).collect();
        assert_eq!(
            states,
            [
                JobState::Failed("Eqw".into()),
                JobState::Finished,
                JobState::Running
            ]
        );
        assert_eq!(statuses[2].queue.as_deref(), Some("q_gpu"));
        assert!(sge.status(&[]).unwrap().is_empty());

        let sge = tools.commands("", "echo '<job_info><job_list>'", "");
        assert!(matches!(
            sge.status(&ids(&["1"])),
            Err(SgeError::QstatXml { .. })
        ));
        let sge = tools.commands("", "echo 'error: commlib error' >&2; exit 1", "");
        let err = sge.status(&ids(&["1"])).unwrap_err();
        assert!(err.to_string().contains("commlib error"), "{err}");
    }

    #[test]
    fn jobs_are_found_and_deleted_by_the_start_of_their_name() {
        let tools = FakeTools::new("named");
        let dir = tools.dir.display().to_string();
        let xml = "<job_info><queue_info><job_list><JB_job_number>5</JB_job_number>\
            <JB_name>gp-1a2b3c4d-default</JB_name><state>r</state><queue_name>q_1day@vm</queue_name>\
            </job_list></queue_info><job_info><job_list><JB_job_number>6</JB_job_number>\
            <JB_name>gp-1a2b3c4d-gpu</JB_name><state>Eqw</state><queue_name/></job_list>\
            <job_list><JB_job_number>7</JB_job_number>\
            <JB_name>gp-ffffffff-default</JB_name><state>qw</state><queue_name/></job_list>\
            </job_info></job_info>";
        let sge = tools.commands(
            "",
            &format!("echo '{xml}'"),
            &format!("echo \"$@\" > '{dir}/args'"),
        );
        let named = sge.named("gp-1a2b3c4d-").unwrap();
        assert_eq!(named.len(), 2);
        assert_eq!(named[1].state, JobState::Failed("Eqw".into()));
        let deleted = sge.delete_named("gp-1a2b3c4d-").unwrap();
        assert_eq!(deleted, ids(&["5", "6"]));
        assert_eq!(tools.file("args"), "5 6\n");
        assert!(sge.delete_named("gp-00000000-").unwrap().is_empty());
    }

    #[test]
    fn delete_tolerates_missing_jobs_only() {
        let tools = FakeTools::new("delete");
        let dir = tools.dir.display().to_string();
        let sge = tools.commands(
            "",
            "",
            &format!(
                "echo \"$@\" > '{dir}/args'; echo 'root has deleted job 2'; \
                 echo 'denied: job \"999\" does not exist' >&2; exit 1"
            ),
        );
        sge.delete(&ids(&["2", "999"])).unwrap();
        assert_eq!(tools.file("args"), "2 999\n");
        sge.delete(&[]).unwrap();

        let sge = tools.commands(
            "",
            "",
            "echo 'error: unable to send message to qmaster' >&2; exit 1",
        );
        let err = sge.delete(&ids(&["2"])).unwrap_err();
        assert!(matches!(err, SgeError::CommandFailed { code: Some(1), .. }));
        assert!(err.to_string().contains("qmaster"), "{err}");
    }

    #[test]
    fn commands_time_out() {
        let tools = FakeTools::new("timeout");
        let sge = tools
            .commands("", "exec sleep 30", "")
            .with_timeout(Duration::from_millis(200));
        let err = sge.status(&ids(&["1"])).unwrap_err();
        assert!(matches!(err, SgeError::Timeout { .. }), "{err}");
        assert!(err.command().unwrap().ends_with("qstat -xml"));
    }

    #[test]
    fn missing_tools_give_spawn_errors() {
        let sge = SgeCommands::new().with_programs(
            Path::new("/nonexistent/qsub"),
            "/nonexistent/qstat",
            "/nonexistent/qdel",
        );
        assert!(matches!(sge.submit("d", "x"), Err(SgeError::Spawn { .. })));
        assert!(matches!(
            sge.delete(&ids(&["1"])),
            Err(SgeError::Spawn { .. })
        ));
        assert_eq!(SgeCommands::new().timeout, Duration::from_secs(30));
    }
}
