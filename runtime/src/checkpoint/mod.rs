//! Checkpoints: per-sample feature files and fitted models on disk, trusted only
//! when they verify, written atomically, and resumable.
//!
//! Layout of a checkpointed step's `features_dir`:
//!
//! ```text
//! <features_dir>/gridpipe-manifest.msgpack   what produced the files (rmp-serde)
//! <features_dir>/[<bucket>/]<key>.npy        one numpy file per sample, checksum in its header
//! ```
//!
//! and of its model: `<model_path>` (a checksummed rmp-serde file with the model's
//! provenance; see [`model`]). Both record the step's lineage ([`lineage`]): a
//! checkpoint is reused only when the step and everything upstream of it are
//! unchanged.

pub mod decide;
pub mod hash;
pub mod lineage;
pub mod lock;
pub mod manifest;
pub mod model;
pub mod npy;
pub mod paths;
pub mod store;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What to do when a `features_dir` was produced by a different configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnChange {
    /// Refuse with an error that names the step and the difference (the default).
    #[default]
    Refuse,
    /// Recompute every sample and record the new configuration.
    Recompute,
}

/// Checkpointing of one step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Where the step's per-sample outputs go (one `.npy` file per sample).
    pub features_dir: Option<PathBuf>,
    /// Where the step's fitted model goes (fitted steps only).
    pub model_path: Option<PathBuf>,
    /// Spread files over this many sub-folders by a hash of the key.
    pub hash_buckets: Option<u32>,
    /// Recompute everything, ignoring existing files.
    pub force: bool,
    /// What to do when the existing files were made by another configuration.
    pub on_change: OnChange,
}

impl Checkpoint {
    /// Features (and no model) in `dir`.
    pub fn features(dir: impl Into<PathBuf>) -> Self {
        Self {
            features_dir: Some(dir.into()),
            ..Self::default()
        }
    }

    /// Adds a model file.
    pub fn model(mut self, path: impl Into<PathBuf>) -> Self {
        self.model_path = Some(path.into());
        self
    }

    /// Buckets files into `n` sub-folders.
    pub fn buckets(mut self, n: u32) -> Self {
        self.hash_buckets = Some(n.max(1));
        self
    }

    /// Recomputes everything.
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Sets what happens on a changed configuration.
    pub fn on_change(mut self, on_change: OnChange) -> Self {
        self.on_change = on_change;
        self
    }
}

/// A checkpoint could not be used or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A sample key cannot name a file safely.
    #[error("sample key {key:?} cannot name a checkpoint file: {reason}")]
    BadKey {
        /// The key.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// The files in a folder were made by another configuration.
    #[error("step {step:?}: checkpoints in {dir} were made by a different configuration ({differences}); remove the folder or choose OnChange::Recompute")]
    Changed {
        /// The step.
        step: String,
        /// The folder.
        dir: String,
        /// What differs.
        differences: String,
    },
    /// A saved model was fitted as another configuration (or upstream).
    #[error("step {step:?}: the model saved in {path} was fitted as a different configuration ({differences}); remove the file or choose OnChange::Recompute")]
    ModelChanged {
        /// The step.
        step: String,
        /// The model file.
        path: String,
        /// What differs.
        differences: String,
    },
    /// A checkpointed step's upstream is not known: a step before it has no
    /// model (a broken invariant of the run).
    #[error(
        "step {step:?}: a step before it has no model, so its checkpoint's lineage is unknown"
    )]
    UpstreamUnknown {
        /// The step.
        step: String,
    },
    /// The thread deciding a stage's checkpoints ended without an answer.
    #[error("deciding the checkpoints of a stage failed: {reason}")]
    Decision {
        /// Why.
        reason: String,
    },
    /// Another run of another configuration holds the features folder.
    #[error("step {step:?}: features folder {dir} is in use by a run of another configuration: {holders}; wait for it to end or choose another folder")]
    Locked {
        /// The step.
        step: String,
        /// The folder.
        dir: String,
        /// Who holds it (host, pid, since when).
        holders: String,
    },
    /// Reading or writing failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was done.
        what: &'static str,
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A file is not what it should be.
    #[error("checkpoint {path} is invalid: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

impl CheckpointError {
    pub(crate) fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.display().to_string(),
            source,
        }
    }
}
