//! Planning: a pipeline operation becomes stages of fused per-partition tasks and fits.
//!
//! A pure function of the steps and the operation, so it is tested without actors.
//! Each partition goes through the stages in order; a stage is one task per partition
//! (a chain of transforms fused so the data stays put). A fit is a barrier: the stage
//! before it contributes each partition's statistics (or data) to the fit, and the
//! stage after it starts only when the fitted model exists. Consecutive transforms are
//! fused only while they carry the same resource tags, so a tag lands on its own
//! step's tasks and nowhere else.

use crate::resources::Resources;

/// Whether a step's output is a transform or a prediction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OpKind {
    /// `transform`.
    Transform,
    /// `predict` (classifiers, regressors).
    Predict,
}

/// What to do with one step in this run.
#[derive(Clone, Debug, PartialEq)]
pub struct StepWork {
    /// The step's name.
    pub name: String,
    /// Fit the step in this run.
    pub fit: bool,
    /// Apply the step to the partitions (after its fit, if any).
    pub apply: Option<OpKind>,
    /// Whether the fit is a reduction of per-partition statistics.
    pub reduce: bool,
    /// Resources of the step's fit task.
    pub fit_resources: Resources,
    /// Resources of the step's transform tasks.
    pub transform_resources: Resources,
}

/// One step applied inside a stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StageOp {
    /// Index of the step.
    pub step: usize,
    /// Transform or predict.
    pub kind: OpKind,
}

/// One per-partition task template.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// Steps applied in order (may be empty: a stage that only feeds a fit).
    pub ops: Vec<StageOp>,
    /// What the stage's tasks need.
    pub resources: Resources,
    /// The fit (index into `Plan::fits`) that must finish before this stage starts.
    pub after_fit: Option<usize>,
    /// The fit this stage's output feeds.
    pub feeds_fit: Option<usize>,
}

/// One fit task template.
#[derive(Clone, Debug, PartialEq)]
pub struct FitNode {
    /// Index of the step.
    pub step: usize,
    /// What the fit task needs.
    pub resources: Resources,
    /// The stage whose outputs feed it.
    pub from_stage: usize,
    /// Merge per-partition statistics (`true`) or gather the data (`false`).
    pub reduce: bool,
}

/// The stages and fits of one run, and whether the last stage's outputs are the result.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Per-partition stages, in order.
    pub stages: Vec<Stage>,
    /// Fits, in order.
    pub fits: Vec<FitNode>,
    /// Whether the final stage's outputs are collected as the run's result.
    pub collect: bool,
}

impl Plan {
    /// Builds the plan of one operation over `steps`.
    pub fn build(steps: &[StepWork]) -> Plan {
        let mut stages = vec![Stage {
            ops: Vec::new(),
            resources: Resources::none(),
            after_fit: None,
            feeds_fit: None,
        }];
        let mut fits = Vec::new();
        let mut any_apply_after_last_fit = true;
        for (i, s) in steps.iter().enumerate() {
            if s.fit {
                let fit = fits.len();
                let cur = stages.len() - 1;
                stages[cur].feeds_fit = Some(fit);
                fits.push(FitNode {
                    step: i,
                    resources: s.fit_resources.clone(),
                    from_stage: cur,
                    reduce: s.reduce,
                });
                stages.push(Stage {
                    ops: Vec::new(),
                    resources: Resources::none(),
                    after_fit: Some(fit),
                    feeds_fit: None,
                });
                any_apply_after_last_fit = false;
            }
            if let Some(kind) = s.apply {
                let cur = stages.len() - 1;
                if !stages[cur].ops.is_empty() && stages[cur].resources != s.transform_resources {
                    stages.push(Stage {
                        ops: Vec::new(),
                        resources: Resources::none(),
                        after_fit: None,
                        feeds_fit: None,
                    });
                }
                let cur = stages.len() - 1;
                if stages[cur].ops.is_empty() {
                    stages[cur].resources = s.transform_resources.clone();
                }
                stages[cur].ops.push(StageOp { step: i, kind });
                any_apply_after_last_fit = true;
            }
        }
        // A last stage that does nothing and feeds nothing (a fit-only run) is dropped.
        let last = stages.last().expect("at least one stage");
        let collect = any_apply_after_last_fit || steps.is_empty();
        if stages.len() > 1 && last.ops.is_empty() && last.feeds_fit.is_none() && !collect {
            stages.pop();
        }
        Plan {
            stages,
            fits,
            collect,
        }
    }

    /// The number of tasks for `partitions` partitions.
    pub fn task_count(&self, partitions: usize) -> usize {
        self.stages.len() * partitions + self.fits.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(name: &str, fit: bool, apply: bool) -> StepWork {
        StepWork {
            name: name.into(),
            fit,
            apply: apply.then_some(OpKind::Transform),
            reduce: false,
            fit_resources: Resources::none(),
            transform_resources: Resources::none(),
        }
    }

    #[test]
    fn stateless_steps_fuse_into_one_stage() {
        let p = Plan::build(&[w("a", false, true), w("b", false, true)]);
        assert_eq!(p.stages.len(), 1);
        assert_eq!(p.stages[0].ops.len(), 2);
        assert!(p.fits.is_empty() && p.collect);
    }

    #[test]
    fn a_fit_is_a_barrier_between_stages() {
        let p = Plan::build(&[w("t", false, true), w("f", true, true)]);
        assert_eq!(p.stages.len(), 2);
        assert_eq!(p.stages[0].feeds_fit, Some(0));
        assert_eq!(p.stages[1].after_fit, Some(0));
        assert_eq!(
            p.stages[1].ops,
            vec![StageOp {
                step: 1,
                kind: OpKind::Transform
            }]
        );
        assert_eq!(p.fits[0].from_stage, 0);
    }

    #[test]
    fn fit_only_run_drops_the_trailing_stage_and_collects_nothing() {
        let p = Plan::build(&[w("t", false, true), w("f", true, false)]);
        assert_eq!(p.stages.len(), 1);
        assert!(!p.collect);
        assert_eq!(p.task_count(5), 6);
    }

    #[test]
    fn first_step_fit_feeds_from_an_empty_stage() {
        let p = Plan::build(&[
            w("scaler", true, true),
            w("pca", true, true),
            w("clf", true, false),
        ]);
        assert_eq!(p.fits.len(), 3);
        assert!(p.stages[0].ops.is_empty());
        assert_eq!(p.stages.len(), 3);
        assert!(!p.collect);
    }

    #[test]
    fn different_transform_tags_split_the_chain() {
        let mut g = w("gpu", false, true);
        g.transform_resources = Resources::one("gpu", 1);
        let p = Plan::build(&[w("a", false, true), g, w("c", false, true)]);
        assert_eq!(p.stages.len(), 3);
        assert_eq!(p.stages[1].resources, Resources::one("gpu", 1));
        assert!(p.stages[0].resources.is_empty() && p.stages[2].resources.is_empty());
    }

    #[test]
    fn fit_tags_go_to_the_fit_only() {
        let mut f = w("f", true, true);
        f.fit_resources = Resources::one("gpu", 1);
        let p = Plan::build(&[w("t", false, true), f]);
        assert_eq!(p.fits[0].resources, Resources::one("gpu", 1));
        assert!(p.stages.iter().all(|s| s.resources.is_empty()));
    }
}
