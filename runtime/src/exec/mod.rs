//! Executing tasks: a stage's fused chain of steps on one partition, and a fit.
//! Checkpointed steps are applied by its `checkpointed` module.
//!
//! Plain functions, called on worker threads (never on an actor's event loop). A
//! panicking or failing estimator fails the rows it was given, with the step's name,
//! and the run goes on.

use crate::bag::FailedSample;
use crate::batch::{Batch, Failure};
use crate::data::error::DataError;
use crate::estimator::{Estimator, Extra, PartialFit, Transformed};
use crate::graph::error::EstimatorError;
use crate::plan::OpKind;
use crate::step::Step;
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};
use std::panic::{catch_unwind, AssertUnwindSafe};

mod checkpointed;

pub use checkpointed::OpStats;
use checkpointed::{apply_checkpointed, resume_from_last_checkpoint};
use std::sync::Arc;

/// One step applied in a chain: its wiring, the (fitted) estimator and the op.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ChainOp {
    /// The step's wiring.
    pub step: Arc<Step>,
    /// The estimator to call (fitted, or stateless).
    pub model: Arc<dyn Estimator>,
    /// Transform or predict.
    pub kind: OpKind,
    /// Recompute every checkpointed sample (the step's configuration changed).
    pub force: bool,
}

/// What a chain hands to the fit its stage feeds.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct FeedSpec {
    /// The step being fitted.
    pub step: Arc<Step>,
    /// Its unfitted estimator.
    pub template: Arc<dyn Estimator>,
    /// Reduce (partial statistics) or gather (the data).
    pub reduce: bool,
}

/// The per-stage part of a chain task, shared by every partition of the stage.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StageExec {
    /// The fused steps.
    pub ops: Vec<ChainOp>,
    /// The fit this stage feeds, if any.
    pub feeds: Option<FeedSpec>,
}

/// One partition's contribution to a fit.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Contribution {
    /// Partial statistics (reduction).
    Partial(PartialFit),
    /// The valid rows of the step's input and its extra fit inputs (gather).
    Data {
        /// The input rows: the batch's own column when every row is valid
        /// (shared, not copied: a worker keeping them beside its held output
        /// holds them once).
        #[serde(with = "crate::wire::raw::shared_array")]
        x: Arc<ArrayD<f64>>,
        /// The extra fit inputs, same rows.
        extra: Extra,
    },
    /// The partition could not contribute (e.g. the partial fit failed).
    Failed(String),
    /// Rows kept on the worker process that made them; the fit's worker
    /// fetches them from there (see [`crate::remote::peer`]).
    Kept(KeptInput),
}

/// Where a gather fit's rows were kept: which worker process, at which
/// address its peers reach it, and under which key.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeptInput {
    /// The holder's worker id (set by the scheduler's proxy of the holder,
    /// which knows it; the holder does not).
    pub holder: u32,
    /// Where the holder listens for its peers.
    pub addr: String,
    /// The key it keeps them under.
    pub key: crate::remote::peer::InputKey,
    /// Bytes of the rows (for the fit's memory budget).
    pub bytes: u64,
}

impl Contribution {
    /// Bytes of the data rows it carries (none for statistics, nor for rows
    /// kept elsewhere).
    pub fn data_bytes(&self) -> u64 {
        match self {
            Contribution::Data { x, .. } => (x.len() * std::mem::size_of::<f64>()) as u64,
            _ => 0,
        }
    }

    /// Bytes of the rows it stands for, here or kept on a worker.
    pub fn rows_bytes(&self) -> u64 {
        match self {
            Contribution::Kept(k) => k.bytes,
            other => other.data_bytes(),
        }
    }
}

/// The outcome of a chain task.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ChainOutput {
    /// The partition after the chain.
    pub batch: Arc<Batch>,
    /// Samples that failed in this chain (not before it).
    pub new_failures: usize,
    /// The first of them (at most [`FAILED_SAMPLES_SHOWN`]), so that a run's
    /// failures are visible while it goes on, wherever its data stays.
    #[serde(default)]
    pub first_failed: Vec<FailedSample>,
    /// The output stayed on the worker; `batch` is empty.
    #[serde(default)]
    pub held: bool,
    /// Per checkpointed step of the chain (by name): samples computed and taken
    /// from valid files.
    pub checkpoints: Vec<(String, OpStats)>,
    /// What it gives to the fit its stage feeds.
    pub contribution: Option<Contribution>,
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

/// Runs `f` and turns a panic into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, EstimatorError>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(p) => Err(panic_message(p)),
    }
}

fn extras(
    batch: &Batch,
    map: &[(String, String)],
    rows: Option<&[usize]>,
    step: &str,
) -> Result<Extra, DataError> {
    let mut extra = Extra::none();
    for (arg, attr) in map {
        extra.insert(arg.clone(), batch.select_column(attr, rows, step)?);
    }
    Ok(extra)
}

fn needed_columns<'a>(step: &'a Step, map: &'a [(String, String)]) -> Vec<&'a str> {
    let mut v = vec![step.input.as_str()];
    v.extend(map.iter().map(|(_, a)| a.as_str()));
    v
}

/// Applies one step to a batch; failures are recorded per row, never raised.
pub fn apply_op(b: Batch, op: &ChainOp) -> (Batch, OpStats) {
    if let Some(dir) = op.step.features_dir() {
        return apply_checkpointed(b, op, dir);
    }
    (apply_plain(b, op), OpStats::default())
}

fn apply_plain(mut b: Batch, op: &ChainOp) -> Batch {
    let step = &op.step;
    b.load_columns(&needed_columns(step, &step.transform_extra), &step.name);
    let rows = b.valid_rows();
    if rows.as_ref().is_some_and(|r| r.is_empty()) {
        return b;
    }
    if rows.is_none()
        && b.sets().is_none()
        && step.input == step.output
        && op.kind == OpKind::Transform
    {
        return apply_in_place(b, op);
    }
    apply_on(b, op, rows)
}

/// Applies `op` to the given rows (all rows when `None`); on a batch error only
/// those rows fail.
fn apply_on(mut b: Batch, op: &ChainOp, rows: Option<Vec<usize>>) -> Batch {
    let step = &op.step;
    let fail_all = |b: &Batch, reason: &str| match &rows {
        None => b.with_all_failed(&step.name, reason),
        Some(r) => b.with_rows_failed(r, &step.name, reason),
    };
    let x = match b.select_array(&step.input, rows.as_deref(), &step.name) {
        Ok(x) => x,
        Err(e) => return fail_all(&b, &e.to_string()),
    };
    let extra = match extras(&b, &step.transform_extra, rows.as_deref(), &step.name) {
        Ok(e) => e,
        Err(e) => return fail_all(&b, &e.to_string()),
    };
    let x = x.view();
    let n_in = x.shape()[0];
    let result = match b.sets() {
        None => call(op, x.view(), &extra),
        Some(layout) => {
            // Each set is its own batch; map set ranges onto the selected rows.
            let selected: Vec<usize> = rows.clone().unwrap_or_else(|| (0..b.len()).collect());
            let mut outs = Vec::new();
            let mut start = 0;
            let mut failed = Vec::new();
            let mut err = None;
            for range in layout.ranges() {
                let len = selected[start..]
                    .iter()
                    .take_while(|&&r| r < range.end)
                    .count();
                let sub = start..start + len;
                start += len;
                if sub.is_empty() {
                    continue;
                }
                let xs = x.slice_axis(Axis(0), ndarray::Slice::from(sub.clone()));
                match call(op, xs, &extra.rows(sub.clone())) {
                    Ok(t) => {
                        failed.extend(t.failed.into_iter().map(|(i, r)| (i + sub.start, r)));
                        outs.push(t.data);
                    }
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
            match err {
                Some(e) => Err(e),
                None => {
                    let views: Vec<_> = outs.iter().map(|a| a.view()).collect();
                    ndarray::concatenate(Axis(0), &views)
                        .map(|data| Transformed { data, failed })
                        .map_err(|e| format!("set outputs do not stack: {e}"))
                }
            }
        }
    };
    let t = match result {
        Ok(t) => t,
        Err(reason) => return fail_all(&b, &reason),
    };
    let Some((data, failures)) = checked_output(&mut b, step, t, n_in, rows.as_deref()) else {
        return b;
    };
    let full = match &rows {
        None => data,
        Some(r) => scatter(&data, r, b.len()),
    };
    b.with_output(&step.output, full, failures)
}

/// Failed rows of a batch, with why.
type RowFailures = Vec<(usize, Failure)>;

/// Checks a step's output has one row per input row and maps its failed rows to
/// batch rows; on a row-count mismatch every row of `b` is failed and `None` returned.
fn checked_output(
    b: &mut Batch,
    step: &Step,
    t: Transformed,
    n_in: usize,
    rows: Option<&[usize]>,
) -> Option<(ArrayD<f64>, RowFailures)> {
    let to_row = |i: usize| rows.map_or(i, |r| r[i]);
    let n_out = t.data.shape().first().copied().unwrap_or(0);
    if n_out != n_in {
        let reason = format!("returned {n_out} rows for {n_in} samples");
        *b = match rows {
            None => b.with_all_failed(&step.name, &reason),
            Some(r) => b.with_rows_failed(r, &step.name, &reason),
        };
        return None;
    }
    let failures = t
        .failed
        .into_iter()
        .filter(|(i, _)| *i < n_in)
        .map(|(i, reason)| {
            (
                to_row(i),
                Failure {
                    step: step.name.clone(),
                    reason,
                },
            )
        })
        .collect();
    Some((t.data, failures))
}

/// The fast path: every row valid, one batch, output replaces input. The input
/// array is handed to the estimator by value so it can reuse the memory.
fn apply_in_place(mut b: Batch, op: &ChainOp) -> Batch {
    let step = &op.step;
    let extra = match extras(&b, &step.transform_extra, None, &step.name) {
        Ok(e) => e,
        Err(e) => return b.with_all_failed(&step.name, &e.to_string()),
    };
    let Some((x, taken)) = b.take_array_to_rewrite(&step.input) else {
        let e = b.select_array(&step.input, None, &step.name).err();
        let reason = e.map_or_else(|| format!("no array {:?}", step.input), |e| e.to_string());
        return b.with_all_failed(&step.name, &reason);
    };
    let n_in = x.shape().first().copied().unwrap_or(0);
    let t = match guarded(|| op.model.transform_owned(x, &extra)) {
        Ok(t) => t,
        // The input was handed over: the failed samples keep their key and reason.
        Err(reason) => return b.with_all_failed(&step.name, &reason),
    };
    if let Some((data, failures)) = checked_output(&mut b, step, t, n_in, None) {
        b.put_rewritten(taken, &step.output, data, failures);
    }
    b
}

fn call(op: &ChainOp, x: ArrayViewD<'_, f64>, extra: &Extra) -> Result<Transformed, String> {
    guarded(|| match op.kind {
        OpKind::Transform => op.model.transform(x, extra),
        OpKind::Predict => op.model.predict(x, extra),
    })
}

/// Places `rows` of `data` into a NaN-filled array of `n` rows.
fn scatter(data: &ArrayD<f64>, rows: &[usize], n: usize) -> ArrayD<f64> {
    let mut shape = vec![n];
    shape.extend_from_slice(&data.shape()[1..]);
    let mut out = ArrayD::from_elem(IxDyn(&shape), f64::NAN);
    for (i, &r) in rows.iter().enumerate() {
        out.index_axis_mut(Axis(0), r)
            .assign(&data.index_axis(Axis(0), i));
    }
    out
}

/// How many failed samples a task reports by name, and a run keeps for its view.
pub const FAILED_SAMPLES_SHOWN: usize = 100;

/// Runs one partition through a stage: the fused ops, then its contribution.
pub fn run_chain(mut input: Arc<Batch>, stage: &StageExec) -> ChainOutput {
    let mut batch = Batch::take_from(&mut input);
    let failed_before: Vec<usize> = batch.failures().keys().copied().collect();
    let mut checkpoints = Vec::new();
    let (resumed, start) = resume_from_last_checkpoint(batch, &stage.ops);
    batch = resumed.0;
    if start > 0 {
        checkpoints.push((stage.ops[start - 1].step.name.clone(), resumed.1));
    }
    for op in &stage.ops[start..] {
        let (b, s) = apply_op(batch, op);
        batch = b;
        if op.step.features_dir().is_some() {
            checkpoints.push((op.step.name.clone(), s));
        }
    }
    let contribution = stage.feeds.as_ref().map(|f| contribute(&mut batch, f));
    let first_failed = batch
        .failures()
        .iter()
        .filter(|(row, _)| failed_before.binary_search(row).is_err())
        .take(FAILED_SAMPLES_SHOWN)
        .map(|(row, f)| FailedSample {
            key: batch.keys()[*row].to_string(),
            step: f.step.clone(),
            reason: f.reason.clone(),
        })
        .collect();
    let new_failures = batch.failures().len().saturating_sub(failed_before.len());
    // The output goes back into the input's holder: no new one per task.
    Batch::put_back(&mut input, batch);
    ChainOutput {
        held: false,
        new_failures,
        first_failed,
        batch: input,
        contribution,
        checkpoints,
    }
}

fn contribute(batch: &mut Batch, feed: &FeedSpec) -> Contribution {
    let step = &feed.step;
    batch.load_columns(&needed_columns(step, &step.fit_extra), &step.name);
    let rows = batch.valid_rows();
    let x = match batch.select_array(&step.input, rows.as_deref(), &step.name) {
        Ok(x) => x,
        Err(e) if batch.is_empty() || rows.as_ref().is_some_and(|r| r.is_empty()) => {
            let _ = e;
            return Contribution::Data {
                x: Arc::new(ArrayD::zeros(IxDyn(&[0]))),
                extra: Extra::none(),
            };
        }
        Err(e) => return Contribution::Failed(e.to_string()),
    };
    let extra = match extras(batch, &step.fit_extra, rows.as_deref(), &step.name) {
        Ok(e) => e,
        Err(e) => return Contribution::Failed(e.to_string()),
    };
    if feed.reduce {
        match guarded(|| feed.template.partial_fit(x.view(), &extra)) {
            Ok(p) => Contribution::Partial(p),
            Err(e) => Contribution::Failed(e),
        }
    } else {
        let x = match x {
            // Every row: the column itself.
            crate::batch::ArrayViewOrOwned::View(_) => {
                batch.shared_array(&step.input).expect("selected above")
            }
            crate::batch::ArrayViewOrOwned::Owned(a) => Arc::new(a),
        };
        Contribution::Data { x, extra }
    }
}

/// Why a fit given rows it did not fetch fails (a scheduler bug: only worker
/// processes are given kept rows, and they fetch them first).
const NOT_FETCHED: &str = "a fit input kept on a worker process was not fetched";

/// Fits a step from the contributions of every partition, in partition order.
pub fn run_fit(
    template: &dyn Estimator,
    reduce: bool,
    parts: Vec<Contribution>,
) -> Result<Arc<dyn Estimator>, String> {
    let mut model = template.clone_box();
    if reduce {
        let mut partials = Vec::with_capacity(parts.len());
        for p in parts {
            match p {
                Contribution::Partial(p) => partials.push(p),
                Contribution::Failed(e) => return Err(e),
                Contribution::Data { .. } => {}
                Contribution::Kept(_) => return Err(NOT_FETCHED.into()),
            }
        }
        guarded(|| model.fit_partials(&partials))?;
    } else {
        let mut xs = Vec::with_capacity(parts.len());
        let mut extras = Vec::with_capacity(parts.len());
        for p in parts {
            match p {
                Contribution::Data { x, extra } => {
                    if x.ndim() > 1 || !x.is_empty() {
                        xs.push(x);
                        extras.push(extra);
                    }
                }
                Contribution::Failed(e) => return Err(e),
                Contribution::Partial(_) => {}
                Contribution::Kept(_) => return Err(NOT_FETCHED.into()),
            }
        }
        if xs.is_empty() {
            return Err("no valid sample to fit on".to_string());
        }
        let views: Vec<_> = xs.iter().map(|a| a.view()).collect();
        let x = ndarray::concatenate(Axis(0), &views)
            .map_err(|e| format!("partition inputs do not stack: {e}"))?;
        drop(xs);
        let extra = Extra::concat(extras).map_err(|e| e.to_string())?;
        guarded(|| model.fit(x.view(), &extra))?;
    }
    Ok(Arc::from(model))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::test_estimators::Center;
    use crate::sample::Sample;

    fn feeding_gather() -> StageExec {
        let step = Arc::new(Step::new("center", Center));
        StageExec {
            ops: Vec::new(),
            feeds: Some(FeedSpec {
                template: step.estimator.clone(),
                step,
                reduce: false,
            }),
        }
    }

    /// `n` samples of `dim` values, sample `i` all `i`.
    fn rows(n: usize, dim: usize) -> Batch {
        let samples = (0..n)
            .map(|i| Sample::new(i.to_string(), ArrayD::from_elem(IxDyn(&[dim]), i as f64)))
            .collect();
        Batch::from_samples(samples).unwrap()
    }

    #[test]
    fn a_gather_fits_rows_are_the_partitions_own_column_when_every_row_is_valid() {
        let batch = rows(4, 3);
        let out = run_chain(Arc::new(batch), &feeding_gather());
        let Some(Contribution::Data { x, .. }) = &out.contribution else {
            panic!("rows for the fit: {:?}", out.contribution)
        };
        let column = out.batch.shared_array(crate::batch::DATA).unwrap();
        assert!(
            Arc::ptr_eq(x, &column),
            "the rows kept for the fit are the output's own column, not a copy"
        );
        assert_eq!(x.shape(), &[4, 3]);
    }

    fn shift_by_one() -> StageExec {
        StageExec {
            ops: vec![ChainOp {
                step: Arc::new(Step::new(
                    "shift",
                    crate::graph::test_estimators::Shift(1.0),
                )),
                model: Arc::new(crate::graph::test_estimators::Shift(1.0)),
                kind: OpKind::Transform,
                force: false,
            }],
            feeds: None,
        }
    }

    #[test]
    fn a_chain_writes_its_output_into_the_inputs_holders_unless_the_input_is_shared() {
        let input = Arc::new(rows(3, 2));
        let want = input.array(crate::batch::DATA).unwrap().mapv(|v| v + 1.0);

        let shared = input.clone();
        let out = run_chain(input, &shift_by_one());
        assert_eq!(out.batch.array(crate::batch::DATA), Some(&want));
        assert!(
            !Arc::ptr_eq(&out.batch, &shared),
            "a shared input is left as it was"
        );
        assert_eq!(shared.array(crate::batch::DATA).unwrap()[[2, 0]], 2.0);

        let input = Arc::try_unwrap(shared).unwrap();
        let input = Arc::new(input);
        let batch_at = Arc::as_ptr(&input);
        let array_at: *const ArrayD<f64> = input.array(crate::batch::DATA).unwrap();
        let out = run_chain(input, &shift_by_one());
        assert_eq!(out.batch.array(crate::batch::DATA), Some(&want));
        assert_eq!(
            Arc::as_ptr(&out.batch),
            batch_at,
            "the batch's holder is reused"
        );
        let array_now: *const ArrayD<f64> = out.batch.array(crate::batch::DATA).unwrap();
        assert_eq!(array_now, array_at, "the column's holder is reused");
    }
}
