"""Overfitting and generalization (``evaluate``): gaps, CV spread, bootstrap intervals.

Evidence (primary metric ``m``, 95 % percentile bootstrap over ``evaluate.bootstrap``
resamples of the holdout, seeded with ``split.seed``):

- ``metrics.test.<m>_ci`` — interval of the holdout metric;
- ``gap.<m>_ci`` — interval of train − holdout (train and holdout resampled independently;
  the train side scores at most 20,000 training rows, a seeded sample beyond that, which
  widens the interval slightly rather than narrowing it);
- ``baseline.test.<m>_ci`` — the baseline's holdout metric, on the very same resamples;
- ``baseline.improvement.<m>`` and ``…_ci`` — model minus baseline (baseline minus model
  for losses), paired on the same resamples: a rule "lower bound above baseline" is
  ``path = "baseline.improvement.${metric}", bound = "lower", op = ">", threshold = 0``,
  or ``path = "metrics.test.${metric}", bound = "lower", op = ">", threshold = "baseline"``.
- ``bootstrap`` — resamples, seed, level, method.

The bootstrap is vectorized: it reads the runner's :class:`~assay.kernel.types.Scores` (the model
and the baseline predicted once, on the holdout and the scored training rows); resamples are count matrices, and
the metrics are computed from weighted sums (ROC AUC from weighted ranks), so 200
resamples cost about as much as a few metric calls. Metrics without a weighted form fall
back to a loop over resampled indices.

Checks (group ``generalization``); "bounded" metrics are those in [0, 1] or R² where an
absolute difference is meaningful, losses (log loss, RMSE, ...) are compared relatively:

==================  =============================================  ==============  ==============
check               value                                          warn            fail
==================  =============================================  ==============  ==============
``gap``             overfitting on the primary metric: train −     > 0.05          > 0.15
                    holdout (relative increase for losses)
``cv_spread``       standard deviation of the CV scores (relative  ≥ 0.05          ≥ 0.10
                    to the mean for losses)
``cv_holdout``      CV mean − holdout (worse on holdout > 0)       > max(3σ, 0.03)  —
``beats_baseline``  lower bound of the improvement over the        ≤ 0             point ≤ 0
                    baseline (paired bootstrap)
==================  =============================================  ==============  ==============
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from assay import Check, Evidence, Status, hookimpl
from assay.kit import guarded, with_fix

if TYPE_CHECKING:
    import numpy as np

    from assay import FittedModel, Run, Scores, Splits

GROUP = "generalization"
LEVEL = 0.95
GAP_WARN, GAP_FAIL = 0.05, 0.15
SPREAD_WARN, SPREAD_FAIL = 0.05, 0.10
CV_HOLDOUT_SIGMAS, CV_HOLDOUT_MIN = 3.0, 0.03
BOUNDED = {"roc_auc", "roc_auc_ovr", "average_precision", "accuracy", "balanced_accuracy", "f1", "f1_macro",
           "f1_weighted", "r2", "map", "mrr"}


def bounded(name: str) -> bool:
    """Metrics in a fixed range (or R²), where absolute differences are comparable."""
    return name in BOUNDED or name.startswith("ndcg@")


def _positive_first(classes: np.ndarray, proba: np.ndarray | None, positive: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Two classes ordered (negative, positive) as the metrics table expects (``data.positive_label``)."""
    from assay.kit import positive_first

    if len(classes) != 2 or not positive:
        return classes, proba
    return positive_first(classes, proba, positive)


# --------------------------------------------------------------------------- checks


def _gap_check(name: str, train: float | None, test: float | None, cv: dict[str, Any], gap_ci: list[float] | None,
               greater: bool, scored: tuple[int, int] = (0, 0)) -> Check:
    if train is None or test is None:
        return Check(GROUP, "gap", "error", None, {"reason": "train or holdout metric could not be computed",
                                                    "metric": name})
    if greater:
        over = train - test
        kind = "absolute"
    else:
        over = (test - train) / abs(train) if train else (0.0 if test == train else float("inf"))
        kind = "relative"
    status: Status = "fail" if over > GAP_FAIL else "warn" if over > GAP_WARN else "pass"
    detail = {"metric": name, "kind": kind, "train": train, "holdout": test, "cv_mean": cv.get("mean"),
              "cv_std": cv.get("std"), "cv_train_mean": cv.get("train_mean"), "train_minus_holdout": train - test,
              "train_minus_holdout_ci": gap_ci, "thresholds": {"warn": GAP_WARN, "fail": GAP_FAIL},
              "train_rows_scored": scored[0], "train_rows": scored[1]}
    cv_mean, cv_train = cv.get("mean"), cv.get("train_mean")
    if cv_mean is not None and cv_train is not None:
        detail["cv_train_minus_cv"] = cv_train - cv_mean
    message = (f"{name}: train {train:.4f} vs holdout {test:.4f} ({kind} overfitting {over:.3f})"
               if status != "pass" else "")
    return with_fix(Check(GROUP, "gap", status, over, detail, message=message),
                    "the model fits its training rows far better than new ones: try a simpler family "
                    "(train.candidates), more training rows (a smaller split.test_size), or look for features "
                    "that identify training rows")


def _spread_check(name: str, cv: dict[str, Any], greater: bool, folds: int) -> Check:
    std, mean = cv.get("std"), cv.get("mean")
    if std is None or mean is None:
        return Check(GROUP, "cv_spread", "skip", None, {"reason": "no CV scores recorded", "metric": name})
    spread = std if bounded(name) else (std / abs(mean) if mean else float("inf"))
    status: Status = "fail" if spread >= SPREAD_FAIL else "warn" if spread >= SPREAD_WARN else "pass"
    spread_check = Check(GROUP, "cv_spread", status, spread,
                 {"metric": name, "cv_mean": mean, "cv_std": std, "folds": folds,
                  "kind": "absolute" if bounded(name) else "relative to the mean",
                  "thresholds": {"warn": SPREAD_WARN, "fail": SPREAD_FAIL}},
                 message=f"{name} varies across CV folds (std {std:.4f})" if status != "pass" else "")
    return with_fix(spread_check, f"scores differ a lot between folds ({folds}): more rows, or more folds "
                                  "(split.cv_folds) for a steadier estimate; check for a few groups that dominate")


def _cv_holdout_check(name: str, cv: dict[str, Any], test: float | None, greater: bool) -> Check:
    mean, std = cv.get("mean"), cv.get("std") or 0.0
    if mean is None or test is None:
        return Check(GROUP, "cv_holdout", "skip", None, {"reason": "no CV mean or holdout metric", "metric": name})
    worse = (mean - test) if greater else (test - mean)
    scale = 1.0 if bounded(name) else max(abs(mean), 1e-12)
    allowed = max(CV_HOLDOUT_SIGMAS * std, CV_HOLDOUT_MIN * scale)
    status: Status = "warn" if abs(worse) > allowed else "pass"
    found = Check(GROUP, "cv_holdout", status, worse,
                 {"metric": name, "cv_mean": mean, "cv_std": std, "holdout": test, "allowed": allowed,
                  "rule": f"|cv − holdout| ≤ max({CV_HOLDOUT_SIGMAS:g}·std, {CV_HOLDOUT_MIN:g})"},
                 message=(f"holdout {name} {test:.4f} is outside the CV range {mean:.4f} ± {allowed:.4f} "
                          "(distribution shift between training and holdout, or an optimistic CV)")
                 if status != "pass" else "")
    return with_fix(found, "compare train and test (split.strategy, split.seed); a time or group structure the "
                           "random split ignores is a common cause (data.time_column, data.group_column)")


def _baseline_check(name: str, improvement: float | None, ci: list[float] | None, baseline: str,
                    resamples: int) -> Check:
    if improvement is None:
        return Check(GROUP, "beats_baseline", "error", None,
                     {"reason": "model or baseline metric could not be computed", "metric": name})
    if ci is None:
        reason = "evaluate.bootstrap = 0" if resamples == 0 else "too many undefined bootstrap resamples"
        status: Status = "fail" if improvement <= 0 else "skip"
        return Check(GROUP, "beats_baseline", status, None if status == "skip" else improvement,
                     {"metric": name, "baseline": baseline, "improvement": improvement, "reason": reason})
    lower = ci[0]
    status = "fail" if improvement <= 0 else "warn" if lower <= 0 else "pass"
    message = {"fail": f"the model does not beat the baseline {baseline} on {name} ({improvement:+.4f})",
               "warn": f"the improvement over {baseline} on {name} ({improvement:+.4f}) is within noise "
                       f"(95% interval {ci[0]:+.4f} … {ci[1]:+.4f})", "pass": ""}[status]
    return with_fix(Check(GROUP, "beats_baseline", status, lower,
                          {"metric": name, "baseline": baseline, "improvement": improvement, "improvement_ci": ci,
                           "value_is": "lower bound of the improvement's 95% interval"}, message=message),
                    "check data.target and the features the model gets (data.drop, data.features); with few "
                    "holdout rows the interval is wide: a larger split.test_size narrows it")


def generalization_results(run: Run, model: FittedModel, splits: Splits, scores: Scores) -> list[Check | Evidence]:
    import numpy as np

    from assay.kit import (
        bootstrap_replicates,
        interval,
        known_metrics,
        metric,
        prediction_replicates,
        score_predictions,
    )

    name = run.spec.metric
    if name not in known_metrics():
        reason = {"reason": f"metric {name!r} has no bootstrap here", "metric": name}
        return [Check(GROUP, n, "skip", None, reason) for n in ("gap", "cv_spread", "cv_holdout", "beats_baseline")]
    if getattr(metric(name), "needs", "") == "query":
        return ranking_results(run, model, splits, scores)
    greater = metric(name).greater_is_better
    resamples = run.spec.evaluate.bootstrap
    train_rows = scores.train.rows
    y_te, y_tr = np.asarray(scores.test.y), np.asarray(scores.train.y)
    pred_te, proba_te, classes = scores.test.scored()
    pred_tr, proba_tr, _ = scores.train.scored()
    base_name = scores.baseline.name
    bpred, bproba, bclasses = scores.baseline_test.scored()
    positive = run.spec.data.positive_label
    _, proba_tr = _positive_first(classes, proba_tr, positive)
    classes, proba_te = _positive_first(classes, proba_te, positive)
    bclasses, bproba = _positive_first(bclasses, bproba, positive)
    point = lambda yy, pp, pr, cl: score_predictions(yy, pp, pr, cl, (name,)).get(name)  # noqa: E731
    test_v, train_v, base_v = point(y_te, pred_te, proba_te, classes), point(y_tr, pred_tr, proba_tr, classes), \
        point(y_te, bpred, bproba, bclasses)
    sign = 1.0 if greater else -1.0
    improvement = sign * (test_v - base_v) if test_v is not None and base_v is not None else None
    test_ci = gap_ci = base_ci = impr_ci = None
    if resamples > 0:
        # the holdout's replicates, model and baseline on the same resamples (shared with other plugins)
        t, b = prediction_replicates([scores.test, scores.baseline_test], name, resamples, run.seed, positive)
        tr = bootstrap_replicates(name, y_tr, pred_tr, proba_tr, classes, resamples, [run.seed, 5])
        test_ci, base_ci = interval(t), interval(b)
        gap_ci, impr_ci = interval(tr - t), interval(sign * (t - b))
    cv = dict(model.cv.get(name, {}))
    return [
        Evidence("metrics", {"test": {f"{name}_ci": test_ci}}),
        Evidence("gap", {f"{name}_ci": gap_ci}),
        Evidence("baseline", {"test": {f"{name}_ci": base_ci},
                              "improvement": {name: improvement, f"{name}_ci": impr_ci}}),
        Evidence("bootstrap", {"resamples": resamples, "level": LEVEL, "method": "percentile",
                               "seed": [run.seed, 5], "metric": name,
                               "paired": "model and baseline share each holdout resample"}),
        _gap_check(name, train_v, test_v, cv, gap_ci, greater, (len(train_rows), len(splits.train))),
        _spread_check(name, cv, greater, len(splits.folds)),
        _cv_holdout_check(name, cv, test_v, greater),
        _baseline_check(name, improvement, impr_ci, base_name, resamples),
    ]


# --------------------------------------------------------------------------- ranking


def query_resamples(queries: np.ndarray, resamples: int, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Cluster bootstrap: ``(rows, new query ids)`` per resample, drawing whole queries with replacement."""
    import numpy as np

    codes = np.unique(queries, return_inverse=True)[1].ravel()
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    n_queries = len(sizes)
    for _ in range(resamples):
        drawn = rng.integers(0, n_queries, n_queries)
        lengths = sizes[drawn]
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        yield order[np.repeat(starts[drawn], lengths) + offsets], np.repeat(np.arange(n_queries), lengths)


def ranking_results(run: Run, model: FittedModel, splits: Splits, scores: Scores) -> list[Check | Evidence]:
    """The same evidence for per-query metrics, resampling whole queries (``data.group_column``)."""
    import numpy as np

    from assay.kit import interval, metric

    name = run.spec.metric
    fn = metric(name).fn
    column = run.spec.data.group_column
    frame = splits.dataset.frame
    q_te = frame[column].to_numpy()[scores.test.rows]
    q_tr = frame[column].to_numpy()[scores.train.rows]
    y_te, y_tr = np.asarray(scores.test.y, dtype=float), np.asarray(scores.train.y, dtype=float)
    s_te, s_tr = np.asarray(scores.test.pred, dtype=float), np.asarray(scores.train.pred, dtype=float)
    base_name = scores.baseline.name
    b_te = np.asarray(scores.baseline_test.pred, dtype=float)

    def score(y: np.ndarray, s: np.ndarray, q: np.ndarray) -> float:
        value = float(fn(y, s, q))
        return value if np.isfinite(value) else np.nan

    test_v, train_v, base_v = score(y_te, s_te, q_te), score(y_tr, s_tr, q_tr), score(y_te, b_te, q_te)
    as_none = lambda v: None if not np.isfinite(v) else v  # noqa: E731
    improvement = as_none(test_v - base_v)
    resamples = run.spec.evaluate.bootstrap
    rng = np.random.default_rng([run.seed, 5])
    test_ci = gap_ci = base_ci = impr_ci = None
    if resamples > 0:
        pairs = [(score(y_te[r], s_te[r], q), score(y_te[r], b_te[r], q)) for r, q in query_resamples(q_te, resamples, rng)]
        t, b = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        tr = np.array([score(y_tr[r], s_tr[r], q) for r, q in query_resamples(q_tr, resamples, rng)])
        test_ci, base_ci, gap_ci, impr_ci = interval(t), interval(b), interval(tr - t), interval(t - b)
    cv = dict(model.cv.get(name, {}))
    test_n, train_n = as_none(test_v), as_none(train_v)
    return [
        Evidence("metrics", {"test": {f"{name}_ci": test_ci}}),
        Evidence("gap", {f"{name}_ci": gap_ci}),
        Evidence("baseline", {"test": {f"{name}_ci": base_ci}, "improvement": {name: improvement, f"{name}_ci": impr_ci}}),
        Evidence("bootstrap", {"resamples": resamples, "level": LEVEL, "method": "percentile", "seed": [run.seed, 5],
                               "metric": name, "unit": f"query ({column})",
                               "paired": "model and baseline share each holdout resample"}),
        _gap_check(name, train_n, test_n, cv, gap_ci, True, (len(q_tr), len(splits.train))),
        _spread_check(name, cv, True, len(splits.folds)),
        _cv_holdout_check(name, cv, test_n, True),
        _baseline_check(name, improvement, impr_ci, base_name, resamples),
    ]


@hookimpl
def evaluate(run: Run, model: FittedModel, splits: Splits, scores: Scores) -> list[Check | Evidence]:
    """Train/CV/holdout gaps, CV spread and bootstrap intervals on the primary metric."""
    return guarded(GROUP, "gap", lambda: generalization_results(run, model, splits, scores))
