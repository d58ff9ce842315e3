//! The user-facing sample types: [`Sample`], [`DelayedSample`] and [`SampleSet`].

use crate::data::error::LoadError;
use crate::value::Value;
use ndarray::ArrayD;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Named attributes of a sample or a sample set.
pub type Attributes = BTreeMap<String, Value>;

/// One data point: a key, an n-dimensional array and named attributes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The sample's identity (a file stem, a database id, "0".."9" in the examples).
    pub key: String,
    /// The data: any n-dimensional array (a vector, a 2x2 matrix, an image).
    pub data: ArrayD<f64>,
    /// Named attributes, e.g. `metadata=1` or a class label.
    pub attributes: Attributes,
}

impl Sample {
    /// A sample with no attributes.
    pub fn new(key: impl Into<String>, data: ArrayD<f64>) -> Self {
        Self {
            key: key.into(),
            data,
            attributes: Attributes::new(),
        }
    }

    /// Adds (or replaces) one attribute.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// One attribute, if present.
    pub fn attr(&self, name: &str) -> Option<&Value> {
        self.attributes.get(name)
    }
}

/// A serialisable source of one lazily loaded value (a file on disk, a database row).
///
/// Implement it for your own type and mark the impl with `#[typetag::serde]`, so the
/// loader travels to worker processes with the sample.
#[typetag::serde(tag = "loader")]
pub trait Loader: Send + Sync + fmt::Debug {
    /// Loads the value. Called once per task that needs it; the result is cached for
    /// the duration of that task.
    fn load(&self) -> Result<Value, LoadError>;
}

/// A sample whose data (and chosen attributes) load lazily through [`Loader`]s.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DelayedSample {
    /// The sample's identity.
    pub key: String,
    /// Loads the data array.
    pub loader: Arc<dyn Loader>,
    /// Attributes known up front.
    pub attributes: Attributes,
    /// Attributes that load lazily too; a name may not be in both maps.
    pub delayed_attributes: BTreeMap<String, Arc<dyn Loader>>,
}

impl DelayedSample {
    /// A delayed sample with no attributes.
    pub fn new(key: impl Into<String>, loader: Arc<dyn Loader>) -> Self {
        Self {
            key: key.into(),
            loader,
            attributes: Attributes::new(),
            delayed_attributes: BTreeMap::new(),
        }
    }

    /// Adds an eager attribute (it replaces a delayed one of the same name).
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        let name = name.into();
        self.delayed_attributes.remove(&name);
        self.attributes.insert(name, value.into());
        self
    }

    /// Adds a lazily loaded attribute (it replaces an eager one of the same name).
    pub fn with_delayed(mut self, name: impl Into<String>, loader: Arc<dyn Loader>) -> Self {
        let name = name.into();
        self.attributes.remove(&name);
        self.delayed_attributes.insert(name, loader);
        self
    }

    /// Loads everything and returns an eager [`Sample`].
    pub fn load(&self) -> Result<Sample, LoadError> {
        let data = match self.loader.load()? {
            Value::Array(a) => a,
            other => {
                return Err(LoadError::new(format!(
                    "sample {:?}: data loader returned a {} instead of an array",
                    self.key,
                    other.kind()
                )))
            }
        };
        let mut attributes = self.attributes.clone();
        for (name, loader) in &self.delayed_attributes {
            attributes.insert(name.clone(), loader.load()?);
        }
        Ok(Sample {
            key: self.key.clone(),
            data,
            attributes,
        })
    }
}

/// A keyed group of samples (e.g. one subject's enrolment) with its own attributes.
///
/// A set is processed as one batch and rebuilt with its own attributes afterwards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleSet {
    /// The set's identity (e.g. a template id).
    pub key: String,
    /// The samples, in order.
    pub samples: Vec<Sample>,
    /// The set's own attributes.
    pub attributes: Attributes,
}

impl SampleSet {
    /// A set with no attributes.
    pub fn new(key: impl Into<String>, samples: Vec<Sample>) -> Self {
        Self {
            key: key.into(),
            samples,
            attributes: Attributes::new(),
        }
    }

    /// Adds (or replaces) one attribute of the set.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// Number of samples in the set.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the set has no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}
