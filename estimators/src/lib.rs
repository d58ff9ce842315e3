//! gridpipe-estimators: the [`Pipeline`] of named steps and ready-made estimators.
//!
//! - [`Pipeline`]: `fit`, `transform`, `fit_transform`, `predict`, `score` on any
//!   [`gridpipe_runtime::Runtime`], with the same calls whatever the back-end.
//! - [`FunctionTransformer`]: a stateless step from a serialisable function.
//! - [`StandardScaler`]: a standard scaler whose fit is a reduction of per-partition
//!   statistics, checked against linfa's `LinearScaler`.
//! - [`Pca`] and [`LogisticRegression`]: linfa's PCA and multinomial logistic
//!   regression behind the project's object-safe trait.

#![warn(missing_docs)]

pub mod function;
pub mod logistic;
pub mod pca;
pub mod pipeline;
mod rows;
pub mod scaler;

pub use function::{Affine, ArrayFunction, FunctionTransformer, Identity};
pub use logistic::LogisticRegression;
pub use pca::Pca;
pub use pipeline::Pipeline;
pub use scaler::StandardScaler;
