//! [`Step`]: one named pipeline step with its wiring and resource tags.

use crate::batch::DATA;
use crate::checkpoint::Checkpoint;
use crate::estimator::Estimator;
use crate::resources::Resources;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A named estimator plus how it is wired to the samples and where it may run.
///
/// Wiring follows the sample wrapper of scikit-learn-style sample pipelines: the
/// input array is read from `input` (default `data`), the output written to `output`
/// (default `data`), and extra arguments are taken from sample attributes.
/// Resource tags are per step and per operation: only this step's fit task carries
/// `fit_resources`, only its transform tasks carry `transform_resources`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    /// The step's name, unique in its pipeline.
    pub name: String,
    /// The estimator (unfitted template, or already fitted).
    pub estimator: Arc<dyn Estimator>,
    /// Which array the estimator reads (`data` or an array attribute).
    pub input: String,
    /// Where the output goes (`data` or an attribute name).
    pub output: String,
    /// Extra fit inputs: `(argument name, sample attribute)`, e.g. `("y", "label")`.
    pub fit_extra: Vec<(String, String)>,
    /// Extra transform arguments: `(argument name, sample attribute)`.
    pub transform_extra: Vec<(String, String)>,
    /// What the fit task needs (e.g. `{gpu: 1}`).
    pub fit_resources: Resources,
    /// What each transform task of this step needs.
    pub transform_resources: Resources,
    /// Checkpointing of the step's outputs and model, if any.
    pub checkpoint: Option<Checkpoint>,
}

impl Step {
    /// A step reading and writing `data`, with no extra arguments and no tags.
    pub fn new(name: impl Into<String>, estimator: impl Estimator + 'static) -> Self {
        Self::from_arc(name, Arc::new(estimator))
    }

    /// Like [`Step::new`], from a shared estimator.
    pub fn from_arc(name: impl Into<String>, estimator: Arc<dyn Estimator>) -> Self {
        Self {
            name: name.into(),
            estimator,
            input: DATA.to_string(),
            output: DATA.to_string(),
            fit_extra: Vec::new(),
            transform_extra: Vec::new(),
            fit_resources: Resources::none(),
            transform_resources: Resources::none(),
            checkpoint: None,
        }
    }

    /// Reads the input array from attribute `name`.
    pub fn input(mut self, name: impl Into<String>) -> Self {
        self.input = name.into();
        self
    }

    /// Writes the output to attribute `name`.
    pub fn output(mut self, name: impl Into<String>) -> Self {
        self.output = name.into();
        self
    }

    /// Passes attribute `attribute` to `fit` as argument `arg`.
    pub fn fit_extra(mut self, arg: impl Into<String>, attribute: impl Into<String>) -> Self {
        self.fit_extra.push((arg.into(), attribute.into()));
        self
    }

    /// Passes attribute `attribute` to `transform` as argument `arg`. The sample
    /// key is there too, as attribute `key`: `.transform_extra("key", "key")`
    /// gives the estimator each row's key (a `Column::Values` of strings).
    pub fn transform_extra(mut self, arg: impl Into<String>, attribute: impl Into<String>) -> Self {
        self.transform_extra.push((arg.into(), attribute.into()));
        self
    }

    /// Tags this step's fit task.
    pub fn fit_resources(mut self, r: Resources) -> Self {
        self.fit_resources = r;
        self
    }

    /// Tags this step's transform tasks.
    pub fn transform_resources(mut self, r: Resources) -> Self {
        self.transform_resources = r;
        self
    }

    /// Checkpoints the step's outputs (and model) as `c` says.
    pub fn checkpoint(mut self, c: Checkpoint) -> Self {
        self.checkpoint = Some(c);
        self
    }

    /// The step's features folder, when its outputs are checkpointed.
    pub fn features_dir(&self) -> Option<&std::path::Path> {
        self.checkpoint.as_ref()?.features_dir.as_deref()
    }

    /// Whether the step's estimator learns anything.
    pub fn requires_fit(&self) -> bool {
        self.estimator.requires_fit()
    }
}
