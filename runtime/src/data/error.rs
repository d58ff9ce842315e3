//! The data layer's errors: building or reading batches, loading lazy values.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A lazily loaded value could not be loaded.
#[derive(Clone, Debug, Error, PartialEq, Serialize, Deserialize)]
#[error("load failed: {0}")]
pub struct LoadError(pub String);

impl LoadError {
    /// A load error with a message that names what failed.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Building or reading a batch of samples failed.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum DataError {
    /// Samples of one partition must share one data shape so they form a contiguous batch.
    #[error("sample {key:?} has {what} shape {found:?}, but the partition's first sample has {expected:?}")]
    ShapeMismatch {
        /// The offending sample.
        key: String,
        /// Which array (`data` or an attribute name).
        what: String,
        /// The shape seen first in the partition.
        expected: Vec<usize>,
        /// The shape of the offending sample.
        found: Vec<usize>,
    },
    /// Samples of one partition must have the same attribute names.
    #[error(
        "sample {key:?} lacks attribute {attribute:?} that other samples of its partition have"
    )]
    MissingAttribute {
        /// The offending sample.
        key: String,
        /// The attribute it lacks.
        attribute: String,
    },
    /// A step asked for an attribute that the samples do not have.
    #[error("step {step:?}: samples have no attribute {attribute:?} (known: {known})")]
    UnknownAttribute {
        /// The step that asked.
        step: String,
        /// The attribute it asked for.
        attribute: String,
        /// The attributes the samples do have.
        known: String,
    },
    /// An attribute mixes arrays and scalars, or has a type the consumer cannot use.
    #[error("attribute {attribute:?}: {message}")]
    BadAttribute {
        /// The attribute.
        attribute: String,
        /// What is wrong with it.
        message: String,
    },
    /// A lazy value failed to load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Two samples of one bag (or of one sample set) have the same key: keys name
    /// checkpoint files and result rows, so one would silently take the other's place.
    #[error("sample key {key:?} appears twice: at {first} and at {second}")]
    DuplicateKey {
        /// The key.
        key: String,
        /// Where it appears first (`sample 3`, `row 17`, `set 2 ("t1") sample 0`).
        first: String,
        /// Where it appears again.
        second: String,
    },
}
