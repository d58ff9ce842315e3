//! [`StandardScaler`]: zero mean and unit variance per feature, fitted as a reduction.

use gridpipe_runtime::{Estimator, EstimatorError, Extra, PartialFit, Transformed};
use ndarray::{Array1, ArrayD, ArrayViewD, IxDyn};
use serde::{Deserialize, Serialize};

/// Standardises every feature: `(x - mean) / std`, with the population standard
/// deviation, and a scale of 1 for constant features (the semantics of linfa's
/// `LinearScaler::standard()`, which the tests check it against).
///
/// The fit is a reduction: each partition computes its count, mean and sum of
/// squared deviations, and the partitions are merged in partition order with the
/// pairwise update of Chan et al., so results are bitwise identical for the same
/// partitioning and agree to ~1e-15 relative across partitionings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StandardScaler {
    /// Per-feature means (`offsets`), once fitted.
    pub mean: Option<Array1<f64>>,
    /// Per-feature `1 / std` (1 for constant features), once fitted.
    pub scale: Option<Array1<f64>>,
}

impl StandardScaler {
    /// An unfitted scaler.
    pub fn new() -> Self {
        Self::default()
    }
}

fn stats(x: &ArrayViewD<'_, f64>) -> Result<PartialFit, EstimatorError> {
    let n = x.shape().first().copied().unwrap_or(0);
    let d: usize = x.shape()[1..].iter().product();
    let x = x.as_standard_layout();
    let flat = x.as_slice().expect("standard layout");
    let mut mean = vec![0.0; d];
    for row in flat.chunks_exact(d.max(1)) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v;
        }
    }
    if n > 0 {
        for m in &mut mean {
            *m /= n as f64;
        }
    }
    let mut m2 = vec![0.0; d];
    for row in flat.chunks_exact(d.max(1)) {
        for ((s, v), m) in m2.iter_mut().zip(row).zip(&mean) {
            let dv = v - m;
            *s += dv * dv;
        }
    }
    Ok(PartialFit {
        rows: n as u64,
        stats: vec![
            ArrayD::from_shape_vec(IxDyn(&[d]), mean).expect("shape"),
            ArrayD::from_shape_vec(IxDyn(&[d]), m2).expect("shape"),
        ],
    })
}

#[typetag::serde]
impl Estimator for StandardScaler {
    fn fit(&mut self, x: ArrayViewD<'_, f64>, _extra: &Extra) -> Result<(), EstimatorError> {
        let p = stats(&x)?;
        self.fit_partials(&[p])
    }

    fn transform(
        &self,
        x: ArrayViewD<'_, f64>,
        extra: &Extra,
    ) -> Result<Transformed, EstimatorError> {
        self.transform_owned(x.as_standard_layout().into_owned(), extra)
    }

    fn transform_owned(
        &self,
        x: ArrayD<f64>,
        _extra: &Extra,
    ) -> Result<Transformed, EstimatorError> {
        let (mean, scale) = match (&self.mean, &self.scale) {
            (Some(m), Some(s)) => (m, s),
            _ => return Err(EstimatorError::NotFitted),
        };
        let d: usize = x.shape()[1..].iter().product();
        if d != mean.len() {
            return Err(EstimatorError::InvalidInput(format!(
                "fitted on {} features, got {d}",
                mean.len()
            )));
        }
        let mut out = if x.is_standard_layout() {
            x
        } else {
            x.as_standard_layout().into_owned()
        };
        let (mean, scale) = (
            mean.as_slice().expect("contiguous"),
            scale.as_slice().expect("contiguous"),
        );
        if let Some(flat) = out.as_slice_mut() {
            for row in flat.chunks_exact_mut(d.max(1)) {
                for ((v, m), s) in row.iter_mut().zip(mean).zip(scale) {
                    *v = (*v - m) * s;
                }
            }
        }
        Ok(out.into())
    }

    fn supports_partial_fit(&self) -> bool {
        true
    }

    fn partial_fit(
        &self,
        x: ArrayViewD<'_, f64>,
        _extra: &Extra,
    ) -> Result<PartialFit, EstimatorError> {
        stats(&x)
    }

    fn fit_partials(&mut self, parts: &[PartialFit]) -> Result<(), EstimatorError> {
        let mut n = 0.0_f64;
        let mut mean: Option<Array1<f64>> = None;
        let mut m2: Option<Array1<f64>> = None;
        for p in parts.iter().filter(|p| p.rows > 0) {
            let pm = p.stats[0]
                .view()
                .into_dimensionality::<ndarray::Ix1>()
                .map_err(|e| {
                    EstimatorError::InvalidInput(format!("bad partial statistics: {e}"))
                })?;
            let pm2 = p.stats[1]
                .view()
                .into_dimensionality::<ndarray::Ix1>()
                .map_err(|e| {
                    EstimatorError::InvalidInput(format!("bad partial statistics: {e}"))
                })?;
            let nb = p.rows as f64;
            match (&mut mean, &mut m2) {
                (Some(ma), Some(m2a)) => {
                    if ma.len() != pm.len() {
                        return Err(EstimatorError::InvalidInput(format!(
                            "partitions disagree on the number of features: {} and {}",
                            ma.len(),
                            pm.len()
                        )));
                    }
                    let total = n + nb;
                    for j in 0..ma.len() {
                        let delta = pm[j] - ma[j];
                        ma[j] += delta * nb / total;
                        m2a[j] += pm2[j] + delta * delta * n * nb / total;
                    }
                    n = total;
                }
                _ => {
                    mean = Some(pm.to_owned());
                    m2 = Some(pm2.to_owned());
                    n = nb;
                }
            }
        }
        let (mean, m2) = match (mean, m2) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(EstimatorError::InvalidInput("no sample to fit on".into())),
        };
        let scale = m2.mapv(|s| {
            let std = (s / n).sqrt();
            if std.abs() <= f64::EPSILON {
                1.0
            } else {
                1.0 / std
            }
        });
        self.mean = Some(mean);
        self.scale = Some(scale);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::prelude::*;
    use linfa::traits::Fit;
    use ndarray::Array2;

    fn data() -> Array2<f64> {
        Array2::from_shape_fn((101, 4), |(i, j)| {
            let x = (i * 7 + j * 13) % 17;
            x as f64 * (j as f64 + 0.5) + if j == 3 { 0.0 } else { 1e3 }
        })
    }

    #[test]
    fn matches_linfa_standard_scaler() {
        let x = data();
        let mut ours = StandardScaler::new();
        ours.fit(x.view().into_dyn(), &Extra::none()).unwrap();
        let ds = DatasetBase::from(x.clone());
        let theirs = linfa_preprocessing::linear_scaling::LinearScaler::standard()
            .fit(&ds)
            .unwrap();
        for (a, b) in ours.mean.as_ref().unwrap().iter().zip(theirs.offsets()) {
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
        }
        for (a, b) in ours.scale.as_ref().unwrap().iter().zip(theirs.scales()) {
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
        }
        let t_ours = ours
            .transform(x.view().into_dyn(), &Extra::none())
            .unwrap()
            .data;
        let t_theirs = theirs.transform(x.clone());
        for (a, b) in t_ours.iter().zip(t_theirs.iter()) {
            assert!((a - b).abs() <= 1e-12);
        }
    }

    #[test]
    fn reduction_equals_whole_fit_across_partitionings() {
        let x = data();
        let mut whole = StandardScaler::new();
        whole.fit(x.view().into_dyn(), &Extra::none()).unwrap();
        for cuts in [vec![0, 50, 101], vec![0, 1, 2, 30, 99, 101], vec![0, 101]] {
            let parts: Vec<PartialFit> = cuts
                .windows(2)
                .map(|w| {
                    let s = x.slice(ndarray::s![w[0]..w[1], ..]).into_dyn();
                    whole.partial_fit(s, &Extra::none()).unwrap()
                })
                .collect();
            let mut merged = StandardScaler::new();
            merged.fit_partials(&parts).unwrap();
            for (a, b) in merged
                .mean
                .unwrap()
                .iter()
                .zip(whole.mean.as_ref().unwrap())
            {
                assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0));
            }
            for (a, b) in merged
                .scale
                .unwrap()
                .iter()
                .zip(whole.scale.as_ref().unwrap())
            {
                assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0));
            }
        }
    }

    #[test]
    fn unfitted_transform_is_an_error() {
        let x = data();
        let err = StandardScaler::new()
            .transform(x.view().into_dyn(), &Extra::none())
            .unwrap_err();
        assert_eq!(err, EstimatorError::NotFitted);
    }
}
