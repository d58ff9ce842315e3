//! The manifest of a `features_dir`: what produced its files, so that a changed
//! configuration is noticed instead of silently mixing old and new features.

use super::lineage::estimator_hash;
use super::store::write_atomic;
use super::{CheckpointError, OnChange};
use crate::estimator::Estimator;
use crate::plan::OpKind;
use crate::step::Step;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Version of the checkpoint layout and file formats (2: manifests record the
/// operation and the upstream steps' hash).
pub const FORMAT_VERSION: u32 = 2;

/// The manifest's file name inside a `features_dir`.
pub const MANIFEST_FILE: &str = "gridpipe-manifest.msgpack";

/// What produced the files of a `features_dir`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The step's name.
    pub step: String,
    /// The estimator's type name.
    pub estimator: String,
    /// Hash of the unfitted estimator's parameters.
    pub parameters: String,
    /// Hash of the fitted model (equal to `parameters` for stateless steps).
    pub model: String,
    /// `transform` or `predict`: what the files hold (empty in format 1).
    #[serde(default)]
    pub operation: String,
    /// Hash of everything upstream that shaped the step's input
    /// ([`super::lineage::upstream_hash`]; empty in format 1).
    #[serde(default)]
    pub upstream: String,
    /// The input attribute.
    pub input: String,
    /// The output attribute.
    pub output: String,
    /// Extra transform arguments.
    pub transform_extra: Vec<(String, String)>,
    /// Bucket count of the file layout.
    pub hash_buckets: Option<u32>,
}

impl Manifest {
    /// The manifest of `step` applied (`kind`) with `model` to the output of an
    /// upstream whose hash is `upstream`.
    pub fn of(step: &Step, model: &dyn Estimator, kind: OpKind, upstream: &str) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            step: step.name.clone(),
            estimator: step.estimator.typetag_name().to_string(),
            parameters: estimator_hash(step.estimator.as_ref()),
            model: estimator_hash(model),
            operation: match kind {
                OpKind::Transform => "transform",
                OpKind::Predict => "predict",
            }
            .to_string(),
            upstream: upstream.to_string(),
            input: step.input.clone(),
            output: step.output.clone(),
            transform_extra: step.transform_extra.clone(),
            hash_buckets: step.checkpoint.as_ref().and_then(|c| c.hash_buckets),
        }
    }

    /// The fields that differ from `other`, named.
    pub fn differences(&self, other: &Manifest) -> Vec<String> {
        let mut d = Vec::new();
        let mut check = |name: &str, a: String, b: String| {
            if a != b {
                d.push(format!("{name}: {a} -> {b}"));
            }
        };
        check(
            "format version",
            self.format_version.to_string(),
            other.format_version.to_string(),
        );
        check("step", self.step.clone(), other.step.clone());
        check("estimator", self.estimator.clone(), other.estimator.clone());
        check(
            "parameters hash",
            self.parameters.clone(),
            other.parameters.clone(),
        );
        check("fitted model hash", self.model.clone(), other.model.clone());
        check("operation", self.operation.clone(), other.operation.clone());
        check(
            "upstream steps hash",
            self.upstream.clone(),
            other.upstream.clone(),
        );
        check("input", self.input.clone(), other.input.clone());
        check("output", self.output.clone(), other.output.clone());
        check(
            "transform extra",
            format!("{:?}", self.transform_extra),
            format!("{:?}", other.transform_extra),
        );
        check(
            "hash buckets",
            format!("{:?}", self.hash_buckets),
            format!("{:?}", other.hash_buckets),
        );
        d
    }
}

/// A fresh name beside `dir` for its replaced contents (unique within the
/// process, so a second replacement never meets a first still being removed).
fn aside_name(dir: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.with_extension(format!("replaced-{}-{n}", std::process::id()))
}

/// Removes replaced checkpoints on a thread of their own: a folder of a million
/// files takes seconds to delete, and the caller is the scheduler's event loop.
fn remove_in_background(aside: PathBuf) {
    let remove = |path: &Path| {
        if let Err(e) = std::fs::remove_dir_all(path) {
            tracing::warn!(path = %path.display(), %e, "could not remove replaced checkpoints");
        }
    };
    let spawned = std::thread::Builder::new()
        .name("gridpipe-remove-replaced".into())
        .spawn({
            let aside = aside.clone();
            move || remove(&aside)
        });
    if spawned.is_err() {
        remove(&aside);
    }
}

/// Checks `dir`'s manifest against `wanted` and writes it when absent. Returns
/// whether every sample must be recomputed (the configuration changed and
/// `on_change` says recompute).
pub fn ensure(dir: &Path, wanted: &Manifest, on_change: OnChange) -> Result<bool, CheckpointError> {
    let path = dir.join(MANIFEST_FILE);
    let existing = match std::fs::read(&path) {
        Ok(bytes) => match rmp_serde::from_slice::<Manifest>(&bytes) {
            Ok(m) => Some(m),
            Err(e) => {
                return Err(CheckpointError::Invalid {
                    path: path.display().to_string(),
                    reason: format!("unreadable manifest: {e}"),
                })
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(CheckpointError::io("reading", &path, e)),
    };
    let write = || {
        let bytes = rmp_serde::to_vec_named(wanted).expect("manifest serialises");
        write_atomic(&path, bytes)
    };
    match existing {
        None => {
            std::fs::create_dir_all(dir).map_err(|e| CheckpointError::io("creating", dir, e))?;
            write()?;
            Ok(false)
        }
        Some(m) if m == *wanted => Ok(false),
        Some(m) => {
            let differences = m.differences(wanted).join("; ");
            match on_change {
                OnChange::Refuse => Err(CheckpointError::Changed {
                    step: wanted.step.clone(),
                    dir: dir.display().to_string(),
                    differences,
                }),
                OnChange::Recompute => {
                    tracing::warn!(step = %wanted.step, %differences, "configuration changed: recomputing every sample");
                    // Move the old files out of the way first, so that a crash can
                    // never leave old features under the new manifest.
                    let aside = aside_name(dir);
                    std::fs::rename(dir, &aside)
                        .map_err(|e| CheckpointError::io("moving aside", dir, e))?;
                    std::fs::create_dir_all(dir)
                        .map_err(|e| CheckpointError::io("creating", dir, e))?;
                    write()?;
                    remove_in_background(aside);
                    Ok(true)
                }
            }
        }
    }
}
