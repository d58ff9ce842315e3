//! Multinomial logistic regression, backed by `linfa-logistic`.
//!
//! [`LogisticRegression`] learns from the rows of `x` (each sample flattened to one
//! row) and the class labels in the extra argument `y`. It works for two or more
//! classes; labels are any finite numbers and `predict` returns them unchanged.

use crate::rows::{non_finite_rows, samples_2d};
use gridpipe_runtime::{Estimator, EstimatorError, Extra, Transformed};
use linfa::traits::Fit;
use linfa::DatasetBase;
use linfa_logistic::{MultiFittedLogisticRegression, MultiLogisticRegression};
use ndarray::{Array1, ArrayView2, ArrayViewD, Axis, CowArray, Ix2};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// Multinomial (softmax) logistic regression with an L2 penalty.
///
/// `fit` reads one class label per row from the extra argument `y`; `predict` returns
/// the predicted labels, shape `(n,)`; `transform` returns the class probabilities,
/// shape `(n, n_classes)`, with columns in ascending label order (see
/// [`classes`](Self::classes)). Rows with a non-finite value are reported as failed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogisticRegression {
    max_iterations: u64,
    alpha: f64,
    /// The distinct training labels in ascending order; linfa sees their indices.
    classes: Vec<f64>,
    /// The fitted linfa model over class indices (`None` before `fit`).
    model: Option<MultiFittedLogisticRegression<f64, usize>>,
}

impl Default for LogisticRegression {
    fn default() -> Self {
        Self::new()
    }
}

impl LogisticRegression {
    /// An unfitted model with linfa's defaults: at most 100 solver iterations and
    /// L2 penalty `alpha = 1.0`.
    pub fn new() -> Self {
        Self {
            max_iterations: 100,
            alpha: 1.0,
            classes: Vec::new(),
            model: None,
        }
    }

    /// Sets the maximum number of L-BFGS iterations.
    pub fn max_iterations(mut self, max_iterations: u64) -> Self {
        self.max_iterations = max_iterations;
        self
    }

    /// Sets the L2 penalty `alpha` (finite, >= 0; `0` disables regularisation).
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// Whether `fit` has succeeded.
    pub fn is_fitted(&self) -> bool {
        self.model.is_some()
    }

    /// The class labels seen by `fit`, in ascending order (the column order of
    /// `transform`); empty before `fit`.
    pub fn classes(&self) -> &[f64] {
        &self.classes
    }

    /// The fitted linfa model (weights of shape `(n_features, n_classes)` and
    /// intercepts), whose classes are indices into [`classes`](Self::classes).
    pub fn model(&self) -> Option<&MultiFittedLogisticRegression<f64, usize>> {
        self.model.as_ref()
    }

    /// The fitted model and the input as rows, checked against the fitted width.
    fn prepare<'a>(&self, x: &'a ArrayViewD<'_, f64>) -> Result<Prepared<'_, 'a>, EstimatorError> {
        let model = self.model.as_ref().ok_or(EstimatorError::NotFitted)?;
        let x = samples_2d(x, "LogisticRegression")?;
        let expected = model.params().nrows();
        if x.ncols() != expected {
            return Err(EstimatorError::InvalidInput(format!(
                "LogisticRegression was fitted on {expected} features per sample, got {}",
                x.ncols()
            )));
        }
        Ok((model, x))
    }
}

/// A fitted model with the input flattened to rows.
type Prepared<'m, 'a> = (
    &'m MultiFittedLogisticRegression<f64, usize>,
    CowArray<'a, f64, Ix2>,
);

/// Failed-row entries for rows with non-finite input.
fn failed_rows(x: &ArrayView2<'_, f64>) -> Vec<(usize, String)> {
    non_finite_rows(x)
        .into_iter()
        .map(|i| (i, "sample contains a non-finite value".to_string()))
        .collect()
}

/// `-0.0` and `0.0` are one label.
fn normalise_label(v: f64) -> f64 {
    if v == 0.0 {
        0.0
    } else {
        v
    }
}

/// Rows that could not be scored, with why.
type RowFailures = Vec<(usize, String)>;

impl LogisticRegression {
    /// Class probabilities per row (columns in `classes()` order) and the rows
    /// that cannot be scored.
    fn probabilities(
        &self,
        x: &ArrayViewD<'_, f64>,
    ) -> Result<(ndarray::Array2<f64>, RowFailures), EstimatorError> {
        let (model, x) = self.prepare(x)?;
        Ok((model.predict_probabilities(&x), failed_rows(&x.view())))
    }
}

#[typetag::serde]
impl Estimator for LogisticRegression {
    fn fit(&mut self, x: ArrayViewD<'_, f64>, extra: &Extra) -> Result<(), EstimatorError> {
        if extra.get("y").is_none() {
            return Err(EstimatorError::InvalidInput(
                "LogisticRegression.fit needs class labels in the extra argument \"y\"; \
                 map `y` from a sample attribute (e.g. the label)"
                    .to_string(),
            ));
        }
        let y = extra.numbers("y")?;
        let x = samples_2d(&x, "LogisticRegression")?;
        let n = x.nrows();
        if n == 0 {
            return Err(EstimatorError::InvalidInput(
                "LogisticRegression cannot fit on zero samples".to_string(),
            ));
        }
        if y.len() != n {
            return Err(EstimatorError::InvalidInput(format!(
                "LogisticRegression got {} labels in \"y\" for {n} samples",
                y.len()
            )));
        }
        if let Some(i) = y.iter().position(|v| !v.is_finite()) {
            return Err(EstimatorError::InvalidInput(format!(
                "LogisticRegression label {} (row {i}) is not a finite number",
                y[i]
            )));
        }
        if let Some(&row) = non_finite_rows(&x.view()).first() {
            return Err(EstimatorError::InvalidInput(format!(
                "LogisticRegression cannot fit on non-finite values (first in row {row})"
            )));
        }
        if !self.alpha.is_finite() || self.alpha < 0.0 {
            return Err(EstimatorError::InvalidInput(format!(
                "LogisticRegression alpha must be finite and >= 0, got {}",
                self.alpha
            )));
        }

        let mut classes: Vec<f64> = y.iter().copied().map(normalise_label).collect();
        classes.sort_by(f64::total_cmp);
        classes.dedup();
        if classes.len() < 2 {
            return Err(EstimatorError::InvalidInput(format!(
                "LogisticRegression needs at least two classes in \"y\", got {classes:?}"
            )));
        }
        let targets: Array1<usize> = y
            .iter()
            .map(|&v| {
                let v = normalise_label(v);
                classes
                    .binary_search_by(|c| c.total_cmp(&v))
                    .expect("every label is among the classes")
            })
            .collect();

        let dataset = DatasetBase::new(x.view(), targets);
        let model = MultiLogisticRegression::<f64>::new()
            .alpha(self.alpha)
            .max_iterations(self.max_iterations)
            .fit(&dataset)
            .map_err(|e| EstimatorError::Failed(format!("LogisticRegression fit failed: {e}")))?;

        self.classes = classes;
        self.model = Some(model);
        Ok(())
    }

    fn transform(
        &self,
        x: ArrayViewD<'_, f64>,
        _extra: &Extra,
    ) -> Result<Transformed, EstimatorError> {
        let (probabilities, failed) = self.probabilities(&x)?;
        Ok(Transformed {
            data: probabilities.into_dyn(),
            failed,
        })
    }

    fn predict(
        &self,
        x: ArrayViewD<'_, f64>,
        _extra: &Extra,
    ) -> Result<Transformed, EstimatorError> {
        let (probabilities, failed) = self.probabilities(&x)?;
        let labels: Array1<f64> = probabilities
            .axis_iter(Axis(0))
            .map(|row| {
                row.iter()
                    .enumerate()
                    .filter(|(_, p)| !p.is_nan())
                    .max_by(|a, b| a.1.partial_cmp(b.1).unwrap_or(Ordering::Equal))
                    .map_or(f64::NAN, |(i, _)| self.classes[i])
            })
            .collect();
        Ok(Transformed {
            data: labels.into_dyn(),
            failed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridpipe_runtime::Column;
    use ndarray::{Array2, ArrayD};

    /// Three well separated clusters of 20 points each, labelled 10, 20 and 30.
    fn three_clusters() -> (ArrayD<f64>, Vec<f64>) {
        let centres = [[0.0, 0.0], [6.0, 6.0], [12.0, 0.0]];
        let labels = [10.0, 20.0, 30.0];
        let n = 60;
        let x = Array2::from_shape_fn((n, 2), |(i, j)| {
            let c = centres[i % 3][j];
            let phase = (i * 13 + j * 5) as f64;
            c + 1.2 * phase.sin()
        });
        let y = (0..n).map(|i| labels[i % 3]).collect();
        (x.into_dyn(), y)
    }

    fn with_y(y: &[f64]) -> Extra {
        Extra::none().with("y", Column::Array(Array1::from(y.to_vec()).into_dyn()))
    }

    fn fitted() -> (LogisticRegression, ArrayD<f64>, Extra) {
        let (x, y) = three_clusters();
        let extra = with_y(&y);
        let mut model = LogisticRegression::new().max_iterations(200).alpha(0.1);
        model.fit(x.view(), &extra).unwrap();
        (model, x, extra)
    }

    #[test]
    fn separates_three_classes() {
        let (model, x, extra) = fitted();
        assert_eq!(model.classes(), &[10.0, 20.0, 30.0]);
        let accuracy = model.score(x.view(), &extra).unwrap();
        assert!(accuracy >= 0.95, "accuracy {accuracy}");
    }

    #[test]
    fn predict_returns_the_original_labels() {
        let (model, x, _) = fitted();
        let pred = model.predict(x.view(), &Extra::none()).unwrap();
        assert_eq!(pred.data.shape(), &[60]);
        assert!(pred.failed.is_empty());
        assert!(pred.data.iter().all(|v| [10.0, 20.0, 30.0].contains(v)));
        // the cluster centres themselves
        let centres = ndarray::array![[0.0, 0.0], [6.0, 6.0], [12.0, 0.0]].into_dyn();
        let pred = model.predict(centres.view(), &Extra::none()).unwrap();
        assert_eq!(
            pred.data.into_raw_vec_and_offset().0,
            vec![10.0, 20.0, 30.0]
        );
    }

    #[test]
    fn transform_gives_probabilities() {
        let (model, x, _) = fitted();
        let probs = model.transform(x.view(), &Extra::none()).unwrap();
        assert_eq!(probs.data.shape(), &[60, 3]);
        for row in probs.data.axis_iter(Axis(0)) {
            assert!((row.sum() - 1.0).abs() < 1e-9);
            assert!(row.iter().all(|p| (0.0..=1.0).contains(p)));
        }
    }

    #[test]
    fn two_classes_and_negative_labels() {
        let x = ndarray::array![[0.0], [0.5], [1.0], [4.0], [4.5], [5.0]].into_dyn();
        let extra = with_y(&[-1.0, -1.0, -1.0, 2.5, 2.5, 2.5]);
        let mut model = LogisticRegression::new().alpha(0.01);
        model.fit(x.view(), &extra).unwrap();
        let pred = model.predict(x.view(), &Extra::none()).unwrap();
        assert_eq!(
            pred.data.into_raw_vec_and_offset().0,
            vec![-1.0, -1.0, -1.0, 2.5, 2.5, 2.5]
        );
    }

    #[test]
    fn flattens_samples() {
        let (x, y) = three_clusters();
        let x3 = x.clone().into_shape_with_order(vec![60, 1, 2]).unwrap();
        let extra = with_y(&y);
        let mut model = LogisticRegression::new().alpha(0.1);
        model.fit(x3.view(), &extra).unwrap();
        let a = model.predict(x3.view(), &Extra::none()).unwrap();
        let b = model.predict(x.view(), &Extra::none()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn round_trip_through_dyn_estimator() {
        let (model, x, _) = fitted();
        let boxed: Box<dyn Estimator> = Box::new(model);
        let bytes = rmp_serde::to_vec_named(&boxed).unwrap();
        let back: Box<dyn Estimator> = rmp_serde::from_slice(&bytes).unwrap();
        let none = Extra::none();
        assert_eq!(
            boxed.predict(x.view(), &none).unwrap(),
            back.predict(x.view(), &none).unwrap()
        );
        assert_eq!(
            boxed.transform(x.view(), &none).unwrap(),
            back.transform(x.view(), &none).unwrap()
        );
    }

    #[test]
    fn missing_y_is_a_clear_error() {
        let (x, _) = three_clusters();
        let err = LogisticRegression::new()
            .fit(x.view(), &Extra::none())
            .unwrap_err();
        match err {
            EstimatorError::InvalidInput(m) => {
                assert!(m.contains("\"y\"") && m.contains("sample attribute"), "{m}")
            }
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn rejects_bad_input() {
        let (x, y) = three_clusters();
        let err = LogisticRegression::new()
            .fit(x.view(), &with_y(&y[..10]))
            .unwrap_err();
        assert!(matches!(err, EstimatorError::InvalidInput(ref m) if m.contains("labels")));

        let err = LogisticRegression::new()
            .fit(x.view(), &with_y(&vec![1.0; 60]))
            .unwrap_err();
        assert!(matches!(err, EstimatorError::InvalidInput(ref m) if m.contains("two classes")));

        let one_d = Array1::<f64>::zeros(3).into_dyn();
        let err = LogisticRegression::new()
            .fit(one_d.view(), &with_y(&[0.0, 1.0, 0.0]))
            .unwrap_err();
        assert!(matches!(err, EstimatorError::InvalidInput(ref m) if m.contains("ndim")));

        let err = LogisticRegression::new()
            .predict(x.view(), &Extra::none())
            .unwrap_err();
        assert_eq!(err, EstimatorError::NotFitted);

        let (model, _, _) = fitted();
        let wide = Array2::<f64>::zeros((2, 5)).into_dyn();
        let err = model.predict(wide.view(), &Extra::none()).unwrap_err();
        assert!(matches!(err, EstimatorError::InvalidInput(ref m) if m.contains("features")));
    }

    #[test]
    fn non_finite_rows_fail_individually() {
        let (model, _, _) = fitted();
        let x = ndarray::array![[0.0, 0.0], [f64::NAN, 1.0], [12.0, 0.0]].into_dyn();
        let pred = model.predict(x.view(), &Extra::none()).unwrap();
        assert_eq!(pred.failed.len(), 1);
        assert_eq!(pred.failed[0].0, 1);
        assert_eq!(pred.data[[0]], 10.0);
        assert_eq!(pred.data[[2]], 30.0);
    }
}
