//! Every checkpoint decision a run makes, in one place: which fits a saved model
//! stands for, which features folders a stage holds, and whether their files are
//! reused or recomputed.
//!
//! Deciding reads and writes files, and may wait (up to a few seconds) for another
//! program to finish changing a folder's manifest, so the scheduler asks these
//! questions on a blocking thread, never on its event loop. A question that
//! touches no file ([`StageQuestion::touches_files`], [`plan_touches_files`]) is
//! answered where it is asked: it costs nothing.

use super::lineage::upstream_hash;
use super::lock::{acquire, FolderLock};
use super::manifest::Manifest;
use super::model::saved_model_for;
use super::CheckpointError;
use crate::estimator::Estimator;
use crate::plan::OpKind;
use crate::run::StepRun;
use crate::step::Step;
use std::sync::Arc;

/// A step with the model it is applied with.
pub type Applied = (Arc<Step>, Arc<dyn Estimator>);

/// What deciding a stage needs, owned so that it can move to another thread.
pub struct StageQuestion {
    /// The run's steps from the first, each with its model, as far as the models
    /// are known (the upstream of each checkpointed operation).
    pub known: Vec<Applied>,
    /// The stage's operations: the index of each step, the step with its model,
    /// and how it is applied.
    pub ops: Vec<(usize, Applied, OpKind)>,
    /// The fit the stage feeds, when that fit is not done: its step's index and
    /// the step (a saved model may stand for it).
    pub fed_fit: Option<(usize, Arc<Step>)>,
}

/// The answer to a [`StageQuestion`].
#[derive(Debug, Default)]
pub struct StageDecision {
    /// Per operation: recompute every sample (its folder was replaced under
    /// `Recompute`).
    pub force: Vec<bool>,
    /// The run's holds on the folders the stage writes (let go when dropped).
    pub locks: Vec<FolderLock>,
    /// The saved model that stands for the fed fit, when it still holds.
    pub saved_model: Option<Arc<dyn Estimator>>,
    /// The upstream hashes computed on the way: step index and hash.
    pub upstream: Vec<(usize, String)>,
}

fn has_model_file(step: &Step) -> bool {
    step.checkpoint
        .as_ref()
        .is_some_and(|c| c.model_path.is_some())
}

impl StageQuestion {
    /// Whether answering reads or writes any file.
    pub fn touches_files(&self) -> bool {
        self.ops
            .iter()
            .any(|(_, (step, _), _)| step.features_dir().is_some())
            || self
                .fed_fit
                .as_ref()
                .is_some_and(|(_, step)| has_model_file(step))
    }

    /// The hash of everything upstream of step `i`; every step before it must
    /// have a model.
    fn upstream_of(&self, i: usize, step: &Step) -> Result<String, CheckpointError> {
        let before = self
            .known
            .get(..i)
            .ok_or_else(|| CheckpointError::UpstreamUnknown {
                step: step.name.clone(),
            })?;
        Ok(upstream_hash(
            before
                .iter()
                .map(|(step, model)| (step.as_ref(), model.as_ref())),
        ))
    }
}

/// Decides a stage: the saved model that stands for the fit it feeds (when it
/// still holds), then each checkpointed operation's folder, held for the run
/// with its manifest checked (or written). A folder of another configuration is
/// an error under `Refuse`, and replaced under `Recompute`.
pub fn decide_stage(question: &StageQuestion) -> Result<StageDecision, CheckpointError> {
    let mut decision = StageDecision::default();
    if let Some((i, step)) = question.fed_fit.as_ref().filter(|(_, s)| has_model_file(s)) {
        let upstream = question.upstream_of(*i, step)?;
        decision.saved_model = saved_model_for(step, &upstream)?;
        decision.upstream.push((*i, upstream));
    }
    for (i, (step, model), kind) in &question.ops {
        match (step.features_dir(), &step.checkpoint) {
            (Some(dir), Some(ck)) => {
                let upstream = question.upstream_of(*i, step)?;
                let wanted = Manifest::of(step, model.as_ref(), *kind, &upstream);
                let (lock, force) = acquire(dir, &wanted, ck.on_change)?;
                decision.locks.push(lock);
                decision.force.push(force);
                decision.upstream.push((*i, upstream));
            }
            _ => decision.force.push(false),
        }
    }
    Ok(decision)
}

/// Whether [`resolve_saved_fits`] would read a file: some step to fit has a model
/// file.
pub fn plan_touches_files(steps: &[StepRun]) -> bool {
    steps
        .iter()
        .any(|s| s.fits_here() && has_model_file(&s.step))
}

/// Replaces each fit whose saved model still holds by that model, before the run
/// is planned (so the plan fuses the steps around it). A fit's saved model can be
/// checked here only when every step before it has a model; the others are
/// checked by [`decide_stage`] once their upstream fits are done. Returns the
/// names of the steps whose fit was replaced.
pub fn resolve_saved_fits(steps: &mut [StepRun]) -> Result<Vec<String>, CheckpointError> {
    let mut loaded = Vec::new();
    let mut known: Vec<Option<Applied>> = Vec::with_capacity(steps.len());
    for s in steps.iter_mut() {
        let (fit, model) = (s.fits_here(), s.known_model());
        if fit && has_model_file(&s.step) && known.iter().all(Option::is_some) {
            let upstream = upstream_hash(
                known
                    .iter()
                    .flatten()
                    .map(|(step, model)| (step.as_ref(), model.as_ref())),
            );
            if let Some(saved) = saved_model_for(&s.step, &upstream)? {
                s.fit = false;
                s.fitted = Some(saved.clone());
                loaded.push(s.step.name.clone());
                known.push(Some((s.step.clone(), saved)));
                continue;
            }
        }
        known.push(if fit {
            None
        } else {
            model.map(|m| (s.step.clone(), m))
        });
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::graph::test_estimators::Shift;

    fn applied(step: Step) -> Applied {
        let model = step.estimator.clone();
        (Arc::new(step), model)
    }

    fn question(known: Vec<Applied>, ops: &[usize]) -> StageQuestion {
        let ops = ops
            .iter()
            .map(|&i| (i, known[i].clone(), OpKind::Transform))
            .collect();
        StageQuestion {
            known,
            ops,
            fed_fit: None,
        }
    }

    #[test]
    fn only_checkpointed_operations_touch_files_and_each_holds_its_folder() {
        let dir = std::env::temp_dir().join(format!("gridpipe-decide-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let known = vec![
            applied(Step::new("a", Shift(1.0))),
            applied(Step::new("b", Shift(2.0)).checkpoint(Checkpoint::features(&dir))),
        ];
        let plain = question(known.clone(), &[0]);
        assert!(!plain.touches_files());
        let d = decide_stage(&plain).unwrap();
        assert_eq!(
            (d.force, d.locks.len(), d.upstream.len()),
            (vec![false], 0, 0)
        );
        assert!(!dir.exists(), "a plain stage writes nothing");

        let both = question(known.clone(), &[0, 1]);
        assert!(both.touches_files());
        let d = decide_stage(&both).unwrap();
        assert_eq!(d.force, vec![false, false]);
        assert_eq!(d.locks.len(), 1, "the checkpointed step's folder is held");
        let a_only = upstream_hash([(known[0].0.as_ref(), known[0].1.as_ref())]);
        assert_eq!(d.upstream, vec![(1, a_only)]);
        assert!(dir.join(super::super::manifest::MANIFEST_FILE).exists());
        drop(d);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(super::super::lock::lock_path(&dir));
    }

    #[test]
    fn a_checkpointed_step_whose_upstream_is_unknown_is_refused_naming_it() {
        let dir = std::env::temp_dir().join(format!("gridpipe-decide-u-{}", std::process::id()));
        let b = applied(Step::new("b", Shift(2.0)).checkpoint(Checkpoint::features(&dir)));
        let q = StageQuestion {
            known: Vec::new(),
            ops: vec![(1, b, OpKind::Transform)],
            fed_fit: None,
        };
        let err = decide_stage(&q).unwrap_err();
        assert!(
            matches!(&err, CheckpointError::UpstreamUnknown { step } if step == "b"),
            "{err}"
        );
        assert!(!dir.exists(), "nothing written");
    }
}
