"""The terminal reporter: live stage progress and the end-of-run summary (rich).

It is a plugin like any other, registered by the CLI for interactive use, so the
runner never prints.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.table import Table

from assay.hookspecs import hookimpl

STAGE_LABELS = {
    "data": "Loading and checking data",
    "split": "Splitting and checking for leakage",
    "train": "Training and tuning",
    "evaluate": "Evaluating against the baseline",
    "gate": "Applying the policy",
}


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    text = str(value)
    return text if len(text) <= 24 else text[:23] + "…"



class TerminalReporter:
    """Shows one spinner line per running stage and a tick with its summary when done."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.status: Any = None
        self.started: dict[str, float] = {}

    @hookimpl
    def run_started(self, run: Any) -> None:
        self.console.print(f"[bold]assay run[/] {run.spec.project.name}  [dim]{run.run_id}[/]")

    @hookimpl
    def stage_started(self, run: Any, stage: str) -> None:
        self.started[stage] = time.perf_counter()
        self.status = self.console.status(f"{STAGE_LABELS.get(stage, stage)}…")
        self.status.start()

    @hookimpl
    def stage_finished(self, run: Any, stage: str, summary: dict[str, Any]) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None
        took = time.perf_counter() - self.started.get(stage, time.perf_counter())
        facts = "  ".join(f"{k}={_fmt(v)}" for k, v in summary.items() if not isinstance(v, dict))
        self.console.print(f"[green]✓[/] {stage:<9} {took:6.1f}s  [dim]{facts}[/]")

    @hookimpl
    def run_failed(self, run: Any, error: BaseException, stage: str) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None
        self.console.print(f"[red]✗[/] {stage:<9} failed")


def summary_table(result: Any) -> Table:
    """Metrics on the holdout vs the baseline, the gate's rules and the duration."""
    ev = result.evidence
    metric_name = ev.get("metric")
    table = Table(title=f"run {result.run_id}", title_justify="left", show_edge=False)
    table.add_column("metric")
    table.add_column("cv", justify="right")
    table.add_column("test", justify="right")
    table.add_column("baseline", justify="right")
    table.add_column("gap", justify="right")
    test = ev.get("metrics", {}).get("test", {})
    cv = ev.get("metrics", {}).get("cv", {})
    base = ev.get("baseline", {}).get("test", {})
    gap = ev.get("gap", {})
    for name, value in test.items():
        if name.endswith("_ci") or isinstance(value, (list, dict)):
            continue
        label = f"[bold]{name}[/]" if name == metric_name else name
        cv_value = cv.get(name, {}).get("mean") if isinstance(cv.get(name), dict) else None
        table.add_row(label, _fmt(cv_value), _fmt(value), _fmt(base.get(name)), _fmt(gap.get(name)))
    return table


def verdict_table(verdict: Any) -> Table:
    """Every rule that did not simply pass, and a count of those that did."""
    from rich.markup import escape

    passed = [r for r in verdict.rules if r.outcome == "pass"]
    title = f"gate: {verdict.policy} — {len(passed)} of {len(verdict.rules)} rules passed"
    table = Table(title=title, title_justify="left", show_edge=False)
    for col in ("rule", "outcome", "measured", "threshold"):
        table.add_column(col)
    colors = {"pass": "green", "warn": "yellow", "block": "red", "error": "red", "waived": "cyan"}
    for r in verdict.rules:
        if r.outcome == "pass":
            continue
        measured = _fmt(r.measured) if r.measured is not None else (r.reason or "—")
        table.add_row(escape(r.id), f"[{colors.get(r.outcome, 'white')}]{r.outcome}[/]", escape(measured),
                      escape(f"{r.op} {_fmt(r.threshold)}".strip()))
    return table
