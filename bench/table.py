"""Reads the JSON lines that compare.sh collected in a results folder and prints
the comparison as a markdown table.

Usage: table.py RESULTS_DIR TIMEOUT_S

Files: RESULTS_DIR/gp-<id>.jsonl holds one line per gridpipe run (each run of a
benchmark binary prints one line); RESULTS_DIR/py-<id>.jsonl holds the Python
side's lines for one workload (one per finished repetition, the last one holding
them all, after a first line that says when timing began, and, when compare.sh
stopped it, a last line saying why: {"stopped": "time"} or {"stopped": "memory"}).
A run id may hold a `*` (a glob: the rows with equal partition counts name their
runs by partition count); a row none of whose runs was made (BENCH_ONLY) is left
out. The partition column shows the "partitions" the runs reported.
"""

import glob
import json
import os
import statistics
import sys

# (workload, configuration, gridpipe run, gridpipe field, Python run, Python field, unit,
#  partitions: None to show what the runs reported, or a text)
ROWS = [
    ("empty tasks", "20k tasks; gridpipe in-process, 2 workers / dask bag, synchronous",
     "empty-20k-inprocess", "us_per_task", "empty-sync", "us_per_item", "us", "one per task"),
    ("empty tasks", "20k tasks; gridpipe in-process, 2 workers / dask delayed, threads (2)",
     "empty-20k-inprocess", "us_per_task", "empty-threads", "us_per_item", "us", "one per task"),
    ("empty tasks", "5k tasks; gridpipe 2 worker processes / dask bag, LocalCluster 2 workers x 1 thread",
     "empty-5k-processes", "us_per_task", "empty-cluster-bag", "us_per_item", "us", "one per task"),
    ("empty tasks", "5k tasks; gridpipe 2 worker processes / client.map, LocalCluster 2x1",
     "empty-5k-processes", "us_per_task", "empty-cluster-map", "us_per_item", "us", "one per task"),
    ("pipeline", "10k x 64; gridpipe in-process, 2 workers / bob.pipelines sample-wrapped, no dask",
     "pipeline-10k-inprocess", "wall_s", "pipeline-10k-sample", "wall_s", "s", None),
    ("pipeline", "10k x 64; gridpipe in-process, 2 workers / bob.pipelines + dask, threads (2)",
     "pipeline-10k-inprocess", "wall_s", "pipeline-10k-dask-threads", "wall_s", "s", None),
    ("pipeline", "10k x 64; gridpipe 2 worker processes / bob.pipelines + dask, LocalCluster 2x1",
     "pipeline-10k-processes", "wall_s", "pipeline-10k-dask-cluster", "wall_s", "s", None),
    ("pipeline", "100k x 16; gridpipe in-process, 2 workers / bob.pipelines sample-wrapped, no dask",
     "pipeline-100k-inprocess", "wall_s", "pipeline-100k-sample", "wall_s", "s", None),
    ("pipeline", "100k x 16; gridpipe in-process, 2 workers / bob.pipelines + dask, threads (2)",
     "pipeline-100k-inprocess", "wall_s", "pipeline-100k-dask-threads", "wall_s", "s", None),
    ("pipeline", "100k x 16; gridpipe 2 worker processes / bob.pipelines + dask, LocalCluster 2x1",
     "pipeline-100k-processes", "wall_s", "pipeline-100k-dask-cluster", "wall_s", "s", None),
    ("checkpointed pipeline", "10k x 64, 1st run (computes, writes every feature and the model); "
     "gridpipe in-process, 2 workers / bob.pipelines sample + checkpoint (HDF5)",
     "checkpoint-10k", "run1_s", "checkpoint-10k", "run1_s", "s", None),
    ("checkpointed pipeline", "10k x 64, 2nd run (loads everything), same configurations",
     "checkpoint-10k", "run2_s", "checkpoint-10k", "run2_s", "s", None),
    # Equal partition counts on both sides: the dask workloads with gridpipe's default
    # (4 per worker), and gridpipe with dask's default (from_sequence without
    # npartitions: 1,000 and 3,125 partitions).
    ("pipeline, equal partitions", "10k x 64, gridpipe's default partitioning on both sides; "
     "gridpipe in-process, 2 workers / bob.pipelines + dask, threads (2), npartitions given",
     "pipeline-10k-inprocess", "wall_s", "pipeline-10k-dask-threads-*p", "wall_s", "s", None),
    ("pipeline, equal partitions", "10k x 64, gridpipe's default partitioning on both sides; "
     "gridpipe 2 worker processes / bob.pipelines + dask, LocalCluster 2x1, npartitions given",
     "pipeline-10k-processes", "wall_s", "pipeline-10k-dask-cluster-*p", "wall_s", "s", None),
    ("pipeline, equal partitions", "10k x 64, dask's default partitioning on both sides; "
     "gridpipe in-process, 2 workers, --partitions given / bob.pipelines + dask, threads (2)",
     "pipeline-10k-inprocess-*p", "wall_s", "pipeline-10k-dask-threads", "wall_s", "s", None),
    ("pipeline, equal partitions", "10k x 64, dask's default partitioning on both sides; "
     "gridpipe 2 worker processes, --partitions given / bob.pipelines + dask, LocalCluster 2x1",
     "pipeline-10k-processes-*p", "wall_s", "pipeline-10k-dask-cluster", "wall_s", "s", None),
    ("pipeline, equal partitions", "100k x 16, gridpipe's default partitioning on both sides; "
     "gridpipe in-process, 2 workers / bob.pipelines + dask, threads (2), npartitions given",
     "pipeline-100k-inprocess", "wall_s", "pipeline-100k-dask-threads-*p", "wall_s", "s", None),
    ("pipeline, equal partitions", "100k x 16, gridpipe's default partitioning on both sides; "
     "gridpipe 2 worker processes / bob.pipelines + dask, LocalCluster 2x1, npartitions given",
     "pipeline-100k-processes", "wall_s", "pipeline-100k-dask-cluster-*p", "wall_s", "s", None),
    ("pipeline, equal partitions", "100k x 16, dask's default partitioning on both sides; "
     "gridpipe in-process, 2 workers, --partitions given / bob.pipelines + dask, threads (2)",
     "pipeline-100k-inprocess-*p", "wall_s", "pipeline-100k-dask-threads", "wall_s", "s", None),
    ("pipeline, equal partitions", "100k x 16, dask's default partitioning on both sides; "
     "gridpipe 2 worker processes, --partitions given / bob.pipelines + dask, LocalCluster 2x1",
     "pipeline-100k-processes-*p", "wall_s", "pipeline-100k-dask-cluster", "wall_s", "s", None),
]


def run_path(results, side, run):
    """The file of a run; a run id with a `*` names the one file that matches
    (None when there is none)."""
    path = os.path.join(results, f"{side}-{run}.jsonl")
    if "*" not in run:
        return path
    found = sorted(glob.glob(path))
    if len(found) > 1:
        sys.exit(f"table.py: {len(found)} files match {path}: {found}")
    return found[0] if found else None


def made(results, side, run):
    path = run_path(results, side, run)
    return path is not None and os.path.exists(path)


def read_lines(path):
    if path is None:
        return []
    lines = []
    try:
        with open(path) as f:
            for raw in f:
                raw = raw.strip()
                if raw.startswith("{"):
                    try:
                        lines.append(json.loads(raw))
                    except json.JSONDecodeError:
                        pass
    except FileNotFoundError:
        pass
    return lines


def fmt(value, unit):
    if value is None:
        return "-"
    if unit == "us":
        return f"{value:,.3g} us/task" if value < 1000 else f"{value:,.0f} us/task"
    if value < 1.0:
        return f"{value * 1000:.3g} ms"
    return f"{value:.3g} s"


def fmt_ratio(r):
    if r >= 100:
        return f"{r:,.0f}x"
    return f"{r:.3g}x"


def partitions_of(lines):
    """The partition counts the runs reported, as a text ("-" when none did)."""
    # (A median of an even number of runs is a float.)
    seen = sorted({round(line["partitions"]) for line in lines if "partitions" in line})
    return "/".join(f"{p:,}" for p in seen) if seen else "-"


def gridpipe_figure(results, run, field):
    lines = read_lines(run_path(results, "gp", run))
    values = [line[field] for line in lines if field in line]
    if not values:
        return None, None, True, 0, partitions_of(lines)
    ok = all(line.get("ok", True) for line in lines)
    rss = max(line.get("peak_rss_mib", 0.0) for line in lines)
    return statistics.median(values), rss, ok, len(values), partitions_of(lines)


def python_figure(results, run, field):
    """Median figure, peak RSS, ok, finished repetitions, planned repetitions, items,
    how long after the process start timing began (None when it never did), the
    partitions reported and the line saying why compare.sh stopped it (or None)."""
    lines = read_lines(run_path(results, "py", run))
    began = next((line["timing_from_s"] for line in lines if "timing_from_s" in line), None)
    stopped = next((line for line in lines if "stopped" in line), None)
    items = next((line["items"] for line in lines if "items" in line), 1)
    done = [line for line in lines if line.get("finished", 0) > 0]
    parts = partitions_of(done)
    if parts == "-":
        # No repetition finished: what was asked for, if the workload says.
        asked = [line["npartitions_requested"] for line in lines if "npartitions_requested" in line]
        if asked:
            parts = "dask's default" if asked[0] is None else f"{asked[0]:,} (asked)"
    if not done:
        return None, None, True, 0, None, items, began, parts, stopped
    last = done[-1]
    return (last.get(field), last.get("peak_rss_mib"), last.get("ok", True),
            last["finished"], last.get("repeat"), items, began, parts, stopped)


def main():
    results, timeout = sys.argv[1], float(sys.argv[2])
    out = [
        "| workload | configuration (gridpipe / Python) | partitions (gridpipe / Python) | gridpipe | Python | ratio (Python / gridpipe: gridpipe is N times faster) | peak RSS MiB, all processes (gridpipe / Python) |",
        "|---|---|---|---|---|---|---|",
    ]
    for workload, config, gp_run, gp_field, py_run, py_field, unit, parts in ROWS:
        if not made(results, "gp", gp_run) and not made(results, "py", py_run):
            continue  # left out by BENCH_ONLY
        gp, gp_rss, gp_ok, _, gp_parts = gridpipe_figure(results, gp_run, gp_field)
        (py, py_rss, py_ok, finished, planned, items, began, py_parts,
         stopped) = python_figure(results, py_run, py_field)
        if parts is None:
            parts = f"{gp_parts} / {py_parts}"
        gp_text = fmt(gp, unit) + ("" if gp_ok else " (CHECK FAILED)")
        limit_s = timeout
        if stopped is not None and stopped.get("stopped") == "memory":
            # Stopped at the memory limit: the run lasted after_s, not the time limit.
            limit_s = float(stopped.get("after_s", timeout))
        if py is None:
            if stopped is not None and stopped.get("stopped") == "memory":
                py_text = (f"stopped at the memory limit ({stopped['limit_mib']:,} MiB) "
                           f"after {limit_s:.0f} s")
            elif not made(results, "py", py_run):
                py_text = "not run"
            else:
                py_text = f"did not finish in {timeout:.0f} s"
            if not made(results, "py", py_run):
                ratio = "-"
            elif began is None:
                ratio = "-"
                py_text += " (timing never began)"
            elif py_field == "run2_s":
                # The second run starts only after the first one finished.
                ratio = "-"
                py_text = "not reached: the 1st run did not finish"
            elif gp:
                # The first timed section ran at least this long before the limit.
                bound = max(limit_s - began, 0.0)
                if unit == "us":
                    bound = bound * 1e6 / max(items, 1)
                ratio = f"> {fmt_ratio(bound / gp)}"
            else:
                ratio = "-"
        else:
            py_text = fmt(py, unit)
            if planned and finished < planned:
                py_text += f" ({finished} of {planned} runs)"
            if not py_ok:
                py_text += " (CHECK FAILED)"
            ratio = fmt_ratio(py / gp) if gp else "-"
        if py_rss is None and stopped is not None and stopped.get("stopped") == "memory":
            # What the watcher saw when it stopped the run.
            py_rss_text = f"{stopped['rss_mib']:,} when stopped"
        else:
            py_rss_text = "-" if py_rss is None else f"{py_rss:,.0f}"
        gp_rss_text = "-" if gp_rss is None else f"{gp_rss:,.0f}"
        rss = f"{gp_rss_text} / {py_rss_text}"
        out.append(f"| {workload} | {config} | {parts} | {gp_text} | {py_text} | {ratio} | {rss} |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
