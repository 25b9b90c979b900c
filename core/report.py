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

from assay.errors import BadInput

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2330;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #dde}
table{border-collapse:collapse;margin:.5rem 0;font-size:13px} td,th{padding:.25rem .6rem;border-bottom:1px solid #eef;text-align:left}
th{background:#f5f6fa} td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass,.passed{color:#137333;font-weight:600} .block,.blocked,.fail,.error,.errored{color:#b3261e;font-weight:600}
.warn,.waived{color:#a15c00;font-weight:600} code{font-size:12px;background:#f5f6fa;padding:0 .2rem;word-break:break-all}
.na{color:#667} .fix{display:block;margin-top:.2rem;color:#1d2330} .fix b{color:#a15c00}
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
    css = "na" if value == "n/a" else value
    return f'<span class="{escape(css)}">{escape(value)}</span>'


def _reason(text: str) -> str:
    """A rule's reason, with its "Fix: ..." part set apart."""
    what, sep, fix = text.partition(". Fix: ")
    out = escape(what)
    return out + (f'<span class="fix"><b>Fix:</b> {escape(fix)}</span>' if sep else "")


_URGENCY = {"block": 0, "error": 0, "fail": 0, "warn": 1, "waived": 2, "pass": 3, "n/a": 4, "skip": 4}


def _finding(check: dict[str, Any]) -> str:
    """What a check that did not pass found, in words, and what to do about it."""
    found = check.get("detail")
    detail: dict[str, Any] = found if isinstance(found, dict) else {}
    message = str(check.get("message") or detail.get("error") or detail.get("reason") or "")
    fix = detail.get("fix") if check.get("status") not in ("pass", "skip") else None
    return escape(message) + (f'<span class="fix"><b>Fix:</b> {escape(str(fix))}</span>' if fix else "")


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
        from assay.policies.evaluate import NOT_APPLICABLE

        def outcome(r: dict[str, Any]) -> str:  # verdicts recorded before n/a existed said pass
            not_applicable = r.get("outcome") == "pass" and str(r.get("reason", "")).startswith(NOT_APPLICABLE)
            return "n/a" if not_applicable else str(r.get("outcome"))

        rules = sorted(verdict.get("rules", []), key=lambda r: _URGENCY.get(outcome(r), 1))
        counts: dict[str, int] = {}
        for r in rules:
            counts[outcome(r)] = counts.get(outcome(r), 0) + 1
        parts.append(f"<h2>Gate: {_status(verdict['decision'])} under {escape(verdict['policy'])}</h2>")
        parts.append(f"<p class=muted>policy {escape(verdict.get('policy_hash', ''))} — "
                     + escape(", ".join(f"{n} {k}" for k, n in counts.items())) + "</p>")
        parts.append(_table(["rule", "outcome", "measured", "threshold", "reason"],
                            [[f"<code>{escape(r['id'])}</code>", _status(outcome(r)), _v(r.get("measured")),
                              escape(f"{r.get('op', '')} ") + _v(r.get("threshold")), _reason(str(r.get("reason", "")))]
                             for r in rules], raw=True))

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
        found = sorted(((g, n, c) for g, group in checks.items() for n, c in group.items()),
                       key=lambda item: _URGENCY.get(str(item[2].get("status")), 1))
        parts.append("<h2>Checks</h2>")
        parts.append(_table(["group", "check", "status", "value", "finding", "detail"],
                            [[escape(g), escape(n), _status(str(c.get("status"))), _v(c.get("value")),
                              _finding(c), _v(c.get("detail"))] for g, n, c in found], raw=True))

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
                        [[r.seq, escape(r.kind), escape(str(r.time)), f"<code>{escape(r.hash)}</code>",
                          f"<code>{escape(r.key_id)}</code>"] for r in records], raw=True))
    title = f"assay report {escape(run.run_id)}"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{CSS}</style></head>"
            f"<body>{''.join(parts)}</body></html>")


@click.command()
@click.argument("run_id")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="File to write.")
@click.option("--format", "fmt", type=click.Choice(["html", "cyclonedx"]), default="html", show_default=True,
              help="html: a page for reviewers; cyclonedx: a signed CycloneDX 1.6 ML-BOM (JSON).")
@click.pass_obj
def report(state: Any, run_id: str, output: str, fmt: str = "html") -> None:
    """Write a self-contained HTML report of RUN_ID: verdict, metrics, checks, fairness, ledger."""
    from assay.audit.ledger import Ledger
    from assay.store import RunStore

    target = Path(output)
    if not target.parent.is_dir():  # said before the ledger is read and verified, which takes a while
        raise BadInput(f"--output {output}: folder {target.parent} does not exist (create it, or pick another path)")
    if fmt == "cyclonedx":
        from assay.bom import save_bom

        click.echo(save_bom(state, run_id, target))
        return
    row = RunStore(state).get_run(run_id)
    ledger = Ledger.open(state)
    verification = ledger.verify()
    integrity = {"ok": verification.ok, "summary": verification.summary()}
    html = render(row, row.evidence or {}, row.verdict, ledger.records(run_id=row.run_id), integrity)
    try:
        target.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"--output {output}: cannot write the report: {exc.strerror or exc}") from None
    click.echo(f"wrote {output} (run {row.run_id}, {row.status}; ledger {'intact' if verification.ok else 'NOT intact'})")
