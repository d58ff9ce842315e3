//! [`Bag`]: a list of partitions, the unit a runtime computes on.

use crate::batch::{Batch, Failure, DATA};
use crate::data::error::DataError;
use crate::keys::check_unique;
use crate::sample::{DelayedSample, Sample, SampleSet};
use ndarray::{ArrayD, Axis};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub use crate::data::stack::Stacked;

/// How items are cut into partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Partitioning {
    /// Several partitions per worker: `4 x workers` (the machine's cores when the
    /// worker count is unknown), never more than there are items.
    Auto {
        /// The number of workers the bag will run on.
        workers: usize,
    },
    /// Exactly this many partitions (fewer when there are fewer items).
    NPartitions(usize),
    /// Partitions of this many items (the last one may be smaller).
    PartitionSize(usize),
}

impl Partitioning {
    /// `Auto` for this machine's number of cores.
    pub fn auto() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Partitioning::Auto { workers: cores }
    }

    /// The contiguous item ranges for `items` items, all non-empty.
    pub fn ranges(&self, items: usize) -> Vec<std::ops::Range<usize>> {
        if items == 0 {
            return Vec::new();
        }
        let parts = match *self {
            Partitioning::Auto { workers } => (4 * workers.max(1)).min(items),
            Partitioning::NPartitions(n) => n.clamp(1, items),
            Partitioning::PartitionSize(s) => items.div_ceil(s.max(1)),
        };
        // Even split: the first `items % parts` partitions get one more item.
        let (base, extra) = (items / parts, items % parts);
        let mut out = Vec::with_capacity(parts);
        let mut start = 0;
        for i in 0..parts {
            let len = base + usize::from(i < extra);
            out.push(start..start + len);
            start += len;
        }
        out
    }
}

impl Default for Partitioning {
    fn default() -> Self {
        Self::auto()
    }
}

/// A sample that failed, with the step and the reason.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailedSample {
    /// The sample's key.
    pub key: String,
    /// The step that failed on it.
    pub step: String,
    /// Why.
    pub reason: String,
}

/// A list of partitions of samples (or of sample sets).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Bag {
    pub(super) partitions: Vec<Arc<Batch>>,
}

impl Bag {
    /// A bag from ready-made partitions; an error names a key that appears twice
    /// (across partitions, or within one sample set).
    pub fn from_batches(partitions: Vec<Batch>) -> Result<Self, DataError> {
        check_batch_keys(&partitions)?;
        Ok(Self {
            partitions: partitions.into_iter().map(Arc::new).collect(),
        })
    }

    pub(crate) fn from_arcs(partitions: Vec<Arc<Batch>>) -> Self {
        Self { partitions }
    }

    /// Cuts eager samples into partitions; an error names a key that appears twice.
    pub fn from_samples(samples: Vec<Sample>, p: Partitioning) -> Result<Self, DataError> {
        check_unique(samples.iter().map(|s| s.key.as_str()), |i| {
            format!("sample {i}")
        })?;
        Self::cut(samples, p, Batch::from_samples)
    }

    /// Cuts delayed samples into partitions; nothing is loaded here. An error names a
    /// key that appears twice.
    pub fn from_delayed(samples: Vec<DelayedSample>, p: Partitioning) -> Result<Self, DataError> {
        check_unique(samples.iter().map(|s| s.key.as_str()), |i| {
            format!("sample {i}")
        })?;
        Self::cut(samples, p, Batch::from_delayed)
    }

    /// Cuts sample sets into partitions (a set is never split). Set keys are unique,
    /// and so are the sample keys within each set; one sample may belong to several
    /// sets under one key (it is the same sample, with one checkpoint file).
    pub fn from_sample_sets(sets: Vec<SampleSet>, p: Partitioning) -> Result<Self, DataError> {
        check_unique(sets.iter().map(|s| s.key.as_str()), |i| format!("set {i}"))?;
        for (i, set) in sets.iter().enumerate() {
            check_unique(set.samples.iter().map(|s| s.key.as_str()), |j| {
                format!("set {i} ({:?}) sample {j}", set.key)
            })?;
        }
        Self::cut(sets, p, Batch::from_sample_sets)
    }

    /// The fast path for array-shaped input: row `i` of `data` is the sample `keys[i]`.
    /// An error names a key that appears twice.
    pub fn from_rows(
        keys: Vec<String>,
        data: ArrayD<f64>,
        p: Partitioning,
    ) -> Result<Self, DataError> {
        let n = data.shape().first().copied().unwrap_or(0);
        if keys.len() != n {
            return Err(DataError::BadAttribute {
                attribute: DATA.into(),
                message: format!("{} keys for {} rows", keys.len(), n),
            });
        }
        check_unique(keys.iter().map(|k| k.as_str()), |i| format!("row {i}"))?;
        let mut keys = keys.into_iter();
        let mut parts = Vec::new();
        for r in p.ranges(n) {
            let rows = data
                .slice_axis(Axis(0), ndarray::Slice::from(r.clone()))
                .as_standard_layout()
                .into_owned();
            let k: Vec<String> = keys.by_ref().take(r.len()).collect();
            parts.push(Arc::new(Batch::from_parts(k, rows)));
        }
        Ok(Self { partitions: parts })
    }

    fn cut<T>(
        items: Vec<T>,
        p: Partitioning,
        make: impl Fn(Vec<T>) -> Result<Batch, DataError>,
    ) -> Result<Self, DataError> {
        let ranges = p.ranges(items.len());
        let mut it = items.into_iter();
        let mut parts = Vec::with_capacity(ranges.len());
        for r in ranges {
            let chunk: Vec<T> = it.by_ref().take(r.len()).collect();
            parts.push(Arc::new(make(chunk)?));
        }
        Ok(Self { partitions: parts })
    }

    /// Number of partitions.
    pub fn npartitions(&self) -> usize {
        self.partitions.len()
    }

    /// Number of samples over all partitions.
    pub fn len(&self) -> usize {
        self.partitions.iter().map(|p| p.len()).sum()
    }

    /// Whether the bag holds no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The partitions, in order.
    pub fn partitions(&self) -> &[Arc<Batch>] {
        &self.partitions
    }

    pub(crate) fn into_arcs(self) -> Vec<Arc<Batch>> {
        self.partitions
    }

    /// Loads every column still waiting to be loaded (a [`DelayedSample`]'s data or
    /// delayed attributes that no step read), in place: a value that fails to load
    /// fails its sample, which [`Bag::failed`] then lists with the reason. After
    /// this, reading the bag never loads again.
    pub fn load(&mut self) {
        for p in &mut self.partitions {
            if p.has_lazy() {
                Arc::make_mut(p).load_all("load");
            }
        }
    }

    /// Every sample in order: `Ok` when it went through, `Err` when a step failed on
    /// it or one of its lazily loaded values failed to load here.
    pub fn outcomes(&self) -> Vec<Result<Sample, FailedSample>> {
        let mut out = Vec::with_capacity(self.len());
        for p in &self.partitions {
            for r in (**p).clone().into_outcomes() {
                out.push(r.map_err(|(s, f)| failed(s.key, f)));
            }
        }
        out
    }

    /// The samples that went through, in order. Each sample left out is listed by
    /// [`Bag::failed`] with its step and reason.
    pub fn samples(&self) -> Vec<Sample> {
        self.outcomes().into_iter().filter_map(Result::ok).collect()
    }

    /// The samples that failed, in order, with the step and the reason: those a
    /// step failed on, and those whose lazily loaded values fail to load (on a bag
    /// with such values this loads them to find out; call [`Bag::load`] once to
    /// load them only once).
    pub fn failed(&self) -> Vec<FailedSample> {
        let mut out = Vec::new();
        let mut push = |p: &Batch| {
            for (row, f) in p.failures() {
                out.push(failed(p.keys()[*row].to_string(), f.clone()));
            }
        };
        for p in &self.partitions {
            if p.has_lazy() {
                let mut loaded = (**p).clone();
                loaded.load_all("load");
                push(&loaded);
            } else {
                push(p);
            }
        }
        out
    }

    /// The sample sets, rebuilt with their own attributes (failed samples left out and
    /// listed by [`Bag::failed`]); `None` when the bag was not made of sets.
    pub fn sample_sets(&self) -> Option<Vec<SampleSet>> {
        let mut out = Vec::new();
        for p in &self.partitions {
            out.extend(
                (**p)
                    .clone()
                    .into_sample_sets()?
                    .into_iter()
                    .map(|(s, _)| s),
            );
        }
        Some(out)
    }
}

/// The key rule of [`Bag::from_batches`]: plain rows unique across partitions; set
/// keys unique across partitions and sample keys unique within each set.
fn check_batch_keys(partitions: &[Batch]) -> Result<(), DataError> {
    let plain: Vec<(usize, &Batch)> = partitions
        .iter()
        .enumerate()
        .filter(|(_, b)| b.sets().is_none())
        .collect();
    let mut starts = Vec::with_capacity(plain.len());
    let mut rows = 0;
    for (_, b) in &plain {
        starts.push(rows);
        rows += b.len();
    }
    let position = |i: usize| {
        let k = starts.partition_point(|&s| s <= i) - 1;
        format!("partition {} row {}", plain[k].0, i - starts[k])
    };
    let keys: Vec<&str> = plain.iter().flat_map(|(_, b)| b.keys().iter()).collect();
    check_unique(keys.into_iter(), position)?;
    let sets: Vec<(usize, usize, &str)> = partitions
        .iter()
        .enumerate()
        .filter_map(|(p, b)| b.sets().map(|l| (p, l)))
        .flat_map(|(p, l)| {
            l.keys
                .iter()
                .enumerate()
                .map(move |(i, k)| (p, i, k.as_str()))
        })
        .collect();
    check_unique(sets.iter().map(|s| s.2), |i| {
        format!("partition {} set {}", sets[i].0, sets[i].1)
    })?;
    for (p, b) in partitions.iter().enumerate() {
        let Some(layout) = b.sets() else { continue };
        for (i, range) in layout.ranges().enumerate() {
            check_unique(range.map(|r| &b.keys()[r]), |j| {
                format!("partition {p} set {i} ({:?}) sample {j}", layout.keys[i])
            })?;
        }
    }
    Ok(())
}

pub(super) fn failed(key: String, f: Failure) -> FailedSample {
    FailedSample {
        key,
        step: f.step,
        reason: f.reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn ranges_are_even_and_cover_everything() {
        let r = Partitioning::NPartitions(3).ranges(10);
        assert_eq!(r, vec![0..4, 4..7, 7..10]);
        assert_eq!(
            Partitioning::PartitionSize(4).ranges(10),
            vec![0..4, 4..7, 7..10]
        );
        assert_eq!(Partitioning::NPartitions(50).ranges(3).len(), 3);
        assert_eq!(Partitioning::Auto { workers: 2 }.ranges(100).len(), 8);
        assert!(Partitioning::NPartitions(5).ranges(0).is_empty());
    }

    #[test]
    fn from_rows_and_stack_round_trip() {
        let data = Array2::from_shape_fn((10, 3), |(i, j)| (i * 3 + j) as f64).into_dyn();
        let keys = (0..10).map(|i| i.to_string()).collect();
        let bag = Bag::from_rows(keys, data.clone(), Partitioning::NPartitions(3)).unwrap();
        assert_eq!(bag.npartitions(), 3);
        assert_eq!(bag.stack(DATA).unwrap().array, data);
        assert_eq!(bag.samples()[4].key, "4");
    }

    fn dup(err: DataError) -> (String, String, String) {
        match err {
            DataError::DuplicateKey { key, first, second } => (key, first, second),
            other => panic!("expected a duplicate key error, got {other}"),
        }
    }

    #[test]
    fn every_constructor_refuses_a_repeated_key_naming_both_positions() {
        let sample = |k: &str| Sample::new(k, ndarray::arr1(&[1.0]).into_dyn());
        let samples = vec![sample("a"), sample("b"), sample("c"), sample("a")];
        let err = Bag::from_samples(samples, Partitioning::NPartitions(2)).unwrap_err();
        assert_eq!(dup(err), ("a".into(), "sample 0".into(), "sample 3".into()));

        let keys = vec!["x".to_string(), "y".into(), "y".into()];
        let err = Bag::from_rows(
            keys,
            Array2::zeros((3, 2)).into_dyn(),
            Partitioning::NPartitions(3),
        )
        .unwrap_err();
        assert_eq!(dup(err), ("y".into(), "row 1".into(), "row 2".into()));

        let sets = vec![
            SampleSet::new("t1", vec![sample("a"), sample("b")]),
            SampleSet::new("t2", vec![sample("a"), sample("c"), sample("c")]),
        ];
        let err = Bag::from_sample_sets(sets.clone(), Partitioning::NPartitions(2)).unwrap_err();
        assert_eq!(
            dup(err),
            (
                "c".into(),
                "set 1 (\"t2\") sample 1".into(),
                "set 1 (\"t2\") sample 2".into()
            )
        );
        let twice = vec![sets[0].clone(), sets[0].clone()];
        let err = Bag::from_sample_sets(twice, Partitioning::NPartitions(1)).unwrap_err();
        assert_eq!(dup(err), ("t1".into(), "set 0".into(), "set 1".into()));
        // One sample in two sets is the same sample: allowed.
        let shared = vec![
            SampleSet::new("t1", vec![sample("a")]),
            SampleSet::new("t2", vec![sample("a")]),
        ];
        assert!(Bag::from_sample_sets(shared, Partitioning::NPartitions(1)).is_ok());

        let batches = vec![
            Batch::from_samples(vec![sample("p"), sample("q")]).unwrap(),
            Batch::from_samples(vec![sample("r"), sample("q")]).unwrap(),
        ];
        let err = Bag::from_batches(batches).unwrap_err();
        assert_eq!(
            dup(err),
            (
                "q".into(),
                "partition 0 row 1".into(),
                "partition 1 row 1".into()
            )
        );
        #[derive(Debug, Serialize, Deserialize)]
        struct NeverLoads;
        #[typetag::serde]
        impl crate::sample::Loader for NeverLoads {
            fn load(&self) -> Result<crate::value::Value, crate::data::error::LoadError> {
                unreachable!("a bag is built without loading")
            }
        }
        let delayed: Vec<DelayedSample> = ["m", "n", "m"]
            .iter()
            .map(|k| DelayedSample::new(*k, Arc::new(NeverLoads)))
            .collect();
        let err = Bag::from_delayed(delayed, Partitioning::NPartitions(1)).unwrap_err();
        assert_eq!(dup(err), ("m".into(), "sample 0".into(), "sample 2".into()));
    }
}
