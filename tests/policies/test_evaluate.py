"""Evaluating policies on evidence: fail closed, wildcards, confidence bounds, `when`, waivers, packs."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from assay.commands.waivers import Waiver, waivers_from_records
from assay.kernel.types import Verdict
from assay.policies import evaluate_policy, load_policy
from assay.policies.packs import bundled_packs

from .conftest import one_rule, policy_of

TODAY = date(2025, 6, 15)


def outcomes(policy: Any, evidence: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {o.id: o for o in evaluate_policy(policy, evidence, today=TODAY, **kw)}


def verdict(policy: Any, evidence: dict[str, Any], **kw: Any) -> Verdict:
    return Verdict.from_outcomes(evaluate_policy(policy, evidence, today=TODAY, **kw), policy.name, policy.hash)


# --------------------------------------------------------------------------- basics


def test_relative_threshold_uses_the_same_metrics_baseline(evidence: dict[str, Any]) -> None:
    policy = one_rule(path="metrics.test.${metric}", threshold=">= baseline + 0.02")
    result = outcomes(policy, evidence)["r"]
    assert (result.outcome, result.measured, result.threshold, result.path) == ("pass", 0.92, 0.52, "metrics.test.roc_auc")
    assert result.reason == "metrics.test.roc_auc = 0.92 meets >= 0.52 (baseline + 0.02)"
    evidence["baseline"]["test"]["roc_auc"] = 0.91
    blocked = outcomes(policy, evidence)["r"]
    assert blocked.outcome == "block"
    assert blocked.reason == "metrics.test.roc_auc = 0.92, needs >= 0.93 (baseline + 0.02)"


def test_multiplicative_baseline_threshold(evidence: dict[str, Any]) -> None:
    evidence["baseline"]["test"]["roc_auc"] = 1.2
    result = outcomes(one_rule(path="metrics.test.roc_auc", threshold=">= 0.8 * baseline"), evidence)["r"]
    assert result.threshold == pytest.approx(0.96)
    assert result.outcome == "block"  # 0.92 < 0.8 * 1.2


def test_warn_severity_warns_and_does_not_block(evidence: dict[str, Any]) -> None:
    policy = one_rule(path="gap.roc_auc", op="<=", threshold=0.005, severity="warn")
    assert outcomes(policy, evidence)["r"].outcome == "warn"
    assert verdict(policy, evidence).decision == "pass"


# --------------------------------------------------------------------------- fail closed


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda ev: ev["metrics"]["test"].pop("roc_auc"), "missing evidence: no evidence at metrics.test.roc_auc"),
        (lambda ev: ev.pop("metrics"), "missing evidence: no evidence at metrics.test.roc_auc (no metrics)"),
        (lambda ev: ev["metrics"]["test"].update(roc_auc=None), "metrics.test.roc_auc is null (could not be computed)"),
        (lambda ev: ev["baseline"]["test"].pop("roc_auc"),
         "cannot compute the threshold baseline + 0.02: no evidence at baseline.test.roc_auc"),
        (lambda ev: ev["baseline"]["test"].update(roc_auc=None), "baseline.test.roc_auc is null"),
        (lambda ev: ev.pop("metric"), "${metric} needs the evidence value 'metric', which is missing"),
        (lambda ev: ev["metrics"]["test"].update(roc_auc="0.9"),
         "cannot compare metrics.test.roc_auc = '0.9' >= 0.52: the measured value is '0.9', not a number"),
    ],
)
def test_missing_null_or_unusable_evidence_blocks(evidence: dict[str, Any], change: Any, reason: str) -> None:
    change(evidence)
    policy = one_rule(path="metrics.test.${metric}", threshold=">= baseline + 0.02", severity="warn")
    result = outcomes(policy, evidence)["r"]
    assert result.outcome == "error"
    assert reason in result.reason
    v = verdict(policy, evidence)
    assert v.decision == "block", "a warn rule with missing evidence still blocks: fail closed"
    assert v.reasons[0].startswith("r: ")


def test_a_null_value_reports_the_recorded_reason(evidence: dict[str, Any]) -> None:
    evidence["checks"]["leakage"]["target_proxy"] = {"status": "error", "value": None,
                                                     "detail": "AUC undefined: one class in the test split"}
    result = outcomes(one_rule(path="checks.leakage.target_proxy.value", op="<=", threshold=0.95), evidence)["r"]
    assert result.outcome == "error"
    assert result.reason == ("checks.leakage.target_proxy.value is null (could not be computed): "
                             "AUC undefined: one class in the test split")


def test_an_empty_evidence_document_blocks_every_rule() -> None:
    policy = load_policy("assay:standard", Path.cwd(), bundled_packs())
    results = evaluate_policy(policy, {}, today=TODAY)
    applicable = [o for o in results if not o.reason.startswith("not applicable")]
    assert applicable and all(o.outcome == "error" for o in applicable)
    assert Verdict.from_outcomes(results, policy.name, policy.hash).decision == "block"


# --------------------------------------------------------------------------- wildcards


def test_wildcards_evaluate_each_match_and_name_it(evidence: dict[str, Any]) -> None:
    evidence["checks"]["leakage"]["duplicates"]["status"] = "fail"
    policy = one_rule(id="no-leakage", path="checks.leakage.*.status", op="in", threshold=["pass", "warn"])
    results = outcomes(policy, evidence)
    assert set(results) == {"no-leakage[duplicates]", "no-leakage[target_proxy]"}
    assert results["no-leakage[duplicates]"].outcome == "block"
    assert results["no-leakage[duplicates]"].path == "checks.leakage.duplicates.status"
    assert results["no-leakage[target_proxy]"].outcome == "pass"


def test_two_wildcards_name_both_keys(evidence: dict[str, Any]) -> None:
    evidence["checks"]["data"]["missing"]["status"] = "error"
    results = outcomes(one_rule(id="e", path="checks.*.*.status", op="!=", threshold="'error'"), evidence)
    assert results["e[data.missing]"].outcome == "block"
    assert sum(o.outcome == "pass" for o in results.values()) == 4


def test_a_wildcard_that_matches_nothing_blocks(evidence: dict[str, Any]) -> None:
    del evidence["checks"]["leakage"]
    result = outcomes(one_rule(id="no-leakage", path="checks.leakage.*.status", op="==", threshold="'pass'"),
                      evidence)["no-leakage"]
    assert result.outcome == "error"
    assert result.reason == "missing evidence: nothing matches checks.leakage.*.status"


def test_wildcards_reach_intersections(evidence: dict[str, Any]) -> None:
    evidence["fairness"]["sex&race"] = {"selection_rate_ratio": 0.5}
    results = outcomes(one_rule(id="ff", path="fairness.*.selection_rate_ratio", op=">=", threshold=0.8), evidence)
    assert results["ff[sex&race]"].outcome == "block"
    assert results["ff[sex&race]"].path == "fairness.sex&race.selection_rate_ratio"


def test_wildcard_matches_each_get_their_own_baseline() -> None:
    evidence = {"metrics": {"test": {"a": 0.6, "b": 0.6}}, "baseline": {"test": {"a": 0.5, "b": 0.7}}}
    results = outcomes(one_rule(id="m", path="metrics.test.*", op=">", threshold="baseline"), evidence)
    assert (results["m[a]"].outcome, results["m[b]"].outcome) == ("pass", "block")


# --------------------------------------------------------------------------- confidence bounds


def test_lower_bound_uses_the_interval(evidence: dict[str, Any]) -> None:
    policy = one_rule(path="metrics.test.${metric}", bound="lower", op=">", threshold="baseline + 0.41")
    result = outcomes(policy, evidence)["r"]
    assert (result.measured, result.path, result.outcome) == (0.905, "metrics.test.roc_auc_ci[0]", "block")
    evidence["metrics"]["test"]["roc_auc_ci"] = [0.915, 0.93]
    assert outcomes(policy, evidence)["r"].outcome == "pass"


def test_upper_bound_of_the_gap(evidence: dict[str, Any]) -> None:
    policy = one_rule(path="gap.${metric}", bound="upper", op="<=", threshold=0.02)
    result = outcomes(policy, evidence)["r"]
    assert (result.measured, result.outcome) == (0.024, "block")


@pytest.mark.parametrize(
    ("interval", "reason"),
    [(None, "metrics.test.roc_auc_ci is null"), ([0.9], "should be [lower, upper]"), ("x", "should be [lower, upper]")],
)
def test_a_missing_or_malformed_interval_blocks(evidence: dict[str, Any], interval: Any, reason: str) -> None:
    evidence["metrics"]["test"]["roc_auc_ci"] = interval
    result = outcomes(one_rule(path="metrics.test.roc_auc", bound="lower", op=">", threshold=0.5), evidence)["r"]
    assert result.outcome == "error" and reason in result.reason
    del evidence["metrics"]["test"]["roc_auc_ci"]
    result = outcomes(one_rule(path="metrics.test.roc_auc", bound="lower", op=">", threshold=0.5), evidence)["r"]
    assert result.outcome == "error" and "the rule uses the lower confidence bound" in result.reason


# --------------------------------------------------------------------------- when


FAIR = dict(id="ff", path="fairness.*.selection_rate_ratio", op=">=", threshold=0.8,
            when=["data.sensitive", "task not in ['regression', 'ranking']"])


def test_when_applies_the_rule_when_sensitive_features_are_configured(evidence: dict[str, Any]) -> None:
    evidence["fairness"]["sex"]["selection_rate_ratio"] = 0.35
    assert outcomes(one_rule(**FAIR), evidence)["ff[sex]"].outcome == "block"


@pytest.mark.parametrize("sensitive", [[], None])
def test_when_makes_the_rule_not_applicable(evidence: dict[str, Any], sensitive: Any) -> None:
    del evidence["fairness"]
    if sensitive is None:
        del evidence["data"]["sensitive"]
    else:
        evidence["data"]["sensitive"] = sensitive
    result = outcomes(one_rule(**FAIR), evidence)["ff"]
    assert result.outcome == "n/a" and result.reason.startswith("not applicable: ")


def test_when_with_configured_features_but_no_fairness_evidence_blocks(evidence: dict[str, Any]) -> None:
    del evidence["fairness"]
    result = outcomes(one_rule(**FAIR), evidence)["ff"]
    assert result.outcome == "error" and "nothing matches fairness.*.selection_rate_ratio" in result.reason


def test_a_null_in_a_when_path_counts_as_present(evidence: dict[str, Any]) -> None:
    evidence["data"]["sensitive"] = None  # could not be determined: do not guess "no fairness needed"
    del evidence["fairness"]
    assert outcomes(one_rule(**FAIR), evidence)["ff"].outcome == "error"


def test_a_comparison_in_when_on_missing_evidence_blocks(evidence: dict[str, Any]) -> None:
    del evidence["task"]
    result = outcomes(one_rule(**FAIR), evidence)["ff"]
    assert result.outcome == "error" and result.reason.startswith("cannot decide whether the rule applies")


def test_a_false_comparison_makes_the_rule_not_applicable(evidence: dict[str, Any]) -> None:
    evidence["task"] = "regression"
    result = outcomes(one_rule(**FAIR), evidence)["ff"]
    assert result.outcome == "n/a"
    assert result.reason == ("not applicable: task not in ['regression', 'ranking'] is false "
                             "('regression' not in ['regression', 'ranking'])")


def test_monitor_rules_are_not_gated_at_training(evidence: dict[str, Any]) -> None:
    policy = policy_of('[[rules]]\nid = "d"\npath = "drift.share_drifted"\nop = "<="\nthreshold = 0.3\nstage = "monitor"\n'
                       '[[rules]]\nid = "t"\npath = "gap.roc_auc"\nop = "<="\nthreshold = 0.1\n')
    assert list(outcomes(policy, evidence)) == ["t"]
    evidence["drift"] = {"share_drifted": 0.5}
    assert outcomes(policy, evidence, stage="monitor")["d"].outcome == "block"


# --------------------------------------------------------------------------- waivers


def _waiver(rule: str, expires: date, model: str = "credit@3") -> Waiver:
    return Waiver(rule, model, "accepted for the pilot", "dana", expires, seq=17)


def test_a_waiver_applies_until_its_expiry_day_inclusive(evidence: dict[str, Any]) -> None:
    evidence["fairness"]["sex"]["selection_rate_ratio"] = 0.7
    policy = one_rule(**FAIR)
    waiver = _waiver("ff", date(2025, 6, 30))
    on_last_day = {o.id: o for o in evaluate_policy(policy, evidence, waivers=[waiver], today=date(2025, 6, 30))}
    assert on_last_day["ff[sex]"].outcome == "waived"
    assert on_last_day["ff[sex]"].reason == ("waived by dana until 2025-06-30, ledger #17: accepted for the pilot "
                                             "(was block: fairness.sex.selection_rate_ratio = 0.7, needs >= 0.8)")
    assert on_last_day["ff[race]"].outcome == "pass"
    day_after = {o.id: o for o in evaluate_policy(policy, evidence, waivers=[waiver], today=date(2025, 7, 1))}
    assert day_after["ff[sex]"].outcome == "block"
    assert Verdict.from_outcomes(list(on_last_day.values()), "p", "h").decision == "pass"
    assert Verdict.from_outcomes(list(day_after.values()), "p", "h").decision == "block"


def test_a_waiver_for_one_match_covers_only_that_match(evidence: dict[str, Any]) -> None:
    evidence["fairness"]["sex"]["selection_rate_ratio"] = 0.7
    evidence["fairness"]["race"]["selection_rate_ratio"] = 0.7
    results = outcomes(one_rule(**FAIR), evidence, waivers=[_waiver("ff[race]", date(2030, 1, 1))])
    assert (results["ff[race]"].outcome, results["ff[sex]"].outcome) == ("waived", "block")


def test_a_waiver_for_another_model_version_does_not_apply(evidence: dict[str, Any]) -> None:
    evidence["gap"]["roc_auc"] = 0.3
    policy = one_rule(id="gap", path="gap.roc_auc", op="<=", threshold=0.1)
    assert outcomes(policy, evidence, waivers=[_waiver("gap", date(2030, 1, 1), model="credit@2")])["gap"].outcome \
        == "block"
    del evidence["model"]
    assert outcomes(policy, evidence, waivers=[_waiver("gap", date(2030, 1, 1))])["gap"].outcome == "block"


def test_a_waiver_can_accept_missing_evidence(evidence: dict[str, Any]) -> None:
    del evidence["gap"]
    policy = one_rule(id="gap", path="gap.roc_auc", op="<=", threshold=0.1)
    result = outcomes(policy, evidence, waivers=[_waiver("gap", date(2030, 1, 1))])["gap"]
    assert result.outcome == "waived" and "(was error: missing evidence" in result.reason


def test_waivers_are_read_from_ledger_records() -> None:
    class Rec:
        def __init__(self, seq: int, kind: str, payload: dict[str, Any]) -> None:
            self.seq, self.kind, self.payload, self.key_id = seq, kind, payload, "k" * 64

    good = {"rule": "gap", "model": "credit@3", "reason": "r", "approver": "a", "expires": "2025-07-01"}
    records = [Rec(1, "waiver", good), Rec(2, "waiver", {**good, "model": "credit@4"}),
               Rec(3, "waiver", {**good, "expires": "soon"}), Rec(4, "verdict", good)]
    found = waivers_from_records(records, "credit@3")
    assert [(w.seq, w.rule, w.expires) for w in found] == [(1, "gap", date(2025, 7, 1))]


# --------------------------------------------------------------------------- the bundled packs


@pytest.fixture(params=["assay:standard", "assay:strict"])
def pack(request: pytest.FixtureRequest) -> Any:
    return load_policy(request.param, Path.cwd(), bundled_packs())


def test_a_healthy_run_passes_both_packs(pack: Any, evidence: dict[str, Any]) -> None:
    v = verdict(pack, evidence)
    assert v.decision == "pass", v.reasons
    assert all(o.outcome in ("pass", "n/a") for o in v.rules)


def _plant(evidence: dict[str, Any], defect: str) -> None:
    if defect == "leakage":
        evidence["checks"]["leakage"]["target_proxy"].update(status="fail", value=1.0)
    elif defect == "bias":
        evidence["fairness"]["sex"]["selection_rate_ratio"] = 0.2
    elif defect == "overfit":
        evidence["metrics"]["train"]["roc_auc"] = 1.0
        evidence["gap"]["roc_auc"] = 0.3
    elif defect == "no-better-than-baseline":
        evidence["metrics"]["test"]["roc_auc"] = 0.5
        evidence["metrics"]["test"]["roc_auc_ci"] = [0.47, 0.53]
    elif defect == "data":
        evidence["checks"]["data"]["missing"]["status"] = "fail"
    elif defect == "check-crashed":
        evidence["checks"]["leakage"]["duplicates"] = {"status": "error", "value": None, "detail": "MemoryError"}
    elif defect == "cost":
        evidence["metrics"]["test"]["expected_cost"] = 0.9
        evidence["baseline"]["test"]["expected_cost"] = 0.4


@pytest.mark.parametrize(
    ("defect", "rule"),
    [
        ("leakage", "no-leakage[target_proxy]"),
        ("bias", "four-fifths[sex]"),
        ("overfit", "generalization-gap"),
        ("no-better-than-baseline", "beats-baseline"),
        ("data", "data-quality[missing]"),
        ("check-crashed", "no-check-errors[leakage.duplicates]"),
        ("cost", "business-cost"),
    ],
)
def test_each_planted_defect_blocks_with_the_right_rule(pack: Any, evidence: dict[str, Any], defect: str,
                                                        rule: str) -> None:
    _plant(evidence, defect)
    v = verdict(pack, evidence)
    assert v.decision == "block"
    blocking = {o.id for o in v.rules if o.outcome in ("block", "error")}
    assert rule in blocking, (rule, blocking)


def test_strict_blocks_what_standard_only_warns_about(evidence: dict[str, Any]) -> None:
    packs = bundled_packs()
    standard, strict = (load_policy(n, Path.cwd(), packs) for n in ("assay:standard", "assay:strict"))
    evidence["checks"]["leakage"]["duplicates"]["status"] = "warn"
    evidence["gap"]["roc_auc"] = 0.07
    assert verdict(standard, evidence).decision == "pass"
    warned = {o.id for o in verdict(standard, evidence).rules if o.outcome == "warn"}
    assert warned == {"leakage-warnings[duplicates]", "generalization-gap-small"}
    blocked = {o.id for o in verdict(strict, evidence).rules if o.outcome == "block"}
    assert {"no-leakage[duplicates]", "generalization-gap"} <= blocked


def test_strict_requires_the_interval_to_clear_the_baseline(evidence: dict[str, Any]) -> None:
    strict = load_policy("assay:strict", Path.cwd(), bundled_packs())
    evidence["baseline"]["test"]["roc_auc"] = 0.908  # point estimate clears it by 0.012, the interval does not
    results = outcomes(strict, evidence)
    assert results["beats-baseline"].outcome == "pass"
    assert results["beats-baseline-ci"].outcome == "block"


def _regression(evidence: dict[str, Any], mae_gap: float) -> None:
    evidence.update(task="regression", metric="r2")
    evidence["metrics"] = {"train": {"r2": 0.8}, "test": {"r2": 0.75, "r2_ci": [0.7, 0.8]}}
    evidence["baseline"]["test"] = {"r2": 0.0}
    evidence["gap"] = {"r2": 0.05, "r2_ci": [0.02, 0.07]}
    evidence["fairness"] = {"sex": {"relative_mae_gap": mae_gap, "by_group": {}},
                            "race": {"relative_mae_gap": 0.05, "by_group": {}}}


def test_regression_runs_use_the_error_gap_instead_of_selection_rates(pack: Any, evidence: dict[str, Any]) -> None:
    _regression(evidence, mae_gap=0.1)
    v = verdict(pack, evidence)
    assert v.decision == "pass", v.reasons
    assert next(o for o in v.rules if o.id == "four-fifths").reason.startswith("not applicable")
    assert {o.id for o in v.rules if o.id.startswith("error-gap")} == {"error-gap[race]", "error-gap[sex]"}
    _regression(evidence, mae_gap=0.7)
    assert "error-gap[sex]" in {o.id for o in verdict(pack, evidence).rules if o.outcome == "block"}


def test_ranking_runs_check_exposure(pack: Any, evidence: dict[str, Any]) -> None:
    evidence.update(task="ranking", metric="ndcg@10")
    evidence["metrics"] = {"train": {"ndcg@10": 0.7}, "test": {"ndcg@10": 0.66, "ndcg@10_ci": [0.64, 0.68]}}
    evidence["baseline"]["test"] = {"ndcg@10": 0.5}
    evidence["gap"] = {"ndcg@10": 0.04, "ndcg@10_ci": [0.0, 0.06]}
    evidence["fairness"] = {"sex": {"exposure_ratio": 0.6}}
    v = verdict(pack, evidence)
    assert {o.id for o in v.rules if o.outcome == "block"} == {"exposure-ratio[sex]"}


def test_text_classification_gets_the_four_fifths_rule(evidence: dict[str, Any]) -> None:
    standard = load_policy("assay:standard", Path.cwd(), bundled_packs())
    evidence["task"] = "text"
    evidence["fairness"]["sex"]["selection_rate_ratio"] = 0.5
    assert "four-fifths[sex]" in {o.id for o in verdict(standard, evidence).rules if o.outcome == "block"}


def test_too_few_groups_to_judge_blocks_with_the_recorded_reason(evidence: dict[str, Any]) -> None:
    standard = load_policy("assay:standard", Path.cwd(), bundled_packs())
    evidence["fairness"]["race"].update(selection_rate_ratio=None,
                                        reason="only 1 group(s) with at least 30 holdout rows (small: Other)")
    result = outcomes(standard, evidence)["four-fifths[race]"]
    assert result.outcome == "error"
    assert result.reason == ("fairness.race.selection_rate_ratio is null (could not be computed): only 1 group(s) "
                             "with at least 30 holdout rows (small: Other)")
