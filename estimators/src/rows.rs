//! Shared input handling of the 2-D estimators: samples flattened to rows.

use gridpipe_runtime::EstimatorError;
use ndarray::{ArrayView2, ArrayViewD, Axis, CowArray, Ix2};

/// Views a batch as (samples, features), flattening each sample; `who` names the
/// estimator in the error.
pub(crate) fn samples_2d<'a>(
    x: &'a ArrayViewD<'_, f64>,
    who: &str,
) -> Result<CowArray<'a, f64, Ix2>, EstimatorError> {
    if x.ndim() < 2 {
        return Err(EstimatorError::InvalidInput(format!(
            "{who} expects samples on axis 0 and at least one feature axis (ndim >= 2), \
             got an array of shape {:?}",
            x.shape()
        )));
    }
    let n = x.shape()[0];
    let features: usize = x.shape()[1..].iter().product();
    x.to_shape((n, features))
        .map_err(|e| EstimatorError::InvalidInput(format!("{who} cannot flatten the samples: {e}")))
}

/// Indices of the rows holding a NaN or infinite value.
pub(crate) fn non_finite_rows(x: &ArrayView2<'_, f64>) -> Vec<usize> {
    x.axis_iter(Axis(0))
        .enumerate()
        .filter(|(_, row)| row.iter().any(|v| !v.is_finite()))
        .map(|(i, _)| i)
        .collect()
}
