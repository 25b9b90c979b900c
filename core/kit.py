"""The public kit for plugin authors (``assay.kit``): what a plugin legitimately reuses.

A plugin imports only ``assay`` (the hook marker and the stage values), ``assay.kit`` and
``assay.errors``; bundled plugins follow the same rule, so whatever they share lives here
instead of in one plugin another imports. Importing this module is cheap (numpy, pandas,
scikit-learn and scipy load inside the functions that need them), so a plugin may import it
at module level without slowing down ``assay --help``.

- **Metrics** by task: one table (:func:`metric`) serves the search (scikit-learn scorer
  names), evaluation and the baseline, so every stage means the same thing by a name.
  Ranking metrics (``ndcg@K`` for any K, ``map``, ``mrr``) are computed per query and
  averaged; :func:`search_scorer` hands a search a :class:`QueryScorer` for them, which
  looks each row's query id up by the row's index label (the training plugin labels rows by
  their dataset position) and pickles for Dask workers.
- **Bootstrap intervals**: :func:`resample_counts` draws resamples as count matrices,
  :func:`bootstrap_metric` computes a metric on every resample at once (vectorized for the
  common metrics), :func:`bootstrap_replicates` does both for one set of predictions and
  :func:`prediction_replicates` for the run's own (``scores.test``, ``scores.baseline_test``):
  paired on the same resamples and computed once however many plugins ask; :func:`interval`
  turns replicates into a percentile interval.
- **Reading a table**: :func:`read_table` reads a CSV or Parquet file (relative to the spec)
  or a SQL query through a SQLAlchemy URL, with the run's conventions and messages: a
  missing file, a wrong field separator (:func:`sniff_separator`) or a failing query is a
  ``BadInput`` naming the field and the fix.
- **Search helpers** for tuners: :func:`capped_grid`, :func:`defaults_and_draws` and the
  scipy distributions :func:`loguniform` / :func:`randint` for a trainer's search space.
- **The core's pipeline**: :func:`make_pipeline_for` puts the preprocessing a trainer asks
  for (:func:`build_preprocessor`) in front of its estimator, as the training plugin and the
  conformance kit do; the functions it wraps in a ``FunctionTransformer`` are named here, so
  saved models that refer to them load without any plugin declaring them.
- **Artifacts and monitoring**: :func:`put_artifact` keeps bytes with the run (the digest is
  what the evidence records), :func:`frame_to_parquet` is the format of the samples monitoring
  reads back, :func:`fingerprint_frame` a table's content digest; :func:`drift_options` and
  :func:`value_drift_threshold` give drift tests the thresholds of the policy judging a batch.
- **Checks**: :func:`guarded` turns a check that raises into an ``error`` check (fail closed),
  :func:`run_checks` runs named checks that way on the stage's progress bar, :func:`with_fix`
  adds what to do to a check that warns or fails, :func:`dataset_drop` lists what the spec
  already drops; :func:`parse_datetime` reads a time column as the loader does, and
  :func:`redact_url` takes the password out of a URL before a message or evidence shows it.
- **The dataset's digests and roles**: :func:`fingerprint_frame`, :func:`rows_digest` and
  :func:`infer_roles` are what the core uses, so a loader plugin builds a ``Dataset`` that
  fingerprints and splits like a bundled one.
- **Ranking**: :func:`query_column` (the rows' query ids), :func:`query_fit_params` (them, for a
  ranker's ``fit``), :func:`query_order` (the per-query order every ranking metric uses), the
  rankers :class:`PointwiseRanker` and :class:`PairwiseLogisticRanker`, and the baselines
  :class:`PopularityRanker` and :class:`RandomRanker`.
- **Search progress**: :class:`TrainProgress` reports a search's CV fits through
  ``run.progress`` as scikit-learn runs them (:func:`planned_fits` counts them in advance).
- **Fairness math**: :func:`feature_sets` and :func:`group_labels` form the groups,
  :func:`classification_fairness`, :func:`regression_fairness` and :func:`ranking_fairness`
  compute a group's evidence with bootstrap intervals, so training and monitoring judge
  fairness by the same numbers.
- **The spec's models** for annotations and parsing: ``RunSpec``, ``TrainSpec``,
  ``TimeExpression`` and :func:`parse_time_expression`. They and the rankers load on first
  use (pydantic, scikit-learn), so ``import assay.kit`` stays light.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import math
import random
import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from assay.errors import BadInput
from assay.kernel.artifacts import category_text, frame_from_parquet, frame_to_parquet, put_artifact
from assay.kernel.dataset import fingerprint_frame, infer_roles, rows_digest
from assay.kernel.drift_rules import (
    drift_options,
    monitor_rules,
    share_threshold,
    threshold_number,
    value_drift_threshold,
)
from assay.kernel.types import Check, Predictions, to_jsonable
from assay.storage.settings import redact_url

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from assay.kernel.spec import RunSpec, TimeExpression, TrainSpec, parse_time_expression
    from assay.kernel.types import Dataset, Evidence, Run, Splits, Task, Trainer
    from assay.rankers import PairwiseLogisticRanker, PointwiseRanker, PopularityRanker, RandomRanker

__all__ = [
    "DEDUPED_ATTR",
    "DROPPED_ATTR",
    "FILE_SUFFIXES",
    "ISO_DATETIME",
    "MAX_INTERSECTION",
    "MAX_ORDINAL_CATEGORIES",
    "MISSING",
    "PIPELINE_FUNCTIONS",
    "RANKING_METRICS",
    "SELECTION_KINDS",
    "SEPARATORS",
    "TASK_METRICS",
    "MetricDef",
    "PairwiseLogisticRanker",
    "PointwiseRanker",
    "PopularityRanker",
    "QueryScorer",
    "RandomRanker",
    "RunSpec",
    "TimeExpression",
    "TrainProgress",
    "TrainSpec",
    "as_text",
    "binary_cells",
    "binary_disparities",
    "bootstrap_metric",
    "bootstrap_replicates",
    "build_preprocessor",
    "calendar_features",
    "capped_grid",
    "category_text",
    "classification_fairness",
    "dataset_drop",
    "defaults_and_draws",
    "drift_options",
    "drop_repeated_rows",
    "exposures",
    "feature_sets",
    "fingerprint_frame",
    "frame_from_parquet",
    "frame_to_parquet",
    "group_labels",
    "group_mean_replicates",
    "guarded",
    "infer_roles",
    "infer_task",
    "interval",
    "is_url",
    "known_metrics",
    "loguniform",
    "make_pipeline_for",
    "mean_average_precision",
    "mean_reciprocal_rank",
    "metric",
    "metric_frame",
    "metrics_for",
    "monitor_rules",
    "ndcg_at",
    "parse_datetime",
    "parse_iso_datetimes",
    "parse_time_expression",
    "per_group_metric",
    "planned_fits",
    "positive_first",
    "prediction_replicates",
    "prepare_frame",
    "put_artifact",
    "query_column",
    "query_fit_params",
    "query_order",
    "randint",
    "ranking_fairness",
    "ranking_metric",
    "read_table",
    "redact_url",
    "regression_fairness",
    "resample_counts",
    "resolve_url",
    "reusable_budget",
    "reusable_record",
    "reusable_seed",
    "rows_digest",
    "run_checks",
    "score_model",
    "score_predictions",
    "score_ranking",
    "search_scorer",
    "selection_history",
    "share_threshold",
    "sibling_runs",
    "sibling_summary",
    "sniff_separator",
    "spec_without_seed",
    "steps",
    "threshold_number",
    "to_jsonable",
    "value_drift_threshold",
    "weighted_auc",
    "weighted_metric",
    "with_fix",
]

# --------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class MetricDef:
    name: str
    scorer: str  # scikit-learn scorer name used by the search ("" for per-query metrics)
    needs: str  # "proba" | "pred" | "query" (scores plus query ids)
    greater_is_better: bool
    fn: Callable[..., float]


def _m() -> dict[str, MetricDef]:
    from sklearn import metrics as skm

    # Two-class metrics score "y == classes[1]" against proba[:, 1]: classes[1] is the positive
    # class (data.positive_label may have reordered the classes), whatever the label order.
    def roc_auc(y, proba, classes):
        return skm.roc_auc_score(y == classes[1], proba[:, 1] if proba.ndim == 2 else proba)

    def roc_auc_ovr(y, proba, classes):
        return skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes)

    def avg_precision(y, proba, classes):
        return skm.average_precision_score(y == classes[1], proba[:, 1])

    def log_loss(y, proba, classes):
        if len(classes) == 2:
            return skm.log_loss(y == classes[1], proba[:, 1], labels=[False, True])
        return skm.log_loss(y, proba, labels=classes)

    def brier(y, proba, classes):
        return skm.brier_score_loss(y == classes[1], proba[:, 1])

    def f1_binary(y, pred, classes):
        return skm.f1_score(y, pred, pos_label=classes[1])

    return {m.name: m for m in (
        *(ranking_metric(name) for name in RANKING_METRICS),
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
RANKING_METRICS = ("ndcg@10", "ndcg@5", "ndcg@3", "ndcg@1", "map", "mrr")


def metric(name: str) -> MetricDef:
    if not _CACHE:
        _CACHE.update(_m())
    if name not in _CACHE and name.startswith("ndcg@") and name[5:].isdigit() and int(name[5:]) > 0:
        _CACHE[name] = ranking_metric(name)
    return _CACHE[name]


# ............................................................ ranking metrics


def query_order(y: np.ndarray, scores: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ordered by query, then score (best first); ties broken by a fixed-seed shuffle.

    Returns the relevance in that order, each row's 1-based rank within its query, and
    each row's query number (0..q-1). A seeded shuffle makes tied scores cost what they
    cost on average, instead of rewarding whatever order the file happened to have. The
    ranking metrics (:func:`ndcg_at`, ...) are built on it, so a per-query view of them
    (a chart of each query's NDCG) orders rows the same way.

    .. versionadded:: 0.1
    """
    import numpy as np

    tiebreak = np.random.default_rng(0).permutation(len(y))
    query_codes = np.unique(queries, return_inverse=True)[1].ravel()
    order = np.lexsort((tiebreak, -np.asarray(scores, dtype=float), query_codes))
    q = query_codes[order]
    starts = np.flatnonzero(np.r_[True, q[1:] != q[:-1]])
    sizes = np.diff(np.r_[starts, len(q)])
    ranks = np.arange(len(q)) - np.repeat(starts, sizes) + 1
    return np.asarray(y, dtype=float)[order], ranks, q


def ndcg_at(k: int) -> Callable[[np.ndarray, np.ndarray, np.ndarray], float]:
    """Mean NDCG@k over queries with a relevant item; gain 2^rel - 1, discount 1/log2(rank + 1)."""

    def ndcg(y: np.ndarray, scores: np.ndarray, queries: np.ndarray) -> float:
        import numpy as np

        rel, ranks, q = query_order(y, scores, queries)
        n_queries = int(q.max()) + 1 if len(q) else 0
        gains = (np.power(2.0, rel) - 1.0) / np.log2(ranks + 1.0)
        dcg = np.bincount(q, weights=np.where(ranks <= k, gains, 0.0), minlength=n_queries)
        ideal_rel, ideal_ranks, iq = query_order(y, y, queries)  # relevance sorted, per query
        ideal = (np.power(2.0, ideal_rel) - 1.0) / np.log2(ideal_ranks + 1.0)
        idcg = np.bincount(iq, weights=np.where(ideal_ranks <= k, ideal, 0.0), minlength=n_queries)
        judged = idcg > 0
        return float(np.mean(dcg[judged] / idcg[judged])) if judged.any() else float("nan")

    return ndcg


def mean_average_precision(y: np.ndarray, scores: np.ndarray, queries: np.ndarray) -> float:
    """Mean over queries of average precision (relevance > 0 counts as relevant)."""
    import numpy as np

    rel, ranks, q = query_order(y, scores, queries)
    hit = (rel > 0).astype(float)
    n_queries = int(q.max()) + 1 if len(q) else 0
    starts = np.flatnonzero(np.r_[True, q[1:] != q[:-1]]) if len(q) else np.array([], dtype=int)
    cumulative = np.cumsum(hit)
    before = np.repeat(np.r_[0.0, cumulative][starts], np.diff(np.r_[starts, len(q)]))
    precision = (cumulative - before) / ranks
    relevant = np.bincount(q, weights=hit, minlength=n_queries)
    ap_sum = np.bincount(q, weights=precision * hit, minlength=n_queries)
    judged = relevant > 0
    return float(np.mean(ap_sum[judged] / relevant[judged])) if judged.any() else float("nan")


def mean_reciprocal_rank(y: np.ndarray, scores: np.ndarray, queries: np.ndarray) -> float:
    """Mean over queries of 1 / rank of the first relevant item (relevance > 0)."""
    import numpy as np

    rel, ranks, q = query_order(y, scores, queries)
    n_queries = int(q.max()) + 1 if len(q) else 0
    first = np.full(n_queries, np.inf)
    hits = rel > 0
    np.minimum.at(first, q[hits], ranks[hits].astype(float))
    judged = np.isfinite(first)
    return float(np.mean(1.0 / first[judged])) if judged.any() else float("nan")


def ranking_metric(name: str) -> MetricDef:
    if name == "map":
        return MetricDef("map", "", "query", True, mean_average_precision)
    if name == "mrr":
        return MetricDef("mrr", "", "query", True, mean_reciprocal_rank)
    return MetricDef(name, "", "query", True, ndcg_at(int(name.removeprefix("ndcg@"))))


def score_ranking(y: Any, scores: Any, queries: Any, names: tuple[str, ...]) -> dict[str, float | None]:
    """Per-query ranking metrics averaged over queries; ``None`` when no query has a relevant item."""
    import numpy as np

    y, scores, queries = np.asarray(y, dtype=float), np.asarray(scores, dtype=float), np.asarray(queries)
    return {name: _clean(metric(name).fn(y, scores, queries)) for name in names}


class QueryScorer:
    """A scikit-learn scorer for a per-query metric: ``scorer(estimator, X, y) -> float``.

    ``queries`` maps row labels (dataset positions) to query ids; the rows of ``X`` are
    looked up by ``X.index``, so it works on any subset the search hands it (CV folds,
    successive-halving subsamples).
    """

    def __init__(self, name: str, queries: Any) -> None:
        self.name = name
        self.queries = queries

    def __call__(self, estimator: Any, X: Any, y: Any, **_: Any) -> float:
        import numpy as np

        query_ids = self.queries.loc[X.index].to_numpy()
        value = metric(self.name).fn(np.asarray(y, dtype=float), estimator.predict(X), query_ids)
        return value if metric(self.name).greater_is_better else -value

    def __repr__(self) -> str:
        return f"QueryScorer({self.name!r})"


def search_scorer(name: str, splits: Any) -> Any:
    """What to hand a search as ``scoring``: a scikit-learn scorer name, or a QueryScorer."""
    import numpy as np

    m = metric(name)
    if m.needs != "query":
        return m.scorer
    import pandas as pd

    d = splits.dataset
    group = next((c for c in d.frame.columns if d.roles.get(c) == "group"), None)
    if group is None:
        from assay.errors import BadInput

        raise BadInput(f"train.metric: {name!r} is computed per query; set data.group_column to the query id")
    return QueryScorer(name, pd.Series(d.frame[group].to_numpy(), index=np.arange(d.rows)))


def known_metrics() -> list[str]:
    metric("r2")
    return sorted(_CACHE)


TASK_METRICS = {
    "binary": ("roc_auc", "average_precision", "accuracy", "balanced_accuracy", "f1", "log_loss", "brier"),
    "multiclass": ("f1_macro", "accuracy", "balanced_accuracy", "roc_auc_ovr", "log_loss"),
    "regression": ("r2", "rmse", "mae"),
    "ranking": ("ndcg@10", "ndcg@3", "ndcg@1", "map", "mrr"),
}


def metrics_for(task: str, n_classes: int) -> tuple[str, ...]:
    if task == "text":
        return TASK_METRICS["binary" if n_classes == 2 else "multiclass"] + (("f1_macro",) if n_classes == 2 else ())
    return TASK_METRICS.get(task, ())


def _clean(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def positive_first(classes: np.ndarray, proba: np.ndarray | None, positive: Any = "") -> tuple[np.ndarray, np.ndarray | None]:
    """Order two classes as (negative, positive): ``positive`` names it (``data.positive_label``),
    else scikit-learn's convention holds (the greater label, ``classes[1]``, is positive)."""
    if len(classes) != 2 or positive in ("", None) or str(classes[1]) == str(positive):
        return classes, proba
    if str(classes[0]) != str(positive):
        from assay.errors import BadInput

        raise BadInput(f"data.positive_label: {positive!r} is not one of the target's classes "
                       f"({', '.join(map(str, classes))})")
    return classes[::-1], (proba[:, ::-1] if proba is not None else None)


def score_model(estimator: Any, X: Any, y: Any, names: tuple[str, ...], positive: Any = "") -> dict[str, float | None]:
    """Score a fitted estimator on ``(X, y)`` for each metric name; ``None`` if undefined."""
    import numpy as np

    y = np.asarray(y)
    classes = np.asarray(getattr(estimator, "classes_", []))
    pred = estimator.predict(X)
    proba = estimator.predict_proba(X) if hasattr(estimator, "predict_proba") and len(classes) else None
    classes, proba = positive_first(classes, proba, positive)
    return score_predictions(y, pred, proba, classes, names)


def score_predictions(y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: np.ndarray,
                      names: tuple[str, ...]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in names:
        m = metric(name)
        if (m.needs == "proba" and proba is None) or m.needs == "query":
            continue
        try:
            out[name] = _clean(m.fn(y, proba if m.needs == "proba" else pred, classes))
        except ValueError:  # e.g. one class present in a small holdout
            out[name] = None
    return out


# --------------------------------------------------------------------------- search helpers


def capped_grid(grid: Mapping[str, Sequence[Any]], budget: int, seed: int,
                prefix: str = "model__") -> list[dict[str, list[Any]]]:
    """The full grid, or ``budget`` points of it drawn with ``seed`` when it is larger.

    Each point is a one-value-per-key grid (``{"model__C": [0.1]}``), the form
    ``GridSearchCV`` takes a list of; an empty grid gives ``[{}]`` (the defaults alone).
    """
    keys = list(grid)
    points = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]
    if len(points) > budget:
        points = random.Random(seed).sample(points, budget)
    return [{f"{prefix}{k}": [v] for k, v in p.items()} for p in points] or [{}]


def defaults_and_draws(trainer: Trainer, budget: int, seed: int, prefix: str = "model__") -> list[dict[str, list[Any]]]:
    """The family's defaults (``{}``) and ``budget - 1`` settings drawn from its search space with ``seed``.

    Trying the defaults beside the draws means a search never does worse than the plain
    estimator it replaces (see :mod:`assay.plugins.tuners`).
    """
    from sklearn.model_selection import ParameterSampler

    drawn = ParameterSampler(trainer.search_space(), n_iter=budget - 1, random_state=seed)
    return [{}, *({f"{prefix}{k}": [v] for k, v in point.items()} for point in drawn)]


def loguniform(low: float, high: float) -> Any:
    """scipy's log-uniform distribution on ``[low, high]``, for a trainer's ``distributions``."""
    from scipy.stats import loguniform as _loguniform

    return _loguniform(low, high)


def randint(low: int, high: int) -> Any:
    """scipy's uniform integer distribution on ``[low, high)``, for a trainer's ``distributions``."""
    from scipy.stats import randint as _randint

    return _randint(low, high)


# --------------------------------------------------------------------------- pipeline helpers


def as_text(frame: Any) -> Any:
    """Categorical columns as text, so mixed-type categories encode consistently."""
    return frame.astype(str)


def calendar_features(frame: Any) -> Any:
    """Year, month, day of week and hour of every datetime column, as floats."""
    import pandas as pd

    out = {}
    for col in frame.columns:
        s = pd.to_datetime(frame[col])
        out[f"{col}_year"] = s.dt.year
        out[f"{col}_month"] = s.dt.month
        out[f"{col}_dayofweek"] = s.dt.dayofweek
        out[f"{col}_hour"] = s.dt.hour
    return pd.DataFrame(out, index=frame.index).astype(float)


#: the functions above, which the core's preprocessing stores inside every saved pipeline
PIPELINE_FUNCTIONS: tuple[Callable[..., Any], ...] = (as_text, calendar_features)

#: categorical columns with fewer distinct values than this are marked categorical for the
#: estimators that take ``categorical_features`` (histogram boosting); the rest stay ordinal codes
MAX_ORDINAL_CATEGORIES = 250


def build_preprocessor(dataset: Dataset, kind: str, train: Any | None = None) -> tuple[Any, list[bool]]:
    """A ``ColumnTransformer`` for the dataset's feature roles and the mask of categorical outputs."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler

    from assay.errors import BadInput

    frame = dataset.frame if train is None else train
    numeric = dataset.columns_with("numeric")
    categorical = dataset.columns_with("categorical")
    texts = dataset.columns_with("text")
    dates = dataset.columns_with("datetime")
    parts: list[tuple[str, Any, Any]] = []
    mask: list[bool] = []
    if numeric:
        if kind == "scaled":
            parts.append(("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric))
        else:
            parts.append(("numeric", "passthrough", numeric))
        mask += [False] * len(numeric)
    if categorical:
        impute = SimpleImputer(strategy="constant", fill_value="__missing__")
        if kind == "scaled":
            parts.append(("categorical", make_pipeline(FunctionTransformer(as_text), impute,
                                                        OneHotEncoder(handle_unknown="infrequent_if_exist",
                                                                      min_frequency=5, sparse_output=False)),
                          categorical))
        else:
            parts.append(("categorical", make_pipeline(FunctionTransformer(as_text), impute,
                                                        OrdinalEncoder(handle_unknown="use_encoded_value",
                                                                       unknown_value=-1,
                                                                       encoded_missing_value=-1)), categorical))
            mask += [int(frame[c].nunique()) < MAX_ORDINAL_CATEGORIES for c in categorical]
    for col in texts:
        # hashed n-grams: no vocabulary to store, so a text model saves in milliseconds, not minutes
        parts.append((f"text_{col}", make_pipeline(HashingVectorizer(n_features=2**18, ngram_range=(1, 2),
                                                                     alternate_sign=False, norm=None),
                                                   TfidfTransformer(sublinear_tf=True)), col))
    if dates:
        calendar = FunctionTransformer(calendar_features)
        if kind == "scaled":  # year ≈ 2013 next to z-scores would make a linear model crawl; NaT → median
            calendar = make_pipeline(calendar, SimpleImputer(strategy="median"), StandardScaler())
        parts.append(("datetime", calendar, dates))
    if not parts:
        raise BadInput("data: no feature columns are left after target, ids, drop and sensitive columns")
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.3 if texts else 0.0), mask


def make_pipeline_for(trainer: Trainer, run: Run, dataset: Dataset, train: Any, class_weight: str = "none") -> Any:
    """``Pipeline(prep, model)`` for one family: the core's preprocessing in front of ``trainer.build``.

    ``train`` is the training part (preprocessing is fitted on it, inside each CV fold);
    ``class_weight`` is what the run resolved ``train.class_weight`` to.
    """
    import numpy as np
    from sklearn.pipeline import Pipeline

    prep, mask = build_preprocessor(dataset, trainer.preprocessing, train)
    model = trainer.build(dataset.task, run)
    if run.spec.train.class_weight is None and class_weight == "balanced":
        # families that read train.class_weight themselves saw "not given": give them what it resolved to
        unset = [k for k, v in model.get_params().items() if k.endswith("class_weight") and v is None]
        model.set_params(**dict.fromkeys(unset, "balanced"))
    if trainer.preprocessing == "ordinal" and "categorical_features" in model.get_params() and any(mask):
        n_before = len(dataset.columns_with("numeric")) + len(dataset.columns_with("categorical"))
        if len(mask) == n_before and not dataset.columns_with("text", "datetime"):
            model.set_params(categorical_features=np.asarray(mask))
    return Pipeline([("prep", prep), ("model", model)])


# --------------------------------------------------------------------------- reading a table


FILE_SUFFIXES = (".csv", ".parquet", ".pq", ".csv.gz")


#: CSV field separators a file is checked for when it does not read with the one the spec gives.
SEPARATORS = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "pipes"}


def infer_task(y: pd.Series) -> Task:
    import pandas as pd

    n = y.nunique(dropna=True)
    if n <= 2:
        return "binary"
    if pd.api.types.is_float_dtype(y.dtype) or (pd.api.types.is_integer_dtype(y.dtype) and n > 20):
        return "regression"
    return "multiclass"


def is_url(source: str) -> bool:
    return "://" in source


#: text that is an ISO-8601 date or date-time (what CSV and SQLite give back for datetimes)
ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?(?:Z|[+-]\d{2}:?\d{2})?$")


def parse_datetime(s: pd.Series) -> pd.Series:
    """Text to datetimes: ISO-8601 strictly when every value is ISO, else pandas' parser.

    Values with a UTC offset make the column UTC-aware (mixed offsets cannot share a
    naive clock); the fingerprint compares datetimes in UTC either way. The loader parses
    date/time columns with it, so a check reading a column the spec names as a time sees the
    same values the run does.

    .. versionadded:: 0.1
    """
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return s
    text = s.dropna().astype(str)
    aware = bool(text.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True).any())
    iso = bool(text.str.match(ISO_DATETIME.pattern).all())
    return pd.to_datetime(s, format="ISO8601" if iso else None, utc=aware)


def resolve_url(source: str, base_dir: str) -> str:
    """A SQLite URL's relative file path is relative to the spec, like every other path."""
    prefix, sep, rest = source.partition(":///")
    if sep and prefix.startswith("sqlite") and rest and not rest.startswith("/") and rest != ":memory:":
        return f"{prefix}:///{Path(base_dir) / rest}"
    return source


def _head(path: Path, size: int = 65_536) -> str:
    import gzip

    with (gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="") if path.name.endswith(".gz")
          else path.open(encoding="utf-8", errors="replace", newline="")) as f:
        return f.read(size)


def sniff_separator(path: Path) -> str:
    """The field separator of a CSV file's first lines, one of :data:`SEPARATORS` ("," when unclear).

    The one that splits every line (quotes respected) into the same number of fields, and the
    most; ``csv.Sniffer`` guesses from quote placement and is fooled by quoted separators.
    """
    import csv

    try:
        sample = _head(path)
    except OSError:
        return ","
    lines = sample.splitlines(keepends=True)
    if len(sample) == 65_536 and len(lines) > 1:
        lines = lines[:-1]  # the sample cut the last line short
    best, most = ",", 1
    for sep in SEPARATORS:
        try:
            widths = {len(row) for row in csv.reader(lines[:50], delimiter=sep) if row}
        except csv.Error:
            continue
        if len(widths) == 1 and (width := widths.pop()) > most:
            best, most = sep, width
    return best


def _separator_hint(path: Path, sep: str, field: str, columns: int) -> BadInput | None:
    """A BadInput naming the separator ``path`` seems to use when it is not ``sep``, else None."""
    import json

    found = sniff_separator(path)
    if found == sep:
        return None
    how = ("it reads as a single column" if columns == 1 else "it does not parse") + \
        f" with {SEPARATORS.get(sep, repr(sep))} as the separator, and looks separated by {SEPARATORS[found]}"
    if field.startswith("data."):
        once = "data.sep=tab" if found == "\t" else f"data.sep={found}"
        fix = f"set sep = {json.dumps(found)} under [data] in the spec (for one run: assay run --set '{once}')"
    else:
        fix = (f"save it with commas (pandas: pd.read_csv(path, sep={found!r}).to_csv(path, index=False)) "
               "or as Parquet")
    return BadInput(f"{field}: {path}: {how}; {fix}")


def read_table(source: str, base_dir: str, query: str = "", field: str = "data.source",
               sep: str = ",") -> pd.DataFrame:
    """Read a CSV/Parquet file (relative to ``base_dir``) or a SQL query; BadInput on failure.

    ``sep`` is a CSV file's field separator; a file that reads as one column or does not parse
    with it, but looks separated by another of :data:`SEPARATORS`, is a BadInput naming that one.
    """
    import pandas as pd

    if is_url(source):
        if not query:
            raise BadInput(f"{field}: a database URL needs data.query = 'SELECT ...'")
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        url = resolve_url(source, base_dir)  # the real URL connects; messages show redact_url's
        try:
            make_url(url)
        except (ArgumentError, ValueError) as exc:
            raise BadInput(f"{field}: {redact_url(source)!r} is not a SQLAlchemy URL: {redact_url(str(exc))}") from None
        shown = redact_url(url)
        try:
            engine = create_engine(url)
        except Exception as exc:  # unknown dialect / missing driver
            raise BadInput(f"{field}: cannot open {shown}: {redact_url(str(exc))}") from None
        try:
            with engine.connect() as conn:
                return pd.read_sql(text(query), conn)
        except Exception as exc:
            raise BadInput(f"{field}: data.query failed against {shown}: {redact_url(str(exc))}") from None
        finally:
            engine.dispose()
    path = Path(base_dir) / source
    if not path.exists():
        raise BadInput(f"{field}: data file {path} not found")
    try:
        if path.name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        frame = _read_csv(path, sep)
    except pd.errors.ParserError as exc:
        raise _separator_hint(path, sep, field, 0) or BadInput(f"{field}: cannot read {path}: {exc}") from None
    except Exception as exc:
        raise BadInput(f"{field}: cannot read {path}: {exc}") from exc
    if len(frame.columns) == 1:
        hint = _separator_hint(path, sep, field, 1)
        if hint is not None:
            raise hint
    return frame


def _read_csv(path: Path, sep: str) -> pd.DataFrame:
    """The CSV with one type per column, inferred from the whole column.

    pandas reads a large file in chunks and infers each chunk's types; where the chunks disagree
    (numbers at the top of a column, text further down) it warns and leaves the column a mix.
    The file is then read again in one piece, which infers from every value; files whose chunks
    agree, nearly all of them, are read once, at the chunked reader's speed (a third faster).
    """
    import warnings

    import pandas as pd

    options: dict[str, Any] = {"sep": sep, "na_values": ["?"], "skipinitialspace": True}
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.DtypeWarning)
        try:
            return pd.read_csv(path, **options)
        except pd.errors.DtypeWarning:  # the chunks disagree: read it whole
            pass
    return pd.read_csv(path, **options, low_memory=False)


# --------------------------------------------------------------------------- bootstrap resampling


MAX_CELLS = 2_000_000  # resamples × rows per chunk of the count matrix


def resample_counts(n: int, resamples: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Bootstrap counts in chunks of ``(k, n)``: how often each row is drawn in each resample.

    Chunked so memory stays near ``MAX_CELLS`` floats whatever the row count.
    """
    import numpy as np

    step = max(1, MAX_CELLS // max(n, 1))
    for start in range(0, resamples, step):
        k = min(resamples, start + step) - start
        draws = rng.integers(0, n, size=(k, n))
        draws += (np.arange(k) * n)[:, None]
        yield np.bincount(draws.ravel(), minlength=k * n).reshape(k, n).astype(np.float64)


def weighted_auc(y01: np.ndarray, score: np.ndarray, W: np.ndarray) -> np.ndarray:
    """ROC AUC for each row of the weight matrix ``W`` (ties count one half).

    For each positive row, the weight of the negatives scored below it plus half of those scored
    the same, read off one cumulative sum over the negatives in score order: the cumulative
    sum touches the negative columns only and the positives are looked up in it, so a resample
    costs about two passes over its counts (a third of the passes of summing over all rows in
    score order, and the same numbers).
    """
    import numpy as np

    pos = y01.astype(bool)
    pos_idx, neg_idx = np.flatnonzero(pos), np.flatnonzero(~pos)
    neg_order = neg_idx[np.argsort(score[neg_idx], kind="mergesort")]
    neg_sorted, pos_score = score[neg_order], score[pos_idx]
    below = np.searchsorted(neg_sorted, pos_score, "left")  # negatives strictly below
    upto = np.searchsorted(neg_sorted, pos_score, "right")  # ... or tied with it
    cum_neg = np.zeros((W.shape[0], len(neg_order) + 1), dtype=np.float64)
    np.cumsum(W[:, neg_order], axis=1, dtype=np.float64, out=cum_neg[:, 1:])
    pos_w = W[:, pos_idx]
    num = 0.5 * (pos_w * (cum_neg[:, below] + cum_neg[:, upto])).sum(axis=1, dtype=np.float64)
    den = pos_w.sum(axis=1, dtype=np.float64) * cum_neg[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    import numpy as np

    den = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 2 * tp / den, 0.0)


def weighted_metric(name: str, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: np.ndarray,
                    W: np.ndarray) -> np.ndarray | None:
    """The metric on every resample (rows of ``W``), or None if it has no weighted form here."""
    import numpy as np

    N = W.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if name == "roc_auc" and proba is not None and len(classes) == 2:
            return weighted_auc((y == classes[1]).astype(np.int8), proba[:, 1] if proba.ndim == 2 else proba, W)
        if name == "accuracy":
            return W @ (y == pred).astype(np.float64) / N
        if name in ("r2", "rmse", "mae"):
            yf, pf = y.astype(np.float64), pred.astype(np.float64)
            if name == "mae":
                return W @ np.abs(yf - pf) / N
            sse = W @ (yf - pf) ** 2
            if name == "rmse":
                return np.sqrt(sse / N)
            mean = W @ yf / N
            sst = W @ (yf**2) - N * mean**2
            return np.where(sst > 0, 1.0 - sse / sst, np.nan)
        if name == "log_loss" and proba is not None:
            order = np.argsort(classes)
            idx = order[np.searchsorted(classes[order], y)]
            eps = np.finfo(np.float64).eps
            p = np.clip(proba[np.arange(len(y)), idx].astype(np.float64), eps, 1 - eps)
            return W @ (-np.log(p)) / N
        if name == "brier" and proba is not None and len(classes) == 2:
            return W @ ((y == classes[1]).astype(np.float64) - proba[:, 1]) ** 2 / N
        if name in ("f1", "f1_macro", "f1_weighted", "balanced_accuracy"):
            targets = [classes[1]] if name == "f1" else list(classes)
            per_class, support = [], []
            for c in targets:
                yc, pc = y == c, pred == c
                tp = W @ (yc & pc).astype(np.float64)
                fp = W @ (~yc & pc).astype(np.float64)
                fn = W @ (yc & ~pc).astype(np.float64)
                per_class.append(tp / (tp + fn) if name == "balanced_accuracy" else _f1(tp, fp, fn))
                support.append(tp + fn)
            stacked, sup = np.vstack(per_class), np.vstack(support)
            if name == "f1":
                return stacked[0]
            if name == "f1_weighted":
                return (stacked * sup).sum(axis=0) / sup.sum(axis=0)
            present = sup > 0  # sklearn averages recall over classes present in y_true
            return np.where(present, stacked, 0.0).sum(axis=0) / np.maximum(present.sum(axis=0), 1) \
                if name == "balanced_accuracy" else stacked.mean(axis=0)
    return None


def bootstrap_metric(name: str, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: np.ndarray,
                     W: np.ndarray) -> np.ndarray:
    """The metric on each resample; NaN where undefined (e.g. one class drawn)."""
    import numpy as np

    fast = weighted_metric(name, y, pred, proba, classes, W)
    if fast is not None:
        return np.asarray(fast, dtype=np.float64)
    m = metric(name)
    values = np.full(W.shape[0], np.nan)
    positions = np.arange(W.shape[1])
    for b in range(W.shape[0]):
        idx = np.repeat(positions, W[b].astype(np.int64))
        try:
            values[b] = m.fn(y[idx], (proba[idx] if proba is not None else None) if m.needs == "proba" else pred[idx],
                             classes)
        except ValueError:
            continue
    return values


def bootstrap_replicates(name: str, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: np.ndarray,
                         resamples: int, seed: Any, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The metric on each of ``resamples`` bootstrap resamples of the rows, drawn with ``seed``.

    The resamples depend on the row count, ``resamples`` and ``seed`` alone, so two estimators'
    replicates on the same rows with the same seed are paired (drawn on the same resamples).
    ``progress(done, total)`` is called after each chunk.

    .. versionadded:: 0.1
    """
    return _replicates(name, [(y, pred, proba, classes)], resamples, seed, progress)[0]


def _replicates(name: str, estimators: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]],
                resamples: int, seed: Any, progress: Callable[[int, int], None] | None) -> list[np.ndarray]:
    """:func:`bootstrap_replicates` of several estimators' ``(y, pred, proba, classes)`` on the same
    rows, each resample drawn once for all of them."""
    import numpy as np

    if not estimators:
        return []
    out: list[list[np.ndarray]] = [[] for _ in estimators]
    done = 0
    for W in resample_counts(len(estimators[0][0]), resamples, np.random.default_rng(seed)):
        for values, (y, pred, proba, classes) in zip(out, estimators, strict=True):
            values.append(bootstrap_metric(name, y, pred, proba, classes, W))
        done += len(W)
        if progress is not None:
            progress(done, resamples)
    return [np.concatenate(v) if v else np.full(0, np.nan) for v in out]


_REPLICATES: weakref.WeakKeyDictionary[Predictions, dict[tuple[Any, ...], np.ndarray]] = weakref.WeakKeyDictionary()


def prediction_replicates(predictions: Sequence[Predictions], name: str, resamples: int, seed: Any,
                          positive: Any = "", progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
    """:func:`bootstrap_replicates` of estimators' predictions on the same rows (e.g. ``scores.test``
    and ``scores.baseline_test``), paired: every resample is drawn once for all of them. The
    classes are ordered by ``positive`` (``data.positive_label``) as :func:`positive_first` does.

    Computed once per predictions object and arguments: plugins that judge the same holdout
    (an interval in one, a bound in another) share one computation. The arrays are read-only.

    .. versionadded:: 0.1
    """
    import numpy as np

    key = (name, resamples, repr(seed), str(positive))
    if len({len(p.y) for p in predictions}) > 1:
        raise ValueError("prediction_replicates: the predictions are not on the same rows")
    missing = [p for p in predictions if key not in _REPLICATES.get(p, {})]
    arrays = []
    for p in missing:
        classes, proba = positive_first(np.asarray(p.classes), p.proba, positive)
        arrays.append((np.asarray(p.y), np.asarray(p.pred), proba, classes))
    for p, values in zip(missing, _replicates(name, arrays, resamples, seed, progress), strict=True):
        values.setflags(write=False)
        _REPLICATES.setdefault(p, {})[key] = values
    if not missing and progress is not None:
        progress(resamples, resamples)
    return [_REPLICATES[p][key] for p in predictions]


def interval(values: np.ndarray, level: float = 0.95, min_valid: float = 0.9) -> list[float] | None:
    """Percentile interval of bootstrap replicates; None if too many were undefined."""
    import numpy as np

    finite = values[np.isfinite(values)]
    if len(values) == 0 or len(finite) < min_valid * len(values):
        return None
    alpha = (1 - level) / 2
    lo, hi = np.quantile(finite, [alpha, 1 - alpha])
    return [float(lo), float(hi)]


# --------------------------------------------------------------------------- predictions


# --------------------------------------------------------------------------- progress


#: seconds between two reports of a loop (:func:`steps`): often enough to watch, cheap at any speed
STEP_REPORT_S = 0.2

T = TypeVar("T")


def steps(run: Run | None, stage: str, items: Sequence[T], label: str) -> Iterator[T]:
    """Yield ``items``, reporting ``done`` of ``len(items)`` through ``run.progress`` as they go.

    One report before the first item, one at most every :data:`STEP_REPORT_S` seconds and one
    after the last; no run (``None``) reports nothing, so library code can take one optionally.
    """
    import time

    total = len(items)
    if run is None or not total:
        yield from items
        return
    run.progress(stage, 0, total, label)
    last = time.perf_counter()
    for done, item in enumerate(items, start=1):
        yield item
        now = time.perf_counter()
        if done == total or now - last >= STEP_REPORT_S:
            run.progress(stage, done, total, label)
            last = now


# --------------------------------------------------------------------------- seed and budget siblings


#: what seed or budget shopping varies: runs whose specs differ only here are each other's siblings
SIBLING_FREE = (("split", "seed"), ("train", "budget"))


def spec_without_seed(spec: Any) -> Any:
    """A recorded spec (``run_started.spec``) with the keys siblings may differ in taken out."""
    if not isinstance(spec, dict):
        return spec
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in spec.items()}
    for section, key in SIBLING_FREE:
        if isinstance(out.get(section), dict):
            out[section].pop(key, None)
    return out


def sibling_runs(started: Mapping[str, Mapping[str, Any]], data: Mapping[str, Any], run_id: str) -> set[str]:
    """The runs on the same data (``data`` record fingerprints by run) whose recorded spec
    (``run_started`` payloads by run) equals ``run_id``'s but for ``split.seed`` and ``train.budget``."""
    shape = spec_without_seed((started.get(run_id) or {}).get("spec"))
    return {rid for rid, payload in started.items()
            if rid != run_id and data.get(rid) == data.get(run_id) and spec_without_seed(payload.get("spec")) == shape}


def sibling_summary(spec: Mapping[str, Any], siblings: Sequence[Mapping[str, Any]], metric: str,
                    value: float | None, greater_is_better: bool) -> dict[str, Any]:
    """Where a run's holdout ``metric`` (``value``) ranks among its siblings' (each a mapping with
    ``run_id``, ``seq``, the recorded ``spec`` and ``test`` metrics), with their mean and spread.

    ``rank`` 1 is the best of ``of`` runs; ``z`` (two or more siblings) is how many of the siblings'
    standard deviations the run lies above their mean, in the metric's good direction.
    """
    import statistics

    def seeds(s: Mapping[str, Any]) -> tuple[Any, Any]:
        return (s.get("split") or {}).get("seed"), (s.get("train") or {}).get("budget")

    runs = [{"run_id": s["run_id"], "seq": s["seq"], "seed": seeds(s["spec"])[0], "budget": seeds(s["spec"])[1],
             "value": s["test"].get(metric)} for s in siblings if isinstance(s["test"].get(metric), (int, float))]
    out: dict[str, Any] = {"count": len(runs), "runs": runs, "metric": metric,
                           "varies": [f"{a}.{b}" for a, b in SIBLING_FREE], "seed": seeds(spec)[0],
                           "budget": seeds(spec)[1]}
    if value is None or not runs:
        return out
    others = [r["value"] for r in runs]
    better = sum(1 for v in others if (v > value if greater_is_better else v < value))
    out.update(rank=better + 1, of=len(others) + 1, mean=statistics.fmean(others))
    if len(others) >= 2:
        sd = statistics.stdev(others)
        out.update(sd=sd, z=(1 if greater_is_better else -1) * (value - out["mean"]) / sd if sd > 0 else 0.0)
    return out


#: the record kinds :func:`selection_history` reads
SELECTION_KINDS = ("split", "run_started", "data", "metrics", "evidence")


def selection_history(records: Sequence[Any], run_id: str) -> dict[str, Any]:
    """What the ledger knew before ``run_id`` split its data: the runs that had evaluated on a holdout
    with the same fingerprint, and the seed/budget siblings with their holdout metrics.

    ``records`` are ledger records (``seq``, ``run_id``, ``kind``, ``payload``) of the
    :data:`SELECTION_KINDS`; only those before this run's ``split`` record count, so the result
    depends on the ledger's prefix alone (the selection plugin computes it while the run
    evaluates, and the signed reader recomputes it from the verified ledger).
    """
    own = next((r for r in reversed(records) if r.kind == "split" and r.run_id == run_id), None)
    if own is None:
        raise ValueError(f"run {run_id} has no split record in the ledger")
    before = [r for r in records if r.run_id and r.seq < own.seq]
    fingerprint = (own.payload.get("test") or {}).get("fingerprint")
    started = {r.run_id: r.payload for r in before if r.kind == "run_started"}
    data = {r.run_id: r.payload.get("fingerprint") for r in before if r.kind == "data"}
    evaluated = {r.run_id for r in before if r.kind == "evidence"}
    metrics = {r.run_id: r for r in before if r.kind == "metrics"}
    same = sorted((r for r in before if r.kind == "split" and r.run_id != run_id and r.run_id in evaluated
                   and (r.payload.get("test") or {}).get("fingerprint") == fingerprint), key=lambda r: r.seq)
    earlier = [{"run_id": r.run_id, "seq": r.seq, "project": (started.get(r.run_id) or {}).get("project"),
                "spec_hash": (started.get(r.run_id) or {}).get("spec_hash")} for r in same]
    mine: Mapping[str, Any] = started.get(run_id) or {}  # this run's own start and data records precede its split
    evidence = {r.run_id: r.payload for r in before if r.kind == "evidence"}
    reusable = [{"run_id": e["run_id"], "seq": e["seq"], **reusable_record(evidence[e["run_id"]])} for e in earlier
                if reusable_record(evidence[e["run_id"]])]
    kin = sibling_runs(started, data, run_id)
    siblings = [{"run_id": rid, "seq": metrics[rid].seq, "spec": (started.get(rid) or {}).get("spec") or {},
                 "test": (metrics[rid].payload.get("metrics") or {}).get("test") or {}}
                for rid in sorted(kin & evaluated & set(metrics), key=lambda rid: metrics[rid].seq)]
    return {"fingerprint": fingerprint, "spec_hash": mine.get("spec_hash"), "spec": mine.get("spec") or {},
            "split_seq": own.seq, "earlier": earlier, "siblings": siblings, "reusable": reusable}


def reusable_seed(fingerprint: str | None, spec_hash: str | None, k: int) -> int:
    """The noise seed of the ``k``-th evaluation of a holdout under a spec: fixed by the ledger's
    prefix (the same at run time, on replay and for an auditor), different for every evaluation.

    .. versionadded:: 0.1
    """
    import hashlib

    # 52 bits: an integer JSON carries exactly (canonical JSON writes larger ones as strings)
    return int(hashlib.sha256(f"thresholdout|{fingerprint}|{spec_hash}|{k}".encode()).hexdigest()[:13], 16)


def reusable_budget(history: Mapping[str, Any]) -> dict[str, Any]:
    """A reusable holdout's state before this run, from :func:`selection_history` alone.

    ``budget`` is fixed by the holdout's first reusable evaluation (a later spec asking for more
    is ignored: raising the number would refund what was spent); ``spent_before`` counts the
    earlier evaluations' detections; ``threshold_seed`` is the seed of the evaluation that opened
    the current period (the first one, or the first after the latest detection: Thresholdout draws
    a fresh threshold noise after each detection); ``seed`` is this run's own noise seed.

    .. versionadded:: 0.1
    """
    from assay.kernel.spec import HOLDOUT_DEFAULTS

    earlier = list(history.get("reusable") or [])
    asked = (history.get("spec") or {}).get("split", {}).get("holdout_budget", HOLDOUT_DEFAULTS["holdout_budget"])
    budget = earlier[0]["budget"] if earlier and isinstance(earlier[0].get("budget"), int) else asked
    k = len(history.get("earlier") or []) + 1
    seed = reusable_seed(history.get("fingerprint"), history.get("spec_hash"), k)
    last = max((i for i, e in enumerate(earlier) if e["detected"]), default=-1)
    opener = earlier[last + 1] if last + 1 < len(earlier) else None
    return {"budget": budget, "asked": asked, "spent_before": sum(1 for e in earlier if e["detected"]),
            "seed": seed, "threshold_seed": opener["seed"] if opener else seed,
            "reusable_earlier": [e["run_id"] for e in earlier],
            "plain_earlier": len(history.get("earlier") or []) - len(earlier)}


def reusable_record(evidence: Any) -> dict[str, Any]:
    """What an evidence payload says a reusable-holdout evaluation did (``seed``, ``budget``,
    ``detected``: whether it spent a unit of budget); empty for a plain evaluation.

    .. versionadded:: 0.1
    """
    found = ((evidence.get("selection") or {}).get("holdout") or {}).get("reusable") if isinstance(evidence, dict) else None
    if not isinstance(found, dict):
        return {}
    return {"seed": found.get("seed"), "budget": found.get("budget"), "detected": bool(found.get("detected"))}


# --------------------------------------------------------------------------- checks


def guarded(group: str, name: str, check: Callable[[], Iterable[Check | Evidence]]) -> list[Check | Evidence]:
    """Run ``check``; if it raises, return one ``error`` check naming the exception (fail closed).

    A check that raises must block the gate (the ``no-check-errors`` rule names it), not vanish.

    .. versionadded:: 0.1
    """
    try:
        return list(check())
    except Exception as exc:  # a broken check must block the gate, not vanish
        import traceback

        where = traceback.extract_tb(exc.__traceback__)[-1]
        return [Check(group, name, "error", None,
                      {"error": f"{type(exc).__name__}: {exc}", "at": f"{where.filename}:{where.lineno}"},
                      message=f"the {group}.{name} check could not run: {type(exc).__name__}: {exc}")]


def run_checks(run: Run, stage: str, group: str,
               checks: Sequence[tuple[str, Callable[[], Iterable[Check | Evidence]]]]) -> list[Check | Evidence]:
    """Each ``(name, check)`` through :func:`guarded`, counted on the stage's progress bar.

    .. versionadded:: 0.1
    """
    out: list[Check | Evidence] = []
    for name, check in steps(run, stage, checks, f"{group} checks"):
        out += guarded(group, name, check)
    return out


def with_fix(check: Check, fix: str) -> Check:
    """``check`` with what to do about it in ``detail.fix`` (the spec key or command), when it warns or fails.

    The gate puts the fix in the reason of every rule the check breaks, beside ``message``.

    .. versionadded:: 0.1
    """
    if check.status in ("pass", "skip") or not fix:
        return check
    return replace(check, detail={**check.detail, "fix": fix})


def dataset_drop(dataset: Dataset) -> list[str]:
    """The columns the spec already drops (so a suggested ``data.drop`` keeps them).

    .. versionadded:: 0.1
    """
    return [str(c) for c, role in dataset.roles.items() if role == "drop"]


# --------------------------------------------------------------------------- ranking


def query_column(dataset: Dataset) -> str | None:
    """The column with role ``group`` (``data.group_column``), the rows' query ids.

    .. versionadded:: 0.1
    """
    return next((str(c) for c in dataset.frame.columns if dataset.roles.get(str(c)) == "group"), None)


def query_fit_params(splits: Splits) -> dict[str, Any]:
    """Fit parameters a ranking pipeline needs: the training rows' query ids (else nothing).

    Routed to the ranker's ``fit(..., query_id=...)`` (the pipeline's ``model`` step) and sliced
    per fold by scikit-learn.

    .. versionadded:: 0.1
    """
    dataset = splits.dataset
    column = query_column(dataset)
    if dataset.task != "ranking" or column is None:
        return {}
    return {"model__query_id": dataset.frame[column].to_numpy()[splits.train]}


# --------------------------------------------------------------------------- search progress


#: the most reports per call of ``evaluate_candidates`` (each slice ends in a barrier)
SLICES_PER_BATCH = 8


def _candidates(search: Any) -> int | None:
    """How many settings the search tries first (None when it cannot be told in advance)."""
    from sklearn.model_selection import ParameterGrid

    if hasattr(search, "param_grid"):
        return len(ParameterGrid(search.param_grid))
    if isinstance(getattr(search, "n_iter", None), int):
        return int(search.n_iter)
    if isinstance(getattr(search, "n_candidates", None), int):
        return int(search.n_candidates)
    return None


def _halving_rounds(first: int, factor: float) -> list[int]:
    """Candidates per successive-halving iteration, until fewer than ``factor`` remain."""
    rounds = [first]
    while rounds[-1] >= factor:
        rounds.append(math.ceil(rounds[-1] / factor))
    return rounds


def _is_halving(search: Any) -> bool:
    return hasattr(search, "factor") and hasattr(search, "min_resources")


def planned_fits(search: Any, folds: int) -> int:
    """The CV fits ``search`` will run (an estimate for successive halving; 0 when unknown).

    .. versionadded:: 0.1
    """
    if not callable(getattr(type(search), "_run_search", None)):  # not a scikit-learn search, whatever it forwards
        return 0
    first = _candidates(search)
    if first is None:
        return 0
    if _is_halving(search):
        return sum(_halving_rounds(first, float(search.factor))) * folds
    return first * folds


class TrainProgress:
    """Reports ``done`` / ``total`` fits of one train stage through ``run.progress``.

    Every family counts its planned CV fits plus one unit for the refit of its best setting.
    Wrap each family's ``search.fit`` in :meth:`family`.

    .. versionadded:: 0.1
    """

    def __init__(self, run: Run, searches: Sequence[tuple[str, Any]], folds: int, stage: str = "train") -> None:
        self.run, self.stage, self.folds = run, stage, folds
        self.plans = {name: planned_fits(search, folds) + 1 for name, search in searches}
        self.done = 0
        self.total = sum(self.plans.values())

    def report(self, label: str) -> None:
        self.total = max(self.total, self.done)
        self.run.progress(self.stage, self.done, self.total, label)

    @contextmanager
    def family(self, name: str, search: Any) -> Iterator[None]:
        """Around one family's ``search.fit``: report each slice of candidates, then the refit."""
        start, planned = self.done, self.plans.get(name, 1)
        instrumented = planned > 1 and _instrument(search, self._on_slice(name, search))
        self.report(f"{name}: starting" if instrumented else f"{name}: searching")
        try:
            yield
        finally:
            if instrumented:
                del search._run_search  # the class's own method again
        if instrumented:  # settle what the estimate missed (halving may stop early) before the next family
            self.total += (self.done - start) - (planned - 1)
        else:
            self.done = start + planned - 1
        self.done += 1
        self.report(f"{name}: done")

    def _on_slice(self, name: str, search: Any) -> Callable[[int, int, int, int | None], None]:
        rounds = _halving_rounds(_candidates(search) or 1, float(search.factor)) if _is_halving(search) else []

        def on_slice(fits: int, done: int, of: int, iteration: int | None) -> None:
            self.done += fits
            where = ""
            if iteration is not None:
                where = f"iteration {iteration + 1} of {max(len(rounds), iteration + 1)}, "
            label = f"{name}: {where}{done} of {of} candidates × {self.folds} folds"
            if done == of and (iteration is None or iteration + 1 >= len(rounds)):
                label = f"{name}: refitting the best setting on the training part"
            self.report(label)

        return on_slice


def _instrument(search: Any, on_slice: Callable[[int, int, int, int | None], None]) -> bool:
    """Hand the search its candidates in slices, calling ``on_slice`` after each one."""
    original = search._run_search
    try:
        takes_context = "callback_ctx" in inspect.signature(original).parameters
    except (TypeError, ValueError):
        return False
    n_jobs = getattr(search, "n_jobs", None)

    def sliced(evaluate_candidates: Callable[..., Any]) -> Callable[..., Any]:
        from joblib import effective_n_jobs

        workers = max(1, effective_n_jobs(n_jobs))

        def evaluate(candidate_params: Any, cv: Any = None, more_results: dict[str, Any] | None = None,
                     **kwargs: Any) -> Any:
            todo = list(candidate_params)
            if not todo:
                return evaluate_candidates(todo, cv, more_results, **kwargs)
            iteration = int(more_results["iter"][0]) if more_results and more_results.get("iter") else None
            step = max(workers, math.ceil(len(todo) / SLICES_PER_BATCH))
            if step < len(todo) and "callback_ctx" in kwargs:
                # scikit-learn's own callback contexts number a batch's fits from 0 and refuse repeats
                # across slices; no callbacks are set on these searches, so the fits go without one
                kwargs["callback_ctx"] = None
            results = None
            for begin in range(0, len(todo), step):
                part = slice(begin, begin + step)
                extra = None if more_results is None else {k: list(v)[part] for k, v in more_results.items()}
                results = evaluate_candidates(todo[part], cv, extra, **kwargs)
                fits = len(todo[part]) * max(1, int(getattr(search, "n_splits_", 1)))
                on_slice(fits, min(begin + step, len(todo)), len(todo), iteration)
            return results

        return evaluate

    if takes_context:
        def run_search(evaluate_candidates: Callable[..., Any], *, callback_ctx: Any = None) -> Any:
            return original(sliced(evaluate_candidates), callback_ctx=callback_ctx)
    else:
        def run_search(evaluate_candidates: Callable[..., Any]) -> Any:  # type: ignore[misc]
            return original(sliced(evaluate_candidates))
    search._run_search = _LocalOnly(run_search)
    return True


def _dropped() -> None:
    return None


class _LocalOnly:
    """The sliced ``_run_search``, which stays in this process.

    scikit-learn sends the search itself to the workers with each fit (``caller=``); this
    wrapper pickles as nothing (the workers never search), so the run and its plugin manager
    behind the progress callback never have to be pickled.
    """

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.__signature__ = inspect.signature(func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _dropped, ()


# --------------------------------------------------------------------------- fairness math


#: sensitive columns are judged one by one and in intersections of up to this many
MAX_INTERSECTION = 3
NUMERIC_DISTINCT, NUMERIC_BINS = 10, 5
#: the group label of a missing sensitive value
MISSING = "(missing)"


def feature_sets(sensitive: Sequence[str]) -> list[tuple[str, ...]]:
    """Each sensitive column, then every intersection of up to three of them.

    .. versionadded:: 0.1
    """
    cols = list(dict.fromkeys(sensitive))
    out: list[tuple[str, ...]] = [(c,) for c in cols]
    for size in range(2, min(MAX_INTERSECTION, len(cols)) + 1):
        out += list(itertools.combinations(cols, size))
    return out


def group_labels(frame: pd.DataFrame, cols: Sequence[str]) -> np.ndarray:
    """One label per row: the group's values joined by ``&`` (numeric columns binned).

    A missing value is its own group, ``(missing)``; a numeric column with more than 10
    distinct values is cut into 5 quantile bins.

    .. versionadded:: 0.1
    """
    import numpy as np
    import pandas as pd

    parts = []
    for col in cols:
        s = frame[col]
        if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype) \
                and s.nunique() > NUMERIC_DISTINCT:
            s = pd.qcut(s, NUMERIC_BINS, duplicates="drop").astype(str).where(s.notna())
        parts.append(s.astype(object).where(s.notna(), MISSING).astype(str).to_numpy())
    if len(parts) == 1:
        return parts[0]
    return np.array(["&".join(v) for v in zip(*parts, strict=True)], dtype=object)


def _finite_or_none(x: Any) -> float | None:
    import math

    return None if x is None or not math.isfinite(float(x)) else float(x)


def _spread(values: np.ndarray) -> tuple[float | None, float | None]:
    """(max − min, min / max) over the finite values; None when fewer than two."""
    import numpy as np

    v = values[np.isfinite(values)]
    if len(v) < 2:
        return None, None
    hi, lo = float(v.max()), float(v.min())
    return hi - lo, (lo / hi if hi > 0 else None)


def _replicate_spread(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise ``_spread`` of a ``(resamples, groups)`` matrix (NaN where undefined)."""
    import numpy as np

    with np.errstate(invalid="ignore", divide="ignore"), _quiet():
        ok = np.isfinite(values).sum(axis=1) >= 2
        hi, lo = np.nanmax(values, axis=1), np.nanmin(values, axis=1)
        diff = np.where(ok, hi - lo, np.nan)
        ratio = np.where(ok & (hi > 0), lo / hi, np.nan)
    return diff, ratio


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence warnings about undefined rates (empty groups, no positives): they become null."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# --------------------------------------------------------------------------- classification


def _weighted_count(y_true: Any, y_pred: Any, sample_weight: Any) -> float:
    import numpy as np

    return float(np.sum(sample_weight))


def binary_cells(labels: np.ndarray, y01: np.ndarray, p01: np.ndarray) -> pd.DataFrame:
    """Counts of (group, truth, decision): everything the rate metrics depend on.

    .. versionadded:: 0.1
    """
    import pandas as pd

    frame = pd.DataFrame({"group": labels, "y": y01.astype("int8"), "p": p01.astype("int8")})
    return frame.groupby(["group", "y", "p"], sort=True, observed=True).size().rename("n").reset_index()


def metric_frame(cells: pd.DataFrame) -> pd.DataFrame:
    """fairlearn ``MetricFrame.by_group`` of the rate metrics, from cell counts as sample weights.

    .. versionadded:: 0.1
    """
    from fairlearn.metrics import MetricFrame, false_negative_rate, false_positive_rate, selection_rate

    weights = cells["n"].to_numpy(dtype="float64")
    metrics = {"count": _weighted_count, "selection_rate": selection_rate,
               "false_positive_rate": false_positive_rate, "false_negative_rate": false_negative_rate}
    with _quiet():
        mf = MetricFrame(metrics=metrics, y_true=cells["y"].to_numpy(), y_pred=cells["p"].to_numpy(),
                         sensitive_features=cells["group"].to_numpy(),
                         sample_params={name: {"sample_weight": weights} for name in metrics})
    return mf.by_group


def _cell_tensor(cells: pd.DataFrame, groups: list[str]) -> np.ndarray:
    """``(groups, 2, 2)`` counts indexed [group, truth, decision]."""
    import numpy as np

    index = {g: i for i, g in enumerate(groups)}
    tensor = np.zeros((len(groups), 2, 2))
    for g, y, p, n in cells[["group", "y", "p", "n"]].itertuples(index=False):
        if g in index:
            tensor[index[g], int(y), int(p)] += n
    return tensor


def _rates(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Selection rate, TPR and FPR from ``(..., groups, 2, 2)`` cell counts (NaN when undefined)."""
    import numpy as np

    with np.errstate(invalid="ignore", divide="ignore"):
        n = t.sum(axis=(-2, -1))
        sel = (t[..., 0, 1] + t[..., 1, 1]) / n
        tpr = t[..., 1, 1] / (t[..., 1, 0] + t[..., 1, 1])
        fpr = t[..., 0, 1] / (t[..., 0, 0] + t[..., 0, 1])
    return sel, tpr, fpr


def _eo(tpr: np.ndarray, fpr: np.ndarray) -> Any:
    import numpy as np

    if tpr.ndim == 1:
        a, _ = _spread(tpr)
        b, _ = _spread(fpr)
        known = [v for v in (a, b) if v is not None]
        return max(known) if known else None
    da, _ = _replicate_spread(tpr)
    db, _ = _replicate_spread(fpr)
    with _quiet():
        return np.fmax(da, db)


def binary_disparities(cells: pd.DataFrame, eligible: list[str], resamples: int,
                       rng: np.random.Generator) -> dict[str, Any]:
    """Disparities over the eligible groups, with multinomial-bootstrap intervals.

    .. versionadded:: 0.1
    """
    t = _cell_tensor(cells, eligible)
    sel, tpr, fpr = _rates(t)
    dp_diff, dp_ratio = _spread(sel)
    out: dict[str, Any] = {"demographic_parity_difference": dp_diff, "demographic_parity_ratio": dp_ratio,
                           "equalized_odds_difference": _eo(tpr, fpr), "selection_rate_ratio": dp_ratio}
    names = ("demographic_parity_difference", "demographic_parity_ratio", "equalized_odds_difference",
             "selection_rate_ratio")
    if resamples <= 0 or len(eligible) < 2:
        out.update({f"{k}_ci": None for k in names})
        return out
    every = sorted(cells["group"].unique().tolist())
    all_t = _cell_tensor(cells, every)
    # resample every cell, small groups included (they take their share of each resample)
    flat = all_t.reshape(-1)
    keep = [every.index(g) for g in eligible]
    draws = rng.multinomial(int(flat.sum()), flat / flat.sum(), size=resamples).reshape(resamples, *all_t.shape)
    draws = draws[:, keep]
    b_sel, b_tpr, b_fpr = _rates(draws)
    b_diff, b_ratio = _replicate_spread(b_sel)
    b_eo = _eo(b_tpr, b_fpr)
    out.update({"demographic_parity_difference_ci": interval(b_diff),
                "demographic_parity_ratio_ci": interval(b_ratio),
                "equalized_odds_difference_ci": interval(b_eo),
                "selection_rate_ratio_ci": interval(b_ratio)})
    return out


def per_group_metric(name: str, labels: np.ndarray, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None,
                     classes: np.ndarray) -> dict[str, float | None]:
    """The primary metric within each group (None where undefined, e.g. one class).

    .. versionadded:: 0.1
    """
    import numpy as np

    out: dict[str, float | None] = {}
    codes, uniques = _group_codes(labels)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    for i, g in enumerate(uniques):
        idx = order[bounds[i]:bounds[i + 1]]
        with _quiet():
                out[str(g)] = score_predictions(y[idx], pred[idx], proba[idx] if proba is not None else None,
                                            classes, (name,)).get(name)
    return out


def _group_codes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    codes, uniques = pd.factorize(labels, sort=True)
    return codes, uniques


def classification_fairness(y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: np.ndarray,
                            labels: np.ndarray, positive: Any, metric_name: str, min_size: int, resamples: int,
                            rng: np.random.Generator) -> dict[str, Any]:
    """The ``fairness[<key>]`` evidence for a classifier's predictions on labelled rows.

    ``labels`` is :func:`group_labels` of the rows, ``positive`` the class a decision selects
    (two classes), ``metric_name`` the run's metric, scored per group; groups with fewer than
    ``min_size`` rows are listed and left out of every disparity; ``resamples`` bootstrap
    draws from ``rng`` give each disparity its interval.

    .. versionadded:: 0.1
    """
    import numpy as np

    binary = len(classes) == 2
    targets = [positive] if binary else list(classes)
    codes, uniques = _group_codes(labels)
    sizes = np.bincount(codes, minlength=len(uniques))
    correct = np.bincount(codes, weights=(y == pred).astype(float), minlength=len(uniques))
    groups = [str(g) for g in uniques]
    small = [g for g, n in zip(groups, sizes, strict=True) if n < min_size]
    eligible = [g for g in groups if g not in small]
    by_group: dict[str, dict[str, Any]] = {
        g: {"count": int(n), "accuracy": _finite_or_none(c / n) if n else None, "small": g in small}
        for g, n, c in zip(groups, sizes, correct, strict=True)}
    metric_by_group = per_group_metric(metric_name, labels, y, pred, proba, classes)
    for g in groups:
        by_group[g][metric_name] = metric_by_group.get(g)
    by_class: dict[str, Any] = {}
    for c in targets:
        cells = binary_cells(labels, y == c, pred == c)
        table = metric_frame(cells)
        rates = {str(g): {k: _finite_or_none(v) for k, v in row.items() if k != "count"} for g, row in table.iterrows()}
        disparities = binary_disparities(cells, eligible, resamples, rng)
        by_class[str(c)] = {"by_group": rates, **disparities}
        if binary:
            for g in groups:
                by_group[g].update(rates.get(g, {}))
    result: dict[str, Any]
    if binary:
        result = {k: v for k, v in by_class[str(positive)].items() if k != "by_group"}
    else:  # the worst class for each disparity
        result = {}
        for key, worst in (("demographic_parity_difference", max), ("demographic_parity_ratio", min),
                           ("equalized_odds_difference", max), ("selection_rate_ratio", min)):
            known = [(v[key], c) for c, v in by_class.items() if v[key] is not None]
            if known:
                value, cls = worst(known)
                result[key], result[f"{key}_ci"], result[f"{key}_class"] = value, by_class[cls][f"{key}_ci"], cls
            else:
                result[key], result[f"{key}_ci"] = None, None
        for g in groups:
            by_group[g]["selection_rate"] = {c: v["by_group"].get(g, {}).get("selection_rate")
                                             for c, v in by_class.items()}
    result.update({"by_group": by_group, "small_groups": small, "groups_judged": eligible,
                   "min_group_size": min_size, "metric": metric_name, "positive_label": str(positive) if binary else None,
                   "rows": len(y)})
    if not binary:
        result["by_class"] = {c: {k: v for k, v in d.items() if k != "by_group"} for c, d in by_class.items()}
    if result.get("selection_rate_ratio") is None:
        result["reason"] = (f"only {len(eligible)} group(s) with at least {min_size} holdout rows "
                            f"(small: {', '.join(small) or 'none'})" if len(eligible) < 2
                            else "no group was selected (every selection rate is 0)")
    return result


# --------------------------------------------------------------------------- regression and ranking


def group_mean_replicates(values: np.ndarray, codes: np.ndarray, n_groups: int, resamples: int,
                          rng: np.random.Generator) -> np.ndarray:
    """``(resamples, groups)`` bootstrap means of ``values`` per group (row bootstrap, chunked).

    .. versionadded:: 0.1
    """
    import numpy as np

    n = len(values)
    out = np.empty((resamples, n_groups))
    step = max(1, MAX_CELLS // max(n, 1))
    for start in range(0, resamples, step):
        k = min(resamples, start + step) - start
        draws = rng.integers(0, n, size=(k, n))
        slot = (np.arange(k)[:, None] * n_groups + codes[draws]).ravel()
        sums = np.bincount(slot, weights=values[draws].ravel(), minlength=k * n_groups).reshape(k, n_groups)
        counts = np.bincount(slot, minlength=k * n_groups).reshape(k, n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + k] = sums / counts
    return out


def regression_fairness(y: np.ndarray, pred: np.ndarray, labels: np.ndarray, metric_name: str, min_size: int,
                        resamples: int, rng: np.random.Generator) -> dict[str, Any]:
    """The ``fairness[<key>]`` evidence for a regressor: error per group, its gaps and their intervals.

    .. versionadded:: 0.1
    """
    import numpy as np
    from fairlearn.metrics import MetricFrame, count
    from sklearn.metrics import mean_absolute_error

    def mean_error(y_true: Any, y_pred: Any) -> float:
        return float(np.mean(np.asarray(y_pred, dtype=float) - np.asarray(y_true, dtype=float)))

    yf, pf = y.astype(float), pred.astype(float)
    with _quiet():
        table = MetricFrame(metrics={"count": count, "mae": mean_absolute_error, "mean_error": mean_error},
                            y_true=yf, y_pred=pf, sensitive_features=labels).by_group
    codes, uniques = _group_codes(labels)
    groups = [str(g) for g in uniques]
    metric_by_group = per_group_metric(metric_name, labels, yf, pf, None, np.asarray([]))
    by_group = {str(g): {"count": int(row["count"]), "mae": _finite_or_none(row["mae"]),
                         "mean_error": _finite_or_none(row["mean_error"]), metric_name: metric_by_group.get(str(g)),
                         "small": int(row["count"]) < min_size} for g, row in table.iterrows()}
    small = [g for g in groups if by_group[g]["small"]]
    eligible_idx = np.array([i for i, g in enumerate(groups) if g not in small], dtype=int)
    mae = np.array([by_group[g]["mae"] for g in groups], dtype=float)[eligible_idx]
    err = np.array([by_group[g]["mean_error"] for g in groups], dtype=float)[eligible_idx]
    overall = float(np.mean(np.abs(yf - pf)))
    mae_gap, mae_ratio = _spread(mae)
    err_gap, _ = _spread(err)
    result: dict[str, Any] = {
        "mae_max_gap": mae_gap, "mae_ratio": mae_ratio, "mean_error_max_gap": err_gap,
        "relative_mae_gap": (mae_gap / overall) if mae_gap is not None and overall > 0 else None,
        "overall_mae": overall}
    keys = ("mae_max_gap", "mae_ratio", "mean_error_max_gap", "relative_mae_gap")
    if resamples > 0 and len(eligible_idx) >= 2:
        b_mae = group_mean_replicates(np.abs(yf - pf), codes, len(groups), resamples, rng)[:, eligible_idx]
        b_err = group_mean_replicates(pf - yf, codes, len(groups), resamples, rng)[:, eligible_idx]
        d_mae, r_mae = _replicate_spread(b_mae)
        d_err, _ = _replicate_spread(b_err)
        result.update({"mae_max_gap_ci": interval(d_mae), "mae_ratio_ci": interval(r_mae),
                       "mean_error_max_gap_ci": interval(d_err),
                       "relative_mae_gap_ci": interval(d_mae / overall) if overall > 0 else None})
    else:
        result.update({f"{k}_ci": None for k in keys})
    result.update({"by_group": by_group, "small_groups": small, "groups_judged": [groups[i] for i in eligible_idx],
                   "min_group_size": min_size, "metric": metric_name, "rows": len(y)})
    if mae_gap is None:
        result["reason"] = f"only {len(eligible_idx)} group(s) with at least {min_size} holdout rows"
    return result


def exposures(query: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Position-based exposure 1 / log2(1 + rank) of each item within its query (rank 1 = top score).

    .. versionadded:: 0.1
    """
    import numpy as np
    import pandas as pd

    ranks = pd.Series(-score).groupby(pd.Series(query).to_numpy()).rank(method="first").to_numpy()
    return 1.0 / np.log2(1.0 + ranks)


def ranking_fairness(query: np.ndarray, score: np.ndarray, relevance: np.ndarray, labels: np.ndarray,
                     min_size: int, resamples: int, rng: np.random.Generator) -> dict[str, Any]:
    """The ``fairness[<key>]`` evidence for a ranker: each group's mean exposure, and their ratio.

    .. versionadded:: 0.1
    """
    import numpy as np

    expo = exposures(query, score)
    codes, uniques = _group_codes(labels)
    groups = [str(g) for g in uniques]
    sizes = np.bincount(codes, minlength=len(groups))
    mean_expo = np.bincount(codes, weights=expo, minlength=len(groups)) / np.maximum(sizes, 1)
    mean_rel = np.bincount(codes, weights=relevance.astype(float), minlength=len(groups)) / np.maximum(sizes, 1)
    small = [g for g, n in zip(groups, sizes, strict=True) if n < min_size]
    eligible_idx = np.array([i for i, g in enumerate(groups) if g not in small], dtype=int)
    gap, ratio = _spread(mean_expo[eligible_idx])
    result: dict[str, Any] = {"exposure_ratio": ratio, "exposure_max_gap": gap}
    if resamples > 0 and len(eligible_idx) >= 2:
        b = group_mean_replicates(expo, codes, len(groups), resamples, rng)[:, eligible_idx]
        d, r = _replicate_spread(b)
        result.update({"exposure_ratio_ci": interval(r), "exposure_max_gap_ci": interval(d)})
    else:
        result.update({"exposure_ratio_ci": None, "exposure_max_gap_ci": None})
    result.update({"by_group": {g: {"count": int(n), "exposure": float(e), "relevance": float(r), "small": g in small}
                                for g, n, e, r in zip(groups, sizes, mean_expo, mean_rel, strict=True)},
                   "small_groups": small, "groups_judged": [groups[i] for i in eligible_idx],
                   "min_group_size": min_size, "rows": len(score)})
    if ratio is None:
        result["reason"] = f"only {len(eligible_idx)} group(s) with at least {min_size} holdout rows"
    return result


# --------------------------------------------------------------------------- names loaded on first use


#: public name -> the module that defines it, imported when the name is first asked for: the
#: rankers import scikit-learn, the spec's models pydantic; both stay out of ``import assay.kit``
_LAZY = {
    **dict.fromkeys(("PairwiseLogisticRanker", "PointwiseRanker", "PopularityRanker", "RandomRanker"), "assay.rankers"),
    **dict.fromkeys(("RunSpec", "TimeExpression", "TrainSpec", "parse_time_expression"), "assay.kernel.spec"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'assay.kit' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


# --------------------------------------------------------------------------- building a dataset

_DATETIME_SAMPLE = 200
#: ``Dataset.frame.attrs`` key: rows :func:`prepare_frame` dropped because the target was missing.
DROPPED_ATTR = "assay.rows_without_target"
#: ``Dataset.frame.attrs`` key: rows :func:`prepare_frame` dropped by ``data.dedupe`` (set only when it is on).
DEDUPED_ATTR = "assay.rows_repeated"


def parse_iso_datetimes(frame: pd.DataFrame, skip: set[str]) -> None:
    """Turn text columns whose values are all ISO-8601 dates/times into datetimes, in place.

    .. versionadded:: 0.1
    """
    import pandas as pd

    for col in frame.columns:
        s = frame[col]
        if col in skip or not (s.dtype == object or isinstance(s.dtype, pd.StringDtype)):
            continue
        sample = s.dropna().head(_DATETIME_SAMPLE)
        if sample.empty or not all(isinstance(v, str) and ISO_DATETIME.match(v) for v in sample):
            continue
        try:
            frame[col] = parse_datetime(s)
        except (ValueError, TypeError):
            continue  # looked like dates at the top, is not throughout: leave it as text


def _apply_role_overrides(frame: pd.DataFrame, spec: RunSpec, source: str) -> None:
    import pandas as pd

    d = spec.data
    wanted: dict[str, str] = dict(d.roles)
    if d.time_column and not pd.api.types.is_numeric_dtype(frame[d.time_column].dtype):
        wanted.setdefault(d.time_column, "datetime")  # numeric times (years, epochs) order as they are
    if d.text_column:
        wanted.setdefault(d.text_column, "text")
    for col, role in wanted.items():
        if col not in frame.columns or col == d.target:  # a missing column is named by the runner
            continue
        s = frame[col]
        if role == "datetime" and not pd.api.types.is_datetime64_any_dtype(s.dtype):
            try:
                frame[col] = parse_datetime(s)
            except (ValueError, TypeError) as exc:
                key = "data.time_column" if col == d.time_column else f"data.roles.{col}"
                raise BadInput(f"{key}: column {col!r} of {source} is not a date/time: {exc}") from exc
        elif role == "numeric" and not pd.api.types.is_numeric_dtype(s.dtype):
            try:
                frame[col] = pd.to_numeric(s)
            except (ValueError, TypeError) as exc:
                raise BadInput(f"data.roles.{col}: column {col!r} of {source} is not numeric: {exc}") from exc
        elif role == "text":
            frame[col] = s.astype(object).where(s.notna(), "")  # an empty document, not a missing one


def _check_target(frame: pd.DataFrame, spec: RunSpec, source: str, task: str) -> None:
    import pandas as pd

    d = spec.data
    y = frame[d.target]
    if task in ("binary", "multiclass", "text") and y.nunique() < 2:
        raise BadInput(f"data.target: column {d.target!r} of {source} has a single class; nothing to learn")
    if task == "binary" and y.nunique() > 2:
        raise BadInput(f"data.task: 'binary' but {d.target!r} has {y.nunique()} classes; use task = 'multiclass'")
    if task in ("regression", "ranking") and not pd.api.types.is_numeric_dtype(y.dtype):
        raise BadInput(f"data.task: {task!r} needs a numeric target; {d.target!r} of {source} is {y.dtype}")
    if task == "ranking":
        if (y < 0).any():
            raise BadInput(f"data.target: ranking relevance {d.target!r} of {source} must be >= 0 "
                           f"(found {y.min()})")
        if frame[d.group_column].isna().any():
            raise BadInput(f"data.group_column: {int(frame[d.group_column].isna().sum())} rows of {source} "
                           f"have no query id in {d.group_column!r}; fill or drop them")
    if task == "text" and d.text_column in frame.columns and not (
            frame[d.text_column].dtype == object or isinstance(frame[d.text_column].dtype, pd.StringDtype)):
        raise BadInput(f"data.text_column: {d.text_column!r} of {source} holds {frame[d.text_column].dtype}, not text")


def drop_repeated_rows(frame: pd.DataFrame, roles: dict[str, Any]) -> tuple[pd.DataFrame, int]:
    """``frame`` without the rows equal to an earlier row in every column but ids, and how many those were.

    ``data.dedupe``: the first of each set of equal rows stays. Equal means equal as read (the
    duplicates check also counts copies that differ only in case, spacing or float noise, and
    names them by row).

    .. versionadded:: 0.1
    """
    record = [c for c in frame.columns if roles.get(str(c)) != "id"]
    repeated = frame.duplicated(subset=record, keep="first").to_numpy()
    return frame[~repeated].reset_index(drop=True), int(repeated.sum())


def prepare_frame(frame: pd.DataFrame, spec: RunSpec, source: str, name: str = "data") -> Dataset:
    """Turn a raw table into a fingerprinted :class:`Dataset` with roles and a task, as the bundled loader does.

    Column names stripped and unique, a fresh 0..n-1 index, ISO-8601 text parsed as datetimes
    (so a table has the same fingerprint from CSV, Parquet or SQL), ``data.roles`` applied, rows
    without a target dropped (counted in ``frame.attrs[DROPPED_ATTR]``), the task inferred when
    the spec leaves it empty, every column given a role, and with ``data.dedupe`` repeated rows
    dropped (``frame.attrs[DEDUPED_ATTR]``). ``name`` is the dataset's name (``"data"``, or
    ``"target_domain"`` for a second table). Raises ``BadInput`` naming the spec key and the fix.

    .. versionadded:: 0.1
    """
    from assay import Dataset

    frame = frame.copy(deep=False)
    frame.columns = [str(c).strip() for c in frame.columns]
    duplicated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicated:
        raise BadInput(f"data.source: {source} has duplicate column names: {', '.join(duplicated)}")
    frame = frame.reset_index(drop=True)
    d = spec.data
    # Columns the spec declares as text-like keep their strings; any other ISO column is parsed
    # (a dropped time column still orders a time split).
    declared = ({d.text_column} | {c for c, r in d.roles.items() if r in ("text", "categorical", "id", "group")}) - {""}
    parse_iso_datetimes(frame, skip=declared | {d.target})
    _apply_role_overrides(frame, spec, source)
    if d.target not in frame.columns:  # the runner names the missing column (check_columns)
        return Dataset(frame, d.target, d.task or "binary", {}, fingerprint_frame(frame), source, name)
    missing_target = int(frame[d.target].isna().sum())
    if missing_target == len(frame):
        raise BadInput(f"data.target: column {d.target!r} of {source} has no values")
    if missing_target:
        frame = frame[frame[d.target].notna()].reset_index(drop=True)
    if frame[d.target].dtype == object:
        frame[d.target] = frame[d.target].astype(str).str.strip()
    task = d.task or infer_task(frame[d.target])
    _check_target(frame, spec, source, task)
    roles = infer_roles(frame, spec)
    deduped = d.dedupe and name == "data"
    if deduped:
        frame, repeated = drop_repeated_rows(frame, roles)
        if repeated:
            roles = infer_roles(frame, spec)
    frame.attrs[DROPPED_ATTR] = missing_target
    if deduped:
        frame.attrs[DEDUPED_ATTR] = repeated
    return Dataset(frame, d.target, task, roles, fingerprint_frame(frame), source, name)
