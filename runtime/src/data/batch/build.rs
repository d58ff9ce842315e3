//! Building a [`Batch`]: samples, delayed samples and sample sets stacked into
//! columns.

use super::{Batch, SetLayout, DATA};
use crate::data::error::DataError;
use crate::sample::{DelayedSample, Loader, Sample, SampleSet};
use crate::value::Value;
use ndarray::{ArrayD, IxDyn};
use std::sync::Arc;

/// Collects rows of arrays into one contiguous stacked array.
struct Stacker {
    name: String,
    shape: Option<Vec<usize>>,
    buf: Vec<f64>,
}

impl Stacker {
    fn new(name: &str, rows: usize) -> Self {
        Self {
            name: name.to_string(),
            shape: None,
            buf: Vec::with_capacity(rows),
        }
    }

    fn push(&mut self, key: &str, a: &ArrayD<f64>) -> Result<(), DataError> {
        match &self.shape {
            None => {
                self.buf.reserve(a.len() * self.buf.capacity());
                self.shape = Some(a.shape().to_vec());
            }
            Some(s) if s.as_slice() != a.shape() => {
                return Err(DataError::ShapeMismatch {
                    key: key.to_string(),
                    what: self.name.clone(),
                    expected: s.clone(),
                    found: a.shape().to_vec(),
                })
            }
            Some(_) => {}
        }
        match a.as_slice() {
            Some(s) => self.buf.extend_from_slice(s),
            None => self.buf.extend(a.iter().copied()),
        }
        Ok(())
    }

    fn finish(self, rows: usize) -> ArrayD<f64> {
        let mut shape = vec![rows];
        shape.extend(self.shape.unwrap_or_default());
        ArrayD::from_shape_vec(IxDyn(&shape), self.buf).expect("stacked rows match shape")
    }
}

pub(super) fn join_names<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = names.map(|s| s.as_str()).collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

impl Batch {
    /// Stacks eager samples into one batch; data (and array attributes) must share a
    /// shape within the batch, and every sample must have the same attribute names.
    pub fn from_samples(samples: Vec<Sample>) -> Result<Self, DataError> {
        let n = samples.len();
        let mut keys = Vec::with_capacity(n);
        let mut data = Stacker::new(DATA, n);
        let names: Vec<String> = samples
            .first()
            .map(|s| s.attributes.keys().cloned().collect())
            .unwrap_or_default();
        let mut columns: Vec<Vec<Value>> = names.iter().map(|_| Vec::with_capacity(n)).collect();
        for s in samples {
            data.push(&s.key, &s.data)?;
            if s.attributes.len() != names.len() {
                let missing = names
                    .iter()
                    .find(|k| !s.attributes.contains_key(*k))
                    .or_else(|| s.attributes.keys().find(|k| !names.contains(k)))
                    .cloned()
                    .unwrap_or_default();
                return Err(DataError::MissingAttribute {
                    key: s.key,
                    attribute: missing,
                });
            }
            let mut attrs = s.attributes;
            for (i, name) in names.iter().enumerate() {
                match attrs.remove(name) {
                    Some(v) => columns[i].push(v),
                    None => {
                        return Err(DataError::MissingAttribute {
                            key: s.key,
                            attribute: name.clone(),
                        })
                    }
                }
            }
            keys.push(s.key);
        }
        let mut batch = Batch::with_keys(keys);
        batch.arrays.insert(DATA, Arc::new(data.finish(n)));
        for (name, col) in names.into_iter().zip(columns) {
            batch.insert_value_column(name, col)?;
        }
        Ok(batch)
    }

    /// A batch of delayed samples: data and delayed attributes stay unloaded until a
    /// task needs them.
    pub fn from_delayed(samples: Vec<DelayedSample>) -> Result<Self, DataError> {
        let n = samples.len();
        let first = samples.first();
        let names: Vec<String> = first
            .map(|s| s.attributes.keys().cloned().collect())
            .unwrap_or_default();
        let lazy_names: Vec<String> = first
            .map(|s| s.delayed_attributes.keys().cloned().collect())
            .unwrap_or_default();
        let mut keys = Vec::with_capacity(n);
        let mut loaders = Vec::with_capacity(n);
        let mut columns: Vec<Vec<Value>> = names.iter().map(|_| Vec::with_capacity(n)).collect();
        let mut lazy_columns: Vec<Vec<Arc<dyn Loader>>> =
            lazy_names.iter().map(|_| Vec::with_capacity(n)).collect();
        for s in samples {
            for (i, name) in names.iter().enumerate() {
                let v = s
                    .attributes
                    .get(name)
                    .ok_or_else(|| DataError::MissingAttribute {
                        key: s.key.clone(),
                        attribute: name.clone(),
                    })?;
                columns[i].push(v.clone());
            }
            for (i, name) in lazy_names.iter().enumerate() {
                let l =
                    s.delayed_attributes
                        .get(name)
                        .ok_or_else(|| DataError::MissingAttribute {
                            key: s.key.clone(),
                            attribute: name.clone(),
                        })?;
                lazy_columns[i].push(l.clone());
            }
            loaders.push(s.loader);
            keys.push(s.key);
        }
        let mut batch = Batch::with_keys(keys);
        batch.lazy.insert(DATA, Arc::new(loaders));
        for (name, col) in names.into_iter().zip(columns) {
            batch.insert_value_column(name, col)?;
        }
        for (name, col) in lazy_names.into_iter().zip(lazy_columns) {
            batch.lazy.insert(&name, Arc::new(col));
        }
        Ok(batch)
    }

    /// A batch made of whole sample sets; each set is later processed as its own batch.
    pub fn from_sample_sets(sets: Vec<SampleSet>) -> Result<Self, DataError> {
        let mut offsets = vec![0];
        let mut keys = Vec::with_capacity(sets.len());
        let mut attributes = Vec::with_capacity(sets.len());
        let mut samples = Vec::new();
        for set in sets {
            samples.extend(set.samples);
            offsets.push(samples.len());
            keys.push(set.key);
            attributes.push(set.attributes);
        }
        let mut batch = Self::from_samples(samples)?;
        batch.sets = Some(Arc::new(SetLayout {
            offsets,
            keys,
            attributes,
        }));
        Ok(batch)
    }

    /// Stores a scalar column, or stacks it as an array column when every value is an array.
    fn insert_value_column(&mut self, name: String, col: Vec<Value>) -> Result<(), DataError> {
        let arrays = col.iter().filter(|v| matches!(v, Value::Array(_))).count();
        if arrays == 0 {
            self.values.insert(&name, Arc::new(col));
            return Ok(());
        }
        if arrays != col.len() {
            return Err(DataError::BadAttribute {
                attribute: name,
                message: "some samples hold arrays and others scalars".into(),
            });
        }
        let mut st = Stacker::new(&name, col.len());
        for (key, v) in self.keys.iter().zip(&col) {
            if let Value::Array(a) = v {
                st.push(key, a)?;
            }
        }
        self.arrays.insert(&name, Arc::new(st.finish(col.len())));
        Ok(())
    }
}
