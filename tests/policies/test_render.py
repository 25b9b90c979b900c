"""Verdict renderers: JUnit parsed by junitparser, SARIF validated against the OASIS schema,
Markdown and text checked for what a reader needs, JSON carrying the documented shape."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from junitparser import JUnitXml

from assay.commands.waivers import Waiver
from assay.kernel.types import Verdict
from assay.policies import evaluate_policy, load_policy, parse_policy
from assay.policies.packs import bundled_packs
from assay.policies.render import GateReport, render

HERE = Path(__file__).resolve().parent
SCHEMA = json.loads((HERE / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))


def _report(evidence: dict[str, Any], policy: Any = None, waivers: tuple[Waiver, ...] = ()) -> GateReport:
    policy = policy or load_policy("assay:standard", Path.cwd(), bundled_packs())
    outcomes = evaluate_policy(policy, evidence, waivers=waivers, today=date(2025, 6, 15))
    verdict = Verdict.from_outcomes(outcomes, policy.name, policy.hash)
    return GateReport(run_id=evidence.get("run_id", "RUN"), verdict=verdict, model="credit@3",
                      artifact="sha256:" + "ab" * 32, policy=policy, ledger_seq=42)


@pytest.fixture
def mixed(evidence: dict[str, Any]) -> GateReport:
    """A blocked verdict with every kind of outcome: pass, warn, block, error, waived, not applicable."""
    evidence["checks"]["leakage"]["duplicates"].update(status="fail", value=12)  # block
    evidence["checks"]["leakage"]["target_proxy"]["status"] = "warn"  # warn
    evidence["fairness"]["race"]["selection_rate_ratio"] = None  # error
    evidence["fairness"]["sex"]["selection_rate_ratio"] = 0.5  # waived below
    waiver = Waiver("four-fifths[sex]", "credit@3", "pilot only, <5% of traffic | reviewed", "dana", date(2025, 12, 31))
    return _report(evidence, waivers=(waiver,))


def test_json_carries_run_id_and_the_verdict(mixed: GateReport) -> None:
    doc = json.loads(render(mixed, "json"))
    assert doc["run_id"] == mixed.run_id
    assert doc["verdict"] == mixed.verdict.to_json()
    assert doc["verdict"]["decision"] == "block"
    rule = next(r for r in doc["verdict"]["rules"] if r["id"] == "no-leakage[duplicates]")
    assert (rule["outcome"], rule["measured"], rule["threshold"]) == ("block", "fail", ["pass", "warn", "skip"])
    assert doc["model"] == "credit@3" and doc["ledger_seq"] == 42
    assert doc["policy"]["hash"] == doc["verdict"]["policy_hash"]


def test_junit_has_one_testcase_per_rule_and_failures_for_block_and_error(mixed: GateReport) -> None:
    xml = JUnitXml.fromstring(render(mixed, "junit"))
    suites = list(xml)
    assert len(suites) == 1
    suite = suites[0]
    cases = {case.name: case for case in suite}
    assert len(cases) == len(mixed.verdict.rules)
    assert suite.tests == len(cases)

    def state(name: str) -> str:
        result = cases[name].result
        return result[0]._tag if result else "passed"

    assert state("no-leakage[duplicates]") == "failure"
    assert cases["no-leakage[duplicates]"].result[0].type == "block"
    assert state("four-fifths[race]") == "failure"
    assert cases["four-fifths[race]"].result[0].type == "error"
    assert state("four-fifths[sex]") == "skipped"
    assert state("business-cost") == "skipped"  # not applicable: no cost configured
    assert state("beats-baseline") == "passed"
    assert state("leakage-warnings[target_proxy]") == "passed"
    assert "warning:" in (cases["leakage-warnings[target_proxy]"].system_out or "")
    assert suite.failures == 2 and suite.errors == 0
    assert state("holdout-budget") == "skipped"  # not applicable: no reusable holdout
    assert suite.skipped == 5  # the waiver, and business-cost, error-gap, exposure-ratio, holdout-budget (n/a)
    properties = {p.name: p.value for p in suite.properties()}
    assert properties["decision"] == "block" and properties["policy"] == "assay:standard"


def test_junit_for_a_passing_verdict_has_no_failures(evidence: dict[str, Any]) -> None:
    suite = next(iter(JUnitXml.fromstring(render(_report(evidence), "junit"))))
    assert suite.failures == 0 and all(not case.result or case.result[0]._tag == "skipped" for case in suite)


def test_sarif_is_valid_against_the_oasis_schema(mixed: GateReport) -> None:
    doc = json.loads(render(mixed, "sarif"))
    jsonschema.Draft4Validator(SCHEMA, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER).validate(doc)
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    results = {r["message"]["text"].split(":")[0]: r for r in run["results"]}
    assert len(results) == len(mixed.verdict.rules)
    blocked = results["no-leakage[duplicates]"]
    assert (blocked["kind"], blocked["level"], blocked["ruleId"]) == ("fail", "error", "no-leakage")
    assert rules[blocked["ruleIndex"]]["id"] == "no-leakage"
    assert results["leakage-warnings[target_proxy]"]["level"] == "warning"
    assert results["beats-baseline"]["kind"] == "pass"
    assert results["business-cost"]["kind"] == "notApplicable"
    waived = results["four-fifths[sex]"]
    assert waived["suppressions"][0]["kind"] == "external"
    assert "pilot only" in waived["suppressions"][0]["justification"]
    assert run["invocations"][0]["exitCode"] == 1


def test_sarif_points_at_the_rule_line_of_a_policy_file(tmp_path: Path, evidence: dict[str, Any],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gate.toml"
    path.write_text('# team gate\n\n[[rules]]\nid = "gap"\npath = "gap.roc_auc"\nop = "<="\nthreshold = 0.001\n',
                    encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    policy = load_policy(str(path), tmp_path, {})
    doc = json.loads(render(_report(evidence, policy), "sarif"))
    jsonschema.Draft4Validator(SCHEMA).validate(doc)
    location = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert location == {"artifactLocation": {"uri": "gate.toml"}, "region": {"startLine": 3}}


def test_markdown_summary_leads_with_the_decision_and_the_reasons(mixed: GateReport) -> None:
    md = render(mixed, "markdown")
    lines = md.splitlines()
    assert lines[0] == "### ❌ assay gate: **BLOCK**"
    assert f"run `{mixed.run_id}`" in lines[2] and "model `credit@3`" in lines[2] and "policy `assay:standard`" in lines[2]
    assert lines[4].startswith("❌ 1 block · ❌ 1 error · ⚠️ 2 warn")
    assert lines[6] == "**Blocked by:**"
    assert any(line.startswith("- `no-leakage[duplicates]`: checks.leakage.duplicates.status = 'fail', needs in")
               for line in lines)
    header = lines.index("| Rule | Outcome | Measured | Op | Threshold | Reason |")
    rows = [line for line in lines[header + 2:] if line.startswith("|")]
    assert len(rows) == len(mixed.verdict.rules)
    assert all(row.count(" | ") == 5 for row in rows), "a pipe inside a cell must be escaped"
    waived = next(row for row in rows if row.startswith("| `four-fifths[sex]`"))
    assert "🟡 waived" in waived and "&lt;5% of traffic \\| reviewed" in waived
    assert any("➖ n/a" in row for row in rows if row.startswith("| `business-cost`"))
    assert "| `beats-baseline` | ✅ pass | 0.92 | &gt; | 0.5 |" in md


def test_markdown_for_a_pass(evidence: dict[str, Any]) -> None:
    md = render(_report(evidence), "markdown")
    assert md.startswith("### ✅ assay gate: **PASS**") and "Blocked by" not in md


def test_text_table_shows_each_rule_with_measured_and_threshold(mixed: GateReport) -> None:
    text = render(mixed, "text")
    assert text.splitlines()[0].startswith(f"BLOCK  run {mixed.run_id}  model credit@3  policy assay:standard")
    for column in ("rule", "outcome", "measured", "op", "threshold", "reason"):
        assert column in text.splitlines()[1]
    row = next(line for line in text.splitlines() if "beats-baseline" in line)
    assert "pass" in row and "0.92" in row and "0.5" in row
    assert "waived" in text and "error" in text and "n/a" in text
    assert "no-leakage[duplicates]" in text, "rule ids with brackets must not be read as rich markup"
    assert f"{sum(o.outcome == 'pass' for o in mixed.verdict.rules)} pass" in text.rstrip().splitlines()[-1]


def test_every_format_renders_an_empty_policy_result() -> None:
    policy = parse_policy('[[rules]]\nid = "a"\npath = "x.y"\nop = "=="\nthreshold = 1\n')
    report = _report({}, policy)
    for fmt in ("text", "json", "junit", "markdown", "sarif"):
        assert render(report, fmt)
    jsonschema.Draft4Validator(SCHEMA).validate(json.loads(render(report, "sarif")))
