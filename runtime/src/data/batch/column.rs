//! What an estimator is handed besides the data: [`Column`]s of extra arguments and
//! arrays that are borrowed or selected.

use crate::data::error::LoadError;
use crate::value::Value;
use ndarray::{ArrayD, ArrayViewD, Axis};
use serde::{Deserialize, Serialize};

/// An array that is either borrowed from the batch or freshly selected.
pub enum ArrayViewOrOwned<'a> {
    /// All rows: a view of the stored array.
    View(ArrayViewD<'a, f64>),
    /// Some rows: an owned selection.
    Owned(ArrayD<f64>),
}

impl ArrayViewOrOwned<'_> {
    /// A view of the array.
    pub fn view(&self) -> ArrayViewD<'_, f64> {
        match self {
            ArrayViewOrOwned::View(v) => v.view(),
            ArrayViewOrOwned::Owned(a) => a.view(),
        }
    }
}

/// One column handed to an estimator as an extra argument.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Column {
    /// Scalar values, one per row.
    Values(Vec<Value>),
    /// An array whose first axis is the row.
    Array(ArrayD<f64>),
}

impl Column {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Column::Values(v) => v.len(),
            Column::Array(a) => a.shape().first().copied().unwrap_or(0),
        }
    }

    /// Whether the column has no row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The column as numbers (scalars converted, a 1-D array as is).
    pub fn to_f64(&self) -> Result<Vec<f64>, LoadError> {
        match self {
            Column::Values(v) => v
                .iter()
                .map(|x| {
                    x.as_f64()
                        .ok_or_else(|| LoadError::new(format!("value {x} is not a number")))
                })
                .collect(),
            Column::Array(a) if a.ndim() == 1 => Ok(a.iter().copied().collect()),
            Column::Array(a) => Err(LoadError::new(format!(
                "expected one number per sample, got an array of shape {:?}",
                a.shape()
            ))),
        }
    }

    /// Concatenates columns of the same kind in order.
    pub fn concat(parts: Vec<Column>) -> Result<Column, LoadError> {
        let mut values = Vec::new();
        let mut arrays = Vec::new();
        for p in parts {
            match p {
                Column::Values(v) => values.extend(v),
                Column::Array(a) => arrays.push(a),
            }
        }
        if arrays.is_empty() {
            return Ok(Column::Values(values));
        }
        if !values.is_empty() {
            return Err(LoadError::new("column mixes arrays and scalars"));
        }
        let views: Vec<_> = arrays.iter().map(|a| a.view()).collect();
        ndarray::concatenate(Axis(0), &views)
            .map(Column::Array)
            .map_err(|e| LoadError::new(format!("column arrays do not stack: {e}")))
    }
}
