//! The log files Grid Engine writes for a worker job, read back to explain a job
//! that ended before its worker connected.

use crate::batch_system::job::JobId;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The stderr file Grid Engine writes for job `id` named `job_name` into
/// `log_dir` (`qsub -e <log_dir>`): `<log_dir>/<job_name>.e<id>`.
pub fn job_stderr_path(log_dir: &Path, job_name: &str, id: &JobId) -> PathBuf {
    log_dir.join(format!("{job_name}.e{id}"))
}

/// The last `max_bytes` of job `id`'s stderr, trimmed; a sentence saying so when
/// the file is missing or empty (a job that never started writes none).
pub fn job_stderr_tail(log_dir: &Path, job_name: &str, id: &JobId, max_bytes: u64) -> String {
    let path = job_stderr_path(log_dir, job_name, id);
    match read_tail(&path, max_bytes) {
        Ok(text) if text.trim().is_empty() => format!("(stderr {} is empty)", path.display()),
        Ok(text) => text.trim().to_string(),
        Err(e) => format!("(no stderr at {}: {e})", path.display()),
    }
}

fn read_tail(path: &Path, max_bytes: u64) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(max_bytes);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Ok(if start > 0 {
        format!("...{text}")
    } else {
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("gridpipe-joblog-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_the_tail_of_the_jobs_stderr() {
        let dir = temp_dir("tail");
        let id = JobId::new("42");
        std::fs::write(
            job_stderr_path(&dir, "gridpipe-gpu", &id),
            "line one\nerror: cannot connect to 10.0.0.5:8786\n",
        )
        .unwrap();
        assert_eq!(
            job_stderr_tail(&dir, "gridpipe-gpu", &id, 4096),
            "line one\nerror: cannot connect to 10.0.0.5:8786"
        );
        assert_eq!(
            job_stderr_tail(&dir, "gridpipe-gpu", &id, 10),
            "....0.5:8786"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_or_empty_file_is_said_so() {
        let dir = temp_dir("missing");
        let id = JobId::new("7");
        assert!(job_stderr_tail(&dir, "j", &id, 100).starts_with("(no stderr at "));
        std::fs::write(job_stderr_path(&dir, "j", &id), "  \n").unwrap();
        assert!(job_stderr_tail(&dir, "j", &id, 100).contains("is empty"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
