"""A monitoring run is a run of stages the runner drives: plugins see one frozen MonitorContext
in the ``monitor`` hook, the verdict comes through the ``gate`` hook with stage ``monitor``
(a third-party gate plugin takes part like the bundled policy plugin), and a plugin that
raises is recorded as ``monitor_failed`` with nothing indexed."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest

from assay.kernel.hookspecs import hookimpl
from assay.kernel.types import Evidence, RuleOutcome
from tests.monitoring.conftest import TrainedRun

ROW_LIMIT = 1000


class RowWatch:
    """A third-party plugin: its own monitor evidence, and a monitor-stage gate rule on it."""

    def __init__(self) -> None:
        self.contexts: list[Any] = []
        self.stages: list[str] = []

    @hookimpl
    def monitor(self, context: Any) -> Any:
        self.contexts.append(context)
        return [Evidence("acme_watch", {"rows": len(context.current), "labelled": context.labelled})]

    @hookimpl
    def gate(self, evidence: dict[str, Any], stage: str) -> Any:
        self.stages.append(stage)
        if stage != "monitor":
            return None
        rows = evidence["acme_watch"]["rows"]
        return [RuleOutcome("acme-batch-size", "block" if rows > ROW_LIMIT else "pass", "acme_watch.rows", rows,
                            ROW_LIMIT, "<=", reason=f"acme_watch.rows = {rows}, needs <= {ROW_LIMIT}")]


class MalformedMetrics:
    """A monitor plugin that writes a live metric as text."""

    @hookimpl
    def monitor(self) -> Any:
        return [Evidence("metrics", {"current": {"roc_auc": "high"}})]


class BrokenMonitor:
    @hookimpl
    def monitor(self) -> Any:
        raise RuntimeError("planted failure in a monitor plugin")


def _monitor(run: TrainedRun, home: Path, batch: str, plugin: tuple[str, object]) -> Any:
    from assay.commands.monitoring import run_monitor
    from assay.kernel.manager import make_plugin_manager
    from assay.storage.settings import Settings

    pm = make_plugin_manager(extra_plugins=[plugin])
    return run_monitor(pm, Settings.resolve(home), run.run_id, run.batch(batch))


@pytest.fixture
def home(flights: TrainedRun, tmp_path: Path) -> Path:
    """A copy of the session's home: these monitor results stay out of the other tests' history."""
    shutil.copytree(flights.home, tmp_path / "home")
    return tmp_path / "home"


def test_plugins_get_one_frozen_context_and_the_verdict_comes_through_the_gate_hook(flights: TrainedRun,
                                                                                    home: Path) -> None:
    from assay import MonitorContext
    from assay.storage.settings import Settings
    from assay.storage.signed import SignedLedger

    watch = RowWatch()
    result = _monitor(flights, home, "same_period.csv", ("acme", watch))

    [context] = watch.contexts
    assert isinstance(context, MonitorContext)
    assert context.monitor_id == result.monitor_id and context.run_id == flights.run_id
    assert context.training == flights.result_evidence()
    assert len(context.current) == 1500 and not context.labelled and "is_delayed" not in context.current.columns
    assert len(context.reference) == flights.result_evidence()["monitoring"]["reference"]["rows"]
    assert context.source == str(Path(flights.batch("same_period.csv")).absolute())
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.labelled = True  # type: ignore[misc]

    # the gate hook ran once, for stage monitor, and every plugin's outcomes are in the one verdict
    assert watch.stages == ["monitor"]
    rules = {r.id: r for r in result.verdict.rules}
    assert rules["acme-batch-size"].outcome == "block" and rules["acme-batch-size"].measured == 1500
    assert {"drift", "prediction-drift"} <= set(rules)  # the bundled policy plugin's monitor rules
    assert "beats-baseline" not in rules  # no train-stage rule judges a batch
    assert result.status == "beyond_policy" and result.exit_code == 1
    assert "acme-batch-size: acme_watch.rows = 1500, needs <= 1000" in result.verdict.reasons
    assert result.evidence["acme_watch"] == {"rows": 1500, "labelled": False}

    # the runner recorded the monitor run, with that verdict, after the gate
    record = SignedLedger.open(Settings.resolve(home)).run_records(flights.run_id)[-1]
    assert record.kind == "monitor" and record.payload["monitor_id"] == result.monitor_id
    assert record.payload["status"] == "beyond_policy"
    assert any(r["id"] == "acme-batch-size" and r["outcome"] == "block" for r in record.payload["verdict"]["rules"])


def test_a_monitor_plugin_that_raises_is_recorded_and_nothing_is_indexed(flights: TrainedRun, home: Path) -> None:
    from assay.commands.monitor_history import monitor_history
    from assay.errors import InternalError
    from assay.storage.settings import Settings
    from assay.storage.signed import SignedLedger

    settings = Settings.resolve(home)
    before = len(monitor_history(settings, flights.run_id)[1])
    with pytest.raises(InternalError, match="planted failure in a monitor plugin") as caught:
        _monitor(flights, home, "same_period.csv", ("broken", BrokenMonitor()))
    assert caught.value.exit_code == 3
    record = SignedLedger.open(settings).run_records(flights.run_id)[-1]
    assert record.kind == "monitor_failed" and "planted failure" in record.payload["error"]
    assert record.payload["source"]["rows"] == 1500
    assert len(monitor_history(settings, flights.run_id)[1]) == before


def test_a_malformed_monitor_section_is_never_judged(flights: TrainedRun, home: Path) -> None:
    from assay.commands.monitor_history import monitor_history
    from assay.kernel.evidence import MalformedEvidence
    from assay.storage.settings import Settings
    from assay.storage.signed import SignedLedger

    settings = Settings.resolve(home)
    before = len(monitor_history(settings, flights.run_id)[1])
    with pytest.raises(MalformedEvidence, match=r"section 'metrics', field 'current\.roc_auc'") as caught:
        _monitor(flights, home, "same_period.csv", ("malformed", MalformedMetrics()))
    assert caught.value.exit_code == 3
    record = SignedLedger.open(settings).run_records(flights.run_id)[-1]
    assert record.kind == "monitor_failed" and "section 'metrics', field 'current.roc_auc'" in record.payload["error"]
    assert len(monitor_history(settings, flights.run_id)[1]) == before
