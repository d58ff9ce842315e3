//! The object-safe estimator trait, modelled on scikit-learn's `fit` / `transform`.
//!
//! The runtime calls estimators through `dyn Estimator`, so a pipeline can mix any
//! types, and fitted estimators are serialised through the trait object (typetag), so
//! they can be saved and shipped to other processes. Implement it for a concrete type
//! and mark the impl with `#[typetag::serde]`.

use crate::batch::Column;
use crate::graph::error::EstimatorError;
use ndarray::{ArrayD, ArrayViewD};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Named extra arguments for `fit` or `transform`, taken from sample attributes
/// (e.g. `y` from a label attribute, `metadata` from the seed's attribute). Each
/// column has one entry per row of `x`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Extra {
    columns: BTreeMap<String, Column>,
}

impl Extra {
    /// No extra argument.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds one named column.
    pub fn with(mut self, name: impl Into<String>, column: Column) -> Self {
        self.columns.insert(name.into(), column);
        self
    }

    /// Inserts one named column.
    pub fn insert(&mut self, name: impl Into<String>, column: Column) {
        self.columns.insert(name.into(), column);
    }

    /// A column, if given.
    pub fn get(&self, name: &str) -> Option<&Column> {
        self.columns.get(name)
    }

    /// A column that the estimator cannot do without.
    pub fn require(&self, name: &str) -> Result<&Column, EstimatorError> {
        self.get(name).ok_or_else(|| {
            EstimatorError::InvalidInput(format!(
                "missing extra argument {name:?}; map it from a sample attribute"
            ))
        })
    }

    /// A required column as one number per row.
    pub fn numbers(&self, name: &str) -> Result<Vec<f64>, EstimatorError> {
        self.require(name)?
            .to_f64()
            .map_err(|e| EstimatorError::InvalidInput(format!("argument {name:?}: {}", e.0)))
    }

    /// Names of the given columns.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.columns.keys().map(|s| s.as_str())
    }

    /// The rows `range` of every column (used to hand each sample set its own slice).
    pub fn rows(&self, range: std::ops::Range<usize>) -> Extra {
        let columns = self
            .columns
            .iter()
            .map(|(k, c)| {
                let c = match c {
                    Column::Values(v) => Column::Values(v[range.clone()].to_vec()),
                    Column::Array(a) => Column::Array(
                        a.slice_axis(ndarray::Axis(0), ndarray::Slice::from(range.clone()))
                            .to_owned(),
                    ),
                };
                (k.clone(), c)
            })
            .collect();
        Extra { columns }
    }

    /// Concatenates the columns of several extras in order (for a gathered fit).
    pub fn concat(parts: Vec<Extra>) -> Result<Extra, EstimatorError> {
        let mut by_name: BTreeMap<String, Vec<Column>> = BTreeMap::new();
        for p in parts {
            for (k, c) in p.columns {
                by_name.entry(k).or_default().push(c);
            }
        }
        let mut out = Extra::none();
        for (k, cols) in by_name {
            let c = Column::concat(cols)
                .map_err(|e| EstimatorError::InvalidInput(format!("argument {k:?}: {}", e.0)))?;
            out.insert(k, c);
        }
        Ok(out)
    }
}

/// What `transform` or `predict` returns: one output row per input row, and the rows
/// (indices into the input) that failed, with a reason. Failed rows' output is ignored.
///
/// This is how one sample fails from inside an estimator while the others go on:
/// the sample is then listed by `Bag::failed` with the step's name and the reason,
/// and later steps skip it. With `Step::transform_extra("key", "key")` the
/// estimator also gets the samples' keys (the column `key` is always there):
///
/// ```
/// use gridpipe_runtime::{Column, Estimator, EstimatorError, Extra, Step, Transformed};
/// use ndarray::ArrayViewD;
///
/// #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
/// struct RejectNegative;
///
/// #[gridpipe_runtime::typetag::serde]
/// impl Estimator for RejectNegative {
///     fn requires_fit(&self) -> bool {
///         false
///     }
///     fn transform(&self, x: ArrayViewD<'_, f64>, e: &Extra) -> Result<Transformed, EstimatorError> {
///         let Column::Values(keys) = e.require("key")? else {
///             return Err(EstimatorError::InvalidInput("keys are values".into()));
///         };
///         let failed = x
///             .outer_iter()
///             .enumerate()
///             .filter(|(_, row)| row.iter().any(|v| *v < 0.0))
///             .map(|(i, _)| (i, format!("sample {} has a negative value", keys[i])))
///             .collect();
///         Ok(Transformed { data: x.to_owned(), failed })
///     }
/// }
///
/// let step = Step::new("check", RejectNegative).transform_extra("key", "key");
/// # let _ = step;
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Transformed {
    /// The output; its first axis matches the input's.
    pub data: ArrayD<f64>,
    /// Rows that failed, with why.
    pub failed: Vec<(usize, String)>,
}

impl From<ArrayD<f64>> for Transformed {
    fn from(data: ArrayD<f64>) -> Self {
        Self {
            data,
            failed: Vec::new(),
        }
    }
}

/// Partial statistics of one partition, for estimators whose fit is a reduction
/// (e.g. a standard scaler: count, mean, sum of squared deviations). The layout of
/// `stats` is the estimator's own; the runtime only carries it and keeps the order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartialFit {
    /// Rows that went into the statistics.
    pub rows: u64,
    /// The statistics.
    pub stats: Vec<ArrayD<f64>>,
}

/// Clones a boxed estimator; implemented for every `Clone` estimator.
pub trait CloneEstimator {
    /// A boxed copy.
    fn clone_box(&self) -> Box<dyn Estimator>;
}

impl<T: Estimator + Clone + 'static> CloneEstimator for T {
    fn clone_box(&self) -> Box<dyn Estimator> {
        Box::new(self.clone())
    }
}

impl Clone for Box<dyn Estimator> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// A scikit-learn-style estimator: `fit` learns from a batch, `transform` (or
/// `predict`) maps a batch. `x` always has the sample on its first axis.
#[typetag::serde(tag = "estimator")]
pub trait Estimator: CloneEstimator + Send + Sync + fmt::Debug {
    /// Whether the estimator learns anything; stateless ones (`false`) are never fitted.
    fn requires_fit(&self) -> bool {
        true
    }

    /// Learns from a batch. `extra` holds the fit's extra inputs (e.g. `y`).
    fn fit(&mut self, x: ArrayViewD<'_, f64>, extra: &Extra) -> Result<(), EstimatorError> {
        let _ = (x, extra);
        if self.requires_fit() {
            Err(EstimatorError::Unsupported("fit"))
        } else {
            Ok(())
        }
    }

    /// Maps a batch; `extra` holds the transform's extra arguments.
    fn transform(
        &self,
        x: ArrayViewD<'_, f64>,
        extra: &Extra,
    ) -> Result<Transformed, EstimatorError>;

    /// Transforms a batch the caller no longer needs; estimators that can work in
    /// place override it to reuse `x`'s memory (the runtime calls it when a step reads
    /// and writes the same array and nothing else holds it).
    fn transform_owned(
        &self,
        x: ArrayD<f64>,
        extra: &Extra,
    ) -> Result<Transformed, EstimatorError> {
        self.transform(x.view(), extra)
    }

    /// Fits, then transforms the same batch.
    fn fit_transform(
        &mut self,
        x: ArrayViewD<'_, f64>,
        extra: &Extra,
    ) -> Result<Transformed, EstimatorError> {
        self.fit(x.view(), extra)?;
        self.transform(x, extra)
    }

    /// Predicts one label or value per row (classifiers and regressors).
    fn predict(
        &self,
        x: ArrayViewD<'_, f64>,
        extra: &Extra,
    ) -> Result<Transformed, EstimatorError> {
        let _ = (x, extra);
        Err(EstimatorError::Unsupported("predict"))
    }

    /// A score of the predictions against `extra["y"]`: accuracy for classifiers
    /// (the default), or the estimator's own measure.
    fn score(&self, x: ArrayViewD<'_, f64>, extra: &Extra) -> Result<f64, EstimatorError> {
        let y = extra.numbers("y")?;
        let pred = self.predict(x, extra)?;
        if pred.data.len() != y.len() {
            return Err(EstimatorError::InvalidInput(format!(
                "predict gave {} values for {} labels",
                pred.data.len(),
                y.len()
            )));
        }
        Ok(accuracy(pred.data.iter().copied(), y.iter().copied()))
    }

    /// Whether the fit is a reduction over partitions (`partial_fit` then `fit_partials`).
    fn supports_partial_fit(&self) -> bool {
        false
    }

    /// Statistics of one partition, merged later by `fit_partials`.
    fn partial_fit(
        &self,
        x: ArrayViewD<'_, f64>,
        extra: &Extra,
    ) -> Result<PartialFit, EstimatorError> {
        let _ = (x, extra);
        Err(EstimatorError::Unsupported("partial_fit"))
    }

    /// Finishes a fit from the partitions' statistics, given in partition order.
    fn fit_partials(&mut self, parts: &[PartialFit]) -> Result<(), EstimatorError> {
        let _ = parts;
        Err(EstimatorError::Unsupported("fit_partials"))
    }
}

/// The fraction of equal pairs.
pub fn accuracy(pred: impl Iterator<Item = f64>, truth: impl Iterator<Item = f64>) -> f64 {
    let (mut n, mut ok) = (0usize, 0usize);
    for (p, t) in pred.zip(truth) {
        n += 1;
        if p == t {
            ok += 1;
        }
    }
    if n == 0 {
        0.0
    } else {
        ok as f64 / n as f64
    }
}
