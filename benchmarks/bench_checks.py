"""What the bundled checks cost: the Adult example with and without them, and fairness on 1M rows.

    python benchmarks/bench_checks.py [--repeats 3] [--rows 1000000] [--resamples 200] [--skip-run] [--skip-fairness]

1. **Adult example, end to end.** ``assay run examples/adult/assay.toml`` (48,842 rows,
   two families, halving random search) with every bundled check plugin, and with them
   blocked (``-p no:leakage -p no:generalization -p no:fairness -p no:datachecks``),
   alternating, ``--repeats`` times each. Reported: median wall time and median CPU time
   of the ``assay`` process (user + system, including its workers), and the overhead
   ratio with/without. Target: ≤ 1.10. CPU time is the steadier figure on a shared
   machine; wall time is what a user waits.
2. **The check hooks alone, on the same run.** The four plugins' hooks called directly
   on the Adult split and a fitted model, timed one by one (CPU seconds), so the
   overhead can be attributed.
3. **Fairness on 1M rows.** Adult rows resampled to ``--rows`` rows, scored by a
   logistic regression: assay's fairness evidence for ``sex`` (``MetricFrame`` by group,
   demographic parity difference and ratio, equalized odds difference, selection-rate
   ratio, per-group ROC AUC, ``--resamples`` bootstrap intervals) against fairlearn
   called directly for the same disparities (one ``MetricFrame`` with count, selection
   rate, FPR, FNR, plus ``demographic_parity_difference``, ``demographic_parity_ratio``
   and ``equalized_odds_difference``). Target: ≤ 1.5 × fairlearn.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ADULT = ROOT / "examples" / "adult"
CHECK_PLUGINS = ("leakage", "generalization", "fairness", "datachecks")


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_adult(home: Path, blocked: tuple[str, ...]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "assay", "--home", str(home)]
    for name in blocked:
        cmd += ["-p", f"no:{name}"]
    cmd += ["run", str(ADULT / "assay.toml"), "--json", "-q"]
    env = {k: v for k, v in os.environ.items() if k != "ASSAY_DB_URL"}
    cpu, wall = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, cwd=ADULT)
    wall, cpu = time.perf_counter() - wall, _children_cpu() - cpu
    out = json.loads(proc.stdout)
    if out.get("status") not in ("passed", "blocked"):
        raise SystemExit(f"run failed ({proc.returncode}): {out.get('error')}\n{proc.stderr[-2000:]}")
    from assay.storage.settings import Settings
    from assay.storage.store import RunStore

    evidence = RunStore(Settings.resolve(home)).get_run(out["run_id"]).evidence
    n_checks = sum(len(v) for v in evidence.get("checks", {}).values())
    stages = {k: v["wall_s"] for k, v in evidence["cost"]["stages"].items()}
    return {"wall": wall, "cpu": cpu, "checks": n_checks, "stages": stages, "status": out["status"]}


def bench_run(repeats: int) -> None:
    print("== Adult example, end to end (assay run examples/adult/assay.toml)")
    with tempfile.TemporaryDirectory() as tmp:
        results: dict[str, list[dict[str, Any]]] = {"with": [], "without": []}
        for i in range(repeats):
            for label, blocked in (("with", ()), ("without", CHECK_PLUGINS)):
                r = run_adult(Path(tmp) / f"{label}{i}", blocked)
                results[label].append(r)
                print(f"  {label:8s} #{i + 1}: wall {r['wall']:6.1f} s  cpu {r['cpu']:6.1f} s  checks {r['checks']:3d}  "
                      f"split {r['stages'].get('split', 0):.2f} s  evaluate {r['stages'].get('evaluate', 0):.2f} s  "
                      f"[{r['status']}]")
        for key in ("wall", "cpu"):
            w = statistics.median(r[key] for r in results["with"])
            wo = statistics.median(r[key] for r in results["without"])
            print(f"  median {key}: with {w:.1f} s, without {wo:.1f} s, ratio {w / wo:.3f} (target ≤ 1.10)")
        for stage in ("split", "evaluate"):
            w = statistics.median(r["stages"].get(stage, 0.0) for r in results["with"])
            wo = statistics.median(r["stages"].get(stage, 0.0) for r in results["without"])
            print(f"  median {stage} stage: with {w:.2f} s, without {wo:.2f} s (+{w - wo:.2f} s)")


def bench_hooks() -> None:
    sys.path.insert(0, str(ROOT))
    from assay.plugins import datachecks, fairness, generalization, leakage
    from assay.testing import fit, prepare

    print("== the check hooks alone, on the Adult example's split (CPU seconds)")
    prepared = prepare(ADULT / "assay.toml")
    model = fit(prepared, ("hist_gradient_boosting",))
    run, dataset, splits = prepared.run, prepared.dataset, prepared.splits
    timings = [
        ("datachecks.validate_data", lambda: datachecks.validate_data(run=run, dataset=dataset)),
        ("datachecks.check_split", lambda: datachecks.check_split(run=run, splits=splits)),
        ("leakage.check_split", lambda: leakage.check_split(run=run, splits=splits)),
        ("leakage.evaluate", lambda: leakage.evaluate(run=run, model=model, splits=splits)),
        ("generalization.evaluate", lambda: generalization.evaluate(run=run, model=model, splits=splits)),
        ("fairness.evaluate", lambda: fairness.evaluate(run=run, model=model, splits=splits)),
    ]
    total = 0.0
    for name, call in timings:
        cpu, wall = time.process_time(), time.perf_counter()
        call()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        total += cpu
        print(f"  {name:26s} cpu {cpu:6.3f} s  wall {wall:6.3f} s")
    print(f"  total cpu {total:.3f} s (includes the model's predictions on train and test, once each)")


def bench_fairness(rows: int, resamples: int) -> None:
    import numpy as np
    import pandas as pd
    from fairlearn.metrics import (
        MetricFrame,
        count,
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
        false_negative_rate,
        false_positive_rate,
        selection_rate,
    )
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from assay.plugins import fairness

    print(f"== fairness for 'sex' on {rows:,} rows (Adult resampled), assay vs fairlearn directly")
    frame = pd.read_csv(ADULT / "data" / "adult.csv", skipinitialspace=True)
    frame["income"] = frame["income"].str.rstrip(".")
    numeric = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
    categorical = ["workclass", "marital_status", "occupation", "relationship"]
    prep = make_column_transformer((StandardScaler(), numeric),
                                   (OneHotEncoder(handle_unknown="ignore"), categorical))
    model = make_pipeline(prep, LogisticRegression(max_iter=1000))
    train = frame.sample(10_000, random_state=0)
    model.fit(train[numeric + categorical].fillna("?"), train["income"])
    big = frame.sample(rows, replace=True, random_state=1).reset_index(drop=True)
    proba = model.predict_proba(big[numeric + categorical].fillna("?"))
    classes = model.classes_
    pred = classes[proba.argmax(axis=1)]
    y = big["income"].to_numpy()
    positive = ">50K"

    cpu, wall = time.process_time(), time.perf_counter()
    y01, p01 = (y == positive).astype(int), (pred == positive).astype(int)
    sex = big["sex"].to_numpy()
    MetricFrame(metrics={"count": count, "selection_rate": selection_rate, "false_positive_rate": false_positive_rate,
                         "false_negative_rate": false_negative_rate}, y_true=y01, y_pred=p01, sensitive_features=sex)
    direct = (demographic_parity_difference(y01, p01, sensitive_features=sex),
              demographic_parity_ratio(y01, p01, sensitive_features=sex),
              equalized_odds_difference(y01, p01, sensitive_features=sex))
    direct_cpu, direct_wall = time.process_time() - cpu, time.perf_counter() - wall

    cpu, wall = time.process_time(), time.perf_counter()
    labels = fairness.group_labels(big, ["sex"])
    ours = fairness.classification_fairness(y, pred, proba, classes, labels, positive, "roc_auc", 30, resamples,
                                            np.random.default_rng(0))
    ours_cpu, ours_wall = time.process_time() - cpu, time.perf_counter() - wall

    same = np.allclose(direct, [ours["demographic_parity_difference"], ours["demographic_parity_ratio"],
                                ours["equalized_odds_difference"]])
    print(f"  fairlearn directly: cpu {direct_cpu:6.2f} s  wall {direct_wall:6.2f} s")
    print(f"  assay fairness:     cpu {ours_cpu:6.2f} s  wall {ours_wall:6.2f} s  "
          f"(+ per-group roc_auc and {resamples} bootstrap intervals)")
    print(f"  ratio assay / fairlearn: cpu {ours_cpu / direct_cpu:.3f}, wall {ours_wall / direct_wall:.3f} "
          f"(target ≤ 1.5); same disparities: {same}")
    print(f"  dp difference {ours['demographic_parity_difference']:.4f} {ours['demographic_parity_difference_ci']}, "
          f"ratio {ours['demographic_parity_ratio']:.4f}, eo difference {ours['equalized_odds_difference']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--skip-run", action="store_true", help="skip the end-to-end Adult runs")
    parser.add_argument("--skip-fairness", action="store_true", help="skip the 1M-row fairness comparison")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if not args.skip_run:
        bench_run(args.repeats)
    bench_hooks()
    if not args.skip_fairness:
        bench_fairness(args.rows, args.resamples)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
