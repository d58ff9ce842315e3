//! A worker started by hand, on any host that reaches the scheduler:
//! `PROGRAM --scheduler ADDR --secret-file FILE [--resources gpu=1] [--name NAME]`.
//! `--scheduler` must come first, so an application's own command line is never
//! mistaken for a worker's. The flags override the `GRIDPIPE_*` environment.

use super::worker_process::parse_resources;
use crate::resources::Resources;
use std::path::PathBuf;

/// A worker's settings from its command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerArgs {
    /// The scheduler's address (`host:port`).
    pub scheduler: String,
    /// The file holding the cluster's secret (mode 0600), if given.
    pub secret_file: Option<PathBuf>,
    /// What the worker offers, if given.
    pub resources: Option<Resources>,
    /// The worker's name, if given.
    pub name: Option<String>,
}

/// The usage line of the worker's command line.
pub const WORKER_USAGE: &str =
    "--scheduler ADDR --secret-file FILE [--resources name=amount,..] [--name NAME]";

/// Parses a command line (without the program name): `None` when it does not
/// start with `--scheduler` (not a worker's), else the settings or an error naming
/// the flag at fault.
pub fn parse_worker_args(args: &[String]) -> Option<Result<WorkerArgs, String>> {
    let first = args.first()?;
    if first != "--scheduler" && !first.starts_with("--scheduler=") {
        return None;
    }
    Some(parse_all(args))
}

fn parse_all(args: &[String]) -> Result<WorkerArgs, String> {
    let mut out = WorkerArgs {
        scheduler: String::new(),
        secret_file: None,
        resources: None,
        name: None,
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            inline
                .clone()
                .or_else(|| rest.next().cloned())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{flag} needs a value (usage: {WORKER_USAGE})"))
        };
        match flag {
            "--scheduler" => out.scheduler = value()?,
            "--secret-file" => out.secret_file = Some(PathBuf::from(value()?)),
            "--resources" => out.resources = Some(parse_resources(&value()?)?),
            "--name" => out.name = Some(value()?),
            other => {
                return Err(format!(
                    "unknown worker option {other:?} (usage: {WORKER_USAGE})"
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn a_worker_command_line_starts_with_scheduler_and_names_what_is_wrong() {
        assert_eq!(parse_worker_args(&args("--port 80")), None);
        assert_eq!(parse_worker_args(&[]), None);
        assert_eq!(parse_worker_args(&args("serve --scheduler x:1")), None);
        let full = parse_worker_args(&args(
            "--scheduler 10.0.0.1:8786 --secret-file /s --resources gpu=1,io_big=2 --name w1",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(full.scheduler, "10.0.0.1:8786");
        assert_eq!(full.secret_file, Some(PathBuf::from("/s")));
        assert_eq!(
            full.resources,
            Some(Resources::one("gpu", 1).with("io_big", 2))
        );
        assert_eq!(full.name.as_deref(), Some("w1"));
        let inline = parse_worker_args(&args("--scheduler=h:1 --secret-file=/s"))
            .unwrap()
            .unwrap();
        assert_eq!((inline.scheduler.as_str(), inline.resources), ("h:1", None));
        let e = parse_worker_args(&args("--scheduler h:1 --secret /s"))
            .unwrap()
            .unwrap_err();
        assert!(
            e.contains("\"--secret\"") && e.contains("--secret-file FILE"),
            "{e}"
        );
        let e = parse_worker_args(&args("--scheduler h:1 --resources"))
            .unwrap()
            .unwrap_err();
        assert!(e.contains("--resources needs a value"), "{e}");
        let e = parse_worker_args(&args("--scheduler h:1 --resources gpu"))
            .unwrap()
            .unwrap_err();
        assert!(e.contains("name=amount"), "{e}");
    }
}
