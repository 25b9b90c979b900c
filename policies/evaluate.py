"""Evaluating a policy on an evidence document: one RuleOutcome per rule (per wildcard match).

Pure and deterministic: the inputs are the evidence dict, the policy, the waivers and the
date. Fail closed: evidence that is missing, null or of the wrong type makes the rule an
``error`` outcome (which blocks the verdict) whatever its severity; only a ``when``
condition that is explicitly false makes a rule not applicable (outcome ``n/a``), as does a
check the rule reads that was skipped (status ``skip``) when the rule accepts that.

A rule that fails on a check's result carries the check's own message (what was found, in
words) and its ``detail.fix`` (the spec key or command that addresses it) in its reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import date
from typing import Any, Final

from assay.commands.waivers import Waiver, active_waivers, utc_today
from assay.kernel.types import Outcome, RuleOutcome
from assay.policies import expr as ex
from assay.policies.language import Policy, Rule

NOT_APPLICABLE = "not applicable"
#: the outcome of a rule that does not apply to the run (it neither passes nor blocks)
NA: Final = "n/a"
_TEMPLATE = re.compile(r"\$\{(\w+)\}")


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


def _outcome(rule: Rule, outcome_id: str, outcome: Outcome, path: str, measured: Any, threshold: Any,
             reason: str) -> RuleOutcome:
    return RuleOutcome(id=outcome_id, outcome=outcome, path=path, measured=measured,
                       threshold=threshold, op=rule.op, severity=rule.severity, description=rule.description,
                       reason=reason)


def expand_templates(text: str, evidence: Mapping[str, Any]) -> str:
    """``${metric}`` → the evidence's top-level string ``metric`` (left as is when there is none)."""
    def fill(match: re.Match[str]) -> str:
        value = evidence.get(match.group(1))
        return value if isinstance(value, str) and value else match.group(0)

    return _TEMPLATE.sub(fill, text) if "${" in text else text


def evaluate_rule(rule: Rule, evidence: Mapping[str, Any]) -> list[RuleOutcome]:
    """Evaluate one rule (before waivers): one outcome, or one per wildcard match."""
    return [replace(o, path=expand_templates(o.path, evidence), reason=expand_templates(o.reason, evidence))
            for o in _evaluate_rule(rule, evidence)]


def _evaluate_rule(rule: Rule, evidence: Mapping[str, Any]) -> list[RuleOutcome]:
    try:
        applies, why_not = _conditions_hold(rule, evidence)
    except (ex.Unresolved, ex.EvalError) as exc:
        return [_outcome(rule, rule.id, "error", str(rule.path), None, None,
                         f"cannot decide whether the rule applies (when = {', '.join(map(str, rule.when))}): {exc}")]
    if not applies:
        return [_outcome(rule, rule.id, NA, str(rule.path), None, None, why_not)]
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
        reason = f"{where} is null (could not be computed){': ' + detail if detail else ''}"
        return _outcome(rule, outcome_id, "error", where, None, None, with_fix(related_check(evidence, concrete), reason))
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
    check = related_check(evidence, concrete)
    if holds:
        if check is not None and measured == "skip" and concrete.segments[-1] == "status":
            why = _text((check.get("detail") or {}).get("reason")) or _text(check.get("message"))
            return _outcome(rule, outcome_id, NA, where, measured, threshold,
                            f"{NOT_APPLICABLE}: the check was skipped{f' ({why})' if why else ''}")
        return _outcome(rule, outcome_id, "pass", where, measured, threshold,
                        f"{statement} meets {rule.op} {show(threshold)}{derived}")
    return _outcome(rule, outcome_id, rule.severity, where, measured, threshold,
                    explain(check, f"{statement}, needs {rule.op} {show(threshold)}{derived}"))


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def related_check(evidence: Mapping[str, Any], concrete: ex.Path) -> Mapping[str, Any] | None:
    """The check result that explains the value at ``concrete``, if there is one.

    ``checks.G.N.<field>`` is check ``G.N`` itself; a measurement ``S.K.M`` (e.g.
    ``fairness.sex.selection_rate_ratio``) is explained by check ``checks.S["M@K"]``, the
    name the bundled checks give a measurement per key; ``gap.M`` by the generalization
    check ``gap`` when that measured metric ``M``.
    """
    segs = [str(s) for s in concrete.segments]
    checks = evidence.get("checks")
    if not isinstance(checks, Mapping):
        return None
    found: Any = None
    if len(segs) >= 4 and segs[0] == "checks":
        group = checks.get(segs[1])
        found = group.get(segs[2]) if isinstance(group, Mapping) else None
    elif len(segs) == 3 and isinstance(checks.get(segs[0]), Mapping):
        found = checks[segs[0]].get(f"{segs[2]}@{re.sub(r'[^A-Za-z0-9_&-]', '_', segs[1])}")
    elif len(segs) == 2 and segs[0] == "gap" and isinstance(checks.get("generalization"), Mapping):
        found = checks["generalization"].get("gap")
        detail = found.get("detail") if isinstance(found, Mapping) else None
        found = found if isinstance(detail, Mapping) and detail.get("metric") == segs[1] else None
    return found if isinstance(found, Mapping) else None


def _detail(check: Mapping[str, Any] | None) -> Mapping[str, Any]:
    detail = check.get("detail") if check is not None else None
    return detail if isinstance(detail, Mapping) else {}


def explain(check: Mapping[str, Any] | None, statement: str) -> str:
    """A failing rule's reason: the check's message first, the measured statement, then the fix."""
    if check is None:
        return statement
    message = _text(check.get("message")) or _text(_detail(check).get("error"))
    return with_fix(check, f"{message.rstrip('.')} — {statement}" if message else statement)


def with_fix(check: Mapping[str, Any] | None, reason: str) -> str:
    """``reason``, then what to do about it when the check says (its ``detail.fix``)."""
    fix = _text(_detail(check).get("fix"))
    return f"{reason}. Fix: {fix}" if fix else reason


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
