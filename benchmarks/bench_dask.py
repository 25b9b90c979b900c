"""Tuning on a Dask cluster: a CPU-bound search on 2 workers versus 1 worker, through ``assay run``.

    python benchmarks/bench_dask.py [--rows 15000] [--budget 8] [--folds 4] [--repeats 2] [--workdir DIR]

A random-forest random search (``budget`` candidates × ``folds`` folds, one core per fit)
runs with ``train.executor = "dask://..."`` against a ``distributed.LocalCluster`` of one
and then of two single-threaded worker processes. The figure is the search time the run
records (``model.candidates[].fit_s``, the search and refit without start-up, loading or
evaluation); speed-up = 1 worker / 2 workers, target ≥ 1.7 on a 2-core machine. The best
parameters must be the same on both clusters.

With a single one-thread worker joblib's dask backend sees one core and runs the fits one
after another in the client process; that is what "1 worker" costs a user.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEED = 7
SPEC = """\
[project]
name = "bench-dask"

[data]
source = "synthetic.csv"
target = "y"
task = "binary"

[split]
strategy = "stratified"
cv_folds = {folds}
seed = {seed}

[train]
candidates = ["random_forest"]
tuning = "random"
budget = {budget}
"""


def make_data(path: Path, rows: int) -> None:
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=rows, n_features=20, n_informative=8, random_state=SEED)
    frame = pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(20)])
    frame["y"] = y
    frame.to_csv(path, index=False)


def search_on(workers: int, work: Path, home: Path) -> tuple[float, float, dict]:
    from distributed import Client, LocalCluster

    from assay.storage.settings import Settings
    from assay.storage.store import RunStore

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster):
        address = cluster.scheduler_address.replace("tcp://", "dask://")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        env.pop("ASSAY_DB_URL", None)
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "assay", "--home", str(home), "run", "assay.toml", "--json", "-q",
                               "--set", f'train.executor="{address}"'], cwd=work, env=env, capture_output=True,
                              text=True)
        wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"assay run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    run_id = json.loads(proc.stdout)["run_id"]
    evidence = RunStore(Settings.resolve(home)).get_run(run_id).evidence or {}
    search_s = sum(c["fit_s"] for c in evidence["model"]["candidates"])
    return search_s, wall, evidence["model"]["params"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=15_000)
    parser.add_argument("--budget", type=int, default=8)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="assay-bench-dask-"))
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "synthetic.csv").exists():
        make_data(work / "synthetic.csv", args.rows)
    (work / "assay.toml").write_text(SPEC.format(folds=args.folds, seed=SEED, budget=args.budget), encoding="utf-8")
    print(f"random_forest random search: {args.budget} candidates × {args.folds} folds on {args.rows:,} rows; "
          f"load average {os.getloadavg()[0]:.1f}")
    times: dict[int, list[float]] = {1: [], 2: []}
    params: dict[int, dict] = {}
    for i in range(args.repeats):
        for workers in (1, 2):
            search_s, wall, params[workers] = search_on(workers, work, work / f"home-{workers}-{i}")
            times[workers].append(search_s)
            print(f"  repeat {i + 1}, {workers} worker(s): search {search_s:6.1f}s  (run {wall:5.1f}s, "
                  f"load {os.getloadavg()[0]:.1f})")
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"median search: 1 worker {one:.1f}s, 2 workers {two:.1f}s → speed-up {one / two:.2f}× (target ≥ 1.7); "
          f"same best params: {params[1] == params[2]}")


if __name__ == "__main__":
    main()
