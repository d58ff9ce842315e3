"""Reads the JSON lines that compare.sh collected in a results folder and prints
the comparison as a markdown table.

Usage: table.py RESULTS_DIR TIMEOUT_S

Files: RESULTS_DIR/gp-<id>.jsonl holds one line per gridpipe run (each run of a
benchmark binary prints one line); RESULTS_DIR/py-<id>.jsonl holds the Python
side's lines for one workload (one per finished repetition, the last one holding
them all, after a first line that says when timing began).
"""

import json
import os
import statistics
import sys

# (workload, configuration, gridpipe run, gridpipe field, Python run, Python field, unit)
ROWS = [
    ("empty tasks", "20k tasks; gridpipe in-process, 2 workers / dask bag, synchronous",
     "empty-20k-inprocess", "us_per_task", "empty-sync", "us_per_item", "us"),
    ("empty tasks", "20k tasks; gridpipe in-process, 2 workers / dask delayed, threads (2)",
     "empty-20k-inprocess", "us_per_task", "empty-threads", "us_per_item", "us"),
    ("empty tasks", "5k tasks; gridpipe 2 worker processes / dask bag, LocalCluster 2 workers x 1 thread",
     "empty-5k-processes", "us_per_task", "empty-cluster-bag", "us_per_item", "us"),
    ("empty tasks", "5k tasks; gridpipe 2 worker processes / client.map, LocalCluster 2x1",
     "empty-5k-processes", "us_per_task", "empty-cluster-map", "us_per_item", "us"),
    ("pipeline", "10k x 64; gridpipe in-process, 2 workers / bob.pipelines sample-wrapped, no dask",
     "pipeline-10k-inprocess", "wall_s", "pipeline-10k-sample", "wall_s", "s"),
    ("pipeline", "10k x 64; gridpipe in-process, 2 workers / bob.pipelines + dask, threads (2)",
     "pipeline-10k-inprocess", "wall_s", "pipeline-10k-dask-threads", "wall_s", "s"),
    ("pipeline", "10k x 64; gridpipe 2 worker processes / bob.pipelines + dask, LocalCluster 2x1",
     "pipeline-10k-processes", "wall_s", "pipeline-10k-dask-cluster", "wall_s", "s"),
    ("pipeline", "100k x 16; gridpipe in-process, 2 workers / bob.pipelines sample-wrapped, no dask",
     "pipeline-100k-inprocess", "wall_s", "pipeline-100k-sample", "wall_s", "s"),
    ("pipeline", "100k x 16; gridpipe in-process, 2 workers / bob.pipelines + dask, threads (2)",
     "pipeline-100k-inprocess", "wall_s", "pipeline-100k-dask-threads", "wall_s", "s"),
    ("pipeline", "100k x 16; gridpipe 2 worker processes / bob.pipelines + dask, LocalCluster 2x1",
     "pipeline-100k-processes", "wall_s", "pipeline-100k-dask-cluster", "wall_s", "s"),
    ("checkpointed pipeline", "10k x 64, 1st run (computes, writes every feature and the model); "
     "gridpipe in-process, 2 workers / bob.pipelines sample + checkpoint (HDF5)",
     "checkpoint-10k", "run1_s", "checkpoint-10k", "run1_s", "s"),
    ("checkpointed pipeline", "10k x 64, 2nd run (loads everything), same configurations",
     "checkpoint-10k", "run2_s", "checkpoint-10k", "run2_s", "s"),
]


def read_lines(path):
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


def gridpipe_figure(results, run, field):
    lines = read_lines(os.path.join(results, f"gp-{run}.jsonl"))
    values = [line[field] for line in lines if field in line]
    if not values:
        return None, None, True, 0
    ok = all(line.get("ok", True) for line in lines)
    rss = max(line.get("peak_rss_mib", 0.0) for line in lines)
    return statistics.median(values), rss, ok, len(values)


def python_figure(results, run, field):
    """Median figure, peak RSS, ok, finished repetitions, planned repetitions, items,
    and how long after the process start timing began (None when it never did)."""
    lines = read_lines(os.path.join(results, f"py-{run}.jsonl"))
    began = next((line["timing_from_s"] for line in lines if "timing_from_s" in line), None)
    items = lines[0].get("items", 1) if lines else 1
    done = [line for line in lines if line.get("finished", 0) > 0]
    if not done:
        return None, None, True, 0, None, items, began
    last = done[-1]
    return (last.get(field), last.get("peak_rss_mib"), last.get("ok", True),
            last["finished"], last.get("repeat"), items, began)


def main():
    results, timeout = sys.argv[1], float(sys.argv[2])
    out = [
        "| workload | configuration (gridpipe / Python) | gridpipe | Python | ratio (Python / gridpipe: gridpipe is N times faster) | peak RSS MiB, all processes (gridpipe / Python) |",
        "|---|---|---|---|---|---|",
    ]
    for workload, config, gp_run, gp_field, py_run, py_field, unit in ROWS:
        gp, gp_rss, gp_ok, _ = gridpipe_figure(results, gp_run, gp_field)
        py, py_rss, py_ok, finished, planned, items, began = python_figure(results, py_run, py_field)
        gp_text = fmt(gp, unit) + ("" if gp_ok else " (CHECK FAILED)")
        if py is None:
            py_text = f"did not finish in {timeout:.0f} s"
            if began is None:
                ratio = "-"
                py_text += " (timing never began)"
            elif py_field == "run2_s":
                # The second run starts only after the first one finished.
                ratio = "-"
                py_text = "not reached: the 1st run did not finish"
            elif gp:
                # The first timed section ran at least this long before the limit.
                bound = max(timeout - began, 0.0)
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
        rss = f"{gp_rss:,.0f} / {py_rss:,.0f}" if gp_rss is not None and py_rss is not None else (
            f"{gp_rss:,.0f} / -" if gp_rss is not None else "-")
        out.append(f"| {workload} | {config} | {gp_text} | {py_text} | {ratio} | {rss} |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
