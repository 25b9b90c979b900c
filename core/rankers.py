"""Learning-to-rank estimators that honour the scikit-learn estimator contract.

Part of the public kit: plugins take them from :mod:`assay.kit` (``from assay.kit import
PointwiseRanker``), which imports this module only when one is asked for, since it imports
scikit-learn. Saved ranking models refer to the classes by this module's name.

A ranker's ``fit(X, y, query_id=None, sample_weight=None)`` takes relevance labels ``y``
and each row's query id; ``predict(X)`` returns a score per row, and items are ranked
within their query by descending score. Scores need no query id, so a fitted ranker
serves one item or a whole batch alike.

- :class:`PointwiseRanker` fits any regressor to the relevance (pointwise).
- :class:`PairwiseLogisticRanker` fits a logistic model to feature differences of item
  pairs of one query with different relevance (RankSVM with a logistic loss: Herbrich
  et al. 2000, Joachims 2002); the linear score ``X @ coef_`` orders the items.
- :class:`PopularityRanker` and :class:`RandomRanker` are the baselines: how often an
  item (by id or by its categorical attributes) was relevant in training, and chance.

With ``query_id=None`` every row belongs to one query (what a plain ``fit(X, y)`` must
mean for a scikit-learn estimator); ``n_queries_`` records how many queries a fit saw.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils import get_tags
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data


class _RankerMixin(RegressorMixin):
    """Rankers predict a real-valued score; scikit-learn treats them as regressors."""

    def score(self, X: Any, y: Any, sample_weight: Any = None, query_id: Any = None) -> float:
        """NDCG@10 averaged over queries (one query when ``query_id`` is None)."""
        from assay.kit import ndcg_at

        queries = np.zeros(len(y), dtype=int) if query_id is None else np.asarray(query_id)
        return ndcg_at(10)(np.asarray(y, dtype=float), self.predict(X), queries)


def _query_codes(query_id: Any, n: int) -> np.ndarray:
    if query_id is None:
        return np.zeros(n, dtype=np.int64)
    query_id = np.asarray(query_id)
    if len(query_id) != n:
        raise ValueError(f"query_id has {len(query_id)} entries for {n} rows")
    return np.unique(query_id, return_inverse=True)[1].ravel()


class PointwiseRanker(_RankerMixin, BaseEstimator):
    """Rank by a regressor's prediction of the relevance.

    :param estimator: the regressor (default ``HistGradientBoostingRegressor()``); tuned
        through ``estimator__<param>``.
    """

    def __init__(self, estimator: Any = None) -> None:
        self.estimator = estimator

    def _regressor(self) -> Any:
        from sklearn.ensemble import HistGradientBoostingRegressor

        return clone(self.estimator) if self.estimator is not None else HistGradientBoostingRegressor()

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        inner = get_tags(self._regressor()).input_tags
        tags.input_tags.allow_nan, tags.input_tags.sparse = inner.allow_nan, inner.sparse
        return tags

    def fit(self, X: Any, y: Any, query_id: Any = None, sample_weight: Any = None) -> PointwiseRanker:
        model = self._regressor()
        tags = get_tags(model).input_tags
        X, y = validate_data(self, X, y, accept_sparse=tags.sparse, y_numeric=True,
                             ensure_all_finite="allow-nan" if tags.allow_nan else True)
        self.n_queries_ = len(np.unique(_query_codes(query_id, len(y))))
        fit_params = {} if sample_weight is None else {"sample_weight": np.asarray(sample_weight)}
        self.estimator_ = model.fit(X, np.asarray(y, dtype=float), **fit_params)
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        tags = get_tags(self.estimator_).input_tags
        X = validate_data(self, X, accept_sparse=tags.sparse, reset=False,
                          ensure_all_finite="allow-nan" if tags.allow_nan else True)
        return np.asarray(self.estimator_.predict(X), dtype=float)


class PairwiseLogisticRanker(_RankerMixin, BaseEstimator):
    """Rank by a linear score learnt from within-query item pairs (logistic RankSVM).

    For every pair (i, j) of one query with ``y[i] > y[j]`` the model sees the
    difference ``X[i] - X[j]``. Features constant within a query (the query's own attributes)
    cancel out: only what distinguishes items of one query can move the ranking. Each
    pair enters in both orientations (``X[i] - X[j]`` → 1, ``X[j] - X[i]`` → 0), so the
    fit has no intercept and no orientation bias.

    :param C: inverse L2 regularization strength of the logistic model.
    :param max_pairs_per_query: pairs sampled per query at most (``None``: all). Sampling
        keeps big queries affordable; without it, a weight of 2 is exactly a repeated row.
    :param random_state: seed for pair sampling.
    """

    def __init__(self, C: float = 1.0, max_pairs_per_query: int | None = 1000, random_state: Any = None) -> None:
        self.C = C
        self.max_pairs_per_query = max_pairs_per_query
        self.random_state = random_state

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _pairs(self, y: np.ndarray, codes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(codes, kind="stable")
        bounds = np.flatnonzero(np.r_[True, codes[order][1:] != codes[order][:-1], True])
        better: list[np.ndarray] = []
        worse: list[np.ndarray] = []
        for start, stop in itertools.pairwise(bounds):
            rows = order[start:stop]
            if len(rows) < 2:
                continue
            i, j = np.triu_indices(len(rows), k=1)
            rel_i, rel_j = y[rows[i]], y[rows[j]]
            keep = rel_i != rel_j
            if not keep.any():
                continue
            hi = np.where(rel_i > rel_j, rows[i], rows[j])[keep]
            lo = np.where(rel_i > rel_j, rows[j], rows[i])[keep]
            if self.max_pairs_per_query is not None and len(hi) > self.max_pairs_per_query:
                pick = rng.choice(len(hi), self.max_pairs_per_query, replace=False)
                hi, lo = hi[pick], lo[pick]
            better.append(hi)
            worse.append(lo)
        if not better:
            raise ValueError("pairwise ranking needs at least one query with items of different relevance")
        return np.concatenate(better), np.concatenate(worse)

    def fit(self, X: Any, y: Any, query_id: Any = None, sample_weight: Any = None) -> PairwiseLogisticRanker:
        from sklearn.linear_model import LogisticRegression

        X, y = validate_data(self, X, y, accept_sparse="csr", y_numeric=True)
        if len(y) < 2:
            raise ValueError(f"{type(self).__name__} needs pairs of items: got n_samples = {len(y)}")
        y = np.asarray(y, dtype=float)
        codes = _query_codes(query_id, len(y))
        self.n_queries_ = len(np.unique(codes))
        rng = np.random.default_rng(self.random_state if isinstance(self.random_state, int) else None)
        hi, lo = self._pairs(y, codes, rng)
        forward = X[hi] - X[lo]
        diffs = _stack(forward, -forward)  # both orientations: symmetric, and both classes present
        labels = np.r_[np.ones(len(hi), dtype=int), np.zeros(len(hi), dtype=int)]
        weights = None
        if sample_weight is not None:  # a pair weighs w_i * w_j: the pairs repeating the rows would make
            w = _check_sample_weight(sample_weight, X)
            weights = np.tile(w[hi] * w[lo], 2)
        model = LogisticRegression(C=self.C, fit_intercept=False, max_iter=2000)
        model.fit(diffs, labels, sample_weight=weights)
        self.coef_ = model.coef_.ravel()
        self.n_pairs_ = len(labels)
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", reset=False)
        return np.asarray(safe_sparse_dot(X, self.coef_), dtype=float).ravel()


def _stack(a: Any, b: Any) -> Any:
    if hasattr(a, "tocsr"):
        from scipy.sparse import vstack

        return vstack([a, b]).tocsr()
    return np.vstack([a, b])


class PopularityRanker(_RankerMixin, BaseEstimator):
    """Score an item by how relevant items like it were in training (the popularity baseline).

    Items are identified by ``key`` columns of a DataFrame (an item id, or the items'
    categorical attributes); the score is the key's mean training relevance, shrunk to
    the overall mean by ``smoothing`` pseudo-rows, so rare and unseen keys score near it.
    """

    def __init__(self, key: Any = (), smoothing: float = 1.0) -> None:
        self.key = key
        self.smoothing = smoothing

    def _keys(self, X: Any) -> Any:
        import pandas as pd

        cols = list(self.key)
        if not cols:
            return pd.Series(np.zeros(len(X), dtype=int), index=X.index)
        return X[cols].astype(str).agg("\x1f".join, axis=1) if len(cols) > 1 else X[cols[0]].astype(str)

    def fit(self, X: Any, y: Any, query_id: Any = None, sample_weight: Any = None) -> PopularityRanker:
        import pandas as pd

        y = pd.Series(np.asarray(y, dtype=float), index=X.index)
        keys = self._keys(X)
        self.mean_ = float(y.mean())
        stats = y.groupby(keys).agg(["sum", "count"])
        self.scores_ = ((stats["sum"] + self.smoothing * self.mean_) / (stats["count"] + self.smoothing)).to_dict()
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return self._keys(X).map(self.scores_).fillna(self.mean_).to_numpy(dtype=float)


class RandomRanker(_RankerMixin, BaseEstimator):
    """Score items at random (the chance baseline): seeded, so a run can be replayed."""

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def fit(self, X: Any, y: Any, query_id: Any = None, sample_weight: Any = None) -> RandomRanker:
        self.fitted_ = True
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return np.random.default_rng(self.random_state).random(len(X))
