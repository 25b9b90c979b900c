"""Benchmark: ``assay monitor`` on 100k rows × 20 columns against evidently called directly.

Usage (from the project root)::

    python benchmarks/bench_monitor.py [--rows 100000] [--repeats 3] [--workdir DIR]

Setup (not timed): a model is trained with ``assay run`` on 12,000 NYC flights of
January–August (logistic regression, 5,000-row reference sample); the batch is
September–December resampled with replacement to ``--rows`` rows × 20 columns (the 18
features, the target and ``scheduled_departure``, which the model does not use) and
written as Parquet.

Timed, alternating, ``--repeats`` times each, in one process after a warm-up (so both
sides have evidently imported and its caches warm):

* **assay** — the whole monitor runner, as ``assay monitor RUN --current batch.parquet``
  runs it: read the batch, validate and convert its schema, fingerprint it, load the
  reference and the model, score the batch (or its sample), the evidently drift reports
  and HTML, evidence, the policy's monitor rules, the ledger record and the history row.
* **evidently** — the same evidently work on the same frames, called directly: the
  ``DataDriftPreset`` report over the drift-tested features with its HTML, and the
  ``ValueDrift`` report on the model's predictions (predictions computed beforehand, for
  the rows assay scores: a batch without labels or sensitive columns larger than
  ``monitor.score_rows`` is scored on a seeded sample of that many rows). Each call gets
  fresh copies of the frames (made before the clock starts), as assay reads its own.
* **evidently + scoring** — the same, plus scoring those rows with the model: what a user
  of evidently must also do to get prediction drift (the holdout's predictions are
  stored at training time, so neither side re-scores the holdout).

Each repeat records wall time and the process's CPU time. On a shared machine the CPU
time is the stable figure (other processes stretch wall time, not the work done), so the
result is the median CPU-time ratio against evidently alone; wall-time ratios and
best-of-N figures are printed beside it. BLAS/OpenMP pools are limited to one thread on
both sides so CPU time is not inflated by spinning workers. The target is ≤ 1.1.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FLIGHTS = ROOT / "examples" / "nyc_flights_2013" / "data" / "flights.csv"

SPEC = """\
[project]
name = "bench-monitor"

[data]
source = "train.csv"
target = "is_delayed"
task = "binary"
drop = ["arr_delay_min", "dep_delay_min", "tailnum", "scheduled_departure"]

[split]
strategy = "stratified"
test_size = 0.2
cv_folds = 2

[train]
candidates = ["logistic_regression"]
tuning = "none"

[monitor]
reference_rows = 5000
"""


def prepare(workdir: Path, rows: int) -> tuple[Any, str, Path]:
    """Train the model (assay run) and write the batch; returns (settings, run_id, batch path)."""
    import pandas as pd

    from assay.kernel.manager import make_plugin_manager
    from assay.kernel.runner import Runner
    from assay.kernel.spec import load_spec
    from assay.storage.settings import Settings

    frame = pd.read_csv(FLIGHTS)
    frame[frame["month"] <= 8].sample(12_000, random_state=0).to_csv(workdir / "train.csv", index=False)
    (workdir / "assay.toml").write_text(SPEC, encoding="utf-8")
    later = frame[frame["month"] >= 9].drop(columns=["arr_delay_min", "tailnum"])
    batch = later.sample(rows, replace=True, random_state=0).reset_index(drop=True)
    assert batch.shape[1] == 20, batch.shape
    batch_path = workdir / "batch.parquet"
    batch.to_parquet(batch_path, index=False)
    settings = Settings.resolve(workdir / "home")
    spec, base = load_spec(workdir / "assay.toml")
    started = time.perf_counter()
    result = Runner(make_plugin_manager(), settings, spec, base / "assay.toml").execute()
    assert result.status in ("passed", "blocked"), result.error
    print(f"setup: trained {result.model['ref']} in {time.perf_counter() - started:.1f} s; batch {batch.shape}")
    return settings, result.run_id, batch_path


def evidently_inputs(settings: Any, run_id: str, batch_path: Path) -> dict[str, Any]:
    """The frames assay hands to evidently, built once outside the timings."""
    from assay.commands.monitor_batch import read_batch, validate_batch
    from assay.commands.monitoring import resolve_run
    from assay.kernel.spec import RunSpec
    from assay.plugins.monitoring import DRIFT_ROLES, drift_values, frame_from_parquet, predict, scoring_rows
    from assay.storage.modelio import load_model
    from assay.storage.store import ArtifactStore

    evidence = resolve_run(settings, run_id).evidence
    assert evidence is not None
    info = evidence["monitoring"]["reference"]
    store = ArtifactStore(settings.home)
    reference = frame_from_parquet(store.get_bytes(info["artifact"]))
    holdout = frame_from_parquet(store.get_bytes(evidence["monitoring"]["holdout"]["artifact"]))
    current, _, _ = validate_batch(read_batch(str(batch_path)), info, labels=False, source=str(batch_path),
                                   run_id=run_id)
    features = info["features"]
    model = load_model(store, evidence["model"]["artifact"])
    # the rows assay scores for prediction drift: the whole batch, or its seeded sample of monitor.score_rows
    spec = RunSpec.model_validate(resolve_run(settings, run_id).spec)
    rows = scoring_rows(SimpleNamespace(seed=spec.split.seed, spec=spec), current, every_row=False)  # type: ignore[arg-type]
    scored = current[features] if rows is None else current[features].iloc[rows]
    pred, proba, kind = predict(model, scored, "binary")
    ref_pred, ref_proba, _ = predict(model, holdout[features], "binary")
    tested = [c for c in features if info["roles"][c] in DRIFT_ROLES]
    return {"reference": reference[tested], "current": current[tested], "model": model,
            "features": scored, "types": {c: info["roles"][c] for c in tested},
            "ref_pred": drift_values(ref_pred, ref_proba, kind), "cur_pred": drift_values(pred, proba, kind),
            "kind": kind}


def fresh(inputs: dict[str, Any]) -> dict[str, Any]:
    """New copies of the frames (untimed): every call starts cold, as assay's reads its batch afresh."""
    return {**inputs, **{k: inputs[k].copy() for k in ("current", "reference", "features")}}


def evidently_with_scoring(inputs: dict[str, Any]) -> tuple[float, float]:
    """Score the batch with the model (for prediction drift), then the same evidently reports."""
    started = clock()
    proba = inputs["model"].predict_proba(inputs["features"])
    evidently_direct({**inputs, "cur_pred": proba[:, 1]})
    return since(started)


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) since ``start``."""
    return time.perf_counter() - start[0], time.process_time() - start[1]


def evidently_direct(inputs: dict[str, Any]) -> tuple[float, float]:
    """The same two evidently reports (and the HTML) on the same frames."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    current, reference = inputs["current"], inputs["reference"]
    started = clock()
    types = inputs["types"]
    definition = DataDefinition(numerical_columns=[c for c, t in types.items() if t == "numeric"],
                                categorical_columns=[c for c, t in types.items() if t == "categorical"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([DataDriftPreset(columns=list(types))], include_tests=True).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition))
        snapshot.dict()
        snapshot.get_html_str(as_iframe=False)
        pred_definition = DataDefinition(numerical_columns=["prediction"])
        Report([ValueDrift(column="prediction")], include_tests=True).run(
            Dataset.from_pandas(pd.DataFrame({"prediction": inputs["cur_pred"]}), data_definition=pred_definition),
            Dataset.from_pandas(pd.DataFrame({"prediction": inputs["ref_pred"]}), data_definition=pred_definition),
        ).dict()
    return since(started)


def assay_monitor(pm: Any, settings: Any, run_id: str, batch_path: Path) -> tuple[tuple[float, float], Any]:
    from assay.commands.monitoring import run_monitor

    started = clock()
    result = run_monitor(pm, settings, run_id, str(batch_path))
    return since(started), result


def overhead_parts(settings: Any, run_id: str, batch_path: Path) -> dict[str, float]:
    """Where assay's own time goes (each step timed once, outside the comparison)."""
    from assay.commands.monitor_batch import read_batch, validate_batch
    from assay.commands.monitoring import resolve_run
    from assay.kernel.dataset import fingerprint_frame
    from assay.plugins.monitoring import predict
    from assay.storage.modelio import load_model
    from assay.storage.store import ArtifactStore

    parts: dict[str, float] = {}
    t = time.perf_counter()
    evidence = resolve_run(settings, run_id).evidence
    assert evidence is not None
    raw = read_batch(str(batch_path))
    parts["read batch (Parquet)"] = time.perf_counter() - t
    t = time.perf_counter()
    current, _, _ = validate_batch(raw, evidence["monitoring"]["reference"], labels=False, source="b", run_id=run_id)
    parts["validate schema, new categories"] = time.perf_counter() - t
    t = time.perf_counter()
    fingerprint_frame(raw)
    parts["fingerprint batch"] = time.perf_counter() - t
    t = time.perf_counter()
    model = load_model(ArtifactStore(settings.home), evidence["model"]["artifact"])
    scored = current[evidence["monitoring"]["reference"]["features"]]
    predict(model, scored.sample(min(len(scored), 20_000), random_state=0), "binary")
    parts["load model + score (20,000-row sample)"] = time.perf_counter() - t
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        from threadpoolctl import threadpool_limits

        from assay.kernel.manager import make_plugin_manager

        threadpool_limits(limits=1)
        settings, run_id, batch_path = prepare(workdir, args.rows)
        pm = make_plugin_manager()
        inputs = evidently_inputs(settings, run_id, batch_path)
        print(f"drift-tested features: {len(inputs['types'])}; reference {len(inputs['reference'])} rows, "
              f"current {len(inputs['current'])} rows")
        evidently_direct(inputs)  # warm-up: imports, first-call caches
        _, result = assay_monitor(pm, settings, run_id, batch_path)
        print(f"warm-up monitor: share_drifted={result.evidence['drift']['share_drifted']:.3f}, "
              f"status {result.status}")
        runs: dict[str, list[tuple[float, float]]] = {"evidently": [], "evidently + scoring": [], "assay monitor": []}
        steps = {"evidently": lambda: evidently_direct(fresh(inputs)),
                 "assay monitor": lambda: assay_monitor(pm, settings, run_id, batch_path)[0],
                 "evidently + scoring": lambda: evidently_with_scoring(fresh(inputs))}
        for i in range(args.repeats):
            order = list(steps)[i % 3:] + list(steps)[:i % 3]  # rotate, so no side always runs first
            for name in order:
                gc.collect()  # evidently leaves many cyclic objects; do not bill their collection to the next call
                runs[name].append(steps[name]())
            print(f"repeat {i + 1}: " + ", ".join(f"{k} {v[-1][0]:.2f} s wall / {v[-1][1]:.2f} s CPU"
                                                  for k, v in runs.items()))
        print("assay's own steps (each timed once, wall):")
        for name, seconds in overhead_parts(settings, run_id, batch_path).items():
            print(f"  {name:36s} {seconds:.3f} s")
        ratios = {}
        for what, index in (("CPU", 1), ("wall", 0)):
            med = {k: statistics.median(x[index] for x in v) for k, v in runs.items()}
            best = {k: min(x[index] for x in v) for k, v in runs.items()}
            print(f"{what:4s} median: " + ", ".join(f"{k} {v:.2f} s" for k, v in med.items()))
            print(f"{what:4s} best:   " + ", ".join(f"{k} {v:.2f} s" for k, v in best.items()))
            for base in ("evidently", "evidently + scoring"):
                ratios[(what, base)] = (med["assay monitor"] / med[base], best["assay monitor"] / best[base])
        for (what, base), (med_ratio, best_ratio) in ratios.items():
            print(f"RATIO {what:4s} assay / {base:20s} median {med_ratio:.3f}  best {best_ratio:.3f}")
        strict, like = ratios[("CPU", "evidently")][0], ratios[("CPU", "evidently + scoring")][0]
        for label, value in (("against evidently alone", strict), ("against evidently + scoring", like)):
            print(f"RESULT (CPU, median) {label}: {value:.3f}, target <= 1.1 {'met' if value <= 1.1 else 'NOT met'}")
        return 0 if strict <= 1.1 else 1


if __name__ == "__main__":
    sys.exit(main())
