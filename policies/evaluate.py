"""Evaluating a policy on an evidence document: one RuleOutcome per rule (per wildcard match).

Pure and deterministic: the inputs are the evidence dict, the policy, the waivers and the
date. Fail closed: evidence that is missing, null or of the wrong type makes the rule an
``error`` outcome (which blocks the verdict) whatever its severity; only a ``when``
condition that is explicitly false makes a rule not applicable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from assay.policies import expr as ex
from assay.policies.language import Policy, Rule
from assay.policies.waivers import Waiver, active_waivers, utc_today
from assay.types import RuleOutcome

NOT_APPLICABLE = "not applicable"


def show(value: Any) -> str:
    """A short human form of a measured value or threshold."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0 or 1e-3 <= abs(value) < 1e6:
            return f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.1f}"
        return f"{value:.3g}"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if value is None:
        return "null"
    return str(value)


def _null_detail(evidence: Mapping[str, Any], concrete: ex.Path) -> str:
    """The reason a null value was recorded, if the evidence says (a sibling ``detail``)."""
    parent = ex.Path(concrete.segments[:-1])
    try:
        node = ex.lookup(evidence, parent) if parent.segments else evidence
    except ex.Unresolved:
        return ""
    if not isinstance(node, Mapping):
        return ""
    for key in ("detail", "reason", "message"):
        value = node.get(key)
        if value:
            text = value if isinstance(value, str) else str(value)
            return text if len(text) <= 200 else text[:197] + "..."
    return ""


def _conditions_hold(rule: Rule, evidence: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the rule applies; raises Unresolved/EvalError when that cannot be decided."""
    for cond in rule.when:
        if cond.op is None:
            assert isinstance(cond.left, ex.Ref)
            try:
                value = ex.lookup(evidence, cond.left.path)
            except ex.Unresolved:
                return False, f"{NOT_APPLICABLE}: no evidence at {cond.left.path} (when = {cond})"
            if value in ([], {}, "", False):
                return False, f"{NOT_APPLICABLE}: {cond.left.path} is {show(value) if value != {} else '{}'} (when = {cond})"
            continue
        ctx = ex.Context(evidence)
        assert cond.right is not None
        left, right = ex.evaluate(cond.left, ctx), ex.evaluate(cond.right, ctx)
        if not ex.compare(left, cond.op, right):
            return False, f"{NOT_APPLICABLE}: {cond} is false ({show(left)} {cond.op} {show(right)})"
    return True, ""


def _outcome(rule: Rule, outcome_id: str, outcome: str, path: str, measured: Any, threshold: Any,
             reason: str) -> RuleOutcome:
    return RuleOutcome(id=outcome_id, outcome=outcome, path=path, measured=measured,
                       threshold=threshold, op=rule.op, severity=rule.severity, description=rule.description,
                       reason=reason)


def evaluate_rule(rule: Rule, evidence: Mapping[str, Any]) -> list[RuleOutcome]:
    """Evaluate one rule (before waivers): one outcome, or one per wildcard match."""
    try:
        applies, why_not = _conditions_hold(rule, evidence)
    except (ex.Unresolved, ex.EvalError) as exc:
        return [_outcome(rule, rule.id, "error", str(rule.path), None, None,
                         f"cannot decide whether the rule applies (when = {', '.join(map(str, rule.when))}): {exc}")]
    if not applies:
        return [_outcome(rule, rule.id, "pass", str(rule.path), None, None, why_not)]
    try:
        matches = ex.expand(evidence, rule.path)
    except ex.Unresolved as exc:
        return [_outcome(rule, rule.id, "error", str(rule.path), None, None, f"missing evidence: {exc.reason}")]
    if not matches:
        if rule.path.has_wildcard:
            reason = f"missing evidence: nothing matches {ex.substitute(rule.path, evidence)}"
        else:
            try:
                ex.lookup(evidence, rule.path)
                reason = f"missing evidence at {rule.path}"
            except ex.Unresolved as exc:
                reason = f"missing evidence: {exc.reason}"
        return [_outcome(rule, rule.id, "error", str(ex.substitute(rule.path, evidence)), None, None, reason)]
    return [_evaluate_match(rule, evidence, concrete, keys, value) for concrete, keys, value in matches]


def _evaluate_match(rule: Rule, evidence: Mapping[str, Any], concrete: ex.Path, keys: tuple[str, ...],
                    value: Any) -> RuleOutcome:
    outcome_id = f"{rule.id}[{'.'.join(keys)}]" if rule.path.has_wildcard else rule.id
    where = str(concrete)
    measured = value
    if rule.bound is not None:
        last = concrete.segments[-1]
        ci_path = ex.Path((*concrete.segments[:-1], f"{last}_ci"))
        where = f"{ci_path}[{0 if rule.bound == 'lower' else 1}]"
        try:
            interval = ex.lookup(evidence, ci_path)
        except ex.Unresolved as exc:
            return _outcome(rule, outcome_id, "error", where, None, None,
                            f"missing evidence: {exc.reason} (the rule uses the {rule.bound} confidence bound)")
        if interval is None:
            detail = _null_detail(evidence, ci_path)
            return _outcome(rule, outcome_id, "error", where, None, None,
                            f"{ci_path} is null (could not be computed){': ' + detail if detail else ''}")
        if not (isinstance(interval, list) and len(interval) == 2):
            return _outcome(rule, outcome_id, "error", where, interval, None,
                            f"{ci_path} should be [lower, upper], got {show(interval)}")
        measured = interval[0 if rule.bound == "lower" else 1]
        value = measured
    if value is None:
        detail = _null_detail(evidence, concrete)
        return _outcome(rule, outcome_id, "error", where, None, None,
                        f"{where} is null (could not be computed){': ' + detail if detail else ''}")
    ctx = ex.Context(evidence, rule.baseline_path(concrete))
    try:
        threshold = ex.evaluate(rule.threshold, ctx)
    except ex.Unresolved as exc:
        return _outcome(rule, outcome_id, "error", where, measured, None,
                        f"cannot compute the threshold {rule.threshold_text}: {exc.reason}")
    except ex.EvalError as exc:
        return _outcome(rule, outcome_id, "error", where, measured, None,
                        f"cannot compute the threshold {rule.threshold_text}: {exc}")
    try:
        holds = ex.compare(measured, rule.op, threshold)
    except ex.EvalError as exc:
        return _outcome(rule, outcome_id, "error", where, measured, threshold,
                        f"cannot compare {where} = {show(measured)} {rule.op} {show(threshold)}: {exc}")
    derived = "" if isinstance(rule.threshold, ex.Literal) else f" ({rule.threshold_text})"
    statement = f"{where} = {show(measured)}"
    if holds:
        return _outcome(rule, outcome_id, "pass", where, measured, threshold,
                        f"{statement} meets {rule.op} {show(threshold)}{derived}")
    return _outcome(rule, outcome_id, rule.severity, where, measured, threshold,
                    f"{statement}, needs {rule.op} {show(threshold)}{derived}")


def apply_waivers(outcomes: Iterable[RuleOutcome], rule_of: Mapping[str, str],
                  waivers: Sequence[Waiver]) -> list[RuleOutcome]:
    """Turn block/warn/error outcomes covered by a waiver into ``waived`` (keeping why)."""
    result = []
    for outcome in outcomes:
        waiver = None
        if outcome.outcome in ("block", "warn", "error"):
            base = rule_of.get(outcome.id, outcome.id)
            waiver = next((w for w in waivers if w.covers(outcome.id, base)), None)
        if waiver is None:
            result.append(outcome)
            continue
        result.append(RuleOutcome(id=outcome.id, outcome="waived", path=outcome.path, measured=outcome.measured,
                                  threshold=outcome.threshold, op=outcome.op, severity=outcome.severity,
                                  description=outcome.description,
                                  reason=f"{waiver.describe()} (was {outcome.outcome}: {outcome.reason})"))
    return result


def evaluate_policy(policy: Policy, evidence: Mapping[str, Any], *, stage: str = "train",
                    waivers: Iterable[Waiver] = (), today: date | None = None) -> list[RuleOutcome]:
    """Evaluate ``policy``'s rules of ``stage`` on ``evidence``, applying the waivers in force.

    :param waivers: waivers to consider; only those for the evidence's model
        (``model.ref``) that have not expired on ``today`` apply.
    :param today: the UTC date for waiver expiry (default: today).
    """
    outcomes: list[RuleOutcome] = []
    rule_of: dict[str, str] = {}
    for rule in policy.rules_for(stage):
        for outcome in evaluate_rule(rule, evidence):
            rule_of[outcome.id] = rule.id
            outcomes.append(outcome)
    model = evidence.get("model")
    model_ref = model.get("ref") if isinstance(model, Mapping) else None
    in_force = active_waivers(waivers, model_ref if isinstance(model_ref, str) else None, today or utc_today())
    if model_ref is None:  # a waiver is for one model version: without one in the evidence, none applies
        in_force = []
    return apply_waivers(outcomes, rule_of, in_force)
