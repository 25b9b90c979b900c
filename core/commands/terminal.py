"""The terminal reporter: live stage progress and the end-of-run summary (rich).

It is a plugin like any other, registered by the CLI for interactive use, so the runner
never prints. On a terminal each stage shows a live line (a progress bar with elapsed time
and an ETA where the stage reports progress: training in CV fits, checks and bootstrap
resamples in steps); anywhere else — a CI log,
a pipe — it prints nothing but one plain line per finished stage. Nothing is ever cut to
fit: ids, rule names and fingerprints are printed whole, and tables wrap long cells.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from assay.kernel.hookspecs import hookimpl

STAGE_LABELS = {
    "data": "Loading and checking data",
    "split": "Splitting and checking for leakage",
    "train": "Training and tuning",
    "evaluate": "Evaluating against the baseline",
    "gate": "Applying the policy",
}
#: the width of a console that is not a terminal when $COLUMNS is unset: wide enough that
#: tables of run ids, rule names and sha256 digests are not folded in CI logs
WIDE = 200


def make_console(stderr: bool = False) -> Console:
    """A rich console for stdout (or stderr) that honours ``COLUMNS`` and is wide when not a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    wide = "COLUMNS" not in os.environ and not _isatty(stream)
    return Console(stderr=stderr, width=WIDE if wide else None)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict) and isinstance(value.get("mean"), float):
        return f"{value['mean']:.4f}"
    return str(value)


class TerminalReporter:
    """Live progress of each stage on a terminal; one line per finished stage elsewhere."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self.progress: Any = None
        self.task: Any = None
        self.started: dict[str, float] = {}
        self.work: dict[str, tuple[int, int]] = {}

    def _start_progress(self) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.table import Column

        self.progress = Progress(
            SpinnerColumn(table_column=Column(no_wrap=True)),
            TextColumn("{task.description}", table_column=Column(no_wrap=True)),
            BarColumn(bar_width=12, table_column=Column(no_wrap=True)),
            TextColumn("{task.fields[count]}", table_column=Column(no_wrap=True)),
            TimeElapsedColumn(table_column=Column(no_wrap=True)),
            TextColumn("ETA", table_column=Column(no_wrap=True)),
            TimeRemainingColumn(table_column=Column(no_wrap=True)),
            # the label gives way on a narrow terminal; the counts and times do not
            TextColumn("[dim]{task.fields[label]}", table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis")),
            console=self.console,
            transient=True,
            expand=True,
        )
        self.progress.start()

    def _stop_progress(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
            self.task = None

    @hookimpl
    def run_started(self, run: Any) -> None:
        if self.live:
            self.console.print(Text.assemble(("assay run", "bold"), f" {run.spec.project.name}  ", (run.run_id, "dim")))
            self._start_progress()

    @hookimpl
    def stage_started(self, run: Any, stage: str) -> None:
        self.started[stage] = time.perf_counter()
        if self.progress is not None:
            self.task = self.progress.add_task(f"{stage:<8}", total=None, count="",
                                               label=f"{STAGE_LABELS.get(stage, stage)}…")

    @hookimpl
    def stage_progress(self, run: Any, stage: str, done: int, total: int, label: str) -> None:
        self.work[stage] = (done, total)
        if self.progress is not None and self.task is not None:
            unit = " fits" if stage == "train" else ""
            self.progress.update(self.task, total=max(total, done, 1), completed=done,
                                 count=f"{done}/{total}{unit}", label=label)
            # drawn now: the refresh thread starves while a fit holds the GIL in compiled code
            self.progress.refresh()

    @hookimpl
    def stage_finished(self, run: Any, stage: str, summary: dict[str, Any]) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        took = time.perf_counter() - self.started.get(stage, time.perf_counter())
        facts = [f"{k}={_fmt(v)}" for k, v in summary.items() if not isinstance(v, dict) or "mean" in v]
        if stage == "train" and stage in self.work:  # other stages' reports count one loop each, not the stage
            done, total = self.work[stage]
            facts.append(f"fits={done}/{total}")
        line = Text.assemble(("✓", "green"), f" {stage:<9} {took:6.1f}s  ", ("  ".join(facts), "dim"))
        # soft_wrap: a long fingerprint stays whole on its line (the terminal wraps it, a log keeps it)
        self.console.print(line, soft_wrap=True, highlight=False)

    @hookimpl
    def run_finished(self, run: Any, verdict: Any, evidence: dict[str, Any]) -> None:
        self._stop_progress()

    @hookimpl
    def run_failed(self, run: Any, error: BaseException, stage: str) -> None:
        self._stop_progress()
        took = time.perf_counter() - self.started.get(stage, time.perf_counter())
        self.console.print(Text.assemble(("✗", "red"), f" {stage:<9} {took:6.1f}s  failed"), soft_wrap=True)


def summary_table(result: Any) -> Table:
    """Metrics on the holdout vs the baseline: cv, test, baseline and gap."""
    ev = result.evidence
    metric_name = ev.get("metric")
    table = Table(title="metrics", title_justify="left", show_edge=False)
    table.add_column("metric", no_wrap=True)
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
        label = Text(name, style="bold" if name == metric_name else "")
        cv_value = cv.get(name, {}).get("mean") if isinstance(cv.get(name), dict) else None
        table.add_row(label, _fmt(cv_value), _fmt(value), _fmt(base.get(name)), _fmt(gap.get(name)))
    return table


def print_result(console: Console, result: Any) -> None:
    """The end-of-run summary, most pressing first: the decision, what needs attention, then the metrics."""
    from assay.policies.render import GateReport, text_renderables

    cost = result.evidence.get("cost", {})
    color = "green" if result.status == "passed" else "red"
    head = Text.assemble((result.status.upper(), f"bold {color}"), f"  run {result.run_id}")
    if result.model:
        head.append(f"  model {result.model.get('ref')}  artifact {result.model.get('artifact', '')}")
    head.append(f"  {cost.get('wall_s', 0):.1f}s")
    console.print(head)
    if result.verdict is not None:
        report = GateReport(run_id=result.run_id, verdict=result.verdict, model=result.model.get("ref"),
                            artifact=result.model.get("artifact"), only="attention")
        how_to_list = f"`assay gate {result.run_id} --only all` lists every rule"
        for item in text_renderables(report, how_to_list)[1:]:  # the headline above already says it
            console.print(item)
    console.print(summary_table(result))
