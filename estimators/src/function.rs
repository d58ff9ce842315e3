//! [`FunctionTransformer`]: a stateless step made from a serialisable function.

use gridpipe_runtime::{Estimator, EstimatorError, Extra, Transformed};
use ndarray::{ArrayD, ArrayViewD};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A function of a batch, serialisable so it can run on worker processes.
///
/// Implement it for a small struct holding the function's parameters and mark the
/// impl with `#[typetag::serde]`.
#[typetag::serde(tag = "function")]
pub trait ArrayFunction: Send + Sync + fmt::Debug + ArrayFunctionClone {
    /// Maps the batch `x` (sample on axis 0) with the extra arguments.
    fn call(&self, x: ArrayViewD<'_, f64>, extra: &Extra) -> Result<Transformed, EstimatorError>;

    /// Maps a batch the caller no longer needs; override to work in place.
    fn call_owned(&self, x: ArrayD<f64>, extra: &Extra) -> Result<Transformed, EstimatorError> {
        self.call(x.view(), extra)
    }
}

/// Clones a boxed function; implemented for every `Clone` function.
pub trait ArrayFunctionClone {
    /// A boxed copy.
    fn clone_box(&self) -> Box<dyn ArrayFunction>;
}

impl<T: ArrayFunction + Clone + 'static> ArrayFunctionClone for T {
    fn clone_box(&self) -> Box<dyn ArrayFunction> {
        Box::new(self.clone())
    }
}

impl Clone for Box<dyn ArrayFunction> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// A stateless estimator: `transform` applies the function; it is never fitted.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FunctionTransformer {
    func: Box<dyn ArrayFunction>,
}

impl FunctionTransformer {
    /// Wraps a function.
    pub fn new(func: impl ArrayFunction + 'static) -> Self {
        Self {
            func: Box::new(func),
        }
    }
}

#[typetag::serde]
impl Estimator for FunctionTransformer {
    fn requires_fit(&self) -> bool {
        false
    }

    fn transform(
        &self,
        x: ArrayViewD<'_, f64>,
        extra: &Extra,
    ) -> Result<Transformed, EstimatorError> {
        self.func.call(x, extra)
    }

    fn transform_owned(
        &self,
        x: ArrayD<f64>,
        extra: &Extra,
    ) -> Result<Transformed, EstimatorError> {
        self.func.call_owned(x, extra)
    }
}

/// `x -> scale * x + offset`, element-wise.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Affine {
    /// The factor.
    pub scale: f64,
    /// The offset.
    pub offset: f64,
}

#[typetag::serde]
impl ArrayFunction for Affine {
    fn call(&self, x: ArrayViewD<'_, f64>, _extra: &Extra) -> Result<Transformed, EstimatorError> {
        let (a, b) = (self.scale, self.offset);
        Ok(x.mapv(|v| a * v + b).into())
    }

    fn call_owned(
        &self,
        mut x: ArrayD<f64>,
        _extra: &Extra,
    ) -> Result<Transformed, EstimatorError> {
        let (a, b) = (self.scale, self.offset);
        x.mapv_inplace(|v| a * v + b);
        Ok(x.into())
    }
}

/// Returns its input unchanged (the empty task of the overhead benchmark).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity;

#[typetag::serde]
impl ArrayFunction for Identity {
    fn call(&self, x: ArrayViewD<'_, f64>, _extra: &Extra) -> Result<Transformed, EstimatorError> {
        Ok(x.to_owned().into())
    }

    fn call_owned(&self, x: ArrayD<f64>, _extra: &Extra) -> Result<Transformed, EstimatorError> {
        Ok(x.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn affine_is_stateless_and_round_trips() {
        let f = FunctionTransformer::new(Affine {
            scale: 2.0,
            offset: 1.0,
        });
        assert!(!f.requires_fit());
        let x = array![[1.0, 2.0]].into_dyn();
        assert_eq!(
            f.transform(x.view(), &Extra::none()).unwrap().data,
            array![[3.0, 5.0]].into_dyn()
        );
        let boxed: Box<dyn Estimator> = Box::new(f);
        let bytes = rmp_serde::to_vec(&boxed).unwrap();
        let back: Box<dyn Estimator> = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(
            back.transform(x.view(), &Extra::none()).unwrap().data,
            array![[3.0, 5.0]].into_dyn()
        );
    }
}
