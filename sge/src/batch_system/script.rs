//! Job scripts: the text given to `qsub` to start one gridpipe worker.

use std::path::{Path, PathBuf};

use crate::batch_system::error::SgeError;
use crate::spec::queue_spec::QueueSpec;

/// What a worker job needs besides its queue spec.
///
/// The secret is passed as a *file path* only: the secret itself never
/// appears in the script or on a command line (both are visible to other
/// users through `qstat -j`). The file must be readable by the job's user
/// (mode 0600) on a path every exec host shares; so must `program` and
/// `log_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTemplate {
    /// The job name (`qsub -N`). Characters Grid Engine rejects are replaced
    /// by `_`, and a name starting with a digit gets a `j` in front.
    pub name: String,
    /// The worker executable, run with `exec` (the same binary as the client).
    pub program: PathBuf,
    /// The address the worker connects back to, e.g. `10.0.0.5:8786`.
    pub scheduler_addr: String,
    /// The file holding the shared secret (never the secret itself).
    pub secret_file: PathBuf,
    /// Where Grid Engine writes the job's stdout and stderr (`-o`, `-e`);
    /// must exist and be writable by the job's user.
    pub log_dir: PathBuf,
    /// Submit the job on hold (`#$ -h`); it waits until released with `qrls`.
    pub hold: bool,
}

/// The job script starting one worker for queue spec `label`.
///
/// ```text
/// #!/bin/bash
/// #$ -N <name>
/// #$ -q <spec.queue>
/// #$ -l <request>            one line per QueueSpec::qsub_resource_requests()
/// #$ -o <log_dir>
/// #$ -e <log_dir>
/// #$ -S /bin/bash
/// #$ -h                      only if hold
/// export GRIDPIPE_WORKER_CONNECT='<scheduler_addr>'
/// export GRIDPIPE_SECRET_FILE='<secret_file>'
/// export GRIDPIPE_WORKER_RESOURCES='<name=amount,...>'   from spec.resources
/// export GRIDPIPE_WORKER_LABEL='<label>'
/// export GRIDPIPE_WORKER_MEMORY='<bytes>'        only if spec.memory (the fit budget)
/// export GRIDPIPE_WORKER_NAME='sge-<label>-'"$JOB_ID"
/// exec '<program>'
/// ```
///
/// The worker reports Grid Engine's `$QUEUE` (the queue the job runs in) and
/// `$JOB_ID` as its queue and job.
///
/// Values in the shell lines are single-quoted for bash (an embedded `'`
/// becomes `'\''`), so any UTF-8 path works there. The `#$` lines are read
/// by `qsub`, not bash: Grid Engine splits them at whitespace and *drops
/// every quote character* (measured on SGE 8.1.9: `-o "/a/it's"` becomes
/// `/a/its`). So a value with whitespace is written in double quotes, and a
/// `#$` value containing a quote, a backslash or a control character is
/// rejected with [`SgeError::InvalidTemplate`] rather than silently
/// changed. Non-UTF-8 paths are rejected too.
pub fn job_script(label: &str, spec: &QueueSpec, t: &JobTemplate) -> Result<String, SgeError> {
    let log_dir = utf8(&t.log_dir, "log_dir")?;
    let mut script = String::from("#!/bin/bash\n");
    let mut directive = |option: &str, value: &str, what: &str| -> Result<(), SgeError> {
        script.push_str(&format!("#$ {option} {}\n", directive_value(value, what)?));
        Ok(())
    };
    directive("-N", &job_name(&t.name), "name")?;
    directive("-q", &spec.queue, "queue")?;
    for request in spec.qsub_resource_requests() {
        directive("-l", &request, "resource request")?;
    }
    directive("-o", log_dir, "log_dir")?;
    directive("-e", log_dir, "log_dir")?;
    directive("-S", "/bin/bash", "shell")?;
    if t.hold {
        script.push_str("#$ -h\n");
    }
    let resources = spec
        .resources
        .iter()
        .map(|(name, amount)| format!("{name}={amount}"))
        .collect::<Vec<_>>()
        .join(",");
    let exports = [
        ("GRIDPIPE_WORKER_CONNECT", t.scheduler_addr.as_str()),
        ("GRIDPIPE_SECRET_FILE", utf8(&t.secret_file, "secret_file")?),
        ("GRIDPIPE_WORKER_RESOURCES", &resources),
        ("GRIDPIPE_WORKER_LABEL", label),
    ];
    for (name, value) in exports {
        script.push_str(&format!("export {name}={}\n", bash_quote(value)));
    }
    if let Some(memory) = spec.memory {
        script.push_str(&format!(
            "export GRIDPIPE_WORKER_MEMORY={}\n",
            bash_quote(&memory.bytes().to_string())
        ));
    }
    script.push_str(&format!(
        "export GRIDPIPE_WORKER_NAME={}\"$JOB_ID\"\n",
        bash_quote(&format!("sge-{label}-"))
    ));
    script.push_str(&format!(
        "exec {}\n",
        bash_quote(utf8(&t.program, "program")?)
    ));
    Ok(script)
}

/// `value` single-quoted for bash: `it's` becomes `'it'\''s'`.
pub fn bash_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// A job name Grid Engine accepts: characters other than ASCII letters,
/// digits, `_`, `-` and `.` become `_`; a leading digit gets a `j` prefix
/// (SGE: "cannot start with a digit"); an empty name becomes `gridpipe`.
pub fn job_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match cleaned.chars().next() {
        None => "gridpipe".to_owned(),
        Some(c) if c.is_ascii_digit() => format!("j{cleaned}"),
        Some(_) => cleaned,
    }
}

/// A value for a `#$` line: as is, or in double quotes if it has whitespace.
fn directive_value(value: &str, what: &str) -> Result<String, SgeError> {
    if value.is_empty() {
        return Err(SgeError::InvalidTemplate(format!("{what} is empty")));
    }
    if let Some(c) = value
        .chars()
        .find(|c| matches!(c, '"' | '\'' | '\\') || c.is_control())
    {
        return Err(SgeError::InvalidTemplate(format!(
            "{what} {value:?} contains {c:?}, which Grid Engine cannot read in a `#$` line"
        )));
    }
    if value.contains(char::is_whitespace) {
        Ok(format!("\"{value}\""))
    } else {
        Ok(value.to_owned())
    }
}

fn utf8<'a>(path: &'a Path, what: &str) -> Result<&'a str, SgeError> {
    path.to_str().ok_or_else(|| {
        SgeError::InvalidTemplate(format!("{what} {} is not valid UTF-8", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::memory::Memory;

    fn template() -> JobTemplate {
        JobTemplate {
            name: "gridpipe-default".into(),
            program: "/shared/gridpipe/bin/worker".into(),
            scheduler_addr: "10.0.0.5:8786".into(),
            secret_file: "/shared/gridpipe/secret".into(),
            log_dir: "/shared/gridpipe/logs".into(),
            hold: false,
        }
    }

    #[test]
    fn default_spec_script() {
        let spec = QueueSpec::new("q_1day")
            .with_memory(Memory::gib(8))
            .with_io_big(true);
        let expected = r#"#!/bin/bash
#$ -N gridpipe-default
#$ -q q_1day
#$ -l mem_free=8G
#$ -l io_big=TRUE
#$ -o /shared/gridpipe/logs
#$ -e /shared/gridpipe/logs
#$ -S /bin/bash
export GRIDPIPE_WORKER_CONNECT='10.0.0.5:8786'
export GRIDPIPE_SECRET_FILE='/shared/gridpipe/secret'
export GRIDPIPE_WORKER_RESOURCES=''
export GRIDPIPE_WORKER_LABEL='default'
export GRIDPIPE_WORKER_MEMORY='8589934592'
export GRIDPIPE_WORKER_NAME='sge-default-'"$JOB_ID"
exec '/shared/gridpipe/bin/worker'
"#;
        assert_eq!(job_script("default", &spec, &template()).unwrap(), expected);
    }

    #[test]
    fn gpu_spec_script_on_hold() {
        let spec = QueueSpec::new("q_gpu")
            .with_resource_spec("gpu=1")
            .with_resource("gpu", 1)
            .with_resource("ram", 2);
        let t = JobTemplate {
            name: "gridpipe-gpu".into(),
            hold: true,
            ..template()
        };
        let expected = r#"#!/bin/bash
#$ -N gridpipe-gpu
#$ -q q_gpu
#$ -l gpu=1
#$ -o /shared/gridpipe/logs
#$ -e /shared/gridpipe/logs
#$ -S /bin/bash
#$ -h
export GRIDPIPE_WORKER_CONNECT='10.0.0.5:8786'
export GRIDPIPE_SECRET_FILE='/shared/gridpipe/secret'
export GRIDPIPE_WORKER_RESOURCES='gpu=1,ram=2'
export GRIDPIPE_WORKER_LABEL='gpu'
export GRIDPIPE_WORKER_NAME='sge-gpu-'"$JOB_ID"
exec '/shared/gridpipe/bin/worker'
"#;
        assert_eq!(job_script("gpu", &spec, &t).unwrap(), expected);
    }

    #[test]
    fn paths_with_space_and_quote_are_quoted() {
        let t = JobTemplate {
            program: "/opt/my app/it's worker".into(),
            secret_file: "/home/o'neil/.gridpipe secret".into(),
            log_dir: "/shared/log dir".into(),
            ..template()
        };
        let script = job_script("default", &QueueSpec::new("q_1day"), &t).unwrap();
        assert!(
            script.contains("\nexec '/opt/my app/it'\\''s worker'\n"),
            "{script}"
        );
        assert!(
            script.contains("\nexport GRIDPIPE_SECRET_FILE='/home/o'\\''neil/.gridpipe secret'\n"),
            "{script}"
        );
        assert!(script.contains("\n#$ -o \"/shared/log dir\"\n"), "{script}");
        assert!(script.contains("\n#$ -e \"/shared/log dir\"\n"), "{script}");
    }

    #[test]
    fn bash_quote_round_trips_through_bash() {
        for value in [
            "plain",
            "a b",
            "it's",
            "'",
            "''",
            "$HOME `x` \\ \" *",
            "new\nline",
        ] {
            let out = std::process::Command::new("bash")
                .arg("-c")
                .arg(format!("printf %s {}", bash_quote(value)))
                .output()
                .expect("bash runs");
            assert_eq!(String::from_utf8(out.stdout).unwrap(), value);
        }
    }

    #[test]
    fn directive_values_sge_cannot_read_are_rejected() {
        for log_dir in ["/logs/it's", "/logs/\"x\"", "/logs/a\\b", "/logs/a\nb", ""] {
            let t = JobTemplate {
                log_dir: log_dir.into(),
                ..template()
            };
            match job_script("default", &QueueSpec::new("q"), &t) {
                Err(SgeError::InvalidTemplate(msg)) => assert!(msg.contains("log_dir"), "{msg}"),
                other => panic!("{log_dir:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn job_names_are_made_valid() {
        assert_eq!(job_name("gridpipe-gpu"), "gridpipe-gpu");
        assert_eq!(job_name("a b/c:d@e*f?"), "a_b_c_d_e_f_");
        assert_eq!(job_name("1abc"), "j1abc");
        assert_eq!(job_name(""), "gridpipe");
        let t = JobTemplate {
            name: "my job".into(),
            ..template()
        };
        let script = job_script("default", &QueueSpec::new("q"), &t).unwrap();
        assert!(script.contains("\n#$ -N my_job\n"));
    }
}
