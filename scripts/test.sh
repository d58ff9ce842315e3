#!/usr/bin/env bash
# The project's whole test suite, as CI runs it on a fresh machine.
# Formatting and lints first (cheap), then every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
# A fresh build gains nothing from incremental caches; they only take disk.
export CARGO_INCREMENTAL=0
free_kib=$(df -k --output=avail . | tail -1 | tr -d ' ')
echo "== disk: $((free_kib / 1024 / 1024)) GiB free here"
if [ "$free_kib" -lt $((3 * 1024 * 1024)) ]; then
    # A build that runs out of disk dies in the linker with an obscure error.
    echo "warning: less than 3 GiB free; the test build needs about 2 GiB" >&2
fi
# numpy, to prove that checkpoint files are real .npy files (numpy.load reads them).
if ! python3 -c "import numpy" 2>/dev/null; then
    echo "== installing numpy for the checkpoint format test"
    python3 -m pip install --quiet numpy
fi
# A real Grid Engine for the SGE tests (examples/tests/sge.rs): installed, set up
# and started here when root; the tests fail (never skip) when it does not answer.
echo "== Grid Engine"
if [ "$(id -u)" = 0 ]; then
    bash scripts/grid-engine.sh setup
    bash scripts/grid-engine.sh start
elif ! qstat >/dev/null 2>&1; then
    echo "Grid Engine is not running and this is not root: run" >&2
    echo "  sudo bash scripts/grid-engine.sh setup && sudo bash scripts/grid-engine.sh start" >&2
    exit 1
fi
# Headless Chromium for the dashboard's page test (examples/tests/dashboard.rs).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        echo "== installing chromium for the dashboard test"
        # A fresh machine's package lists may be missing or stale: update once
        # and retry before giving up.
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; then
            apt-get update -q >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
        fi
    else
        echo "chromium is missing and this is not root: run 'sudo apt-get install chromium'" >&2
        exit 1
    fi
fi
# iproute2 (`ip netns`, veth pairs) for the tests that stand a second host up in a
# network namespace, and util-linux's prlimit for the file-descriptor test; both
# need root.
if ! command -v ip >/dev/null 2>&1 || ! command -v prlimit >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        echo "== installing iproute2 and util-linux for the network tests"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2 util-linux >/dev/null; then
            apt-get update -q >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2 util-linux >/dev/null
        fi
    else
        echo "ip or prlimit is missing and this is not root: run 'sudo apt-get install iproute2 util-linux'" >&2
        exit 1
    fi
fi
if [ "$(id -u)" != 0 ]; then
    echo "the network tests make network namespaces: run this script as root" >&2
    exit 1
fi
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings
echo "== the runtime without its view feature (a service without dashboard, pictures or progress bar)"
cargo clippy -p gridpipe-runtime --no-default-features --all-targets -- -D warnings
echo "== cargo doc (broken doc links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --quiet
# Cargo's build folder, wherever CARGO_TARGET_DIR or a config puts it.
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
mkdir -p "$target"
echo "== cargo test"
cargo test --workspace 2>&1 | tee "$target/test-output.txt"
passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' "$target/test-output.txt" | awk '{s += $4} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed' "$target/test-output.txt" | awk '{s += $1} END {print s + 0}')
echo "$passed passed, $failed failed"
# A gather fit over 2 GiB of data (2M x 128) on worker processes: the fit's
# inputs stream to one worker in frames. Release build; about 5 minutes and
# 13 GiB on 2 cores, most of it linfa's PCA fit itself.
echo "== a 2 GiB gather fit on worker processes"
cargo build --release -p gridpipe-examples --bin bench_pipeline --quiet
"$target/release/bench_pipeline" --samples 2000000 --dim 128 --fit pca --mode processes | tee "$target/gather-2gib.json"
grep -q '"ok":true' "$target/gather-2gib.json"
# The same on the local Grid Engine: the workers are jobs of q_1day started by
# the Grid Engine examples' cluster, each asking for 8 GiB (four times the input).
echo "== the 2 GiB gather fit on Grid Engine jobs"
"$target/release/bench_pipeline" --samples 2000000 --dim 128 --fit pca --grid | tee "$target/gather-2gib-grid.json"
grep -q '"ok":true' "$target/gather-2gib-grid.json"
echo "== build folder $target: $(du -sh "$target" | cut -f1)"
