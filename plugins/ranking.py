"""Ranking (``task = "ranking"``): model families, query checks, and what the search needs.

Rows are items; ``data.group_column`` names each row's query; the target is the item's
relevance (a number >= 0, e.g. 0/1 clicked or chosen, or graded 0..4). Queries are never
cut apart: the split and every CV fold are by query (``split_data`` forces ``group``).

Families (``register_trainers``):

- ``pointwise_hgb``: histogram gradient boosting regressing the relevance (pointwise).
- ``pairwise_logistic``: a logistic model on within-query feature differences
  (RankSVM-style, pairwise); only what tells items of one query apart can matter.

Both are the public kit's rankers (:class:`assay.kit.PointwiseRanker`,
:class:`assay.kit.PairwiseLogisticRanker`): ``fit(X, y, query_id=...)``, and ``predict(X)``
gives a score to sort the items of a query by.

Metrics (``ndcg@K``, ``map``, ``mrr``) are computed per query and averaged; the search
scores candidates with :class:`assay.kit.QueryScorer`, which finds each row's
query by its index label. The fitting plugin takes the search inputs from the kit too:
``search_scorer(metric, splits)`` and :func:`assay.kit.query_fit_params` (the rows' query ids,
routed to the ranker's ``fit`` and sliced per fold by scikit-learn).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from assay import Check, Evidence, Trainer, hookimpl
from assay.kit import loguniform, query_column, randint

if TYPE_CHECKING:
    from assay import Dataset, Run, Status

RANKING = frozenset({"ranking"})


def _pointwise(task: str, run: Run | None = None) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    from assay.kit import PointwiseRanker

    seed = run.seed if run else 0
    return PointwiseRanker(HistGradientBoostingRegressor(random_state=seed, early_stopping=False, max_iter=100))


def _pairwise(task: str, run: Run | None = None) -> Any:
    from assay.kit import PairwiseLogisticRanker

    return PairwiseLogisticRanker(C=1.0, random_state=run.seed if run else 0)


# the rankers' own classes (plain attributes, no custom state hooks) and, inside the pointwise
# one, histogram gradient boosting's tree predictors: what their saved models contain
_RANKERS = "assay.rankers"
_SAVED_BEFORE = "assay.plugins.rankers"  # where models saved by earlier versions name the same classes
RANKING_TRAINERS = (
    Trainer("pointwise_hgb", RANKING, _pointwise,
            grid={"estimator__learning_rate": [0.05, 0.1], "estimator__max_leaf_nodes": [7, 15, 31],
                  "estimator__min_samples_leaf": [5, 20]},
            distributions=(lambda: {"estimator__learning_rate": loguniform(0.02, 0.3),
                                    "estimator__max_leaf_nodes": randint(4, 48),
                                    "estimator__min_samples_leaf": randint(5, 60),
                                    "estimator__l2_regularization": loguniform(1e-4, 10.0)}),
            preprocessing="ordinal", description="pointwise: gradient boosting regressing the relevance",
            trusted_types=(f"{_RANKERS}.PointwiseRanker", f"{_SAVED_BEFORE}.PointwiseRanker",
                           "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor")),
    Trainer("pairwise_logistic", RANKING, _pairwise,
            grid={"C": [0.01, 0.1, 1.0, 10.0]},
            distributions=(lambda: {"C": loguniform(1e-3, 1e2)}),
            preprocessing="scaled", description="pairwise: logistic model on within-query differences (RankSVM-style)",
            trusted_types=(f"{_RANKERS}.PairwiseLogisticRanker", f"{_SAVED_BEFORE}.PairwiseLogisticRanker")),
)


@hookimpl
def register_trainers(register: Callable[[Trainer], None]) -> None:
    for trainer in RANKING_TRAINERS:
        register(trainer)


@hookimpl
def validate_data(run: Run, dataset: Dataset) -> list[Check | Evidence] | None:
    """Describe the queries; fail when no query can teach an order (nothing differs)."""
    if dataset.task != "ranking":
        return None
    column = query_column(dataset)
    if column is None:
        return None
    frame = dataset.frame
    by_query = frame.groupby(column, sort=False)[dataset.target]
    stats = by_query.agg(["size", "max", "min"])
    useful = (stats["size"] >= 2) & (stats["max"] > stats["min"])
    share = float(useful.mean())
    status: Status = "pass" if share >= 0.5 else ("warn" if share > 0 else "fail")
    summary = {"column": column, "count": len(stats), "items_mean": float(stats["size"].mean()),
               "items_min": int(stats["size"].min()), "items_max": int(stats["size"].max()),
               "without_relevant": int((stats["max"] <= 0).sum())}
    return [
        Evidence("data", {"queries": summary}),
        Check("data", "ranking_queries", status, share,
              {"queries": len(stats), "informative": int(useful.sum()), "column": column},
              message="share of queries with at least two items of different relevance"),
    ]
