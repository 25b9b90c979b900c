"""``assay report``: one self-contained HTML page per run, for reviewers and auditors.

Everything shown comes from the run's recorded evidence and its ledger records; the page
also states whether the ledger verified when the report was written.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

import click

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2330;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #dde}
table{border-collapse:collapse;margin:.5rem 0;font-size:13px} td,th{padding:.25rem .6rem;border-bottom:1px solid #eef;text-align:left}
th{background:#f5f6fa} td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass,.passed{color:#137333;font-weight:600} .block,.blocked,.fail,.error,.errored{color:#b3261e;font-weight:600}
.warn,.waived{color:#a15c00;font-weight:600} code{font-size:12px;background:#f5f6fa;padding:0 .2rem}
.muted{color:#667} .badge{display:inline-block;padding:.15rem .6rem;border-radius:1rem;background:#f5f6fa}
"""


def _v(value: Any) -> str:
    if value is None:
        return '<span class="muted">—</span>'
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (list, dict)):
        return f"<code>{escape(json.dumps(value)[:200])}</code>"
    return escape(str(value))


def _table(headers: list[str], rows: list[list[Any]], raw: bool = False) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="{"num" if isinstance(c, (int, float)) else ""}">{c if raw else _v(c)}</td>'
                         for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _status(value: str) -> str:
    return f'<span class="{escape(value)}">{escape(value)}</span>'


def render(run: Any, evidence: dict[str, Any], verdict: dict[str, Any] | None, records: list[Any],
           integrity: dict[str, Any]) -> str:
    ev = evidence
    metric = ev.get("metric")
    parts = [f"<h1>{escape(str(ev.get('project', run.project)))} — run <code>{escape(run.run_id)}</code></h1>",
             f'<p><span class="badge">{_status(run.status)}</span> &nbsp; model '
             f"<code>{escape(str(ev.get('model', {}).get('ref')))}</code> "
             f"<span class=muted>{escape(str(ev.get('model', {}).get('artifact')))}</span></p>"]
    if run.error:
        parts.append(f'<p class="error">error: {escape(run.error)}</p>')

    if verdict:
        parts.append(f"<h2>Gate: {_status(verdict['decision'])} under {escape(verdict['policy'])}</h2>")
        parts.append(f"<p class=muted>policy {escape(verdict.get('policy_hash', ''))}</p>")
        parts.append(_table(["rule", "outcome", "measured", "threshold", "reason"],
                            [[escape(r["id"]), _status(r["outcome"]), _v(r.get("measured")),
                              escape(f"{r.get('op', '')} ") + _v(r.get("threshold")), escape(r.get("reason", ""))]
                             for r in verdict.get("rules", [])], raw=True))

    metrics = ev.get("metrics", {})
    test, cv = metrics.get("test", {}), metrics.get("cv", {})
    base = ev.get("baseline", {}).get("test", {})
    rows = []
    for name, value in test.items():
        if isinstance(value, (list, dict)):
            continue
        cv_mean = cv.get(name, {}).get("mean") if isinstance(cv.get(name), dict) else None
        rows.append([f"<b>{escape(name)}</b>" if name == metric else escape(name), _v(metrics.get("train", {}).get(name)),
                     _v(cv_mean), _v(value), _v(test.get(f"{name}_ci")), _v(base.get(name)), _v(ev.get("gap", {}).get(name))])
    parts.append(f"<h2>Metrics (primary: {escape(str(metric))}; baseline: {escape(str(ev.get('baseline', {}).get('name')))})</h2>")
    parts.append(_table(["metric", "train", "cv", "test", "test 95% CI", "baseline", "gap"], rows, raw=True))

    candidates = ev.get("model", {}).get("candidates", [])
    if candidates:
        parts.append("<h2>Model selection</h2>")
        parts.append(_table(["family", "cv mean", "cv std", "candidates", "fit s", "best params"],
                            [[c.get("family"), c.get("cv_mean"), c.get("cv_std"), c.get("n_candidates"), c.get("fit_s"),
                              c.get("params")] for c in candidates]))

    checks = ev.get("checks", {})
    if checks:
        parts.append("<h2>Checks</h2>")
        parts.append(_table(["group", "check", "status", "value", "detail"],
                            [[escape(g), escape(n), _status(str(c.get("status"))), _v(c.get("value")), _v(c.get("detail"))]
                             for g, group in checks.items() for n, c in group.items()], raw=True))

    for feature, info in ev.get("fairness", {}).items():
        parts.append(f"<h2>Fairness: {escape(feature)}</h2>")
        summary = {k: v for k, v in info.items() if not isinstance(v, (dict, list))}
        parts.append(_table(list(summary), [list(summary.values())]))
        by_group = info.get("by_group", {})
        if isinstance(by_group, dict) and by_group:
            cols = sorted({k for g in by_group.values() if isinstance(g, dict) for k in g})
            parts.append(_table(["group", *cols], [[g, *[vals.get(c) for c in cols]] for g, vals in by_group.items()
                                                  if isinstance(vals, dict)]))

    data, split = ev.get("data", {}), ev.get("split", {})
    parts.append("<h2>Data and split</h2>")
    parts.append(_table(["", "rows", "fingerprint"],
                        [["dataset " + str(data.get("source")), data.get("rows"), data.get("fingerprint")],
                         *[[f"{p} ({split.get('strategy')})", split.get(p, {}).get("rows"), split.get(p, {}).get("fingerprint")]
                           for p in ("train", "test") if split]]))
    env = ev.get("environment", {})
    cost = ev.get("cost", {})
    parts.append("<h2>Environment and cost</h2>")
    key_packages = ["scikit-learn", "numpy", "pandas", "fairlearn", "assay"]
    parts.append(_table(["python", "platform", "git commit", "dirty", *key_packages, "wall s", "cpu s", "peak MB"],
                        [[env.get("python"), env.get("platform"), (env.get("git") or {}).get("commit"),
                          (env.get("git") or {}).get("dirty"), *[env.get("packages", {}).get(p) for p in key_packages],
                          cost.get("wall_s"), cost.get("cpu_s"), cost.get("peak_mb")]]))

    parts.append(f"<h2>Ledger records ({len(records)}) — ledger {'verified' if integrity.get('ok') else 'NOT verified'}</h2>")
    parts.append(f"<p class=muted>{escape(str(integrity.get('summary', '')))}</p>")
    parts.append(_table(["seq", "kind", "time", "hash", "signing key"],
                        [[r.seq, r.kind, r.time, r.hash[:16] + "…", r.key_id[:16] + "…"] for r in records]))
    title = f"assay report {escape(run.run_id)}"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{CSS}</style></head>"
            f"<body>{''.join(parts)}</body></html>")


@click.command()
@click.argument("run_id")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
@click.pass_obj
def report(state: Any, run_id: str, output: str) -> None:
    """Write a self-contained HTML report of RUN_ID: verdict, metrics, checks, fairness, ledger."""
    from assay.audit.ledger import Ledger
    from assay.store import RunStore

    row = RunStore(state).get_run(run_id)
    ledger = Ledger.open(state)
    verification = ledger.verify()
    integrity = {"ok": verification.ok, "summary": verification.summary()}
    html = render(row, row.evidence or {}, row.verdict, ledger.records(run_id=row.run_id), integrity)
    Path(output).write_text(html, encoding="utf-8")
    click.echo(f"wrote {output} (run {row.run_id}, {row.status}; ledger {'intact' if verification.ok else 'NOT intact'})")
