"""A default ``assay run`` versus the plain scikit-learn script a user would write instead.

    python benchmarks/bench_defaults.py --case small|large [--repeats 3] [--workdir DIR] [--omp-threads N]

* ``small``: scikit-learn's breast-cancer table (569 rows × 30) written to CSV, the spec from
  ``assay init --data``, run as written (``init`` leaves ``train.budget`` out, so the scaled
  defaults apply). Plain side: logistic regression (standardized)
  and ``HistGradientBoostingClassifier()`` cross-validated (``cross_val_score(cv=5)``), the
  better one refit, holdout ROC AUC.
* ``large``: a synthetic 200,000 × 20 binary table (70 / 30) plus one sensitive column;
  ``candidates = ["hist_gradient_boosting"]``, ``tuning = "none"``, 5 folds, nothing else
  given. Plain side: ``HistGradientBoostingClassifier()`` with scikit-learn's defaults,
  ``cross_val_score(cv=5)``, refit, holdout ROC AUC.

Both sides use the same 80 / 20 stratified holdout (seed 42) and run as fresh interpreters,
alternating, timed end to end (start-up, imports, reading the CSV, fitting, scoring). The
ratio of each pair is printed with both holdout AUCs; the summary gives medians. On a shared
machine the load moves both sides of a pair alike, so compare ratios, not seconds.
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

LARGE_SPEC = """\
[project]
name = "bench-defaults-large"

[data]
source = "synthetic.csv"
target = "y"
task = "binary"
sensitive = ["segment"]

[split]
strategy = "stratified"
test_size = 0.2
cv_folds = 5
seed = 42

[train]
candidates = ["hist_gradient_boosting"]
tuning = "none"
"""

PLAIN = {
    "small": textwrap.dedent("""\
        import json, sys
        import pandas as pd
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score
        from sklearn.model_selection import cross_val_score, train_test_split
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        frame = pd.read_csv(sys.argv[1])
        X, y = frame.drop(columns=["target"]), frame["target"]
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42, stratify=y)
        models = {"logistic_regression": make_pipeline(StandardScaler(), LogisticRegression()),
                  "hist_gradient_boosting": HistGradientBoostingClassifier()}
        cv = {name: cross_val_score(m, X_train, y_train, cv=5, scoring="roc_auc").mean() for name, m in models.items()}
        best = max(cv, key=cv.get)
        model = models[best].fit(X_train, y_train)
        auc = roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])
        print(json.dumps({"family": best, "cv": cv[best], "test_auc": auc}))
    """),
    "large": textwrap.dedent("""\
        import json, sys
        import pandas as pd
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.metrics import roc_auc_score
        from sklearn.model_selection import cross_val_score, train_test_split

        frame = pd.read_csv(sys.argv[1])
        X, y = frame.drop(columns=["y", "segment"]), frame["y"]
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42, stratify=y)
        cv = cross_val_score(HistGradientBoostingClassifier(), X_train, y_train, cv=5, scoring="roc_auc").mean()
        model = HistGradientBoostingClassifier().fit(X_train, y_train)
        auc = roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])
        print(json.dumps({"family": "hist_gradient_boosting", "cv": cv, "test_auc": auc}))
    """),
}


def make_small(work: Path, env: dict[str, str]) -> Path:
    from sklearn.datasets import load_breast_cancer

    csv = work / "cancer.csv"
    load_breast_cancer(as_frame=True).frame.to_csv(csv, index=False)
    spec = work / "assay.toml"
    if not spec.exists():
        subprocess.run([sys.executable, "-m", "assay", "--home", str(work / "init-home"), "init", "--data",
                        str(csv), str(work)], check=True, capture_output=True, env=env)
    return csv


def make_large(work: Path, rows: int = 200_000) -> Path:
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification

    csv = work / "synthetic.csv"
    if not csv.exists():
        X, y = make_classification(n_samples=rows, n_features=20, n_informative=10, n_redundant=4,
                                   weights=[0.7, 0.3], flip_y=0.02, random_state=SEED)
        frame = pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(20)])
        frame["segment"] = np.random.default_rng(SEED).choice(["a", "b", "c"], size=rows)
        frame["y"] = y
        frame.to_csv(csv, index=False)
    (work / "assay.toml").write_text(LARGE_SPEC, encoding="utf-8")
    return csv


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return elapsed, proc.stdout


def _evidence(home: Path, run_id: str) -> dict:
    from assay.storage.settings import Settings
    from assay.storage.store import RunStore

    return RunStore(Settings.resolve(home)).get_run(run_id).evidence or {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=("small", "large"), required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--omp-threads", type=int, help="OMP_NUM_THREADS for both sides (default: unset, "
                        "each library's own choice; 1 takes OpenMP spin-waiting under load out of the comparison)")
    args = parser.parse_args()

    env = {**os.environ}
    env.pop("ASSAY_DB_URL", None)
    if args.omp_threads:
        env["OMP_NUM_THREADS"] = str(args.omp_threads)
    work = args.workdir or Path(tempfile.mkdtemp(prefix=f"assay-bench-defaults-{args.case}-"))
    work.mkdir(parents=True, exist_ok=True)
    csv = make_small(work, env) if args.case == "small" else make_large(work)
    (work / "plain.py").write_text(PLAIN[args.case], encoding="utf-8")
    print(f"case {args.case}: {csv.name}, workdir {work}; assay run (spec as written); "
          f"OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', 'unset')}, "
          f"OMP_WAIT_POLICY={env.get('OMP_WAIT_POLICY', 'unset (assay: PASSIVE only when the load average exceeds the cores, plain: the default)')}; load average {os.getloadavg()[0]:.1f}")

    wall: dict[str, list[float]] = {"assay": [], "plain": []}
    ratios: list[float] = []
    aucs: dict[str, list[float]] = {"assay": [], "plain": []}
    for i in range(args.repeats):
        home = work / f"home{i}"
        order = ("assay", "plain") if i % 2 == 0 else ("plain", "assay")  # alternate who goes first
        seconds: dict[str, float] = {}
        outputs: dict[str, dict] = {}
        for side in order:
            if side == "assay":
                cmd = [sys.executable, "-m", "assay", "--home", str(home), "run", "assay.toml", "--json", "-q"]
            else:
                cmd = [sys.executable, "plain.py", str(csv)]
            seconds[side], out = timed(cmd, work, env)
            outputs[side] = json.loads(out)
        run, plain = outputs["assay"], outputs["plain"]
        evidence = _evidence(home, run["run_id"])
        model = evidence.get("model", {})
        used = {k: v["value"] for k, v in model.get("search", {}).get("settings", {}).items()}
        stages = {name: round(s["wall_s"], 1) for name, s in evidence.get("cost", {}).get("stages", {}).items()}
        # start-up, imports, the environment capture, the gate, the ledger and the process's exit
        stages["outside stages"] = round(seconds["assay"] - evidence.get("cost", {}).get("wall_s", 0.0), 1)
        ratio = seconds["assay"] / seconds["plain"]
        for side, auc in (("assay", run["metrics"]["test"]["roc_auc"]), ("plain", plain["test_auc"])):
            wall[side].append(seconds[side])
            aucs[side].append(auc)
        ratios.append(ratio)
        print(f"  repeat {i + 1} ({order[0]} first): assay {seconds['assay']:6.1f}s  plain {seconds['plain']:6.1f}s  "
              f"ratio {ratio:5.2f}   holdout AUC assay {aucs['assay'][-1]:.4f} ({model.get('family')}) "
              f"plain {plain['test_auc']:.4f} ({plain['family']})   load {os.getloadavg()[0]:.1f}")
        print(f"            assay settings {used}; stages (wall s) {stages}")
    med = {k: statistics.median(v) for k, v in wall.items()}
    print(f"median wall: assay {med['assay']:.1f}s, plain {med['plain']:.1f}s; median of per-pair ratios "
          f"{statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})")
    print(f"median holdout ROC AUC: assay {statistics.median(aucs['assay']):.4f}, "
          f"plain {statistics.median(aucs['plain']):.4f}")


if __name__ == "__main__":
    main()
