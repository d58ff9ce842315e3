//! Planning: the [`estimator`] trait, the [`step`]s that wire estimators into a
//! pipeline with their [`resources`], a [`run`]'s request and output, and the
//! [`plan`] that turns operations into stages of per-partition tasks.

pub mod error;
pub mod estimator;
pub mod plan;
pub mod resources;
pub mod run;
pub mod step;
#[cfg(test)]
pub(crate) mod test_estimators;
