//! Nothing stale on resume: a saved model or a features folder is reused only when
//! the step (type, parameters, wiring) and everything upstream of it are what made
//! it; a difference is refused naming it (`Refuse`) or fitted and computed again
//! (`Recompute`). Every combination: model only, features only, both.

use gridpipe_estimators::{Pca, Pipeline, StandardScaler};
use gridpipe_runtime::checkpoint::CheckpointError;
use gridpipe_runtime::{
    Bag, Checkpoint, OnChange, Partitioning, RunError, RunOutput, Runtime, Step, TaskOp, DATA,
};
use gridpipe_tests::*;
use ndarray::Array2;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(unique(&format!(
        "gridpipe-lineage-{name}-{}",
        std::process::id()
    )));
    remove_features_folder(&d);
    d
}

fn bag() -> Bag {
    let x = Array2::from_shape_fn((40, 4), |(i, j)| {
        ((i * 7 + j * 13) % 11) as f64 + (i as f64) * 0.1 * (j as f64 + 1.0)
    });
    let keys = (0..40).map(|i| i.to_string()).collect();
    Bag::from_rows(keys, x.into_dyn(), Partitioning::NPartitions(4)).unwrap()
}

/// Which checkpoints the PCA step keeps.
#[derive(Clone, Copy, Debug)]
enum Kept {
    Model,
    Features,
    Both,
}

/// `shift(offset) -> scaler -> pca(components)`, the PCA checkpointed as `kept` says.
fn pipeline(dir: &Path, kept: Kept, offset: f64, components: usize, on: OnChange) -> Pipeline {
    let mut ck = match kept {
        Kept::Model => Checkpoint::default(),
        Kept::Features | Kept::Both => Checkpoint::features(dir.join("features")),
    };
    if matches!(kept, Kept::Model | Kept::Both) {
        ck = ck.model(dir.join("pca.model"));
    }
    Pipeline::new()
        .add("shift", AddOffset(offset))
        .add("scaler", StandardScaler::new())
        .step(Step::new("pca", Pca::new(components)).checkpoint(ck.on_change(on)))
}

fn run(rt: &Runtime, p: Pipeline) -> Result<RunOutput, RunError> {
    let mut p = p;
    p.fit_transform(rt, bag())
}

fn pca_fits(out: &RunOutput) -> usize {
    out.report
        .tasks
        .iter()
        .filter(|t| {
            let l = out.report.label(t);
            l.op == TaskOp::Fit && l.steps == ["pca"]
        })
        .count()
}

/// The reference: the same pipeline with no checkpoint at all.
fn fresh(rt: &Runtime, offset: f64, components: usize) -> ndarray::ArrayD<f64> {
    Pipeline::new()
        .add("shift", AddOffset(offset))
        .add("scaler", StandardScaler::new())
        .add("pca", Pca::new(components))
        .fit_transform(rt, bag())
        .unwrap()
        .bag
        .stack(DATA)
        .unwrap()
        .array
}

fn refused(err: RunError) -> String {
    match &err {
        RunError::Checkpoint(
            CheckpointError::Changed { .. } | CheckpointError::ModelChanged { .. },
        ) => err.to_string(),
        other => panic!("expected a refused checkpoint, got {other}"),
    }
}

#[test]
fn a_changed_fitted_step_is_refused_or_refitted_whatever_it_keeps() {
    let rt = Runtime::in_process(2).unwrap();
    for kept in [Kept::Model, Kept::Features, Kept::Both] {
        let d = tmp("step");
        let first = run(&rt, pipeline(&d, kept, 1.0, 3, OnChange::Refuse)).unwrap();
        assert_eq!(first.bag.stack(DATA).unwrap().shape(), &[40, 3]);
        // The same configuration again: everything reused.
        let again = run(&rt, pipeline(&d, kept, 1.0, 3, OnChange::Refuse)).unwrap();
        if matches!(kept, Kept::Model | Kept::Both) {
            assert_eq!(pca_fits(&again), 0, "{kept:?}: model reused");
            assert_eq!(again.report.loaded_models, vec!["pca".to_string()]);
        }
        if matches!(kept, Kept::Features | Kept::Both) {
            assert_eq!(again.report.checkpoints["pca"].computed, 0, "{kept:?}");
        }
        // Pca(3) -> Pca(2): refused, naming the step and what differs.
        let msg = refused(run(&rt, pipeline(&d, kept, 1.0, 2, OnChange::Refuse)).unwrap_err());
        assert!(
            msg.contains("\"pca\"") && msg.contains("parameters hash"),
            "{kept:?}: {msg}"
        );
        // ... or fitted and computed again, never the stale 3-component model.
        let out = run(&rt, pipeline(&d, kept, 1.0, 2, OnChange::Recompute)).unwrap();
        assert_eq!(pca_fits(&out), 1, "{kept:?}: refitted");
        assert!(out.report.loaded_models.is_empty());
        let y = out.bag.stack(DATA).unwrap().array;
        assert_eq!(y, fresh(&rt, 1.0, 2), "{kept:?}: the new model's output");
        // The new configuration is now the recorded one.
        let later = run(&rt, pipeline(&d, kept, 1.0, 2, OnChange::Refuse)).unwrap();
        assert_eq!(later.bag.stack(DATA).unwrap().array, y, "{kept:?}");
        remove_features_folder(&d);
    }
}

#[test]
fn a_changed_step_upstream_of_a_checkpoint_counts_as_a_change() {
    let rt = Runtime::in_process(2).unwrap();
    for kept in [Kept::Model, Kept::Features, Kept::Both] {
        let d = tmp("upstream");
        run(&rt, pipeline(&d, kept, 1.0, 3, OnChange::Refuse)).unwrap();
        // `shift` is not checkpointed; changing it changes what the PCA sees.
        let msg = refused(run(&rt, pipeline(&d, kept, 5.0, 3, OnChange::Refuse)).unwrap_err());
        assert!(msg.contains("upstream steps hash"), "{kept:?}: {msg}");
        let out = run(&rt, pipeline(&d, kept, 5.0, 3, OnChange::Recompute)).unwrap();
        assert_eq!(out.bag.stack(DATA).unwrap().array, fresh(&rt, 5.0, 3));
        remove_features_folder(&d);
    }
}

#[test]
fn a_stateless_checkpointed_step_sees_its_upstream_too() {
    let rt = Runtime::in_process(2).unwrap();
    let d = tmp("stateless");
    let p = |offset: f64, on: OnChange| {
        Pipeline::new().add("shift", AddOffset(offset)).step(
            Step::new("plus1", AddOffset(1.0)).checkpoint(Checkpoint::features(&d).on_change(on)),
        )
    };
    let out = p(1.0, OnChange::Refuse).transform(&rt, bag()).unwrap();
    let before = out.bag.stack(DATA).unwrap().array;
    let msg = refused(p(2.0, OnChange::Refuse).transform(&rt, bag()).unwrap_err());
    assert!(msg.contains("upstream steps hash"), "{msg}");
    let out = p(2.0, OnChange::Recompute).transform(&rt, bag()).unwrap();
    assert_eq!(out.report.checkpoints["plus1"].computed, 40);
    let after = out.bag.stack(DATA).unwrap().array;
    assert!(after.iter().zip(before.iter()).all(|(a, b)| *a == b + 1.0));
    remove_features_folder(&d);
}

#[test]
fn transform_and_predict_never_share_a_features_folder() {
    use gridpipe_estimators::LogisticRegression;
    let rt = Runtime::in_process(2).unwrap();
    let d = tmp("predict");
    let input = || Bag::from_samples(samples(20, &[2], 1.0), Partitioning::NPartitions(2)).unwrap();
    let mut p = Pipeline::new().add("plus1", AddOffset(1.0)).step(
        Step::new("clf", LogisticRegression::new())
            .fit_extra("y", "label")
            .checkpoint(Checkpoint::features(&d)),
    );
    p.fit(&rt, input()).unwrap();
    p.transform(&rt, input()).unwrap();
    let msg = refused(p.predict(&rt, input()).unwrap_err());
    assert!(msg.contains("operation: transform -> predict"), "{msg}");
    remove_features_folder(&d);
}
