"""What a reader of a verdict sees first: blocks, then warnings, then counts; findings in words with a fix;
n/a for rules that do not apply; valid CommonMark; ``--only`` in every format."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from junitparser import JUnitXml
from markdown_it import MarkdownIt

from assay.kernel.types import Verdict
from assay.policies import evaluate_policy, load_policy
from assay.policies.packs import bundled_packs
from assay.policies.render import GateReport, render

from .conftest import one_rule

DUPLICATES = "152 of 1100 test rows (13.82%) are copies of training rows, e.g. row 274 repeats row 1725"
FIX = "remove the repeated rows from data.csv"


def _report(evidence: dict[str, Any], only: str = "all", policy: Any = None) -> GateReport:
    policy = policy or load_policy("assay:standard", Path.cwd(), bundled_packs())
    outcomes = evaluate_policy(policy, evidence, today=date(2025, 6, 15))
    return GateReport(run_id="01JTESTRUN0000000000000000", verdict=Verdict.from_outcomes(outcomes, policy.name, policy.hash),
                      model="credit@3", artifact="sha256:" + "ab" * 32, policy=policy, only=only)


@pytest.fixture
def blocked(evidence: dict[str, Any]) -> dict[str, Any]:
    """Duplicates across the split (a block), a target proxy warning, and an intersectional fairness key."""
    evidence["checks"]["leakage"]["duplicates"] = {"status": "fail", "value": 0.1382, "message": DUPLICATES,
                                                   "detail": {"fix": FIX + " (e.g. pandas drop_duplicates())"}}
    evidence["checks"]["leakage"]["target_proxy"] = {"status": "warn", "value": 0.93,
                                                     "message": "worst perimeter alone predicts the label (AUC 0.969)",
                                                     "detail": {}}
    evidence["checks"]["leakage"]["entity_overlap"] = {"status": "skip", "value": None,
                                                       "detail": {"reason": "no data.id_column or data.group_column"}}
    evidence["fairness"]["sex&race"] = {"selection_rate_ratio": 0.9}
    return evidence


def test_a_failing_check_rule_leads_with_the_checks_message_and_ends_with_its_fix(blocked: dict[str, Any]) -> None:
    rules = {o.id: o for o in _report(blocked).verdict.rules}
    reason = rules["no-leakage[duplicates]"].reason
    assert reason.startswith(DUPLICATES)
    assert "checks.leakage.duplicates.status = 'fail'" in reason
    assert reason.endswith("Fix: " + FIX + " (e.g. pandas drop_duplicates())")
    assert rules["leakage-warnings[target_proxy]"].reason.startswith("worst perimeter alone predicts the label")
    assert rules["no-leakage[target_proxy]"].outcome == "pass" and "perimeter" not in rules["no-leakage[target_proxy]"].reason


def test_rules_that_do_not_apply_are_na_never_pass(blocked: dict[str, Any]) -> None:
    rules = {o.id: o for o in _report(blocked).verdict.rules}
    assert rules["business-cost"].outcome == "n/a"  # no cost configured (a false `when`)
    assert rules["error-gap"].outcome == "n/a" and rules["exposure-ratio"].outcome == "n/a"
    skipped = rules["no-leakage[entity_overlap]"]
    assert skipped.outcome == "n/a" and "no data.id_column or data.group_column" in skipped.reason
    assert not [o.id for o in rules.values() if o.outcome == "pass" and o.reason.startswith("not applicable")]
    assert Verdict.from_outcomes(list(rules.values()), "p", "h").decision == "block"  # n/a neither passes nor blocks


def test_a_strict_rule_on_a_skipped_check_still_blocks(evidence: dict[str, Any]) -> None:
    evidence["checks"]["leakage"]["entity_overlap"] = {"status": "skip", "value": None, "detail": {"reason": "x"}}
    policy = one_rule(id="ran", path="checks.leakage.*.status", op="==", threshold="'pass'")
    outcomes = {o.id: o.outcome for o in evaluate_policy(policy, evidence)}
    assert outcomes["ran[entity_overlap]"] == "block"


def test_a_null_measurement_names_the_fix_of_the_check_that_explains_it(evidence: dict[str, Any]) -> None:
    evidence["fairness"]["sex"]["selection_rate_ratio"] = None
    evidence["fairness"]["sex"]["reason"] = "only 1 group(s) with at least 30 holdout rows"
    evidence["checks"]["fairness"]["selection_rate_ratio@sex"] = {
        "status": "warn", "value": None, "message": "sex: only 1 group(s) with at least 30 holdout rows",
        "detail": {"fix": "raise split.test_size (now 0.2); holdout rows per group: Female 12, Male 300"}}
    rule = {o.id: o for o in _report(evidence).verdict.rules}["four-fifths[sex]"]
    assert rule.outcome == "error"
    assert "only 1 group(s) with at least 30 holdout rows" in rule.reason
    assert rule.reason.endswith("Fix: raise split.test_size (now 0.2); holdout rows per group: Female 12, Male 300")


def test_reasons_never_hold_unexpanded_templates(evidence: dict[str, Any]) -> None:
    policy = one_rule(id="live", path="metrics.test.${metric}", op=">=", threshold="metrics.cv.${metric}.mean - 0.5")
    passed = evaluate_policy(policy, evidence)[0]
    assert passed.outcome == "pass" and "${" not in passed.reason and "metrics.cv.roc_auc.mean - 0.5" in passed.reason
    del evidence["metrics"]["cv"]
    failed = evaluate_policy(policy, evidence)[0]
    assert failed.outcome == "error" and "${" not in failed.reason + failed.path, failed.reason
    for pack in ("assay:standard", "assay:strict"):
        for stage in ("train", "monitor"):
            loaded = load_policy(pack, Path.cwd(), bundled_packs())
            for o in evaluate_policy(loaded, {**evidence, "metrics": {"current": {}}}, stage=stage):
                assert "${" not in o.reason + o.path, (pack, o.id, o.reason)


def test_attention_first_in_every_listing(blocked: dict[str, Any]) -> None:
    report = _report(blocked)
    order = [o.outcome for o in report.shown()]
    rank = {"block": 0, "error": 0, "warn": 1, "waived": 2, "pass": 3, "n/a": 4}
    assert order == sorted(order, key=rank.__getitem__)
    text = render(report, "text")
    assert text.index("no-leakage[duplicates]") < text.index("leakage-warnings[target_proxy]") < text.index("beats-baseline")
    md = render(report, "markdown")
    assert md.index("`no-leakage[duplicates]` |") < md.index("`leakage-warnings[target_proxy]` |") < md.index("`beats-baseline` |")
    cases = [c.name for c in next(iter(JUnitXml.fromstring(render(report, "junit"))))]
    assert cases.index("no-leakage[duplicates]") < cases.index("leakage-warnings[target_proxy]") < cases.index("beats-baseline")


@pytest.mark.parametrize("fmt", ["text", "markdown", "junit", "sarif"])
def test_only_leaves_out_what_it_should_and_the_counts_cover_every_rule(blocked: dict[str, Any], fmt: str) -> None:
    def listed(only: str) -> str:
        out = render(_report(blocked, only), fmt)
        if fmt == "sarif":  # the tool's rule catalogue lists every rule; its results are what is listed
            return "\n".join(r["message"]["text"] for r in json.loads(out)["runs"][0]["results"])
        return out

    failing, attention, everything = listed("failing"), listed("attention"), listed("all")
    for out in (failing, attention, everything):
        assert "no-leakage[duplicates]" in out
    assert "leakage-warnings[target_proxy]" not in failing and "leakage-warnings[target_proxy]" in attention
    assert "generalization-gap-small" not in attention and "generalization-gap-small" in everything
    if fmt == "text":
        n = len(_report(blocked).verdict.rules)
        tail = attention.rstrip().splitlines()[-1]
        counted = sum(int(part.split()[0]) for part in tail.split(" (")[0].split(", "))
        assert counted == n and "not listed" in tail and "--only all" in tail
    if fmt == "junit":
        suite = next(iter(JUnitXml.fromstring(failing)))
        blocking = [o for o in _report(blocked).verdict.rules if o.outcome in ("block", "error")]
        assert suite.tests == suite.failures == len(blocking) >= 1
    if fmt == "sarif":
        doc = json.loads(render(_report(blocked, "failing"), "sarif"))
        assert {r["level"] for r in doc["runs"][0]["results"]} == {"error"}


def test_json_keeps_the_whole_verdict_whatever_only_says(blocked: dict[str, Any]) -> None:
    report = _report(blocked, "failing")
    doc = json.loads(render(report, "json"))
    assert doc["verdict"] == report.verdict.to_json()
    assert len(doc["verdict"]["rules"]) == len(report.verdict.rules)
    rule = next(r for r in doc["verdict"]["rules"] if r["id"] == "no-leakage[duplicates]")
    assert rule["reason"].startswith(DUPLICATES) and FIX in rule["reason"]


def _cells(html: str) -> list[list[str]]:
    import re

    rows = re.findall(r"<tr>(.*?)</tr>", html, flags=re.S)
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, flags=re.S) for row in rows]


def test_markdown_is_commonmark_with_literal_code_spans(blocked: dict[str, Any]) -> None:
    blocked["checks"]["leakage"]["duplicates"]["message"] = "rows a|b & <c> copied"
    md = render(_report(blocked), "markdown")
    html = MarkdownIt("commonmark").enable("table").render(md)
    # a code span is literal: the renderer escapes & once, never &amp;amp;
    assert "<code>four-fifths[sex&amp;race]</code>" in html
    assert "&amp;amp;" not in html and "&amp;lt;" not in html
    rows = _cells(html)
    assert rows[0] == ["Rule", "Outcome", "Measured", "Op", "Threshold", "Reason"]
    assert all(len(row) == 6 for row in rows), "a pipe inside a cell must not split it"
    dup = next(row for row in rows if row[0] == "<code>no-leakage[duplicates]</code>")
    assert dup[5].startswith("rows a|b &amp; &lt;c&gt; copied")
    assert "<code>01JTESTRUN0000000000000000</code>" in html
    assert f"<code>{'sha256:'}" in html  # the policy digest, whole, as code


def test_markdown_only_attention_says_what_it_left_out(blocked: dict[str, Any]) -> None:
    md = render(_report(blocked, "attention"), "markdown")
    assert "`beats-baseline`" not in md
    last = md.rstrip().splitlines()[-1]
    assert last.startswith("_Not listed:") and "pass" in last and "n/a" in last and "`--only all`" in last
