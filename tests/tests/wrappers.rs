//! The sample-wrapper contract of the original, on the in-process runtime:
//! function and fittable transformers, attribute routing, failing samples, sample
//! sets, delayed samples and `requires_fit`.

use gridpipe_estimators::{Affine, FunctionTransformer, Pipeline, StandardScaler};
use gridpipe_runtime::{
    Bag, DelayedSample, Partitioning, Resources, RunError, Runtime, Sample, SampleSet, Step, Value,
    DATA,
};
use gridpipe_tests::*;
use ndarray::{ArrayD, IxDyn};
use std::sync::Arc;

fn rt() -> Runtime {
    Runtime::in_process(2).unwrap()
}

fn bag(samples: Vec<Sample>, parts: usize) -> Bag {
    Bag::from_samples(samples, Partitioning::NPartitions(parts)).unwrap()
}

#[test]
fn function_transformer_adds_an_offset() {
    let rt = rt();
    let mut p = Pipeline::new().add(
        "plus3",
        FunctionTransformer::new(Affine {
            scale: 1.0,
            offset: 3.0,
        }),
    );
    assert!(!p.requires_fit());
    let out = p.transform(&rt, bag(samples(10, &[2], 1.0), 3)).unwrap();
    assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == 4.0));
    let out = p
        .fit_transform(&rt, bag(samples(10, &[2], 1.0), 3))
        .unwrap();
    assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == 4.0));
    assert_eq!(
        out.report.tasks.len(),
        3,
        "no fit task for a stateless step"
    );
}

#[test]
fn fittable_transformer_fits_then_transforms() {
    let rt = rt();
    let mut p = Pipeline::new().add("dummy", DummyWithFit::default());
    assert!(p.requires_fit() && !p.is_fitted());
    let err = p.transform(&rt, bag(samples(4, &[2], 1.0), 2)).unwrap_err();
    assert!(
        matches!(err, RunError::NotFitted { ref step } if step == "dummy"),
        "{err}"
    );
    p.fit(&rt, bag(samples(10, &[2], 1.0), 5)).unwrap();
    assert!(p.is_fitted());
    // ones @ ones(2, 2) = 2 everywhere, which is X + 1 for ones input.
    let out = p.transform(&rt, bag(samples(10, &[2], 1.0), 5)).unwrap();
    assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == 2.0));
    let mut q = Pipeline::new().add("dummy", DummyWithFit::default());
    let out = q
        .fit_transform(&rt, bag(samples(10, &[2], 1.0), 5))
        .unwrap();
    assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == 2.0));
}

#[test]
fn attributes_route_input_output_and_extra_arguments() {
    let rt = rt();
    let input: Vec<Sample> = (0..6)
        .map(|i| {
            Sample::new(i.to_string(), ArrayD::from_elem(IxDyn(&[2]), 1.0))
                .with("annotations", ArrayD::from_elem(IxDyn(&[2]), 10.0))
                .with("subject", i as i64)
        })
        .collect();
    let mut p = Pipeline::new().step(
        Step::new("rec", RecordingFit::default())
            .input("annotations")
            .output("annotations_2")
            .fit_extra("y", "subject")
            .fit_extra("extra", "data"),
    );
    let out = p.fit_transform(&rt, bag(input, 3)).unwrap();
    let model = p.model("rec").unwrap();
    let dbg = format!("{model:?}");
    // fit saw x = annotations (6 x 2 x 10), y = subject (0+..+5), extra = data (6 x 2 x 1).
    assert!(dbg.contains("x_sum: Some(120.0)"), "{dbg}");
    assert!(dbg.contains("y_sum: Some(15.0)"), "{dbg}");
    assert!(dbg.contains("extra_sum: Some(12.0)"), "{dbg}");
    for s in out.bag.samples() {
        assert_eq!(
            s.data,
            ArrayD::from_elem(IxDyn(&[2]), 1.0),
            "data untouched"
        );
        assert_eq!(
            s.attributes["annotations_2"],
            Value::Array(ArrayD::from_elem(IxDyn(&[2]), 25.0))
        );
        assert!(s.attributes.contains_key("annotations"));
    }
}

#[test]
fn unknown_attribute_fails_samples_with_a_reason_naming_it() {
    let rt = rt();
    let p = Pipeline::new().step(Step::new("t", AddOffset(1.0)).input("missing"));
    let out = p.transform(&rt, bag(samples(4, &[2], 0.0), 2)).unwrap();
    let failed = out.bag.failed();
    assert_eq!(failed.len(), 4);
    assert!(failed[0].reason.contains("\"missing\"") && failed[0].step == "t");
}

#[test]
fn failing_samples_stay_in_place_and_later_steps_skip_them() {
    let rt = rt();
    let p = Pipeline::new()
        .step(Step::new("half", FailEvenKeys).transform_extra("key", "key"))
        .add("plus1", AddOffset(1.0))
        .step(Step::new("half_again", FailEvenKeys).transform_extra("key", "key"));
    let out = p.transform(&rt, bag(samples(10, &[2], 0.0), 3)).unwrap();
    let outcomes = out.bag.outcomes();
    assert_eq!(outcomes.len(), 10, "no sample is dropped");
    for (i, o) in outcomes.iter().enumerate() {
        match o {
            Ok(s) => {
                assert!(i % 2 == 1);
                assert!(s.data.iter().all(|&v| v == 3.0), "three steps applied");
            }
            Err(f) => {
                assert!(i % 2 == 0);
                assert_eq!(f.step, "half", "failed in the first step, skipped after");
                assert!(f.reason.contains("even"));
            }
        }
    }
    assert_eq!(out.report.failed.len(), 5);
    let counted: u32 = out.report.tasks.iter().map(|t| t.failed_samples).sum();
    assert_eq!(counted, 5);
}

#[test]
fn a_failing_batch_or_a_panic_fails_its_samples_with_the_step_name() {
    let rt = rt();
    for p in [
        Pipeline::new().add("boom", AlwaysFails),
        Pipeline::new().add("panicky", Panics),
    ] {
        let name = p.steps()[0].name.clone();
        let out = p.transform(&rt, bag(samples(6, &[2], 0.0), 3)).unwrap();
        let failed = out.bag.failed();
        assert_eq!(failed.len(), 6);
        assert!(failed.iter().all(|f| f.step == name));
    }
}

#[test]
fn a_failing_fit_is_reported_with_the_step_name() {
    let rt = rt();
    let mut p = Pipeline::new()
        .add("plus1", AddOffset(1.0))
        .add("learner", FitFails);
    let err = p.fit(&rt, bag(samples(6, &[2], 0.0), 3)).unwrap_err();
    match err {
        RunError::FitFailed { step, reason } => {
            assert_eq!(step, "learner");
            assert!(reason.contains("cannot learn"));
        }
        e => panic!("unexpected {e}"),
    }
    // The runtime still serves other runs.
    let ok = Pipeline::new().add("plus1", AddOffset(1.0));
    assert!(ok.transform(&rt, bag(samples(2, &[2], 0.0), 1)).is_ok());
}

#[test]
fn sample_sets_are_processed_one_set_per_batch_and_rebuilt() {
    let rt = rt();
    let sets: Vec<SampleSet> = (0..4)
        .map(|i| {
            SampleSet::new(format!("set{i}"), samples(3 + i, &[2], 0.0)).with("subject", i as i64)
        })
        .collect();
    let bag = Bag::from_sample_sets(sets, Partitioning::NPartitions(2)).unwrap();
    let p = Pipeline::new()
        .add("plus1", AddOffset(1.0))
        .add("plus1b", AddOffset(1.0));
    let out = p.transform(&rt, bag.clone()).unwrap();
    let sets = out.bag.sample_sets().unwrap();
    assert_eq!(sets.len(), 4);
    for (i, s) in sets.iter().enumerate() {
        assert_eq!(s.key, format!("set{i}"));
        assert_eq!(s.len(), 3 + i);
        assert_eq!(s.attributes["subject"], Value::Int(i as i64));
        assert!(s.samples.iter().all(|x| x.data.iter().all(|&v| v == 2.0)));
    }
    // Each set is its own batch: the batch size seen by every sample is its set's size.
    let sizes = Pipeline::new()
        .add("size", BatchSize)
        .transform(&rt, bag)
        .unwrap();
    for (i, s) in sizes.bag.sample_sets().unwrap().iter().enumerate() {
        assert!(s.samples.iter().all(|x| x.data[[]] == (3 + i) as f64));
    }
}

#[test]
fn delayed_samples_load_lazily_once_per_task() {
    let rt = rt();
    let tag = unique("delayed");
    let input: Vec<DelayedSample> = (0..8)
        .map(|i| {
            DelayedSample::new(
                i.to_string(),
                Arc::new(CountingLoader {
                    tag: tag.clone(),
                    value: 2.0,
                    shape: vec![3],
                }),
            )
            .with("metadata", 1)
        })
        .collect();
    let bag = Bag::from_delayed(input, Partitioning::NPartitions(4)).unwrap();
    assert_eq!(loads(&tag), 0, "nothing loads when the bag is built");
    let p = Pipeline::new()
        .add("plus1", AddOffset(1.0))
        .add("plus1b", AddOffset(1.0));
    let out = p.transform(&rt, bag).unwrap();
    assert_eq!(
        loads(&tag),
        8,
        "each sample loaded once, shared by the fused steps"
    );
    assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == 4.0));
}

#[test]
fn a_failing_loader_fails_only_its_sample() {
    let rt = rt();
    let tag = unique("bad");
    let input: Vec<DelayedSample> = (0..4)
        .map(|i| {
            DelayedSample::new(
                i.to_string(),
                Arc::new(CountingLoader {
                    tag: tag.clone(),
                    value: if i == 2 { f64::NAN } else { 1.0 },
                    shape: vec![2],
                }),
            )
        })
        .collect();
    let out = Pipeline::new()
        .add("plus1", AddOffset(1.0))
        .transform(
            &rt,
            Bag::from_delayed(input, Partitioning::NPartitions(1)).unwrap(),
        )
        .unwrap();
    let failed = out.bag.failed();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].key, "2");
    assert!(failed[0].reason.contains("unreadable"));
    assert_eq!(out.bag.samples().len(), 3);
}

#[test]
fn requires_fit_over_every_combination() {
    let stateless = || {
        FunctionTransformer::new(Affine {
            scale: 1.0,
            offset: 0.0,
        })
    };
    let cases: Vec<(Pipeline, bool)> = vec![
        (Pipeline::new().add("a", stateless()), false),
        (
            Pipeline::new()
                .add("a", stateless())
                .add("b", AddOffset(1.0)),
            false,
        ),
        (Pipeline::new().add("a", DummyWithFit::default()), true),
        (
            Pipeline::new()
                .add("a", stateless())
                .add("b", DummyWithFit::default()),
            true,
        ),
        (
            Pipeline::new()
                .add("a", StandardScaler::new())
                .add("b", stateless()),
            true,
        ),
        (
            Pipeline::new().step(
                Step::new("t", DummyWithFit::default()).fit_resources(Resources::one("gpu", 1)),
            ),
            true,
        ),
    ];
    for (p, expected) in cases {
        assert_eq!(
            p.requires_fit(),
            expected,
            "{:?}",
            p.steps().iter().map(|s| &s.name).collect::<Vec<_>>()
        );
    }
    // Fitting a stateless pipeline runs no fit task.
    let rt = rt();
    let mut p = Pipeline::new()
        .add("a", stateless())
        .add("b", AddOffset(1.0));
    let out = p.fit(&rt, bag(samples(4, &[2], 0.0), 2)).unwrap();
    assert!(out
        .report
        .tasks
        .iter()
        .all(|t| out.report.label(t).op == gridpipe_runtime::TaskOp::Transform));
}

#[test]
fn samples_sets_and_models_round_trip_through_msgpack() {
    let s = Sample::new("k", ArrayD::from_elem(IxDyn(&[2, 2]), 1.5))
        .with("metadata", 1)
        .with("subject", "x");
    let back: Sample = rmp_serde::from_slice(&rmp_serde::to_vec_named(&s).unwrap()).unwrap();
    assert_eq!(back, s);
    let set = SampleSet::new("set", vec![s.clone(), s.clone()]).with("template", 3);
    let back: SampleSet = rmp_serde::from_slice(&rmp_serde::to_vec_named(&set).unwrap()).unwrap();
    assert_eq!(back, set);
    let d = DelayedSample::new(
        "d",
        Arc::new(CountingLoader {
            tag: unique("rt"),
            value: 1.0,
            shape: vec![2],
        }),
    )
    .with("metadata", 1);
    let back: DelayedSample = rmp_serde::from_slice(&rmp_serde::to_vec_named(&d).unwrap()).unwrap();
    assert_eq!(back.load().unwrap(), d.load().unwrap());
    // A fitted model survives the trip through the trait object.
    let rt = rt();
    let mut p = Pipeline::new().add("scaler", StandardScaler::new());
    p.fit(&rt, bag(samples(6, &[3], 2.0), 2)).unwrap();
    let model = p.model("scaler").unwrap();
    let bytes = rmp_serde::to_vec_named(&model).unwrap();
    let back: Box<dyn gridpipe_runtime::Estimator> = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(format!("{back:?}"), format!("{model:?}"));
}
