"""``assay run`` with every bundled step versus a plain scikit-learn script, same model, CV and search.

    python benchmarks/bench_run.py [--rows 200000] [--repeats 3] [--budget 4] [--folds 5] [--workdir DIR]

A synthetic 200k × 20 binary classification table (plus one sensitive column, so the fairness
checks run too) is written once as CSV. Both sides then run as fresh interpreters, alternating,
and are timed end to end (start-up, imports, reading the CSV, the search, the holdout score):

* ``assay run``: data checks, split and leakage checks, a random search of
  hist_gradient_boosting over the stratified 5-fold CV of the training part, refit, skops
  artifact, evaluation with bootstrap intervals, baseline, fairness, generalization checks,
  evidence, gate and the signed ledger records;
* the plain script: the same holdout split, the same folds, ``RandomizedSearchCV`` with the
  same estimator, distributions, budget, seed and ``n_jobs``, refit, holdout ROC AUC.

The ratio is median(assay) / median(plain); the target is ≤ 1.15. The best CV parameters of
both are printed: they must be equal, or the two are not doing the same work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SEED = 42

SPEC = """\
[project]
name = "bench-run"

[data]
source = "synthetic.csv"
target = "y"
task = "binary"
sensitive = ["segment"]

[split]
strategy = "stratified"
test_size = 0.2
cv_folds = {folds}
seed = {seed}

[train]
candidates = ["hist_gradient_boosting"]
tuning = "random"
budget = {budget}
n_jobs = -1

[evaluate]
baseline = "dummy"
"""

PLAIN = textwrap.dedent("""\
    import json, sys, time
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import RandomizedSearchCV, StratifiedKFold, train_test_split
    from scipy.stats import loguniform, randint

    csv, seed, budget, folds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    frame = pd.read_csv(csv)
    X, y = frame.drop(columns=["y", "segment"]), frame["y"]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=seed, shuffle=True,
                                                        stratify=y)
    model = HistGradientBoostingClassifier(random_state=seed, early_stopping=False, max_iter=100,
                                           class_weight="balanced")
    space = {"learning_rate": loguniform(0.02, 0.3), "max_leaf_nodes": randint(8, 64),
             "min_samples_leaf": randint(10, 100), "l2_regularization": loguniform(1e-4, 10.0)}
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    search = RandomizedSearchCV(model, space, n_iter=budget, cv=cv, scoring="roc_auc", n_jobs=-1,
                                random_state=seed, refit=True, return_train_score=True)
    search.fit(X_train, y_train)
    auc = roc_auc_score(y_test, search.best_estimator_.predict_proba(X_test)[:, 1])
    print(json.dumps({"params": search.best_params_, "cv": search.best_score_, "test_auc": auc}, default=float))
""")


def make_data(path: Path, rows: int) -> None:
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=rows, n_features=20, n_informative=10, n_redundant=4,
                               weights=[0.7, 0.3], flip_y=0.02, random_state=SEED)
    frame = pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(20)])
    frame["segment"] = np.random.default_rng(SEED).choice(["a", "b", "c"], size=rows)
    frame["y"] = y
    frame.to_csv(path, index=False)


def check_same_model() -> None:
    """The plain script's estimator and distributions are the bundled trainer's."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from assay.plugins.trainers import BUILTIN_TRAINERS

    trainer = next(t for t in BUILTIN_TRAINERS if t.name == "hist_gradient_boosting")
    ours = trainer.build("binary", None).set_params(random_state=SEED).get_params()
    plain = HistGradientBoostingClassifier(random_state=SEED, early_stopping=False, max_iter=100,
                                           class_weight="balanced").get_params()
    assert ours == plain, f"the bundled trainer changed: {ours} != {plain}; update PLAIN"
    assert set(trainer.search_space()) == {"learning_rate", "max_leaf_nodes", "min_samples_leaf",
                                           "l2_regularization"}, "the bundled distributions changed; update PLAIN"


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return elapsed, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=int, default=4)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()

    check_same_model()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="assay-bench-run-"))
    work.mkdir(parents=True, exist_ok=True)
    csv = work / "synthetic.csv"
    if not csv.exists():
        make_data(csv, args.rows)
    (work / "assay.toml").write_text(SPEC.format(folds=args.folds, seed=SEED, budget=args.budget), encoding="utf-8")
    (work / "plain.py").write_text(PLAIN, encoding="utf-8")
    env = {**os.environ}
    env.pop("ASSAY_DB_URL", None)

    print(f"{args.rows:,} rows × 20 features, hist_gradient_boosting, random search budget {args.budget}, "
          f"{args.folds}-fold CV, n_jobs=-1; load average {os.getloadavg()[0]:.1f}")
    assay_s: list[float] = []
    plain_s: list[float] = []
    for i in range(args.repeats):
        home = work / f"home{i}"
        a, out_a = timed([sys.executable, "-m", "assay", "--home", str(home), "run", "assay.toml", "--json", "-q"],
                         work, env)
        p, out_p = timed([sys.executable, "plain.py", str(csv), str(SEED), str(args.budget), str(args.folds)], work, env)
        assay_s.append(a)
        plain_s.append(p)
        run, plain = json.loads(out_a), json.loads(out_p)
        stages = _stages(home, run["run_id"])
        print(f"  repeat {i + 1}: assay {a:6.1f}s  plain {p:6.1f}s  ratio {a / p:.3f}   "
              f"(assay stages: {stages}; load {os.getloadavg()[0]:.1f})")
        params = _params(home, run["run_id"])
        same = {k: round(float(v), 9) for k, v in params.items()} == \
               {k.removeprefix("model__"): round(float(v), 9) for k, v in plain["params"].items()}
        print(f"            test AUC assay {run['metrics']['test']['roc_auc']:.5f}  plain {plain['test_auc']:.5f}"
              f"  same best params: {same}")
    ratio = statistics.median(assay_s) / statistics.median(plain_s)
    print(f"median assay {statistics.median(assay_s):.1f}s, plain {statistics.median(plain_s):.1f}s → "
          f"ratio {ratio:.3f} (target ≤ 1.15)")


def _evidence(home: Path, run_id: str) -> dict:
    from assay.settings import Settings
    from assay.store import RunStore

    return RunStore(Settings.resolve(home)).get_run(run_id).evidence or {}


def _stages(home: Path, run_id: str) -> str:
    stages = _evidence(home, run_id).get("cost", {}).get("stages", {})
    return ", ".join(f"{name} {s['wall_s']:.1f}" for name, s in stages.items())


def _params(home: Path, run_id: str) -> dict:
    return dict(_evidence(home, run_id).get("model", {}).get("params", {}))


if __name__ == "__main__":
    main()
