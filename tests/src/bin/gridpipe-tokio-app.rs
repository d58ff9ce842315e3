//! An application whose `main` is `#[tokio::main]`, running a pipeline on worker
//! processes of itself: prints the stacked result (used by the process tests).

use gridpipe_estimators::Pipeline;
use gridpipe_runtime::{Bag, Partitioning, Runtime, RuntimeConfig, DATA};

#[tokio::main]
async fn main() {
    gridpipe_tests::link_estimators();
    gridpipe_runtime::run_if_worker();
    let rt = Runtime::start(RuntimeConfig::processes(2).without_dashboard())
        .expect("worker processes of this binary start");
    let bag = Bag::from_samples(
        gridpipe_tests::samples(12, &[2], 1.0),
        Partitioning::NPartitions(4),
    )
    .unwrap();
    let out = Pipeline::new()
        .add("plus1", gridpipe_tests::AddOffset(1.0))
        .transform_async(&rt, bag)
        .await
        .expect("the run finishes");
    let y = out.bag.stack(DATA).unwrap();
    println!("rows={} sum={}", y.shape()[0], y.sum());
}
