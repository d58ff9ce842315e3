//! A runtime that only listens for workers: prints its address, then waits until
//! its standard input closes (used by the wire tests to watch a scheduler process
//! from outside).

use gridpipe_runtime::{Runtime, RuntimeConfig};
use std::io::Read;

fn main() {
    let rt = Runtime::start(RuntimeConfig::external("127.0.0.1:0").without_dashboard())
        .expect("the runtime starts");
    println!("{}", rt.address().expect("it listens"));
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
}
