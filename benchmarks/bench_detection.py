"""Planted leakage defects on bundled real data: what assay's checks and gates catch, and what deepchecks does.

    python benchmarks/bench_detection.py [--quick] [--datasets adult,flights,...] [--defects duplicates,...]
                                         [--skip-deepchecks] [--workdir DIR] [--jobs 2] [--reuse-runs 10]
                                         [--default-runs]

Every case is a copy of a bundled dataset (``examples/``; a row subsample of the larger ones)
written with an ``assay.toml`` of fast settings (one linear candidate, ``train.tuning = "none"``,
3 CV folds) and run through the real ``assay run --json`` in a fresh home; the same run is then
gated again with ``assay gate --policy assay:strict``. Each dataset also runs clean, and every
defect that makes sense for it is planted in its own copy:

* ``duplicates``: 10 % of the rows loaded twice (check ``duplicates``);
* ``target_proxy``: the label, recoded, as a feature (``target_leakage``);
* ``identifier``: an application number handed out in label order, with noise (``identifier_columns``);
* ``temporal_shuffled``: a dated table split at random (``temporal_order``);
* ``future_feature``: a timestamp logged after the row's time (``future_features``);
* ``entity_overlap``: a third of the rows surveyed in three waves, split by row (``entity_overlap``);
* ``post_decision``: the flights' departure delay kept with the booking-time decision declared
  (``post_decision_features``);
* ``preprocessed``: numeric features standardized over all rows before the split
  (``preprocessed_on_all_rows``);
* ``feature_selection``: 200 noise columns added and ``data.features`` set to SelectKBest's top 10
  on all rows (``feature_selection_on_all_rows``);
* ``holdout_reuse``: the clean spec run ``--reuse-runs`` times in one home, the last run judged
  (``holdout_reuse``; ``assay:standard`` warns from 5, ``assay:strict`` blocks at 10).

Recall: the named check warns or fails; for a policy, the gate warns or blocks on a rule about
that check. False alarm (clean copies): any leakage check warns or fails, or the gate blocks on
a leakage rule. Cost: the data and split stages (data checks, splitting, leakage
checks) as a share of the run's stage time, an upper bound on the leakage checks' share; with
``--default-runs`` also against a run with the task's default training settings, and there with the
evaluate stage added (the selection, generalization and fairness checks run in it, beside the metrics).

Unless ``--skip-deepchecks``, the same cases go through deepchecks' ``data_integrity`` and
``train_test_validation`` suites in a virtual environment the script creates under the workdir
(deepchecks needs an older scikit-learn and numpy than assay; it never enters assay's
environment). A deepchecks check whose condition does not pass counts as catching the defect
it is mapped to (``DEEPCHECKS_FOR``); a defect with no such check is reported as not covered.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ROWS = 3000
PROBES = 200
LEAKAGE_RULES = ("no-leakage", "leakage-warnings", "holdout-reuse")


@dataclass(frozen=True)
class Data:
    """A bundled dataset and the spec fields it runs with."""

    csv: str
    target: str
    task: str
    drop: tuple[str, ...] = ()
    sensitive: tuple[str, ...] = ()
    time_column: str = ""
    strategy: str = "stratified"
    wave_column: str = ""  # the numeric column a later survey wave changes (entity_overlap)
    extra: dict[str, Any] = field(default_factory=dict)  # further [data] keys of every copy

    @property
    def candidate(self) -> str:
        return "ridge" if self.task == "regression" else "logistic_regression"


DATASETS: dict[str, Data] = {
    "adult": Data("adult/data/adult.csv", "income", "binary", ("fnlwgt", "split"), ("sex",), wave_column="age"),
    "diamonds": Data("diamonds/data/diamonds.csv", "price", "regression", wave_column="depth_pct"),
    "hpc_jobs": Data("hpc_jobs/data/hpc_jobs.csv", "runtime_class", "multiclass", wave_column="num_pending"),
    "flights": Data("nyc_flights_2013/data/flights.csv", "is_delayed", "binary",
                    ("arr_delay_min", "dep_delay_min", "flight_number", "tailnum", "month"),
                    time_column="scheduled_departure", strategy="time",
                    extra={"decision_time": "scheduled_departure - 1 days",
                           "available_at": {"dep_delay_min": "scheduled_departure",
                                            "arr_delay_min": "scheduled_departure"}}),
}
QUICK_DATASETS = ("adult", "flights")


def load(name: str, rows: int = ROWS) -> Any:
    import pandas as pd

    d = DATASETS[name]
    frame = pd.read_csv(EXAMPLES / d.csv, skipinitialspace=True)
    if name == "adult":
        frame["income"] = frame["income"].str.rstrip(".")
    if len(frame) > rows:
        frame = frame.sample(rows, random_state=7)
    if d.time_column:
        frame = frame.sort_values(d.time_column, kind="stable")
    return frame.reset_index(drop=True)


def feature_columns(frame: Any, d: Data, numeric: bool | None = None) -> list[str]:
    import pandas as pd

    named = {d.target, d.time_column, *d.drop, *d.sensitive}
    out = [str(c) for c in frame.columns if c not in named]
    if numeric is None:
        return out
    return [c for c in out if pd.api.types.is_numeric_dtype(frame[c]) == numeric]


# --------------------------------------------------------------------------- planting

Planted = tuple[Any, dict[str, Any], dict[str, Any]]  # frame, [data] overrides, [split] overrides


def plant_duplicates(frame: Any, d: Data) -> Planted | None:
    import pandas as pd

    if d.time_column:  # a double load of a dated table puts each copy beside its original, on one side of a time split
        return None
    copies = frame.sample(frac=0.10, random_state=3)
    return pd.concat([frame, copies]).sample(frac=1.0, random_state=4).reset_index(drop=True), {}, {}


def plant_target_proxy(frame: Any, d: Data) -> Planted:
    import numpy as np

    out = frame.copy()
    y = out[d.target]
    out[f"{d.target}_code"] = np.log(y).round(4) if d.task == "regression" else y.astype("category").cat.codes
    return out, {}, {}


def plant_identifier(frame: Any, d: Data) -> Planted:
    import numpy as np

    # numbered in label order with some noise (as applications numbered by the desk that decided
    # them); a name like "record_id" would make the loader give it the role "id" and keep it out
    out = frame.copy()
    y = out[d.target]
    rank = (y.rank(pct=True) if d.task == "regression" else y.astype("category").cat.codes / max(y.nunique() - 1, 1))
    order = np.argsort(rank.to_numpy() + np.random.default_rng(0).random(len(out)) * 0.6, kind="stable")
    out["application_no"] = np.empty(len(out), dtype=np.int64)
    out.loc[order, "application_no"] = 100_000 + np.arange(len(out))
    return out, {}, {}


def plant_temporal_shuffled(frame: Any, d: Data) -> Planted | None:
    return (frame, {}, {"strategy": "random"}) if d.time_column else None


def plant_future_feature(frame: Any, d: Data) -> Planted | None:
    import pandas as pd

    if "arr_delay_min" not in frame.columns:
        return None
    out = frame.copy()
    logged = pd.to_datetime(out[d.time_column]) + pd.to_timedelta(out["arr_delay_min"].fillna(0) + 120, unit="min")
    out["arrival_logged_at"] = logged.dt.strftime("%Y-%m-%d %H:%M")
    return out, {"roles": {"arrival_logged_at": "datetime"}}, {}


def plant_entity_overlap(frame: Any, d: Data) -> Planted | None:
    import pandas as pd

    if d.time_column or not d.wave_column:
        return None
    people = len(frame) // 3
    chosen = frame.sample(people, random_state=5).reset_index(drop=True)
    waves = []
    for wave in range(3):
        r = chosen.copy()
        r.insert(0, "entity_id", [f"E{i:05d}" for i in range(people)])
        r[d.wave_column] = r[d.wave_column] + wave
        waves.append(r)
    return pd.concat(waves).sample(frac=1.0, random_state=6).reset_index(drop=True), {"id_column": "entity_id"}, {}


def plant_post_decision(frame: Any, d: Data) -> Planted | None:
    if "dep_delay_min" not in frame.columns or not d.extra.get("decision_time"):
        return None
    return frame, {"drop": [c for c in d.drop if c != "dep_delay_min"]}, {}


def plant_preprocessed(frame: Any, d: Data) -> Planted:
    out = frame.copy()
    for c in feature_columns(frame, d, numeric=True):
        col = out[c].astype("float64")
        if col.std(ddof=0) > 0:
            out[c] = ((col - col.mean()) / col.std(ddof=0)).round(6)
    return out, {}, {}


def plant_feature_selection(frame: Any, d: Data) -> Planted:
    import numpy as np
    import pandas as pd
    from sklearn.feature_selection import SelectKBest, f_classif, f_regression

    rng = np.random.default_rng(11)
    noise = pd.DataFrame(rng.normal(size=(len(frame), PROBES)), columns=[f"probe_{i:03d}" for i in range(PROBES)])
    out = pd.concat([frame, noise.round(4)], axis=1)
    numeric = feature_columns(out, d, numeric=True)
    X = out[numeric].fillna(out[numeric].median())
    score = f_regression if d.task == "regression" else f_classif
    keep = SelectKBest(score, k=10).fit(X, out[d.target]).get_support()
    chosen = [c for c, k in zip(numeric, keep, strict=True) if k]
    return out, {"features": chosen + feature_columns(out, d, numeric=False)}, {}


@dataclass(frozen=True)
class Defect:
    check: str
    group: str
    plant: Callable[[Any, Data], Planted | None] | None  # None: holdout reuse, planted by repeating the clean run


DEFECTS: dict[str, Defect] = {
    "duplicates": Defect("duplicates", "leakage", plant_duplicates),
    "target_proxy": Defect("target_leakage", "leakage", plant_target_proxy),
    "identifier": Defect("identifier_columns", "leakage", plant_identifier),
    "temporal_shuffled": Defect("temporal_order", "leakage", plant_temporal_shuffled),
    "future_feature": Defect("future_features", "leakage", plant_future_feature),
    "entity_overlap": Defect("entity_overlap", "leakage", plant_entity_overlap),
    "post_decision": Defect("post_decision_features", "leakage", plant_post_decision),
    "preprocessed": Defect("preprocessed_on_all_rows", "leakage", plant_preprocessed),
    "feature_selection": Defect("feature_selection_on_all_rows", "leakage", plant_feature_selection),
    "holdout_reuse": Defect("holdout_reuse", "selection", None),
}

# deepchecks' checks (their headers) whose failed condition stands for each planted defect
DEEPCHECKS_FOR: dict[str, tuple[str, ...]] = {
    "duplicates": ("Train Test Samples Mix", "Data Duplicates"),
    "target_proxy": ("Feature Label Correlation", "Feature Label Correlation Change"),
    "identifier": ("Feature Label Correlation", "Identifier Label Correlation"),
    "temporal_shuffled": ("Date Train Test Leakage Overlap", "Date Train Test Leakage Duplicates"),
    "future_feature": (),
    "entity_overlap": ("Index Train Test Leakage",),
    "post_decision": ("Feature Label Correlation", "Feature Label Correlation Change"),
    "preprocessed": (),
    "feature_selection": (),
    "holdout_reuse": (),
}
DEEPCHECKS_LEAKAGE = sorted({c for checks in DEEPCHECKS_FOR.values() for c in checks})


# --------------------------------------------------------------------------- spec writing


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def spec_text(name: str, d: Data, data: dict[str, Any], split: dict[str, Any], default_training: bool = False) -> str:
    data_keys: dict[str, Any] = {"source": "data.csv", "target": d.target, "task": d.task}
    if d.sensitive:
        data_keys["sensitive"] = list(d.sensitive)
    if d.drop:
        data_keys["drop"] = list(d.drop)
    if d.time_column:
        data_keys["time_column"] = d.time_column
    data_keys.update(d.extra)
    data_keys.update(data)
    split_keys: dict[str, Any] = {"strategy": d.strategy, "test_size": 0.25, "cv_folds": 3, "seed": 42, **split}
    train_keys: dict[str, Any] = {} if default_training else {"candidates": [d.candidate], "tuning": "none", "n_jobs": 1}
    sections = {"project": {"name": name}, "data": data_keys, "split": split_keys, "train": train_keys,
                "gate": {"policy": "assay:standard"}}
    return "\n".join(f"[{s}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in keys.items())
                     for s, keys in sections.items())


# --------------------------------------------------------------------------- running


@dataclass
class Case:
    dataset: str
    defect: str  # "clean" for the copy without a defect
    directory: Path
    config: dict[str, Any]  # what the deepchecks runner needs to split and describe the table
    result: dict[str, Any] = field(default_factory=dict)


def assay(home: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if k != "ASSAY_DB_URL"}
    proc = subprocess.run([sys.executable, "-m", "assay", "--home", str(home), *args], capture_output=True,
                          text=True, env=env, stdin=subprocess.DEVNULL, timeout=1800)
    try:
        out = json.loads(proc.stdout)
    except json.JSONDecodeError:
        out = {}
    return proc.returncode, out, proc.stderr


def evidence(home: Path, run_id: str) -> dict[str, Any]:
    from assay.storage.settings import Settings
    from assay.storage.store import RunStore

    return RunStore(Settings.resolve(home)).get_run(run_id).evidence or {}


def rule_outcomes(verdict: dict[str, Any]) -> dict[str, str]:
    return {r["id"]: r["outcome"] for r in (verdict or {}).get("rules", [])}


def run_case(case: Case, home: Path, repeats: int = 1) -> None:
    """Run the case's spec ``repeats`` times in ``home`` (holdout reuse), judge the last run, gate it strictly."""
    spec = case.directory / "assay.toml"
    started = time.perf_counter()
    for _ in range(repeats):
        code, out, err = assay(home, "run", str(spec), "--json", "-q")
    wall = time.perf_counter() - started
    if code not in (0, 1) or "run_id" not in out:
        reason = out.get("error") or err.strip()[-600:] or "(no message)"
        case.result = {"error": f"assay run exited {code}: {str(reason)[:600]}"}
        return
    ev = evidence(home, out["run_id"])
    s_code, strict, s_err = assay(home, "gate", out["run_id"], "--policy", "assay:strict", "--format", "json")
    stages = ev.get("cost", {}).get("stages", {})
    total = sum(s["wall_s"] for s in stages.values())
    checks = {f"{group}.{name}": c.get("status") for group, found in ev.get("checks", {}).items()
              if group in ("leakage", "selection") for name, c in found.items()}
    case.result = {"run_id": out["run_id"], "exit": code, "status": out.get("status"), "checks": checks,
                   "standard": rule_outcomes(out.get("verdict", {})),
                   "strict": rule_outcomes(strict.get("verdict", {})) if s_code in (0, 1) else {},
                   "strict_error": "" if s_code in (0, 1) else s_err.strip()[-300:],
                   "checks_s": sum(stages.get(s, {}).get("wall_s", 0.0) for s in ("data", "split")),
                   "evaluate_s": stages.get("evaluate", {}).get("wall_s", 0.0),
                   "stages_s": total, "wall_s": wall / repeats}


def strongest(rules: dict[str, str], check: str) -> str:
    """The gate's strongest outcome on a rule about ``check``: block, warn or pass."""
    mine = [o for rid, o in rules.items() if rid.endswith(f"[{check}]") or (check == "holdout_reuse"
                                                                            and rid == "holdout-reuse")]
    return "block" if "block" in mine else "warn" if "warn" in mine else "pass" if mine else "-"


def leakage_blocks(rules: dict[str, str]) -> list[str]:
    return sorted(rid for rid, o in rules.items() if o == "block" and rid.startswith(LEAKAGE_RULES))


# --------------------------------------------------------------------------- deepchecks

RUNNER = textwrap.dedent('''\
    """Run deepchecks' default suites on one case and print the checks whose conditions did not pass."""
    import json, sys, time, warnings
    import pandas as pd
    from sklearn.model_selection import train_test_split
    from deepchecks.tabular import Dataset
    from deepchecks.tabular.suites import data_integrity, train_test_validation

    warnings.filterwarnings("ignore")
    case = json.loads(open(sys.argv[1]).read())
    frame = pd.read_csv(case["csv"])
    frame = frame.drop(columns=[c for c in case["drop"] if c in frame.columns])
    if case["features"]:
        keep = case["features"] + [c for c in (case["label"], case["index"], case["datetime"]) if c]
        frame = frame[[c for c in frame.columns if c in keep]]
    if case["datetime"]:
        frame[case["datetime"]] = pd.to_datetime(frame[case["datetime"]])
    if case["strategy"] == "time":
        frame = frame.sort_values(case["datetime"], kind="stable")
        cut = int(len(frame) * (1 - case["test_size"]))
        train, test = frame.iloc[:cut], frame.iloc[cut:]
    else:
        stratify = frame[case["label"]] if case["strategy"] == "stratified" and case["task"] != "regression" else None
        train, test = train_test_split(frame, test_size=case["test_size"], random_state=case["seed"], stratify=stratify)
    cat = [c for c in frame.columns if c not in (case["label"], case["index"], case["datetime"])
           and not pd.api.types.is_numeric_dtype(frame[c])]
    kw = dict(label=case["label"], cat_features=cat, index_name=case["index"] or None,
              datetime_name=case["datetime"] or None,
              label_type="regression" if case["task"] == "regression" else "multiclass" if case["task"] == "multiclass" else "binary")
    train_ds, test_ds = Dataset(train, **kw), Dataset(test, **kw)
    started = time.perf_counter()
    not_passed, errors = [], []
    for suite in (data_integrity(), train_test_validation()):
        result = suite.run(train_dataset=train_ds, test_dataset=test_ds, run_comparison=False) \\
            if suite.name == "Data Integrity" else suite.run(train_dataset=train_ds, test_dataset=test_ds)
        for r in result.results:
            header = r.get_header() if hasattr(r, "get_header") else getattr(r, "header", type(r).__name__)
            if type(r).__name__ == "CheckFailure":
                errors.append(f"{header}: {str(getattr(r, 'exception', ''))[:160]}")
            elif r.conditions_results and not r.passed_conditions():
                not_passed.append(header)
    print(json.dumps({"not_passed": sorted(set(not_passed)), "errors": sorted(set(errors)),
                      "seconds": time.perf_counter() - started}))
''')


def deepchecks_python(work: Path) -> Path:
    venv = work / "deepchecks-venv"
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import deepchecks.tabular.suites, pandas; assert pandas.__version__ < '2.2'"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"creating {venv} and installing deepchecks there (an older scikit-learn and numpy) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # deepchecks 0.19 calls DataFrame.applymap (gone in pandas 3) and pkg_resources (gone in new setuptools)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "deepchecks", "scikit-learn<1.6", "numpy<2",
                    "pandas<2.2", "setuptools<81"], check=True)
    subprocess.run(check, check=True)
    return python


def run_deepchecks(python: Path, runner: Path, case: Case) -> None:
    config = case.directory / "deepchecks.json"
    config.write_text(json.dumps(case.config), encoding="utf-8")
    proc = subprocess.run([str(python), str(runner), str(config)], capture_output=True, text=True, timeout=1800,
                          stdin=subprocess.DEVNULL)
    lines = proc.stdout.strip().splitlines()
    try:
        case.result["deepchecks"] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        case.result["deepchecks"] = {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-400:]}"}


def deepchecks_verdict(case: Case) -> str:
    dc = case.result.get("deepchecks")
    if not dc:
        return "-"
    if "error" in dc:
        return "error"
    names = DEEPCHECKS_LEAKAGE if case.defect == "clean" else DEEPCHECKS_FOR[case.defect]
    if not names:
        return "n/c"  # no deepchecks check looks at this
    # headers of single-dataset checks end in " - Train Dataset" / " - Test Dataset"
    hit = [n for n in names if n in {h.split(" - ")[0] for h in dc["not_passed"]}]
    return "fail" if hit else "pass"


# --------------------------------------------------------------------------- main


def build(work: Path, datasets: list[str], defects: list[str]) -> list[Case]:
    cases = []
    for name in datasets:
        d = DATASETS[name]
        frame = load(name)
        plans: list[tuple[str, Planted | None]] = [("clean", (frame, {}, {}))]
        for defect in defects:
            plant = DEFECTS[defect].plant
            plans.append((defect, plant(frame, d) if plant else (frame, {}, {})))
        for defect, planted in plans:
            if planted is None:
                continue
            table, data, split = planted
            directory = work / "cases" / name / defect
            directory.mkdir(parents=True, exist_ok=True)
            table.to_csv(directory / "data.csv", index=False)
            (directory / "assay.toml").write_text(spec_text(f"bench-{name}-{defect}".replace("_", "-"), d, data, split),
                                                  encoding="utf-8")
            merged = {"drop": list(d.drop), **data}
            config = {"csv": str(directory / "data.csv"), "label": d.target, "task": d.task,
                      "drop": [c for c in [*merged["drop"], *d.sensitive] if c != merged.get("id_column")],
                      "features": merged.get("features", []), "index": merged.get("id_column", ""),
                      "datetime": d.time_column, "strategy": split.get("strategy", d.strategy),
                      "test_size": 0.25, "seed": 42}
            cases.append(Case(name, defect, directory, config))
    return cases


def caught(case: Case) -> tuple[str, str, str]:
    """(check status, standard outcome, strict outcome) for the case's own defect."""
    r = case.result
    d = DEFECTS[case.defect]
    return (r["checks"].get(f"{d.group}.{d.check}", "-"), strongest(r["standard"], d.check),
            strongest(r["strict"], d.check))


def report(cases: list[Case], with_deepchecks: bool) -> None:
    header = f"{'defect':<18} {'dataset':<9} {'assay check':<40} {'standard':<9} {'strict':<7}" + \
             (" deepchecks" if with_deepchecks else "")
    errors = [c for c in cases if "error" in c.result]
    for c in errors:
        print(f"ERROR {c.dataset}/{c.defect}: {c.result['error']}")
    done = [c for c in cases if "error" not in c.result]
    planted = [c for c in done if c.defect != "clean"]
    clean = [c for c in done if c.defect == "clean"]
    missed = [c for c in planted if caught(c)[0] not in ("warn", "fail")]
    false_alarms = [c for c in clean if [k for k, s in c.result["checks"].items() if s in ("warn", "fail")
                                         and not k.endswith("holdout_reuse")]]
    if missed:
        print("needs attention: planted defects the named check did not catch: "
              + ", ".join(f"{c.defect} on {c.dataset}" for c in missed))
    if false_alarms:
        print("needs attention: clean copies a leakage check warned or failed on: "
              + "; ".join(f"{c.dataset} ({', '.join(k for k, s in c.result['checks'].items() if s in ('warn', 'fail'))})"
                          for c in false_alarms))
    print()
    print(header)
    print("-" * len(header))
    for c in sorted(planted, key=lambda c: (list(DEFECTS).index(c.defect), c.dataset)):
        status, std, strict = caught(c)
        check = f"{DEFECTS[c.defect].check}: {status}"
        print(f"{c.defect:<18} {c.dataset:<9} {check:<40} {std:<9} {strict:<7}"
              + (f" {deepchecks_verdict(c)}" if with_deepchecks else ""))
    for c in sorted(clean, key=lambda c: c.dataset):
        warned = [k.split(".", 1)[1] for k, s in c.result["checks"].items() if s in ("warn", "fail")]
        check = ("warned: " + ",".join(warned)) if warned else "none warned"
        std_blocks, strict_blocks = leakage_blocks(c.result["standard"]), leakage_blocks(c.result["strict"])
        print(f"{'clean':<18} {c.dataset:<9} {check:<40} {('block' if std_blocks else 'pass'):<9} "
              f"{('block' if strict_blocks else 'pass'):<7}" + (f" {deepchecks_verdict(c)}" if with_deepchecks else ""))

    print()
    print("recall per check (planted defect caught by its check; by the gate: warn or block / block):")
    for defect in DEFECTS:
        mine = [c for c in planted if c.defect == defect]
        if not mine:
            continue
        n = len(mine)
        by_check = sum(caught(c)[0] in ("warn", "fail") for c in mine)
        std_any = sum(caught(c)[1] in ("warn", "block") for c in mine)
        std_block = sum(caught(c)[1] == "block" for c in mine)
        strict_block = sum(caught(c)[2] == "block" for c in mine)
        line = (f"  {DEFECTS[defect].check:<30} {by_check}/{n}   standard {std_any}/{n} ({std_block}/{n} block)   "
                f"strict {strict_block}/{n} block")
        if with_deepchecks:
            dc = [deepchecks_verdict(c) for c in mine]
            line += f"   deepchecks {dc.count('fail')}/{n}" + (" (no check for it)" if "n/c" in dc else "")
        print(line)
    n_p, n_c = len(planted), len(clean)
    if n_p:
        print(f"recall overall: check {sum(caught(c)[0] in ('warn', 'fail') for c in planted)}/{n_p}, "
              f"standard warn or block {sum(caught(c)[1] in ('warn', 'block') for c in planted)}/{n_p} "
              f"(block {sum(caught(c)[1] == 'block' for c in planted)}/{n_p}), "
              f"strict block {sum(caught(c)[2] == 'block' for c in planted)}/{n_p}"
              + (f", deepchecks {sum(deepchecks_verdict(c) == 'fail' for c in planted)}/{n_p}" if with_deepchecks else ""))
    if n_c:
        print(f"false alarms on {n_c} clean copies: a leakage check warned or failed on {len(false_alarms)}/{n_c}; "
              f"standard blocked on a leakage rule {sum(bool(leakage_blocks(c.result['standard'])) for c in clean)}/{n_c}, "
              f"strict {sum(bool(leakage_blocks(c.result['strict'])) for c in clean)}/{n_c}"
              + (f"; deepchecks failed a leakage-mapped check on "
                 f"{sum(deepchecks_verdict(c) == 'fail' for c in clean)}/{n_c}" if with_deepchecks else ""))
        checks = sorted({k for c in clean for k in c.result["checks"]})
        noisy = {k: sum(c.result["checks"].get(k) in ("warn", "fail") for c in clean) for k in checks}
        print("  per check (warn or fail on clean copies): "
              + ", ".join(f"{k.split('.', 1)[1]} {v}/{n_c}" for k, v in noisy.items()))
        if with_deepchecks:
            dc_noisy: dict[str, int] = {}
            for c in clean:
                for name in {h.split(" - ")[0] for h in c.result.get("deepchecks", {}).get("not_passed", [])}:
                    dc_noisy[name] = dc_noisy.get(name, 0) + 1
            print("  deepchecks checks not passed on clean copies: "
                  + (", ".join(f"{k} {v}/{n_c}" for k, v in sorted(dc_noisy.items())) or "none"))
    shares = [c.result["checks_s"] / c.result["stages_s"] for c in done if c.result.get("stages_s")]
    if shares:
        shares.sort()
        print(f"cost: data + split stages (data and leakage checks, splitting; loading is its own stage) are "
              f"{100 * shares[len(shares) // 2]:.1f} % of a fast run's stage time (median of {len(shares)}; "
              f"max {100 * shares[-1]:.1f} %)")
    if with_deepchecks:
        secs = sorted(c.result["deepchecks"]["seconds"] for c in done
                      if "seconds" in c.result.get("deepchecks", {}))
        if secs:
            print(f"deepchecks suites: median {secs[len(secs) // 2]:.1f} s per case ({len(secs)} cases)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", help=f"comma-separated, of {', '.join(DATASETS)} (default: all)")
    parser.add_argument("--defects", help=f"comma-separated, of {', '.join(DEFECTS)} (default: all)")
    parser.add_argument("--skip-deepchecks", action="store_true")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "assay-bench-detection",
                        help="cases, homes and the deepchecks environment (kept between runs)")
    parser.add_argument("--quick", action="store_true", help=f"{' and '.join(QUICK_DATASETS)} only; holdout reuse "
                        "on the first of them")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at a time")
    parser.add_argument("--reuse-runs", type=int, default=10, help="runs on one holdout for holdout_reuse")
    parser.add_argument("--default-runs", action="store_true",
                        help="also run each clean copy with the task's default training, for the checks' cost share")
    args = parser.parse_args()

    def pick(given: str | None, known: dict[str, Any], default: tuple[str, ...]) -> list[str]:
        names = [n.strip() for n in given.split(",")] if given else list(default)
        unknown = [n for n in names if n not in known]
        if unknown:
            parser.error(f"unknown {', '.join(unknown)}: choose from {', '.join(known)}")
        return names

    datasets = pick(args.datasets, DATASETS, QUICK_DATASETS if args.quick else tuple(DATASETS))
    defects = pick(args.defects, DEFECTS, tuple(DEFECTS))
    work = args.workdir
    for old in (work / "cases", work / "homes"):
        if old.exists():
            import shutil

            shutil.rmtree(old)
    print(f"datasets {', '.join(datasets)}; defects {', '.join(defects)}; workdir {work}; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    cases = build(work, datasets, defects)
    if args.quick:  # holdout reuse on the first dataset only: it is ten runs
        cases = [c for c in cases if c.defect != "holdout_reuse" or c.dataset == datasets[0]]
    print(f"{len(cases)} cases ({sum(c.defect == 'clean' for c in cases)} clean)", flush=True)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures: list[Future[None]] = []
        for i, case in enumerate(cases):
            repeats = args.reuse_runs if case.defect == "holdout_reuse" else 1
            futures.append(pool.submit(run_case, case, work / "homes" / f"{i:03d}", repeats))
        for case, f in zip(cases, futures, strict=True):
            f.result()
            print(f"  {case.dataset}/{case.defect}: {case.result.get('status', case.result.get('error', ''))[:120]}",
                  flush=True)
    print(f"assay: {time.perf_counter() - started:.0f} s for {len(cases)} cases; load average {os.getloadavg()[0]:.1f}")

    if args.default_runs:
        for name in datasets:
            clean = next(c for c in cases if c.dataset == name and c.defect == "clean")
            directory = work / "cases" / name / "default"
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "data.csv").write_bytes((clean.directory / "data.csv").read_bytes())
            (directory / "assay.toml").write_text(spec_text(f"bench-{name}-default", DATASETS[name], {}, {},
                                                            default_training=True), encoding="utf-8")
            default = Case(name, "clean", directory, {})
            run_case(default, work / "homes" / f"default-{name}")
            r = default.result
            if "error" in r:
                print(f"default run on {name}: {r['error']}")
            else:
                # evaluate holds the selection, generalization and fairness checks beside the metrics
                with_evaluate = r["checks_s"] + r["evaluate_s"]
                print(f"default training on {name}: data + split stages {r['checks_s']:.1f} s of {r['stages_s']:.1f} s "
                      f"({100 * r['checks_s'] / r['stages_s']:.1f} %); with the evaluate stage {with_evaluate:.1f} s "
                      f"({100 * with_evaluate / r['stages_s']:.1f} %)")

    with_deepchecks = not args.skip_deepchecks
    if with_deepchecks:
        python = deepchecks_python(work)
        runner = work / "deepchecks-venv" / "run_suites.py"
        runner.write_text(RUNNER, encoding="utf-8")
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(lambda c: run_deepchecks(python, runner, c), [c for c in cases if "error" not in c.result]))
        print(f"deepchecks: {time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.1f}")
    report(cases, with_deepchecks)
    (work / "results.json").write_text(json.dumps([{"dataset": c.dataset, "defect": c.defect, **c.result}
                                                   for c in cases], indent=1, default=str), encoding="utf-8")
    print(f"per-case results: {work / 'results.json'}")


if __name__ == "__main__":
    main()
