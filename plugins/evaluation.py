"""Evaluation (``evaluate``): train and holdout metrics, the baseline, the gap, business cost.

The baseline is scored on the very same holdout: ``dummy`` (the task's trivial model,
fit on the training part) or a registered version ``NAME@VERSION`` / ``NAME@production``.
The gap is train − holdout for each metric (for losses a negative gap means overfitting).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from assay.hookspecs import hookimpl
from assay.types import Check, Evidence, FittedModel, Run, Splits


def _dummy(task: str) -> Any:
    from sklearn.dummy import DummyClassifier, DummyRegressor

    return DummyRegressor(strategy="mean") if task == "regression" else DummyClassifier(strategy="prior")


def baseline_estimator(run: Run, splits: Splits) -> tuple[str, Any]:
    """The fitted baseline named by ``evaluate.baseline``."""
    ref = run.spec.evaluate.baseline
    if ref == "dummy":
        est = _dummy(splits.dataset.task)
        est.fit(splits.X("train"), splits.y("train"))
        return "dummy", est
    from assay.modelio import load_model
    from assay.store import ArtifactStore, RunStore

    version = RunStore(run.settings).resolve_model(ref)
    return version.ref, load_model(ArtifactStore(run.settings.home), version.artifact)


def expected_cost(y: np.ndarray, proba: np.ndarray, positive: Any, cost: Any) -> tuple[float, float]:
    """Expected cost per decision at the Bayes-optimal threshold for the given costs."""
    denom = (cost.fp - cost.tn) + (cost.fn - cost.tp)
    threshold = (cost.fp - cost.tn) / denom if denom > 0 else 0.5
    decide = proba >= threshold
    actual = y == positive
    total = (cost.fp * (decide & ~actual).sum() + cost.fn * (~decide & actual).sum()
             + cost.tp * (decide & actual).sum() + cost.tn * (~decide & ~actual).sum())
    return float(total / max(len(y), 1)), float(threshold)


@hookimpl
def evaluate(run: Run, model: FittedModel, splits: Splits) -> list[Check | Evidence]:
    from assay.plugins.metrics import metrics_for, score_model

    task = splits.dataset.task
    y_train, y_test = splits.y("train"), splits.y("test")
    names = metrics_for(task, int(splits.dataset.frame[splits.dataset.target].nunique()))
    est = model.estimator
    train = score_model(est, splits.X("train"), y_train, names)
    test = score_model(est, splits.X("test"), y_test, names)
    base_name, base = baseline_estimator(run, splits)
    base_test = score_model(base, splits.X("test"), y_test, names)
    gap = {k: (train[k] - test[k]) if train.get(k) is not None and test.get(k) is not None else None for k in test}
    out: list[Check | Evidence] = [
        Evidence("metrics", {"train": train, "test": test}),
        Evidence("baseline", {"name": base_name, "test": base_test}),
        Evidence("gap", gap),
    ]
    cost = run.spec.evaluate.cost
    if cost is not None and task == "binary":
        classes = est.classes_
        positive = classes[1]
        model_cost, threshold = expected_cost(np.asarray(y_test), est.predict_proba(splits.X("test"))[:, 1], positive, cost)
        base_cost, _ = expected_cost(np.asarray(y_test), base.predict_proba(splits.X("test"))[:, 1], positive, cost)
        out += [Evidence("metrics", {"test": {"expected_cost": model_cost, "cost_threshold": threshold}}),
                Evidence("baseline", {"test": {"expected_cost": base_cost}})]
    return out
