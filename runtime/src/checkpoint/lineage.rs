//! What shaped a step's input: its lineage, as hashes a checkpoint records.
//!
//! A features folder and a model file are only reused when the step is the same
//! (type, parameters, wiring) **and** so is everything upstream of it: every
//! earlier step's type, parameters, wiring and fitted model. Changing a step that
//! is not checkpointed, before one that is, therefore counts like changing the
//! checkpointed step itself.

use super::hash::fnv1a64;
use super::model::model_bytes;
use crate::estimator::Estimator;
use crate::step::Step;
use serde::{Deserialize, Serialize};

/// The hash of an estimator's serialised form (its parameters when unfitted, its
/// fitted model otherwise), as 16 hex digits.
pub fn estimator_hash(e: &dyn Estimator) -> String {
    format!("{:016x}", fnv1a64(&model_bytes(e).unwrap_or_default()))
}

/// The hash of the steps before a step, each with the model it was applied with
/// (in order): their types, parameters, wiring and fitted models. Steps before
/// the first give the hash of nothing.
pub fn upstream_hash<'a>(
    before: impl IntoIterator<Item = (&'a Step, &'a dyn Estimator)>,
) -> String {
    let mut text = String::new();
    for (step, model) in before {
        text.push_str(&step_fingerprint(step, model));
        text.push('\n');
    }
    format!("{:016x}", fnv1a64(text.as_bytes()))
}

/// One applied step, as the lineage sees it.
fn step_fingerprint(step: &Step, model: &dyn Estimator) -> String {
    format!(
        "{}|{}|{}|{}->{}|{:?}|{:?}",
        step.name,
        step.estimator.typetag_name(),
        estimator_hash(step.estimator.as_ref()),
        step.input,
        step.output,
        step.transform_extra,
        estimator_hash(model),
    )
}

/// What a saved model was fitted as, kept in its file: a model is reused only
/// when all of it still holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelProvenance {
    /// The step's name.
    pub step: String,
    /// The estimator's type name.
    pub estimator: String,
    /// Hash of the unfitted estimator's parameters.
    pub parameters: String,
    /// Hash of everything upstream of the step ([`upstream_hash`]).
    pub upstream: String,
    /// The input attribute the fit read.
    pub input: String,
    /// The extra fit inputs `(argument, attribute)`.
    pub fit_extra: Vec<(String, String)>,
}

impl ModelProvenance {
    /// The provenance of fitting `step` on the output of an upstream with hash
    /// `upstream`.
    pub fn of(step: &Step, upstream: &str) -> Self {
        Self {
            step: step.name.clone(),
            estimator: step.estimator.typetag_name().to_string(),
            parameters: estimator_hash(step.estimator.as_ref()),
            upstream: upstream.to_string(),
            input: step.input.clone(),
            fit_extra: step.fit_extra.clone(),
        }
    }

    /// The fields that differ from `now`, named (`parameters hash: a -> b`).
    pub fn differences(&self, now: &ModelProvenance) -> Vec<String> {
        let mut d = Vec::new();
        let mut check = |name: &str, a: String, b: String| {
            if a != b {
                d.push(format!("{name}: {a} -> {b}"));
            }
        };
        check("step", self.step.clone(), now.step.clone());
        check("estimator", self.estimator.clone(), now.estimator.clone());
        check(
            "parameters hash",
            self.parameters.clone(),
            now.parameters.clone(),
        );
        check(
            "upstream steps hash",
            self.upstream.clone(),
            now.upstream.clone(),
        );
        check("input", self.input.clone(), now.input.clone());
        check(
            "fit extra",
            format!("{:?}", self.fit_extra),
            format!("{:?}", now.fit_extra),
        );
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::test_estimators::Shift;
    use std::sync::Arc;

    fn step(name: &str, shift: f64) -> (Step, Arc<dyn Estimator>) {
        let e: Arc<dyn Estimator> = Arc::new(Shift(shift));
        (Step::from_arc(name, e.clone()), e)
    }

    fn hash_of(steps: &[(Step, Arc<dyn Estimator>)]) -> String {
        upstream_hash(steps.iter().map(|(s, m)| (s, m.as_ref())))
    }

    #[test]
    fn every_upstream_change_changes_the_hash() {
        let base = vec![step("a", 1.0), step("b", 2.0)];
        let h = hash_of(&base);
        assert_eq!(h, hash_of(&[step("a", 1.0), step("b", 2.0)]), "stable");
        assert_ne!(h, hash_of(&[step("a", 1.5), step("b", 2.0)]), "parameters");
        assert_ne!(h, hash_of(&[step("a", 1.0)]), "a step fewer");
        assert_ne!(h, hash_of(&[step("b", 2.0), step("a", 1.0)]), "order");
        let mut rewired = base.clone();
        rewired[0].0 = rewired[0].0.clone().output("other");
        assert_ne!(h, hash_of(&rewired), "wiring");
        let mut refitted = base.clone();
        refitted[1].1 = Arc::new(Shift(9.0));
        assert_ne!(h, hash_of(&refitted), "fitted model");
        assert_eq!(upstream_hash(std::iter::empty()), hash_of(&[]));
    }

    #[test]
    fn provenance_names_what_differs() {
        let (s, _) = step("pca", 3.0);
        let a = ModelProvenance::of(&s, "0000");
        let (t, _) = step("pca", 2.0);
        let b = ModelProvenance::of(&t, "1111");
        let d = a.differences(&b).join("; ");
        assert!(
            d.contains("parameters hash") && d.contains("upstream steps hash"),
            "{d}"
        );
        assert!(a.differences(&a.clone()).is_empty());
    }
}
