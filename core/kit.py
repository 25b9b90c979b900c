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
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from assay.errors import BadInput
from assay.kernel.artifacts import category_text, frame_from_parquet, frame_to_parquet, put_artifact
from assay.kernel.dataset import fingerprint_frame
from assay.kernel.drift_rules import drift_options, monitor_rules, share_threshold, value_drift_threshold
from assay.kernel.types import to_jsonable

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from assay.kernel.types import Dataset, Run, Task, Trainer

__all__ = [
    "FILE_SUFFIXES",
    "MAX_ORDINAL_CATEGORIES",
    "PIPELINE_FUNCTIONS",
    "RANKING_METRICS",
    "SELECTION_KINDS",
    "SEPARATORS",
    "TASK_METRICS",
    "MetricDef",
    "QueryScorer",
    "as_text",
    "bootstrap_metric",
    "build_preprocessor",
    "calendar_features",
    "capped_grid",
    "category_text",
    "defaults_and_draws",
    "drift_options",
    "fingerprint_frame",
    "frame_from_parquet",
    "frame_to_parquet",
    "infer_task",
    "interval",
    "is_url",
    "known_metrics",
    "loguniform",
    "make_pipeline_for",
    "mean_average_precision",
    "mean_reciprocal_rank",
    "metric",
    "metrics_for",
    "monitor_rules",
    "ndcg_at",
    "positive_first",
    "put_artifact",
    "randint",
    "ranking_metric",
    "read_table",
    "resample_counts",
    "resolve_url",
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
    "to_jsonable",
    "value_drift_threshold",
    "weighted_auc",
    "weighted_metric",
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


def _query_order(y: np.ndarray, scores: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ordered by query, then score (best first); ties broken by a fixed-seed shuffle.

    Returns the relevance in that order, each row's 1-based rank within its query, and
    each row's query number (0..q-1). A seeded shuffle makes tied scores cost what they
    cost on average, instead of rewarding whatever order the file happened to have.
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

        rel, ranks, q = _query_order(y, scores, queries)
        n_queries = int(q.max()) + 1 if len(q) else 0
        gains = (np.power(2.0, rel) - 1.0) / np.log2(ranks + 1.0)
        dcg = np.bincount(q, weights=np.where(ranks <= k, gains, 0.0), minlength=n_queries)
        ideal_rel, ideal_ranks, iq = _query_order(y, y, queries)  # relevance sorted, per query
        ideal = (np.power(2.0, ideal_rel) - 1.0) / np.log2(ideal_ranks + 1.0)
        idcg = np.bincount(iq, weights=np.where(ideal_ranks <= k, ideal, 0.0), minlength=n_queries)
        judged = idcg > 0
        return float(np.mean(dcg[judged] / idcg[judged])) if judged.any() else float("nan")

    return ndcg


def mean_average_precision(y: np.ndarray, scores: np.ndarray, queries: np.ndarray) -> float:
    """Mean over queries of average precision (relevance > 0 counts as relevant)."""
    import numpy as np

    rel, ranks, q = _query_order(y, scores, queries)
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

    rel, ranks, q = _query_order(y, scores, queries)
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

        from assay.storage.settings import redact_url

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
        frame = pd.read_csv(path, sep=sep, na_values=["?"], skipinitialspace=True, low_memory=False)
    except pd.errors.ParserError as exc:
        raise _separator_hint(path, sep, field, 0) or BadInput(f"{field}: cannot read {path}: {exc}") from None
    except Exception as exc:
        raise BadInput(f"{field}: cannot read {path}: {exc}") from exc
    if len(frame.columns) == 1:
        hint = _separator_hint(path, sep, field, 1)
        if hint is not None:
            raise hint
    return frame


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
    """ROC AUC for each row of the weight matrix ``W`` (ties count one half)."""
    import numpy as np

    order = np.argsort(score, kind="mergesort")
    s = score[order]
    posf = y01[order].astype(W.dtype)
    Ws = W[:, order]
    pos_w = Ws * posf
    neg_w = Ws - pos_w
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    if len(starts) < len(s):  # tied scores: one bin per distinct score
        pos_w = np.add.reduceat(pos_w, starts, axis=1)
        neg_w = np.add.reduceat(neg_w, starts, axis=1)
    below = np.cumsum(neg_w, axis=1, dtype=np.float64) - neg_w
    num = (pos_w * (below + 0.5 * neg_w)).sum(axis=1, dtype=np.float64)
    den = pos_w.sum(axis=1, dtype=np.float64) * neg_w.sum(axis=1, dtype=np.float64)
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
    prefix (the same at run time, on replay and for an auditor), different for every evaluation."""
    import hashlib

    return int(hashlib.sha256(f"thresholdout|{fingerprint}|{spec_hash}|{k}".encode()).hexdigest()[:15], 16)


def reusable_budget(history: Mapping[str, Any]) -> dict[str, Any]:
    """A reusable holdout's state before this run, from :func:`selection_history` alone.

    ``budget`` is fixed by the holdout's first reusable evaluation (a later spec asking for more
    is ignored: raising the number would refund what was spent); ``spent_before`` counts the
    earlier evaluations' detections; ``threshold_seed`` is the seed of the evaluation that opened
    the current period (the first one, or the first after the latest detection: Thresholdout draws
    a fresh threshold noise after each detection); ``seed`` is this run's own noise seed.
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
    ``detected``: whether it spent a unit of budget); empty for a plain evaluation."""
    found = ((evidence.get("selection") or {}).get("holdout") or {}).get("reusable") if isinstance(evidence, dict) else None
    if not isinstance(found, dict):
        return {}
    return {"seed": found.get("seed"), "budget": found.get("budget"), "detected": bool(found.get("detected"))}
