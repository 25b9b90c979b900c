"""The policy's thresholds for drift tests: what a monitoring run's rules ask of each test.

A monitoring plugin runs its drift tests with the thresholds of the policy that judges the
batch, so the tests and the verdict cannot disagree; the ``assay monitor --html`` page reads
the same rules to say how the tests were configured. Both read them here:

* the drift-share rule (``drift.share_drifted <= T``, stage ``monitor``) gives the dataset
  drift threshold (:func:`share_threshold`). A test library that calls the dataset drifted when
  the share is *at least* its threshold (evidently does) would block a share of exactly ``T``
  which ``<=`` allows; when such a share is possible (``k/n == T`` for the ``n`` columns tested)
  the next float above ``T`` is used, so the boundary falls on the same side for both;
* per-column rules on ``drift.columns.COLUMN.score`` (or ``drift.columns.*.score``) with a
  number as threshold give that column's (or every column's) test threshold
  (:func:`column_thresholds`): a p-value below it, or a distance at or above it, is drift for
  that column, and ``drift.share_drifted`` counts those same per-column results.

Pure functions of the policy's rules (a ``Policy`` or a policy document), cheap to import.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SHARE_PATH = "drift.share_drifted"
COLUMN_PREFIX, COLUMN_SUFFIX = "drift.columns.", ".score"


def threshold_number(value: Any) -> float | None:
    """A rule's threshold, or any recorded value, as a number (``None`` for a boolean, text that is no
    number, or nothing).

    .. versionadded:: 0.1
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def monitor_rules(policy: Any) -> list[dict[str, Any]]:
    """The policy's monitor-stage rules as JSON (from a Policy object or a policy document).

    .. versionadded:: 0.1
    """
    if policy is None:
        return []
    if hasattr(policy, "rules_for"):
        return [r.to_json() for r in policy.rules_for("monitor")]
    rules = policy.get("rules", []) if isinstance(policy, Mapping) else []
    return [dict(r) for r in rules if isinstance(r, Mapping) and r.get("stage") == "monitor"]


def share_threshold(rules: Iterable[Mapping[str, Any]], tested: int) -> dict[str, Any] | None:
    """evidently's ``drift_share`` for the policy's blocking drift-share rule (the strictest), or None.

    .. versionadded:: 0.1
    """
    best: dict[str, Any] | None = None
    for rule in rules:
        t = threshold_number(rule.get("threshold"))
        if rule.get("path") != SHARE_PATH or rule.get("op") not in ("<=", "<") or t is None \
                or rule.get("severity", "block") != "block":
            continue
        share = t
        if rule["op"] == "<=" and any(k / tested == t for k in range(tested + 1)):
            share = math.nextafter(t, math.inf)  # evidently: drifted when share >= drift_share
        if best is None or share < best["drift_share"]:
            best = {"rule": rule.get("id"), "op": rule["op"], "threshold": t, "drift_share": share}
    return best


def column_thresholds(rules: Iterable[Mapping[str, Any]]) -> tuple[float | None, dict[str, float], list[str]]:
    """Per-column test thresholds from ``drift.columns.COLUMN.score`` rules: (every column's, per column, rule ids)."""
    every: float | None = None
    per_column: dict[str, float] = {}
    ids: list[str] = []
    for rule in rules:
        path, t = str(rule.get("path", "")), threshold_number(rule.get("threshold"))
        if not (path.startswith(COLUMN_PREFIX) and path.endswith(COLUMN_SUFFIX)) or t is None:
            continue
        column = path[len(COLUMN_PREFIX):-len(COLUMN_SUFFIX)]
        if not column:
            continue
        ids.append(str(rule.get("id")))
        if column == "*":
            every = t
        else:
            per_column[column] = t
    return every, per_column, ids


def drift_options(policy: Any, tested: Sequence[str]) -> dict[str, Any]:
    """The dataset drift test's options from the policy's monitor rules.

    ``drift_share``, ``threshold`` (every column's) and ``per_column_threshold`` (only the
    columns in ``tested``), as evidently's ``DataDriftPreset`` names its keyword arguments.

    .. versionadded:: 0.1
    """
    rules = monitor_rules(policy)
    options: dict[str, Any] = {}
    share = share_threshold(rules, len(tested))
    if share is not None:
        options["drift_share"] = share["drift_share"]
    every, per_column, _ = column_thresholds(rules)
    if every is not None:
        options["threshold"] = every
    wanted = {c: t for c, t in per_column.items() if c in tested}
    if wanted:
        options["per_column_threshold"] = wanted
    return options


def value_drift_threshold(policy: Any, column: str) -> float | None:
    """The policy's threshold for one column tested on its own (a sensitive column, the target).

    .. versionadded:: 0.1
    """
    every, per_column, _ = column_thresholds(monitor_rules(policy))
    return per_column.get(column, every)
