"""A monitoring run shows its work as a training run does, and a policy with nothing to say about
monitoring never lets a batch pass unjudged.

The stages (load, monitor, gate) run between ``stage_started`` and ``stage_finished``; the
monitoring plugin counts its parts and the bootstrap of a labelled batch through
``run.progress``; a terminal draws the bar with an ETA, anything else gets one line per
finished stage.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from assay.kernel.hookspecs import hookimpl
from tests.conftest import run_assay
from tests.monitoring.conftest import TrainedRun, assay

STAGES = ["load", "monitor", "gate"]

TRAIN_ONLY_POLICY = """\
name = "train-only"

[[rules]]
id = "good-enough"
description = "The holdout AUC is at least 0.5."
path = "metrics.test.roc_auc"
op = ">="
threshold = 0.5
"""


class Recorder:
    """Every stage boundary and progress report of a monitoring run, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    @hookimpl
    def stage_started(self, stage: str) -> None:
        self.events.append(("started", stage))

    @hookimpl
    def stage_progress(self, stage: str, done: int, total: int, label: str) -> None:
        self.events.append(("progress", stage, str(done), str(total), label))

    @hookimpl
    def stage_finished(self, stage: str, summary: Any) -> None:
        self.events.append(("finished", stage, *(f"{k}={v}" for k, v in summary.items())))


@pytest.fixture
def home(flights: TrainedRun, tmp_path: Path) -> Path:
    """A copy of the session's home: these monitor results stay out of the other tests' history."""
    shutil.copytree(flights.home, tmp_path / "home")
    return tmp_path / "home"


def _monitor(flights: TrainedRun, home: Path, batch: str, plugin: tuple[str, object], labels: bool = False) -> Any:
    from assay.commands.monitoring import run_monitor
    from assay.kernel.manager import make_plugin_manager
    from assay.storage.settings import Settings

    pm = make_plugin_manager(extra_plugins=[plugin])
    return run_monitor(pm, Settings.resolve(home), flights.run_id, flights.batch(batch), labels=labels)


def test_a_policy_without_a_monitor_rule_blocks_with_a_named_reason(flights: TrainedRun, home: Path,
                                                                     tmp_path: Path) -> None:
    from assay.storage.settings import Settings
    from assay.storage.signed import SignedLedger

    policy = tmp_path / "train_only.toml"
    policy.write_text(TRAIN_ONLY_POLICY, encoding="utf-8")
    result = assay("monitor", flights.run_id, "--current", flights.batch("same_period.csv"), "--policy", str(policy),
                   "--format", "json", home=home)
    assert result.returncode == 1, result.stderr
    doc = result.json
    assert doc["status"] == "beyond_policy" and doc["verdict"]["decision"] == "block"
    [rule] = [r for r in doc["verdict"]["rules"] if r["outcome"] != "n/a"]
    assert (rule["id"], rule["outcome"]) == ("no-applicable-rule", "error")
    assert "policy 'train-only' has no rule that applies to stage 'monitor'" in rule["reason"]
    assert 'add a rule with stage = "monitor" to the policy' in rule["reason"]
    assert any(r.startswith("no-applicable-rule: policy 'train-only'") for r in doc["verdict"]["reasons"])
    assert "policy train-only has no monitor-stage rules: the batch cannot pass it" in doc["warnings"]
    # the ledger records the block, exactly as printed
    record = SignedLedger.open(Settings.resolve(home)).run_records(flights.run_id)[-1]
    assert record.kind == "monitor" and record.payload["status"] == "beyond_policy"
    assert record.payload["verdict"]["decision"] == "block"

    text = assay("monitor", flights.run_id, "--current", flights.batch("same_period.csv"), "--policy", str(policy),
                 home=home)
    assert text.returncode == 1 and "BEYOND POLICY" in text.stdout and "no-applicable-rule" in text.stdout


def test_the_stages_and_the_plugins_steps_are_reported_in_order(flights: TrainedRun, home: Path) -> None:
    recorder = Recorder()
    result = _monitor(flights, home, "summer.csv", ("recorder", recorder), labels=True)
    started = [e[1] for e in recorder.events if e[0] == "started"]
    finished = [e for e in recorder.events if e[0] == "finished"]
    assert started == [e[1] for e in finished] == STAGES
    assert finished[0][2:] == ("reference=2000", "rows=1500")
    drift = result.evidence["drift"]
    assert finished[1][2:] == (f"drifted={drift['drifted']}/{drift['tested']}",)
    assert finished[2][2:] == (f"decision={result.verdict.decision}",)

    # the monitoring plugin's parts, each counted against the plan of a labelled batch with a sensitive column
    parts = [(int(e[2]), int(e[3]), e[4]) for e in recorder.events if e[0] == "progress" and e[1] == "monitor"
             and not e[4].startswith("bootstrap")]
    assert parts == [(0, 5, "scoring the model"), (1, 5, "prediction drift"), (2, 5, "data drift (evidently)"),
                     (3, 5, "performance"), (4, 5, "fairness"), (5, 5, "done")]
    labelled = result.evidence["performance"]["rows"]
    boot = [(int(e[2]), int(e[3])) for e in recorder.events if e[0] == "progress"
            and e[4] == f"bootstrap of roc_auc on {labelled:,} labelled rows"]
    assert boot[0] == (0, 200) and boot[-1] == (200, 200)  # evaluate.bootstrap = 200 resamples
    assert [d for d, _ in boot] == sorted(d for d, _ in boot)
    # progress comes only while its stage runs
    monitor_events = recorder.events[recorder.events.index(("started", "monitor")):]
    assert all(e[1] == "monitor" for e in monitor_events[:monitor_events.index(finished[1])])


def test_on_a_terminal_the_monitoring_run_gets_the_bar(flights: TrainedRun, home: Path) -> None:
    from assay.commands.monitor import MonitorReporter

    buffer = io.StringIO()
    reporter = MonitorReporter(Console(file=buffer, force_terminal=True, width=160, color_system=None))
    try:
        _monitor(flights, home, "summer.csv", ("terminal", reporter), labels=True)
    finally:
        reporter.close()
    screen = buffer.getvalue()
    assert "━" in screen and "ETA" in screen, "a bar with an ETA, not only a spinner"
    assert "bootstrap of roc_auc" in screen and "200/200" in screen
    assert all(f"✓ {stage}" in screen for stage in STAGES)


def test_off_a_terminal_only_one_line_per_finished_stage(flights: TrainedRun, home: Path) -> None:
    from assay.commands.monitor import MonitorReporter

    buffer = io.StringIO()
    _monitor(flights, home, "summer.csv", ("terminal", MonitorReporter(Console(file=buffer, force_terminal=False))),
             labels=True)
    lines = buffer.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [["✓", s] for s in STAGES]
    assert "bootstrap" not in buffer.getvalue() and "━" not in buffer.getvalue()


def test_the_cli_prints_one_line_per_stage_to_a_pipe_and_nothing_for_json(flights: TrainedRun, home: Path) -> None:
    batch = flights.batch("summer.csv")
    text = run_assay("monitor", flights.run_id, "--current", batch, home=home, env={"COLUMNS": ""})
    assert text.returncode in (0, 1), text.stderr
    stage_lines = [line for line in text.stderr.splitlines() if line.startswith(("✓ ", "✗ "))]
    assert [line.split()[1] for line in stage_lines] == STAGES
    assert "━" not in text.stderr and "ETA" not in text.stderr, "no bar in a log"
    assert ("STABLE" if text.returncode == 0 else "BEYOND POLICY") in text.stdout

    quiet = run_assay("monitor", flights.run_id, "--current", batch, "--quiet", home=home)
    assert quiet.returncode == text.returncode and "✓" not in quiet.stderr
    machine = run_assay("monitor", flights.run_id, "--current", batch, "--format", "json", home=home)
    assert machine.returncode == text.returncode and "✓" not in machine.stderr
    assert machine.json["status"] in ("stable", "beyond_policy")
