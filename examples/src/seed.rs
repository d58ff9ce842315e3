//! The seed example's data and estimators: `MyTransformer` and `MyFitTransformer`.

use gridpipe_runtime::{Bag, Estimator, EstimatorError, Extra, RunOutput, Sample, Transformed};
use ndarray::{array, Array2, ArrayD, ArrayViewD, Axis, Ix2};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Prints `key=<key> data=[..]` for every sample of `bag` that went through.
pub fn print_samples(bag: &Bag) {
    for s in bag.samples() {
        let v: Vec<f64> = s.data.iter().copied().collect();
        println!("key={} data={:?}", s.key, v);
    }
}

/// Prints a seed example's run: its samples, its task lines (when `tasks`) and
/// its summary.
pub fn print_run(out: &RunOutput, tasks: bool) {
    print_samples(&out.bag);
    if tasks {
        for line in out.report.task_lines() {
            println!("{line}");
        }
    }
    println!("{}", out.report.summary());
}

/// The seed's samples: `n` 2x2 zero matrices, keys "0".."n-1", attribute `metadata=1`.
pub fn seed_samples(n: usize) -> Vec<Sample> {
    (0..n)
        .map(|i| {
            Sample::new(i.to_string(), ArrayD::zeros(ndarray::IxDyn(&[2, 2]))).with("metadata", 1)
        })
        .collect()
}

/// Stateless: `x + metadata` for each sample (the metadata comes as the transform's
/// extra argument `metadata`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MyTransformer;

#[typetag::serde]
impl Estimator for MyTransformer {
    fn requires_fit(&self) -> bool {
        false
    }

    fn transform(
        &self,
        x: ArrayViewD<'_, f64>,
        extra: &Extra,
    ) -> Result<Transformed, EstimatorError> {
        let metadata = extra.numbers("metadata")?;
        let mut out = x.to_owned();
        for (mut row, m) in out.axis_iter_mut(Axis(0)).zip(metadata) {
            row += m;
        }
        Ok(out.into())
    }
}

/// Fittable: `fit` learns the matrix `[[1, 2], [3, 4]]` (after sleeping `fit_sleep`,
/// standing for a long training); `transform` is each sample's matrix product with it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MyFitTransformer {
    /// How long `fit` pretends to train.
    pub fit_sleep: Duration,
    /// The learnt matrix.
    pub model: Option<Array2<f64>>,
}

impl MyFitTransformer {
    /// An unfitted transformer whose fit sleeps `fit_sleep`.
    pub fn new(fit_sleep: Duration) -> Self {
        Self {
            fit_sleep,
            model: None,
        }
    }
}

#[typetag::serde]
impl Estimator for MyFitTransformer {
    fn fit(&mut self, _x: ArrayViewD<'_, f64>, _extra: &Extra) -> Result<(), EstimatorError> {
        std::thread::sleep(self.fit_sleep);
        self.model = Some(array![[1.0, 2.0], [3.0, 4.0]]);
        Ok(())
    }

    fn transform(
        &self,
        x: ArrayViewD<'_, f64>,
        _extra: &Extra,
    ) -> Result<Transformed, EstimatorError> {
        let model = self.model.as_ref().ok_or(EstimatorError::NotFitted)?;
        let mut out = x.to_owned();
        for (i, sample) in x.axis_iter(Axis(0)).enumerate() {
            let m = sample
                .into_dimensionality::<Ix2>()
                .map_err(|_| EstimatorError::InvalidInput("expected 2x2 samples".into()))?;
            out.index_axis_mut(Axis(0), i)
                .assign(&m.dot(model).into_dyn());
        }
        Ok(out.into())
    }
}
