"""The leakage taxonomy of docs/leakage.md: one planted defect per row, on bundled real data.

Rows whose defect is planted elsewhere (duplicates, shared entities, time order, target
copies, holdout reuse, domain shift) are referenced from the table; this file plants the
rest, each beside the same data without the defect, and checks that every test the table
names exists.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from assay.plugins import leakage
from assay.testing import by_name, prepare
from tests.checks import datasets as ds
from tests.conftest import ROOT, run_assay

TABLE = ROOT / "docs" / "leakage.md"


@pytest.fixture(scope="module")
def fair() -> pd.DataFrame:
    return ds.adult_fair(2000)


# --------------------------------------------------------------------------- L1.1 no separate test set


@pytest.mark.parametrize("size", ["0", "0.0", "1", "1.0"])
def test_a_run_without_a_separate_test_set_is_refused(tmp_path: Path, fair: pd.DataFrame, size: str) -> None:
    path = ds.write(tmp_path / "a", fair.head(400), ds.adult_spec("no-holdout"))
    result = run_assay("run", str(path), "--set", f"split.test_size={size}", home=tmp_path / "home")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "split.test_size" in result.stderr and ("greater than 0" in result.stderr or "less than 1" in result.stderr)
    assert not (tmp_path / "home").exists()


# --------------------------------------------------------------------------- L1.2 preprocessing on train + test


WITH_FNLWGT = ds.adult_spec("scaled").replace('drop = ["fnlwgt", "split"]', 'drop = ["split"]')


def _split_rows(tmp_path: Path, frame: pd.DataFrame) -> np.ndarray:
    """The training rows assay's stratified split picks for this table (it does not depend on the features)."""
    return np.asarray(prepare(ds.write(tmp_path / "split", frame, WITH_FNLWGT)).splits.train)


def _preprocessed(frame: pd.DataFrame, fit_rows: np.ndarray) -> pd.DataFrame:
    """age standardized, fnlwgt 0-1 scaled, hours_per_week's gaps mean-filled: all fitted on ``fit_rows``."""
    out = frame.copy()
    fit = out.iloc[fit_rows]
    out["age"] = ((out["age"] - fit["age"].mean()) / fit["age"].std(ddof=0)).round(6)
    low, high = fit["fnlwgt"].min(), fit["fnlwgt"].max()
    out["fnlwgt"] = ((out["fnlwgt"] - low) / (high - low)).round(6)
    gaps = np.random.default_rng(3).random(len(out)) < 0.05
    hours = out["hours_per_week"].astype("float64").mask(gaps)
    out["hours_per_week"] = hours.fillna(hours.iloc[fit_rows].mean()).round(6)
    return out


def test_scaling_and_filling_fitted_on_the_whole_table_are_named(tmp_path: Path, fair: pd.DataFrame) -> None:
    frame = _preprocessed(fair, np.arange(len(fair)))
    p = prepare(ds.write(tmp_path / "all", frame, WITH_FNLWGT))
    check = by_name(leakage.preprocessing_checks(p.splits))["preprocessed_on_all_rows"]
    assert check.status == "warn"
    assert check.detail["columns"]["age"] == "standardized (mean 0, sd 1)"
    assert check.detail["columns"]["hours_per_week"].startswith("filled with the mean")
    # 0-1 scaling shows only when the holdout holds the row scaled to 0 or the one scaled to 1
    train = frame["fnlwgt"].iloc[p.splits.train]
    extreme_in_holdout = train.min() > 0 or train.max() < 1
    assert ("fnlwgt" in check.detail["columns"]) == extreme_in_holdout
    assert check.value == 2 + extreme_in_holdout
    assert "age was standardized (mean 0, sd 1) over the whole table, holdout included" in check.message
    assert "inside each CV fold" in check.detail["fix"]


def test_the_same_preprocessing_fitted_on_the_training_part_passes(tmp_path: Path, fair: pd.DataFrame) -> None:
    train = _split_rows(tmp_path, fair)
    p = prepare(ds.write(tmp_path / "train", _preprocessed(fair, train), WITH_FNLWGT))
    assert np.array_equal(np.asarray(p.splits.train), train)
    check = by_name(leakage.preprocessing_checks(p.splits))["preprocessed_on_all_rows"]
    assert check.status == "pass" and check.value == 0, check.detail["columns"]
    untouched = prepare(ds.write(tmp_path / "raw", fair, ds.adult_spec("raw")))
    assert by_name(leakage.preprocessing_checks(untouched.splits))["preprocessed_on_all_rows"].status == "pass"


# --------------------------------------------------------------------------- L1.3 feature selection on train + test

PROBES = 200


def _with_probes(fair: pd.DataFrame) -> pd.DataFrame:
    """Adult plus 200 columns of noise: candidates a univariate selection picks from by chance."""
    rng = np.random.default_rng(11)
    noise = pd.DataFrame(rng.normal(size=(len(fair), PROBES)), columns=[f"probe_{i:03d}" for i in range(PROBES)])
    return pd.concat([fair, noise.round(4)], axis=1)


def _select(frame: pd.DataFrame, rows: np.ndarray, k: int = 10) -> list[str]:
    from sklearn.feature_selection import SelectKBest

    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and c != "fnlwgt"]
    chosen = SelectKBest(k=k).fit(frame.iloc[rows][numeric], frame.iloc[rows]["income"]).get_support()
    return [c for c, keep in zip(numeric, chosen, strict=True) if keep]


def _features_spec(columns: list[str]) -> str:
    listed = ", ".join(f'"{c}"' for c in [*columns, "workclass", "occupation"])
    return ds.adult_spec("selected", extra_data=f"features = [{listed}]\n")


def test_selectkbest_fitted_on_all_rows_before_the_split_is_named(tmp_path: Path, fair: pd.DataFrame) -> None:
    frame = _with_probes(fair)
    chosen = _select(frame, np.arange(len(frame)))
    assert any(c.startswith("probe_") for c in chosen)  # noise picked for its luck on these rows
    p = prepare(ds.write(tmp_path / "all", frame, _features_spec(chosen)))
    check = by_name(leakage.selection_checks(p.run, p.splits))["feature_selection_on_all_rows"]
    on_train = _select(frame, np.asarray(p.splits.train))
    assert check.status == "warn"
    assert set(check.detail["top_k_all_rows"]) == set(chosen)
    assert set(check.detail["top_k_training_rows"]) == set(on_train) != set(chosen)
    assert check.value == len(set(chosen) - set(on_train)) > 0
    assert f"lists exactly the 10 numeric columns (of {5 + PROBES})" in check.message
    assert "select features inside the CV folds" in check.detail["fix"]


def test_a_selection_on_the_training_part_or_from_domain_knowledge_passes(tmp_path: Path, fair: pd.DataFrame) -> None:
    frame = _with_probes(fair)
    train = np.asarray(prepare(ds.write(tmp_path / "rows", frame, _features_spec(["age"]))).splits.train)
    p = prepare(ds.write(tmp_path / "train", frame, _features_spec(_select(frame, train))))
    assert by_name(leakage.selection_checks(p.run, p.splits))["feature_selection_on_all_rows"].status == "pass"
    known = ["age", "education_num", "hours_per_week"]
    p = prepare(ds.write(tmp_path / "known", frame, _features_spec(known)))
    assert by_name(leakage.selection_checks(p.run, p.splits))["feature_selection_on_all_rows"].status == "pass"
    every = prepare(ds.write(tmp_path / "every", fair, ds.adult_spec("every")))
    skipped = by_name(leakage.selection_checks(every.run, every.splits))["feature_selection_on_all_rows"]
    assert skipped.status == "skip" and "no data.features list" in skipped.detail["reason"]


# --------------------------------------------------------------------------- L2 illegitimate features


def test_a_post_outcome_proxy_is_named_by_its_score(tmp_path: Path) -> None:
    """The arrival delay defines the label (late = 15+ minutes): a feature recorded from the outcome."""
    spec = ds.flights_spec("proxy", "time").replace('"arr_delay_min", ', "")
    p = prepare(ds.write(tmp_path / "f", ds.flights(3000), spec))
    check = by_name(leakage.target_checks(p.splits))["target_leakage"]
    assert check.status == "fail" and check.detail["columns"] == ["arr_delay_min"]
    assert check.detail["scores"]["arr_delay_min"] > 0.99
    assert "arr_delay_min alone predicts the label (AUC" in check.message


# --------------------------------------------------------------------------- the table


def _named_tests() -> list[tuple[str, str]]:
    text = TABLE.read_text(encoding="utf-8")
    found = re.findall(r"`(tests/[\w/]+\.py)::(\w+)(?:\[[^\]`]*\])?`", text)
    return list(dict.fromkeys(found))


def test_every_row_of_the_table_names_tests_that_exist() -> None:
    text = TABLE.read_text(encoding="utf-8")
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("| leakage")
            and not set(ln) <= set("|- ")]
    assert len(rows) >= 9  # the eight kinds of the taxonomy, and selection leakage
    for row in rows:
        assert "tests/" in row, f"a row names no test: {row[:80]}"
    named = _named_tests()
    assert len(named) >= 9
    for file, name in named:
        path = ROOT / file
        assert path.exists(), file
        defined = {n.name for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                   if isinstance(n, ast.FunctionDef)}
        assert name in defined, f"{file}::{name} is named in docs/leakage.md but not defined"


def test_every_check_the_table_names_exists() -> None:
    import inspect

    from assay.plugins import datachecks, domain, monitoring, selection

    source = "".join(inspect.getsource(m) for m in (leakage, datachecks, domain, monitoring, selection))
    named = set(re.findall(r"`checks\.\w+\.(\w+)", TABLE.read_text(encoding="utf-8")))
    assert named, "the table names no check"
    for name in named:
        assert f'"{name}"' in source, f"check {name!r} is named in docs/leakage.md but no plugin reports it"


def test_the_gate_reports_a_selection_on_all_rows_and_the_strict_policy_blocks_it(tmp_path: Path,
                                                                                  fair: pd.DataFrame) -> None:
    frame = _with_probes(fair)
    path = ds.write(tmp_path / "run", frame, _features_spec(_select(frame, np.arange(len(frame)))))
    home = tmp_path / "home"
    result = run_assay("run", str(path), "--json", "-q", home=home)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    rules = {r["id"]: r for r in result.json["verdict"]["rules"]}
    assert rules["leakage-warnings[feature_selection_on_all_rows]"]["outcome"] == "warn"
    assert rules["no-leakage[feature_selection_on_all_rows]"]["outcome"] == "pass"  # standard: a warning only
    strict = run_assay("gate", result.json["run_id"], "--policy", "assay:strict", "--format", "json", home=home)
    assert strict.returncode == 1
    [reason] = [r for r in strict.json["verdict"]["reasons"] if r.startswith("no-leakage[feature_selection_on_all_rows]")]
    assert "the list looks chosen with the holdout's labels" in reason
