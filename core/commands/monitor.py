"""``assay monitor``: check a production batch against a training run; ``assay monitor history``.

``assay monitor RUN_ID --current DATA`` is the documented shape, so ``monitor`` is a group
whose default command is ``check``: ``assay monitor RUN_ID ...`` runs ``check``, and
``assay monitor history RUN_ID`` shows the series of results for the run's model.

Output formats: text (rich), json (one object), junit (one testcase per policy rule) and
markdown (a CI step summary). Exit codes: 0 stable, 1 beyond policy, 2 bad input.

The stages show their work as a training run's do (:class:`MonitorReporter`): on a terminal a
live bar per stage with its steps, elapsed time and ETA; on any other stderr one line per
finished stage; nothing with ``--quiet``, or with a machine format when stderr is no terminal.
"""

from __future__ import annotations

import html
import io
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import click

from assay.commands.terminal import TerminalReporter
from assay.kernel.hookspecs import hookimpl

FORMATS = ("text", "json", "junit", "markdown")
STAGE_LABELS = {
    "load": "Loading the model and the reference sample",
    "monitor": "Checking the batch for drift and decay",
    "gate": "Applying the policy's monitor rules",
}


class MonitorGroup(click.Group):
    """A group that runs ``check`` when the first argument is not a sub-command."""

    default_command = "check"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


@click.group(cls=MonitorGroup, context_settings={"help_option_names": ["-h", "--help"]})
def monitor() -> None:
    """Check production data for drift and decay against a training run.

    \b
    assay monitor RUN_ID --current DATA [--labels] [--format text|json|junit|markdown] [--html F]
    assay monitor history RUN_ID [--json] [--html F]

    RUN_ID may also be a model version (NAME@VERSION, NAME@production).
    """


# --------------------------------------------------------------------------- formatting helpers


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


def _interval(ci: Any) -> str:
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]" if isinstance(ci, list) and len(ci) == 2 else ""


def _drift_rows(drift: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    columns = list(drift.get("columns", {}).items())
    return sorted(columns, key=lambda kv: (not kv[1].get("drifted"), kv[0]))


def summary_lines(ev: dict[str, Any]) -> list[str]:
    """Plain-text findings shared by every format."""
    lines = []
    drift = ev.get("drift", {})
    share = drift.get("share_drifted")
    cols = drift.get("drifted_columns", [])
    lines.append(f"data drift: {drift.get('drifted', 0)} of {drift.get('tested', 0)} features drifted "
                 f"(share {fmt(share, 3)})" + (f": {', '.join(cols)}" if cols else ""))
    pred = drift.get("prediction")
    if pred:
        lines.append(f"prediction drift: {'detected' if pred.get('drifted') else 'not detected'} "
                     f"({pred.get('method')}, score {fmt(pred.get('score'))}, threshold {fmt(pred.get('threshold'))}; "
                     f"reference: {pred.get('reference')})")
    target = drift.get("target")
    if target:
        lines.append(f"label drift ({target.get('column')}): {'detected' if target.get('drifted') else 'not detected'} "
                     f"({target.get('method')}, score {fmt(target.get('score'))})")
    perf = ev.get("performance")
    metric = ev.get("metric")
    if perf:
        current = ev.get("metrics", {}).get("current", {})
        lines.append(f"performance on {perf.get('rows')} labelled rows: {metric} {fmt(current.get(metric))} "
                     f"{_interval(current.get(f'{metric}_ci'))} vs holdout {fmt(perf.get('test'))} "
                     f"(change {fmt(perf.get('change'))})")
    for feature, entry in ev.get("fairness", {}).items():
        parts = [f"{k.replace('_', ' ')} {fmt(entry[k], 3)}" for k in
                 ("selection_rate_ratio", "demographic_parity_difference", "equalized_odds_difference") if k in entry]
        if not parts:
            parts = [f"{len(entry.get('by_group', {}))} groups"]
        small = entry.get("small_groups") or []
        lines.append(f"fairness by {feature}: " + ", ".join(parts) + (f" (small groups: {', '.join(small)})" if small else ""))
    schema = ev.get("schema", {})
    for col, new in schema.get("new_categories", {}).items():
        shown = ", ".join(repr(v) for v in new["values"][:5])
        lines.append(f"new categories in {col}: {new['distinct']} unseen value(s) on {new['rows']} row(s), e.g. {shown}")
    if schema.get("missing_columns"):
        lines.append(f"sensitive columns missing from the batch: {', '.join(schema['missing_columns'])}")
    for col, note in schema.get("coerced", {}).items():
        lines.append(f"{col}: {note}")
    if schema.get("extra_columns"):
        lines.append(f"ignored columns: {', '.join(schema['extra_columns'])}")
    return lines


# --------------------------------------------------------------------------- renderers


def render_text(result: Any, width: int | None = None) -> str:
    """The monitoring result for a person: ``width`` columns, else $COLUMNS, else 120."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from assay.policies.render import GateReport, counts_text, rules_table, shown_rules, text_width

    width = text_width(120) if width is None else width
    ev = result.evidence
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False, color_system=None)
    data = ev["data"]["current"]
    console.print(f"assay monitor  {ev['model'].get('ref')}  run {ev['run_id']}  batch {data['source']} "
                  f"({data['rows']} rows)  monitor {ev['monitor_id']}", markup=False)
    table = Table(title="column drift (evidently)", show_edge=False)
    for col in ("column", "type", "method", "score", "threshold", "drifted"):
        table.add_column(col)
    for name, entry in _drift_rows(ev.get("drift", {})):
        # Text cells: a column or rule name in brackets must not be read as rich markup
        table.add_row(Text(name), str(entry.get("type")), Text(str(entry.get("method") or entry.get("detail") or "—")),
                      fmt(entry.get("score")), fmt(entry.get("threshold")),
                      "DRIFT" if entry.get("drifted") else ("—" if entry.get("drifted") is None else "no"))
    console.print(table)
    for line in summary_lines(ev):
        console.print(line, markup=False)
    # the rules most pressing first (block/error, warn, waived, pass, n/a), ids whole
    rules = rules_table(shown_rules(result.verdict.rules))
    rules.title = f"policy {result.verdict.policy} (monitor rules)"
    console.print(rules)
    for warning in result.warnings:
        console.print(f"warning: {warning}", markup=False)
    if result.html:
        console.print(f"evidently report: {result.html}", markup=False)
    headline = "STABLE" if result.exit_code == 0 else "BEYOND POLICY"
    counts = counts_text(GateReport(ev["run_id"], result.verdict))
    reasons = "; ".join(result.verdict.reasons)
    console.print(f"{headline}  {counts}" + (f"  {reasons}" if reasons else ""), markup=False)
    return buffer.getvalue()


def render_json(result: Any) -> str:
    return json.dumps(result.to_json(), sort_keys=True)


def render_junit(result: Any) -> str:
    """One testcase per monitor rule outcome; block and error are failures, warn passes with output."""
    ev = result.evidence
    rules = result.verdict.rules
    failures = sum(1 for r in rules if r.outcome == "block")
    errors = sum(1 for r in rules if r.outcome == "error")
    suites = ET.Element("testsuites", name="assay monitor", tests=str(len(rules)), failures=str(failures),
                        errors=str(errors))
    suite = ET.SubElement(suites, "testsuite", name=f"assay.monitor.{ev['run_id']}", tests=str(len(rules)),
                          failures=str(failures), errors=str(errors), skipped="0")
    props = ET.SubElement(suite, "properties")
    drift = ev.get("drift", {})
    for name, value in (("monitor_id", ev["monitor_id"]), ("run_id", ev["run_id"]), ("model", ev["model"].get("ref")),
                        ("policy", result.verdict.policy), ("status", result.status),
                        ("share_drifted", drift.get("share_drifted")), ("report", result.html)):
        ET.SubElement(props, "property", name=name, value=fmt(value))
    for rule in rules:
        case = ET.SubElement(suite, "testcase", classname="assay.monitor.policy", name=rule.id)
        if rule.outcome == "block":
            ET.SubElement(case, "failure", message=rule.reason, type="block").text = rule.description
        elif rule.outcome == "error":
            ET.SubElement(case, "error", message=rule.reason, type="error").text = rule.description
        else:
            ET.SubElement(case, "system-out").text = f"{rule.outcome}: {rule.reason}"
    ET.SubElement(suite, "system-out").text = "\n".join(summary_lines(ev))
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def _md(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(result: Any) -> str:
    from assay.policies.render import shown_rules

    ev = result.evidence
    icon = "✅" if result.exit_code == 0 else "❌"
    status = "stable" if result.exit_code == 0 else "beyond policy"
    out = [f"### {icon} assay monitor: {status} — {ev['model'].get('ref')}", "",
           f"Run `{ev['run_id']}`, batch `{ev['data']['current']['source']}` ({ev['data']['current']['rows']} rows), "
           f"policy `{result.verdict.policy}`.", ""]
    out += [f"- {_md(line)}" for line in summary_lines(ev)]
    out += ["", "| rule | outcome | measured | threshold | reason |", "|---|---|---|---|---|"]
    for rule in shown_rules(result.verdict.rules):
        out.append(f"| {_md(rule.id)} | {rule.outcome} | {_md(fmt(rule.measured))} | {_md(fmt(rule.threshold))} "
                   f"| {_md(rule.reason)} |")
    drifted = [(n, e) for n, e in _drift_rows(ev.get("drift", {})) if e.get("drifted")]
    if drifted:
        out += ["", "| drifted column | method | score | threshold |", "|---|---|---|---|"]
        out += [f"| {_md(n)} | {_md(e.get('method') or e.get('detail'))} | {fmt(e.get('score'))} "
                f"| {fmt(e.get('threshold'))} |" for n, e in drifted]
    if result.html:
        out += ["", f"evidently report: `{result.html}`"]
    return "\n".join(out) + "\n"


RENDERERS = {"text": render_text, "json": render_json, "junit": render_junit, "markdown": render_markdown}


# --------------------------------------------------------------------------- progress


class MonitorReporter(TerminalReporter):
    """The terminal reporter of a monitoring run: its stages (load, monitor, gate) and their steps."""

    @hookimpl
    def stage_started(self, run: Any, stage: str) -> None:
        if self.live and self.progress is None:  # a monitoring run has no run_started: the first stage starts it
            self._start_progress()
        self.started[stage] = time.perf_counter()
        if self.progress is not None:
            self.task = self.progress.add_task(f"{stage:<8}", total=None, count="",
                                               label=f"{STAGE_LABELS.get(stage, stage)}…")

    def close(self) -> None:
        """Take the live display down (after the last stage, or when one failed)."""
        self._stop_progress()


# --------------------------------------------------------------------------- check


@monitor.command("check")
@click.argument("run_ref", metavar="RUN_ID")
@click.option("--current", "current", required=True, metavar="DATA", help="The batch: a .csv or .parquet file.")
@click.option("--labels", is_flag=True, help="The batch has the target column: measure performance and fairness.")
@click.option("--policy", "policy_ref", metavar="FILE|NAME", help="Policy (default: the run's gate.policy).")
@click.option("--format", "fmt_name", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), help="Write the report here instead of stdout.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="Also write an HTML page here: assay's verdict, then evidently's report set to the policy's thresholds.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
@click.pass_obj
def check(state: Any, run_ref: str, current: str, labels: bool, policy_ref: str | None, fmt_name: str,
          output: str | None, html_path: str | None, quiet: bool) -> None:
    """Check the batch DATA against run RUN_ID: drift, prediction drift, performance, fairness.

    evidently's drift tests use the policy's thresholds: the blocking rule on
    drift.share_drifted sets its dataset drift threshold, and rules on
    drift.columns.COLUMN.score (or drift.columns.*.score) with a number set the test
    threshold of that column (or of every column). --html F writes one self-contained page:
    assay's verdict (run, model, policy name and digest, every monitor rule with its measured
    value and threshold) first, then evidently's recorded report, which reaches the same
    conclusion.
    """
    from assay.commands.monitoring import run_monitor
    from assay.commands.terminal import make_console
    from assay.storage.store import ArtifactStore

    reporter = None
    if not quiet and (fmt_name == "text" or sys.stderr.isatty()):
        reporter = MonitorReporter(make_console(stderr=True))
    pm = state.plugin_manager((("terminal", reporter),) if reporter is not None else ())
    try:
        result = run_monitor(pm, state, run_ref, current, labels=labels, policy_ref=policy_ref)
    finally:
        if reporter is not None:
            reporter.close()
    text = RENDERERS[fmt_name](result)
    if html_path:  # assay's verdict first, evidently's report (the recorded artifact) below it
        from assay.commands.monitor_page import monitor_page

        report = ArtifactStore(state.home).get_bytes(result.html) if result.html else None
        Path(html_path).write_text(monitor_page(result, report), encoding="utf-8")
    _emit(text, output)
    sys.exit(result.exit_code)


def _emit(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=not text.endswith("\n"))


# --------------------------------------------------------------------------- history


def history_json(run: Any, rows: Sequence[Any]) -> dict[str, Any]:
    from assay.commands.monitor_history import trend

    share = [r.share_drifted for r in rows]
    metric = [r.metric_current for r in rows]
    share_threshold = next((r.share_threshold for r in reversed(rows) if r.share_threshold is not None), None)
    metric_threshold = next((r.metric_threshold for r in reversed(rows) if r.metric_threshold is not None), None)
    return {
        "run_id": run.run_id,
        "project": run.project,
        "model": rows[-1].model_ref if rows else None,
        "metric": rows[-1].metric if rows else None,
        "results": [r.to_json() for r in rows],
        "trend": {
            "share_drifted": trend(share, share_threshold, rising_is_bad=True),
            "metric_current": trend(metric, metric_threshold, rising_is_bad=False),
        },
    }


def _trend_text(name: str, t: dict[str, Any]) -> str:
    if t["slope"] is None:
        return f"{name}: not enough results for a trend"
    text = f"{name}: {t['direction']} ({t['slope']:+.4f} per batch over the last {t['points']})"
    if t.get("batches_to_threshold") is not None:
        text += f", about {t['batches_to_threshold']:.1f} batches from the threshold {fmt(t['threshold'], 3)}"
    elif t.get("worsening") and t.get("threshold") is not None:
        text += f", already past the threshold {fmt(t['threshold'], 3)}"
    return text


def svg_chart(title: str, values: Sequence[float | None], lines: Sequence[tuple[str, float | None, str]],
              color: str = "#1f77b4", width: int = 640, height: int = 200) -> str:
    """A small inline SVG line chart of ``values`` per batch with labelled horizontal ``lines``."""
    pad_l, pad_r, pad_t, pad_b = 48, 110, 24, 28
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    levels = [v for _, v, _ in lines if v is not None] + [v for _, v in points]
    lo, hi = (min(levels), max(levels)) if levels else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    margin = (hi - lo) * 0.1
    lo, hi = lo - margin, hi + margin
    n = max(len(values), 2)
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b

    def x(i: float) -> float:
        return pad_l + plot_w * i / (n - 1)

    def y(v: float) -> float:
        return pad_t + plot_h * (1 - (v - lo) / (hi - lo))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{html.escape(title)}">',
             f'<text x="{pad_l}" y="16" font-size="13" font-family="sans-serif">{html.escape(title)}</text>',
             f'<rect x="{pad_l}" y="{pad_t}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc"/>']
    for tick in (lo + margin, hi - margin):
        parts.append(f'<text x="{pad_l - 4}" y="{y(tick) + 4:.1f}" font-size="10" text-anchor="end" '
                     f'font-family="sans-serif">{tick:.3g}</text>')
    for label, level, stroke in lines:
        if level is None:
            continue
        parts.append(f'<line x1="{pad_l}" x2="{pad_l + plot_w}" y1="{y(level):.1f}" y2="{y(level):.1f}" '
                     f'stroke="{stroke}" stroke-dasharray="5,4"/>')
        parts.append(f'<text x="{pad_l + plot_w + 4}" y="{y(level) + 4:.1f}" font-size="10" fill="{stroke}" '
                     f'font-family="sans-serif">{html.escape(label)} {level:.3g}</text>')
    if points:
        path = " ".join(f"{'M' if k == 0 else 'L'}{x(i):.1f},{y(v):.1f}" for k, (i, v) in enumerate(points))
        parts.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for i, v in points:
            parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{color}"><title>batch {i + 1}: '
                         f'{v:.4f}</title></circle>')
    for i in range(len(values)):
        parts.append(f'<text x="{x(i):.1f}" y="{height - 10}" font-size="10" text-anchor="middle" '
                     f'font-family="sans-serif">{i + 1}</text>')
    parts.append("</svg>")
    return "".join(parts)


def history_html(data: dict[str, Any]) -> str:
    """A standalone page: trend charts (inline SVG, no scripts) and the table of results."""
    rows = data["results"]
    metric = data.get("metric") or "metric"
    t_share, t_metric = data["trend"]["share_drifted"], data["trend"]["metric_current"]
    charts = [svg_chart("share of drifted features per batch", [r["share_drifted"] for r in rows],
                        [("threshold", t_share["threshold"], "#d62728")])]
    if any(r["metric_current"] is not None for r in rows):
        test = next((r["metric_test"] for r in rows if r["metric_test"] is not None), None)
        charts.append(svg_chart(f"{metric} on labelled batches", [r["metric_current"] for r in rows],
                                [("holdout", test, "#2ca02c"), ("threshold", t_metric["threshold"], "#d62728")],
                                color="#9467bd"))
    head = ("<tr><th>#</th><th>time</th><th>batch</th><th>rows</th><th>share drifted</th><th>prediction drift</th>"
            f"<th>{html.escape(metric)}</th><th>status</th></tr>")
    body = "".join(
        f"<tr><td>{i + 1}</td><td>{html.escape(r['time'][:19])}</td><td>{html.escape(Path(r['source']).name)}</td>"
        f"<td>{r['rows']}</td><td>{fmt(r['share_drifted'], 3)}</td><td>{fmt(r['prediction_drifted'])}</td>"
        f"<td>{fmt(r['metric_current'])}</td><td>{html.escape(r['status'])}</td></tr>" for i, r in enumerate(rows))
    trends = "".join(f"<li>{html.escape(_trend_text(name, t))}</li>"
                     for name, t in (("share drifted", t_share), (metric, t_metric)))
    title = f"assay monitor history — {data.get('model') or data['run_id']}"
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>run {html.escape(data['run_id'])}</p>"
            + "".join(f"<div>{c}</div>" for c in charts)
            + f"<ul>{trends}</ul><table>{head}{body}</table></body></html>")


@monitor.command("history")
@click.argument("run_ref", metavar="RUN_ID")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), help="Write trend charts and the table here.")
@click.pass_obj
def history(state: Any, run_ref: str, as_json: bool, html_path: str | None) -> None:
    """Show the series of monitor results for RUN_ID's model, with the trend toward each threshold."""
    from assay.commands.monitor_history import monitor_history

    run, rows = monitor_history(state, run_ref)
    data = history_json(run, rows)
    if html_path:
        Path(html_path).write_text(history_html(data), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(data, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # a pipe or a CI log: do not squeeze the table to 80 columns
        console = Console(width=120)
    if not rows:
        console.print(f"run {run.run_id} has no monitor results yet (run `assay monitor {run.run_id} --current DATA`)")
        return
    metric = data["metric"] or "metric"
    table = Table(title=f"monitor history of {data['model']} (run {run.run_id})", show_edge=False)
    for col in ("#", "time (UTC)", "batch", "rows", "share drifted", "prediction drift", metric, "status"):
        table.add_column(col, no_wrap=True)
    for i, r in enumerate(data["results"]):
        table.add_row(str(i + 1), r["time"][:19].replace("T", " "), Path(r["source"]).name, str(r["rows"]),
                      fmt(r["share_drifted"], 3), fmt(r["prediction_drifted"]), fmt(r["metric_current"]), r["status"])
    console.print(table)
    console.print(_trend_text("share drifted", data["trend"]["share_drifted"]))
    console.print(_trend_text(metric, data["trend"]["metric_current"]))
