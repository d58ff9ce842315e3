//! Loading a [`Batch`]'s lazy columns (checkpoint files, delayed attributes) into
//! memory, failing the rows that cannot load.

use super::{Batch, Failure, Failures};
use crate::value::Value;
use ndarray::{ArrayD, Axis, IxDyn};
use std::sync::Arc;

impl Batch {
    /// Loads the named lazy columns (a no-op for loaded ones). A loader that fails marks
    /// its row failed (naming `step`), so one bad file never sinks the partition.
    pub fn load_columns(&mut self, names: &[&str], step: &str) {
        for name in names {
            let Some(loaders) = self.lazy.remove(name) else {
                continue;
            };
            let mut loaded = Vec::with_capacity(loaders.len());
            let mut failures = self.failures.map().clone();
            for (row, l) in loaders.iter().enumerate() {
                if failures.contains_key(&row) {
                    loaded.push(None);
                    continue;
                }
                match l.load() {
                    Ok(v) => loaded.push(Some(v)),
                    Err(e) => {
                        failures.insert(
                            row,
                            Failure {
                                step: step.to_string(),
                                reason: format!("loading {name}: {}", e.0),
                            },
                        );
                        loaded.push(None);
                    }
                }
            }
            self.failures = Failures::from_map(failures);
            self.store_loaded(name, loaded, step);
        }
    }

    fn store_loaded(&mut self, name: &str, loaded: Vec<Option<Value>>, step: &str) {
        let template = loaded.iter().flatten().next().cloned();
        match template {
            Some(Value::Array(t)) => {
                let mut shape = vec![loaded.len()];
                shape.extend_from_slice(t.shape());
                let mut out = ArrayD::from_elem(IxDyn(&shape), f64::NAN);
                let mut failures = self.failures.map().clone();
                for (row, v) in loaded.into_iter().enumerate() {
                    match v {
                        Some(Value::Array(a)) if a.shape() == t.shape() => {
                            out.index_axis_mut(Axis(0), row).assign(&a);
                        }
                        Some(other) => {
                            failures.insert(
                                row,
                                Failure {
                                    step: step.to_string(),
                                    reason: format!(
                                        "loading {name}: got {} of shape {:?}, expected array {:?}",
                                        other.kind(),
                                        match &other {
                                            Value::Array(a) => a.shape().to_vec(),
                                            _ => vec![],
                                        },
                                        t.shape()
                                    ),
                                },
                            );
                        }
                        None => {}
                    }
                }
                self.failures = Failures::from_map(failures);
                self.arrays.insert(name, Arc::new(out));
            }
            _ => {
                let col = loaded
                    .into_iter()
                    .map(|v| v.unwrap_or(Value::Float(f64::NAN)))
                    .collect();
                self.values.insert(name, Arc::new(col));
            }
        }
    }

    /// Loads every lazy column.
    pub fn load_all(&mut self, step: &str) {
        let names: Vec<String> = self.lazy.keys().map(str::to_string).collect();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        self.load_columns(&refs, step);
    }
}
