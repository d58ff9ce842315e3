//! Checkpointed steps: a row whose file verifies is read from it, the others are
//! computed and written with one group commit. Either way the output comes back
//! as data in the batch (never as a lazy handle on the folder), so a result never
//! reads the folder again after its task: it needs no access to the folder, and
//! no file that fails to load later can silently drop a row.

use super::{apply_on, needed_columns, ChainOp};
use crate::batch::{Batch, Failure};
use crate::checkpoint::npy;
use crate::checkpoint::paths::sample_path;
use crate::checkpoint::store::{self, Probe};
use crate::plan::OpKind;
use crate::step::Step;
use ndarray::{ArrayD, Axis, IxDyn};
use std::path::{Path, PathBuf};

/// Per-op counts of a checkpointed step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpStats {
    /// Samples computed.
    pub computed: usize,
    /// Samples taken from valid files.
    pub cached: usize,
}

impl OpStats {
    /// Adds another count.
    pub fn add(&mut self, o: OpStats) {
        self.computed += o.computed;
        self.cached += o.cached;
    }
}

/// The file of every row of `b` (`None` where the key cannot name one: that row is
/// failed with the reason), and the probe of each valid row's file.
fn probe_rows(
    b: &mut Batch,
    step: &Step,
    dir: &Path,
) -> (Vec<Option<PathBuf>>, Vec<(usize, Probe)>) {
    let ck = step.checkpoint.as_ref().expect("checkpointed step");
    let mut paths = Vec::with_capacity(b.len());
    let mut bad = Vec::new();
    for (row, key) in b.keys().iter().enumerate() {
        match sample_path(dir, key, ck.hash_buckets) {
            Ok(p) => paths.push(Some(p)),
            Err(e) => {
                paths.push(None);
                bad.push((row, e.to_string()));
            }
        }
    }
    for (row, reason) in bad {
        b.add_failure(
            row,
            Failure {
                step: step.name.clone(),
                reason,
            },
        );
    }
    let rows: Vec<usize> = b.valid_rows().unwrap_or_else(|| (0..b.len()).collect());
    let probes = rows
        .into_iter()
        .map(|r| {
            (
                r,
                store::probe(paths[r].as_ref().expect("valid row has a path")),
            )
        })
        .collect();
    (paths, probes)
}

/// Puts rows read from files into the step's output column: into `computed` (the
/// array holding the rows just computed) or, without one, a new array (NaN where
/// no row is). A file whose row shape differs from the others fails its row.
fn place_stored(
    b: &mut Batch,
    step: &Step,
    computed: Option<ArrayD<f64>>,
    stored: Vec<(usize, ArrayD<f64>)>,
) {
    let Some(first) = stored.first() else {
        if let Some(out) = computed {
            b.set_output(&step.output, out, Vec::new());
        }
        return;
    };
    let mut out = computed.unwrap_or_else(|| {
        let mut shape = vec![b.len()];
        shape.extend_from_slice(first.1.shape());
        ArrayD::from_elem(IxDyn(&shape), f64::NAN)
    });
    let row_shape = out.shape()[1..].to_vec();
    let mut failures = Vec::new();
    for (row, a) in stored {
        if a.shape() == row_shape.as_slice() {
            out.index_axis_mut(Axis(0), row).assign(&a);
        } else {
            failures.push((
                row,
                Failure {
                    step: step.name.clone(),
                    reason: format!(
                        "its checkpoint file holds shape {:?}, the other rows have {:?}",
                        a.shape(),
                        row_shape
                    ),
                },
            ));
        }
    }
    b.set_output(&step.output, out, failures);
}

/// A checkpointed step: rows with a valid file are read from it; the others are
/// computed as one batch and written with one group commit (a file that cannot be
/// written fails its own row only). Failed samples are never written.
pub(super) fn apply_checkpointed(mut b: Batch, op: &ChainOp, dir: &Path) -> (Batch, OpStats) {
    let step = &op.step;
    let force = op.force || step.checkpoint.as_ref().is_some_and(|c| c.force);
    let (paths, probes) = probe_rows(&mut b, step, dir);
    let mut stored = Vec::new();
    let mut to_compute = Vec::new();
    for (row, probe) in probes {
        match probe {
            Probe::Valid(data) if !force => stored.push((row, data)),
            Probe::Invalid(reason) if !force => {
                let path = paths[row]
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                tracing::warn!(step = %step.name, %path, %reason, "invalid checkpoint: recomputing");
                to_compute.push(row);
            }
            _ => to_compute.push(row),
        }
    }
    let stats = OpStats {
        computed: to_compute.len(),
        cached: stored.len(),
    };
    let mut computed = None;
    if !to_compute.is_empty() {
        let mut plain = op.clone();
        plain.force = false;
        b.load_columns(&needed_columns(step, &step.transform_extra), &step.name);
        let rows = (to_compute.len() != b.len()).then(|| to_compute.clone());
        b = apply_on(b, &plain, rows);
        let ok: Vec<usize> = to_compute
            .iter()
            .copied()
            .filter(|r| !b.failures().contains_key(r))
            .collect();
        if !ok.is_empty() {
            computed = write_rows(&mut b, step, &paths, &ok);
        }
    }
    place_stored(&mut b, step, computed, stored);
    (b, stats)
}

/// Writes the computed `rows` of the step's output, failing each row whose file
/// could not be written; returns the output column (taken out of the batch).
fn write_rows(
    b: &mut Batch,
    step: &Step,
    paths: &[Option<PathBuf>],
    rows: &[usize],
) -> Option<ArrayD<f64>> {
    let out = b.take_array(&step.output)?;
    let files: Vec<(PathBuf, Vec<u8>)> = rows
        .iter()
        .map(|&r| {
            let a = out.index_axis(Axis(0), r).to_owned();
            (paths[r].clone().expect("path"), npy::encode(&a))
        })
        .collect();
    for (&row, result) in rows.iter().zip(store::write_group(&files)) {
        if let Err(e) = result {
            b.add_failure(
                row,
                Failure {
                    step: step.name.clone(),
                    reason: format!("writing the checkpoint failed: {e}"),
                },
            );
        }
    }
    Some(out)
}

/// When the last checkpointed op of a chain has a valid file for every row, and
/// the ops before it only rewrite the same array, those ops are skipped: their
/// outputs would be replaced anyway. Returns the batch, the counts, and the first
/// op still to run.
pub(super) fn resume_from_last_checkpoint(
    mut b: Batch,
    ops: &[ChainOp],
) -> ((Batch, OpStats), usize) {
    let Some(last) = ops.iter().rposition(|op| op.step.features_dir().is_some()) else {
        return ((b, OpStats::default()), 0);
    };
    let column = &ops[last].step.output;
    let rewrites_only = ops[..=last].iter().all(|op| {
        op.kind == OpKind::Transform && op.step.input == *column && op.step.output == *column
    });
    let op = &ops[last];
    if last == 0
        || !rewrites_only
        || op.force
        || op.step.checkpoint.as_ref().is_some_and(|c| c.force)
    {
        return ((b, OpStats::default()), 0);
    }
    let dir = op.step.features_dir().expect("checkpointed").to_path_buf();
    let failures_before = b.failures().len();
    let mut probe_batch = b.clone();
    let (_, probes) = probe_rows(&mut probe_batch, &op.step, &dir);
    if probe_batch.failures().len() != failures_before
        || !probes.iter().all(|(_, p)| matches!(p, Probe::Valid(_)))
    {
        return ((b, OpStats::default()), 0);
    }
    let n = probes.len();
    let stored = probes
        .into_iter()
        .filter_map(|(row, p)| match p {
            Probe::Valid(a) => Some((row, a)),
            _ => None,
        })
        .collect();
    place_stored(&mut b, &op.step, None, stored);
    (
        (
            b,
            OpStats {
                computed: 0,
                cached: n,
            },
        ),
        last + 1,
    )
}
