"""Metric definitions by task: names, how to score them, and which way is better.

One table serves the search (scikit-learn scorer names), evaluation (train / holdout
metrics) and the baseline, so every stage means the same thing by a metric's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class MetricDef:
    name: str
    scorer: str  # scikit-learn scorer name used by the search
    needs: str  # "proba" | "pred"
    greater_is_better: bool
    fn: Callable[..., float]


def _m() -> dict[str, MetricDef]:
    from sklearn import metrics as skm

    def roc_auc(y, proba, classes):  # binary: probability of classes[1]
        return skm.roc_auc_score(y, proba[:, 1] if proba.ndim == 2 else proba)

    def roc_auc_ovr(y, proba, classes):
        return skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes)

    def avg_precision(y, proba, classes):
        return skm.average_precision_score(y == classes[1], proba[:, 1])

    def log_loss(y, proba, classes):
        return skm.log_loss(y, proba, labels=classes)

    def brier(y, proba, classes):
        return skm.brier_score_loss(y == classes[1], proba[:, 1])

    def f1_binary(y, pred, classes):
        return skm.f1_score(y, pred, pos_label=classes[1])

    return {m.name: m for m in (
        MetricDef("roc_auc", "roc_auc", "proba", True, roc_auc),
        MetricDef("roc_auc_ovr", "roc_auc_ovr", "proba", True, roc_auc_ovr),
        MetricDef("average_precision", "average_precision", "proba", True, avg_precision),
        MetricDef("log_loss", "neg_log_loss", "proba", False, log_loss),
        MetricDef("brier", "neg_brier_score", "proba", False, brier),
        MetricDef("accuracy", "accuracy", "pred", True, lambda y, p, c: skm.accuracy_score(y, p)),
        MetricDef("balanced_accuracy", "balanced_accuracy", "pred", True,
                  lambda y, p, c: skm.balanced_accuracy_score(y, p)),
        MetricDef("f1", "f1", "pred", True, f1_binary),
        MetricDef("f1_macro", "f1_macro", "pred", True, lambda y, p, c: skm.f1_score(y, p, average="macro")),
        MetricDef("f1_weighted", "f1_weighted", "pred", True, lambda y, p, c: skm.f1_score(y, p, average="weighted")),
        MetricDef("r2", "r2", "pred", True, lambda y, p, c: skm.r2_score(y, p)),
        MetricDef("rmse", "neg_root_mean_squared_error", "pred", False,
                  lambda y, p, c: skm.root_mean_squared_error(y, p)),
        MetricDef("mae", "neg_mean_absolute_error", "pred", False, lambda y, p, c: skm.mean_absolute_error(y, p)),
    )}


_CACHE: dict[str, MetricDef] = {}


def metric(name: str) -> MetricDef:
    if not _CACHE:
        _CACHE.update(_m())
    return _CACHE[name]


def known_metrics() -> list[str]:
    metric("r2")
    return sorted(_CACHE)


TASK_METRICS = {
    "binary": ("roc_auc", "average_precision", "accuracy", "balanced_accuracy", "f1", "log_loss", "brier"),
    "multiclass": ("f1_macro", "accuracy", "balanced_accuracy", "roc_auc_ovr", "log_loss"),
    "regression": ("r2", "rmse", "mae"),
}


def metrics_for(task: str, n_classes: int) -> tuple[str, ...]:
    if task == "text":
        return TASK_METRICS["binary" if n_classes == 2 else "multiclass"] + (("f1_macro",) if n_classes == 2 else ())
    return TASK_METRICS.get(task, ())


def _clean(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def score_model(estimator: Any, X: Any, y: Any, names: tuple[str, ...]) -> dict[str, float | None]:
    """Score a fitted estimator on ``(X, y)`` for each metric name; ``None`` if undefined."""
    y = np.asarray(y)
    classes = np.asarray(getattr(estimator, "classes_", []))
    pred = estimator.predict(X)
    proba = estimator.predict_proba(X) if hasattr(estimator, "predict_proba") and len(classes) else None
    return score_predictions(y, pred, proba, classes, names)


def score_predictions(y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: np.ndarray,
                      names: tuple[str, ...]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in names:
        m = metric(name)
        if m.needs == "proba" and proba is None:
            continue
        try:
            out[name] = _clean(m.fn(y, proba if m.needs == "proba" else pred, classes))
        except ValueError:  # e.g. one class present in a small holdout
            out[name] = None
    return out
