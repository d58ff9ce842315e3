//! Principal component analysis, backed by `linfa-reduction`.
//!
//! [`Pca`] centres the training rows, finds the `n_components` directions of largest
//! variance and projects rows onto them. Each sample is flattened to one row, so an
//! input of shape `(n, a, b)` is treated as `n` rows of `a * b` features.

use crate::rows::{non_finite_rows, samples_2d};
use gridpipe_runtime::{Estimator, EstimatorError, Extra, Transformed};
use linfa::traits::{Fit, Predict};
use linfa::DatasetBase;
use ndarray::{Array1, ArrayViewD, Axis};
use serde::{Deserialize, Serialize};

/// Principal component analysis: projects each (flattened) sample onto the
/// `n_components` principal axes of the training data.
///
/// `transform` returns an array of shape `(n, n_components)`. Rows with a non-finite
/// value are reported as failed rows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pca {
    n_components: usize,
    whiten: bool,
    /// The fitted linfa model (`None` before `fit`).
    model: Option<linfa_reduction::Pca<f64>>,
    /// Number of rows seen by the last fit.
    n_samples: usize,
    /// Total variance (sum of per-feature variances, ddof = 1) of the training rows.
    total_variance: f64,
}

impl Pca {
    /// A PCA that keeps `n_components` components, without whitening.
    pub fn new(n_components: usize) -> Self {
        Self {
            n_components,
            whiten: false,
            model: None,
            n_samples: 0,
            total_variance: 0.0,
        }
    }

    /// Whether to whiten the output, i.e. scale each component to unit variance on
    /// the training data (default `false`).
    pub fn whiten(mut self, whiten: bool) -> Self {
        self.whiten = whiten;
        self
    }

    /// The number of components kept.
    pub fn n_components(&self) -> usize {
        self.n_components
    }

    /// Whether `fit` has succeeded.
    pub fn is_fitted(&self) -> bool {
        self.model.is_some()
    }

    /// The fitted linfa model (components, mean, singular values), if fitted.
    pub fn model(&self) -> Option<&linfa_reduction::Pca<f64>> {
        self.model.as_ref()
    }

    /// The variance of the training data along each component (singular value
    /// squared over `n_samples - 1`, as in scikit-learn), if fitted.
    pub fn explained_variance(&self) -> Option<Array1<f64>> {
        let model = self.model.as_ref()?;
        let dof = self.n_samples.saturating_sub(1).max(1) as f64;
        Some(model.singular_values().mapv(|s| s * s / dof))
    }

    /// The fraction of the training data's total variance explained by each
    /// component, if fitted. Sums to at most 1 (1 when all components are kept).
    pub fn explained_variance_ratio(&self) -> Option<Array1<f64>> {
        let var = self.explained_variance()?;
        if self.total_variance > 0.0 {
            Some(var / self.total_variance)
        } else {
            Some(Array1::zeros(var.len()))
        }
    }
}

#[typetag::serde]
impl Estimator for Pca {
    fn fit(&mut self, x: ArrayViewD<'_, f64>, _extra: &Extra) -> Result<(), EstimatorError> {
        let x = samples_2d(&x, "PCA")?;
        let (n, features) = x.dim();
        if n < 2 {
            return Err(EstimatorError::InvalidInput(format!(
                "PCA needs at least 2 samples to fit, got {n}"
            )));
        }
        if self.n_components == 0 || self.n_components > n.min(features) {
            return Err(EstimatorError::InvalidInput(format!(
                "PCA n_components={} must be between 1 and min(n_samples, n_features) = \
                 min({n}, {features})",
                self.n_components
            )));
        }
        if let Some(&row) = non_finite_rows(&x.view()).first() {
            return Err(EstimatorError::InvalidInput(format!(
                "PCA cannot fit on non-finite values (first in row {row})"
            )));
        }

        let dataset = DatasetBase::from(x.view());
        let model = linfa_reduction::Pca::params(self.n_components)
            .whiten(self.whiten)
            .fit(&dataset)
            .map_err(|e| EstimatorError::Failed(format!("PCA fit failed: {e}")))?;
        // linfa's truncated SVD drops directions it cannot resolve (e.g. when the centred
        // data has rank below `n_components`); keep the output width fixed instead.
        let found = model.components().nrows();
        if found != self.n_components {
            return Err(EstimatorError::Failed(format!(
                "PCA found only {found} of {} components; the centred training data \
                 (n_samples={n}, n_features={features}) has too low a rank",
                self.n_components
            )));
        }

        self.total_variance = x.var_axis(Axis(0), 1.0).sum();
        self.n_samples = n;
        self.model = Some(model);
        Ok(())
    }

    fn transform(
        &self,
        x: ArrayViewD<'_, f64>,
        _extra: &Extra,
    ) -> Result<Transformed, EstimatorError> {
        let model = self.model.as_ref().ok_or(EstimatorError::NotFitted)?;
        let x = samples_2d(&x, "PCA")?;
        let expected = model.mean().len();
        if x.ncols() != expected {
            return Err(EstimatorError::InvalidInput(format!(
                "PCA was fitted on {expected} features per sample, got {}",
                x.ncols()
            )));
        }
        let projected = model.predict(&x);
        let failed = non_finite_rows(&x.view())
            .into_iter()
            .map(|i| (i, "sample contains a non-finite value".to_string()))
            .collect();
        Ok(Transformed {
            data: projected.into_dyn(),
            failed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, Array3, ArrayD};

    /// `n` points close to the line `t * (1, 2, 3) + (5, -1, 2)`, with a small
    /// deterministic wobble.
    fn line_points(n: usize) -> Array2<f64> {
        Array2::from_shape_fn((n, 3), |(i, j)| {
            let t = i as f64 / 2.0 - 4.0;
            let offset = [5.0, -1.0, 2.0][j];
            let wobble = 0.01 * ((i * 7 + j * 3) as f64).sin();
            t * (j as f64 + 1.0) + offset + wobble
        })
    }

    fn fitted(k: usize) -> (Pca, ArrayD<f64>) {
        let x = line_points(20).into_dyn();
        let mut pca = Pca::new(k);
        pca.fit(x.view(), &Extra::none()).unwrap();
        (pca, x)
    }

    #[test]
    fn one_component_explains_a_line() {
        let (pca, x) = fitted(2);
        let ratio = pca.explained_variance_ratio().unwrap();
        assert_eq!(ratio.len(), 2);
        assert!(ratio[0] > 0.999, "ratio {ratio}");
        assert!(ratio[1] < 1e-3, "ratio {ratio}");
        let var = pca.explained_variance().unwrap();
        assert!(var[0] > var[1]);

        let out = pca.transform(x.view(), &Extra::none()).unwrap();
        assert_eq!(out.data.shape(), &[20, 2]);
        assert!(out.failed.is_empty());
        // the projection is centred
        let mean = out.data.mean_axis(Axis(0)).unwrap();
        assert!(mean.iter().all(|m| m.abs() < 1e-9), "mean {mean}");
    }

    #[test]
    fn all_components_explain_everything() {
        let (pca, _) = fitted(3);
        let total: f64 = pca.explained_variance_ratio().unwrap().sum();
        assert!((total - 1.0).abs() < 1e-6, "total {total}");
    }

    #[test]
    fn flattens_samples() {
        let x2 = line_points(20);
        let x3: Array3<f64> = x2.clone().into_shape_with_order((20, 1, 3)).unwrap();
        let mut a = Pca::new(1);
        a.fit(x2.view().into_dyn(), &Extra::none()).unwrap();
        let mut b = Pca::new(1);
        b.fit(x3.view().into_dyn(), &Extra::none()).unwrap();
        let ta = a.transform(x2.view().into_dyn(), &Extra::none()).unwrap();
        let tb = b.transform(x3.view().into_dyn(), &Extra::none()).unwrap();
        assert_eq!(tb.data.shape(), &[20, 1]);
        assert_eq!(ta.data, tb.data);
    }

    #[test]
    fn round_trip_through_dyn_estimator() {
        let (pca, x) = fitted(2);
        let boxed: Box<dyn Estimator> = Box::new(pca);
        let bytes = rmp_serde::to_vec_named(&boxed).unwrap();
        let back: Box<dyn Estimator> = rmp_serde::from_slice(&bytes).unwrap();
        let before = boxed.transform(x.view(), &Extra::none()).unwrap();
        let after = back.transform(x.view(), &Extra::none()).unwrap();
        assert_eq!(before, after);
    }

    #[test]
    fn transform_before_fit_is_not_fitted() {
        let x = line_points(4).into_dyn();
        let err = Pca::new(1).transform(x.view(), &Extra::none()).unwrap_err();
        assert_eq!(err, EstimatorError::NotFitted);
    }

    #[test]
    fn rejects_bad_input() {
        let one_d = ndarray::Array1::<f64>::zeros(5).into_dyn();
        let err = Pca::new(1).fit(one_d.view(), &Extra::none()).unwrap_err();
        assert!(matches!(err, EstimatorError::InvalidInput(ref m) if m.contains("ndim")));

        let x = line_points(10).into_dyn();
        let err = Pca::new(4).fit(x.view(), &Extra::none()).unwrap_err();
        assert!(matches!(err, EstimatorError::InvalidInput(ref m) if m.contains("n_components")));

        let constant = Array2::<f64>::ones((10, 3)).into_dyn();
        let err = Pca::new(1)
            .fit(constant.view(), &Extra::none())
            .unwrap_err();
        assert!(matches!(err, EstimatorError::Failed(ref m) if m.contains("rank")));

        let (pca, _) = fitted(1);
        let wide = Array2::<f64>::zeros((3, 4)).into_dyn();
        let err = pca.transform(wide.view(), &Extra::none()).unwrap_err();
        assert!(matches!(err, EstimatorError::InvalidInput(ref m) if m.contains("features")));
    }

    #[test]
    fn non_finite_rows_fail_individually() {
        let (pca, _) = fitted(1);
        let mut x = line_points(3);
        x[[1, 2]] = f64::NAN;
        let out = pca.transform(x.view().into_dyn(), &Extra::none()).unwrap();
        assert_eq!(out.data.shape(), &[3, 1]);
        assert_eq!(out.failed.len(), 1);
        assert_eq!(out.failed[0].0, 1);
    }
}
