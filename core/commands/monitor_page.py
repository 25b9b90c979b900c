"""The ``assay monitor --html`` page: assay's verdict first, evidently's report below it.

evidently drew the report from the same test results assay judges, configured with the
policy's own thresholds (:mod:`assay.kernel.drift_rules`), so the two cannot disagree; the
page says how: the drift-share rule that set the dataset drift threshold (and the next float
above it where a share of exactly ``T`` is possible), the per-column rules that set the
column tests' thresholds, and any rule that reads a column's score against its test's sense.

The page (:func:`monitor_page`) leads with the run, model, policy name and digest and every
monitor rule with its measured value and threshold, then embeds evidently's HTML (the artifact
whose digest the ``monitor`` ledger record holds) in an ``iframe`` unchanged.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from assay.kernel.drift_rules import (
    COLUMN_PREFIX,
    COLUMN_SUFFIX,
    SHARE_PATH,
    column_thresholds,
    monitor_rules,
)
from assay.kernel.drift_rules import threshold_number as _number

# --------------------------------------------------------------------------- the page


def _fmt(value: Any, digits: int = 4) -> str:
    from assay.commands.monitor import fmt

    return fmt(value, digits)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
main{max-width:1200px;margin:0 auto;padding:24px}
header.verdict{border-radius:8px;padding:16px 20px;color:#fff;margin-bottom:16px}
header.verdict.block{background:#b42318}header.verdict.pass{background:#067647}
header.verdict h1{margin:0 0 6px;font-size:24px}header.verdict p{margin:2px 0;font-size:14px;overflow-wrap:anywhere}
section{background:#fff;border:1px solid #d0d5dd;border-radius:8px;padding:16px 20px;margin-bottom:16px}
h2{font-size:18px;margin:0 0 10px}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{border-bottom:1px solid #eaecf0;padding:6px 8px;text-align:left;vertical-align:top}
td.num{font-variant-numeric:tabular-nums;text-align:right;white-space:nowrap}
.outcome{font-weight:600;text-transform:uppercase;font-size:12px;padding:2px 6px;border-radius:4px}
.outcome.block,.outcome.error{background:#fee4e2;color:#b42318}.outcome.warn{background:#fef0c7;color:#93370d}
.outcome.pass{background:#dcfae6;color:#067647}.outcome.n\\/a,.outcome.waived{background:#f2f4f7;color:#475467}
code{overflow-wrap:anywhere}
iframe.evidently{width:100%;height:1600px;border:1px solid #d0d5dd;border-radius:8px;background:#fff}
@media print{iframe.evidently{height:auto}body{background:#fff}}
"""

ATTENTION = ("block", "error", "warn")


def _rule_rows(rules: Sequence[Any]) -> str:
    rows = []
    for r in rules:
        shown = _threshold_text(r.threshold)
        threshold = f"{_e(r.op)} {_e(shown)}" if r.op and r.threshold is not None else _e(shown)
        rows.append(f'<tr class="rule" data-rule="{_e(r.id)}" data-outcome="{_e(r.outcome)}">'
                    f'<td><code>{_e(r.id)}</code></td><td><span class="outcome {_e(r.outcome)}">{_e(r.outcome)}</span></td>'
                    f'<td class="num measured">{_e(_fmt(r.measured))}</td><td class="num threshold">{threshold}</td>'
                    f'<td><code>{_e(r.path)}</code></td><td>{_e(r.reason)}</td></tr>')
    return "".join(rows)


def _threshold_text(value: Any) -> str:
    number = _number(value)
    return _fmt(value) if number is None else f"{number:g}"


def _agreement(result: Any) -> str:
    """What evidently's report was told and concluded, next to assay's own judgement of the same share."""
    drift = result.evidence.get("drift", {})
    share, tested, drifted = drift.get("share_drifted"), drift.get("tested", 0), drift.get("drifted", 0)
    told = drift.get("evidently") or {}
    rule = next((r for r in result.verdict.rules if r.path == SHARE_PATH and r.severity == "block"
                 and r.op in ("<=", "<")), None)
    items = []
    evidently_says = told.get("dataset_drift")
    if rule is not None and told:
        assay_says = rule.outcome in ("block", "error")
        agree = evidently_says is assay_says
        exact = "" if told.get("drift_share") == _number(rule.threshold) else (
            f" (evidently counts a share <em>at</em> its threshold as drift while <code>{_e(rule.op)}</code> allows it, "
            f"so it was given {_e(repr(told.get('drift_share')))}, the next number above "
            f"{_e(_threshold_text(rule.threshold))}: both pass a share of exactly {_e(_threshold_text(rule.threshold))})")
        items.append(
            f'<li class="share-threshold" data-rule="{_e(rule.id)}" data-threshold="{_e(rule.threshold)}" '
            f'data-evidently-threshold="{_e(told.get("drift_share"))}" '
            f'data-assay-drift="{"true" if assay_says else "false"}" '
            f'data-evidently-drift="{_e(str(evidently_says).lower())}" data-agree="{"true" if agree else "false"}">'
            f"Drift share: rule <code>{_e(rule.id)}</code> (<code>{SHARE_PATH} {_e(rule.op)} "
            f"{_e(_threshold_text(rule.threshold))}</code>) set evidently&#39;s dataset drift threshold to "
            f"{_e(_threshold_text(told.get('drift_share')))}{exact}. Share {_e(_fmt(share, 3))} ({drifted} of {tested} "
            f"features): assay judges <strong>{_e(rule.outcome)}</strong>, evidently reports dataset drift "
            f"<strong>{'detected' if evidently_says else 'not detected'}</strong>"
            + (" — the same conclusion." if agree else
               " — <strong>they disagree</strong>: assay&#39;s verdict above is the one recorded and enforced.")
            + "</li>")
    elif told:
        items.append(f'<li class="share-threshold" data-evidently-threshold="{_e(told.get("drift_share"))}">The policy '
                     f"has no blocking rule on <code>{SHARE_PATH}</code>: evidently&#39;s dataset-drift headline below "
                     f"uses its default threshold {_e(_threshold_text(told.get('drift_share')))} and decides nothing "
                     "here.</li>")
    every, per_column, column_ids = column_thresholds(monitor_rules(result.policy))
    if column_ids:
        listed = ", ".join(f"{_e(c)} {_e(_threshold_text(t))}" for c, t in sorted(per_column.items()))
        items.append(f"<li>Per-column test thresholds from rule(s) {_e(', '.join(column_ids))}: "
                     + (f"every column {_e(_threshold_text(every))}" if every is not None else "")
                     + ("; " if every is not None and listed else "") + listed + ".</li>")
    else:
        items.append("<li>Per-column tests use evidently&#39;s default threshold for each column&#39;s method (the "
                     f"policy sets no <code>{COLUMN_PREFIX}COLUMN{COLUMN_SUFFIX}</code> threshold); the column table "
                     "and evidently&#39;s list the same method, score and threshold per column.</li>")
    for rule_json in monitor_rules(result.policy):  # a score rule must read the score the way its test does
        path, op = str(rule_json.get("path", "")), rule_json.get("op")
        if not (path.startswith(COLUMN_PREFIX) and path.endswith(COLUMN_SUFFIX)) or _number(rule_json.get("threshold")) is None:
            continue
        column = path[len(COLUMN_PREFIX):-len(COLUMN_SUFFIX)]
        for name, e in sorted(drift.get("columns", {}).items()):
            wrong = (e.get("statistic") == "p_value" and op in ("<=", "<")) or \
                (e.get("statistic") == "distance" and op in (">=", ">"))
            if column in ("*", name) and wrong:
                items.append(f'<li class="mismatch">Rule <code>{_e(rule_json.get("id"))}</code> reads '
                             f"<code>{_e(path)} {_e(op)}</code>, but evidently tested <code>{_e(name)}</code> with "
                             f"{_e(e.get('method'))}, a {'p-value (small means drift)' if e.get('statistic') == 'p_value' else 'distance (large means drift)'}"
                             f": the rule and the test disagree on that column; write a rule for it with "
                             f"<code>{'&gt;=' if e.get('statistic') == 'p_value' else '&lt;='}</code>.</li>")
    gone = sorted(c for c, e in drift.get("columns", {}).items()
                  if e.get("drifted") and e.get("method") is None and e.get("detail"))
    if gone:
        items.append(f"<li>Counted as drifted by assay but not tested by evidently (no values in the batch): "
                     f"{_e(', '.join(gone))}.</li>")
    return "<ul>" + "".join(items) + "</ul>"


def _columns_table(drift: Mapping[str, Any]) -> str:
    rows = []
    ordered = sorted(drift.get("columns", {}).items(), key=lambda kv: (not kv[1].get("drifted"), kv[0]))
    for name, e in ordered:
        flag = "drift" if e.get("drifted") else ("—" if e.get("drifted") is None else "no")
        rows.append(f'<tr class="column" data-column="{_e(name)}" data-drifted="{_e(flag)}"><td><code>{_e(name)}</code>'
                    f'</td><td>{_e(e.get("type"))}</td><td>{_e(e.get("method") or e.get("detail") or "—")}</td>'
                    f'<td class="num">{_e(_fmt(e.get("score")))}</td><td class="num">{_e(_fmt(e.get("threshold")))}</td>'
                    f"<td>{_e(flag)}</td></tr>")
    return ("<table><thead><tr><th>column</th><th>type</th><th>method</th><th>score</th><th>threshold</th>"
            "<th>drift</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def monitor_page(result: Any, evidently_html: bytes | None) -> str:
    """The standalone page for ``assay monitor --html``: verdict, rules, configuration, evidently's report."""
    ev = result.evidence
    verdict = result.verdict
    model = ev.get("model", {})
    current = ev.get("data", {}).get("current", {})
    decision = "pass" if verdict.decision == "pass" else "block"
    headline = "STABLE" if decision == "pass" else "BEYOND POLICY"
    attention = [r for r in verdict.rules if r.outcome in ATTENTION]
    others = [r for r in verdict.rules if r.outcome not in ATTENTION]
    head = ("<thead><tr><th>rule</th><th>outcome</th><th>measured</th><th>threshold</th><th>evidence path</th>"
            "<th>reason</th></tr></thead>")
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>assay monitor: {_e(headline.lower())} — {_e(model.get('ref'))}</title><style>{STYLE}</style></head>",
        "<body><main>",
        f'<header class="verdict {decision}" id="verdict" data-decision="{_e(verdict.decision)}">',
        f"<h1>{headline}: {_e(model.get('ref'))}</h1>",
        f"<p>run <code>{_e(ev.get('run_id'))}</code> · model {_e(model.get('ref'))} ({_e(model.get('family'))}) "
        f"artifact <code>{_e(model.get('artifact'))}</code></p>",
        f'<p class="policy">policy <strong>{_e(verdict.policy)}</strong> <code>{_e(verdict.policy_hash)}</code></p>',
        f"<p>batch {_e(current.get('source'))} ({_e(current.get('rows'))} rows"
        f"{', labelled' if current.get('labelled') else ''}) <code>{_e(current.get('fingerprint'))}</code> · "
        f"monitor <code>{_e(ev.get('monitor_id'))}</code></p>",
        "</header>",
    ]
    if attention:
        parts.append('<section id="attention"><h2>Needs attention</h2><table class="rules">' + head + "<tbody>"
                     + _rule_rows(attention) + "</tbody></table></section>")
    parts.append(f'<section id="rules"><h2>Monitor rules of {_e(verdict.policy)}</h2>'
                 + (f'<table class="rules">{head}<tbody>{_rule_rows(others)}</tbody></table>' if others
                    else "<p>every rule is listed under Needs attention</p>") + "</section>")
    parts.append('<section id="evidently-config"><h2>evidently, configured with this policy</h2>'
                 + _agreement(result) + "</section>")
    parts.append('<section id="columns"><h2>Column drift</h2>' + _columns_table(ev.get("drift", {})) + "</section>")
    for warning in result.warnings:
        parts.append(f'<section class="warning"><p>warning: {_e(warning)}</p></section>')
    report = ev.get("report") or {}
    if evidently_html is not None:
        parts.append(f'<section id="evidently"><h2>evidently report</h2><p>{_e(report.get("generator", "evidently"))}'
                     f', artifact <code>{_e(report.get("html"))}</code> (its digest is in the monitor ledger record)</p>'
                     f'<iframe class="evidently" title="evidently report" srcdoc="{_e(evidently_html.decode("utf-8"))}">'
                     "</iframe></section>")
    else:
        parts.append('<section id="evidently"><h2>evidently report</h2><p>no column could be drift-tested, so '
                     "evidently wrote no report for this batch</p></section>")
    parts.append("</main></body></html>")
    return "".join(parts)
