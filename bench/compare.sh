#!/usr/bin/env bash
# Side-by-side comparison of gridpipe with the Python stack it replaces
# (bob.pipelines on dask/distributed). See bench/README.md.
#
#   bash bench/compare.sh
#
# Settings (environment):
#   BENCH_TIMEOUT  time limit of each Python workload in seconds (default 300)
#   BENCH_REPEAT   runs per workload on each side; medians are reported (default 3)
#   BENCH_VENV     the Python virtual environment (default bench/.venv; reused when present)
#   BENCH_PYTHON   the interpreter to create it with (default: the first Python 3.9-3.12 found)
#   BENCH_TMP      where the checkpoint folders are made (default $TMPDIR or /tmp)
#   BENCH_RESULTS  where raw JSON lines, logs and the table go (default bench/results)
#   BENCH_ONLY     an extended regular expression (grep -E): only the runs whose id
#                  matches it are made, e.g. BENCH_ONLY='-(8|1000|3125)p$' (default: all)
#   BENCH_MEM_LIMIT_MIB  end a Python workload (its whole process group) when the
#                  resident memory of its processes together exceeds this many MiB
#                  (default 0: no limit)
set -euo pipefail

start_s=$SECONDS
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
timeout_s=${BENCH_TIMEOUT:-300}
repeat=${BENCH_REPEAT:-3}
venv=${BENCH_VENV:-$here/.venv}
tmp_base=${BENCH_TMP:-${TMPDIR:-/tmp}}
results=${BENCH_RESULTS:-$here/results}
only=${BENCH_ONLY:-}
mem_limit_mib=${BENCH_MEM_LIMIT_MIB:-0}
workers=2

log() { printf '[compare %4ds] %s\n' "$((SECONDS - start_s))" "$*" >&2; }

# selected ID: whether BENCH_ONLY lets the run ID through.
selected() {
    [ -z "$only" ] || printf '%s\n' "$1" | grep -Eq -- "$only"
}

# ---------------------------------------------------------------- Python side setup

# numpy 1.26.4 ships wheels for CPython 3.9 to 3.12 only.
python_ok() {
    "$1" -c 'import sys; sys.exit(0 if (3, 9) <= sys.version_info[:2] <= (3, 12) else 1)' 2>/dev/null
}

find_python() {
    local c
    for c in ${BENCH_PYTHON:-} /usr/bin/python3 python3 python3.12 python3.11 python3.10 python3.9; do
        if command -v "$c" >/dev/null 2>&1 && python_ok "$c"; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

make_venv() {
    local py
    py=$(find_python) || {
        echo "compare.sh: no Python 3.9-3.12 found (set BENCH_PYTHON)" >&2
        exit 1
    }
    log "creating $venv with $py ($("$py" --version 2>&1))"
    if ! "$py" -m venv "$venv" 2>"$results/venv.log"; then
        # Debian ships venv's ensurepip apart, in python3-venv.
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            local ver
            ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
            log "python -m venv failed (no ensurepip?); installing Debian's python3-venv"
            rm -rf "$venv"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv "python$ver-venv" >/dev/null ||
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            "$py" -m venv "$venv"
        else
            cat "$results/venv.log" >&2
            echo "compare.sh: '$py -m venv' failed; install your distribution's venv package (Debian: python3-venv)" >&2
            exit 1
        fi
    fi
}

ensure_venv() {
    local stamp want
    want=$(cat "$here/requirements.txt" "$here/constraints.txt" | sha256sum | cut -d' ' -f1)
    stamp="$venv/.bench-requirements"
    if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        log "reusing $venv"
        return
    fi
    [ -x "$venv/bin/python" ] || make_venv
    log "installing the Python reference stack into $venv (log: $results/pip.log)"
    {
        "$venv/bin/python" -m pip install --upgrade pip
        "$venv/bin/python" -m pip install -r "$here/requirements.txt" -c "$here/constraints.txt"
    } >"$results/pip.log" 2>&1 || {
        tail -30 "$results/pip.log" >&2
        echo "compare.sh: pip install failed (see $results/pip.log)" >&2
        exit 1
    }
    echo "$want" >"$stamp"
}

# ---------------------------------------------------------------- runs

# gp ID BINARY ARGS...: runs a gridpipe benchmark $repeat times; one JSON line each.
gp() {
    local id=$1 bin=$2
    shift 2
    local out="$results/gp-$id.jsonl" i
    selected "$id" || return 0
    : >"$out"
    for ((i = 1; i <= repeat; i++)); do
        log "gridpipe $id, run $i of $repeat: $bin $*"
        "$bin_dir/$bin" "$@" 2>>"$results/gp-$id.log" | grep '^{' >>"$out" || true
    done
}

# gp_checkpoint ID ARGS...: as gp, each run into a fresh temporary folder.
gp_checkpoint() {
    local id=$1
    shift
    local out="$results/gp-$id.jsonl" i
    selected "$id" || return 0
    : >"$out"
    for ((i = 1; i <= repeat; i++)); do
        tmp_now=$(mktemp -d "$tmp_base/gridpipe-bench-ckpt.XXXXXX")
        log "gridpipe $id, run $i of $repeat: bench_pipeline $* --checkpoint $tmp_now"
        "$bin_dir/bench_pipeline" "$@" --checkpoint "$tmp_now" 2>>"$results/gp-$id.log" | grep '^{' >>"$out" || true
        rm -rf "$tmp_now"
        tmp_now=
    done
}

# mem_watch PID LIMIT_MIB FLAG: ends the process group that PID leads (SIGKILL) when
# the resident memory of its processes together exceeds LIMIT_MIB, and then writes
# the figure it saw into FLAG. Returns when PID has ended. (It watches PID itself:
# just after the fork the group may not exist yet, until timeout has made it.)
mem_watch() {
    local pgid=$1 limit=$2 flag=$3 rss
    while kill -0 "$pgid" 2>/dev/null; do
        rss=$(ps -e -o pgid=,rss= | awk -v g="$pgid" '$1 == g { s += $2 } END { print int(s / 1024) }')
        if [ "$rss" -gt "$limit" ]; then
            echo "$rss" >"$flag"
            kill -KILL -- "-$pgid" 2>/dev/null || true
            return 0
        fi
        sleep 0.5
    done
}

# py ID ARGS...: one Python workload under the time limit (the whole process group
# is ended when it runs out) and, with BENCH_MEM_LIMIT_MIB, a memory limit; every
# line it printed is kept, and a last line saying why it was stopped, if it was.
py() {
    local id=$1
    shift
    local out="$results/py-$id.jsonl" rc=0 pid watcher= flag t0=$SECONDS
    selected "$id" || return 0
    log "python $id: python_side.py $* (time limit ${timeout_s} s)"
    # Its temporary folders go here, removed even when the time limit ended it.
    tmp_now=$(mktemp -d "$tmp_base/bench-python.XXXXXX")
    flag="$tmp_now/.mem-limit"
    # timeout leads its own process group: the workload and every dask process.
    timeout -k 10 "$timeout_s" "$venv/bin/python" "$here/python_side.py" "$@" \
        --workers "$workers" --repeat "$repeat" --tmp-dir "$tmp_now" \
        >"$out" 2>"$results/py-$id.log" &
    pid=$!
    py_group=$pid
    if [ "$mem_limit_mib" -gt 0 ]; then
        mem_watch "$pid" "$mem_limit_mib" "$flag" &
        watcher=$!
    fi
    wait "$pid" || rc=$?
    [ -z "$watcher" ] || wait "$watcher" || true
    py_group=
    local mem_seen=
    [ ! -s "$flag" ] || mem_seen=$(cat "$flag")
    rm -rf "$tmp_now"
    tmp_now=
    if [ -n "$mem_seen" ]; then
        printf '{"stopped": "memory", "limit_mib": %s, "rss_mib": %s, "after_s": %s}\n' \
            "$mem_limit_mib" "$mem_seen" "$((SECONDS - t0))" >>"$out"
        log "python $id: stopped at the memory limit (${mem_limit_mib} MiB; its processes had ${mem_seen} MiB)"
    elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        printf '{"stopped": "time", "limit_s": %s}\n' "$timeout_s" >>"$out"
        log "python $id: stopped at the time limit (${timeout_s} s)"
    elif [ "$rc" != 0 ]; then
        log "python $id: failed with exit code $rc (see $results/py-$id.log)"
        tail -5 "$results/py-$id.log" >&2
    fi
}

tmp_now= # the temporary folder in use, removed on exit whatever happens
py_group= # the process group of the Python workload running, ended on exit
trap '[ -z "$py_group" ] || kill -TERM -- "-$py_group" 2>/dev/null || true; [ -z "$tmp_now" ] || rm -rf "$tmp_now"' EXIT
mkdir -p "$results"
rm -f "$results"/gp-*.jsonl "$results"/gp-*.log "$results"/py-*.jsonl "$results"/py-*.log
ensure_venv

log "building the gridpipe examples (release)"
(cd "$root" && cargo build --release -p gridpipe-examples --quiet)
bin_dir=${CARGO_TARGET_DIR:-$root/target}/release

# gridpipe: every benchmark prints one JSON line; wall_s excludes worker start-up.
gp empty-20k-inprocess bench_overhead --tasks 20000 --workers "$workers"
gp empty-5k-processes bench_overhead --tasks 5000 --workers "$workers" --mode processes
gp pipeline-10k-inprocess bench_pipeline --samples 10000 --dim 64 --workers "$workers"
gp pipeline-10k-processes bench_pipeline --samples 10000 --dim 64 --workers "$workers" --mode processes
gp pipeline-100k-inprocess bench_pipeline --samples 100000 --dim 16 --workers "$workers"
gp pipeline-100k-processes bench_pipeline --samples 100000 --dim 16 --workers "$workers" --mode processes
gp_checkpoint checkpoint-10k --samples 10000 --dim 64 --workers "$workers"

# Equal partition counts on both sides. gridpipe with as many partitions as dask
# makes by default for a bag of N items (asked of dask itself: the same
# from_sequence that bob.pipelines' ToDaskBag calls, without npartitions) ...
dask_default_partitions() {
    "$venv/bin/python" -c 'import sys, dask.bag as db; print(db.from_sequence(range(int(sys.argv[1]))).npartitions)' "$1"
}
p10k=$(dask_default_partitions 10000)
p100k=$(dask_default_partitions 100000)
log "dask's default partitioning: $p10k partitions for 10k items, $p100k for 100k"
gp "pipeline-10k-inprocess-${p10k}p" bench_pipeline --samples 10000 --dim 64 --workers "$workers" --partitions "$p10k"
gp "pipeline-10k-processes-${p10k}p" bench_pipeline --samples 10000 --dim 64 --workers "$workers" --mode processes --partitions "$p10k"
gp "pipeline-100k-inprocess-${p100k}p" bench_pipeline --samples 100000 --dim 16 --workers "$workers" --partitions "$p100k"
gp "pipeline-100k-processes-${p100k}p" bench_pipeline --samples 100000 --dim 16 --workers "$workers" --mode processes --partitions "$p100k"

# Python: dask and bob.pipelines on the same workloads.
py empty-sync --workload empty-sync --tasks 20000
py empty-threads --workload empty-threads --tasks 20000
py empty-cluster-bag --workload empty-cluster-bag --tasks 5000
py empty-cluster-map --workload empty-cluster-map --tasks 5000
py pipeline-10k-sample --workload pipeline-sample --samples 10000 --dim 64
py pipeline-10k-dask-threads --workload pipeline-dask-threads --samples 10000 --dim 64
py pipeline-10k-dask-cluster --workload pipeline-dask-cluster --samples 10000 --dim 64
py pipeline-100k-sample --workload pipeline-sample --samples 100000 --dim 16
py pipeline-100k-dask-threads --workload pipeline-dask-threads --samples 100000 --dim 16
py pipeline-100k-dask-cluster --workload pipeline-dask-cluster --samples 100000 --dim 16
py checkpoint-10k --workload pipeline-checkpoint --samples 10000 --dim 64

# ... and the dask workloads with gridpipe's default: 4 partitions per worker.
gp_partitions=$((4 * workers))
py "pipeline-10k-dask-threads-${gp_partitions}p" --workload pipeline-dask-threads --samples 10000 --dim 64 --npartitions "$gp_partitions"
py "pipeline-10k-dask-cluster-${gp_partitions}p" --workload pipeline-dask-cluster --samples 10000 --dim 64 --npartitions "$gp_partitions"
py "pipeline-100k-dask-threads-${gp_partitions}p" --workload pipeline-dask-threads --samples 100000 --dim 16 --npartitions "$gp_partitions"
py "pipeline-100k-dask-cluster-${gp_partitions}p" --workload pipeline-dask-cluster --samples 100000 --dim 16 --npartitions "$gp_partitions"

# ---------------------------------------------------------------- table

{
    echo "Run of $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)," \
        "$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME" || uname -sr);" \
        "$(rustc --version 2>/dev/null | cut -d' ' -f1-2), $("$venv/bin/python" --version 2>&1);" \
        "medians of $repeat runs; Python time limit ${timeout_s} s per workload."
    echo
    "$venv/bin/python" "$here/table.py" "$results" "$timeout_s"
} | tee "$results/table.md"
log "done in $((SECONDS - start_s)) s (raw figures and logs in $results)"
