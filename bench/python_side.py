"""The Python reference side of the comparison: dask and bob.pipelines.

Runs one workload and prints one JSON line per finished repetition (each line
holds every repetition so far and their median), so that a run cut short by a
time limit still leaves the repetitions it finished. Wall times never include
the start-up of a dask cluster: the cluster and its client are created first.

Workloads:
  empty-sync          dask bag, one item per partition, identity map, synchronous
  empty-threads       dask delayed identity calls, threaded scheduler (W threads)
  empty-cluster-bag   as empty-sync on a LocalCluster of W workers x 1 thread
  empty-cluster-map   client.map of the identity on the same LocalCluster
  pipeline-sample     bob.pipelines wrap(["sample"]) of x -> 2x + 1 then a
                      StandardScaler, no dask
  pipeline-dask-threads   wrap(["sample", "dask"]), threaded scheduler (W threads)
  pipeline-dask-cluster   wrap(["sample", "dask"]), LocalCluster of W x 1 thread
                      (both dask workloads: --npartitions N is passed to wrap,
                      which hands it to its ToDaskBag step, i.e. to
                      dask.bag.from_sequence; without it, dask's default
                      partitioning; the JSON lines report the partitions made)
  pipeline-checkpoint wrap(["sample", "checkpoint"]) into a fresh temporary folder:
                      a first run that writes every feature and model, then a
                      second (new pipeline objects) that loads them
"""

import time

PROCESS_START = time.perf_counter()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402


def identity(x):
    return x


def affine(x):
    # bob.pipelines hands the estimator a SampleBatch: an array-like view.
    return 2.0 * np.asarray(x) + 1.0


def maxrss_mib():
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_input(n, d, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d))


def expected_output(x):
    """The same arithmetic on one array: the floor and the check."""
    y = 2.0 * x + 1.0
    mean = y.mean(axis=0)
    std = y.std(axis=0)
    std[std == 0.0] = 1.0
    return (y - mean) / std


def check(result, expected):
    return bool(
        result.shape == expected.shape
        and np.all(np.abs(result - expected) <= 1e-9 * np.maximum(np.abs(expected), 1.0))
    )


def make_pipeline_plain():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return make_pipeline(FunctionTransformer(affine), StandardScaler())


def make_samples(x):
    from bob.pipelines import Sample

    return [Sample(x[i], key=str(i)) for i in range(x.shape[0])]


def start_cluster(workers):
    from dask.distributed import Client, LocalCluster

    # distributed sets its loggers to INFO when imported.
    for name in ("distributed", "tornado"):
        logging.getLogger(name).setLevel(logging.ERROR)
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    client = Client(cluster)
    client.wait_for_workers(workers)
    return cluster, client


def cluster_rss_mib(client):
    """This process (client, scheduler and nannies live here) plus every worker."""
    workers = client.run(maxrss_mib)
    return maxrss_mib() + sum(workers.values())


class Reporter:
    def __init__(self, args, items, extra):
        self.base = {
            "workload": args.workload,
            "items": items,
            "workers": args.workers,
            "repeat": args.repeat,
        }
        self.base.update(extra)
        self.runs = []
        self.begun = False

    def begin(self):
        """Called just before each timed section; the first call prints how long
        after the start of this process timing began, so that a run stopped by a
        time limit tells how long its first timed section at least took."""
        if not self.begun:
            self.begun = True
            line = dict(self.base)
            line["finished"] = 0
            line["timing_from_s"] = time.perf_counter() - PROCESS_START
            print(json.dumps(line), flush=True)

    def add(self, run, rss_mib):
        self.runs.append(run)
        line = dict(self.base)
        line["runs"] = self.runs
        line["finished"] = len(self.runs)
        for field in self.runs[0]:
            values = [r[field] for r in self.runs]
            if isinstance(values[0], bool):
                line[field] = all(values)
            else:
                line[field] = statistics.median(values)
        if "wall_s" in line:
            line["us_per_item"] = line["wall_s"] * 1e6 / max(self.base["items"], 1)
        line["peak_rss_mib"] = rss_mib
        print(json.dumps(line), flush=True)


def empty_tasks(args):
    import dask
    import dask.bag as db

    n = args.tasks
    cluster = client = None
    setup = time.perf_counter()
    if args.workload.startswith("empty-cluster"):
        cluster, client = start_cluster(args.workers)
    setup_s = time.perf_counter() - setup
    rep = Reporter(args, n, {"setup_s": setup_s})
    for _ in range(args.repeat):
        items = list(range(n))
        if args.workload in ("empty-sync", "empty-cluster-bag"):
            bag = db.from_sequence(items, npartitions=n)
            assert bag.npartitions == n
            scheduler = "synchronous" if client is None else client
            rep.begin()
            t = time.perf_counter()
            out = bag.map(identity).compute(scheduler=scheduler)
            wall = time.perf_counter() - t
        elif args.workload == "empty-threads":
            rep.begin()
            t = time.perf_counter()
            calls = [dask.delayed(identity)(i) for i in items]
            out = list(dask.compute(*calls, scheduler="threads", num_workers=args.workers))
            wall = time.perf_counter() - t
        elif args.workload == "empty-cluster-map":
            rep.begin()
            t = time.perf_counter()
            futures = client.map(identity, items, pure=False)
            out = client.gather(futures)
            wall = time.perf_counter() - t
            del futures
        else:
            raise SystemExit(f"unknown workload {args.workload}")
        assert out == items, "every item came back"
        rss = maxrss_mib() if client is None else cluster_rss_mib(client)
        rep.add({"wall_s": wall, "ok": True}, rss)
    if client is not None:
        client.close()
        cluster.close()


def pipeline(args):
    import bob.pipelines

    n, d = args.samples, args.dim
    x = make_input(n, d, args.seed)
    t = time.perf_counter()
    expected_output(x)
    floor_s = time.perf_counter() - t
    expected = expected_output(x)

    cluster = client = None
    setup = time.perf_counter()
    if args.workload == "pipeline-dask-cluster":
        cluster, client = start_cluster(args.workers)
    setup_s = time.perf_counter() - setup
    extra = {"samples": n, "dim": d, "setup_s": setup_s, "floor_s": floor_s}
    if args.workload in ("pipeline-dask-threads", "pipeline-dask-cluster"):
        # What was asked for (None: dask's default); "partitions" is what dask made.
        extra["npartitions_requested"] = args.npartitions
    rep = Reporter(args, n, extra)

    for _ in range(args.repeat):
        # The checkpointed workload builds its own input for each of its two runs.
        samples = None if args.workload == "pipeline-checkpoint" else make_samples(x)
        if args.workload == "pipeline-sample":
            p = bob.pipelines.wrap(["sample"], make_pipeline_plain())
            rep.begin()
            t = time.perf_counter()
            out = p.fit_transform(samples)
            result = np.vstack([s.data for s in out])
            wall = time.perf_counter() - t
            run = {"wall_s": wall}
        elif args.workload in ("pipeline-dask-threads", "pipeline-dask-cluster"):
            import dask

            # npartitions=None is ToDaskBag's default: dask's own partitioning.
            p = bob.pipelines.wrap(
                ["sample", "dask"], make_pipeline_plain(), npartitions=args.npartitions
            )
            if client is None:
                # DaskWrapper.fit persists the fit on the default scheduler.
                ctx = dask.config.set(scheduler="threads", num_workers=args.workers)
            else:
                # The client made itself the default scheduler when it started.
                ctx = contextlib.nullcontext()
            with ctx:
                rep.begin()
                t = time.perf_counter()
                bag = p.fit_transform(samples)
                out = bag.compute()
                result = np.vstack([s.data for s in out])
                wall = time.perf_counter() - t
            run = {"wall_s": wall, "partitions": bag.npartitions}
        elif args.workload == "pipeline-checkpoint":
            base = tempfile.mkdtemp(prefix="bench-bob-ckpt-", dir=args.tmp_dir)
            try:
                times = []
                for _second in (False, True):
                    p = bob.pipelines.wrap(
                        ["sample", "checkpoint"],
                        make_pipeline_plain(),
                        features_dir=os.path.join(base, "features"),
                        model_path=os.path.join(base, "models"),
                    )
                    run_samples = make_samples(x)
                    rep.begin()
                    t = time.perf_counter()
                    out = p.fit_transform(run_samples)
                    result_run = np.vstack([s.data for s in out])
                    times.append(time.perf_counter() - t)
                    if not check(result_run, expected):
                        result_run = np.zeros((0, 0))
                        break
                result = result_run
                nfiles = sum(len(f) for _, _, f in os.walk(base))
            finally:
                shutil.rmtree(base, ignore_errors=True)
            run = {"run1_s": times[0], "run2_s": times[-1], "wall_s": times[0], "files": nfiles}
        else:
            raise SystemExit(f"unknown workload {args.workload}")
        run["ok"] = check(result, expected)
        rss = maxrss_mib() if client is None else cluster_rss_mib(client)
        rep.add(run, rss)
        del out, result

    if client is not None:
        client.close()
        cluster.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", required=True)
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--tmp-dir", default=None, help="where checkpoint folders are made")
    ap.add_argument(
        "--npartitions",
        type=int,
        default=None,
        help="partitions of the dask bag (pipeline-dask-* workloads; default: dask's own)",
    )
    args = ap.parse_args()
    if args.npartitions is not None:
        if args.npartitions < 1:
            ap.error("--npartitions must be at least 1")
        if args.workload not in ("pipeline-dask-threads", "pipeline-dask-cluster"):
            ap.error("--npartitions applies to pipeline-dask-threads and pipeline-dask-cluster only")
    logging.basicConfig(level=logging.ERROR)
    for name in ("distributed", "bob", "dask"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if args.workload.startswith("empty-"):
        empty_tasks(args)
    elif args.workload.startswith("pipeline-"):
        pipeline(args)
    else:
        ap.error(f"unknown workload {args.workload}")


if __name__ == "__main__":
    sys.exit(main())
