//! A worker binary that knows the test estimators (used by the process tests).

fn main() {
    // Link the test estimators (and the library estimators) into this binary, so
    // their serialised forms are known here.
    gridpipe_tests::link_estimators();
    gridpipe_runtime::run_if_worker();
    eprintln!("gridpipe-test-worker only runs as a worker (set GRIDPIPE_WORKER_CONNECT)");
    std::process::exit(2);
}
