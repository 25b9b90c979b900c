"""Chart data (``evaluate``): the curves the report draws, recorded with the rest of the evidence.

A chart in ``assay report`` is a view of recorded numbers, never a second computation: the
report reads only the evidence, so whatever it draws is measured here, on the holdout, and
signed into the ledger with the evidence record. Each curve keeps at most ``MAX_POINTS``
points (evenly spaced along the curve, ends kept), so a 10-million-row holdout records as
much as a small one.

Evidence section ``curves`` (one key per chart; absent where the task has no such chart):

- ``roc``: ``fpr``, ``tpr`` (binary); ``pr``: ``recall``, ``precision``, ``prevalence``;
  ``calibration``: ``predicted``, ``observed``, ``count`` per bin of predicted probability
  (ten equal-width bins, empty bins left out).
- ``confusion``: ``labels`` and ``matrix`` (rows: true class, columns: predicted), binary,
  multiclass and text; at most ``MAX_CLASSES`` classes (the most frequent; the rest pooled
  as ``other``).
- ``residuals``: a seeded sample of ``predicted`` and ``residual`` (true − predicted) and a
  ``histogram`` of every residual (regression).
- ``ndcg``: NDCG@10 of every query with a relevant item, as a ``histogram`` over [0, 1] with
  ``queries`` counted and their ``mean`` (ranking).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from assay import Evidence, Run, Scores, Splits, hookimpl

MAX_POINTS = 200
MAX_CLASSES = 12
BINS = 10
NDCG_K = 10


def _thin(*columns: np.ndarray, limit: int = MAX_POINTS) -> list[list[float]]:
    """The columns at ``limit`` evenly spaced positions (first and last kept), as plain floats."""
    n = len(columns[0])
    keep = np.unique(np.linspace(0, n - 1, num=min(n, limit)).round().astype(int)) if n else np.array([], int)
    return [[round(float(c[i]), 6) for i in keep] for c in columns]


def _histogram(values: np.ndarray, bins: int = 20, value_range: tuple[float, float] | None = None) -> dict[str, Any]:
    counts, edges = np.histogram(values, bins=bins, range=value_range)
    return {"edges": [round(float(e), 6) for e in edges], "counts": [int(c) for c in counts]}


def _confusion(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    names, counts = np.unique(np.concatenate([y_true.astype(str), y_pred.astype(str)]), return_counts=True)
    order = [str(n) for n in names[np.argsort(-counts, kind="stable")]]
    labels = order[:MAX_CLASSES]
    pooled = len(order) > MAX_CLASSES
    if pooled:
        keep = set(labels)
        y_true = np.array([v if v in keep else "other" for v in y_true.astype(str)])
        y_pred = np.array([v if v in keep else "other" for v in y_pred.astype(str)])
        labels = [*labels, "other"]
    labels = sorted(labels, key=lambda s: (s == "other", s))
    index = {name: i for i, name in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    np.add.at(matrix, ([index[v] for v in y_true.astype(str)], [index[v] for v in y_pred.astype(str)]), 1)
    return {"labels": labels, "matrix": matrix.tolist(), "pooled_other": pooled}


def _binary(y_true: np.ndarray, score: np.ndarray, positive: Any) -> dict[str, Any]:
    from sklearn.metrics import precision_recall_curve, roc_curve

    actual = (y_true.astype(str) == str(positive)).astype(int)
    if actual.min() == actual.max():
        return {"roc": None, "pr": None, "calibration": None,
                "detail": {"reason": "the holdout holds one class only: no curve is defined"}}
    fpr, tpr, _ = roc_curve(actual, score)
    precision, recall, _ = precision_recall_curve(actual, score)
    edges = np.linspace(0.0, 1.0, BINS + 1)
    which = np.clip(np.digitize(score, edges[1:-1]), 0, BINS - 1)
    count = np.bincount(which, minlength=BINS)
    predicted = np.bincount(which, weights=score, minlength=BINS)
    observed = np.bincount(which, weights=actual, minlength=BINS)
    filled = count > 0
    roc_x, roc_y = _thin(fpr, tpr)
    pr_r, pr_p = _thin(recall[::-1], precision[::-1])
    return {
        "positive": str(positive),
        "roc": {"fpr": roc_x, "tpr": roc_y},
        "pr": {"recall": pr_r, "precision": pr_p, "prevalence": round(float(actual.mean()), 6)},
        "calibration": {"predicted": [round(float(v), 6) for v in predicted[filled] / count[filled]],
                        "observed": [round(float(v), 6) for v in observed[filled] / count[filled]],
                        "count": [int(c) for c in count[filled]], "bins": BINS},
    }


def per_query_ndcg(y_true: np.ndarray, score: np.ndarray, queries: np.ndarray, k: int = NDCG_K) -> np.ndarray:
    """NDCG@k of each query that has a relevant item (as :func:`assay.kit.ndcg_at` averages it)."""
    from assay.kit import query_order

    rel, ranks, q = query_order(y_true, score, queries)
    n_queries = int(q.max()) + 1 if len(q) else 0
    gains = (np.power(2.0, rel) - 1.0) / np.log2(ranks + 1.0)
    dcg = np.bincount(q, weights=np.where(ranks <= k, gains, 0.0), minlength=n_queries)
    ideal_rel, ideal_ranks, iq = query_order(y_true, y_true, queries)
    ideal = (np.power(2.0, ideal_rel) - 1.0) / np.log2(ideal_ranks + 1.0)
    idcg = np.bincount(iq, weights=np.where(ideal_ranks <= k, ideal, 0.0), minlength=n_queries)
    judged = idcg > 0
    return np.asarray(dcg[judged] / idcg[judged], dtype=float)


def chart_data(task: str, y_true: Any, predicted: Any, score: Any = None, positive: Any = None,
               queries: Any = None, seed: int = 0) -> dict[str, Any]:
    """The ``curves`` evidence of one holdout: a pure function of the labels and the model's outputs.

    :param task: binary | multiclass | text | regression | ranking.
    :param y_true: the holdout's labels (or targets, or relevance).
    :param predicted: the predicted labels (classification) or values (regression, ranking scores).
    :param score: the positive class's probability or score (binary), else None.
    :param positive: the positive class (binary).
    :param queries: each row's query id (ranking).
    :param seed: seeds the residual sample.
    """
    y = np.asarray(y_true)
    pred = np.asarray(predicted)
    out: dict[str, Any] = {"rows": len(y), "max_points": MAX_POINTS}
    if task in ("binary", "multiclass", "text"):
        out["confusion"] = _confusion(y, pred)
        if score is not None and positive is not None and len(np.unique(y.astype(str))) <= 2:
            out.update(_binary(y, np.asarray(score, dtype=float), positive))
    elif task == "regression":
        truth, guess = y.astype(float), pred.astype(float)
        residual = truth - guess
        rows = np.random.default_rng(seed).permutation(len(y))[:MAX_POINTS]
        rows.sort()
        out["residuals"] = {"predicted": [round(float(v), 6) for v in guess[rows]],
                            "residual": [round(float(v), 6) for v in residual[rows]],
                            "sampled": len(rows), "histogram": _histogram(residual),
                            "mean_absolute": round(float(np.abs(residual).mean()), 6) if len(y) else None}
    elif task == "ranking" and queries is not None:
        values = per_query_ndcg(y.astype(float), pred.astype(float), np.asarray(queries))
        out["ndcg"] = {"k": NDCG_K, "queries": len(values),
                       "mean": round(float(values.mean()), 6) if len(values) else None,
                       "histogram": _histogram(values, bins=BINS, value_range=(0.0, 1.0))}
    return out


@hookimpl
def evaluate(run: Run, splits: Splits, scores: Scores) -> list[Evidence] | None:
    """The holdout's chart data, from the predictions the runner made once (``scores.test``)."""
    task = splits.dataset.task
    held_out = scores.test
    if len(held_out.y) == 0:
        return None
    queries = None
    score = positive = None
    if task == "ranking":
        from assay.kit import query_column

        column = query_column(splits.dataset)
        queries = splits.dataset.frame[column].to_numpy()[held_out.rows] if column else None
    elif task != "regression" and len(held_out.classes) == 2:
        from assay.kit import positive_first

        classes, proba = positive_first(held_out.classes, held_out.proba, run.spec.data.positive_label)
        positive = classes[1]
        if proba is not None:
            score = proba[:, 1]
        elif held_out.decision is not None:  # decision scores rank like probabilities (no calibration curve)
            decision = np.asarray(held_out.decision, dtype=float).ravel()
            score = decision if str(classes[1]) == str(held_out.classes[1]) else -decision
    data = chart_data(task, held_out.y, held_out.pred, score, positive, queries, seed=splits.seed)
    if score is not None and held_out.proba is None:
        data["calibration"] = None  # decision scores are not probabilities
    return [Evidence("curves", data)]
