"""Properties of the pieces the evidence pack is made of: number formatting, chart data, SVG.

The chart data is checked against scikit-learn on real predictions (a logistic regression on
an Adult sample), and its invariants under hypothesis: whatever the labels and scores, a
recorded curve has at most 200 points, runs from (0, 0) to (1, 1), never goes back, and its
area stays within the thinning error of the exact AUC.
"""

from __future__ import annotations

import math
import re
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assay.commands.charts import Axis, Bar, Series, bar_chart, fmt, heatmap, histogram, line_chart
from assay.plugins.curves import MAX_POINTS, chart_data, per_query_ndcg

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@given(finite)
def test_fmt_keeps_four_significant_digits_and_no_trailing_zeros(value: float) -> None:
    text = fmt(value)
    if abs(value) < 1e-12:
        assert text == "0"
        return
    if "e" in text:
        mantissa = text.split("e")[0].lstrip("-")
        assert len(mantissa.replace(".", "").lstrip("0")) <= 4
    else:
        number = text.replace(",", "")
        assert not ("." in number and number.endswith("0")), text
        digits = number.lstrip("-").replace(".", "").lstrip("0")
        if abs(value) < 10_000:
            assert len(digits) <= 4 or set(digits[4:]) == {"0"}, text
    back = float(text.replace(",", ""))
    assert math.isclose(back, value, rel_tol=6e-4, abs_tol=1e-12), (value, text)


def test_fmt_examples() -> None:
    assert [fmt(v) for v in (438.7, 0.92134, 1.0, 26048, 12345.6, 0.000012346, None, True)] == \
        ["438.7", "0.9213", "1", "26,048", "12,346", "1.235e-05", "—", "yes"]


def _auc_of(xs: list[float], ys: list[float]) -> float:
    return float(np.trapezoid(ys, xs))


@pytest.fixture(scope="module")
def adult_scores() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from tests.checks.datasets import adult_fair

    frame = adult_fair(4000)
    numeric = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
    categorical = ["workclass", "marital_status", "occupation", "relationship"]
    X, y = frame[numeric + categorical], frame["income"].to_numpy()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)
    model = make_pipeline(make_column_transformer((StandardScaler(), numeric),
                                                  (OneHotEncoder(handle_unknown="ignore"), categorical)),
                          LogisticRegression(max_iter=500)).fit(X_train, y_train)
    proba = model.predict_proba(X_test)[:, list(model.classes_).index(">50K")]
    return y_test, proba, model.predict(X_test)


def test_curves_on_real_predictions_agree_with_scikit_learn(adult_scores: tuple[np.ndarray, ...]) -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, proba, pred = adult_scores
    data = chart_data("binary", y, pred, proba, ">50K")
    roc, pr, cal = data["roc"], data["pr"], data["calibration"]
    assert 50 < len(roc["fpr"]) <= MAX_POINTS and len(pr["recall"]) <= MAX_POINTS
    exact = roc_auc_score(y == ">50K", proba)
    assert exact > 0.8 and _auc_of(roc["fpr"], roc["tpr"]) == pytest.approx(exact, abs=0.005)
    ap = average_precision_score(y == ">50K", proba)
    assert -_auc_of(pr["recall"][::-1], pr["precision"][::-1]) == pytest.approx(ap, abs=0.03)
    assert pr["prevalence"] == pytest.approx(float(np.mean(y == ">50K")), abs=1e-6)
    assert sum(cal["count"]) == len(y)
    for p, o in zip(cal["predicted"], cal["observed"], strict=True):
        assert abs(p - o) < 0.2  # a logistic regression is close to calibrated
    matrix = np.array(data["confusion"]["matrix"])
    assert matrix.sum() == len(y) and data["confusion"]["labels"] == ["<=50K", ">50K"]
    assert np.trace(matrix) == int(np.sum(pred == y))


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=2, max_value=3000), st.integers(min_value=0, max_value=2**31 - 1),
       st.sampled_from([1, 2, 5, 1000]))
def test_a_recorded_roc_curve_is_bounded_and_monotone(n: int, seed: int, levels: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1
    score = rng.integers(0, levels, n) / max(levels - 1, 1) if levels > 1 else np.zeros(n)
    data = chart_data("binary", np.where(y == 1, "yes", "no"), np.where(score > 0.5, "yes", "no"), score, "yes")
    fpr, tpr = data["roc"]["fpr"], data["roc"]["tpr"]
    assert len(fpr) <= MAX_POINTS and (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert all(b >= a for a, b in pairwise(fpr)) and all(b >= a for a, b in pairwise(tpr))
    from sklearn.metrics import roc_auc_score

    assert _auc_of(fpr, tpr) == pytest.approx(roc_auc_score(y, score), abs=0.02)


def test_one_class_holdout_records_why_there_is_no_curve() -> None:
    data = chart_data("binary", np.array(["no"] * 5), np.array(["no"] * 5), np.zeros(5), "yes")
    assert data["roc"] is None and "one class" in data["detail"]["reason"]


def test_per_query_ndcg_averages_to_the_metric() -> None:
    from assay.kit import ndcg_at

    rng = np.random.default_rng(3)
    queries = np.repeat(np.arange(40), 6)
    y = rng.integers(0, 3, len(queries)).astype(float)
    score = y + rng.normal(0, 1.5, len(y))
    per = per_query_ndcg(y, score, queries)
    assert per.mean() == pytest.approx(ndcg_at(10)(y, score, queries))
    data = chart_data("ranking", y, score, queries=queries)
    assert sum(data["ndcg"]["histogram"]["counts"]) == data["ndcg"]["queries"] == len(per)


def test_regression_residuals_are_a_sample_with_a_full_histogram() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(100, 20, 5000)
    pred = y + rng.normal(0, 5, 5000)
    r = chart_data("regression", y, pred)["residuals"]
    assert r["sampled"] == len(r["predicted"]) == MAX_POINTS and sum(r["histogram"]["counts"]) == 5000
    assert r["mean_absolute"] == pytest.approx(float(np.mean(np.abs(y - pred))), rel=1e-5)


many_classes = st.lists(st.sampled_from([f"class {i}" for i in range(20)]), min_size=1, max_size=400)


@settings(max_examples=40, deadline=None)
@given(many_classes, st.integers(min_value=0, max_value=1000))
def test_a_confusion_matrix_counts_every_row(truth: list[str], seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = np.array(truth)
    pred = rng.permutation(y)
    c = chart_data("multiclass", y, pred)["confusion"]
    assert len(c["labels"]) <= 13 and np.array(c["matrix"]).sum() == len(y)
    assert c["pooled_other"] == (len(set(truth)) > 12)


SVG_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


@given(SVG_TEXT, st.lists(finite, min_size=1, max_size=20))
def test_charts_escape_every_label_and_use_no_style_or_script(label: str, values: list[float]) -> None:
    xs = list(range(len(values)))
    charts = [line_chart("x", label, [Series(label, xs, values)], Axis(0, max(len(values), 1), label),
                         Axis(min(values) - 1, max(values) + 1, label)),
              bar_chart("b", label, [(label, [Bar(label, v)]) for v in values[:5]]),
              histogram("h", label, [0.0, 1.0, 2.0], [3, 4], label),
              heatmap("m", label, [label, "b"], [[1, 2], [3, 4]])]
    for svg in charts:
        assert "<script" not in svg.lower() and not re.search(r"\sstyle\s*=", svg)
        if "<" in label:
            assert label not in svg or "<" not in label
        assert svg.count("<figure") == 1 and svg.count("</figure>") == 1


def test_a_run_that_failed_before_its_evidence_still_gets_a_page() -> None:
    from types import SimpleNamespace

    from assay.commands.annex import annex_markdown, card_markdown
    from assay.commands.report import Pack, render, render_body

    run = SimpleNamespace(run_id="01JFAILED00000000000000000", project="churn", status="errored",
                          error="data stage: data.target 'income' is not a column of data.csv")
    page = render(run, {}, None, [], {"ok": True, "summary": "ledger intact"})
    assert "NO VERDICT" in page and "is not a column of data.csv" in page and "no evidence to chart" in page
    assert "<h2>Model card</h2>" in render_body(run, {}, None, [], {"ok": True, "summary": ""})
    pack = Pack(run.run_id, run.project, run.status, run.error, {}, None, [], {"ok": True, "summary": "intact"})
    assert "To be completed by the provider" in annex_markdown(pack)
    assert "is not a column of data.csv" in card_markdown(pack)


def test_the_environment_section_says_what_the_evidence_does_not_hold() -> None:
    from assay.commands.report import Pack, environment_html

    def section(evidence: dict) -> str:
        return environment_html(Pack("01RUN", "p", "completed", None, evidence, None, [], {}))

    bare = section({})
    assert "not recorded in this run&#x27;s evidence" in bare and "None" not in bare and "— ()" not in bare
    full = section({"environment": {"python": "3.11.7", "implementation": "CPython", "platform": "Linux-6.1",
                                    "git": {"commit": "abc123", "dirty": True}, "packages": {"scikit-learn": "1.9"}},
                    "cost": {"wall_s": 9.7, "cpu_s": 12.0, "peak_mb": 900}})
    assert "3.11.7 (CPython)" in full and "Linux-6.1" in full and "abc123 (uncommitted changes)" in full
    assert "scikit-learn 1.9" in full and "9.7 s wall" in full and "not recorded" not in full
    no_git = section({"environment": {"python": "3.11.7", "platform": "Linux"}})
    assert "3.11.7</td>" in no_git and no_git.count("not recorded") == 3  # git, packages, cost
