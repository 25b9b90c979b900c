"""``assay run`` with every bundled step versus a plain scikit-learn script, same model, CV and search.

    python benchmarks/bench_run.py [--rows 200000] [--repeats 3] [--budget 4] [--folds 5] [--workdir DIR]

A synthetic 200k × 20 binary classification table (plus one sensitive column, so the fairness
checks run too) is written once as CSV. Both sides then run as fresh interpreters, alternating,
and are timed end to end (start-up, imports, reading the CSV, the search, the holdout score):

* ``assay run``: data checks, split and leakage checks, a random search of
  hist_gradient_boosting over the stratified 5-fold CV of the training part, refit, skops
  artifact, evaluation with bootstrap intervals, baseline, fairness, generalization checks,
  evidence, gate and the signed ledger records;
* the plain script: the same holdout split, the same folds, a ``GridSearchCV`` over the very
  candidates assay's ``random`` tuner tries (the family's defaults and ``budget - 1`` settings
  drawn by ``ParameterSampler`` from the same distributions and seed), the same estimator and
  ``n_jobs``, refit, holdout ROC AUC.

The ratio is median(assay) / median(plain) in wall time; the target is ≤ 1.15. CPU time
(each process plus the worker processes it waited for) is printed too: on a shared machine
it moves far less with other people's load than wall time does. The best CV parameters of
both are printed: they must be equal, or the two are not doing the same work.
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
    import scipy.stats
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GridSearchCV, ParameterSampler, StratifiedKFold, train_test_split

    csv, seed, budget, folds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    params, space = json.loads(sys.argv[5]), json.loads(sys.argv[6])
    space = {k: getattr(scipy.stats, v["scipy"])(*v["args"]) if isinstance(v, dict) else v for k, v in space.items()}
    frame = pd.read_csv(csv)
    X, y = frame.drop(columns=["y", "segment"]), frame["y"]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=seed, shuffle=True,
                                                        stratify=y)
    model = HistGradientBoostingClassifier(**params)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    points = [{}] + [{k: [v] for k, v in p.items()} for p in ParameterSampler(space, budget - 1, random_state=seed)]
    search = GridSearchCV(model, points, cv=cv, scoring="roc_auc", n_jobs=-1, refit=True,
                          return_train_score=len(X_train) <= 20_000)  # as assay: fold training scores up to 20k rows
    started = time.perf_counter()
    search.fit(X_train, y_train)
    search_s = time.perf_counter() - started
    auc = roc_auc_score(y_test, search.best_estimator_.predict_proba(X_test)[:, 1])
    print(json.dumps({"params": search.best_params_, "cv": search.best_score_, "test_auc": auc, "search_s": search_s},
                     default=float))
""")


def bundled_model() -> tuple[str, str]:
    """The bundled hist_gradient_boosting family as plain arguments: constructor params and distributions.

    The plain script builds ``HistGradientBoostingClassifier(**params)`` and the same scipy
    distributions itself, so the two sides fit the very same model whatever the family's defaults.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    from assay.plugins.trainers import BUILTIN_TRAINERS

    trainer = next(t for t in BUILTIN_TRAINERS if t.name == "hist_gradient_boosting")
    # the table is 70 / 30, so a run that leaves train.class_weight out trains unweighted
    built = trainer.build("binary", None).set_params(random_state=SEED, class_weight=None)
    defaults = HistGradientBoostingClassifier().get_params()
    params = {k: v for k, v in built.get_params().items() if v != defaults[k] or k == "random_state"}
    space: dict[str, object] = {}
    for key, dist in trainer.search_space().items():
        if hasattr(dist, "dist"):  # a frozen scipy distribution
            space[key] = {"scipy": dist.dist.name, "args": list(dist.args)}
        else:
            space[key] = list(dist)
    return json.dumps(params), json.dumps(space)


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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (the process and the workers it waited for) and stdout of ``cmd``."""
    started, cpu = time.perf_counter(), _children_cpu()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return elapsed, _children_cpu() - cpu, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=int, default=4)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()

    params, space = bundled_model()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="assay-bench-run-"))
    work.mkdir(parents=True, exist_ok=True)
    csv = work / "synthetic.csv"
    if not csv.exists():
        make_data(csv, args.rows)
    (work / "assay.toml").write_text(SPEC.format(folds=args.folds, seed=SEED, budget=args.budget), encoding="utf-8")
    (work / "plain.py").write_text(PLAIN, encoding="utf-8")
    env = {**os.environ}
    env.pop("ASSAY_DB_URL", None)

    print(f"{args.rows:,} rows × 20 features, hist_gradient_boosting {params}, random search budget "
          f"{args.budget}, {args.folds}-fold CV, n_jobs=-1; load average {os.getloadavg()[0]:.1f}")
    wall: dict[str, list[float]] = {"assay": [], "plain": []}
    cpu: dict[str, list[float]] = {"assay": [], "plain": []}
    outside: dict[str, list[float]] = {"assay": [], "plain": []}
    for i in range(args.repeats):
        home = work / f"home{i}"
        a, a_cpu, out_a = timed([sys.executable, "-m", "assay", "--home", str(home), "run", "assay.toml", "--json",
                                 "-q"], work, env)
        p, p_cpu, out_p = timed([sys.executable, "plain.py", str(csv), str(SEED), str(args.budget), str(args.folds),
                                 params, space], work, env)
        run, plain = json.loads(out_a), json.loads(out_p)
        evidence = _evidence(home, run["run_id"])
        search_a = sum(c["fit_s"] for c in evidence["model"]["candidates"])
        for side, w, c, searched in (("assay", a, a_cpu, search_a), ("plain", p, p_cpu, plain["search_s"])):
            wall[side].append(w)
            cpu[side].append(c)
            outside[side].append(w - searched)
        print(f"  repeat {i + 1}: wall assay {a:6.1f}s plain {p:6.1f}s ratio {a / p:.3f} | "
              f"CPU assay {a_cpu:6.1f}s plain {p_cpu:6.1f}s ratio {a_cpu / p_cpu:.3f}   (load {os.getloadavg()[0]:.1f})")
        print(f"            search (fit + refit) assay {search_a:6.1f}s plain {plain['search_s']:6.1f}s; "
              f"everything else assay {a - search_a:5.1f}s plain {p - plain['search_s']:5.1f}s")
        print(f"            assay stages (wall s): {_stages(evidence)}")
        best = dict(evidence["model"]["params"])
        same = {k: round(float(v), 9) for k, v in best.items()} == \
               {k.removeprefix("model__"): round(float(v), 9) for k, v in plain["params"].items()}
        print(f"            test AUC assay {run['metrics']['test']['roc_auc']:.5f}  plain {plain['test_auc']:.5f}"
              f"  same best params: {same}")
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    pairs = statistics.median(a / p for a, p in zip(wall["assay"], wall["plain"], strict=True))
    extra = statistics.median(a - p for a, p in zip(outside["assay"], outside["plain"], strict=True))
    print(f"median wall: assay {med['assay']:.1f}s, plain {med['plain']:.1f}s → ratio {med['assay'] / med['plain']:.3f}"
          f" (median of per-repeat ratios {pairs:.3f}; target ≤ 1.15)")
    print(f"median CPU:  assay {med_cpu['assay']:.1f}s, plain {med_cpu['plain']:.1f}s → ratio "
          f"{med_cpu['assay'] / med_cpu['plain']:.3f} (less sensitive to other processes on a shared machine)")
    print(f"assay's time outside the search exceeds the plain script's by {extra:.1f}s (median): "
          f"{(med['plain'] + extra) / med['plain']:.3f}× of the plain median")


def _evidence(home: Path, run_id: str) -> dict:
    from assay.storage.settings import Settings
    from assay.storage.store import RunStore

    return RunStore(Settings.resolve(home)).get_run(run_id).evidence or {}


def _stages(evidence: dict) -> str:
    stages = evidence.get("cost", {}).get("stages", {})
    return ", ".join(f"{name} {s['wall_s']:.1f}" for name, s in stages.items())


if __name__ == "__main__":
    main()
