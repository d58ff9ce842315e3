//! The estimator's error: what an estimator refused or failed.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// An estimator refused or failed an operation.
#[derive(Clone, Debug, Error, PartialEq, Serialize, Deserialize)]
pub enum EstimatorError {
    /// The input does not fit what the estimator expects (shape, missing argument, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// `transform` or `predict` was called before `fit`.
    #[error("estimator is not fitted")]
    NotFitted,
    /// The estimator does not offer this operation (e.g. `predict` on a scaler).
    #[error("operation `{0}` is not supported by this estimator")]
    Unsupported(&'static str),
    /// The computation itself failed.
    #[error("{0}")]
    Failed(String),
}
