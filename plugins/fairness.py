"""Bias checks (``evaluate``): fairlearn ``MetricFrame`` per sensitive feature and intersection.

For each column of ``data.sensitive`` (role ``sensitive``: kept out of the features, still
in the frame) and each intersection of up to three of them (``fairness["sex&race"]``),
on the holdout:

- classification (binary, multiclass, text): per group ``count``, ``selection_rate``,
  ``false_positive_rate``, ``false_negative_rate``, ``accuracy`` and the primary metric;
  ``demographic_parity_difference`` / ``_ratio``, ``equalized_odds_difference`` (the
  larger of the TPR and FPR gaps) and ``selection_rate_ratio`` (lowest / highest
  selection rate: the four-fifths rule). Multiclass: each class one-vs-rest, the worst
  class reported (``by_class`` has them all). "Selected" means predicted as
  ``data.positive_label`` (default: the second class in sorted order).
- regression: per group ``count``, ``mae``, ``mean_error`` (prediction − truth) and the
  primary metric; ``mae_max_gap``, ``mae_ratio``, ``mean_error_max_gap`` and
  ``relative_mae_gap`` (``mae_max_gap`` / overall MAE).
- ranking (``data.group_column`` is the query): ``exposure`` per group (mean of
  1 / log2(1 + rank) of its items within their query, by model score), ``relevance``,
  and ``exposure_ratio``.

Groups with fewer than ``evaluate.min_group_size`` holdout rows are listed in
``small_groups``, marked ``small`` in ``by_group`` and left out of every difference and
ratio — never silently: a ``small_groups@<feature>`` check warns and names them. With
fewer than two groups left a disparity is ``null`` (``reason`` says why), which the gate
treats as missing evidence. Numeric sensitive columns with more than 10 distinct values
are cut into 5 quantile bins.

Every disparity has a 95 % percentile bootstrap interval (``<name>_ci``) from
``evaluate.bootstrap`` resamples of the holdout. For classification the disparities
depend only on the counts of (group, truth, decision) cells, so a resample is one
multinomial draw over those cells — exactly a row bootstrap, at a cost independent of
the row count. The same cell counts, as sample weights, are what ``MetricFrame`` sees:
the numbers equal fairlearn's on the raw rows.

Checks (group ``fairness``; ``<f>`` is the feature or intersection key):

==========================  ==================================  ======================  ==========
check                       value                               warn                    fail
==========================  ==========================================================  ==========
``selection_rate_ratio@f``  lowest / highest selection rate     ≥ 0.8 but the interval  < 0.8
                                                                reaches below 0.8, or
                                                                too few groups
``equalized_odds@f``        equalized odds difference           > 0.1                   > 0.2
``error_gap@f``             regression: relative MAE gap        > 0.2                   > 0.5
``exposure_ratio@f``        ranking: lowest / highest exposure  < 0.8                   < 0.5
``small_groups@f``          number of groups too small          ≥ 1                     —
==========================  ==================================  ======================  ==========
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from assay import Check, Evidence, Status, hookimpl
from assay.plugins.datachecks import guarded, with_fix

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from assay import FittedModel, Run, Scores, Splits

GROUP = "fairness"
FOUR_FIFTHS = 0.8
EO_WARN, EO_FAIL = 0.1, 0.2
ERROR_GAP_WARN, ERROR_GAP_FAIL = 0.2, 0.5
EXPOSURE_WARN, EXPOSURE_FAIL = 0.8, 0.5
MAX_INTERSECTION = 3
NUMERIC_DISTINCT, NUMERIC_BINS = 10, 5
MISSING = "(missing)"
BOOT_CELLS = 2_000_000


def feature_sets(sensitive: Sequence[str]) -> list[tuple[str, ...]]:
    """Each sensitive column, then every intersection of up to three of them."""
    cols = list(dict.fromkeys(sensitive))
    out: list[tuple[str, ...]] = [(c,) for c in cols]
    for size in range(2, min(MAX_INTERSECTION, len(cols)) + 1):
        out += list(itertools.combinations(cols, size))
    return out


def check_name(kind: str, key: str) -> str:
    return f"{kind}@{re.sub(r'[^A-Za-z0-9_&-]', '_', key)}"


def group_labels(frame: pd.DataFrame, cols: Sequence[str]) -> np.ndarray:
    """One label per row: the group's values joined by ``&`` (numeric columns binned)."""
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


def _nan_to_none(x: Any) -> float | None:
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


def _interval(values: np.ndarray) -> list[float] | None:
    from assay.kit import interval

    return interval(values)


# --------------------------------------------------------------------------- classification


def _weighted_count(y_true: Any, y_pred: Any, sample_weight: Any) -> float:
    import numpy as np

    return float(np.sum(sample_weight))


def binary_cells(labels: np.ndarray, y01: np.ndarray, p01: np.ndarray) -> pd.DataFrame:
    """Counts of (group, truth, decision): everything the rate metrics depend on."""
    import pandas as pd

    frame = pd.DataFrame({"group": labels, "y": y01.astype("int8"), "p": p01.astype("int8")})
    return frame.groupby(["group", "y", "p"], sort=True, observed=True).size().rename("n").reset_index()


def metric_frame(cells: pd.DataFrame) -> pd.DataFrame:
    """fairlearn ``MetricFrame.by_group`` of the rate metrics, from cell counts as sample weights."""
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
    """Disparities over the eligible groups, with multinomial-bootstrap intervals."""

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
    out.update({"demographic_parity_difference_ci": _interval(b_diff),
                "demographic_parity_ratio_ci": _interval(b_ratio),
                "equalized_odds_difference_ci": _interval(b_eo),
                "selection_rate_ratio_ci": _interval(b_ratio)})
    return out


def per_group_metric(name: str, labels: np.ndarray, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None,
                     classes: np.ndarray) -> dict[str, float | None]:
    """The primary metric within each group (None where undefined, e.g. one class)."""
    import numpy as np

    from assay.kit import score_predictions

    out: dict[str, float | None] = {}
    codes, uniques = _codes(labels)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    for i, g in enumerate(uniques):
        idx = order[bounds[i]:bounds[i + 1]]
        with _quiet():
                out[str(g)] = score_predictions(y[idx], pred[idx], proba[idx] if proba is not None else None,
                                            classes, (name,)).get(name)
    return out


def _codes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    codes, uniques = pd.factorize(labels, sort=True)
    return codes, uniques


def classification_fairness(y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: np.ndarray,
                            labels: np.ndarray, positive: Any, metric_name: str, min_size: int, resamples: int,
                            rng: np.random.Generator) -> dict[str, Any]:
    """The ``fairness[<key>]`` evidence for a classifier's holdout predictions."""
    import numpy as np

    binary = len(classes) == 2
    targets = [positive] if binary else list(classes)
    codes, uniques = _codes(labels)
    sizes = np.bincount(codes, minlength=len(uniques))
    correct = np.bincount(codes, weights=(y == pred).astype(float), minlength=len(uniques))
    groups = [str(g) for g in uniques]
    small = [g for g, n in zip(groups, sizes, strict=True) if n < min_size]
    eligible = [g for g in groups if g not in small]
    by_group: dict[str, dict[str, Any]] = {
        g: {"count": int(n), "accuracy": _nan_to_none(c / n) if n else None, "small": g in small}
        for g, n, c in zip(groups, sizes, correct, strict=True)}
    metric_by_group = per_group_metric(metric_name, labels, y, pred, proba, classes)
    for g in groups:
        by_group[g][metric_name] = metric_by_group.get(g)
    by_class: dict[str, Any] = {}
    for c in targets:
        cells = binary_cells(labels, y == c, pred == c)
        table = metric_frame(cells)
        rates = {str(g): {k: _nan_to_none(v) for k, v in row.items() if k != "count"} for g, row in table.iterrows()}
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
    """``(resamples, groups)`` bootstrap means of ``values`` per group (row bootstrap, chunked)."""
    import numpy as np

    n = len(values)
    out = np.empty((resamples, n_groups))
    step = max(1, BOOT_CELLS // max(n, 1))
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
    import numpy as np
    from fairlearn.metrics import MetricFrame, count
    from sklearn.metrics import mean_absolute_error

    def mean_error(y_true: Any, y_pred: Any) -> float:
        return float(np.mean(np.asarray(y_pred, dtype=float) - np.asarray(y_true, dtype=float)))

    yf, pf = y.astype(float), pred.astype(float)
    with _quiet():
        table = MetricFrame(metrics={"count": count, "mae": mean_absolute_error, "mean_error": mean_error},
                            y_true=yf, y_pred=pf, sensitive_features=labels).by_group
    codes, uniques = _codes(labels)
    groups = [str(g) for g in uniques]
    metric_by_group = per_group_metric(metric_name, labels, yf, pf, None, np.asarray([]))
    by_group = {str(g): {"count": int(row["count"]), "mae": _nan_to_none(row["mae"]),
                         "mean_error": _nan_to_none(row["mean_error"]), metric_name: metric_by_group.get(str(g)),
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
        result.update({"mae_max_gap_ci": _interval(d_mae), "mae_ratio_ci": _interval(r_mae),
                       "mean_error_max_gap_ci": _interval(d_err),
                       "relative_mae_gap_ci": _interval(d_mae / overall) if overall > 0 else None})
    else:
        result.update({f"{k}_ci": None for k in keys})
    result.update({"by_group": by_group, "small_groups": small, "groups_judged": [groups[i] for i in eligible_idx],
                   "min_group_size": min_size, "metric": metric_name, "rows": len(y)})
    if mae_gap is None:
        result["reason"] = f"only {len(eligible_idx)} group(s) with at least {min_size} holdout rows"
    return result


def exposures(query: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Position-based exposure 1 / log2(1 + rank) of each item within its query (rank 1 = top score)."""
    import numpy as np
    import pandas as pd

    ranks = pd.Series(-score).groupby(pd.Series(query).to_numpy()).rank(method="first").to_numpy()
    return 1.0 / np.log2(1.0 + ranks)


def ranking_fairness(query: np.ndarray, score: np.ndarray, relevance: np.ndarray, labels: np.ndarray,
                     min_size: int, resamples: int, rng: np.random.Generator) -> dict[str, Any]:
    import numpy as np

    expo = exposures(query, score)
    codes, uniques = _codes(labels)
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
        result.update({"exposure_ratio_ci": _interval(r), "exposure_max_gap_ci": _interval(d)})
    else:
        result.update({"exposure_ratio_ci": None, "exposure_max_gap_ci": None})
    result.update({"by_group": {g: {"count": int(n), "exposure": float(e), "relevance": float(r), "small": g in small}
                                for g, n, e, r in zip(groups, sizes, mean_expo, mean_rel, strict=True)},
                   "small_groups": small, "groups_judged": [groups[i] for i in eligible_idx],
                   "min_group_size": min_size, "rows": len(score)})
    if ratio is None:
        result["reason"] = f"only {len(eligible_idx)} group(s) with at least {min_size} holdout rows"
    return result


# --------------------------------------------------------------------------- checks


def _group_size_fix(key: str, ev: dict[str, Any], test_size: float | None) -> str:
    counts = ", ".join(f"{g} {v.get('count')}" for g, v in (ev.get("by_group") or {}).items() if isinstance(v, dict))
    now = f" (now {test_size:g})" if test_size is not None else ""
    return (f"give every group of {key} at least {ev.get('min_group_size')} holdout rows: raise split.test_size{now}, "
            f"lower evaluate.min_group_size (now {ev.get('min_group_size')}), or merge rare groups in the source; "
            f"holdout rows per group: {counts}")


def _disparity_fix(key: str) -> str:
    return (f"the model treats groups of {key} differently: check the training labels for bias against a group and "
            f"the features that stand in for {key}; an accepted exception is recorded with assay waive")


def checks_for(key: str, ev: dict[str, Any], task: str, test_size: float | None = None) -> list[Check]:
    out: list[Check] = []
    small = ev.get("small_groups", [])
    sizes = {g: ev["by_group"][g]["count"] for g in small}
    out.append(Check(GROUP, check_name("small_groups", key), "warn" if small else "pass", len(small),
                     {"groups": sizes, "min_group_size": ev.get("min_group_size"),
                      "note": "left out of every difference and ratio"},
                     message=(f"{key}: groups too small to judge (< {ev.get('min_group_size')} holdout rows): "
                              + ", ".join(f"{g} ({n})" for g, n in sizes.items())) if small else ""))
    if "selection_rate_ratio" in ev:
        ratio, ci = ev.get("selection_rate_ratio"), ev.get("selection_rate_ratio_ci")
        if ratio is None:
            out.append(Check(GROUP, check_name("selection_rate_ratio", key), "warn", None,
                             {"reason": ev.get("reason", "")}, message=f"{key}: {ev.get('reason', '')}"))
        else:
            rates = {g: v.get("selection_rate") for g, v in ev["by_group"].items() if not v.get("small")}
            status: Status = "fail" if ratio < FOUR_FIFTHS else "warn" if ci is not None and ci[0] < FOUR_FIFTHS else "pass"
            shown = ", ".join(f"{g} {r:.3f}" for g, r in rates.items() if isinstance(r, float))
            message = {"fail": f"{key}: selection rate ratio {ratio:.3f} is below the four-fifths rule "
                               f"(selection rates: {shown})",
                       "warn": f"{key}: selection rate ratio {ratio:.3f}, but its interval reaches {ci[0]:.3f}"
                               if ci else "", "pass": ""}[status]
            out.append(Check(GROUP, check_name("selection_rate_ratio", key), status, ratio,
                             {"interval": ci, "selection_rates": rates, "threshold": FOUR_FIFTHS,
                              "class": ev.get("selection_rate_ratio_class")}, message=message))
        eo = ev.get("equalized_odds_difference")
        status = "warn" if eo is None else "fail" if eo > EO_FAIL else "warn" if eo > EO_WARN else "pass"
        out.append(Check(GROUP, check_name("equalized_odds", key), status, eo,
                         {"interval": ev.get("equalized_odds_difference_ci"),
                          "thresholds": {"warn": EO_WARN, "fail": EO_FAIL}, "reason": ev.get("reason", "")},
                         message=(f"{key}: equalized odds difference {eo:.3f}" if eo is not None
                                  else f"{key}: {ev.get('reason', '')}") if status != "pass" else ""))
    if "relative_mae_gap" in ev:
        gap = ev.get("relative_mae_gap")
        status = "warn" if gap is None else "fail" if gap > ERROR_GAP_FAIL else "warn" if gap > ERROR_GAP_WARN else "pass"
        out.append(Check(GROUP, check_name("error_gap", key), status, gap,
                         {"mae_by_group": {g: v["mae"] for g, v in ev["by_group"].items()},
                          "interval": ev.get("relative_mae_gap_ci"), "overall_mae": ev.get("overall_mae"),
                          "thresholds": {"warn": ERROR_GAP_WARN, "fail": ERROR_GAP_FAIL}},
                         message=(f"{key}: MAE differs between groups by {gap:.1%} of the overall MAE"
                                  if gap is not None else f"{key}: {ev.get('reason', '')}") if status != "pass" else ""))
    if "exposure_ratio" in ev:
        ratio = ev.get("exposure_ratio")
        status = "warn" if ratio is None else "fail" if ratio < EXPOSURE_FAIL else "warn" if ratio < EXPOSURE_WARN \
            else "pass"
        out.append(Check(GROUP, check_name("exposure_ratio", key), status, ratio,
                         {"exposure_by_group": {g: v["exposure"] for g, v in ev["by_group"].items()},
                          "interval": ev.get("exposure_ratio_ci"),
                          "thresholds": {"warn_below": EXPOSURE_WARN, "fail_below": EXPOSURE_FAIL}},
                         message=(f"{key}: exposure ratio {ratio:.3f}" if ratio is not None
                                  else f"{key}: {ev.get('reason', '')}") if status != "pass" else ""))
    size_fix = _group_size_fix(key, ev, test_size)
    return [with_fix(c, size_fix if c.name.startswith("small_groups@") or c.value is None else _disparity_fix(key))
            for c in out]


def fairness_results(run: Run, model: FittedModel, splits: Splits, scores: Scores) -> list[Check | Evidence]:
    import numpy as np

    sensitive = list(run.spec.data.sensitive)
    if not sensitive:
        return [Check(GROUP, "sensitive_features", "skip", None, {"reason": "data.sensitive is empty"})]
    dataset = splits.dataset
    test = splits.part("test")
    y = np.asarray(scores.test.y)
    pred, proba, classes = scores.test.scored()
    min_size = run.spec.evaluate.min_group_size
    resamples = run.spec.evaluate.bootstrap
    name = run.spec.metric
    positive = None
    if len(classes) == 2:
        wanted = run.spec.data.positive_label
        positive = next((c for c in classes if str(c) == wanted), classes[1]) if wanted else classes[1]
    evidence: dict[str, Any] = {}
    out: list[Check | Evidence] = []
    for i, cols in enumerate(feature_sets(sensitive)):
        key = "&".join(cols)
        rng = np.random.default_rng([run.seed, 7, i])
        labels = group_labels(test, cols)
        if dataset.task == "regression":
            ev = regression_fairness(y, pred, labels, name, min_size, resamples, rng)
        elif dataset.task == "ranking":
            qcol = run.spec.data.group_column
            ev = ranking_fairness(test[qcol].astype(str).to_numpy(), pred.astype(float), y, labels, min_size,
                                  resamples, rng)
        else:
            ev = classification_fairness(y, pred, proba, classes, labels, positive, name, min_size, resamples, rng)
        ev["features"] = list(cols)
        evidence[key] = ev
        out += checks_for(key, ev, dataset.task, run.spec.split.test_size)
    # data.sensitive switches the gate's fairness rules on; said here too, so they apply even
    # when the data checks plugin is blocked
    return [Evidence("data", {"sensitive": sensitive}), Evidence("fairness", evidence), *out]


@hookimpl
def evaluate(run: Run, model: FittedModel, splits: Splits, scores: Scores) -> list[Check | Evidence]:
    """Group metrics and disparities per sensitive feature and intersection (fairlearn)."""
    return guarded(GROUP, "fairness", lambda: fairness_results(run, model, splits, scores))
