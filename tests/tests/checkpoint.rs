//! Checkpoints: the original's contract, and what it lacked (manifests, checksums,
//! atomic writes, numpy-readable files).

use gridpipe_estimators::Pipeline;
use gridpipe_runtime::checkpoint::manifest::MANIFEST_FILE;
use gridpipe_runtime::{
    Bag, Checkpoint, OnChange, Partitioning, RunError, Runtime, Sample, SampleSet, Step, DATA,
};
use gridpipe_tests::*;
use std::fs;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(unique(&format!(
        "gridpipe-ck-{name}-{}",
        std::process::id()
    )));
    remove_features_folder(&d);
    d
}

fn bag(n: usize, parts: usize) -> Bag {
    Bag::from_samples(samples(n, &[2], 1.0), Partitioning::NPartitions(parts)).unwrap()
}

fn npy_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "npy") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn stateless_step_writes_features_no_model_and_outputs_carry_their_data() {
    let rt = Runtime::in_process(2).unwrap();
    let d = tmp("stateless");
    let step = || {
        Step::new("plus1", AddOffset(1.0))
            .checkpoint(Checkpoint::features(d.join("features")).model(d.join("model.msgpack")))
    };
    let mut p = Pipeline::new().step(step());
    let out = p.fit_transform(&rt, bag(10, 3)).unwrap();
    assert!(
        !d.join("model.msgpack").exists(),
        "no model for a stateless step"
    );
    for i in 0..10 {
        assert!(d.join(format!("features/{i}.npy")).exists());
    }
    assert!(d.join("features").join(MANIFEST_FILE).exists());
    assert!(
        out.bag.partitions().iter().all(|b| !b.has_lazy()),
        "outputs carry their data: nothing reads the folder after the run"
    );
    assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == 2.0));
    assert_eq!(out.report.checkpoints["plus1"].computed, 10);
    // Everything is taken from the files the second time.
    let again = p.transform(&rt, bag(10, 3)).unwrap();
    assert_eq!(again.report.checkpoints["plus1"].computed, 0);
    assert_eq!(again.report.checkpoints["plus1"].cached, 10);
    // Deleting the folder recomputes.
    fs::remove_dir_all(d.join("features")).unwrap();
    let third = p.transform(&rt, bag(10, 3)).unwrap();
    assert_eq!(third.report.checkpoints["plus1"].computed, 10);
    remove_features_folder(&d);
}

#[test]
fn no_paths_just_works_and_hash_buckets_bound_the_folders() {
    let rt = Runtime::in_process(2).unwrap();
    let plain =
        Pipeline::new().step(Step::new("plus1", AddOffset(1.0)).checkpoint(Checkpoint::default()));
    assert!(plain
        .transform(&rt, bag(4, 2))
        .unwrap()
        .bag
        .stack(DATA)
        .unwrap()
        .iter()
        .all(|&v| v == 2.0));
    let d = tmp("buckets");
    let p = Pipeline::new()
        .step(Step::new("plus1", AddOffset(1.0)).checkpoint(Checkpoint::features(&d).buckets(7)));
    p.transform(&rt, bag(50, 5)).unwrap();
    let files = npy_files(&d);
    assert_eq!(files.len(), 50);
    for f in files {
        let bucket: u32 = f
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(bucket < 7);
    }
    remove_features_folder(&d);
}

#[test]
fn fitted_step_saves_its_model_and_loads_it_instead_of_fitting() {
    let rt = Runtime::in_process(2).unwrap();
    let d = tmp("fitted");
    let make = || {
        Pipeline::new()
            .add("plus1", AddOffset(1.0))
            .add("dummy", DummyWithFit::default())
            .checkpoint(d.join("features"), d.join("models"))
    };
    let mut p = make();
    assert!(p.requires_fit());
    let out = p.fit_transform(&rt, bag(10, 5)).unwrap();
    assert_eq!(out.report.fits(), 1);
    assert!(d.join("models/dummy.model").exists());
    assert!(!d.join("models/plus1.model").exists());
    assert_eq!(npy_files(&d.join("features/dummy")).len(), 10);
    // (1 + 1) @ ones(2, 2) = 4.
    assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == 4.0));
    let mut q = make();
    let again = q.fit_transform(&rt, bag(10, 5)).unwrap();
    assert_eq!(again.report.fits(), 0, "the model file replaces the fit");
    assert_eq!(again.report.checkpoint_computed(), 0);
    assert!(again.bag.stack(DATA).unwrap().iter().all(|&v| v == 4.0));
    // Fit on some keys, transform others.
    let mut r = make();
    r.fit(&rt, bag(10, 2)).unwrap();
    let other: Vec<Sample> = samples(20, &[2], 1.0).into_iter().skip(10).collect();
    let out = r
        .transform(
            &rt,
            Bag::from_samples(other, Partitioning::NPartitions(2)).unwrap(),
        )
        .unwrap();
    assert_eq!(out.report.checkpoints["dummy"].computed, 10);
    assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == 4.0));
    remove_features_folder(&d);
}

#[test]
fn force_recomputes_everything_with_the_same_results() {
    let rt = Runtime::in_process(2).unwrap();
    let d = tmp("force");
    let p = Pipeline::new()
        .add("a", AddOffset(1.0))
        .add("b", AddOffset(1.0))
        .checkpoint_with(|name| Checkpoint::features(d.join(name)).force(true));
    for _ in 0..2 {
        let out = p.transform(&rt, bag(8, 2)).unwrap();
        assert_eq!(out.report.checkpoint_computed(), 16);
        assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == 3.0));
    }
    remove_features_folder(&d);
}

#[test]
fn failed_samples_are_never_written_and_are_retried() {
    let rt = Runtime::in_process(2).unwrap();
    let d = tmp("failed");
    let p = Pipeline::new().step(
        Step::new("half", FailEvenKeys)
            .transform_extra("key", "key")
            .checkpoint(Checkpoint::features(&d)),
    );
    let out = p.transform(&rt, bag(10, 2)).unwrap();
    assert_eq!(out.bag.failed().len(), 5);
    let names: Vec<String> = npy_files(&d)
        .iter()
        .map(|f| f.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["1", "3", "5", "7", "9"]);
    let again = p.transform(&rt, bag(10, 2)).unwrap();
    assert_eq!(
        again.report.checkpoints["half"].computed, 5,
        "only the failed ones"
    );
    assert_eq!(again.bag.failed().len(), 5);
    remove_features_folder(&d);
}

#[test]
fn sample_sets_checkpoint_each_inner_sample() {
    let rt = Runtime::in_process(2).unwrap();
    let d = tmp("sets");
    let sets: Vec<SampleSet> = (0..3)
        .map(|s| {
            let inner = (0..4)
                .map(|i| {
                    Sample::new(
                        format!("s{s}/{i}"),
                        ndarray::ArrayD::zeros(ndarray::IxDyn(&[2])),
                    )
                })
                .collect();
            SampleSet::new(format!("set{s}"), inner)
        })
        .collect();
    let p = Pipeline::new()
        .add("a", AddOffset(1.0))
        .add("b", AddOffset(1.0))
        .checkpoint_with(|name| Checkpoint::features(d.join(name)));
    let out = p
        .transform(
            &rt,
            Bag::from_sample_sets(sets.clone(), Partitioning::NPartitions(2)).unwrap(),
        )
        .unwrap();
    let got = out.bag.sample_sets().unwrap();
    assert_eq!(got.len(), 3);
    assert!(got
        .iter()
        .all(|s| s.len() == 4 && s.samples.iter().all(|x| x.data.iter().all(|&v| v == 2.0))));
    assert_eq!(npy_files(&d.join("b")).len(), 12);
    assert!(
        d.join("b/s2/3.npy").exists(),
        "keys with folders make folders"
    );
    let again = p
        .transform(
            &rt,
            Bag::from_sample_sets(sets, Partitioning::NPartitions(2)).unwrap(),
        )
        .unwrap();
    assert_eq!(again.report.checkpoint_computed(), 0);
    assert_eq!(again.bag.sample_sets().unwrap(), got);
    remove_features_folder(&d);
}

#[test]
fn a_changed_configuration_is_refused_naming_the_step_or_recomputed_on_request() {
    let rt = Runtime::in_process(2).unwrap();
    let d = tmp("manifest");
    let with = |offset: f64, on_change: OnChange| {
        Pipeline::new().step(
            Step::new("shift", AddOffset(offset))
                .checkpoint(Checkpoint::features(&d).on_change(on_change)),
        )
    };
    with(1.0, OnChange::Refuse)
        .transform(&rt, bag(6, 2))
        .unwrap();
    let err = with(2.0, OnChange::Refuse)
        .transform(&rt, bag(6, 2))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RunError::Checkpoint(_)), "{msg}");
    assert!(
        msg.contains("\"shift\"") && msg.contains("parameters hash"),
        "{msg}"
    );
    let out = with(2.0, OnChange::Recompute)
        .transform(&rt, bag(6, 2))
        .unwrap();
    assert_eq!(out.report.checkpoints["shift"].computed, 6);
    assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == 3.0));
    // The replaced files are removed (in the background, off the scheduler).
    let parent = d.parent().unwrap().to_path_buf();
    let name = d.file_name().unwrap().to_string_lossy().to_string();
    let replaced = || {
        fs::read_dir(&parent)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.starts_with(&name) && n.contains(".replaced-")
            })
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while replaced() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "replaced checkpoints left"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The new configuration is now the recorded one.
    let out = with(2.0, OnChange::Refuse)
        .transform(&rt, bag(6, 2))
        .unwrap();
    assert_eq!(out.report.checkpoints["shift"].cached, 6);
    remove_features_folder(&d);
}

#[test]
fn truncated_and_corrupted_files_are_detected_and_recomputed() {
    let rt = Runtime::in_process(2).unwrap();
    let d = tmp("corrupt");
    let p = Pipeline::new()
        .step(Step::new("plus1", AddOffset(1.0)).checkpoint(Checkpoint::features(&d)));
    let first = p
        .transform(&rt, bag(10, 2))
        .unwrap()
        .bag
        .stack(DATA)
        .unwrap();
    let f3 = d.join("3.npy");
    let bytes = fs::read(&f3).unwrap();
    fs::write(&f3, &bytes[..bytes.len() - 4]).unwrap();
    let f5 = d.join("5.npy");
    let mut bytes = fs::read(&f5).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x10;
    fs::write(&f5, &bytes).unwrap();
    let out = p.transform(&rt, bag(10, 2)).unwrap();
    assert_eq!(
        out.report.checkpoints["plus1"].computed, 2,
        "exactly the two bad files"
    );
    assert_eq!(out.bag.stack(DATA).unwrap(), first, "never loaded as data");
    assert_eq!(fs::read(&f5).unwrap().len(), bytes.len());
    remove_features_folder(&d);
}

#[test]
fn keys_that_escape_the_folder_fail_their_sample_only() {
    let rt = Runtime::in_process(1).unwrap();
    let d = tmp("keys");
    let mut input = samples(3, &[2], 0.0);
    input[1].key = "../escape".into();
    let p = Pipeline::new()
        .step(Step::new("plus1", AddOffset(1.0)).checkpoint(Checkpoint::features(&d)));
    let out = p
        .transform(
            &rt,
            Bag::from_samples(input, Partitioning::NPartitions(1)).unwrap(),
        )
        .unwrap();
    let failed = out.bag.failed();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].reason.contains("\"../escape\"") && failed[0].reason.contains(".."));
    assert_eq!(npy_files(&d).len(), 2);
    remove_features_folder(&d);
}

#[test]
fn numpy_reads_the_feature_files() {
    let rt = Runtime::in_process(1).unwrap();
    let d = tmp("numpy");
    let input = vec![Sample::new(
        "m",
        ndarray::array![[1.5, 2.0], [3.0, -4.25]].into_dyn(),
    )];
    let p = Pipeline::new()
        .step(Step::new("plus1", AddOffset(1.0)).checkpoint(Checkpoint::features(&d)));
    p.transform(
        &rt,
        Bag::from_samples(input, Partitioning::NPartitions(1)).unwrap(),
    )
    .unwrap();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, numpy; a = numpy.load(sys.argv[1]); print(a.dtype, a.shape, a.tolist())",
            d.join("m.npy").to_str().unwrap(),
        ])
        .output()
        .expect("python3 runs (scripts/test.sh installs numpy)");
    assert!(
        out.status.success(),
        "numpy.load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "float64 (2, 2) [[2.5, 3.0], [4.0, -3.25]]"
    );
    remove_features_folder(&d);
}

#[test]
fn concurrent_writers_of_one_folder_never_corrupt_it() {
    let rt = std::sync::Arc::new(Runtime::in_process(2).unwrap());
    let d = tmp("concurrent");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (rt, d) = (rt.clone(), d.clone());
            std::thread::spawn(move || {
                let p = Pipeline::new().step(
                    Step::new("plus1", AddOffset(1.0))
                        .checkpoint(Checkpoint::features(&d).force(true)),
                );
                let out = p.transform(&rt, bag(200, 8)).unwrap();
                assert!(out.bag.stack(DATA).unwrap().iter().all(|&v| v == 2.0));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let files = npy_files(&d);
    assert_eq!(files.len(), 200);
    for f in files {
        assert!(matches!(
            gridpipe_runtime::checkpoint::store::probe(&f),
            gridpipe_runtime::checkpoint::store::Probe::Valid(_)
        ));
    }
    let leftovers = fs::read_dir(&d).unwrap().filter(|e| {
        e.as_ref()
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".tmp-")
    });
    assert_eq!(leftovers.count(), 0, "no temporary left behind");
    remove_features_folder(&d);
}

/// Runs `p` on `n` samples of `width` values (2.0 each, keys "0".."n-1").
fn wide_bag(n: usize, width: usize) -> Bag {
    let keys = (0..n).map(|i| i.to_string()).collect();
    let data = ndarray::ArrayD::from_elem(ndarray::IxDyn(&[n, width]), 2.0);
    Bag::from_rows(keys, data, Partitioning::NPartitions(2)).unwrap()
}

#[test]
fn large_files_that_fail_their_checksum_or_are_cut_short_are_recomputed_not_dropped() {
    let rt = Runtime::in_process(2).unwrap();
    let d = tmp("large");
    // 9,000 values: 72 KB per file, above the size that was once only checked by
    // its header and length.
    let p = Pipeline::new()
        .step(Step::new("plus1", AddOffset(1.0)).checkpoint(Checkpoint::features(&d)));
    p.transform(&rt, wide_bag(6, 9000)).unwrap();
    let corrupt = d.join("2.npy");
    let mut bytes = fs::read(&corrupt).unwrap();
    assert!(bytes.len() > 64 * 1024);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&corrupt, &bytes).unwrap();
    let cut = d.join("4.npy");
    let bytes = fs::read(&cut).unwrap();
    fs::write(&cut, &bytes[..bytes.len() - 8]).unwrap();
    let out = p.transform(&rt, wide_bag(6, 9000)).unwrap();
    assert_eq!(
        out.report.checkpoints["plus1"].computed, 2,
        "exactly the bad two"
    );
    assert!(out.bag.failed().is_empty());
    let stacked = out.bag.stack(DATA).unwrap();
    assert!(stacked.left_out.is_empty(), "{:?}", stacked.left_out);
    assert_eq!(stacked.shape(), &[6, 9000], "every row is there");
    assert!(stacked.iter().all(|&v| v == 3.0));
    assert!(matches!(
        gridpipe_runtime::checkpoint::store::probe(&corrupt),
        gridpipe_runtime::checkpoint::store::Probe::Valid(_)
    ));
    remove_features_folder(&d);
}

#[test]
fn values_that_fail_to_load_after_the_run_are_left_out_by_name_never_silently() {
    use gridpipe_runtime::DelayedSample;
    use std::sync::Arc;
    let rt = Runtime::in_process(2).unwrap();
    let tag = unique("extra");
    let input: Vec<DelayedSample> = (0..6)
        .map(|i| {
            let data = CountingLoader {
                tag: unique("data"),
                value: 1.0,
                shape: vec![2],
            };
            // Sample 3's "extra" cannot be read; no step reads "extra".
            let extra = CountingLoader {
                tag: tag.clone(),
                value: if i == 3 { f64::NAN } else { 5.0 },
                shape: vec![1],
            };
            DelayedSample::new(i.to_string(), Arc::new(data)).with_delayed("extra", Arc::new(extra))
        })
        .collect();
    let bag = Bag::from_delayed(input, Partitioning::NPartitions(2)).unwrap();
    let mut out = Pipeline::new()
        .add("plus1", AddOffset(1.0))
        .transform(&rt, bag)
        .unwrap()
        .bag;
    let stacked = out.stack("extra").unwrap();
    assert_eq!(stacked.shape(), &[5, 1]);
    assert_eq!(stacked.left_out.len(), 1, "it says what it left out");
    assert_eq!(stacked.left_out[0].key, "3");
    assert!(stacked.left_out[0].reason.contains("unreadable"));
    let failed = out.failed();
    assert_eq!(failed.len(), 1, "and failed() lists it: {failed:?}");
    assert_eq!(failed[0].key, "3");
    assert_eq!(out.samples().len(), 5);
    let before = loads(&tag);
    out.load();
    assert_eq!(out.failed().len(), 1);
    assert_eq!(out.samples().len(), 5);
    assert_eq!(
        loads(&tag),
        before + 6,
        "loaded once by load(), never again"
    );
}

#[test]
fn a_key_the_file_system_refuses_fails_that_sample_only() {
    let rt = Runtime::in_process(1).unwrap();
    let d = tmp("badkeys");
    fs::create_dir_all(&d).unwrap();
    // A file where the key "in-the-way/x" needs a folder.
    fs::write(d.join("in-the-way"), b"not a folder").unwrap();
    let long = "k".repeat(300);
    let keys = ["ok1", "nul\0byte", long.as_str(), "in-the-way/x", "ok2"];
    let input: Vec<Sample> = keys
        .iter()
        .map(|k| Sample::new(*k, ndarray::ArrayD::zeros(ndarray::IxDyn(&[2]))))
        .collect();
    let p = Pipeline::new()
        .step(Step::new("plus1", AddOffset(1.0)).checkpoint(Checkpoint::features(&d)));
    let out = p
        .transform(
            &rt,
            Bag::from_samples(input, Partitioning::NPartitions(1)).unwrap(),
        )
        .unwrap();
    let failed = out.bag.failed();
    let failed_keys: Vec<&str> = failed.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(
        failed_keys,
        vec!["nul\0byte", long.as_str(), "in-the-way/x"]
    );
    assert!(failed[0].reason.contains("NUL"), "{}", failed[0].reason);
    assert!(
        failed[1].reason.contains("255 bytes"),
        "{}",
        failed[1].reason
    );
    assert!(
        failed[2].reason.contains("in-the-way"),
        "{}",
        failed[2].reason
    );
    assert!(d.join("ok1.npy").exists() && d.join("ok2.npy").exists());
    assert_eq!(out.bag.stack(DATA).unwrap().shape(), &[2, 2]);
    remove_features_folder(&d);
}
