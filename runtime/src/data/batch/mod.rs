//! [`Batch`]: one partition's samples, stored column by column.
//!
//! Data arrays of a partition are stacked into one contiguous array whose first axis
//! is the sample, so a step sees the whole partition as one n-dimensional array and the
//! per-sample cost is close to the cost of the arithmetic. Keys, attributes and
//! failures sit beside it, shared (`Arc`) between a step's input and its output.
//!
//! Here: the batch and its accessors; `build` stacks samples into it, `lazy` loads
//! its lazy columns, `outcomes` takes it apart again, `column` holds what an
//! estimator is handed besides the data.

use crate::columns::{ColumnMap, SparseColumnMap};
use crate::data::error::DataError;
use crate::data::key_list::KeyList;
use crate::sample::{Attributes, Loader, SampleSet};
use crate::value::Value;
use ndarray::{ArrayD, Axis};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

mod build;
mod column;
mod compact;
mod failures;
mod lazy;
mod outcomes;

use build::join_names;
pub use column::{ArrayViewOrOwned, Column};
use failures::Failures;

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

/// An array column taken out of a batch to be rewritten
/// ([`Batch::take_array_to_rewrite`]): its name and the memory that held it.
#[derive(Debug)]
pub struct TakenArray {
    name: crate::columns::ColumnName,
    /// The emptied holder, when nothing else shared it.
    holder: Option<Arc<ArrayD<f64>>>,
}

/// An array of no rows, which allocates nothing.
fn no_rows() -> ArrayD<f64> {
    ArrayD::from_shape_vec(ndarray::IxDyn(&[0]), Vec::new()).expect("no rows")
}

/// One partition's samples in columns: keys, dense arrays, scalar attributes,
/// lazily loaded columns, failures and (for sample sets) the set layout.
#[derive(Clone, Debug, Serialize, Deserialize)]
// The derived form is the fields form; `compact` decides which form is used.
#[serde(remote = "Self")]
pub struct Batch {
    keys: KeyList,
    #[serde(with = "crate::wire::raw::array_map")]
    arrays: ColumnMap<Arc<ArrayD<f64>>>,
    values: SparseColumnMap<Arc<Vec<Value>>>,
    lazy: SparseColumnMap<Arc<Vec<Arc<dyn Loader>>>>,
    failures: Failures,
    sets: Option<Arc<SetLayout>>,
}

impl Batch {
    /// An empty batch.
    pub fn empty() -> Self {
        Self::from_samples(Vec::new()).expect("empty batch")
    }

    /// Number of samples (rows).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Bytes of its loaded arrays (what dominates its size on the wire).
    pub fn array_bytes(&self) -> u64 {
        self.arrays
            .iter()
            .map(|(_, a)| (a.len() * std::mem::size_of::<f64>()) as u64)
            .sum()
    }

    /// Whether the batch holds no sample.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The sample keys, in order.
    pub fn keys(&self) -> &KeyList {
        &self.keys
    }

    /// A loaded array column (`data` or an array attribute).
    pub fn array(&self, name: &str) -> Option<&ArrayD<f64>> {
        self.arrays.get(name).map(|a| a.as_ref())
    }

    /// A loaded array column, shared (no copy of its values).
    pub fn shared_array(&self, name: &str) -> Option<Arc<ArrayD<f64>>> {
        self.arrays.get(name).cloned()
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
            .map(str::to_string)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Failed rows and why.
    pub fn failures(&self) -> &BTreeMap<usize, Failure> {
        self.failures.map()
    }

    /// The sample-set layout, when the batch was made of sets.
    pub fn sets(&self) -> Option<&SetLayout> {
        self.sets.as_deref()
    }

    /// Rows that have not failed, or `None` when every row is valid.
    pub fn valid_rows(&self) -> Option<Vec<usize>> {
        let failures = self.failures.map();
        if failures.is_empty() {
            None
        } else {
            Some(
                (0..self.len())
                    .filter(|r| !failures.contains_key(r))
                    .collect(),
            )
        }
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
            let keys: Vec<Value> = self.keys.iter().map(|k| Value::Str(k.into())).collect();
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
        self.take_array_to_rewrite(name).map(|(array, _)| array)
    }

    /// Removes an array column to be rewritten and returns it (without copying
    /// when nothing else shares it) with the memory that held it, so that
    /// [`Batch::put_rewritten`] puts the output back without allocating: a
    /// million one-sample partitions then cost no new holder per step.
    pub fn take_array_to_rewrite(&mut self, name: &str) -> Option<(ArrayD<f64>, TakenArray)> {
        let (name, mut holder) = self.arrays.remove_entry(name)?;
        let (array, holder) = match Arc::get_mut(&mut holder) {
            Some(inner) => (std::mem::replace(inner, no_rows()), Some(holder)),
            None => ((*holder).clone(), None),
        };
        Some((array, TakenArray { name, holder }))
    }

    /// Sets `name` to `array` (rows in batch order) and adds `failures`, in place,
    /// reusing the memory of the column `taken` came from.
    pub fn put_rewritten(
        &mut self,
        taken: TakenArray,
        name: &str,
        array: ArrayD<f64>,
        new_failures: Vec<(usize, Failure)>,
    ) {
        let holder = match taken.holder {
            Some(mut holder) => {
                *Arc::get_mut(&mut holder).expect("taken unshared") = array;
                holder
            }
            None => Arc::new(array),
        };
        let name = match taken.name == name {
            true => taken.name,
            false => crate::columns::column_name(name),
        };
        self.put_array(name, holder, new_failures);
    }

    /// Sets `name` to `array` (rows in batch order) and adds `failures`, in place.
    pub fn set_output(
        &mut self,
        name: &str,
        array: ArrayD<f64>,
        new_failures: Vec<(usize, Failure)>,
    ) {
        self.put_array(
            crate::columns::column_name(name),
            Arc::new(array),
            new_failures,
        );
    }

    fn put_array(
        &mut self,
        name: crate::columns::ColumnName,
        array: Arc<ArrayD<f64>>,
        new_failures: Vec<(usize, Failure)>,
    ) {
        self.lazy.remove(&name);
        self.values.remove(&name);
        self.arrays.insert_name(name, array);
        if !new_failures.is_empty() {
            self.failures.make_mut().extend(new_failures);
        }
    }

    /// Takes the batch out of `holder` to be rewritten: moved when nothing else
    /// shares it (the holder then waits, empty, for [`Batch::put_back`]), else copied.
    pub fn take_from(holder: &mut Arc<Batch>) -> Batch {
        match Arc::get_mut(holder) {
            Some(b) => std::mem::replace(b, Batch::vacant()),
            None => (**holder).clone(),
        }
    }

    /// Puts `batch` into `holder`: into its memory when nothing else shares it
    /// (no allocation), else into a new holder.
    pub fn put_back(holder: &mut Arc<Batch>, batch: Batch) {
        match Arc::get_mut(holder) {
            Some(slot) => *slot = batch,
            None => *holder = Arc::new(batch),
        }
    }

    /// A batch of nothing that costs no allocation (what a holder keeps while
    /// its batch is rewritten).
    fn vacant() -> Self {
        Self {
            keys: KeyList::empty(),
            arrays: ColumnMap::new(),
            values: SparseColumnMap::new(),
            lazy: SparseColumnMap::new(),
            failures: Failures::default(),
            sets: None,
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
        out.set_output(name, array, new_failures);
        out
    }

    /// A copy where the given rows (when still valid) are marked failed.
    pub fn with_rows_failed(&self, rows: &[usize], step: &str, reason: &str) -> Batch {
        let mut out = self.clone();
        let f = out.failures.make_mut();
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
        self.failures.make_mut().insert(row, failure);
    }

    /// Replaces column `name` with lazily loaded values, one loader per row.
    pub fn set_lazy(&mut self, name: &str, loaders: Vec<Arc<dyn Loader>>) {
        self.arrays.remove(name);
        self.values.remove(name);
        self.lazy.insert(name, Arc::new(loaders));
    }

    /// A copy where every still-valid row is marked failed with the same reason.
    pub fn with_all_failed(&self, step: &str, reason: &str) -> Batch {
        let mut out = self.clone();
        let f = out.failures.make_mut();
        for row in 0..self.len() {
            f.entry(row).or_insert_with(|| Failure {
                step: step.to_string(),
                reason: reason.to_string(),
            });
        }
        out
    }
}

impl Batch {
    /// A batch from keys and an already stacked data array (first axis = sample).
    pub(crate) fn from_parts(keys: Vec<String>, data: ArrayD<f64>) -> Batch {
        let mut b = Batch::with_keys(keys);
        b.arrays.insert(DATA, Arc::new(data));
        b
    }

    /// A batch of these keys and no column yet.
    fn with_keys(keys: Vec<String>) -> Batch {
        Batch {
            keys: KeyList::from(keys),
            arrays: ColumnMap::new(),
            values: SparseColumnMap::new(),
            lazy: SparseColumnMap::new(),
            failures: Failures::default(),
            sets: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Sample;
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
