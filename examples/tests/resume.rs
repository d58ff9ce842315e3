//! Kill the checkpoint example with SIGKILL at many points, then finish: the result
//! equals an uninterrupted run's and exactly the samples without a file are computed.

use gridpipe_runtime::checkpoint::store::{probe, Probe};
use gridpipe_runtime::Partitioning;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SAMPLES: usize = 4000;
const PARTITIONS: usize = 40;

fn example(dir: &Path, fresh: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_checkpoint"));
    c.args([
        "--samples",
        &SAMPLES.to_string(),
        "--partitions",
        &PARTITIONS.to_string(),
    ]);
    c.args(["--runs", "1", "--dir", dir.to_str().unwrap()]);
    if fresh {
        c.arg("--fresh");
    }
    c
}

/// The counts and digest of the example's `run 1:` line.
fn parse(out: &str) -> (usize, usize, String) {
    let line = out
        .lines()
        .find(|l| l.starts_with("run 1:"))
        .expect("run line");
    let count = |step: &str| {
        line.split_whitespace()
            .find_map(|w| {
                w.trim_start_matches("steps=[")
                    .strip_prefix(&format!("{step}:computed="))
            })
            .map(|v| v.split(',').next().unwrap().parse().unwrap())
            .unwrap_or(0)
    };
    let digest = line.split("digest=").nth(1).unwrap().trim().to_string();
    (count("my_transformer"), count("my_fit_transformer"), digest)
}

/// Keys with a file, after checking every file is complete and verifies.
fn keys_with_files(dir: &Path) -> BTreeSet<usize> {
    let mut keys = BTreeSet::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p: PathBuf = e.path();
        if p.extension().is_some_and(|x| x == "npy") {
            assert!(
                matches!(probe(&p), Probe::Valid(_)),
                "half-written file {}",
                p.display()
            );
            keys.insert(p.file_stem().unwrap().to_str().unwrap().parse().unwrap());
        }
    }
    keys
}

#[test]
fn killed_runs_resume_with_identical_results_recomputing_only_missing_files() {
    let base = std::env::temp_dir().join(format!("gridpipe-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let reference = example(&base.join("reference"), true).output().unwrap();
    assert!(reference.status.success());
    let (_, _, reference_digest) = parse(&String::from_utf8_lossy(&reference.stdout));

    let dir = base.join("killed");
    let mut seed = Instant::now().elapsed().as_nanos() as u64 | 1;
    let mut kills = 0;
    for attempt in 0..16u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(20 + attempt * 25 + seed % 40);
        let mut child = example(&dir, attempt == 0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        // Whatever the moment, no file is ever half-written.
        keys_with_files(&dir.join("checkpoint_1"));
        let done2 = keys_with_files(&dir.join("checkpoint_2")).len();
        // Stop in the most telling state: the last step part-way through.
        if kills >= 2 && done2 > 0 && done2 < SAMPLES {
            break;
        }
    }
    assert!(kills >= 2, "the example was killed mid-run");

    let files1 = keys_with_files(&dir.join("checkpoint_1"));
    let files2 = keys_with_files(&dir.join("checkpoint_2"));
    let model = dir.join("checkpoint_2/model.msgpack").exists();
    let (mut want1, mut want2) = (0, 0);
    for r in Partitioning::NPartitions(PARTITIONS).ranges(SAMPLES) {
        let missing1 = r.clone().filter(|k| !files1.contains(k)).count();
        let missing2 = r.clone().filter(|k| !files2.contains(k)).count();
        // With the model on disk, a partition whose last step is all on disk skips
        // its first step; without it, the first step feeds the fit, so it runs.
        if model && missing2 == 0 {
            continue;
        }
        want1 += missing1;
        want2 += missing2;
    }
    eprintln!("before the last run: {} + {} files, model={model}, kills={kills}, expecting {want1} + {want2} computed", files1.len(), files2.len());
    let last = example(&dir, false).output().unwrap();
    assert!(last.status.success());
    let (got1, got2, digest) = parse(&String::from_utf8_lossy(&last.stdout));
    assert_eq!(
        digest, reference_digest,
        "same result as an uninterrupted run"
    );
    assert_eq!(
        (got1, got2),
        (want1, want2),
        "recomputed exactly the samples without a file"
    );
    assert_eq!(keys_with_files(&dir.join("checkpoint_2")).len(), SAMPLES);
    let _ = std::fs::remove_dir_all(&base);
}
