"""``ASSAY_TRACE_PLUGINS=1``: every hook call on stderr, with each plugin's part and its duration."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, run_assay

# one plugin's implementation: "trace: HOOK <- PLUGIN 12.3 ms"; the whole call: "trace: HOOK: N plugin(s), 12.3 ms"
IMPL = re.compile(r"^trace: (\w+) <- ([\w.-]+) (\d+\.\d) ms$")
CALL = re.compile(r"^trace: (\w+): (\d+) plugins?, (\d+\.\d) ms( \(raised\))?$")


@pytest.fixture(scope="module")
def ranking_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("trace")
    shutil.copytree(EXAMPLES / "travel_mode_choice", directory / "travel", ignore=shutil.ignore_patterns(".assay"))
    return directory / "travel"


def _run(project: Path, home: Path, env: dict[str, str]) -> tuple[int, dict[str, object], list[str]]:
    result = run_assay("run", str(project / "assay.toml"), "--json", "-q", "--set", "train.budget=1",
                       "--set", "train.candidates=['pairwise_logistic']", home=home,
                       env={"OMP_NUM_THREADS": "1", **env})
    assert result.returncode in (0, 1), result.stderr[-2000:]
    return result.returncode, result.json, result.stderr.splitlines()


def test_tracing_names_each_hook_call_its_plugins_and_durations(ranking_project: Path, tmp_path: Path) -> None:
    code, out, lines = _run(ranking_project, tmp_path / "home", {"ASSAY_TRACE_PLUGINS": "1"})
    assert out["status"] in ("passed", "blocked") and out["model"]  # the JSON on stdout is untouched
    impls = [m.groups() for m in map(IMPL.match, lines) if m]
    calls = [m.groups() for m in map(CALL.match, lines) if m]
    assert ("fit_model", "training") in {(h, p) for h, p, _ in impls}
    assert ("load_data", "loaders") in {(h, p) for h, p, _ in impls}
    assert {"ledger"} == {p for h, p, _ in impls if h == "record"}
    evaluated = {p for h, p, _ in impls if h == "evaluate"}
    assert {"evaluation", "generalization", "fairness"} <= evaluated
    # every stage's hook is traced once per call, and a call's line follows its plugins' lines
    hooks = [h for h, *_ in calls]
    for hook in ("load_data", "validate_data", "split_data", "check_split", "fit_model", "evaluate", "gate"):
        assert hook in hooks, hook
    first_evaluate = next(i for i, line in enumerate(lines) if line.startswith("trace: evaluate <- "))
    evaluate_call = next(i for i, line in enumerate(lines) if line.startswith("trace: evaluate: "))
    assert first_evaluate < evaluate_call
    n_evaluated = int(next(n for h, n, *_ in calls if h == "evaluate"))
    assert n_evaluated == len([1 for h, *_ in impls if h == "evaluate"])
    # durations are real measurements: fitting takes longer than registering the tuners
    fit = max(float(ms) for h, _, ms in impls if h == "fit_model")
    register = max(float(ms) for h, _, ms in impls if h == "register_tuners")
    assert fit > register
    # the recorded run is the same with tracing as without
    assert code == (0 if out["status"] == "passed" else 1)


def test_without_the_variable_nothing_is_traced(ranking_project: Path, tmp_path: Path) -> None:
    _, out, lines = _run(ranking_project, tmp_path / "home", {"ASSAY_TRACE_PLUGINS": "0"})
    assert out["model"]
    assert not [line for line in lines if line.startswith("trace:")]
