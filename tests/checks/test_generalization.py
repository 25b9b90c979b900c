"""Bootstrap intervals and generalization checks on real data and real fitted models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assay import kit
from assay.kernel.types import Check, Evidence, FittedModel
from assay.kit import metric
from assay.plugins import generalization as gen
from assay.testing import by_name, fit, prepare, scores


def _explicit(name: str, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: np.ndarray,
              W: np.ndarray) -> np.ndarray:
    """The metric on each resample, by materializing the resampled rows (the slow, obvious way)."""
    m = metric(name)
    out = []
    for counts in W:
        idx = np.repeat(np.arange(len(y)), counts.astype(int))
        scores = proba[idx] if m.needs == "proba" and proba is not None else pred[idx]
        out.append(m.fn(y[idx], scores, classes))
    return np.asarray(out)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=20, max_value=400), st.integers(min_value=0, max_value=2**31), st.sampled_from([2, 5, 50]))
def test_weighted_auc_equals_sklearn_on_resamples(n: int, seed: int, levels: int) -> None:
    rng = np.random.default_rng(seed)
    classes = np.array(["<=50K", ">50K"])
    y = classes[rng.integers(0, 2, n)]
    y[:2] = classes  # both classes present
    score = rng.integers(0, levels, n) / levels  # ties on purpose
    proba = np.c_[1 - score, score]
    W = next(kit.resample_counts(n, 8, rng))
    W[:, :2] = np.maximum(W[:, :2], 1)  # each resample keeps both classes
    fast = kit.bootstrap_metric("roc_auc", y, classes[(score > 0.5).astype(int)], proba, classes, W)
    np.testing.assert_allclose(fast, _explicit("roc_auc", y, y, proba, classes, W), atol=1e-12)


@pytest.mark.parametrize("name", ["accuracy", "balanced_accuracy", "f1", "f1_macro", "f1_weighted", "log_loss",
                                  "brier", "average_precision", "roc_auc_ovr"])
def test_every_classification_metric_matches_its_definition(name: str) -> None:
    rng = np.random.default_rng(1)
    n = 600
    k = 3 if name == "roc_auc_ovr" else 2
    classes = np.array(["a", "b", "c"][:k])
    y = classes[rng.integers(0, k, n)]
    proba = rng.dirichlet(np.ones(k), n)
    pred = classes[proba.argmax(axis=1)]
    W = next(kit.resample_counts(n, 6, rng))
    np.testing.assert_allclose(kit.bootstrap_metric(name, y, pred, proba, classes, W),
                               _explicit(name, y, pred, proba, classes, W), atol=1e-10)


@pytest.mark.parametrize("name", ["r2", "rmse", "mae"])
def test_regression_metrics_match_their_definition(name: str) -> None:
    rng = np.random.default_rng(2)
    y = rng.gamma(2.0, 1000.0, 500)
    pred = y * rng.normal(1.0, 0.2, 500)
    W = next(kit.resample_counts(500, 6, rng))
    np.testing.assert_allclose(kit.bootstrap_metric(name, y, pred, None, np.array([]), W),
                               _explicit(name, y, pred, None, np.array([]), W), rtol=1e-10)


def test_resample_counts_are_bootstrap_draws_in_bounded_chunks() -> None:
    rng = np.random.default_rng(3)
    chunks = list(kit.resample_counts(300_000, 20, rng))
    assert sum(len(c) for c in chunks) == 20 and len(chunks) > 1  # chunked: ≤ MAX_CELLS cells at a time
    assert all((c.sum(axis=1) == 300_000).all() for c in chunks)


# --------------------------------------------------------------------------- on a real run


@pytest.fixture(scope="module")
def adult(adult_small: Path) -> Any:
    prepared = prepare(adult_small / "assay.toml", ["split.cv_folds=3"])
    return prepared, fit(prepared, ("logistic_regression",))


def _evidence(results: list[Check | Evidence]) -> dict[str, Any]:
    from assay.kernel.runner import deep_merge

    out: dict[str, Any] = {}
    for item in results:
        if isinstance(item, Evidence):
            deep_merge(out.setdefault(item.section, {}), item.data)
    return out


def test_intervals_bracket_the_point_estimates(adult: Any) -> None:
    from assay.plugins.evaluation import evaluate

    prepared, model = adult
    points = _evidence(list(evaluate(run=prepared.run, model=model, splits=prepared.splits,
        scores=scores(prepared.run, model, prepared.splits))))
    results = gen.evaluate(run=prepared.run, model=model, splits=prepared.splits,
        scores=scores(prepared.run, model, prepared.splits))
    ev = _evidence(results)
    lo, hi = ev["metrics"]["test"]["roc_auc_ci"]
    assert lo < points["metrics"]["test"]["roc_auc"] < hi and hi - lo < 0.1
    glo, ghi = ev["gap"]["roc_auc_ci"]
    assert glo < points["gap"]["roc_auc"] < ghi
    assert ev["baseline"]["test"]["roc_auc_ci"] == [0.5, 0.5]  # the dummy ranks every row alike
    ilo, _ = ev["baseline"]["improvement"]["roc_auc_ci"]
    assert ilo > 0.3
    checks = by_name(results)
    assert {c.status for c in checks.values()} == {"pass"}
    assert checks["beats_baseline"].value == pytest.approx(ilo)


def test_bootstrap_is_seeded(adult: Any) -> None:
    prepared, model = adult
    a = _evidence(gen.evaluate(run=prepared.run, model=model, splits=prepared.splits,
        scores=scores(prepared.run, model, prepared.splits)))
    b = _evidence(gen.evaluate(run=prepared.run, model=model, splits=prepared.splits,
        scores=scores(prepared.run, model, prepared.splits)))
    assert a == b


def test_no_resamples_means_no_interval(adult_small: Path) -> None:
    prepared = prepare(adult_small / "assay.toml", ["evaluate.bootstrap=0", "split.cv_folds=3"])
    model = fit(prepared)
    results = gen.evaluate(run=prepared.run, model=model, splits=prepared.splits,
        scores=scores(prepared.run, model, prepared.splits))
    ev = _evidence(results)
    assert ev["metrics"]["test"]["roc_auc_ci"] is None and ev["gap"]["roc_auc_ci"] is None
    check = by_name(results)["beats_baseline"]
    assert check.status == "skip" and check.detail["reason"] == "evaluate.bootstrap = 0"


def test_a_memorizing_model_fails_the_gap(adult_small: Path) -> None:
    from sklearn.pipeline import Pipeline
    from sklearn.tree import DecisionTreeClassifier

    from assay.kit import build_preprocessor

    prepared = prepare(adult_small / "assay.toml")
    prep, _ = build_preprocessor(prepared.dataset, "ordinal", prepared.splits.X("train"))
    tree = Pipeline([("prep", prep), ("model", DecisionTreeClassifier(random_state=0))])
    tree.fit(prepared.splits.X("train"), prepared.splits.y("train"))
    model = FittedModel("tree", tree, {}, {"roc_auc": {"mean": 0.74, "std": 0.01, "train_mean": 1.0}}, [])
    checks = by_name(gen.evaluate(run=prepared.run, model=model, splits=prepared.splits,
        scores=scores(prepared.run, model, prepared.splits)))
    assert checks["gap"].status == "fail" and checks["gap"].value > 0.15
    assert checks["gap"].detail["train"] == pytest.approx(1.0, abs=1e-3)


def test_cluster_bootstrap_keeps_queries_whole() -> None:
    queries = np.repeat(np.arange(50), 4)
    rng = np.random.default_rng(4)
    for rows, new in gen.query_resamples(queries, 5, rng):
        assert len(rows) == 200 and len(np.unique(new)) == 50
        for q in range(50):
            assert len(set(queries[rows[new == q]])) == 1


def test_a_large_training_part_is_scored_on_a_sample(adult: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from assay.kernel import runner
    from assay.plugins.evaluation import evaluate

    prepared, model = adult
    run, splits = prepared.run, prepared.splits
    every_row = scores(run, model, splits)
    monkeypatch.setattr(runner, "TRAIN_SCORED", 1000)
    results = gen.evaluate(run=run, model=model, splits=splits, scores=scores(run, model, splits))
    gap = by_name(results)["gap"]
    assert gap.detail["train_rows_scored"] == 1000 < gap.detail["train_rows"]
    full_gap = _evidence(list(evaluate(run=run, model=model, splits=splits, scores=every_row)))["gap"]["roc_auc"]
    lo, hi = _evidence(results)["gap"]["roc_auc_ci"]
    assert lo < full_gap < hi


def test_holdout_replicates_are_computed_once_and_shared(adult: Any) -> None:
    """The generalization and selection plugins bootstrap the same holdout: the second asks and
    gets the first one's replicates (read-only), equal to a fresh computation on the same resamples."""
    prepared, model = adult
    scored = scores(prepared.run, model, prepared.splits)
    first, base = kit.prediction_replicates([scored.test, scored.baseline_test], "roc_auc", 50, 7)
    [again] = kit.prediction_replicates([scored.test], "roc_auc", 50, 7)
    assert again is first and not first.flags.writeable
    pred, proba, classes = scored.test.scored()
    np.testing.assert_array_equal(first, kit.bootstrap_replicates("roc_auc", scored.test.y, pred, proba, classes, 50, 7))
    # paired: the baseline on the very same resamples (the dummy ranks every row alike)
    np.testing.assert_allclose(base, 0.5)
    bpred, bproba, bclasses = scored.baseline_test.scored()
    np.testing.assert_array_equal(base, kit.bootstrap_replicates("roc_auc", scored.baseline_test.y, bpred, bproba,
                                                                 bclasses, 50, 7))
    assert kit.prediction_replicates([scored.test], "roc_auc", 50, 8)[0] is not first  # another seed
    # the positive class is part of what is asked (ROC AUC itself does not change when it is flipped)
    [flipped] = kit.prediction_replicates([scored.test], "roc_auc", 50, 7, positive=str(classes[0]))
    assert flipped is not first
    np.testing.assert_allclose(flipped, first, atol=1e-12)
    with pytest.raises(ValueError, match="same rows"):
        kit.prediction_replicates([scored.test, scored.train], "roc_auc", 50, 7)
