"""Verdict output for people and CI: text (rich table), json, junit, markdown and sarif.

Every renderer takes the same :class:`GateReport` and returns a string, so ``assay gate``
can print it or write it to ``--output``. JSON carries ``{"run_id", "verdict"}`` (the
contract of DESIGN.md) plus model, artifact and policy details; JUnit has one testcase
per rule outcome (block and error are failures, waived and not-applicable are skipped);
Markdown suits a CI step summary; SARIF 2.1.0 lists each outcome as a result, with
waivers as suppressions and, for policy files, the rule's line as the location.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from assay.policies.evaluate import NOT_APPLICABLE, show
from assay.policies.language import Policy
from assay.types import RuleOutcome, Verdict

FORMATS = ("text", "json", "junit", "markdown", "sarif")
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
_ICON = {"pass": "✅", "warn": "⚠️", "block": "❌", "error": "❌", "waived": "🟡"}
_STYLE = {"pass": "green", "warn": "yellow", "block": "red", "error": "red", "waived": "cyan"}


@dataclass(frozen=True)
class GateReport:
    """What the renderers show: the verdict and where it came from."""

    run_id: str
    verdict: Verdict
    model: str | None = None
    artifact: str | None = None
    policy: Policy | None = None
    ledger_seq: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def base_rule_id(outcome_id: str) -> str:
    """``no-leakage[leakage.duplicates]`` → ``no-leakage``."""
    return outcome_id.split("[", 1)[0]


def is_not_applicable(outcome: RuleOutcome) -> bool:
    return outcome.outcome == "pass" and outcome.reason.startswith(NOT_APPLICABLE)


def _threshold_text(o: RuleOutcome) -> str:
    return "" if o.threshold is None else show(o.threshold)


def _measured_text(o: RuleOutcome) -> str:
    if o.measured is None and (o.outcome == "error" or is_not_applicable(o)):
        return "—"
    return show(o.measured)


def _counts(verdict: Verdict) -> dict[str, int]:
    counts = {k: 0 for k in ("pass", "warn", "block", "error", "waived")}
    for o in verdict.rules:
        counts[o.outcome] = counts.get(o.outcome, 0) + 1
    return counts


# --------------------------------------------------------------------------- text


def text_renderables(report: GateReport) -> list[Any]:
    """Rich renderables: a headline and the rule table."""
    from rich.table import Table
    from rich.text import Text

    v = report.verdict
    color = "green" if v.decision == "pass" else "red"
    head = Text()
    head.append(f"{v.decision.upper()}", style=f"bold {color}")
    head.append(f"  run {report.run_id}")
    if report.model:
        head.append(f"  model {report.model}")
    head.append(f"  policy {v.policy} ({v.policy_hash[:19]}…)")
    table = Table(show_edge=False, expand=False)
    table.add_column("rule", no_wrap=True)
    for col in ("outcome", "measured", "op", "threshold", "reason"):
        table.add_column(col, overflow="fold")
    for o in v.rules:
        outcome = "n/a" if is_not_applicable(o) else o.outcome
        # Text cells, not markup strings: ids like "no-leakage[duplicates]" would read as rich markup.
        table.add_row(Text(o.id), Text(outcome, style=_STYLE.get(o.outcome, "")), Text(_measured_text(o)),
                      Text(o.op), Text(_threshold_text(o)), Text(o.reason))
    counts = _counts(v)
    tail = Text(", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no rules")
    return [head, table, tail]


def render_text(report: GateReport, width: int = 160) -> str:
    """Plain text (no colour) of the rich table, for files and logs."""
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False, record=False)
    for item in text_renderables(report):
        console.print(item)
    return buf.getvalue()


# --------------------------------------------------------------------------- json


def report_json(report: GateReport) -> dict[str, Any]:
    out: dict[str, Any] = {"run_id": report.run_id, "verdict": report.verdict.to_json()}
    if report.model:
        out["model"] = report.model
    if report.artifact:
        out["artifact"] = report.artifact
    if report.policy is not None:
        out["policy"] = {"name": report.policy.name, "hash": report.policy.hash, "source": report.policy.source,
                         "approvals": report.policy.approvals}
    if report.ledger_seq is not None:
        out["ledger_seq"] = report.ledger_seq
    out.update(report.extra)
    return out


def render_json(report: GateReport) -> str:
    return json.dumps(report_json(report), sort_keys=True) + "\n"


# --------------------------------------------------------------------------- junit


def render_junit(report: GateReport) -> str:
    """JUnit XML: one testsuite for the gate, one testcase per rule outcome."""
    v = report.verdict
    failures = sum(o.outcome in ("block", "error") for o in v.rules)
    skipped = sum(o.outcome == "waived" or is_not_applicable(o) for o in v.rules)
    suites = ET.Element("testsuites", name="assay gate", tests=str(len(v.rules)), failures=str(failures),
                        errors="0", skipped=str(skipped))
    suite = ET.SubElement(suites, "testsuite", name=f"assay gate: {v.policy}", tests=str(len(v.rules)),
                          failures=str(failures), errors="0", skipped=str(skipped), time="0")
    props = ET.SubElement(suite, "properties")
    for name, value in (("run_id", report.run_id), ("model", report.model), ("artifact", report.artifact),
                        ("policy", v.policy), ("policy_hash", v.policy_hash), ("decision", v.decision)):
        if value:
            ET.SubElement(props, "property", name=name, value=str(value))
    classname = f"assay.gate.{v.policy}"
    for o in v.rules:
        case = ET.SubElement(suite, "testcase", classname=classname, name=o.id, time="0")
        detail = (f"{o.description}\npath: {o.path}\nmeasured: {_measured_text(o)}\n"
                  f"threshold: {o.op} {_threshold_text(o)}\nseverity: {o.severity}\n{o.reason}").strip()
        if o.outcome in ("block", "error"):
            failure = ET.SubElement(case, "failure", message=f"{o.outcome}: {o.reason}", type=o.outcome)
            failure.text = detail
        elif o.outcome == "waived" or is_not_applicable(o):
            ET.SubElement(case, "skipped", message=o.reason)
        elif o.outcome == "warn":
            out = ET.SubElement(case, "system-out")
            out.text = f"warning: {o.reason}"
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


# --------------------------------------------------------------------------- markdown


def _md(text: Any) -> str:
    """Escape a table cell: HTML specials, pipes and newlines."""
    escaped = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped.replace("|", "\\|").replace("\n", "<br>")


def render_markdown(report: GateReport) -> str:
    """A CI step summary: headline, failing reasons, then every rule in a table."""
    v = report.verdict
    icon = "✅" if v.decision == "pass" else "❌"
    lines = [f"### {icon} assay gate: **{v.decision.upper()}**", ""]
    facts = [f"run `{report.run_id}`"]
    if report.model:
        facts.append(f"model `{report.model}`")
    facts.append(f"policy `{v.policy}` (`{v.policy_hash[:19]}…`)")
    lines += [" · ".join(facts), ""]
    if v.reasons:
        lines.append("**Blocked by:**")
        lines += [f"- {_md(reason)}" for reason in v.reasons]
        lines.append("")
    counts = _counts(v)
    lines.append(" · ".join(f"{_ICON[k]} {n} {k}" for k, n in counts.items() if n) or "no rules")
    lines += ["", "| Rule | Outcome | Measured | Op | Threshold | Reason |", "|---|---|---|---|---|---|"]
    for o in v.rules:
        outcome = "➖ n/a" if is_not_applicable(o) else f"{_ICON.get(o.outcome, '')} {o.outcome}"
        lines.append(f"| `{_md(o.id)}` | {outcome} | {_md(_measured_text(o))} | {_md(o.op)} | "
                     f"{_md(_threshold_text(o))} | {_md(o.reason)} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- sarif


def _sarif_location(policy: Policy | None, rule_id: str) -> list[dict[str, Any]]:
    if policy is None or not policy.source or not Path(policy.source).is_file():
        return []
    rule = policy.rule(rule_id)
    path = Path(policy.source).resolve()
    try:
        uri = path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        uri = path.as_uri()
    physical: dict[str, Any] = {"artifactLocation": {"uri": uri}}
    if rule is not None and rule.line:
        physical["region"] = {"startLine": rule.line}
    return [{"physicalLocation": physical}]


def render_sarif(report: GateReport) -> str:
    """SARIF 2.1.0: one run of the ``assay`` tool, one result per rule outcome."""
    from assay import __version__

    v = report.verdict
    rule_ids: list[str] = []
    descriptions: dict[str, str] = {}
    severities: dict[str, str] = {}
    for o in v.rules:
        base = base_rule_id(o.id)
        if base not in descriptions:
            rule_ids.append(base)
            descriptions[base] = o.description or base
            severities[base] = o.severity
    rules = []
    for rid in rule_ids:
        entry: dict[str, Any] = {
            "id": rid,
            "name": "".join(part.capitalize() for part in rid.replace(".", "-").replace(":", "-").split("-")),
            "shortDescription": {"text": descriptions[rid]},
            "defaultConfiguration": {"level": "error" if severities[rid] == "block" else "warning"},
        }
        if report.policy is not None and (rule := report.policy.rule(rid)) is not None:
            entry["properties"] = {"path": str(rule.path), "op": rule.op, "threshold": rule.threshold_text,
                                   "stage": rule.stage}
        rules.append(entry)
    index = {rid: i for i, rid in enumerate(rule_ids)}
    results = []
    for o in v.rules:
        base = base_rule_id(o.id)
        if is_not_applicable(o):
            kind, level = "notApplicable", "none"
        elif o.outcome == "pass":
            kind, level = "pass", "none"
        elif o.outcome == "waived":
            kind, level = "fail", "error" if o.severity == "block" else "warning"
        else:
            kind, level = "fail", "warning" if o.outcome == "warn" else "error"
        result: dict[str, Any] = {
            "ruleId": base,
            "ruleIndex": index[base],
            "kind": kind,
            "level": level,
            "message": {"text": f"{o.id}: {o.reason or o.outcome}"},
            "properties": {"outcome": o.outcome, "path": o.path, "measured": o.measured, "op": o.op,
                           "threshold": o.threshold, "severity": o.severity},
        }
        locations = _sarif_location(report.policy, base)
        if locations:
            result["locations"] = locations
        if o.outcome == "waived":
            result["suppressions"] = [{"kind": "external", "status": "accepted", "justification": o.reason}]
        results.append(result)
    invocation: dict[str, Any] = {"executionSuccessful": True, "exitCode": 0 if v.decision == "pass" else 1}
    run: dict[str, Any] = {
        "tool": {"driver": {"name": "assay", "version": __version__, "semanticVersion": __version__,
                            "rules": rules}},
        "invocations": [invocation],
        "results": results,
        "properties": {"run_id": report.run_id, "decision": v.decision, "policy": v.policy,
                       "policy_hash": v.policy_hash, "model": report.model, "artifact": report.artifact},
    }
    doc = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
    return json.dumps(doc, indent=2, default=str) + "\n"


RENDERERS: dict[str, Callable[[GateReport], str]] = {
    "text": render_text,
    "json": render_json,
    "junit": render_junit,
    "markdown": render_markdown,
    "sarif": render_sarif,
}


def render(report: GateReport, fmt: str) -> str:
    """The report in format ``fmt`` (one of :data:`FORMATS`)."""
    return RENDERERS[fmt](report)
