//! The stock `gridpipe-worker` binary runs the built-in estimators.

use gridpipe_estimators::{Affine, FunctionTransformer, Pca, Pipeline, StandardScaler};
use gridpipe_runtime::{Bag, Partitioning, Runtime, RuntimeConfig, DATA};
use ndarray::Array2;

#[test]
fn the_stock_worker_serves_the_built_in_estimators() {
    let config = RuntimeConfig::processes(2).worker_program(env!("CARGO_BIN_EXE_gridpipe-worker"));
    let remote = Runtime::start(config).unwrap();
    let local = Runtime::in_process(1).unwrap();
    let x = Array2::from_shape_fn((200, 4), |(i, j)| {
        ((i * 7 + j * 3) % 11) as f64 + j as f64 * 0.5
    });
    let bag = || {
        let keys = (0..200).map(|i| i.to_string()).collect();
        Bag::from_rows(keys, x.clone().into_dyn(), Partitioning::NPartitions(6)).unwrap()
    };
    let pipeline = || {
        Pipeline::new()
            .add(
                "affine",
                FunctionTransformer::new(Affine {
                    scale: 2.0,
                    offset: 1.0,
                }),
            )
            .add("scaler", StandardScaler::new())
            .add("pca", Pca::new(2))
    };
    let a = pipeline()
        .fit_transform(&remote, bag())
        .unwrap()
        .bag
        .stack(DATA)
        .unwrap();
    let b = pipeline()
        .fit_transform(&local, bag())
        .unwrap()
        .bag
        .stack(DATA)
        .unwrap();
    assert_eq!(a.shape(), &[200, 2]);
    assert!(a
        .iter()
        .zip(b.iter())
        .all(|(x, y)| (x - y).abs() <= 1e-9 * y.abs().max(1.0)));
}
