//! Test estimators and helpers shared by the integration tests.

#![warn(missing_docs)]

pub mod gated;
pub mod grid;
pub mod netns;

use gridpipe_runtime::{
    Estimator, EstimatorError, Extra, LoadError, Loader, PartialFit, Sample, Transformed, Value,
};
use ndarray::{Array2, ArrayD, ArrayViewD, Axis, IxDyn};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// `n` samples of shape `shape` filled with `value`, keys "0".."n-1", attribute
/// `metadata=1` and `label=i % 2`.
pub fn samples(n: usize, shape: &[usize], value: f64) -> Vec<Sample> {
    (0..n)
        .map(|i| {
            Sample::new(i.to_string(), ArrayD::from_elem(IxDyn(shape), value))
                .with("metadata", 1)
                .with("label", (i % 2) as i64)
        })
        .collect()
}

/// Stateless `x + offset`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddOffset(pub f64);

#[typetag::serde]
impl Estimator for AddOffset {
    fn requires_fit(&self) -> bool {
        false
    }
    fn transform(&self, x: ArrayViewD<'_, f64>, _e: &Extra) -> Result<Transformed, EstimatorError> {
        Ok(x.mapv(|v| v + self.0).into())
    }
}

/// Fit learns `ones(d, d)` for samples of d features; transform is `x @ model` per
/// sample (so ones in give `d` out).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DummyWithFit {
    /// The learnt matrix.
    pub model: Option<Array2<f64>>,
}

#[typetag::serde]
impl Estimator for DummyWithFit {
    fn fit(&mut self, x: ArrayViewD<'_, f64>, _e: &Extra) -> Result<(), EstimatorError> {
        let d = *x.shape().last().unwrap_or(&1);
        self.model = Some(Array2::ones((d, d)));
        Ok(())
    }
    fn transform(&self, x: ArrayViewD<'_, f64>, _e: &Extra) -> Result<Transformed, EstimatorError> {
        let m = self.model.as_ref().ok_or(EstimatorError::NotFitted)?;
        let n = x.shape()[0];
        let d = m.nrows();
        let flat = x
            .to_owned()
            .into_shape_with_order((x.len() / d, d))
            .map_err(|e| EstimatorError::InvalidInput(e.to_string()))?;
        let out = flat.dot(m);
        let mut shape = x.shape().to_vec();
        shape[0] = n;
        Ok(out
            .into_shape_with_order(IxDyn(&shape))
            .expect("same size")
            .into())
    }
}

/// Fails every sample whose key is an even number (by row, with a reason).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FailEvenKeys;

#[typetag::serde]
impl Estimator for FailEvenKeys {
    fn requires_fit(&self) -> bool {
        false
    }
    fn transform(&self, x: ArrayViewD<'_, f64>, e: &Extra) -> Result<Transformed, EstimatorError> {
        let keys = e.require("key")?;
        let gridpipe_runtime::Column::Values(keys) = keys else {
            return Err(EstimatorError::InvalidInput("keys".into()));
        };
        let failed = keys
            .iter()
            .enumerate()
            .filter(|(_, k)| {
                k.as_str()
                    .and_then(|s| s.parse::<i64>().ok())
                    .is_some_and(|k| k % 2 == 0)
            })
            .map(|(i, k)| (i, format!("key {k} is even")))
            .collect();
        Ok(Transformed {
            data: x.mapv(|v| v + 1.0),
            failed,
        })
    }
}

/// Fails the whole batch with an error.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlwaysFails;

#[typetag::serde]
impl Estimator for AlwaysFails {
    fn requires_fit(&self) -> bool {
        false
    }
    fn transform(
        &self,
        _x: ArrayViewD<'_, f64>,
        _e: &Extra,
    ) -> Result<Transformed, EstimatorError> {
        Err(EstimatorError::Failed("this step always fails".into()))
    }
}

/// Panics in `transform`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Panics;

#[typetag::serde]
impl Estimator for Panics {
    fn requires_fit(&self) -> bool {
        false
    }
    fn transform(
        &self,
        _x: ArrayViewD<'_, f64>,
        _e: &Extra,
    ) -> Result<Transformed, EstimatorError> {
        panic!("estimator bug")
    }
}

/// Writes, for each row, the number of rows in the batch it was given.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BatchSize;

#[typetag::serde]
impl Estimator for BatchSize {
    fn requires_fit(&self) -> bool {
        false
    }
    fn transform(&self, x: ArrayViewD<'_, f64>, _e: &Extra) -> Result<Transformed, EstimatorError> {
        let n = x.shape()[0];
        Ok(ArrayD::from_elem(IxDyn(&[n]), n as f64).into())
    }
}

/// A fit that records the column sums of `x` and of its extra arguments `y` and
/// `extra`; transform adds the learnt sum of `y` to `x`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RecordingFit {
    /// Sum of every element of x seen by fit.
    pub x_sum: Option<f64>,
    /// Sum of y.
    pub y_sum: Option<f64>,
    /// Sum of the `extra` argument.
    pub extra_sum: Option<f64>,
}

fn sum_column(c: &gridpipe_runtime::Column) -> f64 {
    match c {
        gridpipe_runtime::Column::Array(a) => a.sum(),
        gridpipe_runtime::Column::Values(v) => v.iter().filter_map(Value::as_f64).sum(),
    }
}

#[typetag::serde]
impl Estimator for RecordingFit {
    fn fit(&mut self, x: ArrayViewD<'_, f64>, e: &Extra) -> Result<(), EstimatorError> {
        self.x_sum = Some(x.sum());
        self.y_sum = Some(sum_column(e.require("y")?));
        self.extra_sum = e.get("extra").map(sum_column);
        Ok(())
    }
    fn transform(&self, x: ArrayViewD<'_, f64>, _e: &Extra) -> Result<Transformed, EstimatorError> {
        let y = self.y_sum.ok_or(EstimatorError::NotFitted)?;
        Ok(x.mapv(|v| v + y).into())
    }
}

/// A reduction whose merge records the partition order it was given: fit_partials
/// stores the partial `rows` in order, transform adds nothing.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OrderProbe {
    /// First value of each partition, in the order merged.
    pub order: Vec<f64>,
}

#[typetag::serde]
impl Estimator for OrderProbe {
    fn transform(&self, x: ArrayViewD<'_, f64>, _e: &Extra) -> Result<Transformed, EstimatorError> {
        Ok(x.to_owned().into())
    }
    fn supports_partial_fit(&self) -> bool {
        true
    }
    fn partial_fit(
        &self,
        x: ArrayViewD<'_, f64>,
        _e: &Extra,
    ) -> Result<PartialFit, EstimatorError> {
        let first = x.iter().next().copied().unwrap_or(f64::NAN);
        Ok(PartialFit {
            rows: x.shape()[0] as u64,
            stats: vec![ArrayD::from_elem(IxDyn(&[1]), first)],
        })
    }
    fn fit_partials(&mut self, parts: &[PartialFit]) -> Result<(), EstimatorError> {
        self.order = parts.iter().map(|p| p.stats[0][[0]]).collect();
        Ok(())
    }
}

/// A fit that always fails.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FitFails;

#[typetag::serde]
impl Estimator for FitFails {
    fn fit(&mut self, _x: ArrayViewD<'_, f64>, _e: &Extra) -> Result<(), EstimatorError> {
        Err(EstimatorError::Failed("cannot learn this".into()))
    }
    fn transform(&self, x: ArrayViewD<'_, f64>, _e: &Extra) -> Result<Transformed, EstimatorError> {
        Ok(x.to_owned().into())
    }
}

fn load_counters() -> &'static Mutex<HashMap<String, usize>> {
    static C: OnceLock<Mutex<HashMap<String, usize>>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashMap::new()))
}

/// How many times a [`CountingLoader`] with this tag has loaded.
pub fn loads(tag: &str) -> usize {
    load_counters()
        .lock()
        .unwrap()
        .get(tag)
        .copied()
        .unwrap_or(0)
}

/// Loads a constant array and counts its loads under `tag`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CountingLoader {
    /// Counter name.
    pub tag: String,
    /// The value of every element.
    pub value: f64,
    /// The shape.
    pub shape: Vec<usize>,
}

#[typetag::serde]
impl Loader for CountingLoader {
    fn load(&self) -> Result<Value, LoadError> {
        *load_counters()
            .lock()
            .unwrap()
            .entry(self.tag.clone())
            .or_insert(0) += 1;
        if self.value.is_nan() {
            return Err(LoadError::new(format!("{}: unreadable", self.tag)));
        }
        Ok(Value::Array(ArrayD::from_elem(
            IxDyn(&self.shape),
            self.value,
        )))
    }
}

/// Removes a test's features folder and the lock file the runtime keeps beside
/// it (`<dir>.gridpipe-lock`), so that test runs leave nothing behind.
pub fn remove_features_folder(dir: &std::path::Path) {
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(gridpipe_runtime::checkpoint::lock::lock_path(dir));
}

/// A process-wide counter, for tests that need unique tags.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Rows of a stacked result as plain vectors, for comparisons.
pub fn rows(a: &ArrayD<f64>) -> Vec<Vec<f64>> {
    a.axis_iter(Axis(0))
        .map(|r| r.iter().copied().collect())
        .collect()
}

/// Stateless `x + 1` that sleeps `ms` milliseconds per batch (a slow step).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sleepy {
    /// Milliseconds per batch.
    pub ms: u64,
}

#[typetag::serde]
impl Estimator for Sleepy {
    fn requires_fit(&self) -> bool {
        false
    }
    fn transform(&self, x: ArrayViewD<'_, f64>, _e: &Extra) -> Result<Transformed, EstimatorError> {
        std::thread::sleep(std::time::Duration::from_millis(self.ms));
        Ok(x.mapv(|v| v + 1.0).into())
    }
}

/// Learns the mean of every value after sleeping `ms` milliseconds (a slow fit,
/// gathered), and subtracts it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SlowFit {
    /// Milliseconds the fit sleeps.
    pub ms: u64,
    /// The learnt mean.
    pub mean: Option<f64>,
}

#[typetag::serde]
impl Estimator for SlowFit {
    fn fit(&mut self, x: ArrayViewD<'_, f64>, _e: &Extra) -> Result<(), EstimatorError> {
        std::thread::sleep(std::time::Duration::from_millis(self.ms));
        self.mean = x.mean();
        Ok(())
    }
    fn transform(&self, x: ArrayViewD<'_, f64>, _e: &Extra) -> Result<Transformed, EstimatorError> {
        let m = self.mean.ok_or(EstimatorError::NotFitted)?;
        Ok(x.mapv(|v| v - m).into())
    }
}

/// Stateless `x + 1` given each batch's keys: it marks each batch it finishes
/// with a file in `marks` named `<pid>-<first key>`, and holds a batch with the
/// key `key` until the file `gate` exists (having written its process id into
/// `marks/held`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Gate {
    /// The key whose batch waits.
    pub key: String,
    /// The file that lets it go.
    pub gate: std::path::PathBuf,
    /// Where batches are marked.
    pub marks: std::path::PathBuf,
}

#[typetag::serde]
impl Estimator for Gate {
    fn requires_fit(&self) -> bool {
        false
    }
    fn transform(&self, x: ArrayViewD<'_, f64>, e: &Extra) -> Result<Transformed, EstimatorError> {
        let keys: Vec<String> = match e.get("key") {
            Some(gridpipe_runtime::Column::Values(keys)) => keys
                .iter()
                .map(|k| k.as_str().unwrap_or_default().to_string())
                .collect(),
            _ => Vec::new(),
        };
        let pid = std::process::id();
        if keys.contains(&self.key) {
            // Written whole and then named, so that a reader never sees it
            // half written.
            let held = self.marks.join("held");
            let _ = std::fs::write(held.with_extension("part"), pid.to_string())
                .and_then(|()| std::fs::rename(held.with_extension("part"), &held));
            while !self.gate.exists() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        let first = keys.first().cloned().unwrap_or_default();
        let _ = std::fs::write(self.marks.join(format!("{pid}-{first}")), "");
        Ok(x.mapv(|v| v + 1.0).into())
    }
}

/// Kills the process `pid` with SIGKILL.
pub fn kill9(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
}

/// Makes sure the test and library estimators are linked into a binary (their
/// serialisation registrations live in these crates' object code).
pub fn link_estimators() {
    std::hint::black_box((
        std::any::type_name::<Sleepy>(),
        std::any::type_name::<gridpipe_estimators::StandardScaler>(),
        gridpipe_estimators::StandardScaler::new(),
        gridpipe_estimators::Pca::new(1),
        gridpipe_estimators::FunctionTransformer::new(gridpipe_estimators::Identity),
        Sleepy { ms: 0 },
        SlowFit::default(),
        KillsWorkerOn {
            poison: String::new(),
        },
        Repeat { times: 1 },
        Gate {
            key: String::new(),
            gate: Default::default(),
            marks: Default::default(),
        },
        AbortsOn {
            poison: String::new(),
            busy_us: 0,
        },
    ));
}

/// Stateless `x + 1` that spins `busy_us` microseconds per batch (a fast task),
/// and aborts the process at once when a batch holds the key `poison`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AbortsOn {
    /// The deadly key.
    pub poison: String,
    /// Microseconds of work per batch.
    pub busy_us: u64,
}

#[typetag::serde]
impl Estimator for AbortsOn {
    fn requires_fit(&self) -> bool {
        false
    }
    fn transform(&self, x: ArrayViewD<'_, f64>, e: &Extra) -> Result<Transformed, EstimatorError> {
        if let Some(gridpipe_runtime::Column::Values(keys)) = e.get("key") {
            if keys
                .iter()
                .any(|k| k.as_str() == Some(self.poison.as_str()))
            {
                std::process::abort();
            }
        }
        let until = std::time::Instant::now() + std::time::Duration::from_micros(self.busy_us);
        while std::time::Instant::now() < until {
            std::hint::spin_loop();
        }
        Ok(x.mapv(|v| v + 1.0).into())
    }
}

/// Stateless: each sample's values repeated `times` times (a step whose output is
/// `times` times its input).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Repeat {
    /// How many copies.
    pub times: usize,
}

#[typetag::serde]
impl Estimator for Repeat {
    fn requires_fit(&self) -> bool {
        false
    }
    fn transform(&self, x: ArrayViewD<'_, f64>, _e: &Extra) -> Result<Transformed, EstimatorError> {
        let n = x.shape()[0];
        let row = x.len() / n.max(1);
        let mut out = Vec::with_capacity(x.len() * self.times);
        for r in x
            .as_standard_layout()
            .as_slice()
            .expect("standard layout")
            .chunks(row.max(1))
        {
            for _ in 0..self.times {
                out.extend_from_slice(r);
            }
        }
        Ok(ArrayD::from_shape_vec(IxDyn(&[n, row * self.times]), out)
            .expect("rows times copies")
            .into())
    }
}

/// Stateless `x + 1`, except that the process aborts when a batch holds the key
/// `poison` (a task that kills its worker).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KillsWorkerOn {
    /// The deadly key.
    pub poison: String,
}

#[typetag::serde]
impl Estimator for KillsWorkerOn {
    fn requires_fit(&self) -> bool {
        false
    }
    fn transform(&self, x: ArrayViewD<'_, f64>, e: &Extra) -> Result<Transformed, EstimatorError> {
        std::thread::sleep(std::time::Duration::from_millis(5));
        if let Some(gridpipe_runtime::Column::Values(keys)) = e.get("key") {
            if keys
                .iter()
                .any(|k| k.as_str() == Some(self.poison.as_str()))
            {
                std::process::abort();
            }
        }
        Ok(x.mapv(|v| v + 1.0).into())
    }
}

/// `whiten` (a standard scaler) -> `clip` (`x / 2`, its transforms tagged `io=1`)
/// -> `pca` (2 components): a plain step after a tagged one.
pub fn whiten_clip_pca() -> gridpipe_estimators::Pipeline {
    use gridpipe_estimators::{Affine, FunctionTransformer, Pca, Pipeline, StandardScaler};
    use gridpipe_runtime::{Resources, Step};
    Pipeline::new()
        .add("whiten", StandardScaler::new())
        .step(
            Step::new(
                "clip",
                FunctionTransformer::new(Affine {
                    scale: 0.5,
                    offset: 0.0,
                }),
            )
            .transform_resources(Resources::one("io", 1)),
        )
        .add("pca", Pca::new(2))
}

/// The benchmark's pipeline: `x -> 2x + 1`, then a standard scaler.
pub fn affine_then_scaler() -> gridpipe_estimators::Pipeline {
    use gridpipe_estimators::{Affine, FunctionTransformer, Pipeline, StandardScaler};
    Pipeline::new()
        .add(
            "affine",
            FunctionTransformer::new(Affine {
                scale: 2.0,
                offset: 1.0,
            }),
        )
        .add("scaler", StandardScaler::new())
}
