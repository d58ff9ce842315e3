//! [`Pipeline`]: named steps computed on a runtime, with the same calls on every back-end.

use gridpipe_runtime::{
    Bag, Checkpoint, Estimator, OpKind, RunError, RunOutput, RunRequest, Runtime, Step, StepRun,
    Value,
};
use std::path::Path;
use std::sync::Arc;

/// A scikit-learn-style pipeline of named [`Step`]s.
///
/// `fit`, `transform`, `fit_transform`, `predict` and `score` build a task graph and
/// compute it on the [`Runtime`] given, whatever its back-end. Fitted models are kept
/// in the pipeline, so a fitted pipeline transforms or predicts new bags.
#[derive(Clone, Debug, Default)]
pub struct Pipeline {
    steps: Vec<Arc<Step>>,
    fitted: Vec<Option<Arc<dyn Estimator>>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Fit,
    FitTransform,
    Transform,
    Predict,
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a step (built with [`Step::new`] and its wiring/tag methods).
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(Arc::new(step));
        self.fitted.push(None);
        self
    }

    /// Appends a plain step reading and writing `data`.
    pub fn add(self, name: impl Into<String>, estimator: impl Estimator + 'static) -> Self {
        self.step(Step::new(name, estimator))
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Arc<Step>] {
        &self.steps
    }

    /// Whether any step learns anything (a stateless pipeline never needs a fit).
    pub fn requires_fit(&self) -> bool {
        self.steps.iter().any(|s| s.requires_fit())
    }

    /// Whether every step that needs a fit has a fitted model.
    pub fn is_fitted(&self) -> bool {
        self.steps
            .iter()
            .zip(&self.fitted)
            .all(|(s, m)| !s.requires_fit() || m.is_some())
    }

    /// The fitted model of a step, by name.
    pub fn model(&self, name: &str) -> Option<Arc<dyn Estimator>> {
        let i = self.steps.iter().position(|s| s.name == name)?;
        self.fitted[i].clone()
    }

    /// Sets a step's fitted model (e.g. loaded from disk).
    pub fn set_model(&mut self, name: &str, model: Arc<dyn Estimator>) -> Result<(), RunError> {
        let i = self
            .steps
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| RunError::InvalidPipeline(format!("no step named {name:?}")))?;
        self.fitted[i] = Some(model);
        Ok(())
    }

    /// Checkpoints every step: features in `features_dir/<step name>/`, fitted models
    /// in `model_path/<step name>.model` (stateless steps never write a model).
    pub fn checkpoint(self, features_dir: impl AsRef<Path>, model_path: impl AsRef<Path>) -> Self {
        let (f, m) = (features_dir.as_ref(), model_path.as_ref());
        self.checkpoint_with(|name| {
            Checkpoint::features(f.join(name)).model(m.join(format!("{name}.model")))
        })
    }

    /// Checkpoints every step with the configuration `make(step name)` returns.
    pub fn checkpoint_with(mut self, make: impl Fn(&str) -> Checkpoint) -> Self {
        self.steps = self
            .steps
            .into_iter()
            .map(|s| {
                let c = make(&s.name);
                Arc::new((*s).clone().checkpoint(c))
            })
            .collect();
        self
    }

    /// The run of `op` over `bag`. A step with a saved model is still asked to fit:
    /// the runtime replaces the fit by the saved model once it can check that the
    /// model was fitted as this step, on this upstream (the pipeline reads no file).
    fn request(&self, op: Op, bag: Bag) -> Result<RunRequest, RunError> {
        if self.steps.is_empty() {
            return Err(RunError::InvalidPipeline("the pipeline has no step".into()));
        }
        let last = self.steps.len() - 1;
        let steps = self
            .steps
            .iter()
            .zip(&self.fitted)
            .enumerate()
            .map(|(i, (s, m))| {
                let fit = matches!(op, Op::Fit | Op::FitTransform) && s.requires_fit();
                let apply = match op {
                    Op::Fit if i == last => None,
                    Op::Predict if i == last => Some(OpKind::Predict),
                    _ => Some(OpKind::Transform),
                };
                StepRun {
                    step: s.clone(),
                    fitted: if fit { None } else { m.clone() },
                    fit,
                    apply,
                }
            })
            .collect();
        Ok(RunRequest::new(steps, bag))
    }

    /// Keeps the models of a run (those fitted in it were saved by their fit task
    /// where the step has a model path).
    fn keep_models(&mut self, out: &RunOutput) {
        for (slot, m) in self.fitted.iter_mut().zip(&out.models) {
            if m.is_some() {
                *slot = m.clone();
            }
        }
    }

    /// Fits every step that needs it (each on the output of the steps before it).
    pub fn fit(&mut self, rt: &Runtime, bag: Bag) -> Result<RunOutput, RunError> {
        let out = rt.run(self.request(Op::Fit, bag)?)?;
        self.keep_models(&out);
        Ok(out)
    }

    /// Fits, then transforms the same bag through every step.
    pub fn fit_transform(&mut self, rt: &Runtime, bag: Bag) -> Result<RunOutput, RunError> {
        let out = rt.run(self.request(Op::FitTransform, bag)?)?;
        self.keep_models(&out);
        Ok(out)
    }

    /// Transforms a bag through every (fitted) step.
    pub fn transform(&self, rt: &Runtime, bag: Bag) -> Result<RunOutput, RunError> {
        rt.run(self.request(Op::Transform, bag)?)
    }

    /// [`Pipeline::transform`], its output partitions left where they were made
    /// (inside the worker processes, or here with threads) until taken from
    /// [`RunOutput::kept`]: a service iterates them in partition order with
    /// bounded memory ([`gridpipe_runtime::run::KeptOutput::stream`]).
    pub fn transform_kept(&self, rt: &Runtime, bag: Bag) -> Result<RunOutput, RunError> {
        rt.run(self.request(Op::Transform, bag)?.keep_in_place())
    }

    /// [`Pipeline::fit_transform`], its output kept in place as by
    /// [`Pipeline::transform_kept`].
    pub fn fit_transform_kept(&mut self, rt: &Runtime, bag: Bag) -> Result<RunOutput, RunError> {
        let out = rt.run(self.request(Op::FitTransform, bag)?.keep_in_place())?;
        self.keep_models(&out);
        Ok(out)
    }

    /// Transforms through every step but the last, whose `predict` gives the output.
    pub fn predict(&self, rt: &Runtime, bag: Bag) -> Result<RunOutput, RunError> {
        rt.run(self.request(Op::Predict, bag)?)
    }

    /// Accuracy of `predict` against the samples' `label` attribute.
    pub fn score(&self, rt: &Runtime, bag: Bag, label: &str) -> Result<(f64, RunOutput), RunError> {
        let out = self.predict(rt, bag)?;
        Ok((accuracy_against(&out, label)?, out))
    }

    /// [`Pipeline::fit`] from async code.
    pub async fn fit_async(&mut self, rt: &Runtime, bag: Bag) -> Result<RunOutput, RunError> {
        let out = rt.run_async(self.request(Op::Fit, bag)?).await?;
        self.keep_models(&out);
        Ok(out)
    }

    /// [`Pipeline::fit_transform`] from async code.
    pub async fn fit_transform_async(
        &mut self,
        rt: &Runtime,
        bag: Bag,
    ) -> Result<RunOutput, RunError> {
        let out = rt.run_async(self.request(Op::FitTransform, bag)?).await?;
        self.keep_models(&out);
        Ok(out)
    }

    /// [`Pipeline::transform`] from async code.
    pub async fn transform_async(&self, rt: &Runtime, bag: Bag) -> Result<RunOutput, RunError> {
        rt.run_async(self.request(Op::Transform, bag)?).await
    }

    /// [`Pipeline::predict`] from async code.
    pub async fn predict_async(&self, rt: &Runtime, bag: Bag) -> Result<RunOutput, RunError> {
        rt.run_async(self.request(Op::Predict, bag)?).await
    }
}

/// The fraction of valid output samples whose `data` (a predicted label) equals
/// their `label` attribute; failed samples count as wrong.
pub fn accuracy_against(out: &RunOutput, label: &str) -> Result<f64, RunError> {
    let mut n = 0usize;
    let mut ok = 0usize;
    for r in out.bag.outcomes() {
        n += 1;
        let Ok(s) = r else { continue };
        let truth = s
            .attributes
            .get(label)
            .and_then(Value::as_f64)
            .ok_or_else(|| {
                RunError::InvalidPipeline(format!(
                    "sample {:?} has no numeric attribute {label:?} to score against",
                    s.key
                ))
            })?;
        let pred = s.data.iter().next().copied().unwrap_or(f64::NAN);
        if pred == truth {
            ok += 1;
        }
    }
    Ok(if n == 0 { 0.0 } else { ok as f64 / n as f64 })
}
