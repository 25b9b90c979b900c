"""LightGBM's lambdarank ranker, fitted from each row's query id.

assay hands a ranking model each training row's query id as the fit parameter
``query_id`` (rows of one query need not be next to each other: a CV fold or a
halving subsample takes any subset). ``LGBMRanker`` wants the rows grouped by query and
the group sizes instead, so :class:`QueryLGBMRanker` sorts the rows by query (stably, so
the order within a query is kept) and passes the sizes. Everything else is LightGBM's:
the parameters, ``predict`` (a score per row, higher ranks first) and the fitted booster.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from lightgbm import LGBMRanker


class QueryLGBMRanker(LGBMRanker):
    """``LGBMRanker`` whose ``fit`` takes ``query_id`` (one id per row) instead of ``group`` (sizes)."""

    def fit(self, X: Any, y: Any, query_id: Any = None, sample_weight: Any = None,  # type: ignore[override]
            **fit_params: Any) -> QueryLGBMRanker:
        y = np.asarray(y, dtype=float)
        if not np.all(np.isfinite(y)) or np.any(y < 0) or np.any(y != np.rint(y)):
            raise ValueError("LightGBM's lambdarank needs relevance labels that are whole numbers >= 0")
        if query_id is None:  # a plain fit(X, y): every row belongs to one query
            query_id = np.zeros(len(y), dtype=np.int64)
        query_id = np.asarray(query_id)
        if len(query_id) != len(y):
            raise ValueError(f"query_id has {len(query_id)} entries for {len(y)} rows")
        codes = np.unique(query_id, return_inverse=True)[1].ravel()
        order = np.argsort(codes, kind="stable")
        sizes = np.bincount(codes)
        sizes = sizes[sizes > 0]
        rows = X.iloc[order] if hasattr(X, "iloc") else X[order]
        weights = None if sample_weight is None else np.asarray(sample_weight, dtype=float)[order]
        super().fit(rows, y[order].astype(np.int64), group=sizes, sample_weight=weights, **fit_params)
        return self
