//! Estimators for the crate's unit tests: small, exact, and registered once.

use crate::estimator::{Estimator, Extra, Transformed};
use crate::graph::error::EstimatorError;
use ndarray::ArrayViewD;
use serde::{Deserialize, Serialize};

/// Adds a constant; learns nothing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Shift(pub(crate) f64);

#[typetag::serde(name = "test::Shift")]
impl Estimator for Shift {
    fn requires_fit(&self) -> bool {
        false
    }
    fn transform(&self, x: ArrayViewD<'_, f64>, _e: &Extra) -> Result<Transformed, EstimatorError> {
        Ok(x.mapv(|v| v + self.0).into())
    }
}

/// Must be fitted; passes its input through (tests hand it a model rather
/// than fit it).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Center;

#[typetag::serde(name = "test::Center")]
impl Estimator for Center {
    fn transform(&self, x: ArrayViewD<'_, f64>, _e: &Extra) -> Result<Transformed, EstimatorError> {
        Ok(x.to_owned().into())
    }
}
