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
The math (the groups, the disparities and their intervals) is the public kit's
(:func:`assay.kit.classification_fairness` and its siblings), so monitoring judges a batch by
the same numbers; this plugin turns them into evidence and checks.

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

import re
from typing import TYPE_CHECKING, Any

from assay import Check, Evidence, Status, hookimpl
from assay.kit import (
    classification_fairness,
    feature_sets,
    group_labels,
    guarded,
    ranking_fairness,
    regression_fairness,
    with_fix,
)

if TYPE_CHECKING:
    from assay import FittedModel, Run, Scores, Splits

GROUP = "fairness"
FOUR_FIFTHS = 0.8
EO_WARN, EO_FAIL = 0.1, 0.2
ERROR_GAP_WARN, ERROR_GAP_FAIL = 0.2, 0.5
EXPOSURE_WARN, EXPOSURE_FAIL = 0.8, 0.5


def check_name(kind: str, key: str) -> str:
    return f"{kind}@{re.sub(r'[^A-Za-z0-9_&-]', '_', key)}"


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
