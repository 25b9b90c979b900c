"""Verdict output for people and CI: text (rich table), json, junit, markdown and sarif.

Every renderer takes the same :class:`GateReport` and returns a string, so ``assay gate``
can print it or write it to ``--output``. Rules are listed by what needs attention: blocks
and errors first, then warnings, waivers, passes and rules that do not apply (``n/a``);
``GateReport.only`` (``--only failing|attention|all``) leaves out the rest, and the counts
always cover every rule. JSON carries ``{"run_id", "verdict"}`` (the contract of DESIGN.md;
its verdict is always complete) plus model, artifact and policy details; JUnit has one
testcase per rule outcome (block and error are failures, waived and not-applicable are
skipped); Markdown (CommonMark with GitHub tables) suits a CI step summary; SARIF 2.1.0
lists each outcome as a result, with waivers as suppressions and, for policy files, the
rule's line as the location.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from assay.kernel.types import RuleOutcome, Verdict
from assay.policies.evaluate import NA, NOT_APPLICABLE, show
from assay.policies.language import Policy

FORMATS = ("text", "json", "junit", "markdown", "sarif", "vsa")
#: ``--only``: which rules a report lists (the counts always cover all of them)
ONLY = ("failing", "attention", "all")
_SHOWN = {"failing": ("block", "error"), "attention": ("block", "error", "warn", "waived")}
_RANK = {"block": 0, "error": 0, "warn": 1, "waived": 2, "pass": 3, NA: 4}
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
_ICON = {"pass": "✅", "warn": "⚠️", "block": "❌", "error": "❌", "waived": "🟡", NA: "➖"}
_STYLE = {"pass": "green", "warn": "yellow", "block": "red", "error": "red", "waived": "cyan", NA: "dim"}


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
    only: str = "all"  # one of ONLY

    def shown(self) -> list[RuleOutcome]:
        """The rules to list, most pressing first (block/error, warn, waived, pass, n/a)."""
        return shown_rules(self.verdict.rules, self.only)


def shown_rules(rules: Any, only: str = "all") -> list[RuleOutcome]:
    ordered = sorted(rules, key=lambda o: _RANK.get(outcome_of(o), 1))
    keep = _SHOWN.get(only)
    return ordered if keep is None else [o for o in ordered if o.outcome in keep]


def base_rule_id(outcome_id: str) -> str:
    """``no-leakage[leakage.duplicates]`` → ``no-leakage``."""
    return outcome_id.split("[", 1)[0]


def is_not_applicable(outcome: RuleOutcome) -> bool:
    """``n/a``, or a verdict recorded before that outcome existed (a pass that did not apply)."""
    return outcome.outcome == NA or (outcome.outcome == "pass" and outcome.reason.startswith(NOT_APPLICABLE))


def outcome_of(outcome: RuleOutcome) -> str:
    return NA if is_not_applicable(outcome) else outcome.outcome


def _threshold_text(o: RuleOutcome) -> str:
    return "" if o.threshold is None else show(o.threshold)


def _measured_text(o: RuleOutcome) -> str:
    if o.measured is None and (o.outcome == "error" or is_not_applicable(o)):
        return "—"
    return show(o.measured)


def _counts(verdict: Verdict) -> dict[str, int]:
    """Outcomes by kind, most pressing first."""
    counts = {k: 0 for k in ("block", "error", "warn", "waived", "pass", NA)}
    for o in verdict.rules:
        counts[outcome_of(o)] = counts.get(outcome_of(o), 0) + 1
    return counts


def counts_text(report: GateReport, how_to_list: str = "--only all lists every rule") -> str:
    """``2 block, 1 warn, 65 pass, 4 n/a`` and, when rules are left out, which and how to list them."""
    counts = _counts(report.verdict)
    text = ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no rules"
    left_out = _left_out(report)
    return f"{text} ({left_out} not listed; {how_to_list})" if left_out else text


def _left_out(report: GateReport) -> str:
    """``65 pass, 4 n/a``: the rules ``only`` leaves out, by kind ('' when none is)."""
    listed = {id(o) for o in report.shown()}
    v = report.verdict
    hidden = _counts(Verdict(v.decision, [o for o in v.rules if id(o) not in listed], v.policy, v.policy_hash))
    return ", ".join(f"{n} {k}" for k, n in hidden.items() if n)


# --------------------------------------------------------------------------- text


def text_renderables(report: GateReport, how_to_list: str = "--only all lists every rule") -> list[Any]:
    """Rich renderables: a headline, the rules ``report.only`` lists, the counts of every outcome."""
    from rich.text import Text

    v = report.verdict
    color = "green" if v.decision == "pass" else "red"
    head = Text()
    head.append(f"{v.decision.upper()}", style=f"bold {color}")
    head.append(f"  run {report.run_id}")
    if report.model:
        head.append(f"  model {report.model}")
    head.append(f"  policy {v.policy} ({v.policy_hash})")
    rules = report.shown()
    out: list[Any] = [head]
    if rules:
        out.append(rules_table(rules))
    out.append(Text(counts_text(report, how_to_list)))
    return out


def rules_table(rules: list[RuleOutcome]) -> Any:
    """Rule outcomes in a table that wraps long cells and never cuts a rule id."""
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, expand=False)
    # ids wrap only when even a wide console cannot hold them: never cut with an ellipsis
    table.add_column("rule", overflow="fold", min_width=min(max((len(o.id) for o in rules), default=4), 60))
    table.add_column("outcome", no_wrap=True)
    for col in ("measured", "op", "threshold"):
        table.add_column(col, overflow="fold")
    table.add_column("reason", overflow="fold", ratio=1, min_width=30)
    for o in rules:
        outcome = outcome_of(o)
        # Text cells, not markup strings: ids like "no-leakage[duplicates]" would read as rich markup.
        table.add_row(Text(o.id), Text(outcome, style=_STYLE.get(outcome, "")), Text(_measured_text(o)),
                      Text(o.op), Text(_threshold_text(o)), Text(o.reason))
    return table


def text_width(default: int) -> int:
    """The columns of text written for a file or a log: $COLUMNS when it is a positive number, else ``default``."""
    import os

    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else default


def render_text(report: GateReport, width: int | None = None) -> str:
    """Plain text (no colour) of the rich table, for files and logs: ``width`` columns, else $COLUMNS, else 200."""
    from rich.console import Console

    buf = io.StringIO()
    width = text_width(200) if width is None else width
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
    listed = report.shown()
    failures = sum(o.outcome in ("block", "error") for o in listed)
    skipped = sum(o.outcome == "waived" or is_not_applicable(o) for o in listed)
    suites = ET.Element("testsuites", name="assay gate", tests=str(len(listed)), failures=str(failures),
                        errors="0", skipped=str(skipped))
    suite = ET.SubElement(suites, "testsuite", name=f"assay gate: {v.policy}", tests=str(len(listed)),
                          failures=str(failures), errors="0", skipped=str(skipped), time="0")
    props = ET.SubElement(suite, "properties")
    for name, value in (("run_id", report.run_id), ("model", report.model), ("artifact", report.artifact),
                        ("policy", v.policy), ("policy_hash", v.policy_hash), ("decision", v.decision)):
        if value:
            ET.SubElement(props, "property", name=name, value=str(value))
    classname = f"assay.gate.{v.policy}"
    for o in report.shown():
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
    """A table cell's text: HTML specials as entities, pipes escaped, newlines as <br>."""
    escaped = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped.replace("|", "\\|").replace("\n", "<br>")


def _code(text: Any) -> str:
    """A code span: literal inside (no entities), fenced by more backticks than it holds, pipes escaped."""
    body = str(text).replace("\n", " ")
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}".replace("|", "\\|")


def render_markdown(report: GateReport) -> str:
    """A CI step summary: headline, counts, the blocking reasons, then the rules by urgency."""
    v = report.verdict
    icon = "✅" if v.decision == "pass" else "❌"
    lines = [f"### {icon} assay gate: **{v.decision.upper()}**", ""]
    facts = [f"run {_code(report.run_id)}"]
    if report.model:
        facts.append(f"model {_code(report.model)}")
    facts.append(f"policy {_code(v.policy)} ({_code(v.policy_hash)})")
    lines += [" · ".join(facts), ""]
    counts = _counts(v)
    lines += [" · ".join(f"{_ICON[k]} {n} {k}" for k, n in counts.items() if n) or "no rules", ""]
    blocking = [o for o in v.rules if o.outcome in ("block", "error")]
    if blocking:
        lines.append("**Blocked by:**")
        lines += [f"- {_code(o.id)}: {_md(o.reason or o.outcome)}" for o in blocking]
        lines.append("")
    rules = report.shown()
    if rules:
        lines += ["| Rule | Outcome | Measured | Op | Threshold | Reason |", "|---|---|---|---|---|---|"]
        for o in rules:
            outcome = outcome_of(o)
            lines.append(f"| {_code(o.id)} | {_ICON.get(outcome, '')} {outcome} | {_md(_measured_text(o))} | "
                         f"{_md(o.op)} | {_md(_threshold_text(o))} | {_md(o.reason)} |")
        lines.append("")
    left_out = _left_out(report)
    if left_out:
        lines.append(f"_Not listed: {_md(left_out)}; `--only all` lists every rule._")
    return "\n".join(lines).rstrip("\n") + "\n"


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
    for o in report.shown():
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


def render_vsa(report: GateReport) -> str:
    """The verdict's signed SLSA VSA, run attestation and Test Results as one in-toto bundle (JSON Lines).

    Signing needs the ledger, so ``assay gate`` builds them (``assay.commands.vsa.build_vsa``) into
    ``report.extra["vsa"]``; this only writes them out.
    """
    docs = report.extra.get("vsa")
    if docs is None:
        raise ValueError("the vsa format is signed from the ledger: build it with assay.commands.vsa.build_vsa")
    return str(docs.bundle_text())


RENDERERS: dict[str, Callable[[GateReport], str]] = {
    "vsa": render_vsa,
    "text": render_text,
    "json": render_json,
    "junit": render_junit,
    "markdown": render_markdown,
    "sarif": render_sarif,
}


def render(report: GateReport, fmt: str) -> str:
    """The report in format ``fmt`` (one of :data:`FORMATS`)."""
    return RENDERERS[fmt](report)
