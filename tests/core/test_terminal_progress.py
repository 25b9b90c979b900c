"""Checks and bootstraps show their work like training does: ``run.progress`` counts their steps, a terminal
draws the bar, and anywhere else nothing but one line per finished stage is printed."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from assay.commands.terminal import TerminalReporter
from assay.kernel.hookspecs import hookimpl
from assay.kernel.manager import make_plugin_manager
from assay.kernel.runner import Runner
from assay.kernel.spec import load_spec
from assay.kernel.types import Check
from assay.kit import STEP_REPORT_S, run_checks, steps
from assay.storage.settings import Settings
from tests.checks import datasets as ds
from tests.conftest import run_assay

STAGES = ("data", "split", "train", "evaluate", "gate")


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, int, int, str]] = []

    @hookimpl
    def stage_progress(self, run: Any, stage: str, done: int, total: int, label: str) -> None:
        self.events.append((stage, done, total, label))


class FakeRun:
    def __init__(self) -> None:
        self.reports: list[tuple[str, int, int, str]] = []

    def progress(self, stage: str, done: int, total: int, label: str = "") -> None:
        self.reports.append((stage, done, total, label))


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ds.write(tmp_path_factory.mktemp("terminal-progress"), ds.adult_fair(1500), ds.adult_spec("progress"))


def _run(spec_path: Path, home: Path, *plugins: tuple[str, object]) -> Any:
    spec, _ = load_spec(spec_path, ["train.tuning=none", 'train.candidates=["logistic_regression"]'])
    result = Runner(make_plugin_manager(extra_plugins=plugins), Settings.resolve(home), spec, spec_path).execute()
    assert result.status in ("passed", "blocked"), result.error
    return result


def _by_label(events: list[tuple[str, int, int, str]], stage: str, label: str) -> list[tuple[int, int]]:
    return [(d, t) for s, d, t, lab in events if s == stage and lab == label]


def test_a_real_run_reports_its_data_checks_and_bootstrap_steps(spec_path: Path, tmp_path: Path) -> None:
    recorder = Recorder()
    result = _run(spec_path, tmp_path / "home", ("recorder", recorder))
    data = _by_label(recorder.events, "data", "data checks")
    assert data[0] == (0, 4) and data[-1] == (4, 4)  # schema, missing values, constant columns, label balance
    split = _by_label(recorder.events, "split", "data checks")
    assert split[0] == (0, 2) and split[-1] == (2, 2)  # unseen categories, test labels
    leakage = _by_label(recorder.events, "split", "leakage checks")
    n = leakage[0][1]
    assert n >= 6 and leakage[0] == (0, n) and leakage[-1] == (n, n)  # duplicates, target leakage, ...
    holdout = result.evidence["split"]["test"]["rows"]
    resamples = next(lab for s, _, _, lab in recorder.events if s == "evaluate" and lab.startswith("bootstrap"))
    assert resamples == f"bootstrap of roc_auc on {holdout:,} holdout rows"
    boot = _by_label(recorder.events, "evaluate", resamples)
    assert boot[0] == (0, 200) and boot[-1] == (200, 200)  # evaluate.bootstrap = 200 resamples
    # the model and the baseline in one pass, on the same resamples; the generalization plugin reuses them
    assert boot.count((0, 200)) == boot.count((200, 200)) == 1
    for label in {lab for *_, lab in recorder.events}:
        for stage in STAGES:
            done = [d for d, _ in _by_label(recorder.events, stage, label)]
            passes = [p for p in "|".join(map(str, done)).split("|0") if p]  # each pass starts again at 0
            for one in passes:
                counts = [int(x) for x in one.strip("|").split("|") if x]
                assert counts == sorted(counts), f"{stage} {label!r} went back: {done}"


def test_on_a_terminal_the_checks_and_the_bootstrap_get_the_bar(spec_path: Path, tmp_path: Path) -> None:
    buffer = io.StringIO()
    _run(spec_path, tmp_path / "home",
         ("terminal", TerminalReporter(Console(file=buffer, force_terminal=True, width=160, color_system=None))))
    screen = buffer.getvalue()
    assert "data checks" in screen and "4/4" in screen and "2/2" in screen
    assert "bootstrap of roc_auc" in screen and "200/200" in screen and "ETA" in screen
    assert "━" in screen, "a bar, not only a spinner"
    assert all(f"✓ {stage}" in screen for stage in STAGES)


def test_off_a_terminal_only_one_line_per_finished_stage(spec_path: Path, tmp_path: Path) -> None:
    buffer = io.StringIO()
    _run(spec_path, tmp_path / "home", ("terminal", TerminalReporter(Console(file=buffer, force_terminal=False))))
    lines = buffer.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [["✓", s] for s in STAGES]
    assert "checks" not in buffer.getvalue().split("✓ evaluate")[0] and "bootstrap" not in buffer.getvalue()


def test_the_cli_prints_one_line_per_stage_to_a_pipe(spec_path: Path, tmp_path: Path) -> None:
    result = run_assay("run", str(spec_path), "--set", "train.tuning=none", "--set",
                       'train.candidates=["logistic_regression"]', home=tmp_path / "home", env={"COLUMNS": ""})
    assert result.returncode in (0, 1), result.stderr
    stage_lines = [line for line in result.stderr.splitlines() if line.startswith(("✓ ", "✗ "))]
    assert [line.split()[1] for line in stage_lines] == list(STAGES)
    assert "━" not in result.stderr and "ETA" not in result.stderr and "data checks" not in result.stderr, \
        "no bar in a log"


def test_steps_reports_the_first_and_last_step_and_no_more_often_than_its_interval() -> None:
    run = FakeRun()
    started = time.perf_counter()
    assert list(steps(run, "evaluate", range(50_000), "work")) == list(range(50_000))  # type: ignore[arg-type]
    took = time.perf_counter() - started
    assert run.reports[0] == ("evaluate", 0, 50_000, "work") and run.reports[-1] == ("evaluate", 50_000, 50_000, "work")
    assert len(run.reports) <= 2 + took / STEP_REPORT_S + 1
    assert list(steps(None, "evaluate", [1, 2, 3], "work")) == [1, 2, 3]
    quiet = FakeRun()
    assert list(steps(quiet, "evaluate", [], "work")) == [] and quiet.reports == []  # type: ignore[arg-type]


def test_a_check_that_raises_still_counts_and_becomes_an_error_check() -> None:
    run = FakeRun()

    def broken() -> list[Check]:
        raise RuntimeError("boom")

    out = run_checks(run, "data", "data", [("fine", lambda: [Check("data", "fine", "pass", 1, {})]),  # type: ignore[arg-type]
                                           ("broken", broken)])
    assert [(c.name, c.status) for c in out if isinstance(c, Check)] == [("fine", "pass"), ("broken", "error")]
    assert run.reports[-1] == ("data", 2, 2, "data checks")
