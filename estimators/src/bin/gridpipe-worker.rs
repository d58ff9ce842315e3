//! The stock worker: serves the built-in estimators (the function transformer,
//! scaler, PCA, logistic regression) for applications that define none of their own.
//! Applications with their own estimator types use their own binary as the worker
//! (`gridpipe_runtime::run_if_worker()` first in `main`).

fn main() {
    // Keep the built-in estimators linked, so their serialised forms are known.
    std::hint::black_box((
        gridpipe_estimators::StandardScaler::new(),
        gridpipe_estimators::Pca::new(1),
        gridpipe_estimators::LogisticRegression::new(),
        gridpipe_estimators::FunctionTransformer::new(gridpipe_estimators::Identity),
    ));
    gridpipe_runtime::run_if_worker();
    eprintln!(
        "usage: gridpipe-worker {} (or set {} to the scheduler's address, and GRIDPIPE_SECRET_FILE)",
        gridpipe_runtime::remote::worker_args::WORKER_USAGE,
        gridpipe_runtime::remote::worker_process::CONNECT_ENV
    );
    std::process::exit(2);
}
