"""Fairness evidence against fairlearn itself, on real data and real fitted models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from assay.kernel.types import Evidence
from assay.plugins import fairness
from assay.testing import by_name, fit, prepare, scores
from tests.checks import datasets as ds
from tests.conftest import EXAMPLES


def _fairness(results: Any) -> dict[str, Any]:
    return next(r.data for r in results if isinstance(r, Evidence) and r.section == "fairness")


@pytest.fixture(scope="module")
def adult(adult_small: Path) -> Any:
    """The stratified Adult sample (sensitive: sex, race), a fitted model and its holdout predictions."""
    prepared = prepare(adult_small / "assay.toml", ["split.cv_folds=3"])
    model = fit(prepared)
    results = fairness.evaluate(run=prepared.run, model=model, splits=prepared.splits,
                                scores=scores(prepared.run, model, prepared.splits))
    evidence = _fairness(results)
    test = prepared.splits.part("test")
    y = prepared.splits.y("test").to_numpy()
    pred = model.estimator.predict(prepared.splits.X("test"))
    return prepared, evidence, by_name(results), test, y, pred


def test_per_group_rates_and_disparities_equal_fairlearn(adult: Any) -> None:
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
        false_negative_rate,
        false_positive_rate,
        selection_rate,
    )

    _, evidence, _, test, y, pred = adult
    y01, p01 = (y == ">50K").astype(int), (pred == ">50K").astype(int)
    sex = test["sex"].to_numpy()
    frame = MetricFrame(metrics={"selection_rate": selection_rate, "false_positive_rate": false_positive_rate,
                                 "false_negative_rate": false_negative_rate},
                        y_true=y01, y_pred=p01, sensitive_features=sex).by_group
    ours = evidence["sex"]
    for group, row in frame.iterrows():
        for name, value in row.items():
            assert ours["by_group"][group][name] == pytest.approx(value, abs=1e-12)
        assert ours["by_group"][group]["count"] == int((sex == group).sum())
    assert ours["demographic_parity_difference"] == pytest.approx(demographic_parity_difference(y01, p01, sensitive_features=sex))
    assert ours["demographic_parity_ratio"] == pytest.approx(demographic_parity_ratio(y01, p01, sensitive_features=sex))
    assert ours["selection_rate_ratio"] == ours["demographic_parity_ratio"]
    assert ours["equalized_odds_difference"] == pytest.approx(equalized_odds_difference(y01, p01, sensitive_features=sex))
    assert ours["small_groups"] == []


def test_small_groups_are_flagged_named_and_left_out(adult: Any) -> None:
    from fairlearn.metrics import MetricFrame, selection_rate

    prepared, evidence, checks, test, _, pred = adult
    race = evidence["race"]
    counts = test["race"].value_counts()
    small = sorted(g for g, n in counts.items() if n < prepared.run.spec.evaluate.min_group_size)
    assert small and sorted(race["small_groups"]) == small
    assert all(race["by_group"][g]["small"] for g in small)
    judged = test["race"].isin(race["groups_judged"]).to_numpy()
    rates = MetricFrame(metrics=selection_rate, y_true=pred[judged] == ">50K", y_pred=pred[judged] == ">50K",
                        sensitive_features=test["race"].to_numpy()[judged]).by_group
    assert race["selection_rate_ratio"] == pytest.approx(rates.min() / rates.max())
    check = checks["small_groups@race"]
    assert check.status == "warn" and all(g in check.message for g in small)


def test_intersections_have_their_own_section(adult: Any) -> None:
    _, evidence, checks, test, _, _ = adult
    both = evidence["sex&race"]
    assert both["features"] == ["sex", "race"]
    expected = (test["sex"] + "&" + test["race"]).value_counts()
    assert {g: v["count"] for g, v in both["by_group"].items()} == expected.to_dict()
    assert "selection_rate_ratio@sex&race" in checks


def test_disparity_intervals_match_a_row_bootstrap(adult: Any) -> None:
    """The multinomial draw over (group, truth, decision) cells is a row bootstrap: same distribution."""
    _, evidence, _, test, y, pred = adult
    rng = np.random.default_rng(0)
    sex = test["sex"].to_numpy()
    p01 = pred == ">50K"
    diffs = []
    for _ in range(400):
        idx = rng.integers(0, len(y), len(y))
        rates = pd.Series(p01[idx]).groupby(sex[idx]).mean()
        diffs.append(rates.max() - rates.min())
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    ours = evidence["sex"]["demographic_parity_difference_ci"]
    assert ours[0] == pytest.approx(lo, abs=0.02) and ours[1] == pytest.approx(hi, abs=0.02)
    assert ours[0] < evidence["sex"]["demographic_parity_difference"] < ours[1]


def test_four_fifths_check_reads_the_ratio(adult: Any) -> None:
    _, evidence, checks, _, _, _ = adult
    ratio = evidence["sex"]["selection_rate_ratio"]
    check = checks["selection_rate_ratio@sex"]
    assert check.value == ratio
    assert check.status == ("fail" if ratio < 0.8 else "pass" if evidence["sex"]["selection_rate_ratio_ci"][0] >= 0.8
                            else "warn")


def test_too_few_groups_is_null_with_a_reason(adult_small: Path) -> None:
    prepared = prepare(adult_small / "assay.toml", ["split.cv_folds=3", "evaluate.min_group_size=5000"])
    model = fit(prepared)
    results = fairness.evaluate(run=prepared.run, model=model, splits=prepared.splits,
                                scores=scores(prepared.run, model, prepared.splits))
    evidence = _fairness(results)
    assert evidence["sex"]["selection_rate_ratio"] is None
    assert "only 0 group(s)" in evidence["sex"]["reason"]
    assert by_name(results)["selection_rate_ratio@sex"].status == "warn"


def test_regression_mean_error_per_group(tmp_path: Path) -> None:
    earnings = pd.read_csv(EXAMPLES / "earnings_cps_psid" / "data" / "source.csv").sample(4000, random_state=0)
    spec = ('[project]\nname = "e"\n[data]\nsource = "data.csv"\ntarget = "earnings_1978"\ntask = "regression"\n'
            'sensitive = ["black", "hispanic"]\n[split]\nstrategy = "random"\ncv_folds = 3\n[train]\ntuning = "none"\n')
    prepared = prepare(ds.write(tmp_path, earnings, spec))
    model = fit(prepared, ("ridge",))
    results = fairness.evaluate(run=prepared.run, model=model, splits=prepared.splits,
                                scores=scores(prepared.run, model, prepared.splits))
    evidence = _fairness(results)
    test = prepared.splits.part("test")
    err = model.estimator.predict(prepared.splits.X("test")) - test["earnings_1978"].to_numpy()
    black = evidence["black"]
    for group in ("0", "1"):
        mask = test["black"].astype(str).to_numpy() == group
        assert black["by_group"][group]["mae"] == pytest.approx(np.abs(err[mask]).mean())
        assert black["by_group"][group]["mean_error"] == pytest.approx(err[mask].mean())
    maes = [black["by_group"][g]["mae"] for g in black["groups_judged"]]
    assert black["mae_max_gap"] == pytest.approx(max(maes) - min(maes))
    lo, hi = black["mae_max_gap_ci"]
    assert lo < black["mae_max_gap"] < hi
    assert "black&hispanic" in evidence
    assert "error_gap@black" in by_name(results)


def test_ranking_exposure_per_item_group() -> None:
    from sklearn.linear_model import Ridge

    travel = pd.read_csv(EXAMPLES / "travel_mode_choice" / "data" / "travel_mode_choice.csv")
    features = ["terminal_wait_min", "in_vehicle_cost", "in_vehicle_time_min", "generalized_cost"]
    train = travel[travel["query_id"] <= 150]
    test = travel[travel["query_id"] > 150]
    scores = Ridge().fit(train[features], train["chosen"]).predict(test[features])
    ev = fairness.ranking_fairness(test["query_id"].to_numpy(), scores, test["chosen"].to_numpy(),
                                   test["mode"].to_numpy(), 30, 200, np.random.default_rng(0))
    exposure = 1 / np.log2(1 + pd.Series(-scores).groupby(test["query_id"].to_numpy()).rank(method="first"))
    expected = exposure.groupby(test["mode"].to_numpy()).mean()
    for mode, value in expected.items():
        assert ev["by_group"][mode]["exposure"] == pytest.approx(value)
    assert ev["exposure_ratio"] == pytest.approx(expected.min() / expected.max())
    lo, hi = ev["exposure_ratio_ci"]
    assert lo <= ev["exposure_ratio"] <= hi
    checks = by_name(fairness.checks_for("mode", ev, "ranking"))
    assert checks["exposure_ratio@mode"].value == ev["exposure_ratio"]


def test_the_sensitive_list_reaches_the_gate_even_without_the_data_checks(adult: Any) -> None:
    prepared, *_ = adult
    model = fit(prepared)
    results = fairness.evaluate(run=prepared.run, model=model, splits=prepared.splits,
                                scores=scores(prepared.run, model, prepared.splits))
    assert Evidence("data", {"sensitive": ["sex", "race"]}) in results


def test_numeric_sensitive_columns_are_binned(adult_small: Path) -> None:
    frame = pd.read_csv(adult_small / "adult.csv")
    labels = fairness.group_labels(frame, ["age"])
    assert 2 <= len(set(labels)) <= 5
