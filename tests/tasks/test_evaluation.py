"""Evaluation on real data: business cost under class weights, the positive label, ranking.

These call the evaluation plugin's functions and hook directly with models fitted here,
so they do not depend on the search.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from assay.errors import BadInput
from assay.kernel.types import FittedModel
from assay.kit import prepare_frame
from assay.plugins.evaluation import evaluate, expected_cost, prior_corrected
from assay.plugins.splitting import split_data
from assay.testing import scores
from tests.conftest import EXAMPLES
from tests.tasks.conftest import make_run, make_spec


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    frame = pd.read_csv(EXAMPLES / "adult" / "data" / "adult.csv")
    return frame.sample(6000, random_state=3).reset_index(drop=True)


def _fit(frame: pd.DataFrame, class_weight: str | None) -> tuple[object, pd.DataFrame, pd.Series]:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
    categorical = ["workclass", "marital_status", "occupation", "relationship"]
    X, y = frame[numeric + categorical].fillna("missing"), frame["income"]
    prep = make_column_transformer((StandardScaler(), numeric), (OneHotEncoder(handle_unknown="ignore"), categorical))
    return make_pipeline(prep, LogisticRegression(max_iter=2000, class_weight=class_weight)).fit(X, y), X, y


def test_balanced_probabilities_are_mapped_back_to_the_prior_before_costing(adult: pd.DataFrame) -> None:
    train, test = adult.iloc[:4000], adult.iloc[4000:]
    balanced, _, y_train = _fit(train, "balanced")
    plain, _, _ = _fit(train, None)
    X_test = test[balanced.feature_names_in_]  # type: ignore[attr-defined]
    X_test = X_test.fillna("missing")
    p_bal = balanced.predict_proba(X_test)[:, 1]  # type: ignore[attr-defined]
    p_plain = plain.predict_proba(X_test)[:, 1]  # type: ignore[attr-defined]
    corrected, applied = prior_corrected(p_bal, balanced, np.asarray(y_train), ">50K")
    assert applied and not prior_corrected(p_plain, plain, np.asarray(y_train), ">50K")[1]
    share = float(np.mean(y_train == ">50K"))
    assert p_bal.mean() - share > 0.1  # balanced weights push probabilities of the rare class up
    assert abs(corrected.mean() - share) < 0.03  # the correction brings them back
    assert np.mean(np.abs(corrected - p_plain)) < 0.03
    cost = make_spec({"source": "a.csv", "target": "income"}, evaluate={"cost": {"fp": 1.0, "fn": 5.0}}).evaluate.cost
    y_test = np.asarray(test["income"])
    raw_cost, threshold = expected_cost(y_test, p_bal, ">50K", cost)
    fixed_cost, _ = expected_cost(y_test, corrected, ">50K", cost)
    assert threshold == pytest.approx(1 / 6)
    assert fixed_cost < raw_cost  # thresholding balanced scores at the cost ratio over-flags positives


def _binary_run(frame: pd.DataFrame, positive: str) -> tuple[object, object, FittedModel]:
    spec = make_spec({"source": "a.csv", "target": "income", "drop": ["fnlwgt", "split", "native_country"],
                      "positive_label": positive}, split={"cv_folds": 2})
    dataset = prepare_frame(frame.copy(), spec, "a.csv")  # type: ignore[arg-type]
    run = make_run(spec)
    splits = split_data(run, dataset)
    est, _, _ = _fit(splits.part("train"), "balanced")
    model = FittedModel("logistic_regression", est, {}, {}, [])
    return run, splits, model


def test_positive_label_decides_which_class_is_positive(adult: pd.DataFrame) -> None:
    run_hi, splits, model = _binary_run(adult, ">50K")
    run_lo, _, _ = _binary_run(adult, "<=50K")
    test_hi = next(e.data for e in evaluate(run_hi, model, splits, scores(run_hi, model, splits)) if e.section == "metrics")["test"]  # type: ignore[union-attr]
    test_lo = next(e.data for e in evaluate(run_lo, model, splits, scores(run_lo, model, splits)) if e.section == "metrics")["test"]  # type: ignore[union-attr]
    assert test_hi["roc_auc"] == pytest.approx(test_lo["roc_auc"])  # symmetric
    assert test_hi["average_precision"] < test_lo["average_precision"]  # the rare class is harder to find
    assert test_hi["f1"] != test_lo["f1"]
    run_bad, _, _ = _binary_run(adult, "rich")
    with pytest.raises(BadInput, match="positive_label"):
        evaluate(run_bad, model, splits, scores(run_bad, model, splits))


def test_ranking_evaluation_reports_per_query_metrics_and_both_baselines() -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    from assay.kit import PointwiseRanker

    spec = make_spec({"source": "t.csv", "target": "chosen", "task": "ranking", "group_column": "query_id",
                      "drop": ["terminal_wait_min"]}, split={"cv_folds": 3})
    frame = pd.read_csv(EXAMPLES / "travel_mode_choice" / "data" / "travel_mode_choice.csv")
    dataset = prepare_frame(frame, spec, "t.csv")  # type: ignore[arg-type]
    run = make_run(spec)
    splits = split_data(run, dataset)
    X = splits.X("train")
    prep = make_column_transformer((OrdinalEncoder(), ["mode"]), remainder="passthrough")
    est = make_pipeline(prep, PointwiseRanker()).fit(X, splits.y("train"))
    model = FittedModel("pointwise_hgb", est, {}, {}, [])
    found = {e.section: e.data for e in evaluate(run, model, splits, scores(run, model, splits))}  # type: ignore[union-attr]
    test, base = found["metrics"]["test"], found["baseline"]
    assert set(test) == {"ndcg@10", "ndcg@3", "ndcg@1", "map", "mrr"}
    assert base["name"] == "popularity" and set(base["random"]["test"]) == set(test)
    assert test["ndcg@10"] > base["test"]["ndcg@10"] and test["ndcg@10"] > base["random"]["test"]["ndcg@10"]
    assert found["gap"]["ndcg@10"] == pytest.approx(found["metrics"]["train"]["ndcg@10"] - test["ndcg@10"])
    assert test["map"] == pytest.approx(test["mrr"])  # one relevant item per query: AP is 1/rank
