//! Running an external command with standard input, a time limit, and
//! captured output (std only, no async runtime).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::batch_system::error::SgeError;

/// Linux's errno for "Text file busy".
const ETXTBSY: i32 = 26;

/// What a finished command printed, and how it ended.
#[derive(Debug)]
pub(crate) struct Output {
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// `program args...` as one string, for error messages.
pub(crate) fn command_line(program: &Path, args: &[String]) -> String {
    std::iter::once(program.display().to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `program args...`, writes `stdin` to it, and waits at most `timeout`.
///
/// On timeout the process is killed and [`SgeError::Timeout`] returned; the
/// threads reading its output are left to end by themselves (a grandchild
/// may still hold the pipes open). A non-zero exit is *not* an error here:
/// callers decide (qdel's "does not exist" is fine).
pub(crate) fn run(
    program: &Path,
    args: &[String],
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<Output, SgeError> {
    let command = command_line(program, args);
    let mut tries = 0;
    let mut child = loop {
        let spawned = Command::new(program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match spawned {
            Ok(child) => break child,
            // "Text file busy": the program was just written and another
            // thread's fork still holds it open for writing; retry briefly.
            Err(err) if err.raw_os_error() == Some(ETXTBSY) && tries < 20 => {
                tries += 1;
                thread::sleep(Duration::from_millis(10));
            }
            Err(source) => return Err(SgeError::Spawn { command, source }),
        }
    };
    if let (Some(mut pipe), Some(input)) = (child.stdin.take(), stdin) {
        let input = input.to_owned();
        // A writer thread: a child that does not read its input must not block us.
        thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SgeError::Timeout { command, timeout });
            }
            Ok(None) => {
                thread::sleep(pause.min(timeout.saturating_sub(start.elapsed())));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(source) => {
                let _ = child.kill();
                return Err(SgeError::Spawn { command, source });
            }
        }
    };
    Ok(Output {
        code: status.code(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["-c".into(), script.into()]
    }

    #[test]
    fn captures_output_code_and_stdin() {
        let out = run(
            Path::new("sh"),
            &sh("cat; echo err >&2; exit 3"),
            Some("hello"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "hello");
        assert_eq!(out.stderr, "err\n");
        assert!(!out.success());
    }

    #[test]
    fn times_out_and_kills() {
        let start = Instant::now();
        let err = run(
            Path::new("sh"),
            &sh("exec sleep 30"),
            None,
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(matches!(err, SgeError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("sh -c exec sleep 30"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn missing_program_is_spawn_error() {
        let err = run(
            Path::new("/nonexistent/qsub"),
            &[],
            None,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, SgeError::Spawn { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/qsub"), "{err}");
    }
}
