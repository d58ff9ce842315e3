//! Taking [`Batch`]es apart: concatenating partitions, and turning rows back into
//! samples (or sample sets) with their failures.

use super::{Batch, Failure, Failures, SetOutcome, DATA};
use crate::data::error::DataError;
use crate::sample::{Attributes, Sample, SampleSet};
use crate::value::Value;
use ndarray::{ArrayD, Axis, IxDyn};
use std::collections::BTreeMap;

impl Batch {
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
        b.failures = Failures::from_map(failures);
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
                attributes.insert(name.to_string(), col[row].clone());
            }
            for (name, a) in self.arrays.iter() {
                if name != DATA {
                    attributes.insert(
                        name.to_string(),
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
                key: self.keys[row].to_string(),
                data,
                attributes,
            };
            match self.failures.map().get(&row) {
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
