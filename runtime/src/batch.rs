//! [`Batch`]: one partition's samples, stored column by column.
//!
//! Data arrays of a partition are stacked into one contiguous array whose first axis
//! is the sample, so a step sees the whole partition as one n-dimensional array and the
//! per-sample cost is close to the cost of the arithmetic. Keys, attributes and
//! failures sit beside it, shared (`Arc`) between a step's input and its output.

use crate::columns::ColumnMap;
use crate::error::{DataError, LoadError};
use crate::sample::{Attributes, DelayedSample, Loader, Sample, SampleSet};
use crate::value::Value;
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The name of the main data column.
pub const DATA: &str = "data";

/// Why one sample failed, and in which step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The step that failed on the sample.
    pub step: String,
    /// The reason given by the estimator (or the runtime).
    pub reason: String,
}

/// The group layout of a partition made of [`SampleSet`]s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetLayout {
    /// Row offsets: set `i` holds rows `offsets[i]..offsets[i + 1]`.
    pub offsets: Vec<usize>,
    /// Each set's key.
    pub keys: Vec<String>,
    /// Each set's own attributes.
    pub attributes: Vec<Attributes>,
}

impl SetLayout {
    /// Row ranges of the sets, in order.
    pub fn ranges(&self) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        self.offsets.windows(2).map(|w| w[0]..w[1])
    }
}

/// A rebuilt sample set and its failed samples (key and failure).
pub type SetOutcome = (SampleSet, Vec<(String, Failure)>);

/// One partition's samples in columns: keys, dense arrays, scalar attributes,
/// lazily loaded columns, failures and (for sample sets) the set layout.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Batch {
    keys: Arc<Vec<String>>,
    #[serde(with = "crate::wire::raw::array_map")]
    arrays: ColumnMap<Arc<ArrayD<f64>>>,
    values: ColumnMap<Arc<Vec<Value>>>,
    lazy: ColumnMap<Arc<Vec<Arc<dyn Loader>>>>,
    failures: Arc<BTreeMap<usize, Failure>>,
    sets: Option<Arc<SetLayout>>,
}

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

fn join_names<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = names.map(|s| s.as_str()).collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

impl Batch {
    /// An empty batch.
    pub fn empty() -> Self {
        Self::from_samples(Vec::new()).expect("empty batch")
    }

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
        batch
            .arrays
            .insert(DATA.to_string(), Arc::new(data.finish(n)));
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
        batch.lazy.insert(DATA.to_string(), Arc::new(loaders));
        for (name, col) in names.into_iter().zip(columns) {
            batch.insert_value_column(name, col)?;
        }
        for (name, col) in lazy_names.into_iter().zip(lazy_columns) {
            batch.lazy.insert(name, Arc::new(col));
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
            self.values.insert(name, Arc::new(col));
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
        self.arrays.insert(name, Arc::new(st.finish(col.len())));
        Ok(())
    }

    /// Number of samples (rows).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the batch holds no sample.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The sample keys, in order.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// A loaded array column (`data` or an array attribute).
    pub fn array(&self, name: &str) -> Option<&ArrayD<f64>> {
        self.arrays.get(name).map(|a| a.as_ref())
    }

    /// A scalar attribute column.
    pub fn values(&self, name: &str) -> Option<&[Value]> {
        self.values.get(name).map(|v| v.as_slice())
    }

    /// Whether a column is still waiting to be loaded.
    pub fn is_lazy(&self, name: &str) -> bool {
        self.lazy.contains_key(name)
    }

    /// Whether any column is still waiting to be loaded.
    pub fn has_lazy(&self) -> bool {
        !self.lazy.is_empty()
    }

    /// Names of every column, loaded or not.
    pub fn column_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .arrays
            .keys()
            .chain(self.values.keys())
            .chain(self.lazy.keys())
            .cloned()
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Failed rows and why.
    pub fn failures(&self) -> &BTreeMap<usize, Failure> {
        &self.failures
    }

    /// The sample-set layout, when the batch was made of sets.
    pub fn sets(&self) -> Option<&SetLayout> {
        self.sets.as_deref()
    }

    /// Rows that have not failed, or `None` when every row is valid.
    pub fn valid_rows(&self) -> Option<Vec<usize>> {
        if self.failures.is_empty() {
            None
        } else {
            Some(
                (0..self.len())
                    .filter(|r| !self.failures.contains_key(r))
                    .collect(),
            )
        }
    }

    /// Loads the named lazy columns (a no-op for loaded ones). A loader that fails marks
    /// its row failed (naming `step`), so one bad file never sinks the partition.
    pub fn load_columns(&mut self, names: &[&str], step: &str) {
        for name in names {
            let Some(loaders) = self.lazy.remove(name) else {
                continue;
            };
            let mut loaded = Vec::with_capacity(loaders.len());
            let mut failures = (*self.failures).clone();
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
            self.failures = Arc::new(failures);
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
                let mut failures = (*self.failures).clone();
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
                self.failures = Arc::new(failures);
                self.arrays.insert(name.to_string(), Arc::new(out));
            }
            _ => {
                let col = loaded
                    .into_iter()
                    .map(|v| v.unwrap_or(Value::Float(f64::NAN)))
                    .collect();
                self.values.insert(name.to_string(), Arc::new(col));
            }
        }
    }

    /// Loads every lazy column.
    pub fn load_all(&mut self, step: &str) {
        let names: Vec<String> = self.lazy.keys().cloned().collect();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        self.load_columns(&refs, step);
    }

    /// An array column restricted to `rows` (all rows when `None`).
    pub fn select_array(
        &self,
        name: &str,
        rows: Option<&[usize]>,
        step: &str,
    ) -> Result<ArrayViewOrOwned<'_>, DataError> {
        let a = self
            .arrays
            .get(name)
            .ok_or_else(|| self.unknown(name, step))?;
        Ok(match rows {
            None => ArrayViewOrOwned::View(a.view()),
            Some(r) => ArrayViewOrOwned::Owned(a.select(Axis(0), r)),
        })
    }

    /// A column of any kind restricted to `rows`, for extra fit or transform arguments.
    pub fn select_column(
        &self,
        name: &str,
        rows: Option<&[usize]>,
        step: &str,
    ) -> Result<Column, DataError> {
        if let Some(a) = self.arrays.get(name) {
            return Ok(Column::Array(match rows {
                None => a.as_ref().clone(),
                Some(r) => a.select(Axis(0), r),
            }));
        }
        let pick = |col: &[Value]| -> Vec<Value> {
            match rows {
                None => col.to_vec(),
                Some(r) => r.iter().map(|&i| col[i].clone()).collect(),
            }
        };
        if let Some(v) = self.values.get(name) {
            return Ok(Column::Values(pick(v)));
        }
        if name == "key" {
            let keys: Vec<Value> = self.keys.iter().map(|k| Value::Str(k.clone())).collect();
            return Ok(Column::Values(pick(&keys)));
        }
        Err(self.unknown(name, step))
    }

    fn unknown(&self, name: &str, step: &str) -> DataError {
        DataError::UnknownAttribute {
            step: step.to_string(),
            attribute: name.to_string(),
            known: join_names(self.column_names().iter()),
        }
    }

    /// Removes an array column and returns it, without copying when nothing else
    /// shares it.
    pub fn take_array(&mut self, name: &str) -> Option<ArrayD<f64>> {
        let a = self.arrays.remove(name)?;
        Some(Arc::try_unwrap(a).unwrap_or_else(|shared| (*shared).clone()))
    }

    /// Sets `name` to `array` (rows in batch order) and adds `failures`, in place.
    pub fn set_output(
        &mut self,
        name: &str,
        array: ArrayD<f64>,
        new_failures: Vec<(usize, Failure)>,
    ) {
        self.lazy.remove(name);
        self.values.remove(name);
        self.arrays.insert(name.to_string(), Arc::new(array));
        if !new_failures.is_empty() {
            Arc::make_mut(&mut self.failures).extend(new_failures);
        }
    }

    /// A copy with `name` set to `array` (rows in batch order) and `failures` added.
    pub fn with_output(
        &self,
        name: &str,
        array: ArrayD<f64>,
        new_failures: Vec<(usize, Failure)>,
    ) -> Batch {
        let mut out = self.clone();
        out.lazy.remove(name);
        out.values.remove(name);
        out.arrays.insert(name.to_string(), Arc::new(array));
        if !new_failures.is_empty() {
            let mut f = (*out.failures).clone();
            f.extend(new_failures);
            out.failures = Arc::new(f);
        }
        out
    }

    /// A copy where the given rows (when still valid) are marked failed.
    pub fn with_rows_failed(&self, rows: &[usize], step: &str, reason: &str) -> Batch {
        let mut out = self.clone();
        let f = Arc::make_mut(&mut out.failures);
        for &row in rows {
            f.entry(row).or_insert_with(|| Failure {
                step: step.to_string(),
                reason: reason.to_string(),
            });
        }
        out
    }

    /// Marks one row failed.
    pub fn add_failure(&mut self, row: usize, failure: Failure) {
        Arc::make_mut(&mut self.failures).insert(row, failure);
    }

    /// Replaces column `name` with lazily loaded values, one loader per row.
    pub fn set_lazy(&mut self, name: &str, loaders: Vec<Arc<dyn Loader>>) {
        self.arrays.remove(name);
        self.values.remove(name);
        self.lazy.insert(name.to_string(), Arc::new(loaders));
    }

    /// A copy where every still-valid row is marked failed with the same reason.
    pub fn with_all_failed(&self, step: &str, reason: &str) -> Batch {
        let mut out = self.clone();
        let mut f = (*out.failures).clone();
        for row in 0..self.len() {
            f.entry(row).or_insert_with(|| Failure {
                step: step.to_string(),
                reason: reason.to_string(),
            });
        }
        out.failures = Arc::new(f);
        out
    }

    /// Concatenates batches in order (sets and failures are kept, re-indexed).
    pub fn concat(parts: &[Batch]) -> Result<Batch, DataError> {
        let mut samples = Vec::new();
        for p in parts {
            let mut p = p.clone();
            p.load_all("concat");
            samples.extend(p.into_outcomes());
        }
        let mut failures = BTreeMap::new();
        let mut ok = Vec::with_capacity(samples.len());
        for (i, s) in samples.into_iter().enumerate() {
            match s {
                Ok(s) => ok.push(s),
                Err((s, f)) => {
                    failures.insert(i, f);
                    ok.push(s);
                }
            }
        }
        let mut b = Batch::from_samples(ok)?;
        b.failures = Arc::new(failures);
        Ok(b)
    }

    /// Turns the rows back into samples: `Ok` for valid rows, `Err((sample, failure))`
    /// for failed ones (the sample as it was when it failed). Lazy columns are loaded.
    pub fn into_outcomes(mut self) -> Vec<Result<Sample, (Sample, Failure)>> {
        self.load_all("output");
        let n = self.len();
        let mut out = Vec::with_capacity(n);
        for row in 0..n {
            let mut attributes = Attributes::new();
            for (name, col) in self.values.iter() {
                attributes.insert(name.clone(), col[row].clone());
            }
            for (name, a) in self.arrays.iter() {
                if name != DATA {
                    attributes.insert(
                        name.clone(),
                        Value::Array(a.index_axis(Axis(0), row).to_owned()),
                    );
                }
            }
            let data = self
                .arrays
                .get(DATA)
                .map(|a| a.index_axis(Axis(0), row).to_owned())
                .unwrap_or_else(|| ArrayD::zeros(IxDyn(&[0])));
            let s = Sample {
                key: self.keys[row].clone(),
                data,
                attributes,
            };
            match self.failures.get(&row) {
                None => out.push(Ok(s)),
                Some(f) => out.push(Err((s, f.clone()))),
            }
        }
        out
    }

    /// Rebuilds the sample sets of a set batch (`None` for a plain batch); failed
    /// samples are dropped from their set and returned beside it.
    pub fn into_sample_sets(self) -> Option<Vec<SetOutcome>> {
        let layout = self.sets.clone()?;
        let rows = self.into_outcomes();
        let mut it = rows.into_iter();
        let mut out = Vec::new();
        for (i, range) in layout.ranges().enumerate() {
            let mut samples = Vec::new();
            let mut failed = Vec::new();
            for _ in range {
                match it.next() {
                    Some(Ok(s)) => samples.push(s),
                    Some(Err((s, f))) => failed.push((s.key, f)),
                    None => {}
                }
            }
            out.push((
                SampleSet {
                    key: layout.keys[i].clone(),
                    samples,
                    attributes: layout.attributes[i].clone(),
                },
                failed,
            ));
        }
        Some(out)
    }
}

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

impl Batch {
    /// A batch from keys and an already stacked data array (first axis = sample).
    pub(crate) fn from_parts(keys: Vec<String>, data: ArrayD<f64>) -> Batch {
        let mut b = Batch::with_keys(keys);
        b.arrays.insert(DATA.to_string(), Arc::new(data));
        b
    }

    /// A batch of these keys and no column yet.
    fn with_keys(keys: Vec<String>) -> Batch {
        Batch {
            keys: Arc::new(keys),
            arrays: ColumnMap::new(),
            values: ColumnMap::new(),
            lazy: ColumnMap::new(),
            failures: Arc::new(BTreeMap::new()),
            sets: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn s(key: &str, v: f64) -> Sample {
        Sample::new(key, array![[v, v], [v, v]].into_dyn()).with("metadata", 1)
    }

    #[test]
    fn stacks_samples_contiguously_and_back() {
        let b = Batch::from_samples(vec![s("a", 1.0), s("b", 2.0)]).unwrap();
        assert_eq!(b.array(DATA).unwrap().shape(), &[2, 2, 2]);
        assert!(b.array(DATA).unwrap().is_standard_layout());
        assert_eq!(
            b.values("metadata").unwrap(),
            &[Value::Int(1), Value::Int(1)]
        );
        let back: Vec<Sample> = b.into_outcomes().into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(back, vec![s("a", 1.0), s("b", 2.0)]);
    }

    #[test]
    fn shape_mismatch_names_the_sample() {
        let bad = Sample::new("odd", array![1.0, 2.0, 3.0].into_dyn()).with("metadata", 1);
        let err = Batch::from_samples(vec![s("a", 1.0), bad]).unwrap_err();
        assert!(err.to_string().contains("\"odd\""), "{err}");
    }

    #[test]
    fn missing_attribute_names_sample_and_attribute() {
        let bare = Sample::new("bare", array![[0.0, 0.0], [0.0, 0.0]].into_dyn());
        let err = Batch::from_samples(vec![s("a", 1.0), bare]).unwrap_err();
        assert!(err.to_string().contains("bare") && err.to_string().contains("metadata"));
    }

    #[test]
    fn unknown_attribute_lists_known_ones() {
        let b = Batch::from_samples(vec![s("a", 1.0)]).unwrap();
        let err = b.select_column("subject", None, "step1").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("step1") && msg.contains("subject") && msg.contains("metadata"));
    }

    #[test]
    fn sets_round_trip_with_their_attributes() {
        let set = SampleSet::new("t1", vec![s("a", 1.0), s("b", 2.0)]).with("subject", "x");
        let b = Batch::from_sample_sets(vec![set.clone()]).unwrap();
        let sets = b.into_sample_sets().unwrap();
        assert_eq!(sets[0].0, set);
    }

    #[test]
    fn rmp_round_trip() {
        let b = Batch::from_samples(vec![s("a", 1.0), s("b", 2.0)])
            .unwrap()
            .with_all_failed("x", "boom");
        let bytes = rmp_serde::to_vec(&b).unwrap();
        let back: Batch = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back.keys(), b.keys());
        assert_eq!(back.array(DATA), b.array(DATA));
        assert_eq!(back.failures(), b.failures());
    }
}
